package festival

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Tally counts what happened to a run's orders: the driver adds what the
// server acknowledged, and the model's own plan is one more tally (Plan).
// Figures compares a tally with the published figures.
//
// A Tally is not safe for concurrent use: give each goroutine its own and
// Merge them.
type Tally struct {
	GMV            int64   // fen, paid orders
	PaidOrders     int64   // paid orders
	PlacedOrders   int64   // acknowledged placements
	BrandGMV       []int64 // fen, by brand index
	ChannelGMV     []int64 // fen, by livestream channel index
	PlacedBySecond map[int32]int32
	// brands is PaidAll's scratch: a tally is one goroutine's.
	brands []int32
}

// NewTally returns an empty tally sized for m.
func (m *Model) NewTally() *Tally {
	return &Tally{
		BrandGMV:       make([]int64, len(m.Brands)),
		ChannelGMV:     make([]int64, len(m.Channels)),
		PlacedBySecond: make(map[int32]int32),
	}
}

// Placed counts an acknowledged placement of o.
func (t *Tally) Placed(o *Order) {
	t.PlacedOrders++
	t.PlacedBySecond[int32(o.AtMs/1000)]++
}

// PlacedAll counts acknowledged placements of orders: Placed for each, with
// one map update per run of orders in the same second (a stream's orders
// are all in second 0) rather than one per order.
func (t *Tally) PlacedAll(orders []*Order) {
	for i := 0; i < len(orders); {
		second, n := int32(orders[i].AtMs/1000), int32(1)
		for i+int(n) < len(orders) && int32(orders[i+int(n)].AtMs/1000) == second {
			n++
		}
		t.PlacedOrders += int64(n)
		t.PlacedBySecond[second] += n
		i += int(n)
	}
}

// Paid counts an acknowledged payment of o, of amount fen.
func (t *Tally) Paid(m *Model, o *Order, amount int64) {
	t.PaidOrders++
	t.GMV += amount
	t.BrandGMV[m.BrandOf(o)] += amount
	if o.Channel >= 0 {
		t.ChannelGMV[o.Channel] += amount
	}
}

// PaidAll counts acknowledged payments of orders[i], of amounts[i] fen, as
// Paid does for each, in two passes: the orders' brands, then the sums.
// Both read tables of hundreds of thousands of entries at random, and the
// second read depends on the first: in a pass of independent reads the
// processor has many misses under way at once.
func (t *Tally) PaidAll(m *Model, orders []*Order, amounts []int64) {
	t.brands = slices.Grow(t.brands[:0], len(orders))[:len(orders)]
	for i, o := range orders {
		t.brands[i] = m.BrandOf(o)
	}
	for i, o := range orders {
		amount := amounts[i]
		t.PaidOrders++
		t.GMV += amount
		t.BrandGMV[t.brands[i]] += amount
		if o.Channel >= 0 {
			t.ChannelGMV[o.Channel] += amount
		}
	}
}

// Merge adds u into t.
func (t *Tally) Merge(u *Tally) {
	t.GMV += u.GMV
	t.PaidOrders += u.PaidOrders
	t.PlacedOrders += u.PlacedOrders
	for i, v := range u.BrandGMV {
		t.BrandGMV[i] += v
	}
	for i, v := range u.ChannelGMV {
		t.ChannelGMV[i] += v
	}
	for s, n := range u.PlacedBySecond {
		t.PlacedBySecond[s] += n
	}
}

// Plan is the tally of a run in which every order meets its fate and each
// flash SKU sells exactly its stock to the earliest buyers.
func (m *Model) Plan() *Tally {
	t := m.NewTally()
	left := make(map[int32]int64)
	for _, s := range m.flashSKUs {
		left[s] = m.SKUs[s].Stock
	}
	for i := range m.Orders {
		o := &m.Orders[i]
		if o.Flash {
			s := o.Items[0].SKU
			if left[s] < int64(o.Items[0].Qty) {
				continue // rejected: sold out
			}
			left[s] -= int64(o.Items[0].Qty)
		}
		t.Placed(o)
		if o.Fate == FatePay {
			t.Paid(m, o, m.Total(o))
		}
	}
	return t
}

// Rule is how a simulated figure is compared with its scaled target.
type Rule uint8

// Rules.
const (
	RuleWithin5 Rule = iota + 1 // within ±5%
	RuleExact                   // equal
	RuleAtLeast                 // at least the target ("more than" figures)
	RuleOrder                   // the same order (a ranking)
)

func (r Rule) String() string {
	switch r {
	case RuleWithin5:
		return "±5%"
	case RuleExact:
		return "exact"
	case RuleAtLeast:
		return "at least"
	case RuleOrder:
		return "same order"
	}
	return "?"
}

// Figure is one published figure beside its simulated value.
type Figure struct {
	Name      string  `json:"name"`
	Published string  `json:"published"`
	Target    float64 `json:"target"`    // after scaling
	Simulated float64 `json:"simulated"` // NaN for RuleOrder
	Rule      string  `json:"rule"`
	Text      string  `json:"text,omitempty"` // for RuleOrder: the simulated order
	OK        bool    `json:"ok"`
	// Server is the same figure read from the server's GMV endpoints
	// (Board), when the run had one and the server can tell it; ServerText
	// is the RuleOrder order, or why the server cannot tell; ServerOK is
	// the rule applied to it.
	Server     *float64 `json:"server,omitempty"`
	ServerText string   `json:"server_text,omitempty"`
	ServerOK   bool     `json:"server_ok"`
}

// Board is what a server's GMV endpoints say of a run, to show beside the
// generator's own tally: the server's figures, computed from its journal.
type Board struct {
	GMVFen, GMVUSDCents int64
	PaidOrders          int64
	Brands              int
	ForeignBrands       int
	FirstTimeBrands     int
	// BrandGMV and ChannelGMV are the top rows of the brand and channel
	// breakdowns (fen, by brand id and by channel as the API spells it);
	// Complete is false when rows were left past the top read, so that a
	// count over a threshold is exact only while some row read is below.
	BrandGMV, ChannelGMV map[string]int64
	Complete             bool
	// CountryOrder is the foreign countries by paid GMV, largest first.
	CountryOrder         []string
	EmergingBeatLastYear int
	EmergingGrew1000     int
	EmergingTopCategory  int
	Growth               float64 // 0.26 for +26%
	Factories            int
	ExportMerchants      int // factories and traders
	Industries           int
	// FestivalClock is set when the server ran on the festival's own time
	// (fest serve --rehearsal-clock, each command giving it): its busiest
	// second, PeakAt with PeakOrders placed, is then a festival second.
	// Without it the server's seconds are its wall clock's, which the run
	// compresses, and the peak figures are not the server's to tell.
	FestivalClock bool
	PeakAt        time.Time // zero before any order
	PeakOrders    int64
}

// serverFigure sets f's server value v under f's own rule.
func (f *Figure) serverFigure(v float64, r Rule) {
	f.Server = &v
	f.ServerOK = figure(f.Name, f.Published, f.Target, v, r).OK
}

func figure(name, published string, target, simulated float64, r Rule) Figure {
	f := Figure{Name: name, Published: published, Target: target, Simulated: simulated, Rule: r.String()}
	switch r {
	case RuleWithin5:
		f.OK = math.Abs(simulated-target) <= 0.05*math.Abs(target)
	case RuleExact:
		f.OK = simulated == target
	case RuleAtLeast:
		f.OK = simulated >= target
	}
	return f
}

// usdPerCNYRate is the 2020 festival's own conversion (498.2 billion CNY =
// 74.1 billion USD), the server's default rate.
const cnyPerUSD = 6.7233

// Figures compares t with the published 2020 figures, scaled.
func (m *Model) Figures(t *Tally) []Figure { return m.FiguresWithBoard(t, nil) }

// FiguresWithBoard is Figures with, beside each simulated value, the
// server's own (from b, when not nil).
func (m *Model) FiguresWithBoard(t *Tally, b *Board) []Figure {
	sc := m.Config.Scale
	p := Published
	var figs []Figure
	figs = append(figs,
		figure("GMV (CNY)", "498.2 billion", float64(p.GMVFen)/100*sc, float64(t.GMV)/100, RuleWithin5),
		figure("GMV (USD)", "74.1 billion", float64(p.GMVUSDCents)/100*sc, float64(t.GMV)/100/cnyPerUSD, RuleWithin5),
		figure("paid orders (one parcel each)", "2.32 billion", float64(p.PaidOrders)*sc, float64(t.PaidOrders), RuleWithin5),
	)
	var peak int32
	for _, n := range t.PlacedBySecond {
		peak = max(peak, n)
	}
	figs = append(figs,
		figure("orders in the peak second (11-11 00:00:26)", "583,000", float64(p.PeakOrdersPerSec)*sc, float64(t.PlacedBySecond[PeakSecond]), RuleWithin5),
		figure("busiest second is the peak second", "yes", 1, boolf(t.PlacedBySecond[PeakSecond] == peak && peak > 0), RuleExact),
	)
	var foreign, firstTime int
	for i := range m.Brands {
		if m.Brands[i].Country != "CN" {
			foreign++
		}
		if m.Brands[i].FirstFestival == p.FestivalYear {
			firstTime++
		}
	}
	figs = append(figs,
		figure("brands", "250,000", float64(p.Brands), float64(len(m.Brands)), RuleExact),
		figure("foreign brands", "31,000", float64(p.ForeignBrands), float64(foreign), RuleExact),
		figure("first-time brands", "2,600", float64(p.FirstTimeBrands), float64(firstTime), RuleExact),
	)
	var over, beat, grew int
	var last int64
	for i := range m.Brands {
		b := &m.Brands[i]
		g := t.BrandGMV[i]
		last += b.LastYearGMV
		if g > m.ThresholdFen {
			over++
		}
		if b.Emerging && g > b.LastYearGMV {
			beat++
			if g > 11*b.LastYearGMV {
				grew++
			}
		}
	}
	figs = append(figs,
		figure("brands over 100 million CNY (scaled)", "470+", float64(p.BrandsOverThreshold), float64(over), RuleAtLeast),
		figure("emerging brands that beat last year", "1,800", float64(p.EmergingBeatLastYear), float64(beat), RuleAtLeast),
		figure("emerging brands that grew over 1,000%", "94", float64(p.EmergingGrew1000), float64(grew), RuleAtLeast),
		figure("emerging brands that top their category", "357", float64(p.EmergingTopCategory), float64(m.emergingTopCategory(t)), RuleExact),
		figure("GMV growth year on year", "+26%", p.Growth*100, (float64(t.GMV)/float64(last)-1)*100, RuleWithin5),
	)
	var channels int
	for _, g := range t.ChannelGMV {
		if g > m.ThresholdFen {
			channels++
		}
	}
	figs = append(figs, figure("livestream channels over 100 million CNY (scaled)", "30+", float64(p.ChannelsOverThresh), float64(channels), RuleAtLeast))

	var factories, export int
	industries := map[string]bool{}
	for i := range m.Merchants {
		switch m.Merchants[i].Kind {
		case "factory":
			factories++
			export++
		case "trader":
			export++
		}
		industries[m.Merchants[i].Industry] = true
	}
	figs = append(figs,
		figure("factories", "300,000", math.Max(10, math.Round(float64(p.Factories)*sc)), float64(factories), RuleExact),
		figure("export merchants (factories and traders)", "1.2 million", math.Max(10, math.Round(float64(p.ExportMerchants)*sc)), float64(export), RuleExact),
		figure("industries", "2,000+", float64(p.Industries), float64(len(industries)), RuleAtLeast),
	)
	order := m.CountryOrder(t)
	top := order[:min(len(order), len(topCountries))]
	f := Figure{Name: "foreign GMV by country", Published: strings.Join(topCountries, " > "), Simulated: math.NaN(), Rule: RuleOrder.String(), Text: strings.Join(top, " > ")}
	f.OK = slices.Equal(top, topCountries)
	figs = append(figs, f)
	if b != nil {
		m.boardFigures(figs, b)
	}
	return figs
}

// boardFigures sets the server's value of each figure from b, in the order
// FiguresWithBoard lists them.
func (m *Model) boardFigures(figs []Figure, b *Board) {
	var over, channels int
	for _, g := range b.BrandGMV {
		if g > m.ThresholdFen {
			over++
		}
	}
	for k, g := range b.ChannelGMV {
		if strings.HasPrefix(k, "live:") && g > m.ThresholdFen {
			channels++
		}
	}
	// The peak second: the server's busiest second, when it ran on the
	// festival's time. It tells the orders of 11-11 00:00:26 only if that
	// second is the busiest.
	peakOrders, peakIs := math.NaN(), math.NaN()
	peakText := "n/a (server clock)"
	if b.FestivalClock {
		peakText = ""
		at := FestivalStart.Add(PeakSecond * time.Second)
		isPeak := b.PeakOrders > 0 && b.PeakAt.Equal(at)
		peakIs = boolf(isPeak)
		if isPeak {
			peakOrders = float64(b.PeakOrders)
		} else {
			peakText = "busiest second " + b.PeakAt.UTC().Format(time.RFC3339) + ", not the peak second"
		}
	}
	values := []float64{
		float64(b.GMVFen) / 100, float64(b.GMVUSDCents) / 100, float64(b.PaidOrders),
		peakOrders, peakIs,
		float64(b.Brands), float64(b.ForeignBrands), float64(b.FirstTimeBrands),
		float64(over), float64(b.EmergingBeatLastYear), float64(b.EmergingGrew1000), float64(b.EmergingTopCategory),
		b.Growth * 100, float64(channels),
		float64(b.Factories), float64(b.ExportMerchants), float64(b.Industries),
	}
	rules := []Rule{RuleWithin5, RuleWithin5, RuleWithin5, RuleWithin5, RuleExact, RuleExact, RuleExact, RuleExact,
		RuleAtLeast, RuleAtLeast, RuleAtLeast, RuleExact, RuleWithin5, RuleAtLeast, RuleExact, RuleExact, RuleAtLeast}
	if len(values) != len(figs)-1 || len(rules) != len(values) {
		panic(fmt.Sprintf("festival: %d server values for %d figures", len(values), len(figs)))
	}
	for i, v := range values {
		f := &figs[i]
		switch {
		case math.IsNaN(v):
			f.ServerText = peakText
		case i == 8 && !b.Complete && over == len(b.BrandGMV), i == 13 && !b.Complete && channels == len(b.ChannelGMV):
			// Every row read is over the threshold: there may be more.
			f.serverFigure(v, rules[i])
			f.ServerText = "or more"
		default:
			f.serverFigure(v, rules[i])
		}
	}
	c := &figs[len(figs)-1]
	top := b.CountryOrder[:min(len(b.CountryOrder), len(topCountries))]
	c.ServerText = strings.Join(top, " > ")
	c.ServerOK = slices.Equal(top, topCountries)
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// CountryOrder ranks foreign countries by paid GMV in t, largest first.
func (m *Model) CountryOrder(t *Tally) []string {
	by := map[string]int64{}
	for i := range m.Brands {
		if c := m.Brands[i].Country; c != "CN" {
			by[c] += t.BrandGMV[i]
		}
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case by[a] > by[b]:
			return -1
		case by[a] < by[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	return keys
}

// FiguresOK reports whether every figure holds, and lists those that do not.
func FiguresOK(figs []Figure) (bool, []string) {
	var bad []string
	for _, f := range figs {
		if !f.OK {
			bad = append(bad, fmt.Sprintf("%s: target %.6g (%s), simulated %.6g %s", f.Name, f.Target, f.Rule, f.Simulated, f.Text))
		}
	}
	return len(bad) == 0, bad
}
