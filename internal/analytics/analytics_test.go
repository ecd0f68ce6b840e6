package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
)

// TestGMVFollowsPaidOrders places, pays and cancels orders through a real
// engine and checks GMV counts exactly the paid ones.
func TestGMVFollowsPaidOrders(t *testing.T) {
	e, err := engine.Open(engine.Config{Dir: t.TempDir(), Partitions: 4, NoSync: true, SnapshotEveryBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	must := func(c engine.Command) engine.Result {
		r := e.Do(ctx, c)
		if !r.OK() {
			t.Fatalf("%v: %v", c.Kind, r.Err())
		}
		return r
	}
	must(engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b"}})
	for _, m := range []string{"m1", "m2", "m3"} {
		must(engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: m, Kind: engine.MerchantTrader}})
		must(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s-" + m, MerchantID: m, BrandID: "b", Price: 1000, Stock: 1000}})
	}
	var want int64
	for i := 0; i < 30; i++ {
		r := must(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u", Items: []engine.Item{{SKUID: "s-m" + string(rune('1'+i%3)), Quantity: int32(1 + i%4)}}}})
		switch i % 3 {
		case 0:
			must(engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total})
			want += r.Total
		case 1:
			must(engine.Command{Kind: engine.KindCancel, OrderID: r.OrderID})
		}
	}
	now := time.Date(2020, 11, 11, 0, 0, 26, 0, time.UTC)
	a, err := New(Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a.Attach(e)
	defer a.Close()
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Follow(fctx, 0, func(ev *engine.Event) error {
			a.Apply(ev)
			if ev.Last {
				a.Commit(ev.Position, ev.At)
			}
			return nil
		})
	}()
	defer func() { stop(); <-done }()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.WaitDurable(wctx); err != nil {
		t.Fatal(err)
	}
	g := a.GMV()
	if g.Amount != want || g.OrdersPaid != 10 || g.OrdersPlaced != 30 {
		t.Fatalf("gmv %+v, want %d fen in 10 paid of 30", g, want)
	}
	if wantUSD := int64(float64(want)/DefaultUSDRate + 0.5); g.AmountUSD != wantUSD {
		t.Fatalf("usd %d want %d", g.AmountUSD, wantUSD)
	}
	if !g.AsOf.Equal(now) {
		t.Fatalf("as_of %v", g.AsOf)
	}
}
