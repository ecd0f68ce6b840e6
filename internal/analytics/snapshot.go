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

// LoadSnapshot restores an empty projection (not yet fed) from r, as of
// journal position pos, with every order placed up to pos and its total
// from orders, in sequence order within each partition. r is read only up
// to the end of the snapshot when it is a *bufio.Reader. After an error the
// projection holds part of the snapshot: Reset it before trying another.
func (a *Analytics) LoadSnapshot(r io.Reader, pos uint64, orders iter.Seq2[engine.OrderID, int64]) error {
	for _, t := range a.totals {
		if len(t) != 0 || a.placed.Load() != 0 {
			return errors.New("load gmv snapshot: the projection is not empty")
		}
	}
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(gmvSnapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || (string(magic) != gmvSnapshotMagic && string(magic) != legacyGMVSnapshotMagic) {
		return fmt.Errorf("%w: magic %q: %v", ErrBadSnapshot, magic, err)
	}
	gmv, err := binary.ReadVarint(br)
	var placed, paid uint64
	if err == nil {
		placed, err = binary.ReadUvarint(br)
	}
	if err == nil {
		paid, err = binary.ReadUvarint(br)
	}
	if err != nil {
		return fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	var restored uint64
	if string(magic) == legacyGMVSnapshotMagic {
		if restored, err = a.loadLegacyTotals(br, orders); err != nil {
			return err
		}
	} else {
		for id, total := range orders {
			p, seq := id.Partition(), id.Seq()
			if p >= len(a.totals) || seq != uint64(len(a.totals[p]))+1 {
				return fmt.Errorf("%w: order %v out of sequence (partition holds %d)", ErrBadSnapshot, id, len(a.totals[min(p, len(a.totals)-1)]))
			}
			a.totals[p] = append(a.totals[p], total)
			restored++
		}
	}
	if restored != placed || paid > placed {
		return fmt.Errorf("%w: %d orders placed and %d paid, but the order store holds %d", ErrBadSnapshot, placed, paid, restored)
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

// legacyGMVSnapshotMagic opens the GMV snapshots written before the
// per-order totals were rebuilt from the order store: the same totals
// followed by every order's total, per partition (uvarint tables, per table:
// uvarint partition, uvarint n, n × varint total). They are still loaded, so
// that a data directory from before the change keeps its projections.
const legacyGMVSnapshotMagic = "FESTGM01"

// loadLegacyTotals reads the per-order totals of a legacy snapshot and
// checks them against the order store's, returning how many there are.
func (a *Analytics) loadLegacyTotals(br *bufio.Reader, orders iter.Seq2[engine.OrderID, int64]) (uint64, error) {
	tables, err := binary.ReadUvarint(br)
	if err != nil || tables > uint64(len(a.totals)) {
		return 0, fmt.Errorf("%w: legacy tables: %v", ErrBadSnapshot, err)
	}
	for i := uint64(0); i < tables; i++ {
		p, err := binary.ReadUvarint(br)
		var n uint64
		if err == nil {
			n, err = binary.ReadUvarint(br)
		}
		if err != nil || p >= uint64(len(a.totals)) || len(a.totals[p]) != 0 {
			return 0, fmt.Errorf("%w: legacy table: %v", ErrBadSnapshot, err)
		}
		for j := uint64(0); j < n; j++ {
			v, err := binary.ReadVarint(br)
			if err != nil {
				return 0, fmt.Errorf("%w: legacy total: %v", ErrBadSnapshot, err)
			}
			a.totals[p] = append(a.totals[p], v)
		}
	}
	var restored uint64
	for id, total := range orders {
		p, seq := id.Partition(), id.Seq()
		if p >= len(a.totals) || seq == 0 || seq > uint64(len(a.totals[p])) || a.totals[p][seq-1] != total {
			return 0, fmt.Errorf("%w: order %v: its total differs from the order store's", ErrBadSnapshot, id)
		}
		restored++
	}
	var held uint64
	for _, t := range a.totals {
		held += uint64(len(t))
	}
	if held != restored {
		return 0, fmt.Errorf("%w: %d legacy totals for %d orders", ErrBadSnapshot, held, restored)
	}
	return restored, nil
}

// Reset empties a projection that nothing feeds yet, so that a snapshot
// that failed to load half-way leaves nothing behind before the next
// attempt.
func (a *Analytics) Reset() {
	for i := range a.totals {
		a.totals[i] = nil
	}
	a.gmv.Store(0)
	a.placed.Store(0)
	a.paid.Store(0)
	a.lastAt.Store(0)
	a.applied.Store(0)
}
