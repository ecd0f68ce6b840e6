package idempotency

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkLookupMiss is the cost a new key pays: the index probe of a key
// that is not stored, with four million keys stored.
func BenchmarkLookupMiss(b *testing.B) {
	s := benchStore(b, 1<<22)
	rng := rand.New(rand.NewPCG(11, 12))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok, _ := s.Lookup(rng.Uint64() | 1); ok {
			b.Fatal("a random key was found")
		}
	}
}

// BenchmarkLookupHit is the cost of a retry whose key is on disk (the run
// block read from the page cache).
func BenchmarkLookupHit(b *testing.B) {
	s := benchStore(b, 1<<22)
	rng := rand.New(rand.NewPCG(1, 2)) // the keys benchStore wrote
	keys := make([]uint64, 1<<16)
	for i := range keys {
		keys[i] = rng.Uint64() | 1
		rng.Uint64()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok, err := s.Lookup(keys[i%len(keys)]); !ok || err != nil {
			b.Fatal("a stored key was not found", err)
		}
	}
}

// BenchmarkWrite is the writer's cost per key: sorting, encoding, writing
// and fsyncing a run of 65,536 keys, and indexing them.
func BenchmarkWrite(b *testing.B) {
	const batch = 1 << 16
	c := newClock(1)
	s, err := Open(Config{Dir: b.TempDir(), Window: time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		es := make([]Entry, min(batch, b.N-i))
		for j := range es {
			es[j] = Entry{KeyHash: rng.Uint64() | 1, RequestHash: 1, Seq: 1, At: 1}
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

func benchStore(b *testing.B, n int) *Store {
	c := newClock(1)
	s, err := Open(Config{Dir: b.TempDir(), Window: time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	const batch = 1 << 18
	for i := 0; i < n; i += batch {
		es := make([]Entry, batch)
		for j := range es {
			es[j] = Entry{KeyHash: rng.Uint64() | 1, RequestHash: rng.Uint64(), Seq: 1, At: 1}
		}
		done := make(chan error, 1)
		if err := s.Submit(es, func(err error) { done <- err }); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkOpen is the start-up cost per stored key: reading, checking and
// indexing every run (reported as ns/key).
func BenchmarkOpen(b *testing.B) {
	const n = 1 << 22
	s := benchStore(b, n)
	dir := s.cfg.Dir
	s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := Open(Config{Dir: dir, Window: time.Hour, Now: newClock(1).Now, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}
