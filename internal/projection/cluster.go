package projection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
)

// Cluster mode (docs/cluster.md, "Read models in cluster mode").
//
// Every node's engine follows every partition's stream, and so does every
// node's runner: each node's read models cover the whole cluster, so that
// GMV, the breakdowns and the big screen need nothing from the peers. A
// goroutine per partition reads that partition's stream and hands each
// record, copied, to the one applying goroutine through a bounded channel;
// the projections see whole records one at a time, as on a single node.
//
// Positions: the partitions' stream sequences are not one order, so the
// projections are given a local count of the records applied (monotone,
// as Commit requires), and the watermark keeps each partition's applied
// stream sequence besides, which is what reads wait for (WaitResult,
// WaitDurable).
//
// No projection snapshots are written or loaded in cluster mode: the
// streams are never purged (engine.Cluster.RetainFrom stays nil), so a
// start rebuilds the read models from the streams' beginnings. A snapshot
// would have to hold a vector of positions and the runner would have to
// retain each stream behind it; that is left for when start-up replay gets
// too long.

const (
	// clusterFeedMax bounds the records read from the partitions' streams
	// and not yet applied. At the limit the partitions' readers wait, which
	// holds their consumers back (JetStream's flow control): the read
	// models lag, and nothing is dropped.
	clusterFeedMax = 256
	// clusterFollowRetryWait is the pause before a partition's reader
	// whose read failed (the connection lost) reads again.
	clusterFollowRetryWait = time.Second
)

// clusterRecord is one record of one partition, copied out of the reader's
// buffer for the applying goroutine.
type clusterRecord struct {
	partition int
	pos       uint64 // the record's sequence in the partition's stream
	rec       []byte // empty for a fence
}

// startCluster is Start in cluster mode.
func (r *Runner) startCluster(eng *engine.Engine) {
	n := eng.Partitions()
	parts := make([]atomic.Uint64, n)
	r.mark.parts.Store(&parts)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	feed := make(chan clusterRecord, clusterFeedMax)
	for p := range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.followPartition(ctx, cancel, eng, p, feed)
		}()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.applyCluster(ctx, cancel, eng, feed)
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.probeLag(ctx, eng)
	}()
}

// followPartition reads partition p's stream from its start into feed
// until ctx ends. A read that fails is retried from the last record
// handed on; a stream purged behind the runner stops the projections,
// which can then no longer be the streams'.
//
// A read that stalls is restarted too: after a NATS server was killed, a
// consumer was seen to deliver nothing, and report nothing, for tens of
// seconds while the stream took writes. So when this node's engine knows
// p durable past what the reader handed on, and the reader has not moved
// for clusterStallMax, the read is cancelled and made again.
func (r *Runner) followPartition(ctx context.Context, stop context.CancelFunc, eng *engine.Engine, p int, feed chan<- clusterRecord) {
	// A stalled read is abandoned rather than waited for: one was seen
	// stuck inside nats.go's consumer reset, which does not return on its
	// context. gen names the current read; mu makes its check and its hand
	// on one step, so an abandoned read that wakes up hands nothing on.
	var (
		from atomic.Uint64
		gen  atomic.Uint64
		mu   sync.Mutex
	)
	for {
		mu.Lock()
		my := gen.Add(1)
		mu.Unlock()
		readCtx, cancelRead := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- eng.FollowPartitionRecords(readCtx, p, from.Load(), func(pos uint64, rec []byte) error {
				c := clusterRecord{partition: p, pos: pos}
				if len(rec) > 0 {
					c.rec = bytes.Clone(rec)
				}
				mu.Lock()
				defer mu.Unlock()
				if gen.Load() != my {
					return errAbandonedRead
				}
				select {
				case feed <- c:
				case <-readCtx.Done():
					return readCtx.Err()
				}
				from.Store(pos)
				return nil
			})
		}()
		stalled := make(chan struct{})
		go func() {
			if r.watchStall(readCtx, eng, p, &from) {
				close(stalled)
			}
		}()
		var err error
		select {
		case err = <-done:
		case <-stalled:
		case <-ctx.Done():
			// Closing: a read stuck in nats.go is not waited for.
			cancelRead()
			return
		}
		cancelRead()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			r.cfg.Logger.Warn("projections: following a partition stalled; reading again", "partition", p, "position", from.Load())
			continue
		}
		if errors.Is(err, journal.ErrRemoved) || errors.Is(err, journal.ErrCorrupt) || errors.Is(err, engine.ErrNotCluster) {
			r.failCluster(stop, fmt.Errorf("follow partition %d from %d: %w", p, from.Load(), err))
			return
		}
		r.cfg.Logger.Warn("projections: following a partition failed; reading again",
			"partition", p, "position", from.Load(), "err", err, "wait", clusterFollowRetryWait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(clusterFollowRetryWait):
		}
	}
}

// errAbandonedRead ends a read that a newer one replaced.
var errAbandonedRead = errors.New("projections: read abandoned for a newer one")

// clusterStallMax is how long a partition's reader may hand nothing on
// while the engine knows the partition durable past it.
const clusterStallMax = 3 * time.Second

// watchStall reports true once a read of partition p has not moved for
// clusterStallMax while p is durable past it here, false when ctx ends.
func (r *Runner) watchStall(ctx context.Context, eng *engine.Engine, p int, from *atomic.Uint64) bool {
	t := time.NewTicker(clusterStallMax / 3)
	defer t.Stop()
	last, since := from.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		pos := from.Load()
		if pos != last || eng.PartitionDurable(p) <= pos {
			last, since = pos, time.Now()
			continue
		}
		if time.Since(since) >= clusterStallMax {
			return true
		}
	}
}

// applyCluster feeds the projections the records of every partition, one
// record at a time, in the order they arrive (each partition's in its
// stream's order), except that a record naming a brand not applied yet is
// parked, with every later record of its partition, until the brand's
// record arrives (see clusterApplier).
func (r *Runner) applyCluster(ctx context.Context, stop context.CancelFunc, eng *engine.Engine, feed <-chan clusterRecord) {
	a := &clusterApplier{r: r, eng: eng, brands: make(map[string]struct{}), parked: make([][]clusterRecord, eng.Partitions())}
	for {
		var c clusterRecord
		select {
		case <-ctx.Done():
			return
		case c = <-feed:
		}
		if err := a.add(c); err != nil {
			r.failCluster(stop, err)
			return
		}
	}
}

// clusterApplier orders the merged partitions for the projections.
//
// The partitions' records are not one order, and one reference crosses
// partitions: a SKU (in its merchant's partition) names its brand (in the
// brand's partition), and the GMV board refuses a SKU of an unknown brand.
// The brand's record was stored before the SKU was accepted (the catalog
// checks the brand exists first), but this node may read the SKU's stream
// first, above all while rebuilding from the streams' beginnings. So a
// record with a SKU of a brand not applied yet waits, and its partition's
// later records behind it, until a record with the brand is applied.
// Orders only name their own partition's merchants and SKUs, so nothing
// else needs waiting for.
type clusterApplier struct {
	r      *Runner
	eng    *engine.Engine
	ev     engine.Event
	brands map[string]struct{} // every brand applied
	parked [][]clusterRecord   // per partition, oldest first
	record map[string]struct{} // scratch: the brands of the record scanned
	count  int                 // records parked, over every partition
}

// clusterParkedMax bounds the records parked waiting for a brand. A brand
// is stored before any SKU naming it, so only this node's readers' relative
// lag parks records, and briefly; at the limit the streams are taken to be
// inconsistent and the projections stop (reads answer 503), rather than
// hold memory without bound.
const clusterParkedMax = 16384

func (a *clusterApplier) add(c clusterRecord) error {
	if len(a.parked[c.partition]) > 0 {
		return a.park(c)
	}
	missing, err := a.missingBrand(c)
	if err != nil {
		return err
	}
	if missing {
		return a.park(c)
	}
	newBrands, err := a.apply(c)
	if err != nil || !newBrands || a.count == 0 {
		return err
	}
	return a.unpark()
}

func (a *clusterApplier) park(c clusterRecord) error {
	if a.count >= clusterParkedMax {
		return fmt.Errorf("partition %d's record %d: %d records wait for brands that do not come", c.partition, c.pos, a.count)
	}
	a.parked[c.partition] = append(a.parked[c.partition], c)
	a.count++
	return nil
}

// unpark applies the parked records whose brands are now applied, until
// none moves.
func (a *clusterApplier) unpark() error {
	for moved := true; moved && a.count > 0; {
		moved = false
		for p, queue := range a.parked {
			for len(queue) > 0 {
				missing, err := a.missingBrand(queue[0])
				if err != nil {
					return err
				}
				if missing {
					break
				}
				if _, err := a.apply(queue[0]); err != nil {
					return err
				}
				queue[0] = clusterRecord{}
				queue = queue[1:]
				a.count--
				moved = true
			}
			if len(queue) == 0 {
				queue = nil
			}
			a.parked[p] = queue
		}
	}
	return nil
}

// missingBrand reports whether c has a SKU naming a brand neither applied
// nor upserted earlier in c.
func (a *clusterApplier) missingBrand(c clusterRecord) (bool, error) {
	if len(c.rec) == 0 {
		return false, nil
	}
	clear(a.record)
	missing := false
	err := a.eng.DecodeRecord(0, c.rec, &a.ev, func(ev *engine.Event) error {
		switch ev.Kind {
		case engine.EventBrandUpserted:
			if a.record == nil {
				a.record = make(map[string]struct{})
			}
			a.record[ev.Brand.ID] = struct{}{}
		case engine.EventSKUUpserted:
			id := ev.SKU.BrandID
			if id == "" {
				return nil
			}
			if _, ok := a.brands[id]; ok {
				return nil
			}
			if _, ok := a.record[id]; !ok {
				missing = true
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("decode partition %d's record %d: %w", c.partition, c.pos, err)
	}
	return missing, nil
}

// apply feeds one record whole to every projection and moves the
// watermark; it reports whether the record upserted a brand not applied
// before.
func (a *clusterApplier) apply(c clusterRecord) (newBrands bool, err error) {
	r := a.r
	if len(c.rec) == 0 {
		// A fence: no events, but the partition's position moves, so that
		// a wait for a new owner's Durable returns.
		r.mark.advancePartition(c.partition, c.pos, r.applied, 0)
		return false, nil
	}
	applied := r.applied + 1
	inRecord := false
	var at int64
	err = a.eng.DecodeRecord(applied, c.rec, &a.ev, func(ev *engine.Event) error {
		inRecord = true
		at = ev.At
		if ev.Kind == engine.EventBrandUpserted {
			if _, ok := a.brands[ev.Brand.ID]; !ok {
				a.brands[strings.Clone(ev.Brand.ID)] = struct{}{}
				newBrands = true
			}
		}
		for _, p := range r.projections {
			if err := p.Apply(ev); err != nil {
				return fmt.Errorf("%s: %w", p.Name(), err)
			}
		}
		return nil
	})
	if err != nil {
		if inRecord {
			// Half a record was applied: the projections' state is no
			// state of the streams.
			r.torn = true
			for _, p := range r.projections {
				p.Abort()
			}
		}
		return false, fmt.Errorf("apply partition %d's record %d: %w", c.partition, c.pos, err)
	}
	if inRecord {
		for _, p := range r.projections {
			p.Commit(applied, at)
		}
		r.applied, r.appliedAt = applied, at
	}
	r.mark.advancePartition(c.partition, c.pos, r.applied, at)
	return newBrands, nil
}

// failCluster stops the projections with err: reads answer 503, and the
// log and Err say why.
func (r *Runner) failCluster(stop context.CancelFunc, err error) {
	if r.Err() == nil {
		r.cfg.Logger.Error("projections stopped following the streams", "err", err)
		r.stopped(err)
	}
	stop()
}

// waitClusterDurable is WaitDurable in cluster mode: every partition's
// durable position here, read first, then waited for.
func (r *Runner) waitClusterDurable(ctx context.Context, eng *engine.Engine) error {
	n := eng.Partitions()
	targets := make([]uint64, n)
	for p := range n {
		targets[p] = eng.PartitionDurable(p)
	}
	for p, pos := range targets {
		if err := r.mark.WaitPartition(ctx, p, pos); err != nil {
			return err
		}
	}
	return nil
}

// clusterLag is the watermark's Lag in cluster mode: the records durable
// here and not applied, over every partition, and the seconds since the
// last advance when there are any.
func (r *Runner) clusterLag(eng *engine.Engine) (positions uint64, seconds float64) {
	for p := range eng.Partitions() {
		if d, a := eng.PartitionDurable(p), r.mark.AppliedPartition(p); d > a {
			positions += d - a
		}
	}
	if positions == 0 {
		return 0, 0
	}
	since := time.Now().UnixNano() - r.mark.committedAt.Load()
	return positions, float64(max(since, 0)) / 1e9
}
