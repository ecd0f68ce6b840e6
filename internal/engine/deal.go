package engine

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
)

// Livestream channels and flash deals.
//
// A deal lives in its SKU's partition, so that an order on it stays a
// single-partition transaction and is decided, journaled and replayed like
// any order. Putting a deal moves Stock units out of the SKU's available
// stock into the deal's own (the SKU's stock_available excludes them); a
// deal order takes units from the deal at the deal's price and reserves
// them on the SKU (stock_reserved and sold include deal orders). When the
// deal ends, by its window passing the batch's time or by EndDeal, one
// DealEnded event returns the deal's unsold units to the SKU: the event is
// the only way back, so it happens exactly once, and replay repeats it.
// Units of unpaid deal orders go back to the deal while it runs, and to the
// SKU after it ended, when the order expires or is cancelled.

// dealsPerPartitionMax bounds the deals of one partition, ended ones
// included (they stay readable): a pending order names its deal in 16 bits.
// A deal past it is refused with CodeInvalidArgument, field deal_id.
const dealsPerPartitionMax = 1<<16 - 1

// channelsPerPartitionMax bounds the channels of one partition (a channel
// lives in the partition its id hashes to): each holds up to two texts of
// textMax bytes, so the bound keeps a partition's channels within about
// 20 MB. A new channel past it is refused with CodeInvalidArgument, field
// channel_id; replacing an existing channel is always allowed.
const channelsPerPartitionMax = 1 << 13

// The states of a deal's gate, which the router reads without a lock to
// answer orders for a sold-out or ended deal without reaching the
// partition, as the sold-out bitset does for SKUs.
const (
	dealGateOpen    uint32 = iota // units left
	dealGateSoldOut               // none left, but cancelled orders may return some
	dealGateEnded
)

// dealEntry is a deal's place in the engine-wide deal directory: the router
// finds a deal's partition and gate by its id. Everything but gate is set
// before the entry is published and never changes (a deal's terms are
// fixed), so the router reads it without a lock: enough to answer an order
// on a sold-out or ended deal exactly as its partition would.
type dealEntry struct {
	partition int
	slot      uint32
	skuSlot   uint32
	// orderChannel is the channel of an order on the deal,
	// live:<channel_id>.
	orderChannel     string
	startsAt, endsAt int64 // unix nanoseconds
	gate             atomic.Uint32
}

// dealDirectory maps deal ids to their entries. Deals are few (thousands
// for a festival) and created rarely, so one map under a read-write lock
// serves: the router takes the read lock once per deal order.
type dealDirectory struct {
	mu sync.RWMutex
	m  map[string]*dealEntry
	// ambiguous counts the ids that m maps to dealAmbiguous.
	ambiguous int
}

func newDealDirectory() *dealDirectory {
	return &dealDirectory{m: make(map[string]*dealEntry)}
}

// lookup returns the entry of a deal id, and false if the id is unknown
// or ambiguous (the entry is then nil or dealAmbiguous).
func (d *dealDirectory) lookup(id string) (*dealEntry, bool) {
	d.mu.RLock()
	e := d.m[id]
	d.mu.RUnlock()
	return e, e != nil && e != dealAmbiguous
}

// claim returns the entry of dl.ID, inserting one for (partition, slot) and
// dl's terms if the id is new. inserted reports whether it did.
func (d *dealDirectory) claim(dl *Deal, partition int, slot, skuSlot uint32) (e *dealEntry, inserted bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[dl.ID]; ok {
		return e, false
	}
	e = newDealEntry(dl, partition, slot, skuSlot)
	d.m[strings.Clone(dl.ID)] = e
	return e, true
}

func newDealEntry(dl *Deal, partition int, slot, skuSlot uint32) *dealEntry {
	return &dealEntry{partition: partition, slot: slot, skuSlot: skuSlot, orderChannel: liveChannelPrefix + dl.ChannelID,
		startsAt: dl.StartsAt, endsAt: dl.EndsAt}
}

// dealState is a deal as its partition holds it. Only the partition's
// worker touches it; the router reads only entry.gate.
type dealState struct {
	deal    Deal // strings owned (cloned)
	skuSlot uint32
	entry   *dealEntry

	left, reserved, sold, returned int32 // units; they add up to deal.Stock
	ended                          bool
	endedAt                        int64

	// buyers holds, for a deal with a limit per buyer, each buyer's units
	// in pending or paid orders on it. Every entry holds at least one unit
	// (an entry falling to zero is deleted), so the map never has more
	// entries than the deal has stock: the deal's stock is its bound.
	buyers map[string]int32
	// pendingBuyer names the buyer of each unpaid order on the deal (by
	// sequence), so that expiry or cancellation gives the allowance back.
	// Only deals with a limit keep it; each entry is an order holding at
	// least one unit, so it is bounded by the deal's stock too.
	pendingBuyer map[uint64]string
}

func (d *dealState) status() *DealStatus {
	return &DealStatus{Deal: d.deal, Left: int64(d.left), Reserved: int64(d.reserved), Sold: int64(d.sold),
		Returned: int64(d.returned), Ended: d.ended, EndedAt: d.endedAt}
}

// updateGate publishes the deal's state to the router.
func (d *dealState) updateGate() {
	switch {
	case d.ended:
		d.entry.gate.Store(dealGateEnded)
	case d.left == 0:
		d.entry.gate.Store(dealGateSoldOut)
	default:
		d.entry.gate.Store(dealGateOpen)
	}
}

// check panics if the deal's books are impossible.
func (d *dealState) check(p *partition) {
	if d.left < 0 || d.reserved < 0 || d.sold < 0 || d.returned < 0 ||
		int64(d.left)+int64(d.reserved)+int64(d.sold)+int64(d.returned) != d.deal.Stock || (d.ended && d.left != 0) {
		panic(fmt.Sprintf("engine: partition %d deal %q has impossible books: stock %d left %d reserved %d sold %d returned %d ended %v",
			p.id, d.deal.ID, d.deal.Stock, d.left, d.reserved, d.sold, d.returned, d.ended))
	}
}

func (c *core) channelPartition(channelID string) int {
	return int(hashString("channel/"+channelID) % uint64(len(c.partitions)))
}

func (c *core) channel(id string) (*Channel, bool) {
	p := c.partitions[c.channelPartition(id)]
	p.channelsMu.RLock()
	ch, ok := p.channels[id]
	p.channelsMu.RUnlock()
	return ch, ok
}

// routeLive validates a channel or deal command without partition state
// and returns its partition; ok is false when res holds the answer.
func (c *core) routeLive(cmd *Command, res *Result) (int, bool) {
	switch cmd.Kind {
	case KindPutChannel:
		ch := cmd.Channel
		if ch == nil {
			res.Code, res.Field = CodeInvalidArgument, "channel"
			return 0, false
		}
		if !validID(ch.ID) || len(ch.ID) > channelIDBytesMax {
			res.Code, res.Field = CodeInvalidArgument, "channel_id"
			return 0, false
		}
		if tooLong(res, "title", ch.Title, textMax) || tooLong(res, "host", ch.Host, textMax) {
			return 0, false
		}
		if ch.EndsAt <= ch.StartsAt {
			res.Code, res.Field = CodeInvalidArgument, "ends_at"
			return 0, false
		}
		return c.channelPartition(ch.ID), true
	case KindPutDeal:
		d := cmd.Deal
		if d == nil {
			res.Code, res.Field = CodeInvalidArgument, "deal"
			return 0, false
		}
		switch {
		case !validID(d.ID):
			res.Code, res.Field = CodeInvalidArgument, "deal_id"
		case !validID(d.ChannelID) || len(d.ChannelID) > channelIDBytesMax:
			res.Code, res.Field = CodeInvalidArgument, "channel_id"
		case !validID(d.SKUID):
			res.Code, res.Field = CodeInvalidArgument, "sku_id"
		case d.Price < 0 || d.Price > priceMax:
			res.Code, res.Field = CodeInvalidArgument, "price"
		case d.Stock < 1 || d.Stock > stockMax:
			res.Code, res.Field = CodeInvalidArgument, "stock"
		case d.EndsAt <= d.StartsAt:
			res.Code, res.Field = CodeInvalidArgument, "ends_at"
		case d.LimitPerBuyer < 0 || d.LimitPerBuyer > stockMax:
			res.Code, res.Field = CodeInvalidArgument, "limit_per_buyer"
		}
		if res.Code != CodeOK {
			return 0, false
		}
		ref, ok := c.dir.lookup(d.SKUID)
		if !ok {
			unresolvedSKU(res, ref, "sku_id")
			return 0, false
		}
		return ref.partition(), true
	case KindEndDeal, KindGetDeal:
		if cmd.Deal == nil || !validID(cmd.Deal.ID) {
			res.Code, res.Field = CodeNotFound, "deal_id"
			return 0, false
		}
		e, ok := c.deals.lookup(cmd.Deal.ID)
		if !ok {
			unresolvedDeal(res, e)
			return 0, false
		}
		return e.partition, true
	}
	panic(fmt.Sprintf("engine: routeLive of %v", cmd.Kind))
}

// routeDealOrder checks an order's deal at the router: an unknown deal is
// CodeNotFound, a deal of another partition than the order's items is
// CodeInvalidArgument (items), and an unkeyed order on a sold-out or ended
// deal is answered here without reaching the partition. That answer is the
// partition's, in its order: the order's SKU (items), its summed quantity,
// its channel, the window, then the stock. An order on an open deal goes to
// the partition unchecked.
func (c *core) routeDealOrder(o *Order, partition int, res *Result) bool {
	e, ok := c.deals.lookup(o.DealID)
	if !ok {
		unresolvedDeal(res, e)
		return false
	}
	if e.partition != partition {
		res.Code, res.Field = CodeInvalidArgument, "items"
		return false
	}
	if o.IdempotencyKey != "" {
		return true // may be the replay of an order that got the last units
	}
	gate := e.gate.Load()
	if gate == dealGateOpen {
		return true
	}
	var q int64
	for i := range o.Items {
		if o.Items[i].ref.slot() != e.skuSlot {
			res.Code, res.Field = CodeInvalidArgument, "items"
			return false
		}
		q += int64(o.Items[i].Quantity)
	}
	if q > quantityMax {
		res.Code, res.Field = CodeInvalidArgument, itemField(0, "quantity")
		return false
	}
	if o.Channel != e.orderChannel {
		res.Code, res.Field = CodeInvalidArgument, "channel"
		return false
	}
	if gate == dealGateSoldOut && c.routerNow != nil {
		// The worker ends a deal at its next batch after ends_at; until
		// then the gate says sold out, but the partition would answer by
		// the window first. The batch's time is read after this one, so a
		// window closed now is closed for the batch too.
		if now := c.routerNow(); now < e.startsAt || now >= e.endsAt {
			gate = dealGateEnded
		}
	}
	switch gate {
	case dealGateSoldOut:
		res.Code, res.SKUID, res.Available = CodeOutOfStock, o.Items[0].SKUID, 0
		return false
	case dealGateEnded:
		res.Code, res.Field = CodeDealNotActive, "deal_id"
		return false
	}
	panic(fmt.Sprintf("engine: deal %q has gate state %d", o.DealID, gate))
}

func (c *core) applyLive(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	switch cmd.Kind {
	case KindPutChannel:
		if _, ok := p.channels[cmd.Channel.ID]; !ok && len(p.channels) >= channelsPerPartitionMax {
			res.Code, res.Field = CodeInvalidArgument, "channel_id"
			return
		}
		ev := &out.ev
		*ev = Event{Kind: EventChannelPut, Partition: p.id, At: now, LiveChannel: *cmd.Channel}
		c.emit(p, ev, out)
	case KindPutDeal:
		c.putDeal(p, now, cmd.Deal, res, out)
	case KindEndDeal:
		d := p.dealByID(cmd.Deal.ID)
		if d == nil {
			res.Code, res.Field = CodeNotFound, "deal_id"
			return
		}
		if !d.ended {
			c.emitDealEnded(p, d, now, out)
		}
		res.Deal = d.status()
	case KindGetDeal:
		d := p.dealByID(cmd.Deal.ID)
		if d == nil {
			res.Code, res.Field = CodeNotFound, "deal_id"
			return
		}
		res.Deal = d.status()
	default:
		panic(fmt.Sprintf("engine: applyLive of %v", cmd.Kind))
	}
}

func (p *partition) dealByID(id string) *dealState {
	slot, ok := p.dealSlots[id]
	if !ok {
		return nil
	}
	return p.deals[slot]
}

func (c *core) putDeal(p *partition, now int64, d *Deal, res *Result, out *emitter) {
	ref, ok := c.dir.lookup(d.SKUID)
	if !ok || ref.partition() != p.id {
		unresolvedSKU(res, ref, "sku_id")
		return
	}
	if _, ok := c.channel(d.ChannelID); !ok {
		res.Code, res.Field = CodeNotFound, "channel_id"
		return
	}
	if e, _ := c.deals.lookup(d.ID); e == dealAmbiguous {
		// This partition may hold one of the two deals of the id
		// (ambiguous.go), with these very terms: still, the id names
		// neither now.
		ambiguous(res, "deal_id")
		return
	}
	if old := p.dealByID(d.ID); old != nil {
		if old.deal != *d {
			res.Code, res.Field = CodeConflict, "deal_id"
			res.Deal = old.status()
			return
		}
		res.Deal = old.status()
		return
	}
	slot := ref.slot()
	st := &p.skus[slot]
	if d.Stock > int64(st.available) {
		res.Code, res.SKUID, res.Available = CodeOutOfStock, d.SKUID, int64(st.available)
		return
	}
	if len(p.deals) >= dealsPerPartitionMax {
		res.Code, res.Field = CodeInvalidArgument, "deal_id"
		return
	}
	// Claim the id now: another partition's worker may be putting a deal
	// of the same id on another SKU at this moment.
	if e, inserted := c.deals.claim(d, p.id, uint32(len(p.deals)), slot); !inserted {
		res.Code, res.Field, res.Ambiguous = CodeConflict, "deal_id", e == dealAmbiguous
		return
	}
	ev := &out.ev
	*ev = Event{Kind: EventDealPut, Partition: p.id, At: now, Deal: *d, SKUSlot: slot}
	c.emit(p, ev, out)
	res.Deal = p.deals[len(p.deals)-1].status()
}

func (c *core) emitDealEnded(p *partition, d *dealState, now int64, out *emitter) {
	ev := &out.ev
	*ev = Event{Kind: EventDealEnded, Partition: p.id, At: now, DealID: d.deal.ID, SKUSlot: d.skuSlot,
		SKUID: p.skuID(d.skuSlot), Delta: int64(d.left)}
	c.emit(p, ev, out)
}

// endDeals ends at most max deals of p whose window closed by now and
// returns how many. The worker calls it only when now reaches
// p.dealEndNext, so a batch without a closing deal pays one comparison.
func (c *core) endDeals(p *partition, now int64, max int, out *emitter) int {
	n := 0
	for n < max && now >= p.dealEndNext {
		var due *dealState
		for _, slot := range p.dealsOpen {
			if d := p.deals[slot]; d.deal.EndsAt <= now {
				due = d
				break
			}
		}
		if due == nil {
			panic(fmt.Sprintf("engine: partition %d next deal end %d passed at %d but no open deal is due", p.id, p.dealEndNext, now))
		}
		c.emitDealEnded(p, due, now, out)
		n++
	}
	return n
}

// placeDealOrder decides an order on a deal: one SKU, the deal's, taken
// from the deal's stock at the deal's price, only on the deal's channel,
// inside its window and within its limit per buyer.
func (c *core) placeDealOrder(p *partition, now int64, o *Order, keyHash uint64, keyMinted int64, res *Result, out *emitter) {
	d := p.dealByID(o.DealID)
	if d == nil {
		res.Code, res.Field = CodeNotFound, "deal_id"
		return
	}
	n := mergeItems(o.Items)
	o.Items = o.Items[:n]
	if n != 1 || o.Items[0].ref.slot() != d.skuSlot {
		res.Code, res.Field = CodeInvalidArgument, "items"
		return
	}
	it := &o.Items[0]
	if it.Quantity > quantityMax {
		res.Code, res.Field = CodeInvalidArgument, itemField(0, "quantity")
		return
	}
	ch := o.Channel
	if len(ch) != len(liveChannelPrefix)+len(d.deal.ChannelID) || ch[:len(liveChannelPrefix)] != liveChannelPrefix || ch[len(liveChannelPrefix):] != d.deal.ChannelID {
		res.Code, res.Field = CodeInvalidArgument, "channel"
		return
	}
	if d.ended || now < d.deal.StartsAt || now >= d.deal.EndsAt {
		res.Code, res.Field = CodeDealNotActive, "deal_id"
		return
	}
	if int64(it.Quantity) > int64(d.left) {
		res.Code, res.SKUID, res.Available = CodeOutOfStock, it.SKUID, int64(d.left)
		return
	}
	if d.deal.LimitPerBuyer > 0 && int64(d.buyers[o.BuyerID])+int64(it.Quantity) > d.deal.LimitPerBuyer {
		res.Code, res.Field = CodeLimitExceeded, "limit_per_buyer"
		return
	}
	it.UnitPrice = d.deal.Price
	it.Amount = d.deal.Price * int64(it.Quantity)
	seq := p.nextSeq()
	ev := &out.ev
	*ev = Event{
		Kind: EventOrderPlaced, Partition: p.id, At: now, OrderID: newOrderID(p.id, seq),
		BuyerID: o.BuyerID, MerchantID: p.merchants[p.skus[d.skuSlot].merchant()].m.ID,
		Channel: o.Channel, Region: o.Region, DealID: d.deal.ID, Items: o.Items, Total: it.Amount,
		PayBy: now + c.paymentTimeout, KeyHash: keyHash, RequestHash: o.RequestHash, KeyMinted: keyMinted,
	}
	c.emit(p, ev, out)
	res.OrderID = ev.OrderID
	res.Status = StatusPending
	res.MerchantID = ev.MerchantID
	res.Total = ev.Total
	res.CreatedAt = now
	res.PayBy = ev.PayBy
}

// liveChannelPrefix starts the channel of an order placed on a livestream.
const liveChannelPrefix = "live:"

// channelIDBytesMax bounds a channel id so that "live:<id>" fits an
// order's channel.
const channelIDBytesMax = channelBytesMax - len(liveChannelPrefix)

// evolveLive applies the channel and deal events.
func (c *core) evolveLive(p *partition, ev *Event) {
	switch ev.Kind {
	case EventChannelPut:
		ch := ev.LiveChannel
		ch.ID, ch.Title, ch.Host = strings.Clone(ch.ID), strings.Clone(ch.Title), strings.Clone(ch.Host)
		p.channelsMu.Lock()
		p.channels[ch.ID] = &ch
		p.channelsMu.Unlock()
	case EventDealPut:
		dl := ev.Deal
		dl.ID, dl.ChannelID, dl.SKUID = strings.Clone(dl.ID), strings.Clone(dl.ChannelID), strings.Clone(dl.SKUID)
		if int(ev.SKUSlot) >= len(p.skus) {
			panic(fmt.Sprintf("engine: partition %d deal %q of sku slot %d past the end %d", p.id, dl.ID, ev.SKUSlot, len(p.skus)))
		}
		slot := uint32(len(p.deals))
		d := &dealState{deal: dl, skuSlot: ev.SKUSlot, left: int32(dl.Stock)}
		p.addDeal(c, d, slot)
		st := &p.skus[ev.SKUSlot]
		st.available -= int32(dl.Stock)
		p.checkSKU(ev.SKUSlot)
		// Carving moves units within the SKU's total, which stays bound.
		p.checkStockHeld(ev.SKUSlot)
		p.updateSoldOut(ev.SKUSlot)
		d.check(p)
	case EventDealEnded:
		d := p.dealByID(ev.DealID)
		if d == nil || d.ended || int64(d.left) != ev.Delta || d.skuSlot != ev.SKUSlot {
			panic(fmt.Sprintf("engine: partition %d deal %q ended with %d units but the state disagrees", p.id, ev.DealID, ev.Delta))
		}
		st := &p.skus[d.skuSlot]
		p.carve(d.skuSlot, -d.left)
		st.available += d.left
		d.returned += d.left
		d.left = 0
		d.ended, d.endedAt = true, ev.At
		p.checkSKU(d.skuSlot)
		p.updateSoldOut(d.skuSlot)
		d.check(p)
		d.updateGate()
		p.closeDeal(d)
	default:
		panic(fmt.Sprintf("engine: evolveLive of %v", ev.Kind))
	}
}

// addDeal installs d at slot (the next one) and in the deal directory.
func (p *partition) addDeal(c *core, d *dealState, slot uint32) {
	if int(slot) != len(p.deals) {
		panic(fmt.Sprintf("engine: partition %d deal %q added at slot %d, next is %d", p.id, d.deal.ID, slot, len(p.deals)))
	}
	// The worker claimed the id when it decided the put (putDeal); a
	// replayed or followed record, or a snapshot, claims it here, and may
	// find it held by another partition's deal (ambiguous.go).
	e := c.deals.share(&d.deal, p.id, slot, d.skuSlot)
	if e.partition != p.id || e.slot != slot || e.skuSlot != d.skuSlot {
		panic(fmt.Sprintf("engine: deal %q put in partition %d slot %d but the directory has partition %d slot %d", d.deal.ID, p.id, slot, e.partition, e.slot))
	}
	d.entry = e
	if d.deal.LimitPerBuyer > 0 && d.buyers == nil {
		d.buyers = make(map[string]int32)
		d.pendingBuyer = make(map[uint64]string)
	}
	p.dealSlots[d.deal.ID] = slot
	p.deals = append(p.deals, d)
	if !d.ended {
		p.dealsOpen = append(p.dealsOpen, slot)
		p.dealEndNext = min(p.dealEndNext, d.deal.EndsAt)
		p.carve(d.skuSlot, d.left)
	}
	d.updateGate()
}

// closeDeal removes an ended deal from the open ones and recomputes the
// next end.
func (p *partition) closeDeal(d *dealState) {
	next := int64(math.MaxInt64)
	open := p.dealsOpen[:0]
	for _, slot := range p.dealsOpen {
		o := p.deals[slot]
		if o == d {
			continue
		}
		open = append(open, slot)
		next = min(next, o.deal.EndsAt)
	}
	p.dealsOpen = open
	p.dealEndNext = next
}

// evolveDealPlaced applies an order placed on a deal: its units leave the
// deal's stock and are reserved on the SKU.
func (c *core) evolveDealPlaced(p *partition, ev *Event, po *pendingOrder, seq uint64) {
	slot, ok := p.dealSlots[ev.DealID]
	if !ok || len(ev.Items) != 1 {
		panic(fmt.Sprintf("engine: partition %d order %d on deal %q which it cannot take (%d lines)", p.id, seq, ev.DealID, len(ev.Items)))
	}
	d := p.deals[slot]
	it := &ev.Items[0]
	if it.ref.slot() != d.skuSlot {
		panic(fmt.Sprintf("engine: partition %d order %d on deal %q names sku slot %d, the deal's is %d", p.id, seq, ev.DealID, it.ref.slot(), d.skuSlot))
	}
	q := it.Quantity
	po.deal = uint16(slot + 1)
	po.merchant = p.skus[d.skuSlot].merchant()
	po.count = 1
	po.inline[0] = pendingItem{slot: d.skuSlot, quantity: uint32(q)}
	if d.ended {
		panic(fmt.Sprintf("engine: partition %d order %d on deal %q, which ended", p.id, seq, ev.DealID))
	}
	d.left -= q
	d.reserved += q
	p.carve(d.skuSlot, -q)
	p.skus[d.skuSlot].reserved += q
	if d.buyers != nil {
		b := strings.Clone(ev.BuyerID) // ev aliases the record
		d.buyers[b] += q
		d.pendingBuyer[seq] = b
	}
	p.checkSKU(d.skuSlot)
	d.check(p)
	d.updateGate()
}

// evolveDealOrderEnded applies the end of a pending order on a deal: paid
// units are sold; cancelled or expired ones go back to the deal while it
// runs, to the SKU after it ended, and the buyer's allowance with them.
func (c *core) evolveDealOrderEnded(p *partition, po *pendingOrder, seq uint64, status OrderStatus) {
	d := p.deals[po.deal-1]
	pi := po.inline[0]
	q := int32(pi.quantity)
	st := &p.skus[pi.slot]
	st.reserved -= q
	d.reserved -= q
	if status == StatusPaid {
		st.sold += q
		d.sold += q
	} else {
		if d.ended {
			st.available += q
			d.returned += q
			p.updateSoldOut(pi.slot)
		} else {
			d.left += q
			p.carve(pi.slot, q)
		}
		if d.buyers != nil {
			b, ok := d.pendingBuyer[seq]
			if !ok {
				panic(fmt.Sprintf("engine: partition %d order %d on deal %q has no buyer recorded", p.id, seq, d.deal.ID))
			}
			if n := d.buyers[b] - q; n > 0 {
				d.buyers[b] = n
			} else {
				delete(d.buyers, b)
			}
		}
	}
	if d.buyers != nil {
		delete(d.pendingBuyer, seq)
	}
	p.checkSKU(pi.slot)
	d.check(p)
	d.updateGate()
}
