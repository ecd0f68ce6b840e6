package engine

import "strings"

// Ambiguous ids: a SKU id or a deal id held by two partitions.
//
// A SKU id and a deal id are unique across partitions only through this
// node's directories, which the partition workers claim ids in when they
// decide a create. In cluster mode each node also applies the records of
// the partitions it only follows, and two owners deciding apart can both
// accept one new id for merchants of their own partitions, neither having
// applied the other's record yet. Each node then applies both records, in
// either order. Refusing the second one is not possible (it is stored and
// acknowledged), and panicking would stop every node on every restart.
// Instead the id becomes ambiguous: both SKUs (or deals) stay in their
// partitions as their records made them, and the directory entry of the id
// is marked, so that it names neither. From then on every request that
// names the id (an order's line or its deal, a SKU's read, a stock
// adjustment, a deal put on the SKU, a deal's read or end, an upsert of the
// SKU) is answered CodeConflict with Result.Ambiguous, the field naming the
// id; the merchants must use new ids. An entry only goes from empty to
// held to ambiguous, so every order of application, every node and every
// replay reach the same directories, and a snapshot needs nothing of its
// own: loading the two partitions' SKUs marks the id again.
//
// On a single node none of this happens: a create is decided against the
// one directory that every partition's worker claims in, and the second
// merchant's upsert is refused (CodeInvalidArgument, merchant_id; a deal's
// CodeConflict, deal_id).

// ambiguous answers a request whose field names an ambiguous id.
func ambiguous(res *Result, field string) {
	res.Code, res.Field, res.Ambiguous = CodeConflict, field, true
}

// unresolvedSKU answers a request whose field names a SKU id that lookup
// did not resolve, ref being what it returned: CodeNotFound, or the
// conflict of an ambiguous id.
func unresolvedSKU(res *Result, ref skuRef, field string) {
	if ref == skuRefAmbiguous {
		ambiguous(res, field)
		return
	}
	res.Code, res.Field = CodeNotFound, field
}

// unresolvedDeal is unresolvedSKU for a deal id (field deal_id), e being
// what the deal directory's lookup returned.
func unresolvedDeal(res *Result, e *dealEntry) {
	if e == dealAmbiguous {
		ambiguous(res, "deal_id")
		return
	}
	res.Code, res.Field = CodeNotFound, "deal_id"
}

// shareSKU enters the SKU at p's slot, created by a record (replayed,
// followed or loaded from a snapshot), in the directory. It returns false
// if another slot of p holds the id, which no decision of p's worker makes.
func (c *core) shareSKU(p *partition, id string, slot uint32) bool {
	ref := newSKURef(p.id, slot)
	held := c.dir.share(id, ref)
	return held == 0 || held == ref || !held.valid() || held.partition() != p.id
}

// dealAmbiguous is the deal directory's entry of a deal id that deals of two
// partitions hold. No deal holds it (each of the two keeps an entry of its
// own, which the router no longer finds), so nothing writes its gate.
var dealAmbiguous = &dealEntry{partition: -1}

// share returns the entry for the deal at (partition, slot) of sku slot
// skuSlot, created by a record: the directory's own, inserted if the id is
// new, or a private one if the id is held by another partition's deal (the
// id then becomes ambiguous) or ambiguous already. An id held by p's own
// deals is returned as held: the caller checks it is this one.
func (d *dealDirectory) share(dl *Deal, partition int, slot, skuSlot uint32) *dealEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[dl.ID]; ok {
		if e.partition == partition {
			return e
		}
		if e != dealAmbiguous {
			d.m[dl.ID] = dealAmbiguous
			d.ambiguous++
		}
		return newDealEntry(dl, partition, slot, skuSlot)
	}
	e := newDealEntry(dl, partition, slot, skuSlot)
	d.m[strings.Clone(dl.ID)] = e
	return e
}

// AmbiguousIDs returns the number of SKU ids and of deal ids that two
// partitions hold (see Result.Ambiguous); only cluster mode makes any.
func (e *Engine) AmbiguousIDs() (skus, deals int) {
	e.core.deals.mu.RLock()
	deals = e.core.deals.ambiguous
	e.core.deals.mu.RUnlock()
	return int(e.core.dir.ambiguous.Load()), deals
}
