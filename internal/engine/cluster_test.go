package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/journal/jetstream"
	"github.com/fest-platform/fest/internal/natsserver"
)

// The cluster tests run real embedded NATS servers: nodes are engines in
// this process, each with its own connection, following and serving the
// partitions' streams.

// clusterWaitMax bounds every wait of these tests; nothing here asserts a
// duration.
const clusterWaitMax = 2 * time.Minute

const clusterPartitions = 8

type testCluster struct {
	t        testing.TB
	servers  *natsserver.LocalCluster
	replicas int
	// epoch hands out fencing tokens, growing as lease revisions do.
	epoch atomic.Uint64
}

func startTestCluster(t testing.TB, servers int) *testCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWaitMax)
	defer cancel()
	c, err := natsserver.StartLocalCluster(ctx, t.TempDir(), servers, quiet)
	if err != nil {
		t.Fatalf("start %d nats servers: %v", servers, err)
	}
	t.Cleanup(func() { c.Close() })
	return &testCluster{t: t, servers: c, replicas: servers}
}

// clusterConfig is a node's cluster configuration on its own connection.
func (tc *testCluster) clusterConfig(node string, retain func(int) uint64) *Cluster {
	t := tc.t
	nc, err := nats.Connect(tc.servers.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	jcfg := func(p int, epoch uint64) jetstream.Config {
		return jetstream.Config{Conn: nc, Partition: p, Replicas: tc.replicas, Epoch: epoch, Logger: quiet}
	}
	return &Cluster{
		Node: node,
		OpenJournal: func(ctx context.Context, p int, epoch uint64) (journal.Journal, error) {
			return jetstream.Open(ctx, jcfg(p, epoch))
		},
		OpenStream: func(ctx context.Context, p int) (Stream, error) {
			return jetstream.OpenReader(ctx, jcfg(p, 0))
		},
		OpenSnapshots: func(ctx context.Context, p int) (PartitionSnapshots, error) {
			return jetstream.OpenSnapshots(ctx, jetstream.SnapshotConfig{JetStream: js, Replicas: tc.replicas, Partition: p})
		},
		SnapshotEveryBytes: -1,
		RetainFrom:         retain,
		FollowRetryWait:    50 * time.Millisecond,
	}
}

func (tc *testCluster) open(node string, retain func(int) uint64) *Engine {
	tc.t.Helper()
	e, err := Open(Config{Partitions: clusterPartitions, Cluster: tc.clusterConfig(node, retain), Logger: quiet, IdleTick: -1, PaymentTimeout: time.Hour})
	if err != nil {
		tc.t.Fatalf("open node %s: %v", node, err)
	}
	tc.t.Cleanup(func() { e.Close() })
	return e
}

func (tc *testCluster) add(e *Engine, partitions ...int) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWaitMax)
	defer cancel()
	for _, p := range partitions {
		if err := e.AddPartition(ctx, p, tc.epoch.Add(1)); err != nil {
			tc.t.Fatal(err)
		}
	}
}

func allPartitions() []int {
	ps := make([]int, clusterPartitions)
	for p := range ps {
		ps[p] = p
	}
	return ps
}

// submitToOwners sends each request of b to the node serving its
// partition, as the HTTP layer's forwarding does, and waits.
func submitToOwners(t *testing.T, nodes []*Engine, b *Batch) {
	t.Helper()
	parts := make([]*Batch, len(nodes))
	from := make([][]int, len(nodes))
	for i := range b.Requests {
		r := &b.Requests[i]
		p, ok := nodes[0].Locate(r)
		if !ok {
			continue
		}
		owner := -1
		for n, e := range nodes {
			if e.Owns(p) {
				owner = n
			}
		}
		if owner < 0 {
			r.Result = Result{Code: CodeUnavailable}
			continue
		}
		if parts[owner] == nil {
			parts[owner] = NewBatch(0)
		}
		parts[owner].Add(r.Command)
		from[owner] = append(from[owner], i)
	}
	for n, pb := range parts {
		if pb != nil {
			nodes[n].Submit(pb)
		}
	}
	for n, pb := range parts {
		if pb == nil {
			continue
		}
		pb.Wait()
		for j, i := range from[n] {
			b.Requests[i].Result = pb.Requests[j].Result
		}
	}
}

// partitionDigest describes partition p's state in a canonical text: every
// SKU's stock, every order's status and parcel, the pending orders.
func partitionDigest(e *Engine, p int) string {
	part := e.core.partitions[p]
	var s strings.Builder
	fmt.Fprintf(&s, "merchants %d brands %d skus %d orders %d pending %d last %d\n",
		len(part.merchants), len(part.brands), len(part.skus), len(part.orders), part.pendingCount, part.lastAt)
	for i, sk := range part.skus {
		fmt.Fprintf(&s, "%s %d %d %d %d\n", part.skuID(uint32(i)), sk.price(), sk.available, sk.reserved, sk.sold)
	}
	for i, st := range part.orders {
		ps, _ := part.parcel(uint64(i) + 1)
		fmt.Fprintf(&s, "%d:%v/%v ", i+1, st, ps)
	}
	return s.String()
}

// waitConverged waits until follower's position of every partition is the
// owner's, then checks that their states are equal.
func waitConverged(t *testing.T, owner, follower *Engine) {
	t.Helper()
	deadline := time.Now().Add(clusterWaitMax)
	for p := range clusterPartitions {
		for follower.PartitionPosition(p) != owner.PartitionPosition(p) {
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: follower at %d, owner at %d", p, follower.PartitionPosition(p), owner.PartitionPosition(p))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if a, b := partitionDigest(owner, p), partitionDigest(follower, p); a != b {
			t.Fatalf("partition %d differs:\nowner    %.300s\nfollower %.300s", p, a, b)
		}
	}
	if a, b := owner.SKUCount(), follower.SKUCount(); a != b {
		t.Fatalf("owner has %d skus, follower %d", a, b)
	}
}

// TestClusterFollowerConverges: node A serves every partition and takes
// orders; node B, started part way, replays what was there and follows the
// rest; its state ends equal to A's.
func TestClusterFollowerConverges(t *testing.T) {
	tc := startTestCluster(t, 1)
	a := tc.open("a", nil)
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 6, 10, 1000)
	rng := rand.New(rand.NewPCG(1, 2))
	randomOrders(a, rng, 10, 6, 10)
	b := tc.open("b", nil)
	if b.Owns(0) {
		t.Fatal("b serves partition 0 without adding it")
	}
	r := b.Do(context.Background(), Command{Kind: KindGetSKU, SKUID: "s0-0"})
	if r.Code != CodeUnavailable {
		t.Fatalf("b answered a command for a partition it does not serve with %v", r.Code)
	}
	randomOrders(a, rng, 10, 6, 10)
	waitConverged(t, a, b)
	// A read model on b follows the events of the partition with the
	// most orders from the start.
	p := 0
	for q := range clusterPartitions {
		if len(b.core.partitions[q].orders) > len(b.core.partitions[p].orders) {
			p = q
		}
	}
	want := len(b.core.partitions[p].orders)
	if want == 0 {
		t.Fatal("no orders placed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	placed := 0
	err := b.FollowPartition(ctx, p, 0, func(ev *Event) error {
		if ev.Partition != p || ev.Position == 0 {
			t.Errorf("event of partition %d at %d", ev.Partition, ev.Position)
		}
		if ev.Kind == EventOrderPlaced {
			placed++
		}
		if placed == want {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || placed != want {
		t.Fatalf("followed %d of %d orders placed in partition %d: %v", placed, want, p, err)
	}
	if a.Stats().Records.Load() == 0 || b.Stats().Records.Load() != 0 {
		t.Fatalf("records written: a %d, b %d", a.Stats().Records.Load(), b.Stats().Records.Load())
	}
}

// placeRound places an order on a random SKU of each merchant and pays
// half of those placed, through submitToOwners; it returns the orders
// placed.
func placeRound(t *testing.T, nodes []*Engine, rng *rand.Rand, merchants, skusPer int) []Result {
	b := NewBatch(0)
	for m := range merchants {
		b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u" + strconv.Itoa(rng.IntN(50)), Channel: "app",
			Items: []Item{{SKUID: fmt.Sprintf("s%d-%d", m, rng.IntN(skusPer)), Quantity: 1 + int32(rng.IntN(2))}}}})
	}
	submitToOwners(t, nodes, b)
	var placed []Result
	pay := NewBatch(0)
	for _, r := range b.Requests {
		switch r.Result.Code {
		case CodeOK:
			placed = append(placed, r.Result)
			if rng.IntN(2) == 0 {
				pay.Add(Command{Kind: KindPay, OrderID: r.Result.OrderID, Amount: r.Result.Total})
			}
		case CodeOutOfStock:
		case CodeUnavailable:
			// A partition between two owners: checkOrdersOnce checks
			// that the order is nowhere.
		default:
			t.Fatalf("order answered %v", r.Result.Code)
		}
	}
	submitToOwners(t, nodes, pay)
	for _, r := range pay.Requests {
		if r.Result.Code != CodeOK {
			t.Fatalf("pay answered %v", r.Result.Code)
		}
	}
	return placed
}

// checkOrdersOnce checks that the acknowledged orders are exactly the
// orders each partition holds, and that every SKU's stock adds up.
func checkOrdersOnce(t *testing.T, e *Engine, placed []Result, stock int64) {
	t.Helper()
	seen := map[OrderID]bool{}
	perPartition := make([]int, clusterPartitions)
	for _, r := range placed {
		if seen[r.OrderID] {
			t.Fatalf("order %v acknowledged twice", r.OrderID)
		}
		seen[r.OrderID] = true
		perPartition[r.OrderID.Partition()]++
	}
	for p := range clusterPartitions {
		part := e.core.partitions[p]
		if len(part.orders) != perPartition[p] {
			t.Fatalf("partition %d holds %d orders, %d were acknowledged", p, len(part.orders), perPartition[p])
		}
		for i, sk := range part.skus {
			if int64(sk.available)+int64(sk.reserved)+int64(sk.sold) != stock {
				t.Fatalf("partition %d sku %s: %d + %d + %d != %d", p, part.skuID(uint32(i)), sk.available, sk.reserved, sk.sold, stock)
			}
		}
	}
}

// TestClusterHandOver: A serves everything, then hands half the
// partitions to B (RemovePartition on A, AddPartition on B) while orders
// go on to whichever node serves each; then B hands them back. No order
// is lost or doubled, stock is conserved, and both nodes end equal.
func TestClusterHandOver(t *testing.T) {
	for _, servers := range []int{1, 3} {
		t.Run(fmt.Sprintf("servers=%d", servers), func(t *testing.T) {
			tc := startTestCluster(t, servers)
			a := tc.open("a", nil)
			b := tc.open("b", nil)
			nodes := []*Engine{a, b}
			tc.add(a, allPartitions()...)
			const merchants, skusPer, stock = 8, 5, 1000
			testCatalog(t, a, merchants, skusPer, stock)
			rng := rand.New(rand.NewPCG(3, 4))
			var placed []Result
			for range 5 {
				placed = append(placed, placeRound(t, nodes, rng, merchants, skusPer)...)
			}
			ctx := context.Background()
			for p := 0; p < clusterPartitions; p += 2 {
				if err := a.RemovePartition(ctx, p); err != nil {
					t.Fatal(err)
				}
				if a.Owns(p) {
					t.Fatalf("a still serves partition %d", p)
				}
				// Between the two, nobody serves p: its orders answer
				// unavailable, never a wrong answer.
				placed = append(placed, placeRound(t, nodes, rng, merchants, skusPer)...)
				tc.add(b, p)
				placed = append(placed, placeRound(t, nodes, rng, merchants, skusPer)...)
			}
			for range 5 {
				placed = append(placed, placeRound(t, nodes, rng, merchants, skusPer)...)
			}
			if b.Stats().Records.Load() == 0 {
				t.Fatal("b wrote nothing after taking partitions over")
			}
			if got, want := b.ServedPartitions(), []int{0, 2, 4, 6}; !slices.Equal(got, want) {
				t.Fatalf("b serves %v, want %v", got, want)
			}
			for p := 0; p < clusterPartitions; p += 2 {
				if err := b.RemovePartition(ctx, p); err != nil {
					t.Fatal(err)
				}
				tc.add(a, p)
			}
			placed = append(placed, placeRound(t, nodes, rng, merchants, skusPer)...)
			waitConverged(t, a, b)
			checkOrdersOnce(t, a, placed, stock)
			if a.Err() != nil || b.Err() != nil {
				t.Fatalf("engines stopped: %v, %v", a.Err(), b.Err())
			}
		})
	}
}

// TestClusterFencedOwner: B takes partition p with a higher epoch while A
// still believes it serves p. A's next append is refused by the fence: its
// client gets CodeUnavailable, and A stops (its state of p may hold the
// refused events). A restarted A loads p from the stream, equal to B's.
func TestClusterFencedOwner(t *testing.T) {
	tc := startTestCluster(t, 1)
	a := tc.open("a", nil)
	b := tc.open("b", nil)
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 8, 5, 100)
	rng := rand.New(rand.NewPCG(5, 6))
	var placed []Result
	for range 3 {
		placed = append(placed, placeRound(t, []*Engine{a}, rng, 8, 5)...)
	}
	const sku = "s0-0"
	ref, _ := a.core.dir.lookup(sku)
	p := ref.partition()
	tc.add(b, p) // B fences p's journal; A has not been told
	if !a.Owns(p) || !b.Owns(p) {
		t.Fatal("both nodes should believe they serve the partition")
	}
	order := Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "late", Channel: "app", Items: []Item{{SKUID: sku, Quantity: 1}}}}
	if r := a.Do(context.Background(), order); r.Code != CodeUnavailable {
		t.Fatalf("the fenced owner answered %v", r.Code)
	}
	if err := a.Err(); !errors.Is(err, jetstream.ErrFenced) {
		t.Fatalf("a's engine error is %v, not fenced", err)
	}
	if a.Owns(p) {
		t.Fatal("a stopped engine still claims the partition")
	}
	if r := a.Do(context.Background(), order); r.Code != CodeUnavailable {
		t.Fatalf("the stopped engine answered %v", r.Code)
	}
	if err := a.LosePartition(p); err == nil {
		t.Fatal("losing a partition whose record failed reported no error")
	}
	// B goes on ordering on p.
	if r := b.Do(context.Background(), order); r.Code != CodeOK {
		t.Fatalf("the new owner answered %v", r.Code)
	}
	a.Close()
	a2 := tc.open("a", nil)
	waitConverged(t, b, a2)
	// The refused order is nowhere: p holds the orders acknowledged by A
	// and the one B took.
	want := 1
	for _, r := range placed {
		if r.OrderID.Partition() == p {
			want++
		}
	}
	if n := len(a2.core.partitions[p].orders); n != want {
		t.Fatalf("partition %d holds %d orders after the fence, want %d", p, n, want)
	}
}

// TestClusterLeaseLostCleanly: a lease lost with nothing in flight (every
// record stored) leaves the engine running; the partition is followed
// again and the new owner's orders reach it.
func TestClusterLeaseLostCleanly(t *testing.T) {
	tc := startTestCluster(t, 1)
	a := tc.open("a", nil)
	b := tc.open("b", nil)
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 4, 5, 100)
	rng := rand.New(rand.NewPCG(7, 8))
	placed := placeRound(t, []*Engine{a}, rng, 4, 5)
	for p := range clusterPartitions {
		if err := a.LosePartition(p); err != nil {
			t.Fatal(err)
		}
		tc.add(b, p)
	}
	if a.Err() != nil {
		t.Fatal(a.Err())
	}
	placed = append(placed, placeRound(t, []*Engine{a, b}, rng, 4, 5)...)
	waitConverged(t, b, a)
	checkOrdersOnce(t, a, placed, 100)
}

// TestClusterRestartLoadsSnapshots: A snapshots every partition, its
// streams are purged behind the snapshots, and a restarted A (and a new
// node) load them and replay only the tail: replaying a purged stream from
// its start would fail.
func TestClusterRestartLoadsSnapshots(t *testing.T) {
	tc := startTestCluster(t, 1)
	retainAll := func(int) uint64 { return 1 << 62 } // no read model holds anything back
	a := tc.open("a", retainAll)
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 6, 10, 1000)
	rng := rand.New(rand.NewPCG(9, 10))
	randomOrders(a, rng, 10, 6, 10)
	for range 2 { // two snapshots: the older one is kept, the stream purged behind it
		if err := a.Snapshot(); err != nil {
			t.Fatal(err)
		}
		randomOrders(a, rng, 5, 6, 10)
	}
	if n := a.Stats().Snapshots.Load(); n != 2*clusterPartitions {
		t.Fatalf("%d snapshots written, want %d", n, 2*clusterPartitions)
	}
	want := make([]string, clusterPartitions)
	for p := range want {
		want[p] = partitionDigest(a, p)
	}
	if err := a.Close(); err != nil { // a final snapshot of each partition
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterWaitMax)
	defer cancel()
	probe := tc.clusterConfig("probe", nil)
	for p := range clusterPartitions {
		s, err := probe.OpenStream(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Replay(0, func(journal.Position, []byte) error { return nil }); !errors.Is(err, journal.ErrRemoved) {
			t.Fatalf("partition %d's stream replays from its start (%v): it was not purged behind the snapshots", p, err)
		}
	}
	a2 := tc.open("a", retainAll)
	for p := range clusterPartitions {
		if got := partitionDigest(a2, p); got != want[p] {
			t.Fatalf("partition %d after restart:\n%.300s\nwant\n%.300s", p, got, want[p])
		}
	}
	tc.add(a2, allPartitions()...)
	randomOrders(a2, rng, 5, 6, 10)
	b := tc.open("b", nil)
	waitConverged(t, a2, b)
}

// BenchmarkClusterSubmit is BenchmarkSubmit on a node serving every
// partition of a cluster, its journals on embedded servers that fsync
// every write, with a follower on another connection keeping up. The
// clients wait for each batch, so with few of them the figure is bounded
// by the replicated fsync's latency, not by the engine.
func BenchmarkClusterSubmit(b *testing.B) {
	for _, servers := range []int{1, 3} {
		for _, clients := range []int{4, 64} {
			b.Run(fmt.Sprintf("servers=%d/clients=%d", servers, clients), func(b *testing.B) {
				tc := startTestCluster(b, servers)
				e := tc.open("a", nil)
				tc.add(e, allPartitions()...)
				tc.open("b", nil)
				benchSubmit(b, e, clients, func(bt *Batch) { e.Submit(bt); bt.Wait() })
			})
		}
	}
}

// TestLocateChangesNothing: a cluster node locates a request to forward it,
// so locating must not reserve its idempotency key nor answer from the
// gates (the owner's state decides those).
func TestLocateChangesNothing(t *testing.T) {
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 4, Workers: 1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, cmd := range []Command{
		{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}},
		{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Kind: MerchantTrader}},
		{Kind: KindUpsertSKU, SKU: &SKU{ID: "gone", MerchantID: "m", BrandID: "b", Price: 100, Stock: 1}},
	} {
		if res := e.Do(context.Background(), cmd); res.Code != CodeOK {
			t.Fatalf("%v: %v", cmd.Kind, res.Code)
		}
	}
	order := func(key string) *Request {
		return &Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", IdempotencyKey: key, Items: []Item{{SKUID: "gone", Quantity: 1}}}}}
	}
	if res := e.Do(context.Background(), order("").Command); res.Code != CodeOK {
		t.Fatalf("last unit: %v", res.Code)
	}
	// Sold out now: the router answers out_of_stock, Locate only finds
	// the partition.
	if _, ok := e.core.route(order("")); ok {
		t.Fatal("the router let an order for a sold-out SKU through")
	}
	rejected := e.Stats().GatewayRejected.Load()
	r := order("")
	if _, ok := e.Locate(r); !ok || r.Result.Code != CodeOK {
		t.Fatalf("Locate of a sold-out SKU's order: ok %v, %v", ok, r.Result.Code)
	}
	if got := e.Stats().GatewayRejected.Load(); got != rejected {
		t.Fatalf("Locate counted a rejection: %d, was %d", got, rejected)
	}
	// A key located is not reserved: its first use on another merchant's
	// partition would otherwise be refused as a mismatch.
	keyHash := hashString("k-1") | 1
	if _, ok := e.Locate(order("k-1")); !ok {
		t.Fatal("Locate of a keyed order")
	}
	owner, _, err := e.core.keys.reserve(keyHash, 3, e.core.disk)
	if err != nil || owner != 3 {
		t.Fatalf("after Locate the key belongs to partition %d (%v), want it free", owner, err)
	}
	// Unknown SKUs and bad input are still answered.
	bad := &Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "nope", Quantity: 1}}}}}
	if _, ok := e.Locate(bad); ok || bad.Result.Code != CodeNotFound {
		t.Fatalf("unknown SKU: ok %v, %v", ok, bad.Result.Code)
	}
}

// TestClusterStaleLeaseAnswersNothing (the review's defect 2): with
// Cluster.Leased, a served partition whose lease is not surely valid any
// more answers neither a read nor a refusal from its state, and tries no
// write: everything is CodeUnavailable with Field UnavailableLease, and the
// engine goes on, answering again once the lease is extended.
func TestClusterStaleLeaseAnswersNothing(t *testing.T) {
	tc := startTestCluster(t, 1)
	cl := tc.clusterConfig("a", nil)
	cl.Leased = true
	a, err := Open(Config{Partitions: clusterPartitions, Cluster: cl, Logger: quiet, IdleTick: -1, PaymentTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for p := range clusterPartitions {
		a.ExtendLease(p, time.Hour)
	}
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 2, 2, 10)
	const sku = "s0-0"
	ref, _ := a.core.dir.lookup(sku)
	p := ref.partition()
	read := Command{Kind: KindGetSKU, SKUID: sku}
	refused := Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "x", Channel: "app", Items: []Item{{SKUID: sku, Quantity: 11}}}}
	write := Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "x", Channel: "app", Items: []Item{{SKUID: sku, Quantity: 1}}}}
	ctx := context.Background()
	if r := a.Do(ctx, read); r.Code != CodeOK {
		t.Fatalf("read under a valid lease: %v", r.Code)
	}
	if r := a.Do(ctx, refused); r.Code != CodeOutOfStock {
		t.Fatalf("refusal under a valid lease: %v", r.Code)
	}
	a.ExtendLease(p, -time.Millisecond) // the last renewal is too old now
	for _, cmd := range []Command{read, refused, write} {
		if r := a.Do(ctx, cmd); r.Code != CodeUnavailable || r.Field != UnavailableLease {
			t.Fatalf("%v under a lease no longer surely valid: %v %q, want unavailable (lease)", cmd.Kind, r.Code, r.Field)
		}
	}
	if a.Err() != nil {
		t.Fatalf("the engine stopped: %v", a.Err())
	}
	if got := a.Stats().LeaseNotValid.Load(); got != 3 {
		t.Fatalf("%d commands counted as refused for the lease, want 3", got)
	}
	a.ExtendLease(p, time.Hour) // renewed
	if r := a.Do(ctx, write); r.Code != CodeOK {
		t.Fatalf("write once renewed: %v", r.Code)
	}
}

// errHeldBack is what a heldPendingStream's follow fails with while its
// partition is held.
var errHeldBack = errors.New("held back by the test")

// heldPendingStream is a partition's stream (a jetstream.Reader) whose
// follow fails at its first record while the partition is held: a
// follower stuck retrying, which knows the stream has records it has not
// applied.
type heldPendingStream struct {
	*jetstream.Reader
	p int
	h *streamHold
}

func (s heldPendingStream) FollowPending(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error, pending func(uint64)) error {
	return s.Reader.FollowPending(ctx, from, func(end journal.Position, rec []byte) error {
		if s.h.isHeld(s.p) {
			return errHeldBack
		}
		return fn(end, rec)
	}, pending)
}

// TestClusterNotFoundWhileBehind (the review's defect 3): a SKU created on
// its owner is answered "unavailable, retry" rather than "not found" on a
// node whose follower of the partition is stuck behind it, in Locate and
// in Submit; a known SKU routes as before meanwhile, and once the follower
// has caught up the SKU is found and an unknown one is "not found" again.
func TestClusterNotFoundWhileBehind(t *testing.T) {
	tc := startTestCluster(t, 1)
	a := tc.open("a", nil)
	var hold streamHold
	cl := tc.clusterConfig("b", nil)
	open := cl.OpenStream
	cl.OpenStream = func(ctx context.Context, p int) (Stream, error) {
		s, err := open(ctx, p)
		if err != nil {
			return nil, err
		}
		return heldPendingStream{Reader: s.(*jetstream.Reader), p: p, h: &hold}, nil
	}
	b, err := Open(Config{Partitions: clusterPartitions, Cluster: cl, Logger: quiet, IdleTick: -1, PaymentTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 2, 2, 10)
	waitConverged(t, a, b)
	for p := range clusterPartitions {
		if n, known := b.FollowerLag(p); !known || n != 0 {
			t.Fatalf("partition %d: follower lag %d (known %v) once converged", p, n, known)
		}
	}
	ref, _ := a.core.dir.lookup("s0-0")
	p := ref.partition()
	hold.hold(p)
	mustBatch(t, a, batchOf(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "fresh", MerchantID: "m0", BrandID: "b", Price: 100, Stock: 5}}))
	deadline := time.Now().Add(clusterWaitMax)
	for {
		if n, known := b.FollowerLag(p); !known || n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held follower never knew it was behind")
		}
		time.Sleep(5 * time.Millisecond)
	}
	locate := func(sku string) (Result, bool) {
		r := Request{Command: Command{Kind: KindGetSKU, SKUID: sku}}
		_, ok := b.Locate(&r)
		return r.Result, ok
	}
	if r, ok := locate("fresh"); ok || r.Code != CodeUnavailable || r.Field != UnavailableFollowing {
		t.Fatalf("locate of a SKU the stuck follower has not read: ok %v, %v %q; want unavailable (following)", ok, r.Code, r.Field)
	}
	order := Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "x", Channel: "app", Items: []Item{{SKUID: "fresh", Quantity: 1}}}}
	if r := b.Do(context.Background(), order); r.Code != CodeUnavailable || r.Field != UnavailableFollowing {
		t.Fatalf("order for it on the lagging node: %v %q; want unavailable (following)", r.Code, r.Field)
	}
	if _, ok := locate("s0-0"); !ok {
		t.Fatal("a known SKU does not route while a follower is behind")
	}
	hold.release(p)
	waitConverged(t, a, b)
	if _, ok := locate("fresh"); !ok {
		t.Fatal("the SKU is not found once the follower caught up")
	}
	if r, ok := locate("never"); ok || r.Code != CodeNotFound {
		t.Fatalf("an unknown SKU once caught up: ok %v, %v; want not found", ok, r.Code)
	}
}

// blockingSnapshots is a partition's snapshot store whose writes wait
// until their context ends: a snapshot far slower than a hand-off.
type blockingSnapshots struct {
	PartitionSnapshots
	started chan struct{}
}

func (s blockingSnapshots) WriteFrom(ctx context.Context, pos journal.Position, fn func(w io.Writer) error) error {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestClusterHandOffCancelsSnapshot (part of the review's defect 5): a
// background snapshot under way does not hold a RemovePartition up: the
// hand-off cancels it.
func TestClusterHandOffCancelsSnapshot(t *testing.T) {
	tc := startTestCluster(t, 1)
	cl := tc.clusterConfig("a", nil)
	started := make(chan struct{}, 1)
	openSnaps := cl.OpenSnapshots
	cl.OpenSnapshots = func(ctx context.Context, p int) (PartitionSnapshots, error) {
		s, err := openSnaps(ctx, p)
		if err != nil {
			return nil, err
		}
		return blockingSnapshots{PartitionSnapshots: s, started: started}, nil
	}
	cl.SnapshotEveryBytes = 1 // a snapshot after every record
	a, err := Open(Config{Partitions: clusterPartitions, Cluster: cl, Logger: quiet, IdleTick: -1, PaymentTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 1, 1, 10)
	select {
	case <-started:
	case <-time.After(clusterWaitMax):
		t.Fatal("no background snapshot started")
	}
	done := make(chan error, clusterPartitions)
	go func() {
		for p := range clusterPartitions {
			done <- a.RemovePartition(context.Background(), p)
		}
	}()
	for range clusterPartitions {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("hand-off: %v", err)
			}
		case <-time.After(clusterWaitMax):
			t.Fatal("a hand-off waits for the snapshot under way")
		}
	}
	if a.Err() != nil {
		t.Fatalf("engine stopped: %v", a.Err())
	}
}

// batchOf is a batch of cmds.
func batchOf(cmds ...Command) *Batch {
	b := NewBatch(len(cmds))
	for _, c := range cmds {
		b.Add(c)
	}
	return b
}

// stuckOnceStream is a partition's stream whose first follow delivers
// nothing and never returns, not even when its context ends (as a read
// stuck in nats.go after a server was killed), until unstick is closed.
type stuckOnceStream struct {
	*jetstream.Reader
	calls   *atomic.Int32
	unstick chan struct{}
}

func (s stuckOnceStream) FollowPending(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error, pending func(uint64)) error {
	if s.calls.Add(1) == 1 {
		<-s.unstick
		return errHeldBack
	}
	return s.Reader.FollowPending(ctx, from, fn, pending)
}

// TestClusterStuckFollowerIsMadeAgain: a follower whose read is stuck (it
// delivers nothing and does not return) while its stream moves on is
// left behind and made again, and the node converges with the owner.
func TestClusterStuckFollowerIsMadeAgain(t *testing.T) {
	tc := startTestCluster(t, 1)
	a := tc.open("a", nil)
	unstick := make(chan struct{})
	defer close(unstick)
	var calls [clusterPartitions]atomic.Int32
	cl := tc.clusterConfig("b", nil)
	open := cl.OpenStream
	cl.OpenStream = func(ctx context.Context, p int) (Stream, error) {
		s, err := open(ctx, p)
		if err != nil {
			return nil, err
		}
		return stuckOnceStream{Reader: s.(*jetstream.Reader), calls: &calls[p], unstick: unstick}, nil
	}
	b, err := Open(Config{Partitions: clusterPartitions, Cluster: cl, Logger: quiet, IdleTick: -1, PaymentTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 2, 2, 10)
	waitConverged(t, a, b)
	for p := range clusterPartitions {
		if n := calls[p].Load(); n < 2 && a.PartitionPosition(p) > 0 {
			t.Fatalf("partition %d: followed %d times, want the stuck follow made again", p, n)
		}
	}
}
