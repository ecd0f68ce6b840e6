package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/journal"
)

// streamHold holds back the records of chosen partitions from a node's
// followers, so that a test can make two owners decide while each lags
// behind the other, deterministically.
type streamHold struct {
	mu   sync.Mutex
	held map[int]chan struct{} // closed on release
}

func (h *streamHold) hold(p int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		h.held = make(map[int]chan struct{})
	}
	h.held[p] = make(chan struct{})
}

func (h *streamHold) release(p int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.held[p])
	delete(h.held, p)
}

func (h *streamHold) isHeld(p int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[p] != nil
}

func (h *streamHold) wait(ctx context.Context, p int) error {
	h.mu.Lock()
	ch := h.held[p]
	h.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// heldStream is a partition's stream whose followed records wait for the
// partition's release.
type heldStream struct {
	Stream
	p int
	h *streamHold
}

func (s heldStream) Follow(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error) error {
	return s.Stream.Follow(ctx, from, func(end journal.Position, rec []byte) error {
		if err := s.h.wait(ctx, s.p); err != nil {
			return err
		}
		return fn(end, rec)
	})
}

// openHeld opens a node whose followers h can hold back; without
// snapshots its start replays every stream whole.
func (tc *testCluster) openHeld(node string, h *streamHold, snapshots bool) *Engine {
	tc.t.Helper()
	cl := tc.clusterConfig(node, nil)
	open := cl.OpenStream
	cl.OpenStream = func(ctx context.Context, p int) (Stream, error) {
		s, err := open(ctx, p)
		if err != nil {
			return nil, err
		}
		return heldStream{Stream: s, p: p, h: h}, nil
	}
	if !snapshots {
		cl.OpenSnapshots = nil
	}
	e, err := Open(Config{Partitions: clusterPartitions, Cluster: cl, Logger: quiet, IdleTick: -1, PaymentTimeout: time.Hour})
	if err != nil {
		tc.t.Fatalf("open node %s: %v", node, err)
	}
	tc.t.Cleanup(func() { e.Close() })
	return e
}

// TestClusterDupIDsAcrossOwners: the owners of two partitions each accept
// SKU "dup" and deal "deal-dup" for a merchant of their own while each
// lags behind the other's stream (the review's defect 1). When the records
// meet, no node panics: on both, and on nodes started afterwards from the
// snapshots and from the streams alone, both ids are ambiguous, every
// request naming them is answered conflict, and the rest goes on.
func TestClusterDupIDsAcrossOwners(t *testing.T) {
	tc := startTestCluster(t, 1)
	var holdA, holdB streamHold
	a := tc.openHeld("a", &holdA, true)
	b := tc.openHeld("b", &holdB, true)
	tc.add(a, allPartitions()...)
	testCatalog(t, a, 8, 1, 10)
	if r := a.Do(context.Background(), Command{Kind: KindPutChannel, Channel: &Channel{ID: "c", Title: "C", Host: "H", StartsAt: 0, EndsAt: 1 << 62}}); !r.OK() {
		t.Fatal(r.Err())
	}
	waitConverged(t, a, b)
	mp, mq := dupMerchants(t, a.core)
	// testCatalog names merchant m<i>'s one SKU s<i>-0.
	sp, sq := "s"+mp[1:]+"-0", "s"+mq[1:]+"-0"
	p, q := a.core.merchantPartition(mp), a.core.merchantPartition(mq)
	if err := a.RemovePartition(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	tc.add(b, q)
	holdA.hold(q)
	holdB.hold(p)

	decide := func(e *Engine, merchant, sku string) {
		t.Helper()
		for _, cmd := range []Command{
			{Kind: KindUpsertSKU, SKU: &SKU{ID: "dup", MerchantID: merchant, BrandID: "b", Price: 300, Stock: 20}},
			{Kind: KindPutDeal, Deal: &Deal{ID: "deal-dup", ChannelID: "c", SKUID: sku, Price: 50, Stock: 5, StartsAt: 0, EndsAt: 1 << 62}},
			{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "dup", Quantity: 2}}}},
			{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "deal-dup", Items: []Item{{SKUID: sku, Quantity: 1}}}},
		} {
			if r := e.Do(context.Background(), cmd); !r.OK() {
				t.Fatalf("%v on %s's partition while the other lags: %v", cmd.Kind, merchant, r.Err())
			}
		}
	}
	decide(a, mp, sp)
	decide(b, mq, sq)
	holdA.release(q)
	holdB.release(p)
	waitConverged(t, a, b)

	check := func(name string, e *Engine) {
		t.Helper()
		if err := e.Err(); err != nil {
			t.Fatalf("node %s stopped: %v", name, err)
		}
		if skus, deals := e.AmbiguousIDs(); skus != 1 || deals != 1 {
			t.Errorf("node %s: %d ambiguous sku ids and %d deal ids, want 1 and 1", name, skus, deals)
		}
		for _, tt := range []struct {
			cmd   Command
			field string
		}{
			{Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "dup", Quantity: 1}}}}, "items[0].sku_id"},
			{Command{Kind: KindGetSKU, SKUID: "dup"}, "sku_id"},
			{Command{Kind: KindAdjustStock, SKUID: "dup", Delta: 1}, "sku_id"},
			{Command{Kind: KindGetDeal, Deal: &Deal{ID: "deal-dup"}}, "deal_id"},
		} {
			r := Request{Command: tt.cmd}
			if _, ok := e.Locate(&r); ok || r.Result.Code != CodeConflict || !r.Result.Ambiguous || r.Result.Field != tt.field {
				t.Errorf("node %s: locate %v: %v ambiguous %v field %q, want conflict on %q", name, tt.cmd.Kind, r.Result.Code, r.Result.Ambiguous, r.Result.Field, tt.field)
			}
		}
		// Both SKUs keep their own state: 20 units, 2 of them reserved.
		for _, part := range []int{p, q} {
			n := 0
			for slot, st := range e.core.partitions[part].skus {
				if e.core.partitions[part].skuID(uint32(slot)) == "dup" {
					n++
					if st.available != 18 || st.reserved != 2 {
						t.Errorf("node %s partition %d's dup: available %d reserved %d, want 18 and 2", name, part, st.available, st.reserved)
					}
				}
			}
			if n != 1 {
				t.Errorf("node %s partition %d: %d SKUs dup, want 1", name, part, n)
			}
		}
	}
	check("a", a)
	check("b", b)

	// The owners answer the same through Do, and serve other ids as ever.
	for _, e := range []*Engine{a, b} {
		if r := e.Do(context.Background(), Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "deal-dup", Items: []Item{{SKUID: sp, Quantity: 1}}}}); r.Code != CodeConflict || !r.Ambiguous || r.Field != "deal_id" {
			t.Errorf("deal order: %v ambiguous %v field %q", r.Code, r.Ambiguous, r.Field)
		}
	}
	if r := a.Do(context.Background(), Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "dup", MerchantID: mp, BrandID: "b", Price: 1, StockOmitted: true}}); r.Code != CodeConflict || !r.Ambiguous {
		t.Errorf("upsert of dup by its merchant: %v ambiguous %v", r.Code, r.Ambiguous)
	}
	for _, order := range []struct {
		e   *Engine
		sku string
	}{{a, sp}, {b, sq}} {
		if r := order.e.Do(context.Background(), Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: order.sku, Quantity: 1}}}}); !r.OK() {
			t.Errorf("order on %s: %v", order.sku, r.Err())
		}
	}
	waitConverged(t, a, b)

	// A node started later, from the snapshots and their tails, and one
	// from the streams alone, reach the same state.
	if err := a.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := b.Snapshot(); err != nil {
		t.Fatal(err)
	}
	var none streamHold
	fromSnapshots := tc.openHeld("c", &none, true)
	fromStreams := tc.openHeld("d", &none, false)
	for name, e := range map[string]*Engine{"from snapshots": fromSnapshots, "from the streams": fromStreams} {
		waitConverged(t, a, e)
		check(name, e)
	}
}
