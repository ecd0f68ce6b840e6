package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/festival"
	"github.com/fest-platform/fest/wire"
)

// BenchmarkHTTPTargetPlace is the driver's side of one 1,000-order
// protobuf batch: building the request from the model's orders, the round
// trip to a server on loopback that answers a prepared body, and checking
// each answer into an Outcome. allocs/op and ns/op are per batch.
func BenchmarkHTTPTargetPlace(b *testing.B) {
	const n = 1000
	m, err := BuildModel(ProfileMidnight, 7, festival.MinScale)
	if err != nil {
		b.Fatal(err)
	}
	orders := make([]*festival.Order, n)
	results := make([]wire.Result, n)
	for i := range orders {
		o := &m.Orders[i%len(m.Orders)]
		orders[i] = o
		items := make([]wire.OrderItem, 0, o.NItems)
		for _, it := range o.Lines() {
			items = append(items, wire.OrderItem{SKUID: m.SKUs[it.SKU].ID, Quantity: it.Qty, UnitPrice: m.SKUs[it.SKU].Price, Amount: m.SKUs[it.SKU].Price * int64(it.Qty)})
		}
		results[i] = wire.Result{Order: wire.Order{OrderID: strconv.FormatInt(int64(1<<40+i), 36), Status: "pending_payment", BuyerID: festival.BuyerID(o.Buyer),
			MerchantID: m.Merchants[m.SKUs[o.Lines()[0].SKU].Merchant].ID, Items: items, Total: 100, Currency: "CNY", Channel: m.ChannelName(o),
			Region: m.BuyerRegion(o.Buyer), CreatedAtUnixNanos: 1, PayByUnixNanos: 2}}
	}
	answer := wire.AppendResponse(nil, results)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(answer)
	}))
	defer s.Close()
	cfg := DefaultHTTPConfig()
	cfg.Addr = s.URL
	t, err := NewHTTPTarget(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	out := make([]Outcome, n)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		t.Place(ctx, m, orders, out)
		if out[0].Code != "" || out[n-1].ID == "" {
			b.Fatalf("outcome %+v", out[0])
		}
	}
}

// nullTarget places and settles every order at once without looking at
// it: the driver's own cost per order, with no server and no network.
type nullTarget struct {
	ids []string // the placed orders' ids, reused round robin
}

func (t *nullTarget) Name() string      { return "null" }
func (t *nullTarget) Shape() (int, int) { return 1000, 8 }
func (t *nullTarget) Close() error      { return nil }
func (t *nullTarget) Prepare(context.Context, *festival.Model, func(string)) error {
	return nil
}

func (t *nullTarget) Place(_ context.Context, m *festival.Model, orders []*festival.Order, out []Outcome) {
	for i, o := range orders {
		out[i] = Outcome{ID: t.ids[i], Total: m.Total(o)}
	}
}

func (t *nullTarget) Pay(_ context.Context, ids []string, _ []int64, out []Outcome) { clear(out) }
func (t *nullTarget) Cancel(_ context.Context, ids []string, out []Outcome)         { clear(out) }
func (t *nullTarget) Settle(_ context.Context, _ []string, _ []int64, _ []bool, out []Outcome) {
	clear(out)
}
func (t *nullTarget) SettlesInBatches() bool { return true }
func (t *nullTarget) Audit(context.Context, *festival.Model, *Ledger) ([]string, error) {
	return nil, nil
}

// BenchmarkDriverMidnight runs the midnight profile at max rate for a
// second against nullTarget: the stream's orders, the checks, the ledger,
// the tallies and the settling, as fest load pays them per order beside
// the client (BenchmarkHTTPTargetPlace) and the server. It reports the
// process's CPU and its allocations per order placed.
func BenchmarkDriverMidnight(b *testing.B) {
	m, err := BuildModel(ProfileMidnight, 7, 0.0001)
	if err != nil {
		b.Fatal(err)
	}
	t := &nullTarget{ids: make([]string, 1000)}
	for i := range t.ids {
		t.ids[i] = strconv.FormatInt(int64(1<<40+i), 36)
	}
	cfg := DefaultConfig()
	cfg.Duration = time.Second
	cfg.PayAfterAuto = true
	cfg.ScanWindow = 0
	var orders int64
	var mallocs uint64
	var cpu time.Duration
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu0 := processCPU()
		res, err := Run(context.Background(), cfg, m, t)
		cpu += processCPU() - cpu0
		runtime.ReadMemStats(&after)
		if err != nil || !res.Audit.OK {
			b.Fatalf("run: %v %+v", err, res.Audit)
		}
		orders += res.Orders
		mallocs += after.Mallocs - before.Mallocs
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(orders), "cpu-ns/order")
	b.ReportMetric(float64(mallocs)/float64(orders), "allocs/order")
	b.ReportMetric(float64(orders)/float64(b.N), "orders/op")
}
