package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// simTestSeeds is how many seeds the outcome tests try: enough that every
// outcome of a small scenario shows up (the tests assert it does), few enough
// to run in milliseconds.
const simTestSeeds = 256

func newTestSim(t testing.TB, cfg SimConfig) *Sim {
	t.Helper()
	s, err := NewSim(cfg)
	if err != nil {
		t.Fatalf("new sim: %v", err)
	}
	if err := s.MkdirAll("d", 0o755); err != nil {
		t.Fatalf("mkdir d: %v", err)
	}
	return s
}

// writeFile creates name with data; it fsyncs the data when syncData and the
// directory when syncDir.
func writeFile(t testing.TB, fsys FS, name, data string, syncData, syncDir bool) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if syncData {
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync %s: %v", name, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
	if syncDir {
		if err := fsys.SyncDir("d"); err != nil {
			t.Fatalf("fsync directory d: %v", err)
		}
	}
}

// dirState renders the files of directory d and their contents, sorted, as
// "a=x b=y" so that outcomes compare as strings.
func dirState(t testing.TB, fsys FS) string {
	t.Helper()
	names, err := fsys.ReadDir("d")
	if err != nil {
		t.Fatalf("read directory d: %v", err)
	}
	parts := make([]string, 0, len(names))
	for _, n := range names {
		data, err := ReadFile(fsys, "d/"+n)
		if err != nil {
			t.Fatalf("read d/%s: %v", n, err)
		}
		parts = append(parts, n+"="+string(data))
	}
	return strings.Join(parts, " ")
}

// checkOutcomes runs scenario on a fresh Sim for every seed, crashes, and
// checks that every outcome is allowed and every allowed outcome occurs.
func checkOutcomes(t *testing.T, allowed []string, scenario func(t *testing.T, s *Sim)) {
	t.Helper()
	checkOutcomesWithFaults(t, SimFaults{}, allowed, scenario)
}

func checkOutcomesWithFaults(t *testing.T, faults SimFaults, allowed []string, scenario func(t *testing.T, s *Sim)) {
	t.Helper()
	seen := map[string]int{}
	for seed := range uint64(simTestSeeds) {
		s := newTestSim(t, SimConfig{Seed: seed, Faults: faults})
		scenario(t, s)
		s.Crash()
		got := dirState(t, s)
		if !slices.Contains(allowed, got) {
			t.Fatalf("seed %d: after the crash directory d holds %q, want one of %q\nhistory:\n%s",
				seed, got, allowed, strings.Join(s.History(), "\n"))
		}
		seen[got]++
	}
	for _, want := range allowed {
		if seen[want] == 0 {
			t.Errorf("outcome %q never occurred in %d seeds (seen %v)", want, simTestSeeds, seen)
		}
	}
}

func TestSimDirectoryEntriesSurviveOnlyWhenSynced(t *testing.T) {
	tests := []struct {
		name     string
		scenario func(t *testing.T, s *Sim)
		allowed  []string
	}{
		{
			name: "create synced by SyncDir survives",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "x", true, true)
			},
			allowed: []string{"a=x"},
		},
		{
			name: "create without SyncDir may vanish",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "x", true, false)
			},
			allowed: []string{"", "a=x"},
		},
		{
			name: "rename without SyncDir may revert",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "old", true, false)
				writeFile(t, s, "d/tmp", "new", true, true)
				if err := s.Rename("d/tmp", "d/a"); err != nil {
					t.Fatalf("rename: %v", err)
				}
			},
			allowed: []string{"a=old tmp=new", "a=new"},
		},
		{
			name: "rename synced by SyncDir survives",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "old", true, false)
				writeFile(t, s, "d/tmp", "new", true, true)
				if err := s.Rename("d/tmp", "d/a"); err != nil {
					t.Fatalf("rename: %v", err)
				}
				if err := s.SyncDir("d"); err != nil {
					t.Fatalf("fsync directory: %v", err)
				}
			},
			allowed: []string{"a=new"},
		},
		{
			name: "removal without SyncDir may come back",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "x", true, true)
				if err := s.Remove("d/a"); err != nil {
					t.Fatalf("remove: %v", err)
				}
			},
			allowed: []string{"", "a=x"},
		},
		{
			name: "removal synced by SyncDir stays removed",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "x", true, true)
				if err := s.Remove("d/a"); err != nil {
					t.Fatalf("remove: %v", err)
				}
				if err := s.SyncDir("d"); err != nil {
					t.Fatalf("fsync directory: %v", err)
				}
			},
			allowed: []string{""},
		},
		{
			name: "entries come back as an ordered prefix",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "1", true, false)
				writeFile(t, s, "d/b", "2", true, false)
				writeFile(t, s, "d/c", "3", true, false)
			},
			allowed: []string{"", "a=1", "a=1 b=2", "a=1 b=2 c=3"},
		},
		{
			name: "a synced entry of unsynced data survives with its durable bytes",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "", true, true)
				f, err := s.OpenFile("d/a", os.O_WRONLY, 0)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if _, err := f.Write([]byte("xy")); err != nil {
					t.Fatalf("write: %v", err)
				}
			},
			allowed: []string{"a=", "a=x", "a=xy"},
		},
		{
			name: "a failed SyncDir leaves the entry unsynced",
			scenario: func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "x", true, false)
				s.FailNextSyncDir(func(string) bool { return true })
				err := s.SyncDir("d")
				if !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrInjected) {
					t.Fatalf("fsync directory: got %v, want an injected EIO", err)
				}
			},
			allowed: []string{"", "a=x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkOutcomes(t, tt.allowed, tt.scenario) })
	}
}

// modelOp is one unsynced file operation, applied by the test's own model so
// that the Sim is checked against an independent implementation.
type modelOp struct {
	truncate bool
	offset   int
	size     int
	data     string
}

func (op modelOp) apply(b []byte) []byte {
	if op.truncate {
		if op.size <= len(b) {
			return slices.Clone(b[:op.size])
		}
		return append(slices.Clone(b), make([]byte, op.size-len(b))...)
	}
	out := slices.Clone(b)
	if end := op.offset + len(op.data); end > len(out) {
		out = append(out, make([]byte, end-len(out))...)
	}
	copy(out[op.offset:], op.data)
	return out
}

// prefixOutcomes lists what a crash may leave of base after ops: every
// operation up to some k applied, and then a strict byte prefix of the k-th
// write.
func prefixOutcomes(base string, ops []modelOp) []string {
	cur := []byte(base)
	var out []string
	for _, op := range ops {
		if !op.truncate {
			for cut := range len(op.data) {
				part := modelOp{offset: op.offset, data: op.data[:cut]}
				out = append(out, string(part.apply(cur)))
			}
		} else {
			out = append(out, string(cur))
		}
		cur = op.apply(cur)
	}
	out = append(out, string(cur))
	slices.Sort(out)
	return slices.Compact(out)
}

func TestSimUnsyncedDataSurvivesOnlyAsOrderedPrefix(t *testing.T) {
	tests := []struct {
		name string
		base string
		ops  []modelOp
	}{
		{
			name: "appends",
			base: "base",
			ops:  []modelOp{{offset: 4, data: "abc"}, {offset: 7, data: "de"}},
		},
		{
			name: "overwrite then append",
			base: "0123456789",
			ops:  []modelOp{{offset: 2, data: "XYZ"}, {offset: 10, data: "ab"}},
		},
		{
			name: "truncate then write past the end",
			base: "0123456789",
			ops:  []modelOp{{truncate: true, size: 3}, {offset: 5, data: "hi"}},
		},
		{
			name: "write into a new file",
			base: "",
			ops:  []modelOp{{offset: 0, data: "hello"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allowed := prefixOutcomes(tt.base, tt.ops)
			for i := range allowed {
				allowed[i] = "a=" + allowed[i]
			}
			checkOutcomes(t, allowed, func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", tt.base, true, true)
				f, err := s.OpenFile("d/a", os.O_RDWR, 0)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				for _, op := range tt.ops {
					if op.truncate {
						err = f.Truncate(int64(op.size))
					} else {
						_, err = f.WriteAt([]byte(op.data), int64(op.offset))
					}
					if err != nil {
						t.Fatalf("%+v: %v", op, err)
					}
				}
			})
		})
	}
}

func TestSimCrashZeroFill(t *testing.T) {
	allowed := []string{"a=AAAA\x00\x00\x00\x00", "a=AAAAB\x00\x00\x00", "a=AAAABB\x00\x00", "a=AAAABBB\x00", "a=AAAABBBB"}
	faults := SimFaults{CrashZeroFillProbability: 1}
	checkOutcomesWithFaults(t, faults, allowed, func(t *testing.T, s *Sim) {
		writeFile(t, s, "d/a", "AAAA", true, true)
		f, err := s.OpenFile("d/a", os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if _, err := f.Write([]byte("BBBB")); err != nil {
			t.Fatalf("write: %v", err)
		}
	})
}

func TestSimSyncedDataSurvivesCrash(t *testing.T) {
	for seed := range uint64(simTestSeeds) {
		s := newTestSim(t, SimConfig{Seed: seed})
		writeFile(t, s, "d/a", "", true, true)
		f, err := s.OpenFile("d/a", os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		var written, synced string
		rng := rand.New(rand.NewPCG(seed, 1))
		for i := range 20 {
			record := fmt.Sprintf("record %d;", i)
			if _, err := f.Write([]byte(record)); err != nil {
				t.Fatalf("write: %v", err)
			}
			written += record
			if rng.IntN(2) == 0 {
				if err := f.Sync(); err != nil {
					t.Fatalf("fsync: %v", err)
				}
				synced = written
			}
		}
		durable, err := s.ReadDurable("d/a")
		if err != nil {
			t.Fatalf("read durable: %v", err)
		}
		if string(durable) != synced {
			t.Fatalf("seed %d: durable bytes %q, want the synced %q", seed, durable, synced)
		}
		s.Crash()
		got, err := ReadFile(s, "d/a")
		if err != nil {
			t.Fatalf("seed %d: read after crash: %v", seed, err)
		}
		if !strings.HasPrefix(string(got), synced) {
			t.Fatalf("seed %d: after the crash d/a is %q, want a prefix of %q", seed, got, synced)
		}
	}
}

func TestSimWriteFileAtomicLeavesOldOrNew(t *testing.T) {
	checkOutcomes(t, []string{"a=old", "a=new", "a=old a.tmp=new"}, func(t *testing.T, s *Sim) {
		writeFile(t, s, "d/a", "old", true, true)
		s.FailNextSyncDir(func(string) bool { return true })
		if err := WriteFileAtomic(s, "d/a", []byte("new"), 0o600); !errors.Is(err, ErrInjected) {
			t.Fatalf("write atomically: got %v, want the injected directory fsync failure", err)
		}
	})
}

func TestSimFailedSyncLeavesDataUnknown(t *testing.T) {
	tests := []struct {
		name string
		// syncAgain makes a second, successful Sync before the crash: it
		// must not make a write the failed Sync dropped durable.
		syncAgain bool
		allowed   []string
	}{
		{
			name:      "a later successful sync",
			syncAgain: true,
			allowed:   []string{"a=AAAA", "a=AAAABBBB", "a=AAAA\x00\x00\x00\x00"},
		},
		{
			name: "no later sync",
			allowed: []string{"a=AAAA", "a=AAAAB", "a=AAAABB", "a=AAAABBB", "a=AAAABBBB",
				"a=AAAA\x00", "a=AAAA\x00\x00", "a=AAAA\x00\x00\x00", "a=AAAA\x00\x00\x00\x00"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkOutcomes(t, tt.allowed, func(t *testing.T, s *Sim) {
				writeFile(t, s, "d/a", "AAAA", true, true)
				f, err := s.OpenFile("d/a", os.O_RDWR|os.O_APPEND, 0)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if _, err := f.Write([]byte("BBBB")); err != nil {
					t.Fatalf("write: %v", err)
				}
				s.FailNextSync(func(name string) bool { return name == "d/a" })
				err = f.Sync()
				if !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrInjected) {
					t.Fatalf("fsync: got %v, want an injected EIO", err)
				}
				// The page cache still holds the data after the failure.
				got := make([]byte, 8)
				if _, err := f.ReadAt(got, 0); err != nil || string(got) != "AAAABBBB" {
					t.Fatalf("read after a failed fsync: %q, %v; want AAAABBBB", got, err)
				}
				if tt.syncAgain {
					if err := f.Sync(); err != nil {
						t.Fatalf("second fsync: got %v, want success (the fault is one-shot)", err)
					}
				}
			})
		})
	}
}

func TestSimFailNextSyncHitsOnlyTheMatchingFileOnce(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	s.FailNextSync(func(name string) bool { return name == "d/b" })
	writeFile(t, s, "d/a", "x", true, true) // would fail were the match ignored
	f, err := s.OpenFile("d/b", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("first fsync of d/b: got %v, want the injected failure", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("second fsync of d/b: got %v, want success", err)
	}
	if st := s.Stats(); st.Syncs != 3 || st.SyncsFailed != 1 {
		t.Fatalf("stats: %d syncs, %d failed; want 3 and 1", st.Syncs, st.SyncsFailed)
	}
}

func TestSimShortNextWrite(t *testing.T) {
	for seed := range uint64(simTestSeeds) {
		s := newTestSim(t, SimConfig{Seed: seed})
		f, err := s.OpenFile("d/a", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		s.ShortNextWrite(func(name string) bool { return strings.HasPrefix(name, "d/") })
		n, err := f.Write([]byte("0123456789"))
		if !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrInjected) {
			t.Fatalf("seed %d: short write: got %v, want an injected EIO", seed, err)
		}
		if n < 0 || n >= 10 {
			t.Fatalf("seed %d: short write wrote %d of 10 bytes, want a strict prefix", seed, n)
		}
		if size, _ := f.Size(); size != int64(n) {
			t.Fatalf("seed %d: size %d after writing %d bytes", seed, size, n)
		}
		if n2, err := f.Write([]byte("ab")); n2 != 2 || err != nil {
			t.Fatalf("seed %d: write after the short one: %d, %v; want 2, nil", seed, n2, err)
		}
		got, err := ReadFile(s, "d/a")
		if want := "0123456789"[:n] + "ab"; err != nil || string(got) != want {
			t.Fatalf("seed %d: file %q, %v; want %q", seed, got, err, want)
		}
	}
}

func TestSimNoSpaceAfter(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	f, err := s.OpenFile("d/a", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	s.NoSpaceAfter(10)
	steps := []struct {
		data    string
		n       int
		noSpace bool
	}{
		{"012345", 6, false},
		{"6789ab", 4, true}, // straddles the limit: the part that fits is written
		{"c", 0, true},      // the disk stays full
	}
	for i, step := range steps {
		n, err := f.Write([]byte(step.data))
		if n != step.n || errors.Is(err, syscall.ENOSPC) != step.noSpace {
			t.Fatalf("write %d: %d, %v; want %d bytes, ENOSPC %v", i, n, err, step.n, step.noSpace)
		}
	}
	s.NoSpaceAfter(-1)
	if n, err := f.Write([]byte("cd")); n != 2 || err != nil {
		t.Fatalf("write after the limit is lifted: %d, %v", n, err)
	}
	if got, _ := ReadFile(s, "d/a"); string(got) != "0123456789cd" {
		t.Fatalf("file %q, want 0123456789cd", got)
	}
	if st := s.Stats(); st.NoSpaceWrites != 2 || st.BytesWritten != 12 {
		t.Fatalf("stats: %d no-space writes, %d bytes; want 2 and 12", st.NoSpaceWrites, st.BytesWritten)
	}
}

func TestSimFlipBitChangesExactlyOneBit(t *testing.T) {
	for seed := range uint64(simTestSeeds) {
		s := newTestSim(t, SimConfig{Seed: seed})
		rng := rand.New(rand.NewPCG(seed, 2))
		data := make([]byte, 1+rng.IntN(64))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		writeFile(t, s, "d/a", string(data), true, true)
		offset, bit, err := s.FlipBit("d/a")
		if err != nil {
			t.Fatalf("seed %d: flip: %v", seed, err)
		}
		got, err := s.ReadDurable("d/a")
		if err != nil {
			t.Fatalf("read durable: %v", err)
		}
		current, err := ReadFile(s, "d/a")
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(got, current) {
			t.Fatalf("seed %d: reads see %x, durable bytes are %x", seed, current, got)
		}
		changed := 0
		for i := range data {
			changed += bits.OnesCount8(data[i] ^ got[i])
		}
		if changed != 1 || len(got) != len(data) || got[offset]^data[offset] != 1<<bit {
			t.Fatalf("seed %d: %d bits changed, want exactly bit %d of byte %d", seed, changed, bit, offset)
		}
	}
}

func TestSimFlipBitAt(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	writeFile(t, s, "d/a", "\x00\x00\x00", true, true)
	f, err := s.OpenFile("d/a", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 2); err != nil {
		t.Fatalf("write: %v", err)
	}
	for _, byteIndex := range []int64{1, 2} {
		if err := s.FlipBitAt("d/a", byteIndex, 0); err != nil {
			t.Fatalf("flip byte %d: %v", byteIndex, err)
		}
	}
	// Byte 1 is read back flipped; byte 2 is covered by an unsynced write,
	// which reads keep seeing.
	if got, _ := ReadFile(s, "d/a"); string(got) != "\x00\x01\xff" {
		t.Fatalf("current bytes %x, want 0001ff", got)
	}
	if got, _ := s.ReadDurable("d/a"); string(got) != "\x00\x01\x01" {
		t.Fatalf("durable bytes %x, want 000101", got)
	}
	for _, bad := range []struct {
		offset int64
		bit    int
	}{{-1, 0}, {3, 0}, {0, 8}, {0, -1}} {
		if err := s.FlipBitAt("d/a", bad.offset, bad.bit); err == nil {
			t.Errorf("flip bit %d of byte %d: got success, want an error", bad.bit, bad.offset)
		}
	}
	writeFile(t, s, "d/empty", "", true, true)
	if _, _, err := s.FlipBit("d/empty"); err == nil {
		t.Errorf("flip a bit of an empty file: got success, want an error")
	}
	if _, _, err := s.FlipBit("d/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("flip a bit of a missing file: got %v, want ErrNotExist", err)
	}
}

func TestSimCrashInvalidatesHandlesAndReleasesLocks(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	writeFile(t, s, "d/a", "x", true, true)
	f, err := s.OpenFile("d/a", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	lock, err := s.Lock("d/LOCK")
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	if _, err := s.Lock("d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: got %v, want ErrLocked", err)
	}
	s.Crash()
	// Close comes last: it also marks the handle closed.
	ops := []struct {
		name string
		call func() error
	}{
		{"read", func() error { _, err := f.Read(make([]byte, 1)); return err }},
		{"read at", func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err }},
		{"write", func() error { _, err := f.Write([]byte("y")); return err }},
		{"write at", func() error { _, err := f.WriteAt([]byte("y"), 0); return err }},
		{"seek", func() error { _, err := f.Seek(0, io.SeekStart); return err }},
		{"sync", f.Sync},
		{"truncate", func() error { return f.Truncate(0) }},
		{"size", func() error { _, err := f.Size(); return err }},
		{"close", f.Close},
	}
	for _, op := range ops {
		if err := op.call(); !errors.Is(err, ErrCrashed) {
			t.Errorf("%s on a handle from before the crash: got %v, want ErrCrashed", op.name, err)
		}
	}
	relock, err := s.Lock("d/LOCK")
	if err != nil {
		t.Fatalf("lock after the crash: %v", err)
	}
	if err := lock.Close(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("closing the lock from before the crash: got %v, want ErrCrashed", err)
	}
	if _, err := s.Lock("d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("the stale lock's close released the new holder: got %v", err)
	}
	if err := relock.Close(); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := relock.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second unlock: got %v, want ErrClosed", err)
	}
	if _, err := s.Lock("d/LOCK"); err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
}

func TestSimOpenFlagsAndErrors(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		flag    int
		wantErr error
		// then checks the handle when the open succeeds.
		then func(t *testing.T, f File)
	}{
		{name: "missing file", path: "d/missing", flag: os.O_RDONLY, wantErr: os.ErrNotExist},
		{name: "missing directory", path: "nodir/a", flag: os.O_RDWR | os.O_CREATE, wantErr: os.ErrNotExist},
		{name: "exclusive create of an existing file", path: "d/a", flag: os.O_RDWR | os.O_CREATE | os.O_EXCL, wantErr: os.ErrExist},
		{name: "a directory", path: "d", flag: os.O_RDONLY, wantErr: syscall.EISDIR},
		{name: "a flag not simulated", path: "d/a", flag: os.O_RDWR | os.O_SYNC, wantErr: syscall.EINVAL},
		{name: "under a file", path: "d/a/b", flag: os.O_RDWR | os.O_CREATE, wantErr: syscall.ENOTDIR},
		{
			name: "read only refuses writes", path: "d/a", flag: os.O_RDONLY,
			then: func(t *testing.T, f File) {
				if _, err := f.Write([]byte("x")); !errors.Is(err, syscall.EBADF) {
					t.Errorf("write: got %v, want EBADF", err)
				}
				if err := f.Truncate(0); !errors.Is(err, syscall.EBADF) {
					t.Errorf("truncate: got %v, want EBADF", err)
				}
				if err := f.Sync(); err != nil {
					t.Errorf("fsync of a read-only handle: %v", err)
				}
			},
		},
		{
			name: "write only refuses reads", path: "d/a", flag: os.O_WRONLY,
			then: func(t *testing.T, f File) {
				if _, err := f.Read(make([]byte, 1)); !errors.Is(err, syscall.EBADF) {
					t.Errorf("read: got %v, want EBADF", err)
				}
			},
		},
		{
			name: "truncate on open", path: "d/a", flag: os.O_RDWR | os.O_TRUNC,
			then: func(t *testing.T, f File) {
				if size, err := f.Size(); size != 0 || err != nil {
					t.Errorf("size: %d, %v; want 0", size, err)
				}
			},
		},
		{
			name: "append writes at the end", path: "d/a", flag: os.O_RDWR | os.O_APPEND,
			then: func(t *testing.T, f File) {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					t.Fatalf("seek: %v", err)
				}
				if _, err := f.Write([]byte("!")); err != nil {
					t.Fatalf("write: %v", err)
				}
				if _, err := f.WriteAt([]byte("?"), 0); err == nil {
					t.Errorf("write at with O_APPEND: got success, want an error")
				}
				got := make([]byte, 6)
				if n, err := f.ReadAt(got, 0); n != 5 || !errors.Is(err, io.EOF) || string(got[:n]) != "data!" {
					t.Errorf("read at: %q, %v; want data! and EOF", got[:n], err)
				}
			},
		},
		{
			name: "seek, read and write", path: "d/a", flag: os.O_RDWR,
			then: func(t *testing.T, f File) {
				if off, err := f.Seek(-2, io.SeekEnd); off != 2 || err != nil {
					t.Fatalf("seek from the end: %d, %v", off, err)
				}
				if _, err := f.Write([]byte("TAXX")); err != nil {
					t.Fatalf("write: %v", err)
				}
				if off, err := f.Seek(-2, io.SeekCurrent); off != 4 || err != nil {
					t.Fatalf("seek back: %d, %v", off, err)
				}
				got, err := io.ReadAll(f)
				if err != nil || string(got) != "XX" {
					t.Fatalf("read the rest: %q, %v; want XX", got, err)
				}
				if _, err := f.Seek(-1, io.SeekStart); !errors.Is(err, syscall.EINVAL) {
					t.Errorf("seek before the start: got %v, want EINVAL", err)
				}
				if err := f.Truncate(8); err != nil {
					t.Fatalf("truncate up: %v", err)
				}
				whole := make([]byte, 8)
				if _, err := f.ReadAt(whole, 0); err != nil || string(whole) != "daTAXX\x00\x00" {
					t.Errorf("after growing: %q, %v", whole, err)
				}
				if f.Name() != "d/a" {
					t.Errorf("name %q, want d/a", f.Name())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSim(t, SimConfig{})
			writeFile(t, s, "d/a", "data", true, true)
			f, err := s.OpenFile(tt.path, tt.flag, 0o600)
			if tt.wantErr != nil {
				var pathErr *os.PathError
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &pathErr) {
					t.Fatalf("open: got %v, want an *os.PathError wrapping %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			tt.then(t, f)
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			if err := f.Close(); !errors.Is(err, os.ErrClosed) {
				t.Fatalf("second close: got %v, want ErrClosed", err)
			}
		})
	}
}

func TestSimNamespaceOperations(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	if err := s.MkdirAll("d/sub/deeper", 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	for _, name := range []string{"d/c", "d/a", "d/b", "d/sub/x"} {
		writeFile(t, s, name, name, true, false)
	}
	if names, err := s.ReadDir("d"); err != nil || !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("read directory: %q, %v; want the regular files a b c, sorted", names, err)
	}
	if _, err := s.ReadDir("nodir"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read a missing directory: got %v, want ErrNotExist", err)
	}
	if err := s.MkdirAll("d/a/x", 0o755); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("mkdir under a file: got %v, want ENOTDIR", err)
	}
	if err := s.Rename("d/a", "d/b"); err != nil {
		t.Fatalf("rename over b: %v", err)
	}
	if got, _ := ReadFile(s, "d/b"); string(got) != "d/a" {
		t.Fatalf("renamed file holds %q, want d/a", got)
	}
	if err := s.Rename("d/sub/x", "d/x"); err != nil {
		t.Fatalf("rename across directories: %v", err)
	}
	var linkErr *os.LinkError
	if err := s.Rename("d/missing", "d/y"); !errors.Is(err, os.ErrNotExist) || !errors.As(err, &linkErr) {
		t.Fatalf("rename a missing file: got %v, want an *os.LinkError wrapping ErrNotExist", err)
	}
	if err := s.Remove("d/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("remove a missing file: got %v, want ErrNotExist", err)
	}
	if err := s.Remove("d/c"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if got, want := s.Files(), []string{"d/b", "d/x"}; !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	if mode, err := s.FileMode("d/b"); mode != 0o600 || err != nil {
		t.Fatalf("mode %v, %v; want 0600", mode, err)
	}
	// Directories made by MkdirAll are durable at once.
	s.Crash()
	if _, err := s.ReadDir("d/sub/deeper"); err != nil {
		t.Fatalf("read a directory after the crash: %v", err)
	}
}

func TestSimFaultsProbabilities(t *testing.T) {
	for _, bad := range []SimFaults{
		{SyncFailProbability: -0.1},
		{ShortWriteProbability: 1.5},
		{NoSpaceWriteProbability: math.NaN()},
	} {
		if _, err := NewSim(SimConfig{Faults: bad}); err == nil {
			t.Errorf("new sim with %+v: got success, want an error", bad)
		}
	}
	if _, err := NewSim(SimConfig{HistoryEntriesMax: -1}); err == nil {
		t.Errorf("new sim with a negative history bound: got success, want an error")
	}
	s := newTestSim(t, SimConfig{Faults: SimFaults{
		Match:               func(name string) bool { return name == "d/hit" },
		SyncFailProbability: 1,
	}})
	writeFile(t, s, "d/miss", "x", true, true) // fails the test were the match ignored
	f, err := s.OpenFile("d/hit", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("fsync with certain failure: got %v", err)
	}
	if err := s.SetFaults(SimFaults{}); err != nil {
		t.Fatalf("set faults: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync without faults: %v", err)
	}
	if err := s.SetFaults(SimFaults{SyncDirFailProbability: 2}); err == nil {
		t.Fatalf("set invalid faults: got success")
	}
}

func TestSimHistoryIsBounded(t *testing.T) {
	s := newTestSim(t, SimConfig{HistoryEntriesMax: 3})
	writeFile(t, s, "d/a", "abc", true, true)
	for range 5 {
		if _, _, err := s.FlipBit("d/a"); err != nil {
			t.Fatalf("flip: %v", err)
		}
	}
	s.Crash()
	h := s.History()
	if len(h) != 4 || h[0] != "(3 older entries dropped)" || !strings.Contains(h[3], "crash 1") {
		t.Fatalf("history %q, want a note of 3 dropped entries and the newest 3, ending with the crash", h)
	}
}

// randomWorkload drives s with a random mix of every operation and crash,
// tolerating the errors that faults cause, and returns a fingerprint of the
// final disk and history.
func randomWorkload(t *testing.T, s *Sim, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	names := []string{"d/a", "d/b", "d/c"}
	handles := map[string]File{}
	for range 400 {
		name := names[rng.IntN(len(names))]
		switch rng.IntN(10) {
		case 0:
			f, err := s.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
			if err == nil {
				handles[name] = f
			}
		case 1, 2, 3:
			if f := handles[name]; f != nil {
				f.Write(bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, 1+rng.IntN(40)))
			}
		case 4:
			if f := handles[name]; f != nil {
				f.Sync()
			}
		case 5:
			s.SyncDir("d")
		case 6:
			s.Rename(name, names[rng.IntN(len(names))])
		case 7:
			s.Remove(name)
		case 8:
			if f := handles[name]; f != nil {
				f.Truncate(int64(rng.IntN(100)))
			}
		case 9:
			if rng.IntN(4) == 0 {
				s.Crash()
				clear(handles)
			} else {
				s.FlipBit(name)
			}
		}
	}
	s.Crash()
	var b strings.Builder
	for _, name := range s.Files() {
		data, err := ReadFile(s, name)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		fmt.Fprintf(&b, "%s=%x\n", name, data)
	}
	fmt.Fprintf(&b, "%+v\n%s", s.Stats(), strings.Join(s.History(), "\n"))
	return b.String()
}

var allFaults = SimFaults{
	SyncFailProbability:      0.05,
	SyncDirFailProbability:   0.05,
	ShortWriteProbability:    0.05,
	NoSpaceWriteProbability:  0.05,
	CrashZeroFillProbability: 0.5,
}

func TestSimSameSeedSameResult(t *testing.T) {
	fingerprints := map[string]uint64{}
	for seed := range uint64(16) {
		run := func() string {
			return randomWorkload(t, newTestSim(t, SimConfig{Seed: seed, Faults: allFaults}), seed)
		}
		first, second := run(), run()
		if first != second {
			t.Fatalf("seed %d gave two results:\n%s\n---\n%s", seed, first, second)
		}
		if other, ok := fingerprints[first]; ok {
			t.Fatalf("seeds %d and %d gave the same result", other, seed)
		}
		fingerprints[first] = seed
	}
}

// checkAppendOnlyModel runs the journal's access pattern (create, append,
// fsync, fsync the directory, crash) with random choices from seed and
// checks each crash against a model: a file whose entry was synced exists,
// and every file that exists holds its synced bytes followed by a prefix of
// what was appended since.
func checkAppendOnlyModel(t *testing.T, seed uint64) {
	s := newTestSim(t, SimConfig{Seed: seed})
	rng := rand.New(rand.NewPCG(seed, 4))
	type model struct {
		handle       File
		synced       []byte
		written      []byte
		entryDurable bool
	}
	files := map[string]*model{}
	names := []string{"d/0", "d/1", "d/2"}
	for step := range 300 {
		name := names[rng.IntN(len(names))]
		m := files[name]
		switch op := rng.IntN(8); {
		case m == nil && op < 4:
			f, err := s.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
			if err != nil {
				t.Fatalf("seed %d step %d: create %s: %v", seed, step, name, err)
			}
			files[name] = &model{handle: f}
		case m == nil:
		case op < 4:
			record := bytes.Repeat([]byte{byte('a' + step%26)}, 1+rng.IntN(20))
			if _, err := m.handle.Write(record); err != nil {
				t.Fatalf("seed %d step %d: append to %s: %v", seed, step, name, err)
			}
			m.written = append(m.written, record...)
		case op == 4:
			if err := m.handle.Sync(); err != nil {
				t.Fatalf("seed %d step %d: fsync %s: %v", seed, step, name, err)
			}
			m.synced = slices.Clone(m.written)
		case op == 5:
			if err := s.SyncDir("d"); err != nil {
				t.Fatalf("seed %d step %d: fsync directory: %v", seed, step, err)
			}
			for _, m := range files {
				m.entryDurable = true
			}
		case op == 6:
			s.Crash()
			for _, n := range slices.Sorted(func(yield func(string) bool) {
				for k := range files {
					if !yield(k) {
						return
					}
				}
			}) {
				m := files[n]
				got, err := ReadFile(s, n)
				switch {
				case errors.Is(err, os.ErrNotExist) && !m.entryDurable:
					delete(files, n)
					continue
				case err != nil:
					t.Fatalf("seed %d step %d: read %s after a crash: %v\nhistory:\n%s",
						seed, step, n, err, strings.Join(s.History(), "\n"))
				case !bytes.HasPrefix(got, m.synced) || !bytes.HasPrefix(m.written, got):
					t.Fatalf("seed %d step %d: %s holds %q after a crash, want %q then a prefix of %q\nhistory:\n%s",
						seed, step, n, got, m.synced, m.written[len(m.synced):], strings.Join(s.History(), "\n"))
				}
				f, err := s.OpenFile(n, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatalf("seed %d step %d: reopen %s: %v", seed, step, n, err)
				}
				*m = model{handle: f, synced: got, written: slices.Clone(got), entryDurable: true}
			}
		}
	}
}

func TestSimAppendOnlyModel(t *testing.T) {
	for seed := range uint64(simTestSeeds) {
		checkAppendOnlyModel(t, seed)
	}
}

func FuzzSimAppendOnlyModel(f *testing.F) {
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(seed)
	}
	f.Fuzz(checkAppendOnlyModel)
}

func TestSimConcurrentUse(t *testing.T) {
	s := newTestSim(t, SimConfig{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			name := fmt.Sprintf("d/%d", w)
			f, err := s.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				errs <- err
				return
			}
			for range 100 {
				if _, err := f.Write([]byte("record")); err != nil {
					errs <- err
					return
				}
				if err := f.Sync(); err != nil {
					errs <- err
					return
				}
				if _, err := s.ReadDir("d"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range 4 {
		got, err := s.ReadDurable(fmt.Sprintf("d/%d", w))
		if err != nil || len(got) != 600 {
			t.Fatalf("file %d: %d durable bytes, %v; want 600", w, len(got), err)
		}
	}
}

// ExampleSim shows the shape of a crash test: write, crash, check what
// survived, and print the history when the check fails.
func ExampleSim() {
	s, err := NewSim(SimConfig{Seed: 7})
	if err != nil {
		panic(err)
	}
	s.MkdirAll("data", 0o755)
	f, _ := s.OpenFile("data/log", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	f.Write([]byte("acknowledged;"))
	f.Sync()
	s.SyncDir("data")
	f.Write([]byte("not yet synced;"))
	s.Crash()
	got, _ := ReadFile(s, "data/log")
	if !strings.HasPrefix(string(got), "acknowledged;") {
		fmt.Println(strings.Join(s.History(), "\n"))
	}
	fmt.Println(strings.HasPrefix(string(got), "acknowledged;"), s.Stats().Crashes)
	// Output: true 1
}

// TestSimCrashAtMutation checks that the crash lands just before the named
// mutation, that reads do not count, and that the same seed and count give
// the same disk.
func TestSimCrashAtMutation(t *testing.T) {
	run := func(seed uint64, n int64) (string, error) {
		s, err := NewSim(SimConfig{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.MkdirAll("/d", 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := s.OpenFile("/d/f", os.O_RDWR|os.O_CREATE, 0o600) // mutation 1
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SyncDir("/d"); err != nil { // mutation 2
			t.Fatal(err)
		}
		s.CrashAtMutation(n)
		var firstErr error
		for i := 0; i < 10 && firstErr == nil; i++ {
			if _, err := f.Write([]byte("abcdefgh")); err != nil {
				firstErr = err
				break
			}
			if _, err := f.ReadAt(make([]byte, 1), 0); err != nil {
				t.Fatalf("read: %v", err)
			}
			if i%2 == 1 {
				firstErr = f.Sync()
			}
		}
		b, _ := s.ReadDurable("/d/f")
		return string(b), firstErr
	}
	for n := int64(1); n <= 6; n++ {
		got, err := run(7, n)
		if !errors.Is(err, ErrCrashed) {
			t.Fatalf("crash at mutation %d: got error %v, want ErrCrashed", n, err)
		}
		again, _ := run(7, n)
		if got != again {
			t.Fatalf("crash at mutation %d: two runs of one seed differ: %q and %q", n, got, again)
		}
		// Mutations are write, write, sync, write, write, sync: what is
		// durable is at least every synced write before the crash.
		synced := 0
		if n > 3 {
			synced = 16
		}
		if len(got) < synced {
			t.Fatalf("crash at mutation %d: durable %q shorter than the %d synced bytes", n, got, synced)
		}
	}
}

// TestSimProcessFencedByCrash checks that a process view of the disk stops
// working at a crash, so a dead process's goroutines cannot write to the
// rebooted disk, while a new view works.
func TestSimProcessFencedByCrash(t *testing.T) {
	s, err := NewSim(SimConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	old := s.Process()
	if err := old.MkdirAll("/d", 0o700); err != nil {
		t.Fatal(err)
	}
	s.Crash()
	for name, op := range map[string]func() error{
		"open":   func() error { _, err := old.OpenFile("/d/f", os.O_CREATE|os.O_WRONLY, 0o600); return err },
		"remove": func() error { return old.Remove("/d/f") },
		"rename": func() error { return old.Rename("/d/f", "/d/g") },
		"mkdir":  func() error { return old.MkdirAll("/e", 0o700) },
		"list":   func() error { _, err := old.ReadDir("/d"); return err },
		"sync":   func() error { return old.SyncDir("/d") },
		"lock":   func() error { _, err := old.Lock("/d/LOCK"); return err },
	} {
		if err := op(); !errors.Is(err, ErrCrashed) {
			t.Errorf("%s through the crashed process: got %v, want ErrCrashed", name, err)
		}
	}
	if _, err := s.Process().OpenFile("/d/f", os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
		t.Fatalf("open through a new process: %v", err)
	}
	if files := s.Files(); len(files) != 1 {
		t.Fatalf("files after the crash: %v, want only the new process's /d/f", files)
	}
}
