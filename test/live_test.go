package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fest-platform/fest/client"
)

// liveT0 is the test clock's start: the festival's first second.
var liveT0 = time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)

// testClock is the file behind FEST_TEST_CLOCK_FILE: the engine's clock
// of the server the test starts next.
type testClock struct {
	t    *testing.T
	path string
}

// useTestClock makes the servers the test starts read their clock from a
// file, set to at.
func useTestClock(t *testing.T, at time.Time) *testClock {
	c := &testClock{t: t, path: filepath.Join(t.TempDir(), "clock")}
	c.set(at)
	t.Setenv("FEST_TEST_CLOCK_FILE", c.path)
	return c
}

// set moves the clock; the next batch of the engine reads it.
func (c *testClock) set(at time.Time) {
	c.t.Helper()
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(at.UnixNano(), 10)), 0o600); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		c.t.Fatal(err)
	}
}

// seedLive seeds the catalog (s1 with stock units) and channel c1.
func (f *fest) seedLive(stock int) {
	f.t.Helper()
	f.seedCatalog(map[string]int{"s1": stock, "marker": 1})
	f.must(200, "PUT", "/v1/live/channels/c1", adminToken, map[string]any{"title": "Channel One", "host": "Host One",
		"starts_at": liveT0.Add(-time.Hour).Format(time.RFC3339Nano), "ends_at": liveT0.Add(24 * time.Hour).Format(time.RFC3339Nano)})
}

func dealBody(stock, limit int, starts, ends time.Time) map[string]any {
	b := map[string]any{"channel_id": "c1", "sku_id": "s1", "price": 500, "stock": stock,
		"starts_at": starts.Format(time.RFC3339Nano), "ends_at": ends.Format(time.RFC3339Nano)}
	if limit > 0 {
		b["limit_per_buyer"] = limit
	}
	return b
}

func dealOrder(buyer string, q int) map[string]any {
	return map[string]any{"buyer_id": buyer, "channel": "live:c1", "deal_id": "d1", "items": []map[string]any{{"sku_id": "s1", "quantity": q}}}
}

// TestLiveDealLimitPerBuyer: 300 buyers each sending 3 orders at once on a
// deal of 1,000 units limited to 2: every buyer gets exactly 2 and 300
// orders are 409 limit_exceeded.
func TestLiveDealLimitPerBuyer(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedLive(1000)
	now := time.Now().UTC()
	f.must(200, "PUT", "/v1/live/deals/d1", adminToken, dealBody(1000, 2, now.Add(-time.Minute), now.Add(time.Hour)))
	const buyers, tries = 300, 3
	var mu sync.Mutex
	perBuyer := map[int]int{}
	codes := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for b := range buyers {
		for range tries {
			wg.Go(func() {
				<-start
				r, err := f.call("POST", "/v1/orders", storefrontToken, dealOrder("u"+strconv.Itoa(b), 1))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("buyer %d: %v", b, err)
				case r.Status == 201:
					perBuyer[b]++
				default:
					codes[strconv.Itoa(r.Status)+" "+r.errCode()]++
				}
			})
		}
	}
	close(start)
	wg.Wait()
	for b := range buyers {
		if perBuyer[b] != 2 {
			t.Fatalf("buyer %d got %d orders, want exactly 2", b, perBuyer[b])
		}
	}
	if len(codes) != 1 || codes["409 limit_exceeded"] != buyers {
		t.Fatalf("refusals %v, want %d limit_exceeded", codes, buyers)
	}
	f.checkSKU("after the buyers", 0, 600, 0)
}

// checkSKU fails unless s1's counters are as given.
func (f *fest) checkSKU(what string, available, reserved, sold int64) {
	f.t.Helper()
	if s := f.sku("s1"); s.Available != available || s.Reserved != reserved || s.Sold != sold {
		f.t.Fatalf("%s: s1 available %d reserved %d sold %d, want %d %d %d", what, s.Available, s.Reserved, s.Sold, available, reserved, sold)
	}
}

// TestLiveDealConcurrentBuyers: 1,000 buyers at once on a 500-unit deal
// limited to 2 per buyer, each trying 3 times: exactly 500 units sold, no
// buyer over 2, every refusal out_of_stock or limit_exceeded, and the
// SKU's counters follow the contract before and after payment.
func TestLiveDealConcurrentBuyers(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedLive(2000)
	now := time.Now().UTC()
	f.must(200, "PUT", "/v1/live/deals/d1", adminToken, dealBody(500, 2, now.Add(-time.Minute), now.Add(time.Hour)))
	f.checkSKU("after the deal is put", 1500, 0, 0)

	const buyers, tries = 1000, 3
	type result struct {
		buyer  int
		status int
		code   string
		order  order
	}
	results := make(chan result, buyers*tries)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for b := range buyers {
		wg.Go(func() {
			<-start
			for range tries {
				r, err := f.call("POST", "/v1/orders", storefrontToken, dealOrder("u"+strconv.Itoa(b), 1))
				if err != nil {
					t.Errorf("buyer %d: %v", b, err)
					return
				}
				res := result{buyer: b, status: r.Status, code: r.errCode()}
				if r.Status == 201 {
					res.order = decodeOrder(t, r.Body)
				}
				results <- res
			}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	perBuyer := map[int]int{}
	var accepted []order
	codes := map[string]int{}
	for r := range results {
		switch {
		case r.status == 201:
			perBuyer[r.buyer]++
			accepted = append(accepted, r.order)
			if r.order.Total != 500 || r.order.Channel != "live:c1" {
				t.Fatalf("deal order at total %d on %q, want 500 on live:c1", r.order.Total, r.order.Channel)
			}
		case r.status == 409 && (r.code == "out_of_stock" || r.code == "limit_exceeded"):
			codes[r.code]++
		default:
			t.Fatalf("buyer %d: status %d code %q", r.buyer, r.status, r.code)
		}
	}
	if len(accepted) != 500 {
		t.Fatalf("%d deal orders accepted, want exactly 500 (refusals %v)", len(accepted), codes)
	}
	for b, n := range perBuyer {
		if n > 2 {
			t.Fatalf("buyer %d got %d units, over the limit of 2", b, n)
		}
	}
	t.Logf("500 accepted, refusals %v", codes)
	f.checkSKU("deal sold out, unpaid", 1500, 500, 0)
	for _, o := range accepted {
		f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
	}
	f.checkSKU("deal sold out, paid", 1500, 0, 500)
	f.expectErr(409, "out_of_stock", "", "POST", "/v1/orders", storefrontToken, dealOrder("late", 1))
	r := f.must(200, "POST", "/v1/live/deals/d1/end", adminToken, nil)
	if m := r.json(t); m["sold"] != 500.0 || m["returned"] != 0.0 || m["stock_left"] != 0.0 {
		t.Fatalf("ended sold-out deal: %s", r.Body)
	}
	f.checkSKU("deal ended", 1500, 0, 500)

	// The channel and the leaderboard count the paid deal orders.
	waitFor(t, "channel figures", func() (bool, string) {
		r := f.must(200, "GET", "/v1/live/channels/c1", "", nil)
		var c struct {
			GMV    int64 `json:"gmv"`
			Orders int64 `json:"orders"`
			Deals  []struct {
				DealID    string `json:"deal_id"`
				Sold      int64  `json:"sold"`
				StockLeft int64  `json:"stock_left"`
			} `json:"deals"`
		}
		json.Unmarshal(r.Body, &c)
		return c.GMV == 500*500 && c.Orders == 500 && len(c.Deals) == 1 && c.Deals[0].Sold == 500 && c.Deals[0].StockLeft == 0, string(r.Body)
	})
	r = f.must(200, "GET", "/v1/live/leaderboard?top=5", "", nil)
	var board struct {
		Channels []struct {
			ChannelID string `json:"channel_id"`
			GMV       int64  `json:"gmv"`
		} `json:"channels"`
	}
	if err := json.Unmarshal(r.Body, &board); err != nil || len(board.Channels) != 1 || board.Channels[0].GMV != 250000 {
		t.Fatalf("leaderboard: %v %s", err, r.Body)
	}
}

// liveChannelView is the part of GET /v1/live/channels/{id} the tests read.
type liveChannelView struct {
	GMV    int64 `json:"gmv"`
	Orders int64 `json:"orders"`
	Deals  []struct {
		DealID    string `json:"deal_id"`
		Sold      int64  `json:"sold"`
		StockLeft int64  `json:"stock_left"`
		Ended     bool   `json:"ended"`
	} `json:"deals"`
}

// waitFor polls cond until it holds, for a read model that follows the
// journal; it fails the test with cond's last state after a minute.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveDealRules: wrong channel 422, a deal larger than the available
// stock 409 out_of_stock, unknown deal 404, the same PUT again 200 and
// other terms 409 conflict, an order for another SKU on the deal 422.
func TestLiveDealRules(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedLive(100)
	f.must(200, "PUT", "/v1/skus/s2", adminToken, map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "Item s2", "category": "apparel", "price": 1000, "stock": 10})
	now := time.Now().UTC()
	body := dealBody(60, 0, now.Add(-time.Minute), now.Add(time.Hour))
	f.expectErr(409, "out_of_stock", "", "PUT", "/v1/live/deals/d1", adminToken, dealBody(101, 0, now.Add(-time.Minute), now.Add(time.Hour)))
	f.checkSKU("after a refused deal", 100, 0, 0)
	f.must(200, "PUT", "/v1/live/deals/d1", adminToken, body)
	f.must(200, "PUT", "/v1/live/deals/d1", adminToken, body)
	f.checkSKU("after the same deal twice", 40, 0, 0)
	f.expectErr(409, "conflict", "deal_id", "PUT", "/v1/live/deals/d1", adminToken, dealBody(50, 0, now.Add(-time.Minute), now.Add(time.Hour)))
	f.expectErr(409, "out_of_stock", "", "PUT", "/v1/live/deals/d2", adminToken, dealBody(41, 0, now.Add(-time.Minute), now.Add(time.Hour)))
	f.expectErr(404, "not_found", "channel_id", "PUT", "/v1/live/deals/d3", adminToken, map[string]any{"channel_id": "nope", "sku_id": "s1", "price": 1, "stock": 1,
		"starts_at": now.Format(time.RFC3339), "ends_at": now.Add(time.Hour).Format(time.RFC3339)})
	f.expectErr(422, "invalid_argument", "ends_at", "PUT", "/v1/live/deals/d3", adminToken, dealBody(1, 0, now, now))

	for _, ch := range []string{"app", "web", "live:c2", "live:"} {
		o := dealOrder("u1", 1)
		o["channel"] = ch
		f.expectErr(422, "invalid_argument", "channel", "POST", "/v1/orders", storefrontToken, o)
	}
	o := dealOrder("u1", 1)
	o["deal_id"] = "nope"
	f.expectErr(404, "not_found", "deal_id", "POST", "/v1/orders", storefrontToken, o)
	o = dealOrder("u1", 1)
	o["items"] = []map[string]any{{"sku_id": "s2", "quantity": 1}}
	f.expectErr(422, "invalid_argument", "items", "POST", "/v1/orders", storefrontToken, o)
	f.expectErr(409, "out_of_stock", "", "POST", "/v1/orders", storefrontToken, dealOrder("u1", 61))
	f.checkSKU("after refused orders", 40, 0, 0)

	// A cancelled deal order gives its units back to the running deal.
	placed := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, dealOrder("u1", 60)).Body)
	f.checkSKU("deal sold out", 40, 60, 0)
	f.expectErr(409, "out_of_stock", "", "POST", "/v1/orders", storefrontToken, dealOrder("u2", 1))
	f.must(200, "POST", "/v1/orders/"+placed.OrderID+"/cancel", storefrontToken, nil)
	f.checkSKU("deal order cancelled", 40, 0, 0)
	f.must(201, "POST", "/v1/orders", storefrontToken, dealOrder("u2", 1))
	f.checkSKU("deal order again", 40, 1, 0)
	f.expectErr(404, "not_found", "deal_id", "POST", "/v1/live/deals/nope/end", adminToken, nil)
}

// TestLiveDealWindowEdges uses the test clock: one nanosecond before the
// start 409 deal_not_active, at the start accepted, one nanosecond before
// the end accepted, at the end deal_not_active, and the unsold stock back
// on the SKU.
func TestLiveDealWindowEdges(t *testing.T) {
	clock := useTestClock(t, liveT0)
	f := startFest(t, "")
	f.seedLive(100)
	start, end := liveT0.Add(time.Second), liveT0.Add(2*time.Second)
	f.must(200, "PUT", "/v1/live/deals/d1", adminToken, dealBody(10, 0, start, end))
	f.checkSKU("deal put", 90, 0, 0)
	clock.set(start.Add(-time.Nanosecond))
	f.expectErr(409, "deal_not_active", "", "POST", "/v1/orders", storefrontToken, dealOrder("u1", 1))
	clock.set(start)
	f.must(201, "POST", "/v1/orders", storefrontToken, dealOrder("u1", 1))
	clock.set(end.Add(-time.Nanosecond))
	f.must(201, "POST", "/v1/orders", storefrontToken, dealOrder("u2", 2))
	f.checkSKU("two deal orders", 90, 3, 0)
	clock.set(end)
	f.expectErr(409, "deal_not_active", "", "POST", "/v1/orders", storefrontToken, dealOrder("u3", 1))
	f.checkSKU("deal ended by its window", 97, 3, 0)
}

// TestLiveDealReturnsOnceAcrossKill: a deal ended by its window gives its
// unsold units back once, across kill -9 and restarts; an unpaid deal
// order cancelled after the end returns its units to the SKU; the feed
// shows one deal_ended.
func TestLiveDealReturnsOnceAcrossKill(t *testing.T) {
	clock := useTestClock(t, liveT0)
	f := startFest(t, "")
	f.seedLive(1000)
	f.must(200, "PUT", "/v1/live/deals/d1", adminToken, dealBody(100, 0, liveT0, liveT0.Add(time.Minute)))
	var pending []order
	for i := range 15 {
		o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, dealOrder("u"+strconv.Itoa(i), 1)).Body)
		if i < 10 {
			f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
		} else {
			pending = append(pending, o)
		}
	}
	f.checkSKU("during the deal", 900, 5, 10)
	clock.set(liveT0.Add(time.Minute))
	f.checkSKU("deal ended", 985, 5, 10)
	f.kill()
	f.restart()
	f.checkSKU("after kill -9 and restart", 985, 5, 10)
	f.must(200, "POST", "/v1/live/deals/d1/end", adminToken, nil)
	f.checkSKU("ended again by the call", 985, 5, 10)
	f.must(200, "POST", "/v1/orders/"+pending[0].OrderID+"/cancel", storefrontToken, nil)
	f.checkSKU("a deal order cancelled after the end", 986, 4, 10)
	f.kill()
	f.restart()
	f.checkSKU("after a second kill -9", 986, 4, 10)
	f.stop()
	f.restart()
	f.checkSKU("after a clean restart", 986, 4, 10)
	// The live projection, from its snapshot and the journal after it.
	waitFor(t, "channel c1 after the restarts", func() (bool, string) {
		r := f.must(200, "GET", "/v1/live/channels/c1", "", nil)
		var c liveChannelView
		json.Unmarshal(r.Body, &c)
		return c.GMV == 5000 && c.Orders == 10 && len(c.Deals) == 1 && c.Deals[0].Sold == 10 && c.Deals[0].StockLeft == 0 && c.Deals[0].Ended, string(r.Body)
	})

	// The feed holds exactly one deal_ended, before the marker.
	f.must(200, "POST", "/v1/skus/marker/stock", adminToken, map[string]any{"delta": 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc := f.openFeed(ctx, "0")
	ended := 0
	for sc.Scan() {
		var l struct {
			Type     string `json:"type"`
			SKUID    string `json:"sku_id"`
			Returned int64  `json:"returned"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("feed line: %v: %s", err, sc.Text())
		}
		if l.Type == "deal_ended" {
			ended++
			if l.Returned != 85 {
				t.Fatalf("deal_ended returned %d units, want 85: %s", l.Returned, sc.Text())
			}
		}
		if l.Type == "stock_changed" && l.SKUID == "marker" {
			break
		}
	}
	if ended != 1 {
		t.Fatalf("%d deal_ended events, want exactly 1", ended)
	}
}

// TestLiveGoClient drives the livestream endpoints through the Go client:
// channel, deal, an order on it over the batched path, end, and the
// channel and leaderboard reads.
func TestLiveGoClient(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedLive(50)
	ctx := context.Background()
	admin, err := client.New(client.Config{Addr: f.URL, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	shop, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken})
	if err != nil {
		t.Fatal(err)
	}
	defer shop.Close()
	now := time.Now().UTC()
	if _, err := admin.PutChannel(ctx, client.LiveChannel{ID: "c2", Title: "Two", Host: "H2", StartsAt: now, EndsAt: now.Add(time.Hour)}); err != nil {
		t.Fatalf("put channel: %v", err)
	}
	d, err := admin.PutDeal(ctx, client.Deal{ID: "d9", ChannelID: "c2", SKUID: "s1", Price: 300, Stock: 10, StartsAt: now.Add(-time.Second), EndsAt: now.Add(time.Hour), LimitPerBuyer: 3})
	if err != nil || d.StockLeft != 10 || d.LimitPerBuyer != 3 {
		t.Fatalf("put deal: %+v %v", d, err)
	}
	o, err := shop.PlaceOrder(ctx, client.OrderRequest{BuyerID: "u1", Channel: "live:c2", DealID: "d9", Items: []client.Item{{SKUID: "s1", Quantity: 2}}})
	if err != nil || o.Total != 600 {
		t.Fatalf("deal order through the batched path: %+v %v", o, err)
	}
	if _, err := shop.PlaceOrder(ctx, client.OrderRequest{BuyerID: "u1", Channel: "live:c2", DealID: "d9", Items: []client.Item{{SKUID: "s1", Quantity: 2}}}); err == nil {
		t.Fatal("a fourth unit for one buyer with a limit of 3 was accepted")
	}
	if _, err := shop.Pay(ctx, o.ID, o.Total); err != nil {
		t.Fatalf("pay: %v", err)
	}
	end, err := admin.EndDeal(ctx, "d9")
	if err != nil || !end.Ended || end.Returned != 8 || end.Sold != 2 {
		t.Fatalf("end deal: %+v %v", end, err)
	}
	waitFor(t, "channel c2 counts the paid deal order", func() (bool, string) {
		c, err := admin.Channel(ctx, "c2")
		return err == nil && c.GMV == 600 && c.Orders == 1 && len(c.Deals) == 1 && c.Deals[0].Sold == 2, fmt.Sprintf("%+v %v", c, err)
	})
	board, err := admin.Leaderboard(ctx, 10)
	if err != nil || len(board.Channels) != 2 || board.Channels[0].ID != "c2" {
		t.Fatalf("leaderboard: %+v %v", board, err)
	}
	f.checkSKU("after the client's deal", 48, 0, 2)
}
