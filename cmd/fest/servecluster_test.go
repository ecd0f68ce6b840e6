package main

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/journal/jetstream"
)

// TestClusterNodeRejoinsInPlace: a node whose write is fenced (another
// writer took its partitions' streams, as a new owner does while the node
// is paused past its lease) rejoins as a follower in the same process: its
// HTTP listener and embedded NATS server stay up, a fresh engine replays
// the streams, its leases come back, orders are taken again, and
// fest_cluster_rejoins_total counts it.
func TestClusterNodeRejoinsInPlace(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	const partitions = 2
	o, _, err := parseServeFlags("serve", []string{"--data", t.TempDir(), "--addr", "127.0.0.1:0",
		"--admin-token", "ad", "--storefront-token", "st", "--carrier-token", "ca",
		"--journal", "nats", "--node", "n1", "--nats-listen", "127.0.0.1:" + strconv.Itoa(natsPort),
		"--partitions", strconv.Itoa(partitions), "--lease-ttl", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rejoined := make(chan struct{})
	logs := &lineWatch{want: "cluster node rejoined as a follower", seen: rejoined}
	rs, err := startServer(ctx, o, io.Discard, logs)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- rs.wait(ctx) }()
	if err := waitReady(ctx, rs.URL); err != nil {
		t.Fatal(err)
	}
	admin, shop := testClients(t, rs)
	defer admin.Close()
	defer shop.Close()
	// eventually retries a call while it answers 503 (leases being
	// acquired, the node rejoining).
	eventually := func(what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			err := f()
			var ce *client.Error
			if err == nil || !errors.As(err, &ce) || ce.Status != 503 || time.Now().After(deadline) {
				if err != nil {
					t.Fatalf("%s: %v\n%s", what, err, logs.String())
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	eventually("brand", func() error {
		_, err := admin.PutBrand(ctx, client.Brand{ID: "b1", Name: "B", Country: "CN"})
		return err
	})
	eventually("merchant", func() error {
		_, err := admin.PutMerchant(ctx, client.Merchant{ID: "m1", Name: "M", BrandID: "b1", Kind: "factory"})
		return err
	})
	eventually("sku", func() error {
		_, err := admin.PutSKU(ctx, client.SKU{ID: "s1", MerchantID: "m1", BrandID: "b1", Title: "T", Category: "c", Price: 100, Stock: 1000})
		return err
	})
	order := client.OrderRequest{BuyerID: "u1", Items: []client.Item{{SKUID: "s1", Quantity: 1}}}
	var first client.Order
	eventually("order", func() (err error) { first, err = shop.PlaceOrder(ctx, order); return err })

	// Another writer fences every partition's stream at an epoch past the
	// node's (lease revisions grow bucket-wide, so the node's next
	// acquisition is later still).
	view, err := admin.Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var epoch uint64
	for _, p := range view.Partitions {
		epoch = max(epoch, p.LeaseRevision+1)
	}
	nc, err := nats.Connect("nats://127.0.0.1:" + strconv.Itoa(natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for p := range partitions {
		j, err := jetstream.Open(ctx, jetstream.Config{Conn: nc, Partition: p, Replicas: 1, Epoch: epoch})
		if err != nil {
			t.Fatalf("fence partition %d: %v", p, err)
		}
		j.Close()
	}
	// The node's next write is refused; it rejoins, and takes orders again.
	if _, err := shop.PlaceOrder(ctx, order); err == nil {
		t.Fatalf("an order after the fence was acknowledged")
	}
	select {
	case <-rejoined:
	case err := <-served:
		t.Fatalf("the server stopped instead of rejoining: %v\n%s", err, logs.String())
	case <-time.After(time.Minute):
		t.Fatalf("no rejoin:\n%s", logs.String())
	}
	eventually("order after the rejoin", func() error { _, err := shop.PlaceOrder(ctx, order); return err })
	eventually("the first order after the rejoin", func() error {
		got, err := shop.GetOrder(ctx, first.ID)
		if err == nil && got.ID != first.ID {
			t.Fatalf("order %s read back as %s", first.ID, got.ID)
		}
		return err
	})
	if n, err := admin.Metric(ctx, "fest_cluster_rejoins_total"); err != nil || n != 1 {
		t.Errorf("fest_cluster_rejoins_total %v, %v; want 1", n, err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("server: %v", err)
	}
}
