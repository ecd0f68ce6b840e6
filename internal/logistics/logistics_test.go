package logistics

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
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

// goldenFeed is the state the snapshot tests snapshot (and the one
// testdata/snapshot-v1.bin holds, written by the first layout's code).
func goldenFeed(t *testing.T) (*feed, []engine.OrderID) {
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
	return f, ids
}

// memFiles is an in-memory projection.Files that counts its writes.
type memFiles struct {
	files  map[string][]byte
	writes []string
}

func newMemFiles() *memFiles { return &memFiles{files: map[string][]byte{}} }

func (m *memFiles) WriteChunk(name string, data []byte) error {
	m.files[name] = bytes.Clone(data)
	m.writes = append(m.writes, name)
	return nil
}

func (m *memFiles) ReadChunk(name string) ([]byte, error) {
	d, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(d), nil
}

// snapshot writes f's snapshot at its position and marks it durable.
func (f *feed) snapshot(files *memFiles) []byte {
	f.t.Helper()
	var buf bytes.Buffer
	if err := f.l.WriteSnapshot(&buf, files); err != nil {
		f.t.Fatal(err)
	}
	f.l.SnapshotDurable()
	return buf.Bytes()
}

// restore stages and installs a snapshot into a new projection.
func restore(t *testing.T, section []byte, files projection.Files) *feed {
	t.Helper()
	g := newFeed(t, Config{})
	st, err := g.l.StageSnapshot(bytes.NewReader(section), 7, files)
	if err != nil {
		t.Fatal(err)
	}
	st.Install()
	g.pos = 7
	return g
}

// sameParcels fails unless a and b answer the same for every id.
func sameParcels(t *testing.T, a, b *Logistics, ids []engine.OrderID) {
	t.Helper()
	if sa, sb := a.Stats(), b.Stats(); sa != sb {
		t.Fatalf("stats differ: %+v and %+v", sa, sb)
	}
	for _, id := range ids {
		pa, errA := a.Parcel(id)
		pb, errB := b.Parcel(id)
		if errA != errB || !reflect.DeepEqual(pa, pb) {
			t.Fatalf("parcel %v: %+v %v, restored %+v %v", id, pa, errA, pb, errB)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	f, ids := goldenFeed(t)
	files := newMemFiles()
	section := f.snapshot(files)
	g := restore(t, section, files)
	sameParcels(t, f.l, g.l, ids)
	// The restored projection goes on: a pending order is paid.
	last := ids[len(ids)-1] // i = 49: pending
	g.apply(ended(engine.EventOrderPaid, last, t0+100e9))
	if _, err := g.l.Parcel(last); err != nil {
		t.Fatalf("pending order paid after the restore: %v", err)
	}
	// Every truncation of the section is refused.
	for n := 0; n < len(section); n += 1 + len(section)/50 {
		if _, err := g.l.StageSnapshot(bytes.NewReader(section[:n]), 7, files); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("snapshot cut at %d of %d: %v", n, len(section), err)
		}
	}
	// A chunk lost, cut short or with a byte flipped is refused, naming it.
	for name, data := range files.files {
		for _, damaged := range [][]byte{nil, data[:len(data)-1], flipped(data, len(data)/2)} {
			bad := newMemFiles()
			maps.Copy(bad.files, files.files)
			if damaged == nil {
				delete(bad.files, name)
			} else {
				bad.files[name] = damaged
			}
			_, err := g.l.StageSnapshot(bytes.NewReader(section), 7, bad)
			if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), name) {
				t.Fatalf("chunk %s damaged (%d of %d bytes): %v", name, len(damaged), len(data), err)
			}
		}
	}
}

// failingFiles fails every read as a disk would, without damage.
type failingFiles struct{ *memFiles }

func (failingFiles) ReadChunk(name string) ([]byte, error) {
	return nil, fmt.Errorf("read %s: input/output error", name)
}

// TestSnapshotReadFailureIsNotDamage: a chunk that cannot be read now (an
// I/O error) fails the load without calling the snapshot damaged, so the
// runner leaves it for the next start instead of setting it aside.
func TestSnapshotReadFailureIsNotDamage(t *testing.T) {
	f, _ := goldenFeed(t)
	files := newMemFiles()
	section := f.snapshot(files)
	g := newFeed(t, Config{})
	_, err := g.l.StageSnapshot(bytes.NewReader(section), 7, failingFiles{files})
	if err == nil || errors.Is(err, ErrBadSnapshot) || errors.Is(err, projection.ErrBadSnapshot) {
		t.Fatalf("load with an I/O error: %v, want an error that is not ErrBadSnapshot", err)
	}
}

func flipped(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x10
	return b
}

// TestSnapshotV1 reads a snapshot of the first layout, which an older fest
// left, and writes every chunk at the next snapshot.
func TestSnapshotV1(t *testing.T) {
	v1, err := os.ReadFile("testdata/snapshot-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	f, ids := goldenFeed(t)
	g := restore(t, v1, nil)
	sameParcels(t, f.l, g.l, ids)
	files := newMemFiles()
	g.apply(merchant("m3", "CN-SH")) // a record, so the next snapshot has a position
	g.snapshot(files)
	if len(files.writes) != 3 {
		t.Fatalf("the first snapshot after a v1 load wrote %v, want a chunk of each array", files.writes)
	}
}

// TestSnapshotIncremental checks that a snapshot writes only the chunks
// that changed since the last durable one, and that a snapshot never made
// durable leaves its chunks to the next.
func TestSnapshotIncremental(t *testing.T) {
	f := newFeed(t, Config{})
	f.apply(merchant("m", "CN-ZJ"))
	n := 2*parcelsPerChunk + 10
	var ids []engine.OrderID
	for i := range n {
		id := engine.OrderIDOf(i%4, uint64(i/4+1))
		ids = append(ids, id)
		f.apply(placed(id, "m", "CN-BJ", t0+int64(i)), ended(engine.EventOrderPaid, id, t0+int64(i)))
	}
	files := newMemFiles()
	f.snapshot(files)
	if got := len(files.writes); got != 3+1 {
		t.Fatalf("first snapshot wrote %d chunks (%v), want 3 of parcels and 1 of strings (no scans yet)", got, files.writes)
	}
	files.writes = nil
	f.apply(merchant("m", "CN-ZJ"))
	f.snapshot(files)
	if len(files.writes) != 0 {
		t.Fatalf("a snapshot with no parcel changed wrote %v", files.writes)
	}
	// A scan of a parcel of the first chunk, with a new location: that
	// parcel chunk, the first scan chunk and the string chunk.
	f.apply(scanned(ids[5], engine.ParcelPickedUp, "hub-new", "", t0+int64(n)))
	var buf bytes.Buffer
	if err := f.l.WriteSnapshot(&buf, files); err != nil {
		t.Fatal(err)
	}
	want := []string{"lg-parcels-00000000-", "lg-scans-00000000-", "lg-strings-00000000-"}
	if !prefixes(files.writes, want) {
		t.Fatalf("after one scan the snapshot wrote %v, want %v", files.writes, want)
	}
	// Not made durable: the next snapshot writes those chunks again, with
	// the parcel created since (the last chunk).
	files.writes = nil
	id := engine.OrderIDOf(0, uint64(n))
	ids = append(ids, id)
	f.apply(placed(id, "m", "CN-BJ", t0+int64(n)), ended(engine.EventOrderPaid, id, t0+int64(n)))
	section := f.snapshot(files)
	want = []string{"lg-parcels-00000000-", "lg-parcels-00000002-", "lg-scans-00000000-", "lg-strings-00000000-"}
	if !prefixes(files.writes, want) {
		t.Fatalf("after a snapshot not made durable the next wrote %v, want %v", files.writes, want)
	}
	sameParcels(t, f.l, restore(t, section, files).l, ids)
	// The section's regions and merchants, which snapshots keep encoded
	// from one to the next, follow a merchant that moves and a buyer's
	// region not seen before: a restored projection routes the next
	// orders as the one that went on.
	for i, step := range []engine.Event{merchant("m", "CN-BJ"), placed(engine.OrderIDOf(1, uint64(n)), "m", "CN-XJ", t0+int64(n))} {
		f.apply(step)
		g := restore(t, f.snapshot(files), files)
		id := engine.OrderIDOf(2, uint64(n+i))
		ids = append(ids, id)
		for _, h := range []*feed{f, g} {
			h.apply(placed(id, "m", "CN-XJ", t0+int64(n)), ended(engine.EventOrderPaid, id, t0+int64(n)))
		}
		sameParcels(t, f.l, g.l, ids)
	}
}

func prefixes(names, want []string) bool {
	if len(names) != len(want) {
		return false
	}
	for i := range names {
		if !strings.HasPrefix(names[i], want[i]) {
			return false
		}
	}
	return true
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
	if n := unsafe.Sizeof(parcel{}); n != 40 {
		t.Errorf("parcel is %d bytes, documented 40", n)
	}
	if n := unsafe.Sizeof(scan{}); n != 24 {
		t.Errorf("scan is %d bytes, documented 24", n)
	}
}

// BenchmarkSnapshot writes and stages a snapshot of a million parcels with
// two scans each: the pause the runner takes for this projection at each
// of its snapshots (the section is rewritten whole).
// BenchmarkSnapshot writes and loads the snapshot of a million parcels
// whole (the first snapshot, or one after a load), and then one after 1%
// more parcels were created (the steady state at the peak).
func BenchmarkSnapshot(b *testing.B) {
	l, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	m := merchant("m", "CN-ZJ")
	l.Apply(&m)
	const parcels = 1_000_000
	create := func(i int) {
		id := engine.OrderIDOf(i%64, uint64(i/64+1))
		evs := []engine.Event{placed(id, "m", "CN-BJ", t0), ended(engine.EventOrderPaid, id, t0),
			scanned(id, engine.ParcelPickedUp, "Hangzhou", "PU", t0), scanned(id, engine.ParcelInTransit, "Hangzhou hub", "", t0)}
		for j := range evs {
			l.Apply(&evs[j])
		}
	}
	for i := range parcels {
		create(i)
	}
	pos := uint64(1)
	l.Commit(pos, t0)
	b.Run("whole", func(b *testing.B) {
		var buf bytes.Buffer
		var files *memFiles
		for b.Loop() {
			buf.Reset()
			files = newMemFiles()
			if err := l.WriteSnapshot(&buf, files); err != nil {
				b.Fatal(err)
			}
			if _, err := l.StageSnapshot(bytes.NewReader(buf.Bytes()), pos, files); err != nil {
				b.Fatal(err)
			}
		}
		total := buf.Len()
		for _, d := range files.files {
			total += len(d)
		}
		b.ReportMetric(float64(total)/parcels, "bytes/parcel")
	})
	b.Run("after-1%", func(b *testing.B) {
		// The framework may run a sub-benchmark's function more than once,
		// so each starts from a durable whole snapshot of its own rather
		// than from whatever the last run of "whole" left.
		var buf bytes.Buffer
		if err := l.WriteSnapshot(&buf, newMemFiles()); err != nil {
			b.Fatal(err)
		}
		l.SnapshotDurable()
		next := parcels
		for b.Loop() {
			b.StopTimer()
			for range parcels / 100 {
				create(next)
				next++
			}
			pos++
			l.Commit(pos, t0)
			b.StartTimer()
			buf.Reset()
			if err := l.WriteSnapshot(&buf, newMemFiles()); err != nil {
				b.Fatal(err)
			}
			l.SnapshotDurable()
		}
	})
}
