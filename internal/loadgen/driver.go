package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fest-platform/fest/internal/festival"
	"github.com/fest-platform/fest/wire"
)

// Profiles.
const (
	ProfileFestival = "festival"
	ProfileMidnight = "midnight"
	ProfileFlash    = "flash"
)

// Config is one run of the driver. Start from DefaultConfig.
type Config struct {
	// Profile is festival, midnight or flash.
	Profile string
	// Speed compresses festival time (festival): festival seconds per wall
	// second. Zero replays as fast as the target allows.
	Speed float64
	// Rate is the target rate in orders/s (midnight); zero is --rate max.
	Rate float64
	// Duration bounds the run (midnight: its length; others: a safety cap).
	Duration time.Duration
	// Linger is how long a due order may wait for its batch to fill.
	Linger time.Duration
	// RetriesMax bounds the resubmissions of an order answered 429.
	RetriesMax int
	// PayAfter defers payments and cancellations until the placement window
	// has closed (the midnight profile: the peak is order creation; buyers
	// pay in the minutes after). They then run for at most PayWindow; orders
	// not reached stay pending and expire on the server. Without PayAfter
	// each batch is paid right after it is placed.
	PayAfter bool
	// PayAfterAuto decides PayAfter per target (--pay-after auto): the
	// midnight profile defers payments on a target that pays one order per
	// request, and pays during the run on one that settles in batches
	// (Settler: fest over the batched transports).
	PayAfterAuto bool
	PayWindow    time.Duration
	// BacklogMax bounds the orders held for deferred payment.
	BacklogMax int
	// ScanWindow is how long carriers scan the parcels of the paid orders
	// after the run, on a target that has parcels (Carrier); zero: no
	// carrier phase (carrier.go).
	ScanWindow time.Duration
	// ScanParcelsMax bounds the parcels kept for the carrier phase (the
	// first paid orders); the others are counted, not scanned.
	ScanParcelsMax int
	// Progress, when set, receives a live status line each second
	// (ProgressTTY: rewritten in place with \r).
	Progress    io.Writer
	ProgressTTY bool
	// OnProgress, when set, is called with the run's figures each second
	// and once more with Done when the run ends, instead of the lines to
	// Progress: fest load draws its progress bar from it.
	OnProgress func(Progress)
	// Say, when set, receives phase messages (importing the catalog, auditing).
	Say func(string)
}

// DefaultConfig is the midnight profile at max rate for 30 seconds.
func DefaultConfig() Config {
	return Config{
		Profile:    ProfileMidnight,
		Speed:      20_000,
		Duration:   30 * time.Second,
		Linger:     2 * time.Millisecond,
		RetriesMax: 20,
		PayWindow:  20 * time.Second,
		BacklogMax: 2_000_000,

		ScanWindow:     10 * time.Second,
		ScanParcelsMax: 200_000,
	}
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	switch {
	case c.Profile != ProfileFestival && c.Profile != ProfileMidnight && c.Profile != ProfileFlash:
		return fmt.Errorf("unknown profile %q (want festival, midnight or flash)", c.Profile)
	case c.Speed < 0 || c.Rate < 0:
		return errors.New("speed and rate must not be negative")
	case c.Duration <= 0 || c.Duration > 24*time.Hour:
		return fmt.Errorf("duration %v out of range (0, 24h]", c.Duration)
	case c.Linger < 0 || c.Linger > time.Second:
		return fmt.Errorf("linger %v out of range [0, 1s]", c.Linger)
	case (c.PayAfter || c.PayAfterAuto) && (c.PayWindow <= 0 || c.BacklogMax < 1):
		return errors.New("deferred payments need a positive pay window and backlog")
	case c.RetriesMax < 0 || c.RetriesMax > 1000:
		return fmt.Errorf("retries %d out of range [0, 1000]", c.RetriesMax)
	case c.ScanWindow < 0 || c.ScanWindow > 24*time.Hour:
		return fmt.Errorf("scan window %v out of range [0, 24h]", c.ScanWindow)
	case c.ScanWindow > 0 && (c.ScanParcelsMax < 1 || c.ScanParcelsMax > 100_000_000):
		return fmt.Errorf("scan parcels max %d out of range [1, 100,000,000]", c.ScanParcelsMax)
	}
	return nil
}

// Point is one second of a run, for the plots.
type Point struct {
	T      float64 `json:"t"` // seconds since the start
	Placed int64   `json:"placed"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	Errors int64   `json:"errors"`
}

// Progress is a live sample of a run, for OnProgress.
type Progress struct {
	Target, Profile string
	Elapsed         time.Duration
	// Planned is the run's length (Config.Duration); Orders the orders of
	// the model to place, or -1 when the run is endless (midnight): the
	// run ends at whichever comes first.
	Planned   time.Duration
	Orders    int64
	Placed    int64   // acknowledged placements so far
	PerSecond int64   // placements in the last second
	P99ms     float64 // acknowledgement p99 of the last second
	Errors    int64   // rejected and failed requests so far
	GMV       int64   // fen, orders paid so far
	Done      bool
}

// Latency is acknowledgement latency in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
}

// Audit is the verdict on the target's books.
type Audit struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}

// Result is one run: the JSON object of the contract, and more for
// the text and HTML reports.
type Result struct {
	Target       string           `json:"target"`
	Profile      string           `json:"profile"`
	OrdersPerSec float64          `json:"orders_per_sec"`
	Orders       int64            `json:"orders"`
	Latency      Latency          `json:"latency_ms"`
	Errors       map[string]int64 `json:"errors"`
	Audit        Audit            `json:"audit"`
	// The parcels of a target that has them (Carrier): created (one per
	// paid order), delivered and returned by the end, and the carrier
	// phase's scans per second.
	ParcelsCreated   int64   `json:"parcels_created,omitempty"`
	ParcelsDelivered int64   `json:"parcels_delivered,omitempty"`
	ParcelsReturned  int64   `json:"parcels_returned,omitempty"`
	ScansPerSec      float64 `json:"scans_per_sec,omitempty"`
	// CPU is the CPU per order of the order phase, server and generator.
	CPU *CPU `json:"cpu,omitempty"`
	// Live is the deal orders' figures of a model with deals (live.go).
	Live *LiveResult `json:"live,omitempty"`

	Elapsed  time.Duration     `json:"-"`
	Paid     int64             `json:"-"`
	GMV      int64             `json:"-"` // fen
	Figures  []festival.Figure `json:"-"`
	Series   []Point           `json:"-"`
	Scale    float64           `json:"-"`
	Expected map[string]int64  `json:"-"` // errors that the workload causes on purpose
	Notes    []string          `json:"-"`
	hist     *hdrhistogram.Histogram
}

// latencyMaxUs bounds the histogram: an acknowledgement slower than a minute
// is recorded as a minute.
const latencyMaxUs = 60_000_000

// run is the state of one run shared by its workers.
type run struct {
	cfg    Config
	m      *festival.Model
	target Target
	ledger *Ledger
	sched  *schedule
	start  time.Time

	placed  atomic.Int64
	gmv     atomic.Int64 // fen, paid so far: the live figure (the tallies are the audited one)
	backlog atomic.Int64 // orders held for deferred payment
	carrier Carrier      // nil: the target has no parcels
	parcels parcelKeeper // paid orders kept for the carrier phase
	skipped atomic.Int64 // orders left pending: backlog full or pay window over
	live    liveStats    // deal orders' latencies (live.go), under mu

	mu struct {
		sync.Mutex
		hist     *hdrhistogram.Histogram // whole run
		second   *hdrhistogram.Histogram // since the last progress tick
		errors   map[string]int64
		expected map[string]int64
		problems map[string]int64 // kind → count; first example kept in examples
		examples map[string]string
		tallies  []*festival.Tally
		errSec   int64
	}
}

// Run drives target with the model's orders as cfg says, audits, and
// returns the result. The target must be prepared (Prepare) already.
func Run(ctx context.Context, cfg Config, m *festival.Model, target Target) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	var notes []string
	if cfg.PayAfterAuto {
		_, batched := settles(target)
		cfg.PayAfter = cfg.Profile == ProfileMidnight && !batched
		if cfg.Profile == ProfileMidnight && batched {
			notes = append(notes, "payments and cancellations during the run, each placed batch settled in one batch request")
		}
	}
	r := &run{cfg: cfg, m: m, target: target, ledger: newLedger(m)}
	if c, ok := target.(Carrier); ok && cfg.ScanWindow > 0 {
		r.carrier = c
		r.parcels.max = cfg.ScanParcelsMax
	}
	r.mu.hist = hdrhistogram.New(1, latencyMaxUs, 3)
	r.mu.second = hdrhistogram.New(1, latencyMaxUs, 3)
	r.mu.errors = map[string]int64{}
	r.mu.expected = map[string]int64{}
	r.mu.problems = map[string]int64{}
	r.mu.examples = map[string]string{}
	r.startLive(ctx)

	batch, inFlight := target.Shape()
	cpu := startCPU(ctx, target)
	r.start = time.Now()
	r.sched = newSchedule(cfg, m, r.start, batch)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	series := make(chan []Point, 1)
	go r.progress(runCtx, series)

	var wg sync.WaitGroup
	pending := make([]*deferred, inFlight)
	for w := range inFlight {
		pending[w] = &deferred{tally: m.NewTally()}
		wg.Go(func() { r.worker(runCtx, w, batch, pending[w]) })
	}
	wg.Wait()
	elapsed := time.Since(r.start)
	cpuPerOrder := cpu.stop(ctx, r.placed.Load())
	cancel()
	points := <-series
	var payNote string
	if cfg.PayAfter {
		payNote = r.payDeferred(ctx, pending, batch)
	}
	for _, d := range pending {
		r.mu.tallies = append(r.mu.tallies, d.tally)
	}
	var carried *carrierResult
	if r.carrier != nil && len(r.parcels.ids) > 0 && ctx.Err() == nil {
		cr := r.scanParcels(ctx, r.carrier)
		carried = &cr
	}

	tally := m.NewTally()
	for _, t := range r.mu.tallies {
		tally.Merge(t)
	}
	r.ledger.Tally = tally
	res := &Result{
		Target:   target.Name(),
		Profile:  cfg.Profile,
		Orders:   r.placed.Load(),
		Elapsed:  elapsed,
		Errors:   r.mu.errors,
		Expected: r.mu.expected,
		Paid:     tally.PaidOrders,
		GMV:      tally.GMV,
		Series:   points,
		Scale:    m.Config.Scale,
		CPU:      cpuPerOrder,
		hist:     r.mu.hist,
	}
	res.OrdersPerSec = float64(res.Orders) / elapsed.Seconds()
	res.Latency = Latency{
		P50:  float64(r.mu.hist.ValueAtQuantile(50)) / 1000,
		P99:  float64(r.mu.hist.ValueAtQuantile(99)) / 1000,
		P999: float64(r.mu.hist.ValueAtQuantile(99.9)) / 1000,
	}
	if cfg.Profile == ProfileFestival {
		res.Figures = m.Figures(tally)
	}
	res.Notes = append(res.Notes, notes...)
	if rs, ok := target.(rehearsalSettler); ok && rs.rehearsal() && r.mu.errors["pay_"+wire.CodeInvalidState] > 0 {
		res.Notes = append(res.Notes, "payments found their orders expired: on the rehearsal clock the server's --payment-timeout is festival time, and a batch's round trip is minutes to hours of it (fest serve --rehearsal-clock takes 720h unless given one)")
	}
	if payNote != "" {
		res.Notes = append(res.Notes, payNote)
	}
	if carried != nil {
		res.ScansPerSec = float64(carried.scans) / max(carried.elapsed.Seconds(), 1e-9)
		res.Notes = append(res.Notes, carrierNote(*carried, int64(len(r.parcels.ids)), r.parcels.seen.Load()))
	}
	res.Live = r.liveResult(ctx)
	if ctx.Err() != nil {
		return res, fmt.Errorf("run: %w", ctx.Err())
	}

	// The audit.
	if cfg.Say != nil {
		cfg.Say("auditing " + target.Name())
	}
	problems, err := target.Audit(ctx, m, r.ledger)
	if err != nil {
		problems = append(problems, "audit: "+err.Error())
	}
	if br, ok := target.(BoardReader); ok && cfg.Profile == ProfileFestival {
		// The server's own figures, beside the generator's: read after the
		// audit, which waits for the board to count the last payments.
		board, err := br.Board(ctx)
		if err != nil {
			problems = append(problems, "board: "+err.Error())
		} else {
			res.Figures = m.FiguresWithBoard(tally, board)
		}
	}
	kinds := make([]string, 0, len(r.mu.problems))
	for k := range r.mu.problems {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		problems = append(problems, fmt.Sprintf("%s: %d (e.g. %s)", k, r.mu.problems[k], r.mu.examples[k]))
	}
	if cfg.Profile == ProfileFlash {
		problems = append(problems, flashProblems(m, r.ledger)...)
	}
	if c, ok := target.(Carrier); ok {
		ps, err := c.ParcelStats(ctx)
		if err != nil {
			problems = append(problems, "parcels: "+err.Error())
		}
		res.ParcelsCreated, res.ParcelsDelivered, res.ParcelsReturned = ps.Parcels, ps.Delivered, ps.Returned
	}
	if problems == nil {
		problems = []string{}
	}
	res.Audit = Audit{OK: len(problems) == 0, Problems: problems}
	return res, nil
}

// flashProblems: a flash sale must sell its whole stock (demand exceeds it)
// and not one unit more.
func flashProblems(m *festival.Model, l *Ledger) []string {
	var out []string
	for _, s := range m.FlashSKUs() {
		sold := l.SKUs[s].Sold.Load() + l.SKUs[s].Reserved.Load()
		stock := m.SKUs[s].Stock
		demand := int64(len(m.Orders))
		if want := min(stock, demand); sold != want && !l.Uncertain.Load() {
			out = append(out, fmt.Sprintf("flash sku %s: %d units acknowledged, want %d (stock %d, demand %d)", m.SKUs[s].ID, sold, want, stock, demand))
		}
	}
	return out
}

func (r *run) problem(kind, example string) {
	r.mu.Lock()
	r.mu.problems[kind]++
	if _, ok := r.mu.examples[kind]; !ok {
		r.mu.examples[kind] = example
	}
	r.mu.Unlock()
}

// worker claims due orders, places them, then pays or cancels them as their
// fate says, until the schedule ends.
func (r *run) worker(ctx context.Context, w, batch int, d *deferred) {
	var stream *festival.Stream
	if r.cfg.Profile == ProfileMidnight {
		stream = r.m.NewStream(uint64(w) + 1)
	}
	tally := d.tally
	buf := make([]festival.Order, batch)
	orders := make([]*festival.Order, 0, batch)
	due := make([]time.Time, 0, batch)
	out := make([]Outcome, batch)
	want := make([]int64, 0, batch) // the model's total of each order
	retry := make([]*festival.Order, 0, batch)
	retryDue := make([]time.Time, 0, batch)
	errs := map[string]int64{}
	expected := map[string]int64{}
	// The batch's placed orders, reused from batch to batch.
	placedIDs := make([]string, 0, batch)
	placedTotals := make([]int64, 0, batch)
	placedOrders := make([]*festival.Order, 0, batch)
	var fb fateBufs
	for ctx.Err() == nil {
		first, n, base := r.sched.claim(ctx, batch)
		if n == 0 {
			return
		}
		orders, due = orders[:0], due[:0]
		if stream != nil {
			stream.Fill(buf[:n])
		}
		for i := range n {
			o := &buf[i]
			if stream == nil {
				o = &r.m.Orders[first+int64(i)]
			}
			orders = append(orders, o)
			if base.IsZero() {
				due = append(due, r.sched.due(first+int64(i)))
			} else {
				due = append(due, base)
			}
		}
		clear(errs)
		clear(expected)
		placedIDs, placedTotals, placedOrders = placedIDs[:0], placedTotals[:0], placedOrders[:0]
		for attempt := 0; len(orders) > 0; attempt++ {
			out = out[:len(orders)]
			clear(out)
			// The totals the answers must carry, in a pass of their own
			// before the request: its reads (each line's price) overlap,
			// and leave the lines' ids in the cache for the request's
			// encoding (festival keeps a SKU's price and id side by side).
			want = want[:0]
			for _, o := range orders {
				want = append(want, r.m.Total(o))
			}
			r.target.Place(ctx, r.m, orders, out)
			now := time.Now()
			retry, retryDue = retry[:0], retryDue[:0]
			var oks int64
			placedBefore := len(placedOrders)
			var lat latencyRun
			for i, o := range orders {
				oc := &out[i]
				switch {
				case oc.Code == "":
					if msg := checkPlaced(oc, want[i]); msg != "" {
						r.problem("bad placement answer", msg)
					}
					oks++
					placedIDs = append(placedIDs, oc.ID)
					placedTotals = append(placedTotals, oc.Total)
					placedOrders = append(placedOrders, o)
					lat.add(r, now.Sub(due[i]))
					if o.Deal != 0 {
						r.recordDeal(now.Sub(due[i]), true)
					}
				case oc.Code == CodeOverloaded && attempt < r.cfg.RetriesMax:
					errs[oc.Code]++
					retry = append(retry, o)
					retryDue = append(retryDue, due[i])
				case (oc.Code == CodeOutOfStock || oc.Code == CodeLimitExceeded && o.Deal != 0) && o.Flash:
					errs[oc.Code]++
					expected[oc.Code]++
					if o.Deal != 0 {
						r.recordDeal(now.Sub(due[i]), false)
					}
					for _, it := range o.Lines() {
						r.ledger.SKUs[it.SKU].touch()
					}
				default:
					errs[oc.Code]++
					if oc.Code == CodeTransport {
						r.ledger.Uncertain.Store(true)
					}
					for _, it := range o.Lines() {
						r.ledger.SKUs[it.SKU].touch()
					}
					r.problem("order rejected: "+oc.Code, oc.Detail)
				}
			}
			lat.flush(r)
			if r.cfg.PayAfter {
				// Paid or cancelled after the window: booked as
				// reserved now, moved when their fate comes.
				r.ledger.reserve(placedOrders[placedBefore:])
			}
			tally.PlacedAll(placedOrders[placedBefore:])
			r.placed.Add(oks)
			orders = append(orders[:0], retry...)
			due = append(due[:0], retryDue...)
			if len(orders) > 0 {
				// Admission control said come back later: back off a little,
				// growing, so the retry does not feed the overload.
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(attempt+1) * time.Millisecond):
				}
			}
		}
		if r.cfg.PayAfter {
			r.defer_(d, placedOrders, placedIDs, placedTotals)
		} else {
			r.fates(ctx, tally, placedOrders, placedIDs, placedTotals, false, errs, &fb)
		}
		r.mu.Lock()
		for k, v := range errs {
			r.mu.errors[k] += v
			r.mu.errSec += v
		}
		for k, v := range expected {
			r.mu.expected[k] += v
		}
		r.mu.Unlock()
	}
}

// deferred is a worker's placed orders waiting for their fate, and its tally.
type deferred struct {
	tally  *festival.Tally
	orders []festival.Order // copies: a stream's orders live in a reused buffer
	ids    []string
	totals []int64
}

// defer_ holds the placed orders that will be paid or cancelled for the
// pay phase; past BacklogMax they are left pending.
func (r *run) defer_(d *deferred, orders []*festival.Order, ids []string, totals []int64) {
	for i, o := range orders {
		if o.Fate == festival.FateLeave {
			continue
		}
		if r.backlog.Add(1) > int64(r.cfg.BacklogMax) {
			r.backlog.Add(-1)
			r.skipped.Add(1)
			continue
		}
		d.orders = append(d.orders, *o)
		d.ids = append(d.ids, ids[i])
		d.totals = append(d.totals, totals[i])
	}
}

// payDeferred runs the pay phase: each worker's backlog, in batches, for at
// most PayWindow. It returns a note for the report.
func (r *run) payDeferred(ctx context.Context, pending []*deferred, batch int) string {
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PayWindow)
	defer cancel()
	if r.cfg.Say != nil {
		r.cfg.Say(fmt.Sprintf("paying and cancelling %s orders placed in the window (at most %v)", group(r.backlog.Load()), r.cfg.PayWindow))
	}
	chunk := max(batch, 100) // baselines place one at a time; pay in runs of 100 per client
	var done atomic.Int64
	var wg sync.WaitGroup
	for _, d := range pending {
		wg.Go(func() {
			errs := map[string]int64{}
			ptrs := make([]*festival.Order, 0, chunk)
			var fb fateBufs
			for lo := 0; lo < len(d.orders); lo += chunk {
				if pctx.Err() != nil {
					r.skipped.Add(int64(len(d.orders) - lo))
					break
				}
				hi := min(len(d.orders), lo+chunk)
				ptrs = ptrs[:0]
				for i := lo; i < hi; i++ {
					ptrs = append(ptrs, &d.orders[i])
				}
				// ctx, not pctx: a call under way finishes, so its outcome is known.
				r.fates(ctx, d.tally, ptrs, d.ids[lo:hi], d.totals[lo:hi], true, errs, &fb)
				done.Add(int64(hi - lo))
			}
			r.mu.Lock()
			for k, v := range errs {
				r.mu.errors[k] += v
			}
			r.mu.Unlock()
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return fmt.Sprintf("payments deferred past the peak window: %s paid or cancelled in %.1fs (%s/s); %s left pending (they expire)",
		group(done.Load()), secs, group(int64(float64(done.Load())/max(secs, 1e-9))), group(r.skipped.Load()))
}

// fateBufs are a goroutine's buffers for fates, reused from batch to
// batch so that settling one allocates nothing per order.
type fateBufs struct {
	payIdx, cancelIdx []int
	ats               []int64 // the rehearsal clock's festival times, or unused
	// The actions: the payments, then the cancellations.
	ids        []string
	totals     []int64
	cancel     []bool
	out        []Outcome
	paidIDs    []string          // the payments that succeeded
	paidOrders []*festival.Order // and their orders
	paidTotals []int64           // and totals
	// The orders left pending (not to be paid or cancelled, or refused
	// it) and those cancelled, for the ledger.
	pendingOrders, cancelledOrders []*festival.Order
}

// fates pays and cancels the placed orders as their fate says: with one
// Settle call on a target that settles in batches, else with a Pay and a
// Cancel call. reserved says whether the orders are booked in the ledger
// as reserved already (the deferred payments); otherwise fates books each
// order once, as what it ended: pending (reserved), paid (sold) or
// cancelled (neither). A paid order then costs the ledger one atomic add a
// line, not three (reserve, then unreserve and sell).
func (r *run) fates(ctx context.Context, tally *festival.Tally, orders []*festival.Order, ids []string, totals []int64, reserved bool, errs map[string]int64, fb *fateBufs) {
	fb.payIdx, fb.cancelIdx = fb.payIdx[:0], fb.cancelIdx[:0]
	for i, o := range orders {
		switch o.Fate {
		case festival.FatePay:
			fb.payIdx = append(fb.payIdx, i)
		case festival.FateCancel:
			fb.cancelIdx = append(fb.cancelIdx, i)
		}
	}
	payIdx, cancelIdx := fb.payIdx, fb.cancelIdx
	np, n := len(payIdx), len(payIdx)+len(cancelIdx)
	if n == 0 {
		if !reserved {
			r.ledger.reserve(orders)
		}
		return
	}
	fb.ids, fb.totals, fb.cancel = fb.ids[:0], fb.totals[:0], fb.cancel[:0]
	for _, i := range payIdx {
		fb.ids, fb.totals, fb.cancel = append(fb.ids, ids[i]), append(fb.totals, totals[i]), append(fb.cancel, false)
	}
	for _, i := range cancelIdx {
		fb.ids, fb.totals, fb.cancel = append(fb.ids, ids[i]), append(fb.totals, 0), append(fb.cancel, true)
	}
	fb.out = slices.Grow(fb.out[:0], n)[:n]
	clear(fb.out)
	if st, ok := settles(r.target); ok {
		var ats []int64
		if rs, ok := st.(rehearsalSettler); ok && rs.rehearsal() {
			// Each action at its order's festival time, in fb.ids' order.
			fb.ats = fb.ats[:0]
			for _, i := range payIdx {
				fb.ats = append(fb.ats, festivalTime(orders[i]))
			}
			for _, i := range cancelIdx {
				fb.ats = append(fb.ats, festivalTime(orders[i]))
			}
			ats = fb.ats
		}
		r.settle(ctx, st, fb.ids, fb.totals, fb.cancel, ats, fb.out, errs)
	} else {
		if np > 0 {
			r.target.Pay(ctx, fb.ids[:np], fb.totals[:np], fb.out[:np])
		}
		if n > np {
			r.target.Cancel(ctx, fb.ids[np:], fb.out[np:])
		}
	}
	payOut, cancelOut := fb.out[:np], fb.out[np:]
	fb.paidIDs, fb.paidOrders, fb.paidTotals = fb.paidIDs[:0], fb.paidOrders[:0], fb.paidTotals[:0]
	fb.pendingOrders, fb.cancelledOrders = fb.pendingOrders[:0], fb.cancelledOrders[:0]
	if !reserved {
		for _, o := range orders {
			if o.Fate != festival.FatePay && o.Fate != festival.FateCancel {
				fb.pendingOrders = append(fb.pendingOrders, o)
			}
		}
	}
	var gmv int64
	for j, i := range payIdx {
		o := orders[i]
		if c := payOut[j].Code; c != "" {
			errs["pay_"+c]++
			if c == CodeTransport {
				r.ledger.Uncertain.Store(true)
			}
			r.problem("payment rejected: "+c, payOut[j].Detail)
			fb.pendingOrders = append(fb.pendingOrders, o)
			continue
		}
		fb.paidIDs = append(fb.paidIDs, ids[i])
		fb.paidOrders = append(fb.paidOrders, o)
		fb.paidTotals = append(fb.paidTotals, totals[i])
		gmv += totals[i]
	}
	for j, i := range cancelIdx {
		if c := cancelOut[j].Code; c != "" {
			errs["cancel_"+c]++
			if c == CodeTransport {
				r.ledger.Uncertain.Store(true)
			}
			r.problem("cancellation rejected: "+c, cancelOut[j].Detail)
			fb.pendingOrders = append(fb.pendingOrders, orders[i])
			continue
		}
		fb.cancelledOrders = append(fb.cancelledOrders, orders[i])
	}
	tally.PaidAll(r.m, fb.paidOrders, fb.paidTotals)
	// The atomic adds after the tally's passes, not among them: see
	// Ledger.reserve.
	if reserved {
		r.ledger.sell(fb.paidOrders)
		r.ledger.unreserve(fb.cancelledOrders)
	} else {
		r.ledger.book(fb.pendingOrders, fb.paidOrders, fb.cancelledOrders)
	}
	if r.carrier != nil {
		r.parcels.keep(fb.paidIDs)
	}
	r.gmv.Add(gmv)
}

// settle runs one Settle call and resubmits the actions answered 429
// (admission control) up to RetriesMax times, backing off as placement does.
// ats, when not nil, are the actions' festival times (the rehearsal clock).
func (r *run) settle(ctx context.Context, st Settler, ids []string, totals []int64, cancel []bool, ats []int64, out []Outcome, errs map[string]int64) {
	call := func(ids []string, totals []int64, cancel []bool, ats []int64, out []Outcome) {
		if ats != nil {
			st.(rehearsalSettler).settleAt(ctx, ids, totals, cancel, ats, out)
			return
		}
		st.Settle(ctx, ids, totals, cancel, out)
	}
	call(ids, totals, cancel, ats, out)
	var idx []int
	for attempt := 0; attempt < r.cfg.RetriesMax && ctx.Err() == nil; attempt++ {
		idx = idx[:0]
		for i := range out {
			if out[i].Code == CodeOverloaded {
				idx = append(idx, i)
				if cancel[i] {
					errs["cancel_"+CodeOverloaded]++
				} else {
					errs["pay_"+CodeOverloaded]++
				}
			}
		}
		if len(idx) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt+1) * time.Millisecond):
		}
		rids, rtot, rcan := make([]string, len(idx)), make([]int64, len(idx)), make([]bool, len(idx))
		var rats []int64
		if ats != nil {
			rats = make([]int64, len(idx))
		}
		for k, i := range idx {
			rids[k], rtot[k], rcan[k] = ids[i], totals[i], cancel[i]
			if ats != nil {
				rats[k] = ats[i]
			}
		}
		rout := make([]Outcome, len(idx))
		call(rids, rtot, rcan, rats, rout)
		for k, i := range idx {
			out[i] = rout[k]
		}
	}
}

// checkPlaced checks a successful placement's answer against the model's
// total of the order, want.
func checkPlaced(oc *Outcome, want int64) string {
	if oc.ID == "" {
		return "no order id"
	}
	if oc.Total != want {
		return fmt.Sprintf("order %s total %d, want %d", oc.ID, oc.Total, want)
	}
	return ""
}

// latencyUs is d as the histograms record it: whole microseconds, from 1
// to latencyMaxUs.
func latencyUs(d time.Duration) int64 { return max(1, min(d.Microseconds(), latencyMaxUs)) }

// recordLatencies records n acknowledgements of us microseconds each.
func (r *run) recordLatencies(us, n int64) {
	r.mu.Lock()
	_ = r.mu.hist.RecordValues(us, n)
	_ = r.mu.second.RecordValues(us, n)
	r.mu.Unlock()
}

// latencyRun gathers a batch's latencies into runs of equal ones, so that
// an unpaced batch, whose orders all share their due time, takes the run's
// lock once rather than once per order.
type latencyRun struct{ us, n int64 }

func (l *latencyRun) add(r *run, d time.Duration) {
	us := latencyUs(d)
	if us != l.us {
		l.flush(r)
		l.us = us
	}
	l.n++
}

func (l *latencyRun) flush(r *run) {
	if l.n > 0 {
		r.recordLatencies(l.us, l.n)
	}
	l.n = 0
}

// progress samples the run each second for the plots and the live line.
func (r *run) progress(ctx context.Context, out chan<- []Point) {
	var points []Point
	defer func() { out <- points }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			if r.cfg.OnProgress != nil {
				r.cfg.OnProgress(r.sample(time.Now(), 0, 0, true))
			} else if r.cfg.Progress != nil && r.cfg.ProgressTTY {
				fmt.Fprint(r.cfg.Progress, "\r\033[K")
			}
			return
		case now := <-tick.C:
			placed := r.placed.Load()
			r.mu.Lock()
			p := Point{
				T:      now.Sub(r.start).Seconds(),
				Placed: placed - last,
				P50ms:  float64(r.mu.second.ValueAtQuantile(50)) / 1000,
				P99ms:  float64(r.mu.second.ValueAtQuantile(99)) / 1000,
				Errors: r.mu.errSec,
			}
			r.mu.second.Reset()
			r.mu.errSec = 0
			var errTotal int64
			for _, v := range r.mu.errors {
				errTotal += v
			}
			r.mu.Unlock()
			last = placed
			points = append(points, p)
			if r.cfg.OnProgress != nil {
				r.cfg.OnProgress(r.sample(now, p.Placed, p.P99ms, false))
			} else if r.cfg.Progress != nil {
				line := fmt.Sprintf("%s %s %5.0fs  placed %s  %s/s  p99 %.1f ms  errors %s",
					r.target.Name(), r.cfg.Profile, p.T, group(placed), group(p.Placed), p.P99ms, group(errTotal))
				if r.cfg.ProgressTTY {
					fmt.Fprint(r.cfg.Progress, "\r\033[K"+line)
				} else if len(points)%10 == 0 {
					fmt.Fprintln(r.cfg.Progress, line)
				}
			}
		}
	}
}

// sample gathers the figures of OnProgress.
func (r *run) sample(now time.Time, perSecond int64, p99ms float64, done bool) Progress {
	r.mu.Lock()
	var errTotal int64
	for _, v := range r.mu.errors {
		errTotal += v
	}
	r.mu.Unlock()
	orders := r.sched.n
	return Progress{
		Target: r.target.Name(), Profile: r.cfg.Profile, Elapsed: now.Sub(r.start), Planned: r.cfg.Duration, Orders: orders,
		Placed: r.placed.Load(), PerSecond: perSecond, P99ms: p99ms, Errors: errTotal, GMV: r.gmv.Load(), Done: done,
	}
}

// schedule hands out orders to workers when they are due.
type schedule struct {
	mu       sync.Mutex
	next     int64 // REQUIRES mu
	n        int64 // orders in all; -1: endless (midnight)
	start    time.Time
	deadline time.Time
	unpaced  bool
	rate     float64
	speed    float64
	linger   time.Duration
	m        *festival.Model
}

func newSchedule(cfg Config, m *festival.Model, start time.Time, batch int) *schedule {
	s := &schedule{start: start, deadline: start.Add(cfg.Duration), linger: cfg.Linger, m: m, n: int64(len(m.Orders))}
	switch cfg.Profile {
	case ProfileMidnight:
		s.n = -1
		s.rate = cfg.Rate
		s.unpaced = cfg.Rate == 0
	case ProfileFestival:
		s.speed = cfg.Speed
		s.unpaced = cfg.Speed == 0
	case ProfileFlash:
		s.unpaced = true // everyone at once
	}
	_ = batch
	return s
}

// due is when order i is due.
func (s *schedule) due(i int64) time.Time {
	if s.rate > 0 {
		return s.start.Add(time.Duration(float64(i) / s.rate * float64(time.Second)))
	}
	if s.speed > 0 {
		return s.start.Add(time.Duration(float64(s.m.Orders[i].AtMs) / s.speed * float64(time.Millisecond)))
	}
	return s.start
}

// claim returns the next orders to send, [first, first+n): as many as are
// due, up to batchMax, once batchMax are due or the oldest has lingered long enough.
// base is the latency origin when the schedule is unpaced (the claim time);
// zero otherwise (each order's due time). n == 0 means the run is over.
func (s *schedule) claim(ctx context.Context, batchMax int) (first int64, n int, base time.Time) {
	for {
		now := time.Now()
		if ctx.Err() != nil || now.After(s.deadline) {
			return 0, 0, time.Time{}
		}
		s.mu.Lock()
		if s.n >= 0 && s.next >= s.n {
			s.mu.Unlock()
			return 0, 0, time.Time{}
		}
		limit := int64(batchMax)
		if s.n >= 0 {
			limit = min(limit, s.n-s.next)
		}
		if s.unpaced {
			first = s.next
			s.next += limit
			s.mu.Unlock()
			return first, int(limit), now
		}
		var k int64
		for k < limit && !s.due(s.next+k).After(now) {
			k++
		}
		var wait time.Duration
		switch {
		case k == 0:
			wait = s.due(s.next).Sub(now)
		case k == limit || now.Sub(s.due(s.next)) >= s.linger:
			first = s.next
			s.next += k
			s.mu.Unlock()
			return first, int(k), time.Time{}
		default:
			wait = s.linger - now.Sub(s.due(s.next))
		}
		s.mu.Unlock()
		wait = min(max(wait, 50*time.Microsecond), 100*time.Millisecond)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// group formats n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := false
	if n < 0 {
		neg, s = true, s[1:]
	}
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	if neg {
		return "-" + string(b)
	}
	return string(b)
}
