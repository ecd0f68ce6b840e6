package gmv

import (
	"math"
	"slices"
)

// Totals is the festival's running totals at one journal position.
type Totals struct {
	GMV             int64 // fen, paid orders
	GMVUSD          int64 // US cents, at Config.USDRate
	OrdersPlaced    uint64
	OrdersPaid      uint64
	OrdersPending   int
	OrdersPerSecond float64 // placed, over Config.RateWindow of whole seconds before now
	// LastYearGMV is the sum of the brands' last_year_gmv, the total to
	// beat; Growth is GMV over it, minus one, when it is positive.
	LastYearGMV int64
	Growth      float64
	HasGrowth   bool

	Brands    BrandCounts
	Merchants MerchantCounts
	// ChannelsOverThreshold counts the channels at or over the first
	// milestone threshold.
	ChannelsOverThreshold int
	MilestonesDropped     uint64

	Position uint64 // journal position of the last record applied
	At       int64  // its event time, unix ns (0 before any)

	// PeakSecond is the busiest second by orders placed (by event time,
	// unix seconds; 0 before any order) and PeakOrders its count.
	PeakSecond int64
	PeakOrders uint64
}

// BrandCounts are the festival's brand figures. "Selling" is having at
// least one paid order.
type BrandCounts struct {
	Total            int // in the catalog
	Foreign          int // country not CN
	FirstTime        int // first_festival is Config.FestivalYear
	Emerging         int
	Selling          int
	ForeignSelling   int
	FirstTimeSelling int
	EmergingSelling  int
	// EmergingTopCategory counts the emerging brands that lead at least
	// one category by GMV.
	EmergingTopCategory int
	// EmergingBeatLastYear counts the emerging brands whose GMV is above
	// their last_year_gmv (which must be positive).
	EmergingBeatLastYear int
	// EmergingGrew1000 and Grew1000 count the emerging brands, and all
	// brands, whose GMV is more than 11 times last year's (over +1,000%).
	EmergingGrew1000 int
	Grew1000         int
	// OverThreshold counts the brands at or over the first milestone
	// threshold.
	OverThreshold int
}

// MerchantCounts are the festival's merchant figures.
type MerchantCounts struct {
	Total      int
	Factories  int
	Traders    int
	Industries int // distinct industries of the merchants
}

// Totals returns the running totals. Reads fail with ErrAborted only after
// Abort.
func (p *Projection) Totals() (Totals, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.aborted {
		return Totals{}, ErrAborted
	}
	st := p.st
	t := Totals{
		GMV:           st.gmv,
		GMVUSD:        int64(math.Round(float64(st.gmv) / p.cfg.USDRate)),
		OrdersPlaced:  st.placed,
		OrdersPaid:    st.paid,
		OrdersPending: st.pending.Len(),
		Position:      st.position,
		At:            st.at,
		Brands:        st.brandCounts(),
		Merchants:     st.merchantCounts(),
		LastYearGMV:   st.counts.lastYearGMV,

		ChannelsOverThreshold: st.counts.channelsOver,
		MilestonesDropped:     st.milestonesDropped,

		PeakSecond: st.peak.unix,
		PeakOrders: st.peak.placed,
	}
	if t.LastYearGMV > 0 {
		t.Growth, t.HasGrowth = float64(t.GMV)/float64(t.LastYearGMV)-1, true
	}
	end := p.cfg.Now().Unix()
	window := int64(p.cfg.RateWindow.Seconds())
	var placed uint64
	for u := end - window; u < end; u++ {
		placed += st.placedIn(u)
	}
	t.OrdersPerSecond = float64(placed) / float64(window)
	return t, nil
}

func (st *state) placedIn(unix int64) uint64 {
	if unix < 0 {
		return 0
	}
	if s := &st.series[unix%SeriesSeconds]; s.unix == unix {
		return s.placed
	}
	return 0
}

// Row is one row of a breakdown.
type Row struct {
	Key    string
	Name   string // brand and merchant names; empty for the others
	GMV    int64  // fen
	Orders uint64 // paid orders with a line in the row
	Share  float64
	// LastYearGMV and Growth are a brand's, when its last_year_gmv is
	// positive (HasLastYear).
	LastYearGMV int64
	Growth      float64
	HasLastYear bool
}

// Breakdown is the top rows of one dimension at one journal position.
// Rows holds the rows with a paid order, largest GMV first (the smaller key
// on a tie); Rest sums the rows past the top, so the rows plus Rest add up
// to GMV.
type Breakdown struct {
	By       Dimension
	Rows     []Row
	Rest     Rest
	GMV      int64 // fen, the total at Position
	Position uint64
	At       int64
}

// Rest is what a breakdown's top leaves out.
type Rest struct {
	Rows int
	GMV  int64 // fen
}

// Breakdown returns the top rows of d (top ≥ 1).
func (p *Projection) Breakdown(d Dimension, top int) (Breakdown, error) {
	if d >= dimCount {
		return Breakdown{}, ErrUnknownDimension
	}
	if top < 1 {
		panic("gmv: breakdown of fewer than one row")
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.aborted {
		return Breakdown{}, ErrAborted
	}
	st := p.st
	dm := &st.dims[d]
	b := Breakdown{By: d, GMV: st.gmv, Position: st.position, At: st.at}
	// A bounded insertion into the top: the rows past it are summed.
	best := make([]int32, 0, min(top, len(dm.keys)))
	before := func(a, c int32) bool {
		if dm.totals[a].gmv != dm.totals[c].gmv {
			return dm.totals[a].gmv > dm.totals[c].gmv
		}
		return dm.keys[a] < dm.keys[c]
	}
	for r := range dm.keys {
		r := int32(r)
		if dm.totals[r].orders == 0 && dm.totals[r].gmv == 0 {
			continue
		}
		if len(best) == top {
			last := best[top-1]
			if !before(r, last) {
				b.Rest.Rows++
				b.Rest.GMV += dm.totals[r].gmv
				continue
			}
			b.Rest.Rows++
			b.Rest.GMV += dm.totals[last].gmv
			best = best[:top-1]
		}
		i, _ := slices.BinarySearchFunc(best, r, func(x, y int32) int {
			if before(x, y) {
				return -1
			}
			return 1
		})
		best = slices.Insert(best, i, r)
	}
	b.Rows = make([]Row, len(best))
	for i, r := range best {
		row := Row{Key: dm.keys[r], GMV: dm.totals[r].gmv, Orders: dm.totals[r].orders}
		if st.gmv > 0 {
			row.Share = float64(row.GMV) / float64(st.gmv)
		}
		switch d {
		case DimBrand:
			bi := &st.brands[r]
			row.Name = bi.name
			if bi.lastYearGMV > 0 {
				row.LastYearGMV, row.HasLastYear = bi.lastYearGMV, true
				row.Growth = float64(row.GMV)/float64(bi.lastYearGMV) - 1
			}
		case DimMerchant:
			row.Name = st.merchants[r].name
		}
		b.Rows[i] = row
	}
	return b, nil
}

// Milestones returns the milestones reached, in the order they were.
func (p *Projection) Milestones() ([]Milestone, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.aborted {
		return nil, ErrAborted
	}
	return slices.Clone(p.st.milestones), nil
}

// Second is one second of the series.
type Second struct {
	Unix   int64  // unix seconds
	Placed uint64 // orders placed with their event time in it
	Paid   uint64
	GMV    int64 // fen paid in it
}

// Series returns the last n seconds (at most SeriesSeconds) up to and
// including the current one of the wall clock, oldest first, with zeros
// for seconds without events.
func (p *Projection) Series(n int) ([]Second, error) {
	n = max(0, min(n, SeriesSeconds))
	end := p.cfg.Now().Unix()
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.aborted {
		return nil, ErrAborted
	}
	out := make([]Second, n)
	for i := range out {
		u := end - int64(n-1-i)
		out[i] = Second{Unix: u}
		if u < 0 {
			continue
		}
		if s := &p.st.series[u%SeriesSeconds]; s.unix == u {
			out[i] = Second{Unix: u, Placed: s.placed, Paid: s.paid, GMV: s.gmv}
		}
	}
	return out, nil
}

// FestivalYear is the year whose first-time brands are counted.
func (p *Projection) FestivalYear() int32 { return p.cfg.FestivalYear }

// Thresholds are the milestone thresholds, in fen.
func (p *Projection) Thresholds() []int64 { return slices.Clone(p.cfg.MilestoneThresholds) }
