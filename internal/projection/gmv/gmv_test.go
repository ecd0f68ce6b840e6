package gmv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
	"pgregory.net/rapid"
)

// testStart is the event time of the streams the tests generate.
var testStart = time.Date(2020, 11, 11, 0, 0, 0, 0, time.UTC)

// testConfig has thresholds a test's few orders cross and a small bound on
// the channels and regions, so that OtherKey is exercised.
func testConfig(now *time.Time) Config {
	return Config{
		MilestoneThresholds: []int64{50_000, 200_000},
		OpenKeysMax:         3,
		Now:                 func() time.Time { return *now },
	}
}

// tb is what the helpers need of *testing.T, *testing.B and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func mustNew(t tb, cfg Config) *Projection {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("new projection: %v", err)
	}
	return p
}

// stream generates a random event stream: catalog upserts, placements
// (only of what exists), payments, cancellations and expiries of pending
// orders.
type stream struct {
	brands, merchants []string
	skus              []string
	pending           []engine.OrderID
	nextOrder         uint64
	at                int64
}

func (s *stream) next(t *rapid.T) engine.Event {
	s.at += rapid.Int64Range(0, 2e9).Draw(t, "step")
	ev := engine.Event{At: s.at}
	kind := rapid.IntRange(0, 9).Draw(t, "kind")
	switch {
	case kind == 0 || len(s.brands) == 0:
		id := rapid.SampledFrom([]string{"b1", "b2", "b3", "b4", "b5"}).Draw(t, "brand")
		ev.Kind = engine.EventBrandUpserted
		ev.Brand = engine.Brand{
			ID: id, Name: "Brand " + id, Country: rapid.SampledFrom([]string{"CN", "US", "JP"}).Draw(t, "country"),
			FirstFestival: rapid.Int32Range(2019, 2020).Draw(t, "first"), Emerging: rapid.Bool().Draw(t, "emerging"),
			LastYearGMV: rapid.SampledFrom([]int64{0, 1_000, 30_000, 300_000}).Draw(t, "last"),
		}
		if !slices.Contains(s.brands, id) {
			s.brands = append(s.brands, id)
		}
	case kind == 1 || len(s.merchants) == 0:
		id := rapid.SampledFrom([]string{"m1", "m2", "m3"}).Draw(t, "merchant")
		ev.Kind = engine.EventMerchantUpserted
		ev.Merchant = engine.Merchant{
			ID: id, Name: "Shop " + id, Kind: engine.MerchantKind(rapid.IntRange(1, 3).Draw(t, "mkind")),
			Industry: rapid.SampledFrom([]string{"apparel", "beauty"}).Draw(t, "industry"),
		}
		if !slices.Contains(s.merchants, id) {
			s.merchants = append(s.merchants, id)
		}
	case kind == 2 || len(s.skus) == 0:
		id := rapid.SampledFrom([]string{"s1", "s2", "s3", "s4", "s5", "s6"}).Draw(t, "sku")
		ev.Kind = engine.EventSKUUpserted
		ev.SKU = engine.SKU{
			ID: id, MerchantID: rapid.SampledFrom(s.merchants).Draw(t, "sku merchant"),
			BrandID: rapid.SampledFrom(s.brands).Draw(t, "sku brand"), Category: rapid.SampledFrom([]string{"c1", "c2", "c3"}).Draw(t, "category"),
		}
		if !slices.Contains(s.skus, id) {
			s.skus = append(s.skus, id)
		}
	case kind <= 5 || len(s.pending) == 0:
		s.nextOrder++
		ev.Kind = engine.EventOrderPlaced
		ev.OrderID = engine.OrderID(s.nextOrder)
		ev.MerchantID = rapid.SampledFrom(s.merchants).Draw(t, "order merchant")
		ev.Channel = rapid.SampledFrom([]string{"app", "web", "live:a", "live:b", "live:c"}).Draw(t, "channel")
		ev.Region = rapid.SampledFrom([]string{"", "CN-ZJ", "CN-BJ", "CN-SH"}).Draw(t, "region")
		n := rapid.IntRange(1, 6).Draw(t, "lines")
		for range n {
			it := engine.Item{SKUID: rapid.SampledFrom(s.skus).Draw(t, "line sku"), Quantity: int32(rapid.IntRange(1, 3).Draw(t, "qty"))}
			it.UnitPrice = rapid.Int64Range(0, 60_000).Draw(t, "price")
			it.Amount = it.UnitPrice * int64(it.Quantity)
			ev.Total += it.Amount
			ev.Items = append(ev.Items, it)
		}
		s.pending = append(s.pending, ev.OrderID)
	default:
		i := rapid.IntRange(0, len(s.pending)-1).Draw(t, "which")
		ev.OrderID = s.pending[i]
		s.pending = slices.Delete(s.pending, i, i+1)
		ev.Kind = []engine.EventKind{engine.EventOrderPaid, engine.EventOrderPaid, engine.EventOrderPaid, engine.EventOrderCancelled, engine.EventOrderExpired}[rapid.IntRange(0, 4).Draw(t, "fate")]
	}
	return ev
}

// TestAgainstReference drives the projection, a second one restored from
// snapshots taken in the middle, a third restored from snapshots with side
// files (a catalog chunk, kept from one snapshot to the next while no
// catalog event comes), and the reference with the same random stream, and
// checks that all four agree after every record.
func TestAgainstReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		now := testStart
		cfg := testConfig(&now)
		full, restored, chunked := mustNew(t, cfg), mustNew(t, cfg), mustNew(t, cfg)
		files := memFiles{}
		ref := newReference(cfg)
		var s stream
		s.at = testStart.UnixNano()
		records := rapid.IntRange(1, 80).Draw(t, "records")
		pos := uint64(0)
		for range records {
			n := rapid.IntRange(1, 8).Draw(t, "events")
			pos += uint64(n) * 10
			for range n {
				ev := s.next(t)
				ev.Position = pos
				ref.apply(&ev)
				for _, p := range []*Projection{full, restored, chunked} {
					if err := p.Apply(&ev); err != nil {
						t.Fatalf("apply %v: %v", ev.Kind, err)
					}
				}
			}
			full.Commit(pos, s.at)
			restored.Commit(pos, s.at)
			chunked.Commit(pos, s.at)
			if rapid.IntRange(0, 4).Draw(t, "snapshot") == 0 {
				restored = snapshotRestore(t, restored, cfg, pos)
			}
			switch rapid.IntRange(0, 5).Draw(t, "chunked snapshot") {
			case 0:
				chunked = snapshotRestoreFiles(t, chunked, cfg, pos, files)
			case 1:
				// A snapshot the projection goes on from, as the runner's.
				if err := chunked.WriteSnapshot(io.Discard, files); err != nil {
					t.Fatalf("write snapshot: %v", err)
				}
				chunked.SnapshotDurable()
			}
			now = time.Unix(0, s.at).Add(time.Second)
			checkReference(t, full, ref)
		}
		checkSame(t, full, restored)
		checkSame(t, full, chunked)
	})
}

// snapshotRestore writes p's snapshot and returns a new projection that
// staged and installed it.
func snapshotRestore(t tb, p *Projection, cfg Config, pos uint64) *Projection {
	var buf bytes.Buffer
	if err := p.WriteSnapshot(&buf, nil); err != nil {
		t.Fatalf("write snapshot: %v", err)
	}
	buf.WriteString("next section")
	q := mustNew(t, cfg)
	st, err := q.StageSnapshot(&buf, pos, nil)
	if err != nil {
		t.Fatalf("stage snapshot: %v", err)
	}
	if rest := buf.String(); rest != "next section" {
		t.Fatalf("the stage read into the next section: %q left", rest)
	}
	st.Install()
	return q
}

// snapshotRestoreFiles is snapshotRestore with side files: p writes a
// FESTGV04 section and its catalog chunk to files, which the new
// projection reads.
func snapshotRestoreFiles(t tb, p *Projection, cfg Config, pos uint64, files memFiles) *Projection {
	var buf bytes.Buffer
	if err := p.WriteSnapshot(&buf, files); err != nil {
		t.Fatalf("write snapshot: %v", err)
	}
	p.SnapshotDurable()
	if !bytes.HasPrefix(buf.Bytes(), []byte(snapshotMagic)) {
		t.Fatalf("snapshot with side files starts %q", buf.Bytes()[:8])
	}
	buf.WriteString("next section")
	q := mustNew(t, cfg)
	st, err := q.StageSnapshot(&buf, pos, files)
	if err != nil {
		t.Fatalf("stage snapshot: %v", err)
	}
	if rest := buf.String(); rest != "next section" {
		t.Fatalf("the stage read into the next section: %q left", rest)
	}
	st.Install()
	return q
}

// memFiles keeps side files in memory.
type memFiles map[string][]byte

func (m memFiles) WriteChunk(name string, data []byte) error {
	m[name] = bytes.Clone(data)
	return nil
}

func (m memFiles) ReadChunk(name string) ([]byte, error) {
	data, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", name, fs.ErrNotExist)
	}
	return bytes.Clone(data), nil
}

// TestSnapshotCatalogChunk checks that a snapshot with side files writes
// the catalog chunk only when a catalog event came since the last durable
// one, that the runner's collection finds the chunk it names, and that a
// lost or damaged chunk is refused.
func TestSnapshotCatalogChunk(t *testing.T) {
	now := testStart
	cfg := testConfig(&now)
	p := mustNew(t, cfg)
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c", last: 5}, {id: "b", country: "US", category: "d"}}), 1)
	var id uint64
	sell(t, p, &id, "a", 70_000, 2)
	files := memFiles{}
	write := func(p *Projection) []byte {
		t.Helper()
		var buf bytes.Buffer
		if err := p.WriteSnapshot(&buf, files); err != nil {
			t.Fatal(err)
		}
		p.SnapshotDurable()
		return buf.Bytes()
	}
	stage := func(section []byte, files memFiles) (*Projection, error) {
		t.Helper()
		q := mustNew(t, cfg)
		pos, _ := p.Position()
		st, err := q.StageSnapshot(bytes.NewReader(section), pos, files)
		if err != nil {
			return nil, err
		}
		st.Install()
		return q, nil
	}
	chunkOf := func(section []byte) string {
		t.Helper()
		names, err := p.SnapshotChunks(bytes.NewReader(section))
		if err != nil || len(names) != 1 {
			t.Fatalf("chunks %q, %v; want one", names, err)
		}
		return names[0]
	}
	first := write(p)
	name := chunkOf(first)
	sell(t, p, &id, "b", 30_000, 3)
	second := write(p)
	if got := chunkOf(second); got != name || len(files) != 1 {
		t.Errorf("a snapshot after payments only names %s and leaves %d chunks, want %s alone", got, len(files), name)
	}
	q, err := stage(second, files)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, p, q)
	// The loaded projection's next snapshot names the chunk it loaded.
	sell(t, q, &id, "a", 1_00, 4)
	if got := chunkOf(write(q)); got != name || len(files) != 1 {
		t.Errorf("a loaded projection's snapshot names %s with %d chunks, want %s alone", got, len(files), name)
	}
	// A catalog event makes the next snapshot write a new chunk.
	applyRecord(t, p, []engine.Event{{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: "a", Country: "JP"}}}, 5)
	third := write(p)
	if got := chunkOf(third); got == name || len(files) != 2 {
		t.Errorf("a snapshot after a catalog event names %s with %d chunks, want a new one", got, len(files))
	}
	if q, err = stage(third, files); err != nil {
		t.Fatal(err)
	}
	checkSame(t, p, q)
	// A lost or damaged chunk is refused as a bad snapshot.
	lost := memFiles{}
	if _, err := stage(third, lost); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("lost chunk: %v, want ErrBadSnapshot", err)
	}
	damaged := memFiles{}
	for k, v := range files {
		damaged[k] = bytes.Clone(v)
		damaged[k][len(v)/2] ^= 0x5a
	}
	if _, err := stage(third, damaged); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("damaged chunk: %v, want ErrBadSnapshot", err)
	}
	if _, err := stage(third, nil); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("staged without side files: %v, want ErrBadSnapshot", err)
	}
}

func checkReference(t *rapid.T, p *Projection, ref *reference) {
	tot, err := p.Totals()
	if err != nil {
		t.Fatalf("totals: %v", err)
	}
	if tot.GMV != ref.total || tot.OrdersPlaced != ref.placed || tot.OrdersPaid != ref.paid || tot.OrdersPending != len(ref.pending) {
		t.Fatalf("totals: gmv %d placed %d paid %d pending %d, reference %d %d %d %d",
			tot.GMV, tot.OrdersPlaced, tot.OrdersPaid, tot.OrdersPending, ref.total, ref.placed, ref.paid, len(ref.pending))
	}
	if want := ref.brandCounts(); tot.Brands != want {
		t.Fatalf("brand counts:\n got %+v\nwant %+v", tot.Brands, want)
	}
	p.mu.RLock()
	recounted, merchants := p.st.recountBrands(&p.cfg), p.st.recountMerchants()
	var channelsOver int
	for _, t := range p.st.dims[DimChannel].totals {
		g := t.gmv
		if g >= p.cfg.MilestoneThresholds[0] {
			channelsOver++
		}
	}
	p.mu.RUnlock()
	if tot.Brands != recounted || tot.Merchants != merchants || tot.ChannelsOverThreshold != channelsOver {
		t.Fatalf("kept counts %+v %+v %d, recounted %+v %+v %d", tot.Brands, tot.Merchants, tot.ChannelsOverThreshold, recounted, merchants, channelsOver)
	}
	var lastYear int64
	for _, b := range ref.brands {
		lastYear += b.LastYearGMV
	}
	if tot.LastYearGMV != lastYear {
		t.Fatalf("last year's total %d, reference %d", tot.LastYearGMV, lastYear)
	}
	for _, d := range Dimensions() {
		b, err := p.Breakdown(d, 1000)
		if err != nil {
			t.Fatalf("breakdown %v: %v", d, err)
		}
		want := ref.rows(d)
		if len(b.Rows) != len(want) {
			t.Fatalf("breakdown %v: %d rows, reference %d: %+v, want %+v", d, len(b.Rows), len(want), b.Rows, want)
		}
		var sum int64
		for i, r := range b.Rows {
			if r.Key != want[i].Key || r.GMV != want[i].GMV || r.Orders != want[i].Orders {
				t.Fatalf("breakdown %v row %d: %q %d fen %d orders, reference %q %d fen %d orders", d, i, r.Key, r.GMV, r.Orders, want[i].Key, want[i].GMV, want[i].Orders)
			}
			if d == DimBrand && r.Name != ref.brands[r.Key].Name {
				t.Fatalf("brand %q named %q, reference %q", r.Key, r.Name, ref.brands[r.Key].Name)
			}
			sum += r.GMV
		}
		if sum != b.GMV || b.Rest.Rows != 0 {
			t.Fatalf("breakdown %v: rows add up to %d fen (rest %d rows), total %d", d, sum, b.Rest.Rows, b.GMV)
		}
		// A short top plus its rest still adds up.
		top, _ := p.Breakdown(d, 2)
		sum = top.Rest.GMV
		for _, r := range top.Rows {
			sum += r.GMV
		}
		if sum != top.GMV || len(top.Rows)+top.Rest.Rows != len(want) {
			t.Fatalf("breakdown %v top 2: rows and rest add up to %d fen over %d rows, total %d over %d", d, sum, len(top.Rows)+top.Rest.Rows, top.GMV, len(want))
		}
	}
	ms, _ := p.Milestones()
	got := map[Milestone]bool{}
	for _, m := range ms {
		if got[m] {
			t.Fatalf("milestone %+v twice", m)
		}
		got[m] = true
	}
	if !reflect.DeepEqual(got, ref.reached) {
		t.Fatalf("milestones:\n got %v\nwant %v", got, ref.reached)
	}
}

// checkSame checks that two projections answer every read alike.
func checkSame(t tb, a, b *Projection) {
	t.Helper()
	ta, _ := a.Totals()
	tb, _ := b.Totals()
	if ta != tb {
		t.Fatalf("totals differ:\n%+v\n%+v", ta, tb)
	}
	for _, d := range Dimensions() {
		ba, _ := a.Breakdown(d, 1000)
		bb, _ := b.Breakdown(d, 1000)
		if !reflect.DeepEqual(ba, bb) {
			t.Fatalf("breakdown %v differs:\n%+v\n%+v", d, ba, bb)
		}
	}
	ma, _ := a.Milestones()
	mb, _ := b.Milestones()
	if !slices.Equal(ma, mb) {
		t.Fatalf("milestones differ:\n%+v\n%+v", ma, mb)
	}
	sa, _ := a.Series(SeriesSeconds)
	sb, _ := b.Series(SeriesSeconds)
	if !slices.Equal(sa, sb) {
		t.Fatal("series differ")
	}
	if !maps.Equal(maps.Collect(a.st.pending.All()), maps.Collect(b.st.pending.All())) || !reflect.DeepEqual(a.st.wide, b.st.wide) {
		t.Fatal("pending attributions differ")
	}
}

// catalogEvents is a small catalog: brands with their country, first
// festival, emerging flag and last year's GMV; one merchant; one SKU per
// brand in the category given.
type testBrand struct {
	id, country, category string
	first                 int32
	emerging              bool
	last                  int64
}

func catalogEvents(brands []testBrand) []engine.Event {
	evs := []engine.Event{{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: "m", Name: "Shop", Kind: engine.MerchantFactory, Industry: "apparel"}}}
	for _, b := range brands {
		evs = append(evs,
			engine.Event{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: b.id, Name: b.id, Country: b.country, FirstFestival: b.first, Emerging: b.emerging, LastYearGMV: b.last}},
			engine.Event{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "sku-" + b.id, MerchantID: "m", BrandID: b.id, Category: b.category}})
	}
	return evs
}

// sell places and pays one order of amount fen of brand's SKU.
func sell(t tb, p *Projection, id *uint64, brand string, amount int64, at int64) {
	t.Helper()
	*id++
	evs := []engine.Event{
		{Kind: engine.EventOrderPlaced, At: at, OrderID: engine.OrderID(*id), MerchantID: "m", Channel: "app", Items: []engine.Item{{SKUID: "sku-" + brand, Quantity: 1, UnitPrice: amount, Amount: amount}}, Total: amount},
		{Kind: engine.EventOrderPaid, At: at, OrderID: engine.OrderID(*id)},
	}
	applyRecord(t, p, evs, at)
}

func applyRecord(t tb, p *Projection, evs []engine.Event, at int64) {
	t.Helper()
	pos, _ := p.Position()
	for i := range evs {
		if err := p.Apply(&evs[i]); err != nil {
			t.Fatalf("apply %v: %v", evs[i].Kind, err)
		}
	}
	p.Commit(pos+1, at)
}

func TestGrowth(t *testing.T) {
	tests := []struct {
		name       string
		last, sold int64
		want       float64
		has        bool
	}{
		{"up 26%", 100_00, 126_00, 0.26, true},
		{"flat", 100_00, 100_00, 0, true},
		{"down half", 100_00, 50_00, -0.5, true},
		{"nothing sold", 100_00, 0, -1, true},
		{"no last year", 0, 100_00, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testStart
			p := mustNew(t, testConfig(&now))
			applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c", last: tc.last}}), 1)
			var id uint64
			if tc.sold > 0 {
				sell(t, p, &id, "a", tc.sold, 2)
			}
			tot, _ := p.Totals()
			if tot.HasGrowth != tc.has || (tc.has && !near(tot.Growth, tc.want)) {
				t.Errorf("total growth %v (has %t), want %v (has %t)", tot.Growth, tot.HasGrowth, tc.want, tc.has)
			}
			if tot.LastYearGMV != tc.last {
				t.Errorf("last year's total %d, want %d", tot.LastYearGMV, tc.last)
			}
			b, _ := p.Breakdown(DimBrand, 10)
			if tc.sold == 0 {
				if len(b.Rows) != 0 {
					t.Errorf("a brand that sold nothing has a row: %+v", b.Rows)
				}
				return
			}
			if r := b.Rows[0]; r.HasLastYear != tc.has || (tc.has && !near(r.Growth, tc.want)) || r.LastYearGMV != tc.last {
				t.Errorf("brand row growth %v last year %d (has %t), want %v %d (has %t)", r.Growth, r.LastYearGMV, r.HasLastYear, tc.want, tc.last, tc.has)
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestCounts(t *testing.T) {
	brands := []testBrand{
		{id: "cn-old", country: "CN", category: "shoes", first: 2012, last: 1_000_00},
		{id: "us-new", country: "US", category: "shoes", first: 2020},
		{id: "jp-emerging", country: "JP", category: "bags", first: 2019, emerging: true, last: 10_00},
		{id: "cn-emerging", country: "CN", category: "shoes", first: 2020, emerging: true, last: 500_00},
		{id: "fr-idle", country: "FR", category: "bags", first: 2020, emerging: true, last: 1_00},
	}
	tests := []struct {
		name  string
		sales map[string]int64
		want  BrandCounts
	}{
		{
			name: "nothing sold",
			want: BrandCounts{Total: 5, Foreign: 3, FirstTime: 3, Emerging: 3},
		},
		{
			name:  "emerging brands grow, beat last year and top their category",
			sales: map[string]int64{"cn-old": 900_00, "us-new": 50_00, "jp-emerging": 500_00, "cn-emerging": 600_00},
			want: BrandCounts{Total: 5, Foreign: 3, FirstTime: 3, Emerging: 3, Selling: 4, ForeignSelling: 2, FirstTimeSelling: 2, EmergingSelling: 2,
				// jp-emerging leads bags and grew 50x; cn-old leads shoes;
				// cn-emerging beat its 500 CNY but does not lead.
				EmergingTopCategory: 1, EmergingBeatLastYear: 2, EmergingGrew1000: 1, Grew1000: 1, OverThreshold: 4},
		},
		{
			name:  "an emerging brand that falls short of last year",
			sales: map[string]int64{"cn-emerging": 400_00, "fr-idle": 11_00},
			want: BrandCounts{Total: 5, Foreign: 3, FirstTime: 3, Emerging: 3, Selling: 2, ForeignSelling: 1, FirstTimeSelling: 2, EmergingSelling: 2,
				// fr-idle sold exactly 11x: not over 1,000%.
				EmergingTopCategory: 2, EmergingBeatLastYear: 1, OverThreshold: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testStart
			cfg := testConfig(&now)
			cfg.MilestoneThresholds = []int64{40_00}
			p := mustNew(t, cfg)
			applyRecord(t, p, catalogEvents(brands), 1)
			var id uint64
			for _, b := range brands {
				if v, ok := tc.sales[b.id]; ok {
					sell(t, p, &id, b.id, v, 2)
				}
			}
			tot, _ := p.Totals()
			if tot.Brands != tc.want {
				t.Errorf("counts:\n got %+v\nwant %+v", tot.Brands, tc.want)
			}
		})
	}
}

func TestMilestonesOnce(t *testing.T) {
	now := testStart
	cfg := testConfig(&now)
	cfg.MilestoneThresholds = []int64{100_00, 300_00}
	p := mustNew(t, cfg)
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
	var id uint64
	for i := range 10 {
		sell(t, p, &id, "a", 60_00, int64(10+i))
	}
	ms, _ := p.Milestones()
	// The brand crosses 100 at the 2nd sale and 300 at the 5th; the one
	// channel, "app", likewise.
	want := []Milestone{
		{Kind: DimChannel, Key: "app", Threshold: 100_00, ReachedAt: 11},
		{Kind: DimBrand, Key: "a", Threshold: 100_00, ReachedAt: 11},
		{Kind: DimChannel, Key: "app", Threshold: 300_00, ReachedAt: 14},
		{Kind: DimBrand, Key: "a", Threshold: 300_00, ReachedAt: 14},
	}
	if !slices.Equal(ms, want) {
		t.Errorf("milestones:\n got %+v\nwant %+v", ms, want)
	}
}

func TestInconsistentEvents(t *testing.T) {
	tests := []struct {
		name string
		ev   engine.Event
	}{
		{"payment of an unknown order", engine.Event{Kind: engine.EventOrderPaid, OrderID: 99}},
		{"expiry of an unknown order", engine.Event{Kind: engine.EventOrderExpired, OrderID: 99}},
		{"order of an unknown merchant", engine.Event{Kind: engine.EventOrderPlaced, OrderID: 1, MerchantID: "nope", Items: []engine.Item{{SKUID: "sku-a", Quantity: 1, Amount: 1}}, Total: 1}},
		{"order of an unknown sku", engine.Event{Kind: engine.EventOrderPlaced, OrderID: 1, MerchantID: "m", Items: []engine.Item{{SKUID: "nope", Quantity: 1, Amount: 1}}, Total: 1}},
		{"total not the sum of the lines", engine.Event{Kind: engine.EventOrderPlaced, OrderID: 1, MerchantID: "m", Items: []engine.Item{{SKUID: "sku-a", Quantity: 1, Amount: 1}}, Total: 2}},
		{"sku of an unknown brand", engine.Event{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "x", BrandID: "nope"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := testStart
			p := mustNew(t, testConfig(&now))
			applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
			err := p.Apply(&tc.ev)
			p.Abort()
			if err == nil {
				t.Fatal("applied")
			}
			if _, err := p.Totals(); err != ErrAborted {
				t.Errorf("totals after Abort: %v, want ErrAborted", err)
			}
		})
	}
}

func TestOrdersPerSecondAndSeries(t *testing.T) {
	now := testStart.Add(10 * time.Second)
	cfg := testConfig(&now)
	p := mustNew(t, cfg)
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
	var id uint64
	// 10 orders in each of seconds 5..9, and 7 in the current second 10,
	// which the rate leaves out.
	for sec := 5; sec <= 10; sec++ {
		n := 10
		if sec == 10 {
			n = 7
		}
		for range n {
			sell(t, p, &id, "a", 1_00, testStart.Add(time.Duration(sec)*time.Second).UnixNano())
		}
	}
	tot, _ := p.Totals()
	if tot.OrdersPerSecond != 10 {
		t.Errorf("orders per second %v, want 10", tot.OrdersPerSecond)
	}
	series, _ := p.Series(7)
	var placed []uint64
	for _, s := range series {
		placed = append(placed, s.Placed)
	}
	if want := []uint64{0, 10, 10, 10, 10, 10, 7}; !slices.Equal(placed, want) {
		t.Errorf("series %v, want %v", placed, want)
	}
	if series[6].Unix != now.Unix() || series[6].GMV != 7_00 {
		t.Errorf("last second %+v, want %d with 700 fen", series[6], now.Unix())
	}
}

// TestSnapshotRefusesDamage flips every byte of a snapshot body in turn:
// each must be refused or load a state whose breakdowns add up.
func TestSnapshotRefusesDamage(t *testing.T) {
	now := testStart
	p := mustNew(t, testConfig(&now))
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c", last: 5}, {id: "b", country: "US", category: "d"}}), 1)
	var id uint64
	sell(t, p, &id, "a", 70_000, 2)
	sell(t, p, &id, "b", 30_000, 3)
	var buf bytes.Buffer
	if err := p.WriteSnapshot(&buf, nil); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	pos, _ := p.Position()
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x5a
		st, err := mustNew(t, testConfig(&now)).StageSnapshot(bytes.NewReader(bad), pos, nil)
		if err != nil {
			continue
		}
		if s := st.(*staged).st; s.check(sumCells(s)) != nil {
			t.Fatalf("byte %d: damaged snapshot loaded a state that does not add up", i)
		}
	}
	if _, err := mustNew(t, testConfig(&now)).StageSnapshot(bytes.NewReader(good), pos+1, nil); err == nil {
		t.Error("a snapshot staged at another position")
	}
}

func sumCells(st *state) int64 {
	var s int64
	for _, v := range st.cells.all() {
		s += v
	}
	return s
}

// FuzzSnapshot feeds arbitrary bodies to the decoder: it must never panic
// and what it accepts must encode and decode to the same reads.
func FuzzSnapshot(f *testing.F) {
	now := testStart
	p := mustNew(f, testConfig(&now))
	applyRecord(f, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c", last: 5}, {id: "b", country: "US", category: "d", emerging: true}}), 1)
	var id uint64
	sell(f, p, &id, "a", 70_000, 2)
	sell(f, p, &id, "b", 300_000, 3_000_000_000)
	f.Add(p.st.encode(nil))
	f.Add(newState().encode(nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := decodeState(body, true)
		if err != nil {
			return
		}
		again, err := decodeState(st.encode(nil), true)
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		st.derive(&p.cfg)
		again.derive(&p.cfg)
		a, b := &Projection{cfg: p.cfg, st: st}, &Projection{cfg: p.cfg, st: again}
		checkSame(t, a, b)
	})
}

// BenchmarkApply measures the steady state of the festival's hot path: a
// placement and a payment per order, one or two lines, in records of 64
// events. In "by-id" the lines name their SKUs by id only, over a catalog
// of 10,000 brands and 100,000 SKUs whose orders come merchant after
// merchant. In "by-slot" they carry the engine slots the router resolved,
// as every line of a journal the engine wrote does (the path of fest
// serve), over the festival's 250,000 brands and as many merchants with
// two SKUs each, ordered from at random, so that the rows an order touches
// are as far from the cache as at the peak. Each order is paid 32 orders
// after its placement, but in "by-slot-lag" 20,000 orders after, as at the
// peak, where its pending value has left the cache by then.
func BenchmarkApply(b *testing.B) {
	b.Run("by-id", func(b *testing.B) { benchmarkApply(b, false, 10_000, 10_000, 10, 32) })
	b.Run("by-slot", func(b *testing.B) { benchmarkApply(b, true, 250_000, 250_000, 2, 32) })
	b.Run("by-slot-lag", func(b *testing.B) { benchmarkApply(b, true, 250_000, 250_000, 2, 20_000) })
}

// benchPartitions is how many engine partitions the by-slot catalog spreads
// its merchants over, as fest serve does.
const benchPartitions = 8

// benchCatalog is a catalog of brands, merchants (the brand of merchant m
// is m % brands) and skusPerMerchant SKUs each, "sku-<m>-<k>", in the
// engine slots benchSKUSlot gives them when slots is set, else found by
// id only.
func benchCatalog(slots bool, brands, merchants, skusPerMerchant int) []engine.Event {
	var cat []engine.Event
	for i := range brands {
		cat = append(cat, engine.Event{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: fmt.Sprintf("brand-%d", i), Name: fmt.Sprintf("Brand %d", i), Country: []string{"CN", "US", "JP", "FR"}[i%4], LastYearGMV: 1_000_00}})
	}
	for m := range merchants {
		cat = append(cat, engine.Event{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: fmt.Sprintf("m-%d", m), Name: fmt.Sprintf("Shop %d", m), Kind: engine.MerchantKind(1 + m%3), Industry: fmt.Sprintf("ind-%d", m%200)}})
		for k := range skusPerMerchant {
			ev := engine.Event{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: fmt.Sprintf("sku-%d-%d", m, k), MerchantID: fmt.Sprintf("m-%d", m), BrandID: fmt.Sprintf("brand-%d", m%brands), Category: fmt.Sprintf("cat-%d", k)}}
			if slots {
				ev.Partition, ev.SKUSlot = m%benchPartitions, benchSKUSlot(m, k, skusPerMerchant)
			} else {
				// Past the engine's partitions: found by id only.
				ev.Partition = partitionsMax
			}
			cat = append(cat, ev)
		}
	}
	return cat
}

// benchSKUSlot is the engine slot of SKU k of merchant m of benchCatalog in
// its partition, m % benchPartitions.
func benchSKUSlot(m, k, skusPerMerchant int) uint32 {
	return uint32((m/benchPartitions)*skusPerMerchant + k)
}

func benchmarkApply(b *testing.B, slots bool, brands, merchants, skusPerMerchant, lagOrders int) {
	now := testStart
	p := mustNew(b, Config{Now: func() time.Time { return now }})
	cat := benchCatalog(slots, brands, merchants, skusPerMerchant)
	skuSlot := func(m, k int) uint32 { return benchSKUSlot(m, k, skusPerMerchant) }
	applyRecord(b, p, cat, 1)
	// A ring of orders: each is placed, then paid lagOrders orders later,
	// so the pending map holds a steady lagOrders.
	const ring = 1 << 16
	merchantOf := make([]int, ring)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range merchantOf {
		merchantOf[i] = i % merchants
		if slots {
			merchantOf[i] = rng.IntN(merchants)
		}
	}
	type order struct {
		place engine.Event
		pay   engine.Event
	}
	orders := make([]order, ring)
	channels := []string{"app", "web", "live:1", "live:2", "live:3"}
	for i := range orders {
		m := merchantOf[i]
		ks := []int{i % skusPerMerchant}
		if i%3 == 0 {
			ks = append(ks, (i+1)%skusPerMerchant)
		}
		var items []engine.Item
		var total int64
		for j, k := range ks {
			it := engine.Item{SKUID: fmt.Sprintf("sku-%d-%d", m, k), Quantity: 1, UnitPrice: 199_00, Amount: 199_00}
			if j > 0 {
				it.Quantity, it.UnitPrice, it.Amount = 2, 50_00, 100_00
			}
			if slots {
				resolveForBench(b, &it, m%benchPartitions, skuSlot(m, k))
			}
			total += it.Amount
			items = append(items, it)
		}
		orders[i].place = engine.Event{Kind: engine.EventOrderPlaced, MerchantID: fmt.Sprintf("m-%d", m), Channel: channels[i%len(channels)], Region: "CN-ZJ", Items: items, Total: total}
		orders[i].pay = engine.Event{Kind: engine.EventOrderPaid}
	}
	const recordEvents = 64
	at := testStart.UnixNano()
	pos := uint64(10)
	seq := uint64(0)
	events := 0
	apply := func(ev *engine.Event) {
		if err := p.Apply(ev); err != nil {
			b.Fatal(err)
		}
		events++
		if events%recordEvents == 0 {
			pos++
			p.Commit(pos, at)
		}
	}
	// orderID numbers order seq of the ring in its merchant's partition,
	// in sequence there as the engine numbers them.
	orderID := func(seq uint64) engine.OrderID {
		m := merchantOf[seq%ring]
		return engine.OrderIDOf(m%benchPartitions, seq)
	}
	step := func() {
		seq++
		o := &orders[seq%ring]
		at += 1_000
		o.place.OrderID, o.place.At = orderID(seq), at
		apply(&o.place)
		if seq > uint64(lagOrders) {
			old := &orders[(seq-uint64(lagOrders))%ring]
			old.pay.OrderID, old.pay.At = orderID(seq-uint64(lagOrders)), at
			apply(&old.pay)
		}
	}
	for range 2 * ring {
		step()
	}
	// The catalog's events are garbage now: collect them before the
	// measure, which would otherwise count the collector's marking.
	cat = nil
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPUNanos()
	for b.Loop() {
		step()
	}
	cpu = processCPUNanos() - cpu
	b.StopTimer()
	// Each iteration applies two events (a placement and a payment). The
	// CPU time is the process's, which on a shared machine is steadier
	// than the wall clock.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/event")
	b.ReportMetric(float64(cpu)/float64(2*b.N), "cpu-ns/event")
}

// BenchmarkSnapshot measures WriteSnapshot over the festival's catalog
// (250,000 brands, as many merchants, two SKUs each) with 200,000 orders
// paid and 50,000 pending: "whole" without side files (the FESTGV03
// section, the whole state), "steady" with them once a snapshot is durable
// and no catalog event came since (the section without the catalog, as at
// the peak).
func BenchmarkSnapshot(b *testing.B) {
	now := testStart
	p := mustNew(b, Config{Now: func() time.Time { return now }})
	const brands, merchants, skusPerMerchant = 250_000, 250_000, 2
	applyRecord(b, p, benchCatalog(true, brands, merchants, skusPerMerchant), 1)
	rng := rand.New(rand.NewPCG(3, 4))
	at := testStart.UnixNano()
	var seqs [benchPartitions]uint64
	var evs []engine.Event
	for i := range 250_000 {
		m, k := rng.IntN(merchants), rng.IntN(skusPerMerchant)
		it := engine.Item{SKUID: fmt.Sprintf("sku-%d-%d", m, k), Quantity: 1, UnitPrice: 199_00, Amount: 199_00}
		resolveForBench(b, &it, m%benchPartitions, benchSKUSlot(m, k, skusPerMerchant))
		seqs[m%benchPartitions]++
		id := engine.OrderIDOf(m%benchPartitions, seqs[m%benchPartitions])
		at += 1_000
		evs = append(evs[:0], engine.Event{Kind: engine.EventOrderPlaced, At: at, OrderID: id, MerchantID: fmt.Sprintf("m-%d", m), Channel: "app", Region: "CN-ZJ", Items: []engine.Item{it}, Total: it.Amount})
		if i%5 != 0 {
			evs = append(evs, engine.Event{Kind: engine.EventOrderPaid, At: at, OrderID: id})
		}
		applyRecord(b, p, evs, at)
	}
	write := func(b *testing.B, files projection.Files) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := p.WriteSnapshot(&buf, files); err != nil {
				b.Fatal(err)
			}
			p.SnapshotDurable()
		}
		b.ReportMetric(float64(buf.Len()), "section-bytes")
	}
	b.Run("whole", func(b *testing.B) { write(b, nil) })
	b.Run("steady", func(b *testing.B) {
		files := memFiles{}
		if err := p.WriteSnapshot(io.Discard, files); err != nil {
			b.Fatal(err)
		}
		p.SnapshotDurable()
		write(b, files)
	})
}

// resolveForBench marks a line as resolved by the router to slot of
// partition, as the journal's decoder does: the engine keeps the field
// unexported, so the benchmark sets it through its known layout (the top
// bit marks a resolved reference, then the partition, then the slot) and
// checks that the engine reads back the slot, failing rather than
// measuring the by-id path should that layout change.
func resolveForBench(b *testing.B, it *engine.Item, partition int, slot uint32) {
	f, ok := reflect.TypeFor[engine.Item]().FieldByName("ref")
	if !ok || f.Type.Kind() != reflect.Uint64 {
		b.Fatal("engine.Item has no ref field of 64 bits")
	}
	*(*uint64)(unsafe.Add(unsafe.Pointer(it), f.Offset)) = 1<<63 | uint64(partition)<<32 | uint64(slot)
	if got, ok := it.SKUSlot(); !ok || got != slot {
		b.Fatalf("resolved line reads slot %d, %v; want %d", got, ok, slot)
	}
}

// BenchmarkTotals measures GET /v1/gmv's read at the festival's catalog
// size (250,000 brands, 40 categories), which holds the read lock and so
// delays the next record for as long.
func BenchmarkTotals(b *testing.B) {
	now := testStart
	p := mustNew(b, Config{Now: func() time.Time { return now }})
	var cat []engine.Event
	cat = append(cat, engine.Event{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: "m", Kind: engine.MerchantFactory}})
	for i := range 250_000 {
		id := fmt.Sprintf("brand-%d", i)
		cat = append(cat,
			engine.Event{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: id, Country: []string{"CN", "US"}[i%2], Emerging: i%100 == 0, LastYearGMV: 100}},
			engine.Event{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "sku-" + id, MerchantID: "m", BrandID: id, Category: fmt.Sprintf("c%d", i%40)}})
	}
	applyRecord(b, p, cat, 1)
	var id uint64
	for i := range 250_000 {
		sell(b, p, &id, fmt.Sprintf("brand-%d", i), int64(1+i%1000), 2)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Totals(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBreakdownBrands measures the top 20 of 250,000 selling brands,
// a read the dashboard makes every 2 seconds.
func BenchmarkBreakdownBrands(b *testing.B) {
	now := testStart
	p := mustNew(b, Config{Now: func() time.Time { return now }})
	var cat []engine.Event
	cat = append(cat, engine.Event{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: "m", Kind: engine.MerchantFactory}})
	for i := range 250_000 {
		id := fmt.Sprintf("brand-%d", i)
		cat = append(cat,
			engine.Event{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: id, Country: "CN"}},
			engine.Event{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "sku-" + id, MerchantID: "m", BrandID: id, Category: "c"}})
	}
	applyRecord(b, p, cat, 1)
	var id uint64
	for i := range 250_000 {
		sell(b, p, &id, fmt.Sprintf("brand-%d", i), int64(1+(i*7919)%100_000), 2)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Breakdown(DimBrand, 20); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMilestonesBound checks the bound on the milestones kept: past it a
// milestone is counted, not kept, and the others stay.
func TestMilestonesBound(t *testing.T) {
	now := testStart
	cfg := testConfig(&now)
	cfg.MilestoneThresholds = []int64{100_00}
	cfg.MilestonesMax = 1
	p := mustNew(t, cfg)
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
	var id uint64
	sell(t, p, &id, "a", 200_00, 5)
	ms, _ := p.Milestones()
	tot, _ := p.Totals()
	if len(ms) != 1 || ms[0].Kind != DimChannel || tot.MilestonesDropped != 1 {
		t.Errorf("milestones %+v, %d dropped; want the channel's kept and the brand's dropped", ms, tot.MilestonesDropped)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"a rate window of whole seconds", Config{RateWindow: 10 * time.Second}, true},
		{"a rate window of half a second", Config{RateWindow: 500 * time.Millisecond}, false},
		{"a rate window past the series", Config{RateWindow: 2 * time.Hour}, false},
		{"a negative rate", Config{USDRate: -1}, false},
		{"a threshold of zero", Config{MilestoneThresholds: []int64{0}}, false},
		{"too many thresholds", Config{MilestoneThresholds: make([]int64, 17)}, false},
		{"a negative key bound", Config{OpenKeysMax: -1}, false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %t", tc.name, err, tc.ok)
		}
	}
}

// TestPeakSecond places orders whose event times arrive out of order
// (as concurrent batches on the rehearsal clock do): the busiest second and
// its count are exact, a tie keeps the second that reached the count first,
// and a snapshot keeps the peak.
func TestPeakSecond(t *testing.T) {
	now := testStart.Add(time.Hour)
	cfg := testConfig(&now)
	p := mustNew(t, cfg)
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
	at := func(sec int) int64 {
		return testStart.Add(time.Duration(sec)*time.Second + 300*time.Millisecond).UnixNano()
	}
	var id uint64
	// Seconds 3, 7, 5, then more of 3 after 7 and 5, and 7 catching up.
	for _, step := range []struct{ sec, n int }{{3, 4}, {7, 5}, {5, 2}, {3, 2}, {7, 1}, {5, 6}} {
		for range step.n {
			sell(t, p, &id, "a", 1_00, at(step.sec))
		}
	}
	tot, _ := p.Totals()
	// 3: 6, 7: 6, 5: 8.
	if want := testStart.Unix() + 5; tot.PeakSecond != want || tot.PeakOrders != 8 {
		t.Errorf("peak second %d with %d orders, want %d with 8", tot.PeakSecond, tot.PeakOrders, want)
	}
	q := mustNew(t, cfg)
	applyRecord(t, q, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
	id = 0
	for _, step := range []struct{ sec, n int }{{3, 4}, {7, 6}, {3, 2}} {
		for range step.n {
			sell(t, q, &id, "a", 1_00, at(step.sec))
		}
	}
	if tot, _ := q.Totals(); tot.PeakSecond != testStart.Unix()+7 || tot.PeakOrders != 6 {
		t.Errorf("tie: peak second %d with %d orders, want second 7 (first to reach 6)", tot.PeakSecond-testStart.Unix(), tot.PeakOrders)
	}
	pos, _ := p.Position()
	checkSame(t, p, snapshotRestore(t, p, cfg, pos))
	// A FESTGV02 section (no peak) takes its peak from the series it holds.
	body := p.st.encode(nil)
	suffix := binary.AppendUvarint(binary.AppendVarint(nil, p.st.peak.unix), p.st.peak.placed)
	old, err := decodeState(body[:len(body)-len(suffix)], false)
	if err != nil {
		t.Fatalf("a FESTGV02 section: %v", err)
	}
	if old.peak != p.st.peak {
		t.Errorf("peak from a FESTGV02 section %+v, want %+v", old.peak, p.st.peak)
	}
	empty := mustNew(t, cfg)
	if tot, _ := empty.Totals(); tot.PeakSecond != 0 || tot.PeakOrders != 0 {
		t.Errorf("no orders: peak %d with %d", tot.PeakSecond, tot.PeakOrders)
	}
}
