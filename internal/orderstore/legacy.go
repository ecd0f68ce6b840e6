package orderstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/fest-platform/fest/internal/engine"
)

// legacySnapshotMagic opens the store snapshots written before snapshots
// were incremental: the whole arena (orders without their partition, and
// each buyer's id as a record of its own), the partition tables and the
// buyer table in one stream. A data directory from before the change has
// only those, and its journal before them may be gone, so they are still
// loaded: the orders are re-encoded in the current layout, in journal order,
// and the next snapshot writes every chunk afresh (the store's snapshot
// state stays empty).
const legacySnapshotMagic = "FESTOS01"

// legacyCountMax bounds the counts a legacy snapshot gives for its chunks,
// tables and entries before they are checked against what follows.
const legacyCountMax = 1 << 40

// loadLegacySnapshot loads a FESTOS01 snapshot from br into an empty
// staging store (see StageSnapshot).
func (s *Store) loadLegacySnapshot(br *bufio.Reader) error {
	fail := func(what string, err error) error {
		if err == nil {
			err = errors.New("out of range")
		}
		return fmt.Errorf("%w: legacy %s: %v", ErrBadSnapshot, what, err)
	}
	if _, err := br.Discard(len(legacySnapshotMagic)); err != nil {
		return fail("magic", err)
	}
	count := func(max uint64) (uint64, error) {
		v, err := binary.ReadUvarint(br)
		if err == nil && v > max {
			err = fmt.Errorf("count %d above %d", v, max)
		}
		return v, err
	}
	chunks, err := count(manifestChunksMax)
	if err != nil {
		return fail("chunks", err)
	}
	var arena [][]byte
	for i := uint64(0); i < chunks; i++ {
		n, err := count(chunkBytesMax)
		if err != nil {
			return fail("chunk length", err)
		}
		c, err := readBytes(br, n)
		if err != nil {
			return fail("chunk", err)
		}
		arena = append(arena, c)
	}
	tables, err := count(partitionsMax)
	if err != nil {
		return fail("tables", err)
	}
	var refs [partitionsMax][]orderRef
	for i := uint64(0); i < tables; i++ {
		p, err := count(partitionsMax - 1)
		if err != nil {
			return fail("partition", err)
		}
		n, err := count(legacyCountMax)
		if err != nil || refs[p] != nil {
			return fail(fmt.Sprintf("partition %d orders", p), err)
		}
		t := make([]orderRef, 0, min(n, 1<<20))
		for j := uint64(0); j < n; j++ {
			var r orderRef
			r.offset, err = binary.ReadUvarint(br)
			if err == nil {
				r.changedAt, err = binary.ReadVarint(br)
			}
			if err == nil {
				_, err = binary.ReadUvarint(br) // previous order of the buyer: rebuilt
			}
			var st byte
			if err == nil {
				st, err = br.ReadByte()
			}
			if err != nil {
				return fail("order", err)
			}
			r.status = engine.OrderStatus(st)
			if r.status < engine.StatusPending || r.status > engine.StatusExpired {
				return fail("order status", fmt.Errorf("status %d", st))
			}
			t = append(t, r)
		}
		refs[p] = t
	}
	// The buyer table is rebuilt from the orders; read past it.
	buyers, err := count(legacyCountMax)
	if err != nil {
		return fail("buyers", err)
	}
	for i := uint64(0); i < 3*buyers; i++ {
		if _, err := binary.ReadUvarint(br); err != nil {
			return fail("buyer", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.arena) != 0 || s.orders.Load() != 0 {
		return errors.New("load order store snapshot: the store is not empty")
	}
	if err := s.replaceLegacyLocked(arena, &refs); err != nil {
		return fail("orders", err)
	}
	return nil
}

// replaceLegacyLocked places the orders of a legacy arena again, in arena
// order, which is journal order. The arena's records are orders and buyer
// ids without a tag: a record is an order when a partition's next entry
// points at it. REQUIRES: s.mu held for writing.
func (s *Store) replaceLegacyLocked(arena [][]byte, refs *[partitionsMax][]orderRef) error {
	var next [partitionsMax]int
	heads := make(map[uint64]int) // arena offset+1 of each partition's next order
	for p := range refs {
		if len(refs[p]) > 0 {
			heads[refs[p][0].offset] = p
		}
	}
	var body []byte
	for i, data := range arena {
		for off := 0; off < len(data); {
			n, k := binary.Uvarint(data[off:])
			if k <= 0 || n > uint64(len(data)-off-k) {
				return fmt.Errorf("chunk %d offset %d: bad record length", i, off)
			}
			record := data[off+k : off+k+int(n)]
			at := uint64(i)<<32 | uint64(off) + 1
			off += k + int(n)
			p, ok := heads[at]
			if !ok {
				continue // a buyer id
			}
			delete(heads, at)
			r := refs[p][next[p]]
			next[p]++
			if next[p] < len(refs[p]) {
				heads[refs[p][next[p]].offset] = p
			}
			body = binary.AppendUvarint(body[:0], uint64(p))
			body = append(body, record...)
			if !validRecord(body) {
				return fmt.Errorf("partition %d order %d: corrupt record", p, next[p])
			}
			l, k2 := binary.Uvarint(record)
			buyerID := string(record[k2 : k2+int(l)])
			t := s.mu.partitions[p]
			if t == nil {
				t = &partitionTable{}
				s.mu.partitions[p] = t
			}
			recordOff := s.appendArenaLocked(body)
			bi, _ := s.buyerLocked(buyerID, true, buyerNameOffset(recordOff, len(body), p))
			b := &s.mu.buyers[bi]
			t.refs = append(t.refs, orderRef{offset: recordOff + 1, changedAt: r.changedAt, prevByBuyer: b.newest, buyer: bi, status: r.status})
			b.newest = orderIDOf(p, uint64(len(t.refs)))
			b.count++
			s.orders.Add(1)
		}
	}
	if len(heads) != 0 {
		return fmt.Errorf("%d partitions name orders past the arena", len(heads))
	}
	return nil
}

// readBytes reads n bytes, allocating as they arrive rather than all at
// once, so that a damaged length cannot allocate more than the input holds
// plus a chunk.
func readBytes(r io.Reader, n uint64) ([]byte, error) {
	b := make([]byte, 0, min(n, arenaChunkBytes))
	for uint64(len(b)) < n {
		k := int(min(n-uint64(len(b)), arenaChunkBytes))
		b = slices.Grow(b, k)
		m, err := io.ReadFull(r, b[len(b):len(b)+k])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}
