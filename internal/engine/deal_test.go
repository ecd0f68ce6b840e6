package engine

import (
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// dealModel is the naive reference for deals: one SKU, its deals and the
// orders on them, kept as plain counters.
type dealModel struct {
	available, reserved, sold int64 // the SKU's
	deals                     map[string]*modelDeal
	orders                    map[OrderID]*modelDealOrder
	keys                      map[string]modelDealKey
}

// modelDealKey is an idempotency key's first successful order.
type modelDealKey struct {
	hash uint64
	id   OrderID
}

type modelDeal struct {
	d                              Deal
	left, reserved, sold, returned int64
	ended                          bool
	buyers                         map[string]int64
}

type modelDealOrder struct {
	deal     string // "" for an order on the SKU itself
	buyer    string
	quantity int64
	payBy    int64
	total    int64
	status   OrderStatus
}

// end ends a pending order in the model.
func (m *dealModel) end(o *modelDealOrder, status OrderStatus) {
	o.status = status
	m.reserved -= o.quantity
	if o.deal == "" {
		if status == StatusPaid {
			m.sold += o.quantity
		} else {
			m.available += o.quantity
		}
		return
	}
	d := m.deals[o.deal]
	d.reserved -= o.quantity
	switch {
	case status == StatusPaid:
		m.sold += o.quantity
		d.sold += o.quantity
		return
	case d.ended:
		m.available += o.quantity
		d.returned += o.quantity
	default:
		d.left += o.quantity
	}
	d.buyers[o.buyer] -= o.quantity
}

// advance expires overdue orders and ends deals whose window closed, as a
// worker does before a batch.
func (m *dealModel) advance(now int64) {
	for _, o := range m.orders {
		if o.status == StatusPending && o.payBy <= now {
			m.end(o, StatusExpired)
		}
	}
	for _, d := range m.deals {
		if !d.ended && d.d.EndsAt <= now {
			m.endDeal(d)
		}
	}
}

func (m *dealModel) endDeal(d *modelDeal) {
	d.ended = true
	m.available += d.left
	d.returned += d.left
	d.left = 0
}

// liveHarness is a harness with brand b, merchant m, SKU s (price 1,000,
// stock units) and channel c.
func liveHarness(t interface{ Fatalf(string, ...any) }, stock int64) *harness {
	h := newHarness(2)
	for _, cmd := range []Command{
		{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}},
		{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Name: "M", BrandID: "b", Kind: MerchantFactory}},
		{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 1000, Stock: stock}},
		{Kind: KindPutChannel, Channel: &Channel{ID: "c", Title: "C", Host: "H", StartsAt: 0, EndsAt: 1 << 40}},
	} {
		if r := h.do(cmd); !r.OK() {
			t.Fatalf("%v: %v", cmd.Kind, r.Err())
		}
	}
	return h
}

// TestDealsMatchModel runs random deal commands (put, order on the right or
// wrong channel, pay, cancel, end, time passing to a window's edge) against
// the engine core and the model, then checks that replay of the records
// and a snapshot both rebuild the same state.
func TestDealsMatchModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const stock = 30
		h := liveHarness(t, stock)
		h.now = 1_000
		m := &dealModel{available: stock, deals: map[string]*modelDeal{}, orders: map[OrderID]*modelDealOrder{}, keys: map[string]modelDealKey{}}
		dealIDs := []string{"d0", "d1", "d2"}
		buyers := []string{"u0", "u1", "u2"}
		var orderIDs []OrderID
		steps := rapid.IntRange(1, 150).Draw(t, "steps")
		for step := 0; step < steps; step++ {
			switch rapid.IntRange(0, 7).Draw(t, "op") {
			case 0: // put a deal
				id := rapid.SampledFrom(dealIDs).Draw(t, "deal")
				start := h.now + int64(rapid.IntRange(-5, 5).Draw(t, "start"))
				d := Deal{ID: id, ChannelID: "c", SKUID: "s", Price: int64(rapid.IntRange(1, 900).Draw(t, "price")),
					Stock: int64(rapid.IntRange(1, 15).Draw(t, "stock")), StartsAt: start,
					EndsAt: start + int64(rapid.IntRange(1, 20).Draw(t, "length")), LimitPerBuyer: int64(rapid.IntRange(0, 3).Draw(t, "limit"))}
				if old, ok := m.deals[id]; ok && rapid.Bool().Draw(t, "same") {
					d = old.d
				}
				r := h.do(Command{Kind: KindPutDeal, Deal: &d})
				m.advance(h.now)
				want := CodeOK
				old, exists := m.deals[id]
				switch {
				case exists && old.d != d:
					want = CodeConflict
				case !exists && d.Stock > m.available:
					want = CodeOutOfStock
				}
				if r.Code != want {
					t.Fatalf("put deal %+v: got %v, want %v", d, r.Code, want)
				}
				if want == CodeOK && !exists {
					m.deals[id] = &modelDeal{d: d, left: d.Stock, buyers: map[string]int64{}}
					m.available -= d.Stock
				}
			case 1, 2: // an order on a deal
				id := rapid.SampledFrom(dealIDs).Draw(t, "deal")
				buyer := rapid.SampledFrom(buyers).Draw(t, "buyer")
				q := int64(rapid.IntRange(1, 4).Draw(t, "quantity"))
				channel := "live:c"
				if rapid.IntRange(0, 5).Draw(t, "wrong channel") == 0 {
					channel = rapid.SampledFrom([]string{"app", "live:x", "live:", "live:cc"}).Draw(t, "channel")
				}
				// A keyed order skips the router's gate (it may be the replay
				// of one that took the last units) and is decided whole in
				// the partition.
				key := rapid.SampledFrom([]string{"", "", "k0", "k1", "k2"}).Draw(t, "key")
				hash := uint64(rapid.IntRange(1, 2).Draw(t, "request hash"))
				r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: buyer, Channel: channel, DealID: id, IdempotencyKey: key, RequestHash: hash,
					Items: []Item{{SKUID: "s", Quantity: int32(q)}}}})
				m.advance(h.now)
				d, ok := m.deals[id]
				k, known := m.keys[key]
				want := CodeOK
				switch {
				case !ok:
					want = CodeNotFound
				case key != "" && known && k.hash != hash:
					want = CodeIdempotencyMismatch
				case key != "" && known:
					if !r.OK() || !r.Replayed || r.OrderID != k.id {
						t.Fatalf("replay of key %s: got %v replayed %v order %v, want the first order %v", key, r.Code, r.Replayed, r.OrderID, k.id)
					}
					continue
				case channel != "live:c":
					// Before the window and the stock, at the router too
					// when the deal is sold out or ended.
					want = CodeInvalidArgument
				case d.ended || h.now < d.d.StartsAt || h.now >= d.d.EndsAt:
					want = CodeDealNotActive
				case q > d.left:
					want = CodeOutOfStock
				case d.d.LimitPerBuyer > 0 && d.buyers[buyer]+q > d.d.LimitPerBuyer:
					want = CodeLimitExceeded
				}
				if r.Code != want {
					t.Fatalf("order on %s by %s of %d on %q at %d: got %v (%s), want %v; deal %+v", id, buyer, q, channel, h.now, r.Code, r.Field, want, d)
				}
				if want != CodeOK {
					break
				}
				if r.Total != q*d.d.Price {
					t.Fatalf("order on %s: total %d, want %d", id, r.Total, q*d.d.Price)
				}
				d.left -= q
				d.reserved += q
				d.buyers[buyer] += q
				m.reserved += q
				m.orders[r.OrderID] = &modelDealOrder{deal: id, buyer: buyer, quantity: q, payBy: r.PayBy, total: r.Total, status: StatusPending}
				orderIDs = append(orderIDs, r.OrderID)
				if key != "" {
					m.keys[key] = modelDealKey{hash: hash, id: r.OrderID}
				}
			case 3: // an order on the SKU itself
				q := int64(rapid.IntRange(1, 4).Draw(t, "quantity"))
				r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "v", Items: []Item{{SKUID: "s", Quantity: int32(q)}}}})
				m.advance(h.now)
				want := CodeOK
				if q > m.available {
					want = CodeOutOfStock
				}
				if r.Code != want {
					t.Fatalf("sku order of %d with %d available: got %v, want %v", q, m.available, r.Code, want)
				}
				if want == CodeOK {
					m.available -= q
					m.reserved += q
					m.orders[r.OrderID] = &modelDealOrder{quantity: q, payBy: r.PayBy, total: r.Total, status: StatusPending}
					orderIDs = append(orderIDs, r.OrderID)
				}
			case 4: // pay or cancel
				if len(orderIDs) == 0 {
					break
				}
				id := rapid.SampledFrom(orderIDs).Draw(t, "order")
				pay := rapid.Bool().Draw(t, "pay")
				o := m.orders[id]
				cmd := Command{Kind: KindCancel, OrderID: id}
				if pay {
					cmd = Command{Kind: KindPay, OrderID: id, Amount: o.total}
				}
				r := h.do(cmd)
				m.advance(h.now)
				want := CodeOK
				switch {
				case o.status == StatusPending && pay:
					m.end(o, StatusPaid)
				case o.status == StatusPending:
					m.end(o, StatusCancelled)
				case o.status == StatusPaid && !pay, o.status != StatusPaid && pay:
					want = CodeInvalidState
				case o.status == StatusExpired:
					want = CodeInvalidState
				}
				if r.Code != want {
					t.Fatalf("%v of %v (%v): got %v, want %v", cmd.Kind, id, o.status, r.Code, want)
				}
			case 5: // end a deal early
				id := rapid.SampledFrom(dealIDs).Draw(t, "deal")
				r := h.do(Command{Kind: KindEndDeal, Deal: &Deal{ID: id}})
				m.advance(h.now)
				d, ok := m.deals[id]
				if !ok {
					if r.Code != CodeNotFound {
						t.Fatalf("end of unknown deal: %v", r.Code)
					}
					break
				}
				if !r.OK() {
					t.Fatalf("end deal %s: %v", id, r.Err())
				}
				if !d.ended {
					m.endDeal(d)
				}
			case 6: // time passes, often to a window's exact edge
				next := h.now + int64(rapid.IntRange(1, 10).Draw(t, "dt"))
				if len(m.deals) > 0 && rapid.Bool().Draw(t, "to an edge") {
					d := m.deals[rapid.SampledFrom(dealIDs).Draw(t, "deal")]
					if d != nil {
						next = max(h.now, d.d.StartsAt+int64(rapid.IntRange(-1, 0).Draw(t, "start edge")))
						if rapid.Bool().Draw(t, "end") {
							next = max(h.now, d.d.EndsAt+int64(rapid.IntRange(-1, 0).Draw(t, "end edge")))
						}
					}
				}
				h.now = next
			case 7: // a payment timeout passes
				h.now += modelTimeout
			}
			checkDealBooks(t, h, m)
		}
		checkReplayAndSnapshot(t, h)
	})
}

// checkDealBooks compares the SKU and every deal with the model.
func checkDealBooks(t *rapid.T, h *harness, m *dealModel) {
	r := h.do(Command{Kind: KindGetSKU, SKUID: "s"})
	m.advance(h.now)
	if r.Available != m.available || r.Reserved != m.reserved || r.Sold != m.sold {
		t.Fatalf("sku: engine available %d reserved %d sold %d, model %d %d %d", r.Available, r.Reserved, r.Sold, m.available, m.reserved, m.sold)
	}
	for id, d := range m.deals {
		r := h.do(Command{Kind: KindGetDeal, Deal: &Deal{ID: id}})
		if !r.OK() {
			t.Fatalf("get deal %s: %v", id, r.Err())
		}
		g := r.Deal
		if g.Left != d.left || g.Reserved != d.reserved || g.Sold != d.sold || g.Returned != d.returned || g.Ended != d.ended {
			t.Fatalf("deal %s: engine left %d reserved %d sold %d returned %d ended %v, model %d %d %d %d %v",
				id, g.Left, g.Reserved, g.Sold, g.Returned, g.Ended, d.left, d.reserved, d.sold, d.returned, d.ended)
		}
		for buyer, n := range d.buyers {
			if d.d.LimitPerBuyer > 0 && n > d.d.LimitPerBuyer {
				t.Fatalf("deal %s: buyer %s holds %d units, over the limit %d", id, buyer, n, d.d.LimitPerBuyer)
			}
		}
	}
}

// checkReplayAndSnapshot replays the harness's records into a new core and
// round-trips every partition through a snapshot; both must equal the live
// state.
func checkReplayAndSnapshot(t interface{ Fatalf(string, ...any) }, h *harness) {
	replayed := newCore(len(h.c.partitions), modelTimeout, 1<<40, 1<<20)
	for _, rec := range h.records {
		err := DecodeRecord(rec, len(replayed.partitions), func(ev *Event) error {
			replayed.evolve(replayed.partitions[ev.Partition], ev)
			return nil
		})
		if err != nil {
			t.Fatalf("decode record: %v", err)
		}
	}
	if got, want := replayed.dump(), h.c.dump(); got != want {
		t.Fatalf("replayed state differs:\n%s\nlive:\n%s", got, want)
	}
	restored := newCore(len(h.c.partitions), modelTimeout, 1<<40, 1<<20)
	for i, p := range h.c.partitions {
		data := encodePartition(nil, p)
		if err := restored.decodePartition(restored.partitions[i], data, snapshotVersion); err != nil {
			t.Fatalf("decode snapshot of partition %d: %v", i, err)
		}
	}
	if got, want := restored.dump(), h.c.dump(); got != want {
		t.Fatalf("snapshot state differs:\n%s\nlive:\n%s", got, want)
	}
}

// TestDealWindowEdges checks the window to the nanosecond: one before the
// start and at the end the deal is not active; at the start and one before
// the end it is.
func TestDealWindowEdges(t *testing.T) {
	const start, end = 1_000_000, 2_000_000
	tests := []struct {
		name string
		now  int64
		want Code
	}{
		{"one nanosecond before the start", start - 1, CodeDealNotActive},
		{"at the start", start, CodeOK},
		{"one nanosecond before the end", end - 1, CodeOK},
		{"at the end", end, CodeDealNotActive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := liveHarness(t, 100)
			h.now = 10
			if r := h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 500, Stock: 10, StartsAt: start, EndsAt: end}}); !r.OK() {
				t.Fatalf("put deal: %v", r.Err())
			}
			h.now = tt.now
			r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s", Quantity: 1}}}})
			if r.Code != tt.want {
				t.Fatalf("order at %d: got %v, want %v", tt.now, r.Code, tt.want)
			}
		})
	}
}

// TestDealStockReturnsOnce checks that a deal's unsold stock returns to
// the SKU once, whether it ends by its window or by EndDeal, and that an
// order cancelled after the end returns its units to the SKU.
func TestDealStockReturnsOnce(t *testing.T) {
	for _, byCall := range []bool{false, true} {
		h := liveHarness(t, 100)
		h.now = 10
		if r := h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 500, Stock: 40, StartsAt: 0, EndsAt: 50}}); !r.OK() {
			t.Fatalf("put deal: %v", r.Err())
		}
		o := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s", Quantity: 5}}}})
		if !o.OK() || o.Total != 2500 {
			t.Fatalf("deal order: %v total %d", o.Err(), o.Total)
		}
		if r := h.do(Command{Kind: KindGetSKU, SKUID: "s"}); r.Available != 60 || r.Reserved != 5 {
			t.Fatalf("sku during the deal: available %d reserved %d, want 60 and 5", r.Available, r.Reserved)
		}
		for range 2 {
			if byCall {
				if r := h.do(Command{Kind: KindEndDeal, Deal: &Deal{ID: "d"}}); !r.OK() || !r.Deal.Ended || r.Deal.Returned != 35 {
					t.Fatalf("end deal: %v %+v", r.Err(), r.Deal)
				}
			} else {
				h.now = 50
			}
			if r := h.do(Command{Kind: KindGetSKU, SKUID: "s"}); r.Available != 95 || r.Reserved != 5 {
				t.Fatalf("sku after the end: available %d reserved %d, want 95 and 5", r.Available, r.Reserved)
			}
		}
		if r := h.do(Command{Kind: KindCancel, OrderID: o.OrderID}); !r.OK() {
			t.Fatalf("cancel: %v", r.Err())
		}
		if r := h.do(Command{Kind: KindGetSKU, SKUID: "s"}); r.Available != 100 || r.Reserved != 0 {
			t.Fatalf("sku after the cancel: available %d reserved %d, want 100 and 0", r.Available, r.Reserved)
		}
	}
}

// TestOldSnapshotReadWithoutDeals checks that a version 2 snapshot, written
// before deals existed, is read as holding none.
func TestOldSnapshotReadWithoutDeals(t *testing.T) {
	h := liveHarness(t, 100)
	o := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 2}}}})
	if !o.OK() {
		t.Fatalf("order: %v", o.Err())
	}
	restored := newCore(len(h.c.partitions), modelTimeout, 1<<40, 1<<20)
	for i, p := range h.c.partitions {
		data := encodePartitionVersion(nil, p, snapshotVersionV2)
		if err := restored.decodePartition(restored.partitions[i], data, snapshotVersionV2); err != nil {
			t.Fatalf("decode version 2 snapshot of partition %d: %v", i, err)
		}
		if len(restored.partitions[i].deals) != 0 || len(restored.partitions[i].channels) != 0 {
			t.Fatalf("a version 2 snapshot restored deals or channels")
		}
	}
	r := Request{Command: Command{Kind: KindGetSKU, SKUID: "s"}}
	p, _ := restored.route(&r)
	var em emitter
	em.reset(nil)
	restored.apply(restored.partitions[p], 0, &r.Command, &r.Result, &em)
	if r.Result.Available != 98 || r.Result.Reserved != 2 {
		t.Fatalf("sku from a version 2 snapshot: available %d reserved %d", r.Result.Available, r.Result.Reserved)
	}
}

// TestDealUnitsCountInStockBound checks that units carved into running
// deals count in the SKU's stockTotal bound: they come back when a deal
// ends. Before, an admin could raise the available stock as if they were
// gone, and ending the deal overflowed the SKU and panicked (after a
// restart, in replay, every time).
func TestDealUnitsCountInStockBound(t *testing.T) {
	const billion = 1_000_000_000
	tests := []struct {
		name  string
		deals int   // of a billion units each, the SKU topped up by a billion between two
		topUp int64 // added to the available stock after the deals
		cmd   Command
		field string // "" when accepted
	}{
		{"the reviewer's second billion", 1, billion, Command{Kind: KindAdjustStock, SKUID: "s", Delta: billion}, "delta"},
		{"an adjustment to the bound", 2, 0, Command{Kind: KindAdjustStock, SKUID: "s", Delta: stockTotal - 2*billion}, ""},
		{"an adjustment one past the bound", 2, 0, Command{Kind: KindAdjustStock, SKUID: "s", Delta: stockTotal - 2*billion + 1}, "delta"},
		{"a stock set to the bound", 2, 0, Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 1000,
			Stock: stockTotal - 2*billion, StockCompared: true, StockExpected: 0}}, ""},
		{"a stock set one past the bound", 2, 0, Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 1000,
			Stock: stockTotal - 2*billion + 1, StockCompared: true, StockExpected: 0}}, "stock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := liveHarness(t, billion)
			h.now = 10
			for i := range tt.deals {
				id := "d" + strconv.Itoa(i)
				if i > 0 {
					if r := h.do(Command{Kind: KindAdjustStock, SKUID: "s", Delta: billion}); !r.OK() {
						t.Fatalf("adjustment before deal %s: %v", id, r.Err())
					}
				}
				if r := h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: id, ChannelID: "c", SKUID: "s", Price: 500, Stock: billion, StartsAt: 0, EndsAt: 100}}); !r.OK() {
					t.Fatalf("put deal %s: %v", id, r.Err())
				}
			}
			if tt.topUp > 0 {
				if r := h.do(Command{Kind: KindAdjustStock, SKUID: "s", Delta: tt.topUp}); !r.OK() {
					t.Fatalf("top-up: %v", r.Err())
				}
			}
			r := h.do(tt.cmd)
			switch {
			case tt.field == "" && !r.OK():
				t.Fatalf("%v: %v, want accepted", tt.cmd.Kind, r.Err())
			case tt.field != "" && (r.Code != CodeInvalidArgument || r.Field != tt.field):
				t.Fatalf("%v: %v field %q, want invalid argument %q", tt.cmd.Kind, r.Code, r.Field, tt.field)
			}
			before := h.do(Command{Kind: KindGetSKU, SKUID: "s"})
			h.now = 100 // the deals end before the next batch
			after := h.do(Command{Kind: KindGetSKU, SKUID: "s"})
			if want := before.Available + int64(tt.deals)*billion; after.Available != want {
				t.Fatalf("after the deals' end: available %d, want %d", after.Available, want)
			}
			checkReplayAndSnapshot(t, h)
		})
	}
}

// TestDealCarvedUnitsFollowOrders checks the units carved into a running
// deal as its orders take and give back units, and that replay and a
// snapshot rebuild them: a SKU holding stockTotal - 100 units, 60 of them
// carved into a deal and 5 of those in an unpaid order, can grow by 100
// units and no more, whatever the order does.
func TestDealCarvedUnitsFollowOrders(t *testing.T) {
	h := liveHarness(t, stockMax)
	h.now = 10
	for more := int64(stockTotal - 100 - stockMax); more > 0; {
		delta := min(more, stockMax)
		if r := h.do(Command{Kind: KindAdjustStock, SKUID: "s", Delta: delta}); !r.OK() {
			t.Fatalf("adjustment to 100 below the bound: %v", r.Err())
		}
		more -= delta
	}
	if r := h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 500, Stock: 60, StartsAt: 0, EndsAt: 100}}); !r.OK() {
		t.Fatalf("put deal: %v", r.Err())
	}
	o := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s", Quantity: 5}}}})
	if !o.OK() {
		t.Fatalf("deal order: %v", o.Err())
	}
	check := func(step string) {
		t.Helper()
		if r := h.do(Command{Kind: KindAdjustStock, SKUID: "s", Delta: 101}); r.Code != CodeInvalidArgument || r.Field != "delta" {
			t.Fatalf("%s: an adjustment one past the bound: %v field %q, want invalid argument delta", step, r.Code, r.Field)
		}
	}
	check("with an unpaid order")
	if r := h.do(Command{Kind: KindCancel, OrderID: o.OrderID}); !r.OK() {
		t.Fatalf("cancel: %v", r.Err())
	}
	check("after the cancel")
	checkReplayAndSnapshot(t, h)
	if r := h.do(Command{Kind: KindAdjustStock, SKUID: "s", Delta: 100}); !r.OK() {
		t.Fatalf("an adjustment to the bound: %v", r.Err())
	}
	h.now = 100
	if r := h.do(Command{Kind: KindGetSKU, SKUID: "s"}); r.Available != stockTotal {
		t.Fatalf("after the deal's end: available %d, want %d", r.Available, int64(stockTotal))
	}
	checkReplayAndSnapshot(t, h)
}

// TestDealGateAnswersAsThePartition checks the router's answers for a
// sold-out or ended deal: they are the partition's, in its order, so a
// wrong SKU is 422 items and a wrong channel 422 channel before the stock
// or the window is looked at, and a sold-out deal whose window closed but
// which its worker has not yet ended is not active rather than sold out.
func TestDealGateAnswersAsThePartition(t *testing.T) {
	const end = 100
	tests := []struct {
		name    string
		ended   bool  // ended by the worker (else sold out)
		now     int64 // the router's time
		channel string
		sku     string
		items   int // lines of the SKU, 500 units each
		code    Code
		field   string
	}{
		{"sold out", false, 50, "live:c", "s", 1, CodeOutOfStock, ""},
		{"sold out, wrong channel", false, 50, "app", "s", 1, CodeInvalidArgument, "channel"},
		{"sold out, another sku", false, 50, "live:c", "s2", 1, CodeInvalidArgument, "items"},
		{"sold out, lines summing past the quantity bound", false, 50, "live:c", "s", 2, CodeInvalidArgument, "items[0].quantity"},
		{"sold out, window closed, not yet ended", false, end, "live:c", "s", 1, CodeDealNotActive, "deal_id"},
		{"sold out, window closed, wrong channel", false, end, "live:x", "s", 1, CodeInvalidArgument, "channel"},
		{"ended", true, end, "live:c", "s", 1, CodeDealNotActive, "deal_id"},
		{"ended, wrong channel", true, end, "live:cc", "s", 1, CodeInvalidArgument, "channel"},
		{"ended, another sku", true, end, "live:c", "s2", 1, CodeInvalidArgument, "items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := liveHarness(t, 100)
			h.c.routerNow = func() int64 { return h.now }
			h.now = 10
			if r := h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s2", MerchantID: "m", BrandID: "b", Price: 10, Stock: 10}}); !r.OK() {
				t.Fatalf("second sku: %v", r.Err())
			}
			if r := h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 500, Stock: 1, StartsAt: 0, EndsAt: end}}); !r.OK() {
				t.Fatalf("put deal: %v", r.Err())
			}
			if r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s", Quantity: 1}}}}); !r.OK() {
				t.Fatalf("the last unit: %v", r.Err())
			}
			if tt.ended {
				if r := h.do(Command{Kind: KindEndDeal, Deal: &Deal{ID: "d"}}); !r.OK() {
					t.Fatalf("end deal: %v", r.Err())
				}
			}
			h.now = tt.now
			items := make([]Item, tt.items)
			for i := range items {
				items[i] = Item{SKUID: tt.sku, Quantity: 500}
			}
			// Routed only: no batch runs, so the worker ends no deal.
			req := Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u2", Channel: tt.channel, DealID: "d", Items: items}}}
			if _, routed := h.c.route(&req); routed {
				t.Fatalf("routed to the partition, want answered at the router with %v", tt.code)
			}
			if r := req.Result; r.Code != tt.code || r.Field != tt.field {
				t.Fatalf("router: %v field %q, want %v field %q", r.Code, r.Field, tt.code, tt.field)
			}
			// The partition, past the worker's end of the deal, agrees.
			if !tt.ended && tt.now < end {
				h.c.routerNow = nil
				r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u2", Channel: tt.channel, DealID: "d", IdempotencyKey: "k", Items: items}})
				if r.Code != tt.code || r.Field != tt.field {
					t.Fatalf("partition: %v field %q, want %v field %q", r.Code, r.Field, tt.code, tt.field)
				}
			}
		})
	}
}

// TestChannelsPerPartitionBound fills a one-partition engine with
// channels: the one past channelsPerPartitionMax is refused with 422
// channel_id, and replacing a channel at the limit is still allowed.
func TestChannelsPerPartitionBound(t *testing.T) {
	h := newHarness(1)
	put := func(id, title string) Result {
		return h.do(Command{Kind: KindPutChannel, Channel: &Channel{ID: id, Title: title, Host: "H", StartsAt: 0, EndsAt: 10}})
	}
	for i := range channelsPerPartitionMax {
		if r := put("c"+strconv.Itoa(i), "T"); !r.OK() {
			t.Fatalf("channel %d: %v", i, r.Err())
		}
	}
	if r := put("one-more", "T"); r.Code != CodeInvalidArgument || r.Field != "channel_id" {
		t.Fatalf("a channel past the bound: %v field %q, want invalid argument channel_id", r.Code, r.Field)
	}
	if r := put("c0", "renamed"); !r.OK() {
		t.Fatalf("replacing a channel at the bound: %v", r.Err())
	}
	if ch, ok := h.c.channel("c0"); !ok || ch.Title != "renamed" {
		t.Fatalf("c0 after the replacement: %+v", ch)
	}
}
