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

// demo catalog: small enough to import in a blink, varied enough that
// every tile of the board has several rows (brands of eight countries,
// industries, merchant kinds, channels, buyer regions) and a sold-out SKU.
const (
	demoMerchants    = 24
	demoSKUsPerShop  = 8
	demoStockDefault = 100_000
	demoFlashStock   = 30
	demoFestivalYear = 2020 // first_festival of the first-time brands: the GMV projection's default year
)

// demoBrand is a made-up brand of the demo.
type demoBrand struct {
	id, name, country string
	first             int32
	emerging          bool
	lastYearCNY       int64
}

var demoBrands = []demoBrand{
	{"lotus-peak", "Lotus Peak", "CN", 2012, false, 400_000},
	{"harbor-pine", "Harbor & Pine", "US", 2015, false, 250_000},
	{"kumo-works", "Kumo Works", "JP", 2016, false, 200_000},
	{"seoul-glow", "Seoul Glow", "KR", 2018, true, 40_000},
	{"maison-ete", "Maison Été", "FR", 2014, false, 150_000},
	{"nordlicht", "Nordlicht", "DE", 2019, true, 20_000},
	{"vela-roma", "Vela Roma", "IT", demoFestivalYear, true, 0},
	{"reef-and-sun", "Reef & Sun", "AU", demoFestivalYear, false, 0},
	{"jade-river", "Jade River", "CN", 2010, false, 500_000},
	{"panda-tech", "Panda Tech", "CN", 2017, true, 10_000},
}

var (
	demoIndustries = []string{"apparel", "beauty", "electronics", "home", "food"}
	demoCategories = []string{"dresses", "skincare", "phones", "kitchen", "snacks", "shoes"}
	demoChannels   = []string{"app", "app", "app", "web", "live:studio-viya", "live:studio-austin", "live:night-market"}
	demoRegions    = []string{"CN-ZJ", "CN-GD", "CN-BJ", "CN-SH", "CN-JS", "CN-SC", "CN-HB"}
	// demoMilestones are small enough that the demo's brands and channels
	// cross them within minutes (fen).
	demoMilestones = []int64{20_000_00, 100_000_00, 500_000_00}
)

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
	opts := serveOptions{Addr: *addr, Data: dir, PaymentTimeout: *timeout, ShutdownTimeout: shutdownTimeoutDefault, GMVMilestones: demoMilestones}
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
	if err := putDemoChannels(ctx, admin); err != nil {
		return errors.Join(err, <-served)
	}
	fmt.Fprintf(stdout, "\nfest demo: imported %d brands, %d merchants, %d SKUs; placing about %d orders/s (85%% get paid)\n", n.Brand, n.Merchant, n.SKU, *rate)
	fmt.Fprintf(stdout, "\n  the big screen:  %s/\n\n", rs.URL)
	fmt.Fprintf(stdout, "fest demo: also try:\n")
	fmt.Fprintf(stdout, "  curl -s '%s/v1/gmv/breakdown?by=country&top=5'\n", rs.URL)
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

// demoCatalog generates the NDJSON of the demo catalog: each merchant
// sells one brand's goods in a few categories.
func demoCatalog() string {
	var b strings.Builder
	for _, br := range demoBrands {
		fmt.Fprintf(&b, `{"type":"brand","id":%q,"name":%q,"country":%q,"first_festival":%d,"emerging":%t,"last_year_gmv":%d}`+"\n",
			br.id, br.name, br.country, br.first, br.emerging, br.lastYearCNY*100)
	}
	kinds := []string{"brand_store", "factory", "trader"}
	for m := 1; m <= demoMerchants; m++ {
		br := demoBrands[(m-1)%len(demoBrands)]
		fmt.Fprintf(&b, `{"type":"merchant","id":"m%02d","name":"%s shop %d","brand_id":%q,"kind":%q,"industry":%q,"region":%q}`+"\n",
			m, br.name, m, br.id, kinds[m%len(kinds)], demoIndustries[m%len(demoIndustries)], demoRegions[m%len(demoRegions)])
		for k := 1; k <= demoSKUsPerShop; k++ {
			stock := demoStockDefault
			if k == 1 {
				stock = demoFlashStock // a flash item that sells out
			}
			category := demoCategories[(m+k)%len(demoCategories)]
			if br.emerging && k == demoSKUsPerShop {
				// A category of its own, which it leads: the board's
				// "emerging brands topping a category".
				category = "new-" + br.id
			}
			fmt.Fprintf(&b, `{"type":"sku","id":"sku-m%02d-%02d","merchant_id":"m%02d","brand_id":%q,"title":"Item %d of shop %d","category":%q,"price":%d,"stock":%d}`+"\n",
				m, k, m, br.id, k, m, category, 1990+((m*7+k*13)%40)*1000, stock)
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
			// Some merchants sell far more than others, so the ranking
			// has a shape; every order is of one shop, one or two lines.
			m := 1 + int(float64(demoMerchants)*rng.Float64()*rng.Float64())
			items := []client.Item{{SKUID: fmt.Sprintf("sku-m%02d-%02d", m, rng.IntN(demoSKUsPerShop)+1), Quantity: 1 + rng.IntN(2)}}
			if rng.IntN(4) == 0 {
				items = append(items, client.Item{SKUID: fmt.Sprintf("sku-m%02d-%02d", m, rng.IntN(demoSKUsPerShop)+1), Quantity: 1})
			}
			req := client.OrderRequest{
				BuyerID: fmt.Sprintf("buyer-%04d", rng.IntN(5000)),
				Items:   items,
				Channel: demoChannels[rng.IntN(len(demoChannels))],
				Region:  demoRegions[rng.IntN(len(demoRegions))],
			}
			pay := rng.IntN(100) < 85
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

// putDemoChannels creates the livestream channels the demo's orders name
// (live:<id> in demoChannels), so that the leaderboard counts them.
func putDemoChannels(ctx context.Context, admin *client.Client) error {
	now := time.Now().UTC()
	for _, ch := range demoChannels {
		id, ok := strings.CutPrefix(ch, "live:")
		if !ok {
			continue
		}
		if _, err := admin.PutChannel(ctx, client.LiveChannel{ID: id, Title: "Studio " + id, Host: id, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour)}); err != nil {
			return fmt.Errorf("demo: put channel %s: %w", id, err)
		}
	}
	return nil
}
