package engine

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
)

// uuidV7 is a UUIDv7 minted at ms, told apart by n.
func uuidV7(ms int64, n int) string {
	return fmt.Sprintf("%08x-%04x-7%03x-8%03x-%012x", ms>>16, ms&0xffff, n>>12&0xfff, n&0xfff, n)
}

const timedTestStart = int64(1_750_000_000_000) * 1e6 // unix ns

// placeTimed places n orders of merchant 0 keyed by key(i) as the clock
// moves a millisecond an order, and returns their ids.
func (k *keyTest) placeTimed(n int, key func(i int, nowMs int64) string) ([]OrderID, []string) {
	k.t.Helper()
	ids, keys := make([]OrderID, n), make([]string, n)
	for i := range ids {
		k.clock.Add(int64(time.Millisecond))
		keys[i] = key(i, k.clock.Load()/1e6)
		r := k.place(0, keys[i], uint64(i+1))
		if !r.OK() || r.Replayed {
			k.t.Fatalf("order %d: %v replayed=%v", i, r.Err(), r.Replayed)
		}
		ids[i] = r.OrderID
	}
	return ids, keys
}

func (k *keyTest) retryTimed(ids []OrderID, keys []string) {
	k.t.Helper()
	for i, id := range ids {
		r := k.place(0, keys[i], uint64(i+1))
		if !r.OK() || !r.Replayed || r.OrderID != id {
			k.t.Fatalf("retry of %s: got %v %v replayed=%v, want %v", keys[i], r.OrderID, r.Err(), r.Replayed, id)
		}
	}
}

// TestTimedKeysRetryFromTimeOrderedRuns checks that UUIDv7 keys minted at
// their first use spill to the time-ordered runs, not the other keys'
// index, and that a retry finds them there before and after a clean
// restart and a crash.
func TestTimedKeysRetryFromTimeOrderedRuns(t *testing.T) {
	k := newKeyTest(t, 24*time.Hour)
	k.clock.Store(timedTestStart)
	k.cfg.SegmentBytesMax = 4 << 10
	k.reopen()
	ids, keys := k.placeTimed(20*keyTestKeysMax, func(i int, nowMs int64) string { return uuidV7(nowMs, i) })
	want := int64(len(ids) - memoryKeysHardFactor*keyTestKeysMax)
	for k.e.IdempotencyStats().DiskTimedKeys < want {
		time.Sleep(time.Millisecond)
	}
	st := k.e.IdempotencyStats()
	if st.DiskKeys != st.DiskTimedKeys || st.DiskTimedRuns == 0 || st.MemoryTimedKeys == 0 || st.DiskTimedIndexBytes == 0 {
		t.Fatalf("stats %+v: want every key on disk time-ordered, some in memory", st)
	}
	if st.HorizonAge <= 0 || st.HorizonAge > time.Duration(len(ids))*time.Millisecond {
		t.Fatalf("horizon age %v, want within the %d ms of orders", st.HorizonAge, len(ids))
	}
	k.retryTimed(ids, keys)
	if err := k.e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	crashed := k.cfg.Dir + "-crash"
	copyRunningDir(t, k.cfg.Dir, crashed)
	k.reopen()
	inMemory := func() bool {
		_, ok := k.e.core.partitions[k.e.core.merchantPartition("m0")].keys.entries[hashString(keys[0])|1]
		return ok
	}
	if inMemory() {
		t.Fatal("the first key is back in memory after the restart: the test would not reach the disk tier")
	}
	k.retryTimed(ids, keys)
	if err := k.e.Close(); err != nil {
		t.Fatal(err)
	}
	k.cfg.Dir = crashed
	k.open()
	defer func() { k.e.Close() }()
	if inMemory() {
		t.Fatal("the first key is in memory after the crash: the test would not reach the disk tier")
	}
	k.retryTimed(ids, keys)
	// A new key is a new order.
	if r := k.place(0, uuidV7(k.clock.Load()/1e6, 1<<20), 1); !r.OK() || r.Replayed {
		t.Fatalf("a new key: %v replayed=%v", r.Err(), r.Replayed)
	}
}

// TestImplausibleTimedKeysAreOtherKeys checks that UUIDv7 and ULID keys
// minted far from their first use are kept as other keys, and found.
func TestImplausibleTimedKeysAreOtherKeys(t *testing.T) {
	k := newKeyTest(t, 24*time.Hour)
	defer func() { k.e.Close() }()
	k.clock.Store(timedTestStart)
	ids, keys := k.placeTimed(10*keyTestKeysMax, func(i int, nowMs int64) string {
		if i%2 == 0 {
			return uuidV7(nowMs-2*time.Hour.Milliseconds(), i) // minted two hours before
		}
		return fmt.Sprintf("7ZZZZZZZZZ%016d", i) // a ULID of the year 10889
	})
	want := int64(len(ids) - memoryKeysHardFactor*keyTestKeysMax)
	for k.e.IdempotencyStats().DiskKeys < want {
		time.Sleep(time.Millisecond)
	}
	if st := k.e.IdempotencyStats(); st.DiskTimedKeys != 0 || st.MemoryTimedKeys != 0 || st.TimeRejected != uint64(len(ids)) {
		t.Fatalf("stats %+v: want no time-ordered keys and the %d keys counted as refused for their time", st, len(ids))
	}
	k.retryTimed(ids, keys)
	// A retry is no first use, and a key that carries no time is not
	// refused for it.
	k.place(0, "not-a-uuid", 1)
	if st := k.e.IdempotencyStats(); st.TimeRejected != uint64(len(ids)) {
		t.Fatalf("%d keys counted as refused for their time, want %d", st.TimeRejected, len(ids))
	}
}

// runReadsFS counts the reads of time-ordered run files.
type runReadsFS struct {
	vfs.FS
	reads *atomic.Int64
}

type runReadsFile struct {
	vfs.File
	reads *atomic.Int64
}

func (f runReadsFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".trun") {
		return file, err
	}
	return runReadsFile{File: file, reads: f.reads}, nil
}

func (f runReadsFile) ReadAt(b []byte, off int64) (int, error) {
	f.reads.Add(1)
	return f.File.ReadAt(b, off)
}

// TestNewTimedKeysReadNoDisk checks the point of the time-ordered tier:
// with most keys on disk, new keys minted now are answered without reading
// a run, and a retry of an old one reads its bucket.
func TestNewTimedKeysReadNoDisk(t *testing.T) {
	var reads atomic.Int64
	k := newKeyTest(t, 24*time.Hour)
	k.clock.Store(timedTestStart)
	k.cfg.FS = runReadsFS{FS: vfs.OS, reads: &reads}
	k.reopen()
	defer func() { k.e.Close() }()
	ids, keys := k.placeTimed(20*keyTestKeysMax, func(i int, nowMs int64) string { return uuidV7(nowMs, i) })
	for k.e.IdempotencyStats().DiskTimedKeys < int64(len(ids)-memoryKeysHardFactor*keyTestKeysMax) {
		time.Sleep(time.Millisecond)
	}
	before := reads.Load()
	k.placeTimed(5*keyTestKeysMax, func(i int, nowMs int64) string { return uuidV7(nowMs, 1<<20+i) })
	if n := reads.Load() - before; n != 0 {
		t.Fatalf("new keys read the time-ordered runs %d times", n)
	}
	before = reads.Load()
	k.retryTimed(ids[:1], keys[:1])
	if n := reads.Load() - before; n == 0 {
		t.Fatal("the retry of the first key read no run: the test did not reach the disk")
	}
}

// TestTimedKeysStayTimeOrderedAfterRestart fails before the minting time
// was recorded in the OrderPlaced event and the snapshot's key ring: keys
// rebuilt by a restart spilled as other keys, whose index budget then
// forgot them within their window, and a retry placed a second order.
func TestTimedKeysStayTimeOrderedAfterRestart(t *testing.T) {
	for _, restart := range []string{"replay", "snapshot"} {
		t.Run(restart, func(t *testing.T) {
			k := newKeyTest(t, 24*time.Hour)
			k.clock.Store(timedTestStart)
			// Room in the other keys' index for little more than one run.
			k.cfg.IdempotencyIndexBytesMax = 256*64*8 + 1
			k.reopen()
			const timedKeys = 10
			ids, keys := k.placeTimed(timedKeys, func(i int, nowMs int64) string { return uuidV7(nowMs, i) })
			if restart == "snapshot" {
				if err := k.e.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			k.reopen()
			defer func() { k.e.Close() }()
			// The memory figures are published at the next batch.
			if r := k.place(0, keys[0], 1); !r.Replayed {
				t.Fatalf("retry after the restart: %v replayed=%v", r.Err(), r.Replayed)
			}
			if st := k.e.IdempotencyStats(); st.MemoryTimedKeys != timedKeys {
				t.Fatalf("after the restart %d time-ordered keys in memory, want %d", st.MemoryTimedKeys, timedKeys)
			}
			// Other keys, as another client sends them, overflow the other
			// keys' index, which forgets its oldest runs.
			for i := 0; i < 3000; i++ {
				k.clock.Add(int64(time.Millisecond))
				if r := k.place(0, fmt.Sprintf("other-%d", i), uint64(1_000_000+i)); !r.OK() {
					t.Fatal(r.Err())
				}
			}
			if st := k.e.IdempotencyStats(); st.ForgottenEarly == 0 || st.DiskTimedKeys != timedKeys {
				t.Fatalf("stats %+v: want other keys forgotten early and the %d time-ordered keys on disk", st, timedKeys)
			}
			k.retryTimed(ids, keys)
		})
	}
}

// TestKeyOnDiskForeignUseKeepsRetry fails before the router's reservation
// looked up the time-ordered runs: a time-ordered key that had left memory
// was then, on another merchant's order, reserved for that merchant's
// partition, and the genuine retry on the first merchant was answered
// idempotency_mismatch until the reservation aged out. Other keys, found
// through the other keys' index, already behaved.
func TestKeyOnDiskForeignUseKeepsRetry(t *testing.T) {
	for _, timed := range []bool{true, false} {
		t.Run(fmt.Sprint("timed=", timed), func(t *testing.T) {
			k := newKeyTest(t, 24*time.Hour)
			k.clock.Store(timedTestStart)
			k.reopen()
			defer func() { k.e.Close() }()
			key := func(i int, nowMs int64) string { return fmt.Sprintf("key-%d", i) }
			if timed {
				key = func(i int, nowMs int64) string { return uuidV7(nowMs, i) }
			}
			ids, keys := k.placeTimed(20*keyTestKeysMax, key)
			k.waitForDisk(int64(len(ids) - memoryKeysHardFactor*keyTestKeysMax))
			p0, p1 := k.e.core.merchantPartition("m0"), k.e.core.merchantPartition("m1")
			if p0 == p1 {
				t.Fatal("merchants m0 and m1 share a partition: the test needs two")
			}
			if _, ok := k.e.core.partitions[p0].keys.entries[hashString(keys[0])|1]; ok {
				t.Fatal("the first key is still in memory: the test would not reach the disk tier")
			}
			if st := k.e.IdempotencyStats(); timed != (st.DiskTimedKeys > 0) {
				t.Fatalf("stats %+v: want time-ordered keys on disk %v", st, timed)
			}
			if r := k.place(1, keys[0], 999); r.Code != CodeIdempotencyMismatch {
				t.Fatalf("the key on another merchant's order: %v, want %v", r.Code, CodeIdempotencyMismatch)
			}
			if r := k.place(0, keys[0], 1); !r.OK() || !r.Replayed || r.OrderID != ids[0] {
				t.Fatalf("genuine retry after a use on another merchant: %v %v replayed=%v, want %v", r.OrderID, r.Code, r.Replayed, ids[0])
			}
		})
	}
}
