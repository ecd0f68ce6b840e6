package logistics

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// TestMerchantUpsertedAgain: merchants upserted a second time (a catalog
// imported again, as a second `fest load` against one server does) stay
// known, and their orders get parcels routed from their region. The
// events' ids are views of the journal's buffer, and a map assignment to
// an existing string key stores the new key: it must be a copy.
func TestMerchantUpsertedAgain(t *testing.T) {
	eng, err := engine.Open(engine.Config{Dir: t.TempDir(), Partitions: 4, NoSync: true, SnapshotEveryBytes: -1})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	defer eng.Close()
	ctx := context.Background()
	do := func(cmd engine.Command) {
		t.Helper()
		if res := eng.Do(ctx, cmd); !res.OK() {
			t.Fatalf("%v: %v", cmd.Kind, res.Err())
		}
	}
	const merchants = 20
	merchant := func(i int) engine.Command {
		return engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: fmt.Sprintf("m%d", i), Name: "m", BrandID: "b", Kind: engine.MerchantBrandStore, Region: "CN-ZJ"}}
	}
	do(engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b", Name: "b", Country: "CN"}})
	for i := range merchants {
		do(merchant(i))
		do(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: fmt.Sprintf("s%d", i), MerchantID: fmt.Sprintf("m%d", i), BrandID: "b", Title: "t", Price: 5, Stock: 100}})
	}
	for i := range merchants {
		do(merchant(i))
		do(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u", Items: []engine.Item{{SKUID: fmt.Sprintf("s%d", i), Quantity: 1}}, Channel: "app"}})
	}
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	errDone := errors.New("every order applied")
	orders := 0
	err = eng.Follow(ctx, 0, func(ev *engine.Event) error {
		if err := l.Apply(ev); err != nil {
			return err
		}
		if ev.Kind == engine.EventOrderPlaced {
			orders++
		}
		if ev.Last {
			l.Commit(ev.Position, ev.At)
			if orders == merchants {
				return errDone
			}
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("follow after %d orders: %v", orders, err)
	}
	for id := range l.st.merchants {
		var i int
		if _, err := fmt.Sscanf(id, "m%d", &i); err != nil || i >= merchants {
			t.Errorf("merchant key %q is no merchant's id", id)
		}
	}
}

// TestMerchantMovesRegion: a merchant upserted again in another region
// ships its next orders from there, although its SKU's slot was cached with
// the old region by an earlier order.
func TestMerchantMovesRegion(t *testing.T) {
	eng, err := engine.Open(engine.Config{Dir: t.TempDir(), Partitions: 1, NoSync: true, SnapshotEveryBytes: -1})
	if err != nil {
		t.Fatalf("open engine: %v", err)
	}
	defer eng.Close()
	ctx := context.Background()
	do := func(cmd engine.Command) engine.Result {
		t.Helper()
		res := eng.Do(ctx, cmd)
		if !res.OK() {
			t.Fatalf("%v: %v", cmd.Kind, res.Err())
		}
		return res
	}
	merchant := func(region string) engine.Command {
		return engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m", Name: "m", BrandID: "b", Kind: engine.MerchantBrandStore, Region: region}}
	}
	order := func() engine.OrderID {
		res := do(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u", Items: []engine.Item{{SKUID: "s", Quantity: 1}}, Channel: "app"}})
		do(engine.Command{Kind: engine.KindPay, OrderID: res.OrderID, Amount: res.Total})
		return res.OrderID
	}
	do(engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b", Name: "b", Country: "CN"}})
	do(merchant("CN-ZJ"))
	do(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s", MerchantID: "m", BrandID: "b", Title: "t", Price: 5, Stock: 100}})
	first := order()
	do(merchant("CN-BJ"))
	second := order()
	third := order()
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	errDone := errors.New("every order applied")
	paid := 0
	err = eng.Follow(ctx, 0, func(ev *engine.Event) error {
		if err := l.Apply(ev); err != nil {
			return err
		}
		if ev.Kind == engine.EventOrderPaid {
			paid++
		}
		if ev.Last {
			l.Commit(ev.Position, ev.At)
			if paid == 3 {
				return errDone
			}
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("follow after %d payments: %v", paid, err)
	}
	for _, c := range []struct {
		id     engine.OrderID
		origin string
	}{{first, "CN-ZJ"}, {second, "CN-BJ"}, {third, "CN-BJ"}} {
		p, err := l.Parcel(c.id)
		if err != nil {
			t.Fatalf("parcel of %v: %v", c.id, err)
		}
		if p.Origin != c.origin {
			t.Errorf("parcel of %v ships from %q, want %q", c.id, p.Origin, c.origin)
		}
	}
}
