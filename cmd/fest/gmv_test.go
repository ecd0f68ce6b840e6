package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fest-platform/fest/client"
)

// TestBoardEqualsPaidOrders runs fest serve with the demo catalog, places
// orders through the Go client (paid, cancelled and left pending), and
// checks over HTTP that GET /v1/gmv and every breakdown equal the sums of
// the paid orders, row by row, and that the rows add up to the total; then
// restarts the server on the same data directory and checks again, so the
// board resumed from its snapshot counts nothing twice.
func TestBoardEqualsPaidOrders(t *testing.T) {
	dir := t.TempDir()
	want := newPaidSums()
	rs, stop := startTestServer(t, dir)
	admin, shop := testClients(t, rs)
	ctx := context.Background()
	if _, err := admin.ImportCatalog(ctx, strings.NewReader(demoCatalog())); err != nil {
		t.Fatalf("import the demo catalog: %v", err)
	}
	merchantOf, skuOf := demoLookups(t)
	rng := rand.New(rand.NewPCG(8, 11))
	for i := range 600 {
		m := 1 + rng.IntN(demoMerchants)
		items := []client.Item{{SKUID: fmt.Sprintf("sku-m%02d-%02d", m, 2+rng.IntN(demoSKUsPerShop-1)), Quantity: 1 + rng.IntN(3)}}
		if i%4 == 0 {
			items = append(items, client.Item{SKUID: fmt.Sprintf("sku-m%02d-%02d", m, 2+rng.IntN(demoSKUsPerShop-1)), Quantity: 1})
		}
		o, err := shop.PlaceOrder(ctx, client.OrderRequest{
			BuyerID: fmt.Sprintf("buyer-%d", i%50), Items: items,
			Channel: demoChannels[rng.IntN(len(demoChannels))], Region: demoRegions[rng.IntN(len(demoRegions))],
		})
		if err != nil {
			t.Fatalf("place order %d: %v", i, err)
		}
		switch i % 5 {
		case 0, 1, 2:
			if _, err := shop.Pay(ctx, o.ID, o.Total); err != nil {
				t.Fatalf("pay %s: %v", o.ID, err)
			}
			want.add(&o, merchantOf, skuOf)
		case 3:
			if _, err := shop.Cancel(ctx, o.ID); err != nil {
				t.Fatalf("cancel %s: %v", o.ID, err)
			}
		}
	}
	checkBoard(t, shop, want)
	admin.Close()
	shop.Close()
	stop()

	rs, stop = startTestServer(t, dir)
	defer stop()
	admin, shop = testClients(t, rs)
	defer admin.Close()
	defer shop.Close()
	checkBoard(t, shop, want)
}

func startTestServer(t *testing.T, dir string) (*runningServer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts := serveOptions{Addr: "127.0.0.1:0", Data: dir, PaymentTimeout: time.Hour, ShutdownTimeout: 5 * time.Second,
		AdminToken: "ad", StorefrontToken: "st", CarrierToken: "ca", GMVMilestones: demoMilestones}
	rs, err := startServer(ctx, opts, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- rs.wait(ctx) }()
	if err := waitReady(ctx, rs.URL); err != nil {
		t.Fatal(err)
	}
	return rs, func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("server: %v", err)
		}
	}
}

func testClients(t *testing.T, rs *runningServer) (admin, shop *client.Client) {
	t.Helper()
	admin, err := client.New(client.Config{Addr: rs.URL, Token: rs.Tokens["admin"]})
	if err != nil {
		t.Fatal(err)
	}
	shop, err = client.New(client.Config{Addr: rs.URL, Token: rs.Tokens["storefront"]})
	if err != nil {
		t.Fatal(err)
	}
	return admin, shop
}

// demoLookups returns the demo catalog's merchant of each merchant id and
// the brand and category of each SKU.
func demoLookups(t *testing.T) (merchantOf map[string]demoMerchant, skuOf map[string][2]string) {
	t.Helper()
	merchantOf, skuOf = map[string]demoMerchant{}, map[string][2]string{}
	for _, line := range strings.Split(strings.TrimSpace(demoCatalog()), "\n") {
		var v struct {
			Type     string `json:"type"`
			ID       string `json:"id"`
			BrandID  string `json:"brand_id"`
			Kind     string `json:"kind"`
			Industry string `json:"industry"`
			Category string `json:"category"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("demo catalog line %q: %v", line, err)
		}
		switch v.Type {
		case "merchant":
			merchantOf[v.ID] = demoMerchant{brand: v.BrandID, kind: v.Kind, industry: v.Industry}
		case "sku":
			skuOf[v.ID] = [2]string{v.BrandID, v.Category}
		}
	}
	return merchantOf, skuOf
}

type demoMerchant struct{ brand, kind, industry string }

// paidSums are the expected board: the paid orders' totals by key of each
// breakdown.
type paidSums struct {
	total int64
	paid  int64
	by    map[string]map[string]int64
}

func newPaidSums() *paidSums {
	s := &paidSums{by: map[string]map[string]int64{}}
	for _, d := range []string{"brand", "merchant", "category", "country", "channel", "region", "industry", "kind"} {
		s.by[d] = map[string]int64{}
	}
	return s
}

func (s *paidSums) add(o *client.Order, merchantOf map[string]demoMerchant, skuOf map[string][2]string) {
	s.total += o.Total
	s.paid++
	m := merchantOf[o.MerchantID]
	s.by["merchant"][o.MerchantID] += o.Total
	s.by["channel"][o.Channel] += o.Total
	s.by["region"][o.Region] += o.Total
	s.by["industry"][m.industry] += o.Total
	s.by["kind"][m.kind] += o.Total
	country := map[string]string{}
	for _, b := range demoBrands {
		country[b.id] = b.country
	}
	for _, it := range o.Items {
		bc := skuOf[it.SKUID]
		s.by["brand"][bc[0]] += it.Amount
		s.by["category"][bc[1]] += it.Amount
		s.by["country"][country[bc[0]]] += it.Amount
	}
}

// checkBoard waits for the board to count every paid order, then compares
// every breakdown with the sums.
func checkBoard(t *testing.T, c *client.Client, want *paidSums) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, err := c.GMV(ctx)
		if err != nil {
			t.Fatalf("GET /v1/gmv: %v", err)
		}
		if g.OrdersPaid == want.paid {
			if g.GMV.Amount != want.total {
				t.Fatalf("GET /v1/gmv: %d fen in %d paid orders, the paid orders add up to %d", g.GMV.Amount, g.OrdersPaid, want.total)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/gmv counts %d paid orders, %d were paid", g.OrdersPaid, want.paid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for by, rows := range want.by {
		bd, err := c.GMVBreakdown(ctx, by, 1000)
		if err != nil {
			t.Fatalf("breakdown by %s: %v", by, err)
		}
		got := map[string]int64{}
		sum := bd.Rest.GMV
		for _, r := range bd.Rows {
			got[r.Key] = r.GMV
			sum += r.GMV
		}
		if sum != bd.GMV || bd.GMV != want.total {
			t.Errorf("breakdown by %s adds up to %d fen, its total %d, the paid orders' %d", by, sum, bd.GMV, want.total)
		}
		if !maps.Equal(got, rows) {
			t.Errorf("breakdown by %s:\n got %v\nwant %v", by, got, rows)
		}
	}
}
