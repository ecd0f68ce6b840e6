package test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// batchResults decodes the results of POST /v1/orders:batch.
func batchResults(t *testing.T, b []byte) []struct {
	Order    *order `json:"order"`
	Replayed bool   `json:"replayed"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
} {
	t.Helper()
	var res struct {
		Results []struct {
			Order    *order `json:"order"`
			Replayed bool   `json:"replayed"`
			Error    *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Field   string `json:"field"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("batch answer: %v: %s", err, b)
	}
	return res.Results
}

// The first bad line of an import, in file order, fails it whole: lines
// the engine would reject are found before anything is applied.
func TestImportAllOrNothing(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})

	// The reviewer's reproduction: sku with an unknown merchant, merchant
	// with an unknown brand, a new brand.
	repro := `{"type":"sku","id":"sx","merchant_id":"nope","brand_id":"b1","title":"X","price":1,"stock":1}
{"type":"merchant","id":"mx","name":"X","brand_id":"nope","kind":"trader"}
{"type":"brand","id":"bnew","name":"New","country":"FR"}
`
	r := f.expectErr(404, "not_found", "merchant_id", "POST", "/v1/catalog:import", adminToken, repro)
	if !strings.Contains(string(r.Body), `"line":1`) {
		t.Fatalf("import error line: %s", r.Body)
	}
	// The brand of line 3 was not applied.
	f.expectErr(404, "not_found", "brand_id", "PUT", "/v1/merchants/m10", adminToken, map[string]any{"name": "X", "brand_id": "bnew", "kind": "trader"})

	// A merchant with an unknown brand.
	r = f.expectErr(404, "not_found", "brand_id", "POST", "/v1/catalog:import", adminToken, `{"type":"brand","id":"bnew","name":"New","country":"FR"}
{"type":"merchant","id":"mx","name":"X","brand_id":"nope","kind":"trader"}`)
	if !strings.Contains(string(r.Body), `"line":2`) {
		t.Fatalf("import error line: %s", r.Body)
	}
	// An existing SKU moved to another merchant (422 merchant_id, as PUT).
	f.expectErr(422, "invalid_argument", "merchant_id", "PUT", "/v1/skus/s1", adminToken, map[string]any{"merchant_id": "m2", "brand_id": "b1", "title": "X", "price": 1, "stock": 1})
	r = f.expectErr(422, "invalid_argument", "merchant_id", "POST", "/v1/catalog:import", adminToken, `{"type":"brand","id":"bnew","name":"New","country":"FR"}

{"type":"sku","id":"s1","merchant_id":"m2","brand_id":"b1","title":"X","price":1,"stock":1}`)
	if !strings.Contains(string(r.Body), `"line":3`) {
		t.Fatalf("import error line: %s", r.Body)
	}
	// The same new SKU under two merchants in one file: the second line.
	r = f.expectErr(422, "invalid_argument", "merchant_id", "POST", "/v1/catalog:import", adminToken, `{"type":"sku","id":"s7","merchant_id":"m1","brand_id":"b1","title":"X","price":1,"stock":1}
{"type":"sku","id":"s7","merchant_id":"m2","brand_id":"b1","title":"X","price":1,"stock":1}`)
	if !strings.Contains(string(r.Body), `"line":2`) {
		t.Fatalf("import error line: %s", r.Body)
	}
	// A price the engine refuses is refused before anything is applied.
	r = f.expectErr(422, "invalid_argument", "price", "POST", "/v1/catalog:import", adminToken, `{"type":"brand","id":"bnew","name":"New","country":"FR"}
{"type":"sku","id":"s8","merchant_id":"m1","brand_id":"b1","title":"X","price":2000000000000,"stock":1}`)
	if !strings.Contains(string(r.Body), `"line":2`) {
		t.Fatalf("import error line: %s", r.Body)
	}
	f.expectErr(404, "not_found", "", "GET", "/v1/skus/s7", adminToken, nil)
	f.expectErr(404, "not_found", "brand_id", "PUT", "/v1/merchants/m10", adminToken, map[string]any{"name": "X", "brand_id": "bnew", "kind": "trader"})

	// References to later lines resolve: the file is applied brands first.
	f.must(200, "POST", "/v1/catalog:import", adminToken, `{"type":"sku","id":"s9","merchant_id":"m9","brand_id":"b9","title":"X","price":1,"stock":3}
{"type":"merchant","id":"m9","name":"X","brand_id":"b9","kind":"trader"}
{"type":"brand","id":"b9","name":"Nine","country":"FR"}
{"type":"sku","id":"s1","merchant_id":"m1","brand_id":"b9","title":"Moved brand","price":1,"stock":4,"stock_expected":`+strconv.FormatInt(f.sku("s1").Available, 10)+`}`)
	if s := f.sku("s9"); s.Available != 3 {
		t.Fatalf("imported sku: %+v", s)
	}
	if s := f.sku("s1"); s.Available != 4 {
		t.Fatalf("updated sku: %+v", s)
	}
}

// An Idempotency-Key replay returns the first response again, even after
// the order was paid.
func TestReplayAfterPay(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	body := `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":2}]}`
	first := f.must(201, "POST", "/v1/orders", storefrontToken, body, "Idempotency-Key", "k-pay")
	a := decodeOrder(t, first.Body)
	f.must(200, "POST", "/v1/orders/"+a.OrderID+"/pay", storefrontToken, map[string]any{"amount": a.Total})
	r := f.must(201, "POST", "/v1/orders", storefrontToken, body, "Idempotency-Key", "k-pay")
	b := decodeOrder(t, r.Body)
	if b.OrderID != a.OrderID || b.Status != "pending_payment" || b.PaidAt != "" || b.CreatedAt != a.CreatedAt || b.PayBy != a.PayBy || b.Total != a.Total {
		t.Fatalf("replay after pay:\n%s\n%s", first.Body, r.Body)
	}
	if strings.Contains(string(r.Body), "paid_at") {
		t.Fatalf("replay shows paid_at: %s", r.Body)
	}
	if s := f.sku("s1"); s.Sold != 2 || s.Reserved != 0 || s.Available != 8 {
		t.Fatalf("replay reserved again: %+v", s)
	}
	// In a batch too.
	batch := `{"orders":[{"buyer_id":"u2","items":[{"sku_id":"s1","quantity":1}],"idempotency_key":"k-b"}]}`
	res := batchResults(t, f.must(200, "POST", "/v1/orders:batch", storefrontToken, batch).Body)
	o := res[0].Order
	f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
	res = batchResults(t, f.must(200, "POST", "/v1/orders:batch", storefrontToken, batch).Body)
	if p := res[0].Order; p == nil || !res[0].Replayed || p.OrderID != o.OrderID || p.Status != "pending_payment" || p.PaidAt != "" {
		t.Fatalf("batch replay after pay: %+v", res[0])
	}
	if s := f.sku("s1"); s.Sold != 3 || s.Reserved != 0 {
		t.Fatalf("batch replay reserved again: %+v", s)
	}
}

// A JSON batch is read as JSON whatever its Content-Type but protobuf's.
func TestBatchContentType(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	body := `{"orders":[{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}]}]}`
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-8"} {
		res := batchResults(t, f.must(200, "POST", "/v1/orders:batch", storefrontToken, body, "Content-Type", ct).Body)
		if len(res) != 1 || res[0].Order == nil {
			t.Fatalf("%s: %+v", ct, res)
		}
	}
	if s := f.sku("s1"); s.Reserved != 3 {
		t.Fatalf("after batches: %+v", s)
	}
}

// Error fields are JSON paths: no Go type names, the batch index on engine
// errors, array indices on wrong types.
func TestErrorFields(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})

	r := f.expectErr(422, "invalid_argument", "orders[1].items[0].quantity", "POST", "/v1/orders:batch", storefrontToken,
		`{"orders":[{"buyer_id":"b","items":[{"sku_id":"s1","quantity":1}]},{"buyer_id":"b","items":[{"sku_id":"s","quantity":"x"}]}]}`)
	if strings.Contains(string(r.Body), "server.") || strings.Contains(string(r.Body), "JSON\"") {
		t.Fatalf("Go names in the error: %s", r.Body)
	}
	f.expectErr(422, "invalid_argument", "orders[0].items[1].colour", "POST", "/v1/orders:batch", storefrontToken,
		`{"orders":[{"buyer_id":"b","items":[{"sku_id":"s1","quantity":1},{"sku_id":"s1","colour":1}]}]}`)
	f.expectErr(422, "invalid_argument", "orders[0]", "POST", "/v1/orders:batch", storefrontToken, `{"orders":["x"]}`)
	r = f.expectErr(422, "invalid_argument", "items[1].quantity", "POST", "/v1/orders", storefrontToken,
		`{"buyer_id":"b","items":[{"sku_id":"s1","quantity":1},{"sku_id":"s1","quantity":"2"}]}`)
	if strings.Contains(string(r.Body), "server.") || strings.Contains(string(r.Body), "int64") {
		t.Fatalf("Go names in the error: %s", r.Body)
	}
	f.expectErr(422, "invalid_argument", "items", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"b","items":{}}`)
	f.expectErr(422, "invalid_argument", "colour", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"b","items":[{"sku_id":"s1","quantity":1}],"colour":1}`)
	f.expectErr(422, "invalid_argument", "idempotency_key", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"b","items":[{"sku_id":"s1","quantity":1}],"idempotency_key":"k"}`)

	// Engine errors in a batch carry the order's index.
	res := batchResults(t, f.must(200, "POST", "/v1/orders:batch", storefrontToken,
		`{"orders":[{"buyer_id":"b","items":[{"sku_id":"nope","quantity":1}]}]}`).Body)
	if e := res[0].Error; e == nil || e.Code != "not_found" || e.Field != "orders[0].items[0].sku_id" {
		t.Fatalf("batch engine error: %+v", res[0])
	}

	r = f.expectErr(422, "invalid_argument", "price", "POST", "/v1/catalog:import", adminToken,
		`{"type":"sku","id":"s2","merchant_id":"m1","brand_id":"b1","title":"X","price":"x","stock":1}`)
	if strings.Contains(string(r.Body), "skuJSON") || strings.Contains(string(r.Body), "int64") || !strings.Contains(string(r.Body), `"line":1`) {
		t.Fatalf("import field: %s", r.Body)
	}

	f.expectErr(422, "invalid_argument", "region", "PUT", "/v1/merchants/m3", adminToken,
		map[string]any{"name": "X", "brand_id": "b1", "kind": "trader", "region": strings.Repeat("x", 33)})
	f.expectErr(422, "invalid_argument", "industry", "PUT", "/v1/merchants/m3", adminToken,
		map[string]any{"name": "X", "brand_id": "b1", "kind": "trader", "industry": strings.Repeat("x", 1025)})

	for _, body := range []string{`[]`, `"x"`, `7`} {
		f.expectErr(422, "invalid_argument", "body", "PUT", "/v1/brands/b2", adminToken, body)
		f.expectErr(422, "invalid_argument", "body", "POST", "/v1/orders", storefrontToken, body)
		f.expectErr(422, "invalid_argument", "body", "POST", "/v1/orders:batch", storefrontToken, body)
	}
}
