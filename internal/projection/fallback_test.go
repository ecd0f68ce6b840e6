package projection_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/internal/vfs"
)

// festival is what a test placed and paid, to check a restart against.
type festival struct {
	ids  []engine.OrderID
	paid map[engine.OrderID]bool
	gmv  int64
}

// run places and pays orders through s until at least two projection
// snapshots exist, then closes it, and returns what it did.
func run(t *testing.T, s *stack, count int) festival {
	t.Helper()
	must := func(c engine.Command) engine.Result { return s.must(t, c) }
	s.catalog(t)
	f := festival{paid: make(map[engine.OrderID]bool)}
	for i := 0; i < count; i++ {
		r := must(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: fmt.Sprintf("buyer-%d", i%7), Items: []engine.Item{{SKUID: "s", Quantity: int32(1 + i%5)}}}})
		f.ids = append(f.ids, r.OrderID)
		if i%3 == 0 {
			must(engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total})
			f.paid[r.OrderID] = true
			f.gmv += r.Total
		}
	}
	s.wait(t)
	s.close(t)
	return f
}

// check verifies that s holds every order of f with its status, and its GMV.
func (f festival) check(t *testing.T, s *stack) {
	t.Helper()
	s.wait(t)
	if g := gmvTotals(s.gmv); g.GMV != f.gmv || g.OrdersPlaced != uint64(len(f.ids)) || g.OrdersPaid != uint64(len(f.paid)) {
		t.Fatalf("gmv %+v, want %d fen, %d placed, %d paid", g, f.gmv, len(f.ids), len(f.paid))
	}
	for i, id := range f.ids {
		o, err := s.store.Get(id)
		if err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
		want := engine.StatusPending
		if f.paid[id] {
			want = engine.StatusPaid
		}
		if o.Status != want || o.BuyerID != fmt.Sprintf("buyer-%d", i%7) {
			t.Fatalf("order %d: %+v", i, o)
		}
	}
}

// openKeepingJournal is open with an engine that keeps its journal from the
// start whatever the projections retain.
func openKeepingJournal(t *testing.T, dir string) *stack {
	t.Helper()
	s := &stack{}
	var err error
	s.store, _ = orders.Open(orders.Config{})
	s.gmv, _ = gmvp.New(gmvp.Config{})
	s.proj, err = newTR(projection.Config{Dir: filepath.Join(dir, "projections"), SnapshotEveryBytes: 4 << 10, Logger: quiet}, s.store, s.gmv)
	if err != nil {
		t.Fatal(err)
	}
	s.eng, err = engine.Open(engine.Config{Dir: dir, Partitions: 4, NoSync: true, SnapshotEveryBytes: 8 << 10, SegmentBytesMax: 16 << 10, RetainFrom: func() uint64 { return 0 }, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s.proj.Start(s.eng)
	return s
}

// loadOnly opens a runner on dir's projections and loads it, without an
// engine.
func loadOnly(t *testing.T, dir string) (*testRunner, uint64, error) {
	t.Helper()
	store, _ := orders.Open(orders.Config{})
	gmv, _ := gmvp.New(gmvp.Config{})
	r, err := newTR(projection.Config{Dir: filepath.Join(dir, "projections"), Logger: quiet}, store, gmv)
	if err != nil {
		t.Fatal(err)
	}
	pos, err := r.Load()
	return r, pos, err
}

func snapshotPositions(t *testing.T, dir string) (*journal.Snapshots, []journal.Position) {
	t.Helper()
	snaps, err := journal.OpenSnapshots(nil, filepath.Join(dir, "projections"))
	if err != nil {
		t.Fatal(err)
	}
	pos, err := snaps.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(pos) != 2 {
		t.Fatalf("%d projection snapshots, want the 2 kept", len(pos))
	}
	return snaps, pos
}

// TestRetainOlderSnapshotAfterRestart checks that after a restart the
// runner still keeps the journal back to the older of its two kept
// snapshots, the one recovery falls back to (issue 7, defect 3): it used
// to keep only the one it loaded.
func TestRetainOlderSnapshotAfterRestart(t *testing.T) {
	dir := t.TempDir()
	run(t, open(t, dir), 600)
	_, pos := snapshotPositions(t, dir)
	r, from, err := loadOnly(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if from != uint64(pos[0]) {
		t.Fatalf("loaded from %d, want the newest snapshot %d", from, pos[0])
	}
	if got := r.Retain(); got != uint64(pos[1]) {
		t.Fatalf("retain from %d after a restart, want the older kept snapshot %d (kept: %v)", got, pos[1], pos)
	}
}

// TestFallbackWhenNewestSnapshotDoesNotDecode checks that a snapshot that
// passes its checksum but does not decode falls back to the older one, with
// nothing of the newest left behind, and that the journal kept back to it
// lets every order come back (issue 7, defect 3).
func TestFallbackWhenNewestSnapshotDoesNotDecode(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, data []byte) []byte
	}{
		{"not a projection snapshot", func(t *testing.T, data []byte) []byte { return []byte("not a projection snapshot") }},
		// The order store loads from it, the GMV projection does not: the
		// fallback must not load the older snapshot on top of the first.
		{"order store decodes, gmv does not", func(t *testing.T, data []byte) []byte { return data[:len(data)-1] }},
		{"bytes after the sections", func(t *testing.T, data []byte) []byte { return append(data, 0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := run(t, open(t, dir), 600)
			snaps, pos := snapshotPositions(t, dir)
			rc, _, err := snaps.Open(pos[0])
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			// Written through Snapshots, so its checksum is right.
			if err := snaps.Write(pos[0], c.damage(t, data)); err != nil {
				t.Fatal(err)
			}
			r, from, err := loadOnly(t, dir)
			if err != nil {
				t.Fatalf("load with the newest snapshot undecodable: %v", err)
			}
			if from != uint64(pos[1]) || r.Retain() != uint64(pos[1]) {
				t.Fatalf("loaded from %d retaining %d, want the older snapshot %d", from, r.Retain(), pos[1])
			}
			s := open(t, dir)
			defer s.close(t)
			f.check(t, s)
		})
	}
}

// TestReplayWhenNoSnapshotLoads checks that when no snapshot loads, the
// projections are rebuilt from the journal's start (kept here), and the
// journal is retained from there until a new snapshot is durable.
func TestReplayWhenNoSnapshotLoads(t *testing.T) {
	dir := t.TempDir()
	f := run(t, openKeepingJournal(t, dir), 400)
	snaps, pos := snapshotPositions(t, dir)
	for _, p := range pos {
		if err := snaps.Write(p, []byte("garbage")); err != nil {
			t.Fatal(err)
		}
	}
	r, from, err := loadOnly(t, dir)
	if err != nil || from != 0 || r.Retain() != 0 {
		t.Fatalf("load with no snapshot decodable: from %d retaining %d: %v, want 0 and 0", from, r.Retain(), err)
	}
	s := openKeepingJournal(t, dir)
	defer s.close(t)
	f.check(t, s)
}

// fileHookFS calls onUse before every read and close of a file it opened,
// so that a test can look at the projections at each step of a load.
type fileHookFS struct {
	vfs.FS
	onUse func(name string)
}

func (h *fileHookFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := h.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &fileHookFile{File: f, fs: h}, nil
}

type fileHookFile struct {
	vfs.File
	fs *fileHookFS
}

func (f *fileHookFile) Read(p []byte) (int, error) {
	f.fs.onUse(f.Name())
	return f.File.Read(p)
}

func (f *fileHookFile) Close() error {
	f.fs.onUse(f.Name())
	return f.File.Close()
}

// TestFallbackPublishesNothingOfARejectedSnapshot checks that while Load
// tries a snapshot, readers see nothing of it: the newest snapshot here
// loads in both projections and is rejected only afterwards, for the byte
// after its sections. The runner used to load it in place, so for a moment
// the projections reflected its position (WaitDurable returned) and held
// its orders, and then Reset emptied them for the fallback: a read of an
// acknowledged order in between answered not found
// (TestFallbackWhenNewestSnapshotDoesNotDecode failed so, now and then).
func TestFallbackPublishesNothingOfARejectedSnapshot(t *testing.T) {
	dir := t.TempDir()
	f := run(t, open(t, dir), 600)
	snaps, pos := snapshotPositions(t, dir)
	rc, _, err := snaps.Open(pos[0])
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := snaps.Write(pos[0], append(data, 0)); err != nil {
		t.Fatal(err)
	}
	store, _ := orders.Open(orders.Config{})
	gmv, _ := gmvp.New(gmvp.Config{})
	uses := 0
	// Only atomics are read here: the hook may run with the store's lock
	// held by the load. The close of the newest snapshot's file comes after
	// both its sections loaded and before the fallback.
	hook := &fileHookFS{FS: vfs.OS, onUse: func(name string) {
		uses++
		if a, b, n, g := store.Applied(), gmvApplied(gmv), store.Stats().Orders, gmvTotals(gmv); a != 0 || b != 0 || n != 0 || g.OrdersPlaced != 0 {
			t.Errorf("using %s during Load: order store at %d with %d orders, gmv at %d with %d placed; want nothing until a snapshot is accepted", name, a, n, b, g.OrdersPlaced)
		}
	}}
	r, err := newTR(projection.Config{Dir: filepath.Join(dir, "projections"), Logger: quiet, FS: hook}, store, gmv)
	if err != nil {
		t.Fatal(err)
	}
	from, err := r.Load()
	if err != nil || from != uint64(pos[1]) {
		t.Fatalf("load: from %d: %v, want the older snapshot %d", from, err, pos[1])
	}
	if uses == 0 {
		t.Fatal("no file was read through the hook: the test checks nothing")
	}
	if store.Applied() != from || gmvApplied(gmv) != from {
		t.Fatalf("after Load: order store at %d, gmv at %d, want %d", store.Applied(), gmvApplied(gmv), from)
	}
	if _, err := store.Get(f.ids[0]); err != nil {
		t.Fatalf("first order after Load: %v", err)
	}
}
