package engine

import (
	"fmt"
	"sync"
	"time"

	"github.com/fest-platform/fest/internal/journal"
)

// shard is the part of a batch that one worker applies, or a control
// message asking the worker for its part of a snapshot.
type shard struct {
	b    *Batch
	idx  []int32
	snap *snapshotRequest
}

// inflight is a record handed to the journal and the shards whose replies
// wait for it. A worker has a fixed number of them, so the journal's pace
// bounds how far the worker runs ahead.
type inflight struct {
	w      *worker
	buf    []byte
	shards []shard
	doneFn func(error)

	mu  sync.Mutex // orders the position's write before the reply
	pos journal.Position
}

// worker applies batches for the partitions it owns.
type worker struct {
	e     *Engine
	id    int
	parts []*partition
	queue chan shard
	free  chan *inflight
	em    emitter

	lastNow int64
}

// idleTick is how often an idle worker wakes to expire unpaid orders.
const idleTick = 100 * time.Millisecond

func newWorker(e *Engine, id int) *worker {
	w := &worker{
		e:     e,
		id:    id,
		queue: make(chan shard, e.cfg.QueueDepthMax),
		free:  make(chan *inflight, e.cfg.InflightRecordsMax),
	}
	for p := id; p < len(e.core.partitions); p += e.cfg.Workers {
		part := e.core.partitions[p]
		w.parts = append(w.parts, part)
		// Time never runs backwards, not even across a restart with a
		// clock set back: expiry relies on pay-by times growing.
		w.lastNow = max(w.lastNow, part.lastAt)
	}
	for i := 0; i < e.cfg.InflightRecordsMax; i++ {
		fl := &inflight{w: w, buf: make([]byte, 0, 64<<10)}
		fl.doneFn = fl.done
		w.free <- fl
	}
	return w
}

func (w *worker) run() {
	timer := time.NewTimer(idleTick)
	defer timer.Stop()
	for {
		var s shard
		var ok bool
		select {
		case s, ok = <-w.queue:
		default:
			timer.Reset(idleTick)
			select {
			case s, ok = <-w.queue:
			case <-timer.C:
				w.batch(nil)
				continue
			}
		}
		if !ok {
			w.drain()
			return
		}
		if s.snap != nil {
			w.snapshotPart(s.snap)
			continue
		}
		if !w.batch(&s) {
			w.drain()
			return
		}
	}
}

// batch applies first and whatever else is queued, up to BatchSizeMax
// commands, as one journal record. It returns false when the queue has
// been closed.
func (w *worker) batch(first *shard) bool {
	e := w.e
	fl := <-w.free
	fl.shards = fl.shards[:0]
	open := true
	var snap *snapshotRequest
	if first != nil {
		fl.shards = append(fl.shards, *first)
		n := len(first.idx)
	collect:
		for n < e.cfg.BatchSizeMax {
			select {
			case s, ok := <-w.queue:
				if !ok {
					open = false
					break collect
				}
				if s.snap != nil {
					snap = s.snap
					break collect
				}
				fl.shards = append(fl.shards, s)
				n += len(s.idx)
			default:
				break collect
			}
		}
	}

	now := e.cfg.Now()
	if now < w.lastNow {
		now = w.lastNow // time never runs backwards inside the engine
	}
	w.lastNow = now
	em := &w.em
	em.reset(fl.buf)
	w.idempotencyBeforeApply(fl.shards)
	for _, p := range w.parts {
		e.core.expire(p, now, e.cfg.ExpireBatchMax, em)
	}
	commands, rejected := 0, 0
	for _, s := range fl.shards {
		for _, i := range s.idx {
			r := &s.b.Requests[i]
			e.core.apply(e.core.partitions[r.partition], now, &r.Command, &r.Result, em)
			if r.Result.Code != CodeOK {
				rejected++
			}
		}
		commands += len(s.idx)
	}
	e.stats.Batches.Add(1)
	e.stats.Commands.Add(uint64(commands))
	e.stats.Rejected.Add(uint64(rejected))

	rec := em.finish()
	fl.buf = rec
	if em.events == 0 {
		rec = nil // a barrier: replies wait for the records before it
	} else {
		e.stats.Events.Add(uint64(em.events))
		e.stats.Records.Add(1)
		e.stats.RecordBytes.Add(uint64(len(rec)))
	}
	if first == nil && rec == nil {
		w.free <- fl // an idle tick that expired nothing
		return open
	}
	fl.mu.Lock()
	pos, err := e.journal.Append(rec, fl.doneFn)
	fl.pos = pos
	fl.mu.Unlock()
	if err != nil {
		fl.done(fmt.Errorf("append to journal: %w", err))
	} else if rec != nil {
		e.maybeSnapshot(pos)
	}
	if snap != nil {
		w.snapshotPart(snap)
	}
	return open
}

// done runs on the journal's goroutine once the record is durable, or
// failed: it releases the replies.
func (fl *inflight) done(err error) {
	w := fl.w
	fl.mu.Lock()
	pos := uint64(fl.pos)
	fl.mu.Unlock()
	if err != nil {
		w.e.fail(err)
	}
	for _, s := range fl.shards {
		for _, i := range s.idx {
			r := &s.b.Requests[i].Result
			if err != nil {
				// The reply cannot say whether the effect survived: the
				// engine stops and recovery decides.
				*r = Result{Code: CodeUnavailable}
			} else {
				r.Position = pos
			}
		}
		s.b.finish()
	}
	clear(fl.shards)
	fl.shards = fl.shards[:0]
	w.free <- fl
}

// drain waits until every record of this worker is durable.
func (w *worker) drain() {
	held := make([]*inflight, 0, cap(w.free))
	for len(held) < cap(w.free) {
		held = append(held, <-w.free)
	}
	for _, fl := range held {
		w.free <- fl
	}
}
