package orders

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fest-platform/fest/internal/engine"
)

// Eviction moves the oldest arena chunk's orders to the cold tier, a chunk
// (1 MiB, about ten thousand orders) at a time, in journal order, so that
// every partition's cold orders are a prefix of its sequence (its base) and
// every cold order is older than every order in memory. The growing last
// chunk is never evicted.
//
// It takes three steps, so that the follower is held up only briefly:
// under the read lock the chunk's keys are built into a batch; without the
// lock the batch is applied to Pebble; under the write lock the status
// changes the follower made meanwhile are written too, and the chunk's
// orders leave memory, with each buyer whose newest order they held.

// evictLoop runs on the evictor goroutine until Close.
func (s *Store) evictLoop() {
	for {
		select {
		case <-s.evictStop:
			return
		case <-s.evictWake:
			s.evictUnderBudget()
		}
	}
}

// evictUnderBudget evicts chunks until the in-memory tier is within its
// budget or only the growing chunk is left. A cold tier that fails is
// logged, and tried again at the next wake: the orders stay in memory
// meanwhile, over budget but whole.
func (s *Store) evictUnderBudget() {
	// A failing disk is not retried on every record: the follower evicts
	// on its own past a quarter over budget, and each attempt builds a
	// whole chunk's batch.
	if at := s.evictFailedAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < evictRetryDelay {
		return
	}
	for s.hotBytes() > s.hotBudget {
		evicted, err := s.evictOldest()
		if err != nil {
			s.evictFailedAt.Store(time.Now().UnixNano())
			s.cfg.Logger.Error("order store: moving orders to the cold tier failed; they stay in memory, over budget, and the move is tried again in a second", "err", err)
			return
		}
		s.evictFailedAt.Store(0)
		if !evicted {
			return
		}
	}
}

// evictRetryDelay is how long eviction waits after a failed one.
const evictRetryDelay = time.Second

// evicting is what step one captured of each order of the chunk.
type evicting struct {
	partition int
	status    engine.OrderStatus
}

// evictOldest moves the oldest resident chunk's orders to the cold tier,
// reporting false when there is none to move.
func (s *Store) evictOldest() (bool, error) {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()

	// Step one: the keys, under the read lock.
	s.mu.RLock()
	if s.mu.closed || s.mu.firstResident >= len(s.mu.arena)-1 {
		s.mu.RUnlock()
		return false, nil
	}
	c := s.mu.firstResident
	data := s.mu.arena[c]
	batch := s.cold.db.NewBatchWithSize(len(data) * 2)
	defer batch.Close()
	var taken [partitionsMax]int
	var captured []evicting
	var key, val []byte
	for off := 0; off < len(data); {
		n, k := binary.Uvarint(data[off:])
		body := data[off+k : off+k+int(n)]
		p, _ := binary.Uvarint(body)
		t := s.mu.partitions[p]
		if t == nil || taken[p] >= t.memory() {
			panic(fmt.Sprintf("orders: arena chunk %d offset %d: partition %d has no entry for it", c, off, p))
		}
		ref := t.oldest(taken[p])
		if ref.offset != uint64(c)<<32|uint64(off)+1 {
			panic(fmt.Sprintf("orders: arena chunk %d offset %d: partition %d's oldest entry points at %d", c, off, p, ref.offset-1))
		}
		id := orderIDOf(int(p), t.base+uint64(taken[p])+1)
		taken[p]++
		key = orderKey(key[:0], keyOrder, id)
		val = appendColdOrder(val[:0], body, ref.status, ref.changedAt)
		if err := batch.Set(key, val, nil); err != nil {
			s.mu.RUnlock()
			return false, fmt.Errorf("%w: evict order %v: %w", ErrColdTier, id, err)
		}
		buyerID, createdAt := recordBuyerAndTime(body)
		key = historyKey(key[:0], buyerID, createdAt, id)
		if err := batch.Set(key, nil, nil); err != nil {
			s.mu.RUnlock()
			return false, fmt.Errorf("%w: evict order %v: %w", ErrColdTier, id, err)
		}
		captured = append(captured, evicting{partition: int(p), status: ref.status})
		off += k + int(n)
	}
	s.mu.RUnlock()

	// Step two: to Pebble, without the lock. NoSync: durability comes from
	// the Flush before a projection snapshot counts these orders as cold.
	if err := s.cold.db.Apply(batch, pebble.NoSync); err != nil {
		return false, fmt.Errorf("%w: evict arena chunk %d: %w", ErrColdTier, c, err)
	}

	// Step three: under the write lock, the statuses that changed since
	// step one, then the chunk leaves memory.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return false, nil
	}
	late := s.cold.db.NewBatch()
	defer late.Close()
	var seen [partitionsMax]int
	for _, e := range captured {
		t := s.mu.partitions[e.partition]
		ref := t.oldest(seen[e.partition])
		id := orderIDOf(e.partition, t.base+uint64(seen[e.partition])+1)
		seen[e.partition]++
		if ref.status != e.status {
			val = append(val[:0], byte(ref.status))
			val = binary.AppendVarint(val, ref.changedAt)
			if err := late.Set(orderKey(key[:0], keyStatus, id), val, nil); err != nil {
				return false, fmt.Errorf("%w: evict order %v: %w", ErrColdTier, id, err)
			}
		}
	}
	if !late.Empty() {
		if err := s.cold.db.Apply(late, pebble.NoSync); err != nil {
			return false, fmt.Errorf("%w: evict arena chunk %d: %w", ErrColdTier, c, err)
		}
	}
	// Nothing can fail from here on.
	var bodies uint64 // what ArenaBytes counts: the records, not their length prefixes
	for off, i := 0, 0; off < len(data); i++ {
		n, k := binary.Uvarint(data[off:])
		bodies += n
		body := data[off+k : off+k+int(n)]
		e := captured[i]
		t := s.mu.partitions[e.partition]
		id := orderIDOf(e.partition, t.base+1)
		buyerID, _ := recordBuyerAndTime(body)
		s.dropBuyerIfNewestLocked(buyerID, id)
		t.dropOldest()
		off += k + int(n)
	}
	s.mu.arena[c] = nil
	// Nothing refers to the chunk now: readers and snapshots hold the lock
	// while they read the arena, and what they keep is copied.
	freeChunk(data)
	s.mu.firstResident = c + 1
	s.residentChunks.Add(-1)
	s.memoryOrders.Add(-int64(len(captured)))
	s.coldOrders.Add(uint64(len(captured)))
	s.arenaBytes.Add(-bodies)
	s.evictions.Add(1)
	return true, nil
}

// recordBuyerAndTime returns the buyer id (aliasing body) and creation time
// of an arena record body that validRecord accepted or encodeOrder wrote.
func recordBuyerAndTime(body []byte) (string, int64) {
	d := decoder{b: body}
	d.uvarint() // partition
	n, k := binary.Uvarint(d.b)
	buyerID := unsafe.String(unsafe.SliceData(d.b[k:]), int(n))
	d.b = d.b[k+int(n):]
	for range 4 { // merchant, channel, region, deal
		d.skip()
	}
	d.varint() // total
	createdAt := d.varint()
	if d.err != nil {
		panic("orders: an arena record does not decode")
	}
	return buyerID, createdAt
}
