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
func benchCore(b *testing.B, disk bool, keysMax int, runDelay time.Duration) (*harness, [][]string) {
	h := newHarness(64)
	h.c.idempotencyKeysMax = keysMax
	if disk {
		dir := b.TempDir()
		s, err := idempotency.Open(idempotency.Config{Dir: dir, Window: 1 << 40, Now: func() int64 { return 0 }, Logger: quiet, RunDelayMax: runDelay})
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
// "disk-retry" replays keys that live on disk. The "timed" cases do the
// same with UUIDv7 keys minted at their first use, which spill to the
// time-ordered runs.
func BenchmarkKeyedOrder(b *testing.B) {
	const benchBatch = 2048
	for _, bc := range []struct {
		name       string
		keyed      bool
		disk       bool
		keysMax    int
		retryDisks bool
		timed      bool
	}{
		{"unkeyed", false, false, 1 << 20, false, false},
		{"memory", true, false, 1 << 30, false, false},
		{"disk", true, true, 1 << 14, false, false},
		{"disk-retry", true, true, 1 << 10, true, false},
		{"disk-timed", true, true, 1 << 14, false, true},
		{"disk-timed-retry", true, true, 1 << 6, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// The timed cases gather the partitions' spills into one run,
			// as the writer does at the peak (RunDelayMax 2s): the number
			// of runs in a bucket is what a retry pays.
			runDelay := time.Microsecond
			if bc.timed {
				runDelay = 5 * time.Millisecond
			}
			h, ids := benchCore(b, bc.disk, bc.keysMax, runDelay)
			c := h.c
			// The i-th timed key is minted, and first used, at
			// timedTestStart + i ms: a write of the disk tier (every
			// benchBatch orders here, every 2 s at the peak) then covers
			// about one 2 s bucket of minting time, as at the peak.
			clockAt := func(i int) int64 { return timedTestStart + int64(i)*1e6 }
			key := func(prefix string, i int) string {
				if bc.timed {
					return uuidV7(clockAt(i)/1e6, i)
				}
				return prefix + strconv.Itoa(i)
			}
			var em emitter
			em.reset(make([]byte, 0, 1<<22))
			reqs := make([]Request, benchBatch)
			itemsBuf := make([]Item, benchBatch)
			keys := make([]string, 1<<16)
			for i := range keys {
				keys[i] = key("idem-", i)
			}
			retryKeys := 0
			if bc.retryDisks {
				// Place keys until most of them are on disk.
				retryKeys = 1 << 16
				spill := func() {
					for _, p := range c.partitions {
						p.keys.durableEnd.Store(p.keys.endPos()) // as the journal does
						c.settleSpill(p)
						c.startSpill(p)
					}
					for _, p := range c.partitions {
						for p.keys.spilling && p.keys.spillResult.Load() == spillPending {
							time.Sleep(time.Millisecond)
						}
					}
				}
				for i := 0; i < retryKeys; i++ {
					m := i % len(ids)
					if bc.timed {
						h.now = clockAt(i)
					}
					r := Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: ids[m][0], Quantity: 1}}, IdempotencyKey: keys[i], RequestHash: 7}}}
					if p, ok := c.route(&r); ok {
						r.partition = int32(p)
						c.lookUpKey(&r, quiet)
						em.reset(em.rec)
						c.apply(c.partitions[p], h.now, &r.Command, &r.Result, &em)
						if r.Result.Code == CodeOverloaded {
							// The memory tier waits for the disk, as a
							// client would: every key is placed.
							spill()
							i--
							continue
						}
					}
					if i%benchBatch == 0 {
						spill()
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
					fresh[i] = key("order-key-", i+len(keys))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += benchBatch {
				if bc.timed {
					h.now = clockAt(len(keys) + i)
				}
				em.reset(em.rec)
				n := min(benchBatch, b.N-i)
				for j := 0; j < n; j++ {
					m := rng.IntN(len(ids))
					itemsBuf[j] = Item{SKUID: ids[m][j%len(ids[m])], Quantity: 1}
					o := Order{BuyerID: "buyer", Channel: "app", Items: itemsBuf[j : j+1 : j+1], RequestHash: 7}
					if bc.keyed {
						if bc.retryDisks {
							k := rng.IntN(retryKeys)
							o.IdempotencyKey = keys[k]
							// The merchant of the first use: another one's
							// is a mismatch, answered by the router.
							o.Items[0].SKUID = ids[k%len(ids)][0]
						} else {
							o.IdempotencyKey = fresh[i+j]
						}
					}
					reqs[j] = Request{Command: Command{Kind: KindPlaceOrder, Order: o}}
				}
				if bc.disk {
					for _, p := range c.partitions {
						// The batch before is durable, as the journal
						// would report it.
						p.keys.durableEnd.Store(p.keys.endPos())
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
				b.ReportMetric(float64(st.Keys+st.OrderedKeys), "disk-keys")
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
			p.remember(c.keys, k*0x9E3779B97F4A7C15|1, k, k, int64(k), 0, c.idempotencyWindow, c.idempotencyKeysMax, true)
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
