// Package projection runs fest's projections — the order store and the GMV
// projection — from one follower of the engine's journal, so each record is
// read and decoded once, and snapshots them every so often so that a
// restart resumes after the snapshot instead of replaying the whole
// journal, and the engine may delete the segments before it.
//
// A projection snapshot is incremental (see orderstore/snapshot.go): the
// order store's arena and statuses are kept in chunk files under
// Dir/chunks, a chunk written once and referred to by every later snapshot
// until it changes, and each snapshot proper (Dir/snap-<pos>.bin, written
// atomically by journal.Snapshots) is a small manifest naming the chunks it
// needs, with their lengths and checksums, plus the GMV totals. A chunk file
// is removed only once no kept manifest names it.
package projection

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/analytics"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/orderstore"
	"github.com/fest-platform/fest/internal/vfs"
)

const (
	// snapshotsKept is how many projection snapshots journal.Snapshots
	// keeps: the newest, and the older one to fall back to should the
	// newest not load. The journal is kept back to the older of them.
	snapshotsKept = 2
	// chunksDirName is the directory, under Config.Dir, of the chunk files.
	chunksDirName = "chunks"
	// chunkTmpSuffix marks a chunk file being written; one left by a crash
	// is removed at start-up.
	chunkTmpSuffix = ".tmp"
	// chunkFileBytesMax bounds the chunk file a load reads, so a damaged
	// file system cannot make it allocate without bound; chunks are 1 MiB
	// unless one order is larger.
	chunkFileBytesMax = 1 << 30
	// filePerm is the permission of every file the projections create:
	// orders hold buyer ids.
	filePerm = 0o600
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
	// FS is the file system the chunk files are kept in (default vfs.OS);
	// the storage fault simulator passes its own.
	FS vfs.FS
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
	cfg    Config
	store  *orderstore.Store
	gmv    *analytics.Analytics
	snaps  *journal.Snapshots
	chunks *chunkFiles

	// retain is the oldest journal position recovery may need: the older
	// of the kept snapshots, or where the projections were loaded from
	// until a snapshot after it is durable. The engine keeps everything
	// after it.
	retain atomic.Uint64
	// err is why the projections stopped, once they have (see Err).
	err atomic.Pointer[error]
	// refused are the errors of the snapshots Load set aside.
	refused []error
	// loadedFrom is the position Load restored (0: the journal's start),
	// and snappedSinceLoad whether a snapshot was written since; both are
	// follower-owned after Load.
	loadedFrom       uint64
	snappedSinceLoad bool
	lastSnap         uint64

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
	if cfg.FS == nil {
		cfg.FS = vfs.OS
	}
	snaps, err := journal.OpenSnapshots(cfg.FS, cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("open projection snapshots: %w", err)
	}
	chunks, err := openChunkFiles(cfg.FS, path.Join(cfg.Dir, chunksDirName), cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("open projection chunks: %w", err)
	}
	return &Runner{cfg: cfg, store: store, gmv: gmv, snaps: snaps, chunks: chunks}, nil
}

// Retain is the journal position the engine must keep records after
// (engine.Config.RetainFrom). Before Load it is 0: keep everything.
func (r *Runner) Retain() uint64 { return r.retain.Load() }

// Load restores the projections from the newest snapshot that loads, and
// returns the journal position to follow from. A snapshot that fails its
// checksum, misses a chunk or does not decode is logged and the next older
// one tried; when none loads, the projections start empty from the
// journal's start, which works if the journal still holds it (following
// fails otherwise, and says so).
//
// Each snapshot is staged to the side of the projections and installed only
// once all of it loaded: readers (and WaitDurable) see the projections go
// from empty to the snapshot accepted, never a rejected one taken back.
func (r *Runner) Load() (uint64, error) {
	positions, err := r.snaps.List()
	if err != nil {
		return 0, fmt.Errorf("list projection snapshots: %w", err)
	}
	r.loadedFrom = 0
	r.refused = r.refused[:0]
	for _, pos := range positions {
		store, gmv, err := r.loadAt(uint64(pos))
		if err == nil {
			r.store.Install(store)
			r.gmv.Install(gmv)
			r.loadedFrom = uint64(pos)
			break
		}
		r.cfg.Logger.Warn("projection snapshot not usable, trying an older one", "position", uint64(pos), "err", err)
		r.refused = append(r.refused, err)
		// Damage is set aside: it no longer counts among the kept
		// snapshots, so the next snapshot does not prune the good older one.
		// A failure to read leaves the file for the next start.
		if damaged(err) {
			if qerr := r.snaps.Quarantine(pos); qerr != nil {
				return 0, fmt.Errorf("projection snapshot at %d not usable (%v), and setting it aside failed: %w", uint64(pos), err, qerr)
			}
		}
	}
	if r.loadedFrom == 0 && len(positions) > 0 {
		r.cfg.Logger.Warn("no projection snapshot loads: replaying the journal from its start", "snapshots", len(positions))
	}
	r.lastSnap = r.loadedFrom
	r.snappedSinceLoad = false
	r.updateRetain()
	if r.loadedFrom > 0 {
		r.cfg.Logger.Info("projections restored", "position", r.loadedFrom)
	}
	return r.loadedFrom, nil
}

// loadAt stages both projections from the snapshot at pos, checking all of
// it, for Load to install.
func (r *Runner) loadAt(pos uint64) (*orderstore.Staged, *analytics.Staged, error) {
	rc, _, err := r.snaps.Open(journal.Position(pos))
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	// One buffered reader for all sections: each loader reads its own
	// part and leaves the rest.
	br := bufio.NewReaderSize(rc, 1<<20)
	store, err := r.store.StageSnapshot(br, pos, r.chunks)
	if err != nil {
		return nil, nil, fmt.Errorf("load order store snapshot at %d: %w", pos, err)
	}
	gmv, err := r.gmv.StageSnapshot(br, pos, store.OrderTotals())
	if err != nil {
		return nil, nil, fmt.Errorf("load gmv snapshot at %d: %w", pos, err)
	}
	// Reading to the end checks the checksum once more, and that nothing
	// follows the sections.
	if n, err := io.Copy(io.Discard, br); err != nil || n != 0 {
		return nil, nil, fmt.Errorf("%w: projection snapshot at %d: %d bytes after its sections: %v", errTrailing, pos, n, err)
	}
	return store, gmv, nil
}

// updateRetain derives from the snapshot files present what recovery may
// fall back to: the kept snapshots, and the position the projections were
// loaded from until a snapshot after it is durable (they may have been
// loaded from the journal's start). A failure to list keeps the previous
// value, which only keeps more journal.
func (r *Runner) updateRetain() {
	positions, err := r.snaps.List()
	if err != nil {
		r.cfg.Logger.Error("list projection snapshots for retention", "err", err)
		return
	}
	retain := uint64(0)
	kept := positions[:min(len(positions), snapshotsKept)]
	if len(kept) > 0 {
		retain = uint64(kept[len(kept)-1]) // List is newest first
	}
	if !r.snappedSinceLoad {
		retain = min(retain, r.loadedFrom)
	}
	r.retain.Store(retain)
}

// errTrailing is a snapshot with bytes after its sections.
var errTrailing = errors.New("bad projection snapshot")

// damaged reports whether a snapshot failed to load because it is damaged
// (a checksum, a decode, a missing chunk) rather than unreadable for now.
func damaged(err error) bool {
	return errors.Is(err, journal.ErrCorrupt) || errors.Is(err, orderstore.ErrBadSnapshot) ||
		errors.Is(err, analytics.ErrBadSnapshot) || errors.Is(err, errTrailing) || errors.Is(err, fs.ErrNotExist)
}

// stopped records why the projections stopped.
func (r *Runner) stopped(err error) {
	r.err.Store(&err)
}

// Err returns the error that stopped the projections (nil while they run):
// snapshots that did not load and a journal that no longer holds what
// replay needs, or a failure to follow. Reads then answer 503.
func (r *Runner) Err() error {
	if p := r.err.Load(); p != nil {
		return *p
	}
	return nil
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
			// The snapshot directory cannot be listed; the projections
			// stay empty and reads answer 503.
			r.cfg.Logger.Error("projections not started", "err", err)
			r.stopped(err)
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
			// Reads then wait and answer 503; the log and Err say why.
			if len(r.refused) > 0 {
				err = fmt.Errorf("no projection snapshot loads (%w) and following from %d failed: %w", errors.Join(r.refused...), from, err)
			}
			r.cfg.Logger.Error("projections stopped following the journal", "from", from, "err", err)
			r.stopped(err)
		}
	}()
}

// snapshot writes both projections as of pos. A failure is logged and
// costs only a longer replay at the next start; the next snapshot is tried
// after another SnapshotEveryBytes of journal, not on every record.
func (r *Runner) snapshot(pos uint64) {
	err := r.snaps.WriteFrom(journal.Position(pos), func(w io.Writer) error {
		if err := r.store.WriteSnapshot(w, r.chunks); err != nil {
			return err
		}
		// The chunks' directory entries must be durable before the
		// manifest naming them is.
		if err := r.chunks.sync(); err != nil {
			return err
		}
		return r.gmv.WriteSnapshot(w)
	})
	r.lastSnap = pos
	if err != nil {
		r.cfg.Logger.Error("projection snapshot failed", "position", pos, "err", err)
		return
	}
	r.store.SnapshotDurable()
	r.snappedSinceLoad = true
	r.updateRetain()
	if err := r.collect(); err != nil {
		r.cfg.Logger.Warn("projection chunk files not collected", "err", err)
	}
}

// collect removes the chunk files that no kept snapshot names. It removes
// nothing when a kept snapshot cannot be read, since the chunks it needs
// are then unknown.
func (r *Runner) collect() error {
	positions, err := r.snaps.List()
	if err != nil {
		return fmt.Errorf("list projection snapshots: %w", err)
	}
	needed := make(map[string]struct{})
	for _, pos := range positions {
		names, err := r.chunkNames(pos)
		if err != nil {
			return fmt.Errorf("chunks of projection snapshot at %d: %w", uint64(pos), err)
		}
		for _, n := range names {
			needed[n] = struct{}{}
		}
	}
	return r.chunks.removeExcept(needed)
}

func (r *Runner) chunkNames(pos journal.Position) ([]string, error) {
	rc, _, err := r.snaps.Open(pos)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return orderstore.SnapshotChunks(rc)
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

// chunkFiles keeps the order store's chunks as files in one directory. A
// chunk is written to a temporary file, fsynced and renamed into place, so a
// chunk file is whole or absent, and sync makes the new entries durable
// before the manifest naming them is written. It is used by the follower
// goroutine only.
type chunkFiles struct {
	fsys  vfs.FS
	dir   string
	log   *slog.Logger
	dirty bool // entries were renamed into dir since the last sync
}

func openChunkFiles(fsys vfs.FS, dir string, log *slog.Logger) (*chunkFiles, error) {
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, name := range names {
		if strings.HasSuffix(name, chunkTmpSuffix) {
			p := path.Join(dir, name)
			if err := fsys.Remove(p); err != nil {
				return nil, fmt.Errorf("remove partial chunk %s: %w", p, err)
			}
			log.Warn("projection: removed partial chunk file", "path", p)
		}
	}
	return &chunkFiles{fsys: fsys, dir: dir, log: log}, nil
}

// WriteChunk implements orderstore.ChunkStore.
func (c *chunkFiles) WriteChunk(name string, data []byte) error {
	if name == "" || strings.ContainsAny(name, "/\\") || strings.HasSuffix(name, chunkTmpSuffix) {
		panic(fmt.Sprintf("projection: chunk name %q is not a plain file name", name))
	}
	// The directory is fsynced once for every chunk of a snapshot (sync).
	if err := vfs.WriteFileRenamed(c.fsys, path.Join(c.dir, name), data, filePerm); err != nil {
		return err
	}
	c.dirty = true
	return nil
}

// ReadChunk implements orderstore.ChunkStore. It reads the file into one
// buffer of its size, since a load reads every chunk of the festival.
func (c *chunkFiles) ReadChunk(name string) ([]byte, error) {
	p := path.Join(c.dir, name)
	f, err := c.fsys.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("size of %s: %w", p, err)
	}
	if size < 0 || size > chunkFileBytesMax {
		return nil, fmt.Errorf("chunk %s: %d bytes, more than a chunk holds", p, size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return data, nil
}

// sync makes the chunk files written since the last sync durable entries
// of their directory.
func (c *chunkFiles) sync() error {
	if !c.dirty {
		return nil
	}
	if err := c.fsys.SyncDir(c.dir); err != nil {
		return fmt.Errorf("sync chunk directory: %w", err)
	}
	c.dirty = false
	return nil
}

// removeExcept removes the chunk files not in needed. The removals need not
// be durable: a chunk file that comes back after a crash is removed by the
// next collection.
func (c *chunkFiles) removeExcept(needed map[string]struct{}) error {
	names, err := c.fsys.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", c.dir, err)
	}
	for _, name := range names {
		if _, ok := needed[name]; ok {
			continue
		}
		p := path.Join(c.dir, name)
		if err := c.fsys.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
	return nil
}
