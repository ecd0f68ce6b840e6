package client

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestCatalogLines: every line is one JSON object with the type, the id
// and the PUT's fields, strings escaped as JSON wants.
func TestCatalogLines(t *testing.T) {
	var l CatalogLines
	for range 2 {
		l.Reset()
		l.Brand(&Brand{ID: "b1", Name: `Nike "Just" \ do`, Country: "US", FirstFestival: 2015, Emerging: true, LastYearGMV: 7})
		l.Merchant(&Merchant{ID: "m1", Name: "店\n铺", BrandID: "b1", Kind: "factory", Industry: "apparel", Region: "CN-ZJ"})
		l.SKU(&SKU{ID: "s1", MerchantID: "m1", BrandID: "b1", Title: "T\x01", Category: "shoes", Price: 29900, Stock: 5})
		want := []map[string]any{
			{"type": "brand", "id": "b1", "name": `Nike "Just" \ do`, "country": "US", "first_festival": 2015.0, "emerging": true, "last_year_gmv": 7.0},
			{"type": "merchant", "id": "m1", "name": "店\n铺", "brand_id": "b1", "kind": "factory", "industry": "apparel", "region": "CN-ZJ"},
			{"type": "sku", "id": "s1", "merchant_id": "m1", "brand_id": "b1", "title": "T\x01", "category": "shoes", "price": 29900.0, "stock": 5.0},
		}
		lines := bytes.Split(bytes.TrimSuffix(l.Bytes(), []byte("\n")), []byte("\n"))
		if len(lines) != len(want) {
			t.Fatalf("%d lines: %s", len(lines), l.Bytes())
		}
		for i, line := range lines {
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatalf("line %d %s: %v", i, line, err)
			}
			if !reflect.DeepEqual(got, want[i]) {
				t.Errorf("line %d:\n got %v\nwant %v", i, got, want[i])
			}
		}
	}
	if b := l.Detach(); len(b) == 0 || l.Len() != 0 {
		t.Fatalf("Detach: %d bytes out, %d left", len(b), l.Len())
	}
}
