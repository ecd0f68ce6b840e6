package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashHTTP kills the server with SIGKILL under load at random moments,
// restarts it on the same directory and checks that every order that got a
// 201 is readable with the same contents, every payment that got a 200 is
// still paid, and stock is conserved. FEST_CRASH_CYCLES sets the number of
// kills (default 5).
func TestCrashHTTP(t *testing.T) {
	t.Parallel()
	cycles := 5
	if v, err := strconv.Atoi(os.Getenv("FEST_CRASH_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	const skus, stock, workers = 8, 1_000_000, 16
	f := startFest(t, "")
	catalog := map[string]int{}
	for i := 0; i < skus; i++ {
		catalog[fmt.Sprintf("c%d", i)] = stock
	}
	f.seedCatalog(catalog)

	var mu sync.Mutex
	acked := map[string]order{} // order id → body of its 201
	paid := map[string]bool{}   // order ids whose pay got a 200
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for cycle := 0; cycle < cycles; cycle++ {
		var stop atomic.Bool
		var wg sync.WaitGroup
		var okN atomic.Int64
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
				for !stop.Load() {
					body := fmt.Sprintf(`{"buyer_id":"crash-%d","items":[{"sku_id":"c%d","quantity":%d},{"sku_id":"c%d","quantity":1}],"region":"CN-ZJ"}`,
						r.IntN(50), r.IntN(skus), 1+r.IntN(3), r.IntN(skus))
					resp, err := f.call("POST", "/v1/orders", storefrontToken, body)
					if err != nil {
						return // the server is gone
					}
					if resp.Status != 201 {
						t.Errorf("place: %d %s", resp.Status, resp.Body)
						return
					}
					o := decodeOrder(t, resp.Body)
					okN.Add(1)
					mu.Lock()
					acked[o.OrderID] = o
					mu.Unlock()
					if r.IntN(2) == 0 {
						pr, err := f.call("POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, fmt.Sprintf(`{"amount":%d}`, o.Total))
						if err != nil {
							return
						}
						if pr.Status == 200 {
							mu.Lock()
							paid[o.OrderID] = true
							mu.Unlock()
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(150+rng.IntN(400)) * time.Millisecond)
		f.kill()
		stop.Store(true)
		wg.Wait()
		if okN.Load() == 0 {
			t.Fatalf("cycle %d: no order was placed before the kill", cycle)
		}
		f.restart()
		verifyCrash(t, f, acked, paid, skus, stock)
		t.Logf("cycle %d: %d orders acknowledged so far, %d paid", cycle, len(acked), len(paid))
	}
}

func verifyCrash(t *testing.T, f *fest, acked map[string]order, paid map[string]bool, skus, stock int) {
	t.Helper()
	for id, want := range acked {
		r := f.must(200, "GET", "/v1/orders/"+id, storefrontToken, nil)
		got := decodeOrder(t, r.Body)
		if paid[id] && got.Status != "paid" {
			t.Fatalf("order %s was paid (200) but is %s after restart", id, got.Status)
		}
		// Status and paid_at may have moved on; everything else is fixed.
		got.Status, got.PaidAt = want.Status, want.PaidAt
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("order %s changed across the crash:\n got %+v\nwant %+v", id, got, want)
		}
	}
	for i := 0; i < skus; i++ {
		s := f.sku(fmt.Sprintf("c%d", i))
		if s.Available < 0 || s.Available+s.Reserved+s.Sold != int64(stock) {
			t.Fatalf("sku c%d not conserved after restart: %+v (stock %d)", i, s, stock)
		}
	}
}
