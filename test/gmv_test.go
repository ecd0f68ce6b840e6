package test

import (
	"testing"
	"time"
)

// TestGMV pays some orders and checks GET /v1/gmv (public) counts exactly
// the paid ones, in CNY and USD, and survives a restart.
func TestGMV(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"g1": 100})
	var paid int64
	for i := 0; i < 6; i++ {
		o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, `{"buyer_id":"u1","items":[{"sku_id":"g1","quantity":2}]}`).Body)
		if i%2 == 0 {
			f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
			paid += o.Total
		}
	}
	check := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			g := f.must(200, "GET", "/v1/gmv", "", nil).json(t)
			gmv := g["gmv"].(map[string]any)
			usd := g["gmv_usd"].(map[string]any)
			if gmv["amount"] == float64(paid) && g["orders_paid"] == 3.0 && g["orders_placed"] == 6.0 {
				if gmv["currency"] != "CNY" || usd["currency"] != "USD" || usd["amount"] != float64(int64(float64(paid)/6.7233+0.5)) {
					t.Fatalf("gmv body: %v", g)
				}
				if _, err := time.Parse(time.RFC3339, g["as_of"].(string)); err != nil {
					t.Fatalf("as_of: %v", err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gmv %v, want %d fen in 3 paid orders of 6", g, paid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check()
	f.stop()
	f.restart()
	check()
}
