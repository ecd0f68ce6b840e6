package festival

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"testing"
)

var (
	once   sync.Once
	shared *Model
	errNew error
)

// model is the default festival at scale 0.0001, built once for the tests.
func model(t *testing.T) *Model {
	t.Helper()
	once.Do(func() { shared, errNew = New(DefaultConfig()) })
	if errNew != nil {
		t.Fatal(errNew)
	}
	return shared
}

// digest hashes a model's catalog and orders.
func digest(m *Model) uint64 {
	h := fnv.New64a()
	for _, b := range m.Brands {
		h.Write([]byte(b.ID + b.Country + b.Category))
		h.Write([]byte{byte(b.LastYearGMV), byte(b.LastYearGMV >> 8), byte(b.LastYearGMV >> 16)})
	}
	for _, s := range m.SKUs {
		h.Write([]byte{byte(s.Price), byte(s.Price >> 8), byte(s.Stock), byte(s.Merchant)})
	}
	for _, o := range m.Orders {
		h.Write([]byte{byte(o.AtMs), byte(o.AtMs >> 8), byte(o.Buyer), byte(o.Merchant), byte(o.Items[0].SKU), byte(o.Fate), byte(o.Channel)})
	}
	return h.Sum64()
}

func TestSameSeedSameFestival(t *testing.T) {
	a := model(t)
	b, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if digest(a) != digest(b) {
		t.Fatal("the same seed gave two different festivals")
	}
	c := DefaultConfig()
	c.Seed++
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Orders {
		if o := &a.Orders[i]; a.Region(o) != a.BuyerRegion(o.Buyer) {
			t.Fatalf("order %d: region %s, its buyer's %s", i, a.Region(o), a.BuyerRegion(o.Buyer))
		}
	}
	if digest(a) == digest(d) {
		t.Fatal("two seeds gave the same festival")
	}
	// Streams too.
	s1, s2 := a.NewStream(5), a.NewStream(5)
	var o1, o2 Order
	for range 1000 {
		s1.Next(&o1)
		s2.Next(&o2)
		if o1 != o2 {
			t.Fatal("the same stream seed gave different orders")
		}
	}
	// Fill one at a time is Next; Fill in batches is deterministic too, and
	// draws the same merchants' SKUs.
	s1, s2 = a.NewStream(6), a.NewStream(6)
	var one [1]Order
	for i := range 500 {
		s1.Fill(one[:])
		s2.Next(&o2)
		if one[0] != o2 {
			t.Fatalf("order %d: Fill of one %+v, Next %+v", i, one[0], o2)
		}
	}
	s1, s2 = a.NewStream(6), a.NewStream(6)
	batch1, batch2 := make([]Order, 500), make([]Order, 500)
	s1.Fill(batch1)
	s2.Fill(batch2)
	for i := range batch1 {
		o := &batch1[i]
		if *o != batch2[i] {
			t.Fatalf("order %d of the same stream's batch differs: %+v, %+v", i, *o, batch2[i])
		}
		if o.NItems == 0 || o.Flash != (o.Items[0].SKU >= 0 && a.SKUs[o.Items[0].SKU].Flash) {
			t.Fatalf("order %d: %+v", i, *o)
		}
		if a.Region(o) != a.BuyerRegion(o.Buyer) {
			t.Fatalf("order %d: region %s, its buyer's %s", i, a.Region(o), a.BuyerRegion(o.Buyer))
		}
		for _, it := range o.Lines() {
			if a.SKUs[it.SKU].Merchant != o.Merchant {
				t.Fatalf("order %d: sku %d of merchant %d in an order of merchant %d", i, it.SKU, a.SKUs[it.SKU].Merchant, o.Merchant)
			}
		}
	}
}

// TestCalibration: every published figure holds on the model's own plan,
// at the default scale and at the smallest.
func TestCalibration(t *testing.T) {
	check := func(t *testing.T, m *Model) {
		figs := m.Figures(m.Plan())
		if len(figs) < 15 {
			t.Fatalf("%d figures", len(figs))
		}
		if ok, bad := FiguresOK(figs); !ok {
			t.Fatalf("calibration missed: %v", bad)
		}
	}
	t.Run("0.0001", func(t *testing.T) { check(t, model(t)) })
	t.Run("min", func(t *testing.T) {
		c := DefaultConfig()
		c.Scale = MinScale
		c.Seed = 11
		m, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		check(t, m)
	})
}

// TestModelShape checks properties the driver relies on.
func TestModelShape(t *testing.T) {
	m := model(t)
	var last int64 = -1
	for i := range m.Orders {
		o := &m.Orders[i]
		if o.AtMs < last {
			t.Fatalf("order %d out of time order", i)
		}
		last = o.AtMs
		if o.NItems < 1 || o.NItems > MaxItems {
			t.Fatalf("order %d has %d items", i, o.NItems)
		}
		for _, it := range o.Lines() {
			if m.SKUs[it.SKU].Merchant != o.Merchant {
				t.Fatalf("order %d mixes merchants", i)
			}
			if m.SKUs[it.SKU].Flash != o.Flash {
				t.Fatalf("order %d: flash sku in a regular order or the reverse", i)
			}
		}
	}
	if last >= FestivalSeconds*1000 {
		t.Fatalf("order at %d ms, past the festival", last)
	}
	// Regular stock covers every placed order: only flash SKUs sell out.
	demand := make([]int64, len(m.SKUs))
	for i := range m.Orders {
		for _, it := range m.Orders[i].Lines() {
			demand[it.SKU] += int64(it.Qty)
		}
	}
	for i, s := range m.SKUs {
		if !s.Flash && demand[i] > s.Stock {
			t.Fatalf("sku %s: demand %d over stock %d", s.ID, demand[i], s.Stock)
		}
		if s.Flash && demand[i] <= s.Stock {
			t.Fatalf("flash sku %s: demand %d does not exceed stock %d", s.ID, demand[i], s.Stock)
		}
	}
	// Mean paid order value is about 215 CNY.
	p := m.Plan()
	if v := float64(p.GMV) / float64(p.PaidOrders) / 100; math.Abs(v-214.7) > 0.05*214.7 {
		t.Fatalf("mean paid order %.2f CNY", v)
	}
}

func TestValidate(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.Scale = 0 },
		func(c *Config) { c.Scale = 1 },
		func(c *Config) { c.PayShare = 0 },
		func(c *Config) { c.CancelShare = 0.5 },
		func(c *Config) { c.BigChannels = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("invalid config %+v validated", c)
		}
	}
	if _, err := NewFlash(1, 0, 10); err == nil {
		t.Error("flash with no buyers")
	}
}

// boardOf is the board a server that counted exactly t would show.
func boardOf(m *Model, t *Tally) *Board {
	b := &Board{GMVFen: t.GMV, GMVUSDCents: int64(math.Round(float64(t.GMV) / cnyPerUSD)), PaidOrders: t.PaidOrders,
		Brands: len(m.Brands), BrandGMV: map[string]int64{}, ChannelGMV: map[string]int64{}, Complete: true,
		EmergingTopCategory: m.emergingTopCategory(t)}
	var last int64
	for i, br := range m.Brands {
		g := t.BrandGMV[i]
		last += br.LastYearGMV
		if br.Country != "CN" {
			b.ForeignBrands++
		}
		if br.FirstFestival == Published.FestivalYear {
			b.FirstTimeBrands++
		}
		if g > 0 {
			b.BrandGMV[br.ID] = g
		}
		if br.Emerging && g > br.LastYearGMV {
			b.EmergingBeatLastYear++
			if g > 11*br.LastYearGMV {
				b.EmergingGrew1000++
			}
		}
	}
	b.Growth = float64(t.GMV)/float64(last) - 1
	for i, g := range t.ChannelGMV {
		b.ChannelGMV["live:"+m.Channels[i].ID] = g
	}
	industries := map[string]bool{}
	for _, mc := range m.Merchants {
		switch mc.Kind {
		case "factory":
			b.Factories++
			b.ExportMerchants++
		case "trader":
			b.ExportMerchants++
		}
		industries[mc.Industry] = true
	}
	b.Industries = len(industries)
	b.CountryOrder = m.CountryOrder(t)
	return b
}

// TestFiguresWithBoard checks that a board equal to the plan reproduces
// every figure the server can tell, and that a board that is off is told.
func TestFiguresWithBoard(t *testing.T) {
	m := model(t)
	plan := m.Plan()
	tests := []struct {
		name    string
		change  func(b *Board)
		missing string // the figure the server then misses
	}{
		{name: "the plan"},
		{name: "a tenth of the GMV lost", change: func(b *Board) { b.GMVFen = b.GMVFen * 9 / 10 }, missing: "GMV (CNY)"},
		{name: "one emerging leader fewer", change: func(b *Board) { b.EmergingTopCategory-- }, missing: "emerging brands that top their category"},
		{name: "two countries swapped", change: func(b *Board) { b.CountryOrder[0], b.CountryOrder[1] = b.CountryOrder[1], b.CountryOrder[0] }, missing: "foreign GMV by country"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := boardOf(m, plan)
			if tc.change != nil {
				tc.change(b)
			}
			for _, f := range m.FiguresWithBoard(plan, b) {
				told := f.Server != nil || f.Text != ""
				if !told {
					if !strings.HasPrefix(f.ServerText, "n/a") {
						t.Errorf("%s: no server value and no reason", f.Name)
					}
					continue
				}
				if want := f.Name != tc.missing; f.ServerOK != want {
					t.Errorf("%s: server ok %t, want %t (server %v %q, target %v)", f.Name, f.ServerOK, want, f.Server, f.ServerText, f.Target)
				}
			}
		})
	}
}

// ampleModel is the default catalog with stock for any run.
func ampleModel(b *testing.B) *Model {
	c := DefaultConfig()
	c.AmpleStock = true
	m, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkStreamNext draws midnight orders from the default catalog (at
// the default scale: 250,000 brands), the generator's own cost per order.
func BenchmarkStreamNext(b *testing.B) {
	m := ampleModel(b)
	s := m.NewStream(1)
	var o Order
	b.ReportAllocs()
	for b.Loop() {
		s.Next(&o)
	}
}

// BenchmarkStreamFill is BenchmarkStreamNext in batches of 1,000, as the
// load driver draws them; ns/op is per order.
func BenchmarkStreamFill(b *testing.B) {
	m := ampleModel(b)
	s := m.NewStream(1)
	batch := make([]Order, 1000)
	b.ReportAllocs()
	for b.Loop() {
		s.Fill(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/order")
}

// TestModelBuyerID checks that the precomputed ids are the package's
// spelling and that reading one allocates nothing.
func TestModelBuyerID(t *testing.T) {
	c := DefaultConfig()
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int32{0, 1, 9, 10, 12345, int32(m.Buyers - 1)} {
		want := "u" + fmt.Sprintf("%08d", i)
		if got := m.BuyerID(i); got != want {
			t.Errorf("Model.BuyerID(%d) = %q, want %q", i, got, want)
		}
		if got := BuyerID(i); got != want {
			t.Errorf("BuyerID(%d) = %q, want %q", i, got, want)
		}
	}
	var sink string
	if n := testing.AllocsPerRun(1000, func() { sink = m.BuyerID(int32(len(sink)) % 1000) }); n != 0 {
		t.Errorf("Model.BuyerID allocates %.1f times per call", n)
	}
}

// BenchmarkStreamNextBuyerID draws an order and spells its buyer's id, the
// generator's cost per order as the load driver pays it: "package" formats
// the id per order (BuyerID), "model" reads the precomputed one.
func BenchmarkStreamNextBuyerID(b *testing.B) {
	m := ampleModel(b)
	var sink string
	for _, bc := range []struct {
		name string
		id   func(int32) string
	}{{"package", BuyerID}, {"model", m.BuyerID}} {
		b.Run(bc.name, func(b *testing.B) {
			s := m.NewStream(1)
			var o Order
			b.ReportAllocs()
			for b.Loop() {
				s.Next(&o)
				sink = bc.id(o.Buyer)
			}
		})
	}
	_ = sink
}
