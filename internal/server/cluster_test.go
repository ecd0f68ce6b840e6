package server

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/lease"
	"github.com/fest-platform/fest/internal/logistics"
	"github.com/fest-platform/fest/internal/projection"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/internal/vfs"
	"github.com/fest-platform/fest/wire"
)

// The cluster tests run real servers on loopback, each with its own
// engine. The engines are not in cluster mode: each holds only the SKUs of
// the partitions its node owns, and a table router stands in for the
// engine's Locate and Owns. Node a owns partitions 0-3, node b 4-7.

const testPartitions = 8

// merchantIn returns a merchant id that the engine puts in partition p:
// the engine's partition of a merchant is the FNV-1a hash of its id
// (engine/apply.go, merchantPartition). The tests check the partition of
// every order placed, so a change there fails them rather than passing
// by chance.
func merchantIn(p int) string {
	for i := 0; ; i++ {
		id := "m" + strconv.Itoa(i)
		h := fnv.New64a()
		h.Write([]byte(id))
		if int(h.Sum64()%testPartitions) == p {
			return id
		}
	}
}

// tableRouter locates orders by a SKU table and payments by the order
// id's partition, and owns a set of partitions.
type tableRouter struct {
	mu    sync.Mutex
	skus  map[string]int
	owned map[int]bool
	seen  map[int]int // commands located, by partition
	// positions are PartitionPosition's answers, by partition.
	positions map[int]uint64
}

func (t *tableRouter) Locate(r *engine.Request) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch r.Command.Kind {
	case engine.KindPlaceOrder:
		if len(r.Command.Order.Items) == 0 {
			return 0, false
		}
		p, ok := t.skus[r.Command.Order.Items[0].SKUID]
		return p, ok
	case engine.KindGetSKU, engine.KindAdjustStock:
		p, ok := t.skus[r.Command.SKUID]
		return p, ok
	case engine.KindPay, engine.KindCancel, engine.KindGetOrder, engine.KindScanParcel:
		return r.Command.OrderID.Partition(), true
	case engine.KindUpsertBrand:
		return hashPartition("brand/" + r.Command.Brand.ID), true
	case engine.KindUpsertMerchant:
		return hashPartition(r.Command.Merchant.ID), true
	case engine.KindUpsertSKU:
		return hashPartition(r.Command.SKU.MerchantID), true
	case engine.KindPutChannel:
		return hashPartition("channel/" + r.Command.Channel.ID), true
	case engine.KindPutDeal:
		p, ok := t.skus[r.Command.Deal.SKUID]
		return p, ok
	case engine.KindEndDeal:
		p, ok := t.skus["deal/"+r.Command.Deal.ID]
		return p, ok
	}
	return 0, false
}

// PartitionPosition is the position set by setPosition, and past any
// position when none was set: a node of these tests has followed
// everything unless a test says otherwise.
func (t *tableRouter) PartitionPosition(p int) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if q, ok := t.positions[p]; ok {
		return q
	}
	return math.MaxUint64
}

func (t *tableRouter) setPosition(p int, q uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.positions == nil {
		t.positions = map[int]uint64{}
	}
	t.positions[p] = q
}

// hashPartition is the engine's partition of a hashed id: FNV-1a, as
// merchantIn says.
func hashPartition(id string) int {
	h := fnv.New64a()
	h.Write([]byte(id))
	return int(h.Sum64() % testPartitions)
}

func (t *tableRouter) Owns(p int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.owned[p]
}

func (t *tableRouter) setOwned(p int, owned bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.owned[p] = owned
}

// viewHolder is a Membership whose view the test sets.
type viewHolder struct {
	mu     sync.Mutex
	view   lease.View
	calls  int
	onView func() // called by View, when set
}

func (v *viewHolder) View() lease.View {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	if v.onView != nil {
		v.onView()
	}
	out := v.view
	out.Nodes = append([]lease.NodeView(nil), v.view.Nodes...)
	out.Partitions = append([]lease.PartitionView(nil), v.view.Partitions...)
	return out
}

func (v *viewHolder) setOwner(p int, node string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.view.Partitions[p].Owner = node
}

// testNode is one node: its server on loopback and what stands behind it.
type testNode struct {
	name    string
	srv     *Server
	http    *httptest.Server
	eng     *engine.Engine
	proj    *projection.Runner
	store   *orders.Store
	router  *tableRouter
	members *viewHolder
	hits    atomic.Int64
}

// testCluster is nodes a and b; sku "sa" is in partition 1 (a's), "sb" in
// partition 5 (b's), "sgone" is located in partition 6 but exists nowhere.
type testCluster struct {
	a, b       *testNode
	skuA, skuB string
}

func newTestNode(t testing.TB, name string, owned []int, skus map[string]int) *testNode {
	t.Helper()
	router, members := &tableRouter{skus: skus, owned: map[int]bool{}}, &viewHolder{}
	for _, p := range owned {
		router.owned[p] = true
	}
	return startNode(t, Config{Cluster: &ClusterConfig{ViewAgeMax: time.Hour}}, name, router, members)
}

// startNode starts a node with cfg (tokens a, s, c), a cluster node when
// cfg.Cluster is set.
func startNode(t testing.TB, cfg Config, name string, router *tableRouter, members *viewHolder) *testNode {
	t.Helper()
	n := &testNode{name: name, router: router, members: members}
	cfg.AdminToken, cfg.StorefrontToken, cfg.CarrierToken = "a", "s", "c"
	var err error
	n.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.store, err = orders.Open(orders.Config{})
	if err != nil {
		t.Fatal(err)
	}
	parcels, err := logistics.New(logistics.Config{Now: func() int64 { return time.Now().UnixNano() }})
	if err != nil {
		t.Fatal(err)
	}
	n.proj, err = projection.New(projection.Config{Dir: t.TempDir()}, n.store, parcels)
	if err != nil {
		t.Fatal(err)
	}
	// The journal's fsync is skipped: these tests are about routing, and
	// the benchmarks about its CPU cost.
	n.eng, err = engine.Open(engine.Config{Dir: t.TempDir(), Partitions: testPartitions, JournalFsync: func(vfs.File) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	n.proj.Start(n.eng)
	if cfg.Cluster != nil {
		n.srv.AttachCluster(router, members)
	}
	n.srv.Attach(n.eng, n.proj, n.store)
	n.srv.AttachLogistics(parcels)
	h := n.srv.Handler()
	n.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderForwardedBy) == "" {
			n.hits.Add(1) // requests from clients, not from peers
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		n.http.Close()
		n.srv.Detach()
		n.proj.Close()
		n.store.Close()
		n.eng.Close()
	})
	return n
}

// addSKU creates a merchant in partition p and a SKU of it with stock.
func (n *testNode) addSKU(t testing.TB, p int, sku string) { n.addSKUStock(t, p, sku, 1000) }

func (n *testNode) addSKUStock(t testing.TB, p int, sku string, stock int64) {
	t.Helper()
	m := merchantIn(p)
	ctx := context.Background()
	for _, cmd := range []engine.Command{
		{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "br", Name: "Brand", Country: "CN"}},
		{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: m, Name: "Shop", BrandID: "br", Kind: engine.MerchantBrandStore}},
		{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: sku, MerchantID: m, BrandID: "br", Title: "t", Price: 100, Stock: stock}},
	} {
		if res := n.eng.Do(ctx, cmd); !res.OK() {
			t.Fatalf("node %s: %v: %v", n.name, cmd.Kind, res.Code)
		}
	}
}

func newTestCluster(t testing.TB) *testCluster {
	t.Helper()
	skus := map[string]int{"sa": 1, "sb": 5, "sgone": 6, "sa-big": 1, "sb-big": 5}
	c := &testCluster{skuA: "sa", skuB: "sb"}
	c.a = newTestNode(t, "a", []int{0, 1, 2, 3}, skus)
	c.b = newTestNode(t, "b", []int{4, 5, 6, 7}, skus)
	c.a.addSKU(t, 1, "sa")
	c.b.addSKU(t, 5, "sb")
	for _, n := range []*testNode{c.a, c.b} {
		v := lease.View{Node: n.name, Nodes: []lease.NodeView{{Node: "a", Addr: c.a.http.URL, Alive: true}, {Node: "b", Addr: c.b.http.URL, Alive: true}}}
		for p := range testPartitions {
			owner := "a"
			if p >= 4 {
				owner = "b"
			}
			v.Partitions = append(v.Partitions, lease.PartitionView{Partition: p, Owner: owner, LeaseRevision: uint64(p + 1)})
		}
		n.members.view = v
	}
	return c
}

// post sends a request to n with the storefront token.
func (n *testNode) post(t *testing.T, path, ctype string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer s")
	req.Header.Set("Content-Type", ctype)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func (n *testNode) get(t *testing.T, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer s")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// orderCount is the orders n's store holds once it reflects its engine.
func (n *testNode) orderCount(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.proj.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	return n.store.Stats().Orders
}

type batchAnswer struct {
	Results []struct {
		Order *struct {
			OrderID    string `json:"order_id"`
			MerchantID string `json:"merchant_id"`
			Status     string `json:"status"`
			Total      int64  `json:"total"`
		} `json:"order"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	} `json:"results"`
}

func orderJSONOf(buyer, sku string) string {
	return `{"buyer_id":"` + buyer + `","items":[{"sku_id":"` + sku + `","quantity":1}]}`
}

// partitionOf parses an order id's partition.
func partitionOf(t *testing.T, id string) int {
	t.Helper()
	oid, err := engine.ParseOrderID(id)
	if err != nil {
		t.Fatalf("order id %q: %v", id, err)
	}
	return oid.Partition()
}

// TestClusterBatchSplitsPerOwner: a JSON batch sent to a with orders of
// both nodes is answered in order, each order placed once on its owner,
// an error of b's engine named by its index in the caller's batch, and an
// edge error answered by a.
func TestClusterBatchSplitsPerOwner(t *testing.T) {
	c := newTestCluster(t)
	body := `{"orders":[` + strings.Join([]string{
		orderJSONOf("u1", "sa"), orderJSONOf("u2", "sb"), orderJSONOf("u3", "sb"),
		`{"buyer_id":"","items":[{"sku_id":"sa","quantity":1}]}`, // refused at a's edge
		orderJSONOf("u5", "sgone"), orderJSONOf("u6", "sa"),
	}, ",") + `]}`
	resp, b := c.a.post(t, "/v1/orders:batch", "application/json", []byte(body))
	if resp.StatusCode != 200 {
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
	if got := resp.Header.Get(HeaderForwardedTo); got != "b" {
		t.Errorf("%s: %q, want b", HeaderForwardedTo, got)
	}
	var ans batchAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	if len(ans.Results) != 6 {
		t.Fatalf("%d results, want 6: %s", len(ans.Results), b)
	}
	wantPartition := map[int]int{0: 1, 1: 5, 2: 5, 5: 1}
	for i, p := range wantPartition {
		o := ans.Results[i].Order
		if o == nil {
			t.Errorf("result %d: not placed: %+v", i, ans.Results[i].Error)
			continue
		}
		if got := partitionOf(t, o.OrderID); got != p {
			t.Errorf("result %d: order %s in partition %d, want %d", i, o.OrderID, got, p)
		}
		if o.MerchantID != merchantIn(p) {
			t.Errorf("result %d: merchant %s, want %s", i, o.MerchantID, merchantIn(p))
		}
	}
	if e := ans.Results[3].Error; e == nil || e.Field != "orders[3].buyer_id" {
		t.Errorf("result 3: %+v, want the edge's error on orders[3].buyer_id", e)
	}
	if e := ans.Results[4].Error; e == nil || e.Code != "not_found" || e.Field != "orders[4].items[0].sku_id" || !strings.Contains(e.Message, "orders[4].items[0].sku_id") {
		t.Errorf("result 4: %+v, want b's not_found renumbered to orders[4].items[0].sku_id", e)
	}
	if n := c.a.orderCount(t); n != 2 {
		t.Errorf("node a holds %d orders, want 2", n)
	}
	if n := c.b.orderCount(t); n != 2 {
		t.Errorf("node b holds %d orders, want 2", n)
	}

	// Each order reads back from either node: b's from a by forwarding.
	for _, i := range []int{0, 1} {
		id := ans.Results[i].Order.OrderID
		resp, b := c.a.get(t, "/v1/orders/"+id)
		if resp.StatusCode != 200 || !strings.Contains(string(b), id) {
			t.Errorf("GET order %s from a: %d %s", id, resp.StatusCode, b)
		}
	}
}

// TestClusterProtoBatchAndSettle: the protobuf forms of orders:batch and
// orders:settle split and merge the same way.
func TestClusterProtoBatchAndSettle(t *testing.T) {
	c := newTestCluster(t)
	orders := []wire.PlaceOrder{
		{BuyerID: "u1", Items: []wire.Item{{SKUID: "sb", Quantity: 2}}},
		{BuyerID: "u2", Items: []wire.Item{{SKUID: "sa", Quantity: 1}}},
		{BuyerID: "u3", Items: []wire.Item{{SKUID: "sgone", Quantity: 1}}},
		{BuyerID: "u4", Items: []wire.Item{{SKUID: "sb", Quantity: 1}}},
	}
	resp, b := c.a.post(t, "/v1/orders:batch", wire.ContentType, wire.AppendRequest(nil, orders))
	if resp.StatusCode != 200 {
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
	results, err := wire.DecodeResponse(b, nil)
	if err != nil || len(results) != 4 {
		t.Fatalf("decode: %d results, %v", len(results), err)
	}
	for i, p := range map[int]int{0: 5, 1: 1, 3: 5} {
		r := results[i]
		if r.Error != nil {
			t.Fatalf("result %d: %+v", i, r.Error)
		}
		if got := partitionOf(t, r.Order.OrderID); got != p || r.Order.BuyerID != orders[i].BuyerID {
			t.Errorf("result %d: order %s of %s in partition %d, want %s in %d", i, r.Order.OrderID, r.Order.BuyerID, got, orders[i].BuyerID, p)
		}
	}
	if e := results[2].Error; e == nil || e.Code != "not_found" || e.Field != "orders[2].items[0].sku_id" {
		t.Errorf("result 2: %+v, want not_found on orders[2].items[0].sku_id", e)
	}

	// Settle: pay b's first order, cancel a's, pay b's second with the
	// wrong amount (refused by b's engine, its field renumbered).
	acts := []wire.Settle{
		{OrderID: results[0].Order.OrderID, Amount: results[0].Order.Total},
		{OrderID: results[1].Order.OrderID, Cancel: true},
		{OrderID: results[3].Order.OrderID, Amount: 1},
	}
	resp, b = c.a.post(t, "/v1/orders:settle", wire.ContentType, wire.AppendSettleRequest(nil, acts))
	if resp.StatusCode != 200 {
		t.Fatalf("settle: %d %s", resp.StatusCode, b)
	}
	settled, err := wire.DecodeSettleResponse(b, nil)
	if err != nil || len(settled) != 3 {
		t.Fatalf("decode settle: %d results, %v", len(settled), err)
	}
	if s := settled[0]; s.Error != nil || s.Status != "paid" || s.OrderID != acts[0].OrderID {
		t.Errorf("settle 0: %+v, want paid", s)
	}
	if s := settled[1]; s.Error != nil || s.Status != "cancelled" {
		t.Errorf("settle 1: %+v, want cancelled", s)
	}
	if s := settled[2]; s.Error == nil || s.Error.Code != "payment_mismatch" || s.Error.Field != "actions[2].amount" {
		t.Errorf("settle 2: %+v, want payment_mismatch on actions[2].amount", s.Error)
	}

	// JSON settle through b this time, for a's order.
	resp, b = c.b.post(t, "/v1/orders:settle", "application/json",
		[]byte(`{"actions":[{"order_id":"`+results[3].Order.OrderID+`","action":"cancel"},{"order_id":"`+results[1].Order.OrderID+`","action":"cancel"}]}`))
	if resp.StatusCode != 200 || strings.Count(string(b), `"cancelled"`) != 2 {
		t.Errorf("JSON settle via b: %d %s", resp.StatusCode, b)
	}
}

// TestClusterSingleRequests: a single order, a payment and a read for a
// partition owned elsewhere are forwarded and answered as the owner
// answers.
func TestClusterSingleRequests(t *testing.T) {
	c := newTestCluster(t)
	resp, b := c.a.post(t, "/v1/orders", "application/json", []byte(orderJSONOf("u1", "sb")), "Idempotency-Key", "k1")
	if resp.StatusCode != 201 || resp.Header.Get(HeaderForwardedTo) != "b" {
		t.Fatalf("place via a: %d %q %s", resp.StatusCode, resp.Header.Get(HeaderForwardedTo), b)
	}
	var o struct {
		OrderID string `json:"order_id"`
		Total   int64  `json:"total"`
	}
	if err := json.Unmarshal(b, &o); err != nil || partitionOf(t, o.OrderID) != 5 {
		t.Fatalf("order %s: %v", b, err)
	}
	// The same key again returns the same order: b holds the key.
	resp, b = c.a.post(t, "/v1/orders", "application/json", []byte(orderJSONOf("u1", "sb")), "Idempotency-Key", "k1")
	if resp.StatusCode != 201 || !strings.Contains(string(b), o.OrderID) {
		t.Errorf("replay via a: %d %s, want order %s", resp.StatusCode, b, o.OrderID)
	}
	resp, b = c.a.post(t, "/v1/orders/"+o.OrderID+"/pay", "application/json", []byte(`{"amount":`+strconv.FormatInt(o.Total, 10)+`}`))
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"paid"`) {
		t.Errorf("pay via a: %d %s", resp.StatusCode, b)
	}
	// The parcel read answers from a as b answers it.
	resp, b = c.a.get(t, "/v1/orders/"+o.OrderID+"/parcel")
	direct, db := c.b.get(t, "/v1/orders/"+o.OrderID+"/parcel")
	if resp.StatusCode != 200 || string(b) != string(db) || resp.Header.Get(HeaderForwardedTo) != "b" {
		t.Errorf("parcel via a: %d %s; from b: %d %s", resp.StatusCode, b, direct.StatusCode, db)
	}
	// So does a carrier's scan (with the carrier's token, forwarded
	// unchanged).
	scan := func(n *testNode) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodPost, n.http.URL+"/v1/parcels/P"+o.OrderID+"/scans", strings.NewReader(`{"status":"picked_up","location":"Hangzhou"}`))
		req.Header.Set("Authorization", "Bearer c")
		return do(t, req)
	}
	resp, b = scan(c.a)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"picked_up"`) || resp.Header.Get(HeaderForwardedTo) != "b" {
		t.Errorf("scan via a: %d %s", resp.StatusCode, b)
	}
	// The same scan again, at b itself, changes nothing: the same answer.
	direct, db = scan(c.b)
	if direct.StatusCode != 200 || string(db) != string(b) {
		t.Errorf("scan at b: %d %s, want %s", direct.StatusCode, db, b)
	}
	// An error of the owner is relayed as it is.
	resp, b = c.a.post(t, "/v1/orders/"+o.OrderID+"/cancel", "application/json", nil)
	if resp.StatusCode != 409 || !strings.Contains(string(b), "invalid_state") {
		t.Errorf("cancel of a paid order via a: %d %s", resp.StatusCode, b)
	}
	if n := c.b.orderCount(t); n != 1 {
		t.Errorf("node b holds %d orders, want 1", n)
	}
	if n := c.a.orderCount(t); n != 0 {
		t.Errorf("node a holds %d orders, want 0", n)
	}
	// A SKU's stock reads and changes go to its owner.
	resp, b = c.a.get(t, "/v1/skus/sb")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"sold":1`) || resp.Header.Get(HeaderForwardedTo) != "b" {
		t.Errorf("GET sku of b via a: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest(http.MethodPost, c.a.http.URL+"/v1/skus/sb/stock", strings.NewReader(`{"delta":5}`))
	req.Header.Set("Authorization", "Bearer a")
	if resp, b = do(t, req); resp.StatusCode != 200 || !strings.Contains(string(b), `"stock_available":1004`) {
		t.Errorf("stock of b via a: %d %s", resp.StatusCode, b)
	}
	// A forwarded request is never forwarded again.
	resp, b = c.b.get(t, "/v1/orders/"+strconv.FormatUint(uint64(engine.OrderIDOf(2, 1)), 36), HeaderForwardedBy, "a")
	if resp.StatusCode != 503 || resp.Header.Get(HeaderNotOwner) != "2" || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("forwarded GET of a's order to b: %d %v %s", resp.StatusCode, resp.Header, b)
	}
}

// TestClusterPeerDown: with b unreachable, a batch through a answers 503
// unavailable for b's entries only, and a single order of b's 503 with
// Retry-After.
func TestClusterPeerDown(t *testing.T) {
	c := newTestCluster(t)
	c.b.http.Close()
	body := `{"orders":[` + orderJSONOf("u1", "sb") + "," + orderJSONOf("u2", "sa") + `]}`
	resp, b := c.a.post(t, "/v1/orders:batch", "application/json", []byte(body))
	var ans batchAnswer
	if err := json.Unmarshal(b, &ans); err != nil || resp.StatusCode != 200 || len(ans.Results) != 2 {
		t.Fatalf("batch: %d %s %v", resp.StatusCode, b, err)
	}
	if e := ans.Results[0].Error; e == nil || e.Code != "unavailable" {
		t.Errorf("b's order: %+v, want unavailable", ans.Results[0])
	}
	if ans.Results[1].Order == nil {
		t.Errorf("a's order: %+v, want placed", ans.Results[1].Error)
	}
	resp, b = c.a.post(t, "/v1/orders", "application/json", []byte(orderJSONOf("u1", "sb")))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "unavailable") {
		t.Errorf("single order of b: %d %v %s", resp.StatusCode, resp.Header, b)
	}

	// A partition the view shows without an owner still goes to its last
	// owner known (which refuses it if it no longer serves it): here b,
	// which is down.
	c.a.members.setOwner(5, "")
	c.a.srv.cl.rebuild(c.a.srv.cl.table.Load())
	resp, b = c.a.post(t, "/v1/orders", "application/json", []byte(orderJSONOf("u1", "sb")))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "node b did not answer") {
		t.Errorf("order of a partition without an owner in the view: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	// With no owner ever known, it is unavailable at once.
	c.a.srv.cl.table.Store(nil)
	resp, b = c.a.post(t, "/v1/orders", "application/json", []byte(orderJSONOf("u1", "sb")))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "no owner") {
		t.Errorf("order of an ownerless partition: %d %v %s", resp.StatusCode, resp.Header, b)
	}
}

// TestClusterNotOwnerRetry: partition 5 moves from b to a while a's
// cached view still names b. b refuses a's forward (not owner, nothing
// applied); a refreshes its view, which now gives the partition to a, and
// places the order itself, once. When the refreshed view still names b,
// the order is answered unavailable, never placed twice.
func TestClusterNotOwnerRetry(t *testing.T) {
	for _, moved := range []bool{true, false} {
		t.Run("moved="+strconv.FormatBool(moved), func(t *testing.T) {
			c := newTestCluster(t)
			c.a.addSKU(t, 5, "sb") // a takes partition 5 over: its state replayed
			// a builds its table while b owns partition 5.
			resp, b := c.a.post(t, "/v1/orders:batch", "application/json", []byte(`{"orders":[`+orderJSONOf("u0", "sb")+`]}`))
			if resp.StatusCode != 200 || !strings.Contains(string(b), `"order"`) {
				t.Fatalf("first batch: %d %s", resp.StatusCode, b)
			}
			c.b.router.setOwned(5, false)
			if moved {
				// The view that tells a of the move comes with the
				// partition served: the lease manager's tick does both.
				c.a.members.setOwner(5, "a")
				c.a.members.onView = func() { c.a.router.setOwned(5, true) }
			}
			calls := c.a.members.calls
			for _, path := range []string{"/v1/orders:batch", "/v1/orders"} {
				body := `{"orders":[` + orderJSONOf("u1", "sb") + "," + orderJSONOf("u2", "sa") + `]}`
				if path == "/v1/orders" {
					body = orderJSONOf("u3", "sb")
				}
				// Make a's table stale again for the second request.
				c.a.router.setOwned(5, false)
				c.a.srv.cl.table.Load().owners[5] = c.a.srv.cl.table.Load().owners[4]
				resp, b = c.a.post(t, path, "application/json", []byte(body))
				if path == "/v1/orders" {
					if moved && resp.StatusCode != 201 || !moved && (resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1") {
						t.Errorf("%s: %d %s", path, resp.StatusCode, b)
					}
					continue
				}
				var ans batchAnswer
				if err := json.Unmarshal(b, &ans); err != nil || resp.StatusCode != 200 || len(ans.Results) != 2 {
					t.Fatalf("batch: %d %s %v", resp.StatusCode, b, err)
				}
				if ans.Results[1].Order == nil {
					t.Errorf("a's order: %+v, want placed", ans.Results[1].Error)
				}
				if r := ans.Results[0]; moved && r.Order == nil || !moved && (r.Error == nil || r.Error.Code != "unavailable") {
					t.Errorf("moved order: order %+v error %+v", r.Order, r.Error)
				}
			}
			if c.a.members.calls <= calls {
				t.Errorf("a did not refresh its view")
			}
			wantA, wantB := uint64(1), uint64(1) // u2 placed on a; u0 on b
			if moved {
				wantA += 2 // u1 and u3 placed on a after the refresh
			}
			if n := c.a.orderCount(t); n != wantA {
				t.Errorf("node a holds %d orders, want %d", n, wantA)
			}
			if n := c.b.orderCount(t); n != wantB {
				t.Errorf("node b holds %d orders, want %d", n, wantB)
			}
		})
	}
}

// TestClusterView: GET /v1/cluster on a single node names it owning every
// partition at its address; in a cluster it is the membership's view.
func TestClusterView(t *testing.T) {
	type view struct {
		Node  string `json:"node"`
		Nodes []struct {
			Node  string `json:"node"`
			Addr  string `json:"addr"`
			Alive bool   `json:"alive"`
		} `json:"nodes"`
		Partitions []struct {
			Partition     int    `json:"partition"`
			Owner         string `json:"owner"`
			LeaseRevision uint64 `json:"lease_revision"`
		} `json:"partitions"`
		Shift int `json:"order_id_partition_shift"`
	}
	decode := func(t *testing.T, b []byte) view {
		t.Helper()
		var v view
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return v
	}
	for _, tc := range []struct {
		name, node, addr, wantAddr string
	}{
		{"defaults", "", "", ""},
		{"named", "hz-1", "http://10.0.0.1:8080", "http://10.0.0.1:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, Config{Node: tc.node, Address: tc.addr}, "x", nil, nil)
			// Public: no token needed.
			resp, err := http.Get(n.http.URL + "/v1/cluster")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			v := decode(t, b)
			wantNode, wantAddr := tc.node, tc.wantAddr
			if wantNode == "" {
				wantNode = "fest-1"
			}
			if wantAddr == "" {
				wantAddr = n.http.URL
			}
			if v.Node != wantNode || len(v.Nodes) != 1 || v.Nodes[0].Node != wantNode || v.Nodes[0].Addr != wantAddr || !v.Nodes[0].Alive {
				t.Errorf("node %q nodes %+v, want %s at %s alive", v.Node, v.Nodes, wantNode, wantAddr)
			}
			if len(v.Partitions) != testPartitions {
				t.Fatalf("%d partitions, want %d", len(v.Partitions), testPartitions)
			}
			for i, p := range v.Partitions {
				if p.Partition != i || p.Owner != wantNode || p.LeaseRevision != 0 {
					t.Errorf("partition %d: %+v, want owner %s revision 0", i, p, wantNode)
				}
			}
			if v.Shift != 52 || engine.OrderIDOf(3, 9).Partition() != int(uint64(engine.OrderIDOf(3, 9))>>v.Shift) {
				t.Errorf("order_id_partition_shift %d", v.Shift)
			}
		})
	}
	t.Run("cluster", func(t *testing.T) {
		c := newTestCluster(t)
		_, b := c.b.get(t, "/v1/cluster")
		v := decode(t, b)
		if v.Node != "b" || len(v.Nodes) != 2 || v.Nodes[0].Addr != c.a.http.URL || len(v.Partitions) != testPartitions ||
			v.Partitions[5].Owner != "b" || v.Partitions[5].LeaseRevision != 6 || v.Partitions[2].Owner != "a" {
			t.Errorf("view %+v", v)
		}
	})
}

// forwards is how many requests n forwarded to peer.
func (n *testNode) forwards(peer string) float64 {
	families, err := n.srv.metrics.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range families {
		if mf.GetName() != "fest_forward_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == peer {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestClientRoutesToOwners: with Route the Go client learns where each
// SKU lives from its first orders (sent to Addr, which forwards them) and
// then sends each batch's parts straight to their owners; payments go to
// the owner of the order's partition at once. When the map goes stale
// (partition 5 moved to a), the node it sent to forwards and says so, and
// the client reads the map again.
func TestClientRoutesToOwners(t *testing.T) {
	c := newTestCluster(t)
	cl, err := client.New(client.Config{Addr: c.a.http.URL, Token: "s", Route: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	place := func(skus ...string) []client.BatchResult {
		t.Helper()
		var b client.OrderBatch
		for i, sku := range skus {
			b.Add(wire.PlaceOrder{BuyerID: "u" + strconv.Itoa(i)})
			b.AddItem(sku, 1)
		}
		if err := cl.PlaceBatch(ctx, &b); err != nil {
			t.Fatal(err)
		}
		for i, r := range b.Results {
			if r.Err != nil {
				t.Fatalf("order %d (%s): %v", i, skus[i], r.Err)
			}
		}
		return b.Results
	}
	place("sa", "sb") // b's through a: learned
	fwd, hitsA, hitsB := c.a.forwards("b"), c.a.hits.Load(), c.b.hits.Load()
	results := place("sb", "sa", "sb", "sa")
	for i, want := range []int{5, 1, 5, 1} {
		if p := partitionOf(t, results[i].OrderID); p != want {
			t.Errorf("order %d in partition %d, want %d", i, p, want)
		}
	}
	if got := c.a.forwards("b"); got != fwd {
		t.Errorf("a forwarded %v batches to b, want none: the client should send b's part to b", got-fwd)
	}
	if a, b := c.a.hits.Load()-hitsA, c.b.hits.Load()-hitsB; a != 1 || b != 1 {
		t.Errorf("client requests: a %d, b %d; want one part each", a, b)
	}
	// Batched single calls go straight to the owner too.
	o, err := cl.PlaceOrder(ctx, client.OrderRequest{BuyerID: "x", Items: []client.Item{{SKUID: "sb", Quantity: 1}}})
	if err != nil || partitionOf(t, o.ID) != 5 {
		t.Fatalf("PlaceOrder: %+v %v", o, err)
	}
	var s client.SettleBatch
	s.Pay(results[0].OrderID, results[0].Total)
	s.Cancel(results[1].OrderID)
	if err := cl.SettleBatch(ctx, &s); err != nil || s.Results[0].Err != nil || s.Results[1].Err != nil || s.Results[0].Status != "paid" || s.Results[1].Status != "cancelled" {
		t.Fatalf("settle: %+v %v", s.Results, err)
	}
	if got, err := cl.SettlePay(ctx, o.ID, o.Total); err != nil || got.Status != "paid" {
		t.Fatalf("SettlePay: %+v %v", got, err)
	}
	if got, err := cl.GetOrder(ctx, o.ID); err != nil || got.Status != "paid" {
		t.Fatalf("GetOrder: %+v %v", got, err)
	}
	if got := c.a.forwards("b"); got != fwd {
		t.Errorf("a forwarded %v requests to b, want none", got-fwd)
	}

	// Partition 5 moves to a; the client's map still says b.
	c.a.addSKU(t, 5, "sb")
	c.b.router.setOwned(5, false)
	c.a.router.setOwned(5, true)
	c.a.members.setOwner(5, "a")
	c.b.members.setOwner(5, "a")
	c.b.srv.cl.rebuild(c.b.srv.cl.table.Load())
	c.a.srv.cl.rebuild(c.a.srv.cl.table.Load()) // GET /v1/cluster answers from it
	place("sb")                                 // sent to b, forwarded to a: stale
	deadline := time.Now().Add(10 * time.Second)
	for {
		fwdB := c.b.forwards("a")
		place("sb")
		if c.b.forwards("a") == fwdB {
			break // sent to a directly
		}
		if time.Now().After(deadline) {
			t.Fatal("the client never read the new map")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterPeerAnswers: a peer's error for a whole forwarded part is
// each of its entries' answer, and an answer outside the protocol (a 200
// that does not split into one protobuf result per order) is unavailable.
func TestClusterPeerAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		status       int
		code         string
	}{
		{"overloaded", `{"error":{"code":"overloaded","message":"slow down"}}`, 429, "overloaded"},
		{"garbage", `<html>proxy</html>`, 502, "unavailable"},
		{"too few results", string(wire.AppendResponse(nil, []wire.Result{{Order: wire.Order{OrderID: "1", Status: "pending_payment"}}})), 200, "unavailable"},
		{"not protobuf", `{"results":[{"order":{}},{"order":{}}]}`, 200, "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t)
			fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.answer)
			}))
			defer fake.Close()
			c.a.members.mu.Lock()
			c.a.members.view.Nodes[1].Addr = fake.URL
			c.a.members.mu.Unlock()
			c.a.srv.cl.rebuild(c.a.srv.cl.table.Load())
			body := `{"orders":[` + orderJSONOf("u1", "sb") + "," + orderJSONOf("u2", "sa") + "," + orderJSONOf("u3", "sb") + `]}`
			resp, b := c.a.post(t, "/v1/orders:batch", "application/json", []byte(body))
			var ans batchAnswer
			if err := json.Unmarshal(b, &ans); err != nil || resp.StatusCode != 200 || len(ans.Results) != 3 {
				t.Fatalf("batch: %d %s %v", resp.StatusCode, b, err)
			}
			for _, i := range []int{0, 2} {
				if e := ans.Results[i].Error; e == nil || e.Code != tc.code {
					t.Errorf("result %d: %+v, want %s", i, e, tc.code)
				}
			}
			if ans.Results[1].Order == nil {
				t.Errorf("a's own order: %+v", ans.Results[1].Error)
			}
		})
	}
}

// TestClusterBatchBriefAnswer: answer=brief gives each placed order's
// order_id, status, total and pay_by and nothing else, in JSON and in
// protobuf, for the orders applied here and those forwarded to their
// owner (which get the option too); errors are as in the full answer, and
// an unknown answer is refused before anything is applied.
func TestClusterBatchBriefAnswer(t *testing.T) {
	c := newTestCluster(t)
	body := `{"orders":[` + orderJSONOf("u1", "sa") + "," + orderJSONOf("u2", "sb") + "," + orderJSONOf("u3", "sgone") + `]}`
	resp, b := c.a.post(t, "/v1/orders:batch?answer=brief", "application/json", []byte(body))
	if resp.StatusCode != 200 {
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
	var ans struct {
		Results []struct {
			Order map[string]any `json:"order"`
			Error *struct {
				Code  string `json:"code"`
				Field string `json:"field"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || len(ans.Results) != 3 {
		t.Fatalf("answer %s: %v", b, err)
	}
	for i := range 2 {
		o := ans.Results[i].Order
		if len(o) != 4 || o["status"] != "pending_payment" || o["total"] == nil || o["pay_by"] == nil || o["order_id"] == nil {
			t.Errorf("result %d: %v, want exactly order_id, status, total and pay_by", i, o)
		}
	}
	if e := ans.Results[2].Error; e == nil || e.Code != "not_found" || e.Field != "orders[2].items[0].sku_id" {
		t.Errorf("result 2: %+v, want not_found on orders[2].items[0].sku_id", e)
	}
	if n := c.a.orderCount(t) + c.b.orderCount(t); n != 2 {
		t.Errorf("%d orders held, want 2", n)
	}

	orders := []wire.PlaceOrder{
		{BuyerID: "u4", Items: []wire.Item{{SKUID: "sb", Quantity: 2}}},
		{BuyerID: "u5", Items: []wire.Item{{SKUID: "sa", Quantity: 1}}},
	}
	resp, b = c.a.post(t, "/v1/orders:batch?answer=brief", wire.ContentType, wire.AppendRequest(nil, orders))
	if resp.StatusCode != 200 {
		t.Fatalf("protobuf batch: %d %s", resp.StatusCode, b)
	}
	results, err := wire.DecodeResponse(b, nil)
	if err != nil || len(results) != 2 {
		t.Fatalf("decode: %d results, %v", len(results), err)
	}
	for i, r := range results {
		o := r.Order
		if r.Error != nil || o.OrderID == "" || o.Status != "pending_payment" || o.Total == 0 || o.PayByUnixNanos == 0 ||
			o.BuyerID != "" || o.MerchantID != "" || len(o.Items) != 0 || o.Currency != "" || o.Channel != "" || o.CreatedAtUnixNanos != 0 {
			t.Errorf("result %d: %+v, want exactly order_id, status, total and pay_by", i, r)
		}
	}

	for _, q := range []string{"answer=short", "answer="} {
		before := c.a.orderCount(t) + c.b.orderCount(t)
		resp, b = c.a.post(t, "/v1/orders:batch?"+q, "application/json", []byte(body))
		if q == "answer=" {
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d %s, want the full answer", q, resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != 422 || !strings.Contains(string(b), `"field":"answer"`) {
			t.Errorf("%s: %d %s, want 422 on field answer", q, resp.StatusCode, b)
		}
		if n := c.a.orderCount(t) + c.b.orderCount(t); n != before {
			t.Errorf("%s: %d orders held, want %d: a refused batch applied", q, n, before)
		}
	}
}

// TestBatchAnswerHasContentLength: a batch answer, larger than net/http's
// buffer, is sent with its length rather than chunked.
func TestBatchAnswerHasContentLength(t *testing.T) {
	c := newTestCluster(t)
	var orders []string
	for i := range 200 {
		orders = append(orders, orderJSONOf("u"+strconv.Itoa(i), "sa"))
	}
	resp, b := c.a.post(t, "/v1/orders:batch", "application/json", []byte(`{"orders":[`+strings.Join(orders, ",")+`]}`))
	if resp.StatusCode != 200 || len(b) < 8<<10 {
		t.Fatalf("batch: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp.ContentLength != int64(len(b)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("Content-Length %d, Transfer-Encoding %v for a %d-byte answer", resp.ContentLength, resp.TransferEncoding, len(b))
	}
}
