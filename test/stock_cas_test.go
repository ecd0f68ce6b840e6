package test

import (
	"encoding/json"
	"strings"
	"testing"
)

// conflictDetails decodes a 409 conflict answer.
func conflictDetails(t *testing.T, r response) (skuID string, available int64) {
	t.Helper()
	var m struct {
		Error struct {
			SKUID          string `json:"sku_id"`
			StockAvailable *int64 `json:"stock_available"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil || m.Error.StockAvailable == nil {
		t.Fatalf("conflict without stock_available: %v: %s", err, r.Body)
	}
	return m.Error.SKUID, *m.Error.StockAvailable
}

// sellUnits places and pays orders of s1 for n units in total.
func (f *fest) sellUnits(t *testing.T, sku string, n int) {
	t.Helper()
	for n > 0 {
		q := min(n, 100)
		o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "u1", "items": []map[string]any{{"sku_id": sku, "quantity": q}}}).Body)
		f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
		n -= q
	}
}

// TestStockSyncCannotResell is the case over HTTP: 1,000 units
// sold, then a catalog sync with stock=1000 is refused without
// stock_expected, is 409 conflict with a stale one, and applies with the
// right one; the same through a catalog import.
func TestStockSyncCannotResell(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 1000, "s2": 1000})
	f.sellUnits(t, "s1", 1000)
	put := func(extra map[string]any) map[string]any {
		body := map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "Item s1 v2", "category": "apparel", "price": 1000}
		for k, v := range extra {
			body[k] = v
		}
		return body
	}
	f.expectErr(422, "invalid_argument", "stock_expected", "PUT", "/v1/skus/s1", adminToken, put(map[string]any{"stock": 1000}))
	r := f.expectErr(409, "conflict", "", "PUT", "/v1/skus/s1", adminToken, put(map[string]any{"stock": 1000, "stock_expected": 1000}))
	if id, avail := conflictDetails(t, r); id != "s1" || avail != 0 {
		t.Fatalf("conflict details: sku %q stock_available %d, want s1 0", id, avail)
	}
	if s := f.sku("s1"); s.Available != 0 || s.Sold != 1000 {
		t.Fatalf("a refused sync changed the stock: %+v", s)
	}
	f.expectErr(409, "out_of_stock", "", "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "u2", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}})
	f.expectErr(422, "invalid_argument", "stock_expected", "PUT", "/v1/skus/s1", adminToken, put(map[string]any{"stock_expected": 0}))
	f.expectErr(422, "invalid_argument", "stock_expected", "PUT", "/v1/skus/s1", adminToken, put(map[string]any{"stock": 5, "stock_expected": -1}))

	// Without stock the other fields apply and the stock stays.
	r = f.must(200, "PUT", "/v1/skus/s1", adminToken, put(nil))
	if !strings.Contains(string(r.Body), `"title":"Item s1 v2"`) || f.sku("s1").Available != 0 {
		t.Fatalf("update without stock: %s, %+v", r.Body, f.sku("s1"))
	}
	r = f.must(200, "PUT", "/v1/skus/s1", adminToken, put(map[string]any{"stock": 1000, "stock_expected": 0}))
	if s := f.sku("s1"); s.Available != 1000 || s.Sold != 1000 {
		t.Fatalf("sync with the right stock_expected: %+v: %s", s, r.Body)
	}

	// A new SKU still takes its stock; without stock it is refused.
	f.must(200, "PUT", "/v1/skus/s3", adminToken, map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "New", "price": 10, "stock": 5})
	f.expectErr(422, "invalid_argument", "stock", "PUT", "/v1/skus/s4", adminToken, map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "New", "price": 10})
	if s := f.sku("s3"); s.Available != 5 {
		t.Fatalf("new sku: %+v", s)
	}

	// Imports: the same rule per line, the first bad line failing the
	// whole file with its number and nothing applied.
	f.sellUnits(t, "s2", 300) // s2: 700 available
	line := func(id string, fields string) string {
		return `{"type":"sku","id":"` + id + `","merchant_id":"m1","brand_id":"b1","title":"Imported","price":7` + fields + "}\n"
	}
	cases := []struct {
		name, body   string
		code, field  string
		status, line int
	}{
		{"no stock_expected", line("s5", `,"stock":1`) + line("s2", `,"stock":1000`), "invalid_argument", "stock_expected", 422, 2},
		{"stale stock_expected", line("s5", `,"stock":1`) + line("s2", `,"stock":1000,"stock_expected":1000`), "conflict", "", 409, 2},
		{"stale after an earlier line", line("s2", `,"stock":900,"stock_expected":700`) + line("s2", `,"stock":1000,"stock_expected":700`), "conflict", "", 409, 2},
		{"new sku without stock", line("s2", `,"stock":900,"stock_expected":700`) + line("s6", ``), "invalid_argument", "stock", 422, 2},
	}
	for _, c := range cases {
		r := f.expectErr(c.status, c.code, c.field, "POST", "/v1/catalog:import", adminToken, c.body)
		var m struct {
			Error struct{ Line int } `json:"error"`
		}
		json.Unmarshal(r.Body, &m)
		if m.Error.Line != c.line {
			t.Fatalf("%s: line %d, want %d: %s", c.name, m.Error.Line, c.line, r.Body)
		}
		if s := f.sku("s2"); s.Available != 700 {
			t.Fatalf("%s: a failed import changed s2: %+v", c.name, s)
		}
		f.expectErr(404, "not_found", "", "GET", "/v1/skus/s5", adminToken, nil)
	}
	r = f.expectErr(409, "conflict", "", "POST", "/v1/catalog:import", adminToken, line("s2", `,"stock":1,"stock_expected":3`))
	if id, avail := conflictDetails(t, r); id != "s2" || avail != 700 {
		t.Fatalf("import conflict details: %q %d: %s", id, avail, r.Body)
	}
	f.must(200, "POST", "/v1/catalog:import", adminToken, line("s2", `,"stock":900,"stock_expected":700`)+line("s2", `,"stock":1000,"stock_expected":900`)+line("s5", `,"stock":4`)+line("s1", ``))
	if s := f.sku("s2"); s.Available != 1000 || s.Sold != 300 {
		t.Fatalf("import: s2 %+v", s)
	}
	if s := f.sku("s1"); s.Available != 1000 {
		t.Fatalf("import without stock changed s1: %+v", s)
	}

	// Replay rebuilds the same stock.
	f.stop()
	f.restart()
	for id, want := range map[string]int64{"s1": 1000, "s2": 1000, "s3": 5, "s5": 4} {
		if s := f.sku(id); s.Available != want {
			t.Fatalf("after restart %s: %+v, want %d available", id, s, want)
		}
	}
}
