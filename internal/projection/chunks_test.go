package projection_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/internal/vfs"
)

// newRunner opens a runner on dir without an engine, fed by a feeder.
func newRunner(t *testing.T, dir string, fsys vfs.FS) (*testRunner, *feeder) {
	t.Helper()
	store, _ := orders.Open(orders.Config{})
	gmv, _ := gmvp.New(gmvp.Config{})
	r, err := newTR(projection.Config{Dir: dir, Logger: quiet, FS: fsys}, store, gmv)
	if err != nil {
		t.Fatal(err)
	}
	return r, newFeeder(r)
}

// neededChunks is the union of the chunk names the snapshots in dir name.
func neededChunks(t *testing.T, r *testRunner) []string {
	t.Helper()
	positions, err := r.Snapshots().List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pos := range positions {
		n, err := r.ChunkNames(pos)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func chunkFileNames(t *testing.T, dir string) []string {
	t.Helper()
	names, err := vfs.OS.ReadDir(filepath.Join(dir, projection.ChunksDirName))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestChunkFilesCollected checks that after each snapshot the chunk
// directory holds exactly the chunks the kept snapshots name, created 0600,
// that a full chunk keeps the file it was first written to, and that each
// kept snapshot still loads.
func TestChunkFilesCollected(t *testing.T) {
	dir := t.TempDir()
	r, f := newRunner(t, dir, nil)
	var first []string
	for i := 0; i < 5; i++ {
		f.place(t, 15_000)
		r.SnapshotAt(f.pos * 1000)
		names := chunkFileNames(t, dir)
		if want := neededChunks(t, r); !slices.Equal(names, want) {
			t.Fatalf("snapshot %d: chunk files %v, want %v", i, names, want)
		}
		for _, n := range names {
			st, err := os.Stat(filepath.Join(dir, projection.ChunksDirName, n))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("chunk %s: %v %v, want mode 0600", n, st.Mode(), err)
			}
		}
		if i == 2 {
			// The first arena chunk is full by now.
			n, err := r.ChunkNames(journal.Position(f.pos * 1000))
			if err != nil {
				t.Fatal(err)
			}
			first = n
		}
	}
	if !slices.Contains(chunkFileNames(t, dir), first[0]) {
		t.Fatalf("the first full arena chunk %s was written again", first[0])
	}
	positions, _ := r.Snapshots().List()
	for _, pos := range positions {
		l, _ := newRunner(t, dir, nil)
		staged, err := l.LoadAt(uint64(pos))
		if err != nil {
			t.Fatalf("kept snapshot at %d: %v", pos, err)
		}
		for _, st := range staged {
			st.Install()
		}
		if got := l.store.Stats().Orders; got != uint64(f.placed) && uint64(pos) == f.pos*1000 {
			t.Fatalf("snapshot at %d holds %d orders, want %d", pos, got, f.placed)
		}
	}
}

// TestFallbackWhenChunkMissing checks that a snapshot whose chunk is gone
// falls back to the older snapshot.
func TestFallbackWhenChunkMissing(t *testing.T) {
	dir := t.TempDir()
	r, f := newRunner(t, dir, nil)
	f.place(t, 20_000)
	r.SnapshotAt(f.pos * 1000)
	older, placed := f.pos*1000, f.placed
	f.place(t, 20_000)
	r.SnapshotAt(f.pos * 1000)
	newest := neededChunks(t, r)
	n, err := r.ChunkNames(journal.Position(older))
	if err != nil {
		t.Fatal(err)
	}
	var gone string
	for _, name := range newest {
		if !slices.Contains(n, name) {
			gone = name
		}
	}
	if err := os.Remove(filepath.Join(dir, projection.ChunksDirName, gone)); err != nil {
		t.Fatal(err)
	}
	l, _ := newRunner(t, dir, nil)
	pos, err := l.Load()
	if err != nil || pos != older || l.store.Stats().Orders != uint64(placed) || gmvTotals(l.gmv).OrdersPlaced != uint64(placed) {
		t.Fatalf("load without chunk %s: at %d with %d orders (%v), want %d with %d", gone, pos, l.store.Stats().Orders, err, older, placed)
	}
}

// errInjected is the failure faultFS injects.
var errInjected = errors.New("injected fault")

// faultFS fails the fail-th operation that changes the disk.
type faultFS struct {
	vfs.FS
	ops, fail int
}

func (f *faultFS) step() error {
	f.ops++
	if f.ops == f.fail {
		return errInjected
	}
	return nil
}

type faultFile struct {
	vfs.File
	fs *faultFS
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		if err := f.step(); err != nil {
			return nil, err
		}
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f}, nil
}

func (f faultFile) Write(p []byte) (int, error) {
	if err := f.fs.step(); err != nil {
		// A short write: half of it reaches the file.
		n, _ := f.File.Write(p[:len(p)/2])
		return n, err
	}
	return f.File.Write(p)
}

func (f faultFile) Sync() error {
	if err := f.fs.step(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.FS.Rename(oldpath, newpath)
}

func (f *faultFS) Remove(name string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.FS.Remove(name)
}

func (f *faultFS) SyncDir(name string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.FS.SyncDir(name)
}

// TestSnapshotFaultsLeaveLoadableState fails each disk operation of a
// snapshot's chunk files in turn and checks that what is on disk then loads
// (the previous snapshot, or the new one if the fault came after it was
// durable), and that the runner's next snapshot, after more orders, is
// whole.
func TestSnapshotFaultsLeaveLoadableState(t *testing.T) {
	for fail := 1; ; fail++ {
		dir := t.TempDir()
		fsys := &faultFS{FS: vfs.OS}
		r, f := newRunner(t, dir, fsys)
		f.place(t, 15_000)
		r.SnapshotAt(f.pos * 1000)
		before, placedBefore := f.pos*1000, f.placed
		f.place(t, 15_000)
		fsys.ops, fsys.fail = 0, fail
		r.SnapshotAt(f.pos * 1000)
		if fsys.ops < fail {
			break // every operation was failed once
		}
		l, _ := newRunner(t, dir, nil)
		pos, err := l.Load()
		switch {
		case err != nil:
			t.Fatalf("fault at operation %d: load: %v", fail, err)
		case pos == before && l.store.Stats().Orders == uint64(placedBefore):
		case pos == f.pos*1000 && l.store.Stats().Orders == uint64(f.placed):
		default:
			t.Fatalf("fault at operation %d: loaded %d orders at %d, want %d at %d or %d at %d",
				fail, l.store.Stats().Orders, pos, placedBefore, before, f.placed, f.pos*1000)
		}
		for _, name := range chunkFileNames(t, dir) {
			if strings.HasSuffix(name, projection.ChunkTmpSuffix) {
				t.Fatalf("fault at operation %d: temporary file %s left behind", fail, name)
			}
		}
		f.place(t, 100)
		r.SnapshotAt(f.pos * 1000)
		l, _ = newRunner(t, dir, nil)
		if pos, err := l.Load(); err != nil || pos != f.pos*1000 || l.store.Stats().Orders != uint64(f.placed) {
			t.Fatalf("fault at operation %d, then a snapshot: loaded %d orders at %d (%v), want %d at %d",
				fail, l.store.Stats().Orders, pos, err, f.placed, f.pos*1000)
		}
	}
}
