// Package orders is the order-query projection: it follows the engine's
// committed events and answers GET /v1/orders/{id} and a buyer's history.
//
// It is "the journal plus an index", held in memory: each placed order's
// immutable part is encoded once (about 60 to 100 bytes) into large arena
// chunks, a dense per-partition table indexed by the order's sequence
// points at it and holds its status, and a per-buyer list of ids serves
// the history newest first. Applying an order costs one copy and a few
// appends (tens of nanoseconds), where a key-value store cost about 6 µs of
// the same two cores. It is a projection.Projection: the runner shared with
// the other read models feeds it and snapshots it, so that a restart
// resumes where the snapshot left off, and the runner's Watermark says how
// far its reads reach.
package orders

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fest-platform/fest/internal/engine"
)

// Sentinel errors.
var (
	ErrNotFound      = errors.New("order not found")
	ErrClosed        = errors.New("order store closed")
	ErrBadCursor     = errors.New("invalid cursor")
	ErrCorruptRecord = errors.New("corrupt order record")
)

const (
	// listLimitMax is the largest page of a buyer's orders.
	listLimitMax = 1000
	// arenaChunkBytes is the size of one arena chunk: large enough that
	// chunks are few, small enough that the last one wastes little.
	arenaChunkBytes = 1 << 20
	// partitionsMax and orderSeqBits match the engine's order id layout
	// (engine/id.go): a store snapshot holds each order's partition and
	// rebuilds its id from the partition and its place in the journal.
	partitionsMax = 4096
	orderSeqBits  = 52
	// orderItemsMax bounds the lines of a stored order, far above what the
	// API accepts, so a corrupt count cannot allocate much.
	orderItemsMax = 1000
)

// Config configures a Store.
type Config struct {
	// Dir holds the cold tier, the orders that left memory, in Pebble
	// (created if missing). Empty: no cold tier, and every order stays in
	// memory (tests, and fest serve without a data directory).
	Dir string
	// MemoryBytes is the budget of the store's resident memory, in bytes
	// (default 2 GiB): the orders in memory, their tables, the buyers with
	// an order in memory, and Pebble's memtables and block cache. Past it
	// the oldest orders move to the cold tier, a 1 MiB arena chunk at a
	// time. Only with Dir; at least 16 MiB.
	MemoryBytes int64
	// Logger receives the cold tier's errors (default slog.Default()).
	Logger *slog.Logger
}

// DefaultMemoryBytes is Config.MemoryBytes's default.
const DefaultMemoryBytes = 2 << 30

// memoryBytesMin is the smallest budget: Pebble's memtables and cache, and a
// few arena chunks.
const memoryBytesMin = 16 << 20

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.MemoryBytes < 0 || (c.MemoryBytes != 0 && c.MemoryBytes < memoryBytesMin) {
		return fmt.Errorf("order store config: MemoryBytes %d: below the minimum of %d", c.MemoryBytes, memoryBytesMin)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// pebbleSizes splits a memory budget: each of the two memtables and the
// block cache get a thirty-second of it, within bounds, and the rest is the
// in-memory tier's.
func pebbleSizes(budget int64) (memtable, cache int64) {
	memtable = min(max(budget/32, 1<<20), 64<<20)
	cache = min(max(budget/32, 1<<20), 128<<20)
	return memtable, cache
}

// Order is an order as the store holds it.
type Order struct {
	ID         engine.OrderID
	BuyerID    string
	MerchantID string
	Channel    string
	Region     string
	DealID     string
	Items      []engine.Item // merged lines with UnitPrice and Amount
	Total      int64         // fen
	CreatedAt  int64         // unix ns
	PayBy      int64         // unix ns
	Status     engine.OrderStatus
	ChangedAt  int64 // unix ns of the last status change (paid, cancelled, expired)
}

// Stats are the store's counters.
type Stats struct {
	Events        uint64 // events applied
	Orders        uint64 // orders held
	Commits       uint64 // records applied
	CommitNanos   uint64 // time spent applying
	NanosPerEvent float64
	ArenaBytes    uint64 // encoded orders held in memory

	MemoryOrders  uint64 // orders in memory (the rest are in the cold tier)
	ColdOrders    uint64 // orders in the cold tier
	ResidentBytes uint64 // the estimate the budget is held to
	MemoryBytes   uint64 // the budget (0: unbounded, no cold tier)
	Evictions     uint64 // arena chunks moved to the cold tier
	ColdReads     uint64 // orders read from the cold tier
}

// orderRef is an order's entry in its partition's table. Orders of one
// buyer form a chain, newest to oldest, through prevByBuyer: the buyer
// index needs no per-buyer slices, and nothing the garbage collector must
// scan. The chain ends at the buyer's oldest order in memory; the older
// ones are in the cold tier's history keys.
type orderRef struct {
	offset      uint64 // in the arena, +1 (0: no order)
	changedAt   int64
	prevByBuyer engine.OrderID // the buyer's previous order, 0 for the first
	status      engine.OrderStatus
}

// Buyers with an order in memory are found in a buyerTable, which holds
// each one's newest order. Buyers are not snapshotted: a load rebuilds them
// from the orders, so a snapshot need not rewrite the entries new orders
// touch. A buyer whose newest order leaves memory leaves with it.

// bytesPerBuyer estimates a buyer's memory: its 24-byte slot in a table
// that is at least three eighths full (just after it doubled).
const bytesPerBuyer = 64

// bytesPerRef estimates an order's table entry, with the slack of a
// growing slice.
const bytesPerRef = 40

// Store is the order projection.
type Store struct {
	cfg Config

	mu struct {
		sync.RWMutex
		partitions [partitionsMax]*partitionTable
		arena      [][]byte
		// buyers are found by a 64-bit hash of their id (a table the
		// collector need not scan); the rare id whose hash another id
		// already holds goes to buyerCollisions, with its newest order.
		buyers          buyerTable
		buyerCollisions map[string]engine.OrderID
		// statusDirty has a bit per arena chunk, set when an order
		// encoded in that chunk changes status: the next snapshot rewrites
		// that chunk's statuses, and only those.
		statusDirty []uint64
		// firstResident is the oldest arena chunk in memory; the chunks
		// before it are nil, their orders in the cold tier.
		firstResident int
		closed        bool
	}
	// cold is the disk tier (nil without Config.Dir).
	cold *cold
	// evictMu serializes evictions with snapshots, which must see the
	// tiers at one point (and flush the cold tier before the manifest).
	evictMu sync.Mutex
	// evictWake asks the evictor goroutine to bring memory under budget.
	evictWake chan struct{}
	evictStop chan struct{}
	evictWG   sync.WaitGroup
	hotBudget int64 // bytes the in-memory tier may take (MemoryBytes less Pebble's)
	coldFixed int64 // Pebble's memtables and cache
	// resident counts what the budget estimate is made of.
	residentChunks atomic.Int64
	memoryOrders   atomic.Int64
	liveBuyers     atomic.Int64
	coldOrders     atomic.Uint64
	evictions      atomic.Uint64
	evictFailedAt  atomic.Int64 // unix ns of the last failed eviction, 0 after a success
	coldReads      atomic.Uint64
	applied        atomic.Uint64 // position of the last fully applied record
	events         atomic.Uint64
	orders         atomic.Uint64
	records        atomic.Uint64
	applyNanos     atomic.Uint64
	arenaBytes     atomic.Uint64

	seed      maphash.Seed
	checkSeed maphash.Seed
	locked    bool // follower-owned: s.mu is held for the current record
	// counted is what the current record adds to the events, orders and
	// arenaBytes counters (follower-owned), added to them once when its
	// lock is released: an atomic add is a locked instruction, which waits
	// for the stores before it to drain, and an order's stores (its buyer's
	// slot, its arena bytes) are cache misses that three adds per order
	// waited for in turn. The counters are read outside the lock, but
	// none of the record is visible before its end anyway.
	counted struct{ events, orders, arenaBytes uint64 }
	// placed are the current record's placements whose buyers are yet to
	// be linked (follower-owned; see linkBuyersLocked), and placedIDs
	// their buyer ids, which the events' strings alias only while they are
	// applied.
	placed    []placedOrder
	placedIDs []byte
	// changed are the current record's status changes of orders not in
	// the cold tier, made at its end (follower-owned; see
	// changeStatusesLocked).
	changed []statusChange

	recordStart time.Time // follower-owned: when the current record began
	scratch     []byte    // follower-owned: encoding buffer

	// snap is what the last durable snapshot stored (follower-owned).
	snap snapshotState
}

// Open creates an empty store, with its cold tier if cfg.Dir is set;
// register it with a projection.Runner, and Close it after the runner.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := newStore(cfg, maphash.MakeSeed(), maphash.MakeSeed())
	if cfg.Dir == "" {
		return s, nil
	}
	memtable, cache := pebbleSizes(cfg.MemoryBytes)
	c, err := openCold(cfg.Dir, cache, memtable, cfg.Logger)
	if err != nil {
		return nil, err
	}
	s.cold = c
	s.coldFixed = 2*memtable + cache
	s.hotBudget = cfg.MemoryBytes - s.coldFixed
	s.evictWake = make(chan struct{}, 1)
	s.evictStop = make(chan struct{})
	s.evictWG.Add(1)
	go func() {
		defer s.evictWG.Done()
		s.evictLoop()
	}()
	return s, nil
}

// newStore returns an empty store hashing buyer ids under seed and
// checkSeed; a staging store shares its store's seeds, so that what it
// loads can be moved over as it is.
func newStore(cfg Config, seed, checkSeed maphash.Seed) *Store {
	s := &Store{cfg: cfg, seed: seed, checkSeed: checkSeed}
	s.mu.buyers = newBuyerTable(0)
	s.mu.buyerCollisions = make(map[string]engine.OrderID)
	return s
}

// Name implements projection.Projection.
func (s *Store) Name() string { return "orders" }

// Apply implements projection.Projection.
func (s *Store) Apply(ev *engine.Event) error { return s.add(ev) }

// Commit implements projection.Projection: the record is readable. Past
// the memory budget it wakes the evictor, and far past it (the evictor
// cannot keep up) evicts on the follower itself, which holds the follower
// back rather than let memory grow without bound.
func (s *Store) Commit(pos uint64, at int64) {
	s.applied.Store(pos)
	if s.locked {
		s.unlockRecord()
		s.records.Add(1)
		s.applyNanos.Add(uint64(time.Since(s.recordStart)))
	}
	if s.cold == nil {
		return
	}
	if over := s.hotBytes() - s.hotBudget; over > 0 {
		select {
		case s.evictWake <- struct{}{}:
		default:
		}
		if over > s.hotBudget/4 {
			s.evictUnderBudget()
		}
	}
}

// Abort implements projection.Projection: it releases what a record
// stopped half way left held.
func (s *Store) Abort() {
	if s.locked {
		s.unlockRecord()
	}
}

// add applies one event. Its strings alias the engine's buffer, so what is
// kept is copied here. The write lock is taken at a record's first event and
// released at its Commit, so readers never see half a record and the lock
// is paid once per record rather than once per order.
func (s *Store) add(ev *engine.Event) error {
	if !s.locked {
		s.recordStart = time.Now()
		s.mu.Lock()
		s.locked = true
		if s.mu.closed {
			s.unlockRecord()
			return ErrClosed
		}
	}
	switch ev.Kind {
	case engine.EventOrderPlaced:
		if err := s.placeLocked(ev); err != nil {
			s.unlockRecord()
			return err
		}
	case engine.EventOrderPaid, engine.EventOrderCancelled, engine.EventOrderExpired:
		if s.isColdLocked(ev.OrderID) {
			if err := s.cold.putStatus(ev.OrderID, statusOf(ev.Kind), ev.At); err != nil {
				s.unlockRecord()
				return err
			}
		} else if s.heldLocked(ev.OrderID) {
			// An order in memory: the change is made at the record's end
			// (changeStatusesLocked). Whether the store holds it is told
			// now, from the partition's bounds alone (no cache miss), so
			// that a change coming before its order's placement in the
			// same record is ignored, as it always was.
			s.changed = append(s.changed, statusChange{id: ev.OrderID, at: ev.At, status: statusOf(ev.Kind)})
		}
	}
	s.counted.events++
	if ev.Last && s.cold != nil {
		// Before the record is committed: a read after it sees the
		// status changes of its cold orders too.
		if err := s.cold.commitStatuses(); err != nil {
			s.unlockRecord()
			return err
		}
	}
	return nil
}

// isColdLocked reports whether id names an order in the cold tier.
// REQUIRES: s.mu held.
func (s *Store) isColdLocked(id engine.OrderID) bool {
	t := s.mu.partitions[id.Partition()]
	return s.cold != nil && t != nil && id.Seq() != 0 && id.Seq() <= t.base
}

// unlockRecord adds the record's counts to the counters and releases the
// lock taken for it.
func (s *Store) unlockRecord() {
	s.linkBuyersLocked()
	s.changeStatusesLocked()
	if c := &s.counted; c.events|c.orders|c.arenaBytes != 0 {
		s.events.Add(c.events)
		s.orders.Add(c.orders)
		s.memoryOrders.Add(int64(c.orders))
		s.arenaBytes.Add(c.arenaBytes)
		*c = struct{ events, orders, arenaBytes uint64 }{}
	}
	s.locked = false
	s.mu.Unlock()
}

// statusChange is a status change of the current record, made at its end.
type statusChange struct {
	id     engine.OrderID
	at     int64
	status engine.OrderStatus
}

// changeStatusesLocked makes the current record's status changes of orders
// in memory, in journal order (add queued only changes of orders the
// store held when their event came). REQUIRES: s.mu held for writing since
// the record's first event.
//
// An order's entry is a cache miss (it was placed seconds ago, among
// millions); made as its event came, between the other read models' work
// on it, each miss was waited for alone, and in this loop several are in
// flight, as in linkBuyersLocked. Readers wait for the record's end.
func (s *Store) changeStatusesLocked() {
	for _, c := range s.changed {
		if ref := s.refLocked(c.id); ref != nil && ref.offset != 0 {
			ref.status = c.status
			ref.changedAt = c.at
			chunk := (ref.offset - 1) >> 32
			s.mu.statusDirty[chunk>>6] |= 1 << (chunk & 63)
		}
	}
	s.changed = s.changed[:0]
}

// placedOrder is a placement of the current record whose buyer is linked at
// the record's end: its buyer id's two hashes, and the id itself at
// [idFrom, idTo) of Store.placedIDs for the rare hash that another id holds.
type placedOrder struct {
	hash, check  uint64
	order        engine.OrderID
	idFrom, idTo uint32
}

// placeLocked stores a placed order. REQUIRES: s.mu held for writing, for
// a record (the order is linked to its buyer at the record's end).
func (s *Store) placeLocked(ev *engine.Event) error {
	p, seq := ev.OrderID.Partition(), ev.OrderID.Seq()
	t := s.mu.partitions[p]
	if t == nil {
		t = &partitionTable{}
		s.mu.partitions[p] = t
	}
	if seq != t.end+1 {
		// The engine numbers orders densely per partition and the journal
		// holds them in order: anything else is a bug upstream.
		return fmt.Errorf("order store: partition %d order %d follows %d", p, seq, t.end)
	}
	s.scratch = encodeOrder(s.scratch[:0], p, ev)
	off := s.appendArenaLocked(s.scratch)
	from := len(s.placedIDs)
	s.placedIDs = append(s.placedIDs, ev.BuyerID...)
	s.placed = append(s.placed, placedOrder{
		hash: maphash.String(s.seed, ev.BuyerID), check: maphash.String(s.checkSeed, ev.BuyerID),
		order: ev.OrderID, idFrom: uint32(from), idTo: uint32(len(s.placedIDs)),
	})
	t.push(orderRef{offset: off + 1, status: engine.StatusPending})
	s.counted.orders++ // and memoryOrders, at the record's end
	return nil
}

// linkBuyersLocked links the current record's placements to their buyers,
// in journal order: each becomes its buyer's newest, and its entry points
// at the buyer's newest before it. REQUIRES: s.mu held for writing since
// the record's first event.
//
// A buyer's slot is a cache miss (the table is megabytes, the buyers
// random). Taken order by order, between the order's encoding and the other
// read models' work on the same event, each miss was waited for alone; in
// this loop, which does little else, the processor has several in flight.
// Nothing reads a buyer's chain before the record's end, since readers
// wait for the lock.
func (s *Store) linkBuyersLocked() {
	for i := range s.placed {
		o := &s.placed[i]
		id := unsafe.String(unsafe.SliceData(s.placedIDs[o.idFrom:]), int(o.idTo-o.idFrom))
		if prev := s.swapNewestHashedLocked(id, o.hash, o.check, o.order); prev != 0 {
			s.mu.partitions[o.order.Partition()].at(o.order.Seq()).prevByBuyer = prev
		}
	}
	s.placed, s.placedIDs = s.placed[:0], s.placedIDs[:0]
}

// swapNewestLocked makes order the newest of buyer id and returns the
// buyer's newest before it (0 for a buyer with no order in memory).
// REQUIRES: s.mu held for writing.
//
// A buyer is recognised by two 64-bit hashes of its id under independent
// seeds rather than by reading its id back from the arena: that read was a
// cache miss per order, a quarter of the store's time. Two ids that agree
// on both hashes (odds about 2^-128) would share a history.
func (s *Store) swapNewestLocked(id string, order engine.OrderID) (prev engine.OrderID) {
	return s.swapNewestHashedLocked(id, maphash.String(s.seed, id), maphash.String(s.checkSeed, id), order)
}

// swapNewestHashedLocked is swapNewestLocked given id's hashes under the
// store's seed (h) and its check seed. id may alias memory that changes
// after the call: what is kept of it is copied.
func (s *Store) swapNewestHashedLocked(id string, h, check uint64, order engine.OrderID) (prev engine.OrderID) {
	if b := s.mu.buyers.find(h); b != nil {
		if b.check == check {
			prev, b.newest = b.newest, order
			return prev
		}
		prev, ok := s.mu.buyerCollisions[id]
		if !ok {
			s.liveBuyers.Add(1)
		}
		// Cloned for a buyer already there too: assigning to a string key
		// stores the key given, and id may alias memory that changes.
		s.mu.buyerCollisions[strings.Clone(id)] = order
		return prev
	}
	s.liveBuyers.Add(1)
	s.mu.buyers.put(h, check, order)
	return 0
}

// newestLocked returns buyer id's newest order in memory, and whether it
// has one. REQUIRES: s.mu held.
func (s *Store) newestLocked(id string) (engine.OrderID, bool) {
	h := maphash.String(s.seed, id)
	b := s.mu.buyers.find(h)
	if b == nil {
		return 0, false
	}
	if b.check == maphash.String(s.checkSeed, id) {
		return b.newest, true
	}
	newest, ok := s.mu.buyerCollisions[id]
	return newest, ok
}

// dropBuyerIfNewestLocked forgets buyer id if order, leaving memory, is its
// newest: its other orders in memory are older and have left before it.
// REQUIRES: s.mu held for writing.
func (s *Store) dropBuyerIfNewestLocked(id string, order engine.OrderID) {
	h := maphash.String(s.seed, id)
	b := s.mu.buyers.find(h)
	switch {
	case b == nil:
		panic(fmt.Sprintf("orders: buyer %q of order %v is in no index", id, order))
	case b.check == maphash.String(s.checkSeed, id):
		if b.newest == order {
			s.mu.buyers.remove(b)
			s.liveBuyers.Add(-1)
		}
	default:
		newest, ok := s.mu.buyerCollisions[id]
		if !ok {
			panic(fmt.Sprintf("orders: buyer %q of order %v is in no index", id, order))
		}
		if newest == order {
			delete(s.mu.buyerCollisions, id)
			s.liveBuyers.Add(-1)
		}
	}
}

// appendArenaLocked copies body into the arena (length-prefixed) and
// returns its offset. REQUIRES: s.mu held for writing, for a record (its
// bytes are counted at the record's end).
func (s *Store) appendArenaLocked(body []byte) uint64 {
	need := binary.MaxVarintLen64 + len(body)
	n := len(s.mu.arena)
	if n == 0 || cap(s.mu.arena[n-1])-len(s.mu.arena[n-1]) < need {
		size := arenaChunkBytes
		if need > size {
			size = need
		}
		s.mu.arena = append(s.mu.arena, allocChunk(size))
		s.residentChunks.Add(1)
		n++
		if words := (n + 63) / 64; len(s.mu.statusDirty) < words {
			s.mu.statusDirty = append(s.mu.statusDirty, 0)
		}
	}
	chunk := s.mu.arena[n-1]
	off := uint64(n-1)<<32 | uint64(len(chunk))
	chunk = binary.AppendUvarint(chunk, uint64(len(body)))
	chunk = append(chunk, body...)
	s.mu.arena[n-1] = chunk
	s.counted.arenaBytes += uint64(len(body))
	return off
}

// refLocked returns the entry of id, or nil. REQUIRES: s.mu held.
// heldLocked reports whether the store has placed id, from its partition
// table's bounds, without reading the order's entry.
func (s *Store) heldLocked(id engine.OrderID) bool {
	p, seq := id.Partition(), id.Seq()
	t := s.mu.partitions[p]
	return t != nil && seq > t.base && seq <= t.end
}

func (s *Store) refLocked(id engine.OrderID) *orderRef {
	p, seq := id.Partition(), id.Seq()
	t := s.mu.partitions[p]
	if t == nil || seq <= t.base || seq > t.end {
		return nil
	}
	return t.at(seq)
}

func statusOf(k engine.EventKind) engine.OrderStatus {
	switch k {
	case engine.EventOrderPaid:
		return engine.StatusPaid
	case engine.EventOrderCancelled:
		return engine.StatusCancelled
	case engine.EventOrderExpired:
		return engine.StatusExpired
	}
	return engine.StatusPending
}

// Get returns the order with id, from memory or the cold tier.
func (s *Store) Get(id engine.OrderID) (Order, error) {
	s.mu.RLock()
	o, err := s.getLocked(id)
	cold := errors.Is(err, ErrNotFound) && s.isColdLocked(id)
	s.mu.RUnlock()
	if !cold {
		return o, err
	}
	// The cold tier is read without the lock: an order in it never comes
	// back to memory, and its keys are written before it leaves memory.
	s.coldReads.Add(1)
	return s.cold.get(id)
}

// getLocked decodes an order in memory. REQUIRES: s.mu held.
func (s *Store) getLocked(id engine.OrderID) (Order, error) {
	ref := s.refLocked(id)
	if ref == nil || ref.offset == 0 {
		return Order{}, ErrNotFound
	}
	off := ref.offset - 1
	chunk := s.mu.arena[off>>32][uint32(off):]
	n, k := binary.Uvarint(chunk)
	if k <= 0 || n > uint64(len(chunk)-k) {
		return Order{}, fmt.Errorf("order %v: %w", id, ErrCorruptRecord)
	}
	o, err := decodeOrder(chunk[k : k+int(n)])
	if err != nil {
		return Order{}, fmt.Errorf("order %v: %w", id, err)
	}
	o.ID, o.Status, o.ChangedAt = id, ref.status, ref.changedAt
	return o, nil
}

// ListByBuyer returns up to limit orders of buyer, newest first, starting
// after cursor (empty for the first page), and the cursor of the next page
// ("" when there is none). A cursor is the id of the next older order, so
// it stays valid while new orders arrive.
//
// The orders in memory come first, newest to oldest along the buyer's
// chain; then the cold tier's, by creation time. Every cold order is older
// in the journal than every order in memory.
func (s *Store) ListByBuyer(buyerID string, limit int, cursor string) ([]Order, string, error) {
	if limit < 1 || limit > listLimitMax {
		return nil, "", fmt.Errorf("list limit %d: out of range", limit)
	}
	var start engine.OrderID
	if cursor != "" {
		id, err := engine.ParseOrderID(cursor)
		if err != nil {
			return nil, "", ErrBadCursor
		}
		o, err := s.Get(id)
		if err != nil || o.BuyerID != buyerID {
			return nil, "", ErrBadCursor
		}
		start = id
	}
	var out []Order
	s.mu.RLock()
	next := start
	if start == 0 {
		if newest, ok := s.newestLocked(buyerID); ok {
			next = newest
		}
	}
	for next != 0 && len(out) <= limit {
		o, err := s.getLocked(next)
		if errors.Is(err, ErrNotFound) {
			break // cold: the cold tier lists it
		}
		if err != nil {
			s.mu.RUnlock()
			return nil, "", fmt.Errorf("list buyer orders: %w", err)
		}
		out = append(out, o)
		next = s.refLocked(next).prevByBuyer
	}
	s.mu.RUnlock()
	if len(out) <= limit && s.cold != nil {
		// A cursor in the cold tier starts the scan at itself.
		var from *Order
		if start != 0 && len(out) == 0 {
			o, _ := s.Get(start)
			from = &o
		}
		more, err := s.coldHistory(buyerID, from, limit+1-len(out), out)
		if err != nil {
			return nil, "", fmt.Errorf("list buyer orders: %w", err)
		}
		out = append(out, more...)
	}
	if len(out) <= limit {
		return out, "", nil
	}
	return out[:limit], out[limit].ID.String(), nil
}

// coldHistory returns up to n of buyer's orders in the cold tier, newest
// first, from the order from (nil: the newest). Orders that a crash left in
// the cold tier but that the replay put back in memory are skipped: memory
// lists them. So are those already listed from memory (listed), which an
// eviction may have moved to the cold tier since.
func (s *Store) coldHistory(buyerID string, from *Order, n int, listed []Order) ([]Order, error) {
	prefix := historyPrefix(nil, buyerID)
	lower := prefix
	if from != nil {
		lower = historyKey(nil, buyerID, from.CreatedAt, from.ID)
	}
	it, err := s.cold.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("%w: history of %s: %w", ErrColdTier, buyerID, err)
	}
	defer it.Close()
	var out []Order
	for ok := it.First(); ok && len(out) < n; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefix)+16 {
			return nil, fmt.Errorf("%w: history key of %d bytes", ErrColdTier, len(k))
		}
		id := engine.OrderID(math.MaxUint64 - binary.BigEndian.Uint64(k[len(prefix)+8:]))
		s.mu.RLock()
		hot := !s.isColdLocked(id)
		s.mu.RUnlock()
		if hot || slices.ContainsFunc(listed, func(o Order) bool { return o.ID == id }) {
			continue
		}
		o, err := s.Get(id)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w: history of %s: %w", ErrColdTier, buyerID, err)
	}
	return out, nil
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Events:        s.events.Load(),
		Orders:        s.orders.Load(),
		Commits:       s.records.Load(),
		CommitNanos:   s.applyNanos.Load(),
		ArenaBytes:    s.arenaBytes.Load(),
		MemoryOrders:  uint64(s.memoryOrders.Load()),
		ColdOrders:    s.coldOrders.Load(),
		ResidentBytes: uint64(s.hotBytes() + s.coldFixed),
		Evictions:     s.evictions.Load(),
		ColdReads:     s.coldReads.Load(),
	}
	if s.cold != nil {
		st.MemoryBytes = uint64(s.cfg.MemoryBytes)
	}
	if st.Events > 0 {
		st.NanosPerEvent = float64(st.CommitNanos) / float64(st.Events)
	}
	return st
}

// freeArenaLocked unmaps every arena chunk and partition table block. REQUIRES: s.mu held for
// writing, and nothing referring to the chunks any more.
func (s *Store) freeArenaLocked() {
	for i, c := range s.mu.arena {
		freeChunk(c)
		s.mu.arena[i] = nil
	}
	s.mu.arena = nil
	for i, t := range s.mu.partitions {
		if t != nil {
			t.free()
			s.mu.partitions[i] = nil
		}
	}
}

// hotBytes estimates the in-memory tier: its arena chunks, order entries
// and buyers.
func (s *Store) hotBytes() int64 {
	return s.residentChunks.Load()*arenaChunkBytes + s.memoryOrders.Load()*bytesPerRef + s.liveBuyers.Load()*bytesPerBuyer
}

// Close stops the evictor and releases the memory and the cold tier; call
// it after the runner feeding the store has stopped.
func (s *Store) Close() error {
	if s.evictStop != nil {
		close(s.evictStop)
		s.evictWG.Wait()
		s.evictStop = nil
	}
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil
	}
	s.mu.closed = true
	s.freeArenaLocked()
	s.mu.buyers, s.mu.buyerCollisions = buyerTable{}, nil
	s.mu.statusDirty = nil
	for i := range s.mu.partitions {
		s.mu.partitions[i] = nil
	}
	if s.cold != nil {
		if err := s.cold.close(); err != nil {
			return fmt.Errorf("close order store cold tier: %w", err)
		}
	}
	return nil
}

// encodeOrder writes the immutable part of a placed order in partition.
// The partition comes first, so that a snapshot's load can rebuild the
// partition tables and the buyers from the arena alone, and the buyer id
// second, where buyerNameOffset finds it.
func encodeOrder(b []byte, partition int, ev *engine.Event) []byte {
	b = binary.AppendUvarint(b, uint64(partition))
	b = appendString(b, ev.BuyerID)
	b = appendString(b, ev.MerchantID)
	b = appendString(b, ev.Channel)
	b = appendString(b, ev.Region)
	b = appendString(b, ev.DealID)
	b = binary.AppendVarint(b, ev.Total)
	b = binary.AppendVarint(b, ev.At)
	b = binary.AppendVarint(b, ev.PayBy-ev.At)
	b = binary.AppendUvarint(b, uint64(len(ev.Items)))
	for i := range ev.Items {
		it := &ev.Items[i]
		b = appendString(b, it.SKUID)
		b = binary.AppendUvarint(b, uint64(it.Quantity))
		b = binary.AppendVarint(b, it.UnitPrice)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) str() string {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.err = ErrCorruptRecord
		d.b = nil
		return ""
	}
	str := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return str
}

// skip passes over a length-prefixed string without copying it.
func (d *decoder) skip() {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.err = ErrCorruptRecord
		d.b = nil
		return
	}
	d.b = d.b[k+int(n):]
}

func (d *decoder) varint() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = ErrCorruptRecord
		d.b = nil
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = ErrCorruptRecord
		d.b = nil
		return 0
	}
	d.b = d.b[k:]
	return v
}

func decodeOrder(v []byte) (Order, error) {
	d := decoder{b: v}
	var o Order
	d.uvarint() // the partition, which the id already names
	o.BuyerID = d.str()
	o.MerchantID = d.str()
	o.Channel = d.str()
	o.Region = d.str()
	o.DealID = d.str()
	o.Total = d.varint()
	o.CreatedAt = d.varint()
	o.PayBy = o.CreatedAt + d.varint()
	n := d.uvarint()
	if d.err != nil || n > orderItemsMax {
		return Order{}, ErrCorruptRecord
	}
	o.Items = make([]engine.Item, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		var it engine.Item
		it.SKUID = d.str()
		it.Quantity = int32(d.uvarint())
		it.UnitPrice = d.varint()
		it.Amount = it.UnitPrice * int64(it.Quantity)
		o.Items = append(o.Items, it)
	}
	if d.err != nil {
		return Order{}, d.err
	}
	return o, nil
}

// orderIDOf is the id of the seq-th order of partition (as engine/id.go
// builds it; TestOrderIDLayout checks that the two agree).
func orderIDOf(partition int, seq uint64) engine.OrderID {
	return engine.OrderID(uint64(partition)<<orderSeqBits | seq)
}

// Applied is the journal position of the last record the store committed.
func (s *Store) Applied() uint64 { return s.applied.Load() }
