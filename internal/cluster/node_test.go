package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal/jetstream"
	"github.com/fest-platform/fest/internal/lease"
	"github.com/fest-platform/fest/internal/natsserver"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitMax bounds every wait; nothing here asserts a duration.
const waitMax = 2 * time.Minute

const (
	partitions = 8
	merchants  = 8
	skusPer    = 4
	stock      = 1000
)

func startNode(t *testing.T, servers *natsserver.LocalCluster, name string) *Node {
	t.Helper()
	return startNodeWithClock(t, servers, name, nil)
}

// startNodeWithClock starts a node whose lease manager reads clock (nil:
// the system clock). With a fakeClock the manager ticks once as it starts
// and then only when the test calls Tick.
func startNodeWithClock(t *testing.T, servers *natsserver.LocalCluster, name string, clock lease.Clock) *Node {
	t.Helper()
	nc, err := nats.Connect(servers.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	n, err := StartNode(ctx, NodeConfig{
		Conn: nc, Name: name, Address: "http://" + name, Partitions: partitions, Replicas: 1,
		Engine: engine.Config{IdleTick: -1, PaymentTimeout: time.Hour},
		Lease:  lease.Config{TTL: time.Second, Clock: clock},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitSpread waits until the nodes serve every partition between them,
// each partition on one node, each node want[i] of them.
func waitSpread(t *testing.T, nodes []*Node, want []int) {
	t.Helper()
	deadline := time.Now().Add(waitMax)
	for {
		counts := make([]int, len(nodes))
		ok := true
		for p := range partitions {
			owners := 0
			for i, n := range nodes {
				if n.Engine().Owns(p) {
					counts[i]++
					owners++
				}
			}
			ok = ok && owners == 1
		}
		for i := range nodes {
			ok = ok && counts[i] == want[i]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions served per node %v, want %v", counts, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// do sends each command to the node serving its partition (the HTTP
// layer's forwarding), retrying those answered unavailable while a
// partition changes hands.
func do(t *testing.T, nodes []*Node, cmd engine.Command) engine.Result {
	t.Helper()
	deadline := time.Now().Add(waitMax)
	for {
		r := engine.Request{Command: cmd}
		p, ok := nodes[0].Engine().Locate(&r)
		if !ok {
			return r.Result
		}
		for _, n := range nodes {
			if n.Engine().Owns(p) {
				res := n.Engine().Do(context.Background(), cmd)
				if res.Code != engine.CodeUnavailable {
					return res
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition %d unavailable on every node", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func catalog(t *testing.T, nodes []*Node) {
	t.Helper()
	cmds := []engine.Command{{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b", Name: "B", Country: "CN"}}}
	for m := range merchants {
		cmds = append(cmds, engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m" + strconv.Itoa(m), BrandID: "b", Kind: engine.MerchantFactory}})
	}
	for m := range merchants {
		for i := range skusPer {
			cmds = append(cmds, engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: fmt.Sprintf("s%d-%d", m, i), MerchantID: "m" + strconv.Itoa(m), BrandID: "b", Price: 100, Stock: stock}})
		}
	}
	for _, c := range cmds {
		if r := do(t, nodes, c); r.Code != engine.CodeOK {
			t.Fatalf("%v: %v", c.Kind, r.Code)
		}
	}
}

type acked struct {
	id       engine.OrderID
	sku      string
	quantity int64
	paid     bool
}

func order(t *testing.T, nodes []*Node, rng *rand.Rand, n int) []acked {
	t.Helper()
	var out []acked
	for range n {
		sku := fmt.Sprintf("s%d-%d", rng.IntN(merchants), rng.IntN(skusPer))
		q := 1 + rng.IntN(3)
		r := do(t, nodes, engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u", Channel: "app", Items: []engine.Item{{SKUID: sku, Quantity: int32(q)}}}})
		if r.Code != engine.CodeOK {
			t.Fatalf("order: %v", r.Code)
		}
		a := acked{id: r.OrderID, sku: sku, quantity: int64(q)}
		if rng.IntN(2) == 0 {
			if pr := do(t, nodes, engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total}); pr.Code != engine.CodeOK {
				t.Fatalf("pay: %v", pr.Code)
			}
			a.paid = true
		}
		out = append(out, a)
	}
	return out
}

// audit checks every acknowledged order once and every SKU's stock: the
// units the orders took are exactly the SKUs' reserved and sold units.
func audit(t *testing.T, nodes []*Node, orders []acked) {
	t.Helper()
	taken := map[string]int64{}
	seen := map[engine.OrderID]bool{}
	for _, o := range orders {
		if seen[o.id] {
			t.Fatalf("order %v acknowledged twice", o.id)
		}
		seen[o.id] = true
		taken[o.sku] += o.quantity
		r := do(t, nodes, engine.Command{Kind: engine.KindGetOrder, OrderID: o.id})
		want := engine.StatusPending
		if o.paid {
			want = engine.StatusPaid
		}
		if r.Code != engine.CodeOK || r.Status != want {
			t.Fatalf("order %v: %v %v, want %v", o.id, r.Code, r.Status, want)
		}
	}
	for m := range merchants {
		for i := range skusPer {
			sku := fmt.Sprintf("s%d-%d", m, i)
			r := do(t, nodes, engine.Command{Kind: engine.KindGetSKU, SKUID: sku})
			if r.Available+r.Reserved+r.Sold != stock || r.Reserved+r.Sold != taken[sku] {
				t.Fatalf("sku %s: %d + %d + %d, orders took %d", sku, r.Available, r.Reserved, r.Sold, taken[sku])
			}
		}
	}
}

// TestNodesSpreadAndHandOff: node a takes every partition; node b joins
// and the leases hand half over (a drains and releases, b fences and
// replays); b stops and a takes them back at once. Orders go on
// throughout, none lost or doubled, stock conserved.
func TestNodesSpreadAndHandOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	servers, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer servers.Close()
	a := startNode(t, servers, "a")
	defer a.Close()
	waitSpread(t, []*Node{a}, []int{partitions})
	catalog(t, []*Node{a})
	rng := rand.New(rand.NewPCG(1, 2))
	orders := order(t, []*Node{a}, rng, 40)

	b := startNode(t, servers, "b")
	nodes := []*Node{a, b}
	orders = append(orders, order(t, nodes, rng, 40)...) // while the hand-off goes on
	waitSpread(t, nodes, []int{partitions / 2, partitions / 2})
	orders = append(orders, order(t, nodes, rng, 40)...)
	audit(t, nodes, orders)

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitSpread(t, []*Node{a}, []int{partitions})
	orders = append(orders, order(t, []*Node{a}, rng, 20)...)
	audit(t, []*Node{a}, orders)
	if err := a.Engine().Err(); err != nil {
		t.Fatal(err)
	}
}

// fakeClock moves only when told; After never fires.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *fakeClock) After(time.Duration) <-chan time.Time { return nil }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestPausedNodeIsFencedAndRejoins: node a holds every lease and stops
// ticking (a process paused past its TTL). Node b sees a's heartbeat
// stale, takes every partition over and fences its journals. a, resumed
// and still believing it serves them, has its next order refused: the
// client gets unavailable, a's engine stops and a hands its leases off. A
// restarted a follows b's partitions and its state is b's.
func TestPausedNodeIsFencedAndRejoins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	servers, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer servers.Close()
	clockA, clockB := &fakeClock{now: time.Unix(1000, 0)}, &fakeClock{now: time.Unix(5000, 0)}
	a := startNodeWithClock(t, servers, "a", clockA)
	defer a.Close()
	// a ticks at one time of its clock until it serves every partition (a
	// take-over that failed on a loaded machine is tried again at the next
	// tick). Its leases are then surely valid, for its engine, until the
	// test ends: a is paused only on its lease manager's clock, and on a
	// loaded machine the catalog, the orders and b's take-over below may
	// take longer than one renewal's validity in real time (TTL less the
	// margin), after which a's engine would refuse the orders itself and
	// never try the write that the fence must refuse.
	deadline := time.Now().Add(waitMax)
	for p := 0; p < partitions; p++ {
		for !a.Engine().Owns(p) {
			if time.Now().After(deadline) {
				t.Fatalf("a does not serve partition %d", p)
			}
			if err := a.Leases().Tick(ctx); err != nil {
				// (A bucket operation timed out: the next tick tries again.)
				t.Logf("a's tick: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for p := 0; p < partitions; p++ {
		a.Engine().ExtendLease(p, waitMax)
	}
	catalog(t, []*Node{a})
	rng := rand.New(rand.NewPCG(3, 4))
	orders := order(t, []*Node{a}, rng, 30)

	b := startNodeWithClock(t, servers, "b", clockB)
	defer b.Close()
	// b sees a live and waits; then a TTL and more passes on b's clock
	// without a tick from a.
	if err := b.Leases().Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clockB.Advance(2 * time.Second)
	if err := b.Leases().Tick(ctx); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(waitMax)
	for p := 0; p < partitions; p++ {
		for !b.Engine().Owns(p) {
			if time.Now().After(deadline) {
				t.Fatalf("b does not serve partition %d", p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// b, too, ticks no more: its leases stay valid for its engine, as a's
	// did, so that its orders below are not refused on real time.
	for p := 0; p < partitions; p++ {
		b.Engine().ExtendLease(p, waitMax)
	}
	if !a.Engine().Owns(0) {
		t.Fatal("the paused node should still believe it serves its partitions")
	}
	var cmd engine.Command
	for m := range merchants {
		r := engine.Request{Command: engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "late", Channel: "app",
			Items: []engine.Item{{SKUID: fmt.Sprintf("s%d-0", m), Quantity: 1}}}}}
		if p, _ := a.Engine().Locate(&r); a.Engine().Owns(p) {
			cmd = r.Command
			break
		}
	}
	// a resumes believing its lease still valid, as a process paused
	// between its lease check and its write does: its write reaches the
	// journal, and the fence refuses it.
	if r := a.Engine().Do(ctx, cmd); r.Code != engine.CodeUnavailable || r.Field == engine.UnavailableLease {
		t.Fatalf("the fenced node answered %v (field %q)", r.Code, r.Field)
	}
	select {
	case <-a.Failed():
	case <-time.After(waitMax):
		t.Fatal("the fenced node's engine did not stop")
	}
	if err := a.Engine().Err(); !errors.Is(err, jetstream.ErrFenced) {
		t.Fatalf("the fenced node stopped with %v", err)
	}
	a.Close()

	orders = append(orders, order(t, []*Node{b}, rng, 30)...)
	audit(t, []*Node{b}, orders)
	a2 := startNodeWithClock(t, servers, "a", clockA)
	defer a2.Close()
	// a2 follows every partition; its view of each SKU is b's.
	for p := 0; p < partitions; p++ {
		for a2.Engine().PartitionPosition(p) != b.Engine().PartitionPosition(p) {
			if time.Now().After(deadline) {
				t.Fatalf("a2 at %d of partition %d, b at %d", a2.Engine().PartitionPosition(p), p, b.Engine().PartitionPosition(p))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if a2.Engine().SKUCount() != merchants*skusPer {
		t.Fatalf("a2 knows %d skus", a2.Engine().SKUCount())
	}
}

// metricValues gathers c's series: name{label values} → value.
func metricValues(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}

// TestNodeMetricsAndFinalSnapshots: a node's /metrics series count its
// lease changes and show its followers caught up and its partitions'
// queues; a planned Close snapshots every partition it served (the
// review's defect 7), so that a restart replays only the tails.
func TestNodeMetricsAndFinalSnapshots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	servers, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer servers.Close()
	a := startNode(t, servers, "a")
	waitSpread(t, []*Node{a}, []int{partitions})
	catalog(t, []*Node{a})
	rng := rand.New(rand.NewPCG(3, 4))
	order(t, []*Node{a}, rng, 40)
	m := metricValues(t, a.Metrics())
	for key, want := range map[string]float64{
		"fest_cluster_partitions_served":               partitions,
		"fest_cluster_lease_changes_total{acquired}":   partitions,
		"fest_cluster_lease_changes_total{lost}":       0,
		"fest_cluster_followers_behind":                0,
		"fest_cluster_queue_depth{0}":                  0,
		"fest_cluster_follower_lag_records{7}":         0,
		"fest_cluster_unavailable_total{lease}":        0,
		"fest_cluster_lease_changes_total{taken_over}": 0,
		"fest_cluster_failover_seconds":                0,
		"fest_cluster_unavailable_total{following}":    0,
		"fest_cluster_lease_changes_total{released}":   0,
		"fest_cluster_unavailable_total{not_served}":   0,
		"fest_cluster_takeovers_total":                 0,
		"fest_cluster_serve_failures_total":            0,
		"fest_cluster_takeover_seconds":                0,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := a.Leases().Stats().Released.Load(); got != partitions {
		t.Fatalf("%d leases released by the planned stop, want %d", got, partitions)
	}
	nc, err := nats.Connect(servers.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for p := range partitions {
		s, err := jetstream.OpenSnapshots(ctx, jetstream.SnapshotConfig{JetStream: js, Replicas: 1, Partition: p})
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			t.Errorf("partition %d has no snapshot after a planned Close", p)
		}
	}
}
