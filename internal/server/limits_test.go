package server

import (
	"context"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// TestImportLimitsMatchEngine: the import's copies of the engine's SKU
// limits (skuPriceMax, skuStockMax) are the engine's: at each limit the
// engine accepts the upsert, one past it the engine refuses it naming the
// field. A moved engine limit fails here until the copy moves with it.
func TestImportLimitsMatchEngine(t *testing.T) {
	eng := openTestEngine(t, 1)
	ctx := context.Background()
	for _, cmd := range []engine.Command{
		{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b", Name: "b", Country: "CN"}},
		{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m", Name: "m", BrandID: "b", Kind: engine.MerchantBrandStore}},
	} {
		if res := eng.Do(ctx, cmd); !res.OK() {
			t.Fatalf("%v: %v", cmd.Kind, res.Err())
		}
	}
	cases := []struct {
		id           string
		price, stock int64
		field        string // "" when the engine accepts it
	}{
		{"at-price-max", skuPriceMax, 1, ""},
		{"over-price-max", skuPriceMax + 1, 1, "price"},
		{"at-stock-max", 1, skuStockMax, ""},
		{"over-stock-max", 1, skuStockMax + 1, "stock"},
	}
	for _, c := range cases {
		res := eng.Do(ctx, engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: c.id, MerchantID: "m", BrandID: "b", Title: "t", Price: c.price, Stock: c.stock}})
		switch {
		case c.field == "" && !res.OK():
			t.Errorf("%s: engine refuses what the import accepts: %v", c.id, res.Err())
		case c.field != "" && (res.Code != engine.CodeInvalidArgument || res.Field != c.field):
			t.Errorf("%s: engine answers %v field %q, the import refuses it as invalid %s", c.id, res.Code, res.Field, c.field)
		}
	}
	if skuTotalMax != 1<<31-1 {
		t.Errorf("skuTotalMax %d: the engine's stock state is int32", skuTotalMax)
	}
}
