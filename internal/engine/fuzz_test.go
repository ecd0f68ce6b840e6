package engine

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary bytes to the journal record decoder: it
// must never panic, and whatever it accepts must re-encode to a record that
// decodes to the same events.
func FuzzDecodeRecord(f *testing.F) {
	h := newHarness(4)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "Brand", Country: "US", FirstFestival: 2019, Emerging: true, LastYearGMV: 5}})
	h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", BrandID: "b", Kind: MerchantFactory, Industry: "toys", Region: "CN-ZJ"}})
	h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Title: "T", Category: "c", Price: 100, Stock: 10}})
	h.do(Command{Kind: KindAdjustStock, SKUID: "s", Delta: 3})
	r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:x", Region: "CN-BJ", IdempotencyKey: "k", RequestHash: 9, Items: []Item{{SKUID: "s", Quantity: 2}}}})
	h.do(Command{Kind: KindPay, OrderID: r.OrderID, Amount: r.Total})
	r = h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	h.do(Command{Kind: KindCancel, OrderID: r.OrderID})
	for _, rec := range h.records {
		f.Add(rec)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var again []byte
		first := reencode(rec)
		if first == nil {
			return
		}
		again = reencode(first)
		if !bytes.Equal(first, again) {
			t.Fatalf("re-encoding is not stable:\n%x\n%x", first, again)
		}
	})
}

// reencode decodes rec and encodes its events again; nil if rec is bad.
func reencode(rec []byte) []byte {
	out := appendRecordHeader(nil)
	n := 0
	err := DecodeRecord(rec, 4, func(ev *Event) error {
		out = appendEvent(out, ev)
		n++
		return nil
	})
	if err != nil {
		return nil
	}
	finishRecord(out, n)
	return out
}
