package projection_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/logistics"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
)

// BenchmarkFollowFestival measures the read side per order as the server
// runs it: the GMV board, the order store and logistics following a journal
// the real engine wrote (so order lines carry their SKU slots), over a
// catalog large enough that their tables do not fit in the cache (20,000
// brands, 200,000 merchants, 800,000 SKUs, 1,000,000 buyers), each order
// placed and paid. FEST_BENCH_ORDERS sets the orders (default 300,000),
// FEST_BENCH_RECORD_ORDERS the orders placed (and then paid) in one batch,
// so about one record (default 2,048; 1 is the single-order path, where
// the per-record costs show).
// It reports ns per order and the process's CPU ns per order (the machine
// may be shared; the engine is idle while the projections follow), the
// journal's decoding included; the catalog's events are applied before the
// timer starts.
func BenchmarkFollowFestival(b *testing.B) {
	ordersN, recordOrders := 300_000, 2048
	if v, err := strconv.Atoi(os.Getenv("FEST_BENCH_ORDERS")); err == nil && v > 0 {
		ordersN = v
	}
	if v, err := strconv.Atoi(os.Getenv("FEST_BENCH_RECORD_ORDERS")); err == nil && v > 0 {
		recordOrders = v
	}
	eng, catalogEnd, end := festivalJournal(b, ordersN, recordOrders)
	defer eng.Close()
	var cpuNanos int64
	b.ResetTimer()
	for b.Loop() {
		cpuNanos += followTimed(b, eng, catalogEnd, end)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ordersN), "ns/order")
	b.ReportMetric(float64(cpuNanos)/float64(b.N*ordersN), "cpu-ns/order")
}

// The festival journal of the follow benchmarks: a catalog of
// festivalBrands brands, festivalMerchants merchants and
// festivalMerchants*festivalSKUsPerMerchant SKUs, then ordersN orders placed
// and paid, recordOrders to a batch.
const festivalBrands, festivalMerchants, festivalSKUsPerMerchant, festivalBuyers = 20_000, 200_000, 4, 1_000_000

// festivalJournal writes the follow benchmarks' journal with the real
// engine and returns the engine and the positions at the catalog's end and
// at the journal's.
func festivalJournal(b *testing.B, ordersN, recordOrders int) (eng *engine.Engine, catalogEnd, end uint64) {
	const brands, merchants, skusPerMerchant, buyers = festivalBrands, festivalMerchants, festivalSKUsPerMerchant, festivalBuyers
	eng, err := engine.Open(engine.Config{Dir: b.TempDir(), Partitions: 8, NoSync: true, SnapshotEveryBytes: -1, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	run := func(cmds []engine.Command) []engine.Request {
		batch := engine.NewBatch(len(cmds))
		for _, c := range cmds {
			batch.Add(c)
		}
		eng.Submit(batch)
		batch.Wait()
		return batch.Requests
	}
	must := func(reqs []engine.Request) {
		for i := range reqs {
			if !reqs[i].Result.OK() {
				b.Fatalf("%v: %v", reqs[i].Command.Kind, reqs[i].Result.Err())
			}
		}
	}
	var cmds []engine.Command
	flush := func() {
		must(run(cmds))
		cmds = cmds[:0]
	}
	for i := range brands {
		cmds = append(cmds, engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: fmt.Sprintf("b%d", i), Name: "b", Country: []string{"CN", "US", "JP", "FR"}[i%4], LastYearGMV: int64(i%7) * 1_000_00, Emerging: i%10 == 0}})
		if len(cmds) == 4096 {
			flush()
		}
	}
	flush()
	for m := range merchants {
		cmds = append(cmds, engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: fmt.Sprintf("m%d", m), Name: "m", BrandID: fmt.Sprintf("b%d", m%brands), Kind: engine.MerchantKind(1 + m%3), Industry: fmt.Sprintf("ind-%d", m%200), Region: fmt.Sprintf("CN-%d", m%30)}})
		if len(cmds) == 4096 {
			flush()
		}
	}
	flush()
	for m := range merchants {
		for k := range skusPerMerchant {
			cmds = append(cmds, engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: fmt.Sprintf("s%d-%d", m, k), MerchantID: fmt.Sprintf("m%d", m), BrandID: fmt.Sprintf("b%d", (m+k)%brands), Category: fmt.Sprintf("c%d", k+4*(m%10)), Title: "t", Price: 100 + int64(k), Stock: 1_000_000}})
			if len(cmds) == 4096 {
				flush()
			}
		}
	}
	flush()
	catalogEnd = eng.Durable()
	rng := rand.New(rand.NewPCG(1, 2))
	buyerIDs := make([]string, 4096)
	for placed := 0; placed < ordersN; {
		n := min(recordOrders, ordersN-placed)
		for k := range n {
			i := placed + k
			m := rng.IntN(merchants)
			items := []engine.Item{{SKUID: fmt.Sprintf("s%d-%d", m, rng.IntN(skusPerMerchant)), Quantity: 1}}
			if i%3 == 0 {
				items = append(items, engine.Item{SKUID: fmt.Sprintf("s%d-%d", m, rng.IntN(skusPerMerchant)), Quantity: 2})
			}
			buyerIDs[k%len(buyerIDs)] = fmt.Sprintf("u%d", rng.IntN(buyers))
			cmds = append(cmds, engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: buyerIDs[k%len(buyerIDs)], Region: fmt.Sprintf("CN-%d", i%30), Channel: []string{"app", "web", "live:1"}[i%3], Items: items}})
		}
		reqs := run(cmds)
		must(reqs)
		cmds = cmds[:0]
		for i := range reqs {
			cmds = append(cmds, engine.Command{Kind: engine.KindPay, OrderID: reqs[i].Result.OrderID, Amount: reqs[i].Result.Total})
		}
		flush()
		placed += n
	}
	return eng, catalogEnd, eng.Durable()
}

// followTimed gives new read models the journal up to the record ending at
// from with the timer stopped, then times following it from there to the
// record at to, and returns the process's CPU ns of the timed part. The
// timer runs again when it returns, as b.Loop wants.
func followTimed(b *testing.B, eng *engine.Engine, from, to uint64) int64 {
	b.StopTimer()
	store, _ := orders.Open(orders.Config{})
	g, _ := gmvp.New(gmvp.Config{})
	l, _ := logistics.New(logistics.Config{})
	if from > 0 {
		followFestival(b, eng, store, g, l, 0, from)
	}
	b.StartTimer()
	cpu := processCPUNanos()
	followFestival(b, eng, store, g, l, from, to)
	cpuNanos := processCPUNanos() - cpu
	b.StopTimer()
	store.Close()
	b.StartTimer()
	return cpuNanos
}

// errFollowDone ends a benchmark's follow at its last record.
var errFollowDone = errors.New("caught up")

// followFestival applies the journal of eng from from to the record at to
// to the three read models, as the runner does.
func followFestival(b *testing.B, eng *engine.Engine, store *orders.Store, g *gmvp.Projection, l *logistics.Logistics, from, to uint64) {
	err := eng.Follow(context.Background(), from, func(ev *engine.Event) error {
		if err := store.Apply(ev); err != nil {
			return err
		}
		if err := g.Apply(ev); err != nil {
			return err
		}
		if err := l.Apply(ev); err != nil {
			return err
		}
		if ev.Last {
			store.Commit(ev.Position, ev.At)
			g.Commit(ev.Position, ev.At)
			l.Commit(ev.Position, ev.At)
			if ev.Position >= to {
				return errFollowDone
			}
		}
		return nil
	})
	if !errors.Is(err, errFollowDone) {
		b.Fatalf("follow from %d to %d: %v", from, to, err)
	}
}

// BenchmarkFollowCatalog measures the read side's part of a catalog
// import: the order store, the GMV board and logistics following the
// catalog of BenchmarkFollowFestival as the engine wrote it (its SKU events
// carry their slots). It reports ns and the process's CPU ns per catalog
// line (brand, merchant or SKU), the journal's decoding included.
func BenchmarkFollowCatalog(b *testing.B) {
	eng, catalogEnd, _ := festivalJournal(b, 0, 1)
	defer eng.Close()
	const lines = festivalBrands + festivalMerchants*(1+festivalSKUsPerMerchant)
	var cpuNanos int64
	b.ResetTimer()
	for b.Loop() {
		cpuNanos += followTimed(b, eng, 0, catalogEnd)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
	b.ReportMetric(float64(cpuNanos)/float64(b.N*lines), "cpu-ns/line")
}
