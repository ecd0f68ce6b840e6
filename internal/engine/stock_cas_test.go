package engine

import (
	"testing"
)

// casHarness returns a core with brand b, merchant m and SKU s holding
// stock units, of which sold were sold (placed and paid) in orders of at
// most 500 units.
func casHarness(t *testing.T, stock int64, sold int32) *harness {
	t.Helper()
	h := newHarness(2)
	must := func(cmd Command) Result {
		t.Helper()
		r := h.do(cmd)
		if !r.OK() {
			t.Fatalf("%v: %v", cmd.Kind, r.Err())
		}
		return r
	}
	must(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}})
	must(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Name: "M", BrandID: "b", Kind: MerchantFactory}})
	must(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 100, Stock: stock}})
	for sold > 0 {
		q := min(sold, 500)
		placed := must(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: q}}}})
		must(Command{Kind: KindPay, OrderID: placed.OrderID, Amount: placed.Total})
		sold -= q
	}
	return h
}

// TestUpsertSKUStockCompareAndSet checks the stock rule of an upsert on an
// existing SKU and on a new one: only a compare-and-set against the
// available stock the caller last read changes it.
func TestUpsertSKUStockCompareAndSet(t *testing.T) {
	tests := []struct {
		name          string
		id            string // "s" exists with 1,000 available after 1,000 sold
		sku           SKU    // the stock fields of the upsert
		wantCode      Code
		wantField     string
		wantAvailable int64 // after the command, or reported by a conflict
	}{
		{"existing, stock without stock_expected", "s", SKU{Stock: 1000}, CodeInvalidArgument, "stock_expected", 1000},
		{"existing, stale stock_expected", "s", SKU{Stock: 1000, StockCompared: true, StockExpected: 2000}, CodeConflict, "", 1000},
		{"existing, right stock_expected", "s", SKU{Stock: 1500, StockCompared: true, StockExpected: 1000}, CodeOK, "", 1500},
		{"existing, stock omitted", "s", SKU{StockOmitted: true}, CodeOK, "", 1000},
		{"existing, stock omitted with stock_expected", "s", SKU{StockOmitted: true, StockCompared: true, StockExpected: 1000}, CodeInvalidArgument, "stock_expected", 1000},
		{"existing, negative stock_expected", "s", SKU{Stock: 5, StockCompared: true, StockExpected: -1}, CodeInvalidArgument, "stock_expected", 1000},
		{"existing, stock past the bound", "s", SKU{Stock: stockMax + 1, StockCompared: true, StockExpected: 1000}, CodeInvalidArgument, "stock", 1000},
		{"new, stock", "n", SKU{Stock: 7}, CodeOK, "", 7},
		{"new, stock with stock_expected 0", "n", SKU{Stock: 7, StockCompared: true}, CodeOK, "", 7},
		{"new, stock with stock_expected 3", "n", SKU{Stock: 7, StockCompared: true, StockExpected: 3}, CodeConflict, "", 0},
		{"new, stock omitted", "n", SKU{StockOmitted: true}, CodeInvalidArgument, "stock", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := casHarness(t, 2000, 1000)
			k := tt.sku
			k.ID, k.MerchantID, k.BrandID, k.Title, k.Price = tt.id, "m", "b", "new title", 250
			r := h.do(Command{Kind: KindUpsertSKU, SKU: &k})
			if r.Code != tt.wantCode || r.Field != tt.wantField {
				t.Fatalf("upsert: got %v field %q, want %v field %q", r.Code, r.Field, tt.wantCode, tt.wantField)
			}
			if tt.wantCode == CodeConflict {
				if r.Available != tt.wantAvailable || r.SKUID != tt.id {
					t.Fatalf("conflict details: sku %q available %d, want %q %d", r.SKUID, r.Available, tt.id, tt.wantAvailable)
				}
				if r.Err() == nil || r.Err().Error() == "" {
					t.Fatalf("conflict has no error")
				}
			}
			get := h.do(Command{Kind: KindGetSKU, SKUID: tt.id})
			if tt.id == "n" && tt.wantCode != CodeOK {
				if get.Code != CodeNotFound {
					t.Fatalf("a refused new SKU exists: %v", get.Code)
				}
				return
			}
			if get.Available != tt.wantAvailable {
				t.Fatalf("available %d, want %d", get.Available, tt.wantAvailable)
			}
			if tt.id == "s" && get.Sold != 1000 {
				t.Fatalf("sold %d, want 1000", get.Sold)
			}
			wantPrice := int64(100)
			if tt.wantCode == CodeOK {
				wantPrice = 250 // the rest of the upsert applies with the stock
			}
			if tt.id == "s" && get.SKU.Price != wantPrice {
				t.Fatalf("price %d, want %d", get.SKU.Price, wantPrice)
			}
			checkReplay(t, h)
		})
	}
}

// TestCatalogSyncCannotResell is the case: 1,000 units sold, then
// a sync that sets the stock back to the catalog's 1,000 is refused unless
// it names the stock it last read.
func TestCatalogSyncCannotResell(t *testing.T) {
	h := casHarness(t, 1000, 0)
	for i := 0; i < 10; i++ {
		placed := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 100}}}})
		if !placed.OK() {
			t.Fatalf("place %d: %v", i, placed.Err())
		}
		if paid := h.do(Command{Kind: KindPay, OrderID: placed.OrderID, Amount: placed.Total}); !paid.OK() {
			t.Fatalf("pay %d: %v", i, paid.Err())
		}
	}
	sync := func(k SKU) Result {
		k.ID, k.MerchantID, k.BrandID, k.Price = "s", "m", "b", 100
		return h.do(Command{Kind: KindUpsertSKU, SKU: &k})
	}
	if r := sync(SKU{Stock: 1000}); r.Code != CodeInvalidArgument || r.Field != "stock_expected" {
		t.Fatalf("sync without stock_expected: %v %q, want invalid_argument stock_expected", r.Code, r.Field)
	}
	if r := sync(SKU{Stock: 1000, StockCompared: true, StockExpected: 1000}); r.Code != CodeConflict || r.Available != 0 {
		t.Fatalf("sync with stale stock_expected: %v available %d, want conflict with 0", r.Code, r.Available)
	}
	if r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}}); r.Code != CodeOutOfStock {
		t.Fatalf("an order after the refused syncs: %v, want out_of_stock", r.Code)
	}
	r := sync(SKU{Stock: 1000, StockCompared: true, StockExpected: 0})
	if !r.OK() || r.Available != 1000 || r.Sold != 1000 {
		t.Fatalf("sync with the right stock_expected: %v available %d sold %d, want ok 1000 1000", r.Code, r.Available, r.Sold)
	}
	checkReplay(t, h)
}

// checkReplay rebuilds a core from h's records and compares it with h's.
func checkReplay(t *testing.T, h *harness) {
	t.Helper()
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
}
