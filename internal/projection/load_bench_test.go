package projection_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
)

// BenchmarkLoadAfterOrders measures a restart's load of the projection
// snapshot after FEST_BENCH_ORDERS orders (default 2 million).
func BenchmarkLoadAfterOrders(b *testing.B) {
	ordersBefore := 2_000_000
	if v, err := strconv.Atoi(os.Getenv("FEST_BENCH_ORDERS")); err == nil && v > 0 {
		ordersBefore = v
	}
	dir := b.TempDir()
	store, _ := orders.Open(orders.Config{})
	gmv, _ := gmvp.New(gmvp.Config{})
	r, err := newTR(projection.Config{Dir: dir, Logger: quiet}, store, gmv)
	if err != nil {
		b.Fatal(err)
	}
	f := newFeeder(r)
	f.place(b, ordersBefore)
	r.SnapshotAt(f.pos * 1000)
	store.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		store, _ := orders.Open(orders.Config{})
		gmv, _ := gmvp.New(gmvp.Config{})
		l, err := newTR(projection.Config{Dir: dir, Logger: quiet}, store, gmv)
		if err != nil {
			b.Fatal(err)
		}
		if pos, err := l.Load(); err != nil || pos != f.pos*1000 {
			b.Fatalf("load: at %d: %v", pos, err)
		}
		b.StopTimer()
		store.Close()
		b.StartTimer()
	}
}
