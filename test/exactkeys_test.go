package test

import "testing"

// TestFieldNamesExact checks that field names are matched exactly: a
// name in another case is an unknown field, and so is a field given twice.
func TestFieldNamesExact(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	f.expectErr(422, "invalid_argument", "BUYER_ID", "POST", "/v1/orders", storefrontToken, `{"BUYER_ID":"u1","items":[{"sku_id":"s1","quantity":1}]}`)
	f.expectErr(422, "invalid_argument", "items[0].Quantity", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"s1","Quantity":1}]}`)
	f.expectErr(422, "invalid_argument", "buyer_id", "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","buyer_id":"u2","items":[{"sku_id":"s1","quantity":1}]}`)
	f.expectErr(422, "invalid_argument", "NAME", "PUT", "/v1/brands/bq", adminToken, `{"NAME":"x","country":"US"}`)
	f.expectErr(422, "invalid_argument", "orders[0].items[0].SKU_ID", "POST", "/v1/orders:batch", storefrontToken, `{"orders":[{"buyer_id":"u1","items":[{"SKU_ID":"s1","quantity":1}]}]}`)
	if s := f.sku("s1"); s.Available != 10 {
		t.Fatalf("a rejected request changed stock: %+v", s)
	}
}

// TestPayTwiceWrongAmount: paying a paid order again with its total is
// answered 200; with another amount, 422 payment_mismatch.
func TestPayTwiceWrongAmount(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"p1": 10})
	o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"p1","quantity":2}]}`).Body)
	f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
	f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
	f.expectErr(422, "payment_mismatch", "amount", "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total + 1})
	if s := f.sku("p1"); s.Sold != 2 || s.Available != 8 {
		t.Fatalf("stock after payments: %+v", s)
	}
}
