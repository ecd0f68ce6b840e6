package gmv

import "math"

// The festival counts of Totals (foreign brands selling, emerging brands
// topping a category, ...) are kept as they change rather than counted at
// each read: the festival has 250,000 brands and 1.5 million merchants, and
// a read holds the lock that the next record waits for. Each brand
// contributes a set of bits, one per count it is in; whenever something a
// bit depends on changes (an upsert, a payment, a category's leader), the
// brand's bits are computed again and the counts moved by the difference.

// The bits of a brand's contribution, one per count of BrandCounts.
const (
	bitForeign = iota
	bitFirstTime
	bitEmerging
	bitSelling
	bitForeignSelling
	bitFirstTimeSelling
	bitEmergingSelling
	bitEmergingTop
	bitEmergingBeat
	bitEmergingGrew
	bitGrew
	bitOver
	brandBitCount
)

// counts are the kept counts; part of state, derived from the rest of it
// (derive), so not in the snapshot.
type counts struct {
	brandBits []uint16 // per brand row: its bits
	// The brand rows' total.recheck is the GMV (fen) at or past which a
	// payment can change the brand's bits (math.MinInt64 before its first
	// sale: any payment makes it selling). A payment below it moves no
	// count, so it need not read the brand's entry, its leads and its
	// bits: at the peak those were three cache misses per paid line.
	leads       []int32 // per brand row: the categories it leads
	brands      [brandBitCount]int
	lastYearGMV int64 // fen, the sum of the brands'
	domestic    int32 // the row of DomesticCountry in dims[DimCountry], -1 before it exists

	merchantsByKind     []int32 // per kind row
	merchantsByIndustry []int32 // per industry row
	industries          int     // industry rows with a merchant
	channelsOver        int     // channels at or over the first threshold
}

// bitsOf computes brand r's bits.
func (st *state) bitsOf(cfg *Config, r int32) uint16 {
	b := &st.brands[r]
	g := st.dims[DimBrand].totals[r].gmv
	selling := st.dims[DimBrand].totals[r].orders > 0
	foreign := b.country != st.counts.domestic
	first := b.firstFestival == cfg.FestivalYear
	grew := b.lastYearGMV > 0 && g > growthFactor1000*b.lastYearGMV
	var bits uint16
	set := func(bit int, on bool) {
		if on {
			bits |= 1 << bit
		}
	}
	set(bitForeign, foreign)
	set(bitFirstTime, first)
	set(bitEmerging, b.emerging)
	set(bitSelling, selling)
	set(bitForeignSelling, foreign && selling)
	set(bitFirstTimeSelling, first && selling)
	set(bitEmergingSelling, b.emerging && selling)
	set(bitEmergingTop, b.emerging && st.counts.leads[r] > 0)
	set(bitEmergingBeat, b.emerging && b.lastYearGMV > 0 && g > b.lastYearGMV)
	set(bitEmergingGrew, b.emerging && grew)
	set(bitGrew, grew)
	set(bitOver, g >= cfg.MilestoneThresholds[0])
	return bits
}

// refreshBrand moves the counts by the change of brand r's bits.
func (st *state) refreshBrand(cfg *Config, r int32) {
	c := &st.counts
	was, now := c.brandBits[r], st.bitsOf(cfg, r)
	st.dims[DimBrand].totals[r].recheck = st.recheckOf(cfg, r)
	if was == now {
		return
	}
	for bit := range brandBitCount {
		switch mask := uint16(1) << bit; {
		case was&mask != 0 && now&mask == 0:
			c.brands[bit]--
		case was&mask == 0 && now&mask != 0:
			c.brands[bit]++
		}
	}
	c.brandBits[r] = now
}

// recheckOf returns the GMV at or past which brand r's bits can change
// next, for its row's recheck: the bits that depend on its GMV (which only
// grows) flip at last year's GMV, at growthFactor1000 times it, and at the
// first milestone threshold; the rest change only on an upsert or a change
// of a category's leader, which refresh the brand themselves.
func (st *state) recheckOf(cfg *Config, r int32) int64 {
	if st.dims[DimBrand].totals[r].orders == 0 {
		return math.MinInt64
	}
	g, lastYear := st.dims[DimBrand].totals[r].gmv, st.brands[r].lastYearGMV
	next := int64(math.MaxInt64)
	// The same expressions as bitsOf's, so that they agree where they
	// overflow: a bound that is not above g is no bound.
	for _, bound := range [...]int64{lastYear + 1, growthFactor1000*lastYear + 1, cfg.MilestoneThresholds[0]} {
		if bound > g && bound < next {
			next = bound
		}
	}
	return next
}

// addMerchant counts (delta 1) or uncounts (-1) a merchant of kind and
// industry rows.
func (st *state) addMerchant(kind, industry int32, delta int32) {
	c := &st.counts
	for int(kind) >= len(c.merchantsByKind) {
		c.merchantsByKind = append(c.merchantsByKind, 0)
	}
	for int(industry) >= len(c.merchantsByIndustry) {
		c.merchantsByIndustry = append(c.merchantsByIndustry, 0)
	}
	c.merchantsByKind[kind] += delta
	before := c.merchantsByIndustry[industry]
	c.merchantsByIndustry[industry] = before + delta
	switch {
	case before == 0 && delta > 0:
		c.industries++
	case before+delta == 0 && delta < 0:
		c.industries--
	}
}

// derive computes the counts from the rest of a state (after a snapshot
// load).
func (st *state) derive(cfg *Config) {
	st.counts = counts{domestic: -1}
	c := &st.counts
	if r, ok := st.dims[DimCountry].index[DomesticCountry]; ok {
		c.domestic = r
	}
	c.brandBits = make([]uint16, len(st.brands))
	c.leads = make([]int32, len(st.brands))
	for _, b := range st.leaders {
		if b >= 0 {
			c.leads[b]++
		}
	}
	for r := range st.brands {
		c.lastYearGMV += st.brands[r].lastYearGMV
		st.refreshBrand(cfg, int32(r))
	}
	for _, m := range st.merchants {
		st.addMerchant(m.kind, m.industry, 1)
	}
	for _, t := range st.dims[DimChannel].totals {
		g := t.gmv
		if g >= cfg.MilestoneThresholds[0] {
			c.channelsOver++
		}
	}
}

// brandCounts and merchantCounts render the kept counts.
func (st *state) brandCounts() BrandCounts {
	n := &st.counts.brands
	return BrandCounts{
		Total: len(st.brands), Foreign: n[bitForeign], FirstTime: n[bitFirstTime], Emerging: n[bitEmerging],
		Selling: n[bitSelling], ForeignSelling: n[bitForeignSelling], FirstTimeSelling: n[bitFirstTimeSelling],
		EmergingSelling: n[bitEmergingSelling], EmergingTopCategory: n[bitEmergingTop],
		EmergingBeatLastYear: n[bitEmergingBeat], EmergingGrew1000: n[bitEmergingGrew], Grew1000: n[bitGrew],
		OverThreshold: n[bitOver],
	}
}

func (st *state) merchantCounts() MerchantCounts {
	byKind := func(kind string) int {
		if r, ok := st.dims[DimKind].index[kind]; ok && int(r) < len(st.counts.merchantsByKind) {
			return int(st.counts.merchantsByKind[r])
		}
		return 0
	}
	return MerchantCounts{Total: len(st.merchants), Factories: byKind("factory"), Traders: byKind("trader"), Industries: st.counts.industries}
}
