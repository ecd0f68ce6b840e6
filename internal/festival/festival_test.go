package festival

import (
	"hash/fnv"
	"math"
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
