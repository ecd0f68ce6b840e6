package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/engine"
)

// The fault-injection half of issue 13's acceptance (docs/cluster.md):
// three real fest serve --journal nats nodes under a steady load of orders
// through the Go client with routing, and one fault each: a node stopped
// with SIGSTOP past its lease and resumed, one of three standalone fest nats
// servers killed, every node killed at once and restarted. Afterwards the
// same invariants as TestCluster/KillOneNode, on every node: every
// acknowledged order present exactly once, every acknowledged payment paid,
// stock conserved per SKU (reserved the pending orders' quantities, sold the
// paid ones'), GMV the sum of the paid orders; and in the streams, every
// record stored once at the sequence its writer gave it, under lease epochs
// that never go back. Times (a partition served again, the longest pause in
// acknowledgements) are logged, not asserted: the one timed budget is
// TestCluster/KillOneNode's.

const (
	// faultWorkersPerClient is the goroutines placing orders through each
	// node's client, each one order at a time: enough for a steady load
	// on every partition without crowding a machine shared with the
	// three nodes and their NATS servers.
	faultWorkersPerClient = 2
	// faultClientTimeout bounds each request of the load, so that a
	// worker whose request went to a stopped node gives up and goes on.
	faultClientTimeout = 3 * time.Second
	// faultErrorPause is a worker's pause after a refused or failed
	// request.
	faultErrorPause = 50 * time.Millisecond
	// faultAuditWaitMax bounds waiting for a node's reads to catch up with
	// the acknowledgements (its followers trail the owners).
	faultAuditWaitMax = 30 * time.Second
	// faultRecoveryWaitMax bounds the wait, after a node's SIGSTOP or a
	// NATS server's kill, for every partition to take orders again. It is
	// a liveness bound, not the speed the tests measure (they log that):
	// three times acceptance 1's 10 s budget, so that a cluster that does
	// recover is never failed for this machine's load, and one stuck for
	// a minute (as behind a stopped server's stale routes) fails within
	// the test's own time.
	faultRecoveryWaitMax = 30 * time.Second
	// faultFenceSettle is how long a resumed node is given to find a
	// write of its own fenced and exit: the journal's resends of a record
	// (docs/cluster.md, "The journal") end within it.
	faultFenceSettle = 10 * time.Second
	// faultLogTailLines is how much of each node's output a failed test
	// logs.
	faultLogTailLines = 40
	// faultBuyerPageMax is the largest page of a buyer's orders (API.md).
	faultBuyerPageMax = 1000
)

// faultAck is one acknowledgement the load got: when, and for which
// partition.
type faultAck struct {
	at        time.Time
	partition int
}

// faultLoad places orders on every partition through every node's client
// until stopped, and remembers what was acknowledged. An order or payment
// whose request failed may or may not have been applied; only what was
// acknowledged is owed.
type faultLoad struct {
	t       *testing.T
	clients []*client.Client
	skus    []string
	buyers  []string
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// payMu is held for reading by a payment in flight and for writing by
	// pausePayments: while fest load runs beside this load, the cluster's
	// GMV must move by fest load's payments only, for its own audit.
	payMu     sync.RWMutex
	payPaused bool // REQUIRES: payMu

	mu         sync.Mutex
	acked      map[string]clusterOrder // by order id
	paid       map[string]bool         // acknowledged payments, by order id
	acks       []faultAck              // bounded by the test's length: a few thousand
	failures   map[string]int          // refused or failed requests by kind, for the log
	unexpected []string                // answers that are wrong whatever the fault
}

// startFaultLoad starts the load on clients (one per node, with routing).
func startFaultLoad(t *testing.T, clients []*client.Client, skus []string) *faultLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &faultLoad{t: t, clients: clients, skus: skus, cancel: cancel,
		acked: map[string]clusterOrder{}, paid: map[string]bool{}, failures: map[string]int{}}
	for w := range faultWorkersPerClient * len(clients) {
		buyer := "fault-buyer-" + strconv.Itoa(w)
		l.buyers = append(l.buyers, buyer)
		l.wg.Add(1)
		go l.work(ctx, clients[w%len(clients)], w, buyer)
	}
	return l
}

func (l *faultLoad) work(ctx context.Context, c *client.Client, w int, buyer string) {
	defer l.wg.Done()
	for i := 0; ctx.Err() == nil; i++ {
		sku := l.skus[(w*5+i)%len(l.skus)]
		q := 1 + i%3
		o, err := c.PlaceOrder(ctx, client.OrderRequest{BuyerID: buyer, Region: "CN-BJ", Items: []client.Item{{SKUID: sku, Quantity: q}}})
		if err != nil {
			l.failed(ctx, "order", err)
			continue
		}
		id, err := engine.ParseOrderID(o.ID)
		if err != nil {
			l.mu.Lock()
			l.unexpected = append(l.unexpected, fmt.Sprintf("order id %q: %v", o.ID, err))
			l.mu.Unlock()
			continue
		}
		l.mu.Lock()
		if _, ok := l.acked[o.ID]; ok {
			l.unexpected = append(l.unexpected, "order id "+o.ID+" acknowledged twice")
		}
		l.acked[o.ID] = clusterOrder{id: o.ID, sku: sku, quantity: q, total: o.Total}
		l.acks = append(l.acks, faultAck{at: time.Now(), partition: id.Partition()})
		l.mu.Unlock()
		if i%2 != 0 {
			continue
		}
		l.pay(ctx, c, o, id.Partition())
	}
}

// pay pays o unless payments are paused.
func (l *faultLoad) pay(ctx context.Context, c *client.Client, o client.Order, partition int) {
	l.payMu.RLock()
	defer l.payMu.RUnlock()
	if l.payPaused {
		return
	}
	if _, err := c.Pay(ctx, o.ID, o.Total); err != nil {
		l.failed(ctx, "payment", err)
		return
	}
	l.mu.Lock()
	l.paid[o.ID] = true
	l.acks = append(l.acks, faultAck{at: time.Now(), partition: partition})
	l.mu.Unlock()
}

// pausePayments stops the load's payments (and waits for those in flight)
// or lets them go on again; the orders go on either way.
func (l *faultLoad) pausePayments(paused bool) {
	l.payMu.Lock()
	l.payPaused = paused
	l.payMu.Unlock()
}

// failed counts a failed request and pauses. A fault may cost a request
// 503 unavailable (its partition failing over), 429 or 504 (a node
// overloaded or slow behind one stopped), or a transport error (the node
// stopped or dead); any other answer is wrong whatever the fault.
func (l *faultLoad) failed(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	kind := what + " transport"
	var ce *client.Error
	if errors.As(err, &ce) {
		kind = what + " " + strconv.Itoa(ce.Status) + " " + ce.Code
	}
	l.mu.Lock()
	l.failures[kind]++
	if ce != nil && ce.Status != 503 && ce.Status != 429 && ce.Status != 504 {
		l.unexpected = append(l.unexpected, fmt.Sprintf("%s: %v", what, err))
	}
	l.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(faultErrorPause):
	}
}

// stop ends the load and waits for its workers; it fails the test on any
// wrong answer the load got.
func (l *faultLoad) stop() {
	l.t.Helper()
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	kinds := make([]string, 0, len(l.failures))
	for k, n := range l.failures {
		kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(kinds)
	l.t.Logf("load: %d orders and %d payments acknowledged; failed requests: %s", len(l.acked), len(l.paid), strings.Join(kinds, ", "))
	for i, u := range l.unexpected {
		if i == 10 {
			l.t.Errorf("... and %d more wrong answers", len(l.unexpected)-10)
			break
		}
		l.t.Errorf("load got a wrong answer: %s", u)
	}
}

// ackCount is the acknowledgements so far.
func (l *faultLoad) ackCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// waitAcks waits until n more acknowledgements than now have come, failing
// the test after waitMax.
func (l *faultLoad) waitAcks(n int, waitMax time.Duration, what string) {
	l.t.Helper()
	want := l.ackCount() + n
	deadline := time.Now().Add(waitMax)
	for l.ackCount() < want {
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: %d acknowledgements in %v, want %d", what, l.ackCount()-want+n, waitMax, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// servedAgain logs, for a fault at from, the first acknowledgement after it
// of every partition, and the longest pause between acknowledgements from
// then on; it returns the partitions with none (those not served again).
func (l *faultLoad) servedAgain(from time.Time, what string) []int {
	l.t.Helper()
	l.mu.Lock()
	acks := append([]faultAck(nil), l.acks...)
	l.mu.Unlock()
	first := map[int]time.Duration{}
	last := from
	var pause time.Duration
	for _, a := range acks {
		if a.at.Before(from) {
			continue
		}
		if _, ok := first[a.partition]; !ok {
			first[a.partition] = a.at.Sub(from)
		}
		if d := a.at.Sub(last); d > pause {
			pause = d
		}
		last = a.at
	}
	var parts []string
	var missing []int
	var slowest time.Duration
	for p := range clusterTestPartitions {
		d, ok := first[p]
		if !ok {
			missing = append(missing, p)
			parts = append(parts, fmt.Sprintf("p%d never", p))
			continue
		}
		slowest = max(slowest, d)
		parts = append(parts, fmt.Sprintf("p%d %.1fs", p, d.Seconds()))
	}
	l.t.Logf("%s: every partition served again after %.1f s (first acknowledgement after it: %s); longest pause in acknowledgements %.1f s",
		what, slowest.Seconds(), strings.Join(parts, ", "), pause.Seconds())
	return missing
}

// waitServedAgain waits until every partition has an acknowledgement after
// from, failing the test waitMax after from, and logs the times.
func (l *faultLoad) waitServedAgain(from time.Time, waitMax time.Duration, what string) {
	l.t.Helper()
	deadline := from.Add(waitMax)
	for {
		l.mu.Lock()
		seen := map[int]bool{}
		for i := len(l.acks) - 1; i >= 0 && !l.acks[i].at.Before(from); i-- {
			seen[l.acks[i].partition] = true
		}
		l.mu.Unlock()
		if len(seen) == clusterTestPartitions {
			break
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: partitions %v took no order in %v", what, l.servedAgain(from, what), waitMax)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.servedAgain(from, what)
}

// faultClients makes one routing client per node for the load.
func faultClients(t *testing.T, nodes []*fest) []*client.Client {
	t.Helper()
	var cs []*client.Client
	for _, f := range nodes {
		c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken, Route: true, Timeout: faultClientTimeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// faultView is GET /v1/cluster with the leases' revisions (API.md).
type faultView struct {
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
}

// faultClusterView reads GET /v1/cluster on f.
func faultClusterView(f *fest) (faultView, error) {
	var v faultView
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
func (v faultView) owned(live map[string]bool) bool {
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

// waitOwned waits until f's GET /v1/cluster has every partition owned by
// one of live and lists every node of live alive, and returns that view.
func waitOwned(t *testing.T, f *fest, live map[string]bool, waitMax time.Duration, what string) faultView {
	t.Helper()
	deadline := time.Now().Add(waitMax)
	for {
		v, err := faultClusterView(f)
		if err == nil && v.owned(live) && v.alive(live) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /v1/cluster on %s: %+v %v\n%s", what, f.URL, v, err, f.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether v lists every node of live as alive.
func (v faultView) alive(live map[string]bool) bool {
	n := 0
	for _, node := range v.Nodes {
		if live[node.Node] && node.Alive {
			n++
		}
	}
	return n == len(live)
}

// ownedBy is the partitions v gives to node, with their lease revisions.
func (v faultView) ownedBy(node string) map[int]uint64 {
	out := map[int]uint64{}
	for _, p := range v.Partitions {
		if p.Owner == node {
			out[p.Partition] = p.LeaseRevision
		}
	}
	return out
}

// faultCatalog writes the catalog of TestCluster/KillOneNode (one brand,
// clusterTestMerchants merchants with a SKU each) through the owners and
// waits until every node knows every SKU; it returns the SKUs.
func faultCatalog(t *testing.T, nodes []*fest) []string {
	t.Helper()
	putAnywhere(t, nodes, "/v1/brands/b1", map[string]any{"name": "Brand One", "country": "CN", "first_festival": 2015, "emerging": false, "last_year_gmv": 0})
	var skus []string
	for m := range clusterTestMerchants {
		mid := "m" + strconv.Itoa(m)
		putAnywhere(t, nodes, "/v1/merchants/"+mid, map[string]any{"name": "Shop " + mid, "brand_id": "b1", "kind": "factory", "industry": "toys", "region": "CN-ZJ"})
		sku := "s" + strconv.Itoa(m)
		putAnywhere(t, nodes, "/v1/skus/"+sku, map[string]any{"merchant_id": mid, "brand_id": "b1", "title": "Item " + sku, "category": "toys", "price": 1000, "stock": clusterTestStock})
		skus = append(skus, sku)
	}
	deadline := time.Now().Add(clusterTestWaitMax)
	for _, f := range nodes {
		for _, sku := range skus {
			for {
				r, err := f.call("GET", "/v1/skus/"+sku, adminToken, nil)
				if err == nil && r.Status == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("sku %s not known on %s: %v %s", sku, f.URL, err, r.Body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return skus
}

// auditCluster checks the invariants on every node of nodes, reading from
// that node only (its read models cover the whole cluster): every
// acknowledged order in its buyer's list exactly once and readable, every
// acknowledged payment paid, no order listed twice, per SKU the reserved
// stock the pending orders' quantities and the sold stock the paid ones'
// out of the stock it started with, and GMV the sum of the paid orders.
func auditCluster(t *testing.T, nodes []*fest, l *faultLoad) {
	t.Helper()
	for _, f := range nodes {
		auditNode(t, nodes, f, l)
	}
}

// skuEverywhere is a SKU's stock as every node reports it, for a failure's
// message.
func skuEverywhere(nodes []*fest, sku string) string {
	var b strings.Builder
	for i, f := range nodes {
		r, err := f.call("GET", "/v1/skus/"+sku, adminToken, nil)
		if err != nil {
			fmt.Fprintf(&b, "node-%d: %v\n", i+1, err)
			continue
		}
		fmt.Fprintf(&b, "node-%d: %d %s\n", i+1, r.Status, r.Body)
	}
	return b.String()
}

func auditNode(t *testing.T, nodes []*fest, f *fest, l *faultLoad) {
	t.Helper()
	ctx := context.Background()
	c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	deadline := start.Add(faultAuditWaitMax)
	// Each round reads the lists, the stock and GMV again: the node's
	// followers trail the owners, and a request the load gave up on (its
	// timeout, or the load's end) may still be applied after the lists
	// were read.
	var seen map[string]*faultListed
	for {
		var problem string
		seen, problem = auditRound(t, ctx, c, nodes, f, l)
		if problem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %v: %s\nthe streams:\n%s", f.URL, faultAuditWaitMax, problem, f.streamEnds())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Each acknowledged order readable on its own too (forwarded to its
	// partition's owner): a sample, since the lists above hold them all.
	n := 0
	for id := range l.acked {
		if n++; n > 100 {
			break
		}
		if _, err := c.GetOrder(ctx, id); err != nil {
			t.Fatalf("%s: order %s: %v", f.URL, id, err)
		}
	}
	t.Logf("%s: audit of %d orders (%d acknowledged) passed in %v", f.URL, len(seen), len(l.acked), time.Since(start).Round(time.Millisecond))
}

// faultListed is an order as a buyer's list shows it, and how often.
type faultListed struct {
	order client.Order
	times int
}

// auditRound reads f's lists, stock and GMV once and returns what does not
// hold yet ("" when everything does); what can never come right (an order
// listed twice, or other than the load placed it) fails the test at once.
func auditRound(t *testing.T, ctx context.Context, c *client.Client, nodes []*fest, f *fest, l *faultLoad) (map[string]*faultListed, string) {
	t.Helper()
	seen := map[string]*faultListed{}
	for _, buyer := range l.buyers {
		cursor := ""
		for {
			page, next, err := c.BuyerOrders(ctx, buyer, faultBuyerPageMax, cursor)
			if err != nil {
				t.Fatalf("%s: orders of %s: %v\nits read models:\n%s\nthe streams:\n%s", f.URL, buyer, err, f.projectionMetrics(), f.streamEnds())
			}
			for _, o := range page {
				if s := seen[o.ID]; s != nil {
					s.times++
				} else {
					seen[o.ID] = &faultListed{order: o, times: 1}
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	pending, sold := map[string]int64{}, map[string]int64{}
	var paidGMV int64
	for id, s := range seen {
		if s.times != 1 {
			t.Fatalf("%s: order %s listed %d times", f.URL, id, s.times)
		}
		o := s.order
		if len(o.Items) != 1 {
			t.Fatalf("%s: order %s has %d lines, the load places one", f.URL, id, len(o.Items))
		}
		if a, ok := l.acked[id]; ok && (o.Items[0].SKUID != a.sku || o.Items[0].Quantity != a.quantity || o.Total != a.total) {
			t.Fatalf("%s: order %s is %+v, acknowledged as %+v", f.URL, id, o, a)
		}
		switch o.Status {
		case "pending_payment":
			pending[o.Items[0].SKUID] += int64(o.Items[0].Quantity)
		case "paid":
			paidGMV += o.Total
			sold[o.Items[0].SKUID] += int64(o.Items[0].Quantity)
		default:
			t.Fatalf("%s: order %s is %s: nothing in this test cancels or expires an order", f.URL, id, o.Status)
		}
	}
	missing, unpaid := 0, 0
	byPartition := map[int]int{}
	var sample []string
	for id := range l.acked {
		s := seen[id]
		switch {
		case s == nil:
			missing++
			if oid, err := engine.ParseOrderID(id); err == nil {
				byPartition[oid.Partition()]++
			}
			if len(sample) < 3 {
				// Read on its own, the order is forwarded to its
				// partition's owner: found there, only this node's list
				// is behind; not found, it is lost.
				_, err := c.GetOrder(ctx, id)
				sample = append(sample, fmt.Sprintf("%s: GET %v", id, err))
				if len(sample) == 1 {
					// Its SKU on every node: a node whose engine
					// follows the partition but whose read models do
					// not shows its stock moved.
					sample = append(sample, "its sku "+l.acked[id].sku+" on every node:\n"+skuEverywhere(nodes, l.acked[id].sku))
				}
			}
		case l.paid[id] && s.order.Status != "paid":
			unpaid++
		}
	}
	if missing > 0 || unpaid > 0 {
		return seen, fmt.Sprintf("of %d acknowledged orders %d are not in their buyer's list (by partition %v; %s), and %d acknowledged payments not paid\nits read models:\n%s",
			len(l.acked), missing, byPartition, strings.Join(sample, "; "), unpaid, f.projectionMetrics())
	}
	// Stock conserved: reserved the pending orders' quantities, sold the
	// paid ones', out of what each SKU started with.
	for _, sku := range l.skus {
		r, err := f.call("GET", "/v1/skus/"+sku, adminToken, nil)
		var s skuView
		if err == nil && r.Status == 200 {
			err = json.Unmarshal(r.Body, &s)
		} else if err == nil {
			err = fmt.Errorf("GET /v1/skus/%s: %d %s", sku, r.Status, r.Body)
		}
		if err != nil || s.Available+s.Reserved+s.Sold != clusterTestStock || s.Reserved != pending[sku] || s.Sold != sold[sku] {
			return seen, fmt.Sprintf("sku %s: available %d + reserved %d + sold %d (%v); its listed orders: %d pending, %d paid, of %d\nthe sku on every node:\n%s",
				sku, s.Available, s.Reserved, s.Sold, err, pending[sku], sold[sku], clusterTestStock, skuEverywhere(nodes, sku))
		}
	}
	if msg := gmvOfPaid(ctx, c, paidGMV); msg != "" {
		return seen, msg
	}
	return seen, ""
}

// gmvOfPaid checks that the GMV of the test's brand b1 is paid, the sum of
// its paid orders, and, when fest load ran nothing beside the test's own
// load (its catalog has brands of its own), that the whole GMV is too.
// What fest load paid is its own audit's to check.
func gmvOfPaid(ctx context.Context, c *client.Client, paid int64) string {
	g, err := c.GMV(ctx)
	if err != nil {
		return fmt.Sprintf("GMV: %v", err)
	}
	b, err := c.GMVBreakdown(ctx, "brand", faultBuyerPageMax)
	if err != nil {
		return fmt.Sprintf("GMV by brand: %v", err)
	}
	var brand int64
	others := false
	for _, r := range b.Rows {
		if r.Key == "b1" {
			brand = r.GMV
		} else if r.GMV != 0 {
			others = true
		}
	}
	if brand != paid || !others && b.Rest.GMV == 0 && g.GMV.Amount != paid {
		return fmt.Sprintf("GMV %+v, of brand b1 %d, paid orders %d", g.GMV, brand, paid)
	}
	return ""
}

// festLoadRun is a fest load process run against one node of a cluster
// while a test injects its fault: the midnight rush at a modest rate, so
// that the fault falls in its orders phase, with fest load's own audit
// (every acknowledged order's stock reserved or sold, GMV the paid
// orders) at its end. It rides through the failover itself
// (internal/loadgen's HTTP target resends what a failover answers
// unavailable or leaves unanswered).
type festLoadRun struct {
	t        *testing.T
	entry    *fest
	stdout   strings.Builder
	stderr   *syncBuffer
	done     chan struct{}
	err      error
	ordering chan struct{} // closed once the orders phase began
}

const (
	// festLoadRate is the run's orders per second: the CPU it takes leaves
	// the nodes' leases their time on two shared cores.
	festLoadRate = "150"
	// festLoadShort and festLoadLong are the run's lengths: the short one
	// holds a kill and its failover (4 s or so); the long one a SIGSTOP
	// past the lease, the SIGCONT and the fence that may follow.
	festLoadShort = "10s"
	festLoadLong  = "15s"
	// festLoadScale is the model's size: a catalog imported in a second
	// or two.
	festLoadScale = "0.00001"
)

// startFestLoad starts fest load against entry and waits until its orders
// phase began.
func startFestLoad(t *testing.T, entry *fest, duration string) *festLoadRun {
	t.Helper()
	r := &festLoadRun{t: t, entry: entry, stderr: &syncBuffer{}, done: make(chan struct{}), ordering: make(chan struct{})}
	cmd := exec.Command(binPath, "load", "--addr", entry.URL, "--admin-token", adminToken, "--storefront-token", storefrontToken,
		"--carrier-token", carrierToken, "--scan-window", "0", "--questions", "0", "--json",
		"--profile", "midnight", "--scale", festLoadScale, "--rate", festLoadRate, "--duration", duration)
	cmd.Stdout = &r.stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fest load: %v", err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			r.stderr.Write([]byte(line + "\n"))
			if strings.Contains(line, "catalog imported") {
				once.Do(func() { close(r.ordering) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned
		r.err = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
	})
	select {
	case <-r.ordering:
	case <-r.done:
		t.Fatalf("fest load ended before its orders: %v\n%s", r.err, r.stderr)
	case <-time.After(clusterTestWaitMax):
		t.Fatalf("fest load did not begin its orders:\n%s", r.stderr)
	}
	return r
}

// finish waits for the run's end and requires its audit to have passed.
func (r *festLoadRun) finish() {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(3 * clusterTestWaitMax):
		r.t.Fatalf("fest load did not end:\n%s", r.stderr)
	}
	var res struct {
		loadResult
		Errors map[string]int64 `json:"errors"`
	}
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if last := lines[len(lines)-1]; strings.HasPrefix(last, "{") {
		if err := json.Unmarshal([]byte(last), &res); err != nil {
			r.t.Fatalf("fest load's json line %q: %v", last, err)
		}
	}
	if r.err != nil || !res.Audit.OK || res.Orders == 0 {
		r.t.Fatalf("fest load against %s: %v, %d orders, audit ok %v: %q\n%s", r.entry.URL, r.err, res.Orders, res.Audit.OK, res.Audit.Problems, r.stderr)
	}
	r.t.Logf("fest load against %s: %d orders, audit ok; errors %v", r.entry.URL, res.Orders, res.Errors)
}

// streamRecord is one message of a partition's stream, as the audit of the
// streams reads it.
type streamRecord struct {
	seq, epoch uint64
	fence      bool
}

// checkStreams reads every partition's stream from the NATS servers at
// urls and checks what fencing promises: every message carries the message
// id its writer gave it for exactly its sequence (a resend stored twice, or
// a message a fenced writer got in, would show at another sequence), and
// the writers' lease epochs never go back along a stream (a writer whose
// lease was taken appended nothing after its successor's fence). It
// returns every partition's records.
func checkStreams(t *testing.T, urls string) map[int][]streamRecord {
	t.Helper()
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatalf("connect to nats at %s: %v", urls, err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]streamRecord{}
	var summary []string
	for p := range clusterTestPartitions {
		name := "FEST_P" + strconv.Itoa(p)
		ctx, cancel := context.WithTimeout(context.Background(), clusterTestWaitMax)
		st, err := js.Stream(ctx, name)
		if err != nil {
			cancel()
			t.Fatalf("stream %s: %v", name, err)
		}
		state := st.CachedInfo().State
		var recs []streamRecord
		var epochs []string
		for seq := state.FirstSeq; seq <= state.LastSeq && seq > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				cancel()
				t.Fatalf("stream %s: message %d: %v", name, seq, err)
			}
			id := m.Header.Get(nats.MsgIdHdr)
			e36, s10, ok := strings.Cut(id, "-")
			epoch, err1 := strconv.ParseUint(e36, 36, 64)
			at, err2 := strconv.ParseUint(s10, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				cancel()
				t.Fatalf("stream %s: message %d has message id %q, not <epoch>-<sequence>", name, seq, id)
			}
			if at != seq {
				cancel()
				t.Fatalf("stream %s: message %d has message id %q: written for sequence %d, stored at %d", name, seq, id, at, seq)
			}
			r := streamRecord{seq: seq, epoch: epoch, fence: m.Header.Get("Fest-Fence") != ""}
			if n := len(recs); n > 0 && recs[n-1].epoch > epoch {
				cancel()
				t.Fatalf("stream %s: message %d written under lease epoch %d after message %d under epoch %d: a fenced writer appended", name, seq, epoch, recs[n-1].seq, recs[n-1].epoch)
			}
			if n := len(recs); n == 0 || recs[n-1].epoch != epoch {
				epochs = append(epochs, strconv.FormatUint(epoch, 10)+"@"+strconv.FormatUint(seq, 10))
			}
			recs = append(recs, r)
		}
		cancel()
		out[p] = recs
		summary = append(summary, fmt.Sprintf("p%d %d messages, epochs %s", p, len(recs), strings.Join(epochs, " ")))
	}
	t.Logf("streams (epoch@first sequence): %s", strings.Join(summary, "; "))
	return out
}

// TestCluster/SIGSTOPPastLease: under load, a node that owns partitions is
// stopped with SIGSTOP for longer than its lease; the others take its
// partitions over and serve them; resumed, it appends nothing (its writes
// are fenced: the streams' epochs never go back, and nothing it
// acknowledged is missing), rejoins as a follower (its GET /v1/cluster
// shows the new owners, it reads the whole cluster) and is given partitions
// again by the rebalancing. A node that finds itself fenced rejoins as a
// follower in the same process (docs/cluster.md): the process must be the
// same one, alive, throughout. fest load runs through a survivor with the
// stop in its orders phase, and its audit must pass.
func testClusterSIGSTOPPastLease(t *testing.T) {
	start := time.Now()
	nodes := startClusterNodes(t, 3)
	logTailsOnFailure(t, nodes)
	t.Logf("three nodes ready in %v", time.Since(start).Round(time.Millisecond))
	all := map[string]bool{"node-1": true, "node-2": true, "node-3": true}
	for _, f := range nodes {
		waitOwned(t, f, all, clusterTestWaitMax, "start")
	}
	skus := faultCatalog(t, nodes)
	load := startFaultLoad(t, faultClients(t, nodes), skus)
	load.waitAcks(200, clusterTestWaitMax, "load before the fault")

	// Stop the node holding the most partitions (each holds its share,
	// 2 or 3 of 8, once the spread has settled).
	v := waitSettled(t, nodes, all)
	victim := 2
	for i := range nodes {
		if len(v.ownedBy("node-"+strconv.Itoa(i+1))) > len(v.ownedBy("node-"+strconv.Itoa(victim+1))) {
			victim = i
		}
	}
	stopped := nodes[victim]
	name := "node-" + strconv.Itoa(victim+1)
	held := v.ownedBy(name)
	if len(held) == 0 {
		t.Fatalf("%s owns no partition: %+v", name, v)
	}
	var survivors []*fest
	live := map[string]bool{}
	for i, f := range nodes {
		if i != victim {
			survivors = append(survivors, f)
			live["node-"+strconv.Itoa(i+1)] = true
		}
	}
	ttl, err := time.ParseDuration(clusterTestLeaseTTL)
	if err != nil {
		t.Fatal(err)
	}
	// fest load through a survivor, with the fault in its orders phase.
	load.pausePayments(true)
	festLoad := startFestLoad(t, survivors[0], festLoadLong)
	stoppedAt := time.Now()
	if err := stopped.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The epochs its journals wrote under: its last acquisition of each
	// partition it held, from its log (the lease revision in the view
	// moves on with every renewal).
	heldEpochs := map[int]uint64{}
	for _, a := range leaseAcquisitions(stopped.out.String()) {
		if _, ok := held[a.partition]; ok && a.node == name {
			heldEpochs[a.partition] = a.epoch
		}
	}
	for p := range held {
		if heldEpochs[p] == 0 {
			t.Fatalf("%s holds partition %d, but its log shows no acquisition of it:\n%s", name, p, stopped.out)
		}
	}
	t.Logf("%s stopped with SIGSTOP; it held partitions (epochs) %v", name, heldEpochs)
	cont := func() { stopped.cmd.Process.Signal(syscall.SIGCONT) }
	t.Cleanup(cont) // a stopped process would not stop on SIGTERM
	takeOverBy := time.Now().Add(faultRecoveryWaitMax)
	for _, f := range survivors {
		waitOwned(t, f, live, time.Until(takeOverBy), "take-over")
	}
	t.Logf("survivors own every partition %.1f s after the stop", time.Since(stoppedAt).Seconds())
	load.waitServedAgain(stoppedAt, faultRecoveryWaitMax, "after the SIGSTOP")
	// Past the lease for sure: the survivors took it over, and the node
	// stays stopped for two TTLs besides.
	time.Sleep(2 * ttl)
	resumedAt := time.Now()
	cont()
	t.Logf("%s resumed with SIGCONT %.1f s after the stop", name, resumedAt.Sub(stoppedAt).Seconds())

	// A node that finds a write of its own fenced rejoins as a follower in
	// the same process (docs/cluster.md, "fest serve --journal nats"): it
	// must never exit.
	pid := stopped.cmd.Process.Pid
	rejoinedInPlace := func() bool { return strings.Contains(stopped.out.String(), "cluster node rejoined as a follower") }
	checkExit := func() {
		select {
		case <-stopped.done:
			t.Fatalf("%s (pid %d) exited after SIGCONT; a fenced node must rejoin in place:\n%s", name, pid, stopped.out)
		default:
		}
	}
	// Its GET /v1/cluster shows the new owners: each partition it held is
	// another node's, or its own again under a lease acquired after a
	// survivor's take-over (revisions grow bucket-wide; the rebalancing
	// may give it a partition back within a second, and right after
	// SIGCONT it still answers from its view of before the stop,
	// docs/cluster.md "Known defects" 2). A node that rejoined in place
	// rebuilt everything from the streams: it needs only see every
	// partition owned.
	newOwners := func(sv faultView) bool {
		if !sv.owned(all) || !sv.alive(all) {
			return false
		}
		if rejoinedInPlace() {
			return true
		}
		taken := map[int]uint64{}
		for _, f := range survivors {
			for _, a := range leaseAcquisitions(f.out.String()) {
				if _, ok := held[a.partition]; ok && a.epoch > heldEpochs[a.partition] {
					taken[a.partition] = max(taken[a.partition], a.epoch)
				}
			}
		}
		for p, rev := range sv.ownedBy(name) {
			if _, ok := held[p]; ok && (taken[p] == 0 || rev <= taken[p]) {
				return false
			}
		}
		return true
	}
	rejoin := func() {
		stale := false
		for {
			checkExit()
			sv, err := faultClusterView(stopped)
			if err == nil && newOwners(sv) {
				t.Logf("%s shows the new owners %.1f s after SIGCONT (it owns %v)", name, time.Since(resumedAt).Seconds(), sv.ownedBy(name))
				break
			}
			if err == nil && !stale && len(sv.ownedBy(name)) > 0 {
				stale = true
				t.Logf("%s answers GET /v1/cluster from its view before the stop: it owns %v", name, sv.ownedBy(name))
			}
			if time.Since(resumedAt) > clusterTestWaitMax {
				t.Fatalf("%s after SIGCONT: GET /v1/cluster %+v %v\n%s", name, sv, err, stopped.out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The rebalancing gives it its share back; the load goes on
		// meanwhile.
		for {
			checkExit()
			sv, err := faultClusterView(stopped)
			if err == nil && sv.owned(all) && sv.alive(all) && len(sv.ownedBy(name)) > 0 {
				t.Logf("%s owns partitions %v again %.1f s after SIGCONT", name, sv.ownedBy(name), time.Since(resumedAt).Seconds())
				break
			}
			if time.Since(resumedAt) > clusterTestWaitMax {
				t.Fatalf("%s given no partition back: GET /v1/cluster %+v %v", name, sv, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	rejoin()
	// A write of its own that the survivors' fences refuse takes the
	// journal's resends to be refused (a few seconds), and the node
	// rejoins in place then: give it that long under load, and if it
	// rejoined, see it given partitions again.
	time.Sleep(faultFenceSettle)
	checkExit()
	if rejoinedInPlace() {
		var why []string
		for _, l := range strings.Split(stopped.out.String(), "\n") {
			if strings.Contains(l, "rejoin") && len(why) < 4 {
				why = append(why, l)
			}
		}
		t.Logf("%s (pid %d) was fenced and rejoined in place:\n%s", name, pid, strings.Join(why, "\n"))
		rejoin()
		if m := stopped.clusterMetrics(); m["fest_cluster_rejoins_total"] < 1 {
			t.Errorf("%s rejoined but fest_cluster_rejoins_total is %v", name, m["fest_cluster_rejoins_total"])
		}
	} else {
		t.Logf("%s kept running: nothing of its own was fenced", name)
	}
	rejoined := time.Now()
	load.waitServedAgain(rejoined, clusterTestWaitMax, "after the rejoin")
	festLoad.finish()
	load.stop()
	requireRunning(t, nodes)
	checkExit()
	if sv, err := faultClusterView(stopped); err != nil || !sv.alive(all) || !sv.owned(all) {
		t.Fatalf("%s (pid %d) afterwards: GET /v1/cluster %+v %v", name, pid, sv, err)
	}

	auditCluster(t, nodes, load)
	recs := checkStreams(t, clusterNATS[nodes[0]]+","+clusterNATS[nodes[1]]+","+clusterNATS[nodes[2]])
	// Every partition the stopped node held was fenced by a survivor:
	// its last message under the stopped node's epoch is followed by a
	// fence marker under an epoch a survivor acquired that partition
	// with; and since epochs never go back along a stream (checkStreams),
	// nothing of the stopped node's follows it.
	takers := map[int]map[uint64]string{}
	for _, f := range survivors {
		for _, a := range leaseAcquisitions(f.out.String()) {
			if takers[a.partition] == nil {
				takers[a.partition] = map[uint64]string{}
			}
			takers[a.partition][a.epoch] = a.node
		}
	}
	for p, epoch := range heldEpochs {
		last := -1
		for i, r := range recs[p] {
			if r.epoch == epoch {
				last = i
			}
		}
		switch {
		case last < 0:
			t.Fatalf("partition %d: no message under %s's epoch %d (its fence at least)", p, name, epoch)
		case last+1 >= len(recs[p]):
			t.Fatalf("partition %d: %s's epoch %d is the stream's last: nobody fenced it", p, name, epoch)
		}
		next := recs[p][last+1]
		if taker := takers[p][next.epoch]; !next.fence || taker == "" {
			t.Fatalf("partition %d: after %s's last message (sequence %d, epoch %d) comes sequence %d, epoch %d, fence %v: not a survivor's fence", p, name, recs[p][last].seq, epoch, next.seq, next.epoch, next.fence)
		} else {
			t.Logf("partition %d: %s's epoch %d ends at sequence %d; %s's fence (epoch %d) follows", p, name, epoch, recs[p][last].seq, taker, next.epoch)
		}
	}
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// natsProcess is one fest nats process.
type natsProcess struct {
	t           *testing.T
	name, dir   string
	url         string // client URL
	args        []string
	cmd         *exec.Cmd
	out         *syncBuffer
	done        chan struct{}
	jetstreamOK chan struct{}
}

// startNATSProcesses starts n fest nats servers clustered on loopback and
// waits until each has JetStream ready. Each has a monitoring port, which
// the fest nodes' start-up check of the fsync setting reads.
func startNATSProcesses(t *testing.T, n int) (servers []*natsProcess, monitors []string) {
	t.Helper()
	ports := freeLoopbackPorts(t, 3*n) // clients, routes, monitoring
	var routes []string
	for i := range n {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[n+i]))
	}
	for i := range n {
		s := &natsProcess{t: t, name: "nats-" + strconv.Itoa(i+1), dir: t.TempDir(),
			url: "nats://127.0.0.1:" + strconv.Itoa(ports[i])}
		s.args = []string{"nats", "--name", s.name, "--data", s.dir,
			"--listen", "127.0.0.1:" + strconv.Itoa(ports[i]),
			"--cluster-listen", "127.0.0.1:" + strconv.Itoa(ports[n+i]),
			"--routes", strings.Join(routes, ","),
			"--monitor-listen", "127.0.0.1:" + strconv.Itoa(ports[2*n+i])}
		s.start()
		t.Cleanup(s.stop)
		t.Cleanup(func() {
			if t.Failed() {
				lines := strings.Split(strings.TrimSpace(s.out.String()), "\n")
				lines = lines[max(0, len(lines)-faultLogTailLines):]
				t.Logf("%s, the last %d lines of its output:\n%s", s.name, len(lines), strings.Join(lines, "\n"))
			}
		})
		servers = append(servers, s)
		monitors = append(monitors, "http://127.0.0.1:"+strconv.Itoa(ports[2*n+i]))
	}
	for _, s := range servers {
		select {
		case <-s.jetstreamOK:
		case <-s.done:
			t.Fatalf("%s exited:\n%s", s.name, s.out)
		case <-time.After(clusterTestWaitMax):
			t.Fatalf("%s: jetstream not ready:\n%s", s.name, s.out)
		}
	}
	return servers, monitors
}

func (s *natsProcess) start() {
	s.t.Helper()
	cmd := exec.Command(binPath, s.args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	s.out = &syncBuffer{}
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start fest nats: %v", err)
	}
	s.cmd, s.done, s.jetstreamOK = cmd, make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			s.out.Write([]byte(line + "\n"))
			if strings.Contains(line, "jetstream ready") {
				close(s.jetstreamOK)
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(s.done) }()
}

func (s *natsProcess) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("%s did not stop on SIGTERM:\n%s", s.name, s.out)
	}
	s.cmd = nil
}

func (s *natsProcess) kill() {
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// streamLeader is the name of the server leading stream ("" when none is
// known).
func streamLeader(t *testing.T, urls, stream string) string {
	t.Helper()
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatalf("connect to nats at %s: %v", urls, err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	if ci := st.CachedInfo().Cluster; ci != nil {
		return ci.Leader
	}
	return ""
}

// TestCluster/KillOneNATSServer: the NATS cluster runs apart (three fest
// nats processes) and the three fest nodes connect to it, each given all
// three URLs; under load one NATS server is killed with SIGKILL. Orders go
// on after at most a pause (the streams it led elect new leaders, the
// clients of it reconnect to another), and the invariants hold.
func testClusterKillOneNATSServer(t *testing.T) {
	start := time.Now()
	servers, monitors := startNATSProcesses(t, 3)
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.url)
	}
	natsURLs := strings.Join(urls, ",")
	t.Logf("three fest nats servers ready in %v", time.Since(start).Round(time.Millisecond))

	ports := freeLoopbackPorts(t, 3)
	nodes := make([]*fest, 3)
	for i := range nodes {
		name := "node-" + strconv.Itoa(i+1)
		f := &fest{t: t, Dir: t.TempDir(), args: []string{"--journal", "nats", "--node", name,
			"--addr", "127.0.0.1:" + strconv.Itoa(ports[i]),
			"--nats-url", natsURLs, "--nats-monitor-url", strings.Join(monitors, ","),
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
		t.Cleanup(func() { f.stop() })
		nodes[i] = f
		clusterNATS[f] = natsURLs
	}
	logTailsOnFailure(t, nodes)
	for _, f := range nodes {
		f.ready()
		// fest nats has fest's settings: the nodes' start-up check read
		// every server's /varz and found it fsyncing every write.
		if !strings.Contains(f.out.String(), "nats servers fsync every write") {
			t.Fatalf("%s did not find every fest nats server synchronous:\n%s", f.URL, f.out)
		}
	}
	t.Logf("three nodes ready in %v", time.Since(start).Round(time.Millisecond))
	all := map[string]bool{"node-1": true, "node-2": true, "node-3": true}
	for _, f := range nodes {
		waitOwned(t, f, all, clusterTestWaitMax, "start")
	}
	skus := faultCatalog(t, nodes)
	load := startFaultLoad(t, faultClients(t, nodes), skus)
	load.waitAcks(200, clusterTestWaitMax, "load before the fault")

	// Kill the server leading the lease bucket: its loss stalls every
	// renewal until a new leader is elected, besides the partitions'
	// streams it leads.
	victim := servers[len(servers)-1]
	if leader := streamLeader(t, natsURLs, "KV_fest_leases"); leader != "" {
		for _, s := range servers {
			if s.name == leader {
				victim = s
			}
		}
	}
	var rest []string
	for _, s := range servers {
		if s != victim {
			rest = append(rest, s.url)
		}
	}
	load.pausePayments(true)
	festLoad := startFestLoad(t, nodes[0], festLoadShort)
	killed := time.Now()
	victim.kill()
	t.Logf("%s (the lease bucket's leader) killed with SIGKILL", victim.name)
	// Orders go on: every partition takes orders again, and the load goes
	// on for a while past that.
	load.waitServedAgain(killed, faultRecoveryWaitMax, "after the NATS server's kill")
	load.waitAcks(200, clusterTestWaitMax, "load after the NATS server's kill")
	festLoad.finish()
	load.stop()
	requireRunning(t, nodes)
	auditCluster(t, nodes, load)
	checkStreams(t, strings.Join(rest, ","))
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// TestCluster/KillAllRestart (acceptance 2): under load every node (each
// with its embedded NATS server) is killed with SIGKILL at once, then all
// are restarted on their directories; every acknowledged order is there
// exactly once, stock is conserved, GMV is the paid orders, and orders go
// on.
func testClusterKillAllRestart(t *testing.T) {
	start := time.Now()
	nodes := startClusterNodes(t, 3)
	logTailsOnFailure(t, nodes)
	t.Logf("three nodes ready in %v", time.Since(start).Round(time.Millisecond))
	all := map[string]bool{"node-1": true, "node-2": true, "node-3": true}
	for _, f := range nodes {
		waitOwned(t, f, all, clusterTestWaitMax, "start")
	}
	skus := faultCatalog(t, nodes)
	load := startFaultLoad(t, faultClients(t, nodes), skus)
	load.waitAcks(300, clusterTestWaitMax, "load before the fault")

	// SIGKILL to all three before waiting for any.
	for _, f := range nodes {
		f.cmd.Process.Kill()
	}
	killed := time.Now()
	for _, f := range nodes {
		<-f.done
		f.cmd = nil
	}
	load.stop()
	t.Logf("all three nodes killed with SIGKILL")

	// The restart: all three at once, as after a power failure; each waits
	// for a quorum of the NATS servers.
	urlChs := make([]chan string, len(nodes))
	for i, f := range nodes {
		urlChs[i] = make(chan string, 1)
		f.launch(urlChs[i])
	}
	for i, f := range nodes {
		select {
		case f.URL = <-urlChs[i]:
		case <-f.done:
			t.Fatalf("node-%d exited at its restart:\n%s", i+1, f.out)
		case <-time.After(clusterTestWaitMax):
			t.Fatalf("node-%d did not listen at its restart:\n%s", i+1, f.out)
		}
	}
	for _, f := range nodes {
		f.ready()
	}
	for _, f := range nodes {
		waitOwned(t, f, all, clusterTestWaitMax, "restart")
	}
	t.Logf("three nodes ready again, every partition owned, %.1f s after the kill", time.Since(killed).Seconds())
	auditCluster(t, nodes, load)
	checkStreams(t, clusterNATS[nodes[0]]+","+clusterNATS[nodes[1]]+","+clusterNATS[nodes[2]])
	// Orders go on after the restart, on every partition, and the
	// invariants still hold with them.
	resumed := time.Now()
	more := startFaultLoad(t, faultClients(t, nodes), skus)
	more.waitServedAgain(resumed, clusterTestWaitMax, "after the restart")
	more.stop()
	for id, o := range more.acked {
		load.acked[id] = o
	}
	for id := range more.paid {
		load.paid[id] = true
	}
	load.buyers = append(load.buyers, more.buyers...) // the same names: listed once below
	load.buyers = uniqueStrings(load.buyers)
	auditCluster(t, nodes, load)
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// logTailsOnFailure logs the end of every node's output when the test has
// failed, since a failure on one node is often explained on another.
func logTailsOnFailure(t *testing.T, nodes []*fest) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, f := range nodes {
			state := "running"
			select {
			case <-f.done:
				state = "exited"
			default:
			}
			lines := strings.Split(strings.TrimSpace(f.out.String()), "\n")
			var kept []string
			for _, l := range lines {
				// The NATS servers' route chatter drowns the rest.
				if !strings.Contains(l, "Route connection") && !strings.Contains(l, "Router connection") && !strings.Contains(l, "Error trying to connect to route") {
					kept = append(kept, l)
				}
			}
			kept = kept[max(0, len(kept)-faultLogTailLines):]
			t.Logf("node-%d (%s), the last %d lines of its output:\n%s", i+1, state, len(kept), strings.Join(kept, "\n"))
		}
	})
}

// waitSettled waits until every node's GET /v1/cluster gives every
// partition an owner of live, the same on every node and the same again a
// lease renewal later (the spread after the start moves partitions by
// planned hand-offs for a while), and returns that view.
func waitSettled(t *testing.T, nodes []*fest, live map[string]bool) faultView {
	t.Helper()
	owners := func(v faultView) string {
		var b strings.Builder
		for _, p := range v.Partitions {
			b.WriteString(p.Owner + ",")
		}
		return b.String()
	}
	deadline := time.Now().Add(clusterTestWaitMax)
	prev := ""
	for {
		var v faultView
		same := true
		now := ""
		for i, f := range nodes {
			fv := waitOwned(t, f, live, clusterTestWaitMax, "settling")
			if i == 0 {
				v, now = fv, owners(fv)
			} else if owners(fv) != now {
				same = false
			}
		}
		if same && now == prev {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spread did not settle: %s", now)
		}
		prev = now
		if !same {
			prev = ""
		}
		time.Sleep(time.Second)
	}
}

// leaseAcquisition is a "lease acquired" line of a node's log.
type leaseAcquisition struct {
	node      string
	partition int
	epoch     uint64
}

// leaseAcquiredLine matches internal/lease's log line of an acquisition.
var leaseAcquiredLine = regexp.MustCompile(`msg="lease acquired" node=(\S+) partition=(\d+) epoch=(\d+)`)

// leaseAcquisitions returns the acquisitions a node's log shows, in order.
func leaseAcquisitions(log string) []leaseAcquisition {
	var out []leaseAcquisition
	for _, m := range leaseAcquiredLine.FindAllStringSubmatch(log, -1) {
		p, _ := strconv.Atoi(m[2])
		e, _ := strconv.ParseUint(m[3], 10, 64)
		out = append(out, leaseAcquisition{node: m[1], partition: p, epoch: e})
	}
	return out
}

// requireRunning fails the test if a node has exited.
func requireRunning(t *testing.T, nodes []*fest) {
	t.Helper()
	for i, f := range nodes {
		select {
		case <-f.done:
			t.Fatalf("node-%d has exited:\n%s", i+1, f.out)
		default:
		}
	}
}

// uniqueStrings returns ss without repeats, in their first order.
func uniqueStrings(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
