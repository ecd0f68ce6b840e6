package idempotency

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// index finds the runs that may hold a key hash. Each slot is one uint64:
// the top 40 bits of the key hash and a 24-bit run id (0 is an empty slot).
// It is sharded by the top 8 of those 40 bits (so that a sorted run fills
// one shard after another, taking each shard's lock once), each shard an
// open-addressed table with linear probing, grown by doubling. Since a slot keeps the hash bits
// that place it, a shard rehashes from its own slots, without the disk.
//
// Slots of a removed run stay until their shard is rehashed (they are
// reused by inserts meanwhile): lookups skip them because their run is no
// longer in the run set.
type index struct {
	shards [indexShards]indexShard
	bytes  atomic.Int64 // memory of all shards' slots
	used   atomic.Int64 // slots not empty, over all shards
	// stale is set when a run is removed and cleared by compact: only
	// then can a slot belong to a removed run, so only then must an
	// insert check the runs of the slots on its probe path.
	stale atomic.Bool
}

const (
	indexShards     = 256
	indexShardBits  = 8
	runIDBits       = 24
	runIDMax        = 1 << runIDBits
	indexShardSlots = 64 // initial slots of a shard
	// lookupCandidatesMax bounds the runs one lookup reads: more than a
	// few slots with the same 40 bits means the same key spilled again
	// after a restart, and any of them answers.
	lookupCandidatesMax = 4
)

type indexShard struct {
	mu    sync.RWMutex
	slots []uint64
	used  int // slots not empty (live or of removed runs)
	_     [24]byte
}

func runID(number uint64) uint32 { return uint32((number-1)%(runIDMax-1)) + 1 }

func (x *index) init() {
	for i := range x.shards {
		x.shards[i].slots = make([]uint64, indexShardSlots)
	}
	x.bytes.Store(indexShards * indexShardSlots * 8)
}

func slotHash(keyHash uint64) uint64 { return keyHash >> runIDBits } // 40 bits

func (x *index) shard(h uint64) *indexShard { return &x.shards[h>>(40-indexShardBits)] }

func home(h uint64, mask uint64) uint64 { return h & mask }

// candidates writes the ids of the runs whose slots match keyHash's 40 bits.
func (x *index) candidates(keyHash uint64, ids *[lookupCandidatesMax]uint32) int {
	h := slotHash(keyHash)
	s := x.shard(h)
	n := 0
	s.mu.RLock()
	mask := uint64(len(s.slots) - 1)
	for i := home(h, mask); ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			break
		}
		if v>>runIDBits == h {
			ids[n] = uint32(v & (runIDMax - 1))
			n++
			if n == lookupCandidatesMax {
				break
			}
		}
	}
	s.mu.RUnlock()
	return n
}

// insertAll adds entries of run id, sorted by key hash; live tells which
// runs' slots are kept.
func (x *index) insertAll(entries []Entry, id uint32, live *runSet) {
	reuse := live
	if !x.stale.Load() {
		reuse = nil
	}
	for i := 0; i < len(entries); {
		s := x.shard(slotHash(entries[i].KeyHash))
		s.mu.Lock()
		for ; i < len(entries); i++ {
			h := slotHash(entries[i].KeyHash)
			if x.shard(h) != s {
				break
			}
			if (s.used+1)*4 > len(s.slots)*3 {
				x.rehash(s, live, 1)
			}
			x.put(s, h<<runIDBits|uint64(id), reuse)
		}
		s.mu.Unlock()
	}
}

// put places slot v, reusing a slot of a removed run on its probe path
// (none when live is nil: a freshly rehashed shard has none).
func (x *index) put(s *indexShard, v uint64, live *runSet) {
	mask := uint64(len(s.slots) - 1)
	for i := home(v>>runIDBits, mask); ; i = (i + 1) & mask {
		old := s.slots[i]
		if old == 0 {
			s.slots[i] = v
			s.used++
			x.used.Add(1)
			return
		}
		if live != nil && live.byID[uint32(old&(runIDMax-1))] == nil {
			s.slots[i] = v
			return
		}
	}
}

// rehash rebuilds s from its live slots, sized so that they fill at most
// half of it after room for extra more.
func (x *index) rehash(s *indexShard, live *runSet, extra int) {
	n := extra
	for _, v := range s.slots {
		if v != 0 && live.byID[uint32(v&(runIDMax-1))] != nil {
			n++
		}
	}
	size := max(indexShardSlots, 1<<bits.Len(uint(max(n, 1)*2-1)))
	old := s.slots
	x.bytes.Add(int64(size-len(old)) * 8)
	s.slots = make([]uint64, size)
	x.used.Add(int64(-s.used))
	s.used = 0
	for _, v := range old {
		if v != 0 && live.byID[uint32(v&(runIDMax-1))] != nil {
			x.put(s, v, nil)
		}
	}
}

// compact rehashes every shard, dropping the slots of removed runs, so that
// their memory is returned.
func (x *index) compact(live *runSet) {
	x.stale.Store(false)
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		x.rehash(s, live, 0)
		s.mu.Unlock()
	}
}
