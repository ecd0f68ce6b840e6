package idempotency

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// peakKeysPerSecond is the sustained peak the benchmarks model.
const peakKeysPerSecond = 583_000

const benchStartNs = int64(1_750_000_000_000) * 1e6

// benchOrderedStore writes n time-ordered keys as the peak spills them:
// minted at peakKeysPerSecond from benchStartNs on, one run per 2^20 keys
// (about 1.8 s of minting, the writer's RunKeysMax). It returns the store
// and the keys' generator seed.
func benchOrderedStore(b *testing.B, n int, timed bool) *Store {
	c := newClock(benchStartNs)
	s, err := Open(Config{Dir: b.TempDir(), Window: 24 * time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	writeBench(b, s, 0, n, timed)
	return s
}

// writeBench writes keys from to to of a generator (time-ordered or other
// ones); the keys from 0 are those of seed 1, 2.
func writeBench(b *testing.B, s *Store, from, to int, timed bool) {
	rng := rand.New(rand.NewPCG(1, uint64(2+from)))
	const batch = 1 << 20
	es := make([]Entry, batch)
	for i := from; i < to; i += batch {
		es = es[:min(batch, to-i)]
		for j := range es {
			es[j] = benchEntry(rng, i+j, timed)
		}
		done := make(chan error, 1)
		if err := s.Submit(es, func(err error) { done <- err }); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// benchEntry is the k-th key of a generator: its hash is drawn first, so
// that benchmarks can draw the same keys again.
func benchEntry(rng *rand.Rand, k int, timed bool) Entry {
	e := Entry{KeyHash: rng.Uint64() | 1, RequestHash: 7, Seq: uint64(k + 1), At: benchStartNs + int64(k)*1e9/peakKeysPerSecond}
	if timed {
		e.Minted = e.At / 1e6
	}
	return e
}

// BenchmarkKeyTime is the cost of reading a key's minting time.
func BenchmarkKeyTime(b *testing.B) {
	for _, key := range []string{"01938a2b-4c5d-7abc-8def-0123456789ab", "01JE52PK2X0123456789ABCDEF", "order-42-from-the-app"} {
		b.Run(key[:4], func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				KeyTime(key)
			}
		})
	}
}

// BenchmarkOrderedLookupNew is what a new time-ordered key costs the
// store, with four million keys in the tier: it is minted after the
// horizon, so it reads neither the disk nor the index.
func BenchmarkOrderedLookupNew(b *testing.B) {
	s := benchOrderedStore(b, 1<<22, true)
	h := s.Horizon()
	rng := rand.New(rand.NewPCG(11, 12))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok, _ := s.LookupOrdered(rng.Uint64()|1, h+int64(i&1023)); ok {
			b.Fatal("a new key was found")
		}
	}
}

// BenchmarkOrderedLookupOld is the retry of a key on disk (hit) and a key
// minted before the horizon that was never stored (miss), with four
// million keys: each reads a sub-block or two per section of its bucket
// from the page cache.
func BenchmarkOrderedLookupOld(b *testing.B) {
	const n = 1 << 22
	s := benchOrderedStore(b, n, true)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]Entry, n)
	for i := range keys {
		keys[i] = benchEntry(rng, i, true)
	}
	b.Run("hit", func(b *testing.B) {
		pick := rand.New(rand.NewPCG(3, 4))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			e := keys[pick.IntN(n)]
			if _, ok, err := s.LookupOrdered(e.KeyHash, e.Minted); !ok || err != nil {
				b.Fatal("a stored key was not found", err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		pick := rand.New(rand.NewPCG(5, 6))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok, err := s.LookupOrdered(pick.Uint64()|1, keys[pick.IntN(n)].Minted); ok || err != nil {
				b.Fatal("an unknown key was found", err)
			}
		}
	})
	st := s.Stats()
	b.ReportMetric(float64(st.OrderedRuns), "runs")
}

// BenchmarkOrderedWrite is the writer's cost per time-ordered key:
// sorting, encoding, writing and fsyncing runs of 2^20 keys, and indexing
// them (reported per key).
func BenchmarkOrderedWrite(b *testing.B) {
	const n = 1 << 22
	for i := 0; i < b.N; i++ {
		benchOrderedStore(b, n, true)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}

// BenchmarkMemoryPerKey is the memory per key of ten million spilled keys
// of each class: the heap the store keeps for the keys past the first
// run (the first grows the writer's scratch, which does not grow with the
// keys), and its index as counted against IndexBytesMax and
// OrderedIndexBytesMax.
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 10_000_000
	for _, class := range []struct {
		name  string
		timed bool
	}{{"time-ordered", true}, {"other", false}} {
		b.Run(class.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c := newClock(benchStartNs)
				s, err := Open(Config{Dir: b.TempDir(), Window: 24 * time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond})
				if err != nil {
					b.Fatal(err)
				}
				const first = 1 << 20
				writeBench(b, s, 0, first, class.timed)
				before := heapBytes()
				writeBench(b, s, first, n, class.timed)
				after := heapBytes()
				st := s.Stats()
				b.ReportMetric(float64(int64(after)-int64(before))/(n-first), "heap-B/key")
				if class.timed {
					b.ReportMetric(float64(st.OrderedIndexBytes)/n, "index-B/key")
				} else {
					b.ReportMetric(float64(st.IndexBytes)/n, "index-B/key")
				}
				b.ReportMetric(float64(st.Runs+st.OrderedRuns), "runs")
				runtime.KeepAlive(s)
				s.Close()
			}
		})
	}
}

func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkOrderedOpen is the start-up cost per time-ordered key: Open
// reads each run's header and table only, not its blocks.
func BenchmarkOrderedOpen(b *testing.B) {
	const n = 1 << 22
	s := benchOrderedStore(b, n, true)
	dir := s.cfg.Dir
	s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := Open(Config{Dir: dir, Window: 24 * time.Hour, Now: newClock(benchStartNs).Now, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}

// BenchmarkOrderedOpenManyRuns opens a directory of many small
// time-ordered runs, as a long window at a low rate leaves (one run a
// RunDelayMax): Open must cost the same per run at any number of runs. The
// runs are written directly, not through a store, so that making them is
// quick.
func BenchmarkOrderedOpenManyRuns(b *testing.B) {
	for _, runs := range []int{1_000, 10_000, 40_000} {
		b.Run(fmt.Sprint(runs), func(b *testing.B) {
			dir := b.TempDir()
			writeSmallOrderedRuns(b, dir, runs)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := Open(Config{Dir: dir, Window: 24 * time.Hour, Now: newClock(benchStartNs + int64(runs)*1e9).Now, Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(runs), "ns/run")
		})
	}
}

// writeSmallOrderedRuns writes runs runs of one time-ordered key each, a
// second apart from benchStartNs on.
func writeSmallOrderedRuns(tb testing.TB, dir string, runs int) {
	s := &Store{cfg: Config{BucketWidth: 2 * time.Second}}
	for i := 0; i < runs; i++ {
		at := benchStartNs + int64(i)*1e9
		e := []Entry{{KeyHash: uint64(i)<<1 | 1, RequestHash: 1, Seq: uint64(i + 1), At: at, Minted: at / 1e6}}
		buckets, sizes, _ := s.sortOrdered(e, nil)
		if err := os.WriteFile(filepath.Join(dir, orderedName(uint64(i+1))), encodeOrdered(e, buckets, sizes, s.cfg.BucketWidth.Milliseconds()), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}
