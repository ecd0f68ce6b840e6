// Package projection is fest's read-side runtime: one runner follows the
// engine's journal, decodes each record once, feeds every registered
// projection (the order store, the GMV board, and whatever read model comes
// next) its events in journal order, and snapshots them all together at one
// journal position, so that a restart resumes every read model from the
// same record and the engine may delete the segments before it. One
// Watermark gives every read model wait-for-position and lag.
//
// A snapshot (Dir/snap-<pos>.bin, written atomically and checksummed by
// journal.Snapshots) holds one section per projection, in registration
// order: the projection's name and its section's length, then the section.
// A projection may keep side files (the order store's chunks, under
// Dir/chunks) that its section names; a side file is removed only once no
// kept snapshot names it.
package projection

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
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
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/vfs"
)

const (
	// snapshotsKept is how many projection snapshots journal.Snapshots
	// keeps: the newest, and the older one to fall back to should the
	// newest not load. The journal is kept back to the older of them.
	snapshotsKept = 2
	// chunksDirName is the directory, under Config.Dir, of the side files.
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
	// snapshotMagic starts every runner snapshot.
	snapshotMagic = "FESTPJ03"
	// sectionBytesMax bounds one projection's section, so that a damaged
	// length cannot make a load allocate without bound.
	sectionBytesMax = 4 << 30
	// projectionsMax bounds the registered projections (and the sections a
	// snapshot may claim).
	projectionsMax = 64
)

// The snapshot cadence when Config.SnapshotEveryBytes is left at 0.
//
// A snapshot file holds each read model's section, and most of it is state
// written whole every time (the GMV board: about 18 bytes an order placed
// so far), while the side files hold only what changed (the order store's
// new arena bytes, the logistics chunks touched). At a fixed interval the
// whole-state part grows with the festival while the journal between two
// snapshots does not: at the midnight peak, snapshots every 256 MiB came
// every few seconds and took a tenth of the server's CPU, rewriting a state
// that had changed by a fraction. So the interval grows with the last
// snapshot file: the next snapshot waits for snapshotJournalPerFileByte
// journal bytes per byte of it, which holds the whole-state writing to a
// bounded share of the journal followed. The side files are not counted:
// they grow with the interval itself, and counting them would only feed
// the interval back into itself.
//
// The price is replay at a restart: it follows the journal after the newest
// snapshot, now up to snapshotEveryBytesMax (about 8.6 million orders at
// 125 journal bytes an order, some 20 seconds of the read side) rather than
// 256 MiB. The engine keeps the journal back to the older of the two kept
// snapshots, so the disk holds up to twice the interval's journal. Over a
// 30-second peak of 2.2 GB of journal, this writes the GMV board three
// times instead of eight, about a quarter of the bytes.
const (
	// snapshotEveryBytesMin is the least the adaptive interval waits (and
	// the interval before the first snapshot).
	snapshotEveryBytesMin = 256 << 20
	// snapshotEveryBytesMax is the most journal the adaptive interval lets
	// a restart replay.
	snapshotEveryBytesMax = 1 << 30
	// snapshotJournalPerFileByte is the journal bytes the adaptive interval
	// waits for per byte of the last snapshot file.
	snapshotJournalPerFileByte = 8
)

// Config configures a Runner.
type Config struct {
	// Dir holds the snapshot files (created if missing). Required.
	Dir string
	// SnapshotEveryBytes is the journal growth, in bytes, after which the
	// projections are snapshotted. 0 (the default) adapts it to the
	// state's size: eight times the last snapshot file, within 256 MiB and
	// 1 GiB (see snapshotEveryBytesMin).
	SnapshotEveryBytes uint64
	// Logger receives snapshot and follow errors (default slog.Default()).
	Logger *slog.Logger
	// FS is the file system of the snapshots and side files (default
	// vfs.OS); the storage fault simulator passes its own.
	FS vfs.FS
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("projection config: Dir is required")
	}
	return nil
}

// ChunkNamer is implemented by a projection whose snapshot section names
// side files: given its section, it lists them, so that the runner removes
// only the files no kept snapshot needs.
type ChunkNamer interface {
	SnapshotChunks(section io.Reader) ([]string, error)
}

// ErrBadSnapshot wraps a snapshot whose layout does not decode.
var ErrBadSnapshot = errors.New("bad projection snapshot")

// errOtherProjections is a snapshot written for other projections than
// those registered (a version that added or removed one): not damage, but
// not a state to resume from either.
var errOtherProjections = errors.New("projection snapshot holds other projections")

// Lag is how far one projection trails the journal.
type Lag struct {
	Projection string
	Positions  uint64  // journal bytes durable but not applied
	Seconds    float64 // how long the oldest of them has waited
}

// Runner feeds the projections and snapshots them.
type Runner struct {
	cfg         Config
	projections []Projection
	mark        *Watermark
	snaps       *journal.Snapshots
	chunks      *chunkFiles
	src         atomic.Pointer[engine.Engine]

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
	// snapEvery is the journal growth after lastSnap at which the next
	// snapshot is written (follower-owned; see nextSnapshotEvery).
	snapEvery uint64
	// applied and appliedAt are the last record fed whole (follower-owned).
	applied   uint64
	appliedAt int64
	started   bool
	torn      bool // following stopped inside a record

	// catchUp records how long the read models take to reach what was
	// durable when each probe started (see probeLag).
	catchUp struct {
		sync.Mutex
		hist *hdrhistogram.Histogram
	}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// lagProbeEvery is how often the runner measures its catch-up time.
const lagProbeEvery = 50 * time.Millisecond

// New returns a runner feeding projections; nothing is read yet. More can
// be added with Register before Start.
func New(cfg Config, projections ...Projection) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
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
	r := &Runner{cfg: cfg, mark: NewWatermark(), snaps: snaps, chunks: chunks}
	r.snapEvery = nextSnapshotEvery(cfg.SnapshotEveryBytes, 0)
	r.catchUp.hist = hdrhistogram.New(1, int64(time.Hour), 3)
	for _, p := range projections {
		if err := r.Register(p); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a projection; call it before Load or Start. Names must be
// unique.
func (r *Runner) Register(p Projection) error {
	if r.started {
		return fmt.Errorf("register projection %q: the runner has started", p.Name())
	}
	name := p.Name()
	if name == "" || len(name) > 64 {
		return fmt.Errorf("register projection %q: a name is 1 to 64 bytes", name)
	}
	if len(r.projections) >= projectionsMax {
		return fmt.Errorf("register projection %q: more than %d projections", name, projectionsMax)
	}
	for _, q := range r.projections {
		if q.Name() == name {
			return fmt.Errorf("register projection %q: registered twice", name)
		}
	}
	r.projections = append(r.projections, p)
	return nil
}

// Watermark is the position every registered projection reflects.
func (r *Runner) Watermark() *Watermark { return r.mark }

// WaitDurable waits until the projections reflect everything durable at
// the time of the call: a read after an acknowledged write sees it.
func (r *Runner) WaitDurable(ctx context.Context) error {
	eng := r.src.Load()
	if eng == nil {
		return errors.New("projections not started")
	}
	if eng.Clustered() {
		return r.waitClusterDurable(ctx, eng)
	}
	return r.mark.Wait(ctx, eng.Durable())
}

// WaitResult waits until the projections reflect a result the engine
// returned for a command of partition: its record at pos, which in
// cluster mode is a position in that partition's stream.
func (r *Runner) WaitResult(ctx context.Context, partition int, pos uint64) error {
	if eng := r.src.Load(); eng != nil && eng.Clustered() {
		return r.mark.WaitPartition(ctx, partition, pos)
	}
	return r.mark.Wait(ctx, pos)
}

// Lags returns each projection's lag behind the journal's durable
// position. All are fed by one follower, so they agree; each is named for
// /metrics all the same, so that a dashboard need not know that.
func (r *Runner) Lags() []Lag {
	eng := r.src.Load()
	if eng == nil {
		return nil
	}
	var positions uint64
	var seconds float64
	if eng.Clustered() {
		positions, seconds = r.clusterLag(eng)
	} else {
		positions, seconds = r.mark.Lag(eng.Durable())
	}
	out := make([]Lag, len(r.projections))
	for i, p := range r.projections {
		out[i] = Lag{Projection: p.Name(), Positions: positions, Seconds: seconds}
	}
	return out
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
	r.started = true
	positions, err := r.snaps.List()
	if err != nil {
		return 0, fmt.Errorf("list projection snapshots: %w", err)
	}
	r.loadedFrom = 0
	r.refused = r.refused[:0]
	for _, pos := range positions {
		staged, size, err := r.loadAt(uint64(pos))
		if err == nil {
			// The state loaded is what the next snapshot writes again.
			r.snapEvery = nextSnapshotEvery(r.cfg.SnapshotEveryBytes, uint64(size))
			for _, st := range staged {
				st.Install()
			}
			r.loadedFrom = uint64(pos)
			r.mark.Advance(r.loadedFrom, 0)
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
	r.applied = r.loadedFrom
	r.snappedSinceLoad = false
	r.updateRetain()
	if r.loadedFrom > 0 {
		r.cfg.Logger.Info("projections restored", "position", r.loadedFrom)
	}
	return r.loadedFrom, nil
}

// sectionReader reads a snapshot's sections in order.
type sectionReader struct {
	br  *bufio.Reader
	pos uint64
}

func openSections(rc io.Reader, pos uint64) (*sectionReader, uint64, error) {
	br := bufio.NewReaderSize(rc, 1<<20)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, 0, fmt.Errorf("%w at %d: magic %q: %v", ErrBadSnapshot, pos, magic, err)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > projectionsMax {
		return nil, 0, fmt.Errorf("%w at %d: %d sections: %v", ErrBadSnapshot, pos, n, err)
	}
	return &sectionReader{br: br, pos: pos}, n, nil
}

// next returns the name of the next section and a reader of exactly its
// bytes.
func (sr *sectionReader) next() (string, *io.LimitedReader, error) {
	nameLen, err := binary.ReadUvarint(sr.br)
	if err != nil || nameLen == 0 || nameLen > 64 {
		return "", nil, fmt.Errorf("%w at %d: section name of %d bytes: %v", ErrBadSnapshot, sr.pos, nameLen, err)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(sr.br, name); err != nil {
		return "", nil, fmt.Errorf("%w at %d: section name: %v", ErrBadSnapshot, sr.pos, err)
	}
	size, err := binary.ReadUvarint(sr.br)
	if err != nil || size > sectionBytesMax {
		return "", nil, fmt.Errorf("%w at %d: section %q of %d bytes: %v", ErrBadSnapshot, sr.pos, name, size, err)
	}
	return string(name), &io.LimitedReader{R: sr.br, N: int64(size)}, nil
}

// loadAt stages every projection from the snapshot at pos, checking all of
// it, for Load to install, and returns the size of its file.
func (r *Runner) loadAt(pos uint64) ([]Staged, int64, error) {
	rc, size, err := r.snaps.Open(journal.Position(pos))
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	sr, n, err := openSections(rc, pos)
	if err != nil {
		return nil, 0, err
	}
	if n != uint64(len(r.projections)) {
		return nil, 0, fmt.Errorf("%w: at %d, %d sections for %d projections", errOtherProjections, pos, n, len(r.projections))
	}
	staged := make([]Staged, 0, len(r.projections))
	for _, p := range r.projections {
		name, section, err := sr.next()
		if err != nil {
			return nil, 0, err
		}
		if name != p.Name() {
			return nil, 0, fmt.Errorf("%w: at %d, section %q where %q is registered", errOtherProjections, pos, name, p.Name())
		}
		st, err := p.StageSnapshot(section, pos, r.chunks)
		if err != nil {
			return nil, 0, fmt.Errorf("load %s snapshot at %d: %w", name, pos, err)
		}
		if section.N != 0 {
			return nil, 0, fmt.Errorf("%w at %d: section %q has %d bytes its projection did not read", ErrBadSnapshot, pos, name, section.N)
		}
		staged = append(staged, st)
	}
	// Reading to the end checks the checksum once more, and that nothing
	// follows the sections.
	if n, err := io.Copy(io.Discard, sr.br); err != nil || n != 0 {
		return nil, 0, fmt.Errorf("%w: projection snapshot at %d: %d bytes after its sections: %v", ErrBadSnapshot, pos, n, err)
	}
	return staged, size, nil
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

// damaged reports whether a snapshot failed to load because it is damaged
// (a checksum, a decode, a missing chunk) rather than unreadable for now
// or written for other projections. A projection reports damage by
// wrapping its own sentinel in ErrBadSnapshot or journal.ErrCorrupt.
func damaged(err error) bool {
	if errors.Is(err, errOtherProjections) {
		return false
	}
	return errors.Is(err, journal.ErrCorrupt) || errors.Is(err, ErrBadSnapshot) || errors.Is(err, fs.ErrNotExist)
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
// eng after it until Close, feeding every one. It returns at once: loading
// runs in the background, so the engine takes orders meanwhile, and reads
// wait for the projections to catch up as they always do.
//
// In cluster mode (eng.Clustered) it follows every partition's stream from
// its start instead, and neither loads nor writes snapshots (cluster.go).
func (r *Runner) Start(eng *engine.Engine) {
	r.started = true
	r.src.Store(eng)
	if eng.Clustered() {
		r.startCluster(eng)
		return
	}
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
		inRecord := false
		err = eng.Follow(ctx, from, func(ev *engine.Event) error {
			inRecord = true
			for _, p := range r.projections {
				if err := p.Apply(ev); err != nil {
					return fmt.Errorf("%s: %w", p.Name(), err)
				}
			}
			if !ev.Last {
				return nil
			}
			for _, p := range r.projections {
				p.Commit(ev.Position, ev.At)
			}
			inRecord = false
			r.applied, r.appliedAt = ev.Position, ev.At
			r.mark.Advance(ev.Position, ev.At)
			if ev.Position-r.lastSnap >= r.snapEvery {
				r.snapshot(ev.Position)
			}
			return nil
		})
		if inRecord {
			// Half a record was applied: the projections' state is no
			// state of the journal, and must never be snapshotted.
			r.torn = true
			for _, p := range r.projections {
				p.Abort()
			}
		}
		if ctx.Err() == nil {
			// Reads then wait and answer 503; the log and Err say why.
			if len(r.refused) > 0 {
				err = fmt.Errorf("no projection snapshot loads (%w) and following from %d failed: %w", errors.Join(r.refused...), from, err)
			}
			r.cfg.Logger.Error("projections stopped following the journal", "from", from, "err", err)
			r.stopped(err)
		}
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.probeLag(ctx, eng)
	}()
}

// probeLag measures, every lagProbeEvery, how long the read models take to
// reflect what is durable at that moment: the time from an order's fsync to
// the board, measured from the outside, so it holds whatever the read
// models do. A probe waiting longer than a second is recorded when it ends.
func (r *Runner) probeLag(ctx context.Context, eng *engine.Engine) {
	t := time.NewTicker(lagProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		if eng.Clustered() {
			if err := r.waitClusterDurable(ctx, eng); err != nil {
				return
			}
		} else if err := r.mark.Wait(ctx, eng.Durable()); err != nil {
			return
		}
		r.catchUp.Lock()
		r.catchUp.hist.RecordValue(max(int64(time.Since(start)), 1))
		r.catchUp.Unlock()
	}
}

// CatchUp returns quantiles (0 to 100) of the time the read models took to
// reflect what was durable, over every probe since start, the number of
// probes and their total time.
func (r *Runner) CatchUp(quantiles ...float64) (values []time.Duration, count int64, sum time.Duration) {
	r.catchUp.Lock()
	defer r.catchUp.Unlock()
	values = make([]time.Duration, len(quantiles))
	for i, q := range quantiles {
		values[i] = time.Duration(r.catchUp.hist.ValueAtQuantile(q))
	}
	count = r.catchUp.hist.TotalCount()
	return values, count, time.Duration(r.catchUp.hist.Mean() * float64(count))
}

// nextSnapshotEvery is the journal growth to wait for after a snapshot
// whose file (its sections, not the side files) held fileBytes:
// configured, when the configuration sets it, else adapted to the state's
// size.
func nextSnapshotEvery(configured, fileBytes uint64) uint64 {
	if configured != 0 {
		return configured
	}
	return min(max(snapshotEveryBytesMin, snapshotJournalPerFileByte*fileBytes), snapshotEveryBytesMax)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// snapshot writes every projection as of pos. A failure is logged and
// costs only a longer replay at the next start; the next snapshot is tried
// after another interval of journal, not on every record.
func (r *Runner) snapshot(pos uint64) {
	var section bytes.Buffer
	var counted *countingWriter
	err := r.snaps.WriteFrom(journal.Position(pos), func(bw io.Writer) error {
		counted = &countingWriter{w: bw}
		w := io.Writer(counted)
		b := append([]byte(nil), snapshotMagic...)
		b = binary.AppendUvarint(b, uint64(len(r.projections)))
		if _, err := w.Write(b); err != nil {
			return err
		}
		for _, p := range r.projections {
			section.Reset()
			if err := p.WriteSnapshot(&section, r.chunks); err != nil {
				return fmt.Errorf("snapshot %s: %w", p.Name(), err)
			}
			b = appendString(b[:0], p.Name())
			b = binary.AppendUvarint(b, uint64(section.Len()))
			if _, err := w.Write(b); err != nil {
				return err
			}
			if _, err := w.Write(section.Bytes()); err != nil {
				return err
			}
		}
		// The side files' directory entries must be durable before the
		// snapshot naming them is.
		return r.chunks.sync()
	})
	r.lastSnap = pos
	if err != nil {
		r.cfg.Logger.Error("projection snapshot failed", "position", pos, "err", err)
		return
	}
	r.snapEvery = nextSnapshotEvery(r.cfg.SnapshotEveryBytes, counted.n)
	for _, p := range r.projections {
		p.SnapshotDurable()
	}
	r.snappedSinceLoad = true
	r.updateRetain()
	if err := r.collect(); err != nil {
		r.cfg.Logger.Warn("projection chunk files not collected", "err", err)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
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

// chunkNames lists the side files the snapshot at pos names.
func (r *Runner) chunkNames(pos journal.Position) ([]string, error) {
	rc, _, err := r.snaps.Open(pos)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	sr, n, err := openSections(rc, uint64(pos))
	if err != nil {
		return nil, err
	}
	byName := make(map[string]Projection, len(r.projections))
	for _, p := range r.projections {
		byName[p.Name()] = p
	}
	var names []string
	for i := uint64(0); i < n; i++ {
		name, section, err := sr.next()
		if err != nil {
			return nil, err
		}
		p := byName[name]
		namer, ok := p.(ChunkNamer)
		if p == nil {
			// A section of a projection no longer registered: its side
			// files are unknown, so nothing may be removed.
			return nil, fmt.Errorf("%w: section %q", errOtherProjections, name)
		}
		if ok {
			more, err := namer.SnapshotChunks(section)
			if err != nil {
				return nil, err
			}
			names = append(names, more...)
		}
		if _, err := io.Copy(io.Discard, section); err != nil {
			return nil, err
		}
	}
	return names, nil
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
	// No snapshots in cluster mode (cluster.go).
	if eng := r.src.Load(); eng != nil && eng.Clustered() {
		return nil
	}
	if r.applied > r.lastSnap && !r.torn {
		r.snapshot(r.applied)
	}
	return nil
}

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

// WriteChunk implements Files.
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

// ReadChunk implements Files. It reads the file into one
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
