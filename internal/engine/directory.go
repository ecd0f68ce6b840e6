package engine

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fest-platform/fest/internal/idempotency"
)

// directory maps SKU ids to their partition and slot. Gateways read it to
// route an order (a request names SKUs, not merchants) and partition workers
// write it when a SKU is created. Readers take no lock (directoryShard);
// writers lock one of its shards.
//
// A SKU is found by two hashes of its id under independent seeds rather than
// by its id: comparing ids would read the stored id from elsewhere in memory,
// a cache miss on every order line (a lookup took 60 ns against 25 over
// 250,000 SKUs), and storing them would cost the directory a copy of every
// id. The first hash (64 bits) picks the shard and the entry's place and is
// stored whole; 19 bits of the second are stored beside the reference. Two
// ids that agree on all 83 bits would share a SKU: over ten million SKUs the
// odds that any two do are about 2^-37.
//
// Each shard is a table of 16-byte entries with open addressing (linear
// probing), grown by a quarter when it is seven-eighths full: at ten
// million SKUs the directory costs about 20 bytes per SKU where a Go map of
// the same entries cost 40.
type directory struct {
	seed, checkSeed maphash.Seed
	shards          [directoryShards]directoryShard
	// ambiguous counts the entries marked skuRefAmbiguous.
	ambiguous atomic.Int64
}

const (
	directoryShards = 256
	// directoryLoadMax is the fill, in eighths, past which a shard grows;
	// directoryGrowth the growth, in quarters of the table.
	directoryLoadMax  = 7
	directoryGrowth   = 1
	directoryEntries0 = 16 // a shard's first table
)

type directoryShard struct {
	// table is the shard's entries, read by the router without a lock:
	// every order line looks one up, and a read lock's atomic update of
	// the shard's cache line, made by the gateways of both cores, moved
	// the line from core to core on most look-ups. Writers, which hold mu,
	// store a published table's entries with atomic stores (an entry's
	// hash before its word) and readers load them atomically (word before
	// hash), so a reader sees an entry whole or as empty; a grown table is
	// filled before it is published, and the table it replaces is never
	// written again. Entries are only ever added or marked ambiguous, never
	// moved or removed, so a reader meeting a writer answers as if just
	// before or just after the write. table is nil until the shard's first
	// insert.
	table atomic.Pointer[[]directoryEntry]
	mu    struct {
		sync.Mutex
		count int
	}
	// Pad to 128 bytes, a pair of cache lines (the unit the CPU prefetches
	// together), so that a writer's lock does not share its neighbours'
	// lines.
	_ [128 - unsafe.Sizeof(directoryShardFields{})]byte
}

// directoryShardFields is directoryShard without its padding, to size it.
type directoryShardFields struct {
	table atomic.Pointer[[]directoryEntry]
	mu    struct {
		sync.Mutex
		count int
	}
}

// directoryEntry is an id's first hash and a word holding the SKU's
// reference (its valid bit, partition and slot: skuRef) with 19 bits of the
// id's second hash in bits 44 to 62, which skuRef leaves free. A word of 0
// is an empty entry.
type directoryEntry struct {
	hash uint64
	word uint64
}

const (
	directoryCheckShift = 44
	directoryCheckMask  = (1<<19 - 1) << directoryCheckShift
)

// A reference leaves the check's bits free: partitions fit in 12 bits.
var _ [1<<(directoryCheckShift-32) - partitionsMax]struct{}

func newDirectory() *directory {
	return &directory{seed: maphash.MakeSeed(), checkSeed: maphash.MakeSeed()}
}

// hashes returns the id's first hash and its check bits, placed as in an
// entry's word.
func (d *directory) hashes(id string) (uint64, uint64) {
	return maphash.String(d.seed, id), maphash.String(d.checkSeed, id) & directoryCheckMask
}

// home is the first entry to look at for hash in a table of n entries:
// the top 32 bits of the hash scaled to n (the low bits pick the shard).
func home(hash uint64, n int) int {
	return int(hash >> 32 * uint64(n) >> 32)
}

// findEntry returns the index of the entry of (hash, check), or of the
// empty entry where it would go, and whether it is there. It loads the
// entries atomically (plain loads on amd64), since writers may store into
// the table meanwhile.
func findEntry(entries []directoryEntry, hash, check uint64) (int, bool) {
	n := len(entries)
	for i := home(hash, n); ; {
		e := &entries[i]
		word := atomic.LoadUint64(&e.word)
		if word == 0 {
			return i, false
		}
		if word&directoryCheckMask == check && atomic.LoadUint64(&e.hash) == hash {
			return i, true
		}
		if i++; i == n {
			i = 0
		}
	}
}

// storeEntry writes entry i of a published table: the hash first, so that
// a reader that sees the word sees its hash.
func storeEntry(entries []directoryEntry, i int, hash, word uint64) {
	atomic.StoreUint64(&entries[i].hash, hash)
	atomic.StoreUint64(&entries[i].word, word)
}

// skuRefAmbiguous is the reference of an id that SKUs of two partitions
// hold. That happens only in cluster mode: the owners of two partitions
// each accepted the id for their own merchant before their followers had
// applied the other's record (the directory claim in upsertSKU is only
// this node's). The id then names neither SKU: requests naming it are
// refused with CodeConflict, and both SKUs stay in their partitions as
// their records made them. The value is not valid, so that lookup answers
// false for it without a test of its own, and not 0, so that an entry
// holding it is not empty.
const skuRefAmbiguous skuRef = 1

// lookup returns the reference of a SKU id, and false if the id is unknown
// or ambiguous (the reference is then 0 or skuRefAmbiguous).
func (d *directory) lookup(id string) (skuRef, bool) {
	hash, check := d.hashes(id)
	r := d.lookupHashed(hash, check)
	return r, r.valid()
}

// lookupHashed is lookup of the id of the hashes: the reference, 0 or
// skuRefAmbiguous.
func (d *directory) lookupHashed(hash, check uint64) skuRef {
	var r skuRef
	if t := d.shards[hash%directoryShards].table.Load(); t != nil {
		entries := *t
		if i, ok := findEntry(entries, hash, check); ok {
			r = skuRef(atomic.LoadUint64(&entries[i].word) &^ directoryCheckMask)
		}
	}
	return r
}

// lookAheadGroup is the requests whose order lines Submit looks up
// together, and lookAheadLines the most lines it looks up at once.
const (
	lookAheadGroup = 16
	lookAheadLines = 64
)

// lookAhead holds the directory's answers for the lines of a group of
// requests, looked up together before the requests are routed.
type lookAhead struct {
	refs [lookAheadLines]skuRef
	// first is the index in refs of request k's first line, or -1 when
	// its lines were not looked up (it is no order, or they did not fit).
	first [lookAheadGroup]int16
}

// lines returns the answers for the n lines of request k of the group, or
// nil when they were not looked up.
func (la *lookAhead) lines(k, n int) []skuRef {
	if la.first[k] < 0 {
		return nil
	}
	return la.refs[la.first[k]:][:n]
}

// lookAhead looks up the SKU ids of the orders among reqs (at most
// lookAheadGroup requests) into la. A line's entry is usually a cache
// miss: looked up one order at a time, inside routeGated, the misses
// followed one another, while these lookups, once hashed, are a short loop
// with no dependency from one to the next, so that the processor has the
// group's misses in flight together (in fest bench the directory's share
// fell from 102 to 65 ns an order). It only reads the directory: an id
// added meanwhile is answered as if the order had come just before it.
func (d *directory) lookAhead(reqs []Request, la *lookAhead) {
	var hashes, checks [lookAheadLines]uint64
	n := 0
	for k := range reqs {
		la.first[k] = -1
		cmd := &reqs[k].Command
		if cmd.Kind != KindPlaceOrder {
			continue
		}
		items := cmd.Order.Items
		if len(items) == 0 || n+len(items) > lookAheadLines {
			continue
		}
		first := n
		for i := range items {
			if len(items[i].SKUID) > idLengthMax {
				// Refused before its lookup: not worth the hashing.
				n = first
				break
			}
			hashes[n], checks[n] = d.hashes(items[i].SKUID)
			n++
		}
		if n > first {
			la.first[k] = int16(first)
		}
	}
	for j := range n {
		la.refs[j] = d.lookupHashed(hashes[j], checks[j])
	}
}

// insert adds id → ref unless id is present; it returns the reference now
// held and whether it was inserted. It is the claim of a SKU id decided
// here (upsertSKU).
func (d *directory) insert(id string, ref skuRef) (skuRef, bool) {
	if held := d.put(id, ref, false); held != 0 {
		return held, false
	}
	return ref, true
}

// share adds id → ref as a SKU created by a record (replayed, followed or
// loaded from a snapshot) rather than by a decision here, and returns the
// reference held before (0 if none). A record may create an id that
// another partition's SKU holds, since two owners decide apart: the entry
// then becomes skuRefAmbiguous. An entry only ever goes from empty to a
// reference to ambiguous, whichever partition's record comes first, so
// every node and every replay ends with the same directory. An id held by
// another slot of ref's own partition is left as it is: the caller panics.
func (d *directory) share(id string, ref skuRef) skuRef { return d.put(id, ref, true) }

// put adds id → ref if id is absent and returns the reference held before
// (0 if none); with shared, an id held by another partition becomes
// ambiguous.
func (d *directory) put(id string, ref skuRef, shared bool) skuRef {
	if !ref.valid() || uint64(ref)&directoryCheckMask != 0 {
		panic(fmt.Sprintf("engine: directory insert of reference %x", uint64(ref)))
	}
	hash, check := d.hashes(id)
	s := &d.shards[hash%directoryShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	if t == nil {
		entries := make([]directoryEntry, directoryEntries0)
		t = &entries
		s.table.Store(t)
	}
	entries := *t
	i, found := findEntry(entries, hash, check)
	if found {
		held := skuRef(entries[i].word &^ directoryCheckMask)
		if shared && held.valid() && held.partition() != ref.partition() {
			atomic.StoreUint64(&entries[i].word, uint64(skuRefAmbiguous)|check)
			d.ambiguous.Add(1)
		}
		return held
	}
	if 8*(s.mu.count+1) > directoryLoadMax*len(entries) {
		entries = s.grow(entries)
		i, _ = findEntry(entries, hash, check)
	}
	storeEntry(entries, i, hash, uint64(ref)|check)
	s.mu.count++
	return 0
}

// grow copies the shard's entries into a table a quarter larger, publishes
// it and returns it. REQUIRES: s.mu held.
func (s *directoryShard) grow(old []directoryEntry) []directoryEntry {
	n := len(old) + max(1, len(old)*directoryGrowth/4)
	entries := make([]directoryEntry, n)
	for _, e := range old {
		if e.word != 0 {
			// Not yet published: plain writes.
			i, _ := findEntry(entries, e.hash, e.word&directoryCheckMask)
			entries[i] = e
		}
	}
	s.table.Store(&entries)
	return entries
}

// entries returns the shard's published table, nil before its first
// insert.
func (s *directoryShard) entries() []directoryEntry {
	if t := s.table.Load(); t != nil {
		return *t
	}
	return nil
}

// count returns the number of SKU ids (an ambiguous id counts once).
func (d *directory) count() int {
	n := 0
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		n += s.mu.count
		s.mu.Unlock()
	}
	return n
}

// bytes returns the memory of the directory's tables.
func (d *directory) bytes() int {
	n := 0
	for i := range d.shards {
		n += len(d.shards[i].entries()) * int(unsafe.Sizeof(directoryEntry{}))
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
	return k.reserveKey(keyHash, 0, partition, disk)
}

// reserveKey is reserve for a key that claims the minting time minted
// (unix ms, idempotency.KeyTime; 0 for none). A time-ordered key that left
// memory is in the time-ordered runs, which disk.Lookup does not read, so
// a key minted below the horizon is looked up there too: otherwise a use
// of it on another merchant's order would reserve it for that merchant,
// and the genuine retry would be answered idempotency_mismatch until the
// reservation aged out. A key minted at or above the horizon (every new
// key while the horizon is not ahead of the clock) costs one atomic load
// more and never reads the disk.
func (k *keyIndex) reserveKey(keyHash uint64, minted int64, partition int, disk *idempotency.Store) (owner int, missGeneration uint64, err error) {
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
		if minted > 0 {
			// The horizon is raised before a run's keys leave memory, and
			// the run is published before the generation read above can
			// miss them in the index.
			e, ok, err := disk.LookupOrdered(keyHash, minted)
			if err != nil {
				return 0, 0, fmt.Errorf("look up time-ordered idempotency key: %w", err)
			}
			if ok {
				return int(e.Partition), 0, nil
			}
		}
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
