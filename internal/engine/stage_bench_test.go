package engine

import (
	"strconv"
	"testing"
)

// The stage benchmarks split the engine's part of an order's budget
// (docs/architecture.md, "The per-order budget") into routing, applying
// with the record's encoding, and decoding the record again on the read
// side. Each reports ns and allocations per order for an order of two
// lines over 100,000 SKUs of 1,000 merchants in 64 partitions.

// stageCatalog returns a core with the benchmarks' catalog and the SKU ids
// of each merchant.
func stageCatalog() (*core, [][]string) {
	h := newHarness(64)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}})
	const merchants, skusPer = 1000, 100
	ids := make([][]string, merchants)
	for m := 0; m < merchants; m++ {
		mid := "m" + strconv.Itoa(m)
		h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: mid, Kind: MerchantTrader}})
		for i := 0; i < skusPer; i++ {
			id := "sku-" + strconv.Itoa(m) + "-" + strconv.Itoa(i)
			ids[m] = append(ids[m], id)
			h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: id, MerchantID: mid, BrandID: "b", Price: 100, Stock: 1_000_000_000}})
		}
	}
	return h.c, ids
}

// stageOrders returns n order requests of two lines each, spread over the
// merchants, with per-request item slices.
func stageOrders(ids [][]string, n int) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		m := (i * 7919) % len(ids)
		items := []Item{{SKUID: ids[m][i%len(ids[m])], Quantity: 1}, {SKUID: ids[m][(i*31)%len(ids[m])], Quantity: 1}}
		reqs[i] = Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "buyer-" + strconv.Itoa(i%50_000), Channel: "app", Region: "CN-31", Items: items}}}
	}
	return reqs
}

// BenchmarkStageRoute is the router: length checks, the SKU directory
// lookup of every line and the one-partition check.
func BenchmarkStageRoute(b *testing.B) {
	c, ids := stageCatalog()
	reqs := stageOrders(ids, 1<<14)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := &reqs[i&(len(reqs)-1)]
		if _, ok := c.route(r); !ok {
			b.Fatal(r.Result.Err())
		}
	}
}

// BenchmarkStageApply is the partition's work on a routed order: the
// stock decision, the reservation, the pending order and the encoding of
// its event into the record (every second order is also paid, as at the
// midnight peak where half are paid within the run).
func BenchmarkStageApply(b *testing.B) {
	c, ids := stageCatalog()
	reqs := stageOrders(ids, 1<<14)
	parts := make([]int, len(reqs))
	for i := range reqs {
		p, ok := c.route(&reqs[i])
		if !ok {
			b.Fatal(reqs[i].Result.Err())
		}
		parts[i] = p
	}
	var em emitter
	em.reset(make([]byte, 0, 1<<20))
	var pay Request
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%4096 == 0 {
			em.reset(em.rec)
		}
		j := i & (len(reqs) - 1)
		r := &reqs[j]
		p := c.partitions[parts[j]]
		c.apply(p, int64(i), &r.Command, &r.Result, &em)
		if i%2 == 0 {
			pay = Request{Command: Command{Kind: KindPay, OrderID: r.Result.OrderID, Amount: r.Result.Total}}
			c.apply(p, int64(i), &pay.Command, &pay.Result, &em)
		}
	}
}

// BenchmarkStageApplyGroup is the partition's work as a worker's batch
// does it, in groups of touchGroup orders, each group with as many
// payments of orders placed 16,384 orders before (so that their pending
// orders are no longer in the cache): "touch" reads the group's state
// ahead of applying it (worker.touch), "plain" does not.
func BenchmarkStageApplyGroup(b *testing.B) {
	for _, touch := range []bool{false, true} {
		name := "plain"
		if touch {
			name = "touch"
		}
		b.Run(name, func(b *testing.B) {
			c, ids := stageCatalog()
			reqs := stageOrders(ids, 1<<14)
			for i := range reqs {
				p, ok := c.route(&reqs[i])
				if !ok {
					b.Fatal(reqs[i].Result.Err())
				}
				reqs[i].partition = int32(p)
			}
			var em emitter
			em.reset(make([]byte, 0, 1<<20))
			type placed struct {
				id        OrderID
				total     int64
				partition int32
			}
			ring := make([]placed, 1<<14)
			bt := NewBatch(2 * touchGroup)
			idx := make([]int32, 0, 2*touchGroup)
			var touched uint64
			orders := 0
			b.ReportAllocs()
			var report func(int)
			for i := 0; b.Loop(); i += touchGroup {
				if report == nil {
					report = cpuPerOrder(b)
				}
				if i%4096 == 0 {
					em.reset(em.rec)
				}
				bt.Requests, idx = bt.Requests[:0], idx[:0]
				for k := range touchGroup {
					r := &reqs[(i+k)&(len(reqs)-1)]
					bt.Requests = append(bt.Requests, Request{Command: r.Command, partition: r.partition})
					if old := ring[(i+k)&(len(ring)-1)]; old.id != 0 {
						bt.Requests = append(bt.Requests, Request{Command: Command{Kind: KindPay, OrderID: old.id, Amount: old.total}, partition: old.partition})
					}
				}
				for k := range bt.Requests {
					idx = append(idx, int32(k))
				}
				if touch {
					touched += c.touch(bt, idx)
				}
				for k := range bt.Requests {
					r := &bt.Requests[k]
					c.apply(c.partitions[r.partition], int64(i), &r.Command, &r.Result, &em)
					if r.Command.Kind == KindPlaceOrder {
						ring[(i+orders)&(len(ring)-1)] = placed{id: r.Result.OrderID, total: r.Result.Total, partition: r.partition}
						orders++
					}
				}
				orders -= touchGroup
			}
			report(b.N * touchGroup)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*touchGroup), "ns/order")
			_ = touched
		})
	}
}

// BenchmarkStageDecodeRecord is the read side's decoding of one journal
// record of 2,048 placed orders (half of them paid), per order: done once
// per record by the projection runner for every projection.
func BenchmarkStageDecodeRecord(b *testing.B) {
	c, ids := stageCatalog()
	reqs := stageOrders(ids, 2048)
	var em emitter
	em.reset(make([]byte, 0, 1<<20))
	for i := range reqs {
		r := &reqs[i]
		p, ok := c.route(r)
		if !ok {
			b.Fatal(r.Result.Err())
		}
		c.apply(c.partitions[p], int64(i), &r.Command, &r.Result, &em)
		if i%2 == 0 {
			pay := Request{Command: Command{Kind: KindPay, OrderID: r.Result.OrderID, Amount: r.Result.Total}}
			c.apply(c.partitions[p], int64(i), &pay.Command, &pay.Result, &em)
		}
	}
	rec := em.finish()
	var ev Event
	events := 0
	count := func(*Event) error { events++; return nil }
	b.ReportAllocs()
	for i := 0; b.Loop(); i += len(reqs) {
		if err := decodeRecord(rec, 64, &ev, count); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(reqs)), "ns/order")
	b.ReportMetric(float64(len(rec))/float64(len(reqs)), "record-bytes/order")
}
