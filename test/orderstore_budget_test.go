package test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOrderStoreWithinBudget runs fest with the smallest order-store budget
// (16 MiB), places orders of many lines until most have moved to the cold
// tier, pays some of them after they moved, and checks that every order is
// readable with its status and every buyer's history lists all of its
// orders, newest first, exactly once: before and after a clean restart,
// and after a kill -9.
func TestOrderStoreWithinBudget(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--orders-memory", "16MiB")
	skus := map[string]int{}
	for i := 0; i < 10; i++ {
		skus[fmt.Sprintf("budget-sku-with-a-long-identifier-%02d", i)] = 10_000_000
	}
	f.seedCatalog(skus)

	const batches, perBatch, buyers = 12, 5000, 40
	placed := map[string]order{}
	byBuyer := map[string][]string{}
	var ids []string
	for b := 0; b < batches; b++ {
		var sb strings.Builder
		sb.WriteString(`{"orders":[`)
		for i := 0; i < perBatch; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			n := b*perBatch + i
			fmt.Fprintf(&sb, `{"buyer_id":"budget-buyer-%d","region":"CN-ZJ","items":[`, n%buyers)
			for k := 0; k < 8; k++ {
				if k > 0 {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, `{"sku_id":"budget-sku-with-a-long-identifier-%02d","quantity":%d}`, (n+k)%10, 1+k%3)
			}
			sb.WriteString(`]}`)
		}
		sb.WriteString(`]}`)
		resp := f.must(200, "POST", "/v1/orders:batch", storefrontToken, sb.String())
		var out struct {
			Results []struct {
				Order *order          `json:"order"`
				Error json.RawMessage `json:"error"`
			} `json:"results"`
		}
		if err := json.Unmarshal(resp.Body, &out); err != nil || len(out.Results) != perBatch {
			t.Fatalf("batch %d: %v: %d results", b, err, len(out.Results))
		}
		for i, r := range out.Results {
			if r.Order == nil {
				t.Fatalf("batch %d order %d: %s", b, i, r.Error)
			}
			placed[r.Order.OrderID] = *r.Order
			byBuyer[r.Order.BuyerID] = append(byBuyer[r.Order.BuyerID], r.Order.OrderID)
			ids = append(ids, r.Order.OrderID)
		}
	}
	cold := func() float64 {
		resp := f.must(200, "GET", "/metrics", "", nil)
		m := regexp.MustCompile(`(?m)^fest_orderstore_orders\{tier="cold"\} (\S+)$`).FindSubmatch(resp.Body)
		if m == nil {
			t.Fatalf("no cold-tier gauge in /metrics")
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	// The evictor moves chunks behind the follower, on its own goroutine:
	// on a busy machine it may still be at work when the last batch is
	// answered, so wait for it (generously) rather than catch it midway.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c := cold()
		if c >= float64(len(ids))/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d orders in the cold tier after a minute, want most", c, len(ids))
		}
	}
	// Pay every step-th order, most of them in the cold tier by now.
	pay := func(step int) {
		for i := 0; i < len(ids); i += step {
			o := placed[ids[i]]
			if o.Status == "paid" {
				continue
			}
			f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, fmt.Sprintf(`{"amount":%d}`, o.Total))
			o.Status = "paid"
			placed[ids[i]] = o
		}
	}
	pay(7)
	check := func(when string) {
		t.Helper()
		for i := 0; i < len(ids); i += 13 {
			want := placed[ids[i]]
			got := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+want.OrderID, storefrontToken, nil).Body)
			if got.Status != want.Status || got.Total != want.Total || got.BuyerID != want.BuyerID || len(got.Items) != len(want.Items) {
				t.Fatalf("%s: order %s: %+v, want %+v", when, want.OrderID, got, want)
			}
		}
		for buyer, want := range byBuyer {
			var listed []string
			cursor := ""
			for page := 0; page <= len(want)/500+1; page++ {
				path := "/v1/buyers/" + buyer + "/orders?limit=500"
				if cursor != "" {
					path += "&cursor=" + cursor
				}
				var out struct {
					Orders     []order `json:"orders"`
					NextCursor *string `json:"next_cursor"`
				}
				if err := json.Unmarshal(f.must(200, "GET", path, storefrontToken, nil).Body, &out); err != nil {
					t.Fatal(err)
				}
				for _, o := range out.Orders {
					listed = append(listed, o.OrderID)
				}
				if out.NextCursor == nil {
					break
				}
				cursor = *out.NextCursor
			}
			if len(listed) != len(want) {
				t.Fatalf("%s: history of %s: %d orders, want %d", when, buyer, len(listed), len(want))
			}
			for i := range want {
				if listed[i] != want[len(want)-1-i] {
					t.Fatalf("%s: history of %s: order %d is %s, want %s", when, buyer, i, listed[i], want[len(want)-1-i])
				}
			}
		}
	}
	check("while running")
	f.stop()
	f.restart()
	check("after a restart")
	// Payments of cold orders after the last projection snapshot, which
	// the kill leaves to the replay.
	pay(11)
	f.kill()
	f.restart()
	check("after kill -9")
}
