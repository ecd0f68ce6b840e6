package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection/gmv"
)

// gmvServer returns a server whose GMV endpoints answer from a projection
// fed with a small catalog and paid orders: brand a sells 3 orders of 100
// CNY, brand b one of 50 CNY.
func gmvServer(t *testing.T, cfg Config) (*Server, *gmv.Projection) {
	t.Helper()
	cfg.AdminToken, cfg.StorefrontToken, cfg.CarrierToken = "a", "s", "c"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := gmv.New(gmv.Config{MilestoneThresholds: []int64{150_00}})
	if err != nil {
		t.Fatal(err)
	}
	evs := []engine.Event{
		{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: "a", Name: "Alpha", Country: "CN", LastYearGMV: 200_00}},
		{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: "b", Name: "Beta", Country: "FR", FirstFestival: 2020, Emerging: true}},
		{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: "m", Name: "Shop", Kind: engine.MerchantBrandStore, Industry: "apparel"}},
		{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "sa", MerchantID: "m", BrandID: "a", Category: "shoes"}},
		{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "sb", MerchantID: "m", BrandID: "b", Category: "bags"}},
	}
	order := func(id uint64, sku string, amount int64) {
		evs = append(evs,
			engine.Event{Kind: engine.EventOrderPlaced, At: int64(id) * 1e9, OrderID: engine.OrderID(id), MerchantID: "m", Channel: "live:x", Region: "CN-ZJ",
				Items: []engine.Item{{SKUID: sku, Quantity: 1, UnitPrice: amount, Amount: amount}}, Total: amount},
			engine.Event{Kind: engine.EventOrderPaid, At: int64(id) * 1e9, OrderID: engine.OrderID(id)})
	}
	order(1, "sa", 100_00)
	order(2, "sa", 100_00)
	order(3, "sa", 100_00)
	order(4, "sb", 50_00)
	for i := range evs {
		if err := p.Apply(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	p.Commit(100, 4e9)
	s.AttachGMV(p)
	return s, p
}

func get(t *testing.T, s *Server, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s: %d %q: %v", path, rec.Code, rec.Body.String(), err)
	}
	return rec.Code, body
}

func TestGMVEndpoints(t *testing.T) {
	s, _ := gmvServer(t, Config{})
	code, g := get(t, s, "/v1/gmv")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/gmv: %d %v", code, g)
	}
	if amount := g["gmv"].(map[string]any)["amount"]; amount != 350_00.0 {
		t.Errorf("gmv amount %v, want 35000", amount)
	}
	if g["orders_paid"] != 4.0 || g["orders_placed"] != 4.0 {
		t.Errorf("orders placed %v paid %v, want 4 and 4", g["orders_placed"], g["orders_paid"])
	}
	for _, f := range []string{"gmv_usd", "orders_per_second", "as_of", "lag", "brands", "last_year_gmv", "growth"} {
		if _, ok := g[f]; !ok {
			t.Errorf("GET /v1/gmv has no %q: %v", f, g)
		}
	}
	if b := g["brands"].(map[string]any); b["foreign_selling"] != 1.0 || b["first_time_selling"] != 1.0 || b["emerging_top_category"] != 1.0 {
		t.Errorf("brand counts %v", b)
	}

	for _, by := range []string{"brand", "merchant", "category", "country", "channel", "region", "industry", "kind"} {
		code, b := get(t, s, "/v1/gmv/breakdown?by="+by+"&top=1")
		if code != http.StatusOK {
			t.Fatalf("breakdown by %s: %d %v", by, code, b)
		}
		rows := b["rows"].([]any)
		sum := b["rest"].(map[string]any)["gmv"].(float64)
		for _, r := range rows {
			sum += r.(map[string]any)["gmv"].(float64)
		}
		if sum != b["gmv"].(float64) || b["by"] != by {
			t.Errorf("breakdown by %s: rows and rest add up to %v, total %v", by, sum, b["gmv"])
		}
	}
	_, b := get(t, s, "/v1/gmv/breakdown?by=brand")
	first := b["rows"].([]any)[0].(map[string]any)
	if first["key"] != "a" || first["name"] != "Alpha" || first["gmv"] != 300_00.0 || first["orders"] != 3.0 || first["growth"] != 0.5 || first["last_year_gmv"] != 200_00.0 {
		t.Errorf("first brand row %v", first)
	}
	if second := b["rows"].([]any)[1].(map[string]any); second["growth"] != nil {
		t.Errorf("a brand without last year's figure has a growth: %v", second)
	}

	_, m := get(t, s, "/v1/gmv/milestones")
	ms := m["milestones"].([]any)
	if len(ms) != 2 {
		t.Fatalf("milestones %v, want brand a and channel live:x at 150 CNY", ms)
	}
	for _, x := range ms {
		x := x.(map[string]any)
		if x["threshold"] != 150_00.0 || x["reached_at"] != "1970-01-01T00:00:02Z" {
			t.Errorf("milestone %v", x)
		}
	}
}

func TestBreakdownArguments(t *testing.T) {
	s, _ := gmvServer(t, Config{})
	tests := []struct {
		query, field string
	}{
		{"by=planet", "by"},
		{"", "by"},
		{"by=brand&top=0", "top"},
		{"by=brand&top=1001", "top"},
		{"by=brand&top=x", "top"},
	}
	for _, tc := range tests {
		code, body := get(t, s, "/v1/gmv/breakdown?"+tc.query)
		e, _ := body["error"].(map[string]any)
		if code != http.StatusUnprocessableEntity || e["code"] != "invalid_argument" || e["field"] != tc.field {
			t.Errorf("?%s: %d %v, want 422 invalid_argument naming %s", tc.query, code, body, tc.field)
		}
	}
	if code, _ := get(t, s, "/v1/gmv/breakdown?by=kind&top=1000"); code != http.StatusOK {
		t.Errorf("top=1000: %d", code)
	}
}

func TestGMVNotReady(t *testing.T) {
	s, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c"})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/gmv", "/v1/gmv/breakdown?by=brand", "/v1/gmv/milestones", "/v1/gmv/stream"} {
		if code, _ := get(t, s, path); code != http.StatusServiceUnavailable {
			t.Errorf("GET %s before the projection: %d, want 503", path, code)
		}
	}
}

// TestStream reads events from a real connection, checks the bound on
// streams, and that shutting the server down ends the streams.
func TestStream(t *testing.T) {
	s, _ := gmvServer(t, Config{StreamsMax: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer(nil)
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/v1/gmv/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: %d %q", resp.StatusCode, ct)
	}
	br := bufio.NewReader(resp.Body)
	for range 2 {
		event, _ := br.ReadString('\n')
		data, _ := br.ReadString('\n')
		blank, _ := br.ReadString('\n')
		if event != "event: gmv\n" || !strings.HasPrefix(data, "data: {") || blank != "\n" {
			t.Fatalf("event %q %q %q", event, data, blank)
		}
		var g map[string]any
		if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &g); err != nil || g["orders_paid"] != 4.0 {
			t.Fatalf("event data %q: %v", data, err)
		}
	}

	// A second stream is over the bound.
	second, err := http.Get(base + "/v1/gmv/stream")
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" {
		t.Errorf("stream over the bound: %d, Retry-After %q", second.StatusCode, second.Header.Get("Retry-After"))
	}

	// Shutdown ends the open stream, and so returns.
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("stream after shutdown: %v", err)
	}
}

// TestStreamClientGone checks that a stream whose client disconnects ends
// and frees its slot.
func TestStreamClientGone(t *testing.T) {
	s, _ := gmvServer(t, Config{StreamsMax: 1})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/gmv/stream", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream after the previous client left: %d", resp.StatusCode)
		}
		if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); line != "event: gmv\n" {
			t.Fatalf("first line %q", line)
		}
		cancel()
		resp.Body.Close()
		// The handler sees the disconnect at its next wait; the slot is
		// free once it returned.
		for s.gmv.streams.Load() != 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestDashboard(t *testing.T) {
	s, _ := gmvServer(t, Config{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{`id="gmv-amount"`, `/v1/gmv/stream`, `top-brand`, `/v1/gmv/breakdown?by=brand`} {
		if !strings.Contains(body, want) {
			t.Errorf("the dashboard has no %q", want)
		}
	}
	if strings.Contains(body, "<script src=") || strings.Contains(body, "https://") {
		t.Error("the dashboard loads something from elsewhere")
	}
}

func TestOpenAPIListsTheBoard(t *testing.T) {
	s, _ := gmvServer(t, Config{})
	code, doc := get(t, s, "/v1/openapi.json")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json: %d", code)
	}
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/v1/gmv", "/v1/gmv/breakdown", "/v1/gmv/milestones", "/v1/gmv/series", "/v1/gmv/stream", "/"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("the OpenAPI document has no %s", p)
		}
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, name := range []string{"GMV", "Breakdown", "Money"} {
		if _, ok := schemas[name]; !ok {
			t.Errorf("the OpenAPI document has no schema %s", name)
		}
	}
}

// TestBreakdownCachedAtOnePosition checks that a breakdown read twice at
// one position is rendered once (its as_of, in nanoseconds, is the same).
func TestBreakdownCachedAtOnePosition(t *testing.T) {
	s, _ := gmvServer(t, Config{})
	read := func() string {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/gmv/breakdown?by=brand&top=5", nil))
		return rec.Body.String()
	}
	if a, b := read(), read(); a != b {
		t.Errorf("two reads at one position rendered twice:\n%s\n%s", a, b)
	}
}
