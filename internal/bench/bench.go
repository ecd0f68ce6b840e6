// Package bench is fest's in-process benchmark of the engine and its
// journal, with fsync on: the workload of `fest bench`.
//
// Generators build batches of orders (Zipf-popular SKUs, 1 to 3 items of
// one merchant, a tenth of them on a hundred flash SKUs that sell out) and
// pay or cancel a share of the orders placed, with several batches in
// flight, as the HTTP gateway and the Go client do. At the end every SKU's
// books are checked: nothing oversold, stock conserved.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/vfs"
)

// Config describes a benchmark run. Zero fields take their defaults.
type Config struct {
	Dir         string        // data directory; default a new temporary directory, removed after
	Duration    time.Duration // length of the measured run (default 10s)
	Partitions  int           // engine partitions (default 64)
	Workers     int           // engine workers (default 2)
	BatchSize   int           // orders per generator batch (default 2,048)
	Generators  int           // goroutines building and submitting batches (default 4)
	SKUs        int           // catalog size (default 100,000)
	Merchants   int           // merchants (default 1,000)
	FlashSKUs   int           // flash-sale SKUs with small stock (default 100)
	FlashStock  int64         // stock of each flash SKU (default 200)
	Stock       int64         // stock of each other SKU (default 100,000,000)
	FlashShare  float64       // share of orders on flash SKUs (default 0.10)
	PayShare    float64       // share of placed orders then paid (default 0.5)
	CancelShare float64       // share of placed orders then cancelled (default 0.1)
	ZipfS       float64       // Zipf exponent of SKU popularity (default 1.1)
	Seed        uint64        // random seed (default 1)
	NoSync      bool          // skip fsync (never for reported figures)
	// SnapshotEveryBytes is the journal growth after which the engine
	// snapshots in the background, as fest serve does (default -1: none
	// during the run, so the figures are the order path's alone). The
	// report then gives the latency of acknowledgements during snapshots.
	SnapshotEveryBytes int64
	// Recovery, if set, reopens the data directory after the run and
	// reports how long recovery takes from the final snapshot, and from the
	// journal alone (snapshots moved aside).
	Recovery bool
	// CPUProfile, if set, receives a CPU profile (pprof format) of the
	// measured run alone: not of building and loading the catalog, nor of
	// the audit and the final snapshot, which the figures leave out too.
	CPUProfile io.Writer
	Progress   func(Progress) // called about once a second, if set
}

// Progress is a running count during the run.
type Progress struct {
	Elapsed time.Duration
	Orders  uint64
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Duration < 0, c.Partitions < 0, c.Workers < 0, c.BatchSize < 0, c.Generators < 0, c.SKUs < 0, c.Merchants < 0, c.FlashSKUs < 0:
		return errors.New("bench config: values must not be negative")
	case c.FlashShare < 0 || c.FlashShare > 1 || c.PayShare < 0 || c.CancelShare < 0 || c.PayShare+c.CancelShare > 1:
		return errors.New("bench config: shares must be within 0..1 and pay + cancel at most 1")
	case c.ZipfS != 0 && c.ZipfS <= 1:
		return errors.New("bench config: the Zipf exponent must be greater than 1")
	case c.SKUs != 0 && c.Merchants != 0 && c.SKUs < c.Merchants:
		return errors.New("bench config: need at least one SKU per merchant")
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.SnapshotEveryBytes == 0 {
		c.SnapshotEveryBytes = -1
	}
	def(&c.Partitions, 64)
	def(&c.Workers, 2)
	def(&c.BatchSize, 2048)
	def(&c.Generators, 4)
	def(&c.SKUs, 100_000)
	def(&c.Merchants, 1_000)
	def(&c.FlashSKUs, 100)
	if c.FlashStock == 0 {
		c.FlashStock = 200
	}
	if c.Stock == 0 {
		c.Stock = 100_000_000
	}
	if c.FlashShare == 0 {
		c.FlashShare = 0.10
	}
	if c.PayShare == 0 {
		c.PayShare = 0.5
	}
	if c.CancelShare == 0 {
		c.CancelShare = 0.1
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// Report is the outcome of a run. Its JSON form is the last line of
// `fest bench --json`.
type Report struct {
	OrdersPerSec       float64 `json:"orders_per_sec"`
	Orders             uint64  `json:"orders"`
	OrdersAccepted     uint64  `json:"orders_accepted"`
	RejectedOutOfStock uint64  `json:"rejected_out_of_stock"`
	Paid               uint64  `json:"paid"`
	Cancelled          uint64  `json:"cancelled"`
	P50AckMs           float64 `json:"p50_ack_ms"`
	P99AckMs           float64 `json:"p99_ack_ms"`
	// P99AckDuringSnapshotMs is the p99 of acknowledgements whose batch
	// was in flight while a snapshot was written (with SnapshotEveryBytes);
	// Snapshots counts the snapshots taken during the run.
	P99AckDuringSnapshotMs float64 `json:"p99_ack_during_snapshot_ms,omitempty"`
	AcksDuringSnapshot     uint64  `json:"acks_during_snapshot,omitempty"`
	Snapshots              uint64  `json:"snapshots,omitempty"`
	AllocsPerOrder         float64 `json:"allocs_per_order"`
	BytesPerOrderJournal   float64 `json:"bytes_per_order_journal"`
	Fsyncs                 uint64  `json:"fsyncs"`
	Oversold               int     `json:"oversold"`
	Unconserved            int     `json:"unconserved"`
	// CPUMicrosPerOrder is the process's CPU time (user + system, all
	// goroutines, the generators included) per order: the budget is 3.4 µs
	// for everything at 583,000 orders/s on two cores.
	CPUMicrosPerOrder float64 `json:"cpu_us_per_order"`
	// CPUCores is the process's CPU time over the run's wall time: how many
	// of the machine's cores the run had. Orders per second are CPUCores
	// over the CPU per order, so on a machine busy with other work they
	// say more about that work than about the engine.
	CPUCores    float64 `json:"cpu_cores"`
	DurationSec float64 `json:"duration_sec"`
	Partitions  int     `json:"partitions"`
	Workers     int     `json:"workers"`
	BatchSize   int     `json:"batch_size"`
	SKUs        int     `json:"skus"`
	Dir         string  `json:"dir"`
	// RecoverySnapshotMs is the time to reopen from the final snapshot
	// (plus any journal after it); RecoveryJournalMs the time to reopen by
	// replaying the whole journal. Set with Config.Recovery.
	RecoverySnapshotMs float64 `json:"recovery_snapshot_ms,omitempty"`
	RecoveryJournalMs  float64 `json:"recovery_journal_ms,omitempty"`
}

// catalog is the generated catalog: SKU ids grouped by merchant.
type catalog struct {
	skuIDs     []string
	skuStock   []int64
	merchantOf []int   // sku index → merchant
	skusOf     [][]int // merchant → sku indexes
	flash      []int   // sku indexes of flash SKUs
	// popular holds SKU indexes drawn from the Zipf distribution once, so
	// a generator draws an order's SKU with one random index instead of the
	// logarithms and exponentials of a Zipf sample: the generator shares the
	// engine's two cores and must cost far less than the engine.
	popular []uint32
	// orderItems and orderEnds are a pool of order lines drawn once, as
	// fill would draw them, that the generators read in turn: drawing an
	// order costs a few random reads of the catalog, cache misses that took
	// a sixth of the benchmark's CPU, while the pool is read in order, which
	// the processor prefetches. The engine sees the same mix of SKUs.
	// Order k's lines are orderItems[orderEnds[k-1]:orderEnds[k]].
	orderItems []engine.Item
	orderEnds  []uint32
}

const popularSamples = 1 << 16 // 256 KiB: it stays in the cache

// poolOrders is how many orders the pool holds: about 50 MB, enough that
// a generator wraps around it only every few seconds.
const poolOrders = 1 << 20

func buildCatalog(cfg Config) *catalog {
	c := &catalog{skusOf: make([][]int, cfg.Merchants)}
	for i := 0; i < cfg.SKUs; i++ {
		m := i % cfg.Merchants
		c.skuIDs = append(c.skuIDs, "sku-"+strconv.Itoa(i))
		c.merchantOf = append(c.merchantOf, m)
		c.skusOf[m] = append(c.skusOf[m], i)
		stock := cfg.Stock
		// The flash SKUs are spread over the catalog, not the most popular.
		if i%(cfg.SKUs/cfg.FlashSKUs) == 7 && len(c.flash) < cfg.FlashSKUs {
			c.flash = append(c.flash, i)
			stock = cfg.FlashStock
		}
		c.skuStock = append(c.skuStock, stock)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	zipf := rand.NewZipf(rng, cfg.ZipfS, 1, uint64(cfg.SKUs-1))
	c.popular = make([]uint32, popularSamples)
	for i := range c.popular {
		c.popular[i] = uint32(zipf.Uint64())
	}
	c.drawOrders(cfg, rng)
	return c
}

// drawOrders fills the order pool: an order's first SKU is a flash SKU
// (cfg.FlashShare of orders) or a popular one, and up to two more lines are
// other SKUs of the first one's merchant. The lines' SKU ids are copies
// laid out one after another in pool order, as the ids of a request body
// are when the server decodes a batch: pointing at the catalog's own
// strings instead, spread over the heap, cost the router and the worker a
// cache miss per line that a server's freshly read body does not have.
func (c *catalog) drawOrders(cfg Config, rng *rand.Rand) {
	c.orderItems = make([]engine.Item, 0, poolOrders*2)
	c.orderEnds = make([]uint32, 0, poolOrders+1)
	c.orderEnds = append(c.orderEnds, 0)
	var ids []byte
	idEnds := make([]int, 0, poolOrders*2) // where each line's id ends in ids
	for range poolOrders {
		var first int
		if rng.Float64() < cfg.FlashShare {
			first = c.flash[rng.IntN(len(c.flash))]
		} else {
			first = int(c.popular[rng.Uint64()%popularSamples])
		}
		n := 1 + rng.IntN(3)
		ids = append(ids, c.skuIDs[first]...)
		idEnds = append(idEnds, len(ids))
		c.orderItems = append(c.orderItems, engine.Item{Quantity: 1})
		siblings := c.skusOf[c.merchantOf[first]]
		for j := 1; j < n; j++ {
			ids = append(ids, c.skuIDs[siblings[rng.IntN(len(siblings))]]...)
			idEnds = append(idEnds, len(ids))
			c.orderItems = append(c.orderItems, engine.Item{Quantity: int32(1 + rng.IntN(2))})
		}
		c.orderEnds = append(c.orderEnds, uint32(len(c.orderItems)))
	}
	all := string(ids)
	start := 0
	for i, end := range idEnds {
		c.orderItems[i].SKUID = all[start:end]
		start = end
	}
}

func merchantID(m int) string { return "m-" + strconv.Itoa(m) }

// load creates the catalog through the engine.
func (c *catalog) load(e *engine.Engine, cfg Config) error {
	b := engine.NewBatch(8192)
	flush := func() error {
		if len(b.Requests) == 0 {
			return nil
		}
		e.Submit(b)
		b.Wait()
		for i := range b.Requests {
			if err := b.Requests[i].Result.Err(); err != nil {
				return fmt.Errorf("load catalog: %v: %w", b.Requests[i].Command.Kind, err)
			}
		}
		b.Reset()
		return nil
	}
	brands := (cfg.Merchants + 9) / 10
	for i := 0; i < brands; i++ {
		b.Add(engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b-" + strconv.Itoa(i), Name: "Brand " + strconv.Itoa(i), Country: "CN", FirstFestival: 2015}})
	}
	if err := flush(); err != nil {
		return err
	}
	for m := 0; m < cfg.Merchants; m++ {
		b.Add(engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: merchantID(m), Name: "Shop " + strconv.Itoa(m), BrandID: "b-" + strconv.Itoa(m/10), Kind: engine.MerchantBrandStore, Industry: "apparel", Region: "CN-ZJ"}})
	}
	if err := flush(); err != nil {
		return err
	}
	for i, id := range c.skuIDs {
		m := c.merchantOf[i]
		b.Add(engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: id, MerchantID: merchantID(m), BrandID: "b-" + strconv.Itoa(m/10), Title: "Item " + id, Category: "cat-" + strconv.Itoa(i%50), Price: int64(1000 + i%50000), Stock: c.skuStock[i]}})
		if len(b.Requests) == cap(b.Requests) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// counters are shared by the generators.
type counters struct {
	orders, accepted, outOfStock, paid, cancelled, otherErrors atomic.Uint64
}

// Run runs the benchmark.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dir := cfg.Dir
	if dir != "" {
		// The audit compares each SKU with the stock this run gave it, so
		// the run must start from nothing.
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			return nil, fmt.Errorf("bench needs a new or empty data directory; %s is not empty", dir)
		}
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "fest-bench-")
		if err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var fsyncs atomic.Uint64
	e, err := engine.Open(engine.Config{
		Dir:                dir,
		Partitions:         cfg.Partitions,
		Workers:            cfg.Workers,
		NoSync:             cfg.NoSync,
		SnapshotEveryBytes: cfg.SnapshotEveryBytes,
		// Keep the whole journal so that recovery can also be measured
		// from the journal alone.
		RetainFrom: func() uint64 { return 0 },
		JournalFsync: func(f vfs.File) error {
			fsyncs.Add(1)
			return f.Sync()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	cat := buildCatalog(cfg)
	if err := cat.load(e, cfg); err != nil {
		e.Close()
		return nil, err
	}

	hist := hdrhistogram.New(1, 60_000_000, 3) // microseconds
	// histSnap holds the acknowledgements of batches in flight while a
	// snapshot was written: the cost of snapshots on the hot path.
	histSnap := hdrhistogram.New(1, 60_000_000, 3)
	var histMu sync.Mutex
	snapshotsBefore := e.Stats().Snapshots.Load()
	var cnt counters
	stats := e.Stats()
	bytesBefore := stats.RecordBytes.Load()
	fsyncsBefore := fsyncs.Load()
	runtime.GC()
	var msBefore, msAfter runtime.MemStats
	runtime.ReadMemStats(&msBefore)

	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			e.Close()
			return nil, fmt.Errorf("start the cpu profile: %w", err)
		}
	}
	cpuBefore := cpuTime()
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < cfg.Generators; g++ {
		gen := newGenerator(cfg, cat, uint64(g))
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen.run(runCtx, e, &cnt, hist, histSnap, &histMu)
		}()
	}
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
					cfg.Progress(Progress{Elapsed: time.Since(start), Orders: cnt.orders.Load()})
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpuBefore
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	runtime.ReadMemStats(&msAfter)

	r := &Report{
		Orders:             cnt.orders.Load(),
		OrdersAccepted:     cnt.accepted.Load(),
		RejectedOutOfStock: cnt.outOfStock.Load(),
		Paid:               cnt.paid.Load(),
		Cancelled:          cnt.cancelled.Load(),
		DurationSec:        elapsed.Seconds(),
		Partitions:         e.Partitions(),
		Workers:            e.Workers(),
		BatchSize:          cfg.BatchSize,
		SKUs:               cfg.SKUs,
		Fsyncs:             fsyncs.Load() - fsyncsBefore,
	}
	if cfg.Dir != "" {
		r.Dir = cfg.Dir
	}
	r.OrdersPerSec = float64(r.Orders) / elapsed.Seconds()
	r.CPUCores = cpu.Seconds() / elapsed.Seconds()
	if r.Orders > 0 {
		r.AllocsPerOrder = float64(msAfter.Mallocs-msBefore.Mallocs) / float64(r.Orders)
		r.CPUMicrosPerOrder = float64(cpu.Microseconds()) / float64(r.Orders)
		r.BytesPerOrderJournal = float64(stats.RecordBytes.Load()-bytesBefore) / float64(r.Orders)
	}
	r.P50AckMs = float64(hist.ValueAtQuantile(50)) / 1000
	r.P99AckMs = float64(hist.ValueAtQuantile(99)) / 1000
	r.Snapshots = e.Stats().Snapshots.Load() - snapshotsBefore
	if n := histSnap.TotalCount(); n > 0 {
		r.AcksDuringSnapshot = uint64(n)
		r.P99AckDuringSnapshotMs = float64(histSnap.ValueAtQuantile(99)) / 1000
	}
	if n := cnt.otherErrors.Load(); n > 0 {
		e.Close()
		return r, fmt.Errorf("%d commands failed unexpectedly", n)
	}
	r.Oversold, r.Unconserved, err = cat.audit(e)
	if cerr := e.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close engine: %w", cerr)
	}
	if err == nil && cfg.Recovery {
		err = measureRecovery(dir, r)
	}
	return r, err
}

// audit reads every SKU back and counts those oversold (sold + reserved
// above what was stocked, or negative stock) and those whose available +
// reserved + sold differs from what was stocked.
func (c *catalog) audit(e *engine.Engine) (oversold, unconserved int, err error) {
	b := engine.NewBatch(8192)
	check := func() error {
		e.Submit(b)
		b.Wait()
		for i := range b.Requests {
			r := &b.Requests[i].Result
			if err := r.Err(); err != nil {
				return fmt.Errorf("audit: read sku %s: %w", b.Requests[i].Command.SKUID, err)
			}
			idx, _ := strconv.Atoi(b.Requests[i].Command.SKUID[len("sku-"):])
			stocked := c.skuStock[idx]
			if r.Available < 0 || r.Sold+r.Reserved > stocked {
				oversold++
			}
			if r.Available+r.Reserved+r.Sold != stocked {
				unconserved++
			}
		}
		b.Reset()
		return nil
	}
	for _, id := range c.skuIDs {
		b.Add(engine.Command{Kind: engine.KindGetSKU, SKUID: id})
		if len(b.Requests) == cap(b.Requests) {
			if err := check(); err != nil {
				return 0, 0, err
			}
		}
	}
	if len(b.Requests) > 0 {
		if err := check(); err != nil {
			return 0, 0, err
		}
	}
	return oversold, unconserved, nil
}

// generator builds and submits batches. It keeps its batches, item arrays
// and order-id lists for reuse, so a steady run allocates almost nothing
// per order.
type generator struct {
	cfg   Config
	cat   *catalog
	rng   *rand.Rand
	slots []*slot
	next  int // the next order of the catalog's pool
}

// slot is one batch in flight.
type slot struct {
	b     *engine.Batch
	items []engine.Item
	ids   []engine.OrderID // placed orders of the previous round, with totals
	total []int64
	start time.Time
	// snapshots and snapshotting are the engine's snapshot count and state
	// at submit, to tell acknowledgements during a snapshot.
	snapshots    uint64
	snapshotting bool
}

// batchesInFlight is how many batches a generator keeps submitted at once,
// so that applying and fsyncing overlap.
const batchesInFlight = 4

func newGenerator(cfg Config, cat *catalog, n uint64) *generator {
	rng := rand.New(rand.NewPCG(cfg.Seed, n+1))
	// Each generator starts at its own place in the pool.
	g := &generator{cfg: cfg, cat: cat, rng: rng, next: rng.IntN(poolOrders)}
	for i := 0; i < batchesInFlight; i++ {
		g.slots = append(g.slots, &slot{
			b:     engine.NewBatch(cfg.BatchSize * 2),
			items: make([]engine.Item, cfg.BatchSize*3),
		})
	}
	return g
}

// fill makes the slot's batch: the follow-ups of the orders it placed
// last round, then BatchSize new orders. Each request's command is written
// in place: the router resets the result, so writing whole new requests
// (448 bytes, a third of them the result) only cost the generator's share
// of the two cores more memory traffic.
func (g *generator) fill(s *slot) {
	b := s.b
	reqs := b.Requests[:cap(b.Requests)]
	k := 0
	// Follow-ups of the orders this slot placed last round.
	for i, id := range s.ids {
		u := g.rng.Float64()
		switch {
		case u < g.cfg.PayShare:
			reqs[k].Command = engine.Command{Kind: engine.KindPay, OrderID: id, Amount: s.total[i]}
			k++
		case u < g.cfg.PayShare+g.cfg.CancelShare:
			reqs[k].Command = engine.Command{Kind: engine.KindCancel, OrderID: id}
			k++
		}
	}
	s.ids, s.total = s.ids[:0], s.total[:0]
	items := s.items
	c := g.cat
	for i := 0; i < g.cfg.BatchSize; i++ {
		// A copy, not the pool's own lines: the engine's batch is the
		// caller's to reuse, and the pool is shared by every generator.
		n := copy(items, c.orderItems[c.orderEnds[g.next]:c.orderEnds[g.next+1]])
		line := items[:n:n]
		items = items[n:]
		if g.next++; g.next == poolOrders {
			g.next = 0
		}
		reqs[k].Command = engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "buyer", Channel: "app", Items: line}}
		k++
	}
	b.Requests = reqs[:k]
}

func (g *generator) collect(s *slot, cnt *counters) {
	var orders, accepted, oos, paid, cancelled, other uint64
	for i := range s.b.Requests {
		r := &s.b.Requests[i]
		res := &r.Result
		switch r.Command.Kind {
		case engine.KindPlaceOrder:
			orders++
			switch res.Code {
			case engine.CodeOK:
				accepted++
				s.ids = append(s.ids, res.OrderID)
				s.total = append(s.total, res.Total)
			case engine.CodeOutOfStock:
				oos++
			default:
				other++
			}
		case engine.KindPay:
			if res.Code == engine.CodeOK {
				paid++
			} else {
				other++
			}
		case engine.KindCancel:
			if res.Code == engine.CodeOK {
				cancelled++
			} else {
				other++
			}
		}
	}
	cnt.orders.Add(orders)
	cnt.accepted.Add(accepted)
	cnt.outOfStock.Add(oos)
	cnt.paid.Add(paid)
	cnt.cancelled.Add(cancelled)
	cnt.otherErrors.Add(other)
}

func (g *generator) run(ctx context.Context, e *engine.Engine, cnt *counters, hist, histSnap *hdrhistogram.Histogram, histMu *sync.Mutex) {
	stats := e.Stats()
	submit := func(s *slot) {
		g.fill(s)
		s.start = time.Now()
		s.snapshots, s.snapshotting = stats.Snapshots.Load(), e.Snapshotting()
		e.Submit(s.b)
	}
	for _, s := range g.slots {
		submit(s)
	}
	for i := 0; ; i = (i + 1) % len(g.slots) {
		s := g.slots[i]
		s.b.Wait()
		latency := time.Since(s.start)
		// In flight during a snapshot: one ran at submit or at the ack,
		// or one completed in between.
		during := s.snapshotting || e.Snapshotting() || stats.Snapshots.Load() != s.snapshots
		histMu.Lock()
		hist.RecordValues(latency.Microseconds(), int64(g.cfg.BatchSize))
		if during {
			histSnap.RecordValues(latency.Microseconds(), int64(g.cfg.BatchSize))
		}
		histMu.Unlock()
		g.collect(s, cnt)
		if ctx.Err() != nil {
			// Drain the others still in flight.
			for j := 1; j < len(g.slots); j++ {
				o := g.slots[(i+j)%len(g.slots)]
				o.b.Wait()
				g.collect(o, cnt)
			}
			return
		}
		submit(s)
	}
}

// cpuTime returns the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureRecovery reopens dir twice: from its snapshot, then with the
// snapshots moved aside, replaying the whole journal.
func measureRecovery(dir string, r *Report) error {
	open := func() (time.Duration, error) {
		start := time.Now()
		e, err := engine.Open(engine.Config{Dir: dir, SnapshotEveryBytes: -1, RetainFrom: func() uint64 { return 0 }})
		if err != nil {
			return 0, fmt.Errorf("reopen: %w", err)
		}
		took := time.Since(start)
		// Close without writing a new snapshot would be ideal; closing
		// writes one, which the next measurement moves aside anyway.
		return took, e.Close()
	}
	took, err := open()
	if err != nil {
		return err
	}
	r.RecoverySnapshotMs = float64(took.Microseconds()) / 1000
	snaps := filepath.Join(dir, "snapshots")
	if err := os.Rename(snaps, snaps+".aside"); err != nil {
		return fmt.Errorf("move snapshots aside: %w", err)
	}
	took, err = open()
	if err != nil {
		return err
	}
	r.RecoveryJournalMs = float64(took.Microseconds()) / 1000
	return nil
}
