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
