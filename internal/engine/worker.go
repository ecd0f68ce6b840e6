package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/journal"
)

// shard is the part of a batch that one worker applies.
type shard struct {
	b   *Batch
	idx []int32
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
	// keysEnd holds, for each of the worker's partitions (with a disk
	// tier), the end of its memory tier's ring when the record was
	// appended: once the record is durable, so are the orders of every key
	// before it, and done publishes it as the spill limit.
	keysEnd []uint64
}

// worker applies batches for the partitions it owns.
type worker struct {
	e     *Engine
	id    int
	parts []*partition
	// journal is the engine's journal, or in cluster mode the journal of
	// the worker's one partition.
	journal journal.Journal
	// cp is the worker's partition in cluster mode, nil otherwise.
	cp    *clusterPartition
	queue chan shard
	free  chan *inflight
	em    emitter
	// snapshots carries requests to encode one partition, served between
	// two batches; exited is closed when the worker has stopped, so that a
	// snapshot never waits for a worker that is gone.
	snapshots chan *partitionSnapshot
	exited    chan struct{}

	lastNow int64
	// touched sums what touch reads, so that the compiler keeps the reads.
	touched uint64
	// failed is set once a record of this worker has failed: its
	// partitions' state then holds events the journal may not have.
	failed atomic.Bool
}

// newWorker returns worker id of the engine's Workers, which owns every
// partition p with p % Workers == id.
func newWorker(e *Engine, id int) *worker {
	var parts []*partition
	for p := id; p < len(e.core.partitions); p += e.cfg.Workers {
		parts = append(parts, e.core.partitions[p])
	}
	return newWorkerOf(e, id, parts, e.journal)
}

// newPartitionWorker returns the worker of cluster partition cp alone,
// writing to j, its journal: each of its records holds cp's events only.
func newPartitionWorker(e *Engine, cp *clusterPartition, j journal.Journal) *worker {
	w := newWorkerOf(e, cp.id, []*partition{e.core.partitions[cp.id]}, j)
	w.cp = cp
	return w
}

func newWorkerOf(e *Engine, id int, parts []*partition, j journal.Journal) *worker {
	w := &worker{
		e:         e,
		id:        id,
		journal:   j,
		queue:     make(chan shard, e.cfg.QueueDepthMax),
		free:      make(chan *inflight, e.cfg.InflightRecordsMax),
		snapshots: make(chan *partitionSnapshot, 1),
		exited:    make(chan struct{}),
	}
	w.em.version = byte(e.cfg.RecordVersion)
	for _, part := range parts {
		w.parts = append(w.parts, part)
		// Time never runs backwards, not even across a restart with a
		// clock set back: expiry relies on pay-by times growing.
		w.lastNow = max(w.lastNow, part.lastAt)
		if c := e.cfg.rehearsal; c != nil {
			c.advance(part.lastAt)
		}
		// Every key recovery remembered came from the journal on disk.
		part.keys.durableEnd.Store(part.keys.endPos())
	}
	for i := 0; i < e.cfg.InflightRecordsMax; i++ {
		fl := &inflight{w: w, buf: make([]byte, 0, 64<<10)}
		if e.core.disk != nil {
			fl.keysEnd = make([]uint64, len(w.parts))
		}
		fl.doneFn = fl.done
		w.free <- fl
	}
	return w
}

func (w *worker) run() {
	defer close(w.exited)
	// An idle worker wakes every IdleTick to expire unpaid orders; with a
	// negative IdleTick it never does (tick stays nil), so expiry runs only
	// with batches and a test's disk operations follow its commands alone.
	tick := w.e.cfg.IdleTick
	timer := time.NewTimer(max(tick, 0))
	defer timer.Stop()
	var tickC <-chan time.Time
	if tick > 0 {
		tickC = timer.C
	}
	for {
		var s shard
		var ok bool
		select {
		case s, ok = <-w.queue:
		case req := <-w.snapshots:
			w.snapshotPart(req)
			continue
		default:
			if tickC != nil {
				timer.Reset(tick)
			}
			select {
			case s, ok = <-w.queue:
			case req := <-w.snapshots:
				w.snapshotPart(req)
				continue
			case <-tickC:
				w.batch(nil)
				continue
			}
		}
		if !ok {
			w.drain()
			return
		}
		if !w.batch(&s) {
			w.drain()
			return
		}
	}
}

// batch applies first and whatever else is queued, up to BatchSizeMax
// commands. Its events go into one journal record, or into several when they
// would exceed recordEventsMax or recordBytesMax: the worker then closes the
// record and carries on in the next one. The batch's replies are attached to
// its last record only, and the journal makes records durable in order, so
// no reply is released before every event of its batch is durable. batch
// returns false when the queue has been closed.
func (w *worker) batch(first *shard) bool {
	e := w.e
	fl := <-w.free
	fl.shards = fl.shards[:0]
	open := true
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
				fl.shards = append(fl.shards, s)
				n += len(s.idx)
			default:
				break collect
			}
		}
	}

	if w.cp != nil && w.cp.refuseAfterLease(fl) {
		return open // nothing decided: the lease may have passed on
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
		fl = w.expire(fl, p, now)
		if now >= p.dealEndNext {
			fl = w.endDeals(fl, p, now)
		}
	}
	commands, rejected := 0, 0
	for _, s := range fl.shards {
		for k, i := range s.idx {
			if k%touchGroup == 0 {
				w.touch(s.b, s.idx[k:min(k+touchGroup, len(s.idx))])
			}
			if !em.recordRoom(commandEventsMax, commandBytesMax) {
				fl = w.closeRecord(fl)
			}
			r := &s.b.Requests[i]
			events, bytes := em.events, len(em.rec)
			at := now
			if r.Command.At != 0 {
				// The rehearsal clock: the command's own time (admit took
				// it only in that mode).
				at = r.Command.At
			}
			e.core.apply(e.core.partitions[r.partition], at, &r.Command, &r.Result, em)
			if em.events-events > commandEventsMax || len(em.rec)-bytes > commandBytesMax {
				panic(fmt.Sprintf("engine: %v command emitted %d events of %d bytes, over the static bound of %d events of %d bytes",
					r.Command.Kind, em.events-events, len(em.rec)-bytes, commandEventsMax, commandBytesMax))
			}
			if r.Result.Code != CodeOK {
				rejected++
			}
		}
		commands += len(s.idx)
	}
	e.stats.Batches.Add(1)
	e.stats.Commands.Add(uint64(commands))
	e.stats.Rejected.Add(uint64(rejected))

	if first == nil && em.events == 0 {
		w.free <- fl // an idle tick that expired nothing
		return open
	}
	w.appendRecord(fl)
	return open
}

// touchGroup is the number of requests whose state touch reads ahead of
// applying them.
const touchGroup = 16

// touch reads the partition state that the requests idx will use: the
// SKU states of an order's lines, the status and pending order of a
// payment or cancellation and the SKU states of its lines. Each of these
// is usually a cache miss; read one request at a time, inside apply, the
// misses follow one another, while this loop has no dependency from one
// request to the next, so that the processor has the misses of a whole
// group in flight together and apply then finds them in the cache. It
// only reads, and what it reads goes into w.touched alone, so the state
// and the records are as without it: apply stays deterministic.
func (w *worker) touch(b *Batch, idx []int32) { w.touched += w.e.core.touch(b, idx) }

// touch is worker.touch; it returns a sum of what it read. It reads in
// passes, each of loads that do not depend on one another, since a
// request's state is a chain (a payment's pending order is found from the
// pending window, and its SKU states from the pending order): the first
// pass reads the SKU states of the orders and the pending windows' entries
// of the payments, the second the pending orders, the third their SKU
// states.
func (c *core) touch(b *Batch, idx []int32) uint64 {
	var sum uint64
	var pendings [touchGroup]*pendingOrder
	var owners [touchGroup]*partition
	// placed holds the partitions of the group's orders so far: the k-th
	// order of a partition takes the k-th entry from the end of its free
	// list.
	var placed [touchGroup]*partition
	n, places := 0, 0
	for _, i := range idx {
		r := &b.Requests[i]
		if int(r.partition) >= len(c.partitions) {
			continue
		}
		p := c.partitions[r.partition]
		switch r.Command.Kind {
		case KindPlaceOrder:
			// The order's SKU ids too: the record copies them.
			items := r.Command.Order.Items
			for j := range items {
				if slot := items[j].ref.slot(); int(slot) < len(p.skus) {
					sum += p.skus[slot].priceMerchant
				}
				if id := items[j].SKUID; id != "" {
					sum += uint64(id[0])
				}
			}
			// The pending order it will take from the free list.
			taken := 1
			for _, q := range placed[:places] {
				if q == p {
					taken++
				}
			}
			if places < len(placed) {
				placed[places] = p
				places++
			}
			if taken <= len(p.pendingFree) {
				sum += uint64(p.pendingFree[len(p.pendingFree)-taken].payBy)
			}
		case KindPay, KindCancel:
			seq := r.Command.OrderID.Seq()
			if seq == 0 || seq > uint64(len(p.orders)) || n == len(pendings) {
				continue
			}
			sum += uint64(p.orders[seq-1])
			if po := p.pendingOrderAt(seq); po != nil {
				pendings[n], owners[n] = po, p
				n++
			}
		}
	}
	for _, po := range pendings[:n] {
		sum += uint64(po.payBy)
	}
	for k, po := range pendings[:n] {
		p := owners[k]
		for j := range min(int(po.count), inlineItems) {
			if slot := po.inline[j].slot; int(slot) < len(p.skus) {
				sum += uint64(p.skus[slot].reserved)
			}
		}
	}
	return sum
}

// expire ends p's overdue orders, at most ExpireBatchMax of them, closing
// records that fill up on the way. It returns the record now being built.
func (w *worker) expire(fl *inflight, p *partition, now int64) *inflight {
	e := w.e
	em := &w.em
	left := e.cfg.ExpireBatchMax
	for left > 0 {
		room := min(recordEventsMax-em.events, (recordBytesMax-len(em.rec))/orderEndEventBytes)
		if room <= 0 {
			fl = w.closeRecord(fl)
			continue
		}
		step := min(left, room)
		n := e.core.expire(p, now, step, em)
		left -= n
		if n < step {
			break // nothing more is overdue
		}
	}
	return fl
}

// endDeals ends p's deals whose window closed by now, closing records
// that fill up on the way. It returns the record now being built.
func (w *worker) endDeals(fl *inflight, p *partition, now int64) *inflight {
	em := &w.em
	for now >= p.dealEndNext {
		if !em.recordRoom(1, dealEndedBytesMax) {
			fl = w.closeRecord(fl)
		}
		w.e.core.endDeals(p, now, 1, em)
	}
	return fl
}

// closeRecord hands the full record of fl to the journal and returns a free
// inflight to go on with, which takes over fl's shards: their replies wait
// for the batch's last record.
func (w *worker) closeRecord(fl *inflight) *inflight {
	next := <-w.free
	fl.shards, next.shards = next.shards[:0], fl.shards
	w.appendRecord(fl)
	w.em.reset(next.buf)
	return next
}

// appendRecord finishes the emitter's record into fl and appends it; an empty
// record is a barrier, so replies still wait for the records before it.
func (w *worker) appendRecord(fl *inflight) {
	e := w.e
	em := &w.em
	rec := em.finish()
	fl.buf = rec
	if em.events == 0 {
		rec = nil
	} else {
		if len(rec) > recordBytesMax || em.events > recordEventsMax {
			panic(fmt.Sprintf("engine: worker %d built a record of %d events in %d bytes, over the bounds of %d events and %d bytes",
				w.id, em.events, len(rec), recordEventsMax, recordBytesMax))
		}
		e.stats.Events.Add(uint64(em.events))
		e.stats.Records.Add(1)
		e.stats.RecordBytes.Add(uint64(len(rec)))
	}
	for i, p := range w.parts[:len(fl.keysEnd)] {
		fl.keysEnd[i] = p.keys.endPos()
	}
	fl.mu.Lock()
	pos, err := w.journal.Append(rec, fl.doneFn)
	fl.pos = pos
	fl.mu.Unlock()
	switch {
	case err != nil:
		fl.done(fmt.Errorf("append to journal: %w", err))
	case rec == nil:
	case w.cp != nil:
		w.cp.maybeSnapshot(w, len(rec))
	default:
		e.maybeSnapshot(pos)
	}
}

// done runs on the journal's goroutine once the record is durable, or
// failed: it releases the replies.
func (fl *inflight) done(err error) {
	w := fl.w
	fl.mu.Lock()
	pos := uint64(fl.pos)
	fl.mu.Unlock()
	if err != nil {
		w.failed.Store(true)
		w.e.fail(err)
	} else {
		// Records are durable in order, so the limits only grow.
		for i, p := range w.parts[:len(fl.keysEnd)] {
			p.keys.durableEnd.Store(fl.keysEnd[i])
		}
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
