package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestSnapshotAppliesBatchesBetweenPartitions has one worker own every
// partition, and places an order in every partition after each partition
// is encoded: each order is applied and acknowledged while the snapshot is
// under way, so the worker is never held for more than one partition. The
// snapshot taken that way (positions differ per partition) then restores
// exactly the live state.
func TestSnapshotAppliesBatchesBetweenPartitions(t *testing.T) {
	const partitions = 8
	dir := t.TempDir()
	var clock int64 = 1_000_000
	cfg := Config{Dir: dir, Partitions: partitions, Workers: 1, NoSync: true, SnapshotEveryBytes: -1,
		PaymentTimeout: 1 << 40, Now: func() int64 { clock++; return clock }, Logger: quiet}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	merchants := merchantsInPartitions(partitions, partitions)
	b := NewBatch(0)
	b.Add(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}})
	mustBatch(t, e, b)
	b = NewBatch(0)
	for _, m := range merchants {
		b.Add(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: m, BrandID: "b", Kind: MerchantFactory}})
		b.Add(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "sku-" + m, MerchantID: m, BrandID: "b", Price: 1, Stock: 1000}})
	}
	mustBatch(t, e, b)

	var encoded []int
	e.snapshotHook = func(p int) {
		encoded = append(encoded, p)
		batches := e.stats.Batches.Load()
		b := NewBatch(partitions)
		for _, m := range merchants {
			b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "sku-" + m, Quantity: 1}}}})
		}
		mustBatch(t, e, b)
		if e.stats.Batches.Load() == batches {
			t.Errorf("no batch applied after partition %d was encoded", p)
		}
	}
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	e.snapshotHook = nil
	if len(encoded) != partitions {
		t.Fatalf("partitions encoded one by one: %v, want all %d", encoded, partitions)
	}
	live := e.core.dump()
	copyDir(t, dir, dir+"-copy") // with the staggered snapshot, before the final one
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = dir + "-copy"
	e2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if got := e2.core.dump(); got != live {
		t.Fatalf("state restored from the staggered snapshot differs\nrestored:\n%s\nlive:\n%s", got, live)
	}
}

// TestCloseDuringBackgroundSnapshots closes the engine while orders keep
// arriving and background snapshots start after every record. Close must
// wait for a snapshot under way and start none of its own while workers
// apply (run with -race: before, a snapshot starting during Close encoded
// partitions while their workers were still draining). Every acknowledged
// order must survive the restart.
func TestCloseDuringBackgroundSnapshots(t *testing.T) {
	dir := t.TempDir()
	cfg := snapshotTestConfig(dir)
	cfg.SnapshotEveryBytes = 1
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testCatalog(t, e, 4, 4, 1_000_000)
	var mu sync.Mutex
	var acked []OrderID
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for {
				b := NewBatch(20)
				for range 20 {
					m := rng.IntN(4)
					b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s" + string(rune('0'+m)) + "-0", Quantity: 1}}}})
				}
				e.Submit(b)
				b.Wait()
				for _, r := range b.Requests {
					switch r.Result.Code {
					case CodeOK:
						mu.Lock()
						acked = append(acked, r.Result.OrderID)
						mu.Unlock()
					case CodeUnavailable:
						return // closed
					}
				}
			}
		}()
	}
	for e.stats.Snapshots.Load() < 3 {
		r := e.Do(context.Background(), Command{Kind: KindGetSKU, SKUID: "s0-0"})
		if r.Code != CodeOK {
			t.Fatal(r.Err())
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := e.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close: %v, want ErrClosed", err)
	}
	e2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	for _, id := range acked {
		if r := e2.Do(context.Background(), Command{Kind: KindGetOrder, OrderID: id}); r.Code != CodeOK || r.Status != StatusPending {
			t.Fatalf("acknowledged order %v after restart: %v %v", id, r.Code, r.Status)
		}
	}
}
