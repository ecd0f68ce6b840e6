package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testCatalog creates merchants m0..m{merchants-1} with skusPer SKUs each,
// named s<merchant>-<i>, all with the given stock.
func testCatalog(t testing.TB, e *Engine, merchants, skusPer int, stock int64) {
	t.Helper()
	b := NewBatch(0)
	b.Add(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}})
	mustBatch(t, e, b)
	b = NewBatch(0)
	for m := 0; m < merchants; m++ {
		b.Add(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m" + strconv.Itoa(m), BrandID: "b", Kind: MerchantFactory}})
	}
	mustBatch(t, e, b)
	b = NewBatch(0)
	for m := 0; m < merchants; m++ {
		for i := 0; i < skusPer; i++ {
			b.Add(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: fmt.Sprintf("s%d-%d", m, i), MerchantID: "m" + strconv.Itoa(m), BrandID: "b", Price: int64(100 + i), Stock: stock}})
		}
	}
	mustBatch(t, e, b)
}

func mustBatch(t testing.TB, e *Engine, b *Batch) {
	t.Helper()
	e.Submit(b)
	b.Wait()
	for i := range b.Requests {
		if err := b.Requests[i].Result.Err(); err != nil {
			t.Fatalf("%v: %v", b.Requests[i].Command.Kind, err)
		}
	}
}

// randomOrders places, pays and cancels orders at random, and scans the
// parcels of paid ones, so that recovery must restore parcels too.
func randomOrders(e *Engine, rng *rand.Rand, batches, merchants, skusPer int) {
	var placed, paid []Result
	locations := []string{"hz", "sh", "bj"}
	for i := 0; i < batches; i++ {
		b := NewBatch(0)
		for j := 0; j < 50; j++ {
			m := rng.IntN(merchants)
			var items []Item
			for k := 0; k < 1+rng.IntN(3); k++ {
				items = append(items, Item{SKUID: fmt.Sprintf("s%d-%d", m, rng.IntN(skusPer)), Quantity: int32(1 + rng.IntN(3))})
			}
			key := ""
			if rng.IntN(4) == 0 {
				key = "k" + strconv.Itoa(rng.IntN(1000))
			}
			b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u" + strconv.Itoa(rng.IntN(100)), Items: items, Channel: "app", IdempotencyKey: key, RequestHash: 1}})
		}
		for j := 0; j < 10 && len(placed) > 0; j++ {
			r := placed[rng.IntN(len(placed))]
			if rng.IntN(2) == 0 {
				b.Add(Command{Kind: KindPay, OrderID: r.OrderID, Amount: r.Total})
			} else {
				b.Add(Command{Kind: KindCancel, OrderID: r.OrderID})
			}
		}
		for j := 0; j < 10 && len(paid) > 0; j++ {
			r := paid[rng.IntN(len(paid))]
			status := ParcelStatus(int(ParcelPickedUp) + rng.IntN(int(ParcelReturned-ParcelPickedUp)+1))
			b.Add(Command{Kind: KindScanParcel, OrderID: r.OrderID, Scan: &Scan{Status: status, Location: locations[rng.IntN(len(locations))], CarrierCode: "c" + strconv.Itoa(rng.IntN(9)), At: 1}})
		}
		e.Submit(b)
		b.Wait()
		for _, r := range b.Requests {
			switch {
			case r.Command.Kind == KindPlaceOrder && r.Result.OK():
				placed = append(placed, r.Result)
			case r.Command.Kind == KindPay && r.Result.OK():
				paid = append(paid, r.Result)
			}
		}
	}
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplayRebuildsState runs the real engine with its journal, takes a
// snapshot part way, goes on, and checks that a second engine recovering
// from a copy of the directory (snapshot + journal after it) has exactly
// the live state.
func TestReplayRebuildsState(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			var clock int64 = 1_000_000
			cfg := Config{Dir: dir, Partitions: 8, Workers: 3, NoSync: true, SnapshotEveryBytes: -1, PaymentTimeout: 1000, Now: func() int64 { return clock }, Logger: quiet, SegmentBytesMax: 64 << 10}
			e, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			testCatalog(t, e, 6, 10, 40)
			rng := rand.New(rand.NewPCG(1, 2))
			randomOrders(e, rng, 40, 6, 10)
			if snapshot {
				if err := e.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			randomOrders(e, rng, 40, 6, 10)
			live := e.core.dump()
			for _, s := range []string{"picked_up", "in_transit", "exception"} {
				if !strings.Contains(live, s) {
					t.Fatalf("no parcel %s in the state: the scans of randomOrders do not reach it", s)
				}
			}
			copyDir(t, dir, dir+"-copy")
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
				t.Fatalf("recovered state differs from the live state\nrecovered:\n%s\nlive:\n%s", got, live)
			}
			// And after Close (final snapshot), the same again.
			cfg.Dir = dir
			e3, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer e3.Close()
			if got := e3.core.dump(); got != live {
				t.Fatalf("state after close and reopen differs")
			}
		})
	}
}

// TestExpiryReleasesStock checks that unpaid orders expire with time passed
// in, and that paying an overdue order fails.
func TestExpiryReleasesStock(t *testing.T) {
	var clock int64 = 1_000
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 2, NoSync: true, PaymentTimeout: 1000, Now: func() int64 { return clock }, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	testCatalog(t, e, 1, 1, 5)
	ctx := context.Background()
	r := e.Do(ctx, Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-0", Quantity: 5}}}})
	if !r.OK() {
		t.Fatal(r.Err())
	}
	if r2 := e.Do(ctx, Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-0", Quantity: 1}}}}); r2.Code != CodeOutOfStock {
		t.Fatalf("sold out SKU: got %v", r2.Code)
	}
	clock += 2000
	if p := e.Do(ctx, Command{Kind: KindPay, OrderID: r.OrderID, Amount: r.Total}); p.Code != CodeInvalidState {
		t.Fatalf("pay after timeout: got %v", p.Code)
	}
	s := e.Do(ctx, Command{Kind: KindGetSKU, SKUID: "s0-0"})
	if s.Available != 5 || s.Reserved != 0 {
		t.Fatalf("stock not released: %+v", s)
	}
	if g := e.Do(ctx, Command{Kind: KindGetOrder, OrderID: r.OrderID}); g.Status != StatusExpired {
		t.Fatalf("status %v", g.Status)
	}
}

// TestDirectoryLocked checks that a second engine cannot open a data
// directory in use, and can once the first is closed.
func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Partitions: 2, NoSync: true, Logger: quiet}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(cfg)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	e.Close()
}
