package engine

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fest-platform/fest/internal/idempotency"
)

// directory maps SKU ids to their partition and slot. Gateways read it to
// route an order (a request names SKUs, not merchants) and partition workers
// write it when a SKU is created. It is sharded so that the many readers of
// the hot path rarely meet a writer.
//
// A SKU is found by two 64-bit hashes of its id under independent seeds
// rather than by its id as a map key: a string key costs the map a second
// hash of the id and a comparison that reads the stored id from elsewhere in
// memory, a cache miss on every order line (a lookup took 60 ns against 25
// over 250,000 SKUs). The first hash picks the shard and is the map's key;
// the second is checked in the entry. Two ids that agree on both (odds about
// 2^-128) would share a SKU; ids that agree on the first only are kept in a
// small map by id beside it.
//
// Ids are copied into per-shard arenas, the directory's own copy returned to
// the caller to share: SKUs are never deleted, and one large allocation per
// 64 KiB of ids costs far less memory than one small allocation per id.
type directory struct {
	seed, checkSeed maphash.Seed
	shards          [directoryShards]directoryShard
}

const (
	directoryShards     = 256
	directoryArenaBytes = 64 << 10
)

type directoryShard struct {
	mu struct {
		sync.RWMutex
		refs       map[uint64]directoryEntry // by the id's hash under seed
		collisions map[string]skuRef         // ids whose hash another id holds
		arena      []byte
	}
	// Pad to 128 bytes, a pair of cache lines (the unit the CPU prefetches
	// together), so that a reader's atomic update of one shard's lock does
	// not contend with its neighbours'.
	_ [128 - unsafe.Sizeof(directoryShardFields{})]byte
}

// directoryShardFields is directoryShard without its padding, to size it.
type directoryShardFields struct {
	mu struct {
		sync.RWMutex
		refs       map[uint64]directoryEntry
		collisions map[string]skuRef
		arena      []byte
	}
}

// directoryEntry is a SKU's reference and its id's hash under checkSeed.
type directoryEntry struct {
	check uint64
	ref   skuRef
}

func newDirectory() *directory {
	d := &directory{seed: maphash.MakeSeed(), checkSeed: maphash.MakeSeed()}
	for i := range d.shards {
		d.shards[i].mu.refs = make(map[uint64]directoryEntry)
		d.shards[i].mu.collisions = make(map[string]skuRef)
	}
	return d
}

// lookup returns the reference of a SKU id.
func (d *directory) lookup(id string) (skuRef, bool) {
	h, check := maphash.String(d.seed, id), maphash.String(d.checkSeed, id)
	s := &d.shards[h%directoryShards]
	s.mu.RLock()
	e, ok := s.mu.refs[h]
	r := e.ref
	if ok && e.check != check {
		r, ok = s.mu.collisions[id]
	}
	s.mu.RUnlock()
	return r, ok
}

// insert adds id → ref unless id is present; it returns the reference now
// held, the directory's own copy of the id (to share, not copy again), and
// whether it was inserted.
func (d *directory) insert(id string, ref skuRef) (skuRef, string, bool) {
	h, check := maphash.String(d.seed, id), maphash.String(d.checkSeed, id)
	s := &d.shards[h%directoryShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, taken := s.mu.refs[h]
	if taken {
		if e.check == check {
			return e.ref, "", false
		}
		if r, ok := s.mu.collisions[id]; ok {
			return r, "", false
		}
	}
	var key string
	if len(id) > directoryArenaBytes/4 {
		key = strings.Clone(id)
	} else {
		if cap(s.mu.arena)-len(s.mu.arena) < len(id) {
			s.mu.arena = make([]byte, 0, directoryArenaBytes)
		}
		start := len(s.mu.arena)
		s.mu.arena = append(s.mu.arena, id...)
		key = unsafe.String(&s.mu.arena[start], len(id))
	}
	if taken {
		s.mu.collisions[key] = ref
	} else {
		s.mu.refs[h] = directoryEntry{check: check, ref: ref}
	}
	return ref, key, true
}

// count returns the number of SKUs.
func (d *directory) count() int {
	n := 0
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.RLock()
		n += len(s.mu.refs) + len(s.mu.collisions)
		s.mu.RUnlock()
	}
	return n
}

// soldOutSet is a bitset of a partition's sold-out SKUs, written by the
// partition's worker and read by gateways so that an order for a sold-out
// SKU is rejected without entering the partition's queue. Chunks are
// allocated on demand and never moved, so readers need no lock.
type soldOutSet struct {
	chunks [soldOutChunks]atomic.Pointer[soldOutChunk]
}

const (
	soldOutChunkBits = 1 << 16
	soldOutChunks    = 1 << 12 // 2^28 SKUs per partition
)

type soldOutChunk [soldOutChunkBits / 64]atomic.Uint64

func (s *soldOutSet) set(slot uint32, soldOut bool) {
	ci := slot / soldOutChunkBits
	c := s.chunks[ci].Load()
	if c == nil {
		if !soldOut {
			return
		}
		c = new(soldOutChunk)
		s.chunks[ci].Store(c)
	}
	w := &c[slot%soldOutChunkBits/64]
	bit := uint64(1) << (slot % 64)
	for {
		old := w.Load()
		nw := old &^ bit
		if soldOut {
			nw = old | bit
		}
		if old == nw || w.CompareAndSwap(old, nw) {
			return
		}
	}
}

func (s *soldOutSet) get(slot uint32) bool {
	c := s.chunks[slot/soldOutChunkBits].Load()
	if c == nil {
		return false
	}
	return c[slot%soldOutChunkBits/64].Load()&(1<<(slot%64)) != 0
}

// keyIndex maps idempotency key hashes to the partition that owns them,
// so that a key reused on another merchant's order is caught at the
// gateway. The router reserves a key for its partition on first use; the
// partition confirms it when it remembers an order under it, and removes
// it when it forgets the key. A reservation whose order was refused is
// never confirmed and is dropped, oldest first, past a bound.
type keyIndex struct {
	shards [keyIndexShards]keyIndexShard
}

const (
	keyIndexShards = 64
	// reservationsMax bounds unconfirmed reservations per shard.
	reservationsMax = 1 << 14
)

// keyEntry is small (4 bytes) because the index holds every key of the
// memory tiers: a partition number fits in 16 bits (partitionsMax).
type keyEntry struct {
	partition uint16
	confirmed bool
}

// Partition numbers must fit keyEntry.partition.
var _ [1<<16 - partitionsMax]struct{}

type keyIndexShard struct {
	mu struct {
		sync.Mutex
		keys         map[uint64]keyEntry
		reservations []uint64 // key hashes reserved, oldest first
	}
	_ [40]byte
}

func newKeyIndex() *keyIndex {
	k := &keyIndex{}
	for i := range k.shards {
		k.shards[i].mu.keys = make(map[uint64]keyEntry)
	}
	return k
}

// reserve binds keyHash to partition unless it is bound already, and
// returns the partition it is bound to. The index holds the keys of the
// memory tiers and recent reservations; a key that has moved to disk is
// bound by its disk entry, read outside the shard lock. A partition removes
// a key from the index only after its disk run is published, which bumps
// the store's generation: a reservation is made only if the generation
// seen before the disk miss still holds, so a key cannot slip out of memory
// between the two checks and be bound twice. missGeneration is that
// generation when the key was reserved after a disk miss, else 0: while
// the store stays at it, the worker need not look again.
func (k *keyIndex) reserve(keyHash uint64, partition int, disk *idempotency.Store) (owner int, missGeneration uint64, err error) {
	s := &k.shards[keyHash%keyIndexShards]
	for {
		var generation uint64
		if disk != nil {
			generation = disk.Generation()
		}
		s.mu.Lock()
		if e, ok := s.mu.keys[keyHash]; ok {
			s.mu.Unlock()
			return int(e.partition), 0, nil
		}
		if disk == nil {
			s.reserveLocked(keyHash, partition)
			s.mu.Unlock()
			return partition, 0, nil
		}
		s.mu.Unlock()
		e, ok, err := disk.Lookup(keyHash)
		if err != nil {
			return 0, 0, fmt.Errorf("look up idempotency key: %w", err)
		}
		if ok {
			return int(e.Partition), 0, nil
		}
		s.mu.Lock()
		if e, ok := s.mu.keys[keyHash]; ok {
			s.mu.Unlock()
			return int(e.partition), 0, nil
		}
		if disk.Generation() != generation {
			s.mu.Unlock()
			continue // runs were published meanwhile: look again
		}
		s.reserveLocked(keyHash, partition)
		s.mu.Unlock()
		return partition, generation, nil
	}
}

// reserveLocked records an unconfirmed reservation, dropping the oldest
// unconfirmed one past reservationsMax.
func (s *keyIndexShard) reserveLocked(keyHash uint64, partition int) {
	s.mu.keys[keyHash] = keyEntry{partition: uint16(partition)}
	s.mu.reservations = append(s.mu.reservations, keyHash)
	if len(s.mu.reservations) > reservationsMax {
		old := s.mu.reservations[0]
		s.mu.reservations = s.mu.reservations[1:]
		if e, ok := s.mu.keys[old]; ok && !e.confirmed {
			delete(s.mu.keys, old)
		}
	}
}

// put confirms keyHash for partition: an order is remembered under it.
func (k *keyIndex) put(keyHash uint64, partition int) {
	s := &k.shards[keyHash%keyIndexShards]
	s.mu.Lock()
	s.mu.keys[keyHash] = keyEntry{partition: uint16(partition), confirmed: true}
	s.mu.Unlock()
}

// remove forgets keyHash if partition owns it.
func (k *keyIndex) remove(keyHash uint64, partition int) {
	s := &k.shards[keyHash%keyIndexShards]
	s.mu.Lock()
	if e, ok := s.mu.keys[keyHash]; ok && int(e.partition) == partition {
		delete(s.mu.keys, keyHash)
	}
	s.mu.Unlock()
}
