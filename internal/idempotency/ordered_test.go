package idempotency

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
	"pgregory.net/rapid"
)

func TestKeyTime(t *testing.T) {
	const ms = 0x0193_8a2b_4c5d // 2024-12-01 or so
	tests := []struct {
		name string
		key  string
		ms   int64
		ok   bool
	}{
		{"uuidv7", "01938a2b-4c5d-7abc-8def-0123456789ab", ms, true},
		{"uuidv7 upper case", "01938A2B-4C5D-7ABC-BDEF-0123456789AB", ms, true},
		{"uuidv7 variant 9", "01938a2b-4c5d-7abc-9def-0123456789ab", ms, true},
		{"uuidv7 variant a", "01938a2b-4c5d-7abc-adef-0123456789ab", ms, true},
		{"uuidv7 largest time", "ffffffff-ffff-7fff-bfff-ffffffffffff", 1<<48 - 1, true},
		{"uuidv4", "01938a2b-4c5d-4abc-8def-0123456789ab", 0, false},
		{"uuidv6", "01938a2b-4c5d-6abc-8def-0123456789ab", 0, false},
		{"uuidv8", "01938a2b-4c5d-8abc-8def-0123456789ab", 0, false},
		{"uuid variant 0", "01938a2b-4c5d-7abc-7def-0123456789ab", 0, false},
		{"uuid variant 110 (microsoft)", "01938a2b-4c5d-7abc-cdef-0123456789ab", 0, false},
		{"uuid nil", "00000000-0000-0000-0000-000000000000", 0, false},
		{"uuid bad hex", "01938a2b-4c5d-7abc-8def-0123456789ag", 0, false},
		{"uuid bad hex in time", "0193za2b-4c5d-7abc-8def-0123456789ab", 0, false},
		{"uuid hyphen moved", "01938a2b4-c5d-7abc-8def-0123456789ab", 0, false},
		{"uuid underscores", "01938a2b_4c5d_7abc_8def_0123456789ab", 0, false},
		{"uuid without hyphens", "01938a2b4c5d7abc8def0123456789ab", 0, false},
		{"uuid braced", "{01938a2b-4c5d-7abc-8def-0123456789ab}", 0, false},
		{"uuid one short", "01938a2b-4c5d-7abc-8def-0123456789a", 0, false},
		{"ulid", "01JE52PK2X0123456789ABCDEF", 0x0193_8a2b_4c5d, true},
		{"ulid lower case", "01je52pk2x0123456789abcdef", 0x0193_8a2b_4c5d, true},
		{"ulid largest", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", 1<<48 - 1, true},
		{"ulid zero", "00000000000000000000000000", 0, true},
		{"ulid overflow", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", 0, false},
		{"ulid with I", "01JE52PK2X0123456789ABCDEI", 0, false},
		{"ulid with L", "01JE52PK2XL123456789ABCDEF", 0, false},
		{"ulid with O", "01JE52PK2XO123456789ABCDEF", 0, false},
		{"ulid with U", "01JE52PK2XU123456789ABCDEF", 0, false},
		{"ulid with hyphen", "01JE52PK2X-123456789ABCDEF", 0, false},
		{"ulid one long", "01JE52PK2X0123456789ABCDEFG", 0, false},
		{"empty", "", 0, false},
		{"arbitrary", "order-42", 0, false},
		{"36 bytes of other text", "this-is-not-a-uuid-but-36-bytes-long", 0, false},
		{"26 bytes of utf-8", "ééééééééééééé", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, ok := KeyTime(tt.key)
			if ok != tt.ok || (ok && ms != tt.ms) {
				t.Fatalf("KeyTime(%q) = %d, %v; want %d, %v", tt.key, ms, ok, tt.ms, tt.ok)
			}
		})
	}
}

func TestTimeOrdered(t *testing.T) {
	s := &Store{cfg: Config{Dir: "x", MintedAgeMax: time.Hour, MintedSkewMax: 5 * time.Minute}.withDefaults()}
	const at = int64(1_750_000_000_000) // unix ms of the first use
	tests := []struct {
		name   string
		minted int64
		want   bool
	}{
		{"minted at first use", at, true},
		{"minted an hour before", at - time.Hour.Milliseconds(), true},
		{"minted just over an hour before", at - time.Hour.Milliseconds() - 1, false},
		{"minted five minutes ahead", at + 5*time.Minute.Milliseconds(), true},
		{"minted just over five minutes ahead", at + 5*time.Minute.Milliseconds() + 1, false},
		{"minted at the epoch", 0, false},
		{"minted in 10889", 1<<48 - 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.TimeOrdered(tt.minted, at*1e6); got != tt.want {
				t.Fatalf("TimeOrdered(%d, %d) = %v, want %v", tt.minted, at*1e6, got, tt.want)
			}
		})
	}
}

// countingFS counts the reads of run files, to show which lookups read.
type countingFS struct {
	vfs.FS
	reads *atomic.Int64
}

type countingFile struct {
	vfs.File
	reads *atomic.Int64
}

func (f countingFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{File: file, reads: f.reads}, nil
}

func (f countingFile) ReadAt(b []byte, off int64) (int, error) {
	f.reads.Add(1)
	return f.File.ReadAt(b, off)
}

// timedEntries are n time-ordered entries minted from mintedMs on, one a
// millisecond a step.
func timedEntries(rng *rand.Rand, n int, at, mintedMs, step int64) []Entry {
	es := entries(rng, n, at)
	for i := range es {
		es[i].Minted = mintedMs + int64(i)*step/int64(max(n, 1))
	}
	return es
}

func mustFindOrdered(t *testing.T, s *Store, want Entry) {
	t.Helper()
	got, ok, err := s.LookupOrdered(want.KeyHash, want.Minted)
	if err != nil || !ok || got != want {
		t.Fatalf("ordered lookup %x minted %d: got %+v %v %v, want %+v", want.KeyHash, want.Minted, got, ok, err, want)
	}
}

func TestOrderedWriteLookupReopen(t *testing.T) {
	dir := t.TempDir()
	var reads atomic.Int64
	c := newClock(1_750_000_000_000 * 1e6)
	cfg := Config{FS: countingFS{FS: vfs.OS, reads: &reads}, Dir: dir, Window: time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	nowMs := c.Now() / 1e6
	// 5,000 keys over ten seconds of minting time: five buckets, sections
	// of more than one block.
	timed := timedEntries(rng, 5000, c.Now(), nowMs-10_000, 10_000)
	other := entries(rng, 100, c.Now())
	batch := append(append([]Entry(nil), timed...), other...)
	rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	writeSync(t, s, batch)
	st := s.Stats()
	if st.OrderedKeys != 5000 || st.Keys != 100 || st.OrderedRuns != 1 || st.Runs != 1 {
		t.Fatalf("stats %+v, want 5,000 ordered keys in a run and 100 others in another", st)
	}
	if want := timed[len(timed)-1].Minted + 1; s.Horizon() != want {
		t.Fatalf("horizon %d, want %d", s.Horizon(), want)
	}
	check := func(s *Store) {
		t.Helper()
		for _, e := range timed {
			mustFindOrdered(t, s, e)
			if _, ok, _ := s.Lookup(e.KeyHash); ok {
				t.Fatalf("time-ordered key %x found among the other keys", e.KeyHash)
			}
		}
		for _, e := range other {
			mustFind(t, s, e)
		}
		// A new key, minted at the horizon or later, reads nothing.
		before := reads.Load()
		for i := range 1000 {
			if _, ok, err := s.LookupOrdered(rng.Uint64()|1, s.Horizon()+int64(i)); ok || err != nil {
				t.Fatalf("a new key was found: %v", err)
			}
		}
		if n := reads.Load() - before; n != 0 {
			t.Fatalf("new keys read the disk %d times", n)
		}
		// An old key not stored reads its bucket's one section: the
		// sub-block its hash points at, and maybe a neighbour (two away
		// takes a guess three standard deviations off).
		for range 100 {
			before = reads.Load()
			if _, ok, err := s.LookupOrdered(rng.Uint64()|1, nowMs-5000); ok || err != nil {
				t.Fatalf("an unknown old key was found: %v", err)
			}
			if n := reads.Load() - before; n < 1 || n > 3 {
				t.Fatalf("an old key read %d sub-blocks, want 1 to 3", n)
			}
		}
	}
	check(s)
	s.Close()
	if s, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	if want := timed[len(timed)-1].Minted + 1; s.Horizon() != want {
		t.Fatalf("horizon after reopen %d, want %d", s.Horizon(), want)
	}
	check(s)
	// Past the window the run goes, and with it every key.
	c.add(int64(time.Hour) + 1e9)
	writeSync(t, s, entries(rng, 1, c.Now()))
	if st := s.Stats(); st.OrderedKeys != 0 || st.OrderedRuns != 0 {
		t.Fatalf("after the window: %+v", st)
	}
	if _, ok, _ := s.LookupOrdered(timed[0].KeyHash, timed[0].Minted); ok {
		t.Fatal("a key past its window was found")
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Fatalf("files after the window: %v", names)
	}
	s.Close()
}

func TestOrderedDamageRefused(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1_750_000_000_000 * 1e6)
	s := openTest(t, dir, c, time.Hour)
	rng := rand.New(rand.NewPCG(9, 10))
	nowMs := c.Now() / 1e6
	timed := timedEntries(rng, 40, c.Now(), nowMs-4000, 4000) // two sections
	writeSync(t, s, timed)
	s.Close()
	path := filepath.Join(dir, orderedName(1))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	refused, metAtLookup := 0, 0
	for off := range good {
		bad := append([]byte(nil), good...)
		bad[off] ^= 0x04
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Dir: dir, Window: time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond})
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("byte %d flipped: got %v, want ErrDamaged", off, err)
			}
			refused++
			continue
		}
		// The header and table passed: the flip is in a block, which
		// every lookup through it refuses; no lookup answers wrongly.
		damaged := 0
		for _, e := range timed {
			got, ok, err := s.LookupOrdered(e.KeyHash, e.Minted)
			switch {
			case errors.Is(err, ErrDamaged):
				damaged++
			case err != nil || !ok || got != e:
				t.Fatalf("byte %d flipped: lookup %x got %+v %v %v, want %+v", off, e.KeyHash, got, ok, err, e)
			}
		}
		if damaged == 0 {
			t.Fatalf("byte %d flipped: opened and every key answered", off)
		}
		metAtLookup++
		s.Close()
	}
	if refused == 0 || metAtLookup == 0 {
		t.Fatalf("%d flips refused at open, %d at lookup: want both", refused, metAtLookup)
	}
	for _, cut := range []int{1, orderedHeaderBytes, len(good) - 1} {
		if err := os.WriteFile(path, good[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Config{Dir: dir, Now: c.Now, Logger: quiet}); !errors.Is(err, ErrDamaged) {
			t.Fatalf("run cut at %d: got %v, want ErrDamaged", cut, err)
		}
	}
}

func TestOrderedBudgetForgetsOldest(t *testing.T) {
	dir := t.TempDir()
	c := newClock(1_750_000_000_000 * 1e6)
	budget := int64(3 * (orderedRunOverheadBytes + orderedSectionOverheadBytes + 8))
	s, err := Open(Config{Dir: dir, Window: time.Hour, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond, OrderedIndexBytesMax: budget})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(11, 12))
	var runs [][]Entry
	for i := range 5 {
		es := timedEntries(rng, 10, c.Now(), c.Now()/1e6+int64(i), 0)
		writeSync(t, s, es)
		runs = append(runs, es)
	}
	st := s.Stats()
	if st.OrderedRuns != 3 || st.OrderedForgottenEarly != 20 || st.OrderedIndexBytes > budget {
		t.Fatalf("stats %+v, want the 3 newest runs within %d bytes and 20 keys forgotten", st, budget)
	}
	for _, e := range runs[4] {
		mustFindOrdered(t, s, e)
	}
	if _, ok, _ := s.LookupOrdered(runs[0][0].KeyHash, runs[0][0].Minted); ok {
		t.Fatal("a forgotten key was found")
	}
}

// TestOrderedProperty checks the store against a map on the simulated
// disk: time-ordered and other keys written in batches as a clock moves,
// clean restarts, crashes (also in the middle of a write, whose keys are
// then written again, as the engine does with the keys it still holds) and
// the window passing. Every stored key within its window is found with its
// entry, none past it, and no time-ordered key is stored at or above the
// horizon.
func TestOrderedProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		sim, err := vfs.NewSim(vfs.SimConfig{Seed: rapid.Uint64().Draw(rt, "simSeed")})
		if err != nil {
			rt.Fatal(err)
		}
		c := newClock(1_750_000_000_000 * 1e6)
		window := time.Duration(rapid.Int64Range(int64(time.Second), int64(time.Minute)).Draw(rt, "window"))
		cfg := Config{FS: sim, Dir: "/idempotency", Window: window, Now: c.Now, Logger: quiet, RunDelayMax: time.Microsecond,
			BucketWidth: time.Duration(rapid.Int64Range(1, 500).Draw(rt, "bucketMs")) * time.Millisecond}
		s, err := Open(cfg)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { s.Close() }()
		reopen := func() {
			s.Close()
			if s, err = Open(cfg); err != nil {
				rt.Fatal(err)
			}
		}
		// write submits batch until it is durable, reopening after a
		// crash and waiting out the back-off after a failure.
		write := func(batch []Entry) {
			crashes := sim.Stats().Crashes
			defer func() {
				if sim.Stats().Crashes != crashes {
					reopen() // the crash hit after the write, in its expiry: the process is gone
				}
			}()
			for {
				crashes = sim.Stats().Crashes
				done := make(chan error, 1)
				if err := s.Submit(batch, func(err error) { done <- err }); err != nil {
					c.add(int64(time.Second))
					continue
				}
				err := <-done
				if err == nil {
					return
				}
				if errors.Is(err, vfs.ErrCrashed) {
					reopen()
				}
				c.add(int64(time.Second))
			}
		}
		model := map[uint64]Entry{}
		seed := rapid.Uint64().Draw(rt, "seed")
		rng := rand.New(rand.NewPCG(seed, seed+1))
		var known []uint64
		check := func(keys []uint64) {
			cutoff := c.Now() - int64(window)
			horizon := s.Horizon()
			for _, k := range keys {
				want := model[k]
				var got Entry
				var ok bool
				var err error
				if want.Minted != 0 {
					if want.Minted >= horizon && want.At > cutoff {
						rt.Fatalf("key %x minted at %d is stored at or above the horizon %d", k, want.Minted, horizon)
					}
					got, ok, err = s.LookupOrdered(k, want.Minted)
				} else {
					got, ok, err = s.Lookup(k)
				}
				if err != nil {
					rt.Fatal(err)
				}
				if live := want.At > cutoff; ok != live || (ok && got != want) {
					rt.Fatalf("key %x (%+v, live %v): got %+v %v", k, want, live, got, ok)
				}
			}
		}
		for range rapid.IntRange(1, 30).Draw(rt, "steps") {
			switch rapid.IntRange(0, 5).Draw(rt, "action") {
			case 0, 1: // spill a batch, maybe crashing or failing in it
				n := rapid.IntRange(1, 4000).Draw(rt, "keys")
				timedShare := rapid.IntRange(0, 100).Draw(rt, "timedPercent")
				lag := rapid.Int64Range(0, 5000).Draw(rt, "lagMs")
				span := rapid.Int64Range(0, 3000).Draw(rt, "spanMs")
				batch := entries(rng, n, c.Now())
				for i := range batch {
					if rng.IntN(100) < timedShare {
						batch[i].Minted = c.Now()/1e6 - lag + rng.Int64N(span+1)
					}
					model[batch[i].KeyHash] = batch[i]
					known = append(known, batch[i].KeyHash)
				}
				switch rapid.IntRange(0, 3).Draw(rt, "fault") {
				case 1:
					sim.CrashAtMutation(rapid.Int64Range(1, 12).Draw(rt, "crashAt"))
				case 2:
					sim.FailNextSync(func(string) bool { return true })
				}
				write(append([]Entry(nil), batch...))
				sim.CrashAtMutation(0)
				sim.ClearInjections()
			case 2: // time passes
				c.add(rapid.Int64Range(0, int64(window)).Draw(rt, "advance"))
			case 3: // clean restart
				reopen()
			case 4: // power failure
				s.Close()
				sim.Crash()
				if s, err = Open(cfg); err != nil {
					rt.Fatal(err)
				}
			case 5: // unknown keys are not found
				for range 100 {
					k := rng.Uint64() | 1
					if _, ok, _ := s.Lookup(k); ok {
						rt.Fatalf("unknown key %x found", k)
					}
					if _, ok, _ := s.LookupOrdered(k, c.Now()/1e6-rng.Int64N(10_000)); ok {
						rt.Fatalf("unknown key %x found among the time-ordered", k)
					}
				}
			}
			// A sample of the keys after each step (a time-ordered look-up
			// reads a few KiB), every key at the end.
			sample := known
			if len(sample) > 200 {
				sample = make([]uint64, 200)
				for i := range sample {
					sample[i] = known[rng.IntN(len(known))]
				}
			}
			check(sample)
		}
		check(known)
	})
}

// TestSortOrdered checks the order of a run's entries, by bucket then key
// hash, for buckets close together and for a range too wide to index.
func TestSortOrdered(t *testing.T) {
	s := &Store{cfg: Config{Dir: "x", BucketWidth: time.Millisecond}.withDefaults()}
	for _, spanMs := range []int64{1, 50, 1 << 15, 1 << 40} {
		rng := rand.New(rand.NewPCG(uint64(spanMs), 1))
		es := entries(rng, 5000, 1)
		for i := range es {
			es[i].Minted = 1_750_000_000_000 + rng.Int64N(spanMs)
		}
		want := map[uint64]Entry{}
		for _, e := range es {
			want[e.KeyHash] = e
		}
		buckets, sizes, _ := s.sortOrdered(es, nil)
		first := 0
		for i, b := range buckets {
			for j := first; j < first+sizes[i]; j++ {
				if got := s.bucketOf(es[j].Minted); got != b {
					t.Fatalf("span %d: entry %d in section of bucket %d has bucket %d", spanMs, j, b, got)
				}
				if j > first && es[j].KeyHash < es[j-1].KeyHash {
					t.Fatalf("span %d: entry %d out of key order", spanMs, j)
				}
				if want[es[j].KeyHash] != es[j] {
					t.Fatalf("span %d: entry %d changed", spanMs, j)
				}
				delete(want, es[j].KeyHash)
			}
			first += sizes[i]
		}
		if len(want) != 0 || first != len(es) {
			t.Fatalf("span %d: %d entries lost, sections hold %d of %d", spanMs, len(want), first, len(es))
		}
	}
}

// FuzzReadOrdered checks that any file is either refused as damage or
// read into sections whose every block a lookup can read and check
// without a panic.
func FuzzReadOrdered(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	es := timedEntries(rng, 40, 5, 1_750_000_000_000, 4000)
	s := &Store{cfg: Config{Dir: "x"}.withDefaults()}
	buckets, sizes, _ := s.sortOrdered(es, nil)
	f.Add(encodeOrdered(es, buckets, sizes, s.cfg.BucketWidth.Milliseconds()))
	f.Add(encodeOrdered(es, buckets, sizes, 2*s.cfg.BucketWidth.Milliseconds()))
	f.Add(encodeOrderedV1(es, buckets, sizes))
	f.Add([]byte(orderedMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		sim, err := vfs.NewSim(vfs.SimConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.MkdirAll("/runs", 0o700); err != nil {
			t.Fatal(err)
		}
		const path = "/runs/0000000000000001.trun"
		if err := vfs.WriteFileAtomic(sim, path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := readOrdered(sim, path, 1, s.cfg.BucketWidth.Milliseconds())
		if err != nil {
			if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrBucketWidth) {
				t.Fatalf("not damage: %v", err)
			}
			return
		}
		for i, sec := range r.sections {
			for _, h := range sec.fences {
				if _, _, err := r.find(sim, i, h); err != nil && !errors.Is(err, ErrDamaged) {
					t.Fatalf("lookup of fence %x: %v", h, err)
				}
			}
		}
	})
}

// TestOpenManyOrderedRuns checks the start-up that publishes every run at
// once (before, each run was published alone, walking all those before
// it): the figures, the horizon and the lookups are those of the runs, and
// a budget lowered below them forgets the oldest at Open, the newest kept.
func TestOpenManyOrderedRuns(t *testing.T) {
	const runs = 300
	for _, budget := range []int64{0, 100 * (orderedRunOverheadBytes + orderedSectionOverheadBytes + 8)} {
		dir := t.TempDir()
		writeSmallOrderedRuns(t, dir, runs)
		s, err := Open(Config{Dir: dir, Window: 24 * time.Hour, Now: newClock(benchStartNs + runs*1e9).Now, Logger: quiet, OrderedIndexBytesMax: budget})
		if err != nil {
			t.Fatal(err)
		}
		kept := runs
		if budget != 0 {
			kept = 100
		}
		st := s.Stats()
		if st.OrderedRuns != kept || st.OrderedKeys != int64(kept) || st.OrderedForgottenEarly != uint64(runs-kept) ||
			st.OrderedIndexBytes != int64(kept)*(orderedRunOverheadBytes+orderedSectionOverheadBytes+8) {
			t.Fatalf("budget %d: stats %+v, want the %d newest runs of one key", budget, st, kept)
		}
		last := benchStartNs + (runs-1)*1e9
		if st.Horizon != last/1e6+1 || st.OldestAt != benchStartNs+int64(runs-kept)*1e9 {
			t.Fatalf("budget %d: horizon %d oldest %d, want %d and %d", budget, st.Horizon, st.OldestAt, last/1e6+1, benchStartNs+int64(runs-kept)*1e9)
		}
		for i := 0; i < runs; i++ {
			at := benchStartNs + int64(i)*1e9
			e, ok, err := s.LookupOrdered(uint64(i)<<1|1, at/1e6)
			if err != nil || ok != (i >= runs-kept) || (ok && (e.Seq != uint64(i+1) || e.At != at)) {
				t.Fatalf("budget %d: key of run %d: %+v %v %v", budget, i, e, ok, err)
			}
		}
		s.Close()
	}
}

// encodeOrderedV1 lays entries out as a run of the first layout, whose
// header has no bucket width.
func encodeOrderedV1(entries []Entry, buckets []int64, sizes []int) []byte {
	b := encodeOrdered(entries, buckets, sizes, 0)
	h := append([]byte(orderedMagicV1), b[len(orderedMagic):52]...)
	h = binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
	return append(h, b[orderedHeaderBytes:]...)
}

// TestOrderedBucketWidthChecked checks that Open refuses a time-ordered run
// of another bucket width, whose keys lookups would miss, and still reads a
// run of the first layout, which has no width to check.
func TestOrderedBucketWidthChecked(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	es := timedEntries(rng, 40, 5, 1_750_000_000_000, 4000)
	s := &Store{cfg: Config{Dir: "x"}.withDefaults()}
	buckets, sizes, _ := s.sortOrdered(es, nil)
	for _, tc := range []struct {
		name  string
		data  []byte
		width time.Duration
		err   error
	}{
		{"same width", encodeOrdered(es, buckets, sizes, s.cfg.BucketWidth.Milliseconds()), s.cfg.BucketWidth, nil},
		{"another width", encodeOrdered(es, buckets, sizes, s.cfg.BucketWidth.Milliseconds()), 2 * s.cfg.BucketWidth, ErrBucketWidth},
		{"first layout", encodeOrderedV1(es, buckets, sizes), s.cfg.BucketWidth, nil},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, orderedName(1)), tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := Open(Config{Dir: dir, Window: 24 * time.Hour, BucketWidth: tc.width, Now: newClock(es[0].At).Now, Logger: quiet})
		if !errors.Is(err, tc.err) {
			t.Fatalf("%s: Open: %v, want %v", tc.name, err, tc.err)
		}
		if err != nil {
			continue
		}
		for _, e := range es {
			mustFindOrdered(t, st, e)
		}
		st.Close()
	}
}
