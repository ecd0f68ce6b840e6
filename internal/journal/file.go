package journal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/vfs"
)

// Config configures a File journal. The zero value of every field except Dir
// selects the documented default.
type Config struct {
	// Dir holds the segment files. It is created if missing.
	Dir string

	// FS is the file system every disk access of the journal goes through
	// (segments, recovery, Follow, RemoveBefore). Default vfs.OS; tests pass
	// a simulated disk.
	FS vfs.FS

	// SegmentBytesMax is the size in bytes after which the writer starts a
	// new segment file. Rotation happens only between groups, so a segment
	// can exceed it by up to one group. Default 256 MiB.
	SegmentBytesMax int64

	// GroupBytesMax caps the bytes of frames written and fsynced as one
	// group. A single record larger than this forms a group of its own.
	// Default 4 MiB.
	GroupBytesMax int

	// QueueBytesMax bounds the bytes of frames that have been appended but
	// not yet taken by the writer. When a record does not fit, Append blocks
	// until the writer makes room; this is the journal's backpressure. A
	// record larger than the bound is accepted once the queue is empty.
	// Default 64 MiB.
	QueueBytesMax int

	// NoSync skips every fsync, of segment files and of the directory. It
	// is for tests only: nothing is durable.
	NoSync bool

	// Logger receives recovery warnings (torn tails) and errors. Default
	// slog.Default().
	Logger *slog.Logger

	// Fsync, when set, replaces vfs.File.Sync for segment files, so tests
	// and benchmarks can count or time fsyncs or make one fail. Directory
	// fsyncs go to FS.SyncDir.
	Fsync func(vfs.File) error
}

// Defaults for Config.
const (
	DefaultSegmentBytesMax = 256 << 20
	DefaultGroupBytesMax   = 4 << 20
	DefaultQueueBytesMax   = 64 << 20
)

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.SegmentBytesMax == 0 {
		c.SegmentBytesMax = DefaultSegmentBytesMax
	}
	if c.GroupBytesMax == 0 {
		c.GroupBytesMax = DefaultGroupBytesMax
	}
	if c.QueueBytesMax == 0 {
		c.QueueBytesMax = DefaultQueueBytesMax
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FS == nil {
		c.FS = vfs.OS
	}
	if c.Fsync == nil {
		c.Fsync = vfs.File.Sync
	}
	if c.NoSync {
		c.Fsync = func(vfs.File) error { return nil }
	}
	return c
}

// Validate reports whether c is usable. Zero sizes are valid (they mean the
// default); negative ones are not.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("journal config: Dir is empty"))
	}
	if c.SegmentBytesMax < 0 {
		errs = append(errs, fmt.Errorf("journal config: SegmentBytesMax %d is negative", c.SegmentBytesMax))
	}
	if c.GroupBytesMax < 0 {
		errs = append(errs, fmt.Errorf("journal config: GroupBytesMax %d is negative", c.GroupBytesMax))
	}
	if c.QueueBytesMax < 0 {
		errs = append(errs, fmt.Errorf("journal config: QueueBytesMax %d is negative", c.QueueBytesMax))
	}
	return errors.Join(errs...)
}

// entry is one appended record waiting for the writer.
type entry struct {
	rec  []byte
	crc  uint32 // computed by Append, outside the lock
	end  Position
	done func(error)
}

// File is the segment-file Journal: records are framed, written in groups by
// one writer goroutine, and each group is made durable by one fsync.
type File struct {
	cfg Config
	log *slog.Logger

	end     atomic.Uint64 // Position past the last appended record
	durable atomic.Uint64 // Position past the last fsynced record

	mu struct {
		sync.Mutex
		pending  []entry // appended, not yet taken by the writer, in order
		queued   int     // frame bytes in pending
		appended bool    // Append was called at least once (Replay is over)
		closed   bool
		stopErr  error     // set once the writer failed; wraps ErrStopped
		segs     []segment // live segments in order; the last is active
	}
	wake sync.Cond // writer waits for pending or closed
	room sync.Cond // Append waits for queue room

	// removeMu serialises RemoveBefore, which drops segments from the front
	// of mu.segs while only the writer appends to its back.
	removeMu sync.Mutex

	// Writer-owned state: touched only by the writer goroutine after Open.
	seg      vfs.File
	segPath  string
	segStart Position
	segSize  int64 // data bytes after the segment header
	// reserved is the file offset of the active segment up to which its
	// blocks are preallocated (preallocate).
	reserved int64
	buf      []byte
	group    []entry

	// durableCh is closed and replaced whenever the durable position
	// advances, waking followers.
	durableCh atomic.Pointer[chan struct{}]
	followers atomic.Int32

	exited    chan struct{} // closed when the writer goroutine returns
	closeOnce sync.Once
	closeErr  error
}

var _ Journal = (*File)(nil)

// Open recovers the journal in cfg.Dir (see recoverDir for what is repaired
// and what is refused), opens the last segment for appending, and starts the
// writer goroutine.
func Open(cfg Config) (*File, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.FS.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create journal dir: %w", err)
	}
	rec, err := recoverDir(cfg)
	if err != nil {
		return nil, fmt.Errorf("recover journal %s: %w", cfg.Dir, err)
	}
	f := &File{cfg: cfg, log: cfg.Logger, exited: make(chan struct{})}
	ch := make(chan struct{})
	f.durableCh.Store(&ch)
	f.wake.L = &f.mu.Mutex
	f.room.L = &f.mu.Mutex
	if len(rec.segs) == 0 {
		if err := f.createSegment(0); err != nil {
			return nil, err
		}
	} else {
		tail := rec.segs[len(rec.segs)-1]
		seg, err := cfg.FS.OpenFile(tail.path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open segment %s: %w", tail.path, err)
		}
		if _, err := seg.Seek(segmentHeaderLen+rec.tailSize, io.SeekStart); err != nil {
			seg.Close()
			return nil, fmt.Errorf("seek segment %s: %w", tail.path, err)
		}
		f.seg, f.segPath, f.segStart, f.segSize = seg, tail.path, tail.start, rec.tailSize
		f.mu.segs = rec.segs
	}
	end := uint64(f.segStart) + uint64(f.segSize)
	f.end.Store(end)
	f.durable.Store(end)
	go f.run()
	return f, nil
}

// createSegment creates the segment starting at start, writes its header,
// makes both the header and the directory entry durable, and makes it the
// active segment. Only Open and the writer call it.
//
// The header is fsynced before any frame is written into the file, so that
// recovery may treat a last segment holding only part of a header, or only
// zeros, as a creation a crash interrupted, which holds no record. The file
// is 0600: it holds buyer ids.
func (f *File) createSegment(start Position) error {
	path := filepath.Join(f.cfg.Dir, segmentName(start))
	seg, err := f.cfg.FS.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create segment %s: %w", path, err)
	}
	h := encodeSegmentHeader(start)
	if _, err := seg.Write(h[:]); err != nil {
		seg.Close()
		return fmt.Errorf("write header of segment %s: %w", path, err)
	}
	if err := f.cfg.Fsync(seg); err != nil {
		seg.Close()
		return fmt.Errorf("fsync header of segment %s: %w", path, err)
	}
	if err := f.syncDir(); err != nil {
		seg.Close()
		return fmt.Errorf("create segment %s: %w", path, err)
	}
	if f.seg != nil {
		// The old segment was fsynced with its last group; a close error
		// cannot lose data any more, so it is only logged. Cutting it to
		// its own size first gives back the blocks preallocated past its
		// end (reserve); its bytes stay as they are.
		if err := f.seg.Truncate(segmentHeaderLen + f.segSize); err != nil {
			f.log.Error("journal: give back the preallocated blocks of a full segment", "path", f.segPath, "err", err)
		}
		if err := f.seg.Close(); err != nil {
			f.log.Error("journal: close segment", "path", f.segPath, "err", err)
		}
	}
	f.seg, f.segPath, f.segStart, f.segSize, f.reserved = seg, path, start, 0, 0
	f.mu.Lock()
	f.mu.segs = append(f.mu.segs, segment{start: start, path: path})
	f.mu.Unlock()
	return nil
}

// Append implements Journal. rec must not be modified until done is called.
// done may be nil when the caller does not need the notification.
//
// Append blocks while the queue holds QueueBytesMax bytes of unwritten
// frames. done runs on the writer goroutine and holds up every later group
// while it runs, so it must be quick, and it must not call Close or an Append
// that could block on a full queue: only the writer makes room.
func (f *File) Append(rec []byte, done func(error)) (Position, error) {
	if len(rec) > MaxRecordBytes {
		return 0, fmt.Errorf("append %d bytes: %w", len(rec), ErrTooLarge)
	}
	var crc uint32
	size := 0
	if len(rec) > 0 {
		// The checksum is the only per-byte work besides the copy; doing it
		// here spreads it over the appending goroutines.
		crc = frameCRC(rec)
		size = frameLen(len(rec))
	}
	if done == nil {
		done = noDone
	}
	f.mu.Lock()
	f.mu.appended = true
	for {
		if f.mu.closed {
			f.mu.Unlock()
			return 0, ErrClosed
		}
		if f.mu.stopErr != nil {
			err := f.mu.stopErr
			f.mu.Unlock()
			return 0, err
		}
		if f.mu.queued == 0 || f.mu.queued+size <= f.cfg.QueueBytesMax {
			break
		}
		f.room.Wait()
	}
	end := Position(f.end.Load() + uint64(size))
	f.end.Store(uint64(end))
	f.mu.pending = append(f.mu.pending, entry{rec: rec, crc: crc, end: end, done: done})
	f.mu.queued += size
	f.wake.Signal()
	f.mu.Unlock()
	return end, nil
}

// End implements Journal.
func (f *File) End() Position { return Position(f.end.Load()) }

// Durable implements Journal.
func (f *File) Durable() Position { return Position(f.durable.Load()) }

// Start returns the position of the first record still on disk: zero, or the
// start of the oldest segment RemoveBefore left.
func (f *File) Start() Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.segs[0].start
}

// Replay implements Journal. It returns an error wrapping ErrRemoved if from
// lies before Start, because the records in between are gone.
func (f *File) Replay(from Position, fn func(end Position, rec []byte) error) error {
	f.mu.Lock()
	if f.mu.appended {
		f.mu.Unlock()
		return errors.New("journal replay: called after Append")
	}
	segs := append([]segment(nil), f.mu.segs...)
	f.mu.Unlock()
	if from < segs[0].start {
		return fmt.Errorf("journal replay from %d: %w: journal starts at %d", from, ErrRemoved, segs[0].start)
	}
	end := Position(f.end.Load())
	// Skip whole segments: every record in a segment ends at or before the
	// start of the next one.
	first := 0
	for first+1 < len(segs) && segs[first+1].start <= from {
		first++
	}
	for i := first; i < len(segs); i++ {
		limit := end
		if i+1 < len(segs) {
			limit = segs[i+1].start
		}
		if err := f.replaySegment(segs[i], limit, from, fn); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs the journal directory, so that a segment created or
// removed in it stays so after a crash; on Linux the directory entry is
// otherwise not durable even when the file itself was fsynced.
func (f *File) syncDir() error {
	if f.cfg.NoSync {
		return nil
	}
	return f.cfg.FS.SyncDir(f.cfg.Dir)
}

// replaySegment calls fn for the records of seg that end after from. limit is
// the position where the segment ends, as established by recovery.
func (f *File) replaySegment(seg segment, limit, from Position, fn func(Position, []byte) error) error {
	r, err := f.cfg.FS.OpenFile(seg.path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open segment %s: %w", seg.path, err)
	}
	defer r.Close()
	if _, err := r.Seek(segmentHeaderLen, io.SeekStart); err != nil {
		return fmt.Errorf("seek segment %s: %w", seg.path, err)
	}
	s := newFrameScanner(r, int64(limit-seg.start))
	for {
		rec, err := s.next()
		if err == io.EOF {
			return nil
		}
		if d, ok := err.(*damage); ok {
			// Recovery validated this file, so it changed underneath us.
			return fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, seg.path, segmentHeaderLen+d.off, d.reason)
		}
		if err != nil {
			return fmt.Errorf("replay segment %s: %w", seg.path, err)
		}
		pos := seg.start + Position(s.off)
		if pos <= from {
			continue
		}
		if err := fn(pos, rec); err != nil {
			return err
		}
	}
}

// RemoveBefore implements Journal. It never removes the active segment.
// Segments are deleted oldest first, and the directory is fsynced after each
// removal: a removal that is not yet durable can come back after a crash, and
// if an older one came back while a newer one did not, the journal would
// have a gap. One directory fsync per removed segment (256 MiB by default) is
// negligible.
func (f *File) RemoveBefore(pos Position) error {
	f.removeMu.Lock()
	defer f.removeMu.Unlock()
	f.mu.Lock()
	var victims []segment
	for i := 0; i+1 < len(f.mu.segs) && f.mu.segs[i+1].start <= pos; i++ {
		victims = append(victims, f.mu.segs[i])
	}
	f.mu.Unlock()
	removed := 0
	var err error
	for _, seg := range victims {
		if rerr := f.cfg.FS.Remove(seg.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("remove segment %s: %w", seg.path, rerr)
			break
		}
		if serr := f.syncDir(); serr != nil {
			// The segment is gone from the directory as this process sees
			// it, so it is dropped from the list; its removal may not be
			// durable, which a crash turns into a journal that starts
			// earlier, never into a gap, because nothing newer was removed.
			removed++
			err = fmt.Errorf("remove segment %s: %w", seg.path, serr)
			break
		}
		removed++
	}
	if removed > 0 {
		f.mu.Lock()
		f.mu.segs = append(f.mu.segs[:0], f.mu.segs[removed:]...)
		f.mu.Unlock()
	}
	return err
}

// Close implements Journal. It is idempotent; every call returns the same
// result, which is the stopping error if the journal failed.
func (f *File) Close() error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.mu.closed = true
		f.wake.Signal()
		f.room.Broadcast()
		f.mu.Unlock()
		<-f.exited
		f.mu.Lock()
		stopErr := f.mu.stopErr
		f.mu.Unlock()
		if err := f.seg.Close(); err != nil && stopErr == nil {
			f.closeErr = fmt.Errorf("close segment %s: %w", f.segPath, err)
		}
		if stopErr != nil {
			f.closeErr = stopErr
		}
	})
	return f.closeErr
}

// run is the writer goroutine: it repeatedly takes a group of pending
// entries, writes and fsyncs them, and completes them in order. Appends that
// arrive during the fsync queue up for the next group.
func (f *File) run() {
	defer close(f.exited)
	for {
		f.mu.Lock()
		for len(f.mu.pending) == 0 && !f.mu.closed {
			f.wake.Wait()
		}
		if len(f.mu.pending) == 0 {
			// Closed and drained.
			f.mu.Unlock()
			return
		}
		bytes := f.takeGroupLocked()
		f.mu.Unlock()

		if err := f.commit(bytes); err != nil {
			f.stop(err)
			return
		}
		last := f.group[len(f.group)-1].end
		if d := Position(f.durable.Load()); last < d {
			panic(fmt.Sprintf("journal: group ends at %d before durable position %d", last, d))
		}
		f.durable.Store(uint64(last))
		f.complete(f.group, nil)
		f.notifyDurable()
	}
}

// takeGroupLocked moves up to GroupBytesMax of pending entries (at least one)
// into f.group and returns their frame bytes. f.mu must be held.
func (f *File) takeGroupLocked() int {
	pending := f.mu.pending
	n, bytes := 0, 0
	for n < len(pending) {
		size := 0
		if len(pending[n].rec) > 0 {
			size = frameLen(len(pending[n].rec))
		}
		if n > 0 && bytes+size > f.cfg.GroupBytesMax {
			break
		}
		bytes += size
		n++
	}
	f.group = append(f.group[:0], pending[:n]...)
	rest := copy(pending, pending[n:])
	// Clear the moved-out tail so the queue does not pin records in memory.
	clear(pending[rest:])
	f.mu.pending = pending[:rest]
	f.mu.queued -= bytes
	if f.mu.queued < 0 {
		panic(fmt.Sprintf("journal: queued bytes went negative (%d)", f.mu.queued))
	}
	f.room.Broadcast()
	return bytes
}

// commit writes f.group as one buffer and fsyncs it, rotating to a new
// segment first if the active one is full.
func (f *File) commit(bytes int) error {
	if bytes == 0 {
		// Only barriers: everything before them is already durable because
		// groups commit one at a time.
		return nil
	}
	if f.segSize >= f.cfg.SegmentBytesMax {
		next := f.segStart + Position(f.segSize)
		if d := Position(f.durable.Load()); next != d {
			panic(fmt.Sprintf("journal: active segment %s ends at %d but durable position is %d", f.segPath, next, d))
		}
		if err := f.createSegment(next); err != nil {
			return err
		}
	}
	buf := f.buf[:0]
	for i := range f.group {
		e := &f.group[i]
		if len(e.rec) == 0 {
			continue
		}
		buf = appendFrameHeader(buf, len(e.rec), e.crc)
		buf = append(buf, e.rec...)
		buf = append(buf, frameTrailer...)
	}
	if len(buf) != bytes {
		panic(fmt.Sprintf("journal: group encoded to %d bytes, expected %d", len(buf), bytes))
	}
	// Keep the buffer for the next group unless a huge record blew it up.
	if cap(buf) <= 2*f.cfg.GroupBytesMax {
		f.buf = buf[:0]
	} else {
		f.buf = nil
	}
	f.reserve(int64(len(buf)))
	n, err := f.seg.Write(buf)
	f.segSize += int64(n)
	if err != nil {
		return fmt.Errorf("write segment %s at offset %d: %w", f.segPath, segmentHeaderLen+f.segSize-int64(n), err)
	}
	if err := f.cfg.Fsync(f.seg); err != nil {
		return fmt.Errorf("fsync segment %s: %w", f.segPath, err)
	}
	return nil
}

// Bounds on the blocks the writer preallocates ahead of the active
// segment's end: as many as the segment holds already, from
// reserveBytesMin up to reserveBytesMax, so that a small journal (a test's)
// reserves little and a busy one preallocates every few groups.
const (
	reserveBytesMin = 256 << 10
	reserveBytesMax = 8 << 20
)

// reserve preallocates the active segment's blocks for the next n bytes
// and beyond, unless they are reserved already.
func (f *File) reserve(n int64) {
	off := segmentHeaderLen + f.segSize
	if off+n <= f.reserved {
		return
	}
	ahead := min(max(f.segSize, reserveBytesMin), reserveBytesMax)
	from := max(off, f.reserved)
	end := off + n + ahead
	preallocate(f.seg, from, end-from)
	f.reserved = end
}

// stop fails the journal after a write or fsync error. It never retries: after
// a failed fsync the kernel may have dropped the dirty pages and cleared the
// error, so a second fsync could succeed without the data being on disk.
//
// It first truncates the active segment back to the durable position. The
// records past it are answered with an error, so they must not come back: a
// restart without a crash would otherwise find them intact in the page cache
// and replay orders whose clients were told they failed. The truncation is
// not fsynced (that would be the retry fail-stop forbids), so a crash can
// still undo it; what survives is then what a crash during the failed fsync
// would have left, which recovery judges like any other tail.
func (f *File) stop(cause error) {
	err := fmt.Errorf("%w: %w", ErrStopped, cause)
	f.log.Error("journal: stopped", "err", cause)
	f.truncateToDurable()
	f.mu.Lock()
	if f.mu.stopErr != nil {
		panic(fmt.Sprintf("journal: stopped twice: %v, then %v", f.mu.stopErr, cause))
	}
	f.mu.stopErr = err
	rest := f.mu.pending
	f.mu.pending = nil
	f.mu.queued = 0
	f.room.Broadcast()
	f.mu.Unlock()
	f.complete(f.group, err)
	f.complete(rest, err)
}

// truncateToDurable cuts the active segment back to the durable position,
// logging a failure: the journal is stopping either way.
func (f *File) truncateToDurable() {
	durable := Position(f.durable.Load())
	if durable < f.segStart || durable > f.segStart+Position(f.segSize) {
		panic(fmt.Sprintf("journal: durable position %d outside active segment %s [%d, %d]",
			durable, f.segPath, f.segStart, f.segStart+Position(f.segSize)))
	}
	off := segmentHeaderLen + int64(durable-f.segStart)
	if err := f.seg.Truncate(off); err != nil {
		f.log.Error("journal: truncate active segment to the durable position after a failure",
			"path", f.segPath, "offset", off, "err", err)
		return
	}
	f.segSize = int64(durable - f.segStart)
	// Make the cut durable, so that records already answered as failed
	// cannot come back after a crash: a client retrying without a key would
	// then place a second order. This fsync makes a removal durable, not the
	// data the failed fsync was for, so it is not the retry that fail-stop
	// forbids; if it fails too, the records may come back, and recovery
	// takes them as a torn tail or as records (they were never answered
	// as placed).
	// It goes to the file itself, not the Fsync hook, which counts and
	// fails the fsyncs of data.
	if f.cfg.NoSync {
		return
	}
	if err := f.seg.Sync(); err != nil {
		f.log.Error("journal: fsync the active segment after truncating it to the durable position",
			"path", f.segPath, "offset", off, "err", err)
	}
}

// noDone stands in for a nil done so that a nil callback in the queue always
// means an entry that was already completed.
func noDone(error) {}

// complete calls the done callbacks of entries in order and clears them so
// neither the records nor the callbacks outlive their completion.
func (f *File) complete(entries []entry, err error) {
	for i := range entries {
		done := entries[i].done
		if done == nil {
			panic(fmt.Sprintf("journal: done for record ending at %d completed twice", entries[i].end))
		}
		entries[i] = entry{}
		done(err)
	}
}
