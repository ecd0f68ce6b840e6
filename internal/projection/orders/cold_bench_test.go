package orders

import (
	"bufio"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fest-platform/fest/internal/engine"
)

// BenchmarkColdTierRun places FEST_BENCH_ORDERS orders (default 2 million)
// into a store with a cold tier and a budget of FEST_BENCH_ORDERS_MEMORY
// bytes (default 256 MiB), as the runner feeds it, then reads random old
// orders back. It reports the orders per second the store absorbed
// (eviction included: the clock stops once memory is within budget
// again), the resident memory (the process's RSS and the store's estimate),
// the disk bytes per order, and the latency of cold reads. Run it with
// -benchtime 1x; it is a measurement, not a regression check.
//
//	FEST_BENCH_ORDERS=50000000 FEST_BENCH_ORDERS_MEMORY=2147483648 go test -run - -bench ColdTierRun -benchtime 1x ./internal/projection/orders
func BenchmarkColdTierRun(b *testing.B) {
	total := envInt("FEST_BENCH_ORDERS", 2_000_000)
	budget := envInt("FEST_BENCH_ORDERS_MEMORY", 256<<20)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		s, err := Open(Config{Dir: dir, MemoryBytes: int64(budget)})
		if err != nil {
			b.Fatal(err)
		}
		items := []engine.Item{{SKUID: "sku-12345", Quantity: 1, UnitPrice: 29900, Amount: 29900}, {SKUID: "sku-777", Quantity: 2, UnitPrice: 1000, Amount: 2000}}
		ev := engine.Event{Kind: engine.EventOrderPlaced, MerchantID: "m-1", Channel: "app", Region: "CN-ZJ", Items: items, Total: 31900}
		var seqs [64]uint64
		buyerIDs := make([]string, 1_000_000)
		for j := range buyerIDs {
			buyerIDs[j] = "buyer-" + strconv.Itoa(j)
		}
		var rssMax int64
		start := time.Now()
		for n := 0; n < total; n++ {
			p := n % len(seqs)
			seqs[p]++
			ev.OrderID = orderIDOf(p, seqs[p])
			ev.BuyerID = buyerIDs[n%len(buyerIDs)]
			ev.At, ev.PayBy = int64(n), int64(n)+1e12
			ev.Position = uint64(n/1000 + 1)
			ev.Last = n%1000 == 999 || n == total-1
			if err := s.Apply(&ev); err != nil {
				b.Fatal(err)
			}
			if ev.Last {
				s.Commit(ev.Position, ev.At)
			}
			if n%1_000_000 == 0 {
				rssMax = max(rssMax, rssBytes())
			}
		}
		s.evictUnderBudget()
		elapsed := time.Since(start)
		runtime.GC()
		rss := rssBytes()
		st := s.Stats()
		disk := dirBytes(b, dir)

		// Cold reads of random orders from the first 90%.
		h := hdrhistogram.New(1, int64(time.Second), 3)
		rng := rand.New(rand.NewPCG(1, 2))
		for r := 0; r < 20_000; r++ {
			n := rng.IntN(total * 9 / 10)
			id := orderIDOf(n%len(seqs), uint64(n/len(seqs)+1))
			t := time.Now()
			if _, err := s.Get(id); err != nil {
				b.Fatalf("order %v: %v", id, err)
			}
			h.RecordValue(int64(time.Since(t)))
		}
		b.ReportMetric(float64(total)/elapsed.Seconds(), "orders/s")
		b.ReportMetric(float64(rss), "rss-bytes")
		b.ReportMetric(float64(rssMax), "rss-max-bytes")
		b.ReportMetric(float64(st.ResidentBytes), "resident-estimate-bytes")
		b.ReportMetric(float64(st.ResidentBytes-uint64(s.coldFixed))/float64(max(st.MemoryOrders, 1)), "resident-bytes/memory-order")
		b.ReportMetric(float64(disk)/float64(max(st.ColdOrders, 1)), "disk-bytes/cold-order")
		b.ReportMetric(float64(st.ColdOrders), "cold-orders")
		b.ReportMetric(float64(h.ValueAtQuantile(50))/1e3, "cold-read-p50-µs")
		b.ReportMetric(float64(h.ValueAtQuantile(99))/1e3, "cold-read-p99-µs")
		b.ReportMetric(float64(h.Max())/1e3, "cold-read-max-µs")
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// rssBytes is the process's resident set size.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

func dirBytes(tb testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
