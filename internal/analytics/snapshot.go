package analytics

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/fest-platform/fest/internal/engine"
)

// A GMV snapshot lets a restart resume following the journal after it. It
// holds only the running totals; each order's total, which a payment adds to
// the GMV, is not stored again but rebuilt from the order store loaded from
// the same projection snapshot (whose arena holds it), so the snapshot costs
// the same after a billion orders as after one.
//
// Layout: magic "FESTGM02", varint gmv, uvarint placed, uvarint paid.
const gmvSnapshotMagic = "FESTGM02"

// ErrBadSnapshot is returned by LoadSnapshot for a snapshot that does not
// decode.
var ErrBadSnapshot = errors.New("bad GMV snapshot")

// WriteSnapshot writes the totals to w. Call it from the goroutine that
// feeds Apply, between records.
func (a *Analytics) WriteSnapshot(w io.Writer) error {
	b := append([]byte(nil), gmvSnapshotMagic...)
	b = binary.AppendVarint(b, a.gmv.Load())
	b = binary.AppendUvarint(b, a.placed.Load())
	b = binary.AppendUvarint(b, a.paid.Load())
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write gmv snapshot: %w", err)
	}
	return nil
}

// Staged is a GMV snapshot loaded to the side of the projection it was
// staged for: none of it is visible to that projection's readers until
// Install, so that a projection snapshot the runner rejects after this
// section loaded (something follows the sections) is never served and then
// taken back.
type Staged struct {
	target            *Analytics
	totals            [][]int64 // nil once installed
	gmv               int64
	placed, paid, pos uint64
}

// StageSnapshot loads the snapshot at the start of r, as of journal position
// pos, with every order placed up to pos and its total from orders, in
// sequence order within each partition; a is not touched. r is read only up
// to the end of the snapshot when it is a *bufio.Reader. A Staged that is not
// installed is simply dropped.
func (a *Analytics) StageSnapshot(r io.Reader, pos uint64, orders iter.Seq2[engine.OrderID, int64]) (*Staged, error) {
	st := &Staged{target: a, totals: make([][]int64, len(a.totals)), pos: pos}
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(gmvSnapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || (string(magic) != gmvSnapshotMagic && string(magic) != legacyGMVSnapshotMagic) {
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
	var restored uint64
	if string(magic) == legacyGMVSnapshotMagic {
		if restored, err = loadLegacyTotals(st.totals, br, orders); err != nil {
			return nil, err
		}
	} else {
		for id, total := range orders {
			p, seq := id.Partition(), id.Seq()
			if p >= len(st.totals) || seq != uint64(len(st.totals[p]))+1 {
				return nil, fmt.Errorf("%w: order %v out of sequence (partition holds %d)", ErrBadSnapshot, id, len(st.totals[min(p, len(st.totals)-1)]))
			}
			st.totals[p] = append(st.totals[p], total)
			restored++
		}
	}
	if restored != st.placed || st.paid > st.placed {
		return nil, fmt.Errorf("%w: %d orders placed and %d paid, but the order store holds %d", ErrBadSnapshot, st.placed, st.paid, restored)
	}
	return st, nil
}

// Install makes the staged snapshot the projection's totals and wakes the
// readers waiting for a position it covers. Call it from the goroutine that
// will feed Apply, before it does: a must be the projection st was staged
// for, empty, and st not installed before; anything else is a bug of the
// caller, and panics.
func (a *Analytics) Install(st *Staged) {
	if st.target != a || st.totals == nil {
		panic(fmt.Sprintf("analytics: snapshot at %d installed twice or into another projection than it was staged for", st.pos))
	}
	if !a.empty() || a.applied.Load() != 0 {
		panic(fmt.Sprintf("analytics: snapshot at %d installed into a projection at %d holding %d orders", st.pos, a.applied.Load(), a.placed.Load()))
	}
	a.totals, st.totals = st.totals, nil
	a.gmv.Store(st.gmv)
	a.placed.Store(st.placed)
	a.paid.Store(st.paid)
	a.applied.Store(st.pos)
	// Wake readers already waiting for a position the snapshot covers.
	a.appliedMu.Lock()
	close(a.advanced)
	a.advanced = make(chan struct{})
	a.appliedMu.Unlock()
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

// LoadSnapshot restores an empty projection (not yet fed) from r, as of
// journal position pos: StageSnapshot then Install. After an error the
// projection is unchanged.
func (a *Analytics) LoadSnapshot(r io.Reader, pos uint64, orders iter.Seq2[engine.OrderID, int64]) error {
	if !a.empty() || a.applied.Load() != 0 {
		return errors.New("load gmv snapshot: the projection is not empty")
	}
	st, err := a.StageSnapshot(r, pos, orders)
	if err != nil {
		return err
	}
	a.Install(st)
	return nil
}

// legacyGMVSnapshotMagic opens the GMV snapshots written before the
// per-order totals were rebuilt from the order store: the same totals
// followed by every order's total, per partition (uvarint tables, per table:
// uvarint partition, uvarint n, n × varint total). They are still loaded, so
// that a data directory from before the change keeps its projections.
const legacyGMVSnapshotMagic = "FESTGM01"

// loadLegacyTotals reads the per-order totals of a legacy snapshot into
// totals (empty, one table per partition) and checks them against the order
// store's, returning how many there are.
func loadLegacyTotals(totals [][]int64, br *bufio.Reader, orders iter.Seq2[engine.OrderID, int64]) (uint64, error) {
	tables, err := binary.ReadUvarint(br)
	if err != nil || tables > uint64(len(totals)) {
		return 0, fmt.Errorf("%w: legacy tables: %v", ErrBadSnapshot, err)
	}
	for i := uint64(0); i < tables; i++ {
		p, err := binary.ReadUvarint(br)
		var n uint64
		if err == nil {
			n, err = binary.ReadUvarint(br)
		}
		if err != nil || p >= uint64(len(totals)) || len(totals[p]) != 0 {
			return 0, fmt.Errorf("%w: legacy table: %v", ErrBadSnapshot, err)
		}
		for j := uint64(0); j < n; j++ {
			v, err := binary.ReadVarint(br)
			if err != nil {
				return 0, fmt.Errorf("%w: legacy total: %v", ErrBadSnapshot, err)
			}
			totals[p] = append(totals[p], v)
		}
	}
	var restored uint64
	for id, total := range orders {
		p, seq := id.Partition(), id.Seq()
		if p >= len(totals) || seq == 0 || seq > uint64(len(totals[p])) || totals[p][seq-1] != total {
			return 0, fmt.Errorf("%w: order %v: its total differs from the order store's", ErrBadSnapshot, id)
		}
		restored++
	}
	var held uint64
	for _, t := range totals {
		held += uint64(len(t))
	}
	if held != restored {
		return 0, fmt.Errorf("%w: %d legacy totals for %d orders", ErrBadSnapshot, held, restored)
	}
	return restored, nil
}
