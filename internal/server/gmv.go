package server

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/wire"
)

// The GMV endpoints of the big screen. The projection answers in its own
// types; this file renders the contract's views of them, so a field of the
// projection never leaks into the API by accident.

const (
	// breakdownTopDefault and breakdownTopMax bound ?top= of a breakdown.
	breakdownTopDefault = 20
	breakdownTopMax     = wire.ListTopMax
	// streamWriteWait is how long one event of the stream may take to be
	// written: a client that stops reading is dropped after it.
	streamWriteWait = 10 * time.Second
	// streamBodyAgeMax is how old a rendered /v1/gmv body the streams share
	// may be: one render serves every stream of the same instant.
	streamBodyAgeMax = 200 * time.Millisecond
	// breakdownAgeMax is how old a rendered breakdown may be served while
	// the projection moves (one that is still at its position is served
	// whatever its age): the top of 250,000 brands takes about a
	// millisecond under the lock the next record waits for, and every
	// dashboard asks for it every 2 seconds.
	breakdownAgeMax = 250 * time.Millisecond
	// breakdownCacheMax bounds the rendered breakdowns kept (by dimension
	// and top); when full, it is emptied.
	breakdownCacheMax = 64
)

// gmvState holds the GMV projection once recovery has handed it over, and
// the streams.
type gmvState struct {
	p       atomic.Pointer[gmv.Projection]
	streams atomic.Int64 // open GET /v1/gmv/stream answers

	closeOnce sync.Once
	closing   chan struct{} // closed when the HTTP server shuts down

	body struct {
		sync.Mutex
		b  []byte
		at time.Time
	}

	breakdowns struct {
		sync.Mutex
		bodies map[breakdownKey]renderedBody
	}
}

type breakdownKey struct {
	by  gmv.Dimension
	top int
}

// renderedBody is a breakdown's body as rendered at a time and position.
type renderedBody struct {
	b        []byte
	at       time.Time
	position uint64
}

func (g *gmvState) init() { g.closing = make(chan struct{}) }

// closeStreams ends every stream: registered to run when the HTTP server
// shuts down, since Shutdown waits for the handlers and a stream never ends
// by itself.
func (g *gmvState) closeStreams() { g.closeOnce.Do(func() { close(g.closing) }) }

// AttachGMV makes the GMV endpoints answer from p.
func (s *Server) AttachGMV(p *gmv.Projection) { s.gmv.p.Store(p) }

// gmvProjection returns the projection, or the error to answer: 503
// before recovery hands it over, and once the runner feeding it stopped
// (its figures would then be stale or, after a failed load, empty).
func (s *Server) gmvProjection() (*gmv.Projection, *apiError) {
	p := s.gmv.p.Load()
	if p == nil {
		return nil, errNotReady
	}
	if be := s.be.Load(); be != nil && be.reads != nil {
		if err := be.reads.Err(); err != nil {
			return nil, newError(wire.CodeUnavailable, "the projections stopped following the journal: "+err.Error())
		}
	}
	return p, nil
}

func gmvError(err error) *apiError {
	if errors.Is(err, gmv.ErrAborted) {
		return newError(wire.CodeUnavailable, "the GMV projection stopped: "+err.Error())
	}
	return newError(wire.CodeInternal, err.Error())
}

// gmvView is the body of GET /v1/gmv: the contract's fields, then fest's
// extensions.
type gmvView struct {
	amount, amountUSD int64
	placed, paid      uint64
	ordersPerSecond   float64
	asOf              time.Time
	position          uint64
	lag               lagView
	pending           int
	lastYear          int64
	growth            float64
	hasGrowth         bool
	brands            gmv.BrandCounts
	merchants         gmv.MerchantCounts
	channelsOver      int
	threshold         int64
	festivalYear      int32
	milestonesNotKept uint64
	peakSecond        int64 // unix seconds, 0 before any order
	peakOrders        uint64
	rehearsalClock    bool // the server runs on the rehearsal clock
}

type lagView struct {
	positions uint64
	seconds   float64
}

// gmvLag is the GMV projection's lag behind the journal.
func (s *Server) gmvLag() lagView {
	be := s.be.Load()
	if be == nil || be.reads == nil {
		return lagView{}
	}
	for _, l := range be.reads.Lags() {
		if l.Projection == "gmv" {
			return lagView{positions: l.Positions, seconds: l.Seconds}
		}
	}
	return lagView{}
}

func (s *Server) buildGMV(p *gmv.Projection) (gmvView, *apiError) {
	t, err := p.Totals()
	if err != nil {
		return gmvView{}, gmvError(err)
	}
	v := gmvView{
		amount: t.GMV, amountUSD: t.GMVUSD, placed: t.OrdersPlaced, paid: t.OrdersPaid,
		ordersPerSecond: t.OrdersPerSecond, position: t.Position, lag: s.gmvLag(),
		pending: t.OrdersPending, lastYear: t.LastYearGMV, growth: t.Growth, hasGrowth: t.HasGrowth,
		brands: t.Brands, merchants: t.Merchants, channelsOver: t.ChannelsOverThreshold,
		threshold: p.Thresholds()[0], festivalYear: p.FestivalYear(), milestonesNotKept: t.MilestonesDropped,
		peakSecond: t.PeakSecond, peakOrders: t.PeakOrders, rehearsalClock: s.cfg.RehearsalClock,
	}
	// Caught up, the figures are as of now; behind the journal, as of the
	// event time of the last record applied.
	v.asOf = time.Now().UTC()
	if v.lag.positions > 0 && t.At > 0 {
		v.asOf = time.Unix(0, t.At).UTC()
	}
	return v, nil
}

func appendMoney(b []byte, amount int64, currency string) []byte {
	b = append(b, `{"amount":`...)
	b = strconv.AppendInt(b, amount, 10)
	b = append(b, `,"currency":"`...)
	b = append(b, currency...)
	return append(b, `"}`...)
}

func appendField(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// appendGMV renders the body of GET /v1/gmv, one line; the stream sends the
// same bytes.
func appendGMV(b []byte, v *gmvView) []byte {
	b = append(b, `{"gmv":`...)
	b = appendMoney(b, v.amount, "CNY")
	b = append(b, `,"gmv_usd":`...)
	b = appendMoney(b, v.amountUSD, "USD")
	b = appendField(b, "orders_placed", int64(v.placed))
	b = appendField(b, "orders_paid", int64(v.paid))
	b = append(b, `,"orders_per_second":`...)
	b = strconv.AppendFloat(b, v.ordersPerSecond, 'f', 1, 64)
	b = append(b, `,"as_of":"`...)
	b = v.asOf.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	// Extensions.
	b = appendField(b, "position", int64(v.position))
	b = append(b, `,"lag":{"positions":`...)
	b = strconv.AppendUint(b, v.lag.positions, 10)
	b = append(b, `,"seconds":`...)
	b = strconv.AppendFloat(b, v.lag.seconds, 'f', 3, 64)
	b = append(b, '}')
	b = appendField(b, "orders_pending", int64(v.pending))
	b = append(b, `,"last_year_gmv":`...)
	b = appendMoney(b, v.lastYear, "CNY")
	if v.hasGrowth {
		b = append(b, `,"growth":`...)
		b = strconv.AppendFloat(b, v.growth, 'f', 4, 64)
	}
	c := &v.brands
	b = append(b, `,"brands":{"total":`...)
	b = strconv.AppendInt(b, int64(c.Total), 10)
	for _, f := range [...]struct {
		name string
		n    int
	}{
		{"foreign", c.Foreign}, {"first_time", c.FirstTime}, {"emerging", c.Emerging}, {"selling", c.Selling},
		{"foreign_selling", c.ForeignSelling}, {"first_time_selling", c.FirstTimeSelling}, {"emerging_selling", c.EmergingSelling},
		{"emerging_top_category", c.EmergingTopCategory}, {"emerging_beat_last_year", c.EmergingBeatLastYear},
		{"emerging_grew_1000", c.EmergingGrew1000}, {"grew_1000", c.Grew1000}, {"over_threshold", c.OverThreshold},
	} {
		b = appendField(b, f.name, int64(f.n))
	}
	m := &v.merchants
	b = append(b, `},"merchants":{"total":`...)
	b = strconv.AppendInt(b, int64(m.Total), 10)
	b = appendField(b, "factories", int64(m.Factories))
	b = appendField(b, "traders", int64(m.Traders))
	b = appendField(b, "industries", int64(m.Industries))
	b = append(b, '}')
	b = appendField(b, "channels_over_threshold", int64(v.channelsOver))
	b = appendField(b, "milestone_threshold", v.threshold)
	b = appendField(b, "festival_year", int64(v.festivalYear))
	if v.milestonesNotKept > 0 {
		b = appendField(b, "milestones_not_kept", int64(v.milestonesNotKept))
	}
	if v.peakOrders > 0 {
		// The busiest second by orders placed, by event time.
		b = append(b, `,"peak_second":{"at":"`...)
		b = time.Unix(v.peakSecond, 0).UTC().AppendFormat(b, time.RFC3339)
		b = append(b, '"')
		b = appendField(b, "orders", int64(v.peakOrders))
		b = append(b, '}')
	}
	// Which clock the events carry, so that a load driver can tell whether
	// to give each command its festival time (fest load --rehearsal-clock).
	if v.rehearsalClock {
		b = append(b, `,"clock":"rehearsal"`...)
	} else {
		b = append(b, `,"clock":"wall"`...)
	}
	return append(b, "}\n"...)
}

// handleGMV answers GET /v1/gmv (public).
func (s *Server) handleGMV(w http.ResponseWriter, r *http.Request) {
	p, aerr := s.gmvProjection()
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	v, aerr := s.buildGMV(p)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, appendGMV(nil, &v))
}

// breakdownView is GET /v1/gmv/breakdown: the rows of one dimension at one
// position; rest (an extension) sums the rows past the top, so the rows and
// the rest add up to gmv, the total of the same position.
type breakdownView struct {
	by       string
	rows     []breakdownRow
	restRows int
	restGMV  int64
	total    int64
	position uint64
	asOf     time.Time
}

type breakdownRow struct {
	key, name   string
	gmv         int64
	orders      uint64
	share       float64
	lastYear    int64
	growth      float64
	hasLastYear bool
}

func appendBreakdown(b []byte, v *breakdownView) []byte {
	b = append(b, `{"by":`...)
	b = appendString(b, v.by)
	b = append(b, `,"rows":[`...)
	for i := range v.rows {
		r := &v.rows[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendString(b, r.key)
		if r.name != "" {
			b = append(b, `,"name":`...)
			b = appendString(b, r.name)
		}
		b = appendField(b, "gmv", r.gmv)
		b = appendField(b, "orders", int64(r.orders))
		b = append(b, `,"share":`...)
		b = strconv.AppendFloat(b, r.share, 'f', 6, 64)
		if r.hasLastYear {
			b = appendField(b, "last_year_gmv", r.lastYear)
			b = append(b, `,"growth":`...)
			b = strconv.AppendFloat(b, r.growth, 'f', 4, 64)
		}
		b = append(b, '}')
	}
	b = append(b, `],"rest":{"rows":`...)
	b = strconv.AppendInt(b, int64(v.restRows), 10)
	b = appendField(b, "gmv", v.restGMV)
	b = append(b, '}')
	b = appendField(b, "gmv", v.total)
	b = appendField(b, "position", int64(v.position))
	b = append(b, `,"as_of":"`...)
	b = v.asOf.AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...)
}

// handleBreakdown answers GET /v1/gmv/breakdown?by=...&top=20 (public).
func (s *Server) handleBreakdown(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d, ok := gmv.ParseDimension(q.Get("by"))
	if !ok {
		s.writeError(w, errInvalidArgument("by", "by must be one of brand, merchant, category, country, channel, region, industry, kind"))
		return
	}
	top := breakdownTopDefault
	if t := q.Get("top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > breakdownTopMax {
			s.writeError(w, errInvalidArgument("top", "top must be an integer from 1 to "+strconv.Itoa(breakdownTopMax)))
			return
		}
		top = n
	}
	p, aerr := s.gmvProjection()
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	body, aerr := s.breakdownBody(p, d, top)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// breakdownBody returns the rendered breakdown of d, from the cache when it
// is still at the projection's position or younger than breakdownAgeMax.
func (s *Server) breakdownBody(p *gmv.Projection, d gmv.Dimension, top int) ([]byte, *apiError) {
	c := &s.gmv.breakdowns
	key := breakdownKey{by: d, top: top}
	pos, _ := p.Position()
	c.Lock()
	cached, ok := c.bodies[key]
	c.Unlock()
	if ok && (cached.position == pos || time.Since(cached.at) < breakdownAgeMax) {
		return cached.b, nil
	}
	bd, err := p.Breakdown(d, top)
	if err != nil {
		return nil, gmvError(err)
	}
	body := s.renderBreakdown(&bd)
	c.Lock()
	if c.bodies == nil || len(c.bodies) >= breakdownCacheMax {
		c.bodies = make(map[breakdownKey]renderedBody)
	}
	c.bodies[key] = renderedBody{b: body, at: time.Now(), position: bd.Position}
	c.Unlock()
	return body, nil
}

// renderBreakdown converts the projection's breakdown to the API's view and
// renders it.
func (s *Server) renderBreakdown(bd *gmv.Breakdown) []byte {
	d := bd.By
	v := breakdownView{by: d.String(), restRows: bd.Rest.Rows, restGMV: bd.Rest.GMV, total: bd.GMV, position: bd.Position, asOf: time.Now().UTC()}
	if s.gmvLag().positions > 0 && bd.At > 0 {
		v.asOf = time.Unix(0, bd.At).UTC()
	}
	v.rows = make([]breakdownRow, len(bd.Rows))
	for i, row := range bd.Rows {
		v.rows[i] = breakdownRow{key: row.Key, name: row.Name, gmv: row.GMV, orders: row.Orders, share: row.Share,
			lastYear: row.LastYearGMV, growth: row.Growth, hasLastYear: row.HasLastYear}
	}
	return appendBreakdown(nil, &v)
}

// milestoneView is one milestone of GET /v1/gmv/milestones.
type milestoneView struct {
	kind, key string
	threshold int64
	reachedAt time.Time
}

// handleMilestones answers GET /v1/gmv/milestones (public), in the order
// they were reached.
func (s *Server) handleMilestones(w http.ResponseWriter, r *http.Request) {
	p, aerr := s.gmvProjection()
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	ms, err := p.Milestones()
	if err != nil {
		s.writeError(w, gmvError(err))
		return
	}
	views := make([]milestoneView, len(ms))
	for i, m := range ms {
		views[i] = milestoneView{kind: m.Kind.String(), key: m.Key, threshold: m.Threshold, reachedAt: time.Unix(0, m.ReachedAt).UTC()}
	}
	b := append([]byte(nil), `{"milestones":[`...)
	for i := range views {
		m := &views[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"kind":`...)
		b = appendString(b, m.kind)
		b = append(b, `,"key":`...)
		b = appendString(b, m.key)
		b = appendField(b, "threshold", m.threshold)
		b = append(b, `,"reached_at":"`...)
		b = m.reachedAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// handleSeries answers GET /v1/gmv/series?seconds=300 (public, an
// extension for the dashboard's sparkline): placed and paid orders and paid
// GMV per second of event time, oldest first, ending at the current second.
func (s *Server) handleSeries(w http.ResponseWriter, r *http.Request) {
	n := 300
	if v := r.URL.Query().Get("seconds"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > gmv.SeriesSeconds {
			s.writeError(w, errInvalidArgument("seconds", "seconds must be an integer from 1 to 3600"))
			return
		}
		n = k
	}
	p, aerr := s.gmvProjection()
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	series, err := p.Series(n)
	if err != nil {
		s.writeError(w, gmvError(err))
		return
	}
	b := append([]byte(nil), `{"seconds":[`...)
	for i, sec := range series {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"at":"`...)
		b = time.Unix(sec.Unix, 0).UTC().AppendFormat(b, time.RFC3339)
		b = append(b, '"')
		b = appendField(b, "placed", int64(sec.Placed))
		b = appendField(b, "paid", int64(sec.Paid))
		b = appendField(b, "gmv", sec.GMV)
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// streamBody returns the body of GET /v1/gmv rendered at most
// streamBodyAgeMax ago, shared by every stream.
func (s *Server) streamBody(p *gmv.Projection) ([]byte, *apiError) {
	g := &s.gmv
	g.body.Lock()
	defer g.body.Unlock()
	if now := time.Now(); g.body.b == nil || now.Sub(g.body.at) >= streamBodyAgeMax {
		v, aerr := s.buildGMV(p)
		if aerr != nil {
			return nil, aerr
		}
		// A new slice each time: streams still writing the previous one
		// hold it.
		g.body.b, g.body.at = appendGMV(nil, &v), now
	}
	return g.body.b, nil
}

// handleStream answers GET /v1/gmv/stream (public): server-sent events, an
// event "gmv" at once and then every StreamEvery, whose data is the body of
// GET /v1/gmv, until the client goes away or the server shuts down.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	p, aerr := s.gmvProjection()
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	if s.gmv.streams.Add(1) > int64(s.cfg.StreamsMax) {
		s.gmv.streams.Add(-1)
		s.writeError(w, newError(wire.CodeUnavailable, "too many GMV streams; retry after the Retry-After delay"))
		return
	}
	defer s.gmv.streams.Add(-1)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(s.cfg.StreamEvery)
	defer tick.Stop()
	var ev []byte
	for {
		if p, aerr = s.gmvProjection(); aerr != nil {
			return // the projections stopped: the client reconnects and is told
		}
		body, aerr := s.streamBody(p)
		if aerr != nil {
			// The projection stopped: end the stream, the client's
			// EventSource reconnects and is answered 503 until it is back.
			return
		}
		ev = append(ev[:0], "event: gmv\ndata: "...)
		ev = append(ev, body[:len(body)-1]...) // without its newline
		ev = append(ev, "\n\n"...)
		// The server's WriteTimeout would end the stream; each event gets
		// its own deadline instead.
		rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
		if _, err := w.Write(ev); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.gmv.closing:
			return
		case <-tick.C:
		}
	}
}
