package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
)

// idIn returns an id prefix+"<n>" that hashPartition(salt+id) puts in
// partition p.
func idIn(prefix, salt string, p int) string {
	for i := 0; ; i++ {
		id := prefix + strconv.Itoa(i)
		if hashPartition(salt+id) == p {
			return id
		}
	}
}

// adminCall sends method path with the admin token and body to n.
func (n *testNode) adminCall(t *testing.T, method, path, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, n.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer a")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

// TestClusterCatalogWrites: every catalog and live write sent to a node
// that does not own its partition is applied by the owner, answered as
// the owner answers it, and reported as forwarded; the stock
// compare-and-set and a stock adjustment go through too.
func TestClusterCatalogWrites(t *testing.T) {
	c := newTestCluster(t)
	ctx := context.Background()
	brand := idIn("b", "brand/", 6)     // b's partition
	merchant := merchantIn(5)           // b's
	channel := idIn("c", "channel/", 7) // b's
	window := `"starts_at":"2020-11-10T16:00:00Z","ends_at":"2020-11-11T16:00:00Z"`
	c.a.router.mu.Lock()
	c.a.router.skus["sku-new"] = 5
	c.a.router.skus["deal/d1"] = 5
	c.a.router.mu.Unlock()

	steps := []struct {
		method, path, body string
		status             int
		want               string // in the answer
	}{
		{"PUT", "/v1/brands/" + brand, `{"name":"Brand B","country":"CN"}`, 200, `"brand_id":"` + brand + `"`},
		{"PUT", "/v1/merchants/" + merchant, `{"name":"Shop","brand_id":"br","kind":"brand_store"}`, 200, `"merchant_id":"` + merchant + `"`},
		{"PUT", "/v1/skus/sku-new", `{"merchant_id":"` + merchant + `","brand_id":"br","title":"T","price":100,"stock":10}`, 200, `"stock_available":10`},
		// The compare-and-set: a stale stock_expected is refused with the
		// stock found, the right one applies.
		{"PUT", "/v1/skus/sku-new", `{"merchant_id":"` + merchant + `","brand_id":"br","title":"T","price":100,"stock":20,"stock_expected":3}`, 409, `"stock_available":10`},
		{"PUT", "/v1/skus/sku-new", `{"merchant_id":"` + merchant + `","brand_id":"br","title":"T","price":100,"stock":20,"stock_expected":10}`, 200, `"stock_available":20`},
		{"POST", "/v1/skus/sku-new/stock", `{"delta":-5}`, 200, `"stock_available":15`},
		{"PUT", "/v1/live/channels/" + channel, `{"title":"Live","host":"H",` + window + `}`, 200, `"channel_id":"` + channel + `"`},
		{"PUT", "/v1/live/deals/d1", `{"channel_id":"` + channel + `","sku_id":"sku-new","price":50,"stock":3,` + window + `}`, 200, `"deal_id":"d1"`},
		{"POST", "/v1/live/deals/d1/end", ``, 200, `"ended":true`},
	}
	for _, st := range steps {
		before := c.b.hits.Load()
		resp, b := c.a.adminCall(t, st.method, st.path, st.body)
		if resp.StatusCode != st.status || !strings.Contains(string(b), st.want) {
			t.Fatalf("%s %s via a: %d %s, want %d with %s", st.method, st.path, resp.StatusCode, b, st.status, st.want)
		}
		if got := resp.Header.Get(HeaderForwardedTo); got != "b" {
			t.Errorf("%s %s: %s %q, want b", st.method, st.path, HeaderForwardedTo, got)
		}
		if c.b.hits.Load() != before {
			t.Errorf("%s %s: counted as a client's request on b", st.method, st.path)
		}
	}
	// Everything is on b, nothing on a.
	if _, ok := c.b.eng.Brand(brand); !ok {
		t.Error("brand not on b")
	}
	if _, ok := c.a.eng.Brand(brand); ok {
		t.Error("brand on a too")
	}
	if res := c.b.eng.Do(ctx, engine.Command{Kind: engine.KindGetSKU, SKUID: "sku-new"}); !res.OK() || res.Available != 15 {
		t.Errorf("sku on b: %+v", res)
	}
	if res := c.a.eng.Do(ctx, engine.Command{Kind: engine.KindGetSKU, SKUID: "sku-new"}); res.Code != engine.CodeNotFound {
		t.Errorf("sku on a: %+v", res)
	}
	// The owner reported its positions, which a now comes after.
	if after := c.a.srv.cl.afterHeader(); !strings.Contains(after, "5:") || !strings.Contains(after, "6:") {
		t.Errorf("a's positions seen: %q, want partitions 5 and 6", after)
	}
	// A write a owns is applied on a.
	resp, b := c.a.adminCall(t, "PUT", "/v1/brands/"+idIn("b", "brand/", 2), `{"name":"A","country":"CN"}`)
	if resp.StatusCode != 200 || resp.Header.Get(HeaderForwardedTo) != "" {
		t.Errorf("a's own brand: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	// A forwarded write b does not own is refused, never forwarded again.
	resp, b = c.b.adminCall(t, "PUT", "/v1/brands/"+idIn("b", "brand/", 1), `{"name":"A","country":"CN"}`, HeaderForwardedBy, "a")
	if resp.StatusCode != 503 || resp.Header.Get(HeaderNotOwner) != "1" {
		t.Errorf("forwarded brand of a's partition to b: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	// With b down, b's writes through a are 503 with Retry-After.
	c.b.http.Close()
	resp, b = c.a.adminCall(t, "PUT", "/v1/brands/"+brand, `{"name":"Brand B","country":"CN"}`)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "unavailable") {
		t.Errorf("brand with b down: %d %v %s", resp.StatusCode, resp.Header, b)
	}
}

// TestClusterCausalWait: a forwarded write waits for the positions it
// must come after, and is answered 503 unavailable, with nothing applied,
// when this node does not reach them within FollowWaitMax; a malformed
// HeaderAfter is refused.
func TestClusterCausalWait(t *testing.T) {
	c := newTestCluster(t)
	c.b.srv.cl.cfg.FollowWaitMax = 20 * time.Millisecond
	brand := idIn("b", "brand/", 6)
	c.b.router.setPosition(3, 7)
	for _, tc := range []struct {
		after  string
		status int
	}{
		{"3:7", 200},
		{"3:5,6:1", 200},
		{"3:8", 503},
		{"3:x", 422},
		{"99:1", 422},
	} {
		resp, b := c.b.adminCall(t, "PUT", "/v1/brands/"+brand, `{"name":"B`+tc.after+`","country":"CN"}`, HeaderForwardedBy, "a", HeaderAfter, tc.after)
		if resp.StatusCode != tc.status {
			t.Errorf("after %q: %d %s, want %d", tc.after, resp.StatusCode, b, tc.status)
		}
		if tc.status == 200 && resp.Header.Get(HeaderPositions) != "6:"+strconv.FormatUint(^uint64(0), 10) {
			t.Errorf("after %q: %s %q", tc.after, HeaderPositions, resp.Header.Get(HeaderPositions))
		}
		if br, _ := c.b.eng.Brand(brand); tc.status != 200 && br.Name == "B"+tc.after {
			t.Errorf("after %q: refused but applied", tc.after)
		}
	}
	// A write from a client waits for the positions this node has seen.
	c.b.srv.cl.note([]partitionPosition{{3, 9}})
	resp, b := c.b.adminCall(t, "PUT", "/v1/brands/"+brand, `{"name":"B","country":"CN"}`)
	if resp.StatusCode != 503 || !strings.Contains(string(b), "partition 3 is behind") {
		t.Errorf("write behind what b has seen: %d %s", resp.StatusCode, b)
	}
	c.b.router.setPosition(3, 9)
	if resp, b := c.b.adminCall(t, "PUT", "/v1/brands/"+brand, `{"name":"B","country":"CN"}`); resp.StatusCode != 200 {
		t.Errorf("write once caught up: %d %s", resp.StatusCode, b)
	}
}

func TestParsePositions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []partitionPosition
		ok   bool
	}{
		{"", nil, true},
		{"0:1", []partitionPosition{{0, 1}}, true},
		{"1:2, 7:18446744073709551615", []partitionPosition{{1, 2}, {7, ^uint64(0)}}, true},
		{"8:1", nil, false},
		{"-1:1", nil, false},
		{"1", nil, false},
		{"1:-2", nil, false},
		{"1:2,", nil, false},
	} {
		got, ok := parsePositions(tc.in, 8)
		if ok != tc.ok || len(got) != len(tc.want) {
			t.Errorf("%q: %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: %v, want %v", tc.in, got, tc.want)
			}
		}
		if ok && formatPositions(got) != strings.ReplaceAll(tc.in, " ", "") {
			t.Errorf("%q formats as %q", tc.in, formatPositions(got))
		}
	}
}

// TestClusterImportSplit: an import through a with lines of both nodes'
// partitions applies each line on its owner and answers as one node
// would; a bad line found by the other owner is reported with its line
// number in the caller's file; an import with b down fails with 503 at
// b's first line.
func TestClusterImportSplit(t *testing.T) {
	c := newTestCluster(t)
	ctx := context.Background()
	mA, mB := merchantIn(2), merchantIn(6)
	bA, bB := idIn("b", "brand/", 0), idIn("b", "brand/", 7)
	lines := []string{
		`{"type":"brand","id":"` + bB + `","name":"B","country":"CN"}`,
		`{"type":"brand","id":"` + bA + `","name":"A","country":"CN"}`,
		`{"type":"merchant","id":"` + mB + `","name":"MB","brand_id":"br","kind":"factory"}`,
		`{"type":"merchant","id":"` + mA + `","name":"MA","brand_id":"br","kind":"factory"}`,
		`{"type":"sku","id":"ib1","merchant_id":"` + mB + `","brand_id":"br","title":"T","price":5,"stock":7}`,
		`{"type":"sku","id":"ia1","merchant_id":"` + mA + `","brand_id":"br","title":"T","price":5,"stock":8}`,
		`{"type":"sku","id":"ib2","merchant_id":"` + mB + `","brand_id":"br","title":"T","price":5,"stock":9}`,
	}
	importVia := func(n *testNode, lines []string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodPost, n.http.URL+"/v1/catalog:import", bytes.NewReader([]byte(strings.Join(lines, "\n")+"\n")))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer a")
		req.Header.Set("Content-Type", "application/x-ndjson")
		return do(t, req)
	}
	resp, b := importVia(c.a, lines)
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"imported":{"brand":2,"merchant":2,"sku":3}}` {
		t.Fatalf("import: %d %s", resp.StatusCode, b)
	}
	for _, tc := range []struct {
		n     *testNode
		sku   string
		stock int64
	}{{c.b, "ib1", 7}, {c.a, "ia1", 8}, {c.b, "ib2", 9}} {
		if res := tc.n.eng.Do(ctx, engine.Command{Kind: engine.KindGetSKU, SKUID: tc.sku}); !res.OK() || res.Available != tc.stock {
			t.Errorf("%s on %s: %+v", tc.sku, tc.n.name, res)
		}
	}
	if _, ok := c.b.eng.Brand(bB); !ok {
		t.Error("b's brand not on b")
	}
	if _, ok := c.a.eng.Brand(bA); !ok {
		t.Error("a's brand not on a")
	}
	// Line 3 of this file names a merchant b does not have: b finds it in
	// its part (its line 1), the answer names line 3.
	bad := []string{strings.Replace(lines[5], `"ia1"`, `"ia9"`, 1), lines[1], `{"type":"sku","id":"ib3","merchant_id":"` + merchantIn(7) + `","brand_id":"br","title":"T","price":5,"stock":1}`}
	resp, b = importVia(c.a, bad)
	var e jsonErrorBody
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 404 || e.Error == nil || e.Error.Line != 3 || !strings.HasPrefix(e.Error.Message, "line 3: ") {
		t.Errorf("bad line of b's part: %d %s", resp.StatusCode, b)
	}
	// b down: 503 unavailable at b's first line, with Retry-After.
	c.b.http.Close()
	resp, b = importVia(c.a, lines[2:])
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || e.Error == nil || e.Error.Line != 1 || e.Error.Code != "unavailable" {
		t.Errorf("import with b down: %d %s", resp.StatusCode, b)
	}
}
