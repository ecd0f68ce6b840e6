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
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	// buyersMax is the number of buyers a uint32 index addresses.
	buyersMax = math.MaxUint32
)

// Config configures a Store.
// It has no settings yet: the store's bounds are those of the engine that
// feeds it (orders, buyers), and its memory is reported by Stats.
type Config struct{}

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
	ArenaBytes    uint64 // encoded orders held
}

// orderRef is an order's entry in its partition's table. Orders of one
// buyer form a chain, newest to oldest, through prevByBuyer: the buyer
// index needs no per-buyer slices, and nothing the garbage collector must
// scan.
type orderRef struct {
	offset      uint64 // in the arena, +1 (0: no order)
	changedAt   int64
	prevByBuyer engine.OrderID // the buyer's previous order, 0 for the first
	// buyer is the buyer's index in the buyer table (in what was padding),
	// which a snapshot stores so that a load need not look each order's
	// buyer up by hash.
	buyer  uint32
	status engine.OrderStatus
}

type partitionTable struct {
	refs []orderRef // refs[seq-1]
}

// buyer is a buyer's entry: where its id is stored, its newest order and
// how many it has. Buyers are not snapshotted: a load rebuilds them from the
// orders, so a snapshot need not rewrite the entries new orders touch.
type buyer struct {
	name   uint64 // arena offset of the buyer id, inside its first order
	check  uint64 // a second hash of the id, under another seed
	newest engine.OrderID
	count  uint32
}

// Store is the order projection.
type Store struct {
	cfg Config

	mu struct {
		sync.RWMutex
		partitions [partitionsMax]*partitionTable
		arena      [][]byte
		// buyers are found by a 64-bit hash of their id (a map the
		// collector need not scan); the rare id whose hash another id
		// already holds goes to buyerCollisions.
		buyers          []buyer
		buyerByHash     map[uint64]uint32
		buyerCollisions map[string]uint32
		// statusDirty has a bit per arena chunk, set when an order
		// encoded in that chunk changes status: the next snapshot rewrites
		// that chunk's statuses, and only those.
		statusDirty []uint64
		closed      bool
	}
	applied    atomic.Uint64 // position of the last fully applied record
	events     atomic.Uint64
	orders     atomic.Uint64
	records    atomic.Uint64
	applyNanos atomic.Uint64
	arenaBytes atomic.Uint64

	seed        maphash.Seed
	checkSeed   maphash.Seed
	locked      bool      // follower-owned: s.mu is held for the current record
	recordStart time.Time // follower-owned: when the current record began
	scratch     []byte    // follower-owned: encoding buffer

	// snap is what the last durable snapshot stored (follower-owned).
	snap snapshotState
}

// Open creates an empty store; register it with a projection.Runner.
func Open(cfg Config) (*Store, error) {
	return newStore(cfg, maphash.MakeSeed(), maphash.MakeSeed()), nil
}

// newStore returns an empty store hashing buyer ids under seed and
// checkSeed; a staging store shares its store's seeds, so that what it
// loads can be moved over as it is.
func newStore(cfg Config, seed, checkSeed maphash.Seed) *Store {
	s := &Store{cfg: cfg, seed: seed, checkSeed: checkSeed}
	s.mu.buyerByHash = make(map[uint64]uint32)
	s.mu.buyerCollisions = make(map[string]uint32)
	return s
}

// Name implements projection.Projection.
func (s *Store) Name() string { return "orders" }

// Apply implements projection.Projection.
func (s *Store) Apply(ev *engine.Event) error { return s.add(ev) }

// Commit implements projection.Projection: the record is readable.
func (s *Store) Commit(pos uint64, at int64) {
	s.applied.Store(pos)
	if s.locked {
		s.unlockRecord()
		s.records.Add(1)
		s.applyNanos.Add(uint64(time.Since(s.recordStart)))
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
		if ref := s.refLocked(ev.OrderID); ref != nil && ref.offset != 0 {
			ref.status = statusOf(ev.Kind)
			ref.changedAt = ev.At
			chunk := (ref.offset - 1) >> 32
			s.mu.statusDirty[chunk>>6] |= 1 << (chunk & 63)
		}
	}
	s.events.Add(1)
	return nil
}

// unlockRecord releases the lock taken for a record.
func (s *Store) unlockRecord() {
	s.locked = false
	s.mu.Unlock()
}

// placeLocked stores a placed order. REQUIRES: s.mu held for writing.
func (s *Store) placeLocked(ev *engine.Event) error {
	p, seq := ev.OrderID.Partition(), ev.OrderID.Seq()
	t := s.mu.partitions[p]
	if t == nil {
		t = &partitionTable{}
		s.mu.partitions[p] = t
	}
	if seq != uint64(len(t.refs))+1 {
		// The engine numbers orders densely per partition and the journal
		// holds them in order: anything else is a bug upstream.
		return fmt.Errorf("order store: partition %d order %d follows %d", p, seq, len(t.refs))
	}
	s.scratch = encodeOrder(s.scratch[:0], p, ev)
	off := s.appendArenaLocked(s.scratch)
	bi, _ := s.buyerLocked(ev.BuyerID, true, buyerNameOffset(off, len(s.scratch), p))
	b := &s.mu.buyers[bi]
	t.refs = append(t.refs, orderRef{offset: off + 1, status: engine.StatusPending, prevByBuyer: b.newest, buyer: bi})
	b.newest = ev.OrderID
	b.count++
	s.orders.Add(1)
	return nil
}

// buyerLocked finds a buyer's entry and returns its index, creating it if
// create is set with its id at arena offset name (else ok is false for an
// unknown buyer). REQUIRES: s.mu held (for writing if create).
//
// A buyer is recognised by two 64-bit hashes of its id under independent
// seeds rather than by reading its id back from the arena: that read was a
// cache miss per order, a quarter of the store's time. Two ids that agree
// on both hashes (odds about 2^-128) would share a history.
func (s *Store) buyerLocked(id string, create bool, name uint64) (index uint32, ok bool) {
	h := maphash.String(s.seed, id)
	if i, ok := s.mu.buyerByHash[h]; ok {
		if s.mu.buyers[i].check == maphash.String(s.checkSeed, id) {
			return i, true
		}
		if j, ok := s.mu.buyerCollisions[id]; ok {
			return j, true
		}
		if !create {
			return 0, false
		}
		j := s.newBuyerLocked(id, name)
		s.mu.buyerCollisions[strings.Clone(id)] = j
		return j, true
	}
	if !create {
		return 0, false
	}
	i := s.newBuyerLocked(id, name)
	s.mu.buyerByHash[h] = i
	return i, true
}

func (s *Store) newBuyerLocked(id string, name uint64) uint32 {
	if len(s.mu.buyers) >= buyersMax {
		// Four billion buyers is past any festival; an index that wrapped
		// would give buyers each other's histories.
		panic(fmt.Sprintf("orderstore: more than %d buyers", buyersMax))
	}
	s.mu.buyers = append(s.mu.buyers, buyer{name: name, check: maphash.String(s.checkSeed, id)})
	return uint32(len(s.mu.buyers) - 1)
}

// buyerNameOffset is the arena offset of the buyer id inside the order
// record of bodyBytes bytes at off (see encodeOrder): an order's buyer id
// serves as the buyer's name, so it is stored once.
func buyerNameOffset(off uint64, bodyBytes, partition int) uint64 {
	return off + uint64(uvarintLen(uint64(bodyBytes))+uvarintLen(uint64(partition)))
}

// uvarintLen is the length of v's uvarint encoding.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// arenaString returns the length-prefixed bytes at off as a string that
// aliases the arena (valid while the store is open).
func (s *Store) arenaString(off uint64) string {
	chunk := s.mu.arena[off>>32][uint32(off):]
	n, k := binary.Uvarint(chunk)
	return unsafe.String(&chunk[k], int(n))
}

// appendArenaLocked copies body into the arena (length-prefixed) and
// returns its offset. REQUIRES: s.mu held for writing.
func (s *Store) appendArenaLocked(body []byte) uint64 {
	need := binary.MaxVarintLen64 + len(body)
	n := len(s.mu.arena)
	if n == 0 || cap(s.mu.arena[n-1])-len(s.mu.arena[n-1]) < need {
		size := arenaChunkBytes
		if need > size {
			size = need
		}
		s.mu.arena = append(s.mu.arena, make([]byte, 0, size))
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
	s.arenaBytes.Add(uint64(len(body)))
	return off
}

// refLocked returns the entry of id, or nil. REQUIRES: s.mu held.
func (s *Store) refLocked(id engine.OrderID) *orderRef {
	p, seq := id.Partition(), id.Seq()
	t := s.mu.partitions[p]
	if t == nil || seq == 0 || seq > uint64(len(t.refs)) {
		return nil
	}
	return &t.refs[seq-1]
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

// Get returns the order with id.
func (s *Store) Get(id engine.OrderID) (Order, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.getLocked(id)
}

// getLocked decodes an order. REQUIRES: s.mu held.
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
func (s *Store) ListByBuyer(buyerID string, limit int, cursor string) ([]Order, string, error) {
	if limit < 1 || limit > listLimitMax {
		return nil, "", fmt.Errorf("list limit %d: out of range", limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var next engine.OrderID
	if bi, ok := s.buyerLocked(buyerID, false, 0); ok {
		next = s.mu.buyers[bi].newest
	}
	if cursor != "" {
		id, err := engine.ParseOrderID(cursor)
		if err != nil {
			return nil, "", ErrBadCursor
		}
		o, err := s.getLocked(id)
		if err != nil || o.BuyerID != buyerID {
			return nil, "", ErrBadCursor
		}
		next = id
	}
	var out []Order
	for next != 0 && len(out) < limit {
		o, err := s.getLocked(next)
		if err != nil {
			return nil, "", fmt.Errorf("list buyer orders: %w", err)
		}
		out = append(out, o)
		next = s.refLocked(next).prevByBuyer
	}
	if next == 0 {
		return out, "", nil
	}
	return out, next.String(), nil
}

// Stats returns the store's counters and lag.
func (s *Store) Stats() Stats {
	st := Stats{
		Events:      s.events.Load(),
		Orders:      s.orders.Load(),
		Commits:     s.records.Load(),
		CommitNanos: s.applyNanos.Load(),
		ArenaBytes:  s.arenaBytes.Load(),
	}
	if st.Events > 0 {
		st.NanosPerEvent = float64(st.CommitNanos) / float64(st.Events)
	}
	return st
}

// Close releases the memory; call it after the follower feeding Apply has
// stopped.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil
	}
	s.mu.closed = true
	s.mu.arena = nil
	s.mu.buyers, s.mu.buyerByHash, s.mu.buyerCollisions = nil, nil, nil
	s.mu.statusDirty = nil
	for i := range s.mu.partitions {
		s.mu.partitions[i] = nil
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
