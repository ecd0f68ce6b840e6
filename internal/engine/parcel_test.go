package engine

import (
	"strconv"
	"testing"
)

// parcelPaths drives a new parcel to each status by allowed scans.
var parcelPaths = map[ParcelStatus][]ParcelStatus{
	ParcelCreated:        nil,
	ParcelPickedUp:       {ParcelPickedUp},
	ParcelInTransit:      {ParcelPickedUp, ParcelInTransit},
	ParcelOutForDelivery: {ParcelPickedUp, ParcelInTransit, ParcelOutForDelivery},
	ParcelDelivered:      {ParcelPickedUp, ParcelInTransit, ParcelOutForDelivery, ParcelDelivered},
	ParcelFailedAttempt:  {ParcelPickedUp, ParcelInTransit, ParcelOutForDelivery, ParcelFailedAttempt},
	ParcelException:      {ParcelException},
	ParcelReturned:       {ParcelException, ParcelReturned},
}

// contractTable is the API contract's transition table, one row per parcel
// status and one column per scan status (picked_up .. returned), written
// out in full so that the test does not share the engine's table.
var contractTable = map[ParcelStatus]string{
	//                      pu it od de fa ex re
	ParcelCreated:        "x  .  .  .  .  x  .",
	ParcelPickedUp:       ".  x  .  .  .  x  .",
	ParcelInTransit:      ".  x  x  .  .  x  .",
	ParcelOutForDelivery: ".  .  .  x  x  x  .",
	ParcelDelivered:      ".  .  .  .  .  .  .",
	ParcelFailedAttempt:  ".  .  x  .  .  x  x",
	ParcelException:      ".  x  .  .  .  .  x",
	ParcelReturned:       ".  .  .  .  .  .  .",
}

func contractAllows(from, to ParcelStatus) bool {
	row := contractTable[from]
	return row[3*int(to-ParcelPickedUp)] == 'x'
}

// parcelHarness returns a harness with one SKU of plenty of stock.
func parcelHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(2)
	for _, cmd := range []Command{
		{Kind: KindUpsertBrand, Brand: &Brand{ID: "b", Name: "B", Country: "CN"}},
		{Kind: KindUpsertMerchant, Merchant: &Merchant{ID: "m", BrandID: "b", Kind: MerchantBrandStore, Region: "CN-ZJ"}},
		{Kind: KindUpsertSKU, SKU: &SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 100, Stock: 1_000_000}},
	} {
		if r := h.do(cmd); !r.OK() {
			t.Fatalf("%v: %v", cmd.Kind, r.Err())
		}
	}
	return h
}

func (h *harness) paidOrder(t *testing.T) OrderID {
	t.Helper()
	r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	if !r.OK() {
		t.Fatalf("place: %v", r.Err())
	}
	if p := h.do(Command{Kind: KindPay, OrderID: r.OrderID, Amount: r.Total}); !p.OK() {
		t.Fatalf("pay: %v", p.Err())
	}
	return r.OrderID
}

func (h *harness) scan(id OrderID, s ParcelStatus, location string) (Result, int) {
	before := len(h.records)
	r := h.do(Command{Kind: KindScanParcel, OrderID: id, Scan: &Scan{Status: s, Location: location, At: h.now}})
	return r, len(h.records) - before
}

// TestParcelTransitionsExhaustive tries every scan status from every parcel
// status, each at a new location (so it is never a repeat), and checks the
// answer and the recorded events against the contract's table.
func TestParcelTransitionsExhaustive(t *testing.T) {
	h := parcelHarness(t)
	for from := ParcelCreated; from < parcelStatusCount; from++ {
		for to := ParcelPickedUp; to < parcelStatusCount; to++ {
			t.Run(from.String()+"->"+to.String(), func(t *testing.T) {
				id := h.paidOrder(t)
				for i, s := range parcelPaths[from] {
					if r, _ := h.scan(id, s, "path"+strconv.Itoa(i)); !r.OK() {
						t.Fatalf("path to %v: scan %v: %v", from, s, r.Err())
					}
				}
				r, records := h.scan(id, to, "elsewhere")
				want := CodeInvalidState
				if contractAllows(from, to) {
					want = CodeOK
				}
				if ParcelTransitionAllowed(from, to) != contractAllows(from, to) {
					t.Errorf("ParcelTransitionAllowed(%v, %v) = %v, the contract says %v", from, to, !contractAllows(from, to), contractAllows(from, to))
				}
				if r.Code != want {
					t.Fatalf("scan %v from %v: %v, want %v", to, from, r.Code, want)
				}
				wantStatus, wantRecords := from, 0
				if want == CodeOK {
					wantStatus, wantRecords = to, 1
				}
				if records != wantRecords {
					t.Errorf("scan %v from %v wrote %d records, want %d", to, from, records, wantRecords)
				}
				if g := h.do(Command{Kind: KindGetOrder, OrderID: id}); g.ParcelStatus != wantStatus {
					t.Errorf("after scan %v from %v the parcel is %v, want %v", to, from, g.ParcelStatus, wantStatus)
				}
			})
		}
	}
}

// TestParcelRepeatIsIdempotent repeats the last scan of every status: it
// succeeds, writes nothing and changes nothing, even where the status could
// not follow itself.
func TestParcelRepeatIsIdempotent(t *testing.T) {
	h := parcelHarness(t)
	for status, path := range parcelPaths {
		if len(path) == 0 {
			continue
		}
		id := h.paidOrder(t)
		for _, s := range path {
			if r, _ := h.scan(id, s, "hz"); !r.OK() {
				t.Fatalf("path to %v: %v", status, r.Err())
			}
		}
		for range 3 {
			r, records := h.scan(id, status, "hz")
			if !r.OK() || records != 0 || r.ParcelStatus != status {
				t.Fatalf("repeat of %v: %v, %d records, parcel %v", status, r.Code, records, r.ParcelStatus)
			}
		}
	}
}

// TestParcelOnlyForPaidOrders scans orders pending, cancelled, expired and
// unknown: none has a parcel.
func TestParcelOnlyForPaidOrders(t *testing.T) {
	h := parcelHarness(t)
	place := func() OrderID {
		r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}})
		if !r.OK() {
			t.Fatalf("place: %v", r.Err())
		}
		return r.OrderID
	}
	pending, cancelled, expired := place(), place(), place()
	h.do(Command{Kind: KindCancel, OrderID: cancelled})
	h.now += 2 * modelTimeout
	h.do(Command{Kind: KindGetOrder, OrderID: expired}) // expiry runs
	pending = place()
	for name, id := range map[string]OrderID{"pending": pending, "cancelled": cancelled, "expired": expired, "unknown": newOrderID(1, 999)} {
		for to := ParcelPickedUp; to < parcelStatusCount; to++ {
			if r, records := h.scan(id, to, "hz"); r.Code != CodeNotFound || r.Field != "parcel_id" || records != 0 {
				t.Errorf("scan %v of a %s order: %v %q, %d records", to, name, r.Code, r.Field, records)
			}
		}
		if g := h.do(Command{Kind: KindGetOrder, OrderID: id}); g.ParcelStatus != ParcelNone {
			t.Errorf("%s order has parcel %v", name, g.ParcelStatus)
		}
	}
}

func TestScanValidation(t *testing.T) {
	h := parcelHarness(t)
	id := h.paidOrder(t)
	long := func(n int) string { return string(make([]byte, n)) }
	for _, tc := range []struct {
		name  string
		scan  *Scan
		field string
	}{
		{"no scan", nil, "scan"},
		{"created", &Scan{Status: ParcelCreated, Location: "hz"}, "status"},
		{"none", &Scan{Status: ParcelNone, Location: "hz"}, "status"},
		{"past the end", &Scan{Status: parcelStatusCount, Location: "hz"}, "status"},
		{"no location", &Scan{Status: ParcelPickedUp}, "location"},
		{"long location", &Scan{Status: ParcelPickedUp, Location: long(locationBytesMax + 1)}, "location"},
		{"long carrier code", &Scan{Status: ParcelPickedUp, Location: "hz", CarrierCode: long(carrierCodeBytesMax + 1)}, "carrier_code"},
	} {
		r := h.do(Command{Kind: KindScanParcel, OrderID: id, Scan: tc.scan})
		if r.Code != CodeInvalidArgument || r.Field != tc.field {
			t.Errorf("%s: %v %q, want invalid_argument %q", tc.name, r.Code, r.Field, tc.field)
		}
	}
	if r := h.do(Command{Kind: KindScanParcel, OrderID: id, Scan: &Scan{Status: ParcelPickedUp, Location: long(locationBytesMax), CarrierCode: long(carrierCodeBytesMax)}}); !r.OK() {
		t.Errorf("scan at the bounds: %v", r.Err())
	}
}

// TestParcelSnapshotRoundTrip encodes partitions with parcels in every
// status and decodes them: the state is the same. A version 1 snapshot
// (no parcel section) gives every paid order a created parcel.
func TestParcelSnapshotRoundTrip(t *testing.T) {
	h := parcelHarness(t)
	for status, path := range parcelPaths {
		id := h.paidOrder(t)
		for i, s := range path {
			if r, _ := h.scan(id, s, status.String()+strconv.Itoa(i)); !r.OK() {
				t.Fatalf("path to %v: %v", status, r.Err())
			}
		}
	}
	r := h.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	h.do(Command{Kind: KindCancel, OrderID: r.OrderID})
	h.paidOrder(t)

	restored := newCore(len(h.c.partitions), modelTimeout, 1<<40, 1<<20)
	for i, p := range h.c.partitions {
		if err := restored.decodePartition(restored.partitions[i], encodePartition(nil, p), snapshotVersion); err != nil {
			t.Fatalf("decode partition %d: %v", i, err)
		}
	}
	if got, want := restored.dump(), h.c.dump(); got != want {
		t.Fatalf("restored state differs:\n%s\nlive:\n%s", got, want)
	}

	// A version 1 partition: the same bytes without the parcel section.
	fresh := parcelHarness(t)
	fresh.paidOrder(t)
	r = fresh.do(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s", Quantity: 1}}}})
	fresh.paidOrder(t)
	v1 := newCore(len(fresh.c.partitions), modelTimeout, 1<<40, 1<<20)
	for i, p := range fresh.c.partitions {
		if err := v1.decodePartition(v1.partitions[i], encodePartitionVersion(nil, p, snapshotVersionV1), snapshotVersionV1); err != nil {
			t.Fatalf("decode v1 partition %d: %v", i, err)
		}
	}
	if got, want := v1.dump(), fresh.c.dump(); got != want {
		t.Fatalf("v1 restored state differs:\n%s\nlive:\n%s", got, want)
	}
}

// TestParcelScannedBytesMax encodes the longest scan event the gateway lets
// through: it fits the static bound the worker sizes records by.
func TestParcelScannedBytesMax(t *testing.T) {
	ev := Event{Kind: EventParcelScanned, Partition: partitionsMax - 1, At: -1 << 63, OrderID: newOrderID(partitionsMax-1, orderSeqMask),
		ParcelStatus: ParcelReturned, Location: string(make([]byte, locationBytesMax)), CarrierCode: string(make([]byte, carrierCodeBytesMax)), ScanAt: -1 << 63}
	if n := len(appendEvent(nil, &ev, 0, recordVersionV3)); n > parcelScannedBytesMax {
		t.Fatalf("longest scan event is %d bytes, over the bound of %d", n, parcelScannedBytesMax)
	}
}

func TestParcelIDRoundTrip(t *testing.T) {
	for _, id := range []OrderID{newOrderID(0, 1), newOrderID(7, 123456), newOrderID(partitionsMax-1, orderSeqMask)} {
		s := ParcelID(id)
		got, err := ParseParcelID(s)
		if err != nil || got != id {
			t.Errorf("%v: %q parsed to %v, %v", id, s, got, err)
		}
	}
	for _, bad := range []string{"", "P", "p1", "1", "PP1", "P0", "P-1", "PABC"} {
		if _, err := ParseParcelID(bad); err == nil {
			t.Errorf("ParseParcelID(%q) accepted", bad)
		}
	}
}
