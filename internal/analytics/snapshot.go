package analytics

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/fest-platform/fest/internal/projection"
)

// A GMV snapshot lets a restart resume following the journal after it: the
// running totals and every order's total (which a payment adds to the GMV).
//
// Layout: magic "FESTGM03", varint gmv, uvarint placed, uvarint paid,
// uvarint tables, per table: uvarint partition, uvarint n, n × varint total.
const gmvSnapshotMagic = "FESTGM03"

// ErrBadSnapshot is returned by StageSnapshot for a snapshot that does not
// decode.
var ErrBadSnapshot = fmt.Errorf("gmv: %w", projection.ErrBadSnapshot)

// Name implements projection.Projection.
func (a *Analytics) Name() string { return "gmv" }

// Commit implements projection.Projection.
func (a *Analytics) Commit(pos uint64, at int64) {
	a.applied.Store(pos)
	a.appliedMu.Lock()
	close(a.advanced)
	a.advanced = make(chan struct{})
	a.appliedMu.Unlock()
}

// Abort implements projection.Projection; Apply holds nothing.
func (a *Analytics) Abort() {}

// SnapshotDurable implements projection.Projection; the snapshot is whole.
func (a *Analytics) SnapshotDurable() {}

// WriteSnapshot writes the totals to w. Call it from the goroutine that
// feeds Apply, between records.
func (a *Analytics) WriteSnapshot(w io.Writer, _ projection.Files) error {
	b := append([]byte(nil), gmvSnapshotMagic...)
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
	for p, t := range a.totals {
		if len(t) == 0 {
			continue
		}
		b = binary.AppendUvarint(b, uint64(p))
		b = binary.AppendUvarint(b, uint64(len(t)))
		for _, v := range t {
			b = binary.AppendVarint(b, v)
		}
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write gmv snapshot: %w", err)
	}
	return nil
}

// Staged is a GMV snapshot loaded to the side of the projection it was
// staged for: none of it is visible until Install.
type Staged struct {
	target            *Analytics
	totals            [][]int64 // nil once installed
	gmv               int64
	placed, paid, pos uint64
}

// StageSnapshot loads the snapshot in r, as of journal position pos; a is
// not touched.
func (a *Analytics) StageSnapshot(r io.Reader, pos uint64, _ projection.Files) (projection.Staged, error) {
	st := &Staged{target: a, totals: make([][]int64, len(a.totals)), pos: pos}
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(gmvSnapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != gmvSnapshotMagic {
		return nil, fmt.Errorf("%w: magic %q: %v", ErrBadSnapshot, magic, err)
	}
	var err error
	st.gmv, err = binary.ReadVarint(br)
	if err == nil {
		st.placed, err = binary.ReadUvarint(br)
	}
	if err == nil {
		st.paid, err = binary.ReadUvarint(br)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	tables, err := binary.ReadUvarint(br)
	if err != nil || tables > uint64(len(st.totals)) {
		return nil, fmt.Errorf("%w: tables: %v", ErrBadSnapshot, err)
	}
	var held uint64
	for i := uint64(0); i < tables; i++ {
		p, err := binary.ReadUvarint(br)
		var n uint64
		if err == nil {
			n, err = binary.ReadUvarint(br)
		}
		if err != nil || p >= uint64(len(st.totals)) || len(st.totals[p]) != 0 || n > st.placed {
			return nil, fmt.Errorf("%w: table: %v", ErrBadSnapshot, err)
		}
		for j := uint64(0); j < n; j++ {
			v, err := binary.ReadVarint(br)
			if err != nil {
				return nil, fmt.Errorf("%w: total: %v", ErrBadSnapshot, err)
			}
			st.totals[p] = append(st.totals[p], v)
		}
		held += n
	}
	if held != st.placed || st.paid > st.placed {
		return nil, fmt.Errorf("%w: %d orders placed and %d paid, but %d totals", ErrBadSnapshot, st.placed, st.paid, held)
	}
	return st, nil
}

// Install makes the staged snapshot the projection's totals.
func (st *Staged) Install() {
	a := st.target
	if st.totals == nil {
		panic(fmt.Sprintf("analytics: snapshot at %d installed twice", st.pos))
	}
	if !a.empty() || a.applied.Load() != 0 {
		panic(fmt.Sprintf("analytics: snapshot at %d installed into a projection at %d holding %d orders", st.pos, a.applied.Load(), a.placed.Load()))
	}
	a.totals, st.totals = st.totals, nil
	a.gmv.Store(st.gmv)
	a.placed.Store(st.placed)
	a.paid.Store(st.paid)
	a.applied.Store(st.pos)
}

// empty reports whether nothing was applied or installed yet.
func (a *Analytics) empty() bool {
	if a.placed.Load() != 0 {
		return false
	}
	for _, t := range a.totals {
		if len(t) != 0 {
			return false
		}
	}
	return true
}
