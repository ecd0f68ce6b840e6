package server

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/internal/vfs"
	"github.com/fest-platform/fest/wire"
)

// benchBatchOrders is the orders of one benchmark batch.
const benchBatchOrders = 1000

// benchBatchBody is a batch of benchBatchOrders one-line orders of sku,
// protobuf or JSON.
func benchBatchBody(sku string, proto bool) []byte {
	if proto {
		orders := make([]wire.PlaceOrder, benchBatchOrders)
		for i := range orders {
			orders[i] = wire.PlaceOrder{BuyerID: "u" + strconv.Itoa(i), Region: "CN-ZJ", Items: []wire.Item{{SKUID: sku, Quantity: 1}}}
		}
		return wire.AppendRequest(nil, orders)
	}
	b := []byte(`{"orders":[`)
	for i := range benchBatchOrders {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"buyer_id":"u`+strconv.Itoa(i)+`","region":"CN-ZJ","items":[{"sku_id":"`+sku+`","quantity":1}]}`...)
	}
	return append(b, "]}"...)
}

// runBatchBench posts body to h b.N times and reports the time and the
// allocations per order (of the whole process: the engine and the read
// models included).
func runBatchBench(b *testing.B, h http.Handler, body []byte, proto bool) {
	ctype := "application/json"
	if proto {
		ctype = wire.ContentType
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, "/v1/orders:batch", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer s")
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)) {
			b.Fatalf("batch: %d %.300s", rec.Code, rec.Body.Bytes())
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	orders := float64(b.N * benchBatchOrders)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/orders, "ns/order")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/orders, "allocs/order")
}

// seedBenchSKU gives eng brand br, its merchant m and SKU s of unbounded
// stock.
func seedBenchSKU(b *testing.B, eng *engine.Engine) {
	for _, cmd := range []engine.Command{
		{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "br", Name: "Brand", Country: "CN"}},
		{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m", Name: "Shop", BrandID: "br", Kind: engine.MerchantBrandStore}},
		{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s", MerchantID: "m", BrandID: "br", Title: "t", Price: 100, Stock: engine.StockMax}},
	} {
		if res := eng.Do(context.Background(), cmd); !res.OK() {
			b.Fatalf("%v: %v", cmd.Kind, res.Code)
		}
	}
}

// BenchmarkSingleNodeBatch is POST /v1/orders:batch on a node that runs
// alone (no cluster), the journal's fsync skipped: the path that must not
// change with clustering. It uses nothing of cluster.go, so that it runs
// as it is on the code before.
func BenchmarkSingleNodeBatch(b *testing.B) {
	for _, proto := range []bool{true, false} {
		name := "json"
		if proto {
			name = "protobuf"
		}
		b.Run(name, func(b *testing.B) {
			srv, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c"})
			if err != nil {
				b.Fatal(err)
			}
			store, err := orders.Open(orders.Config{})
			if err != nil {
				b.Fatal(err)
			}
			proj, err := projection.New(projection.Config{Dir: b.TempDir()}, store)
			if err != nil {
				b.Fatal(err)
			}
			eng, err := engine.Open(engine.Config{Dir: b.TempDir(), Partitions: 8, JournalFsync: func(vfs.File) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				srv.Detach()
				proj.Close()
				store.Close()
				eng.Close()
			}()
			proj.Start(eng)
			srv.Attach(eng, proj, store)
			seedBenchSKU(b, eng)
			runBatchBench(b, srv.Handler(), benchBatchBody("s", proto), proto)
		})
	}
}

// BenchmarkProtoBatchStages measures the protobuf batch handler's own
// stages apart from the engine: decode (body to engine batch) and encode
// (results to the answer's body), per order, on batches of benchBatchOrders
// two-line orders.
func BenchmarkProtoBatchStages(b *testing.B) {
	srv, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c"})
	if err != nil {
		b.Fatal(err)
	}
	orders := make([]wire.PlaceOrder, benchBatchOrders)
	for i := range orders {
		orders[i] = wire.PlaceOrder{BuyerID: "buyer-" + strconv.Itoa(100000+i), Channel: "live:ch-7", Region: "CN-ZJ",
			Items: []wire.Item{{SKUID: "sku-" + strconv.Itoa(i%977), Quantity: 1}, {SKUID: "sku-" + strconv.Itoa(i%13), Quantity: 2}}}
	}
	body := wire.AppendRequest(nil, orders)
	// The process's CPU time per order is reported beside the wall time:
	// on a machine shared with other work it varies far less.
	var cpuBefore time.Duration
	cpuTime := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	report := func(b *testing.B, before runtime.MemStats) {
		cpu := cpuTime() - cpuBefore
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		n := float64(b.N * benchBatchOrders)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/order")
		b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/order")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/order")
	}
	b.Run("decode", func(b *testing.B) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.ResetTimer()
		cpuBefore = cpuTime()
		for range b.N {
			entries, batch, done, aerr := srv.decodeProtoBatch(body)
			if aerr != nil || len(entries) != benchBatchOrders || len(batch.Requests) != benchBatchOrders {
				b.Fatalf("decode: %v", aerr)
			}
			done()
		}
		b.StopTimer()
		report(b, before)
	})
	for _, enc := range []struct {
		name  string
		brief bool
	}{{"encode", false}, {"encode-brief", true}} {
		b.Run(enc.name, func(b *testing.B) {
			entries, batch, done, aerr := srv.decodeProtoBatch(body)
			if aerr != nil {
				b.Fatal(aerr)
			}
			defer done()
			for i := range batch.Requests {
				r := &batch.Requests[i]
				r.Result = engine.Result{OrderID: engine.OrderID(1<<40 + i), MerchantID: "merchant-42", Total: 19800,
					CreatedAt: 1_700_000_000_000_000_000, PayBy: 1_700_000_900_000_000_000}
				for j := range r.Command.Order.Items {
					it := &r.Command.Order.Items[j]
					it.UnitPrice, it.Amount = 9900, 9900*int64(it.Quantity)
				}
			}
			out := make([]byte, 0, 256*benchBatchOrders)
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			cpuBefore = cpuTime()
			for range b.N {
				out = srv.appendProtoResults(out[:0], entries, batch, nil, nil, enc.brief)
			}
			b.StopTimer()
			report(b, before)
		})
	}
	actions := make([]wire.Settle, benchBatchOrders)
	for i := range actions {
		actions[i] = wire.Settle{OrderID: engine.OrderID(1<<40 + i).String(), Amount: 19800}
	}
	settleBody := wire.AppendSettleRequest(nil, actions)
	b.Run("settle-decode", func(b *testing.B) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.ResetTimer()
		cpuBefore = cpuTime()
		for range b.N {
			entries, batch, done, aerr := srv.decodeProtoSettle(settleBody)
			if aerr != nil || len(entries) != benchBatchOrders || len(batch.Requests) != benchBatchOrders {
				b.Fatalf("decode: %v", aerr)
			}
			done()
		}
		b.StopTimer()
		report(b, before)
	})
	b.Run("settle-encode", func(b *testing.B) {
		entries, batch, done, aerr := srv.decodeProtoSettle(settleBody)
		if aerr != nil {
			b.Fatal(aerr)
		}
		defer done()
		for i := range batch.Requests {
			r := &batch.Requests[i]
			r.Result = engine.Result{OrderID: r.Command.OrderID, Status: engine.StatusPaid, Total: 19800, ChangedAt: 1_700_000_000_000_000_000}
		}
		out := make([]byte, 0, 64*benchBatchOrders)
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.ResetTimer()
		cpuBefore = cpuTime()
		for range b.N {
			out = srv.appendProtoSettle(out[:0], entries, batch, nil)
		}
		b.StopTimer()
		report(b, before)
	})
}
