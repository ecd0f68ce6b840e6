package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// feedLine is one line of GET /v1/events as received, with the fields the
// tests compare.
type feedLine struct {
	Raw      string
	Position string `json:"position"`
	Type     string `json:"type"`
	At       string `json:"at"`
	OrderID  string `json:"order_id"`
	SKUID    string `json:"sku_id"`
}

// feedClient has no overall timeout: a feed lasts until the test cancels
// its context.
var feedClient = &http.Client{Transport: &http.Transport{}}

// openFeed starts GET /v1/events?from=from; it fails the test unless the
// answer is 200 with NDJSON.
func (f *fest) openFeed(ctx context.Context, from string) *bufio.Scanner {
	f.t.Helper()
	url := f.URL + "/v1/events"
	if from != "" {
		url += "?from=" + from
	}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := feedClient.Do(req)
	if err != nil {
		f.t.Fatalf("open feed from %q: %v", from, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		resp.Body.Close()
		f.t.Fatalf("open feed from %q: status %d, content type %q", from, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	context.AfterFunc(ctx, func() { resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	return sc
}

// readFeed reads n lines of the feed from from, then disconnects.
func (f *fest) readFeed(from string, n int) []feedLine {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sc := f.openFeed(ctx, from)
	var lines []feedLine
	for len(lines) < n && sc.Scan() {
		l := feedLine{Raw: sc.Text()}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			f.t.Fatalf("feed line %d is not JSON: %v: %s", len(lines), err, sc.Text())
		}
		if l.Position == "" || l.Type == "" || l.At == "" {
			f.t.Fatalf("feed line %d lacks position, type or at: %s", len(lines), sc.Text())
		}
		lines = append(lines, l)
	}
	if len(lines) < n {
		f.t.Fatalf("feed from %q ended after %d of %d lines: %v", from, len(lines), n, sc.Err())
	}
	return lines
}

// placeBatch places n orders of one SKU in one batch request: they are
// decided together, so their events share journal records.
func (f *fest) placeBatch(buyer, sku string, n int) {
	f.t.Helper()
	var orders []map[string]any
	for i := range n {
		orders = append(orders, map[string]any{"buyer_id": fmt.Sprintf("%s-%d", buyer, i), "items": []map[string]any{{"sku_id": sku, "quantity": 1}}})
	}
	r := f.must(200, "POST", "/v1/orders:batch", storefrontToken, map[string]any{"orders": orders})
	var res struct {
		Results []struct {
			Order map[string]any `json:"order"`
		} `json:"results"`
	}
	json.Unmarshal(r.Body, &res)
	for i, x := range res.Results {
		if x.Order == nil {
			f.t.Fatalf("batch order %d refused: %s", i, r.Body)
		}
	}
}

// TestEventFeedResumeAfterKill consumes the feed, stops in the middle of a
// record, kills the server with SIGKILL, restarts it and resumes from the
// last position processed: the two connections together hold every event
// exactly once, in the order of a single uninterrupted read.
func TestEventFeedResumeAfterKill(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 1000, "s2": 1000})
	f.placeBatch("before", "s1", 20)
	o := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "payer", "items": []map[string]any{{"sku_id": "s2", "quantity": 2}}}).Body)
	f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
	c := decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "canceller", "items": []map[string]any{{"sku_id": "s2", "quantity": 1}}}).Body)
	f.must(200, "POST", "/v1/orders/"+c.OrderID+"/cancel", storefrontToken, nil)
	f.must(200, "POST", "/v1/skus/s2/stock", adminToken, map[string]any{"delta": 5})
	// brand, 2 merchants, 2 SKUs, 20 + 2 placed, 1 paid, 1 cancelled, 1 stock change.
	const before = 1 + 2 + 2 + 20 + 2 + 1 + 1 + 1

	first := f.readFeed("0", before)
	types := map[string]int{}
	for _, l := range first {
		types[l.Type]++
	}
	for typ, want := range map[string]int{"brand_upserted": 1, "merchant_upserted": 2, "sku_upserted": 2, "order_placed": 22, "order_paid": 1, "order_cancelled": 1, "stock_changed": 1} {
		if types[typ] != want {
			t.Errorf("%d %s events, want %d (all: %v)", types[typ], typ, want, types)
		}
	}
	// Stop in the middle of a record: after an event whose record has more.
	cut := -1
	for i := 0; i+1 < len(first); i++ {
		if recordOf(first[i].Position) == recordOf(first[i+1].Position) {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Fatalf("no record holds two events; positions: %v", positions(first))
	}
	// The consumer processed lines up to cut, then the server died.
	seen := first[:cut+1]
	last := seen[len(seen)-1].Position
	f.kill()
	f.restart()
	f.placeBatch("after", "s1", 5)
	const after = 5

	resumed := f.readFeed(last, before-len(seen)+after)
	all := append(append([]feedLine(nil), seen...), resumed...)
	whole := f.readFeed("0", before+after)
	if len(all) != len(whole) {
		t.Fatalf("%d events across the two connections, %d in one read", len(all), len(whole))
	}
	ids := map[string]bool{}
	for i := range whole {
		if all[i].Raw != whole[i].Raw {
			t.Fatalf("event %d differs:\n  resumed: %s\n  whole:   %s", i, all[i].Raw, whole[i].Raw)
		}
		if ids[whole[i].Position] {
			t.Fatalf("position %s twice", whole[i].Position)
		}
		ids[whole[i].Position] = true
	}
	// Resuming from the very last event waits for new ones: one more order
	// arrives on an open feed.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sc := f.openFeed(ctx, whole[len(whole)-1].Position)
	f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "late", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}})
	if !sc.Scan() {
		t.Fatalf("open feed ended: %v", sc.Err())
	}
	var l feedLine
	json.Unmarshal(sc.Bytes(), &l)
	if l.Type != "order_placed" || ids[l.Position] {
		t.Fatalf("followed event: %s", sc.Text())
	}
	// An open feed does not hold up a graceful shutdown.
	f.stop()
	if !strings.Contains(f.out.String(), "stopped cleanly") {
		t.Fatalf("fest did not stop cleanly with a feed open:\n%s", f.out)
	}
	if sc.Scan() {
		t.Fatalf("feed went on after shutdown: %s", sc.Text())
	}
}

func recordOf(position string) string {
	start, _, _ := strings.Cut(position, ":")
	return start
}

func positions(lines []feedLine) []string {
	var p []string
	for _, l := range lines {
		p = append(p, l.Position)
	}
	return p
}

// TestEventFeedErrors covers the answers that are not a feed.
func TestEventFeedErrors(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--event-feeds-max", "1")
	f.seedCatalog(map[string]int{"s1": 10})
	f.expectErr(401, "unauthenticated", "", "GET", "/v1/events", "", nil)
	f.expectErr(403, "forbidden", "", "GET", "/v1/events", storefrontToken, nil)
	for _, from := range []string{"abc", "-1", "1:", ":1", "1:2:3"} {
		f.expectErr(422, "invalid_argument", "from", "GET", "/v1/events?from="+from, adminToken, nil)
	}
	// Inside the first record: not a record boundary.
	f.expectErr(422, "invalid_argument", "from", "GET", "/v1/events?from=1", adminToken, nil)
	// Past the end of the journal.
	f.expectErr(422, "invalid_argument", "from", "GET", "/v1/events?from=999999999999", adminToken, nil)

	// One feed open: a second is turned away until it closes.
	ctx, cancel := context.WithCancel(context.Background())
	sc := f.openFeed(ctx, "")
	if !sc.Scan() {
		t.Fatalf("feed: %v", sc.Err())
	}
	r := f.expectErr(503, "unavailable", "", "GET", "/v1/events", adminToken, nil)
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	cancel()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f.feedStatus("0") != 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the feed slot was not released after its client left")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEventFeedGone lets the engine remove old journal segments (tiny
// segments, frequent snapshots, and clean restarts, at which the
// projections snapshot too) and asks for position 0 again: 410 gone.
func TestEventFeedGone(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--segment-bytes-max", "4096", "--snapshot-every-bytes", "8192")
	f.seedCatalog(map[string]int{"s1": 100000})
	for i := 0; ; i++ {
		for j := range 5 {
			f.placeBatch(fmt.Sprintf("g%d-%d", i, j), "s1", 50)
		}
		// from=0 answers 200 as a stream while the journal holds it, so
		// ask with a client that only reads the status.
		if status := f.feedStatus("0"); status == http.StatusGone {
			r := f.must(410, "GET", "/v1/events?from=0", adminToken, nil)
			if r.errCode() != "gone" {
				t.Fatalf("410 with code %q: %s", r.errCode(), r.Body)
			}
			return
		} else if status != 200 {
			t.Fatalf("from=0: status %d", status)
		}
		if i == 5 {
			t.Fatalf("the journal kept position 0 after %d clean restarts", i)
		}
		f.stop()
		f.restart()
	}
}

// feedStatus opens a feed, returns its status and disconnects.
func (f *fest) feedStatus(from string) int {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.URL+"/v1/events?from="+from, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := feedClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEventFeedOutlivesTimeouts: the server's read and write timeouts bound
// ordinary requests, not a feed: one idle past both still delivers the next
// event.
func TestEventFeedOutlivesTimeouts(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--read-header-timeout", "1s", "--read-timeout", "1s", "--write-timeout", "6s")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sc := f.openFeed(ctx, "")
	// Past the write timeout, counted from the request's headers.
	time.Sleep(7 * time.Second)
	f.must(200, "PUT", "/v1/brands/late", adminToken, map[string]any{"name": "Late", "country": "CN"})
	if !sc.Scan() {
		t.Fatalf("the feed ended while idle: %v", sc.Err())
	}
	if !strings.Contains(sc.Text(), `"brand_id":"late"`) {
		t.Fatalf("event: %s", sc.Text())
	}
}

// TestEventFeedSlowClient: a client that stops reading loses its feed
// after --event-feed-write-timeout, and its slot frees.
func TestEventFeedSlowClient(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--event-feed-write-timeout", "1s")
	f.seedCatalog(map[string]int{"s1": 1_000_000})
	// Enough events (about 30 MB of lines) to fill the socket buffers of
	// both ends.
	for i := range 10 {
		f.placeBatch(fmt.Sprintf("slow%d", i), "s1", 10_000)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc := f.openFeed(ctx, "0")
	if !sc.Scan() {
		t.Fatalf("feed: %v", sc.Err())
	}
	// Read nothing more; the server gives up on the feed.
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := string(f.must(200, "GET", "/metrics", "", nil).Body)
		if strings.Contains(m, "\nfest_event_feeds 0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the feed of a client that stopped reading stayed open")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
