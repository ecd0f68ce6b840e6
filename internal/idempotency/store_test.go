package idempotency

import (
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a test clock, read by the writer goroutine.
type clock struct{ at atomic.Int64 }

func newClock(at int64) *clock {
	c := &clock{}
	c.at.Store(at)
	return c
}

func (c *clock) Now() int64   { return c.at.Load() }
func (c *clock) add(d int64)  { c.at.Add(d) }
func (c *clock) set(at int64) { c.at.Store(at) }

func openTest(t *testing.T, dir string, c *clock, window time.Duration) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Window: window, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeSync submits entries and waits until they are durable.
func writeSync(t *testing.T, s *Store, entries []Entry) {
	t.Helper()
	done := make(chan error, 1)
	if err := s.Submit(entries, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func entries(rng *rand.Rand, n int, at int64) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{KeyHash: rng.Uint64() | 1, RequestHash: rng.Uint64(), Seq: uint64(i + 1), At: at + int64(i), Partition: uint32(rng.IntN(64))}
	}
	return es
}

func mustFind(t *testing.T, s *Store, want Entry) {
	t.Helper()
	got, ok, err := s.Lookup(want.KeyHash)
	if err != nil || !ok || got != want {
		t.Fatalf("lookup %x: got %+v %v %v, want %+v", want.KeyHash, got, ok, err, want)
	}
}

func TestWriteLookupReopen(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1000)
	s := openTest(t, dir, c, time.Hour)
	rng := rand.New(rand.NewPCG(1, 2))
	var all []Entry
	for run := 0; run < 5; run++ {
		es := entries(rng, 3000, c.Now())
		all = append(all, es...)
		writeSync(t, s, append([]Entry(nil), es...))
	}
	check := func(s *Store) {
		for _, e := range all {
			mustFind(t, s, e)
		}
		for i := 0; i < 10000; i++ {
			if _, ok, err := s.Lookup(rng.Uint64() | 1); ok || err != nil {
				t.Fatalf("a key never stored was found (%v)", err)
			}
		}
		if st := s.Stats(); st.Keys != int64(len(all)) || st.OldestAt != 1000 {
			t.Fatalf("stats %+v, want %d keys from 1000", st, len(all))
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, c, time.Hour)
	defer s.Close()
	check(s)
}

func TestWindowForgetsOldRuns(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1000)
	window := 100 * time.Nanosecond
	s := openTest(t, dir, c, window)
	rng := rand.New(rand.NewPCG(3, 4))
	old := entries(rng, 10, c.Now())
	writeSync(t, s, append([]Entry(nil), old...))
	c.add(50)
	recent := entries(rng, 10, c.Now())
	writeSync(t, s, append([]Entry(nil), recent...))
	c.set(1000 + 9 + 101) // the first run's newest key is now past the window
	for _, e := range old {
		if _, ok, _ := s.Lookup(e.KeyHash); ok {
			t.Fatalf("key %x older than the window was found", e.KeyHash)
		}
	}
	mustFind(t, s, recent[9])
	// The next write removes the expired run's file.
	writeSync(t, s, entries(rng, 1, c.Now()))
	names, _ := vfs.OS.ReadDir(dir)
	if len(names) != 2 {
		t.Fatalf("files after expiry: %v", names)
	}
	s.Close()
}

func TestDamagedRunRefused(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1000)
	s := openTest(t, dir, c, time.Hour)
	writeSync(t, s, entries(rand.New(rand.NewPCG(5, 6)), 3, c.Now()))
	s.Close()
	path := filepath.Join(dir, runName(1))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := range good {
		bad := append([]byte(nil), good...)
		bad[off] ^= 0x10
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Config{Dir: dir, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond})
		if !errors.Is(err, ErrDamaged) {
			t.Fatalf("byte %d flipped: got %v, want ErrDamaged", off, err)
		}
	}
	if err := os.WriteFile(path, good[:len(good)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("short run: got %v, want ErrDamaged", err)
	}
}

func TestInterruptedRunRemoved(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, runName(7)+".tmp")
	if err := os.WriteFile(tmp, []byte("half a run"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClock(1)
	s := openTest(t, dir, c, time.Hour)
	defer s.Close()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("interrupted run still there: %v", err)
	}
}

func TestIndexBudgetForgetsOldest(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1000)
	s, err := Open(Config{Dir: dir, Window: time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond, IndexBytesMax: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	first := entries(rng, 20000, c.Now())
	writeSync(t, s, append([]Entry(nil), first...))
	var last []Entry
	for i := 0; i < 10; i++ {
		last = entries(rng, 20000, c.Now())
		writeSync(t, s, append([]Entry(nil), last...))
	}
	st := s.Stats()
	if st.IndexBytes > 1<<20 || st.ForgottenEarly == 0 {
		t.Fatalf("stats %+v: want the index within 1 MiB and keys forgotten", st)
	}
	if _, ok, _ := s.Lookup(first[0].KeyHash); ok {
		t.Fatal("the oldest run survived the budget")
	}
	for _, e := range last {
		mustFind(t, s, e)
	}
	// Reopened with a smaller bound, the store forgets at once.
	s.Close()
	s, err = Open(Config{Dir: dir, Window: time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond, IndexBytesMax: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.IndexBytes > 512<<10 {
		t.Fatalf("stats %+v after reopening: the index is over its bound", st)
	}
	mustFind(t, s, last[0])
}

func TestSubmitBacksOffAfterFailure(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1000)
	s := openTest(t, dir, c, time.Hour)
	defer s.Close()
	// A directory where the run should be makes the write fail.
	if err := os.Mkdir(filepath.Join(dir, runName(1)+".tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	if err := s.Submit(entries(rand.New(rand.NewPCG(9, 9)), 2, c.Now()), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("write into a directory succeeded")
	}
	if err := s.Submit(nil, func(error) {}); !errors.Is(err, ErrBusy) {
		t.Fatalf("submit right after a failure: %v, want ErrBusy", err)
	}
	c.add(int64(2 * time.Second))
	os.Remove(filepath.Join(dir, runName(1)+".tmp"))
	es := entries(rand.New(rand.NewPCG(9, 10)), 2, c.Now())
	writeSync(t, s, append([]Entry(nil), es...))
	mustFind(t, s, es[0])
}

func FuzzDecodeRun(f *testing.F) {
	f.Add(encodeRun(entries(rand.New(rand.NewPCG(1, 1)), 3, 5)))
	f.Add([]byte(runMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := decodeRun("fuzz", b)
		if err != nil {
			return
		}
		if got := encodeRun(es); string(got) != string(b) {
			t.Fatalf("a run that decodes does not re-encode to itself")
		}
	})
}

func TestSortByKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, tc := range []struct {
		name string
		keys func(i int) uint64
	}{
		{"random", func(int) uint64 { return rng.Uint64() | 1 }},
		{"one byte differs", func(i int) uint64 { return 0xAB00_0000_0000_0001 | uint64(rng.IntN(256))<<8 }},
		{"descending", func(i int) uint64 { return uint64(1_000_000-i) * 3 }},
		{"equal", func(int) uint64 { return 77 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{1, 2, 3, 100, 5000} {
				es := make([]Entry, n)
				sum := uint64(0)
				for i := range es {
					es[i] = Entry{KeyHash: tc.keys(i), Seq: uint64(i)}
					sum += es[i].KeyHash ^ es[i].Seq
				}
				sortByKey(es, nil)
				got := uint64(0)
				for i := range es {
					got += es[i].KeyHash ^ es[i].Seq
					if i > 0 && es[i].KeyHash < es[i-1].KeyHash {
						t.Fatalf("n=%d: entry %d out of order", n, i)
					}
				}
				if got != sum {
					t.Fatalf("n=%d: entries lost or changed by the sort", n)
				}
			}
		})
	}
}

// TestDamageAfterOpenRefused checks that a block damaged after Open makes
// its lookup fail rather than answer from the damaged bytes.
func TestDamageAfterOpenRefused(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1000)
	s := openTest(t, dir, c, time.Hour)
	defer s.Close()
	es := entries(rand.New(rand.NewPCG(15, 16)), 200, c.Now())
	writeSync(t, s, append([]Entry(nil), es...))
	sorted := append([]Entry(nil), es...)
	sortByKey(sorted, nil)
	path := filepath.Join(dir, runName(1))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[headerBytes+blockBytes+20] ^= 1 // the seq of the second block's first entry
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup(sorted[blockEntries].KeyHash); !errors.Is(err, ErrDamaged) {
		t.Fatalf("lookup in a damaged block: %v, want ErrDamaged", err)
	}
	mustFind(t, s, sorted[0]) // the first block is intact
}

func TestRunIDNeverZero(t *testing.T) {
	for _, tc := range []struct {
		number uint64
		id     uint32
	}{{1, 1}, {2, 2}, {runIDMax - 1, runIDMax - 1}, {runIDMax, 1}, {2*runIDMax - 2, runIDMax - 1}, {2*runIDMax - 1, 1}} {
		if got := runID(tc.number); got != tc.id {
			t.Errorf("runID(%d) = %d, want %d", tc.number, got, tc.id)
		}
	}
}
