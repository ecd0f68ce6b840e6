// Package gmv is the big screen's read model: the festival's GMV, exact to
// the fen, with its breakdowns (brand, merchant, category, country,
// channel, region, industry, merchant kind), year-on-year growth,
// milestones and the per-second series of the last hour, computed from the
// journal alone.
//
// GMV is the total of paid orders. A payment event names only its order, so
// the projection keeps, for each order still pending, the compact
// attribution of its amount (per brand, category and country of its lines;
// its merchant, channel and buyer region), decided once at placement from
// its own view of the catalog, which it builds from the catalog events.
// Payment adds the attribution to the totals and every breakdown and drops
// it; cancellation and expiry drop it. Memory is therefore bounded by the
// catalog and the pending orders, never by the orders ever placed: the
// pending attributions are exactly the engine's pending orders, which its
// payment timeout bounds, and the rows are bounded by the catalog (brands,
// merchants, categories, countries, industries, kinds) or by
// Config.OpenKeysMax (channels and buyer regions).
//
// Reads are consistent at one journal position: Apply takes the write lock
// at a record's first event and Commit releases it once the record is
// applied whole, and every read holds the read lock, so the rows of any
// breakdown add up to the total of the same position.
package gmv

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// Defaults of Config.
const (
	// DefaultUSDRate is CNY per USD: the 2020 festival's 498.2 billion CNY
	// were reported as 74.1 billion USD.
	DefaultUSDRate = 6.7233
	// DefaultMilestoneFen is the default milestone: 100 million CNY.
	DefaultMilestoneFen = 100_000_000 * 100
	// DefaultFestivalYear is the festival whose first-time brands are
	// counted: fest reproduces the 2020 festival's published figures.
	DefaultFestivalYear = 2020
	// DefaultRateWindow is the span orders_per_second averages over.
	DefaultRateWindow = 5 * time.Second
	// DefaultOpenKeysMax bounds the rows of the breakdowns whose keys
	// come from orders rather than the catalog (channel, buyer region).
	DefaultOpenKeysMax = 1 << 20
	// DefaultMilestonesMax bounds the milestones kept.
	DefaultMilestonesMax = 1 << 16
)

const (
	// SeriesSeconds is the span of the per-second series: the last hour.
	SeriesSeconds = 3600
	// OtherKey is the row that collects the channels or regions past
	// Config.OpenKeysMax, so the breakdown still adds up to the total.
	OtherKey = "~other"
	// DomesticCountry is the country of domestic brands; every other is
	// foreign.
	DomesticCountry = "CN"
	// milestoneThresholdsMax bounds Config.MilestoneThresholds.
	milestoneThresholdsMax = 16
	// inlineLines is how many distinct (brand, category, country) lines a
	// pending order keeps inline; orders with more keep the rest in a side
	// map, which allocates, but orders are from one merchant and rarely
	// span more than a few brands and categories.
	inlineLines = 3
	// growthFactor1000 is "grew over 1,000%": more than 11 times last year.
	growthFactor1000 = 11
)

// Errors.
var (
	// ErrInconsistent is an event the projection cannot apply to its state
	// (a payment of an order it does not hold, a line of an unknown SKU):
	// the journal and the projection disagree, and the runner stops.
	ErrInconsistent = errors.New("gmv: event inconsistent with the projection")
	// ErrAborted is returned by reads once following stopped in the
	// middle of a record: the state holds part of it.
	ErrAborted = errors.New("gmv: projection stopped in the middle of a record")
	// ErrUnknownDimension is a breakdown of a dimension that does not
	// exist.
	ErrUnknownDimension = errors.New("gmv: unknown breakdown dimension")
	// ErrBadSnapshot is a snapshot section that does not decode: damage,
	// so it wraps the runner's sentinel and the runner sets the snapshot
	// aside.
	ErrBadSnapshot = fmt.Errorf("gmv: %w", projection.ErrBadSnapshot)
)

// Config configures the projection.
type Config struct {
	// USDRate is CNY per USD for the USD total (default 6.7233).
	USDRate float64
	// MilestoneThresholds are the GMV thresholds, in fen, whose crossing
	// by a brand or a channel is a milestone (default one: 100 million
	// CNY). At most 16, each positive.
	MilestoneThresholds []int64
	// FestivalYear is the year whose first-time brands (first_festival
	// equal to it) are counted (default 2020).
	FestivalYear int32
	// RateWindow is the span, in whole seconds of event time, that
	// orders_per_second averages over (default 5s, at most an hour).
	RateWindow time.Duration
	// OpenKeysMax bounds the distinct channels and buyer regions kept as
	// rows; past it new keys are counted in the row OtherKey (default
	// 1<<20).
	OpenKeysMax int
	// MilestonesMax bounds the milestones kept; past it new ones are
	// counted in Totals.MilestonesDropped only (default 1<<16).
	MilestonesMax int
	// Now is the wall clock for the rate's window (default time.Now).
	Now func() time.Time
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.USDRate < 0 || math.IsNaN(c.USDRate) || math.IsInf(c.USDRate, 0):
		return fmt.Errorf("gmv config: USDRate %v is not a positive number", c.USDRate)
	case len(c.MilestoneThresholds) > milestoneThresholdsMax:
		return fmt.Errorf("gmv config: %d milestone thresholds, more than %d", len(c.MilestoneThresholds), milestoneThresholdsMax)
	case c.RateWindow != 0 && (c.RateWindow < time.Second || c.RateWindow > SeriesSeconds*time.Second || c.RateWindow%time.Second != 0):
		return fmt.Errorf("gmv config: RateWindow %v is not whole seconds from 1s to 1h", c.RateWindow)
	case c.OpenKeysMax < 0:
		return fmt.Errorf("gmv config: OpenKeysMax %d is negative", c.OpenKeysMax)
	case c.MilestonesMax < 0:
		return fmt.Errorf("gmv config: MilestonesMax %d is negative", c.MilestonesMax)
	}
	for _, t := range c.MilestoneThresholds {
		if t <= 0 {
			return fmt.Errorf("gmv config: milestone threshold %d fen is not positive", t)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.USDRate == 0 {
		c.USDRate = DefaultUSDRate
	}
	if len(c.MilestoneThresholds) == 0 {
		c.MilestoneThresholds = []int64{DefaultMilestoneFen}
	}
	c.MilestoneThresholds = append([]int64(nil), c.MilestoneThresholds...)
	if c.FestivalYear == 0 {
		c.FestivalYear = DefaultFestivalYear
	}
	if c.RateWindow == 0 {
		c.RateWindow = DefaultRateWindow
	}
	if c.OpenKeysMax == 0 {
		c.OpenKeysMax = DefaultOpenKeysMax
	}
	if c.MilestonesMax == 0 {
		c.MilestonesMax = DefaultMilestonesMax
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Projection is the GMV read model. Apply, Commit, Abort and the snapshot
// methods are called by the runner's one goroutine; the reads from any.
type Projection struct {
	cfg Config
	mu  sync.RWMutex
	// locked is whether the runner's goroutine holds mu for the record it
	// is applying; only that goroutine reads or writes it.
	locked bool
	// st is the state; guarded by mu (written under the write lock,
	// replaced whole by Install).
	st *state
	// aborted is set by Abort; guarded by mu.
	aborted bool
	// bodyBytesHint and catalogBytesHint are a little over the sizes of
	// the last snapshot's body and catalog chunk, which the next allocate
	// at once (runner's goroutine only).
	bodyBytesHint, catalogBytesHint int
}

// New returns an empty projection.
func New(cfg Config) (*Projection, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Projection{cfg: cfg, st: newState()}, nil
}

// Name implements projection.Projection.
func (p *Projection) Name() string { return "gmv" }

// Apply implements projection.Projection. It takes the write lock at the
// first event of a record; Commit releases it.
func (p *Projection) Apply(ev *engine.Event) error {
	if !p.locked {
		p.mu.Lock()
		p.locked = true
	}
	return p.st.apply(&p.cfg, ev)
}

// Commit implements projection.Projection: the record at pos is applied
// whole and reads may see it.
func (p *Projection) Commit(pos uint64, at int64) {
	if !p.locked {
		// A record without events for this projection still moves it.
		p.mu.Lock()
		p.locked = true
	}
	if pos < p.st.position {
		panic(fmt.Sprintf("gmv: commit of position %d after %d", pos, p.st.position))
	}
	// A record's last event applies its queued payments; one whose last
	// event did not say so (a caller's record cut short) has them here.
	// They cannot fail (queuePay), and flushPays panics if one does.
	p.st.flushPays(&p.cfg)
	p.st.position = pos
	if at != 0 {
		p.st.at = at
	}
	p.locked = false
	p.mu.Unlock()
}

// Abort implements projection.Projection. The state then holds part of a
// record, so reads answer ErrAborted until a snapshot is installed.
func (p *Projection) Abort() {
	if !p.locked {
		p.mu.Lock()
	}
	p.aborted = true
	p.st.payQueue = p.st.payQueue[:0]
	p.locked = false
	p.mu.Unlock()
}

// Position is the journal position the reads reflect, and the event time
// of its record (unix ns).
func (p *Projection) Position() (pos uint64, at int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.st.position, p.st.at
}

// Dimension is what a breakdown groups by.
type Dimension uint8

// The dimensions.
const (
	DimBrand Dimension = iota
	DimMerchant
	DimCategory
	DimCountry // of the brand
	DimChannel
	DimRegion   // of the buyer
	DimIndustry // of the merchant
	DimKind     // of the merchant
	dimCount
)

var dimensionNames = [dimCount]string{"brand", "merchant", "category", "country", "channel", "region", "industry", "kind"}

func (d Dimension) String() string {
	if d < dimCount {
		return dimensionNames[d]
	}
	return fmt.Sprintf("dimension(%d)", uint8(d))
}

// ParseDimension parses a dimension's name as in ?by=.
func ParseDimension(s string) (Dimension, bool) {
	for i, n := range dimensionNames {
		if n == s {
			return Dimension(i), true
		}
	}
	return 0, false
}

// Dimensions lists the dimensions in order.
func Dimensions() []Dimension {
	ds := make([]Dimension, dimCount)
	for i := range ds {
		ds[i] = Dimension(i)
	}
	return ds
}

// internKey returns a copy of s that does not alias the record's buffer.
func internKey(s string) string { return strings.Clone(s) }
