package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/client"
)

// demo catalog size: small enough to import in a blink, big enough to show
// several merchants and a sold-out SKU.
const (
	demoBrands       = 8
	demoMerchants    = 16
	demoSKUsPerShop  = 12
	demoStockDefault = 500
)

var demoCountries = []string{"CN", "US", "JP", "KR", "FR", "DE", "IT", "AU"}

// runDemo starts fest serve on a temporary (or given) data directory, loads a
// small generated catalog and runs a light order load through the Go client
// until interrupted.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("FEST_ADDR", ":8080"), "listen address")
	data := fs.String("data", "", "data directory (default: a temporary directory, removed on exit)")
	rate := fs.Int("rate", 200, "orders per second of the demo load")
	timeout := fs.Duration("payment-timeout", 2*time.Minute, "unpaid orders expire after this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate < 1 {
		return errors.New("demo: --rate must be at least 1")
	}
	dir := *data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fest-demo-")
		if err != nil {
			return fmt.Errorf("demo: create temporary directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	opts := serveOptions{Addr: *addr, Data: dir, PaymentTimeout: *timeout, ShutdownTimeout: shutdownTimeoutDefault}
	rs, err := startServer(ctx, opts, stdout, stderr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- rs.wait(ctx) }()

	if err := waitReady(ctx, rs.URL); err != nil {
		return errors.Join(err, <-served)
	}
	admin, err := client.New(client.Config{Addr: rs.URL, Token: rs.Tokens["admin"]})
	if err != nil {
		return err
	}
	defer admin.Close()
	shop, err := client.New(client.Config{Addr: rs.URL, Token: rs.Tokens["storefront"]})
	if err != nil {
		return err
	}
	defer shop.Close()

	n, err := admin.ImportCatalog(ctx, strings.NewReader(demoCatalog()))
	if err != nil {
		return errors.Join(fmt.Errorf("demo: import catalog: %w", err), <-served)
	}
	fmt.Fprintf(stdout, "\nfest demo: imported %d brands, %d merchants, %d SKUs; placing about %d orders/s (80%% get paid)\n", n.Brand, n.Merchant, n.SKU, *rate)
	fmt.Fprintf(stdout, "fest demo: the big-screen dashboard is coming; meanwhile try:\n")
	fmt.Fprintf(stdout, "  curl -s %s/v1/skus/sku-m01-01 -H 'Authorization: Bearer %s'\n", rs.URL, rs.Tokens["admin"])
	fmt.Fprintf(stdout, "  curl -s %s/v1/buyers/buyer-0001/orders?limit=3 -H 'Authorization: Bearer %s'\n", rs.URL, rs.Tokens["storefront"])
	fmt.Fprintf(stdout, "  curl -s %s/metrics | grep ^fest_orders\n", rs.URL)
	fmt.Fprintf(stdout, "fest demo: press Ctrl-C to stop\n\n")

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var placed, paid, rejected atomic.Int64
	go demoLoad(loadCtx, shop, *rate, &placed, &paid, &rejected)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-served:
			return err
		case <-tick.C:
			fmt.Fprintf(stdout, "fest demo: %d orders placed, %d paid, %d rejected (sold out)\n", placed.Load(), paid.Load(), rejected.Load())
		}
	}
}

// waitReady polls /readyz until recovery is done.
func waitReady(ctx context.Context, base string) error {
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoCatalog generates the NDJSON of the demo catalog.
func demoCatalog() string {
	var b strings.Builder
	for i := 1; i <= demoBrands; i++ {
		fmt.Fprintf(&b, `{"type":"brand","id":"brand-%02d","name":"Brand %02d","country":%q,"first_festival":%d,"emerging":%t,"last_year_gmv":%d}`+"\n",
			i, i, demoCountries[(i-1)%len(demoCountries)], 2009+i, i%3 == 0, int64(i)*1_000_000_00)
	}
	kinds := []string{"brand_store", "factory", "trader"}
	for m := 1; m <= demoMerchants; m++ {
		fmt.Fprintf(&b, `{"type":"merchant","id":"m%02d","name":"Shop %02d","brand_id":"brand-%02d","kind":%q,"industry":"apparel","region":"CN-ZJ"}`+"\n",
			m, m, (m-1)%demoBrands+1, kinds[m%len(kinds)])
		for k := 1; k <= demoSKUsPerShop; k++ {
			stock := demoStockDefault
			if k == 1 {
				stock = 20 // a flash item that sells out
			}
			fmt.Fprintf(&b, `{"type":"sku","id":"sku-m%02d-%02d","merchant_id":"m%02d","brand_id":"brand-%02d","title":"Item %d of shop %d","category":"apparel","price":%d,"stock":%d}`+"\n",
				m, k, m, (m-1)%demoBrands+1, k, m, 990+k*1000, stock)
		}
	}
	return b.String()
}

// demoLoad places orders at about rate per second and pays most of them.
func demoLoad(ctx context.Context, c *client.Client, rate int, placed, paid, rejected *atomic.Int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	interval := time.Second / time.Duration(rate)
	tick := time.NewTicker(max(interval, time.Millisecond))
	defer tick.Stop()
	perTick := max(1, rate/1000)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range perTick {
			m, k := rng.IntN(demoMerchants)+1, rng.IntN(demoSKUsPerShop)+1
			req := client.OrderRequest{
				BuyerID: fmt.Sprintf("buyer-%04d", rng.IntN(1000)),
				Items:   []client.Item{{SKUID: fmt.Sprintf("sku-m%02d-%02d", m, k), Quantity: 1 + rng.IntN(2)}},
				Channel: []string{"app", "web", "live:demo"}[rng.IntN(3)],
				Region:  "CN-ZJ",
			}
			pay := rng.IntN(10) < 8
			go func() {
				o, err := c.PlaceOrder(ctx, req)
				if err != nil {
					rejected.Add(1)
					return
				}
				placed.Add(1)
				if pay {
					if _, err := c.Pay(ctx, o.ID, o.Total); err == nil {
						paid.Add(1)
					}
				}
			}()
		}
	}
}
