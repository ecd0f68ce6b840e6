package projection_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/internal/vfs"
)

// benchPartitions is the number of partitions the benchmark's orders are
// spread over, like a 64-partition festival node.
const benchPartitions = 64

// feeder applies synthetic placed and paid events straight to a runner's
// projections, in journal order, without an engine.
type feeder struct {
	r      *testRunner
	seqs   [benchPartitions]uint64
	placed uint64
	pos    uint64
	ev     engine.Event
	items  []engine.Item
}

func newFeeder(r *testRunner) *feeder {
	f := &feeder{r: r, items: []engine.Item{{SKUID: "sku-12345", Quantity: 1, UnitPrice: 29900, Amount: 29900}, {SKUID: "sku-777", Quantity: 2, UnitPrice: 1000, Amount: 2000}}}
	// The catalog the orders name, which the GMV projection attributes
	// them by, as a record of its own at position 0 (the order store has
	// nothing to do with it).
	for _, ev := range []engine.Event{
		{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: "b-1", Country: "CN"}},
		{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: "m-1", BrandID: "b-1", Kind: engine.MerchantBrandStore}},
		{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "sku-12345", MerchantID: "m-1", BrandID: "b-1"}},
		{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "sku-777", MerchantID: "m-1", BrandID: "b-1"}},
	} {
		if err := r.gmv.Apply(&ev); err != nil {
			panic(err)
		}
	}
	r.gmv.Commit(0, 0)
	return f
}

// place applies n orders, paying every other one a few orders later, in
// records of about a thousand events.
func (f *feeder) place(tb testing.TB, n int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		p := int(f.placed % benchPartitions)
		f.seqs[p]++
		f.placed++
		f.ev = engine.Event{Kind: engine.EventOrderPlaced, OrderID: engine.OrderID(uint64(p)<<52 | f.seqs[p]),
			BuyerID: "buyer-" + strconv.FormatUint(f.placed%1_000_003, 10), MerchantID: "m-1", Channel: "app", Region: "CN-ZJ",
			Items: f.items, Total: 31900, At: int64(f.placed), PayBy: int64(f.placed) + 1e9}
		f.apply(tb, i%1000 == 999 || i == n-1)
		if f.placed%2 == 0 && f.seqs[p] > 1 {
			f.ev = engine.Event{Kind: engine.EventOrderPaid, OrderID: engine.OrderID(uint64(p)<<52 | (f.seqs[p] - 1)), At: int64(f.placed)}
			f.apply(tb, i%1000 == 999 || i == n-1)
		}
	}
}

func (f *feeder) apply(tb testing.TB, last bool) {
	if last {
		f.pos++
	}
	f.ev.Position, f.ev.Last = f.pos*1000, last
	if err := f.r.store.Apply(&f.ev); err != nil {
		tb.Fatal(err)
	}
	if err := f.r.gmv.Apply(&f.ev); err != nil {
		tb.Fatal(err)
	}
	if last {
		f.r.store.Commit(f.ev.Position, f.ev.At)
		f.r.gmv.Commit(f.ev.Position, f.ev.At)
	}
}

// BenchmarkSnapshotAfterOrders measures one projection snapshot after
// FEST_BENCH_ORDERS orders (default 2 million) and a snapshot of them, then
// 10,000 more orders: the cost of a snapshot at the peak of a long festival.
func BenchmarkSnapshotAfterOrders(b *testing.B) {
	ordersBefore := 2_000_000
	if v, err := strconv.Atoi(os.Getenv("FEST_BENCH_ORDERS")); err == nil && v > 0 {
		ordersBefore = v
	}
	dir := b.TempDir()
	store, _ := orders.Open(orders.Config{})
	gmv, _ := gmvp.New(gmvp.Config{})
	var chunkBytes int64
	r, err := newTR(projection.Config{Dir: dir, Logger: quiet, FS: countingFS{vfs.OS, &chunkBytes}}, store, gmv)
	if err != nil {
		b.Fatal(err)
	}
	f := newFeeder(r)
	f.place(b, ordersBefore)
	r.SnapshotAt(f.pos * 1000)
	b.ReportAllocs()
	b.ResetTimer()
	var written, cpuNanos int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f.place(b, 10_000)
		chunkBytes = 0
		b.StartTimer()
		cpu := processCPUNanos()
		r.SnapshotAt(f.pos * 1000)
		cpuNanos += processCPUNanos() - cpu
		b.StopTimer()
		written += chunkBytes + newestSnapshotBytes(b, dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(written)/float64(b.N), "bytes-written/op")
	b.ReportMetric(float64(cpuNanos)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(ordersBefore), "orders-before")
}

// countingFS counts the bytes written through it.
type countingFS struct {
	vfs.FS
	written *int64
}

type countingFile struct {
	vfs.File
	written *int64
}

func (c countingFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c.written}, nil
}

func (f countingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	*f.written += int64(n)
	return n, err
}

// newestSnapshotBytes is the size of the newest snapshot (manifest) file in
// dir, which journal.Snapshots writes outside the runner's FS.
func newestSnapshotBytes(tb testing.TB, dir string) int64 {
	names, err := filepath.Glob(filepath.Join(dir, "snap-*.bin"))
	if err != nil || len(names) == 0 {
		tb.Fatalf("no snapshot in %s: %v", dir, err)
	}
	st, err := os.Stat(names[len(names)-1])
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}
