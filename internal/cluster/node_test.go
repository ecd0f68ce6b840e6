package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fest-platform/fest/internal/engine"
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
		Lease:  lease.Config{TTL: time.Second},
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
