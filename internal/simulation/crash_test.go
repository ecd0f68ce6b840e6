package simulation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/logistics"
	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/internal/vfs"
)

// The shape of one simulated run. Small numbers keep a seed to a few
// milliseconds, so that CI runs thousands; small segments and frequent
// snapshots make rotation, retention and fallback happen in every run.
const (
	dataDir          = "/data"
	simPartitions    = 4
	simBuyers        = 6
	simSKUs          = 6
	simSteps         = 40 // actions per seed
	simSegmentBytes  = 4 << 10
	simPaymentWindow = time.Minute
	// crashMutationsMax bounds how far into the next action a crash lands,
	// in disk-changing operations; an action writes a few records.
	crashMutationsMax = 24
)

// concurrentSeeds runs a third of the seeds in the concurrent mode (see
// run.concurrent); FEST_SIM_CONCURRENT=0 runs every seed with one writer.
var concurrentSeeds = os.Getenv("FEST_SIM_CONCURRENT") != "0"

// seedsDefault is how many seeds `go test` runs; each has several crash
// points. Under the race detector the run is slower, so fewer.
func seedsDefault() int {
	if raceEnabled {
		return 60
	}
	return 600
}

// TestCrashSimulation runs seeded crash simulations (see the package
// comment). FEST_SIM_SEEDS=N runs N seeds; FEST_SIM_SEED=S replays one.
func TestCrashSimulation(t *testing.T) {
	first, count := uint64(1), seedsDefault()
	if v := os.Getenv("FEST_SIM_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FEST_SIM_SEEDS=%q: want a positive number", v)
		}
		count = n
	}
	if v := os.Getenv("FEST_SIM_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FEST_SIM_SEED=%q: want a number", v)
		}
		first, count = s, 1
	}
	var total stats
	start := time.Now()
	for seed := first; seed < first+uint64(count); seed++ {
		r := newRun(t, seed)
		err := r.safePlay()
		r.shutdown()
		if err != nil {
			mode := "one writer: it replays exactly"
			if r.concurrent {
				mode = "concurrent: its crash points may land elsewhere on a replay"
			}
			t.Fatalf("seed %d (%s) failed: %v\n\nreplay: FEST_SIM_SEED=%d go test -run TestCrashSimulation ./internal/simulation\n\nactions:\n%s\n\ndisk history (last entries):\n%s",
				seed, mode, err, seed, strings.Join(r.trace, "\n"), lastLines(r.sim.History(), 60))
		}
		total.add(r.stats)
	}
	t.Logf("%d seeds in %v: %d crash points, %d clean restarts, %d bit flips (%d refused with file and offset, %d repaired or harmless), %d failing fsyncs, %d short writes, %d full disks armed, %d acknowledged orders checked, %d keyed orders of unknown outcome resolved, %d parcel scans acknowledged",
		count, time.Since(start).Round(time.Millisecond), total.crashes, total.restarts, total.flips, total.refused, total.flips-total.refused, total.failedSyncs, total.shortWrites, total.noSpace, total.ordersChecked, total.unknownKeyed, total.scans)
	if total.crashes < count {
		t.Fatalf("only %d crash points in %d seeds: the simulation is not crashing", total.crashes, count)
	}
}

func lastLines(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type stats struct {
	crashes, restarts, flips, refused, failedSyncs, shortWrites, noSpace, ordersChecked int
	// unknownKeyed counts keyed orders of unknown outcome resolved: by a
	// retry answered, or found in the journal at recovery.
	unknownKeyed int
	scans        int // acknowledged parcel scans
}

func (s *stats) add(o stats) {
	s.crashes += o.crashes
	s.restarts += o.restarts
	s.flips += o.flips
	s.refused += o.refused
	s.failedSyncs += o.failedSyncs
	s.shortWrites += o.shortWrites
	s.noSpace += o.noSpace
	s.ordersChecked += o.ordersChecked
	s.unknownKeyed += o.unknownKeyed
	s.scans += o.scans
}

// orderModel is what the test knows of an order: what was acknowledged,
// and what an unacknowledged command on it may have done.
type orderModel struct {
	id     engine.OrderID
	buyer  string
	total  int64
	payBy  int64
	lines  map[string]int64 // sku id → quantity
	acked  engine.OrderStatus
	maybe  []engine.OrderStatus // set by commands whose outcome is unknown
	keyed  string               // idempotency key, if any
	placed bool                 // acknowledged as placed (not merely possible)
	// parcel is the parcel's acknowledged status (ParcelNone until the
	// payment is acknowledged), parcelMaybe what scans of unknown outcome
	// may have made it, and scans the scans sent (each at a new location).
	parcel      engine.ParcelStatus
	parcelMaybe []engine.ParcelStatus
	scans       int
}

// skuModel is what the test knows of a SKU's stock.
type skuModel struct {
	id       string
	merchant string
	price    int64
	total    int64   // acknowledged available + reserved + sold
	maybe    []int64 // deltas of adjustments whose outcome is unknown
}

type run struct {
	t    *testing.T
	seed uint64
	// concurrent seeds (a third) run two workers, background engine and
	// projection snapshots every few KiB, and idempotency keys spilling to
	// the disk tier after four per partition: the staggered snapshot's
	// per-partition positions, projection chunk files and the key store are
	// then crashed too. Their goroutines interleave disk operations by the
	// scheduler's choice, so such a seed replays its actions and faults but
	// not always its exact crash point.
	concurrent bool
	rng        *rand.Rand
	sim        *vfs.Sim
	// now is the logical clock, read by the engine's goroutines (the
	// idempotency writer expires runs by it) while the test moves it.
	now   atomic.Int64
	trace []string
	stats stats

	eng     *engine.Engine
	store   *orders.Store
	gmv     *gmvp.Projection
	parcels *logistics.Logistics
	proj    *projection.Runner

	skus   []*skuModel
	orders map[engine.OrderID]*orderModel
	keys   map[string]engine.OrderID // acknowledged idempotency keys
	// unknownKeys are the keys of new orders whose outcome is unknown, with
	// the request: a retry must place the order or replay the one that
	// reached the journal, never refuse it as another request's key.
	unknownKeys map[string]*orderModel
	// keysMade numbers the idempotency keys, so each new one is unique.
	keysMade int
	// damaged is set once a bit was flipped in durable data: from then on
	// recovery may refuse to start, with the file and offset.
	damaged bool
	flipped []string // the files a bit was flipped in
}

func newRun(t *testing.T, seed uint64) *run {
	// Half the seeds model file systems that persist a file's size before
	// its data: the lost end of a cut write reads back as zeros.
	var faults vfs.SimFaults
	if seed%2 == 0 {
		faults.CrashZeroFillProbability = 0.5
	}
	sim, err := vfs.NewSim(vfs.SimConfig{Seed: seed, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{
		t: t, seed: seed, sim: sim, concurrent: concurrentSeeds && seed%3 == 0,
		rng:    rand.New(rand.NewPCG(seed, 0x5eed)),
		orders: map[engine.OrderID]*orderModel{},
		keys:   map[string]engine.OrderID{},

		unknownKeys: map[string]*orderModel{},
	}
	r.now.Store(time.Date(2020, 11, 11, 0, 0, 0, 0, time.UTC).UnixNano())
	return r
}

func (r *run) logf(format string, args ...any) {
	r.trace = append(r.trace, fmt.Sprintf("%3d ", len(r.trace))+fmt.Sprintf(format, args...))
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// open starts a process on the disk: engine, projections, as fest serve
// wires them.
func (r *run) open() error {
	fsys := r.sim.Process()
	store, err := orders.Open(orders.Config{})
	if err != nil {
		return fmt.Errorf("open order store: %w", err)
	}
	gmv, err := gmvp.New(gmvp.Config{})
	if err != nil {
		return fmt.Errorf("open gmv projection: %w", err)
	}
	parcels, err := logistics.New(logistics.Config{Now: r.now.Load})
	if err != nil {
		return fmt.Errorf("open logistics: %w", err)
	}
	pcfg := projection.Config{Dir: path.Join(dataDir, "projections"), FS: fsys, Logger: discard}
	ecfg := engine.Config{
		Dir:                dataDir,
		FS:                 fsys,
		Partitions:         simPartitions,
		Workers:            1, // one writer: the sequence of disk operations is the seed's
		PaymentTimeout:     simPaymentWindow,
		SnapshotEveryBytes: -1, // snapshots only where the test asks
		SegmentBytesMax:    simSegmentBytes,
		IdleTick:           -1, // expiry only with batches: no wall-clock timer
		Now:                r.now.Load,
		Logger:             discard,
	}
	if r.concurrent {
		pcfg.SnapshotEveryBytes = 2 << 10
		ecfg.Workers = 2
		ecfg.SnapshotEveryBytes = 6 << 10
		ecfg.IdempotencyKeysMax = 4
		ecfg.IdempotencyRunDelayMax = time.Millisecond
	}
	proj, err := projection.New(pcfg, store, gmv, parcels)
	if err != nil {
		return fmt.Errorf("open projections: %w", err)
	}
	ecfg.RetainFrom = proj.Retain
	eng, err := engine.Open(ecfg)
	if err != nil {
		store.Close()
		return err
	}
	proj.Start(eng)
	r.eng, r.store, r.gmv, r.parcels, r.proj = eng, store, gmv, parcels, proj
	return nil
}

// shutdown closes whatever is open; after a crash every call may fail.
func (r *run) shutdown() {
	if r.eng == nil {
		return
	}
	r.proj.Close()
	r.eng.Close()
	r.store.Close()
	r.eng, r.store, r.gmv, r.parcels, r.proj = nil, nil, nil, nil, nil
}

// safePlay is play with a failed expectation (fatalf) turned into an error,
// so the seed is printed with its trace.
func (r *run) safePlay() (err error) {
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(simFailure)
			if !ok {
				panic(p)
			}
			err = errors.New(f.msg)
		}
	}()
	return r.play()
}

// play runs the seed: a catalog, then random actions with crashes, clean
// restarts and damage, checking the promises after every recovery.
func (r *run) play() error {
	if err := r.open(); err != nil {
		return fmt.Errorf("first open: %w", err)
	}
	if err := r.catalog(); err != nil {
		return err
	}
	for step := 0; step < simSteps; step++ {
		switch x := r.rng.IntN(100); {
		case x < 36:
			r.placeOrders()
		case x < 40:
			r.scanParcels()
		case x < 55:
			r.settle()
		case x < 57:
			r.adjustStock()
		case x < 60:
			r.syncStock()
		case x < 66:
			r.advanceClock()
		case x < 72:
			r.snapshot()
		case x < 78:
			if err := r.restart(false); err != nil {
				return err
			}
		case x < 95:
			if err := r.crash(); err != nil {
				return err
			}
		default:
			if err := r.flip(); err != nil {
				return err
			}
		}
		if r.eng == nil {
			// Recovery refused damage with its file and offset: the run
			// ends there, as an operator would have to step in.
			return nil
		}
	}
	return r.restart(false)
}

func (r *run) do(cmd engine.Command) engine.Result {
	return r.eng.Do(context.Background(), cmd)
}

func (r *run) catalog() error {
	for _, id := range []string{"b0", "b1"} {
		if res := r.do(engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: id, Name: id, Country: "CN"}}); res.Code != engine.CodeOK {
			return fmt.Errorf("create brand %s: %v", id, res.Code)
		}
	}
	for m := 0; m < 3; m++ {
		id := fmt.Sprintf("m%d", m)
		res := r.do(engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: id, Name: id, BrandID: "b0", Kind: engine.MerchantBrandStore, Industry: "toys", Region: "CN-ZJ"}})
		if res.Code != engine.CodeOK {
			return fmt.Errorf("create merchant %s: %v", id, res.Code)
		}
	}
	for s := 0; s < simSKUs; s++ {
		sku := &skuModel{id: fmt.Sprintf("s%d", s), merchant: fmt.Sprintf("m%d", s%3), price: int64(100 * (s + 1)), total: int64(5 + r.rng.IntN(40))}
		res := r.do(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: sku.id, MerchantID: sku.merchant, BrandID: "b1", Title: "t", Category: "c", Price: sku.price, Stock: sku.total}})
		if res.Code != engine.CodeOK {
			return fmt.Errorf("create sku %s: %v", sku.id, res.Code)
		}
		r.skus = append(r.skus, sku)
	}
	r.logf("catalog: %d skus", len(r.skus))
	return nil
}

// placeOrders submits one batch of orders, some keyed, some retrying an
// acknowledged key.
func (r *run) placeOrders() {
	n := 1 + r.rng.IntN(8)
	b := engine.NewBatch(n)
	type pending struct {
		model *orderModel
		retry engine.OrderID
		// retryUnknown is set for a retry of a key whose first order's
		// outcome is unknown.
		retryUnknown bool
	}
	var sent []pending
	for range n {
		m := r.skus[r.rng.IntN(len(r.skus))].merchant
		var items []engine.Item
		lines := map[string]int64{}
		for _, s := range r.skus {
			if s.merchant == m && r.rng.IntN(2) == 0 || len(items) == 0 && s.merchant == m && r.rng.IntN(3) == 0 {
				q := int32(1 + r.rng.IntN(4))
				items = append(items, engine.Item{SKUID: s.id, Quantity: q})
				lines[s.id] += int64(q)
			}
		}
		if len(items) == 0 {
			for _, s := range r.skus {
				if s.merchant == m {
					items = append(items, engine.Item{SKUID: s.id, Quantity: 1})
					lines[s.id] = 1
					break
				}
			}
		}
		o := engine.Order{BuyerID: fmt.Sprintf("buyer-%d", r.rng.IntN(simBuyers)), Items: items, Channel: "app", Region: "CN-ZJ"}
		var retry engine.OrderID
		var retryUnknown bool
		if r.rng.IntN(3) == 0 {
			if len(r.keys) > 0 && r.rng.IntN(2) == 0 {
				// A retry of an acknowledged key must answer its order.
				keys := make([]string, 0, len(r.keys))
				for k := range r.keys {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				k := keys[r.rng.IntN(len(keys))]
				retry = r.keys[k]
				prev := r.orders[retry]
				o = engine.Order{BuyerID: prev.buyer, Items: itemsOf(prev.lines), Channel: "app", Region: k, IdempotencyKey: k, RequestHash: hashKey(k)}
				lines = prev.lines
			} else if len(r.unknownKeys) > 0 && r.rng.IntN(2) == 0 {
				// A client retries a request it got no answer for.
				keys := make([]string, 0, len(r.unknownKeys))
				for k := range r.unknownKeys {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				k := keys[r.rng.IntN(len(keys))]
				prev := r.unknownKeys[k]
				o = engine.Order{BuyerID: prev.buyer, Items: itemsOf(prev.lines), Channel: "app", Region: k, IdempotencyKey: k, RequestHash: hashKey(k)}
				lines, retryUnknown = prev.lines, true
			} else {
				r.keysMade++
				o.IdempotencyKey = fmt.Sprintf("key-%d-%d", r.seed, r.keysMade)
				// The region names the key, so that an order of unknown
				// outcome found in the order store is known by its key.
				o.Region = o.IdempotencyKey
				o.RequestHash = hashKey(o.IdempotencyKey)
			}
		}
		b.Add(engine.Command{Kind: engine.KindPlaceOrder, Order: o})
		sent = append(sent, pending{model: &orderModel{buyer: o.BuyerID, lines: lines, keyed: o.IdempotencyKey}, retry: retry, retryUnknown: retryUnknown})
	}
	r.eng.Submit(b)
	b.Wait()
	var ok, unknown int
	for i, req := range b.Requests {
		res := req.Result
		p := sent[i]
		switch res.Code {
		case engine.CodeOK:
			ok++
			if p.retry != 0 {
				if res.OrderID != p.retry {
					r.fatalf("retry of key %q answered order %v, acknowledged before as %v", p.model.keyed, res.OrderID, p.retry)
				}
				continue
			}
			if p.retryUnknown && res.Replayed {
				// The first order reached the journal: recovery made it
				// known, and it must be this request's.
				prev, known := r.orders[res.OrderID]
				if !known || prev.buyer != p.model.buyer || !maps.Equal(prev.lines, p.model.lines) {
					r.fatalf("retry of unacknowledged key %q replayed order %v, which is not its request's (known %v)", p.model.keyed, res.OrderID, known)
				}
				r.keys[p.model.keyed] = res.OrderID
				delete(r.unknownKeys, p.model.keyed)
				r.stats.unknownKeyed++
				continue
			}
			m := p.model
			m.id, m.total, m.payBy, m.acked, m.placed = res.OrderID, res.Total, res.PayBy, engine.StatusPending, true
			if old, dup := r.orders[m.id]; dup && old.placed {
				r.logf("place %d orders: order %v acknowledged again (replayed %v, key %q, result %+v)", n, m.id, res.Replayed, m.keyed, res)
				r.fatalf("order id %v acknowledged twice (first for %s, now for %s; journal end %d)", m.id, old.buyer, m.buyer, r.eng.JournalEnd())
			}
			r.orders[m.id] = m
			if m.keyed != "" {
				r.keys[m.keyed] = m.id
				if p.retryUnknown {
					delete(r.unknownKeys, m.keyed)
					r.stats.unknownKeyed++
				}
			}
		case engine.CodeUnavailable:
			unknown++ // the engine stopped: it may or may not have been placed
			if p.retry == 0 && p.model.keyed != "" {
				r.unknownKeys[p.model.keyed] = p.model
			}
		case engine.CodeIdempotencyMismatch:
			if p.retry != 0 || p.retryUnknown {
				r.fatalf("retry of key %q with its own request answered idempotency_mismatch (acknowledged before as %v)", p.model.keyed, p.retry)
			}
		}
	}
	r.logf("place %d orders: %d acknowledged, %d unknown (journal end %d)", n, ok, unknown, r.eng.JournalEnd())
}

func itemsOf(lines map[string]int64) []engine.Item {
	ids := make([]string, 0, len(lines))
	for id := range lines {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	items := make([]engine.Item, 0, len(ids))
	for _, id := range ids {
		items = append(items, engine.Item{SKUID: id, Quantity: int32(lines[id])})
	}
	return items
}

func hashKey(k string) uint64 {
	h := uint64(1469598103934665603)
	for i := 0; i < len(k); i++ {
		h = (h ^ uint64(k[i])) * 1099511628211
	}
	return h
}

// settle pays or cancels some acknowledged pending orders.
func (r *run) settle() {
	var ids []engine.OrderID
	for id, o := range r.orders {
		if o.acked == engine.StatusPending {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return
	}
	r.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	ids = ids[:min(len(ids), 1+r.rng.IntN(5))]
	b := engine.NewBatch(len(ids))
	for _, id := range ids {
		if r.rng.IntN(3) == 0 {
			b.Add(engine.Command{Kind: engine.KindCancel, OrderID: id})
		} else {
			b.Add(engine.Command{Kind: engine.KindPay, OrderID: id, Amount: r.orders[id].total})
		}
	}
	r.eng.Submit(b)
	b.Wait()
	var paid, cancelled, refused int
	for _, req := range b.Requests {
		o := r.orders[req.Command.OrderID]
		want := engine.StatusPaid
		if req.Command.Kind == engine.KindCancel {
			want = engine.StatusCancelled
		}
		switch req.Result.Code {
		case engine.CodeOK:
			o.acked, o.maybe = want, nil
			if want == engine.StatusPaid {
				o.parcel = engine.ParcelCreated
				paid++
			} else {
				cancelled++
			}
		case engine.CodeUnavailable:
			o.maybe = append(o.maybe, want)
		case engine.CodeInvalidState:
			refused++ // expired meanwhile
			o.maybe = append(o.maybe, engine.StatusExpired)
		}
	}
	r.logf("settle %d: %d paid, %d cancelled, %d refused", len(ids), paid, cancelled, refused)
}

// scanParcels sends carrier scans for the parcels of some acknowledged
// paid orders, each to a status the transition table allows and at a new
// location; a parcel with a scan of unknown outcome waits for check.
func (r *run) scanParcels() {
	var ids []engine.OrderID
	for id, o := range r.orders {
		if o.parcel != engine.ParcelNone && len(o.parcelMaybe) == 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	r.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	b := engine.NewBatch(4)
	for _, id := range ids[:min(len(ids), 1+r.rng.IntN(4))] {
		o := r.orders[id]
		var next []engine.ParcelStatus
		for s := engine.ParcelPickedUp; int(s) < engine.ParcelStatusCount; s++ {
			if engine.ParcelTransitionAllowed(o.parcel, s) {
				next = append(next, s)
			}
		}
		if len(next) == 0 {
			continue // delivered or returned
		}
		o.scans++
		b.Add(engine.Command{Kind: engine.KindScanParcel, OrderID: id, Scan: &engine.Scan{
			Status: next[r.rng.IntN(len(next))], Location: "hub-" + strconv.Itoa(o.scans), At: r.now.Load()}})
	}
	if len(b.Requests) == 0 {
		return
	}
	r.eng.Submit(b)
	b.Wait()
	var acked, unknown int
	for _, req := range b.Requests {
		o := r.orders[req.Command.OrderID]
		switch req.Result.Code {
		case engine.CodeOK:
			o.parcel = req.Command.Scan.Status
			acked++
		case engine.CodeUnavailable:
			o.parcelMaybe = append(o.parcelMaybe, req.Command.Scan.Status)
			unknown++
		default:
			r.fatalf("scan %v of order %v from %v: %v", req.Command.Scan.Status, req.Command.OrderID, o.parcel, req.Result.Code)
		}
	}
	r.stats.scans += acked
	r.logf("scan %d parcels: %d acknowledged, %d unknown", len(b.Requests), acked, unknown)
}

func (r *run) adjustStock() {
	s := r.skus[r.rng.IntN(len(r.skus))]
	delta := int64(r.rng.IntN(10) - 3)
	if delta == 0 {
		delta = 1
	}
	res := r.do(engine.Command{Kind: engine.KindAdjustStock, SKUID: s.id, Delta: delta})
	switch res.Code {
	case engine.CodeOK:
		s.total += delta
	case engine.CodeUnavailable:
		s.maybe = append(s.maybe, delta)
	}
	r.logf("adjust %s by %d: %v", s.id, delta, res.Code)
}

// syncStock sets a SKU's stock as a catalog sync does: a compare-and-set
// on the available stock it read.
func (r *run) syncStock() {
	s := r.skus[r.rng.IntN(len(r.skus))]
	got := r.do(engine.Command{Kind: engine.KindGetSKU, SKUID: s.id})
	if got.Code != engine.CodeOK {
		r.logf("sync %s: read %v", s.id, got.Code)
		return
	}
	expected := got.Available
	if r.rng.IntN(4) == 0 {
		expected++ // stale: must be refused and change nothing
	}
	stock := max(0, got.Available+int64(r.rng.IntN(9)-4))
	res := r.do(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: s.id, MerchantID: s.merchant, BrandID: "b1", Title: "t", Category: "c", Price: s.price,
		Stock: stock, StockCompared: true, StockExpected: expected}})
	delta := stock - got.Available
	switch {
	case res.Code == engine.CodeOK && expected == got.Available:
		s.total += delta
	case res.Code == engine.CodeOK:
		r.fatalf("sync of %s with a stale stock_expected %d (available %d) was applied", s.id, expected, got.Available)
	case res.Code == engine.CodeUnavailable:
		if expected == got.Available {
			s.maybe = append(s.maybe, delta)
		}
	case res.Code == engine.CodeConflict && expected != got.Available:
	default:
		r.fatalf("sync of %s (expected %d, available %d): %v", s.id, expected, got.Available, res.Code)
	}
	r.logf("sync %s to %d expecting %d: %v", s.id, stock, expected, res.Code)
}

func (r *run) advanceClock() {
	if r.rng.IntN(8) == 0 {
		// Past the idempotency window: every key so far is forgotten, and
		// a retry is a new order.
		r.now.Add(int64(25 * time.Hour))
		clear(r.keys)
		clear(r.unknownKeys)
		r.logf("clock +25h")
		return
	}
	d := time.Duration(1+r.rng.IntN(90)) * time.Second
	r.now.Add(int64(d))
	r.logf("clock +%v", d)
}

func (r *run) snapshot() {
	err := r.eng.Snapshot()
	r.logf("engine snapshot: %v", err)
}

// crash arms a crash a random number of disk mutations ahead, runs actions
// until it lands (or crashes at once if none did), and recovers.
func (r *run) crash() error {
	n := int64(1 + r.rng.IntN(crashMutationsMax))
	before := r.sim.Stats().Crashes
	r.sim.CrashAtMutation(n)
	// A quarter of the crash windows also hold a storage fault.
	switch r.rng.IntN(12) {
	case 0:
		r.sim.FailNextSync(func(name string) bool { return strings.Contains(name, "journal") })
		r.stats.failedSyncs++
		r.logf("arm a failing fsync of the journal")
	case 1:
		r.sim.FailNextSync(func(name string) bool { return strings.Contains(name, "snap") })
		r.stats.failedSyncs++
		r.logf("arm a failing fsync of a snapshot")
	case 2:
		r.sim.ShortNextWrite(func(name string) bool { return strings.HasSuffix(name, ".seg") || strings.Contains(name, "snap") })
		r.stats.shortWrites++
		r.logf("arm a short write of the journal or a snapshot")
	}
	if r.rng.IntN(16) == 0 {
		n := int64(r.rng.IntN(4096))
		r.sim.NoSpaceAfter(n)
		r.stats.noSpace++
		r.logf("the disk fills up after %d more bytes", n)
	}
	r.logf("arm a crash %d mutations ahead", n)
	for i := 0; i < 6 && r.sim.Stats().Crashes == before; i++ {
		switch r.rng.IntN(5) {
		case 0:
			r.settle()
		case 1:
			r.snapshot()
		case 2:
			r.scanParcels()
		default:
			r.placeOrders()
		}
	}
	r.sim.CrashAtMutation(0)
	if r.sim.Stats().Crashes == before {
		r.sim.Crash()
	}
	r.sim.ClearInjections() // the faults that did not fire
	r.sim.NoSpaceAfter(-1)  // the operator freed space
	r.stats.crashes++
	r.logf("crash")
	return r.restart(true)
}

// flip flips a bit in a durable journal or snapshot file, then restarts.
func (r *run) flip() error {
	var files []string
	for _, f := range r.sim.Files() {
		if strings.HasSuffix(f, ".seg") || strings.Contains(f, "snap") {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil
	}
	f := files[r.rng.IntN(len(files))]
	off, bit, err := r.sim.FlipBit(f)
	if err != nil {
		r.logf("flip in %s: %v", f, err)
		return nil
	}
	r.damaged = true
	r.flipped = append(r.flipped, f)
	r.stats.flips++
	r.logf("flip bit %d at offset %d of %s", bit, off, f)
	return r.restart(r.rng.IntN(2) == 0)
}

// restart stops the process (cleanly, or it already crashed) and opens the
// disk again, then checks every promise.
func (r *run) restart(crashed bool) error {
	r.shutdown()
	if !crashed {
		r.stats.restarts++
		r.logf("clean restart")
	}
	err := r.open()
	if err != nil {
		if r.damaged && r.refusedWithPlace(err) {
			r.stats.refused++
			r.logf("recovery refused the damage: %v", err)
			return nil
		}
		return fmt.Errorf("recovery failed: %w", err)
	}
	return r.check()
}

// refusedWithPlace reports whether a start-up error names damage with its
// file and offset, as the journal and snapshots must.
func (r *run) refusedWithPlace(err error) bool {
	msg := err.Error()
	if !(errors.Is(err, journal.ErrCorrupt) || strings.Contains(msg, "corrupt") || strings.Contains(msg, "damage")) || !strings.Contains(msg, "offset") {
		return false
	}
	// The refusal must name a file the test damaged: damage found in a
	// file that was only crashed would be a torn tail taken for damage.
	for _, f := range r.flipped {
		if strings.Contains(msg, f) {
			return true
		}
	}
	return false
}

func (r *run) fatalf(format string, args ...any) {
	panic(simFailure{fmt.Sprintf(format, args...)})
}

type simFailure struct{ msg string }

// check verifies the promises after a recovery.
func (r *run) check() error {
	// A command in every partition that holds orders (each SKU's) runs a
	// batch on every worker, which expires what is overdue, so the
	// projections below see the same statuses as the engine.
	for _, sku := range r.skus {
		r.do(engine.Command{Kind: engine.KindGetSKU, SKUID: sku.id})
	}
	// The projections catch up, or stop with the reason: with every kept
	// projection snapshot damaged and the journal's start removed, they
	// cannot be rebuilt, and say so (reads answer 503).
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		err := r.proj.WaitDurable(ctx)
		cancel()
		if err == nil {
			break
		}
		if perr := r.proj.Err(); perr != nil {
			if r.damaged && errors.Is(perr, journal.ErrRemoved) {
				r.stats.refused++
				r.logf("projections refused the damage: %v", perr)
				r.shutdown()
				return nil
			}
			return fmt.Errorf("projections stopped: %w", perr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("order store catching up: %w", err)
		}
	}
	// One runner feeds the order store and the GMV projection: caught up
	// above, both are.
	// Every order the store holds, by buyer: placed ones we know, and
	// unacknowledged ones that made it to the journal.
	held := map[engine.OrderID]orders.Order{}
	for b := 0; b < simBuyers; b++ {
		cursor := ""
		for {
			page, next, err := r.store.ListByBuyer(fmt.Sprintf("buyer-%d", b), 1000, cursor)
			if err != nil {
				return fmt.Errorf("list orders of buyer-%d: %w", b, err)
			}
			for _, o := range page {
				if _, dup := held[o.ID]; dup {
					return fmt.Errorf("order %v listed twice", o.ID)
				}
				held[o.ID] = o
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	// Every acknowledged order is present exactly once with a status its
	// acknowledged history allows.
	for id, m := range r.orders {
		if !m.placed {
			continue
		}
		r.stats.ordersChecked++
		res := r.do(engine.Command{Kind: engine.KindGetOrder, OrderID: id})
		if res.Code != engine.CodeOK {
			return fmt.Errorf("acknowledged order %v: engine answers %v", id, res.Code)
		}
		if !allowed(m, res.Status, r.now.Load()) {
			return fmt.Errorf("acknowledged order %v (acknowledged %v, maybe %v, pay by %v): engine has it %v",
				id, m.acked, m.maybe, time.Unix(0, m.payBy).UTC(), res.Status)
		}
		o, ok := held[id]
		if !ok {
			return fmt.Errorf("acknowledged order %v missing from the order store", id)
		}
		if o.Status != res.Status {
			return fmt.Errorf("order %v: order store says %v, engine %v", id, o.Status, res.Status)
		}
		if o.Total != m.total {
			return fmt.Errorf("order %v: total %d, acknowledged %d", id, o.Total, m.total)
		}
		if err := r.checkParcel(id, m, &res); err != nil {
			return err
		}
		// Settle what recovery decided, so later checks start from it.
		m.acked, m.maybe = res.Status, nil
		m.parcel, m.parcelMaybe = res.ParcelStatus, nil
	}
	// Orders that were not acknowledged but reached the journal are real
	// orders now: follow them from here as if acknowledged.
	var gmv int64
	reserved, sold := map[string]int64{}, map[string]int64{}
	byMerchant, byChannel := map[string]int64{}, map[string]int64{}
	for id, o := range held {
		if _, known := r.orders[id]; !known {
			lines := map[string]int64{}
			for _, it := range o.Items {
				lines[it.SKUID] += int64(it.Quantity)
			}
			res := r.do(engine.Command{Kind: engine.KindGetOrder, OrderID: id})
			if res.Code != engine.CodeOK || res.Status != o.Status {
				return fmt.Errorf("order %v reached the order store (%v) but the engine answers %v %v (journal end %d)", id, o.Status, res.Code, res.Status, r.eng.JournalEnd())
			}
			r.orders[id] = &orderModel{id: id, buyer: o.BuyerID, total: o.Total, payBy: o.PayBy, lines: lines, acked: o.Status, placed: true, parcel: res.ParcelStatus}
			if err := r.checkParcel(id, r.orders[id], &res); err != nil {
				return err
			}
			if u := r.unknownKeys[o.Region]; u != nil {
				// A keyed order of unknown outcome reached the journal: a
				// retry of its key must now answer it.
				if u.buyer != o.BuyerID || !maps.Equal(u.lines, lines) {
					return fmt.Errorf("order %v of key %q has buyer %s lines %v, but the request had %s %v", id, o.Region, o.BuyerID, lines, u.buyer, u.lines)
				}
				r.orders[id].keyed = o.Region
				r.keys[o.Region] = id
				delete(r.unknownKeys, o.Region)
				r.stats.unknownKeyed++
			}
		}
		for _, it := range o.Items {
			switch o.Status {
			case engine.StatusPending:
				reserved[it.SKUID] += int64(it.Quantity)
			case engine.StatusPaid:
				sold[it.SKUID] += int64(it.Quantity)
			}
		}
		if o.Status == engine.StatusPaid {
			gmv += o.Total
			byMerchant[o.MerchantID] += o.Total
			byChannel[o.Channel] += o.Total
		}
	}
	totals, err := r.gmv.Totals()
	if err != nil {
		return fmt.Errorf("gmv: %w", err)
	}
	if got := totals.GMV; got != gmv {
		return fmt.Errorf("gmv %d, but the paid orders add up to %d", got, gmv)
	}
	// Every breakdown adds up to the total, and those the order store can
	// recompute (merchant, channel) equal the paid orders' sums.
	for _, d := range gmvp.Dimensions() {
		b, err := r.gmv.Breakdown(d, 1000)
		if err != nil {
			return fmt.Errorf("gmv breakdown by %v: %w", d, err)
		}
		sum, rows := b.Rest.GMV, map[string]int64{}
		for _, row := range b.Rows {
			sum += row.GMV
			rows[row.Key] = row.GMV
		}
		if sum != b.GMV || b.GMV != gmv {
			return fmt.Errorf("gmv breakdown by %v adds up to %d fen, its total is %d, the paid orders' %d", d, sum, b.GMV, gmv)
		}
		want := map[gmvp.Dimension]map[string]int64{gmvp.DimMerchant: byMerchant, gmvp.DimChannel: byChannel}[d]
		if want != nil && b.Rest.Rows == 0 && !maps.Equal(rows, want) {
			return fmt.Errorf("gmv breakdown by %v is %v, the paid orders' %v", d, rows, want)
		}
	}
	var paidOrders uint64
	for _, o := range held {
		if o.Status == engine.StatusPaid {
			paidOrders++
		}
	}
	if got := r.parcels.Stats().Parcels; got != paidOrders {
		return fmt.Errorf("%d parcels for %d paid orders", got, paidOrders)
	}
	// Stock is conserved per SKU against the order lines.
	for _, s := range r.skus {
		res := r.do(engine.Command{Kind: engine.KindGetSKU, SKUID: s.id})
		if res.Code != engine.CodeOK {
			return fmt.Errorf("sku %s: %v", s.id, res.Code)
		}
		if res.Reserved != reserved[s.id] || res.Sold != sold[s.id] {
			return fmt.Errorf("sku %s: reserved %d sold %d, but the orders hold %d pending and %d paid",
				s.id, res.Reserved, res.Sold, reserved[s.id], sold[s.id])
		}
		total := res.Available + res.Reserved + res.Sold
		if !reachable(total-s.total, s.maybe) {
			return fmt.Errorf("sku %s: available %d + reserved %d + sold %d = %d, acknowledged %d with unknown adjustments %v",
				s.id, res.Available, res.Reserved, res.Sold, total, s.total, s.maybe)
		}
		s.total, s.maybe = total, nil
	}
	r.logf("checked %d orders, gmv %d (journal end %d)", len(held), gmv, r.eng.JournalEnd())
	return nil
}

// checkParcel checks the parcel of order id after a recovery: the engine's
// parcel status is one its acknowledged scans allow (a parcel exactly when
// the order is paid), and the read model has the same parcel, or none.
func (r *run) checkParcel(id engine.OrderID, m *orderModel, res *engine.Result) error {
	got := res.ParcelStatus
	if (got != engine.ParcelNone) != (res.Status == engine.StatusPaid) {
		return fmt.Errorf("order %v is %v with parcel %v", id, res.Status, got)
	}
	if got != m.parcel && !slices.Contains(m.parcelMaybe, got) && !(m.parcel == engine.ParcelNone && got == engine.ParcelCreated) {
		return fmt.Errorf("parcel of order %v: acknowledged %v, maybe %v, engine has %v", id, m.parcel, m.parcelMaybe, got)
	}
	p, err := r.parcels.Parcel(id)
	switch {
	case got == engine.ParcelNone && !errors.Is(err, logistics.ErrNotFound):
		return fmt.Errorf("order %v is %v but has a parcel: %+v %v", id, res.Status, p, err)
	case got != engine.ParcelNone && err != nil:
		return fmt.Errorf("paid order %v has no parcel: %v", id, err)
	case got != engine.ParcelNone && (p.Status != got || len(p.Events) < 1 || p.Events[len(p.Events)-1].Status != got):
		return fmt.Errorf("parcel of order %v: read model %v (%d events), engine %v", id, p.Status, len(p.Events), got)
	}
	return nil
}

// allowed reports whether an acknowledged order may have status got.
func allowed(m *orderModel, got engine.OrderStatus, now int64) bool {
	if got == m.acked || slices.Contains(m.maybe, got) {
		return true
	}
	// A pending order expires once its time is up.
	return m.acked == engine.StatusPending && got == engine.StatusExpired && now >= m.payBy
}

// reachable reports whether diff is the sum of a subset of deltas.
func reachable(diff int64, deltas []int64) bool {
	if diff == 0 {
		return true
	}
	if len(deltas) == 0 {
		return false
	}
	return reachable(diff-deltas[0], deltas[1:]) || reachable(diff, deltas[1:])
}
