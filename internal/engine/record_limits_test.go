package engine

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// merchantsInPartitions returns merchant ids, one in each of the first n
// partitions of a core with the given partition count.
func merchantsInPartitions(partitions, n int) []string {
	c := newCore(partitions, 1, 1, 1)
	seen := map[int]bool{}
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := "m" + strconv.Itoa(i)
		if p := c.merchantPartition(id); !seen[p] {
			seen[p] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// TestExpiryWaveSplitsRecords has one worker own many partitions, each with
// ExpireBatchMax overdue orders, so that one batch expires more orders than
// recordEventsMax. Before records were bounded, that batch wrote one record
// the decoder refuses, and every later start failed. Now the expiries are
// spread over several records, and a restart from the journal alone (no
// final snapshot) rebuilds every order.
func TestExpiryWaveSplitsRecords(t *testing.T) {
	const (
		partitions = 24
		perMerch   = 4096 // = ExpireBatchMax: each partition expires all of them in one batch
	)
	dir := t.TempDir()
	var clock int64 = 1_000_000
	cfg := Config{Dir: dir, Partitions: partitions, Workers: 1, NoSync: true, SnapshotEveryBytes: -1,
		PaymentTimeout: 1000, ExpireBatchMax: perMerch, Now: func() int64 { return clock }, Logger: quiet}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	merchants := merchantsInPartitions(partitions, partitions)
	b := NewBatch(0)
	b.Add(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}})
	mustBatch(t, e, b)
	b = NewBatch(0)
	for _, m := range merchants {
		b.Add(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: m, BrandID: "b", Kind: MerchantFactory}})
		b.Add(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "sku-" + m, MerchantID: m, BrandID: "b", Price: 1, Stock: perMerch}})
	}
	mustBatch(t, e, b)
	for _, m := range merchants {
		b := NewBatch(perMerch)
		for i := 0; i < perMerch; i++ {
			b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "sku-" + m, Quantity: 1}}}})
		}
		mustBatch(t, e, b)
	}
	if overdue := partitions * perMerch; overdue <= recordEventsMax {
		t.Fatalf("test set-up: %d overdue orders do not exceed recordEventsMax %d", overdue, recordEventsMax)
	}
	records := e.stats.Records.Load()
	clock += 10_000 // every order is overdue: one batch expires them all
	mustBatch(t, e, func() *Batch {
		b := NewBatch(1)
		b.Add(Command{Kind: KindGetSKU, SKUID: "sku-" + merchants[0]})
		return b
	}())
	if got := e.stats.Records.Load() - records; got < 2 {
		t.Errorf("the expiry wave was written as %d record(s), want it split", got)
	}
	live := e.core.dump()
	copyDir(t, dir, dir+"-copy") // the journal as it is, without the final snapshot
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = dir + "-copy"
	e2, err := Open(cfg)
	if err != nil {
		t.Fatalf("restart after the expiry wave: %v", err)
	}
	defer e2.Close()
	if got := e2.core.dump(); got != live {
		t.Fatal("state recovered from the journal differs from the live state")
	}
	for _, p := range e2.core.partitions {
		for seq, s := range p.orders {
			if s != StatusExpired {
				t.Fatalf("partition %d order %d is %v after recovery, want expired", p.id, seq+1, s)
			}
		}
	}
}

// TestLongestOrdersSplitRecords submits one batch of the longest orders the
// engine accepts (100 lines of 128-byte SKU ids, every string at its limit)
// whose events exceed journal.MaxRecordBytes. Before records were bounded by
// bytes the journal refused the record with ErrTooLarge and the engine
// stopped: a storefront client could stop the node. Now the batch is split
// into several records, every order is acknowledged and survives a restart.
func TestLongestOrdersSplitRecords(t *testing.T) {
	const orders = 5000 // about 14 KiB each: 70 MiB, over journal.MaxRecordBytes (64 MiB)
	dir := t.TempDir()
	cfg := Config{Dir: dir, Partitions: 2, Workers: 1, NoSync: true, SnapshotEveryBytes: -1, Logger: quiet}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	b := NewBatch(0)
	b.Add(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: long("b", idLengthMax), Name: long("n", textMax), Country: "CN"}})
	mustBatch(t, e, b)
	merchant := long("m", idLengthMax)
	b = NewBatch(0)
	b.Add(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: merchant, BrandID: long("b", idLengthMax), Kind: MerchantFactory,
		Name: long("n", textMax), Industry: long("i", textMax), Region: long("r", regionBytesMax)}})
	mustBatch(t, e, b)
	b = NewBatch(0)
	skus := make([]string, orderItemsMax)
	for i := range skus {
		skus[i] = long(fmt.Sprintf("s%03d-", i), idLengthMax)
		b.Add(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: skus[i], MerchantID: merchant, BrandID: long("b", idLengthMax),
			Title: long("t", textMax), Category: long("c", textMax), Price: priceMax, Stock: orders}})
	}
	mustBatch(t, e, b)

	b = NewBatch(orders)
	for i := 0; i < orders; i++ {
		items := make([]Item, orderItemsMax)
		for j := range items {
			items[j] = Item{SKUID: skus[j], Quantity: 1}
		}
		b.Add(Command{Kind: KindPlaceOrder, Order: Order{
			BuyerID: long("u"+strconv.Itoa(i)+"-", idLengthMax), Items: items,
			Channel: long("live:", channelBytesMax), Region: long("r", regionBytesMax),
			IdempotencyKey: long("k"+strconv.Itoa(i)+"-", idempotencyKeyBytesMax), RequestHash: uint64(i),
		}})
	}
	records := e.stats.Records.Load()
	mustBatch(t, e, b)
	if err := e.Err(); err != nil {
		t.Fatalf("engine stopped: %v", err)
	}
	if got := e.stats.Records.Load() - records; got < 2 {
		t.Fatalf("the batch was written as %d record(s), want it split", got)
	}
	// The engine goes on serving.
	b = NewBatch(1)
	b.Add(Command{Kind: KindGetSKU, SKUID: skus[0]})
	mustBatch(t, e, b)
	if r := b.Requests[0].Result; r.Reserved != orders {
		t.Fatalf("reserved %d, want %d", r.Reserved, orders)
	}
	live := e.core.dump()
	copyDir(t, dir, dir+"-copy")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = dir + "-copy"
	e2, err := Open(cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer e2.Close()
	if got := e2.core.dump(); got != live {
		t.Fatal("state recovered from the journal differs from the live state")
	}
}

// TestCommandStringLimits checks that every string of every command is
// bounded before it is applied, answered CodeInvalidArgument naming the
// field, so no command can outgrow commandBytesMax.
func TestCommandStringLimits(t *testing.T) {
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 2, NoSync: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	testCatalog(t, e, 1, 1, 10)
	over := func(n int) string { return strings.Repeat("x", n+1) }
	order := func(o Order) Command {
		if o.Items == nil {
			o.Items = []Item{{SKUID: "s0-0", Quantity: 1}}
		}
		return Command{Kind: KindPlaceOrder, Order: o}
	}
	tests := []struct {
		name  string
		cmd   Command
		field string
	}{
		{"buyer", order(Order{BuyerID: over(idLengthMax)}), "buyer_id"},
		{"channel", order(Order{BuyerID: "u", Channel: over(channelBytesMax)}), "channel"},
		{"region", order(Order{BuyerID: "u", Region: over(regionBytesMax)}), "region"},
		{"deal", order(Order{BuyerID: "u", DealID: over(idLengthMax)}), "deal_id"},
		{"key", order(Order{BuyerID: "u", IdempotencyKey: over(idempotencyKeyBytesMax)}), "Idempotency-Key"},
		{"item sku", order(Order{BuyerID: "u", Items: []Item{{SKUID: over(idLengthMax), Quantity: 1}}}), "items[0].sku_id"},
		{"brand id", Command{Kind: KindUpsertBrand, Brand: &Brand{ID: over(idLengthMax)}}, "brand_id"},
		{"brand name", Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: over(textMax)}}, "name"},
		{"brand country", Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Country: over(countryBytesMax)}}, "country"},
		{"merchant id", Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: over(idLengthMax)}}, "merchant_id"},
		{"merchant name", Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Name: over(textMax)}}, "name"},
		{"merchant brand", Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", BrandID: over(idLengthMax)}}, "brand_id"},
		{"merchant industry", Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Industry: over(textMax)}}, "industry"},
		{"merchant region", Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", Region: over(regionBytesMax)}}, "region"},
		{"sku id", Command{Kind: KindUpsertSKU, SKU: &SKU{ID: over(idLengthMax), MerchantID: "m0"}}, "sku_id"},
		{"sku merchant", Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: over(idLengthMax)}}, "merchant_id"},
		{"sku brand", Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m0", BrandID: over(idLengthMax)}}, "brand_id"},
		{"sku title", Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m0", Title: over(textMax)}}, "title"},
		{"sku category", Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m0", Category: over(textMax)}}, "category"},
		{"adjust sku", Command{Kind: KindAdjustStock, SKUID: over(idLengthMax), Delta: 1}, "sku_id"},
		{"scan location", Command{Kind: KindScanParcel, OrderID: newOrderID(0, 1), Scan: &Scan{Status: ParcelPickedUp, Location: over(locationBytesMax)}}, "location"},
		{"scan carrier code", Command{Kind: KindScanParcel, OrderID: newOrderID(0, 1), Scan: &Scan{Status: ParcelPickedUp, Location: "hz", CarrierCode: over(carrierCodeBytesMax)}}, "carrier_code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBatch(1)
			b.Add(tt.cmd)
			e.Submit(b)
			b.Wait()
			if r := b.Requests[0].Result; r.Code != CodeInvalidArgument || r.Field != tt.field {
				t.Fatalf("got %v field %q, want invalid_argument field %q", r.Code, r.Field, tt.field)
			}
		})
	}
}
