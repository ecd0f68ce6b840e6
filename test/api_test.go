package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/client"
)

func TestOperations(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	r := f.must(200, "GET", "/healthz", "", nil)
	if r.json(t)["status"] != "ok" {
		t.Fatalf("healthz: %s", r.Body)
	}
	f.must(200, "GET", "/readyz", "", nil)
	r = f.must(200, "GET", "/v1/openapi.json", "", nil)
	doc := r.json(t)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi version: %v", doc["openapi"])
	}
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/v1/orders", "/v1/orders:batch", "/v1/skus/{sku_id}", "/v1/catalog:import", "/v1/buyers/{buyer_id}/orders", "/metrics"} {
		if paths[p] == nil {
			t.Errorf("openapi: no path %s", p)
		}
	}
	f.must(200, "GET", "/", "", nil)
	f.seedCatalog(map[string]int{"s1": 10})
	f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}]}`)
	r = f.must(200, "GET", "/metrics", "", nil)
	for _, name := range []string{"fest_orders_placed_total 1", "fest_orders_rejected_total", "fest_gateway_batch_size", "fest_journal_fsync_seconds", "fest_engine_queue_depth", "fest_journal_bytes_total", "fest_projection_lag_bytes", `fest_idempotency_keys{tier="memory"}`, `fest_idempotency_keys{tier="disk"}`, "fest_idempotency_oldest_key_age_seconds"} {
		if !strings.Contains(string(r.Body), name) {
			t.Errorf("metrics: no %q", name)
		}
	}
	f.expectErr(404, "not_found", "", "GET", "/v1/nothing", adminToken, nil)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	brand := map[string]any{"name": "B", "country": "CN"}
	f.expectErr(401, "unauthenticated", "", "PUT", "/v1/brands/b1", "", brand)
	f.expectErr(401, "unauthenticated", "", "PUT", "/v1/brands/b1", "not-a-token", brand)
	f.expectErr(403, "forbidden", "", "PUT", "/v1/brands/b1", storefrontToken, brand)
	f.expectErr(403, "forbidden", "", "PUT", "/v1/brands/b1", carrierToken, brand)
	f.expectErr(401, "unauthenticated", "", "POST", "/v1/orders", "", `{}`)
	f.expectErr(403, "forbidden", "", "POST", "/v1/orders", adminToken, `{}`)
	f.expectErr(403, "forbidden", "", "POST", "/v1/orders:batch", carrierToken, `{}`)
	f.expectErr(403, "forbidden", "", "GET", "/v1/orders/1", carrierToken, nil)
	f.expectErr(401, "unauthenticated", "", "GET", "/v1/buyers/u1/orders", "", nil)
	f.must(200, "PUT", "/v1/brands/b1", adminToken, brand)
}

// TestGeneratedTokens checks that tokens not given are generated into the
// data directory, printed, and reused on the next start.
func TestGeneratedTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := &fest{t: t, Dir: dir}
	// Start without tokens: build the command by hand.
	f.args = nil
	f2 := startFestNoTokens(t, dir)
	out := f2.out.String()
	if !strings.Contains(out, "admin token generated into") {
		t.Fatalf("no generated token message:\n%s", out)
	}
	tok := readToken(t, dir, "admin")
	f2.must(200, "PUT", "/v1/brands/b1", tok, map[string]any{"name": "B", "country": "CN"})
	f2.stop()
	f3 := startFestNoTokens(t, dir)
	if readToken(t, dir, "admin") != tok {
		t.Fatal("token changed across restarts")
	}
	f3.must(200, "PUT", "/v1/brands/b1", tok, map[string]any{"name": "B", "country": "CN"})
	f3.expectErr(403, "forbidden", "", "PUT", "/v1/brands/b1", readToken(t, dir, "storefront"), map[string]any{"name": "B", "country": "CN"})
	_ = f
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	r := f.must(200, "PUT", "/v1/brands/b1", adminToken, map[string]any{"name": "Nike", "country": "US", "first_festival": 2012, "emerging": true, "last_year_gmv": 5000})
	if m := r.json(t); m["brand_id"] != "b1" || m["country"] != "US" || m["emerging"] != true {
		t.Fatalf("brand answer: %s", r.Body)
	}
	f.expectErr(422, "invalid_argument", "color", "PUT", "/v1/brands/b2", adminToken, `{"name":"X","country":"US","color":"red"}`)
	f.expectErr(422, "invalid_argument", "country", "PUT", "/v1/brands/b2", adminToken, `{"name":"X","country":"USA"}`)
	f.expectErr(422, "invalid_argument", "first_festival", "PUT", "/v1/brands/b2", adminToken, `{"name":"X","country":"US","first_festival":"2020"}`)
	f.expectErr(422, "invalid_argument", "name", "PUT", "/v1/brands/b2", adminToken, `{"country":"US"}`)
	f.expectErr(400, "invalid_json", "", "PUT", "/v1/brands/b2", adminToken, `{"name":"X",`)
	f.expectErr(400, "invalid_json", "", "PUT", "/v1/brands/b2", adminToken, `not json`)
	f.expectErr(400, "invalid_json", "", "PUT", "/v1/brands/b2", adminToken, ``)

	f.must(200, "PUT", "/v1/merchants/m1", adminToken, map[string]any{"name": "Nike Store", "brand_id": "b1", "kind": "brand_store", "industry": "apparel", "region": "CN-ZJ"})
	f.expectErr(404, "not_found", "brand_id", "PUT", "/v1/merchants/m2", adminToken, map[string]any{"name": "X", "brand_id": "nope", "kind": "trader"})
	f.expectErr(422, "invalid_argument", "kind", "PUT", "/v1/merchants/m2", adminToken, map[string]any{"name": "X", "brand_id": "b1", "kind": "shop"})

	r = f.must(200, "PUT", "/v1/skus/s1", adminToken, map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "Shoe", "category": "shoes", "price": 29900, "stock": 100})
	if m := r.json(t); m["stock_available"] != 100.0 || m["price"] != 29900.0 {
		t.Fatalf("sku answer: %s", r.Body)
	}
	f.expectErr(404, "not_found", "merchant_id", "PUT", "/v1/skus/s2", adminToken, map[string]any{"merchant_id": "nope", "brand_id": "b1", "title": "X", "price": 1, "stock": 1})
	f.expectErr(404, "not_found", "brand_id", "PUT", "/v1/skus/s2", adminToken, map[string]any{"merchant_id": "m1", "brand_id": "nope", "title": "X", "price": 1, "stock": 1})
	f.expectErr(422, "invalid_argument", "price", "PUT", "/v1/skus/s2", adminToken, map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "X", "price": -1, "stock": 1})
	f.expectErr(422, "invalid_argument", "stock", "PUT", "/v1/skus/s2", adminToken, `{"merchant_id":"m1","brand_id":"b1","title":"X","price":1,"stock":1.5}`)

	r = f.must(200, "GET", "/v1/skus/s1", storefrontToken, nil)
	if m := r.json(t); m["title"] != "Shoe" || m["stock_available"] != 100.0 || m["stock_reserved"] != 0.0 || m["sold"] != 0.0 {
		t.Fatalf("get sku: %s", r.Body)
	}
	f.expectErr(404, "not_found", "", "GET", "/v1/skus/nope", adminToken, nil)

	r = f.must(200, "POST", "/v1/skus/s1/stock", adminToken, map[string]any{"delta": -5})
	if m := r.json(t); m["stock_available"] != 95.0 {
		t.Fatalf("adjust: %s", r.Body)
	}
	f.expectErr(409, "out_of_stock", "", "POST", "/v1/skus/s1/stock", adminToken, map[string]any{"delta": -96})
	f.expectErr(404, "not_found", "", "POST", "/v1/skus/nope/stock", adminToken, map[string]any{"delta": 1})
	f.expectErr(422, "invalid_argument", "delta", "POST", "/v1/skus/s1/stock", adminToken, `{}`)
	// Stock on update sets the available stock (an admin correction) by
	// compare-and-set against the stock last read.
	f.must(200, "PUT", "/v1/skus/s1", adminToken, map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "Shoe", "price": 29900, "stock": 7, "stock_expected": f.sku("s1").Available})
	if s := f.sku("s1"); s.Available != 7 {
		t.Fatalf("stock after correction: %+v", s)
	}

	ndjson := `{"type":"brand","id":"b9","name":"Uniqlo","country":"JP"}
{"type":"merchant","id":"m9","name":"Uniqlo Store","brand_id":"b9","kind":"brand_store"}

{"type":"sku","id":"s9","merchant_id":"m9","brand_id":"b9","title":"Tee","price":9900,"stock":50}
{"type":"sku","sku_id":"s10","merchant_id":"m9","brand_id":"b9","title":"Cap","price":4900,"stock":5}
`
	r = f.must(200, "POST", "/v1/catalog:import", adminToken, ndjson)
	if string(r.Body) != `{"imported":{"brand":1,"merchant":1,"sku":2}}`+"\n" {
		t.Fatalf("import: %s", r.Body)
	}
	if s := f.sku("s10"); s.Available != 5 {
		t.Fatalf("imported sku: %+v", s)
	}
	bad := `{"type":"brand","id":"b10","name":"A","country":"FR"}
{"type":"sku","id":"s11","merchant_id":"m9","brand_id":"b9","title":"X","price":1,"stock":1,"colour":"red"}
`
	r = f.expectErr(422, "invalid_argument", "colour", "POST", "/v1/catalog:import", adminToken, bad)
	if !strings.Contains(string(r.Body), `"line":2`) {
		t.Fatalf("import error has no line: %s", r.Body)
	}
	// Nothing of a failed import is applied.
	f.expectErr(404, "not_found", "brand_id", "PUT", "/v1/merchants/m10", adminToken, map[string]any{"name": "X", "brand_id": "b10", "kind": "trader"})
	f.expectErr(400, "invalid_json", "", "POST", "/v1/catalog:import", adminToken, "{\"type\":\"brand\"\n")
	f.expectErr(422, "invalid_argument", "type", "POST", "/v1/catalog:import", adminToken, `{"type":"warehouse","id":"w1"}`)
}

func TestOrders(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 100, "s2": 100, "s3": 2})
	f.must(200, "PUT", "/v1/skus/t1", adminToken, map[string]any{"merchant_id": "m2", "brand_id": "b1", "title": "Toy", "price": 500, "stock": 10})

	r := f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":2},{"sku_id":"s2","quantity":1},{"sku_id":"s1","quantity":1}],"channel":"live:ch1","region":"CN-ZJ"}`)
	o := decodeOrder(t, r.Body)
	if o.Status != "pending_payment" || o.BuyerID != "u1" || o.MerchantID != "m1" || o.Total != 4000 || o.Currency != "CNY" || o.Channel != "live:ch1" || o.Region != "CN-ZJ" || len(o.Items) != 2 || o.Items[0].Quantity != 3 || o.Items[0].Amount != 3000 {
		t.Fatalf("order: %s", r.Body)
	}
	if _, err := time.Parse(time.RFC3339, o.CreatedAt); err != nil {
		t.Fatalf("created_at %q: %v", o.CreatedAt, err)
	}
	if s := f.sku("s1"); s.Available != 97 || s.Reserved != 3 {
		t.Fatalf("s1 after order: %+v", s)
	}
	// Readable at once, identical.
	got := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+o.OrderID, storefrontToken, nil).Body)
	if fmt.Sprint(got) != fmt.Sprint(o) {
		t.Fatalf("get order:\n%+v\nwant\n%+v", got, o)
	}
	// channel defaults to app
	r = f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s2","quantity":1}]}`)
	o2 := decodeOrder(t, r.Body)
	if o2.Channel != "app" {
		t.Fatalf("default channel: %s", r.Body)
	}

	// Errors of placing.
	f.expectErr(404, "not_found", "items[0].sku_id", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"nope","quantity":1}]}`)
	f.expectErr(422, "invalid_argument", "items", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1},{"sku_id":"t1","quantity":1}]}`)
	f.expectErr(422, "invalid_argument", "items[0].quantity", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":0}]}`)
	f.expectErr(422, "invalid_argument", "items[0].quantity", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1000}]}`)
	f.expectErr(422, "invalid_argument", "items", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[]}`)
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = map[string]any{"sku_id": "s1", "quantity": 1}
	}
	f.expectErr(422, "invalid_argument", "items", "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "u1", "items": many})
	f.expectErr(422, "invalid_argument", "buyer_id", "POST", "/v1/orders", storefrontToken, `{"items":[{"sku_id":"s1","quantity":1}]}`)
	f.expectErr(422, "invalid_argument", "channel", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}],"channel":"tv"}`)
	f.expectErr(422, "invalid_argument", "coupon", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}],"coupon":"X"}`)
	f.expectErr(422, "invalid_argument", "items[0].quantity", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":"1"}]}`)
	f.expectErr(422, "invalid_argument", "buyer_id", "POST", "/v1/orders", storefrontToken, `{"buyer_id":7,"items":[{"sku_id":"s1","quantity":1}]}`)
	f.expectErr(400, "invalid_json", "", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[`)
	f.expectErr(400, "invalid_json", "", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1"} {}`)
	r = f.expectErr(409, "out_of_stock", "", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s2","quantity":1},{"sku_id":"s3","quantity":3}]}`)
	if m := r.json(t)["error"].(map[string]any); m["sku_id"] != "s3" || m["available"] != 2.0 {
		t.Fatalf("out_of_stock details: %s", r.Body)
	}
	if s := f.sku("s2"); s.Reserved != 2 {
		t.Fatalf("all or nothing: s2 %+v", s)
	}
	big := `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}],"region":"` + strings.Repeat("x", 1<<20) + `"}`
	f.expectErr(413, "too_large", "", "POST", "/v1/orders", storefrontToken, big)

	// Pay and cancel.
	f.expectErr(422, "payment_mismatch", "", "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": 1})
	f.expectErr(422, "invalid_argument", "amount", "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, `{}`)
	r = f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": 4000})
	paid := decodeOrder(t, r.Body)
	if paid.Status != "paid" || paid.PaidAt == "" || paid.Total != 4000 {
		t.Fatalf("pay: %s", r.Body)
	}
	f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": 4000})
	f.expectErr(409, "invalid_state", "", "POST", "/v1/orders/"+o.OrderID+"/cancel", storefrontToken, nil)
	if g := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+o.OrderID, storefrontToken, nil).Body); g.Status != "paid" || g.PaidAt == "" {
		t.Fatalf("get paid order: %+v", g)
	}
	if s := f.sku("s1"); s.Sold != 3 || s.Reserved != 0 || s.Available != 97 {
		t.Fatalf("s1 after pay: %+v", s)
	}
	r = f.must(200, "POST", "/v1/orders/"+o2.OrderID+"/cancel", storefrontToken, nil)
	if decodeOrder(t, r.Body).Status != "cancelled" || !strings.Contains(string(r.Body), "cancelled_at") {
		t.Fatalf("cancel: %s", r.Body)
	}
	f.must(200, "POST", "/v1/orders/"+o2.OrderID+"/cancel", storefrontToken, nil)
	f.expectErr(409, "invalid_state", "", "POST", "/v1/orders/"+o2.OrderID+"/pay", storefrontToken, map[string]any{"amount": 1000})
	if s := f.sku("s2"); s.Reserved != 0 || s.Sold != 1 || s.Available != 99 {
		t.Fatalf("s2 after cancel: %+v", s)
	}
	f.expectErr(404, "not_found", "", "GET", "/v1/orders/zzzzzz", storefrontToken, nil)
	f.expectErr(404, "not_found", "", "GET", "/v1/orders/not-an-id", storefrontToken, nil)
	f.expectErr(404, "not_found", "", "POST", "/v1/orders/zzzzzz/pay", storefrontToken, map[string]any{"amount": 1})
	f.expectErr(404, "not_found", "", "POST", "/v1/orders/zzzzzz/cancel", storefrontToken, nil)
}

func TestBuyerHistory(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 1000})
	var ids []string
	for i := 0; i < 7; i++ {
		r := f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"hist","items":[{"sku_id":"s1","quantity":1}]}`)
		ids = append(ids, decodeOrder(t, r.Body).OrderID)
	}
	f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"other","items":[{"sku_id":"s1","quantity":1}]}`)
	f.must(200, "POST", "/v1/orders/"+ids[6]+"/pay", storefrontToken, map[string]any{"amount": 1000})
	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		path := "/v1/buyers/hist/orders?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var p struct {
			Orders     []order `json:"orders"`
			NextCursor *string `json:"next_cursor"`
		}
		json.Unmarshal(f.must(200, "GET", path, storefrontToken, nil).Body, &p)
		for _, o := range p.Orders {
			got = append(got, o.OrderID)
			if o.OrderID == ids[6] && o.Status != "paid" {
				t.Fatalf("paid order listed as %s", o.Status)
			}
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	want := make([]string, len(ids))
	for i := range ids {
		want[i] = ids[len(ids)-1-i]
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history newest first:\n got %v\nwant %v", got, want)
	}
	f.expectErr(422, "invalid_argument", "limit", "GET", "/v1/buyers/hist/orders?limit=0", storefrontToken, nil)
	f.expectErr(422, "invalid_argument", "limit", "GET", "/v1/buyers/hist/orders?limit=1001", storefrontToken, nil)
	f.expectErr(422, "invalid_argument", "cursor", "GET", "/v1/buyers/hist/orders?cursor=%21%21", storefrontToken, nil)
	r := f.must(200, "GET", "/v1/buyers/nobody/orders", storefrontToken, nil)
	if string(r.Body) != `{"orders":[],"next_cursor":null}`+"\n" {
		t.Fatalf("empty history: %s", r.Body)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	body := `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":2}]}`
	a := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, body, "Idempotency-Key", "k-1").Body)
	// Same key, same body (other whitespace and field order): same order.
	b := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, `{ "items": [{"quantity":2, "sku_id":"s1"}], "buyer_id":"u1" }`, "Idempotency-Key", "k-1").Body)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("replay differs:\n%+v\n%+v", a, b)
	}
	if s := f.sku("s1"); s.Reserved != 2 || s.Available != 8 {
		t.Fatalf("replay reserved again: %+v", s)
	}
	f.expectErr(422, "idempotency_mismatch", "", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":3}]}`, "Idempotency-Key", "k-1")
	// Batch: idempotency_key per order.
	batch := `{"orders":[{"buyer_id":"u2","items":[{"sku_id":"s1","quantity":1}],"idempotency_key":"k-2"},{"buyer_id":"u2","items":[{"sku_id":"s1","quantity":1}],"idempotency_key":"k-2"}]}`
	r := f.must(200, "POST", "/v1/orders:batch", storefrontToken, batch)
	r2 := f.must(200, "POST", "/v1/orders:batch", storefrontToken, batch)
	var res1, res2 struct {
		Results []struct {
			Order *order `json:"order"`
		} `json:"results"`
	}
	json.Unmarshal(r.Body, &res1)
	json.Unmarshal(r2.Body, &res2)
	id := res1.Results[0].Order.OrderID
	for _, rr := range append(res1.Results, res2.Results...) {
		if rr.Order == nil || rr.Order.OrderID != id {
			t.Fatalf("batch replay: %s / %s", r.Body, r2.Body)
		}
	}
	if s := f.sku("s1"); s.Reserved != 3 {
		t.Fatalf("batch replay reserved again: %+v", s)
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 5})
	r := f.must(200, "POST", "/v1/orders:batch", storefrontToken, `{"orders":[
		{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":2}]},
		{"buyer_id":"u1","items":[{"sku_id":"nope","quantity":1}]},
		{"buyer_id":"","items":[{"sku_id":"s1","quantity":1}]},
		{"buyer_id":"u2","items":[{"sku_id":"s1","quantity":9}]},
		{"buyer_id":"u3","items":[{"sku_id":"s1","quantity":3}]}]}`)
	var res struct {
		Results []struct {
			Order *order `json:"order"`
			Error *struct {
				Code  string `json:"code"`
				Field string `json:"field"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil || len(res.Results) != 5 {
		t.Fatalf("batch: %v %s", err, r.Body)
	}
	want := []string{"", "not_found", "invalid_argument", "out_of_stock", ""}
	for i, w := range want {
		rr := res.Results[i]
		if w == "" && (rr.Order == nil || rr.Error != nil) || w != "" && (rr.Error == nil || rr.Error.Code != w) {
			t.Fatalf("result %d: want %q: %s", i, w, r.Body)
		}
	}
	if res.Results[2].Error.Field != "orders[2].buyer_id" {
		t.Fatalf("batch field: %s", r.Body)
	}
	if s := f.sku("s1"); s.Available != 0 || s.Reserved != 5 {
		t.Fatalf("after batch: %+v", s)
	}
	f.expectErr(422, "invalid_argument", "orders[0].color", "POST", "/v1/orders:batch", storefrontToken, `{"orders":[{"buyer_id":"u1","items":[],"color":1}]}`)
	f.expectErr(422, "invalid_argument", "orders", "POST", "/v1/orders:batch", storefrontToken, `{}`)
	tooMany := `{"orders":[` + strings.Repeat(`{"buyer_id":"u","items":[{"sku_id":"s1","quantity":1}]},`, 10000) + `{"buyer_id":"u","items":[{"sku_id":"s1","quantity":1}]}]}`
	f.expectErr(422, "invalid_argument", "orders", "POST", "/v1/orders:batch", storefrontToken, tooMany)
	huge := `{"orders":[{"buyer_id":"u1","region":"` + strings.Repeat("x", 16<<20) + `","items":[]}]}`
	f.expectErr(413, "too_large", "", "POST", "/v1/orders:batch", storefrontToken, huge)
	// Protobuf: malformed and through the Go client.
	f.expectErr(400, "invalid_protobuf", "", "POST", "/v1/orders:batch", storefrontToken, []byte{0x0a, 0xff}, "Content-Type", "application/x-protobuf")
	// Any Content-Type but protobuf is JSON, as on every other endpoint.
	f.expectErr(400, "invalid_json", "", "POST", "/v1/orders:batch", storefrontToken, `x`, "Content-Type", "text/plain")
	f.must(200, "POST", "/v1/skus/s1/stock", adminToken, map[string]any{"delta": 100})
	c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	o, err := c.PlaceOrder(ctx, client.OrderRequest{BuyerID: "pb", Items: []client.Item{{SKUID: "s1", Quantity: 2}}, Region: "CN-SH"})
	if err != nil || o.Status != "pending_payment" || o.Total != 2000 || o.Channel != "app" || o.Region != "CN-SH" || o.MerchantID != "m1" {
		t.Fatalf("client order: %+v %v", o, err)
	}
	_, err = c.PlaceOrder(ctx, client.OrderRequest{BuyerID: "pb", Items: []client.Item{{SKUID: "s1", Quantity: 999}}})
	if e, ok := err.(*client.Error); !ok || e.Code != "out_of_stock" || e.Status != 409 || e.SKUID != "s1" {
		t.Fatalf("client out of stock: %v", err)
	}
	g, err := c.GetOrder(ctx, o.ID)
	if err != nil || g.ID != o.ID || g.Total != o.Total || !g.CreatedAt.Equal(o.CreatedAt) {
		t.Fatalf("client get: %+v %v", g, err)
	}
	p, err := c.Pay(ctx, o.ID, o.Total)
	if err != nil || p.Status != "paid" || p.PaidAt.IsZero() {
		t.Fatalf("client pay: %+v %v", p, err)
	}
	// Many concurrent client calls share batches.
	var wg sync.WaitGroup
	var okN atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.PlaceOrder(ctx, client.OrderRequest{BuyerID: "many", Items: []client.Item{{SKUID: "s1", Quantity: 1}}}); err == nil {
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	if okN.Load() != 50 {
		t.Fatalf("concurrent client orders: %d of 50", okN.Load())
	}
}

// TestLastUnits: 200 concurrent buyers race for 1,000 units.
func TestLastUnits(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"hot": 1000})
	const clients, perClient = 200, 6
	var okN, soldOut, other atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				r, err := f.call("POST", "/v1/orders", storefrontToken, fmt.Sprintf(`{"buyer_id":"b%d","items":[{"sku_id":"hot","quantity":1}]}`, c))
				switch {
				case err != nil:
					other.Add(1)
				case r.Status == http.StatusCreated:
					okN.Add(1)
				case r.Status == http.StatusConflict && r.errCode() == "out_of_stock":
					soldOut.Add(1)
				default:
					other.Add(1)
					t.Errorf("unexpected answer %d %s", r.Status, r.Body)
				}
			}
		}()
	}
	wg.Wait()
	if okN.Load() != 1000 || soldOut.Load() != clients*perClient-1000 || other.Load() != 0 {
		t.Fatalf("ok %d, out_of_stock %d, other %d", okN.Load(), soldOut.Load(), other.Load())
	}
	s := f.sku("hot")
	if s.Available != 0 || s.Reserved+s.Sold != 1000 {
		t.Fatalf("hot sku: %+v", s)
	}
}

// TestExpiry: unpaid orders expire after --payment-timeout and release
// their stock.
func TestExpiry(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--payment-timeout", "1s")
	f.seedCatalog(map[string]int{"s1": 10})
	o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":4}]}`).Body)
	p := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}]}`).Body)
	f.must(200, "POST", "/v1/orders/"+p.OrderID+"/pay", storefrontToken, map[string]any{"amount": p.Total})
	deadline := time.Now().Add(15 * time.Second)
	for {
		g := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+o.OrderID, storefrontToken, nil).Body)
		if g.Status == "expired" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order still %s after its payment timeout", g.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := f.sku("s1"); s.Available != 9 || s.Reserved != 0 || s.Sold != 1 {
		t.Fatalf("stock after expiry: %+v", s)
	}
	f.expectErr(409, "invalid_state", "", "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
	r := f.must(200, "GET", "/v1/orders/"+o.OrderID, storefrontToken, nil)
	if !strings.Contains(string(r.Body), `"expired_at"`) {
		t.Fatalf("expired order has no expired_at: %s", r.Body)
	}
}
