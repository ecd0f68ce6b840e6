package engine

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/idempotency"
)

// Idempotency keys live in two tiers. The memory tier (memoryKeys, one per
// partition, in the engine snapshot and rebuilt by replay of OrderPlaced
// events) holds the recent keys, about IdempotencyKeysMax per partition.
// When it grows past that, the partition's worker hands its oldest keys to
// the disk tier (internal/idempotency), whose writer goroutine writes them
// as one fsynced run; only once the run is durable does the worker remove
// them from memory, so a key is always in at least one tier, across any
// crash. The deterministic core never does I/O: before a batch is applied,
// its worker looks up on disk every keyed order that misses memory and
// passes the answer into apply as an input, like the time. Only the worker
// removes keys from memory, and it does so before those look-ups, so no
// key can leave memory between its look-up and its apply.
//
// A key that carries its minting time (a UUIDv7 or ULID, idempotency.KeyTime)
// and was first used close to it (Store.TimeOrdered) is time-ordered: its
// entry remembers that time (minted), and it spills to the disk tier's
// time-ordered runs, filed by it. Such a key minted at or after the store's
// horizon was never spilled, so the worker reads the disk for it only when
// it is older; a new key never does while the horizon is not ahead of the
// clock. The choice is made when the order is placed, from the key's text
// and the batch's time, and recorded in the OrderPlaced event (KeyMinted)
// and in the snapshot's ring, so replay and a snapshot rebuild the same
// tier: a restart must not turn time-ordered keys into other keys, which
// the other keys' index budget may forget within their window.
//
// Without a data directory (a test double journal) there is no disk tier
// and the memory tier forgets its oldest keys past IdempotencyKeysMax, as
// it always did.

type idempotencyEntry struct {
	requestHash uint64
	seq         uint64
	at          int64
}

// idempotencyRing is a ring entry. The minting time of a time-ordered key
// lives here rather than in its map entry: a slice element costs 8 bytes
// more, a map entry 16 (its value's size class).
type idempotencyRing struct {
	keyHash uint64
	at      int64
	minted  int64 // unix ms of a time-ordered key; 0 for other keys
}

// memoryKeys is a partition's memory tier. Only the partition's worker (or
// replay) touches it, except the atomics at the end.
type memoryKeys struct {
	entries map[uint64]idempotencyEntry
	// ring lists the keys in placement order from head on; ring positions
	// are counted from the partition's start (base is the position of
	// ring[0]), so that a spill can name its range across compactions.
	ring []idempotencyRing
	head int
	base uint64

	// spilled is the ring position below which keys were handed to the
	// disk tier; spillFrom and spillTo bound the spill in flight.
	spilled            uint64
	spillFrom, spillTo uint64
	spilling           bool
	// spillResult is set by the disk writer's goroutine: spillOK or
	// spillFailed, then read and cleared by the worker.
	spillResult atomic.Int32
	// durableEnd is the ring position below which every key's order is
	// durable in the journal, set by the journal's goroutine as the
	// worker's records become durable. A spill stops there: a run must
	// never name an order that a crash can still take back, or after the
	// crash the run would answer a retry of that unacknowledged request
	// with idempotency_mismatch, or with whichever order takes its
	// sequence next as its replay.
	durableEnd atomic.Uint64

	// timed counts the entries with minted set.
	timed int

	// count, timedCount and oldestAt are published once per batch for
	// /metrics.
	count      atomic.Int64
	timedCount atomic.Int64
	oldestAt   atomic.Int64
	// timeRejected counts first uses of keys that carry a minting time
	// (idempotency.KeyTime) too far from their use to be time-ordered
	// (Store.TimeOrdered): kept as other keys, which the other keys'
	// index budget may forget. Written by the partition's worker only.
	timeRejected atomic.Uint64
}

const (
	spillPending int32 = iota
	spillOK
	spillFailed
)

const (
	// memoryKeysHardFactor times IdempotencyKeysMax is the hard bound of a
	// memory tier with a disk tier: reached only when the disk cannot keep
	// up (or fails), a new keyed order is then answered CodeOverloaded, a
	// retryable answer that forgets nothing, rather than let memory grow
	// or forget keys within their window.
	memoryKeysHardFactor = 2
	// spillLowWaterFraction: a spill takes the tier down to
	// IdempotencyKeysMax minus this fraction of it, so that spills come
	// in chunks (few runs), not one per order.
	spillLowWaterFraction = 8
)

func newMemoryKeys() memoryKeys {
	return memoryKeys{entries: make(map[uint64]idempotencyEntry)}
}

func (m *memoryKeys) headPos() uint64 { return m.base + uint64(m.head) }

// endPos is the ring position past the newest key.
func (m *memoryKeys) endPos() uint64 { return m.base + uint64(len(m.ring)) }

// live reports whether ring entry r still names the key's current entry.
func (m *memoryKeys) live(r idempotencyRing) bool {
	e, ok := m.entries[r.keyHash]
	return ok && e.at == r.at
}

// drop removes the head of the ring, and its key if r is still current.
func (m *memoryKeys) drop(keys *keyIndex, partition int) {
	r := m.ring[m.head]
	if m.live(r) {
		if r.minted != 0 {
			m.timed--
		}
		delete(m.entries, r.keyHash)
		keys.remove(r.keyHash, partition)
	}
	m.head++
}

func (m *memoryKeys) compactRing() {
	if m.head > 1024 && m.head*2 > len(m.ring) {
		n := copy(m.ring, m.ring[m.head:])
		clear(m.ring[n:])
		m.ring = m.ring[:n]
		m.base += uint64(m.head)
		m.head = 0
	}
}

// remember records an idempotency key, forgetting keys older than the
// window, oldest first, and, without a disk tier, keys beyond keysMax.
// Eviction uses event time, so replay evicts exactly what the live engine
// evicted; what the disk tier holds is decided by the worker, not here.
// minted is the event's KeyMinted: a time-ordered key's minting time, or 0.
func (p *partition) remember(keys *keyIndex, keyHash, requestHash, seq uint64, at, minted, window int64, keysMax int, disk bool) {
	m := &p.keys
	if minted != 0 {
		// A key is remembered at its first use, so no entry of it is
		// replaced, and drop counts it out with its ring entry.
		m.timed++
	}
	m.entries[keyHash] = idempotencyEntry{requestHash: requestHash, seq: seq, at: at}
	keys.put(keyHash, p.id)
	m.ring = append(m.ring, idempotencyRing{keyHash: keyHash, at: at, minted: minted})
	for m.head < len(m.ring) {
		head := m.ring[m.head]
		if head.at > at-window && (disk || len(m.entries) <= keysMax) {
			break
		}
		m.drop(keys, p.id)
	}
	m.compactRing()
}

// storedKey is what the worker's disk look-up found for a keyed order.
type storedKey struct {
	keyHash uint64             // the key's hash, so it is hashed once; 0 if not yet
	entry   *idempotency.Entry // nil: not on disk
	// missGeneration is the low 32 bits of the disk tier's generation at
	// which the router found the key on no disk run (0: it did not look).
	// 32 bits keep Command small; a false match would take 2^32 runs
	// published between routing and apply.
	missGeneration uint32
	failed         bool // the look-up failed: answer CodeUnavailable
	// minted is the minting time the key's text carries (unix ms,
	// idempotency.KeyTime), set by the worker's look-up; 0 if none.
	minted int64
}

// keyedOrder decides a keyed order from the tiers. done is true when res
// holds the answer (a replay, a mismatch or a refusal); otherwise minted is
// the key's KeyMinted for the order's event: its minting time if it is
// time-ordered, else 0.
func (c *core) keyedOrder(p *partition, now int64, o *Order, keyHash uint64, res *Result) (minted int64, done bool) {
	if e, ok := p.keys.entries[keyHash]; ok {
		c.replayKey(p, o, e.requestHash, e.seq, res)
		return 0, true
	}
	if s := o.stored.entry; s != nil && s.At > now-c.idempotencyWindow {
		if int(s.Partition) != p.id || s.Seq == 0 || s.Seq >= p.nextSeq() {
			// The router binds a key to one partition, so this is a hash
			// collision or a key from another data directory: not this
			// request's order either way.
			res.Code, res.Field = CodeIdempotencyMismatch, "Idempotency-Key"
			return 0, true
		}
		c.replayKey(p, o, s.RequestHash, s.Seq, res)
		return 0, true
	}
	if o.stored.failed {
		res.Code = CodeUnavailable
		return 0, true
	}
	if c.disk != nil && len(p.keys.entries) >= memoryKeysHardFactor*c.idempotencyKeysMax {
		res.Code = CodeOverloaded
		return 0, true
	}
	// A first use: the key is time-ordered when its minting time is
	// plausible now. now is an input of apply and the choice travels in
	// the event, so replay files the key as the live engine did.
	if c.disk != nil && o.stored.minted != 0 {
		if c.disk.TimeOrdered(o.stored.minted, now) {
			return o.stored.minted, false
		}
		p.keys.timeRejected.Add(1)
	}
	return 0, false
}

func (c *core) replayKey(p *partition, o *Order, requestHash, seq uint64, res *Result) {
	if requestHash != o.RequestHash {
		res.Code, res.Field = CodeIdempotencyMismatch, "Idempotency-Key"
		return
	}
	res.Replayed = true
	res.OrderID = newOrderID(p.id, seq)
	res.Status = p.orders[seq-1]
	if po := p.pendingOrderAt(seq); po != nil {
		p.orderResult(seq, po, res)
	}
}

// idempotencyBeforeApply runs on the worker before each batch is applied:
// it removes from memory the keys whose disk run is now durable, starts the
// next spill, and looks up on disk the keyed orders that miss memory.
func (w *worker) idempotencyBeforeApply(shards []shard) {
	c := w.e.core
	for _, p := range w.parts {
		if c.disk != nil {
			c.settleSpill(p)
			c.startSpill(p)
		}
		m := &p.keys
		m.count.Store(int64(len(m.entries)))
		m.timedCount.Store(int64(m.timed))
		if m.head < len(m.ring) {
			m.oldestAt.Store(m.ring[m.head].at)
		} else {
			m.oldestAt.Store(0)
		}
	}
	if c.disk == nil {
		return
	}
	for _, s := range shards {
		if !s.b.keyed {
			continue // no keyed order to look up
		}
		for _, i := range s.idx {
			c.lookUpKey(&s.b.Requests[i], w.e.cfg.Logger)
		}
	}
}

// lookUpKey looks up on disk the key of a keyed order that misses memory
// and records the answer in the command, for apply.
func (c *core) lookUpKey(r *Request, logger *slog.Logger) {
	if !r.keyedOrder() {
		return
	}
	o := &r.Command.Order
	keyHash := o.stored.keyHash
	if keyHash == 0 {
		keyHash = hashString(o.IdempotencyKey) | 1
	}
	missGeneration := o.stored.missGeneration
	o.stored = storedKey{keyHash: keyHash}
	minted, timed := idempotency.KeyTime(o.IdempotencyKey)
	if timed {
		o.stored.minted = minted
	}
	if _, ok := c.partitions[r.partition].keys.entries[keyHash]; ok {
		return
	}
	if timed && minted < c.disk.Horizon() {
		// The key may be in the time-ordered runs, which the router's
		// look-up does not read.
		e, ok, err := c.disk.LookupOrdered(keyHash, minted)
		if err != nil {
			logger.Error("idempotency: disk look-up failed; the order is answered unavailable", "err", err)
			o.stored.failed = true
			return
		}
		if ok {
			o.stored.entry = &e
			return
		}
	}
	if missGeneration != 0 && missGeneration == uint32(c.disk.Generation()) {
		// Nothing was published since the router's miss: a look-up would
		// miss again.
		return
	}
	e, ok, err := c.disk.Lookup(keyHash)
	switch {
	case err != nil:
		logger.Error("idempotency: disk look-up failed; the order is answered unavailable", "err", err)
		o.stored.failed = true
	case ok:
		found := e // allocated only for a key found on disk
		o.stored.entry = &found
	}
}

// settleSpill ends p's spill in flight once the disk writer has answered.
func (c *core) settleSpill(p *partition) {
	m := &p.keys
	if !m.spilling {
		return
	}
	switch m.spillResult.Load() {
	case spillPending:
		return
	case spillFailed:
		// The keys are still in memory; the next spill retries them.
		m.spilled = m.spillFrom
	case spillOK:
		for m.head < len(m.ring) && m.headPos() < m.spillTo {
			m.drop(c.keys, p.id)
		}
		m.compactRing()
	}
	m.spillResult.Store(spillPending)
	m.spilling = false
}

// startSpill hands p's oldest keys to the disk tier when memory holds more
// than IdempotencyKeysMax.
func (c *core) startSpill(p *partition) {
	m := &p.keys
	if m.spilling || len(m.entries) <= c.idempotencyKeysMax {
		return
	}
	target := c.idempotencyKeysMax - c.idempotencyKeysMax/spillLowWaterFraction
	n := len(m.entries) - target
	from := max(m.spilled, m.headPos())
	end := min(m.endPos(), m.durableEnd.Load())
	if from >= end {
		return // the oldest keys' orders are still being made durable
	}
	batch := make([]idempotency.Entry, 0, n)
	pos := from
	for ; pos < end && len(batch) < n; pos++ {
		r := m.ring[pos-m.base]
		if !m.live(r) {
			continue
		}
		e := m.entries[r.keyHash]
		batch = append(batch, idempotency.Entry{KeyHash: r.keyHash, RequestHash: e.requestHash, Seq: e.seq, At: e.at, Partition: uint32(p.id), Minted: r.minted})
	}
	if len(batch) == 0 {
		return
	}
	err := c.disk.Submit(batch, func(err error) {
		if err != nil {
			m.spillResult.Store(spillFailed)
		} else {
			m.spillResult.Store(spillOK)
		}
	})
	if err != nil {
		return // busy or closed: the keys stay in memory, retried next batch
	}
	m.spillFrom, m.spillTo, m.spilled, m.spilling = from, pos, pos, true
}

// encode appends p's memory tier to a snapshot of version: the ring from
// head on (with each key's minting time from version 4 on), then the
// entries.
func (m *memoryKeys) encode(b []byte, version byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.ring)-m.head))
	for _, r := range m.ring[m.head:] {
		b = binary.LittleEndian.AppendUint64(b, r.keyHash)
		b = binary.AppendVarint(b, r.at)
		if version >= snapshotVersion {
			b = binary.AppendUvarint(b, uint64(r.minted))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.entries)))
	for k, v := range m.entries {
		b = binary.LittleEndian.AppendUint64(b, k)
		b = binary.LittleEndian.AppendUint64(b, v.requestHash)
		b = binary.AppendUvarint(b, v.seq)
		b = binary.AppendVarint(b, v.at)
	}
	return b
}

// decodeKeys restores p's memory tier from a snapshot of version and
// confirms its keys in the router's index.
func (c *core) decodeKeys(d *decoder, p *partition, version byte) {
	m := &p.keys
	for i, n := 0, d.count(1<<40, "idempotency ring"); i < n && d.err == nil; i++ {
		r := idempotencyRing{keyHash: d.uint64(), at: d.varint()}
		if version >= snapshotVersion {
			r.minted = int64(d.value(keyMintedMax, "idempotency key minting time"))
		}
		m.ring = append(m.ring, r)
	}
	for i, n := 0, d.count(1<<40, "idempotency key"); i < n && d.err == nil; i++ {
		k := d.uint64()
		e := idempotencyEntry{requestHash: d.uint64(), seq: d.uvarint(), at: d.varint()}
		if d.err != nil {
			break
		}
		if k == 0 || e.seq == 0 || e.seq > uint64(len(p.orders)) {
			d.fail("idempotency key of no order")
			break
		}
		m.entries[k] = e
		c.keys.put(k, p.id)
	}
	// timed counts the live ring entries of time-ordered keys, as drop
	// counts them out.
	for _, r := range m.ring {
		if r.minted != 0 && m.live(r) {
			m.timed++
		}
	}
}

// openIdempotency opens the disk tier in the data directory.
func (e *Engine) openIdempotency() error {
	if e.cfg.Dir == "" {
		return nil
	}
	s, err := idempotency.Open(idempotency.Config{
		FS:                   e.cfg.FS,
		Dir:                  filepath.Join(e.cfg.Dir, "idempotency"),
		Window:               e.cfg.IdempotencyWindow,
		IndexBytesMax:        e.cfg.IdempotencyIndexBytesMax,
		RunDelayMax:          e.cfg.IdempotencyRunDelayMax,
		MintedAgeMax:         e.cfg.IdempotencyMintedAgeMax,
		MintedSkewMax:        e.cfg.IdempotencyMintedSkewMax,
		OrderedIndexBytesMax: e.cfg.IdempotencyTimedIndexBytesMax,
		Now:                  e.cfg.Now,
		Logger:               e.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("open idempotency store: %w", err)
	}
	e.idempotencyStore = s
	e.core.disk = s
	return nil
}

// closeIdempotency closes the disk tier once the workers have stopped.
func (e *Engine) closeIdempotency() error {
	if e.idempotencyStore == nil {
		return nil
	}
	if err := e.idempotencyStore.Close(); err != nil {
		return fmt.Errorf("close idempotency store: %w", err)
	}
	return nil
}

// IdempotencyStats are the figures of both tiers. MemoryKeys and DiskKeys
// count both classes of keys; the Timed figures the time-ordered ones (see
// idempotency.KeyTime), DiskRuns and DiskIndexBytes the other keys' runs.
type IdempotencyStats struct {
	MemoryKeys      int64
	MemoryTimedKeys int64
	DiskKeys        int64
	DiskTimedKeys   int64
	DiskRuns        int
	DiskTimedRuns   int
	DiskIndexBytes  int64
	// DiskTimedIndexBytes is the memory of the time-ordered runs' index.
	DiskTimedIndexBytes int64
	// HorizonAge is how far the time-ordered tier's horizon is behind the
	// engine's clock (negative for keys minted ahead of it); a time-ordered
	// key younger than it never reads the disk. Zero while that tier is
	// empty.
	HorizonAge time.Duration
	// OldestAt is the placement time (unix nanoseconds) of the oldest key
	// held in either tier; 0 when there is none.
	OldestAt int64
	// OldestAge is the oldest key's age by the engine's clock.
	OldestAge time.Duration
	// ForgottenEarly counts other keys the disk tier dropped before their
	// window to stay within IdempotencyIndexBytesMax; TimedForgottenEarly
	// the time-ordered ones dropped for its OrderedIndexBytesMax.
	ForgottenEarly      uint64
	TimedForgottenEarly uint64
	// TimeRejected counts first uses of keys that parse as a UUIDv7 or
	// ULID but were minted too far from their use (outside
	// IdempotencyMintedAgeMax and IdempotencyMintedSkewMax) to be
	// time-ordered: a client with a wrong clock, kept as other keys.
	TimeRejected uint64
}

// IdempotencyStats returns the figures of both tiers (memory figures are
// as of each partition's last batch).
func (e *Engine) IdempotencyStats() IdempotencyStats {
	var st IdempotencyStats
	for _, p := range e.core.partitions {
		st.MemoryKeys += p.keys.count.Load()
		st.MemoryTimedKeys += p.keys.timedCount.Load()
		st.TimeRejected += p.keys.timeRejected.Load()
		if at := p.keys.oldestAt.Load(); at != 0 && (st.OldestAt == 0 || at < st.OldestAt) {
			st.OldestAt = at
		}
	}
	if e.core.disk != nil {
		ds := e.core.disk.Stats()
		st.DiskKeys, st.DiskRuns, st.DiskIndexBytes, st.ForgottenEarly = ds.Keys+ds.OrderedKeys, ds.Runs, ds.IndexBytes, ds.ForgottenEarly
		st.DiskTimedKeys, st.DiskTimedRuns, st.DiskTimedIndexBytes, st.TimedForgottenEarly = ds.OrderedKeys, ds.OrderedRuns, ds.OrderedIndexBytes, ds.OrderedForgottenEarly
		if ds.Horizon != 0 {
			st.HorizonAge = time.Duration(e.cfg.Now() - ds.Horizon*1e6)
		}
		if ds.OldestAt != 0 && (st.OldestAt == 0 || ds.OldestAt < st.OldestAt) {
			st.OldestAt = ds.OldestAt
		}
	}
	if st.OldestAt != 0 {
		st.OldestAge = time.Duration(max(0, e.cfg.Now()-st.OldestAt))
	}
	return st
}
