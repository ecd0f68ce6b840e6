package engine

import (
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/idempotency"
)

// benchCore is a core with a catalog of 64 partitions for the keyed-order
// benchmarks; with disk it has a disk tier and a memory tier of keysMax.
func benchCore(b *testing.B, disk bool, keysMax int) (*harness, [][]string) {
	h := newHarness(64)
	h.c.idempotencyKeysMax = keysMax
	if disk {
		dir := b.TempDir()
		s, err := idempotency.Open(idempotency.Config{Dir: dir, Window: 1 << 40, Now: func() int64 { return 0 }, Logger: quiet, RunDelayMax: time.Microsecond})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		h.c.disk = s
	}
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}})
	const merchants, skusPer = 256, 16
	ids := make([][]string, merchants)
	for m := 0; m < merchants; m++ {
		h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m" + strconv.Itoa(m), Kind: MerchantTrader}})
		for i := 0; i < skusPer; i++ {
			id := "sku-" + strconv.Itoa(m) + "-" + strconv.Itoa(i)
			ids[m] = append(ids[m], id)
			h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: id, MerchantID: "m" + strconv.Itoa(m), BrandID: "b", Price: 100, Stock: 1_000_000_000}})
		}
	}
	return h, ids
}

// BenchmarkKeyedOrder measures the core's cost per order, without and with
// an Idempotency-Key, as a worker runs it: a batch of benchBatch orders,
// the worker's pre-apply step (settle and start spills, disk look-ups of
// keys that miss memory) once per batch, then route and apply. Every key
// is new, as at the peak; "disk" keeps 16,384 keys per partition in memory
// so that the disk tier takes most keys while the benchmark runs, and
// "disk-retry" replays keys that live on disk.
func BenchmarkKeyedOrder(b *testing.B) {
	const benchBatch = 2048
	for _, bc := range []struct {
		name       string
		keyed      bool
		disk       bool
		keysMax    int
		retryDisks bool
	}{
		{"unkeyed", false, false, 1 << 20, false},
		{"memory", true, false, 1 << 30, false},
		{"disk", true, true, 1 << 14, false},
		{"disk-retry", true, true, 1 << 10, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h, ids := benchCore(b, bc.disk, bc.keysMax)
			c := h.c
			var em emitter
			em.reset(make([]byte, 0, 1<<22))
			reqs := make([]Request, benchBatch)
			itemsBuf := make([]Item, benchBatch)
			keys := make([]string, 1<<16)
			for i := range keys {
				keys[i] = "idem-" + strconv.Itoa(i)
			}
			retryKeys := 0
			if bc.retryDisks {
				// Place keys until most of them are on disk.
				retryKeys = 1 << 16
				for i := 0; i < retryKeys; i++ {
					m := i % len(ids)
					r := Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: ids[m][0], Quantity: 1}}, IdempotencyKey: keys[i], RequestHash: 7}}}
					if p, ok := c.route(&r); ok {
						r.partition = int32(p)
						c.lookUpKey(&r, quiet)
						em.reset(em.rec)
						c.apply(c.partitions[p], h.now, &r.Command, &r.Result, &em)
					}
					if i%benchBatch == 0 {
						for _, p := range c.partitions {
							for p.keys.spilling && p.keys.spillResult.Load() == spillPending {
								time.Sleep(time.Millisecond)
							}
							c.settleSpill(p)
							c.startSpill(p)
						}
					}
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			// Fresh keys, made before the clock starts: a server receives
			// each key in its request.
			var fresh []string
			if bc.keyed && !bc.retryDisks {
				fresh = make([]string, b.N)
				for i := range fresh {
					fresh[i] = "order-key-" + strconv.Itoa(i)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += benchBatch {
				em.reset(em.rec)
				n := min(benchBatch, b.N-i)
				for j := 0; j < n; j++ {
					m := rng.IntN(len(ids))
					itemsBuf[j] = Item{SKUID: ids[m][j%len(ids[m])], Quantity: 1}
					o := Order{BuyerID: "buyer", Channel: "app", Items: itemsBuf[j : j+1 : j+1], RequestHash: 7}
					if bc.keyed {
						if bc.retryDisks {
							o.IdempotencyKey = keys[rng.IntN(retryKeys)]
							o.Items[0].SKUID = ids[0][0] // replays answer before the items matter
						} else {
							o.IdempotencyKey = fresh[i+j]
						}
					}
					reqs[j] = Request{Command: Command{Kind: KindPlaceOrder, Order: o}}
				}
				if bc.disk {
					for _, p := range c.partitions {
						c.settleSpill(p)
						c.startSpill(p)
					}
				}
				for j := 0; j < n; j++ {
					r := &reqs[j]
					p, ok := c.route(r)
					if !ok {
						continue
					}
					r.partition = int32(p)
					if bc.disk {
						c.lookUpKey(r, quiet)
					}
					c.apply(c.partitions[p], h.now, &r.Command, &r.Result, &em)
				}
				h.now += 1000
			}
			b.StopTimer()
			if bc.disk {
				st := c.disk.Stats()
				b.ReportMetric(float64(st.Keys), "disk-keys")
			}
		})
	}
}

// BenchmarkIdempotencyMemoryPerKey reports the memory per key of each tier
// for a million keys: the memory tier's map, ring and router index entry,
// and the disk tier's in-memory index (run files hold 36 bytes a key).
func BenchmarkIdempotencyMemoryPerKey(b *testing.B) {
	const n = 1 << 20
	for i := 0; i < b.N; i++ {
		c := newCore(1, 100, 1<<40, 1<<30)
		p := c.partitions[0]
		before := heapBytes()
		for k := uint64(1); k <= n; k++ {
			p.remember(c.keys, k*0x9E3779B97F4A7C15|1, k, k, int64(k), c.idempotencyWindow, c.idempotencyKeysMax, true)
		}
		after := heapBytes()
		runtime.KeepAlive(c)
		b.ReportMetric(float64(after-before)/n, "memory-tier-B/key")

		dir, err := os.MkdirTemp("", "fest-idem-bench-")
		if err != nil {
			b.Fatal(err)
		}
		s, err := idempotency.Open(idempotency.Config{Dir: dir, Logger: quiet, RunDelayMax: time.Microsecond, Now: func() int64 { return 1 }})
		if err != nil {
			b.Fatal(err)
		}
		before = heapBytes()
		const batch = 1 << 16
		for k := 0; k < n; k += batch {
			es := make([]idempotency.Entry, batch)
			for j := range es {
				h := uint64(k+j+1) * 0x9E3779B97F4A7C15
				es[j] = idempotency.Entry{KeyHash: h | 1, RequestHash: 1, Seq: uint64(k + j + 1), At: 1}
			}
			done := make(chan error, 1)
			if err := s.Submit(es, func(err error) { done <- err }); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		after = heapBytes()
		st := s.Stats()
		b.ReportMetric(float64(after-before)/n, "disk-tier-heap-B/key")
		b.ReportMetric(float64(st.IndexBytes)/float64(st.Keys), "disk-index-B/key")
		s.Close()
		os.RemoveAll(dir)
	}
}
