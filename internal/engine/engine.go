package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/idempotency"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/vfs"
)

// Engine runs the core: it routes commands to partition workers, each of
// which applies a batch of commands, hands the batch's events to the
// journal as one record and goes on with the next batch while the journal
// fsyncs (pipelining). Replies are released only from the journal's done
// callback, so no result is seen before the events it reports are durable.
type Engine struct {
	cfg       Config
	core      *core
	journal   journal.Journal
	snapshots *journal.Snapshots
	// idempotencyStore is the disk tier of idempotency keys (nil without
	// a data directory). It is opened before recovery and given to every
	// core recovery makes, so that replay remembers keys as the live
	// engine does.
	idempotencyStore *idempotency.Store
	workers          []*worker
	lock             io.Closer // the data directory's lock, held until Close

	mu struct {
		sync.RWMutex
		closed bool
	}
	// closing is set by Close before it stops the workers: from then on no
	// snapshot starts through them.
	closing atomic.Bool
	// failed holds the error that stopped the engine (journal failure);
	// failedCh is closed when it is set.
	failed   atomic.Pointer[error]
	failedCh chan struct{}

	snapshotMu  sync.Mutex        // one snapshot at a time; guards snapshotReq
	snapshotReq partitionSnapshot // reused by every snapshot
	// snapshotHook, set by tests before any snapshot, runs on the snapshot
	// goroutine after each partition is encoded.
	snapshotHook        func(partition int)
	snapshotRunning     atomic.Bool   // a background snapshot is under way
	lastSnapshotAttempt atomic.Uint64 // journal end when the last snapshot began
	snapshotWG          sync.WaitGroup
	wg                  sync.WaitGroup // workers

	stats Stats
	// snapshotting is set while a snapshot is written (Snapshotting).
	snapshotting atomic.Bool

	// cluster holds every partition in cluster mode (cluster.go), and
	// served[p] the worker of partition p while this node serves it (nil
	// otherwise); both are nil without cluster mode.
	cluster []*clusterPartition
	served  []atomic.Pointer[worker]
}

// Stats are running counters, read with atomic loads.
type Stats struct {
	Commands         atomic.Uint64 // commands applied by workers
	Rejected         atomic.Uint64 // commands answered with a non-OK code
	GatewayRejected  atomic.Uint64 // commands answered before a worker (not found, sold out, overloaded)
	Batches          atomic.Uint64 // worker batches
	Events           atomic.Uint64 // events written
	Records          atomic.Uint64 // journal records (non-empty)
	RecordBytes      atomic.Uint64 // payload bytes written
	Snapshots        atomic.Uint64
	SnapshotFailures atomic.Uint64 // snapshots that failed (each is logged)
	Overloaded       atomic.Uint64
	// DealGatewayRejected counts the deal orders answered at the router
	// (sold out or ended deal), a part of GatewayRejected.
	DealGatewayRejected atomic.Uint64
	// NotServed counts the commands answered CodeUnavailable in cluster
	// mode because their partition is not served here.
	NotServed atomic.Uint64
	// LeaseNotValid counts the commands answered CodeUnavailable in
	// cluster mode because their partition's lease was not surely valid
	// (Cluster.Leased), and NotFoundBehind the "not found" answered
	// CodeUnavailable because a follower was behind.
	LeaseNotValid, NotFoundBehind atomic.Uint64
}

type meta struct {
	Version    int `json:"version"`
	Partitions int `json:"partitions"`
}

// Open opens or creates the engine's data directory, recovers the state
// from the newest valid snapshot and the journal after it, and starts the
// workers.
func Open(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Cluster != nil {
		return openCluster(cfg)
	}
	partitions, err := loadMeta(cfg.FS, cfg.Dir, cfg.Partitions)
	if err != nil {
		return nil, err
	}
	cfg.Partitions = partitions
	var lock io.Closer
	if cfg.Dir != "" {
		if lock, err = lockDir(cfg.FS, cfg.Dir); err != nil {
			return nil, err
		}
	}
	if cfg.Workers > cfg.Partitions {
		cfg.Workers = cfg.Partitions
	}
	e := &Engine{cfg: cfg, lock: lock, failedCh: make(chan struct{})}
	e.snapshotReq.done = make(chan struct{}, 1)
	ok := false
	defer func() {
		if !ok && lock != nil {
			lock.Close()
		}
	}()
	e.core = e.newCore()

	e.journal = cfg.Journal
	if e.journal == nil {
		j, err := journal.Open(journal.Config{
			FS:              cfg.FS,
			Dir:             filepath.Join(cfg.Dir, "journal"),
			SegmentBytesMax: cfg.SegmentBytesMax,
			NoSync:          cfg.NoSync,
			Fsync:           cfg.JournalFsync,
			Logger:          cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("open journal: %w", err)
		}
		e.journal = j
	}
	if cfg.Dir != "" {
		s, err := journal.OpenSnapshots(cfg.FS, filepath.Join(cfg.Dir, "snapshots"))
		if err != nil {
			e.journal.Close()
			return nil, fmt.Errorf("open snapshots: %w", err)
		}
		e.snapshots = s
	}
	// The disk tier opens before recovery: replay remembers the keys of
	// the journal's orders as the live engine did, which with a disk tier
	// means keeping every one in memory until its run is durable. Without
	// the store open, replay would take the engine for one without a disk
	// tier and forget the keys past IdempotencyKeysMax, which are in no run
	// yet.
	if err := e.openIdempotency(); err != nil {
		e.journal.Close()
		return nil, err
	}
	if err := e.recover(); err != nil {
		e.closeIdempotency()
		e.journal.Close()
		return nil, err
	}
	for i := 0; i < cfg.Workers; i++ {
		w := newWorker(e, i)
		e.workers = append(e.workers, w)
	}
	for _, w := range e.workers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			w.run()
		}()
	}
	ok = true
	return e, nil
}

// newCore returns an empty core with the engine's settings.
func (e *Engine) newCore() *core {
	cfg := &e.cfg
	c := newCore(cfg.Partitions, int64(cfg.PaymentTimeout), int64(cfg.IdempotencyWindow), cfg.IdempotencyKeysMax)
	c.disk = e.idempotencyStore
	c.routerNow = cfg.Now
	return c
}

// metaFileMode is the mode of engine.json, like every data file (0600: the
// directory holds buyer ids).
const metaFileMode = 0o600

// loadMeta reads engine.json, or writes it for a new directory.
func loadMeta(fsys vfs.FS, dir string, partitions int) (int, error) {
	if dir == "" {
		if partitions == 0 {
			partitions = 64
		}
		return partitions, nil
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, "engine.json")
	b, err := vfs.ReadFile(fsys, path)
	switch {
	case err == nil:
		var m meta
		if err := json.Unmarshal(b, &m); err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		if m.Partitions < 1 || m.Partitions > partitionsMax {
			return 0, fmt.Errorf("read %s: partitions %d out of range", path, m.Partitions)
		}
		if partitions != 0 && partitions != m.Partitions {
			return 0, fmt.Errorf("data directory %s has %d partitions, not %d: the number is fixed when the directory is created", dir, m.Partitions, partitions)
		}
		return m.Partitions, nil
	case errors.Is(err, os.ErrNotExist):
		if partitions == 0 {
			partitions = 64
		}
		b, err := json.Marshal(meta{Version: 1, Partitions: partitions})
		if err != nil {
			panic(fmt.Sprintf("engine: encode engine.json: %v", err))
		}
		if err := vfs.WriteFileAtomic(fsys, path, b, metaFileMode); err != nil {
			return 0, fmt.Errorf("write %s: %w", path, err)
		}
		return partitions, nil
	default:
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
}

// Partitions returns the number of logical partitions.
func (e *Engine) Partitions() int { return e.cfg.Partitions }

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats {
	e.stats.DealGatewayRejected.Store(e.core.dealGatewayRejected.Load())
	return &e.stats
}

// QueueDepth returns the number of submissions waiting in worker w's queue.
func (e *Engine) QueueDepth(w int) int { return len(e.workers[w].queue) }

// Workers returns the number of workers.
func (e *Engine) Workers() int { return len(e.workers) }

// Durable returns the journal position up to which everything is fsynced.
// In cluster mode, where each partition has its own journal, it is 0.
func (e *Engine) Durable() uint64 {
	if e.journal == nil {
		return 0
	}
	return uint64(e.journal.Durable())
}

// JournalEnd returns the journal position past the last appended record.
// In cluster mode it is 0 (see PartitionPosition).
func (e *Engine) JournalEnd() uint64 {
	if e.journal == nil {
		return 0
	}
	return uint64(e.journal.End())
}

// Err returns the error that stopped the engine, or nil.
func (e *Engine) Err() error {
	if p := e.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (e *Engine) fail(err error) {
	if e.failed.CompareAndSwap(nil, &err) {
		e.cfg.Logger.Error("engine stopped: the journal failed; restart to recover from the durable journal", "err", err)
		close(e.failedCh)
	}
}

// Failed is closed when the engine stops on a failure (Err then says
// which): from then on it answers every command CodeUnavailable, and the
// process should restart to recover from the durable journal.
func (e *Engine) Failed() <-chan struct{} { return e.failedCh }

// SKUCount returns the number of SKUs in the catalog.
func (e *Engine) SKUCount() int { return e.core.dir.count() }

// Brand returns a copy of a brand.
func (e *Engine) Brand(id string) (Brand, bool) {
	b, ok := e.core.brand(id)
	if !ok {
		return Brand{}, false
	}
	return *b, true
}

// Merchant returns a copy of a merchant.
func (e *Engine) Merchant(id string) (Merchant, bool) {
	p := e.core.partitions[e.core.merchantPartition(id)]
	p.merchantsMu.RLock()
	defer p.merchantsMu.RUnlock()
	slot, ok := p.merchantSlots[id]
	if !ok {
		return Merchant{}, false
	}
	return p.merchants[slot].m, true
}

// Submit routes the batch's requests to their partitions and returns at
// once. b.Done() is closed when every result is final: answered at the
// gateway (unknown SKU, sold out, overloaded...) or applied and durable.
func (e *Engine) Submit(b *Batch) {
	if e.cluster != nil {
		e.submitCluster(b)
		return
	}
	b.done = make(chan struct{})
	workers := len(e.workers)
	if cap(b.perWorker) < workers {
		b.perWorker = make([][]int32, workers)
	}
	b.perWorker = b.perWorker[:workers]
	for w := range b.perWorker {
		b.perWorker[w] = b.perWorker[w][:0]
	}
	failed := e.Err() != nil
	b.keyed = false
	var la lookAhead
	for i := range b.Requests {
		k := i % lookAheadGroup
		if k == 0 && !failed {
			e.core.dir.lookAhead(b.Requests[i:min(i+lookAheadGroup, len(b.Requests))], &la)
		}
		r := &b.Requests[i]
		var looked []skuRef
		if !failed {
			looked = la.lines(k, len(r.Command.Order.Items))
		}
		p, ok := e.admit(r, failed, looked)
		if !ok {
			continue
		}
		r.partition = int32(p)
		b.keyed = b.keyed || r.keyedOrder()
		w := p % workers
		b.perWorker[w] = append(b.perWorker[w], int32(i))
	}
	b.remaining.Store(int32(workers) + 1)
	e.mu.RLock()
	closed := e.mu.closed
	for w, idx := range b.perWorker {
		if len(idx) == 0 {
			b.remaining.Add(-1)
			continue
		}
		if !closed {
			select {
			case e.workers[w].queue <- shard{b: b, idx: idx}:
				continue
			default:
			}
		}
		code := CodeOverloaded
		if closed {
			code = CodeUnavailable
		}
		for _, i := range idx {
			b.Requests[i].Result = Result{Code: code}
		}
		e.stats.Overloaded.Add(uint64(len(idx)))
		b.remaining.Add(-1)
	}
	e.mu.RUnlock()
	b.finish()
}

// admit routes one request of a submitted batch and returns its
// partition; ok is false when the request is answered already: the
// engine has stopped (failed) or the router refused it. looked is the
// directory's answers for an order's lines when Submit looked them up
// ahead (nil: the router looks them up).
func (e *Engine) admit(r *Request, failed bool, looked []skuRef) (int, bool) {
	if failed {
		r.Result = Result{Code: CodeUnavailable}
		return 0, false
	}
	if r.Command.At != 0 && !e.admitTime(r.Command.At, &r.Result) {
		e.stats.GatewayRejected.Add(1)
		return 0, false
	}
	p, ok := e.core.routeGated(r, true, looked)
	if !ok {
		e.stats.GatewayRejected.Add(1)
	}
	return p, ok
}

func (b *Batch) finish() {
	if b.remaining.Add(-1) == 0 {
		close(b.done)
	}
}

// Do submits one command and waits for its result, or for ctx to end (the
// command may then still take effect).
func (e *Engine) Do(ctx context.Context, cmd Command) Result {
	b := NewBatch(1)
	b.Add(cmd)
	e.Submit(b)
	select {
	case <-b.done:
		return b.Requests[0].Result
	case <-ctx.Done():
		return Result{Code: CodeUnavailable}
	}
}

// tooLong answers res with CodeInvalidArgument naming field when s is longer
// than max bytes. Every string a command carries into the state or the
// journal is checked here, before it is applied, so that each event has a
// static maximum size (limits.go) and no input can make a record too large.
func tooLong(res *Result, field, s string, max int) bool {
	if len(s) <= max {
		return false
	}
	res.Code, res.Field = CodeInvalidArgument, field
	return true
}

func itemField(i int, name string) string {
	return "items[" + strconv.Itoa(i) + "]." + name
}

// route validates what can be checked without the partition's state and
// returns the partition of the request. ok is false when the request has
// been answered already (its Result is set).
func (c *core) route(r *Request) (int, bool) { return c.routeGated(r, true, nil) }

// locate is route without the gates of an order (the deal's and the
// sold-out set's answers, the idempotency key's reservation): it only
// validates and finds the partition, changing nothing. A cluster node uses
// it to find a request's owner; the gates run on the owner, whose state is
// current, since a follower's sold-out set may lag and a reservation made
// here would be for an order this node never applies.
func (c *core) locate(r *Request) (int, bool) { return c.routeGated(r, false, nil) }

// routeGated is route, with the gates or without them (locate). looked,
// when not nil, is the directory's answers for the order's lines, looked
// up ahead (directory.lookAhead).
func (c *core) routeGated(r *Request, gates bool, looked []skuRef) (int, bool) {
	cmd := &r.Command
	res := &r.Result
	*res = Result{}
	switch cmd.Kind {
	case KindPlaceOrder:
		o := &cmd.Order
		if tooLong(res, "buyer_id", o.BuyerID, idLengthMax) || tooLong(res, "channel", o.Channel, channelBytesMax) ||
			tooLong(res, "region", o.Region, regionBytesMax) || tooLong(res, "deal_id", o.DealID, idLengthMax) ||
			tooLong(res, "Idempotency-Key", o.IdempotencyKey, idempotencyKeyBytesMax) {
			return 0, false
		}
		items := o.Items
		if len(items) == 0 || len(items) > orderItemsMax {
			res.Code, res.Field = CodeInvalidArgument, "items"
			return 0, false
		}
		for i := range items {
			it := &items[i]
			if it.Quantity < 1 || it.Quantity > quantityMax {
				res.Code, res.Field = CodeInvalidArgument, itemField(i, "quantity")
				return 0, false
			}
			if len(it.SKUID) > idLengthMax {
				res.Code, res.Field = CodeInvalidArgument, itemField(i, "sku_id")
				return 0, false
			}
			var ref skuRef
			var ok bool
			if looked != nil {
				ref = looked[i]
				ok = ref.valid()
			} else {
				ref, ok = c.dir.lookup(it.SKUID)
			}
			if !ok {
				unresolvedSKU(res, ref, itemField(i, "sku_id"))
				return 0, false
			}
			it.ref = ref
		}
		partition := items[0].ref.partition()
		for i := range items {
			if items[i].ref.partition() != partition {
				// Different partitions means different merchants.
				res.Code, res.Field = CodeInvalidArgument, "items"
				return 0, false
			}
		}
		if !gates {
			return partition, true
		}
		if o.DealID != "" && !c.routeDealOrder(o, partition, res) {
			if res.Code == CodeOutOfStock || res.Code == CodeDealNotActive {
				c.dealGatewayRejected.Add(1)
			}
			return 0, false
		}
		if cmd.Order.IdempotencyKey != "" {
			// A key belongs to the partition of its first use; the same key
			// on another merchant's order is another request. Reserving it
			// here, before either order is applied, settles a race between
			// two first uses.
			keyHash := hashString(cmd.Order.IdempotencyKey) | 1
			var minted int64
			if c.disk != nil {
				minted, _ = idempotency.KeyTime(cmd.Order.IdempotencyKey)
			}
			owner, missGeneration, err := c.keys.reserveKey(keyHash, minted, partition, c.disk)
			cmd.Order.stored = storedKey{keyHash: keyHash, missGeneration: uint32(missGeneration)}
			if err != nil {
				res.Code = CodeUnavailable
				return 0, false
			}
			if owner != partition {
				res.Code, res.Field = CodeIdempotencyMismatch, "Idempotency-Key"
				return 0, false
			}
		}
		// A sold-out SKU is refused here, without entering the partition's
		// queue: at a flash sale most orders are for SKUs already gone. A
		// keyed order goes on, since it may be the replay of one that got
		// the last units. A deal order takes the deal's stock, not the
		// SKU's: its gate was checked above.
		if cmd.Order.IdempotencyKey == "" && o.DealID == "" {
			for i := range items {
				if c.partitions[partition].soldOut.get(items[i].ref.slot()) {
					res.Code, res.SKUID, res.Available = CodeOutOfStock, items[i].SKUID, 0
					return 0, false
				}
			}
		}
		return partition, true
	case KindScanParcel:
		sc := cmd.Scan
		if sc == nil {
			res.Code, res.Field = CodeInvalidArgument, "scan"
			return 0, false
		}
		if sc.Status <= ParcelCreated || sc.Status >= parcelStatusCount {
			res.Code, res.Field = CodeInvalidArgument, "status"
			return 0, false
		}
		if sc.Location == "" {
			res.Code, res.Field = CodeInvalidArgument, "location"
			return 0, false
		}
		if tooLong(res, "location", sc.Location, locationBytesMax) || tooLong(res, "carrier_code", sc.CarrierCode, carrierCodeBytesMax) {
			return 0, false
		}
		p := cmd.OrderID.Partition()
		if p >= len(c.partitions) || cmd.OrderID.Seq() == 0 {
			res.Code, res.Field = CodeNotFound, "parcel_id"
			return 0, false
		}
		return p, true
	case KindPay, KindCancel, KindGetOrder:
		p := cmd.OrderID.Partition()
		if p >= len(c.partitions) || cmd.OrderID.Seq() == 0 {
			res.Code, res.Field = CodeNotFound, "order_id"
			return 0, false
		}
		return p, true
	case KindUpsertBrand:
		b := cmd.Brand
		if b == nil {
			res.Code, res.Field = CodeInvalidArgument, "brand"
			return 0, false
		}
		if tooLong(res, "brand_id", b.ID, idLengthMax) || tooLong(res, "name", b.Name, textMax) ||
			tooLong(res, "country", b.Country, countryBytesMax) {
			return 0, false
		}
		return c.brandPartition(b.ID), true
	case KindUpsertMerchant:
		m := cmd.Merchant
		if m == nil {
			res.Code, res.Field = CodeInvalidArgument, "merchant"
			return 0, false
		}
		if tooLong(res, "merchant_id", m.ID, idLengthMax) || tooLong(res, "name", m.Name, textMax) ||
			tooLong(res, "brand_id", m.BrandID, idLengthMax) || tooLong(res, "industry", m.Industry, textMax) ||
			tooLong(res, "region", m.Region, regionBytesMax) {
			return 0, false
		}
		return c.merchantPartition(m.ID), true
	case KindUpsertSKU:
		s := cmd.SKU
		if s == nil {
			res.Code, res.Field = CodeInvalidArgument, "sku"
			return 0, false
		}
		if tooLong(res, "sku_id", s.ID, idLengthMax) || tooLong(res, "merchant_id", s.MerchantID, idLengthMax) ||
			tooLong(res, "brand_id", s.BrandID, idLengthMax) || tooLong(res, "title", s.Title, textMax) ||
			tooLong(res, "category", s.Category, textMax) {
			return 0, false
		}
		return c.merchantPartition(s.MerchantID), true
	case KindPutChannel, KindPutDeal, KindEndDeal, KindGetDeal:
		return c.routeLive(cmd, res)
	case KindAdjustStock, KindGetSKU:
		if tooLong(res, "sku_id", cmd.SKUID, idLengthMax) {
			return 0, false
		}
		ref, ok := c.dir.lookup(cmd.SKUID)
		if !ok {
			unresolvedSKU(res, ref, "sku_id")
			return 0, false
		}
		return ref.partition(), true
	default:
		res.Code, res.Field = CodeInvalidArgument, "kind"
		return 0, false
	}
}

// Close stops accepting commands, lets the workers finish what is queued,
// waits for the journal to make it durable, takes a snapshot and closes
// the journal.
func (e *Engine) Close() error {
	if e.cluster != nil {
		return e.closeCluster()
	}
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.mu.closed = true
	e.closing.Store(true)
	for _, w := range e.workers {
		close(w.queue)
	}
	e.mu.Unlock()
	e.wg.Wait()
	// The workers have stopped, so no background snapshot can start, and
	// one under way ends (or gives up) without them: wait for it before
	// the final snapshot reads the state on this goroutine.
	e.snapshotWG.Wait()
	var errs []error
	if e.Err() == nil && e.snapshots != nil {
		if err := e.snapshotStopped(); err != nil {
			errs = append(errs, fmt.Errorf("final snapshot: %w", err))
		}
	}
	if err := e.closeIdempotency(); err != nil {
		errs = append(errs, err)
	}
	if err := e.journal.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close journal: %w", err))
	}
	if e.lock != nil {
		e.lock.Close() // releases the directory lock
	}
	return errors.Join(errs...)
}

// ErrNoFollow is returned by Follow when the journal cannot be followed.
var ErrNoFollow = errors.New("journal cannot be followed")

// Follow calls fn for every committed (fsynced) event in records after
// journal position from, in order, then waits for more until ctx ends.
// ev.Position is the position of the record holding the event: a consumer
// that has handled every event of a record may checkpoint at it. The event
// and its strings are valid only during fn.
func (e *Engine) Follow(ctx context.Context, from uint64, fn func(ev *Event) error) error {
	f, ok := e.journal.(journal.Follower)
	if !ok {
		return ErrNoFollow
	}
	var ev Event
	n := len(e.core.partitions)
	return f.Follow(ctx, journal.Position(from), func(end journal.Position, rec []byte) error {
		return decodeRecord(rec, n, &ev, func(ev *Event) error {
			ev.Position = uint64(end)
			return fn(ev)
		})
	})
}
