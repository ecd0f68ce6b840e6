package orders

import (
	"context"
	"fmt"
	"hash/maphash"
	"testing"
	"time"
	"unsafe"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

func openEngine(t *testing.T, dir string) *engine.Engine {
	t.Helper()
	e, err := engine.Open(engine.Config{Dir: dir, Partitions: 4, NoSync: true, SnapshotEveryBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func do(t *testing.T, e *engine.Engine, c engine.Command) engine.Result {
	t.Helper()
	r := e.Do(context.Background(), c)
	if !r.OK() {
		t.Fatalf("%v: %v", c.Kind, r.Err())
	}
	return r
}

func openStore(t *testing.T, e *engine.Engine) *Store {
	t.Helper()
	s, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := projection.New(projection.Config{Dir: t.TempDir()}, s)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(e)
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStoreFollowsEngine places and pays orders through a real engine and
// checks the store returns them, pages a buyer's history newest first,
// and rebuilds the same after a restart.
func TestStoreFollowsEngine(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	do(t, e, engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b"}})
	do(t, e, engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m", Kind: engine.MerchantTrader}})
	do(t, e, engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s1", MerchantID: "m", BrandID: "b", Price: 250, Stock: 1000}})
	do(t, e, engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s2", MerchantID: "m", BrandID: "b", Price: 100, Stock: 1000}})
	var ids []engine.OrderID
	for i := 0; i < 25; i++ {
		r := do(t, e, engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: fmt.Sprintf("buyer-%d", i%2), Channel: "web", Region: "CN-ZJ",
			Items: []engine.Item{{SKUID: "s1", Quantity: 2}, {SKUID: "s2", Quantity: 1}, {SKUID: "s1", Quantity: 1}}}})
		ids = append(ids, r.OrderID)
		if i%3 == 0 {
			do(t, e, engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total})
		}
	}
	s := openStore(t, e)
	check := func(s *Store) {
		t.Helper()
		for i, id := range ids {
			o, err := s.Get(id)
			if err != nil {
				t.Fatalf("get %v: %v", id, err)
			}
			want := engine.StatusPending
			if i%3 == 0 {
				want = engine.StatusPaid
			}
			if o.Status != want || o.Total != 850 || len(o.Items) != 2 || o.Items[0].Quantity != 3 || o.Items[0].Amount != 750 || o.BuyerID != fmt.Sprintf("buyer-%d", i%2) || o.Channel != "web" || o.PayBy <= o.CreatedAt {
				t.Fatalf("order %d: %+v", i, o)
			}
			if want == engine.StatusPaid && o.ChangedAt == 0 {
				t.Fatalf("order %d paid without a time", i)
			}
		}
		if _, err := s.Get(ids[len(ids)-1] + 1); err != ErrNotFound {
			t.Fatalf("unknown order: %v", err)
		}
		// buyer-0 has orders 0, 2, ..., 24: 13 of them, newest first.
		var got []engine.OrderID
		cursor := ""
		for pages := 0; ; pages++ {
			page, next, err := s.ListByBuyer("buyer-0", 5, cursor)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range page {
				got = append(got, o.ID)
			}
			if next == "" {
				break
			}
			cursor = next
			if pages > 5 {
				t.Fatal("paging does not end")
			}
		}
		if len(got) != 13 || got[0] != ids[24] || got[12] != ids[0] {
			t.Fatalf("history %v", got)
		}
		if _, _, err := s.ListByBuyer("buyer-0", 5, "!!"); err != ErrBadCursor {
			t.Fatalf("bad cursor: %v", err)
		}
	}
	check(s)
	s.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, dir)
	defer e.Close()
	s = openStore(t, e)
	defer s.Close()
	check(s)
}

// BenchmarkStoreApply measures the store's cost per placed order.
func BenchmarkStoreApply(b *testing.B) {
	s, _ := Open(Config{})
	items := []engine.Item{{SKUID: "sku-12345", Quantity: 1, UnitPrice: 29900, Amount: 29900}, {SKUID: "sku-777", Quantity: 2, UnitPrice: 1000, Amount: 2000}}
	ev := engine.Event{Kind: engine.EventOrderPlaced, BuyerID: "buyer-1", MerchantID: "m-1", Channel: "app", Region: "CN-ZJ", Items: items, Total: 31900, At: 1, PayBy: 2}
	b.ReportAllocs()
	cpu := processCPUNanos()
	for i := 0; i < b.N; i++ {
		ev.OrderID = engine.OrderID(uint64(i%64)<<52 | uint64(i/64+1))
		ev.BuyerID = buyers[i%len(buyers)]
		ev.Position = uint64(i/1000 + 1)
		ev.Last = i%1000 == 999 // records hold about a thousand events
		if err := s.add(&ev); err != nil {
			b.Fatal(err)
		}
		if ev.Last {
			s.Commit(ev.Position, ev.At)
		}
	}
	b.ReportMetric(float64(processCPUNanos()-cpu)/float64(b.N), "cpu-ns/op")
}

var buyers = func() []string {
	var out []string
	for i := 0; i < 100_000; i++ {
		out = append(out, fmt.Sprintf("buyer-%d", i))
	}
	return out
}()

// TestBuyerCollisionKeepsItsID gives two buyers the same first hash: the
// second goes to the collision map, under a copy of its id, even when it is
// there already, since the id it is given aliases a buffer that is reused.
func TestBuyerCollisionKeepsItsID(t *testing.T) {
	s := newStore(Config{}, maphash.MakeSeed(), maphash.MakeSeed())
	buf := []byte("buyer-b")
	id := unsafe.String(unsafe.SliceData(buf), len(buf))
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev := s.swapNewestHashedLocked("buyer-a", 1, 2, orderIDOf(0, 1)); prev != 0 {
		t.Fatalf("first order of buyer-a: previous %v, want none", prev)
	}
	if prev := s.swapNewestHashedLocked(id, 1, 3, orderIDOf(0, 2)); prev != 0 {
		t.Fatalf("first order of buyer-b: previous %v, want none", prev)
	}
	if prev := s.swapNewestHashedLocked(id, 1, 3, orderIDOf(0, 3)); prev != orderIDOf(0, 2) {
		t.Fatalf("second order of buyer-b: previous %v, want %v", prev, orderIDOf(0, 2))
	}
	copy(buf, "buyer-x")
	if newest, ok := s.mu.buyerCollisions["buyer-b"]; !ok || newest != orderIDOf(0, 3) || len(s.mu.buyerCollisions) != 1 {
		t.Fatalf("collision map %v: buyer-b's newest %v, %v; want %v", s.mu.buyerCollisions, newest, ok, orderIDOf(0, 3))
	}
	if got := s.liveBuyers.Load(); got != 2 {
		t.Fatalf("%d live buyers, want 2", got)
	}
}
