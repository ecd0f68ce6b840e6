package engine

import (
	"strconv"
	"testing"
)

// BenchmarkCorePlaceAndPay measures the deterministic core alone: routing,
// deciding, applying and encoding an order of two lines, and paying half
// of them. No goroutines, no journal.
func BenchmarkCorePlaceAndPay(b *testing.B) {
	h := newHarness(64)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b"}})
	const merchants, skusPer = 1000, 100
	for m := 0; m < merchants; m++ {
		h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m" + strconv.Itoa(m), Kind: MerchantTrader}})
	}
	ids := make([][]string, merchants)
	for m := 0; m < merchants; m++ {
		for i := 0; i < skusPer; i++ {
			id := "sku-" + strconv.Itoa(m) + "-" + strconv.Itoa(i)
			ids[m] = append(ids[m], id)
			h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: id, MerchantID: "m" + strconv.Itoa(m), BrandID: "b", Price: 100, Stock: 1_000_000_000}})
		}
	}
	c := h.c
	var em emitter
	em.reset(make([]byte, 0, 1<<20))
	items := make([]Item, 2)
	var req, pay Request
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%4096 == 0 {
			em.reset(em.rec)
		}
		m := (i * 7919) % merchants
		items[0] = Item{SKUID: ids[m][i%skusPer], Quantity: 1}
		items[1] = Item{SKUID: ids[m][(i*31)%skusPer], Quantity: 1}
		req = Request{Command: Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "buyer", Channel: "app", Items: items}}}
		p, ok := c.route(&req)
		if !ok {
			b.Fatal(req.Result.Err())
		}
		c.apply(c.partitions[p], int64(i), &req.Command, &req.Result, &em)
		if i%2 == 0 {
			pay = Request{Command: Command{Kind: KindPay, OrderID: req.Result.OrderID, Amount: req.Result.Total}}
			p, _ = c.route(&pay)
			c.apply(c.partitions[p], int64(i), &pay.Command, &pay.Result, &em)
		}
	}
}
