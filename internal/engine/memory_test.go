package engine

import (
	"fmt"
	"hash/maphash"
	"runtime"
	"strconv"
	"testing"
	"unsafe"
)

func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// memoryPerSKU returns the engine-state bytes per SKU, split into the hot
// part (stock figures, the directory entry, the sold-out bit) and the whole
// (with titles and categories), for n SKUs with ids like "sku-000123".
func memoryPerSKU(n int) (whole float64) {
	h := newHarness(1)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}})
	h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Kind: MerchantTrader}})
	p := h.c.partitions[0]
	before := heapBytes()
	var em emitter
	for i := 0; i < n; i++ {
		em.reset(em.rec)
		res := Result{}
		cmd := Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "sku-" + strconv.Itoa(1_000_000+i), MerchantID: "m", BrandID: "b", Price: 100, Stock: 10}}
		h.c.apply(p, 1, &cmd, &res, &em)
	}
	after := heapBytes()
	runtime.KeepAlive(h)
	return float64(after-before) / float64(n)
}

// memoryPerPendingOrder returns the engine-state bytes per pending order of
// one or two items.
func memoryPerPendingOrder(n int) float64 {
	h := newHarness(1)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}})
	h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Kind: MerchantTrader}})
	for i := 0; i < 100; i++ {
		h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s" + strconv.Itoa(i), MerchantID: "m", BrandID: "b", Price: 100, Stock: 1_000_000_000}})
	}
	p := h.c.partitions[0]
	items := make([]Item, 2)
	var em emitter
	before := heapBytes()
	for i := 0; i < n; i++ {
		em.reset(em.rec)
		items[0] = Item{SKUID: "s" + strconv.Itoa(i%100), Quantity: 1}
		items[1] = Item{SKUID: "s" + strconv.Itoa((i+7)%100), Quantity: 1}
		r := Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: items[:1+i%2]}}}
		h.c.route(&r)
		h.c.apply(p, 1, &r.Command, &r.Result, &em)
		if !r.Result.OK() {
			panic(r.Result.Err())
		}
	}
	after := heapBytes()
	runtime.KeepAlive(h)
	return float64(after-before) / float64(n)
}

// TestMemoryFootprint reports bytes per SKU and per pending order (run with
// -v to see them) and fails if they grow far past their budgets (64 and 256
// bytes are the goals; the bounds here leave room for map growth steps).
func TestMemoryFootprint(t *testing.T) {
	const n = 200_000
	sku := memoryPerSKU(n)
	order := memoryPerPendingOrder(n)
	t.Logf("engine state: %.1f bytes per SKU (stock, directory, titles), %.1f bytes per pending order", sku, order)
	if sku > 300 {
		t.Errorf("%.1f bytes per SKU", sku)
	}
	if order > 256 {
		t.Errorf("%.1f bytes per pending order, over the 256-byte budget", order)
	}
}

func BenchmarkMemory(b *testing.B) {
	const n = 1_000_000
	b.ReportMetric(memoryPerSKU(n), "bytes/sku")
	b.ReportMetric(memoryPerPendingOrder(n), "bytes/pending-order")
}

// TestDirectoryHashCollision checks the path of two ids whose first hashes
// agree: the second is kept by id beside the map of hashes, and each finds
// its own SKU. A real collision is not to be found, so the test makes one
// by giving an id's entry another id's check.
func TestDirectoryHashCollision(t *testing.T) {
	d := newDirectory()
	first := newSKURef(1, 7)
	if _, _, ok := d.insert("sku-a", first); !ok {
		t.Fatal("first insert refused")
	}
	h := maphash.String(d.seed, "sku-b")
	s := &d.shards[h%directoryShards]
	s.mu.refs[h] = directoryEntry{check: 42, ref: first} // "sku-b"'s hash, held by another id
	if _, ok := d.lookup("sku-b"); ok {
		t.Fatal("an id found through another id's entry")
	}
	second := newSKURef(2, 9)
	if r, key, ok := d.insert("sku-b", second); !ok || r != second || key != "sku-b" {
		t.Fatalf("insert beside a collision: %v %q %v", r, key, ok)
	}
	if r, ok := d.lookup("sku-b"); !ok || r != second {
		t.Fatalf("lookup of the colliding id: %v %v", r, ok)
	}
	if r, _, ok := d.insert("sku-b", newSKURef(3, 1)); ok || r != second {
		t.Fatalf("second insert of the colliding id: %v %v", r, ok)
	}
	if r, ok := d.lookup("sku-a"); !ok || r != first {
		t.Fatalf("lookup of the first id: %v %v", r, ok)
	}
	if n := d.count(); n != 3 { // sku-a, the made-up holder of sku-b's hash, sku-b
		t.Fatalf("count %d", n)
	}
}

// BenchmarkDirectoryLookup looks up SKUs of the festival's catalog size by
// ids freshly copied, as a request body holds them.
func BenchmarkDirectoryLookup(b *testing.B) {
	const skus = 250_000
	d := newDirectory()
	ids := make([]string, skus)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%07d-%d", i*7919%skus, i%10)
		d.insert(ids[i], newSKURef(i%64, uint32(i)))
	}
	queries := make([]string, 1<<16)
	for i := range queries {
		queries[i] = string([]byte(ids[(i*104729)%skus]))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := d.lookup(queries[i&(len(queries)-1)]); !ok {
			b.Fatal("lost")
		}
	}
}

// TestDirectoryShardSize keeps each shard on its own pair of cache lines.
func TestDirectoryShardSize(t *testing.T) {
	if n := unsafe.Sizeof(directoryShard{}); n != 128 {
		t.Fatalf("directory shard is %d bytes, want 128", n)
	}
}
