package projection_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fest-platform/fest/internal/cluster"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/lease"
	"github.com/fest-platform/fest/internal/natsserver"
	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
)

// clusterWaitMax bounds every wait of the cluster tests; nothing asserts a
// duration.
const clusterWaitMax = 20 * time.Second

const clusterPartitions = 8

// clusterNode is one fest node with its read models.
type clusterNode struct {
	node  *cluster.Node
	reads *testRunner
}

func startClusterNode(t *testing.T, servers *natsserver.LocalCluster, name string) *clusterNode {
	t.Helper()
	nc, err := nats.Connect(servers.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), clusterWaitMax)
	defer cancel()
	n, err := cluster.StartNode(ctx, cluster.NodeConfig{
		Conn: nc, Name: name, Address: "http://" + name, Partitions: clusterPartitions, Replicas: 1,
		Engine: engine.Config{IdleTick: -1, PaymentTimeout: time.Hour},
		Lease:  lease.Config{TTL: time.Second},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := orders.Open(orders.Config{})
	board, err := gmvp.New(gmvp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := newTR(projection.Config{Dir: filepath.Join(t.TempDir(), "projections"), Logger: quiet}, store, board)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(n.Engine())
	cn := &clusterNode{node: n, reads: r}
	t.Cleanup(func() {
		n.Close()
		r.Close()
	})
	return cn
}

// clusterDo sends cmd to the node serving its partition, retrying while no
// node does (a partition changing hands).
func clusterDo(t *testing.T, nodes []*clusterNode, cmd engine.Command) (engine.Result, *clusterNode) {
	t.Helper()
	deadline := time.Now().Add(clusterWaitMax)
	for {
		r := engine.Request{Command: cmd}
		p, ok := nodes[0].node.Engine().Locate(&r)
		if !ok {
			return r.Result, nil
		}
		for _, n := range nodes {
			if n.node.Engine().Owns(p) {
				if res := n.node.Engine().Do(context.Background(), cmd); res.Code != engine.CodeUnavailable {
					return res, n
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition %d unavailable on every node", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterReadModelsCoverEveryPartition checks that in cluster mode each
// node's read models hold every partition's orders, whichever node wrote
// them: every order in every node's store with its status, GMV the sum of
// the paid orders on every node, a scan's result waited for on its
// partition's position, and a node started afterwards rebuilding the same
// from the streams.
func TestClusterReadModelsCoverEveryPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterWaitMax)
	defer cancel()
	servers, err := natsserver.StartLocalCluster(ctx, t.TempDir(), 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { servers.Close() })
	nodes := []*clusterNode{startClusterNode(t, servers, "a"), startClusterNode(t, servers, "b")}

	const merchants, skusPer = 8, 2
	cmds := []engine.Command{{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b", Name: "B", Country: "CN"}}}
	for m := range merchants {
		cmds = append(cmds, engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m" + strconv.Itoa(m), BrandID: "b", Kind: engine.MerchantFactory, Region: "CN-ZJ"}})
		for i := range skusPer {
			cmds = append(cmds, engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: fmt.Sprintf("s%d-%d", m, i), MerchantID: "m" + strconv.Itoa(m), BrandID: "b", Price: 100, Stock: 10000}})
		}
	}
	for _, c := range cmds {
		// A merchant or SKU may land on a node that has not yet followed
		// the brand (or merchant) written on another: a not-found then is
		// the stream's delivery lag, retried until the deadline.
		deadline := time.Now().Add(clusterWaitMax)
		for {
			r, _ := clusterDo(t, nodes, c)
			if r.OK() {
				break
			}
			if r.Code != engine.CodeNotFound || time.Now().After(deadline) {
				t.Fatalf("%v: %v", c.Kind, r.Err())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	placed := map[engine.OrderID]engine.OrderStatus{}
	var gmv int64
	for range 200 {
		sku := fmt.Sprintf("s%d-%d", rng.IntN(merchants), rng.IntN(skusPer))
		r, _ := clusterDo(t, nodes, engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u", Channel: "app", Region: "CN-BJ",
			Items: []engine.Item{{SKUID: sku, Quantity: int32(1 + rng.IntN(3))}}}})
		if !r.OK() {
			t.Fatalf("order: %v", r.Err())
		}
		placed[r.OrderID] = engine.StatusPending
		if rng.IntN(2) == 0 {
			pr, owner := clusterDo(t, nodes, engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total})
			if !pr.OK() {
				t.Fatalf("pay: %v", pr.Err())
			}
			placed[r.OrderID] = engine.StatusPaid
			gmv += r.Total
			// Read your write on the owner, by the result's partition
			// position.
			wctx, wcancel := context.WithTimeout(context.Background(), clusterWaitMax)
			if err := owner.reads.WaitResult(wctx, r.OrderID.Partition(), pr.Position); err != nil {
				t.Fatal(err)
			}
			wcancel()
			if o, err := owner.reads.store.Get(r.OrderID); err != nil || o.Status != engine.StatusPaid {
				t.Fatalf("order %v on its owner right after its payment: %v %v", r.OrderID, o.Status, err)
			}
		}
	}

	check := func(n *clusterNode, name string) {
		t.Helper()
		// A node's reads reflect what its engine has followed, which
		// trails the owners by the streams' delivery: wait for that first.
		deadline := time.Now().Add(clusterWaitMax)
		for p := range clusterPartitions {
			for {
				owned := uint64(0)
				for _, m := range nodes {
					owned = max(owned, m.node.Engine().PartitionDurable(p))
				}
				if n.node.Engine().PartitionDurable(p) >= owned {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %s: partition %d followed to %d of %d", name, p, n.node.Engine().PartitionDurable(p), owned)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		wctx, wcancel := context.WithTimeout(context.Background(), clusterWaitMax)
		defer wcancel()
		if err := n.reads.WaitDurable(wctx); err != nil {
			for p := range clusterPartitions {
				t.Logf("partition %d: durable %d, applied %d, served %v", p, n.node.Engine().PartitionDurable(p), n.reads.Watermark().AppliedPartition(p), n.node.Engine().Owns(p))
			}
			t.Fatalf("node %s: %v (runner: %v)", name, err, n.reads.Err())
		}
		for id, want := range placed {
			o, err := n.reads.store.Get(id)
			if err != nil || o.Status != want {
				t.Fatalf("node %s: order %v: %v %v, want %v", name, id, o.Status, err, want)
			}
		}
		tot := gmvTotals(n.reads.gmv)
		if tot.GMV != gmv || tot.OrdersPlaced != uint64(len(placed)) {
			t.Fatalf("node %s: GMV %d of %d orders, want %d of %d", name, tot.GMV, tot.OrdersPlaced, gmv, len(placed))
		}
		if err := n.reads.Err(); err != nil {
			t.Fatalf("node %s: %v (runner: %v)", name, err, n.reads.Err())
		}
	}
	check(nodes[0], "a")
	check(nodes[1], "b")
	c := startClusterNode(t, servers, "c")
	nodes = append(nodes, c)
	check(c, "c (started afterwards)")
}
