package engine

import (
	"fmt"
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

// BenchmarkMemoryFullCatalog imports the real festival's ten million SKUs
// into an engine and reports the bytes per SKU of its state, whole (heap
// growth) and by part: the stock figures (skus), the text arena (ids,
// titles) and the directory. It needs about 1 GB, so it is a benchmark, run
// once (-benchtime 1x): go test ./internal/engine -run '^$' -bench
// MemoryFullCatalog -benchtime 1x.
func BenchmarkMemoryFullCatalog(b *testing.B) {
	const n = 10_000_000
	for b.Loop() {
		h := newHarness(1)
		h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}})
		h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Kind: MerchantTrader}})
		p := h.c.partitions[0]
		before := heapBytes()
		var em emitter
		id := make([]byte, 0, 16)
		sku := SKU{MerchantID: "m", BrandID: "b", Price: 100, Stock: 10}
		for i := 0; i < n; i++ {
			em.reset(em.rec)
			res := Result{}
			id = strconv.AppendInt(append(id[:0], "sku-"...), int64(10_000_000+i), 10)
			sku.ID = string(id)
			cmd := Command{Kind: KindUpsertSKU, SKU: &sku}
			h.c.apply(p, 1, &cmd, &res, &em)
			if !res.OK() {
				b.Fatal(res.Err())
			}
		}
		after := heapBytes()
		b.ReportMetric(float64(after-before)/n, "bytes/sku")
		b.ReportMetric(float64(cap(p.skus))*float64(unsafe.Sizeof(skuState{}))/n, "stock-bytes/sku")
		b.ReportMetric(float64(p.text.bytes())/n, "text-bytes/sku")
		b.ReportMetric(float64(h.c.dir.bytes())/n, "directory-bytes/sku")
		runtime.KeepAlive(h)
	}
}

func BenchmarkMemory(b *testing.B) {
	const n = 1_000_000
	b.ReportMetric(memoryPerSKU(n), "bytes/sku")
	b.ReportMetric(memoryPerPendingOrder(n), "bytes/pending-order")
}

// TestDirectoryHashCollision checks the path of two ids whose first hashes
// agree: each keeps its own entry, told apart by the second hash's bits,
// and finds its own SKU. A real collision is not to be found, so the test
// makes one by moving an id's entry to another id's hash.
func TestDirectoryHashCollision(t *testing.T) {
	d := newDirectory()
	first := newSKURef(1, 7)
	if _, ok := d.insert("sku-a", first); !ok {
		t.Fatal("first insert refused")
	}
	// Give sku-a's entry the first hash of another id whose check bits
	// differ (all but one in 2^19 do), keeping sku-a's check bits.
	ha, checkA := d.hashes("sku-a")
	other := "sku-b"
	hb, checkB := d.hashes(other)
	for k := 0; checkB == checkA; k++ {
		other = "sku-b" + strconv.Itoa(k)
		hb, checkB = d.hashes(other)
	}
	sa := &d.shards[ha%directoryShards]
	i, ok := findEntry(sa.entries(), ha, checkA)
	if !ok {
		t.Fatal("sku-a's entry not found")
	}
	sa.entries()[i] = directoryEntry{}
	sa.mu.count--
	sb := &d.shards[hb%directoryShards]
	if len(sb.entries()) == 0 {
		entries := make([]directoryEntry, directoryEntries0)
		sb.table.Store(&entries)
	}
	j, _ := findEntry(sb.entries(), hb, checkA)
	sb.entries()[j] = directoryEntry{hash: hb, word: uint64(first) | checkA}
	sb.mu.count++
	if _, ok := d.lookup(other); ok {
		t.Fatal("an id found through another id's entry")
	}
	second := newSKURef(2, 9)
	if r, ok := d.insert(other, second); !ok || r != second {
		t.Fatalf("insert beside a collision: %v %v", r, ok)
	}
	if r, ok := d.lookup(other); !ok || r != second {
		t.Fatalf("lookup of the colliding id: %v %v", r, ok)
	}
	if r, ok := d.insert(other, newSKURef(3, 1)); ok || r != second {
		t.Fatalf("second insert of the colliding id: %v %v", r, ok)
	}
	if n := d.count(); n != 2 {
		t.Fatalf("count %d", n)
	}
}

// TestDirectoryGrowth fills a directory past several growths of its
// shards and finds every id, and none that was not inserted.
func TestDirectoryGrowth(t *testing.T) {
	d := newDirectory()
	const n = 100_000
	for i := range n {
		if _, ok := d.insert("s"+strconv.Itoa(i), newSKURef(i%64, uint32(i))); !ok {
			t.Fatalf("insert %d refused", i)
		}
	}
	for i := range n {
		if r, ok := d.lookup("s" + strconv.Itoa(i)); !ok || r != newSKURef(i%64, uint32(i)) {
			t.Fatalf("lookup %d: %x %v", i, uint64(r), ok)
		}
		if _, ok := d.lookup("x" + strconv.Itoa(i)); ok {
			t.Fatalf("found x%d", i)
		}
	}
	if c := d.count(); c != n {
		t.Fatalf("count %d, want %d", c, n)
	}
	if b := float64(d.bytes()) / n; b > 16*8/5.0 {
		t.Fatalf("directory costs %.1f bytes per SKU", b)
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

// TestRequestSize keeps a request seven cache lines exactly: requestFields
// mirrors Request by hand, and a field added to Request alone would make it
// larger than its padding assumes.
func TestRequestSize(t *testing.T) {
	if n := unsafe.Sizeof(Request{}); n != 448 {
		t.Fatalf("Request is %d bytes, want 448: keep requestFields in step with it", n)
	}
}
