package engine

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fest-platform/fest/internal/journal"
)

// Snapshots in cluster mode are of one partition each, at its own stream
// sequence, written by the partition's owner into the partition's store
// (a JetStream object store: every node can load it). The partition's
// state is encoded as in a whole-engine snapshot (encodePartition), by its
// worker between two batches; the layout around it:
//
//	magic "FESTPART" | u8 version | uvarint partition | u64 position |
//	uvarint length | partition bytes
//
// The version is that of the partition encoding (snapshotVersion).
const partSnapshotMagic = "FESTPART"

// clusterSnapshotTimeout bounds writing one partition's snapshot.
const clusterSnapshotTimeout = 5 * time.Minute

// maybeSnapshot runs on the worker after each record: once the partition's
// journal has grown by SnapshotEveryBytes since the last snapshot began, it
// starts one in the background.
func (cp *clusterPartition) maybeSnapshot(w *worker, recordBytes int) {
	every := cp.e.cfg.Cluster.SnapshotEveryBytes
	if every < 0 || cp.snaps == nil {
		return
	}
	cp.bytesSinceSnapshot += int64(recordBytes)
	if cp.bytesSinceSnapshot < every || cp.e.closing.Load() || !cp.snapshotRunning.CompareAndSwap(false, true) {
		return
	}
	cp.bytesSinceSnapshot = 0
	cp.snapshotWG.Add(1)
	ctx := cp.snapshotCtx // cancelled when the partition stops being served
	go func() {
		defer cp.snapshotWG.Done()
		defer cp.snapshotRunning.Store(false)
		if err := cp.snapshot(ctx, w); err != nil && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
			cp.e.cfg.Logger.Error("background snapshot of a partition failed; the next attempt follows another SnapshotEveryBytes of its journal",
				"node", cp.e.cfg.Cluster.Node, "partition", cp.id, "err", err)
		}
	}()
}

// snapshotCluster snapshots every partition served here, one after
// another (Engine.Snapshot in cluster mode).
func (e *Engine) snapshotCluster() error { return e.SnapshotPartitions(context.Background()) }

// SnapshotPartitions snapshots every partition served here, one after
// another, until ctx ends (in cluster mode; a planned stop bounds its
// final snapshots this way).
func (e *Engine) SnapshotPartitions(ctx context.Context) error {
	if e.cfg.Cluster == nil {
		return ErrNotCluster
	}
	if e.closing.Load() {
		return ErrClosed
	}
	var errs []error
	for _, cp := range e.cluster {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("snapshot partition %d: %w", cp.id, ctx.Err()))
			break
		}
		cp.mu.Lock()
		if w := cp.worker; w != nil && cp.snaps != nil {
			if err := cp.snapshot(ctx, w); err != nil {
				errs = append(errs, err)
			}
		}
		cp.mu.Unlock()
	}
	return errors.Join(errs...)
}

// snapshot has the partition encoded by its worker w, between two batches,
// and writes it, until ctx ends.
func (cp *clusterPartition) snapshot(ctx context.Context, w *worker) error {
	cp.snapshotMu.Lock()
	defer cp.snapshotMu.Unlock()
	req := &cp.snapshotReq
	req.part = cp.e.core.partitions[cp.id]
	select {
	case w.snapshots <- req:
	case <-w.exited:
		return fmt.Errorf("snapshot partition %d: %w", cp.id, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("snapshot partition %d: %w", cp.id, ctx.Err())
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		select {
		case <-w.snapshots: // never served: taken back
			return fmt.Errorf("snapshot partition %d: %w", cp.id, ctx.Err())
		default:
		}
		// The worker took the request and encodes it between two batches,
		// which is quick; req must not be reused before that is done.
		select {
		case <-req.done:
		case <-w.exited:
			select {
			case <-req.done: // served as the worker left: no stale signal kept
			default:
			}
		}
		return fmt.Errorf("snapshot partition %d: %w", cp.id, ctx.Err())
	case <-w.exited:
		select {
		case <-req.done: // served just before the worker left
		default:
			select {
			case <-w.snapshots: // never served: leave the channel empty
			default:
			}
			return fmt.Errorf("snapshot partition %d: %w", cp.id, ErrClosed)
		}
	}
	return cp.writeSnapshot(ctx, req, w.journal)
}

// writeSnapshot stores the encoded partition in req, once every position
// it includes is durable in j, then purges the stream behind what no one
// needs (Cluster.RetainFrom). The caller holds snapshotMu. It gives up
// when parent ends (a background snapshot of a partition no longer
// served) or after clusterSnapshotTimeout.
func (cp *clusterPartition) writeSnapshot(parent context.Context, req *partitionSnapshot, j journal.Journal) (err error) {
	e := cp.e
	defer func() {
		if err != nil && parent.Err() == nil {
			e.stats.SnapshotFailures.Add(1)
		}
	}()
	ctx, cancel := context.WithTimeout(parent, clusterSnapshotTimeout)
	defer cancel()
	err = cp.snaps.WriteFrom(ctx, req.pos, func(w io.Writer) error {
		head := append([]byte(partSnapshotMagic), snapshotVersion)
		head = binary.AppendUvarint(head, uint64(cp.id))
		head = binary.LittleEndian.AppendUint64(head, uint64(req.pos))
		head = binary.AppendUvarint(head, uint64(len(req.buf)))
		if _, err := w.Write(head); err != nil {
			return err
		}
		if _, err := w.Write(req.buf); err != nil {
			return err
		}
		// The snapshot must not claim a position before it is durable.
		durable := make(chan error, 1)
		if _, err := j.Append(nil, func(err error) { durable <- err }); err != nil {
			return fmt.Errorf("journal barrier: %w", err)
		}
		select {
		case err := <-durable:
			if err != nil {
				return fmt.Errorf("journal barrier: %w", err)
			}
		case <-ctx.Done():
			return fmt.Errorf("journal barrier: %w", ctx.Err())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write partition %d's snapshot at %d: %w", cp.id, req.pos, err)
	}
	e.stats.Snapshots.Add(1)
	retain := e.cfg.Cluster.RetainFrom
	if retain == nil {
		return nil // nothing says what the read models need: keep everything
	}
	oldest, err := cp.snaps.Oldest(ctx)
	if err != nil {
		return fmt.Errorf("purge partition %d: %w", cp.id, err)
	}
	// Followers on other nodes need nothing before the oldest snapshot:
	// one that falls that far behind stops its engine, whose restart
	// loads the newest snapshot.
	remove := min(oldest, journal.Position(retain(cp.id)))
	if remove == 0 {
		return nil
	}
	if err := j.RemoveBefore(remove); err != nil {
		return fmt.Errorf("purge partition %d through %d: %w", cp.id, remove, err)
	}
	return nil
}

// loadSnapshot loads the partition's newest snapshot that verifies and
// decodes, falling back to older ones, and sets pos to its position (0
// without one: the whole stream is replayed). A snapshot is first decoded
// into a scratch core, so that one that fails half-way leaves nothing in
// the directories every partition shares.
func (cp *clusterPartition) loadSnapshot(ctx context.Context) error {
	e := cp.e
	list, err := cp.snaps.List(ctx)
	if err != nil {
		return fmt.Errorf("list partition %d's snapshots: %w", cp.id, err)
	}
	for _, at := range list {
		data, version, err := cp.readSnapshot(ctx, at)
		if err == nil {
			// The scratch core has only this partition: decoding one
			// reads no other, and a core of every partition per partition
			// loaded would cost partitions² maps at start-up.
			scratch := newCore(0, e.core.paymentTimeout, e.core.idempotencyWindow, e.core.idempotencyKeysMax)
			scratch.partitions = make([]*partition, len(e.core.partitions))
			scratch.partitions[cp.id] = newPartition(cp.id)
			err = scratch.decodePartitionSafely(scratch.partitions[cp.id], data, version)
		}
		if err != nil {
			if errors.Is(err, journal.ErrCorrupt) || errors.Is(err, ErrBadRecord) {
				e.cfg.Logger.Warn("skipping a partition snapshot that does not load; falling back to an older one or the stream",
					"partition", cp.id, "position", at, "err", err)
				continue
			}
			return err
		}
		// The same bytes decoded into a scratch core: this can only fail
		// on what partitions share (a SKU id in two partitions).
		if err := e.core.decodePartitionSafely(e.core.partitions[cp.id], data, version); err != nil {
			return fmt.Errorf("load partition %d's snapshot at %d: %w", cp.id, at, err)
		}
		cp.pos.Store(uint64(at))
		e.cfg.Logger.Info("loaded partition snapshot", "partition", cp.id, "position", at, "bytes", len(data))
		return nil
	}
	if len(list) > 0 {
		e.cfg.Logger.Warn("no snapshot of the partition loads; replaying its whole stream", "partition", cp.id, "snapshots", len(list))
	}
	return nil
}

// readSnapshot reads the snapshot at whole (checking its digest) and
// returns the partition's bytes and their encoding's version.
func (cp *clusterPartition) readSnapshot(ctx context.Context, at journal.Position) ([]byte, byte, error) {
	rc, err := cp.snaps.Open(ctx, at)
	if err != nil {
		return nil, 0, fmt.Errorf("open partition %d's snapshot at %d: %w", cp.id, at, err)
	}
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	bad := func(what string) error {
		return fmt.Errorf("%w: partition %d's snapshot at %d: %s", ErrBadRecord, cp.id, at, what)
	}
	head := make([]byte, len(partSnapshotMagic)+1)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, 0, fmt.Errorf("read partition %d's snapshot at %d: %w", cp.id, at, err)
	}
	if string(head[:len(partSnapshotMagic)]) != partSnapshotMagic {
		return nil, 0, bad("not a partition snapshot")
	}
	version := head[len(partSnapshotMagic)]
	if !snapshotVersionReadable(version) {
		return nil, 0, bad(fmt.Sprintf("version %d", version))
	}
	p, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, 0, fmt.Errorf("read partition %d's snapshot at %d: %w", cp.id, at, err)
	}
	if p != uint64(cp.id) {
		return nil, 0, bad(fmt.Sprintf("it holds partition %d", p))
	}
	var fixed [8]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, 0, fmt.Errorf("read partition %d's snapshot at %d: %w", cp.id, at, err)
	}
	if pos := binary.LittleEndian.Uint64(fixed[:]); pos != uint64(at) {
		return nil, 0, bad(fmt.Sprintf("it is at position %d", pos))
	}
	length, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, 0, fmt.Errorf("read partition %d's snapshot at %d: %w", cp.id, at, err)
	}
	if length > recordBytesMax<<12 {
		// 64 GiB: past any partition's state, and a damaged length must
		// not allocate it.
		return nil, 0, bad(fmt.Sprintf("%d bytes", length))
	}
	data := make([]byte, length)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, 0, fmt.Errorf("read partition %d's snapshot at %d: %w", cp.id, at, err)
	}
	// Reading to the end checks the object's digest.
	switch _, err := r.ReadByte(); {
	case err == nil:
		return nil, 0, bad("trailing bytes")
	case !errors.Is(err, io.EOF):
		return nil, 0, fmt.Errorf("read partition %d's snapshot at %d: %w", cp.id, at, err)
	}
	return data, version, nil
}

// decodePartitionSafely is decodePartition with a violated invariant (its
// assertions panic) turned into an error, as decodeSnapshotSafely.
func (c *core) decodePartitionSafely(p *partition, data []byte, version byte) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: partition %d: %v", ErrBadRecord, p.id, v)
		}
	}()
	return c.decodePartition(p, data, version)
}
