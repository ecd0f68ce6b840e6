package logistics

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/fest-platform/fest/internal/engine"
)

const t0 = int64(1_605_024_000) * 1e9 // 2020-11-11 00:00 +08:00, in unix ns

// feed applies events as the runner does, one record each.
type feed struct {
	t   *testing.T
	l   *Logistics
	pos uint64
}

func (f *feed) apply(evs ...engine.Event) {
	f.t.Helper()
	for i := range evs {
		if err := f.l.Apply(&evs[i]); err != nil {
			f.t.Fatalf("apply %v: %v", evs[i].Kind, err)
		}
	}
	f.pos++
	f.l.Commit(f.pos, evs[len(evs)-1].At)
}

func merchant(id, region string) engine.Event {
	return engine.Event{Kind: engine.EventMerchantUpserted, At: t0, Merchant: engine.Merchant{ID: id, Region: region}}
}

func placed(id engine.OrderID, merchant, region string, at int64) engine.Event {
	return engine.Event{Kind: engine.EventOrderPlaced, Partition: id.Partition(), At: at, OrderID: id, MerchantID: merchant, Region: region}
}

func ended(kind engine.EventKind, id engine.OrderID, at int64) engine.Event {
	return engine.Event{Kind: kind, Partition: id.Partition(), At: at, OrderID: id}
}

func scanned(id engine.OrderID, s engine.ParcelStatus, location, code string, at int64) engine.Event {
	return engine.Event{Kind: engine.EventParcelScanned, Partition: id.Partition(), At: at, OrderID: id, ParcelStatus: s, Location: location, CarrierCode: code, ScanAt: at - int64(time.Second)}
}

func newFeed(t *testing.T, cfg Config) *feed {
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &feed{t: t, l: l}
}

// TestParcelExactlyForPaidOrders: paid orders get one parcel each, routed;
// pending, cancelled and expired orders none.
func TestParcelExactlyForPaidOrders(t *testing.T) {
	f := newFeed(t, Config{})
	f.apply(merchant("mzj", "CN-ZJ"), merchant("mus", "US"))
	paid, pending, cancelled, expired := engine.OrderIDOf(1, 1), engine.OrderIDOf(1, 2), engine.OrderIDOf(2, 1), engine.OrderIDOf(2, 2)
	f.apply(placed(paid, "mzj", "CN-XJ", t0), placed(pending, "mzj", "", t0), placed(cancelled, "mus", "CN-BJ", t0), placed(expired, "mus", "CN-BJ", t0))
	f.apply(ended(engine.EventOrderPaid, paid, t0+5e9), ended(engine.EventOrderCancelled, cancelled, t0+6e9), ended(engine.EventOrderExpired, expired, t0+7e9))
	p, err := f.l.Parcel(paid)
	if err != nil {
		t.Fatalf("parcel of the paid order: %v", err)
	}
	want := Parcel{OrderID: paid, Status: engine.ParcelCreated, Warehouse: "WH-CN-ZJ", Origin: "CN-ZJ", Destination: "CN-XJ",
		CreatedAt: t0 + 5e9, ETA: t0 + 5e9 + int64(5*day), LastScanAt: t0 + 5e9,
		Events: []Event{{Status: engine.ParcelCreated, Location: "WH-CN-ZJ", At: t0 + 5e9}}}
	p.Carrier, p.CarrierName = "", ""
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("parcel:\n%+v\nwant\n%+v", p, want)
	}
	for name, id := range map[string]engine.OrderID{"pending": pending, "cancelled": cancelled, "expired": expired, "unknown": engine.OrderIDOf(9, 9)} {
		if _, err := f.l.Parcel(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s order: %v, want ErrNotFound", name, err)
		}
	}
	if s := f.l.Stats(); s.Parcels != 1 || s.ByStatus[engine.ParcelCreated] != 1 {
		t.Errorf("stats %+v, want one created parcel", s)
	}
	// A payment of an order that is not pending is a journal the
	// projection cannot hold.
	if err := f.l.Apply(&engine.Event{Kind: engine.EventOrderPaid, At: t0, OrderID: paid}); err == nil {
		t.Error("a second payment was applied")
	}
	f.l.Abort()
}

func TestScansAndStale(t *testing.T) {
	now := t0
	f := newFeed(t, Config{Now: func() int64 { return now }})
	id := engine.OrderIDOf(0, 1)
	f.apply(merchant("m", "CN-GD"), placed(id, "m", "CN-GD", t0), ended(engine.EventOrderPaid, id, t0))
	f.apply(scanned(id, engine.ParcelPickedUp, "Guangzhou", "PU", t0+int64(time.Hour)))
	f.apply(scanned(id, engine.ParcelInTransit, "Guangzhou hub", "", t0+int64(2*time.Hour)))
	p, err := f.l.Parcel(id)
	if err != nil {
		t.Fatal(err)
	}
	wantEvents := []Event{
		{Status: engine.ParcelCreated, Location: "WH-CN-GD", At: t0},
		{Status: engine.ParcelPickedUp, Location: "Guangzhou", At: t0 + int64(time.Hour) - 1e9, CarrierCode: "PU"},
		{Status: engine.ParcelInTransit, Location: "Guangzhou hub", At: t0 + int64(2*time.Hour) - 1e9},
	}
	if p.Status != engine.ParcelInTransit || !reflect.DeepEqual(p.Events, wantEvents) || p.ETA != t0+int64(day) {
		t.Fatalf("parcel %+v", p)
	}
	for _, tc := range []struct {
		after time.Duration
		stale bool
		count uint64
	}{
		{71 * time.Hour, false, 0},
		{72*time.Hour - 1, false, 0},
		{72 * time.Hour, true, 0}, // the count waits for the whole minute
		{72*time.Hour + time.Minute, true, 1},
	} {
		now = t0 + int64(2*time.Hour) + int64(tc.after)
		p, _ := f.l.Parcel(id)
		if s := f.l.Stats(); p.Stale != tc.stale || s.Stale != tc.count {
			t.Errorf("%v after the last scan: stale %v count %d, want %v %d", tc.after, p.Stale, s.Stale, tc.stale, tc.count)
		}
	}
	f.apply(scanned(id, engine.ParcelOutForDelivery, "Guangzhou", "", now), scanned(id, engine.ParcelDelivered, "Guangzhou", "OK", now))
	now += int64(30 * day)
	p, _ = f.l.Parcel(id)
	if s := f.l.Stats(); p.Stale || s.Stale != 0 || s.ByStatus[engine.ParcelDelivered] != 1 || s.Parcels != 1 || s.Scans != 4 {
		t.Errorf("delivered parcel: stale %v, stats %+v", p.Stale, s)
	}
}

func TestParcelsPerSecond(t *testing.T) {
	f := newFeed(t, Config{RateWindow: 2 * time.Second})
	f.apply(merchant("m", "CN-GD"))
	seq := uint64(0)
	for sec := range 4 {
		for range 10 * (sec + 1) {
			seq++
			id := engine.OrderIDOf(0, seq)
			at := t0 + int64(sec)*1e9
			f.apply(placed(id, "m", "CN-GD", at), ended(engine.EventOrderPaid, id, at))
		}
	}
	// Now is the last event (second 3): the window is seconds 1 and 2.
	if got := f.l.Stats().ParcelsPerSecond; got != 25 {
		t.Errorf("parcels per second %v, want 25", got)
	}
}

func TestCarrierChoice(t *testing.T) {
	r := newRouter(&Config{Carriers: DefaultCarriers()})
	counts := map[string]int{}
	for i := range uint64(100_000) {
		c := r.carriers[r.carrier(orderHash(uint64(engine.OrderIDOf(int(i%7), i+1))), "CN-ZJ")]
		if !c.serves("CN-ZJ") {
			t.Fatalf("carrier %s does not serve CN-ZJ", c.Code)
		}
		counts[c.Code]++
	}
	// Shares 20:17:16:14:12:8:8 of the domestic carriers, within 2%.
	total := 20 + 17 + 16 + 14 + 12 + 8 + 8
	for _, c := range DefaultCarriers()[:7] {
		want := 100_000 * c.Share / total
		if d := counts[c.Code] - want; d > 2000 || d < -2000 {
			t.Errorf("carrier %s got %d parcels, want about %d", c.Code, counts[c.Code], want)
		}
	}
	if c := r.carriers[r.carrier(orderHash(42), "US")]; c.Code != "cainiao-global" && c.Code != "ems" {
		t.Errorf("an import from the US goes by %s", c.Code)
	}
}

func TestDefaultTransit(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		days     int
	}{
		{"CN-ZJ", "CN-ZJ", 1}, {"CN-ZJ", "CN-SH", 2}, {"CN-ZJ", "CN-GD", 3}, {"CN-ZJ", "CN-XJ", 5},
		{"CN-XZ", "CN-XZ", 1}, {"CN", "CN-BJ", 3}, {"JP", "CN-SH", 4}, {"US", "CN-GD", 10}, {"ZZ", "CN-SH", 13},
	} {
		if got := DefaultTransit(tc.from, tc.to); got != time.Duration(tc.days)*day {
			t.Errorf("%s to %s: %v, want %d days", tc.from, tc.to, got, tc.days)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := newFeed(t, Config{})
	f.apply(merchant("m1", "CN-ZJ"), merchant("m2", "FR"))
	var ids []engine.OrderID
	for i := range 50 {
		id := engine.OrderIDOf(i%3, uint64(i/3+1))
		ids = append(ids, id)
		m := "m1"
		if i%4 == 0 {
			m = "m2"
		}
		f.apply(placed(id, m, "CN-BJ", t0+int64(i)*1e9))
		switch i % 5 {
		case 0, 1, 2:
			f.apply(ended(engine.EventOrderPaid, id, t0+int64(i)*1e9))
		case 3:
			f.apply(ended(engine.EventOrderCancelled, id, t0+int64(i)*1e9))
		}
		if i%5 < 2 {
			f.apply(scanned(id, engine.ParcelPickedUp, "hub", "c", t0+int64(i)*1e9))
		}
		if i%5 == 0 {
			f.apply(scanned(id, engine.ParcelException, "hub "+string(rune('a'+i%26)), "", t0+int64(i)*1e9))
		}
	}
	var buf bytes.Buffer
	if err := f.l.WriteSnapshot(&buf, nil); err != nil {
		t.Fatal(err)
	}
	g := newFeed(t, Config{})
	st, err := g.l.StageSnapshot(bytes.NewReader(buf.Bytes()), 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Install()
	if a, b := f.l.Stats(), g.l.Stats(); a != b {
		t.Fatalf("stats differ: %+v and %+v", a, b)
	}
	for _, id := range ids {
		a, errA := f.l.Parcel(id)
		b, errB := g.l.Parcel(id)
		if errA != errB || !reflect.DeepEqual(a, b) {
			t.Fatalf("parcel %v: %+v %v, restored %+v %v", id, a, errA, b, errB)
		}
	}
	// The restored projection goes on: a pending order is paid.
	last := ids[len(ids)-1] // i = 49: pending
	g.apply(ended(engine.EventOrderPaid, last, t0+100e9))
	if _, err := g.l.Parcel(last); err != nil {
		t.Fatalf("pending order paid after the restore: %v", err)
	}
	// Every truncation is refused.
	for n := 0; n < buf.Len(); n += 1 + buf.Len()/50 {
		if _, err := g.l.StageSnapshot(bytes.NewReader(buf.Bytes()[:n]), 7, nil); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("snapshot cut at %d of %d: %v", n, buf.Len(), err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{StaleAfter: -1},
		{RateWindow: time.Hour},
		{Carriers: []Carrier{{Code: "", Share: 1}}},
		{Carriers: []Carrier{{Code: "a", Share: 0}}},
		{Carriers: []Carrier{{Code: "a", Share: 1}, {Code: "a", Share: 1}}},
		{Transit: map[Route]time.Duration{{From: "a", To: "b"}: 0}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// BenchmarkCreateParcels applies an order's placement and payment per
// iteration, as the runner feeds them: the parcels created per second of
// one core.
func BenchmarkCreateParcels(b *testing.B) {
	l, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	f := &feed{l: l}
	m := merchant("m", "CN-ZJ")
	l.Apply(&m)
	l.Commit(1, t0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := engine.OrderIDOf(i%64, uint64(i/64+1))
		p := placed(id, "m", "CN-BJ", t0+int64(i))
		paid := ended(engine.EventOrderPaid, id, t0+int64(i))
		l.Apply(&p)
		l.Apply(&paid)
		if i%256 == 255 {
			f.pos++
			l.Commit(f.pos, t0+int64(i))
		}
	}
	l.Commit(f.pos+1, t0)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "parcels/s")
}

// BenchmarkApplyScans applies carrier scans to existing parcels.
func BenchmarkApplyScans(b *testing.B) {
	l, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	m := merchant("m", "CN-ZJ")
	l.Apply(&m)
	const parcels = 1 << 16
	for i := range parcels {
		id := engine.OrderIDOf(0, uint64(i+1))
		p, paid := placed(id, "m", "CN-BJ", t0), ended(engine.EventOrderPaid, id, t0)
		l.Apply(&p)
		l.Apply(&paid)
	}
	l.Commit(1, t0)
	hubs := []string{"Hangzhou hub", "Jinan hub", "Beijing hub"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := engine.OrderIDOf(0, uint64(i%parcels+1))
		s := engine.ParcelInTransit
		if i < parcels {
			s = engine.ParcelPickedUp
		}
		ev := scanned(id, s, hubs[i/parcels%3], "IT", t0+int64(i))
		if err := l.Apply(&ev); err != nil {
			b.Fatal(err)
		}
	}
	l.Commit(2, t0)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "scans/s")
}

// TestRecordSizes holds the per-parcel memory the package documents.
func TestRecordSizes(t *testing.T) {
	if n := unsafe.Sizeof(parcel{}); n != 32 {
		t.Errorf("parcel is %d bytes, documented 32", n)
	}
	if n := unsafe.Sizeof(scan{}); n != 24 {
		t.Errorf("scan is %d bytes, documented 24", n)
	}
}

// BenchmarkSnapshot writes and stages a snapshot of a million parcels with
// two scans each: the pause the runner takes for this projection at each
// of its snapshots (the section is rewritten whole).
func BenchmarkSnapshot(b *testing.B) {
	l, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	m := merchant("m", "CN-ZJ")
	l.Apply(&m)
	const parcels = 1_000_000
	for i := range parcels {
		id := engine.OrderIDOf(i%64, uint64(i/64+1))
		evs := []engine.Event{placed(id, "m", "CN-BJ", t0), ended(engine.EventOrderPaid, id, t0),
			scanned(id, engine.ParcelPickedUp, "Hangzhou", "PU", t0), scanned(id, engine.ParcelInTransit, "Hangzhou hub", "", t0)}
		for j := range evs {
			l.Apply(&evs[j])
		}
	}
	l.Commit(1, t0)
	var buf bytes.Buffer
	b.ResetTimer()
	for range b.N {
		buf.Reset()
		if err := l.WriteSnapshot(&buf, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := l.StageSnapshot(bytes.NewReader(buf.Bytes()), 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/parcels, "bytes/parcel")
}
