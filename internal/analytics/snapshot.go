package analytics

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A GMV snapshot lets a restart resume following the journal after it.
// Layout: magic "FESTGM01", varint gmv, uvarint placed, uvarint paid,
// uvarint tables, per table: uvarint partition, uvarint n, n × varint total.
const gmvSnapshotMagic = "FESTGM01"

// ErrBadSnapshot is returned by LoadSnapshot for a snapshot that does not
// decode.
var ErrBadSnapshot = errors.New("bad GMV snapshot")

// WriteSnapshot writes the totals to w. Call it from the goroutine that
// feeds Apply, between records.
func (a *Analytics) WriteSnapshot(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var b []byte
	b = append(b, gmvSnapshotMagic...)
	b = binary.AppendVarint(b, a.gmv.Load())
	b = binary.AppendUvarint(b, a.placed.Load())
	b = binary.AppendUvarint(b, a.paid.Load())
	tables := 0
	for _, t := range a.totals {
		if len(t) > 0 {
			tables++
		}
	}
	b = binary.AppendUvarint(b, uint64(tables))
	bw.Write(b)
	for p, t := range a.totals {
		if len(t) == 0 {
			continue
		}
		b = binary.AppendUvarint(b[:0], uint64(p))
		b = binary.AppendUvarint(b, uint64(len(t)))
		for _, v := range t {
			b = binary.AppendVarint(b, v)
			if len(b) > 64<<10 {
				bw.Write(b)
				b = b[:0]
			}
		}
		bw.Write(b)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write gmv snapshot: %w", err)
	}
	return nil
}

// LoadSnapshot restores a new projection (not yet started) from r, as of
// journal position pos.
func (a *Analytics) LoadSnapshot(r io.Reader, pos uint64) error {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(gmvSnapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != gmvSnapshotMagic {
		return fmt.Errorf("%w: magic", ErrBadSnapshot)
	}
	gmv, err := binary.ReadVarint(br)
	var placed, paid, tables uint64
	if err == nil {
		placed, err = binary.ReadUvarint(br)
	}
	if err == nil {
		paid, err = binary.ReadUvarint(br)
	}
	if err == nil {
		tables, err = binary.ReadUvarint(br)
	}
	if err != nil || tables > uint64(len(a.totals)) {
		return fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	for i := uint64(0); i < tables; i++ {
		p, err := binary.ReadUvarint(br)
		var n uint64
		if err == nil {
			n, err = binary.ReadUvarint(br)
		}
		if err != nil || p >= uint64(len(a.totals)) || n > 1<<52 {
			return fmt.Errorf("%w: table: %v", ErrBadSnapshot, err)
		}
		t := make([]int64, 0, n)
		for j := uint64(0); j < n; j++ {
			v, err := binary.ReadVarint(br)
			if err != nil {
				return fmt.Errorf("%w: total: %v", ErrBadSnapshot, err)
			}
			t = append(t, v)
		}
		a.totals[p] = t
	}
	a.gmv.Store(gmv)
	a.placed.Store(placed)
	a.paid.Store(paid)
	a.applied.Store(pos)
	// Wake readers already waiting for a position the snapshot covers.
	a.appliedMu.Lock()
	close(a.advanced)
	a.advanced = make(chan struct{})
	a.appliedMu.Unlock()
	return nil
}
