package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"testing"

	"github.com/fest-platform/fest/internal/journal"
)

// FuzzDecodeRecord feeds arbitrary bytes to the journal record decoder: it
// must never panic, and whatever it accepts must re-encode to a record that
// decodes to the same events, in either version the engine writes.
func FuzzDecodeRecord(f *testing.F) {
	h := newHarness(4)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "Brand", Country: "US", FirstFestival: 2019, Emerging: true, LastYearGMV: 5}})
	h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", BrandID: "b", Kind: MerchantFactory, Industry: "toys", Region: "CN-ZJ"}})
	h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Title: "T", Category: "c", Price: 100, Stock: 10}})
	h.do(Command{Kind: KindAdjustStock, SKUID: "s", Delta: 3})
	r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:x", Region: "CN-BJ", IdempotencyKey: "k", RequestHash: 9, Items: []Item{{SKUID: "s", Quantity: 2}}}})
	h.do(Command{Kind: KindPay, OrderID: r.OrderID, Amount: r.Total})
	h.do(Command{Kind: KindScanParcel, OrderID: r.OrderID, Scan: &Scan{Status: ParcelPickedUp, Location: "Hangzhou hub", CarrierCode: "PU", At: -5}})
	r = h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	h.do(Command{Kind: KindCancel, OrderID: r.OrderID})
	h.do(Command{Kind: KindPutChannel, Channel: &Channel{ID: "c", Title: "Live", Host: "H", StartsAt: -10, EndsAt: 1 << 40}})
	h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 50, Stock: 3, StartsAt: -10, EndsAt: 1 << 40, LimitPerBuyer: 2}})
	h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d2", ChannelID: "c", SKUID: "s", Price: 50, Stock: 1, StartsAt: -10, EndsAt: 1 << 40}})
	h.do(Command{Kind: KindEndDeal, Deal: &Deal{ID: "d2"}})
	for _, rec := range h.records {
		f.Add(rec)
	}
	// A time-ordered key's minting time (the harness has no disk tier, so
	// its orders carry none), and the golden records: of version 1, which
	// has no such field, of version 2, with whole times and zero key
	// hashes, and of version 3, with times at both ends of int64.
	timed := Event{Kind: EventOrderPlaced, Partition: 1, At: 5, OrderID: newOrderID(1, 1), BuyerID: "u", KeyHash: 0xabc1, RequestHash: 9,
		KeyMinted: 1_750_000_000_123, Items: []Item{{SKUID: "s", Quantity: 1, UnitPrice: 100}}}
	rec := appendEvent(appendRecordHeader(nil, recordVersionV3), &timed, 0, recordVersionV3)
	finishRecord(rec, 1)
	f.Add(rec)
	for _, name := range []string{"record_v1.bin", "record_v2.bin", "record_v3.bin"} {
		if old, err := os.ReadFile("testdata/compat/" + name); err != nil {
			f.Fatal(err)
		} else {
			f.Add(old)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, rec []byte) {
		first := reencode(rec, recordVersionV3)
		if first == nil {
			return
		}
		if again := reencode(first, recordVersionV3); !bytes.Equal(first, again) {
			t.Fatalf("re-encoding is not stable:\n%x\n%x", first, again)
		}
		// Version 2, which a rolling upgrade writes, holds the same events.
		v2 := reencode(first, recordVersionV2)
		if again := reencode(v2, recordVersionV3); !bytes.Equal(first, again) {
			t.Fatalf("re-encoding through version 2 changes the events:\n%x\n%x\n%x", first, v2, again)
		}
	})
}

// reencode decodes rec and encodes its events again as a record of
// version; nil if rec is bad.
func reencode(rec []byte, version byte) []byte {
	out := appendRecordHeader(nil, version)
	n := 0
	var prevAt int64
	err := DecodeRecord(rec, 4, func(ev *Event) error {
		out = appendEvent(out, ev, prevAt, version)
		prevAt = ev.At
		n++
		return nil
	})
	if err != nil {
		return nil
	}
	finishRecord(out, n)
	return out
}

// FuzzDecodeSnapshot feeds arbitrary bytes, seeded with a real state, to the
// streaming snapshot decoder: it must return an error, never panic or grow
// without bound, so a snapshot that passes its checksum but is wrong falls
// back to an older one. What it accepts must encode again to the same bytes.
func FuzzDecodeSnapshot(f *testing.F) {
	h := newHarness(4)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "Brand", Country: "US"}})
	h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", BrandID: "b", Kind: MerchantFactory}})
	h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Title: "T", Category: "c", Price: 100, Stock: 10}})
	r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", IdempotencyKey: "k", RequestHash: 9, Items: []Item{{SKUID: "s", Quantity: 2}}}})
	h.do(Command{Kind: KindPay, OrderID: r.OrderID, Amount: r.Total})
	h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	h.do(Command{Kind: KindPutChannel, Channel: &Channel{ID: "c", Title: "Live", Host: "H", StartsAt: -10, EndsAt: 1 << 40}})
	h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 50, Stock: 3, StartsAt: -10, EndsAt: 1 << 40, LimitPerBuyer: 2}})
	h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Channel: "live:c", DealID: "d", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	h.do(Command{Kind: KindPutDeal, Deal: &Deal{ID: "d2", ChannelID: "c", SKUID: "s", Price: 50, Stock: 1, StartsAt: -10, EndsAt: 1 << 40}})
	h.do(Command{Kind: KindEndDeal, Deal: &Deal{ID: "d2"}})
	f.Add(encodeSnapshotForTest(h.c, 7))
	// A key ring with a time-ordered key's minting time.
	for _, p := range h.c.partitions {
		for i := range p.keys.ring {
			p.keys.ring[i].minted = 1_750_000_000_123
			p.keys.timed++
		}
	}
	f.Add(encodeSnapshotForTest(h.c, 7))
	if old, err := os.ReadFile("testdata/compat/snapshot_v3.bin"); err != nil {
		f.Fatal(err)
	} else {
		f.Add(old)
	}
	f.Add([]byte(snapshotMagic + "\x01\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newCore(4, modelTimeout, 1<<40, 1<<20)
		pos := make([]journal.Position, 4)
		if err := c.decodeSnapshot(bufio.NewReader(bytes.NewReader(data)), int64(len(data)), 0, pos); err != nil {
			return
		}
		if again := encodeSnapshotForTest(c, 0); len(again) == 0 {
			t.Fatal("an accepted snapshot encodes to nothing")
		}
		// What loads must also run: ending every deal and expiring every
		// order asserts the books (an inconsistent snapshot would panic
		// here, outside the recovery that falls back to an older one).
		var em emitter
		for _, p := range c.partitions {
			em.reset(nil)
			c.endDeals(p, math.MaxInt64-1, 1<<30, &em)
			c.expire(p, math.MaxInt64-1, 1<<30, &em)
		}
	})
}

// encodeSnapshotForTest encodes c's partitions as writeSnapshot lays them
// out, every partition at position at.
func encodeSnapshotForTest(c *core, at uint64) []byte {
	b := append([]byte(snapshotMagic), snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(c.partitions)))
	for _, p := range c.partitions {
		data := encodePartition(nil, p)
		b = binary.LittleEndian.AppendUint64(b, at)
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = append(b, data...)
	}
	return b
}
