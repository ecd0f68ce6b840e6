package projection_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
)

// TestGMVFollowsCatalogChanges checks, on orders the real engine placed
// (whose lines carry SKU slots, through which the GMV board finds a line's
// SKU and the SKU's copies of its brand's country and its merchant's kind
// and industry), that each paid order is attributed to its brand's country
// and its merchant's kind and industry at the time of the order, also
// after they change.
func TestGMVFollowsCatalogChanges(t *testing.T) {
	dir := t.TempDir()
	g, err := gmvp.New(gmvp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projection.New(projection.Config{Dir: filepath.Join(dir, "projections"), Logger: quiet}, g)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(engine.Config{Dir: dir, Partitions: 2, NoSync: true, RetainFrom: proj.Retain, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	proj.Start(eng)
	defer proj.Close()
	do := func(c engine.Command) engine.Result {
		t.Helper()
		r := eng.Do(context.Background(), c)
		if !r.OK() {
			t.Fatalf("%v: %v", c.Kind, r.Err())
		}
		return r
	}
	brand := func(country string) {
		do(engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b", Country: country}})
	}
	merchant := func(kind engine.MerchantKind, industry string) {
		do(engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m", Kind: kind, Industry: industry, Region: "CN-ZJ"}})
	}
	order := func() {
		r := do(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u", Region: "CN-BJ", Items: []engine.Item{{SKUID: "s", Quantity: 1}}}})
		do(engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total})
	}
	brand("CN")
	merchant(engine.MerchantTrader, "apparel")
	do(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 100, Stock: 1000}})
	order()
	order()
	merchant(engine.MerchantFactory, "beauty")
	order()
	brand("US")
	order()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := proj.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d    gmvp.Dimension
		want map[string]int64
	}{
		{gmvp.DimIndustry, map[string]int64{"apparel": 200, "beauty": 200}},
		{gmvp.DimKind, map[string]int64{engine.MerchantTrader.String(): 200, engine.MerchantFactory.String(): 200}},
		{gmvp.DimCountry, map[string]int64{"CN": 300, "US": 100}},
	} {
		b, err := g.Breakdown(c.d, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, r := range b.Rows {
			if r.GMV != 0 {
				got[r.Key] = r.GMV
			}
		}
		if len(got) != len(c.want) {
			t.Errorf("%v: %v, want %v", c.d, got, c.want)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%v: %v, want %v", c.d, got, c.want)
				break
			}
		}
	}
}
