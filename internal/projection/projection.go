// Package projection runs fest's projections — the order store and the GMV
// projection — from one follower of the engine's journal, so each record is
// read and decoded once, and snapshots them every so often so that a
// restart resumes after the snapshot instead of replaying the whole
// journal, and the engine may delete the segments before it.
package projection

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/analytics"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/orderstore"
)

// Config configures a Runner.
type Config struct {
	// Dir holds the snapshot files (created if missing).
	Dir string
	// SnapshotEveryBytes is the journal growth, in bytes, after which the
	// projections are snapshotted (default 256 MiB).
	SnapshotEveryBytes uint64
	// Logger receives snapshot and follow errors (default slog.Default()).
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("projection config: Dir is required")
	}
	return nil
}

// Runner feeds the projections and snapshots them.
type Runner struct {
	cfg   Config
	store *orderstore.Store
	gmv   *analytics.Analytics
	snaps *journal.Snapshots

	// retain is the oldest journal position a kept snapshot starts from:
	// the engine must keep everything after it.
	retain   atomic.Uint64
	kept     [2]uint64 // positions of the two newest snapshots; follower-owned after Load
	lastSnap uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a runner for store and gmv; nothing is read yet.
func New(cfg Config, store *orderstore.Store, gmv *analytics.Analytics) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SnapshotEveryBytes == 0 {
		cfg.SnapshotEveryBytes = 256 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	snaps, err := journal.OpenSnapshots(nil, cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("open projection snapshots: %w", err)
	}
	return &Runner{cfg: cfg, store: store, gmv: gmv, snaps: snaps}, nil
}

// Retain is the journal position the engine must keep records after
// (engine.Config.RetainFrom). Before Load it is 0: keep everything.
func (r *Runner) Retain() uint64 { return r.retain.Load() }

// Load restores the projections from the newest valid snapshot, if any,
// and returns the journal position to follow from.
func (r *Runner) Load() (uint64, error) {
	pos, rc, _, ok, err := r.snaps.LatestReader()
	if err != nil {
		return 0, fmt.Errorf("find projection snapshot: %w", err)
	}
	if !ok {
		return 0, nil
	}
	defer rc.Close()
	// One buffered reader for both sections: each loader reads its own
	// part and leaves the rest.
	br := bufio.NewReaderSize(rc, 1<<20)
	if err := r.store.LoadSnapshot(br, uint64(pos)); err != nil {
		return 0, fmt.Errorf("load order store snapshot at %d: %w", pos, err)
	}
	if err := r.gmv.LoadSnapshot(br, uint64(pos)); err != nil {
		return 0, fmt.Errorf("load gmv snapshot at %d: %w", pos, err)
	}
	r.lastSnap = uint64(pos)
	r.kept = [2]uint64{uint64(pos), uint64(pos)}
	r.retain.Store(uint64(pos))
	r.cfg.Logger.Info("projections restored", "position", uint64(pos))
	return uint64(pos), nil
}

// Start restores the projections from their newest snapshot, then follows
// eng after it until Close, feeding both. It returns at once: loading runs
// in the background, so the engine takes orders meanwhile, and reads wait
// for the projections to catch up as they always do.
func (r *Runner) Start(eng *engine.Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		from, err := r.Load()
		if err != nil {
			// A snapshot that passed its checksum but does not decode is a
			// bug; the projections stay empty and reads answer 503.
			r.cfg.Logger.Error("projections not started", "err", err)
			return
		}
		err = eng.Follow(ctx, from, func(ev *engine.Event) error {
			if err := r.store.Apply(ev); err != nil {
				return fmt.Errorf("order store: %w", err)
			}
			if err := r.gmv.Apply(ev); err != nil {
				return fmt.Errorf("analytics: %w", err)
			}
			if ev.Last && ev.Position-r.lastSnap >= r.cfg.SnapshotEveryBytes {
				r.snapshot(ev.Position)
			}
			return nil
		})
		r.store.FollowStopped()
		if ctx.Err() == nil {
			// Reads then wait and answer 503; the log says why.
			r.cfg.Logger.Error("projections stopped following the journal", "err", err)
		}
	}()
}

// snapshot writes both projections as of pos. A failure is logged and
// costs only a longer replay at the next start.
func (r *Runner) snapshot(pos uint64) {
	err := r.snaps.WriteFrom(journal.Position(pos), func(w io.Writer) error {
		if err := r.store.WriteSnapshot(w); err != nil {
			return err
		}
		return r.gmv.WriteSnapshot(w)
	})
	if err != nil {
		r.cfg.Logger.Error("projection snapshot failed", "position", pos, "err", err)
		return
	}
	r.lastSnap = pos
	// The two newest snapshots are kept; the engine keeps the journal
	// after the older one, so either can be restored.
	r.kept = [2]uint64{r.kept[1], pos}
	r.retain.Store(min(r.kept[0], r.kept[1]))
}

// Close stops following and writes a final snapshot if the projections
// moved since the last one.
func (r *Runner) Close() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.wg.Wait()
	r.cancel = nil
	if pos := r.store.Applied(); pos > r.lastSnap && pos == r.gmvApplied() {
		r.snapshot(pos)
	}
	return nil
}

func (r *Runner) gmvApplied() uint64 { return r.gmv.Applied() }
