package engine

import (
	"fmt"
	"strconv"
	"testing"
)

// BenchmarkSubmit measures the whole engine on its file journal (without
// fsync, so that the disk does not decide): routing, the workers'
// batches, records and replies, for batches of 256 orders submitted by 4
// goroutines. The cluster mode changes which journal and which workers
// Submit uses; this is the single-node path it must not slow down.
func BenchmarkSubmit(b *testing.B) {
	e, err := Open(Config{Dir: b.TempDir(), Partitions: 64, NoSync: true, SnapshotEveryBytes: -1, IdleTick: -1, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	benchSubmit(b, e, 4, func(bt *Batch) { e.Submit(bt); bt.Wait() })
}

// benchSubmit loads a catalog of 64 merchants and places b.N orders
// through submit, in batches of 256 from clients goroutines.
func benchSubmit(b *testing.B, e *Engine, clients int, submit func(*Batch)) {
	const merchants, skusPer, batch = 64, 16, 256
	cat := NewBatch(0)
	cat.Add(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}})
	submit(cat)
	cat = NewBatch(0)
	for m := range merchants {
		cat.Add(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m" + strconv.Itoa(m), Kind: MerchantTrader}})
	}
	submit(cat)
	cat = NewBatch(0)
	for m := range merchants {
		for i := range skusPer {
			cat.Add(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: fmt.Sprintf("s%d-%d", m, i), MerchantID: "m" + strconv.Itoa(m), BrandID: "b", Price: 100, Stock: 1_000_000_000}})
		}
	}
	submit(cat)
	for _, r := range cat.Requests {
		if r.Result.Code != CodeOK {
			b.Fatal(r.Result.Code)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	batches := (b.N + batch - 1) / batch
	next := make(chan int, batches)
	for i := range batches {
		next <- i
	}
	close(next)
	done := make(chan struct{})
	for range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			bt := NewBatch(batch)
			items := make([]Item, batch)
			for n := range next {
				bt.Reset()
				for j := range batch {
					k := n*batch + j
					items[j] = Item{SKUID: fmt.Sprintf("s%d-%d", k%merchants, (k/merchants)%skusPer), Quantity: 1}
					bt.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "app", Items: items[j : j+1]}})
				}
				submit(bt)
				for j := range bt.Requests {
					if c := bt.Requests[j].Result.Code; c != CodeOK && c != CodeOverloaded {
						panic(fmt.Sprintf("order answered %v", c))
					}
				}
			}
		}()
	}
	for range clients {
		<-done
	}
	b.StopTimer()
	b.ReportMetric(float64(batches*batch)/b.Elapsed().Seconds(), "orders/s")
}
