package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/engine"
)

// The issue 13 acceptance, as far as it is built (docs/cluster.md): three
// real fest serve --journal nats processes, each with an embedded NATS
// server, clustered on loopback; one killed with SIGKILL.

const (
	clusterTestPartitions = 8
	clusterTestMerchants  = 16
	clusterTestStock      = 100000
	// clusterTestLeaseTTL is the nodes' --lease-ttl: a dead node's
	// partitions are taken over about 1.3 TTL after its last renewal.
	clusterTestLeaseTTL = "3s"
	// clusterTestServedAgainMax is acceptance 1's budget from the kill to
	// every partition served again. It is the one timed assertion here,
	// since it is what the issue asks to show; it is generous against this
	// machine's load only by what the budget itself allows.
	clusterTestServedAgainMax = 10 * time.Second
	clusterTestWaitMax        = time.Minute
)

// TestCluster runs the three-node tests one after another, as subtests of
// one parallel test: each starts a cluster of its own (several at once
// would starve their leases on two cores), and as a whole they run beside
// the package's other parallel tests instead of before them, which keeps
// the suite within its time budget.
func TestCluster(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"KillOneNode", testClusterKillOneNode},
		{"SIGSTOPPastLease", testClusterSIGSTOPPastLease},
		{"KillOneNATSServer", testClusterKillOneNATSServer},
		{"KillAllRestart", testClusterKillAllRestart},
		{"Load", testClusterLoad},
		{"LoadFestival", testClusterLoadFestival},
	} {
		t.Run(c.name, c.run)
	}
}

// freeLoopbackPorts returns n ports free on 127.0.0.1 now.
func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// launch starts f's process without waiting for it to be ready (a node of
// a cluster is ready only once a quorum of the NATS servers is up); ready
// waits.
func (f *fest) launch(urlCh chan<- string) {
	f.t.Helper()
	f.spawn(append([]string{"serve", "--data", f.Dir,
		"--admin-token", adminToken, "--storefront-token", storefrontToken, "--carrier-token", carrierToken}, f.args...), urlCh)
}

func (f *fest) ready() {
	f.t.Helper()
	deadline := time.Now().Add(clusterTestWaitMax)
	for {
		resp, err := http.Get(f.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("fest not ready in time:\n%s", f.out)
		}
		select {
		case <-f.done:
			f.t.Fatalf("fest exited during start:\n%s", f.out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startCluster starts n nodes with embedded NATS servers routed to each
// other and waits until every one is ready.
func startClusterNodes(t *testing.T, n int) []*fest {
	t.Helper()
	ports := freeLoopbackPorts(t, 3*n) // http, nats, routes
	var routes []string
	for i := range n {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[2*n+i]))
	}
	nodes := make([]*fest, n)
	// All stopped at once: stopped one after another, the last would hand
	// off its partitions without a NATS quorum and wait out its shutdown
	// timeout.
	t.Cleanup(func() { stopAll(nodes) })
	for i := range n {
		name := "node-" + strconv.Itoa(i+1)
		f := &fest{t: t, Dir: t.TempDir(), args: []string{"--journal", "nats", "--node", name,
			"--addr", "127.0.0.1:" + strconv.Itoa(ports[i]),
			"--nats-listen", "127.0.0.1:" + strconv.Itoa(ports[n+i]),
			"--nats-cluster-listen", "127.0.0.1:" + strconv.Itoa(ports[2*n+i]),
			"--nats-routes", strings.Join(routes, ","),
			"--partitions", strconv.Itoa(clusterTestPartitions),
			"--lease-ttl", clusterTestLeaseTTL}}
		urlCh := make(chan string, 1)
		f.launch(urlCh)
		select {
		case f.URL = <-urlCh:
		case <-f.done:
			t.Fatalf("%s exited before listening:\n%s", name, f.out)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not listen in time:\n%s", name, f.out)
		}
		nodes[i] = f
		clusterNATS[f] = "nats://127.0.0.1:" + strconv.Itoa(ports[n+i])
	}
	for _, f := range nodes {
		f.ready()
	}
	return nodes
}

// stopAll stops every node started (SIGTERM) together and waits for them.
func stopAll(nodes []*fest) {
	var wg sync.WaitGroup
	for _, f := range nodes {
		if f != nil {
			wg.Go(f.stop)
		}
	}
	wg.Wait()
}

// clusterNATS is each node's embedded NATS server's client URL.
var clusterNATS = map[*fest]string{}

// streamEnds returns every partition stream's last sequence as f's NATS
// server reports it, for a failure's message.
func (f *fest) streamEnds() string {
	nc, err := nats.Connect(clusterNATS[f])
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for p := range clusterTestPartitions {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := js.Stream(ctx, "FEST_P"+strconv.Itoa(p))
		if err == nil {
			fmt.Fprintf(&b, "FEST_P%d: last sequence %d\n", p, st.CachedInfo().State.LastSeq)
		} else {
			fmt.Fprintf(&b, "FEST_P%d: %v\n", p, err)
		}
		cancel()
	}
	return b.String()
}

// clusterView is GET /v1/cluster.
type clusterView struct {
	Node  string `json:"node"`
	Nodes []struct {
		Node  string `json:"node"`
		Addr  string `json:"addr"`
		Alive bool   `json:"alive"`
	} `json:"nodes"`
	Partitions []struct {
		Partition int    `json:"partition"`
		Owner     string `json:"owner"`
	} `json:"partitions"`
}

func (f *fest) clusterView() (clusterView, error) {
	var v clusterView
	r, err := f.call("GET", "/v1/cluster", adminToken, nil)
	if err != nil {
		return v, err
	}
	if r.Status != 200 {
		return v, fmt.Errorf("GET /v1/cluster: %d %s", r.Status, r.Body)
	}
	return v, json.Unmarshal(r.Body, &v)
}

// owned reports whether v has every partition owned by one of live.
func (v clusterView) owned(live map[string]bool) bool {
	if len(v.Partitions) != clusterTestPartitions {
		return false
	}
	for _, p := range v.Partitions {
		if !live[p.Owner] {
			return false
		}
	}
	return true
}

// putAnywhere sends a catalog write to each node in turn until one takes
// it: catalog writes are not forwarded yet (docs/cluster.md), so only the
// owner of the merchant's (or brand's) partition accepts them, and a
// reference to a record just written elsewhere is found once followed.
func putAnywhere(t *testing.T, nodes []*fest, path string, body any) {
	t.Helper()
	deadline := time.Now().Add(clusterTestWaitMax)
	for {
		for _, f := range nodes {
			r, err := f.call("PUT", path, adminToken, body)
			if err == nil && r.Status == 200 {
				return
			}
			// 503: not this partition's owner. 404 of the brand or
			// merchant: the node has not followed its partition's record
			// yet (it was written on another node a moment ago).
			if err == nil && r.Status != 503 && r.Status != 404 {
				t.Fatalf("PUT %s on %s: %d %s", path, f.URL, r.Status, r.Body)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT %s: no node took it", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type clusterOrder struct {
	id, sku  string
	quantity int
	total    int64
}

// TestCluster/KillOneNode: three nodes, orders through the Go client on
// every node, one node killed with SIGKILL; every partition is served
// again within the budget, and afterwards every acknowledged order is
// readable exactly once from each survivor, stock is conserved per SKU and
// each survivor's GMV is the sum of the paid orders.
func testClusterKillOneNode(t *testing.T) {
	start := time.Now()
	nodes := startClusterNodes(t, 3)
	t.Logf("three nodes ready in %v", time.Since(start).Round(time.Millisecond))

	// Every partition owned, and every node alive, as each node sees it.
	all := map[string]bool{"node-1": true, "node-2": true, "node-3": true}
	deadline := time.Now().Add(clusterTestWaitMax)
	for _, f := range nodes {
		for {
			v, err := f.clusterView()
			if err == nil && len(v.Nodes) == 3 && v.owned(all) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET /v1/cluster on %s: %+v %v", f.URL, v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The catalog, written through whichever node owns each partition.
	putAnywhere(t, nodes, "/v1/brands/b1", map[string]any{"name": "Brand One", "country": "CN", "first_festival": 2015, "emerging": false, "last_year_gmv": 0})
	var skus []string
	for m := range clusterTestMerchants {
		mid := "m" + strconv.Itoa(m)
		putAnywhere(t, nodes, "/v1/merchants/"+mid, map[string]any{"name": "Shop " + mid, "brand_id": "b1", "kind": "factory", "industry": "toys", "region": "CN-ZJ"})
		sku := "s" + strconv.Itoa(m)
		putAnywhere(t, nodes, "/v1/skus/"+sku, map[string]any{"merchant_id": mid, "brand_id": "b1", "title": "Item " + sku, "category": "toys", "price": 1000, "stock": clusterTestStock})
		skus = append(skus, sku)
	}

	// Every node routes by its own copy of the SKU directory, which
	// follows the partitions a moment behind their owners.
	for _, f := range nodes {
		for _, sku := range skus {
			for {
				r, err := f.call("GET", "/v1/skus/"+sku, adminToken, nil)
				if err == nil && r.Status == 200 {
					break
				}
				if time.Since(start) > clusterTestWaitMax {
					t.Fatalf("sku %s not known on %s: %v %s", sku, f.URL, err, r.Body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	ctx := context.Background()
	clients := make([]*client.Client, len(nodes))
	for i, f := range nodes {
		c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken, Route: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	var acked []clusterOrder
	partitionOf := map[string]int{} // sku → partition, learned from order ids
	place := func(c *client.Client, buyer, sku string, q int) (clusterOrder, error) {
		o, err := c.PlaceOrder(ctx, client.OrderRequest{BuyerID: buyer, Region: "CN-BJ", Items: []client.Item{{SKUID: sku, Quantity: q}}})
		if err != nil {
			return clusterOrder{}, err
		}
		id, err := engine.ParseOrderID(o.ID)
		if err != nil {
			t.Fatalf("order id %q: %v", o.ID, err)
		}
		partitionOf[sku] = id.Partition()
		co := clusterOrder{id: o.ID, sku: sku, quantity: q, total: o.Total}
		acked = append(acked, co)
		return co, nil
	}
	for i := range 300 {
		c := clients[i%len(clients)]
		co, err := place(c, "buyer", skus[i%len(skus)], 1+i%3)
		if err != nil {
			t.Fatalf("order %d through node %d: %v", i, i%len(clients)+1, err)
		}
		if i%2 == 0 {
			if _, err := c.Pay(ctx, co.id, co.total); err != nil {
				t.Fatalf("pay %s: %v", co.id, err)
			}
		}
	}
	byPartition := map[int]string{}
	for sku, p := range partitionOf {
		byPartition[p] = sku
	}
	t.Logf("%d orders placed on %d partitions in %v", len(acked), len(byPartition), time.Since(start).Round(time.Millisecond))

	// fest load through node 1, then SIGKILL node-3 in its orders phase,
	// then wait for every partition to take an order on a survivor.
	festLoad := startFestLoad(t, nodes[0], festLoadShort)
	killed := time.Now()
	nodes[2].kill()
	survivors := nodes[:2]
	live := map[string]bool{"node-1": true, "node-2": true}
	for p, sku := range byPartition {
		for {
			_, err := place(clients[p%2], "buyer", sku, 1)
			if err == nil {
				break
			}
			// 503 while the partition has no owner, or a transport error
			// while the client's map still names the dead node (it
			// refreshes the map on a failed part).
			var ce *client.Error
			if errors.As(err, &ce) && ce.Status != 503 {
				t.Fatalf("order on partition %d after the kill: %v", p, err)
			}
			if time.Since(killed) > clusterTestWaitMax {
				t.Fatalf("partition %d not served again: %v", p, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("partition %d served again %v after the kill", p, time.Since(killed).Round(time.Millisecond))
	}
	servedAgain := time.Since(killed)
	t.Logf("every partition with orders served again %v after the kill", servedAgain.Round(time.Millisecond))
	if servedAgain > clusterTestServedAgainMax {
		t.Errorf("partitions served again %v after the kill, budget %v", servedAgain, clusterTestServedAgainMax)
	}
	if testing.Verbose() || servedAgain > clusterTestServedAgainMax {
		for i, f := range survivors {
			t.Logf("node-%d's log after the kill:\n%s", i+1, f.logSince(killed))
		}
	}
	// The survivors' /metrics show the take-overs and their failover time
	// (docs/cluster.md, "What to watch").
	takeOvers := 0.0
	for i, f := range survivors {
		m := f.clusterMetrics()
		takeOvers += m["fest_cluster_takeovers_total"]
		t.Logf("node-%d: %v take-overs, the last one's failover %.3f s (after the lease: %.3f s), lease changes acquired %v lost %v",
			i+1, m["fest_cluster_takeovers_total"], m["fest_cluster_failover_seconds"], m["fest_cluster_takeover_seconds"],
			m[`fest_cluster_lease_changes_total{change="acquired"}`], m[`fest_cluster_lease_changes_total{change="lost"}`])
	}
	if takeOvers == 0 {
		t.Errorf("no survivor counts a take-over in fest_cluster_takeovers_total")
	}
	for _, f := range survivors {
		for {
			v, err := f.clusterView()
			if err == nil && v.owned(live) {
				break
			}
			if time.Since(killed) > clusterTestWaitMax {
				t.Fatalf("GET /v1/cluster on %s after the kill: %+v %v", f.URL, v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	festLoad.finish()

	// Audits on each survivor, through clients made now: a client's map
	// is refreshed by a failed order, but a read that fails (an order of
	// a partition the dead node owned) does not refresh it.
	for i, f := range survivors {
		c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken, Route: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	taken := map[string]int64{}
	for _, o := range acked {
		taken[o.sku] += int64(o.quantity)
	}
	for i, f := range survivors {
		c := clients[i]
		// Every acknowledged order once in the buyer's history (this
		// node's read models cover the whole cluster), and readable.
		// A node's list trails the owners' acknowledgements by its
		// engine's following (docs/cluster.md): read it until it holds
		// every acknowledged order.
		var seen map[string]int
		var paidGMV int64
		for {
			seen, paidGMV = map[string]int{}, 0
			cursor := ""
			for {
				page, next, err := c.BuyerOrders(ctx, "buyer", 100, cursor)
				if err != nil {
					t.Fatalf("node %d: buyer orders: %v\nits read models:\n%s\nthe streams:\n%s", i+1, err, f.projectionMetrics(), f.streamEnds())
				}
				for _, o := range page {
					seen[o.ID]++
					if o.Status == "paid" {
						paidGMV += o.Total
					}
				}
				if next == "" {
					break
				}
				cursor = next
			}
			var missing []string
			for _, o := range acked {
				if seen[o.id] == 0 {
					missing = append(missing, o.id)
				}
			}
			if len(missing) == 0 {
				break
			}
			if time.Since(killed) > clusterTestWaitMax {
				var where []string
				for _, id := range missing[:min(len(missing), 5)] {
					oid, _ := engine.ParseOrderID(id)
					where = append(where, fmt.Sprintf("%s (partition %d)", id, oid.Partition()))
				}
				t.Fatalf("node %d: %d acknowledged orders not in the buyer's list: %s\nits read models:\n%s\nits cluster series:\n%v\nthe streams:\n%s\nits log after the kill:\n%s",
					i+1, len(missing), strings.Join(where, ", "), f.projectionMetrics(), f.clusterMetrics(), f.streamEnds(), f.logSince(killed))
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, o := range acked {
			if seen[o.id] != 1 {
				t.Fatalf("node %d: acknowledged order %s listed %d times", i+1, o.id, seen[o.id])
			}
			// A client whose map still names the dead node for the
			// order's partition fails its first read there: it reads
			// again, as any client after a failover.
			for {
				_, err := c.GetOrder(ctx, o.id)
				if err == nil {
					break
				}
				var ce *client.Error
				if errors.As(err, &ce) && ce.Status != 503 || time.Since(killed) > clusterTestWaitMax {
					t.Fatalf("node %d: order %s: %v", i+1, o.id, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("node %d: order %s listed %d times", i+1, id, n)
			}
		}
		// Stock conserved per SKU: what the orders took (the acknowledged
		// ones at least) is reserved or sold.
		for _, sku := range skus {
			s := f.sku(sku)
			if s.Available+s.Reserved+s.Sold != clusterTestStock || s.Reserved+s.Sold < taken[sku] {
				t.Fatalf("node %d: sku %s: %d + %d + %d, acknowledged orders took %d", i+1, sku, s.Available, s.Reserved, s.Sold, taken[sku])
			}
		}
		// GMV: the sum of the paid orders, once the board has applied
		// what the order list showed.
		for {
			msg := gmvOfPaid(ctx, c, paidGMV)
			if msg == "" {
				break
			}
			if time.Since(killed) > clusterTestWaitMax {
				t.Fatalf("node %d: %s", i+1, msg)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// logSince returns f's log lines about leases, partitions and journals
// written after at, each with its time from at: where a failover spends
// its time.
func (f *fest) logSince(at time.Time) string {
	var b strings.Builder
	for _, l := range strings.Split(f.out.String(), "\n") {
		ts, rest, ok := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		if !ok {
			continue
		}
		when, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || when.Before(at) {
			continue
		}
		if strings.Contains(rest, "lease") || strings.Contains(rest, "partition") || strings.Contains(rest, "journal") || strings.Contains(rest, "follow") {
			fmt.Fprintf(&b, "+%v %s\n", when.Sub(at).Round(time.Millisecond), rest)
		}
	}
	return b.String()
}

// clusterMetrics returns f's fest_cluster_ series from /metrics, by their
// names with labels as written.
func (f *fest) clusterMetrics() map[string]float64 {
	got := map[string]float64{}
	r, err := f.call("GET", "/metrics", adminToken, nil)
	if err != nil {
		return got
	}
	for _, l := range strings.Split(string(r.Body), "\n") {
		name, value, ok := strings.Cut(l, " ")
		if !ok || !strings.HasPrefix(name, "fest_cluster_") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			got[name] = v
		}
	}
	return got
}

// projectionMetrics returns the lines of /metrics about the read models,
// for a failure's message.
func (f *fest) projectionMetrics() string {
	r, err := f.call("GET", "/metrics", adminToken, nil)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, l := range strings.Split(string(r.Body), "\n") {
		if strings.Contains(l, "projection") && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
