package festival

import (
	"math"
	"testing"
)

// implied returns the probability of each index that table t draws with:
// its own slot's share plus the shares its aliases give it.
func (t aliasTable) implied() []float64 {
	p := make([]float64, len(t))
	for j, s := range t {
		p[j] += s.prob / float64(len(t))
		if s.alias != int32(j) {
			p[s.alias] += (1 - s.prob) / float64(len(t))
		}
	}
	return p
}

func TestAliasTable(t *testing.T) {
	for _, weights := range [][]float64{
		{1},
		{1, 1, 1, 1},
		{5, 0, 1, 2},
		{1e-9, 1, 1e9},
		{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7},
	} {
		var sum float64
		for _, w := range weights {
			sum += w
		}
		got := newAliasTable(weights).implied()
		for i, w := range weights {
			if math.Abs(got[i]-w/sum) > 1e-9 {
				t.Errorf("weights %v: index %d drawn with %g, want %g", weights, i, got[i], w/sum)
			}
		}
	}
}

// TestStreamMerchantsAsFestival checks that a Stream's one draw of a
// merchant has exactly the distribution of the festival's two (a brand by
// its weight, then one of its merchants).
func TestStreamMerchantsAsFestival(t *testing.T) {
	c := DefaultConfig()
	c.Scale = 0.00001
	c.AmpleStock = true
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	got := m.merchantTable().implied()
	total := m.brandCum[len(m.brandCum)-1]
	prev := 0.0
	for b, ms := range m.merchantsOf {
		brand := (m.brandCum[b] - prev) / total
		prev = m.brandCum[b]
		var sum float64
		for _, mi := range ms {
			sum += m.merchantWeight(mi)
		}
		for _, mi := range ms {
			want := brand * m.merchantWeight(mi) / sum
			if math.Abs(got[mi]-want) > 1e-9+1e-6*want {
				t.Fatalf("merchant %d of brand %d drawn with %g, festival %g", mi, b, got[mi], want)
			}
		}
	}
}
