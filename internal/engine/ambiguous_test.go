package engine

import (
	"strconv"
	"testing"
)

// The core-level tests of ambiguous ids (ambiguous.go): two cores stand for
// two nodes whose owners decide apart, each applying the other's record as
// a follower would. cluster_dup_test.go does the same on real streams.

// dupMerchants returns two merchants of different partitions of c.
func dupMerchants(t *testing.T, c *core) (string, string) {
	t.Helper()
	for m := 1; m < 64; m++ {
		id := "m" + strconv.Itoa(m)
		if c.merchantPartition(id) != c.merchantPartition("m0") {
			return "m0", id
		}
	}
	t.Fatal("no two merchants in different partitions")
	return "", ""
}

// applyRecords evolves c with records, as replay and a follower do.
func applyRecords(t *testing.T, c *core, records ...[]byte) {
	t.Helper()
	var ev Event
	for _, rec := range records {
		if err := decodeRecord(rec, len(c.partitions), &ev, func(ev *Event) error {
			c.evolve(c.partitions[ev.Partition], ev)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// dupSetup gives two harnesses the same catalog: merchants mp and mq (of
// different partitions) with SKUs sp and sq, a channel c. Each then
// decides, apart, SKU "dup" and deal "deal-dup" for its own merchant, and
// an order on each; it returns the records of those decisions.
func dupSetup(t *testing.T) (a, b *harness, mp, mq string, fromA, fromB [][]byte) {
	t.Helper()
	a, b = newHarness(4), newHarness(4)
	a.now, b.now = 1_000, 1_000
	mp, mq = dupMerchants(t, a.c)
	common := []Command{
		{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}},
		{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: mp, BrandID: "b", Kind: MerchantFactory}},
		{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: mq, BrandID: "b", Kind: MerchantFactory}},
		{Kind: KindUpsertSKU, SKU: &SKU{ID: "sp", MerchantID: mp, BrandID: "b", Price: 100, Stock: 50}},
		{Kind: KindUpsertSKU, SKU: &SKU{ID: "sq", MerchantID: mq, BrandID: "b", Price: 100, Stock: 50}},
		{Kind: KindPutChannel, Channel: &Channel{ID: "c", Title: "C", Host: "H", StartsAt: 0, EndsAt: 1 << 40}},
	}
	for _, h := range []*harness{a, b} {
		for _, cmd := range common {
			if r := h.do(cmd); !r.OK() {
				t.Fatalf("%v: %v", cmd.Kind, r.Err())
			}
		}
	}
	decide := func(h *harness, merchant, sku string) [][]byte {
		n := len(h.records)
		for _, cmd := range []Command{
			{Kind: KindUpsertSKU, SKU: &SKU{ID: "dup", MerchantID: merchant, BrandID: "b", Price: 300, Stock: 20}},
			{Kind: KindPutDeal, Deal: &Deal{ID: "deal-dup", ChannelID: "c", SKUID: sku, Price: 50, Stock: 10, StartsAt: 0, EndsAt: 1 << 40}},
			{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "dup", Quantity: 2}}}},
			{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "deal-dup", Items: []Item{{SKUID: sku, Quantity: 1}}}},
		} {
			if r := h.do(cmd); !r.OK() {
				t.Fatalf("%v before the ids are ambiguous: %v", cmd.Kind, r.Err())
			}
		}
		return h.records[n:]
	}
	fromA, fromB = decide(a, mp, "sp"), decide(b, mq, "sq")
	return a, b, mp, mq, fromA, fromB
}

// TestAmbiguousIDsConverge: each core applies the other's records, in
// opposite orders; a core replaying everything in either order, and one
// loaded from a snapshot, end with the same state, and nobody panics.
func TestAmbiguousIDsConverge(t *testing.T) {
	a, b, _, _, fromA, fromB := dupSetup(t)
	applyRecords(t, a.c, fromB...)
	applyRecords(t, b.c, fromA...)
	want := a.c.dump()
	if got := b.c.dump(); got != want {
		t.Fatalf("the two nodes differ:\n%s\n----\n%s", want, got)
	}
	replayAB, replayBA := newHarness(4), newHarness(4)
	common := a.records[:len(a.records)-len(fromA)]
	applyRecords(t, replayAB.c, common...)
	applyRecords(t, replayAB.c, append(append([][]byte(nil), fromA...), fromB...)...)
	applyRecords(t, replayBA.c, common...)
	applyRecords(t, replayBA.c, append(append([][]byte(nil), fromB...), fromA...)...)
	// Interleaved: A's SKU, B's SKU and deal, A's deal.
	replayMixed := newHarness(4)
	applyRecords(t, replayMixed.c, common...)
	applyRecords(t, replayMixed.c, fromA[0], fromB[0], fromB[1], fromA[1], fromA[2], fromB[2], fromB[3], fromA[3])
	restored, err := roundTrip(a)
	if err != nil {
		t.Fatalf("a snapshot holding both SKUs and both deals does not load: %v", err)
	}
	for name, c := range map[string]*core{"replay A then B": replayAB.c, "replay B then A": replayBA.c, "replay interleaved": replayMixed.c, "snapshot": restored} {
		if got := c.dump(); got != want {
			t.Errorf("%s differs:\n%s\n----\n%s", name, want, got)
		}
		if c.dir.ambiguous.Load() != 1 || c.deals.ambiguous != 1 {
			t.Errorf("%s: %d ambiguous sku ids and %d deal ids, want 1 and 1", name, c.dir.ambiguous.Load(), c.deals.ambiguous)
		}
	}
	for name, c := range map[string]*core{"a": a.c, "b": b.c} {
		if c.dir.ambiguous.Load() != 1 || c.deals.ambiguous != 1 {
			t.Errorf("node %s: %d ambiguous sku ids and %d deal ids, want 1 and 1", name, c.dir.ambiguous.Load(), c.deals.ambiguous)
		}
	}
	// Both SKUs keep what their records did: 20 units, 2 reserved.
	for _, c := range []*core{a.c, b.c, restored} {
		n := 0
		for _, p := range c.partitions {
			for slot := range p.skus {
				if p.skuID(uint32(slot)) == "dup" {
					n++
					if st := p.skus[slot]; st.available != 18 || st.reserved != 2 {
						t.Errorf("partition %d's dup: available %d reserved %d, want 18 and 2", p.id, st.available, st.reserved)
					}
				}
			}
		}
		if n != 2 {
			t.Errorf("%d SKUs named dup, want 2", n)
		}
	}
}

// TestAmbiguousIDsRefused: once ambiguous, every request naming the id is
// answered 409 conflict, the field naming it; other ids are untouched.
func TestAmbiguousIDsRefused(t *testing.T) {
	a, b, mp, mq, fromA, fromB := dupSetup(t)
	applyRecords(t, a.c, fromB...)
	applyRecords(t, b.c, fromA...)
	stockChange := int64(5)
	tests := []struct {
		name  string
		cmd   Command
		field string
	}{
		{"order", Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "sp", Quantity: 1}, {SKUID: "dup", Quantity: 1}}}}, "items[1].sku_id"},
		{"keyed order", Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", IdempotencyKey: "k", Items: []Item{{SKUID: "dup", Quantity: 1}}}}, "items[0].sku_id"},
		{"get sku", Command{Kind: KindGetSKU, SKUID: "dup"}, "sku_id"},
		{"adjust stock", Command{Kind: KindAdjustStock, SKUID: "dup", Delta: stockChange}, "sku_id"},
		{"upsert by its merchant", Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "dup", MerchantID: mp, BrandID: "b", Price: 1, Stock: 1, StockCompared: true, StockExpected: 18}}, "sku_id"},
		{"upsert by the other", Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "dup", MerchantID: mq, BrandID: "b", Price: 1, StockOmitted: true}}, "sku_id"},
		{"deal on the sku", Command{Kind: KindPutDeal, Deal: &Deal{ID: "d2", ChannelID: "c", SKUID: "dup", Price: 1, Stock: 1, StartsAt: 0, EndsAt: 1 << 40}}, "sku_id"},
		{"get deal", Command{Kind: KindGetDeal, Deal: &Deal{ID: "deal-dup"}}, "deal_id"},
		{"end deal", Command{Kind: KindEndDeal, Deal: &Deal{ID: "deal-dup"}}, "deal_id"},
		{"put the deal again", Command{Kind: KindPutDeal, Deal: &Deal{ID: "deal-dup", ChannelID: "c", SKUID: "sq", Price: 50, Stock: 10, StartsAt: 0, EndsAt: 1 << 40}}, "deal_id"},
		{"order on the deal", Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "deal-dup", Items: []Item{{SKUID: "sp", Quantity: 1}}}}, "deal_id"},
	}
	for _, h := range []*harness{a, b} {
		before := len(h.records)
		for _, tt := range tests {
			r := h.do(tt.cmd)
			if r.Code != CodeConflict || !r.Ambiguous || r.Field != tt.field {
				t.Errorf("%s: %v ambiguous %v field %q, want conflict on %q", tt.name, r.Code, r.Ambiguous, r.Field, tt.field)
			}
			if msg := r.Err().Error(); msg != "conflict: "+tt.field+" names an id that two merchants use; it must be renamed" {
				t.Errorf("%s: error %q", tt.name, msg)
			}
		}
		if len(h.records) != before {
			t.Errorf("the refused requests wrote %d records", len(h.records)-before)
		}
		// Locate, the cluster router's validation, answers the same.
		r := Request{Command: Command{Kind: KindGetSKU, SKUID: "dup"}}
		if _, ok := h.c.locate(&r); ok || r.Result.Code != CodeConflict || !r.Result.Ambiguous {
			t.Errorf("locate: %v %v", ok, r.Result.Code)
		}
		for _, cmd := range []Command{
			{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "sp", Quantity: 1}}}},
			{Kind: KindGetSKU, SKUID: "sq"},
			{Kind: KindUpsertSKU, SKU: &SKU{ID: "dup2", MerchantID: mp, BrandID: "b", Price: 1, Stock: 1}},
		} {
			if r := h.do(cmd); !r.OK() {
				t.Errorf("%v of another id: %v", cmd.Kind, r.Err())
			}
		}
	}
}

// TestSingleNodeRefusesSecondMerchant: on one core the claim refuses the
// second merchant's SKU and deal as before; nothing is ambiguous.
func TestSingleNodeRefusesSecondMerchant(t *testing.T) {
	a, _, mp, mq, _, _ := dupSetup(t)
	if r := a.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "dup", MerchantID: mq, BrandID: "b", Price: 1, Stock: 1}}); r.Code != CodeInvalidArgument || r.Field != "merchant_id" || r.Ambiguous {
		t.Errorf("second merchant's sku: %v %q ambiguous %v", r.Code, r.Field, r.Ambiguous)
	}
	if r := a.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "deal-dup", ChannelID: "c", SKUID: "sq", Price: 50, Stock: 10, StartsAt: 0, EndsAt: 1 << 40}}); r.Code != CodeConflict || r.Field != "deal_id" || r.Ambiguous {
		t.Errorf("second merchant's deal: %v %q ambiguous %v", r.Code, r.Field, r.Ambiguous)
	}
	if r := a.do(Command{Kind: KindGetSKU, SKUID: "dup"}); !r.OK() || r.SKU.MerchantID != mp {
		t.Errorf("get sku: %v", r.Err())
	}
	if a.c.dir.ambiguous.Load() != 0 || a.c.deals.ambiguous != 0 {
		t.Error("a single core made an id ambiguous")
	}
}

// TestDirectoryShare: an entry goes from empty to held to ambiguous, in
// either order, and stays ambiguous; a record of the same partition's own
// id at its own slot changes nothing.
func TestDirectoryShare(t *testing.T) {
	p, q, r := newSKURef(1, 7), newSKURef(2, 3), newSKURef(3, 0)
	for _, order := range [][]skuRef{{p, q, r}, {q, p, r}, {r, q, p}} {
		d := newDirectory()
		if held := d.share("x", order[0]); held != 0 {
			t.Fatalf("first share found %x", uint64(held))
		}
		if held := d.share("x", order[0]); held != order[0] {
			t.Fatalf("the same share again found %x", uint64(held))
		}
		if got, ok := d.lookup("x"); !ok || got != order[0] {
			t.Fatalf("lookup after one share: %x %v", uint64(got), ok)
		}
		d.share("x", order[1])
		d.share("x", order[2])
		if got, ok := d.lookup("x"); ok || got != skuRefAmbiguous {
			t.Errorf("lookup after three partitions: %x %v", uint64(got), ok)
		}
		if held, inserted := d.insert("x", newSKURef(4, 0)); inserted || held != skuRefAmbiguous {
			t.Errorf("insert of an ambiguous id: %x %v", uint64(held), inserted)
		}
		if d.ambiguous.Load() != 1 || d.count() != 1 {
			t.Errorf("%d ambiguous of %d ids, want 1 of 1", d.ambiguous.Load(), d.count())
		}
	}
	// Many ids: entries marked ambiguous survive the table's growth.
	d := newDirectory()
	for i := range 5000 {
		id := "s" + strconv.Itoa(i)
		d.share(id, newSKURef(0, uint32(i)))
		if i%3 == 0 {
			d.share(id, newSKURef(1, uint32(i)))
		}
	}
	for i := range 5000 {
		ref, ok := d.lookup("s" + strconv.Itoa(i))
		if i%3 == 0 && (ok || ref != skuRefAmbiguous) || i%3 != 0 && (!ok || ref != newSKURef(0, uint32(i))) {
			t.Fatalf("id %d: %x %v", i, uint64(ref), ok)
		}
	}
}
