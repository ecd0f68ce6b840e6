package projection_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/logistics"
	"github.com/fest-platform/fest/internal/projection"
)

// TestParcelOriginFollowsMerchant checks, on orders the real engine placed
// (whose lines carry SKU slots), that a parcel's origin is its merchant's
// region at the time of the order, also after the merchant moves and after
// a restart from a snapshot (the slot cache is not in it).
func TestParcelOriginFollowsMerchant(t *testing.T) {
	dir := t.TempDir()
	type node struct {
		eng  *engine.Engine
		log  *logistics.Logistics
		proj *projection.Runner
	}
	open := func() *node {
		n := &node{}
		var err error
		if n.log, err = logistics.New(logistics.Config{}); err != nil {
			t.Fatal(err)
		}
		if n.proj, err = projection.New(projection.Config{Dir: filepath.Join(dir, "projections"), SnapshotEveryBytes: 1 << 10, Logger: quiet}, n.log); err != nil {
			t.Fatal(err)
		}
		if n.eng, err = engine.Open(engine.Config{Dir: dir, Partitions: 4, NoSync: true, SnapshotEveryBytes: 8 << 10, RetainFrom: n.proj.Retain, Logger: quiet}); err != nil {
			t.Fatal(err)
		}
		n.proj.Start(n.eng)
		return n
	}
	n := open()
	do := func(c engine.Command) engine.Result {
		t.Helper()
		r := n.eng.Do(context.Background(), c)
		if !r.OK() {
			t.Fatalf("%v: %v", c.Kind, r.Err())
		}
		return r
	}
	merchant := func(region string) {
		do(engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m", Kind: engine.MerchantTrader, Region: region}})
	}
	order := func() engine.OrderID {
		r := do(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "b", Region: "CN-BJ", Items: []engine.Item{{SKUID: "s", Quantity: 1}}}})
		do(engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total})
		return r.OrderID
	}
	origin := func(id engine.OrderID) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.proj.WaitDurable(ctx); err != nil {
			t.Fatal(err)
		}
		p, err := n.log.Parcel(id)
		if err != nil {
			t.Fatalf("parcel of %v: %v", id, err)
		}
		return p.Origin
	}
	do(engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b"}})
	merchant("CN-ZJ")
	do(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 100, Stock: 1000}})
	first, second := order(), order()
	merchant("CN-GD")
	third := order()
	for _, c := range []struct {
		id   engine.OrderID
		want string
	}{{first, "CN-ZJ"}, {second, "CN-ZJ"}, {third, "CN-GD"}} {
		if got := origin(c.id); got != c.want {
			t.Fatalf("parcel of %v from %s, want %s", c.id, got, c.want)
		}
	}

	for range 50 { // past a few projection snapshots
		order()
	}
	n.proj.Close()
	if err := n.eng.Close(); err != nil {
		t.Fatal(err)
	}
	n = open()
	defer func() {
		n.proj.Close()
		n.eng.Close()
	}()
	if got := origin(third); got != "CN-GD" {
		t.Fatalf("after restart, parcel of %v from %s", third, got)
	}
	merchant("CN-SH")
	if got := origin(order()); got != "CN-SH" {
		t.Fatalf("after restart and a move, a new parcel from %s, want CN-SH", got)
	}
}
