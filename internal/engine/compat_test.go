package engine

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fest-platform/fest/internal/journal"
)

// The files in testdata/compat were written by the engine before the
// minting time of time-ordered keys was recorded (record version 1,
// snapshot version 3), each holding a keyed order under a UUIDv7 key and
// one under another key.
const compatTimedKey = "01977420-dc01-7000-8000-000000000000"

// TestVersion1RecordStillDecodes checks that a record written before
// KeyMinted decodes, its keys with KeyMinted 0, and encodes again as the
// current version with the same events.
func TestVersion1RecordStillDecodes(t *testing.T) {
	rec, err := os.ReadFile("testdata/compat/record_v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != recordVersionV1 {
		t.Fatalf("golden record of version %d, want %d", rec[0], recordVersionV1)
	}
	var placed []Event
	if err := DecodeRecord(rec, 4, func(ev *Event) error {
		if ev.Kind == EventOrderPlaced {
			placed = append(placed, Event{KeyHash: ev.KeyHash, RequestHash: ev.RequestHash, KeyMinted: ev.KeyMinted})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(placed) != 1 || placed[0].KeyHash != hashString(compatTimedKey)|1 || placed[0].RequestHash != 9 || placed[0].KeyMinted != 0 {
		t.Fatalf("placed %+v, want the UUIDv7 key with request hash 9 and KeyMinted 0", placed)
	}
	again := reencode(rec, recordVersionV3)
	if again == nil || again[0] != recordVersionV3 {
		t.Fatalf("re-encoded %x: want a version %d record", again, recordVersionV3)
	}
	if !bytes.Equal(reencode(again, recordVersionV3), again) {
		t.Fatal("the re-encoded record does not decode to the same events")
	}
}

// TestVersion2RecordStillDecodes checks that a record of version 2, whose
// events carry whole times and every order a key hash (testdata/compat:
// every kind of event, at times apart and one earlier than the one before,
// orders with and without a key), decodes, and encodes again as the current
// version to the same events in fewer bytes.
func TestVersion2RecordStillDecodes(t *testing.T) {
	rec, err := os.ReadFile("testdata/compat/record_v2.bin")
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != recordVersionV2 {
		t.Fatalf("golden record of version %d, want %d", rec[0], recordVersionV2)
	}
	events := func(rec []byte) ([]string, map[EventKind]int) {
		var out []string
		kinds := map[EventKind]int{}
		if err := DecodeRecord(rec, 4, func(ev *Event) error {
			out = append(out, fmt.Sprintf("%+v", *ev))
			kinds[ev.Kind]++
			if ev.Kind == EventOrderPlaced && ev.KeyHash != 0 {
				kinds[eventKindCount]++ // a keyed order
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out, kinds
	}
	old, kinds := events(rec)
	for k := EventBrandUpserted; k <= eventKindCount; k++ {
		if kinds[k] == 0 {
			t.Fatalf("golden record holds no %v event (kinds %v)", k, kinds)
		}
	}
	if kinds[EventOrderPlaced] == kinds[eventKindCount] {
		t.Fatalf("golden record holds no order without a key (kinds %v)", kinds)
	}
	again := reencode(rec, recordVersionV3)
	if again == nil || again[0] != recordVersionV3 {
		t.Fatalf("re-encoded %x: want a version %d record", again, recordVersionV3)
	}
	if got, _ := events(again); !slices.Equal(got, old) {
		t.Fatalf("version %d record decodes to\n%s\nwant\n%s", recordVersionV3, strings.Join(got, "\n"), strings.Join(old, "\n"))
	}
	if len(again) >= len(rec) {
		t.Fatalf("version %d record of %d bytes, the version 2 one %d", recordVersionV3, len(again), len(rec))
	}
}

// TestVersion3SnapshotStillLoads checks that a snapshot written before the
// key ring held minting times loads, its keys as other keys.
func TestVersion3SnapshotStillLoads(t *testing.T) {
	data, err := os.ReadFile("testdata/compat/snapshot_v3.bin")
	if err != nil {
		t.Fatal(err)
	}
	if v := data[len(snapshotMagic)]; v != snapshotVersionV3 {
		t.Fatalf("golden snapshot of version %d, want %d", v, snapshotVersionV3)
	}
	c := newCore(4, modelTimeout, 1<<40, 1<<20)
	pos := make([]journal.Position, 4)
	if err := c.decodeSnapshot(bufio.NewReader(bytes.NewReader(data)), int64(len(data)), 0, pos); err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, p := range c.partitions {
		keys += len(p.keys.entries)
		for _, r := range p.keys.ring {
			if r.minted != 0 {
				t.Fatalf("partition %d key %x minted %d, want 0", p.id, r.keyHash, r.minted)
			}
		}
		if p.keys.timed != 0 {
			t.Fatalf("partition %d counts %d time-ordered keys", p.id, p.keys.timed)
		}
	}
	if keys != 2 {
		t.Fatalf("%d keys loaded, want 2", keys)
	}
	// What loads encodes again as the current version and loads the same.
	again := encodeSnapshotForTest(c, 7)
	c2 := newCore(4, modelTimeout, 1<<40, 1<<20)
	if err := c2.decodeSnapshot(bufio.NewReader(bytes.NewReader(again)), int64(len(again)), 0, pos); err != nil {
		t.Fatal(err)
	}
	// The keys' entries are encoded in map order, so compare them as
	// maps, then the rest of the encoding without them.
	for i := range c.partitions {
		k1, k2 := &c.partitions[i].keys, &c2.partitions[i].keys
		if !slices.Equal(k1.ring[k1.head:], k2.ring[k2.head:]) || !maps.Equal(k1.entries, k2.entries) {
			t.Fatalf("partition %d: the keys written again do not load the same", i)
		}
		clear(k1.entries)
		clear(k2.entries)
	}
	if !bytes.Equal(encodeSnapshotForTest(c2, 7), encodeSnapshotForTest(c, 7)) {
		t.Fatal("a version 3 snapshot written again does not load the same")
	}
}

// TestKeyMintedSurvivesRecordAndSnapshot checks that a time-ordered key's
// minting time round-trips through an OrderPlaced event and a snapshot, and
// that replay files the key as time-ordered.
func TestKeyMintedSurvivesRecordAndSnapshot(t *testing.T) {
	const minted = int64(1_750_000_000_123)
	ev := Event{Kind: EventOrderPlaced, Partition: 1, At: 5, OrderID: newOrderID(1, 1), BuyerID: "u", KeyHash: 0xabc1, RequestHash: 9, KeyMinted: minted,
		Items: []Item{{SKUID: "s", Quantity: 1, UnitPrice: 100}}}
	rec := appendEvent(appendRecordHeader(nil, recordVersionV3), &ev, 0, recordVersionV3)
	finishRecord(rec, 1)
	var got int64
	if err := DecodeRecord(rec, 4, func(ev *Event) error { got = ev.KeyMinted; return nil }); err != nil || got != minted {
		t.Fatalf("decoded KeyMinted %d (%v), want %d", got, err, minted)
	}

	h := newHarness(4)
	h.do(Command{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "Brand", Country: "US"}})
	h.do(Command{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", BrandID: "b", Kind: MerchantFactory}})
	h.do(Command{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Title: "T", Category: "c", Price: 100, Stock: 10}})
	p := h.c.partitions[h.c.merchantPartition("m")]
	// Replay of an event with KeyMinted files the key as time-ordered.
	ev = Event{Kind: EventOrderPlaced, Partition: p.id, At: 5, OrderID: newOrderID(p.id, 1), BuyerID: "u", KeyHash: 0xabc1, RequestHash: 9, KeyMinted: minted,
		Items: []Item{{ref: newSKURef(p.id, 0), SKUID: "s", Quantity: 1, UnitPrice: 100}}, PayBy: 1 << 40}
	h.c.evolve(p, &ev)
	if n := len(p.keys.ring); n != 1 || p.keys.ring[0].minted != minted || p.keys.timed != 1 {
		t.Fatalf("after replay: ring %+v timed %d, want the key minted at %d", p.keys.ring, p.keys.timed, minted)
	}
	data := encodeSnapshotForTest(h.c, 7)
	c := newCore(4, modelTimeout, 1<<40, 1<<20)
	pos := make([]journal.Position, 4)
	if err := c.decodeSnapshot(bufio.NewReader(bytes.NewReader(data)), int64(len(data)), 0, pos); err != nil {
		t.Fatal(err)
	}
	q := c.partitions[p.id]
	if len(q.keys.ring) != 1 || q.keys.ring[0].minted != minted || q.keys.timed != 1 {
		t.Fatalf("after the snapshot: ring %+v timed %d, want the key minted at %d", q.keys.ring, q.keys.timed, minted)
	}
}

// TestVersion3KeyFlag checks that a version 3 order's key flag is read as
// written, and that a flag other than 0 and 1, a key hash of 0 behind flag
// 1, or a hash cut short, is a bad record naming the field's first byte.
func TestVersion3KeyFlag(t *testing.T) {
	ev := Event{Kind: EventOrderPlaced, Partition: 1, At: 5, OrderID: newOrderID(1, 1), BuyerID: "u", PayBy: 9,
		Items: []Item{{SKUID: "s", Quantity: 1, UnitPrice: 100}}}
	// The flag follows the record's header, the event's kind, partition,
	// time and seq, the buyer "u", four empty strings and the pay-by time.
	const flagAt = recordHeaderBytes + 1 + 2 + 1 + 1 + 2 + 4 + 1
	for _, tc := range []struct {
		name    string
		keyHash uint64
		patch   func(rec []byte) []byte
		// bad is the error's end, naming the field and its offset; ""
		// for a good record.
		bad string
	}{
		{"no key", 0, nil, ""},
		{"key", 0xabc1, nil, ""},
		{"flag 2", 0, func(rec []byte) []byte { rec[flagAt] = 2; return rec }, fmt.Sprintf("bad key flag 2 at byte %d", flagAt)},
		{"zero hash", 0xabc1, func(rec []byte) []byte { clear(rec[flagAt+1 : flagAt+9]); return rec }, fmt.Sprintf("zero key hash at byte %d", flagAt+1)},
		{"short hash", 0xabc1, func(rec []byte) []byte { return rec[:flagAt+5] }, fmt.Sprintf("short uint64 at byte %d", flagAt+1)},
	} {
		ev := ev
		ev.KeyHash, ev.RequestHash = tc.keyHash, 9
		rec := appendEvent(appendRecordHeader(nil, recordVersionV3), &ev, 0, recordVersionV3)
		finishRecord(rec, 1)
		if want := byte(min(tc.keyHash, 1)); rec[flagAt] != want {
			t.Fatalf("%s: flag byte %d, want %d", tc.name, rec[flagAt], want)
		}
		if tc.patch != nil {
			rec = tc.patch(rec)
		}
		var got uint64
		err := DecodeRecord(rec, 4, func(ev *Event) error { got = ev.KeyHash; return nil })
		switch {
		case tc.bad != "" && (!errors.Is(err, ErrBadRecord) || !strings.HasSuffix(err.Error(), tc.bad)):
			t.Errorf("%s: decoded with %v, want a bad record ending %q", tc.name, err, tc.bad)
		case tc.bad == "" && (err != nil || got != tc.keyHash):
			t.Errorf("%s: key hash %x (%v), want %x", tc.name, got, err, tc.keyHash)
		}
	}
}

// TestRecordVersionWritten checks that Config.RecordVersion decides the
// version of the records an engine writes (a rolling upgrade's nodes write
// version 2), that recovery reads records of either version, an order's
// key among them, and that Validate refuses a version the engine does not
// write.
func TestRecordVersionWritten(t *testing.T) {
	for _, v := range []int{-1, 1, 4} {
		if err := (&Config{Dir: "d", RecordVersion: v}).Validate(); err == nil {
			t.Errorf("RecordVersion %d validated", v)
		}
	}
	dir := t.TempDir()
	written := 0 // records of the runs before
	var first OrderID
	for run, v := range []int{2, 0, 2} {
		e, err := Open(Config{Dir: dir, Partitions: 4, Workers: 1, NoSync: true, SnapshotEveryBytes: -1, Logger: quiet, RecordVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		if run == 0 {
			testCatalog(t, e, 1, 1, 100)
		}
		b := NewBatch(0)
		b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", IdempotencyKey: "k", RequestHash: 9, Items: []Item{{SKUID: "s0-0", Quantity: 1}}}})
		b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-0", Quantity: 1}}}})
		mustBatch(t, e, b)
		// The keyed order is the first one whatever the version of the
		// record recovery read it from.
		if r := &b.Requests[0].Result; run == 0 {
			first = r.OrderID
		} else if r.OrderID != first || !r.Replayed {
			t.Fatalf("run %d: the key's order %v (replayed %v), want %v", run, r.OrderID, r.Replayed, first)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		// Without snapshots, recovery reads every record.
		if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
			t.Fatal(err)
		}
		want := byte(cmp.Or(v, recordVersionDefault))
		versions := journalVersions(t, filepath.Join(dir, "journal"))
		for i, got := range versions[written:] {
			if got != want {
				t.Fatalf("run %d (RecordVersion %d): record %d of version %d, want %d", run, v, written+i, got, want)
			}
		}
		if len(versions) == written {
			t.Fatalf("run %d wrote no record", run)
		}
		written = len(versions)
	}
}

// journalVersions returns the version byte of every record of the file
// journal in dir.
func journalVersions(t *testing.T, dir string) []byte {
	t.Helper()
	j, err := journal.Open(journal.Config{Dir: dir, NoSync: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var versions []byte
	if err := j.Replay(0, func(_ journal.Position, rec []byte) error {
		versions = append(versions, rec[0])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return versions
}

// goldenV3Events are the events of testdata/compat/record_v3.bin, a
// record of version 3: every kind, times at both ends of int64 (the
// difference between them wraps around) and one earlier than the one
// before, orders with a time-ordered key, another key and none.
func goldenV3Events() []Event {
	const t0 = 1762790400000000000 // 2025-11-11 00:00 +08:00
	line := func(p int, slot uint32, sku string, quantity int32, price int64) Item {
		return Item{ref: newSKURef(p, slot), SKUID: sku, Quantity: quantity, UnitPrice: price, Amount: int64(quantity) * price}
	}
	placed := func(p int, at int64, seq uint64, buyer, channel, deal string, key, request uint64, minted int64, items ...Item) Event {
		ev := Event{Kind: EventOrderPlaced, Partition: p, At: at, OrderID: newOrderID(p, seq), BuyerID: buyer, MerchantID: "m",
			Channel: channel, Region: "CN-ZJ", DealID: deal, Items: items, PayBy: at + 15*60e9, KeyHash: key, RequestHash: request, KeyMinted: minted}
		for _, it := range items {
			ev.Total += it.Amount
		}
		return ev
	}
	return []Event{
		{Kind: EventBrandUpserted, Partition: 3, At: math.MinInt64, Brand: Brand{ID: "b", Name: "Brand", Country: "US", FirstFestival: 2019, Emerging: true, LastYearGMV: 5}},
		{Kind: EventBrandUpserted, Partition: 1, At: math.MaxInt64, Brand: Brand{ID: "b2", Name: "Other", Country: "CN", FirstFestival: 2009}},
		{Kind: EventMerchantUpserted, Partition: 0, At: t0, Merchant: Merchant{ID: "m", Name: "Shop", BrandID: "b", Kind: MerchantFactory, Industry: "toys", Region: "CN-ZJ"}},
		{Kind: EventSKUUpserted, Partition: 0, At: t0, SKUSlot: 0, SKU: SKU{ID: "s", MerchantID: "m", BrandID: "b", Title: "T", Category: "c", Price: 100, Stock: 10}},
		{Kind: EventSKUUpserted, Partition: 0, At: t0 + 1, SKUSlot: 1, SKU: SKU{ID: "s2", MerchantID: "m", BrandID: "b", Title: "Two", Category: "c", Price: 2500, Stock: 3}},
		{Kind: EventStockAdjusted, Partition: 0, At: t0 + 1, SKUSlot: 1, SKUID: "s2", Delta: -1},
		placed(0, t0+1000, 1, "u", "live:x", "", hashString(compatTimedKey)|1, 9, 1_762_790_400_000, line(0, 0, "s", 2, 100), line(0, 1, "s2", 1, 2500)),
		placed(0, t0+1000, 2, "u2", "app", "", 0xfeed, 7, 0, line(0, 0, "s", 1, 100)),
		placed(0, t0+1000, 3, "u3", "", "", 0, 0, 0, line(0, 1, "s2", 1, 2500)),
		{Kind: EventOrderPaid, Partition: 0, At: t0 + 2000, OrderID: newOrderID(0, 1)},
		{Kind: EventParcelScanned, Partition: 0, At: t0 + 2000, OrderID: newOrderID(0, 1), ParcelStatus: ParcelPickedUp, Location: "Hangzhou hub", CarrierCode: "PU", ScanAt: -5},
		{Kind: EventParcelScanned, Partition: 0, At: t0 + 3000, OrderID: newOrderID(0, 1), ParcelStatus: ParcelInTransit, Location: "Shanghai", ScanAt: math.MaxInt64},
		{Kind: EventOrderCancelled, Partition: 0, At: t0 + 3000, OrderID: newOrderID(0, 2)},
		{Kind: EventOrderExpired, Partition: 0, At: t0 + 15*60e9 + 1000, OrderID: newOrderID(0, 3)},
		{Kind: EventChannelPut, Partition: 2, At: t0 + 15*60e9 + 1000, LiveChannel: Channel{ID: "c", Title: "Live", Host: "H", StartsAt: math.MinInt64, EndsAt: math.MaxInt64}},
		{Kind: EventDealPut, Partition: 0, At: t0 + 15*60e9 + 1000, SKUSlot: 0, Deal: Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 50, Stock: 3, StartsAt: t0, EndsAt: t0 + 3600e9, LimitPerBuyer: 2}},
		placed(0, t0+15*60e9+1000, 4, "u", "live:c", "d", 0, 0, 0, line(0, 0, "s", 1, 50)),
		{Kind: EventDealPut, Partition: 0, At: t0 + 15*60e9 + 1000, SKUSlot: 0, Deal: Deal{ID: "d2", ChannelID: "c", SKUID: "s", Price: 60, Stock: 1, StartsAt: t0, EndsAt: t0 + 1}},
		// An earlier time than the event's before: concurrent batches'
		// times are only roughly in order.
		{Kind: EventDealEnded, Partition: 0, At: t0 + 15*60e9 + 997, SKUSlot: 0, SKUID: "s", DealID: "d2", Delta: 1},
		{Kind: EventDealEnded, Partition: 0, At: t0 + 3600e9, SKUSlot: 0, SKUID: "s", DealID: "d", Delta: 2, Last: true},
	}
}

// TestVersion3GoldenRecord checks that the version 3 record of
// testdata/compat decodes to goldenV3Events, and that the engine still
// writes those events to exactly its bytes: a change of the layout needs a
// new version.
func TestVersion3GoldenRecord(t *testing.T) {
	rec, err := os.ReadFile("testdata/compat/record_v3.bin")
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != recordVersionV3 {
		t.Fatalf("golden record of version %d, want %d", rec[0], recordVersionV3)
	}
	want := goldenV3Events()
	var got []string
	if err := DecodeRecord(rec, 4, func(ev *Event) error {
		got = append(got, fmt.Sprintf("%+v", *ev))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Fatalf("event %d missing, want %+v", i, want[i])
		case i >= len(want):
			t.Fatalf("event %d %s, want none", i, got[i])
		case got[i] != fmt.Sprintf("%+v", want[i]):
			t.Fatalf("event %d\n%s\nwant\n%+v", i, got[i], want[i])
		}
	}
	out := appendRecordHeader(nil, recordVersionV3)
	var prevAt int64
	for i := range want {
		out = appendEvent(out, &want[i], prevAt, recordVersionV3)
		prevAt = want[i].At
	}
	finishRecord(out, len(want))
	if !bytes.Equal(out, rec) {
		t.Fatalf("the golden events encode to\n%x\nthe golden record is\n%x", out, rec)
	}
}
