package engine

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// A snapshot holds every partition's state and, per partition, the journal
// position that state includes. A worker serializes one partition between
// two batches (snapshotter.go), so positions differ between partitions;
// replay skips, per partition, the events already included.
//
// Layout (little-endian, varints as in encoding/binary):
//
//	magic "FESTSNAP" | u8 version | uvarint partitions
//	per partition: u64 position | uvarint length | partition bytes
//
// Version 2 adds the parcels after the order statuses: uvarint n, n status
// bytes, n little-endian u32 location hashes. A version 1 snapshot predates
// scans, so its paid orders' parcels are all "created" with no scan, and it
// is read as such.
//
// Version 3 adds the livestream after the parcels: uvarint n channels (id,
// title, host, varint starts and ends), uvarint n deals (the terms as in a
// DealPut event, uvarint sku slot, uvarint left, reserved, sold, returned,
// a byte ended, varint ended-at, uvarint n buyers (buyer id, uvarint
// units), uvarint n pending buyers (uvarint seq, buyer id)), and after each
// pending order's line count a uvarint deal (slot + 1, 0 for none). A
// version 1 or 2 snapshot predates deals and is read as holding none.
//
// Version 4 adds to each entry of the idempotency key ring, after its
// time, a uvarint minted: the minting time of a time-ordered key (unix ms,
// the OrderPlaced event's KeyMinted), 0 for other keys. An older snapshot's
// keys are read with minted 0, as other keys.
const (
	snapshotMagic     = "FESTSNAP"
	snapshotVersion   = 4
	snapshotVersionV3 = 3
	snapshotVersionV2 = 2
	snapshotVersionV1 = 1
)

// snapshotVersionReadable reports whether a snapshot of version can be
// read: the current one and every older one.
func snapshotVersionReadable(version byte) bool {
	return version >= snapshotVersionV1 && version <= snapshotVersion
}

// encodePartition appends p's state.
func encodePartition(b []byte, p *partition) []byte {
	return encodePartitionVersion(b, p, snapshotVersion)
}

// encodePartitionVersion appends p's state in the layout of version (tests
// write version 1 to check that it is still read).
func encodePartitionVersion(b []byte, p *partition, version byte) []byte {
	b = binary.AppendVarint(b, p.lastAt)
	p.brandsMu.RLock()
	b = binary.AppendUvarint(b, uint64(len(p.brands)))
	for _, br := range p.brands {
		b = appendBrand(b, br)
	}
	p.brandsMu.RUnlock()
	b = binary.AppendUvarint(b, uint64(len(p.merchants)))
	for i := range p.merchants {
		b = appendMerchant(b, &p.merchants[i].m)
	}
	b = binary.AppendUvarint(b, uint64(len(p.skus)))
	for i := range p.skus {
		s, t := &p.skus[i], p.record(uint32(i))
		b = binary.AppendVarint(b, s.price())
		b = binary.AppendUvarint(b, uint64(s.available))
		b = binary.AppendUvarint(b, uint64(s.reserved))
		b = binary.AppendUvarint(b, uint64(s.sold))
		b = binary.AppendUvarint(b, uint64(s.merchant()))
		b = appendString(b, t.id)
		b = appendString(b, p.interned[t.brand])
		b = appendString(b, t.title)
		b = appendString(b, p.interned[t.category])
	}
	b = binary.AppendUvarint(b, uint64(len(p.orders)))
	for _, s := range p.orders {
		b = append(b, byte(s))
	}
	if version != snapshotVersionV1 {
		b = binary.AppendUvarint(b, uint64(len(p.parcelStatus)))
		for _, s := range p.parcelStatus {
			b = append(b, byte(s))
		}
		for _, h := range p.parcelLocation {
			b = binary.LittleEndian.AppendUint32(b, h)
		}
	}
	if version >= snapshotVersionV3 {
		b = encodeLive(b, p)
	}
	b = binary.AppendUvarint(b, uint64(p.pendingCount))
	for i, po := range p.pending {
		if po == nil {
			continue
		}
		seq := p.pendingBase + uint64(i)
		b = binary.AppendUvarint(b, seq)
		b = binary.AppendVarint(b, po.total)
		b = binary.AppendVarint(b, po.createdAt)
		b = binary.AppendVarint(b, po.payBy)
		b = binary.AppendUvarint(b, uint64(po.merchant))
		b = binary.AppendUvarint(b, uint64(po.count))
		if version >= snapshotVersionV3 {
			b = binary.AppendUvarint(b, uint64(po.deal))
		} else if po.deal != 0 {
			panic(fmt.Sprintf("engine: partition %d pending order %d is on a deal, which snapshot version %d cannot hold", p.id, seq, version))
		}
		for i := 0; i < int(po.count); i++ {
			it := po.item(i)
			b = binary.AppendUvarint(b, uint64(it.slot))
			b = binary.AppendUvarint(b, uint64(it.quantity))
		}
	}
	return p.keys.encode(b, version)
}

// count reads the length of what follows: at most max, and at most the
// data's length, since every element takes at least one byte. It is for
// lengths only: a quantity or an index says nothing about the data's
// length and is read with value.
func (d *decoder) count(max uint64, what string) int {
	n := d.uvarint()
	if n > max || n > uint64(len(d.b)) {
		d.fail("bad " + what + " count")
		return 0
	}
	return int(n)
}

// value reads a uvarint of at most max: a quantity or an index, which
// the data's length does not bound (a deal of 50,000 units fits in a few
// hundred bytes).
func (d *decoder) value(max uint64, what string) uint64 {
	n := d.uvarint()
	if n > max {
		d.fail(what + " out of range")
		return 0
	}
	return n
}

// decodePartition restores p (new and empty) from data, and the directory
// entries of its SKUs.
func (c *core) decodePartition(p *partition, data []byte, version byte) error {
	d := &decoder{b: data}
	p.lastAt = d.varint()
	for i, n := 0, d.count(1<<32, "brand"); i < n && d.err == nil; i++ {
		br := &Brand{}
		d.brand(br)
		br.ID, br.Name, br.Country = strings.Clone(br.ID), strings.Clone(br.Name), strings.Clone(br.Country)
		p.brands[br.ID] = br
	}
	for i, n := 0, d.count(1<<32, "merchant"); i < n && d.err == nil; i++ {
		var m Merchant
		d.merchant(&m)
		m = cloneMerchant(m)
		p.merchantSlots[m.ID] = uint32(len(p.merchants))
		p.merchants = append(p.merchants, merchantState{m: m})
	}
	nskus := d.count(1<<32, "sku")
	p.skus = make([]skuState, 0, nskus)
	for i := 0; i < nskus && d.err == nil; i++ {
		price, available, reserved, sold, merchant := d.varint(), int64(d.uvarint()), int64(d.uvarint()), int64(d.uvarint()), d.uvarint()
		id, brand, title, category := d.string(), d.string(), d.string(), d.string()
		if d.err != nil {
			break
		}
		if merchant >= uint64(len(p.merchants)) {
			d.fail("sku of unknown merchant")
			break
		}
		if !validID(id) {
			d.fail("bad sku id")
			break
		}
		if price < 0 || price > priceMax {
			d.fail("sku price out of range")
			break
		}
		if available < 0 || reserved < 0 || sold < 0 || available+reserved+sold > stockTotal {
			d.fail("sku stock out of range")
			break
		}
		if len(title) > textMax || len(category) > textMax || !p.text.room(skuRecordBytesMax) {
			d.fail("sku text too long")
			break
		}
		slot := uint32(len(p.skus))
		// Another partition's SKU of the same id makes it ambiguous
		// (ambiguous.go): a cluster's state may hold that, and loads.
		if !c.shareSKU(p, id, slot) {
			d.fail("sku id twice in a partition")
			break
		}
		s := newSKUState(uint32(merchant))
		s.setPrice(price)
		s.available, s.reserved, s.sold = int32(available), int32(reserved), int32(sold)
		p.skus = append(p.skus, s)
		p.setRecord(slot, &skuRecord{id: id, title: title, brand: p.internBrand(uint32(merchant), brand), category: p.intern(category)}, true)
		p.checkSKU(slot)
		p.updateSoldOut(slot)
	}
	norders := d.count(1<<52, "order")
	if d.err == nil {
		if norders > len(d.b)-d.off {
			d.fail("short order statuses")
		} else {
			p.orders = make([]OrderStatus, norders)
			for i := range p.orders {
				p.orders[i] = OrderStatus(d.b[d.off+i])
			}
			d.off += norders
		}
	}
	if version == snapshotVersionV1 {
		for i, s := range p.orders {
			if s == StatusPaid {
				p.setParcel(uint64(i)+1, ParcelCreated, 0)
			}
		}
	} else {
		c.decodeParcels(d, p)
	}
	if version >= snapshotVersionV3 {
		c.decodeLive(d, p)
	}
	for i, n := 0, d.count(1<<52, "pending order"); i < n && d.err == nil; i++ {
		seq := d.uvarint()
		po := &pendingOrder{total: d.varint(), createdAt: d.varint(), payBy: d.varint(), merchant: uint32(d.uvarint()), count: uint16(d.count(orderItemsMax, "item"))}
		if version >= snapshotVersionV3 {
			po.deal = uint16(d.value(uint64(len(p.deals)), "pending order's deal"))
			if po.deal != 0 && po.count != 1 {
				d.fail("pending deal order of several lines")
			}
		}
		for j := 0; j < int(po.count) && d.err == nil; j++ {
			it := pendingItem{slot: uint32(d.uvarint()), quantity: uint32(d.uvarint())}
			if int(it.slot) >= len(p.skus) {
				d.fail("pending item of unknown sku")
			}
			if j < inlineItems {
				po.inline[j] = it
			} else {
				po.more = append(po.more, it)
			}
		}
		if seq == 0 || seq > uint64(len(p.orders)) || p.orders[seq-1] != StatusPending {
			d.fail("pending order with a bad sequence")
		}
		if d.err != nil {
			break // seq may be anything: the window must not grow to it
		}
		if p.pendingCount == 0 {
			// The window starts at the oldest pending order.
			p.pendingBase = seq
		}
		for p.pendingBase+uint64(len(p.pending)) < seq {
			p.pending = append(p.pending, nil)
		}
		if p.pendingBase+uint64(len(p.pending)) != seq {
			d.fail("pending orders out of order")
			break
		}
		p.addPending(seq, po)
	}
	if version >= snapshotVersionV3 {
		c.checkPending(d, p)
	}
	// Keep the window's invariant: it ends just before the next order.
	if p.pendingCount == 0 {
		p.pendingBase = p.nextSeq()
	}
	for d.err == nil && p.pendingBase+uint64(len(p.pending)) < p.nextSeq() {
		p.pending = append(p.pending, nil)
	}
	c.decodeKeys(d, p, version)
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return fmt.Errorf("partition %d: %w", p.id, d.err)
	}
	return nil
}

// decodeParcels reads the parcels of a version 2 snapshot and checks them
// against the order statuses: a parcel exactly for each paid order.
func (c *core) decodeParcels(d *decoder, p *partition) {
	n := d.count(uint64(len(p.orders)), "parcel")
	if d.err != nil {
		return
	}
	if n*5 > len(d.b)-d.off {
		d.fail("short parcels")
		return
	}
	p.parcelStatus = make([]ParcelStatus, n)
	p.parcelLocation = make([]uint32, n)
	for i := range n {
		s := ParcelStatus(d.b[d.off+i])
		if s >= parcelStatusCount || (s == ParcelNone) != (p.orders[i] != StatusPaid) {
			d.fail("parcel status " + s.String() + " of an order " + p.orders[i].String())
			return
		}
		p.parcelStatus[i] = s
	}
	d.off += n
	for i := range n {
		p.parcelLocation[i] = binary.LittleEndian.Uint32(d.b[d.off+4*i:])
	}
	d.off += 4 * n
	for i := n; i < len(p.orders); i++ {
		if p.orders[i] == StatusPaid {
			d.fail("paid order without a parcel")
			return
		}
	}
}

// encodeLive appends p's channels and deals (version 3).
func encodeLive(b []byte, p *partition) []byte {
	p.channelsMu.RLock()
	b = binary.AppendUvarint(b, uint64(len(p.channels)))
	for _, ch := range p.channels {
		b = appendString(b, ch.ID)
		b = appendString(b, ch.Title)
		b = appendString(b, ch.Host)
		b = binary.AppendVarint(b, ch.StartsAt)
		b = binary.AppendVarint(b, ch.EndsAt)
	}
	p.channelsMu.RUnlock()
	b = binary.AppendUvarint(b, uint64(len(p.deals)))
	for _, d := range p.deals {
		b = appendDeal(b, &d.deal)
		b = binary.AppendUvarint(b, uint64(d.skuSlot))
		b = binary.AppendUvarint(b, uint64(d.left))
		b = binary.AppendUvarint(b, uint64(d.reserved))
		b = binary.AppendUvarint(b, uint64(d.sold))
		b = binary.AppendUvarint(b, uint64(d.returned))
		if d.ended {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendVarint(b, d.endedAt)
		b = binary.AppendUvarint(b, uint64(len(d.buyers)))
		for buyer, n := range d.buyers {
			b = appendString(b, buyer)
			b = binary.AppendUvarint(b, uint64(n))
		}
		b = binary.AppendUvarint(b, uint64(len(d.pendingBuyer)))
		for seq, buyer := range d.pendingBuyer {
			b = binary.AppendUvarint(b, seq)
			b = appendString(b, buyer)
		}
	}
	return b
}

// decodeLive reads what encodeLive wrote and checks each deal's books.
func (c *core) decodeLive(d *decoder, p *partition) {
	for i, n := 0, d.count(1<<32, "channel"); i < n && d.err == nil; i++ {
		ch := &Channel{ID: strings.Clone(d.string()), Title: strings.Clone(d.string()), Host: strings.Clone(d.string()), StartsAt: d.varint(), EndsAt: d.varint()}
		if d.err == nil && (!validID(ch.ID) || ch.EndsAt <= ch.StartsAt) {
			d.fail("bad channel")
		}
		p.channels[ch.ID] = ch
	}
	for i, n := 0, d.count(dealsPerPartitionMax, "deal"); i < n && d.err == nil; i++ {
		var dl Deal
		d.deal(&dl)
		dl.ID, dl.ChannelID, dl.SKUID = strings.Clone(dl.ID), strings.Clone(dl.ChannelID), strings.Clone(dl.SKUID)
		ds := &dealState{deal: dl, skuSlot: uint32(d.value(uint64(len(p.skus)), "deal sku slot"))}
		ds.left, ds.reserved, ds.sold, ds.returned = int32(d.value(stockMax, "deal left")), int32(d.value(stockMax, "deal reserved")),
			int32(d.value(stockMax, "deal sold")), int32(d.value(stockMax, "deal returned"))
		switch d.byte1() {
		case 0:
		case 1:
			ds.ended = true
		default:
			d.fail("deal ended neither 0 nor 1")
		}
		ds.endedAt = d.varint()
		if d.err != nil {
			return
		}
		if int(ds.skuSlot) >= len(p.skus) || p.skuID(ds.skuSlot) != dl.SKUID {
			d.fail("deal of unknown sku")
			return
		}
		if int64(ds.left)+int64(ds.reserved)+int64(ds.sold)+int64(ds.returned) != dl.Stock || (ds.ended && ds.left != 0) {
			d.fail("deal books do not add up")
			return
		}
		if !ds.ended && p.stockHeld(ds.skuSlot)+int64(ds.left) > stockTotal {
			// The deal's units return to the SKU when it ends.
			d.fail("deal units over the sku's stock bound")
			return
		}
		// A deal of the same id in another partition makes it ambiguous
		// (ambiguous.go) as the SKUs' ids do.
		if _, dup := p.dealSlots[dl.ID]; dup {
			d.fail("deal id twice in a partition")
			return
		}
		p.addDeal(c, ds, uint32(len(p.deals)))
		nb := d.count(uint64(dl.Stock), "deal buyer")
		if nb > 0 && ds.buyers == nil {
			d.fail("buyers of a deal without a limit")
			return
		}
		for j := 0; j < nb && d.err == nil; j++ {
			buyer := strings.Clone(d.string())
			units := d.value(uint64(dl.LimitPerBuyer), "buyer units")
			if _, dup := ds.buyers[buyer]; dup || units == 0 {
				d.fail("deal buyer twice or without units")
			}
			ds.buyers[buyer] = int32(units)
		}
		np := d.count(uint64(dl.Stock), "deal pending buyer")
		if np > 0 && ds.buyers == nil {
			d.fail("pending buyers of a deal without a limit")
			return
		}
		for j := 0; j < np && d.err == nil; j++ {
			seq := d.uvarint()
			buyer := d.string()
			if _, ok := ds.buyers[buyer]; !ok {
				d.fail("pending buyer without units")
				return
			}
			if _, dup := ds.pendingBuyer[seq]; dup {
				d.fail("deal pending order twice")
				return
			}
			ds.pendingBuyer[seq] = strings.Clone(buyer)
		}
	}
}

// checkPending cross-checks the pending orders read from a snapshot with
// the SKUs and deals read before them, so that a snapshot whose checksum
// holds but whose parts disagree is refused at load, where recovery falls
// back to an older one, instead of panicking at the first payment, cancel
// or expiry. Each pending status has its pending order; each SKU's
// reserved units are its pending orders' units; each
// pending deal order is on its deal's SKU, and a deal's pending orders hold
// its reserved units; on a deal with a limit per buyer, each pending order
// has its buyer, no buyer's pending units pass what the buyer holds, and
// the buyers hold the deal's reserved and sold units.
func (c *core) checkPending(d *decoder, p *partition) {
	if d.err != nil {
		return
	}
	skuReserved := make([]int64, len(p.skus))
	dealReserved := make([]int64, len(p.deals))
	dealPending := make([]int, len(p.deals))
	var buyerPending map[*dealState]map[string]int64
	for i, po := range p.pending {
		if po == nil {
			continue
		}
		seq := p.pendingBase + uint64(i)
		for j := 0; j < int(po.count); j++ {
			it := po.item(j)
			skuReserved[it.slot] += int64(it.quantity)
		}
		if po.deal == 0 {
			continue
		}
		slot := po.deal - 1
		ds := p.deals[slot]
		it := po.inline[0]
		if it.slot != ds.skuSlot {
			d.fail("pending deal order on another sku than its deal's")
			return
		}
		dealReserved[slot] += int64(it.quantity)
		dealPending[slot]++
		if ds.buyers == nil {
			continue
		}
		buyer, ok := ds.pendingBuyer[seq]
		if !ok {
			d.fail("pending deal order without its buyer")
			return
		}
		if buyerPending == nil {
			buyerPending = make(map[*dealState]map[string]int64)
		}
		m := buyerPending[ds]
		if m == nil {
			m = make(map[string]int64)
			buyerPending[ds] = m
		}
		m[buyer] += int64(it.quantity)
		if m[buyer] > int64(ds.buyers[buyer]) {
			d.fail("buyer's pending units past the units the buyer holds")
			return
		}
	}
	// Each pending order has a pending status (decodePartition checks);
	// the other way round, each pending status must have its order, or
	// expiry would find none.
	statuses := 0
	for _, st := range p.orders {
		if st == StatusPending {
			statuses++
		}
	}
	if statuses != p.pendingCount {
		d.fail("pending statuses other than the pending orders")
		return
	}
	for slot := range p.skus {
		if skuReserved[slot] != int64(p.skus[slot].reserved) {
			d.fail("sku reserved units other than its pending orders'")
			return
		}
	}
	for slot, ds := range p.deals {
		if dealReserved[slot] != int64(ds.reserved) {
			d.fail("deal reserved units other than its pending orders'")
			return
		}
		if ds.buyers == nil {
			continue
		}
		if len(ds.pendingBuyer) != dealPending[slot] {
			d.fail("deal pending buyers other than its pending orders")
			return
		}
		var held int64
		for _, n := range ds.buyers {
			held += int64(n)
		}
		if held != int64(ds.reserved)+int64(ds.sold) {
			d.fail("deal buyers' units other than its reserved and sold units")
			return
		}
	}
}
