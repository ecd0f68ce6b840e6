package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBoardAfterKillDuringLoad places and pays orders from many workers,
// kills the server with SIGKILL in the middle, restarts it, and checks that
// GET /v1/gmv and the brand, merchant and channel breakdowns equal the sums
// of the orders that are paid after the restart (every order acknowledged,
// its status read back, so payments whose answer the kill cut off count as
// they were decided), and that every breakdown's rows add up to its total:
// nothing counted twice or missed. Twice, so the second kill hits a board
// resumed from a snapshot.
func TestBoardAfterKillDuringLoad(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	brands := []string{"kb1", "kb2", "kb3"}
	for i, b := range brands {
		f.must(200, "PUT", "/v1/brands/"+b, adminToken, map[string]any{"name": "Brand " + b, "country": []string{"CN", "US", "JP"}[i], "first_festival": 2015, "emerging": false, "last_year_gmv": 0})
		m := fmt.Sprintf("km%d", i)
		f.must(200, "PUT", "/v1/merchants/"+m, adminToken, map[string]any{"name": "Shop " + m, "brand_id": b, "kind": "brand_store", "industry": "apparel", "region": "CN-ZJ"})
		for k := 0; k < 3; k++ {
			f.must(200, "PUT", fmt.Sprintf("/v1/skus/%s-%d", m, k), adminToken, map[string]any{"merchant_id": m, "brand_id": b, "title": "Item", "category": "apparel", "price": 1000 + 100*k, "stock": 10_000_000})
		}
	}
	var mu sync.Mutex
	acked := map[string]order{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for cycle := 0; cycle < 2; cycle++ {
		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := 0; w < 12; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
				for !stop.Load() {
					m := r.IntN(len(brands))
					body := fmt.Sprintf(`{"buyer_id":"kb-%d","items":[{"sku_id":"km%d-%d","quantity":%d}],"channel":"%s","region":"CN-ZJ"}`,
						r.IntN(40), m, r.IntN(3), 1+r.IntN(3), []string{"app", "web", "live:kb"}[r.IntN(3)])
					resp, err := f.call("POST", "/v1/orders", storefrontToken, body)
					if err != nil {
						return
					}
					if resp.Status != 201 {
						t.Errorf("place: %d %s", resp.Status, resp.Body)
						return
					}
					o := decodeOrder(t, resp.Body)
					mu.Lock()
					acked[o.OrderID] = o
					mu.Unlock()
					if r.IntN(3) != 0 {
						if _, err := f.call("POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, fmt.Sprintf(`{"amount":%d}`, o.Total)); err != nil {
							return
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
		f.kill()
		stop.Store(true)
		wg.Wait()
		f.restart()

		// What the board must show: the orders paid after the restart.
		var gmv int64
		paid := 0
		byMerchant, byChannel := map[string]int64{}, map[string]int64{}
		for id := range acked {
			o := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+id, storefrontToken, nil).Body)
			if o.Status != "paid" {
				continue
			}
			paid++
			gmv += o.Total
			byMerchant[o.MerchantID] += o.Total
			byChannel[o.Channel] += o.Total
		}
		if paid == 0 {
			t.Fatalf("cycle %d: no order was paid before the kill", cycle)
		}
		byBrand := map[string]int64{}
		for m, v := range byMerchant {
			var i int
			fmt.Sscanf(m, "km%d", &i)
			byBrand[brands[i]] += v
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			g := f.must(200, "GET", "/v1/gmv", "", nil).json(t)
			if g["gmv"].(map[string]any)["amount"] == float64(gmv) && g["orders_paid"] == float64(paid) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: gmv %v, want %d fen in %d paid orders", cycle, g, gmv, paid)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for by, want := range map[string]map[string]int64{"brand": byBrand, "merchant": byMerchant, "channel": byChannel} {
			var b struct {
				Rows []struct {
					Key string `json:"key"`
					GMV int64  `json:"gmv"`
				} `json:"rows"`
				GMV int64 `json:"gmv"`
			}
			if err := json.Unmarshal(f.must(200, "GET", "/v1/gmv/breakdown?by="+by+"&top=1000", "", nil).Body, &b); err != nil {
				t.Fatal(err)
			}
			var sum int64
			got := map[string]int64{}
			for _, r := range b.Rows {
				sum += r.GMV
				got[r.Key] = r.GMV
			}
			if sum != b.GMV || b.GMV != gmv {
				t.Fatalf("cycle %d: breakdown by %s: rows add up to %d, its total %d, the paid orders %d", cycle, by, sum, b.GMV, gmv)
			}
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("cycle %d: breakdown by %s: %s has %d, the paid orders %d", cycle, by, k, got[k], v)
				}
			}
		}
		t.Logf("cycle %d: %d orders acknowledged, %d paid, %d fen", cycle, len(acked), paid, gmv)
	}
}
