package orders

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"unsafe"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// A store snapshot lets a restart resume following the journal from the
// snapshot's position instead of its start, so the engine may delete the
// segments before it. It is incremental: its cost is in proportion to what
// changed since the previous one, not to the whole festival.
//
// The arena already holds every order in journal order, each record naming
// its partition (see encodeOrder), so the partition tables and the buyers
// can be rebuilt from it and are not stored. What a snapshot stores is, per
// arena chunk, two chunk files kept by a projection.Files:
//
//   - the arena chunk's bytes. A full chunk never changes, so it is written
//     once and every later snapshot refers to the same file; only the last,
//     growing chunk is written again, and it is at most arenaChunkBytes.
//   - the statuses of the orders in that chunk, in record order: u8 status
//     and varint changed_at. They are rewritten only when the chunk gained
//     orders or one of its orders changed status (statusDirty). Payments
//     and expiry touch recent orders, so that is the last few chunks.
//
// Only the chunks in memory are named: the orders of the chunks before them
// are in the cold tier, which WriteSnapshot flushes (makes durable) before
// the manifest is written, and each partition's count of cold orders is in
// the manifest.
//
// The manifest, written into the projection snapshot, names them (varints as
// in encoding/binary):
//
//	magic "FESTOS03"
//	uvarint orders in memory
//	uvarint orders in the cold tier
//	uvarint buyers (a size hint for the rebuilt buyer index)
//	uvarint first chunk in memory
//	uvarint partitions with cold orders, per partition: uvarint partition, uvarint cold orders
//	uvarint chunks, per chunk: arena ref, status ref
//	ref: uvarint name length, name, uvarint bytes, u32 CRC32C (little endian)
//
// A chunk's name holds its index and the position of the snapshot that wrote
// it, so a name is never reused for other content, and the projection's
// garbage collector removes a file only when no kept manifest names it.
const storeSnapshotMagic = "FESTOS03"

const (
	// manifestChunksMax bounds the chunks a manifest names: 2^32 chunk
	// indexes fit the arena offset layout.
	manifestChunksMax = 1 << 32
	// buyersHintMax bounds the buyer index a load sizes ahead from the
	// manifest's hint (beyond it the map grows as usual).
	buyersHintMax = 1 << 28
)

// ErrBadSnapshot is returned by LoadSnapshot for a snapshot that does not
// decode.
var ErrBadSnapshot = fmt.Errorf("order store: %w", projection.ErrBadSnapshot)

// chunkRef names one stored chunk and what it must hold.
type chunkRef = projection.ChunkRef

// storedChunk is what a snapshot stores for one arena chunk.
type storedChunk struct {
	arena, status chunkRef
}

// snapshotState is what the last durable snapshot stored, so that the next
// writes only what changed since. It is follower-owned.
type snapshotState struct {
	chunks []storedChunk
	// pending is what the last WriteSnapshot stored; it becomes chunks
	// once the projection says that snapshot is durable.
	pending      []storedChunk
	pendingAt    uint64 // the position pending was written at
	pendingValid bool
}

// WriteSnapshot writes the store's manifest, as of Applied, to w, and the
// chunks changed since the last durable snapshot to cs. Call it from the
// goroutine that feeds Apply, between records, and call SnapshotDurable once
// the manifest is durable: until then the chunks count as not written.
//
// With a cold tier, evictions wait meanwhile, and the cold tier is flushed
// first: the manifest counts its orders as cold only once they are durable.
func (s *Store) WriteSnapshot(w io.Writer, cs projection.Files) error {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	if s.cold != nil {
		if err := s.cold.db.Flush(); err != nil {
			return fmt.Errorf("%w: flush before the snapshot: %w", ErrColdTier, err)
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	at := s.applied.Load()
	chunks := make([]storedChunk, len(s.mu.arena))
	var statuses []byte
	var cursor statusCursor
	for i, data := range s.mu.arena {
		if i < s.mu.firstResident {
			continue // in the cold tier
		}
		var prev storedChunk
		had := i < len(s.snap.chunks)
		if had {
			prev = s.snap.chunks[i]
		}
		grown := !had || prev.arena.Bytes != uint64(len(data))
		c := prev
		if grown {
			ref, err := writeChunk(cs, fmt.Sprintf("os-arena-%08d-%020d", i, at), data)
			if err != nil {
				return err
			}
			c.arena = ref
		}
		if grown || s.mu.statusDirty[i>>6]&(1<<(i&63)) != 0 {
			statuses = s.appendStatusesLocked(statuses[:0], i, &cursor)
			ref, err := writeChunk(cs, fmt.Sprintf("os-status-%08d-%020d", i, at), statuses)
			if err != nil {
				return err
			}
			c.status = ref
		}
		chunks[i] = c
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	b := append([]byte(nil), storeSnapshotMagic...)
	b = binary.AppendUvarint(b, uint64(s.memoryOrders.Load()))
	b = binary.AppendUvarint(b, s.coldOrders.Load())
	b = binary.AppendUvarint(b, uint64(s.liveBuyers.Load()))
	b = binary.AppendUvarint(b, uint64(s.mu.firstResident))
	var bases int
	for _, t := range s.mu.partitions {
		if t != nil && t.base > 0 {
			bases++
		}
	}
	b = binary.AppendUvarint(b, uint64(bases))
	for p, t := range s.mu.partitions {
		if t != nil && t.base > 0 {
			b = binary.AppendUvarint(b, uint64(p))
			b = binary.AppendUvarint(b, t.base)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(chunks)-s.mu.firstResident))
	for _, c := range chunks[s.mu.firstResident:] {
		b = appendChunkRef(b, c.arena)
		b = appendChunkRef(b, c.status)
		if len(b) > 32<<10 {
			bw.Write(b)
			b = b[:0]
		}
	}
	bw.Write(b)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write order store manifest: %w", err)
	}
	s.snap.pending, s.snap.pendingAt, s.snap.pendingValid = chunks, at, true
	return nil
}

// SnapshotDurable tells the store that the snapshot of the last
// WriteSnapshot is durable, so its chunks need not be written again. Call it
// from the goroutine that feeds Apply, before applying anything more.
func (s *Store) SnapshotDurable() {
	if !s.snap.pendingValid {
		panic("orders: SnapshotDurable without a WriteSnapshot")
	}
	if at := s.applied.Load(); at != s.snap.pendingAt {
		panic(fmt.Sprintf("orders: snapshot written at %d made durable at %d: events were applied in between", s.snap.pendingAt, at))
	}
	s.mu.Lock()
	clear(s.mu.statusDirty)
	s.mu.Unlock()
	s.snap.chunks, s.snap.pending, s.snap.pendingValid = s.snap.pending, nil, false
}

func writeChunk(cs projection.Files, name string, data []byte) (chunkRef, error) {
	ref, err := projection.StoreChunk(cs, name, data)
	if err != nil {
		return ref, fmt.Errorf("order store: %w", err)
	}
	return ref, nil
}

func appendChunkRef(b []byte, r chunkRef) []byte { return projection.AppendChunkRef(b, r) }

// statusCursor finds the partition-table entries of one arena chunk's
// records: the first record of a partition in the chunk is found by binary
// search on the arena offset, the next ones follow it, since both the arena
// and a partition's sequence follow the journal.
type statusCursor struct {
	chunk int
	seen  [partitionsMax]int32 // chunk+1 when next holds this chunk's cursor
	next  [partitionsMax]int   // index in refs of the partition's next record
}

// appendStatusesLocked appends the statuses of arena chunk i's orders, in
// record order. REQUIRES: s.mu held.
func (s *Store) appendStatusesLocked(b []byte, i int, c *statusCursor) []byte {
	data := s.mu.arena[i]
	for off := 0; off < len(data); {
		n, k := binary.Uvarint(data[off:])
		p, k2 := binary.Uvarint(data[off+k:])
		if k <= 0 || k2 <= 0 || p >= partitionsMax || s.mu.partitions[p] == nil {
			panic(fmt.Sprintf("orders: arena chunk %d offset %d holds no order record", i, off))
		}
		t := s.mu.partitions[p]
		offset := uint64(i)<<32 | uint64(off) + 1
		if c.seen[p] != int32(i+1) {
			c.seen[p] = int32(i + 1)
			c.next[p] = sort.Search(t.memory(), func(j int) bool { return t.oldest(j).offset >= offset })
		}
		j := c.next[p]
		if j >= t.memory() || t.oldest(j).offset != offset {
			panic(fmt.Sprintf("orders: arena chunk %d offset %d: no partition %d entry points at it", i, off, p))
		}
		c.next[p]++
		ref := t.oldest(j)
		b = append(b, byte(ref.status))
		b = binary.AppendVarint(b, ref.changedAt)
		off += k + int(n)
	}
	return b
}

// manifest is a decoded store manifest.
type manifest struct {
	orders, coldOrders, buyers uint64
	firstResident              uint64
	bases                      map[uint64]uint64 // partition: cold orders
	chunks                     []storedChunk
}

func readManifest(br *bufio.Reader) (manifest, error) {
	fail := func(what string, err error) (manifest, error) {
		if err == nil {
			err = errors.New("out of range")
		}
		return manifest{}, fmt.Errorf("%w: manifest %s: %v", ErrBadSnapshot, what, err)
	}
	magic := make([]byte, len(storeSnapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != storeSnapshotMagic {
		if err == nil {
			err = fmt.Errorf("magic %q", magic)
		}
		return fail("magic", err)
	}
	var m manifest
	var err error
	if m.orders, err = binary.ReadUvarint(br); err != nil {
		return fail("orders", err)
	}
	if m.coldOrders, err = binary.ReadUvarint(br); err != nil {
		return fail("cold orders", err)
	}
	if m.buyers, err = binary.ReadUvarint(br); err != nil || m.buyers > m.orders {
		return fail("buyers", err)
	}
	if m.firstResident, err = binary.ReadUvarint(br); err != nil || m.firstResident > manifestChunksMax {
		return fail("first chunk in memory", err)
	}
	bases, err := binary.ReadUvarint(br)
	if err != nil || bases > partitionsMax {
		return fail("partitions with cold orders", err)
	}
	m.bases = make(map[uint64]uint64, bases)
	var cold uint64
	for i := uint64(0); i < bases; i++ {
		p, err := binary.ReadUvarint(br)
		if err != nil || p >= partitionsMax {
			return fail("partition with cold orders", err)
		}
		base, err := binary.ReadUvarint(br)
		if _, dup := m.bases[p]; err != nil || dup || base == 0 || base >= 1<<orderSeqBits {
			return fail(fmt.Sprintf("cold orders of partition %d", p), err)
		}
		m.bases[p] = base
		cold += base
	}
	if cold != m.coldOrders {
		return fail("cold orders", fmt.Errorf("%d per partition, %d in all", cold, m.coldOrders))
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > manifestChunksMax {
		return fail("chunks", err)
	}
	readRef := func() (chunkRef, error) { return projection.ReadChunkRef(br) }
	// Not preallocated from n: a damaged count must not allocate.
	for i := uint64(0); i < n; i++ {
		var c storedChunk
		if c.arena, err = readRef(); err != nil {
			return fail(fmt.Sprintf("arena chunk %d", i), err)
		}
		if c.status, err = readRef(); err != nil {
			return fail(fmt.Sprintf("status chunk %d", i), err)
		}
		m.chunks = append(m.chunks, c)
	}
	return m, nil
}

// SnapshotChunks returns the names of the chunks that the store manifest at
// the start of r needs, for the runner's collection of unneeded chunks. r is read
// up to the end of the manifest when it is a *bufio.Reader.
func (s *Store) SnapshotChunks(r io.Reader) ([]string, error) {
	m, err := readManifest(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, 2*len(m.chunks))
	for _, c := range m.chunks {
		names = append(names, c.arena.Name, c.status.Name)
	}
	return names, nil
}

// readChunk reads a chunk and checks it against its reference.
func readChunk(cs projection.Files, r chunkRef) ([]byte, error) {
	data, err := projection.LoadChunk(cs, r)
	switch {
	case err != nil && projection.ChunkDamaged(err):
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	case err != nil:
		return nil, fmt.Errorf("load order store snapshot: %w", err)
	}
	return data, nil
}

// Staged is a store snapshot loaded to the side of the store it was staged
// for: none of it is visible to that store's readers until Install. The
// projection runner checks the rest of a projection snapshot (the GMV
// section, and that nothing follows) before it installs, so that a snapshot
// it rejects is never served and then taken back: loaded in place, it made
// the store reflect its position and hold its orders for a moment, and an
// acknowledged order read just after the fallback emptied the store
// answered not found.
type Staged struct {
	target *Store
	loaded *Store // a private store holding the snapshot; nil once installed
	pos    uint64
	// free unmaps the loaded arena should the Staged be dropped
	// uninstalled; Install stops it.
	free runtime.Cleanup
}

// StageSnapshot loads the manifest at the start of r and the chunks it names
// in cs, as of journal position pos, into a staging store that shares s's
// buyer hash seeds; s itself is not touched. r is read up to the end of the
// manifest when it is a *bufio.Reader. A Staged that is not installed is
// simply dropped.
func (s *Store) StageSnapshot(r io.Reader, pos uint64, cs projection.Files) (projection.Staged, error) {
	l := newStore(s.cfg, s.seed, s.checkSeed)
	l.cold = s.cold // read only, to check that the cold orders are there
	if err := l.load(r, pos, cs); err != nil {
		l.mu.Lock()
		l.freeArenaLocked()
		l.mu.Unlock()
		return nil, err
	}
	st := &Staged{target: s, loaded: l, pos: pos}
	st.free = runtime.AddCleanup(st, func(l *Store) {
		l.mu.Lock()
		l.freeArenaLocked()
		l.mu.Unlock()
	}, l)
	return st, nil
}

// Install makes the staged snapshot the content of s in one step, under s's
// lock; following then resumes after its position. s must be the store it was staged for,
// empty and not yet fed, and st not installed before: anything else is a
// bug of the caller, and panics. A closed store drops it.
func (st *Staged) Install() { st.target.install(st) }

func (s *Store) install(st *Staged) {
	if st.target != s || st.loaded == nil {
		panic(fmt.Sprintf("orders: snapshot at %d installed twice or into another store than it was staged for", st.pos))
	}
	l := st.loaded
	st.loaded = nil
	st.free.Stop() // the arena is s's now
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		l.freeArenaLocked() // l is private: its lock guards nothing now
		return
	}
	if len(s.mu.arena) != 0 || s.orders.Load() != 0 || s.applied.Load() != 0 {
		panic(fmt.Sprintf("orders: snapshot at %d installed into a store at %d holding %d orders", st.pos, s.applied.Load(), s.orders.Load()))
	}
	s.mu.partitions = l.mu.partitions
	s.mu.arena = l.mu.arena
	s.mu.buyers, s.mu.buyerCollisions = l.mu.buyers, l.mu.buyerCollisions
	s.mu.statusDirty = l.mu.statusDirty
	s.mu.firstResident = l.mu.firstResident
	s.orders.Store(l.orders.Load())
	s.arenaBytes.Store(l.arenaBytes.Load())
	s.memoryOrders.Store(l.memoryOrders.Load())
	s.coldOrders.Store(l.coldOrders.Load())
	s.liveBuyers.Store(l.liveBuyers.Load())
	s.residentChunks.Store(l.residentChunks.Load())
	s.snap = l.snap
	s.applied.Store(st.pos)
}

// LoadSnapshot restores an empty store (not yet fed) from the manifest at
// the start of r and the chunks it names in cs, as of journal position pos:
// StageSnapshot then Install. After an error the store is unchanged.
func (s *Store) LoadSnapshot(r io.Reader, pos uint64, cs projection.Files) error {
	if s.orders.Load() != 0 || s.applied.Load() != 0 {
		return errors.New("load order store snapshot: the store is not empty")
	}
	st, err := s.StageSnapshot(r, pos, cs)
	if err != nil {
		return err
	}
	st.Install()
	return nil
}

// load restores the staging store s (see StageSnapshot).
func (s *Store) load(r io.Reader, pos uint64, cs projection.Files) error {
	br := bufio.NewReaderSize(r, 1<<20)
	m, err := readManifest(br)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.arena) != 0 || s.orders.Load() != 0 {
		return errors.New("load order store snapshot: the store is not empty")
	}
	if m.coldOrders > 0 {
		if err := s.checkColdLocked(m); err != nil {
			return err
		}
	}
	for p, base := range m.bases {
		s.mu.partitions[p] = &partitionTable{base: base, end: base}
	}
	// Sized once rather than grown a million times; the hint is checked
	// against the orders, and a wrong one costs only memory.
	s.mu.buyers = newBuyerTable(int(min(m.buyers, buyersHintMax)))
	s.mu.arena = make([][]byte, m.firstResident, int(m.firstResident)+len(m.chunks))
	s.mu.firstResident = int(m.firstResident)
	for j, c := range m.chunks {
		i := int(m.firstResident) + j
		data, err := readChunk(cs, c.arena)
		if err != nil {
			return err
		}
		size := len(data)
		if j == len(m.chunks)-1 {
			// The last chunk keeps growing, as it did before the snapshot.
			size = max(len(data), arenaChunkBytes)
		}
		data = append(allocChunk(size), data...)
		statuses, err := readChunk(cs, c.status)
		if err != nil {
			return err
		}
		s.mu.arena = append(s.mu.arena, data)
		s.residentChunks.Add(1)
		if err := s.restoreChunkLocked(i, statuses); err != nil {
			return fmt.Errorf("%w: arena chunk %s: %v", ErrBadSnapshot, c.arena.Name, err)
		}
	}
	if got := uint64(s.memoryOrders.Load()); got != m.orders {
		return fmt.Errorf("%w: %d orders in the chunks, manifest says %d", ErrBadSnapshot, got, m.orders)
	}
	s.orders.Add(m.coldOrders)
	s.coldOrders.Store(m.coldOrders)
	s.mu.statusDirty = make([]uint64, (len(s.mu.arena)+63)/64)
	// The stored chunks are indexed as the arena is.
	s.snap = snapshotState{chunks: append(make([]storedChunk, m.firstResident), m.chunks...)}
	return nil
}

// checkColdLocked checks that the cold tier holds the newest cold order of
// each partition the manifest counts cold orders in: a cold tier deleted,
// or another node's, is refused rather than answered "not found".
func (s *Store) checkColdLocked(m manifest) error {
	if s.cold == nil {
		return fmt.Errorf("load order store snapshot: %d of its orders are in a cold tier, and this store has none (no data directory)", m.coldOrders)
	}
	for p, base := range m.bases {
		id := orderIDOf(int(p), base)
		if _, err := s.cold.get(id); err != nil {
			return fmt.Errorf("%w: the snapshot counts order %v cold, and the cold tier does not hold it: %w", ErrBadSnapshot, id, err)
		}
	}
	return nil
}

// restoreChunkLocked rebuilds the partition entries and buyers of the orders
// in arena chunk i, as placeLocked built them, with their statuses.
// REQUIRES: s.mu held for writing.
func (s *Store) restoreChunkLocked(i int, statuses []byte) error {
	data := s.mu.arena[i]
	st := decoder{b: statuses}
	for off := 0; off < len(data); {
		n, k := binary.Uvarint(data[off:])
		if k <= 0 || n > uint64(len(data)-off-k) {
			return fmt.Errorf("offset %d: bad record length", off)
		}
		body := data[off+k : off+k+int(n)]
		if !validRecord(body) {
			return fmt.Errorf("offset %d: corrupt order record", off)
		}
		p, k2 := binary.Uvarint(body)
		l, k3 := binary.Uvarint(body[k2:])
		if k3 <= 0 || l > uint64(len(body)-k2-k3) {
			return fmt.Errorf("offset %d: bad buyer id", off)
		}
		// The id aliases the arena, which outlives the buyer entry.
		id := unsafe.String(unsafe.SliceData(body[k2+k3:]), int(l))
		if len(st.b) == 0 {
			return fmt.Errorf("offset %d: no status", off)
		}
		status := engine.OrderStatus(st.b[0])
		st.b = st.b[1:]
		changedAt := st.varint()
		if st.err != nil || status < engine.StatusPending || status > engine.StatusExpired {
			return fmt.Errorf("offset %d: bad status %d", off, status)
		}
		recordOff := uint64(i)<<32 | uint64(off)
		t := s.mu.partitions[p]
		if t == nil {
			t = &partitionTable{}
			s.mu.partitions[p] = t
		}
		prev := s.swapNewestLocked(id, orderIDOf(int(p), t.end+1))
		t.push(orderRef{offset: recordOff + 1, changedAt: changedAt, prevByBuyer: prev, status: status})
		s.orders.Add(1)
		s.memoryOrders.Add(1)
		s.arenaBytes.Add(n)
		off += k + int(n)
	}
	if len(st.b) != 0 {
		return fmt.Errorf("%d bytes of statuses left over", len(st.b))
	}
	return nil
}

// validRecord reports whether body decodes as an order record, without
// copying it, so that a loaded store never holds a record that Get cannot
// read.
func validRecord(body []byte) bool {
	d := decoder{b: body}
	if p := d.uvarint(); p >= partitionsMax {
		return false
	}
	for range 5 { // buyer, merchant, channel, region, deal
		d.skip()
	}
	d.varint() // total
	d.varint() // created at
	d.varint() // pay by, after created at
	n := d.uvarint()
	if d.err != nil || n > orderItemsMax {
		return false
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		d.skip()    // sku
		d.uvarint() // quantity
		d.varint()  // unit price
	}
	return d.err == nil && len(d.b) == 0
}

// The order store is one of the runner's read models.
var _ projection.Projection = (*Store)(nil)
