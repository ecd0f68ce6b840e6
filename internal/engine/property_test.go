package engine

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/idempotency"

	"pgregory.net/rapid"
)

// model is the naive reference: the rules of the API written as plainly as
// possible, with none of the engine's partitions, slots or encodings.
type model struct {
	skus     map[string]*modelSKU
	orders   map[OrderID]*modelOrder
	keys     map[string]modelKey
	reserved map[string]int // key → the partition of its first routed use
	now      int64
	// partitionOf places a merchant: the one engine rule the model must
	// share, since a key belongs to a partition.
	partitionOf func(merchant string) int
}

type modelSKU struct {
	merchant                           string
	price                              int64
	available, reserved, sold, stocked int64
}

type modelOrder struct {
	status OrderStatus
	// parcel and location are the parcel's status and last scan's location,
	// set once the order is paid.
	parcel   ParcelStatus
	location string
	items    map[string]int64
	total    int64
	payBy    int64
}

type modelKey struct {
	hash  uint64
	id    OrderID
	items []Item
}

const modelTimeout = 100

func (m *model) expire() {
	for _, o := range m.orders {
		if o.status == StatusPending && o.payBy <= m.now {
			m.release(o, StatusExpired)
		}
	}
}

func (m *model) release(o *modelOrder, status OrderStatus) {
	for id, q := range o.items {
		s := m.skus[id]
		s.reserved -= q
		if status == StatusPaid {
			s.sold += q
		} else {
			s.available += q
		}
	}
	o.status = status
	if status == StatusPaid {
		o.parcel = ParcelCreated
	}
}

// modelTransitions is the API contract's table, written out by name.
var modelTransitions = map[string][]string{
	"created":          {"picked_up", "exception"},
	"picked_up":        {"in_transit", "exception"},
	"in_transit":       {"in_transit", "out_for_delivery", "exception"},
	"out_for_delivery": {"delivered", "failed_attempt", "exception"},
	"failed_attempt":   {"out_for_delivery", "returned", "exception"},
	"exception":        {"in_transit", "returned"},
	"delivered":        nil,
	"returned":         nil,
}

func (m *model) scan(id OrderID, status ParcelStatus, location string) Code {
	o, ok := m.orders[id]
	if !ok || o.status != StatusPaid {
		return CodeNotFound
	}
	if status == o.parcel && location == o.location {
		return CodeOK
	}
	for _, to := range modelTransitions[o.parcel.String()] {
		if to == status.String() {
			o.parcel, o.location = status, location
			return CodeOK
		}
	}
	return CodeInvalidState
}

// place returns the expected code; on success the caller registers the
// order under the id the engine chose.
func (m *model) place(items []Item, key string, hash uint64) (Code, *modelOrder, OrderID) {
	for _, it := range items {
		if _, ok := m.skus[it.SKUID]; !ok {
			return CodeNotFound, nil, 0
		}
	}
	p := m.partitionOf(m.skus[items[0].SKUID].merchant)
	for _, it := range items {
		if m.partitionOf(m.skus[it.SKUID].merchant) != p {
			return CodeInvalidArgument, nil, 0
		}
	}
	if key != "" {
		if q, ok := m.reserved[key]; ok && q != p {
			return CodeIdempotencyMismatch, nil, 0
		}
		m.reserved[key] = p
	}
	merchant := ""
	for _, it := range items {
		s := m.skus[it.SKUID]
		if merchant != "" && s.merchant != merchant {
			return CodeInvalidArgument, nil, 0
		}
		merchant = s.merchant
	}
	if key != "" {
		if k, ok := m.keys[key]; ok {
			if k.hash != hash {
				return CodeIdempotencyMismatch, nil, 0
			}
			return CodeOK, nil, k.id
		}
	}
	want := map[string]int64{}
	for _, it := range items {
		want[it.SKUID] += int64(it.Quantity)
	}
	o := &modelOrder{status: StatusPending, items: want, payBy: m.now + modelTimeout}
	for id, q := range want {
		if m.skus[id].available < q {
			return CodeOutOfStock, nil, 0
		}
		o.total += q * m.skus[id].price
	}
	for id, q := range want {
		m.skus[id].available -= q
		m.skus[id].reserved += q
	}
	return CodeOK, o, 0
}

func (m *model) end(id OrderID, pay bool, amount int64) Code {
	o, ok := m.orders[id]
	if !ok {
		return CodeNotFound
	}
	switch {
	case o.status == StatusPending && pay && amount != o.total:
		return CodePaymentMismatch
	case o.status == StatusPending && pay:
		m.release(o, StatusPaid)
	case o.status == StatusPending:
		m.release(o, StatusCancelled)
	case o.status == StatusPaid && pay, o.status == StatusCancelled && !pay:
	default:
		return CodeInvalidState
	}
	return CodeOK
}

// harness drives a core directly: route, then apply, as a worker would,
// keeping every record for the replay check.
type harness struct {
	c       *core
	now     int64
	em      emitter
	records [][]byte
}

func (h *harness) do(cmd Command) Result {
	r := Request{Command: cmd}
	h.em.reset(nil)
	if h.c.disk != nil {
		// As a worker does before a batch, and waiting for each spill so
		// that a run replays exactly. The harness has no journal: every
		// record is durable at once, as a worker learns from its fsync.
		for _, p := range h.c.partitions {
			p.keys.durableEnd.Store(p.keys.endPos())
			h.c.startSpill(p)
			for p.keys.spilling && p.keys.spillResult.Load() == spillPending {
				runtime.Gosched()
			}
			h.c.settleSpill(p)
		}
	}
	for _, p := range h.c.partitions {
		h.c.expire(p, h.now, 1<<30, &h.em)
		h.c.endDeals(p, h.now, 1<<30, &h.em)
	}
	if p, ok := h.c.route(&r); ok {
		r.partition = int32(p)
		if h.c.disk != nil {
			h.c.lookUpKey(&r, quiet)
		}
		h.c.apply(h.c.partitions[p], h.now, &r.Command, &r.Result, &h.em)
	}
	if h.em.events > 0 {
		h.records = append(h.records, append([]byte(nil), h.em.finish()...))
	}
	return r.Result
}

func newHarness(partitions int) *harness {
	return &harness{c: newCore(partitions, modelTimeout, 1<<40, 1<<20)}
}

// propertyKeysMax is the memory tier of the harness with a disk tier: two
// keys, so that most keys of a run live on disk.
const propertyKeysMax = 2

// withDisk gives the harness a disk tier in a fresh directory; the caller
// closes the returned store and removes dir.
func (h *harness) withDisk(t *rapid.T) (*idempotency.Store, string) {
	dir, err := os.MkdirTemp("", "fest-property-")
	if err != nil {
		t.Fatal(err)
	}
	h.c.idempotencyKeysMax = propertyKeysMax
	s, err := idempotency.Open(idempotency.Config{Dir: dir, Window: 1 << 40, Now: func() int64 { return 0 }, Logger: quiet, RunDelayMax: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	h.c.disk = s
	return s, dir
}

func TestEngineMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := newHarness(rapid.IntRange(1, 4).Draw(t, "partitions"))
		disk := rapid.Bool().Draw(t, "disk")
		if disk {
			s, dir := h.withDisk(t)
			defer os.RemoveAll(dir)
			defer s.Close()
		}
		m := &model{skus: map[string]*modelSKU{}, orders: map[OrderID]*modelOrder{}, keys: map[string]modelKey{}, reserved: map[string]int{}, partitionOf: h.c.merchantPartition}
		merchants := []string{"m0", "m1", "m2"}
		if r := h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}}); !r.OK() {
			t.Fatalf("brand: %v", r.Err())
		}
		for _, id := range merchants {
			if r := h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: id, BrandID: "b", Kind: MerchantTrader}}); !r.OK() {
				t.Fatalf("merchant: %v", r.Err())
			}
		}
		skuIDs := []string{"s0", "s1", "s2", "s3", "s4", "s5", "s6"} // s6 never created
		var ids []OrderID
		seen := map[OrderID]bool{}
		drawOrder := func() OrderID {
			if len(ids) == 0 || rapid.IntRange(0, 9).Draw(t, "unknown") == 0 {
				return newOrderID(rapid.IntRange(0, 3).Draw(t, "p"), uint64(rapid.IntRange(1, 50).Draw(t, "seq")))
			}
			return rapid.SampledFrom(ids).Draw(t, "order")
		}
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for step := 0; step < steps; step++ {
			switch op := rapid.IntRange(0, 11).Draw(t, "op"); op {
			case 0: // create or correct a SKU, its stock by compare-and-set
				id := rapid.SampledFrom(skuIDs[:6]).Draw(t, "sku")
				merchant := merchants[int(id[1]-'0')%3]
				stock := int64(rapid.IntRange(0, 20).Draw(t, "stock"))
				price := int64(rapid.IntRange(1, 1000).Draw(t, "price"))
				s := m.skus[id]
				k := &SKU{ID: id, MerchantID: merchant, BrandID: "b", Price: price, Stock: stock}
				want := CodeOK
				switch mode := rapid.IntRange(0, 3).Draw(t, "stock mode"); {
				case mode == 0: // the stock the caller last read
					k.StockCompared = true
					if s != nil {
						k.StockExpected = s.available
					}
				case mode == 1: // stock omitted
					k.StockOmitted = true
					if s == nil {
						want = CodeInvalidArgument
					}
				case mode == 2: // a stale read
					k.StockCompared, k.StockExpected = true, int64(rapid.IntRange(0, 20).Draw(t, "expected"))
					if s == nil && k.StockExpected != 0 || s != nil && k.StockExpected != s.available {
						want = CodeConflict
					}
				default: // no expectation: refused on an existing SKU
					if s != nil {
						want = CodeInvalidArgument
					}
				}
				r := h.do(Command{Kind: KindUpsertSKU, SKU: k})
				if r.Code != want {
					t.Fatalf("upsert sku %+v: got %v, want %v", k, r.Code, want)
				}
				if want == CodeConflict && (s == nil && r.Available != 0 || s != nil && r.Available != s.available) {
					t.Fatalf("upsert sku %+v: conflict reports %d available, want the current stock", k, r.Available)
				}
				if want != CodeOK {
					break
				}
				if s == nil {
					s = &modelSKU{merchant: merchant}
					m.skus[id] = s
				}
				if !k.StockOmitted {
					s.stocked += stock - s.available
					s.available = stock
				}
				s.price = price
			case 1: // adjust stock
				id := rapid.SampledFrom(skuIDs).Draw(t, "sku")
				delta := int64(rapid.IntRange(-10, 10).Draw(t, "delta"))
				r := h.do(Command{Kind: KindAdjustStock, SKUID: id, Delta: delta})
				want := CodeOK
				s := m.skus[id]
				switch {
				case s == nil:
					want = CodeNotFound
				case s.available+delta < 0:
					want = CodeOutOfStock
				default:
					s.available += delta
					s.stocked += delta
				}
				if r.Code != want {
					t.Fatalf("adjust %s by %d: got %v want %v", id, delta, r.Code, want)
				}
			case 2, 3, 4, 5: // place an order
				n := rapid.IntRange(1, 4).Draw(t, "lines")
				items := make([]Item, n)
				for i := range items {
					items[i] = Item{SKUID: rapid.SampledFrom(skuIDs).Draw(t, "sku"), Quantity: int32(rapid.IntRange(1, 4).Draw(t, "q"))}
				}
				key := ""
				if rapid.IntRange(0, 3).Draw(t, "keyed") == 0 {
					key = "k" + strconv.Itoa(rapid.IntRange(0, 5).Draw(t, "key"))
				}
				hash := uint64(rapid.IntRange(1, 2).Draw(t, "hash"))
				if k, ok := m.keys[key]; ok && k.hash == hash {
					// The same hash means the same request: a retry.
					items = append([]Item(nil), k.items...)
				}
				sent := append([]Item(nil), items...)
				wantCode, o, replayID := m.place(items, key, hash)
				r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: items, IdempotencyKey: key, RequestHash: hash}})
				// An order that breaks the one-merchant rule and names a
				// sold-out SKU may get either error: the gateway refuses
				// sold-out SKUs before the partition checks merchants.
				soldOutToo := key == "" && wantCode == CodeInvalidArgument && r.Code == CodeOutOfStock && m.skus[r.SKUID] != nil && m.skus[r.SKUID].available == 0
				if r.Code != wantCode && !soldOutToo {
					t.Fatalf("place %+v key %q: got %v (%s) want %v", items, key, r.Code, r.Field, wantCode)
				}
				if r.Code == CodeOutOfStock && m.skus[r.SKUID].available >= 1 && r.Available != m.skus[r.SKUID].available {
					t.Fatalf("out of stock names %s with available %d, model has %d", r.SKUID, r.Available, m.skus[r.SKUID].available)
				}
				switch {
				case r.Code != CodeOK:
				case o == nil: // idempotent replay
					if !r.Replayed || r.OrderID != replayID {
						t.Fatalf("replay of key %q: got %v replayed=%v want %v", key, r.OrderID, r.Replayed, replayID)
					}
				default:
					if seen[r.OrderID] {
						t.Fatalf("order id %v issued twice", r.OrderID)
					}
					seen[r.OrderID] = true
					if r.Total != o.total {
						t.Fatalf("total %d want %d", r.Total, o.total)
					}
					m.orders[r.OrderID] = o
					ids = append(ids, r.OrderID)
					if key != "" {
						m.keys[key] = modelKey{hash: hash, id: r.OrderID, items: sent}
					}
				}
			case 6, 7: // pay
				id := drawOrder()
				amount := int64(0)
				if o := m.orders[id]; o != nil {
					amount = o.total
					if rapid.IntRange(0, 5).Draw(t, "wrong") == 0 {
						amount++
					}
				}
				want := m.end(id, true, amount)
				if r := h.do(Command{Kind: KindPay, OrderID: id, Amount: amount}); r.Code != want {
					t.Fatalf("pay %v: got %v want %v", id, r.Code, want)
				}
			case 8: // cancel
				id := drawOrder()
				want := m.end(id, false, 0)
				if r := h.do(Command{Kind: KindCancel, OrderID: id}); r.Code != want {
					t.Fatalf("cancel %v: got %v want %v", id, r.Code, want)
				}
			case 10, 11: // a carrier scans a parcel
				id := drawOrder()
				status := ParcelStatus(rapid.IntRange(int(ParcelPickedUp), int(ParcelReturned)).Draw(t, "scan"))
				location := rapid.SampledFrom([]string{"hz", "sh", "bj"}).Draw(t, "location")
				want := m.scan(id, status, location)
				r := h.do(Command{Kind: KindScanParcel, OrderID: id, Scan: &Scan{Status: status, Location: location, CarrierCode: "c", At: h.now}})
				if r.Code != want {
					t.Fatalf("scan %v %v at %s: got %v want %v", id, status, location, r.Code, want)
				}
				if want == CodeOK && r.ParcelStatus != m.orders[id].parcel {
					t.Fatalf("scan %v: parcel %v, model %v", id, r.ParcelStatus, m.orders[id].parcel)
				}
			case 9: // time passes
				h.now += int64(rapid.IntRange(1, 60).Draw(t, "dt"))
				m.now = h.now
				m.expire()
				h.do(Command{Kind: KindGetOrder, OrderID: newOrderID(0, 1)})
			}
			checkBooks(t, h, m)
		}
		// Replay of the records rebuilds exactly the same state.
		replayed := newCore(len(h.c.partitions), modelTimeout, 1<<40, 1<<20)
		replayed.idempotencyKeysMax, replayed.disk = h.c.idempotencyKeysMax, h.c.disk
		for _, rec := range h.records {
			err := DecodeRecord(rec, len(replayed.partitions), func(ev *Event) error {
				replayed.evolve(replayed.partitions[ev.Partition], ev)
				return nil
			})
			if err != nil {
				t.Fatalf("decode record: %v", err)
			}
		}
		if !disk {
			if got, want := replayed.dump(), h.c.dump(); got != want {
				t.Fatalf("replayed state differs:\n%s\nlive:\n%s", got, want)
			}
			return
		}
		// With a disk tier, replay puts every key back in memory: the
		// state is the same but for where each key lives, and every key
		// replayed is in the live memory tier or on disk, unchanged.
		if got, want := withoutKeys(replayed.dump()), withoutKeys(h.c.dump()); got != want {
			t.Fatalf("replayed state differs:\n%s\nlive:\n%s", got, want)
		}
		for _, p := range replayed.partitions {
			for k, e := range p.keys.entries {
				if live, ok := h.c.partitions[p.id].keys.entries[k]; ok {
					if live != e {
						t.Fatalf("key %x: replayed %+v, live %+v", k, e, live)
					}
					continue
				}
				d, ok, err := h.c.disk.Lookup(k)
				if err != nil || !ok || d != (idempotency.Entry{KeyHash: k, RequestHash: e.requestHash, Seq: e.seq, At: e.at, Partition: uint32(p.id)}) {
					t.Fatalf("key %x of partition %d (%+v) is in neither tier: disk %+v %v %v", k, p.id, e, d, ok, err)
				}
			}
		}
	})
}

// checkBooks compares every SKU and order with the model and checks that
// available + reserved + sold equals what was stocked.
func checkBooks(t *rapid.T, h *harness, m *model) {
	for id, s := range m.skus {
		r := h.do(Command{Kind: KindGetSKU, SKUID: id})
		if !r.OK() {
			t.Fatalf("get sku %s: %v", id, r.Err())
		}
		if r.Available != s.available || r.Reserved != s.reserved || r.Sold != s.sold {
			t.Fatalf("sku %s: engine %d/%d/%d, model %d/%d/%d", id, r.Available, r.Reserved, r.Sold, s.available, s.reserved, s.sold)
		}
		if r.Available < 0 || r.Available+r.Reserved+r.Sold != s.stocked {
			t.Fatalf("sku %s: stock not conserved: %d+%d+%d != %d", id, r.Available, r.Reserved, r.Sold, s.stocked)
		}
	}
	for id, o := range m.orders {
		r := h.do(Command{Kind: KindGetOrder, OrderID: id})
		if r.Status != o.status || r.ParcelStatus != o.parcel {
			t.Fatalf("order %v: engine %v parcel %v, model %v parcel %v", id, r.Status, r.ParcelStatus, o.status, o.parcel)
		}
	}
}

// withoutKeys drops the idempotency key lines of a dump.
func withoutKeys(dump string) string {
	var b strings.Builder
	for line := range strings.Lines(dump) {
		if !strings.HasPrefix(line, "  key ") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestOrderIDRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		partition int
		seq       uint64
	}{{0, 1}, {1, 1}, {63, 12345}, {partitionsMax - 1, orderSeqMask}} {
		id := newOrderID(tc.partition, tc.seq)
		got, err := ParseOrderID(id.String())
		if err != nil || got != id || got.Partition() != tc.partition || got.Seq() != tc.seq {
			t.Errorf("%d/%d: %q parsed to %v, %v", tc.partition, tc.seq, id.String(), got, err)
		}
	}
	for _, bad := range []string{"", "0", "-1", "ABC", "zzzzzzzzzzzzzz", "a b"} {
		if _, err := ParseOrderID(bad); err == nil {
			t.Errorf("ParseOrderID(%q) accepted", bad)
		}
	}
	_ = fmt.Sprint
}

// TestParseOrderIDMatchesStrconv checks the one-pass parser against the
// rule it replaces: lower-case base 36 of at most 13 characters, as
// strconv.ParseUint reads it, with a nonzero sequence.
func TestParseOrderIDMatchesStrconv(t *testing.T) {
	reference := func(s string) (OrderID, bool) {
		if len(s) == 0 || len(s) > 13 || strings.ToLower(s) != s {
			return 0, false
		}
		v, err := strconv.ParseUint(s, 36, 64)
		if err != nil || v&orderSeqMask == 0 {
			return 0, false
		}
		return OrderID(v), true
	}
	edges := []string{"3w5e11264sgsf", "3w5e11264sgsg", "3w5e11264sgse", "zzzzzzzzzzzzz", "0000000000001", "1", "00", "_", "+1", "1_0", "é"}
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.OneOf(rapid.SampledFrom(edges), rapid.StringMatching(`[0-9a-z]{1,13}`), rapid.StringN(0, 14, -1),
			rapid.Custom(func(t *rapid.T) string { return OrderID(rapid.Uint64().Draw(t, "id")).String() })).Draw(t, "s")
		want, wantOK := reference(s)
		got, err := ParseOrderID(s)
		if (err == nil) != wantOK || got != want {
			t.Fatalf("ParseOrderID(%q) = %v, %v; want %v, ok %v", s, got, err, want, wantOK)
		}
	})
}

func BenchmarkParseOrderID(b *testing.B) {
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = newOrderID(i%64, uint64(1_000_000+i*7919)).String()
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := ParseOrderID(ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}
