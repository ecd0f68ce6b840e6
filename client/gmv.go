package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Money is an amount with its currency: fen for CNY, cents for USD.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// GMV is GET /v1/gmv: the contract's totals and fest's extensions.
type GMV struct {
	GMV             Money     `json:"gmv"`
	GMVUSD          Money     `json:"gmv_usd"`
	OrdersPlaced    int64     `json:"orders_placed"`
	OrdersPaid      int64     `json:"orders_paid"`
	OrdersPerSecond float64   `json:"orders_per_second"`
	AsOf            time.Time `json:"as_of"`

	Position      uint64 `json:"position"`
	Lag           Lag    `json:"lag"`
	OrdersPending int64  `json:"orders_pending"`
	LastYearGMV   Money  `json:"last_year_gmv"`
	// Growth is 0.26 for +26%; nil without a last-year total.
	Growth                *float64       `json:"growth"`
	Brands                BrandCounts    `json:"brands"`
	Merchants             MerchantCounts `json:"merchants"`
	ChannelsOverThreshold int            `json:"channels_over_threshold"`
	MilestoneThreshold    int64          `json:"milestone_threshold"` // fen
	FestivalYear          int            `json:"festival_year"`
	// PeakSecond is the busiest second by orders placed (by event time:
	// festival time on a server with the rehearsal clock); nil before any
	// order.
	PeakSecond *PeakSecond `json:"peak_second"`
	// Clock is the clock the server's events carry: "wall", or
	// "rehearsal" for fest serve --rehearsal-clock, whose commands give
	// their own (festival) time.
	Clock string `json:"clock"`
}

// PeakSecond is the busiest second of GET /v1/gmv.
type PeakSecond struct {
	At     time.Time `json:"at"` // the second's start
	Orders int64     `json:"orders"`
}

// Lag is how far the GMV projection trails the journal.
type Lag struct {
	Positions uint64  `json:"positions"` // journal bytes
	Seconds   float64 `json:"seconds"`
}

// BrandCounts are the brand figures of GET /v1/gmv (docs/api.md, The GMV
// board, says what each counts).
type BrandCounts struct {
	Total                int `json:"total"`
	Foreign              int `json:"foreign"`
	FirstTime            int `json:"first_time"`
	Emerging             int `json:"emerging"`
	Selling              int `json:"selling"`
	ForeignSelling       int `json:"foreign_selling"`
	FirstTimeSelling     int `json:"first_time_selling"`
	EmergingSelling      int `json:"emerging_selling"`
	EmergingTopCategory  int `json:"emerging_top_category"`
	EmergingBeatLastYear int `json:"emerging_beat_last_year"`
	EmergingGrew1000     int `json:"emerging_grew_1000"`
	Grew1000             int `json:"grew_1000"`
	OverThreshold        int `json:"over_threshold"`
}

// MerchantCounts are the merchant figures of GET /v1/gmv.
type MerchantCounts struct {
	Total      int `json:"total"`
	Factories  int `json:"factories"`
	Traders    int `json:"traders"`
	Industries int `json:"industries"`
}

// Breakdown is GET /v1/gmv/breakdown: the top rows of one dimension at one
// journal position; Rows plus Rest add up to GMV.
type Breakdown struct {
	By       string         `json:"by"`
	Rows     []BreakdownRow `json:"rows"`
	Rest     BreakdownRest  `json:"rest"`
	GMV      int64          `json:"gmv"` // fen
	Position uint64         `json:"position"`
	AsOf     time.Time      `json:"as_of"`
}

// BreakdownRow is one row of a breakdown.
type BreakdownRow struct {
	Key         string   `json:"key"`
	Name        string   `json:"name"`
	GMV         int64    `json:"gmv"` // fen
	Orders      int64    `json:"orders"`
	Share       float64  `json:"share"`
	LastYearGMV int64    `json:"last_year_gmv"` // fen
	Growth      *float64 `json:"growth"`
}

// BreakdownRest sums the rows past the top.
type BreakdownRest struct {
	Rows int   `json:"rows"`
	GMV  int64 `json:"gmv"` // fen
}

// Milestone is a brand or channel reaching a GMV threshold.
type Milestone struct {
	Kind      string    `json:"kind"` // brand or channel
	Key       string    `json:"key"`
	Threshold int64     `json:"threshold"` // fen
	ReachedAt time.Time `json:"reached_at"`
}

// GMV reads GET /v1/gmv (public).
func (c *Client) GMV(ctx context.Context) (GMV, error) {
	var out GMV
	err := c.do(ctx, http.MethodGet, "/v1/gmv", nil, nil, &out)
	return out, err
}

// GMVBreakdown reads GET /v1/gmv/breakdown?by=by&top=top (public); by is
// brand, merchant, category, country, channel, region, industry or kind,
// and top 1 to 1000.
func (c *Client) GMVBreakdown(ctx context.Context, by string, top int) (Breakdown, error) {
	var out Breakdown
	err := c.do(ctx, http.MethodGet, "/v1/gmv/breakdown?by="+url.QueryEscape(by)+"&top="+strconv.Itoa(top), nil, nil, &out)
	return out, err
}

// GMVMilestones reads GET /v1/gmv/milestones (public), in the order they
// were reached.
func (c *Client) GMVMilestones(ctx context.Context) ([]Milestone, error) {
	var out struct {
		Milestones []Milestone `json:"milestones"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/gmv/milestones", nil, nil, &out)
	return out.Milestones, err
}
