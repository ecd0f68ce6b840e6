package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/baseline"
	"github.com/fest-platform/fest/internal/festival"
)

// memTarget is an in-memory stand-in for a server, for the driver's own
// logic only (the real acceptance runs against fest serve). Its bugs, when
// switched on, are what the audit must catch.
type memTarget struct {
	mu       sync.Mutex
	m        *festival.Model
	avail    []int64
	reserved []int64
	sold     []int64
	orders   map[string]*memOrder
	gmv      int64
	seq      int
	pays     int

	oversell bool // ignore stock
	loseGMV  bool // drop every 10th payment from the GMV
}

type memOrder struct {
	o      *festival.Order
	total  int64
	status string
}

func (t *memTarget) Name() string      { return "mem" }
func (t *memTarget) Shape() (int, int) { return 100, 4 }
func (t *memTarget) Close() error      { return nil }

func (t *memTarget) Prepare(_ context.Context, m *festival.Model, _ func(string)) error {
	t.m = m
	t.avail = make([]int64, len(m.SKUs))
	t.reserved = make([]int64, len(m.SKUs))
	t.sold = make([]int64, len(m.SKUs))
	for i := range m.SKUs {
		t.avail[i] = m.SKUs[i].Stock
	}
	t.orders = map[string]*memOrder{}
	return nil
}

func (t *memTarget) Place(_ context.Context, m *festival.Model, orders []*festival.Order, out []Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, o := range orders {
		ok := true
		for _, it := range o.Lines() {
			ok = ok && (t.oversell || t.avail[it.SKU] >= int64(it.Qty))
		}
		if !ok {
			out[i] = Outcome{Code: CodeOutOfStock}
			continue
		}
		for _, it := range o.Lines() {
			t.avail[it.SKU] -= int64(it.Qty)
			t.reserved[it.SKU] += int64(it.Qty)
		}
		t.seq++
		id := "o" + strconv.Itoa(t.seq)
		oc := *o // the driver reuses its order buffers
		t.orders[id] = &memOrder{o: &oc, total: m.Total(o), status: "pending"}
		out[i] = Outcome{ID: id, Total: m.Total(o)}
	}
}

func (t *memTarget) Pay(_ context.Context, ids []string, totals []int64, out []Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, id := range ids {
		o := t.orders[id]
		if o == nil || o.status != "pending" || o.total != totals[i] {
			out[i] = Outcome{Code: "invalid_state"}
			continue
		}
		o.status = "paid"
		for _, it := range o.o.Lines() {
			t.reserved[it.SKU] -= int64(it.Qty)
			t.sold[it.SKU] += int64(it.Qty)
		}
		t.pays++
		if !(t.loseGMV && t.pays%10 == 0) {
			t.gmv += o.total
		}
	}
}

func (t *memTarget) Cancel(_ context.Context, ids []string, out []Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, id := range ids {
		o := t.orders[id]
		if o == nil || o.status != "pending" {
			out[i] = Outcome{Code: "invalid_state"}
			continue
		}
		o.status = "cancelled"
		for _, it := range o.o.Lines() {
			t.reserved[it.SKU] -= int64(it.Qty)
			t.avail[it.SKU] += int64(it.Qty)
		}
	}
}

// Audit checks as the HTTP target does: conservation, exact reserved and
// sold, and GMV.
func (t *memTarget) Audit(_ context.Context, m *festival.Model, l *Ledger) ([]string, error) {
	var p []string
	for i := range m.SKUs {
		if t.avail[i] < 0 {
			p = append(p, fmt.Sprintf("sku %s: available %d", m.SKUs[i].ID, t.avail[i]))
		}
		if t.sold[i] != l.SKUs[i].Sold.Load() || t.reserved[i] != l.SKUs[i].Reserved.Load() {
			p = append(p, fmt.Sprintf("sku %s: books differ", m.SKUs[i].ID))
		}
		if len(p) > 10 {
			break
		}
	}
	if t.gmv != l.Tally.GMV {
		p = append(p, fmt.Sprintf("gmv %d, driver %d", t.gmv, l.Tally.GMV))
	}
	return p, nil
}

var (
	modelOnce sync.Once
	model     *festival.Model
	modelErr  error
)

// festivalModel is the calibrated festival at the smallest scale, built once.
func festivalModel(t *testing.T) *festival.Model {
	t.Helper()
	modelOnce.Do(func() { model, modelErr = BuildModel(ProfileFestival, 7, festival.MinScale) })
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return model
}

func quietConfig(profile string) Config {
	c := DefaultConfig()
	c.Profile = profile
	c.Speed = 0
	c.Duration = time.Minute
	return c
}

// TestFestivalAgainstMemory replays the whole festival: the audit passes
// and every published figure holds.
func TestFestivalAgainstMemory(t *testing.T) {
	m := festivalModel(t)
	tgt := &memTarget{}
	res, err := RunTarget(context.Background(), quietConfig(ProfileFestival), m, tgt)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Audit.OK {
		t.Fatalf("audit failed: %v", res.Audit.Problems)
	}
	if want := int64(len(m.Orders)) - res.Errors[CodeOutOfStock]; res.Orders != want {
		t.Errorf("placed %d orders, want %d", res.Orders, want)
	}
	if res.Errors[CodeOutOfStock] == 0 || res.Expected[CodeOutOfStock] != res.Errors[CodeOutOfStock] {
		t.Errorf("flash sales: %d out_of_stock, %d expected: want some, all expected", res.Errors[CodeOutOfStock], res.Expected[CodeOutOfStock])
	}
	if ok, bad := festival.FiguresOK(res.Figures); !ok {
		t.Errorf("figures missed: %v", bad)
	}
	var text bytes.Buffer
	if err := WriteText(&text, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GMV (CNY)", "audit: ok", "foreign GMV by country"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// TestAuditCatchesBugs: an oversold SKU or a lost payment fails the audit.
func TestAuditCatchesBugs(t *testing.T) {
	m, err := festival.NewFlash(3, 500, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, bug := range []string{"oversell", "lose-gmv"} {
		t.Run(bug, func(t *testing.T) {
			tgt := &memTarget{oversell: bug == "oversell", loseGMV: bug == "lose-gmv"}
			res, err := RunTarget(context.Background(), quietConfig(ProfileFlash), m, tgt)
			if err != nil {
				t.Fatal(err)
			}
			if res.Audit.OK {
				t.Fatalf("audit passed a target that has bug %s", bug)
			}
		})
	}
	res, err := RunTarget(context.Background(), quietConfig(ProfileFlash), m, &memTarget{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Audit.OK || res.Orders != 50 || res.Errors[CodeOutOfStock] != 450 {
		t.Fatalf("flash: audit %v, %d placed, %d out of stock; want ok, 50, 450", res.Audit, res.Orders, res.Errors[CodeOutOfStock])
	}
}

// TestPacedRate: at a target rate the driver sends about rate × duration.
func TestPacedRate(t *testing.T) {
	m := festivalModel(t)
	c := quietConfig(ProfileMidnight)
	c.Rate = 5000
	c.Duration = time.Second
	c.PayAfter = true
	res, err := RunTarget(context.Background(), c, m, &memTarget{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Orders < 4000 || res.Orders > 5200 {
		t.Fatalf("rate 5000/s for 1s placed %d orders", res.Orders)
	}
	if !res.Audit.OK {
		t.Fatalf("audit: %v", res.Audit.Problems)
	}
}

// TestJSONShape: the last line carries exactly the contract's keys.
func TestJSONShape(t *testing.T) {
	r := &Result{Target: "fest", Profile: "midnight", Orders: 10, Audit: Audit{OK: true, Problems: []string{}}}
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"audit", "errors", "latency_ms", "orders", "orders_per_sec", "profile", "target"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	var lat map[string]float64
	if err := json.Unmarshal(got["latency_ms"], &lat); err != nil || len(lat) != 3 {
		t.Fatalf("latency_ms %s", got["latency_ms"])
	}
	b.Reset()
	if err := WriteCompareJSON(&b, []*Result{r, r}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), `{"runs":[{"target":"fest"`) {
		t.Fatalf("compare json: %s", b.String())
	}
}

// TestHTMLReport: self-contained (no scripts), with the plots.
func TestHTMLReport(t *testing.T) {
	r := &Result{Target: "fest", Profile: "midnight", Audit: Audit{OK: true},
		Series:  []Point{{T: 1, Placed: 100, P50ms: 1, P99ms: 3}, {T: 2, Placed: 200, P50ms: 1.5, P99ms: 4}},
		Figures: []festival.Figure{{Name: "GMV (CNY)", Published: "498.2 billion", Target: 1, Simulated: 1, Rule: "±5%", OK: true}}}
	var b bytes.Buffer
	if err := WriteHTML(&b, []*Result{r}); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if strings.Count(s, "<svg") != 2 || strings.Contains(s, "<script") || !strings.Contains(s, "polyline") || !strings.Contains(s, "498.2 billion") {
		t.Fatalf("html report lacks plots or has scripts:\n%.2000s", s)
	}
}

// TestBaselinesDriven runs a short midnight against the real baselines
// when the test script started them (see internal/baseline's tests).
func TestBaselinesDriven(t *testing.T) {
	pg, rd := os.Getenv("FEST_TEST_POSTGRES_URL"), os.Getenv("FEST_TEST_REDIS_ADDR")
	if pg == "" || rd == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("FEST_TEST_POSTGRES_URL and FEST_TEST_REDIS_ADDR must be set in CI")
		}
		t.Skip("baselines not started: scripts/baselines.sh start DIR, then export its two lines")
	}
	m, err := festival.NewFlash(4, 2000, 300)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := baseline.OpenPostgres(ctx, baseline.DefaultPostgresConfig(pg))
	if err != nil {
		t.Fatal(err)
	}
	r, err := baseline.OpenRedis(ctx, baseline.DefaultRedisConfig(rd))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []baseline.Store{p, r} {
		res, err := RunTarget(ctx, quietConfig(ProfileFlash), m, NewStoreTarget(s))
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		if !res.Audit.OK || res.Orders != 300 {
			t.Fatalf("%s: audit %v, %d placed; want ok and 300", s.Name(), res.Audit, res.Orders)
		}
	}
}

// settleTarget is memTarget settling in batches, with the first answer to
// every action overloaded once so the driver's resubmission is exercised.
type settleTarget struct {
	*memTarget
	calls, retried int
	seen           map[string]bool
}

func (t *settleTarget) SettlesInBatches() bool { return true }

func (t *settleTarget) Settle(ctx context.Context, ids []string, totals []int64, cancel []bool, out []Outcome) {
	t.mu.Lock()
	t.calls++
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	fresh := make([]bool, len(ids))
	for i, id := range ids {
		fresh[i] = !t.seen[id]
		t.seen[id] = true
	}
	t.mu.Unlock()
	for i := range ids {
		if fresh[i] && i%7 == 0 {
			out[i] = Outcome{Code: CodeOverloaded}
			t.mu.Lock()
			t.retried++
			t.mu.Unlock()
			continue
		}
		if cancel[i] {
			t.Cancel(ctx, ids[i:i+1], out[i:i+1])
		} else {
			t.Pay(ctx, ids[i:i+1], totals[i:i+1], out[i:i+1])
		}
	}
}

// TestPayAfterAuto: with --pay-after auto, midnight pays during the run on
// a target that settles in batches (one Settle call per placed batch,
// overloaded actions resubmitted) and defers payments on one that does not.
func TestPayAfterAuto(t *testing.T) {
	m := festivalModel(t)
	c := quietConfig(ProfileMidnight)
	c.Rate = 5000
	c.Duration = time.Second
	c.PayAfterAuto = true
	st := &settleTarget{memTarget: &memTarget{}}
	res, err := RunTarget(context.Background(), c, m, st)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Audit.OK || res.Paid == 0 || st.calls == 0 || st.retried == 0 {
		t.Fatalf("settling target: audit %v, %d paid, %d settle calls, %d retried", res.Audit.Problems, res.Paid, st.calls, st.retried)
	}
	for _, n := range res.Notes {
		if strings.Contains(n, "deferred") {
			t.Fatalf("payments deferred on a settling target: %q", n)
		}
	}
	res, err = RunTarget(context.Background(), c, m, &memTarget{})
	if err != nil {
		t.Fatal(err)
	}
	deferred := false
	for _, n := range res.Notes {
		deferred = deferred || strings.Contains(n, "deferred")
	}
	if !res.Audit.OK || !deferred {
		t.Fatalf("per-order target: audit %v, notes %q; want deferred payments", res.Audit.Problems, res.Notes)
	}
}
