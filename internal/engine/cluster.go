package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/journal"
)

// Cluster mode.
//
// Every node keeps every partition's state hot, and serves the partitions
// it holds the lease of. A partition is in one of two states on a node:
//
//   - served: it has a worker of its own (one worker per partition, so
//     that each journal record holds one partition's events) writing to
//     the partition's journal, opened with the lease's epoch as fencing
//     token;
//   - followed: a goroutine reads the partition's journal as its owner
//     writes it and applies each record with evolve, the code recovery
//     uses, so that the SKU directory (which every node needs to route)
//     and the state stay current, and a take-over replays only the tail.
//
// AddPartition moves a partition from followed to served, RemovePartition
// and LosePartition back. Only one goroutine changes a partition's state
// at any time: its follower, its worker, or a transition (which holds the
// partition's mutex while neither runs).
//
// A record that fails (the journal was fenced by a new owner, or gave up)
// stops the whole engine, as with the file journal: the partition's state
// then holds events that may not be in the stream, and rebuilding one
// partition in place would mean taking its SKUs, deals and idempotency keys
// out of directories every partition shares. A restart loads the
// snapshots and replays the streams instead: slower, but never wrong.

// Stream is read-only access to one partition's journal, for following it
// while another node writes it (jetstream.Reader).
type Stream interface {
	// Replay calls fn for every record after from up to the journal's end
	// when Replay starts. A position that holds no record (a fence) may be
	// delivered as an empty one.
	Replay(from journal.Position, fn func(end journal.Position, rec []byte) error) error
	// Follow calls fn for every record after from as it is stored, until
	// ctx ends.
	Follow(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error) error
	Close() error
}

// PendingStream is a Stream that can also say how far its follower is
// from the stream's end (jetstream.Reader): FollowPending is Follow that
// tells pending, as it learns it, how many records follow the last one
// delivered (0: at the end). The engine's followers use it when the
// stream has it, so that a request naming something not found is
// answered "unavailable, retry" rather than "not found" while a follower
// is behind (see notFoundWhileBehind).
type PendingStream interface {
	FollowPending(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error, pending func(n uint64)) error
}

// LastStream is a Stream that can say its last position now
// (jetstream.Reader): a follower that has applied nothing for
// followCheckEvery while the stream holds records past it is taken as
// stuck, and made again.
type LastStream interface {
	Last(ctx context.Context) (journal.Position, error)
}

// followCheckEvery is how often a follower's progress is checked against
// its stream's end. A consumer was seen to deliver nothing, and report
// nothing, after a server was killed, and a read stuck in nats.go does not
// always return on its context: such a follower would leave the
// partition's state here stale for good.
const followCheckEvery = 3 * time.Second

// PartitionSnapshots is one partition's snapshot store
// (jetstream.Snapshots).
type PartitionSnapshots interface {
	// WriteFrom stores what fn writes as the snapshot at pos, visible
	// only once whole.
	WriteFrom(ctx context.Context, pos journal.Position, fn func(w io.Writer) error) error
	// List returns the snapshots' positions, newest first.
	List(ctx context.Context) ([]journal.Position, error)
	// Open returns the snapshot at pos; its last Read fails with
	// journal.ErrCorrupt if the snapshot is damaged.
	Open(ctx context.Context, pos journal.Position) (io.ReadCloser, error)
	// Oldest is the oldest snapshot kept (0 for none).
	Oldest(ctx context.Context) (journal.Position, error)
}

// Cluster is what the engine needs in cluster mode. The engine imports no
// NATS or lease package: internal/cluster builds this from them.
type Cluster struct {
	// Node names this node, in logs.
	Node string
	// OpenJournal opens partition's journal for writing with the fencing
	// token epoch (the lease revision): from then on the previous
	// writer's appends are refused (required).
	OpenJournal func(ctx context.Context, partition int, epoch uint64) (journal.Journal, error)
	// OpenStream opens read-only access to partition's journal, which
	// must not fence its writer (required).
	OpenStream func(ctx context.Context, partition int) (Stream, error)
	// OpenSnapshots opens partition's snapshot store. Nil: no snapshots,
	// every start replays every stream from its beginning.
	OpenSnapshots func(ctx context.Context, partition int) (PartitionSnapshots, error)
	// SnapshotEveryBytes is the journal growth of one served partition,
	// in bytes, after which it is snapshotted in the background (default
	// 64 MiB; negative: only on Snapshot and Close).
	SnapshotEveryBytes int64
	// RetainFrom, if set, returns the position of partition's journal
	// that its read models still need. After a snapshot, the partition's
	// stream is purged behind the older of that and the oldest snapshot
	// kept. Nil: streams are never purged.
	//
	// TODO(issue 13): the read models follow every partition's stream
	// but keep no snapshots in cluster mode, so they rebuild from each
	// stream's start and need every record: cmd/fest leaves this nil until
	// they snapshot a position per partition.
	RetainFrom func(partition int) uint64
	// FollowRetryWait is the pause before a follower whose read failed
	// (the connection lost, say) reads again; default 1 s.
	FollowRetryWait time.Duration
	// OpenTimeout bounds opening each partition's stream and snapshot
	// store, and loading its snapshot, at start-up; default 1 minute.
	OpenTimeout time.Duration
	// Leased says that partitions are served under leases: a served
	// partition then takes commands only while ExtendLease's last
	// deadline is ahead, so that a node whose lease may have passed to
	// another (its renewals failing, or the node paused) answers nothing
	// from state that may be stale; its commands are answered
	// CodeUnavailable with Field UnavailableLease. internal/cluster sets
	// it and extends each lease at every renewal. False (tests driving
	// AddPartition by hand): served partitions always take commands.
	Leased bool
}

// Defaults of Cluster.
const (
	DefaultClusterSnapshotEveryBytes = 64 << 20
	DefaultFollowRetryWait           = time.Second
	DefaultClusterOpenTimeout        = time.Minute
)

// Validate reports the first invalid field.
func (c *Cluster) Validate() error {
	switch {
	case c.OpenJournal == nil:
		return errors.New("engine config: Cluster.OpenJournal is required")
	case c.OpenStream == nil:
		return errors.New("engine config: Cluster.OpenStream is required")
	case c.FollowRetryWait < 0 || c.OpenTimeout < 0:
		return errors.New("engine config: Cluster durations must not be negative")
	}
	return nil
}

func (c Cluster) withDefaults() Cluster {
	if c.SnapshotEveryBytes == 0 {
		c.SnapshotEveryBytes = DefaultClusterSnapshotEveryBytes
	}
	if c.FollowRetryWait == 0 {
		c.FollowRetryWait = DefaultFollowRetryWait
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = DefaultClusterOpenTimeout
	}
	return c
}

// Reasons of a CodeUnavailable in cluster mode, in Result.Field (the HTTP
// layer words its message by them).
const (
	// UnavailableLease: the partition is served here, but its lease is not
	// surely valid now (not renewed within its TTL less a margin).
	UnavailableLease = "lease"
	// UnavailableFollowing: what the request names was not found, and a
	// follower of this node is behind its stream, so it may exist already.
	UnavailableFollowing = "following"
)

// monoBase is the origin of the lease deadlines, which are read on the
// monotonic clock.
var monoBase = time.Now()

var (
	// ErrNotCluster is returned by the partition transitions of an engine
	// not in cluster mode.
	ErrNotCluster = errors.New("engine not in cluster mode")
	// ErrPartitionServed is returned by AddPartition for a partition this
	// node serves already.
	ErrPartitionServed = errors.New("partition already served here")
)

// clusterPartition is one partition in cluster mode.
type clusterPartition struct {
	e  *Engine
	id int
	// mu is held by a transition (AddPartition, RemovePartition,
	// LosePartition, Close) for its whole length: one at a time.
	mu     sync.Mutex
	stream Stream
	snaps  PartitionSnapshots // nil without snapshots
	// pos is the journal position the partition's state includes while
	// it is followed (the follower advances it). While a worker serves the
	// partition, its journal's End is the position instead.
	pos atomic.Uint64
	ev  Event // scratch for applying records

	followCancel context.CancelFunc // nil while not following
	// followMu is held by the follower while it applies a record, and
	// followGen names the current follower: stopFollowing bumps it under
	// followMu, so a follower it stopped waiting for (a read stuck in
	// nats.go) applies nothing more.
	followMu   sync.Mutex
	followGen  uint64
	followDone chan struct{}
	// pending is how many records the follower knows its stream holds
	// past its position (its lag), and followOK is false while the
	// follower is not reading (starting, or failed and waiting to read
	// again), when its lag is unknown.
	pending  atomic.Uint64
	followOK atomic.Bool
	// leaseUntil is the deadline ExtendLease set, in nanoseconds since
	// monoBase: with Cluster.Leased, the partition takes commands only
	// before it.
	leaseUntil atomic.Int64

	worker  *worker // while served
	journal journal.Journal

	// bytesSinceSnapshot is the record bytes appended since the last
	// snapshot began; only the worker touches it.
	bytesSinceSnapshot int64
	snapshotRunning    atomic.Bool
	snapshotWG         sync.WaitGroup
	snapshotMu         sync.Mutex        // one snapshot of the partition at a time
	snapshotReq        partitionSnapshot // guarded by snapshotMu
	// snapshotCtx is the context of the background snapshots while the
	// partition is served; stopServing cancels it, so that a hand-off
	// never waits for a snapshot (up to clusterSnapshotTimeout) to end.
	snapshotCtx    context.Context
	snapshotCancel context.CancelFunc
}

// openCluster opens the engine in cluster mode: every partition's stream,
// its newest snapshot and the stream after it, then a follower for each.
// No partition is served until AddPartition.
func openCluster(cfg Config) (*Engine, error) {
	cl := cfg.Cluster.withDefaults()
	cfg.Cluster = &cl
	e := &Engine{cfg: cfg, failedCh: make(chan struct{})}
	e.snapshotReq.done = make(chan struct{}, 1)
	e.core = e.newCore()
	n := cfg.Partitions
	e.served = make([]atomic.Pointer[worker], n)
	for p := range n {
		cp := &clusterPartition{e: e, id: p}
		cp.snapshotReq.done = make(chan struct{}, 1)
		e.cluster = append(e.cluster, cp)
	}
	closeStreams := func() {
		for _, cp := range e.cluster {
			if cp.stream != nil {
				cp.stream.Close()
			}
		}
	}
	// The streams and stores are opened one after another: they are a
	// round trip each, and every partition's store is in one bucket, whose
	// concurrent creates on three servers were seen to time out.
	for _, cp := range e.cluster {
		if err := cp.open(); err != nil {
			closeStreams()
			return nil, err
		}
	}
	// The partitions load in parallel, as many at once as there are
	// cores: each is decoded and replayed by one goroutine, and what they
	// share (the directories) takes concurrent writers, as it does from
	// the workers.
	errs := make([]error, n)
	next := make(chan *clusterPartition, n)
	for _, cp := range e.cluster {
		next <- cp
	}
	close(next)
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for cp := range next {
				errs[cp.id] = cp.load()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeStreams()
		return nil, err
	}
	for _, cp := range e.cluster {
		cp.startFollowing()
	}
	e.cfg.Logger.Info("cluster engine open: every partition followed", "node", cl.Node, "partitions", n, "skus", e.core.dir.count())
	return e, nil
}

// open opens the partition's stream and snapshot store.
func (cp *clusterPartition) open() error {
	cl := cp.e.cfg.Cluster
	ctx, cancel := context.WithTimeout(context.Background(), cl.OpenTimeout)
	defer cancel()
	stream, err := cl.OpenStream(ctx, cp.id)
	if err != nil {
		return fmt.Errorf("open partition %d's stream: %w", cp.id, err)
	}
	cp.stream = stream
	if cl.OpenSnapshots != nil {
		if cp.snaps, err = cl.OpenSnapshots(ctx, cp.id); err != nil {
			return fmt.Errorf("open partition %d's snapshots: %w", cp.id, err)
		}
	}
	return nil
}

// load loads the partition's newest snapshot and replays the stream after
// it.
func (cp *clusterPartition) load() error {
	if cp.snaps != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cp.e.cfg.Cluster.OpenTimeout)
		err := cp.loadSnapshot(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	from := cp.pos.Load()
	if err := cp.stream.Replay(journal.Position(from), cp.apply); err != nil {
		return fmt.Errorf("replay partition %d's stream from %d: %w", cp.id, from, err)
	}
	return nil
}

// apply applies one record of the partition's journal to its state. An
// empty record (a stream's fence marker, as a Stream delivers it) holds no
// events but moves the position on.
func (cp *clusterPartition) apply(end journal.Position, rec []byte) error {
	if len(rec) == 0 {
		cp.pos.Store(uint64(end))
		return nil
	}
	c := cp.e.core
	part := c.partitions[cp.id]
	err := decodeRecord(rec, len(c.partitions), &cp.ev, func(ev *Event) error {
		if ev.Partition != cp.id {
			return fmt.Errorf("%w: an event of partition %d", ErrBadRecord, ev.Partition)
		}
		c.evolve(part, ev)
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply partition %d's record %d: %w", cp.id, end, err)
	}
	cp.pos.Store(uint64(end))
	return nil
}

// startFollowing starts the follower from pos. A read that fails is
// retried after FollowRetryWait; a record that does not decode, or one
// purged before it was read, stops the engine, since the state can then no
// longer be the stream's.
func (cp *clusterPartition) startFollowing() {
	if cp.followCancel != nil {
		panic(fmt.Sprintf("engine: partition %d followed twice", cp.id))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	cp.followCancel, cp.followDone = cancel, done
	cp.followMu.Lock()
	cp.followGen++
	gen := cp.followGen
	cp.followMu.Unlock()
	apply := func(end journal.Position, rec []byte) error {
		cp.followMu.Lock()
		defer cp.followMu.Unlock()
		if cp.followGen != gen {
			return context.Canceled // stopped, and no longer waited for
		}
		return cp.apply(end, rec)
	}
	pending := func(n uint64) {
		cp.followMu.Lock()
		defer cp.followMu.Unlock()
		if cp.followGen == gen {
			cp.pending.Store(n)
			cp.followOK.Store(true)
		}
	}
	ps, _ := cp.stream.(PendingStream)
	e := cp.e
	cp.followOK.Store(false)
	if ls, ok := cp.stream.(LastStream); ok {
		go cp.watchFollower(ctx, gen, ls)
	}
	go func() {
		defer close(done)
		for {
			from := journal.Position(cp.pos.Load())
			var err error
			if ps != nil {
				err = ps.FollowPending(ctx, from, apply, pending)
			} else {
				cp.followOK.Store(true) // its lag is not known: taken as none
				err = cp.stream.Follow(ctx, from, apply)
			}
			if ctx.Err() != nil {
				return
			}
			cp.followMu.Lock()
			if cp.followGen == gen {
				cp.followOK.Store(false) // not reading: the lag is unknown
			}
			cp.followMu.Unlock()
			if errors.Is(err, ErrBadRecord) || errors.Is(err, journal.ErrRemoved) || errors.Is(err, journal.ErrCorrupt) {
				e.fail(fmt.Errorf("follow partition %d from %d: %w", cp.id, cp.pos.Load(), err))
				return
			}
			e.cfg.Logger.Warn("following a partition failed; reading again", "node", e.cfg.Cluster.Node,
				"partition", cp.id, "position", cp.pos.Load(), "err", err, "wait", e.cfg.Cluster.FollowRetryWait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(e.cfg.Cluster.FollowRetryWait):
			}
		}
	}()
}

// watchFollower makes the follower of generation gen again when it has
// applied nothing for followCheckEvery while its stream holds records past
// its position (the stuck follower is left behind, and applies nothing
// more), until ctx (the follower's) ends.
func (cp *clusterPartition) watchFollower(ctx context.Context, gen uint64, ls LastStream) {
	e := cp.e
	seen := cp.pos.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(followCheckEvery):
		}
		pos := cp.pos.Load()
		if pos != seen {
			seen = pos
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, followCheckEvery)
		last, err := ls.Last(qctx)
		cancel()
		if err != nil || uint64(last) <= pos {
			continue
		}
		cp.followMu.Lock()
		current := cp.followGen == gen
		if current {
			cp.pending.Store(uint64(last) - pos) // behind, whatever the consumer said
		}
		cp.followMu.Unlock()
		if !current {
			return
		}
		cp.mu.Lock()
		cp.followMu.Lock()
		current = cp.followGen == gen && cp.followCancel != nil
		cp.followMu.Unlock()
		if current && !e.closing.Load() {
			e.cfg.Logger.Warn("a partition's follower applied nothing while its stream moved on; following again",
				"node", e.cfg.Cluster.Node, "partition", cp.id, "position", pos, "stream_end", uint64(last))
			cp.stopFollowing()
			cp.startFollowing()
		}
		cp.mu.Unlock()
		return
	}
}

// stopFollowing stops the follower: pos is final when it returns. It does
// not wait for the follower's goroutine to end: a read stuck in nats.go,
// which does not always return on its context (seen after a server was
// killed), held take-overs for seconds that way. Bumping followGen under
// followMu is enough: an apply under way has finished once the mutex is
// held, and every later one sees the new generation and applies nothing;
// the goroutine ends whenever its read returns, and done is closed then.
func (cp *clusterPartition) stopFollowing() (done <-chan struct{}) {
	if cp.followCancel == nil {
		return nil
	}
	cp.followCancel()
	cp.followMu.Lock()
	cp.followGen++ // the stopped follower applies nothing more
	cp.followMu.Unlock()
	done = cp.followDone
	cp.followCancel, cp.followDone = nil, nil
	return done
}

// followStopWaitMax bounds how long Close waits for a stopped follower's
// goroutine to end.
const followStopWaitMax = 2 * time.Second

func (e *Engine) clusterPartition(p int) (*clusterPartition, error) {
	if e.cfg.Cluster == nil {
		return nil, ErrNotCluster
	}
	if p < 0 || p >= len(e.cluster) {
		return nil, fmt.Errorf("partition %d outside 0..%d", p, len(e.cluster)-1)
	}
	return e.cluster[p], nil
}

// AddPartition starts serving partition p, whose lease this node acquired
// at epoch: it stops p's follower, opens p's journal with epoch as its
// fencing token (from then on the previous owner cannot append), replays
// the records after the follower's position and starts p's worker. Until
// it returns, commands for p are answered CodeUnavailable.
func (e *Engine) AddPartition(ctx context.Context, p int, epoch uint64) error {
	cp, err := e.clusterPartition(p)
	if err != nil {
		return fmt.Errorf("add partition %d: %w", p, err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	switch {
	case cp.worker != nil:
		return fmt.Errorf("add partition %d: %w", p, ErrPartitionServed)
	case e.closing.Load():
		return fmt.Errorf("add partition %d: %w", p, ErrClosed)
	}
	if err := e.Err(); err != nil {
		return fmt.Errorf("add partition %d: the engine has stopped: %w", p, err)
	}
	// Each step's time goes into the log: a take-over's share of a
	// failover.
	began := time.Now()
	cp.stopFollowing()
	stopped := time.Now()
	j, err := e.cfg.Cluster.OpenJournal(ctx, p, epoch)
	if err != nil {
		cp.startFollowing()
		return fmt.Errorf("add partition %d: open its journal at epoch %d: %w", p, epoch, err)
	}
	opened := time.Now()
	from := cp.pos.Load()
	if err := j.Replay(journal.Position(from), cp.apply); err != nil {
		j.Close()
		cp.startFollowing()
		return fmt.Errorf("add partition %d: replay its journal from %d: %w", p, from, err)
	}
	cp.pos.Store(uint64(j.End()))
	w := newPartitionWorker(e, cp, j)
	cp.worker, cp.journal = w, j
	cp.bytesSinceSnapshot = 0
	cp.snapshotCtx, cp.snapshotCancel = context.WithCancel(context.Background())
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		w.run()
	}()
	e.mu.Lock()
	e.served[p].Store(w)
	e.mu.Unlock()
	e.cfg.Logger.Info("partition served", "node", e.cfg.Cluster.Node, "partition", p, "epoch", epoch,
		"replayed_from", from, "position", uint64(j.End()), "stop_following", stopped.Sub(began).Round(time.Millisecond),
		"open", opened.Sub(stopped).Round(time.Millisecond), "replay", time.Since(opened).Round(time.Millisecond))
	return nil
}

// RemovePartition stops serving partition p (a planned hand-off): commands
// for p are answered CodeUnavailable from now on, the records in flight
// are waited for, p's journal is closed, and p is followed again from its
// journal's end. It does nothing for a partition not served here. An error
// means some record of p failed: the engine has then stopped.
func (e *Engine) RemovePartition(ctx context.Context, p int) error {
	cp, err := e.clusterPartition(p)
	if err != nil {
		return fmt.Errorf("remove partition %d: %w", p, err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.worker == nil {
		return nil
	}
	err = cp.stopServing(false)
	if e.Err() == nil {
		// A journal that failed only to close stored every record: the
		// partition is followed again rather than left stale here.
		cp.startFollowing()
	}
	if err != nil {
		return fmt.Errorf("remove partition %d: %w", p, err)
	}
	return nil
}

// LosePartition stops serving partition p when its lease is lost: like
// RemovePartition, the records in flight are waited for, and each reply
// says what the stream did with its record. Once a new owner has fenced
// p's journal, every record after the fence fails (its clients get
// CodeUnavailable, never CodeOK) and that failure stops the engine, since
// p's state then holds events the stream does not: the process restarts
// and rejoins. A record stored before the fence was acknowledged by a
// quorum, so the new owner replays it, and CodeOK is true. When every
// record was stored, p is followed again and the engine goes on.
func (e *Engine) LosePartition(p int) error {
	cp, err := e.clusterPartition(p)
	if err != nil {
		return fmt.Errorf("lose partition %d: %w", p, err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.worker == nil {
		return nil
	}
	e.cfg.Logger.Warn("partition lease lost: no longer served here", "node", e.cfg.Cluster.Node, "partition", p)
	err = cp.stopServing(false)
	if e.Err() == nil {
		// A journal that failed only to close stored every record: the
		// partition is followed again rather than left stale here.
		cp.startFollowing()
	}
	if err != nil {
		return fmt.Errorf("lose partition %d: %w", p, err)
	}
	return nil
}

// stopServing stops the worker, waits for its records, optionally takes a
// final snapshot, and closes the journal. The caller holds mu. It returns
// an error, and the engine stops, if any record of the partition failed.
func (cp *clusterPartition) stopServing(finalSnapshot bool) error {
	e := cp.e
	w, j := cp.worker, cp.journal
	e.mu.Lock()
	e.served[cp.id].Store(nil)
	close(w.queue)
	e.mu.Unlock()
	<-w.exited // the worker drains: every record's done has run
	cp.snapshotCancel()
	cp.snapshotWG.Wait()
	var errs []error
	if w.failed.Load() {
		errs = append(errs, errors.New("a record failed"))
	} else if finalSnapshot && cp.snaps != nil {
		req := &cp.snapshotReq
		cp.snapshotMu.Lock()
		req.part = e.core.partitions[cp.id]
		req.buf = encodePartition(req.buf[:0], req.part)
		req.pos = j.End()
		if err := cp.writeSnapshot(context.Background(), req, j); err != nil {
			errs = append(errs, fmt.Errorf("final snapshot: %w", err))
		}
		cp.snapshotMu.Unlock()
	}
	if err := j.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close journal: %w", err))
	}
	cp.worker, cp.journal = nil, nil
	cp.pos.Store(uint64(j.End()))
	if w.failed.Load() {
		err := errors.Join(errs...)
		e.fail(fmt.Errorf("partition %d: %w", cp.id, err))
		return err
	}
	return errors.Join(errs...)
}

// Owns reports whether partition p is served here: a command for it is
// applied by this node. Without cluster mode every partition is.
func (e *Engine) Owns(p int) bool {
	if p < 0 || p >= e.cfg.Partitions {
		return false
	}
	if e.cfg.Cluster == nil {
		return true
	}
	return e.served[p].Load() != nil && e.Err() == nil
}

// FollowPartition is Follow for one partition in cluster mode: it calls fn
// for every event in partition p's records after position from (p's
// stream sequence), in order, as they are stored, whoever writes them,
// until ctx ends. ev.Position is the record's position in p's stream. It
// is for read models, which need a position per partition in cluster mode
// (docs/cluster.md, step 3).
func (e *Engine) FollowPartition(ctx context.Context, p int, from uint64, fn func(ev *Event) error) error {
	cp, err := e.clusterPartition(p)
	if err != nil {
		return fmt.Errorf("follow partition %d: %w", p, err)
	}
	var ev Event
	n := len(e.core.partitions)
	return cp.stream.Follow(ctx, journal.Position(from), func(end journal.Position, rec []byte) error {
		if len(rec) == 0 {
			return nil // a fence: no events
		}
		return decodeRecord(rec, n, &ev, func(ev *Event) error {
			ev.Position = uint64(end)
			return fn(ev)
		})
	})
}

// Clustered reports whether the engine runs in cluster mode.
func (e *Engine) Clustered() bool { return e.cfg.Cluster != nil }

// FollowPartitionRecords is FollowPartition without the decoding: it calls
// fn with each record of partition p after position from, and its
// position (p's stream sequence), as they are stored, until ctx ends. A
// fence (a new owner taking p) comes as an empty record, so that a
// follower's position reaches every position a served partition's Durable
// may report. rec is valid only during fn. It is for a reader that merges
// several partitions onto one goroutine (the projection runner), which
// copies rec and decodes it there with DecodeRecord.
func (e *Engine) FollowPartitionRecords(ctx context.Context, p int, from uint64, fn func(pos uint64, rec []byte) error) error {
	cp, err := e.clusterPartition(p)
	if err != nil {
		return fmt.Errorf("follow partition %d: %w", p, err)
	}
	return cp.stream.Follow(ctx, journal.Position(from), func(end journal.Position, rec []byte) error {
		return fn(uint64(end), rec)
	})
}

// DecodeRecord calls fn for each event of rec, a record a follower read,
// with ev.Position set to pos; ev is the caller's scratch event, and every
// event aliases rec. An empty record (a fence) has no events.
func (e *Engine) DecodeRecord(pos uint64, rec []byte, ev *Event, fn func(ev *Event) error) error {
	if len(rec) == 0 {
		return nil
	}
	return decodeRecord(rec, len(e.core.partitions), ev, func(ev *Event) error {
		ev.Position = pos
		return fn(ev)
	})
}

// PartitionDurable returns the position of partition p's journal up to
// which every record is stored (in cluster mode): the served journal's
// Durable, or the follower's position, which only ever includes stored
// records. Reads that must reflect everything acknowledged wait for it.
// Without cluster mode it is the engine's Durable.
func (e *Engine) PartitionDurable(p int) uint64 {
	if e.cfg.Cluster == nil {
		return e.Durable()
	}
	if w := e.served[p].Load(); w != nil {
		return uint64(w.journal.Durable())
	}
	return e.cluster[p].pos.Load()
}

// ServedPartitions returns the partitions served here, in order: every
// partition without cluster mode, none on a stopped engine.
func (e *Engine) ServedPartitions() []int {
	var ps []int
	for p := range e.cfg.Partitions {
		if e.Owns(p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// Locate validates what can be checked without the partition's state (the
// router's checks) and returns the request's partition, without queueing
// it. ok is false when the request has been answered already (r.Result is
// set: not found, invalid). In cluster mode the HTTP layer
// forwards a request whose partition this node does not Own.
//
// Locate changes nothing and counts nothing: the gates of an order (a
// sold-out SKU, an ended deal, the idempotency key's reservation) are left
// to the owner's Submit, which routes the request again with its current
// state, and so are the counts of gateway rejections. In cluster mode a
// "not found" while one of the node's followers is behind is answered
// CodeUnavailable instead (notFoundWhileBehind).
func (e *Engine) Locate(r *Request) (partition int, ok bool) {
	p, ok := e.core.locate(r)
	if !ok && r.Result.Code == CodeNotFound && e.cfg.Cluster != nil {
		e.notFoundWhileBehind(r, false)
	}
	return p, ok
}

// notFoundWhileBehind turns r's "not found" into CodeUnavailable (Field
// UnavailableFollowing, which the HTTP layer answers 503 with Retry-After)
// unless every follower of this node is at its stream's end: a SKU, a
// merchant or a deal created on its owner a moment ago, or one a stuck
// follower has not read, would otherwise be answered 404, which a client
// takes as final. The name alone does not say its partition (a SKU's is
// its merchant's, which only the directory knows), so every follower is
// asked. Only the not-found branch pays this: a known SKU's route does no
// more work. count says whether to count it in Stats.NotFoundBehind
// (Submit does, Locate counts nothing).
func (e *Engine) notFoundWhileBehind(r *Request, count bool) {
	for _, cp := range e.cluster {
		if !cp.atEnd() {
			r.Result = Result{Code: CodeUnavailable, Field: UnavailableFollowing}
			if count {
				e.stats.NotFoundBehind.Add(1)
			}
			return
		}
	}
}

// atEnd reports whether the partition's state here is its stream's as far
// as this node knows: served here, or followed with nothing pending.
func (cp *clusterPartition) atEnd() bool {
	if cp.e.served[cp.id].Load() != nil {
		return true
	}
	return cp.followOK.Load() && cp.pending.Load() == 0
}

// FollowerLag returns how many records of partition p's stream this node
// knows of and has not applied (0 for a partition served here), and
// whether that is known: false while the follower is not reading (it
// starts, or it failed and reads again), when it may be behind by any
// amount.
func (e *Engine) FollowerLag(p int) (records uint64, known bool) {
	cp, err := e.clusterPartition(p)
	if err != nil {
		return 0, false
	}
	if e.served[p].Load() != nil {
		return 0, true
	}
	return cp.pending.Load(), cp.followOK.Load()
}

// ExtendLease records that this node's lease of partition p is surely
// valid for validFor from now (its last renewal's send time plus the TTL,
// less a margin, minus what has passed since). With Cluster.Leased, p
// takes commands only until then. It may be called before AddPartition
// (a renewal while the take-over replays) and after the partition is
// removed (it then changes nothing until the next AddPartition).
func (e *Engine) ExtendLease(p int, validFor time.Duration) {
	cp, err := e.clusterPartition(p)
	if err != nil {
		panic(fmt.Sprintf("engine: ExtendLease: %v", err))
	}
	cp.leaseUntil.Store(int64(time.Since(monoBase) + validFor))
}

// PartitionQueueDepth returns how many submissions wait in the queue of
// partition p's worker, and whether p is served here (in cluster mode).
func (e *Engine) PartitionQueueDepth(p int) (int, bool) {
	if e.cfg.Cluster == nil || p < 0 || p >= len(e.served) {
		return 0, false
	}
	w := e.served[p].Load()
	if w == nil {
		return 0, false
	}
	return len(w.queue), true
}

// PartitionPosition returns the journal position partition p's state
// includes here (in cluster mode; the engine's journal end otherwise).
// Between two nodes, the difference is the follower's lag.
func (e *Engine) PartitionPosition(p int) uint64 {
	if e.cfg.Cluster == nil {
		return e.JournalEnd()
	}
	if w := e.served[p].Load(); w != nil {
		return uint64(w.journal.End())
	}
	return e.cluster[p].pos.Load()
}

// submitCluster is Submit in cluster mode: a request for a partition not
// served here is answered CodeUnavailable (the HTTP layer forwards such
// requests to the owner before they get here).
func (e *Engine) submitCluster(b *Batch) {
	b.done = make(chan struct{})
	n := e.cfg.Partitions
	if len(b.perWorker) != n {
		b.perWorker = make([][]int32, n)
		b.touched = b.touched[:0]
	}
	for _, p := range b.touched {
		b.perWorker[p] = b.perWorker[p][:0]
	}
	b.touched = b.touched[:0]
	b.keyed = false
	failed := e.Err() != nil
	leased := e.cfg.Cluster.Leased
	var now int64
	if leased {
		now = int64(time.Since(monoBase))
	}
	for i := range b.Requests {
		r := &b.Requests[i]
		p, ok := e.admit(r, failed, nil)
		if !ok {
			if r.Result.Code == CodeNotFound {
				e.notFoundWhileBehind(r, true)
			}
			continue
		}
		if e.served[p].Load() == nil {
			r.Result = Result{Code: CodeUnavailable}
			e.stats.NotServed.Add(1)
			continue
		}
		if leased && now >= e.cluster[p].leaseUntil.Load() {
			// The lease may have passed to another node: neither a read
			// nor a refusal is answered from this state, and no write is
			// tried (the fence would refuse it and stop the engine).
			r.Result = Result{Code: CodeUnavailable, Field: UnavailableLease}
			e.stats.LeaseNotValid.Add(1)
			continue
		}
		r.partition = int32(p)
		b.keyed = b.keyed || r.keyedOrder()
		if len(b.perWorker[p]) == 0 {
			b.touched = append(b.touched, int32(p))
		}
		b.perWorker[p] = append(b.perWorker[p], int32(i))
	}
	b.remaining.Store(int32(len(b.touched)) + 1)
	e.mu.RLock()
	closed := e.mu.closed
	for _, p := range b.touched {
		idx := b.perWorker[p]
		w := e.served[p].Load() // under the lock: its queue is open
		if !closed && w != nil {
			select {
			case w.queue <- shard{b: b, idx: idx}:
				continue
			default:
			}
		}
		code := CodeOverloaded
		switch {
		case closed:
			code = CodeUnavailable
		case w == nil:
			// Removed since it was routed.
			code = CodeUnavailable
			e.stats.NotServed.Add(uint64(len(idx)))
		default:
			e.stats.Overloaded.Add(uint64(len(idx)))
		}
		for _, i := range idx {
			b.Requests[i].Result = Result{Code: code}
		}
		b.remaining.Add(-1)
	}
	e.mu.RUnlock()
	b.finish()
}

// refuseAfterLease answers every command of fl's shards CodeUnavailable
// (Field UnavailableLease), releases their replies and gives fl back, if
// p's lease is no longer surely valid when the worker is about to decide
// them; it reports whether it did. submitCluster checks the lease at
// admission, but under load a command may wait in the partition's queue,
// and for a free record, longer than LeaseMargin: decided and appended
// after the deadline, its record could land after a new owner's fence,
// which would refuse it and stop the engine. Checked here, just before
// the decision and the append, nothing is decided past the deadline, and
// a new owner fences at least LeaseMargin after it: a node whose lease is
// taken over under load gives the partition up (its renewal is refused,
// the handler's Lost follows) without a refused record. Idle ticks
// (expiry, deal ends) are skipped the same way.
func (cp *clusterPartition) refuseAfterLease(fl *inflight) bool {
	e := cp.e
	if !e.cfg.Cluster.Leased || int64(time.Since(monoBase)) < cp.leaseUntil.Load() {
		return false
	}
	for _, s := range fl.shards {
		for _, i := range s.idx {
			s.b.Requests[i].Result = Result{Code: CodeUnavailable, Field: UnavailableLease}
		}
		e.stats.LeaseNotValid.Add(uint64(len(s.idx)))
		s.b.finish()
	}
	clear(fl.shards)
	fl.shards = fl.shards[:0]
	fl.w.free <- fl
	return true
}

// closeCluster stops serving every partition (with a final snapshot of
// each, unless the engine has stopped), stops the followers and closes the
// streams.
func (e *Engine) closeCluster() error {
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.mu.closed = true
	e.closing.Store(true)
	e.mu.Unlock()
	var errs []error
	dones := make([]<-chan struct{}, len(e.cluster))
	for _, cp := range e.cluster {
		cp.mu.Lock()
		if cp.worker != nil {
			if err := cp.stopServing(e.Err() == nil); err != nil {
				errs = append(errs, fmt.Errorf("stop serving partition %d: %w", cp.id, err))
			}
		}
		dones[cp.id] = cp.stopFollowing()
		cp.mu.Unlock()
	}
	// The followers' goroutines are waited for together, for at most
	// followStopWaitMax: one stuck in nats.go is left behind.
	deadline := time.After(followStopWaitMax)
	for p, done := range dones {
		if done == nil {
			continue
		}
		select {
		case <-done:
			continue
		default:
		}
		select {
		case <-done:
		case <-deadline:
			deadline = closedTimeChan
			e.cfg.Logger.Warn("a partition's follower did not stop; left behind", "node", e.cfg.Cluster.Node, "partition", p)
		}
	}
	for _, cp := range e.cluster {
		if err := cp.stream.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close partition %d's stream: %w", cp.id, err))
		}
	}
	e.wg.Wait()
	return errors.Join(errs...)
}

// closedTimeChan is a channel that is always ready: a deadline already
// passed.
var closedTimeChan = func() <-chan time.Time {
	ch := make(chan time.Time)
	close(ch)
	return ch
}()
