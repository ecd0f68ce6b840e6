package orderstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
)

// A store snapshot lets a restart resume following the journal from the
// snapshot's position instead of its start, so the engine may delete the
// segments before it. Layout (varints as in encoding/binary):
//
//	magic "FESTOS01"
//	uvarint chunks, per chunk: uvarint length, bytes          (the arena)
//	uvarint tables, per table: uvarint partition, uvarint n,
//	  n × (uvarint offset, varint changed_at, uvarint prev_by_buyer, u8 status)
//	uvarint buyers, per buyer: uvarint name, uvarint newest, uvarint count
const storeSnapshotMagic = "FESTOS01"

// ErrBadSnapshot is returned by LoadSnapshot for a snapshot that does not
// decode.
var ErrBadSnapshot = errors.New("bad order store snapshot")

// WriteSnapshot writes the store's state, as of Applied, to w. Call it from
// the goroutine that feeds Apply, between records.
func (s *Store) WriteSnapshot(w io.Writer) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	bw := bufio.NewWriterSize(w, 1<<20)
	var scratch []byte
	put := func(b []byte) { bw.Write(b) }
	uv := func(v uint64) { scratch = binary.AppendUvarint(scratch[:0], v); put(scratch) }
	put([]byte(storeSnapshotMagic))
	uv(uint64(len(s.mu.arena)))
	for _, c := range s.mu.arena {
		uv(uint64(len(c)))
		put(c)
	}
	tables := 0
	for _, t := range s.mu.partitions {
		if t != nil {
			tables++
		}
	}
	uv(uint64(tables))
	for p, t := range s.mu.partitions {
		if t == nil {
			continue
		}
		uv(uint64(p))
		uv(uint64(len(t.refs)))
		for _, r := range t.refs {
			scratch = binary.AppendUvarint(scratch[:0], r.offset)
			scratch = binary.AppendVarint(scratch, r.changedAt)
			scratch = binary.AppendUvarint(scratch, uint64(r.prevByBuyer))
			scratch = append(scratch, byte(r.status))
			put(scratch)
		}
	}
	uv(uint64(len(s.mu.buyers)))
	for _, b := range s.mu.buyers {
		scratch = binary.AppendUvarint(scratch[:0], b.name)
		scratch = binary.AppendUvarint(scratch, uint64(b.newest))
		scratch = binary.AppendUvarint(scratch, uint64(b.count))
		put(scratch)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write order store snapshot: %w", err)
	}
	return nil
}

// LoadSnapshot restores a new store (not yet started) from r, as of journal
// position pos; following then resumes after pos.
func (s *Store) LoadSnapshot(r io.Reader, pos uint64) error {
	br := bufio.NewReaderSize(r, 1<<20)
	fail := func(what string, err error) error {
		return fmt.Errorf("%w: %s: %v", ErrBadSnapshot, what, err)
	}
	magic := make([]byte, len(storeSnapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != storeSnapshotMagic {
		return fail("magic", err)
	}
	count := func(what string, max uint64) (uint64, error) {
		v, err := binary.ReadUvarint(br)
		if err != nil || v > max {
			return 0, fail(what, err)
		}
		return v, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	chunks, err := count("chunks", 1<<32)
	if err != nil {
		return err
	}
	for i := uint64(0); i < chunks; i++ {
		n, err := count("chunk length", 1<<40)
		if err != nil {
			return err
		}
		c := make([]byte, n, max(n, arenaChunkBytes))
		if _, err := io.ReadFull(br, c); err != nil {
			return fail("chunk", err)
		}
		s.mu.arena = append(s.mu.arena, c)
		s.arenaBytes.Add(n)
	}
	tables, err := count("tables", partitionsMax)
	if err != nil {
		return err
	}
	for i := uint64(0); i < tables; i++ {
		p, err := count("partition", partitionsMax-1)
		if err != nil {
			return err
		}
		n, err := count("orders", 1<<52)
		if err != nil {
			return err
		}
		t := &partitionTable{refs: make([]orderRef, 0, n)}
		for j := uint64(0); j < n; j++ {
			var r orderRef
			r.offset, err = binary.ReadUvarint(br)
			if err == nil {
				r.changedAt, err = binary.ReadVarint(br)
			}
			var prev uint64
			if err == nil {
				prev, err = binary.ReadUvarint(br)
			}
			var st byte
			if err == nil {
				st, err = br.ReadByte()
			}
			if err != nil {
				return fail("order", err)
			}
			r.prevByBuyer, r.status = engineOrderID(prev), orderStatus(st)
			t.refs = append(t.refs, r)
		}
		s.mu.partitions[p] = t
		s.orders.Add(n)
	}
	buyers, err := count("buyers", 1<<40)
	if err != nil {
		return err
	}
	for i := uint64(0); i < buyers; i++ {
		var b buyer
		var newest, cnt uint64
		b.name, err = binary.ReadUvarint(br)
		if err == nil {
			newest, err = binary.ReadUvarint(br)
		}
		if err == nil {
			cnt, err = binary.ReadUvarint(br)
		}
		if err != nil || b.name>>32 >= uint64(len(s.mu.arena)) {
			return fail("buyer", err)
		}
		b.newest, b.count = engineOrderID(newest), uint32(cnt)
		s.mu.buyers = append(s.mu.buyers, b)
		// The hash seed is this process's: index the names anew.
		idx := uint32(len(s.mu.buyers) - 1)
		name := s.arenaString(b.name)
		b.check = maphash.String(s.checkSeed, name)
		s.mu.buyers[idx].check = b.check
		h := maphash.String(s.seed, name)
		if _, taken := s.mu.buyerByHash[h]; taken {
			s.mu.buyerCollisions[name] = idx
		} else {
			s.mu.buyerByHash[h] = idx
		}
	}
	s.applied.Store(pos)
	// Wake readers already waiting for a position the snapshot covers.
	close(s.mu.advanced)
	s.mu.advanced = make(chan struct{})
	return nil
}
