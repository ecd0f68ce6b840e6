package gmv

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// newSKUState is a state with brands b1 and b2 and merchant m1 (of b1),
// and a function applying an event to it.
func newSKUState(t *testing.T) (*state, func(engine.Event)) {
	st := newState()
	cfg := Config{}.withDefaults()
	apply := func(ev engine.Event) {
		t.Helper()
		if err := st.apply(&cfg, &ev); err != nil {
			t.Fatalf("apply %v: %v", ev.Kind, err)
		}
	}
	apply(engine.Event{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: "b1", Country: "CN"}})
	apply(engine.Event{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: "b2", Country: "US"}})
	apply(engine.Event{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: "m1", BrandID: "b1", Kind: engine.MerchantBrandStore}})
	return st, apply
}

// TestSKUsBySlot checks the SKU table's two ways to a row: SKU events with
// the engine's slots are found by slot, with no index by id; a second id in
// a taken slot (not the engine's journal) turns the index by id on, and
// every SKU is still found, after a snapshot round trip too.
func TestSKUsBySlot(t *testing.T) {
	st, apply := newSKUState(t)
	sku := func(id string, partition int, slot uint32, brand, category string) engine.Event {
		return engine.Event{Kind: engine.EventSKUUpserted, Partition: partition, SKUSlot: slot, SKU: engine.SKU{ID: id, MerchantID: "m1", BrandID: brand, Category: category}}
	}
	apply(sku("s1", 0, 0, "b1", "c1"))
	apply(sku("s2", 0, 1, "b2", "c1"))
	apply(sku("s3", 1, 0, "b1", "c2"))
	apply(sku("s2", 0, 1, "b1", "c2")) // a re-upsert: same row, new brand and category
	if st.skuByID != nil {
		t.Fatalf("the index by id was built for SKU events with distinct slots")
	}
	if len(st.skus) != 3 {
		t.Fatalf("%d sku rows after 3 SKUs, want 3", len(st.skus))
	}
	want := []struct {
		id              string
		brand, category string
	}{{"s1", "b1", "c1"}, {"s2", "b1", "c2"}, {"s3", "b1", "c2"}}
	check := func(st *state, what string) {
		t.Helper()
		for r, w := range want {
			s := &st.skus[r]
			if got := st.skuIDs.at(int32(r)); got != w.id {
				t.Errorf("%s: row %d id %q, want %q", what, r, got, w.id)
			}
			if got := st.dims[DimBrand].keys[s.brand]; got != w.brand {
				t.Errorf("%s: sku %s brand %q, want %q", what, w.id, got, w.brand)
			}
			if got := st.dims[DimCategory].keys[s.category]; got != w.category {
				t.Errorf("%s: sku %s category %q, want %q", what, w.id, got, w.category)
			}
			if r2, ok := st.findSKU(w.id, int(s.partition), s.slot); !ok || r2 != int32(r) {
				t.Errorf("%s: sku %s found at row %d (%v), want %d", what, w.id, r2, ok, r)
			}
		}
		checkSlotCopies(t, st, what)
	}
	check(st, "by slot")
	loaded, err := decodeState(st.encode(nil), true)
	if err != nil {
		t.Fatalf("decode the snapshot: %v", err)
	}
	if loaded.skuByID != nil {
		t.Fatalf("a snapshot load built the index by id")
	}
	check(loaded, "loaded")

	apply(sku("s4", 0, 0, "b2", "c1")) // slot 0 of partition 0 is s1's
	if st.skuByID == nil {
		t.Fatalf("a second id in a taken slot did not turn the index by id on")
	}
	want = append(want, struct {
		id              string
		brand, category string
	}{"s4", "b2", "c1"})
	if len(st.skus) != 4 {
		t.Fatalf("%d sku rows after a fourth SKU, want 4", len(st.skus))
	}
	check(st, "by id")
	if r, ok := st.skuByLineID("s1"); !ok || r != 0 {
		t.Errorf("line of s1 found at row %d (%v), want 0", r, ok)
	}
	loaded, err = decodeState(st.encode(nil), true)
	if err != nil {
		t.Fatalf("decode the snapshot with two ids in a slot: %v", err)
	}
	check(loaded, "loaded by id")
	// s4 moves to the slot of s3, with another brand and category (not the
	// engine's journal either): every slot that names its row, the one it
	// left too, copies the row as it is now.
	apply(sku("s4", 1, 0, "b1", "c2"))
	want[3].brand, want[3].category = "b1", "c2"
	check(st, "moved")
}

// checkSlotCopies fails unless every slot's copy of its SKU's row is the
// row's, as the next placement reads them (which first derives the copies
// again if they are stale).
func checkSlotCopies(t *testing.T, st *state, what string) {
	t.Helper()
	if st.skusStale {
		st.deriveSKUs()
	}
	for p, part := range st.bySlot {
		for slot, e := range part {
			if e.row != 0 && e.skuHot != st.skus[e.row-1].hot() {
				t.Errorf("%s: slot %d of partition %d copies %+v of row %d, which holds %+v", what, slot, p, e.skuHot, e.row-1, st.skus[e.row-1].hot())
			}
		}
	}
}

// BenchmarkUpsertSKUs measures the catalog view's cost of a catalog
// import: 1,000,000 SKU events with their engine slots (8 partitions), ten
// SKUs a merchant listed together, each of its merchant's brand, over
// 100,000 merchants and 20,000 brands. It reports ns per SKU event and the
// heap the SKUs hold, in bytes per SKU (the brands' and merchants' events
// are applied before and not counted).
func BenchmarkUpsertSKUs(b *testing.B) {
	const brands, merchants, skusPerMerchant, partitions = 20_000, 100_000, 10, 8
	cfg := Config{}.withDefaults()
	var catalog []engine.Event
	for i := range brands {
		catalog = append(catalog, engine.Event{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: fmt.Sprintf("b%d", i), Country: "CN"}})
	}
	for m := range merchants {
		catalog = append(catalog, engine.Event{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: fmt.Sprintf("m%d", m), BrandID: fmt.Sprintf("b%d", m%brands), Kind: engine.MerchantTrader, Industry: "i"}})
	}
	skus := make([]engine.Event, 0, merchants*skusPerMerchant)
	for m := range merchants {
		for k := range skusPerMerchant {
			i := len(skus)
			skus = append(skus, engine.Event{Kind: engine.EventSKUUpserted, Partition: i % partitions, SKUSlot: uint32(i / partitions),
				SKU: engine.SKU{ID: fmt.Sprintf("s%08d", i), MerchantID: fmt.Sprintf("m%d", m), BrandID: fmt.Sprintf("b%d", m%brands), Category: fmt.Sprintf("c%d", m%500+k%2)}})
		}
	}
	var heapBytes uint64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		st := newState()
		for i := range catalog {
			if err := st.apply(&cfg, &catalog[i]); err != nil {
				b.Fatal(err)
			}
		}
		before := heapInUse()
		b.StartTimer()
		for i := range skus {
			if err := st.apply(&cfg, &skus[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		heapBytes += heapInUse() - before
		runtime.KeepAlive(st)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(skus)), "ns/sku")
	b.ReportMetric(float64(heapBytes)/float64(b.N*len(skus)), "heap-B/sku")
}

// heapInUse returns the live heap after a collection, in bytes.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestSKUIDInTwoPartitions: in a cluster one id may name a SKU in each of
// two partitions (an ambiguous id). Each is its own row, found by its slot,
// whether or not the index by id was built before (a node that once saw a
// hand-written event and a node restarted from a snapshot must agree), and
// after a snapshot round trip.
func TestSKUIDInTwoPartitions(t *testing.T) {
	for _, indexed := range []bool{false, true} {
		t.Run(fmt.Sprintf("indexed=%v", indexed), func(t *testing.T) {
			st, apply := newSKUState(t)
			if indexed {
				st.indexSKUIDs()
			}
			sku := func(partition int, brand string) engine.Event {
				return engine.Event{Kind: engine.EventSKUUpserted, Partition: partition, SKUSlot: 0, SKU: engine.SKU{ID: "x", MerchantID: "m1", BrandID: brand, Category: "c1"}}
			}
			apply(sku(0, "b1"))
			apply(sku(1, "b2"))
			apply(sku(1, "b2")) // a re-upsert: partition 1's row again
			check := func(st *state, what string) {
				t.Helper()
				if len(st.skus) != 2 {
					t.Fatalf("%s: %d sku rows, want 2", what, len(st.skus))
				}
				for r, brand := range []string{"b1", "b2"} {
					s := &st.skus[r]
					if got := st.dims[DimBrand].keys[s.brand]; got != brand {
						t.Errorf("%s: row %d brand %q, want %q", what, r, got, brand)
					}
					if got, ok := st.findSKU("x", r, 0); !ok || got != int32(r) {
						t.Errorf("%s: x in partition %d found at row %d (%v), want %d", what, r, got, ok, r)
					}
				}
			}
			check(st, "applied")
			loaded, err := decodeState(st.encode(nil), true)
			if err != nil {
				t.Fatalf("decode the snapshot: %v", err)
			}
			check(loaded, "loaded")
		})
	}
}
