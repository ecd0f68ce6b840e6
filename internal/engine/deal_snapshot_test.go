package engine

import (
	"context"
	"math/rand/v2"
	"testing"
)

// roundTrip encodes every partition of h and decodes it into a new core,
// returning the first error.
func roundTrip(h *harness) (*core, error) {
	restored := newCore(len(h.c.partitions), modelTimeout, 1<<40, 1<<20)
	for i, p := range h.c.partitions {
		data := encodePartition(nil, p)
		if err := restored.decodePartition(restored.partitions[i], data, snapshotVersion); err != nil {
			return nil, err
		}
	}
	return restored, nil
}

// TestDealSnapshotLargeNumbers round-trips deals whose units, a buyer's
// units and a pending order's deal slot are far larger than the bytes of
// the partition's data: they are values, not lengths, and a snapshot
// holding them must read back. Before, a deal of 50,000 units made every
// snapshot unreadable.
func TestDealSnapshotLargeNumbers(t *testing.T) {
	tests := []struct {
		name  string
		stock int64
		limit int64
		buy   int32
	}{
		{"a deal of 50,000 units", 50_000, 0, 0},
		{"a deal of the largest stock", stockMax, 0, 0},
		{"a buyer holding more units than the data has bytes", 50_000, 50_000, quantityMax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := liveHarness(t, stockMax)
			h.now = 10
			if r := h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 500, Stock: tt.stock, StartsAt: 0, EndsAt: 1 << 40, LimitPerBuyer: tt.limit}}); !r.OK() {
				t.Fatalf("put deal: %v", r.Err())
			}
			if tt.buy > 0 {
				if r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s", Quantity: tt.buy}}}}); !r.OK() {
					t.Fatalf("deal order: %v", r.Err())
				}
			}
			restored, err := roundTrip(h)
			if err != nil {
				t.Fatalf("decode snapshot: %v", err)
			}
			if got, want := restored.dump(), h.c.dump(); got != want {
				t.Fatalf("snapshot state differs:\n%s\nlive:\n%s", got, want)
			}
		})
	}
}

// TestRestartAfterLargeDeal runs an engine with a deal of 50,000 units
// through two snapshots, so that retention removes the journal before the
// older one, and restarts it: the snapshots must load, or the engine
// cannot start at all.
func TestRestartAfterLargeDeal(t *testing.T) {
	dir := t.TempDir()
	cfg := snapshotTestConfig(dir)
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	testCatalog(t, e, 6, 10, 100_000)
	if r := e.Do(ctx, Command{Kind: KindPutChannel, Channel: &Channel{ID: "c", Title: "C", Host: "H", StartsAt: 0, EndsAt: 1 << 62}}); !r.OK() {
		t.Fatalf("put channel: %v", r.Err())
	}
	if r := e.Do(ctx, Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s0-0", Price: 1, Stock: 50_000, StartsAt: 0, EndsAt: 1 << 62, LimitPerBuyer: 20_000}}); !r.OK() {
		t.Fatalf("put deal: %v", r.Err())
	}
	if r := e.Do(ctx, Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s0-0", Quantity: 900}}}}); !r.OK() {
		t.Fatalf("deal order: %v", r.Err())
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2 {
		randomOrders(e, rng, 30, 6, 10)
		if err := e.Snapshot(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
	}
	randomOrders(e, rng, 30, 6, 10)
	live := e.core.dump()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(cfg)
	if err != nil {
		t.Fatalf("reopen after a large deal: %v", err)
	}
	defer e.Close()
	if got := e.core.dump(); got != live {
		t.Fatal("state after the restart differs from the live state")
	}
}
