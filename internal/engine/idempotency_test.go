package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/idempotency"
	"github.com/fest-platform/fest/internal/vfs"
)

// keyTest drives keyed orders of merchant m0 (one partition) against an
// engine whose memory tier keeps only keysMax keys.
type keyTest struct {
	t     *testing.T
	cfg   Config
	e     *Engine
	clock *atomic.Int64
}

const keyTestKeysMax = 16

func newKeyTest(t *testing.T, window time.Duration) *keyTest {
	k := &keyTest{t: t, clock: new(atomic.Int64)}
	k.clock.Store(1_000_000)
	k.cfg = Config{Dir: t.TempDir(), Partitions: 4, Workers: 2, NoSync: true, SnapshotEveryBytes: -1,
		IdempotencyKeysMax: keyTestKeysMax, IdempotencyWindow: window, PaymentTimeout: time.Hour,
		IdempotencyRunDelayMax: time.Microsecond, Now: k.clock.Load, Logger: quiet}
	k.open()
	testCatalog(t, k.e, 2, 4, 1_000_000)
	return k
}

func (k *keyTest) open() {
	k.t.Helper()
	e, err := Open(k.cfg)
	if err != nil {
		k.t.Fatal(err)
	}
	k.e = e
}

func (k *keyTest) reopen() {
	k.t.Helper()
	if err := k.e.Close(); err != nil {
		k.t.Fatal(err)
	}
	k.open()
}

// place sends one keyed order of merchant m, retrying while the engine
// answers overloaded (the memory tier waiting for the disk), as a client
// would.
func (k *keyTest) place(merchant int, key string, requestHash uint64) Result {
	k.t.Helper()
	for {
		r := k.e.Do(k.t.Context(), Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u",
			Items: []Item{{SKUID: fmt.Sprintf("s%d-1", merchant), Quantity: 1}}, Channel: "app", IdempotencyKey: key, RequestHash: requestHash}})
		if r.Code != CodeOverloaded {
			return r
		}
		runtime.Gosched()
	}
}

// placeMany places n keyed orders of merchant 0 and returns their ids.
func (k *keyTest) placeMany(n int) []OrderID {
	k.t.Helper()
	ids := make([]OrderID, n)
	for i := range ids {
		r := k.place(0, fmt.Sprintf("key-%d", i), uint64(i+1))
		if !r.OK() || r.Replayed {
			k.t.Fatalf("order %d: %v replayed=%v", i, r.Err(), r.Replayed)
		}
		ids[i] = r.OrderID
	}
	return ids
}

func (k *keyTest) retryAll(ids []OrderID) {
	k.t.Helper()
	for i, id := range ids {
		r := k.place(0, fmt.Sprintf("key-%d", i), uint64(i+1))
		if !r.OK() || !r.Replayed || r.OrderID != id {
			k.t.Fatalf("retry of key-%d: got %v %v replayed=%v, want %v", i, r.OrderID, r.Err(), r.Replayed, id)
		}
	}
}

// waitForDisk waits until the disk tier holds n keys: spills are written
// in the background.
func (k *keyTest) waitForDisk(n int64) {
	for k.e.IdempotencyStats().DiskKeys < n {
		time.Sleep(time.Millisecond)
	}
}

// TestKeyRetryPastMemoryBound fails before the disk tier: the memory tier
// forgot the oldest keys past IdempotencyKeysMax and a retry placed a
// second order.
func TestKeyRetryPastMemoryBound(t *testing.T) {
	k := newKeyTest(t, 24*time.Hour)
	defer func() { k.e.Close() }()
	ids := k.placeMany(20 * keyTestKeysMax)
	k.waitForDisk(int64(len(ids) - memoryKeysHardFactor*keyTestKeysMax))
	k.retryAll(ids)
	st := k.e.IdempotencyStats()
	if st.MemoryKeys > memoryKeysHardFactor*keyTestKeysMax*2 || st.DiskKeys == 0 || st.OldestAt != 1_000_000 {
		t.Fatalf("stats %+v: want at most %d keys in memory (two merchants), some on disk, the oldest at 1000000", st, memoryKeysHardFactor*keyTestKeysMax*2)
	}
	// A key on disk used on another partition's merchant is another
	// request.
	p0, p1 := k.e.core.merchantPartition("m0"), k.e.core.merchantPartition("m1")
	if p0 != p1 {
		if r := k.place(1, "key-0", 1); r.Code != CodeIdempotencyMismatch {
			t.Fatalf("key-0 on merchant m1: %v, want idempotency mismatch", r.Code)
		}
	}
}

// TestKeyRetryAcrossRestart checks both tiers across a clean restart and
// across a crash (a copy of the directory taken while running).
func TestKeyRetryAcrossRestart(t *testing.T) {
	k := newKeyTest(t, 24*time.Hour)
	// Small segments, so that the snapshot lets the journal of the first
	// orders go: their keys then survive only in the disk tier.
	k.cfg.SegmentBytesMax = 4 << 10
	k.reopen()
	ids := k.placeMany(10 * keyTestKeysMax)
	k.waitForDisk(int64(len(ids) - memoryKeysHardFactor*keyTestKeysMax))
	if err := k.e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	crashed := k.cfg.Dir + "-crash"
	copyRunningDir(t, k.cfg.Dir, crashed)
	k.reopen()
	if _, ok := k.e.core.partitions[k.e.core.merchantPartition("m0")].keys.entries[hashString("key-0")|1]; ok {
		t.Fatal("key-0 is back in memory after the restart: the test would not reach the disk tier")
	}
	k.retryAll(ids)
	if err := k.e.Close(); err != nil {
		t.Fatal(err)
	}
	k.cfg.Dir = crashed
	k.open()
	defer func() { k.e.Close() }()
	if _, ok := k.e.core.partitions[k.e.core.merchantPartition("m0")].keys.entries[hashString("key-0")|1]; ok {
		t.Fatal("key-0 is in memory after the crash: the test would not reach the disk tier")
	}
	k.retryAll(ids)
}

// TestKeyForgottenAfterWindow checks that a key older than its window, on
// disk, places a new order.
func TestKeyForgottenAfterWindow(t *testing.T) {
	k := newKeyTest(t, time.Millisecond)
	defer func() { k.e.Close() }()
	ids := k.placeMany(10 * keyTestKeysMax)
	k.waitForDisk(1)
	k.clock.Add(int64(time.Second))
	r := k.place(0, "key-0", 1)
	if !r.OK() || r.Replayed || r.OrderID == ids[0] {
		t.Fatalf("key-0 after its window: %v replayed=%v id %v (first %v), want a new order", r.Err(), r.Replayed, r.OrderID, ids[0])
	}
}

// TestKeyOnDiskOtherBodyMismatch checks that a key on disk with another
// request hash is idempotency_mismatch.
func TestKeyOnDiskOtherBodyMismatch(t *testing.T) {
	k := newKeyTest(t, 24*time.Hour)
	defer func() { k.e.Close() }()
	ids := k.placeMany(10 * keyTestKeysMax)
	k.waitForDisk(int64(len(ids) - memoryKeysHardFactor*keyTestKeysMax))
	if _, ok := k.e.core.partitions[k.e.core.merchantPartition("m0")].keys.entries[hashString("key-0")|1]; ok {
		t.Fatal("key-0 is still in memory: the test would not reach the disk tier")
	}
	if r := k.place(0, "key-0", 999); r.Code != CodeIdempotencyMismatch {
		t.Fatalf("key-0 with another body: %v, want idempotency mismatch", r.Code)
	}
}

// TestNoDiskTierWithoutDir keeps the old bounded behaviour for an engine
// without a data directory.
func TestNoDiskTierWithoutDir(t *testing.T) {
	c := newCore(1, 100, 1<<40, 4)
	p := c.partitions[0]
	for i := uint64(1); i <= 10; i++ {
		p.orders = append(p.orders, StatusPending)
		p.remember(c.keys, i<<1|1, 1, i, int64(i), 0, c.idempotencyWindow, c.idempotencyKeysMax, false)
	}
	if n := len(p.keys.entries); n != 4 {
		t.Fatalf("%d keys in memory, want 4", n)
	}
}

// copyRunningDir copies a data directory while the engine runs, as a crash
// would leave it: the journal and snapshots first, then the disk tier (which
// only grows meanwhile), skipping files removed during the copy.
func copyRunningDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"engine.json", "journal", "snapshots", "idempotency"} {
		err := filepath.Walk(filepath.Join(src, sub), func(path string, info os.FileInfo, err error) error {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, path)
			target := filepath.Join(dst, rel)
			if info.IsDir() {
				return os.MkdirAll(target, 0o755)
			}
			b, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o600)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// failingSyncFS fails every fsync of a file while failing is set.
type failingSyncFS struct {
	vfs.FS
	failing atomic.Bool
}

type failingSyncFile struct {
	vfs.File
	fs *failingSyncFS
}

func (f *failingSyncFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return failingSyncFile{File: file, fs: f}, nil
}

// Sync fails for the idempotency store's files only: the engine's other
// files (engine.json, the journal) share the file system.
func (f failingSyncFile) Sync() error {
	if f.fs.failing.Load() && strings.Contains(f.Name(), string(filepath.Separator)+"idempotency"+string(filepath.Separator)) {
		return errors.New("injected fsync failure")
	}
	return f.File.Sync()
}

// TestKeysSurviveFailingDiskTier checks that while the disk tier cannot
// make runs durable, no key is forgotten: keys stay in memory, new keyed
// orders past the hard bound are answered overloaded, retries are still
// answered, and once the disk recovers every key is kept.
func TestKeysSurviveFailingDiskTier(t *testing.T) {
	fsys := &failingSyncFS{FS: vfs.OS}
	fsys.failing.Store(true)
	k := &keyTest{t: t, clock: new(atomic.Int64)}
	k.clock.Store(1_000_000)
	k.cfg = Config{Dir: t.TempDir(), Partitions: 4, Workers: 2, NoSync: true, SnapshotEveryBytes: -1, FS: fsys,
		IdempotencyKeysMax: keyTestKeysMax, PaymentTimeout: time.Hour, IdempotencyRunDelayMax: time.Microsecond,
		Now: k.clock.Load, Logger: quiet}
	k.open()
	defer func() { k.e.Close() }()
	testCatalog(t, k.e, 2, 4, 1_000_000)
	hard := memoryKeysHardFactor * keyTestKeysMax
	var ids []OrderID
	for i := 0; ; i++ {
		r := k.e.Do(t.Context(), Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u",
			Items: []Item{{SKUID: "s0-1", Quantity: 1}}, Channel: "app", IdempotencyKey: fmt.Sprintf("key-%d", i), RequestHash: uint64(i + 1)}})
		if r.Code == CodeOverloaded {
			break
		}
		if !r.OK() {
			t.Fatalf("order %d: %v", i, r.Err())
		}
		ids = append(ids, r.OrderID)
		if i > 10*hard {
			t.Fatalf("%d keyed orders accepted with the disk tier failing: the memory tier is unbounded", i)
		}
	}
	if len(ids) != hard {
		t.Fatalf("%d keys accepted before overloaded, want the hard bound %d", len(ids), hard)
	}
	if st := k.e.IdempotencyStats(); st.DiskKeys != 0 {
		t.Fatalf("%d keys on disk with every fsync failing", st.DiskKeys)
	}
	k.retryAll(ids) // replays are answered at the bound
	fsys.failing.Store(false)
	more := make([]OrderID, 0, hard)
	for i := len(ids); i < len(ids)+hard; i++ {
		// Time passes while the client retries: a write that failed just
		// as the disk recovered starts its back-off from the clock then,
		// and a clock that stood still would keep the writer backing off
		// (and the order overloaded) forever.
		var r Result
		for {
			r = k.e.Do(t.Context(), Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u",
				Items: []Item{{SKUID: "s0-1", Quantity: 1}}, Channel: "app", IdempotencyKey: fmt.Sprintf("key-%d", i), RequestHash: uint64(i + 1)}})
			if r.Code != CodeOverloaded {
				break
			}
			k.clock.Add(int64(100 * time.Millisecond))
			runtime.Gosched()
		}
		if !r.OK() || r.Replayed {
			t.Fatalf("order %d after the disk recovered: %v", i, r.Err())
		}
		more = append(more, r.OrderID)
	}
	k.retryAll(append(ids, more...))
}

// TestKeysSurviveReplayAfterCrash fails before recovery replayed the
// journal with the disk tier open: replay then took the engine for one
// without a disk tier and forgot every key past IdempotencyKeysMax per
// partition, although those keys were in no run yet, so a retry of an
// acknowledged order placed a second one. The disk tier fails every fsync
// here, so that all the keys are in memory and the journal alone when the
// directory is copied, as a crash leaves it without a snapshot.
func TestKeysSurviveReplayAfterCrash(t *testing.T) {
	fsys := &failingSyncFS{FS: vfs.OS}
	fsys.failing.Store(true)
	k := &keyTest{t: t, clock: new(atomic.Int64)}
	k.clock.Store(1_000_000)
	k.cfg = Config{Dir: t.TempDir(), Partitions: 4, Workers: 2, NoSync: true, SnapshotEveryBytes: -1, FS: fsys,
		IdempotencyKeysMax: keyTestKeysMax, PaymentTimeout: time.Hour, IdempotencyRunDelayMax: time.Microsecond,
		Now: k.clock.Load, Logger: quiet}
	k.open()
	testCatalog(t, k.e, 2, 4, 1_000_000)
	// Up to the hard bound: twice IdempotencyKeysMax keys, all in memory.
	ids := k.placeMany(memoryKeysHardFactor * keyTestKeysMax)
	if st := k.e.IdempotencyStats(); st.DiskKeys != 0 {
		t.Fatalf("%d keys on disk with every fsync failing", st.DiskKeys)
	}
	crashed := k.cfg.Dir + "-crash"
	copyRunningDir(t, k.cfg.Dir, crashed)
	if err := k.e.Close(); err != nil {
		t.Fatal(err)
	}
	k.cfg.Dir, k.cfg.FS = crashed, nil
	k.open()
	defer func() { k.e.Close() }()
	k.retryAll(ids)
}

// heldSyncFS holds every fsync of a journal file while held is closed, so
// that a test can keep records applied but not durable.
type heldSyncFS struct {
	vfs.FS
	held    chan struct{} // closed: fsyncs go on
	waiting atomic.Int32  // fsyncs being held
}

type heldSyncFile struct {
	vfs.File
	fs *heldSyncFS
}

func (f *heldSyncFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return heldSyncFile{File: file, fs: f}, nil
}

func (f heldSyncFile) Sync() error {
	if strings.Contains(f.Name(), string(filepath.Separator)+"journal"+string(filepath.Separator)) {
		f.fs.waiting.Add(1)
		<-f.fs.held
		f.fs.waiting.Add(-1)
	}
	return f.File.Sync()
}

// TestKeysSpillOnlyOnceDurable fails before a spill waited for the journal:
// the worker handed the disk tier keys of orders whose records were still
// being fsynced, so after a crash lost those records a run named orders
// that never were. A client retrying such an unacknowledged order was then
// answered idempotency_mismatch, or, once the sequence was taken again, the
// other order as its replay.
func TestKeysSpillOnlyOnceDurable(t *testing.T) {
	sim, err := vfs.NewSim(vfs.SimConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	const keysMax = 4
	fsys := &heldSyncFS{FS: sim.Process(), held: make(chan struct{})}
	close(fsys.held)
	cfg := Config{Dir: "/data", FS: fsys, Partitions: 4, Workers: 1, SnapshotEveryBytes: -1, IdleTick: -1,
		IdempotencyKeysMax: keysMax, PaymentTimeout: time.Hour, IdempotencyRunDelayMax: time.Microsecond,
		Now: func() int64 { return 1_000_000 }, Logger: quiet}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testCatalog(t, e, 2, 4, 1_000_000)
	keyed := func(key string) Command {
		return Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-1", Quantity: 1}},
			Channel: "app", IdempotencyKey: key, RequestHash: hashString(key)}}
	}
	// Batch a's record waits in its fsync; batch b then runs the worker's
	// spill step, which must not hand a's keys to the disk tier yet.
	fsys.held = make(chan struct{})
	applied := e.stats.Batches.Load()
	a := NewBatch(0)
	for i := range 4 * keysMax {
		a.Add(keyed(fmt.Sprintf("key-%d", i)))
	}
	e.Submit(a)
	for fsys.waiting.Load() == 0 {
		runtime.Gosched()
	}
	b := NewBatch(0)
	b.Add(Command{Kind: KindGetSKU, SKUID: "s0-1"})
	e.Submit(b)
	for e.stats.Batches.Load() < applied+2 {
		runtime.Gosched()
	}
	// The disk writer takes batches in order: once a batch submitted now
	// is durable, so is any spill batch b started.
	written := make(chan error, 1)
	if err := e.core.disk.Submit([]idempotency.Entry{{KeyHash: 12345, RequestHash: 1, Seq: 1, At: 1_000_000, Partition: 3}}, func(err error) { written <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	sim.Crash()
	close(fsys.held)
	a.Wait()
	for _, r := range a.Requests {
		if r.Result.OK() {
			t.Fatalf("an order of batch a was acknowledged across the crash: %+v", r.Result)
		}
	}
	e.Close()

	cfg.FS = sim.Process()
	e, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// An unkeyed order takes the sequence the lost key-0 had.
	if r := e.Do(t.Context(), Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "v", Items: []Item{{SKUID: "s0-1", Quantity: 1}}, Channel: "app"}}); !r.OK() {
		t.Fatalf("unkeyed order: %v", r.Err())
	}
	for i := range 4 * keysMax {
		r := e.Do(t.Context(), keyed(fmt.Sprintf("key-%d", i)))
		for r.Code == CodeOverloaded { // the memory tier waits for the disk
			runtime.Gosched()
			r = e.Do(t.Context(), keyed(fmt.Sprintf("key-%d", i)))
		}
		if !r.OK() || r.Replayed {
			t.Fatalf("retry of the unacknowledged key-%d: %v replayed=%v order %v, want a new order", i, r.Err(), r.Replayed, r.OrderID)
		}
	}
}
