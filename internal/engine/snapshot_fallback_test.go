package engine

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fest-platform/fest/internal/journal"
)

// snapshotPositions lists the snapshot files of dir, newest first.
func snapshotPositions(t *testing.T, dir string) []journal.Position {
	t.Helper()
	s, err := journal.OpenSnapshots(nil, filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// runWithSnapshots runs orders with two snapshots taken along the way and a
// final one at Close, in small segments that retention removes, and returns
// the state every restart must rebuild.
func runWithSnapshots(t *testing.T, cfg Config) string {
	t.Helper()
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testCatalog(t, e, 6, 10, 1000)
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2 {
		randomOrders(e, rng, 30, 6, 10)
		if err := e.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	randomOrders(e, rng, 30, 6, 10)
	live := e.core.dump()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return live
}

func snapshotTestConfig(dir string) Config {
	var clock atomic.Int64 // workers read it concurrently
	clock.Store(1_000_000)
	return Config{Dir: dir, Partitions: 8, Workers: 2, NoSync: true, SnapshotEveryBytes: -1, PaymentTimeout: 1 << 40,
		Now: func() int64 { return clock.Add(1) }, Logger: quiet, SegmentBytesMax: 4 << 10}
}

// TestNewestSnapshotDamagedFallsBack damages the newest snapshot, once so
// that its checksum fails and once so that it verifies but does not decode,
// and checks that the engine opens from the older snapshot with the whole
// state. Before, retention removed the journal up to the newest snapshot, so
// the fallback found its records gone, and a snapshot that verified but did
// not decode stopped the start instead of falling back.
func TestNewestSnapshotDamagedFallsBack(t *testing.T) {
	damage := map[string]func(t *testing.T, dir string, newest journal.Position){
		"checksum": func(t *testing.T, dir string, newest journal.Position) {
			path := filepath.Join(dir, "snapshots", "snap-"+pad20(newest)+".bin")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"undecodable": func(t *testing.T, dir string, newest journal.Position) {
			s, err := journal.OpenSnapshots(nil, filepath.Join(dir, "snapshots"))
			if err != nil {
				t.Fatal(err)
			}
			// A valid file (header and checksum) around data that is not a
			// state: the newest snapshot is replaced in place.
			if err := s.Write(newest, []byte(snapshotMagic+"\x01\x08garbage")); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := snapshotTestConfig(dir)
			live := runWithSnapshots(t, cfg)
			list := snapshotPositions(t, dir)
			if len(list) != 2 {
				t.Fatalf("%d snapshots kept, want 2", len(list))
			}
			fn(t, dir, list[0])
			e, err := Open(cfg)
			if err != nil {
				t.Fatalf("open with the newest snapshot damaged: %v", err)
			}
			defer e.Close()
			if got := e.core.dump(); got != live {
				t.Fatal("state recovered from the older snapshot differs from the live state")
			}
		})
	}
}

func pad20(p journal.Position) string {
	s := strconv.FormatUint(uint64(p), 10)
	return strings.Repeat("0", 20-len(s)) + s
}

// TestSnapshotAheadOfJournalRefused loses journal/ (and, separately,
// restores an older copy of it) under newer snapshots: the engine must
// refuse to start, naming the snapshot's position and the journal's end,
// instead of starting with records hidden behind the snapshot.
func TestSnapshotAheadOfJournalRefused(t *testing.T) {
	for _, lost := range []bool{true, false} {
		t.Run("lost="+strconv.FormatBool(lost), func(t *testing.T) {
			dir := t.TempDir()
			cfg := snapshotTestConfig(dir)
			cfg.RetainFrom = func() uint64 { return 0 } // keep every segment for the copy below
			e, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			testCatalog(t, e, 3, 3, 1000)
			oldEnd := e.JournalEnd()
			copyDir(t, filepath.Join(dir, "journal"), dir+"-old-journal")
			randomOrders(e, rand.New(rand.NewPCG(1, 1)), 20, 3, 3)
			if err := e.Close(); err != nil { // the final snapshot is past oldEnd
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(dir, "journal")); err != nil {
				t.Fatal(err)
			}
			want := "journal ends at 0"
			if !lost {
				if err := os.Rename(dir+"-old-journal", filepath.Join(dir, "journal")); err != nil {
					t.Fatal(err)
				}
				want = "journal ends at " + strconv.FormatUint(oldEnd, 10)
			}
			e, err = Open(cfg)
			if err == nil {
				e.Close()
				t.Fatal("opened with the journal behind the snapshot")
			}
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "journal position") {
				t.Fatalf("error %q does not name the snapshot's position and %q", err, want)
			}
		})
	}
}

// countingHandler counts error records whose message starts with prefix.
type countingHandler struct {
	prefix string
	n      *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestSnapshotFailureBacksOff makes every snapshot fail (its directory is
// replaced by a file) and checks that background attempts are bounded by
// one per SnapshotEveryBytes of journal. Before, a failed snapshot was
// retried on every batch.
func TestSnapshotFailureBacksOff(t *testing.T) {
	const every = 16 << 10
	dir := t.TempDir()
	var failures atomic.Int64
	cfg := snapshotTestConfig(dir)
	cfg.SnapshotEveryBytes = every
	cfg.SegmentBytesMax = 0
	cfg.Logger = slog.New(countingHandler{prefix: "background snapshot failed", n: &failures})
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(dir, "snapshots")
	if err := os.RemoveAll(snaps); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snaps, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	testCatalog(t, e, 4, 4, 1_000_000)
	randomOrders(e, rand.New(rand.NewPCG(3, 4)), 400, 4, 4)
	end := e.JournalEnd()
	e.Close() // its final snapshot fails too; that is not counted
	bound := int64(end/every) + 1
	if got := failures.Load(); got < 1 || got > bound {
		t.Fatalf("%d failed background snapshots over %d bytes of journal, want 1 to %d (one per %d bytes)", got, end, bound, every)
	}
}
