package gmv

import (
	"cmp"
	"slices"

	"github.com/fest-platform/fest/internal/engine"
)

// reference recomputes the projection the plain way, by strings, to check
// it against: each order's attribution resolved at placement and summed at
// payment.
type reference struct {
	cfg       Config
	brands    map[string]engine.Brand
	merchants map[string]engine.Merchant
	skus      map[string]engine.SKU
	pending   map[engine.OrderID]refOrder
	openKeys  [dimCount][]string // channels and regions in order of arrival
	gmv       [dimCount]map[string]int64
	orders    [dimCount]map[string]uint64
	cells     map[[2]string]int64 // (category, brand)
	total     int64
	placed    uint64
	paid      uint64
	reached   map[Milestone]bool
}

type refOrder struct {
	merchant, channel, region, industry, kind string
	lines                                     []refLine
}

type refLine struct {
	brand, category, country string
	amount                   int64
}

func newReference(cfg Config) *reference {
	r := &reference{
		cfg: cfg.withDefaults(), brands: map[string]engine.Brand{}, merchants: map[string]engine.Merchant{},
		skus: map[string]engine.SKU{}, pending: map[engine.OrderID]refOrder{}, cells: map[[2]string]int64{},
		reached: map[Milestone]bool{},
	}
	for i := range r.gmv {
		r.gmv[i], r.orders[i] = map[string]int64{}, map[string]uint64{}
	}
	return r
}

func (r *reference) openKey(d Dimension, k string) string {
	if slices.Contains(r.openKeys[d], k) {
		return k
	}
	if len(r.openKeys[d]) >= r.cfg.OpenKeysMax {
		if !slices.Contains(r.openKeys[d], OtherKey) {
			r.openKeys[d] = append(r.openKeys[d], OtherKey)
		}
		return OtherKey
	}
	r.openKeys[d] = append(r.openKeys[d], k)
	return k
}

func (r *reference) apply(ev *engine.Event) {
	switch ev.Kind {
	case engine.EventBrandUpserted:
		r.brands[ev.Brand.ID] = ev.Brand
	case engine.EventMerchantUpserted:
		r.merchants[ev.Merchant.ID] = ev.Merchant
	case engine.EventSKUUpserted:
		r.skus[ev.SKU.ID] = ev.SKU
	case engine.EventOrderPlaced:
		m := r.merchants[ev.MerchantID]
		o := refOrder{merchant: m.ID, channel: r.openKey(DimChannel, ev.Channel), region: r.openKey(DimRegion, ev.Region), industry: m.Industry, kind: m.Kind.String()}
		for _, it := range ev.Items {
			s := r.skus[it.SKUID]
			o.lines = append(o.lines, refLine{brand: s.BrandID, category: s.Category, country: r.brands[s.BrandID].Country, amount: it.Amount})
		}
		r.pending[ev.OrderID] = o
		r.placed++
	case engine.EventOrderPaid:
		o := r.pending[ev.OrderID]
		delete(r.pending, ev.OrderID)
		r.paid++
		var total int64
		for _, l := range o.lines {
			total += l.amount
		}
		r.total += total
		r.add(DimMerchant, o.merchant, total, ev.At)
		r.add(DimChannel, o.channel, total, ev.At)
		r.add(DimRegion, o.region, total, ev.At)
		r.add(DimIndustry, o.industry, total, ev.At)
		r.add(DimKind, o.kind, total, ev.At)
		counted := map[[2]string]bool{}
		for _, l := range o.lines {
			for d, k := range map[Dimension]string{DimBrand: l.brand, DimCategory: l.category, DimCountry: l.country} {
				r.gmv[d][k] += l.amount
				if !counted[[2]string{d.String(), k}] {
					counted[[2]string{d.String(), k}] = true
					r.orders[d][k]++
				}
			}
			r.cells[[2]string{l.category, l.brand}] += l.amount
			r.milestones(DimBrand, l.brand, ev.At)
		}
	case engine.EventOrderCancelled, engine.EventOrderExpired:
		delete(r.pending, ev.OrderID)
	}
}

func (r *reference) add(d Dimension, k string, amount int64, at int64) {
	r.gmv[d][k] += amount
	r.orders[d][k]++
	if d == DimChannel {
		r.milestones(d, k, at)
	}
}

func (r *reference) milestones(d Dimension, k string, at int64) {
	for _, t := range r.cfg.MilestoneThresholds {
		m := Milestone{Kind: d, Key: k, Threshold: t}
		found := false
		for have := range r.reached {
			if have.Kind == d && have.Key == k && have.Threshold == t {
				found = true
			}
		}
		if !found && r.gmv[d][k] >= t {
			m.ReachedAt = at
			r.reached[m] = true
		}
	}
}

// rows returns a dimension's rows with an order, largest first.
func (r *reference) rows(d Dimension) []Row {
	var rows []Row
	for k, n := range r.orders[d] {
		if n == 0 && r.gmv[d][k] == 0 {
			continue
		}
		rows = append(rows, Row{Key: k, GMV: r.gmv[d][k], Orders: n})
	}
	slices.SortFunc(rows, func(a, b Row) int {
		if c := cmp.Compare(b.GMV, a.GMV); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return rows
}

func (r *reference) brandCounts() BrandCounts {
	c := BrandCounts{Total: len(r.brands)}
	leaders := map[string]string{} // category → brand
	for k, v := range r.cells {
		cat, b := k[0], k[1]
		lead, ok := leaders[cat]
		if !ok || v > r.cells[[2]string{cat, lead}] || (v == r.cells[[2]string{cat, lead}] && b < lead) {
			leaders[cat] = b
		}
	}
	leading := map[string]bool{}
	for _, b := range leaders {
		leading[b] = true
	}
	for id, b := range r.brands {
		g := r.gmv[DimBrand][id]
		selling := r.orders[DimBrand][id] > 0
		foreign := b.Country != DomesticCountry
		first := b.FirstFestival == r.cfg.FestivalYear
		count(&c.Foreign, foreign)
		count(&c.FirstTime, first)
		count(&c.Emerging, b.Emerging)
		count(&c.Selling, selling)
		count(&c.ForeignSelling, foreign && selling)
		count(&c.FirstTimeSelling, first && selling)
		count(&c.EmergingSelling, b.Emerging && selling)
		count(&c.EmergingTopCategory, b.Emerging && leading[id])
		count(&c.EmergingBeatLastYear, b.Emerging && b.LastYearGMV > 0 && g > b.LastYearGMV)
		grew := b.LastYearGMV > 0 && g > 11*b.LastYearGMV
		count(&c.Grew1000, grew)
		count(&c.EmergingGrew1000, b.Emerging && grew)
		count(&c.OverThreshold, g >= r.cfg.MilestoneThresholds[0])
	}
	return c
}
