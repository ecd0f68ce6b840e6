package engine

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/idempotency"
)

// core is the deterministic state machine: every partition's state and the
// rules that change it. It does no I/O, starts no goroutines and reads no
// clock: time arrives as an argument. Workers call it for the partitions
// they own; replay calls evolve with the journal's events.
type core struct {
	partitions []*partition
	dir        *directory
	keys       *keyIndex
	deals      *dealDirectory
	// dealGatewayRejected counts deal orders the router answered (sold
	// out or ended) without reaching a partition.
	dealGatewayRejected atomic.Uint64
	// disk is the disk tier of idempotency keys, nil without a data
	// directory. The core only reads its answers, looked up by the worker.
	disk *idempotency.Store
	// routerNow is the engine's clock, which only the router reads: to
	// tell an order on a sold-out deal whose window closed, not yet ended
	// by its worker, that the deal is not active. It is nil in tests that
	// drive the core directly; they end deals before routing.
	routerNow func() int64

	paymentTimeout     int64 // nanoseconds
	idempotencyWindow  int64 // nanoseconds
	idempotencyKeysMax int   // per partition
}

func newCore(partitions int, paymentTimeout, idempotencyWindow int64, idempotencyKeysMax int) *core {
	c := &core{
		dir:                newDirectory(),
		keys:               newKeyIndex(),
		deals:              newDealDirectory(),
		paymentTimeout:     paymentTimeout,
		idempotencyWindow:  idempotencyWindow,
		idempotencyKeysMax: idempotencyKeysMax,
	}
	for i := 0; i < partitions; i++ {
		c.partitions = append(c.partitions, newPartition(i))
	}
	return c
}

// hashString is FNV-1a, 64 bits. It places merchants and brands in
// partitions and keys the idempotency window, so it must never change:
// unlike maphash it is the same in every process.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func (c *core) merchantPartition(merchantID string) int {
	return int(hashString(merchantID) % uint64(len(c.partitions)))
}

func (c *core) brandPartition(brandID string) int {
	return int(hashString("brand/"+brandID) % uint64(len(c.partitions)))
}

func (c *core) brand(id string) (*Brand, bool) {
	p := c.partitions[c.brandPartition(id)]
	p.brandsMu.RLock()
	b, ok := p.brands[id]
	p.brandsMu.RUnlock()
	return b, ok
}

// emitter collects a batch's events into one journal record.
type emitter struct {
	rec    []byte
	events int
	// lastAt is the time of the record's last event, which the next one's
	// is written relative to (appendEvent).
	lastAt int64
	// version is the version of the records written, Config.RecordVersion
	// (0: recordVersionDefault).
	version byte
	ev      Event // scratch, reused for every event
}

func (e *emitter) reset(buf []byte) {
	if e.version == 0 {
		e.version = recordVersionDefault
	}
	e.rec = appendRecordHeader(buf[:0], e.version)
	e.events = 0
	e.lastAt = 0
}

func (e *emitter) finish() []byte {
	finishRecord(e.rec, e.events)
	return e.rec
}

// emit applies an event to the state and appends it to the record. Apply
// and record are one step so that the live state is exactly what replay of
// the record rebuilds.
func (c *core) emit(p *partition, ev *Event, out *emitter) {
	c.evolve(p, ev)
	out.rec = appendEvent(out.rec, ev, out.lastAt, out.version)
	out.lastAt = ev.At
	out.events++
}

// apply decides one command against partition p at time now (unix
// nanoseconds), writes its result and emits its events.
func (c *core) apply(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	switch cmd.Kind {
	case KindPlaceOrder:
		c.placeOrder(p, now, cmd, res, out)
	case KindPay:
		c.pay(p, now, cmd, res, out)
	case KindCancel:
		c.cancel(p, now, cmd, res, out)
	case KindUpsertBrand:
		c.upsertBrand(p, now, cmd, res, out)
	case KindUpsertMerchant:
		c.upsertMerchant(p, now, cmd, res, out)
	case KindUpsertSKU:
		c.upsertSKU(p, now, cmd, res, out)
	case KindAdjustStock:
		c.adjustStock(p, now, cmd, res, out)
	case KindScanParcel:
		c.scanParcel(p, now, cmd, res, out)
	case KindPutChannel, KindPutDeal, KindEndDeal, KindGetDeal:
		c.applyLive(p, now, cmd, res, out)
	case KindGetSKU:
		ref, ok := c.dir.lookup(cmd.SKUID)
		if !ok || ref.partition() != p.id {
			unresolvedSKU(res, ref, "sku_id")
			return
		}
		p.skuResult(ref.slot(), res)
	case KindGetOrder:
		seq := cmd.OrderID.Seq()
		if seq == 0 || seq >= p.nextSeq() {
			res.Code, res.Field = CodeNotFound, "order_id"
			return
		}
		res.OrderID = cmd.OrderID
		res.Status = p.orders[seq-1]
		res.ParcelStatus, _ = p.parcel(seq)
		if po := p.pendingOrderAt(seq); po != nil {
			p.orderResult(seq, po, res)
		}
	default:
		panic(fmt.Sprintf("engine: apply of unknown command kind %v", cmd.Kind))
	}
}

func (p *partition) skuResult(slot uint32, res *Result) {
	s := &p.skus[slot]
	t := p.record(slot)
	res.SKUID = t.id
	res.SKU = &SKU{ID: t.id, MerchantID: p.merchants[s.merchant()].m.ID, BrandID: p.interned[t.brand], Title: t.title, Category: p.interned[t.category], Price: s.price(), Stock: int64(s.available)}
	res.Available, res.Reserved, res.Sold = int64(s.available), int64(s.reserved), int64(s.sold)
}

func (p *partition) orderResult(seq uint64, po *pendingOrder, res *Result) {
	res.OrderID = newOrderID(p.id, seq)
	res.Status = p.orders[seq-1]
	res.MerchantID = p.merchants[po.merchant].m.ID
	res.Total = po.total
	res.CreatedAt = po.createdAt
	res.PayBy = po.payBy
}

// mergeItems folds lines of the same SKU into the first of them, keeping
// first-appearance order, and returns the number of lines left. Orders have
// at most 100 lines and usually 1 to 3, so the quadratic scan is cheapest.
func mergeItems(items []Item) int {
	n := 0
	for i := range items {
		merged := false
		for j := 0; j < n; j++ {
			if items[j].ref == items[i].ref {
				items[j].Quantity += items[i].Quantity
				merged = true
				break
			}
		}
		if !merged {
			items[n] = items[i]
			n++
		}
	}
	return n
}

func (c *core) placeOrder(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	o := &cmd.Order
	merchant := p.skus[o.Items[0].ref.slot()].merchant()
	for i := range o.Items {
		it := &o.Items[i]
		if it.ref.partition() != p.id {
			panic(fmt.Sprintf("engine: order item %q routed to partition %d but lives in %d", it.SKUID, p.id, it.ref.partition()))
		}
		if p.skus[it.ref.slot()].merchant() != merchant {
			res.Code, res.Field = CodeInvalidArgument, "items"
			return
		}
	}
	var keyHash uint64
	var keyMinted int64
	if o.IdempotencyKey != "" {
		keyHash = o.stored.keyHash
		if keyHash == 0 {
			keyHash = hashString(o.IdempotencyKey) | 1 // never zero: zero means "no key"
		}
		var done bool
		if keyMinted, done = c.keyedOrder(p, now, o, keyHash, res); done {
			return
		}
	}
	if o.DealID != "" {
		c.placeDealOrder(p, now, o, keyHash, keyMinted, res, out)
		return
	}
	n := mergeItems(o.Items)
	o.Items = o.Items[:n]
	items := o.Items
	var total int64
	for i := range items {
		it := &items[i]
		if it.Quantity > quantityMax {
			// Lines of one SKU are summed; the sum obeys the same bound
			// as a line, which the journal's reader enforces.
			res.Code, res.Field = CodeInvalidArgument, itemField(i, "quantity")
			return
		}
		s := &p.skus[it.ref.slot()]
		if int64(it.Quantity) > int64(s.available) {
			res.Code, res.SKUID, res.Available = CodeOutOfStock, it.SKUID, int64(s.available)
			return
		}
		it.UnitPrice = s.price()
		it.Amount = it.UnitPrice * int64(it.Quantity)
		total += it.Amount
	}
	seq := p.nextSeq()
	ev := &out.ev
	// Every field an OrderPlaced event has is set, and only those: the
	// scratch event holds the fields of every kind (some 700 bytes, most
	// of them pointers), and clearing it all was a noticeable part of an
	// order. What other kinds left in it is read neither by evolve nor by
	// appendEvent for this kind.
	ev.Kind, ev.Partition, ev.At = EventOrderPlaced, p.id, now
	ev.OrderID = newOrderID(p.id, seq)
	ev.BuyerID, ev.MerchantID = o.BuyerID, p.merchants[merchant].m.ID
	ev.Channel, ev.Region, ev.DealID = o.Channel, o.Region, o.DealID
	ev.Items, ev.Total, ev.PayBy = items, total, now+c.paymentTimeout
	ev.KeyHash, ev.RequestHash, ev.KeyMinted = keyHash, o.RequestHash, keyMinted
	c.emit(p, ev, out)
	res.OrderID = ev.OrderID
	res.Status = StatusPending
	res.MerchantID = ev.MerchantID
	res.Total = total
	res.CreatedAt = now
	res.PayBy = ev.PayBy
}

// pendingAt returns the pending order seq of cmd, expiring it first if its
// time is up (expiry runs in bounded steps per batch, so an order may be
// overdue but not yet expired). ok is false when res already holds the
// answer.
func (c *core) pendingAt(p *partition, now int64, id OrderID, res *Result, out *emitter) (*pendingOrder, bool) {
	seq := id.Seq()
	if seq == 0 || seq >= p.nextSeq() {
		res.Code, res.Field = CodeNotFound, "order_id"
		return nil, false
	}
	res.OrderID = id
	if p.orders[seq-1] == StatusPending {
		po := p.pendingOrderAt(seq)
		if po.payBy <= now {
			c.emitOrderEnd(p, EventOrderExpired, seq, now, out)
		} else {
			return po, true
		}
	}
	res.Status = p.orders[seq-1]
	return nil, false
}

func (c *core) emitOrderEnd(p *partition, kind EventKind, seq uint64, now int64, out *emitter) {
	ev := &out.ev
	// Only the fields of the kind, as in placeOrder.
	ev.Kind, ev.Partition, ev.At, ev.OrderID = kind, p.id, now, newOrderID(p.id, seq)
	c.emit(p, ev, out)
}

func (c *core) pay(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	po, ok := c.pendingAt(p, now, cmd.OrderID, res, out)
	if !ok {
		switch res.Status {
		case StatusCancelled, StatusExpired:
			res.Code = CodeInvalidState
		}
		return
	}
	if cmd.Amount != po.total {
		res.Code, res.Field, res.Total = CodePaymentMismatch, "amount", po.total
		return
	}
	p.orderResult(cmd.OrderID.Seq(), po, res)
	c.emitOrderEnd(p, EventOrderPaid, cmd.OrderID.Seq(), now, out)
	res.Status, res.ChangedAt = StatusPaid, now
}

func (c *core) cancel(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	po, ok := c.pendingAt(p, now, cmd.OrderID, res, out)
	if !ok {
		switch res.Status {
		case StatusPaid, StatusExpired:
			res.Code = CodeInvalidState
		}
		return
	}
	p.orderResult(cmd.OrderID.Seq(), po, res)
	c.emitOrderEnd(p, EventOrderCancelled, cmd.OrderID.Seq(), now, out)
	res.Status, res.ChangedAt = StatusCancelled, now
}

// expire ends at most max overdue orders of p and returns how many.
func (c *core) expire(p *partition, now int64, max int, out *emitter) int {
	n := 0
	for n < max && p.expireCursor < p.nextSeq() {
		seq := p.expireCursor
		if p.orders[seq-1] == StatusPending {
			if p.pendingOrderAt(seq).payBy > now {
				break
			}
			c.emitOrderEnd(p, EventOrderExpired, seq, now, out)
			n++
		}
		p.expireCursor++
	}
	return n
}

func validID(s string) bool { return s != "" && len(s) <= idLengthMax }

func (c *core) upsertBrand(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	b := cmd.Brand
	if b == nil {
		res.Code, res.Field = CodeInvalidArgument, "brand"
		return
	}
	switch {
	case !validID(b.ID):
		res.Code, res.Field = CodeInvalidArgument, "brand_id"
		return
	case len(b.Name) > textMax:
		res.Code, res.Field = CodeInvalidArgument, "name"
		return
	case b.LastYearGMV < 0:
		res.Code, res.Field = CodeInvalidArgument, "last_year_gmv"
		return
	}
	ev := &out.ev
	*ev = Event{Kind: EventBrandUpserted, Partition: p.id, At: now, Brand: *b}
	c.emit(p, ev, out)
}

func (c *core) upsertMerchant(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	m := cmd.Merchant
	if m == nil {
		res.Code, res.Field = CodeInvalidArgument, "merchant"
		return
	}
	switch {
	case !validID(m.ID):
		res.Code, res.Field = CodeInvalidArgument, "merchant_id"
		return
	case len(m.Name) > textMax:
		res.Code, res.Field = CodeInvalidArgument, "name"
		return
	case m.Kind < MerchantBrandStore || m.Kind > MerchantTrader:
		res.Code, res.Field = CodeInvalidArgument, "kind"
		return
	}
	if m.BrandID != "" {
		if _, ok := c.brand(m.BrandID); !ok {
			res.Code, res.Field = CodeNotFound, "brand_id"
			return
		}
	}
	if _, ok := p.merchantSlots[m.ID]; !ok && len(p.merchants) >= merchantSlotsMax {
		// A SKU keeps its merchant's slot in 24 bits (skuState).
		res.Code = CodeOverloaded
		return
	}
	ev := &out.ev
	*ev = Event{Kind: EventMerchantUpserted, Partition: p.id, At: now, Merchant: *m}
	c.emit(p, ev, out)
}

func (c *core) upsertSKU(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	s := cmd.SKU
	if s == nil {
		res.Code, res.Field = CodeInvalidArgument, "sku"
		return
	}
	switch {
	case !validID(s.ID):
		res.Code, res.Field = CodeInvalidArgument, "sku_id"
		return
	case len(s.Title) > textMax:
		res.Code, res.Field = CodeInvalidArgument, "title"
		return
	case len(s.Category) > textMax:
		res.Code, res.Field = CodeInvalidArgument, "category"
		return
	case s.Price < 0 || s.Price > priceMax:
		res.Code, res.Field = CodeInvalidArgument, "price"
		return
	case !s.StockOmitted && (s.Stock < 0 || s.Stock > stockMax):
		res.Code, res.Field = CodeInvalidArgument, "stock"
		return
	case s.StockOmitted && s.StockCompared:
		// An expectation without a stock to set compares nothing.
		res.Code, res.Field = CodeInvalidArgument, "stock_expected"
		return
	case s.StockCompared && (s.StockExpected < 0 || s.StockExpected > stockTotal):
		res.Code, res.Field = CodeInvalidArgument, "stock_expected"
		return
	}
	merchant, ok := p.merchantSlots[s.MerchantID]
	if !ok {
		res.Code, res.Field = CodeNotFound, "merchant_id"
		return
	}
	// A merchant's own brand exists (it was checked when the merchant was
	// put, and brands are never removed): most SKUs need no look-up.
	if s.BrandID != p.merchants[merchant].m.BrandID {
		if _, ok := c.brand(s.BrandID); !ok {
			res.Code, res.Field = CodeNotFound, "brand_id"
			return
		}
	}
	// stock is the available stock the SKU has after this command: the
	// event carries it, so replay sets it without deciding again.
	stock := s.Stock
	if !p.text.room(skuRecordBytesMax) {
		// The partition's text arena is full (4 GiB of ids and titles,
		// and the records that text changes left behind): a bound far
		// past any catalog, refused like a full queue, since the upsert
		// may write a record.
		res.Code = CodeOverloaded
		return
	}
	var slot uint32
	id := "existing"
	if ref, ok := c.dir.lookup(s.ID); ok {
		slot = ref.slot()
		if ref.partition() != p.id || p.skus[slot].merchant() != merchant {
			// A SKU never moves between merchants: its orders and its
			// partition are tied to its merchant.
			res.Code, res.Field = CodeInvalidArgument, "merchant_id"
			return
		}
		st := &p.skus[slot]
		switch {
		case s.StockOmitted:
			stock = int64(st.available)
		case !s.StockCompared:
			// Setting the stock of a SKU that has sold units without
			// saying what the caller last read would resell them.
			res.Code, res.Field = CodeInvalidArgument, "stock_expected"
			return
		case s.StockExpected != int64(st.available):
			res.Code, res.SKUID, res.Available = CodeConflict, p.skuID(slot), int64(st.available)
			return
		case p.stockHeld(slot)-int64(st.available)+s.Stock > stockTotal:
			// Units carved into open deals come back to the SKU.
			res.Code, res.Field = CodeInvalidArgument, "stock"
			return
		}
	} else {
		switch {
		case ref == skuRefAmbiguous:
			// Two merchants' SKUs hold the id (ambiguous.go): neither
			// can be told from the other by it any more.
			ambiguous(res, "sku_id")
			return
		case s.StockOmitted:
			res.Code, res.Field = CodeInvalidArgument, "stock"
			return
		case s.StockCompared && s.StockExpected != 0:
			// A SKU that does not exist has nothing available.
			res.Code, res.SKUID, res.Available = CodeConflict, s.ID, 0
			return
		}
		slot = uint32(len(p.skus))
		// Claim the id now: another partition's worker may be creating the
		// same id for another merchant at this moment.
		if held, inserted := c.dir.insert(s.ID, newSKURef(p.id, slot)); !inserted {
			if held == skuRefAmbiguous {
				ambiguous(res, "sku_id")
				return
			}
			res.Code, res.Field = CodeInvalidArgument, "merchant_id"
			return
		}
		id = ""
	}
	ev := &out.ev
	*ev = Event{Kind: EventSKUUpserted, Partition: p.id, At: now, SKU: *s, SKUSlot: slot}
	// The event holds the outcome, not the request: the precondition was
	// decided here and replay must not see it.
	ev.SKU.Stock = stock
	ev.SKU.StockOmitted, ev.SKU.StockCompared, ev.SKU.StockExpected = false, false, 0
	if id == "" {
		// The directory holds the id already, claimed above for this
		// slot: evolveSKU need not look again.
		p.claimedSlot = slot + 1
	}
	c.emit(p, ev, out)
	// The upsert's answer is the command's own SKU, whose text and price
	// the SKU now has, with the stock figures: none is built here, one
	// allocation less per SKU of a catalog import.
	st := &p.skus[slot]
	res.SKUID, res.SKU = p.skuID(slot), s
	res.Available, res.Reserved, res.Sold = int64(st.available), int64(st.reserved), int64(st.sold)
}

func (c *core) adjustStock(p *partition, now int64, cmd *Command, res *Result, out *emitter) {
	ref, ok := c.dir.lookup(cmd.SKUID)
	if !ok || ref.partition() != p.id {
		unresolvedSKU(res, ref, "sku_id")
		return
	}
	slot := ref.slot()
	st := &p.skus[slot]
	next := int64(st.available) + cmd.Delta
	if next < 0 {
		res.Code, res.SKUID, res.Available = CodeOutOfStock, cmd.SKUID, int64(st.available)
		return
	}
	// Units carved into open deals count: they come back to the SKU.
	if cmd.Delta > stockMax || p.stockHeld(slot)+cmd.Delta > stockTotal {
		res.Code, res.Field = CodeInvalidArgument, "delta"
		return
	}
	ev := &out.ev
	*ev = Event{Kind: EventStockAdjusted, Partition: p.id, At: now, SKUSlot: slot, SKUID: p.skuID(slot), Delta: cmd.Delta}
	c.emit(p, ev, out)
	p.skuResult(slot, res)
}

// evolve applies a decided event to p. It is the only code that changes
// partition state, used alike when deciding and when replaying, so it
// checks nothing a decision already checked, but asserts what must hold.
func (c *core) evolve(p *partition, ev *Event) {
	if ev.At > p.lastAt {
		p.lastAt = ev.At
	}
	switch ev.Kind {
	case EventBrandUpserted:
		b := ev.Brand
		b.ID, b.Name, b.Country = strings.Clone(b.ID), strings.Clone(b.Name), strings.Clone(b.Country)
		p.brandsMu.Lock()
		p.brands[b.ID] = &b
		p.brandsMu.Unlock()
	case EventMerchantUpserted:
		m := cloneMerchant(ev.Merchant)
		// Other goroutines read merchants through Engine.Merchant: the
		// worker writes under the lock (its own reads need none).
		p.merchantsMu.Lock()
		if slot, ok := p.merchantSlots[m.ID]; ok {
			p.merchants[slot] = merchantState{m: m}
		} else {
			p.merchantSlots[m.ID] = uint32(len(p.merchants))
			p.merchants = append(p.merchants, merchantState{m: m})
		}
		p.merchantsMu.Unlock()
	case EventSKUUpserted:
		c.evolveSKU(p, ev)
	case EventStockAdjusted:
		st := &p.skus[ev.SKUSlot]
		st.available = int32(int64(st.available) + ev.Delta)
		p.checkSKU(ev.SKUSlot)
		p.checkStockHeld(ev.SKUSlot)
		p.updateSoldOut(ev.SKUSlot)
	case EventOrderPlaced:
		c.evolvePlaced(p, ev)
	case EventOrderPaid, EventOrderCancelled, EventOrderExpired:
		c.evolveEnded(p, ev)
	case EventParcelScanned:
		c.evolveScanned(p, ev)
	case EventChannelPut, EventDealPut, EventDealEnded:
		c.evolveLive(p, ev)
	default:
		panic(fmt.Sprintf("engine: evolve of unknown event kind %v", ev.Kind))
	}
}

func (c *core) evolveSKU(p *partition, ev *Event) {
	s := &ev.SKU
	merchant, ok := p.merchantSlots[s.MerchantID]
	if !ok {
		panic(fmt.Sprintf("engine: partition %d sku %q of unknown merchant %q", p.id, s.ID, s.MerchantID))
	}
	slot := ev.SKUSlot
	fresh := int(slot) == len(p.skus)
	switch {
	case fresh:
		// Claimed when the command was decided (upsertSKU says so in
		// claimedSlot); replay and a follower claim it here, where another
		// partition's SKU of the same id makes it ambiguous (ambiguous.go).
		if p.claimedSlot != slot+1 && !c.shareSKU(p, s.ID, slot) {
			ref, _ := c.dir.lookup(s.ID)
			panic(fmt.Sprintf("engine: sku %q created in partition %d slot %d but the directory has %x", s.ID, p.id, slot, uint64(ref)))
		}
		p.claimedSlot = 0
		p.skus = append(p.skus, newSKUState(merchant))
	case int(slot) > len(p.skus):
		panic(fmt.Sprintf("engine: partition %d sku %q slot %d past the end %d", p.id, s.ID, slot, len(p.skus)))
	}
	st := &p.skus[slot]
	st.setPrice(s.Price)
	st.available = int32(s.Stock)
	p.setRecord(slot, &skuRecord{id: s.ID, title: s.Title, brand: p.internBrand(merchant, s.BrandID), category: p.intern(s.Category)}, fresh)
	p.checkSKU(slot)
	p.checkStockHeld(slot)
	p.updateSoldOut(slot)
}

func (c *core) evolvePlaced(p *partition, ev *Event) {
	seq := ev.OrderID.Seq()
	if seq != p.nextSeq() {
		panic(fmt.Sprintf("engine: partition %d order seq %d placed but next is %d", p.id, seq, p.nextSeq()))
	}
	po := p.newPending()
	po.total, po.createdAt, po.payBy = ev.Total, ev.At, ev.PayBy
	if ev.DealID != "" {
		c.evolveDealPlaced(p, ev, po, seq)
		p.orders = appendDoubling(p.orders, StatusPending)
		p.addPending(seq, po)
		if ev.KeyHash != 0 {
			p.remember(c.keys, ev.KeyHash, ev.RequestHash, seq, ev.At, ev.KeyMinted, c.idempotencyWindow, c.idempotencyKeysMax, c.disk != nil)
		}
		return
	}
	po.count = uint16(len(ev.Items))
	for i := range ev.Items {
		it := &ev.Items[i]
		slot := it.ref.slot()
		if int(slot) >= len(p.skus) {
			panic(fmt.Sprintf("engine: partition %d order %d item slot %d past the end %d", p.id, seq, slot, len(p.skus)))
		}
		if i == 0 {
			po.merchant = p.skus[slot].merchant()
		}
		pi := pendingItem{slot: slot, quantity: uint32(it.Quantity)}
		if i < inlineItems {
			po.inline[i] = pi
		} else {
			po.more = append(po.more, pi)
		}
		st := &p.skus[slot]
		st.available -= it.Quantity
		st.reserved += it.Quantity
		p.checkSKU(slot)
		if st.available == 0 {
			p.soldOut.set(slot, true)
		}
	}
	p.orders = appendDoubling(p.orders, StatusPending)
	p.addPending(seq, po)
	if ev.KeyHash != 0 {
		p.remember(c.keys, ev.KeyHash, ev.RequestHash, seq, ev.At, ev.KeyMinted, c.idempotencyWindow, c.idempotencyKeysMax, c.disk != nil)
	}
}

func (c *core) evolveEnded(p *partition, ev *Event) {
	seq := ev.OrderID.Seq()
	po := p.pendingOrderAt(seq)
	if po == nil || p.orders[seq-1] != StatusPending {
		panic(fmt.Sprintf("engine: partition %d %v for order %d which is not pending", p.id, ev.Kind, seq))
	}
	status := StatusPaid
	switch ev.Kind {
	case EventOrderCancelled:
		status = StatusCancelled
	case EventOrderExpired:
		status = StatusExpired
	}
	if po.deal != 0 {
		c.evolveDealOrderEnded(p, po, seq, status)
	}
	for i := 0; po.deal == 0 && i < int(po.count); i++ {
		pi := po.item(i)
		st := &p.skus[pi.slot]
		q := int32(pi.quantity)
		st.reserved -= q
		if status == StatusPaid {
			st.sold += q
		} else {
			st.available += q
			if st.available == q {
				p.soldOut.set(pi.slot, false)
			}
		}
		p.checkSKU(pi.slot)
	}
	p.orders[seq-1] = status
	if status == StatusPaid {
		// A parcel exists exactly when its order is paid.
		p.setParcel(seq, ParcelCreated, 0)
	}
	p.removePending(seq)
	p.freePending(po)
}

// internBrand returns the number of brand, a SKU's brand, in p's table:
// that of the SKU's merchant is kept beside the merchant.
func (p *partition) internBrand(merchant uint32, brand string) uint32 {
	ms := &p.merchants[merchant]
	if brand != ms.m.BrandID {
		return p.intern(brand)
	}
	if ms.brand == 0 && brand != "" {
		ms.brand = p.intern(brand)
	}
	return ms.brand
}

// intern returns the number of a brand id or category in p's table,
// adding it if new: millions of SKUs name a few thousand of them. The table
// is the partition's own (only its worker touches it).
func (p *partition) intern(s string) uint32 {
	if n, ok := p.internIndex[s]; ok {
		return n
	}
	n := uint32(len(p.interned))
	v := strings.Clone(s)
	p.interned = append(p.interned, v)
	p.internIndex[v] = n
	return n
}

// cloneMerchant copies a merchant's strings, which may alias a journal
// record or a snapshot buffer.
func cloneMerchant(m Merchant) Merchant {
	m.ID, m.Name, m.BrandID = strings.Clone(m.ID), strings.Clone(m.Name), strings.Clone(m.BrandID)
	m.Industry, m.Region = strings.Clone(m.Industry), strings.Clone(m.Region)
	return m
}
