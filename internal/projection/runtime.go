package projection

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/engine"
)

// Projection is one read model of the journal. The runner decodes each
// record once and feeds every registered projection its events, in journal
// order, on one goroutine; it snapshots them all together at one position,
// so that a restart resumes every read model from the same record.
//
// Adding a read model is writing this interface and one Register call.
type Projection interface {
	// Name labels the projection in metrics, logs and errors ("orders",
	// "gmv"); it is stable, lowercase and unique among the registered.
	Name() string
	// Apply applies one committed event. ev and its strings alias the
	// record's buffer: they are valid only during the call. An error stops
	// the runner (the projection is then wrong, and reads answer 503).
	Apply(ev *engine.Event) error
	// Commit is called once the record at position pos, whose events bore
	// event time at (unix nanoseconds), has been applied whole: reads may
	// now show it. A projection whose reads must see whole records takes
	// its write lock at the record's first Apply and releases it here.
	Commit(pos uint64, at int64)
	// Abort is called instead of Commit when following stopped in the
	// middle of a record; it releases what Apply holds.
	Abort()
	// WriteSnapshot writes the projection's state as of the last Commit
	// to w. Side files (the order store's chunks) go through files; w's
	// section must name any it needs. Called on the runner's goroutine.
	WriteSnapshot(w io.Writer, files Files) error
	// StageSnapshot reads back what WriteSnapshot wrote at position pos,
	// checking all of it, and changes nothing a reader sees: the runner
	// installs the staged state of every projection only once all of them
	// loaded.
	StageSnapshot(r io.Reader, pos uint64, files Files) (Staged, error)
	// SnapshotDurable is called once the snapshot last written is
	// durable, so an incremental snapshot may forget what it has stored.
	SnapshotDurable()
}

// Staged is a projection's state loaded from a snapshot, not yet visible.
type Staged interface {
	// Install replaces the projection's state with the staged one.
	Install()
}

// Files keeps a projection's side files next to its snapshots: written
// whole (temporary file, fsync, rename) and durable as directory entries
// before the snapshot naming them is. A file no kept snapshot names is
// removed by the runner.
type Files interface {
	WriteChunk(name string, data []byte) error
	ReadChunk(name string) ([]byte, error)
}

// Watermark is how far a read model has applied the journal, shared by
// every projection of a runner: wait-for-position for reads that must see
// a write (read-your-writes after an acknowledged order), and lag for
// /metrics and as_of.
type Watermark struct {
	applied   atomic.Uint64 // journal position of the last applied record
	appliedAt atomic.Int64  // event time of its events, unix nanoseconds
	// committedAt is the wall-clock time, unix nanoseconds, at which the
	// record at applied was applied, for the lag in seconds.
	committedAt atomic.Int64
	mu          struct {
		sync.Mutex
		advanced chan struct{} // closed and replaced at each advance
		waiters  int
	}
	// parts is, in cluster mode, the stream sequence applied of each
	// partition (set once by the runner's Start; nil on a single node,
	// where applied says it all).
	parts atomic.Pointer[[]atomic.Uint64]
}

// NewWatermark returns a watermark at position 0.
func NewWatermark() *Watermark {
	w := &Watermark{}
	w.mu.advanced = make(chan struct{})
	return w
}

// Applied is the journal position the read models reflect.
func (w *Watermark) Applied() uint64 { return w.applied.Load() }

// AppliedAt is the event time of the last applied record (unix ns), zero
// before the first.
func (w *Watermark) AppliedAt() int64 { return w.appliedAt.Load() }

// Advance moves the watermark to pos (never back) and wakes the waiters.
func (w *Watermark) Advance(pos uint64, at int64) {
	if pos < w.applied.Load() {
		panic("projection: watermark moved back")
	}
	w.applied.Store(pos)
	if at != 0 {
		w.appliedAt.Store(at)
	}
	w.committedAt.Store(time.Now().UnixNano())
	w.mu.Lock()
	if w.mu.waiters > 0 {
		close(w.mu.advanced)
		w.mu.advanced = make(chan struct{})
	}
	w.mu.Unlock()
}

// Wait returns once the watermark has reached pos, or with ctx's error.
func (w *Watermark) Wait(ctx context.Context, pos uint64) error {
	return w.waitFor(ctx, &w.applied, pos)
}

// waitFor returns once mark has reached pos, or with ctx's error. Every
// advance of the watermark wakes the waiters, who check their own mark.
func (w *Watermark) waitFor(ctx context.Context, mark *atomic.Uint64, pos uint64) error {
	for {
		if mark.Load() >= pos {
			return nil
		}
		w.mu.Lock()
		if mark.Load() >= pos {
			w.mu.Unlock()
			return nil
		}
		ch := w.mu.advanced
		w.mu.waiters++
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		w.mu.Lock()
		w.mu.waiters--
		w.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Lag is how far the read models trail a source whose durable position is
// durable: in journal bytes, and in seconds (zero when caught up; else the
// time since the last advance, which is how long the newest durable record
// has waited at most).
func (w *Watermark) Lag(durable uint64) (positions uint64, seconds float64) {
	applied := w.applied.Load()
	if durable <= applied {
		return 0, 0
	}
	since := time.Now().UnixNano() - w.committedAt.Load()
	return durable - applied, float64(max(since, 0)) / 1e9
}

// AppliedPartition is the stream sequence of partition p the read models
// reflect in cluster mode (0 on a single node, or for a partition outside
// the cluster's).
func (w *Watermark) AppliedPartition(p int) uint64 {
	parts := w.parts.Load()
	if parts == nil || p < 0 || p >= len(*parts) {
		return 0
	}
	return (*parts)[p].Load()
}

// WaitPartition returns once the read models reflect partition p's stream
// up to sequence pos (cluster mode), or with ctx's error. On a single node
// (no partition positions) it waits for pos as Wait does.
func (w *Watermark) WaitPartition(ctx context.Context, p int, pos uint64) error {
	parts := w.parts.Load()
	if parts == nil {
		return w.Wait(ctx, pos)
	}
	if p < 0 || p >= len(*parts) {
		panic(fmt.Sprintf("projection: wait for partition %d of %d", p, len(*parts)))
	}
	return w.waitFor(ctx, &(*parts)[p], pos)
}

// advancePartition moves partition p's position to pos (never back) and
// wakes the waiters, with applied, the runner's count of applied records,
// and at, as Advance takes them.
func (w *Watermark) advancePartition(p int, pos, applied uint64, at int64) {
	mark := &(*w.parts.Load())[p]
	if pos < mark.Load() {
		panic(fmt.Sprintf("projection: partition %d's watermark moved back from %d to %d", p, mark.Load(), pos))
	}
	mark.Store(pos)
	w.Advance(applied, at)
}
