package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/fest-platform/fest/internal/journal"
)

// Taking a snapshot.
//
// The cost on the hot path is bounded by one partition: the snapshot
// goroutine asks the owning worker for one partition at a time, the worker
// encodes it between two batches (into one buffer reused for every
// partition), and the goroutine streams it into the snapshot file through
// journal.Snapshots.WriteFrom before asking for the next. So a worker stops
// applying for the time one partition takes to encode, never for all of its
// partitions, and the whole state is never held in memory twice.
//
// The partitions are encoded one after another, each at the journal's end as
// its worker reads it, so positions never decrease in partition order: the
// first partition's position is the smallest, and names the file.

// partitionSnapshot asks a worker for one partition's state. A snapshot
// reuses one for all partitions.
type partitionSnapshot struct {
	part *partition
	buf  []byte           // the encoded state, reused
	pos  journal.Position // the journal position the state includes
	done chan struct{}    // signalled (buffered, 1) once buf and pos are set
}

// snapshotPart encodes the requested partition. It runs on the owning
// worker between two batches: every record of this worker has been appended
// (positions are given at Append), and no other worker's record holds events
// of its partitions, so the state is that of the whole journal so far. Using
// the journal's end, not this worker's last record, lets an idle worker's
// partitions keep up, so old segments can go.
func (w *worker) snapshotPart(req *partitionSnapshot) {
	if w.cp != nil && req.part != w.parts[0] || w.cp == nil && req.part.id%w.e.cfg.Workers != w.id {
		panic(fmt.Sprintf("engine: worker %d asked to snapshot partition %d, which it does not own", w.id, req.part.id))
	}
	req.buf = encodePartition(req.buf[:0], req.part)
	req.pos = w.journal.End()
	req.done <- struct{}{}
}

// maybeSnapshot starts a background snapshot when the journal has grown by
// SnapshotEveryBytes since the last attempt. An attempt that fails is
// retried only after another SnapshotEveryBytes, so a failing disk costs one
// attempt per interval, not one per batch. Only workers call it, so once
// Close has stopped them no snapshot can start.
func (e *Engine) maybeSnapshot(end journal.Position) {
	every := e.cfg.SnapshotEveryBytes
	// Another worker's record may end before the last attempt's position:
	// compare without subtracting.
	if every < 0 || e.snapshots == nil || uint64(end) < e.lastSnapshotAttempt.Load()+uint64(every) {
		return
	}
	if e.closing.Load() || !e.snapshotRunning.CompareAndSwap(false, true) {
		return
	}
	e.snapshotWG.Add(1)
	go func() {
		defer e.snapshotWG.Done()
		defer e.snapshotRunning.Store(false)
		if err := e.snapshot(); err != nil && !errors.Is(err, ErrClosed) {
			e.cfg.Logger.Error("background snapshot failed; the next attempt follows another SnapshotEveryBytes of journal",
				"err", err, "snapshot_every_bytes", every)
		}
	}()
}

// Snapshotting reports whether a snapshot is being written: benchmarks
// measure the latency of acknowledgements during one.
func (e *Engine) Snapshotting() bool { return e.snapshotting.Load() }

// Snapshot writes a snapshot now; the journal before the oldest snapshot kept
// may then be removed.
func (e *Engine) Snapshot() error {
	if e.cluster != nil {
		return e.snapshotCluster()
	}
	if e.snapshots == nil {
		return fmt.Errorf("snapshot: engine has no data directory")
	}
	if e.closing.Load() {
		return ErrClosed
	}
	return e.snapshot()
}

// snapshot takes a snapshot through the running workers.
func (e *Engine) snapshot() error {
	e.snapshotMu.Lock()
	defer e.snapshotMu.Unlock()
	req := &e.snapshotReq
	encode := func(p int) error {
		w := e.workers[p%len(e.workers)]
		req.part = e.core.partitions[p]
		select {
		case w.snapshots <- req:
		case <-w.exited:
			return fmt.Errorf("snapshot partition %d: %w", p, ErrClosed)
		}
		select {
		case <-req.done:
		case <-w.exited:
			// The worker may have served the request just before it left.
			select {
			case <-req.done:
			default:
				// The request stays in the worker's channel, never served:
				// drop it so that the next snapshot finds the channel empty.
				select {
				case <-w.snapshots:
				default:
				}
				return fmt.Errorf("snapshot partition %d: %w", p, ErrClosed)
			}
		}
		if e.snapshotHook != nil {
			e.snapshotHook(p)
		}
		return nil
	}
	return e.writeSnapshot(req, encode)
}

// snapshotStopped takes the final snapshot of Close, on the calling
// goroutine: the workers have stopped, so their state is still.
func (e *Engine) snapshotStopped() error {
	e.snapshotMu.Lock()
	defer e.snapshotMu.Unlock()
	req := &e.snapshotReq
	return e.writeSnapshot(req, func(p int) error {
		req.part = e.core.partitions[p]
		req.buf = encodePartition(req.buf[:0], req.part)
		req.pos = e.journal.End()
		return nil
	})
}

// writeSnapshot streams the partitions that encode(p) puts into req into one
// snapshot file, waits until every position it claims is durable, publishes
// it, and removes the journal no snapshot kept (nor RetainFrom) still needs.
// The caller holds snapshotMu.
func (e *Engine) writeSnapshot(req *partitionSnapshot, encode func(p int) error) (err error) {
	e.lastSnapshotAttempt.Store(uint64(e.journal.End()))
	e.snapshotting.Store(true)
	defer func() {
		e.snapshotting.Store(false)
		if err != nil && !errors.Is(err, ErrClosed) {
			e.stats.SnapshotFailures.Add(1)
		}
	}()
	n := len(e.core.partitions)
	if err := encode(0); err != nil {
		return err
	}
	first := req.pos
	var scratch [binary.MaxVarintLen64 + 8]byte
	err = e.snapshots.WriteFrom(first, func(w io.Writer) error {
		head := append([]byte(snapshotMagic), snapshotVersion)
		head = binary.AppendUvarint(head, uint64(n))
		if _, err := w.Write(head); err != nil {
			return err
		}
		for p := 0; p < n; p++ {
			if p > 0 {
				if err := encode(p); err != nil {
					return err
				}
			}
			if req.pos < first {
				panic(fmt.Sprintf("engine: snapshot partition %d at journal position %d, before partition 0 at %d: positions must not decrease", p, req.pos, first))
			}
			b := binary.LittleEndian.AppendUint64(scratch[:0], uint64(req.pos))
			b = binary.AppendUvarint(b, uint64(len(req.buf)))
			if _, err := w.Write(b); err != nil {
				return err
			}
			if _, err := w.Write(req.buf); err != nil {
				return err
			}
		}
		// Every position must be durable before a snapshot may claim it.
		durable := make(chan error, 1)
		if _, err := e.journal.Append(nil, func(err error) { durable <- err }); err != nil {
			return fmt.Errorf("journal barrier: %w", err)
		}
		if err := <-durable; err != nil {
			return fmt.Errorf("journal barrier: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write snapshot at %d: %w", first, err)
	}
	e.stats.Snapshots.Add(1)
	return e.retainJournal()
}

// retainJournal removes the journal segments that no kept snapshot and no
// consumer (RetainFrom) needs. Recovery may fall back to the oldest snapshot
// kept, whose file is named by its smallest partition position, so the
// journal is kept from there on.
func (e *Engine) retainJournal() error {
	kept, err := e.snapshots.List()
	if err != nil {
		return fmt.Errorf("list snapshots for retention: %w", err)
	}
	if len(kept) == 0 {
		panic("engine: no snapshot listed right after one was written")
	}
	remove := kept[len(kept)-1] // newest first: the last is the oldest
	if e.cfg.RetainFrom != nil {
		remove = min(remove, journal.Position(e.cfg.RetainFrom()))
	}
	if err := e.journal.RemoveBefore(remove); err != nil {
		return fmt.Errorf("remove journal before %d: %w", remove, err)
	}
	return nil
}
