//go:build browser

// The dashboard in a real browser: scripts/test.sh installs Debian's
// chromium and runs this with -tags browser. Without chromium it fails.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fest-platform/fest/client"
)

// browserWaitMax bounds each wait for the page: for the counter to move,
// and for the ranking it shows to catch up with the server's (it refreshes
// every 2 s).
const browserWaitMax = 30 * time.Second

// TestDashboardInBrowser starts fest serve with the demo catalog, drives
// paid orders through the Go client, opens the dashboard in chromium at
// 1920×1080, waits for the GMV counter to move, checks that the top brand
// shown is the first row of GET /v1/gmv/breakdown?by=brand and that the USD
// toggle switches the counter, and saves a screenshot (FEST_DASHBOARD_PNG names where, e.g. docs/dashboard.png;
// else the test's artifact directory).
func TestDashboardInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (apt-get install -y chromium): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := serveOptions{Addr: "127.0.0.1:0", Data: t.TempDir(), PaymentTimeout: time.Minute, ShutdownTimeout: 5 * time.Second, GMVMilestones: demoMilestones}
	rs, err := startServer(ctx, opts, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- rs.wait(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	if err := waitReady(ctx, rs.URL); err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(client.Config{Addr: rs.URL, Token: rs.Tokens["admin"]})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ImportCatalog(ctx, strings.NewReader(demoCatalog())); err != nil {
		t.Fatalf("import the demo catalog: %v", err)
	}
	if err := putDemoChannels(ctx, admin); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := admin.PutDeal(ctx, client.Deal{ID: "deal-viya", ChannelID: "studio-viya", SKUID: "sku-m01-02", Price: 100, Stock: 5,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}); err != nil {
		t.Fatalf("put a deal: %v", err)
	}
	shop, err := client.New(client.Config{Addr: rs.URL, Token: rs.Tokens["storefront"]})
	if err != nil {
		t.Fatal(err)
	}
	defer shop.Close()

	// The load: a few buyers placing and paying orders until told to stop.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var paid atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := 1 + int(float64(demoMerchants)*rng.Float64()*rng.Float64())
				o, err := shop.PlaceOrder(ctx, client.OrderRequest{
					BuyerID: "buyer-" + strconv.Itoa(rng.IntN(500)),
					Items:   []client.Item{{SKUID: fmt.Sprintf("sku-m%02d-%02d", m, 2+rng.IntN(demoSKUsPerShop-1)), Quantity: 1}},
					Channel: demoChannels[rng.IntN(len(demoChannels))], Region: demoRegions[rng.IntN(len(demoRegions))],
				})
				if err != nil {
					t.Errorf("place an order: %v", err)
					return
				}
				if _, err := shop.Pay(ctx, o.ID, o.Total); err != nil {
					t.Errorf("pay order %s: %v", o.ID, err)
					return
				}
				paid.Add(1)
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1920, 1080))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// The first call starts the browser and must not carry a timeout (it
	// would stop the browser); each later step has its own.
	if err := chromedp.Do(browser, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatalf("browser: start: %v", err)
	}
	timed := func() (context.Context, context.CancelFunc) { return context.WithTimeout(browser, browserWaitMax) }
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := timed()
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	attribute := func(id, name string) string {
		t.Helper()
		c, cancel := timed()
		defer cancel()
		r, err := chromedp.Run(c, chromedp.AttributeValue(chromedp.ID(id), name))
		if err != nil {
			t.Fatalf("browser: read %s of #%s: %v", name, id, err)
		}
		return r.Value
	}
	run("open the dashboard", chromedp.Navigate(rs.URL+"/"), chromedp.WaitVisible(chromedp.ID("gmv-amount")))
	first := attribute("gmv-amount", "data-fen")
	// The counter moves: its data-fen, the exact total it shows, changes
	// and is positive.
	run("wait for the GMV counter to change",
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const v = document.getElementById("gmv-amount").dataset.fen; return v !== %q && Number(v) > 0; })()`, first),
			chromedp.WithPollingInterval(100*time.Millisecond)))

	// Let the board fill for a few seconds (milestones, sparkline), then
	// stop the load so that the ranking holds still while it is compared.
	time.Sleep(5 * time.Second)
	stopLoad()
	want := settledTopBrand(t, rs.URL, paid.Load())
	run("wait for the top brand shown to be the server's",
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const e = document.getElementById("top-brand"); return e !== null && e.dataset.key === %q; })()`, want),
			chromedp.WithPollingInterval(100*time.Millisecond)))
	if shown := attribute("top-brand", "data-key"); shown != want {
		t.Fatalf("the dashboard's top brand is %q, GET /v1/gmv/breakdown?by=brand ranks %q first", shown, want)
	}
	// The livestream tile shows the leaderboard's first channel and the
	// running deal.
	var board struct {
		Channels []struct {
			ChannelID string `json:"channel_id"`
		} `json:"channels"`
	}
	getJSON(t, rs.URL+"/v1/live/leaderboard?top=5", &board)
	if len(board.Channels) == 0 {
		t.Fatalf("the leaderboard is empty after %d paid orders", paid.Load())
	}
	run("wait for the livestream tile to show the top channel and the deal",
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const e = document.getElementById("top-channel"); return e !== null && e.dataset.key === %q && document.querySelector('#tile-live [data-deal="deal-viya"]') !== null; })()`, board.Channels[0].ChannelID),
			chromedp.WithPollingInterval(100*time.Millisecond)))
	// The USD toggle shows the total in dollars, and back.
	run("show the total in USD",
		chromedp.Click(chromedp.ID("currency")),
		chromedp.Poll[chromedp.Void](`document.getElementById("gmv-amount").textContent.startsWith("$")`, chromedp.WithPollingInterval(100*time.Millisecond)),
		chromedp.Click(chromedp.ID("currency")),
		chromedp.Poll[chromedp.Void](`document.getElementById("gmv-amount").textContent.startsWith("¥")`, chromedp.WithPollingInterval(100*time.Millisecond)))
	// The counters finish their animation before the picture.
	run("settle", chromedp.Sleep(2500*time.Millisecond))
	c, cancelShot := timed()
	defer cancelShot()
	png, err := chromedp.Run(c, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	path := os.Getenv("FEST_DASHBOARD_PNG")
	if path == "" {
		path = filepath.Join(t.ArtifactDir(), "dashboard.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the dashboard (%d bytes) in %s; top brand %s after %d paid orders", len(png), path, want, paid.Load())
}

// settledTopBrand waits until the GMV projection counts every paid order,
// then returns the first row of the brand breakdown.
func settledTopBrand(t *testing.T, base string, paid int64) string {
	t.Helper()
	deadline := time.Now().Add(browserWaitMax)
	for {
		var g struct {
			OrdersPaid int64 `json:"orders_paid"`
		}
		getJSON(t, base+"/v1/gmv", &g)
		if g.OrdersPaid == paid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/gmv counts %d paid orders, the load paid %d", g.OrdersPaid, paid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var b struct {
		Rows []struct {
			Key string `json:"key"`
		} `json:"rows"`
	}
	getJSON(t, base+"/v1/gmv/breakdown?by=brand", &b)
	if len(b.Rows) == 0 {
		t.Fatal("the brand breakdown is empty after the load")
	}
	return b.Rows[0].Key
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
