package bench

import (
	"context"
	"testing"
	"time"
)

// TestRunSmall runs a short benchmark and checks the books balance. The
// flash SKUs hold 5 units each, so that they sell out even on a loaded
// machine where 300 ms places only a few thousand orders.
func TestRunSmall(t *testing.T) {
	r, err := Run(context.Background(), Config{Duration: 300 * time.Millisecond, SKUs: 2000, Merchants: 100, FlashSKUs: 20, FlashStock: 5, BatchSize: 256, Generators: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Orders == 0 || r.OrdersAccepted == 0 {
		t.Fatalf("no orders: %+v", r)
	}
	if r.Oversold != 0 || r.Unconserved != 0 {
		t.Fatalf("books do not balance: %+v", r)
	}
	if r.RejectedOutOfStock == 0 {
		t.Errorf("flash SKUs never sold out: %+v", r)
	}
	if r.Fsyncs == 0 {
		t.Errorf("no fsyncs counted")
	}
}

// BenchmarkEngine reports orders/s and allocations per order of the full
// engine + journal path with fsync on.
func BenchmarkEngine(b *testing.B) {
	r, err := Run(context.Background(), Config{Duration: 3 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.OrdersPerSec, "orders/s")
	b.ReportMetric(r.AllocsPerOrder, "allocs/order")
	b.ReportMetric(r.P99AckMs, "p99-ms")
	b.ReportMetric(r.CPUMicrosPerOrder, "cpu-µs/order")
}
