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
