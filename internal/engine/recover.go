package engine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/fest-platform/fest/internal/journal"
)

// ErrJournalBehind is returned by Open when a snapshot claims journal
// positions past the journal's end: journal/ was lost, or restored from
// another time than snapshots/. Starting would hide every record appended
// from now on behind the snapshot's positions, so the engine refuses.
var ErrJournalBehind = errors.New("snapshot is ahead of the journal")

// recover loads the newest snapshot that verifies and decodes, falling back
// to older ones and then to the journal alone, checks that the snapshot's
// positions lie within the journal, and replays the journal after them.
func (e *Engine) recover() error {
	n := len(e.core.partitions)
	pos := make([]journal.Position, n)
	loaded, at, err := e.loadNewestSnapshot(pos)
	if err != nil {
		return err
	}
	end := e.journal.End()
	for p, ppos := range pos {
		if ppos > end {
			return fmt.Errorf("%w: snapshot %d holds partition %d at journal position %d, but the journal ends at %d: journal/ was lost or restored separately from snapshots/",
				ErrJournalBehind, at, p, ppos, end)
		}
	}
	if loaded {
		e.lastSnapshotAttempt.Store(uint64(slices.Max(pos)))
	}
	from := slices.Min(pos)
	var ev Event
	events := 0
	err = e.journal.Replay(from, func(end journal.Position, rec []byte) error {
		return decodeRecord(rec, n, &ev, func(ev *Event) error {
			if end <= pos[ev.Partition] {
				return nil
			}
			e.core.evolve(e.core.partitions[ev.Partition], ev)
			events++
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("replay journal from %d: %w", from, err)
	}
	e.cfg.Logger.Info("recovered", "from", from, "to", end, "events", events, "skus", e.core.dir.count())
	return nil
}

// loadNewestSnapshot tries the snapshots newest first, each into a fresh
// core: one that fails its checksum or does not decode is logged and
// skipped. It fills pos with the loaded snapshot's partition positions (all
// zero when none loads, so the whole journal is replayed) and leaves the
// loaded state, or an empty one, in e.core.
func (e *Engine) loadNewestSnapshot(pos []journal.Position) (loaded bool, at journal.Position, err error) {
	if e.snapshots == nil {
		return false, 0, nil
	}
	list, err := e.snapshots.List()
	if err != nil {
		return false, 0, fmt.Errorf("list snapshots: %w", err)
	}
	for _, at := range list {
		c := e.newCore()
		size, err := e.loadSnapshot(c, at, pos)
		if err != nil {
			e.cfg.Logger.Warn("skipping snapshot that does not load; falling back to an older one or the journal", "position", at, "err", err)
			// Only damage is set aside; a failure to read (EIO, too many
			// open files) leaves the file for the next start to try again.
			if errors.Is(err, journal.ErrCorrupt) || errors.Is(err, ErrBadRecord) {
				if qerr := e.snapshots.Quarantine(at); qerr != nil {
					return false, 0, fmt.Errorf("snapshot at %d does not load (%v), and setting it aside failed: %w", at, err, qerr)
				}
			}
			continue
		}
		e.core = c
		e.cfg.Logger.Info("loaded snapshot", "position", at, "bytes", size)
		return true, at, nil
	}
	if len(list) > 0 {
		e.cfg.Logger.Warn("no snapshot loads; replaying the whole journal", "snapshots", len(list))
	}
	clear(pos)
	e.core = e.newCore()
	return false, 0, nil
}

// loadSnapshot decodes the snapshot at into c, streaming it one partition at
// a time, and fills pos. It returns the snapshot's data length.
func (e *Engine) loadSnapshot(c *core, at journal.Position, pos []journal.Position) (int64, error) {
	rc, size, err := e.snapshots.Open(at)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if err := c.decodeSnapshotSafely(bufio.NewReaderSize(rc, 1<<20), size, at, pos); err != nil {
		return 0, err
	}
	return size, nil
}

// decodeSnapshotSafely is decodeSnapshot, with a violated invariant of the
// state (its assertions panic) turned into an error: a snapshot can pass its
// checksum and still be wrong (written by a faulty build, or damaged before
// it was checksummed), and recovery must then fall back to an older one
// rather than stop the start.
func (c *core) decodeSnapshotSafely(r *bufio.Reader, size int64, at journal.Position, pos []journal.Position) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: snapshot %d: %v", ErrBadRecord, at, v)
		}
	}()
	return c.decodeSnapshot(r, size, at, pos)
}

// decodeSnapshot reads the data of the snapshot at (size bytes) from r into
// c, one partition at a time, and fills pos.
func (c *core) decodeSnapshot(r *bufio.Reader, size int64, at journal.Position, pos []journal.Position) error {
	bad := func(what string) error { return fmt.Errorf("%w: snapshot %d: %s", ErrBadRecord, at, what) }
	head := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("read snapshot %d header: %w", at, err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return bad("not a snapshot")
	}
	version := head[len(snapshotMagic)]
	if !snapshotVersionReadable(version) {
		return bad(fmt.Sprintf("version %d", version))
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("read snapshot %d partition count: %w", at, err)
	}
	if n != uint64(len(pos)) {
		return fmt.Errorf("snapshot %d has %d partitions, the directory %d", at, n, len(pos))
	}
	var fixed [8]byte
	for i := range pos {
		if _, err := io.ReadFull(r, fixed[:]); err != nil {
			return fmt.Errorf("read snapshot %d partition %d: %w", at, i, err)
		}
		pos[i] = journal.Position(binary.LittleEndian.Uint64(fixed[:]))
		length, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("read snapshot %d partition %d: %w", at, i, err)
		}
		if length > uint64(size) {
			return bad(fmt.Sprintf("partition %d of %d bytes in a snapshot of %d", i, length, size))
		}
		// A fresh buffer per partition: the decoded state may keep strings
		// that alias it.
		data := make([]byte, length)
		if _, err := io.ReadFull(r, data); err != nil {
			return fmt.Errorf("read snapshot %d partition %d: %w", at, i, err)
		}
		if err := c.decodePartition(c.partitions[i], data, version); err != nil {
			return fmt.Errorf("snapshot %d: %w", at, err)
		}
	}
	// Reading to the end checks the data's checksum once more.
	switch _, err := r.ReadByte(); {
	case err == nil:
		return bad("trailing bytes")
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("read snapshot %d: %w", at, err)
	}
	return nil
}
