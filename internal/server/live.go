package server

import (
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection/live"
)

// liveState holds the livestream projection once attached.
type liveState struct {
	l atomic.Pointer[live.Live]
}

// AttachLive gives the server the livestream projection behind
// GET /v1/live/channels/{id} and the leaderboard.
func (s *Server) AttachLive(l *live.Live) { s.live.l.Store(l) }

// leaderboardTopDefault is the leaderboard's length without top.
const leaderboardTopDefault = 30

type channelJSON struct {
	Title    *string `json:"title"`
	Host     *string `json:"host"`
	StartsAt *string `json:"starts_at"`
	EndsAt   *string `json:"ends_at"`
}

type dealJSON struct {
	ChannelID     *string `json:"channel_id"`
	SKUID         *string `json:"sku_id"`
	Price         *int64  `json:"price"`
	Stock         *int64  `json:"stock"`
	StartsAt      *string `json:"starts_at"`
	EndsAt        *string `json:"ends_at"`
	LimitPerBuyer *int64  `json:"limit_per_buyer"`
}

// The times that unix nanoseconds in an int64 hold: from 1677-09-21 to
// 2262-04-11. A window edge outside them is refused rather than wrapped.
var (
	timeFirst = time.Unix(0, math.MinInt64)
	timeLast  = time.Unix(0, math.MaxInt64)
)

// timeField parses a required RFC 3339 time into unix nanoseconds.
func timeField(field string, v *string) (int64, *apiError) {
	if v == nil || *v == "" {
		return 0, required(field)
	}
	t, err := time.Parse(time.RFC3339Nano, *v)
	if err != nil {
		return 0, errInvalidArgument(field, field+" is not an RFC 3339 time")
	}
	if t.Before(timeFirst) || t.After(timeLast) {
		return 0, errInvalidArgument(field, field+" must be between "+timeFirst.UTC().Format(time.RFC3339)+" and "+timeLast.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// windowFields reads a channel's or deal's window, [starts_at, ends_at).
func windowFields(startsAt, endsAt *string) (starts, ends int64, aerr *apiError) {
	if starts, aerr = timeField("starts_at", startsAt); aerr != nil {
		return 0, 0, aerr
	}
	if ends, aerr = timeField("ends_at", endsAt); aerr != nil {
		return 0, 0, aerr
	}
	if ends <= starts {
		return 0, 0, errInvalidArgument("ends_at", "ends_at must be after starts_at")
	}
	return starts, ends, nil
}

func (c *channelJSON) command(id string) (engine.Command, *apiError) {
	if !validID(id) || len(id) > engine.ChannelBytesMax-len("live:") {
		return engine.Command{}, errInvalidArgument("channel_id", "channel_id must be 1 to "+strconv.Itoa(engine.ChannelBytesMax-len("live:"))+" bytes without control characters or '/'")
	}
	title, aerr := textField("title", c.Title)
	if aerr != nil {
		return engine.Command{}, aerr
	}
	host, aerr := textField("host", c.Host)
	if aerr != nil {
		return engine.Command{}, aerr
	}
	starts, ends, aerr := windowFields(c.StartsAt, c.EndsAt)
	if aerr != nil {
		return engine.Command{}, aerr
	}
	return engine.Command{Kind: engine.KindPutChannel, Channel: &engine.Channel{ID: id, Title: title, Host: host, StartsAt: starts, EndsAt: ends}}, nil
}

func (d *dealJSON) command(id string) (engine.Command, *apiError) {
	if !validID(id) {
		return engine.Command{}, errInvalidArgument("deal_id", "invalid deal_id")
	}
	channel, aerr := idField("channel_id", d.ChannelID)
	if aerr != nil {
		return engine.Command{}, aerr
	}
	sku, aerr := idField("sku_id", d.SKUID)
	if aerr != nil {
		return engine.Command{}, aerr
	}
	if d.Price == nil {
		return engine.Command{}, required("price")
	}
	if *d.Price < 0 {
		return engine.Command{}, errInvalidArgument("price", "price must not be negative")
	}
	if d.Stock == nil {
		return engine.Command{}, required("stock")
	}
	if *d.Stock < 1 {
		return engine.Command{}, errInvalidArgument("stock", "stock must be at least 1")
	}
	starts, ends, aerr := windowFields(d.StartsAt, d.EndsAt)
	if aerr != nil {
		return engine.Command{}, aerr
	}
	var limit int64
	if d.LimitPerBuyer != nil {
		if *d.LimitPerBuyer < 1 {
			return engine.Command{}, errInvalidArgument("limit_per_buyer", "limit_per_buyer must be at least 1 when given")
		}
		limit = *d.LimitPerBuyer
	}
	return engine.Command{Kind: engine.KindPutDeal, Deal: &engine.Deal{ID: id, ChannelID: channel, SKUID: sku, Price: *d.Price,
		Stock: *d.Stock, StartsAt: starts, EndsAt: ends, LimitPerBuyer: limit}}, nil
}

func (s *Server) handlePutChannel(w http.ResponseWriter, r *http.Request, be *backend) {
	s.putCatalog(w, r, be, &channelJSON{}, "channel_id", func(cmd *engine.Command, _ *engine.Result) []byte {
		return appendChannelPut(nil, cmd.Channel)
	})
}

func (s *Server) handlePutDeal(w http.ResponseWriter, r *http.Request, be *backend) {
	// In a cluster the deal goes to its SKU's partition's owner.
	cmd, w, here := s.putCommand(w, r, be, &dealJSON{}, "deal_id")
	if !here {
		return
	}
	s.dealCommand(w, r, be, cmd)
}

func (s *Server) handleEndDeal(w http.ResponseWriter, r *http.Request, be *backend) {
	id := r.PathValue("deal_id")
	if !validID(id) {
		s.writeError(w, errNotFound("deal_id", "no deal "+strconv.Quote(id)))
		return
	}
	cmd := engine.Command{Kind: engine.KindEndDeal, Deal: &engine.Deal{ID: id}}
	// In a cluster the end goes to the deal's partition's owner.
	w, here := s.writeHere(w, r, be, &cmd, nil)
	if !here {
		return
	}
	s.dealCommand(w, r, be, cmd)
}

// dealCommand runs a deal command and answers with the deal.
func (s *Server) dealCommand(w http.ResponseWriter, r *http.Request, be *backend, cmd engine.Command) {
	res := be.eng.Do(r.Context(), cmd)
	if !res.OK() {
		e := resultError(&res)
		switch {
		case res.Code == engine.CodeConflict && !res.Ambiguous:
			e.Message = "deal " + strconv.Quote(cmd.Deal.ID) + " exists with other terms; a deal's terms are fixed once put"
		case res.Code == engine.CodeNotFound && res.Field == "deal_id":
			e.Message = "no deal " + strconv.Quote(cmd.Deal.ID)
		}
		s.writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, appendDealStatus(nil, res.Deal))
}

func appendChannelPut(b []byte, c *engine.Channel) []byte {
	b = append(b, `{"channel_id":`...)
	b = appendString(b, c.ID)
	b = append(b, `,"title":`...)
	b = appendString(b, c.Title)
	b = append(b, `,"host":`...)
	b = appendString(b, c.Host)
	b = append(b, `,"starts_at":`...)
	b = appendTime(b, c.StartsAt)
	b = append(b, `,"ends_at":`...)
	b = appendTime(b, c.EndsAt)
	return append(b, '}')
}

func appendDealStatus(b []byte, d *engine.DealStatus) []byte {
	b = append(b, `{"deal_id":`...)
	b = appendString(b, d.ID)
	b = append(b, `,"channel_id":`...)
	b = appendString(b, d.ChannelID)
	b = append(b, `,"sku_id":`...)
	b = appendString(b, d.SKUID)
	b = appendField(b, "price", d.Price)
	b = appendField(b, "stock", d.Stock)
	b = append(b, `,"starts_at":`...)
	b = appendTime(b, d.StartsAt)
	b = append(b, `,"ends_at":`...)
	b = appendTime(b, d.EndsAt)
	if d.LimitPerBuyer > 0 {
		b = appendField(b, "limit_per_buyer", d.LimitPerBuyer)
	}
	b = appendField(b, "stock_left", d.Left)
	b = appendField(b, "reserved", d.Reserved)
	b = appendField(b, "sold", d.Sold)
	b = appendField(b, "returned", d.Returned)
	b = append(b, `,"ended":`...)
	b = strconv.AppendBool(b, d.Ended)
	if d.Ended {
		b = append(b, `,"ended_at":`...)
		b = appendTime(b, d.EndedAt)
	}
	return append(b, '}')
}

func (s *Server) liveProjection() (*live.Live, *apiError) {
	l := s.live.l.Load()
	if l == nil || s.be.Load() == nil {
		return nil, errNotReady
	}
	return l, nil
}

func (s *Server) handleGetChannel(w http.ResponseWriter, r *http.Request) {
	l, aerr := s.liveProjection()
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	id := r.PathValue("channel_id")
	c, err := l.Channel(id)
	if err != nil {
		s.writeError(w, errNotFound("channel_id", "no channel "+strconv.Quote(id)))
		return
	}
	b := appendChannelHead(nil, &c)
	b = append(b, `,"host":`...)
	b = appendString(b, c.Host)
	b = append(b, `,"starts_at":`...)
	b = appendTime(b, c.StartsAt)
	b = append(b, `,"ends_at":`...)
	b = appendTime(b, c.EndsAt)
	b = append(b, `,"deals":[`...)
	for i := range c.Deals {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendLiveDeal(b, &c.Deals[i])
	}
	b = append(b, "]}"...)
	writeJSON(w, http.StatusOK, b)
}

// appendChannelHead appends a channel's id, title, gmv and orders, without
// the closing brace.
func appendChannelHead(b []byte, c *live.Channel) []byte {
	b = append(b, `{"channel_id":`...)
	b = appendString(b, c.ID)
	b = append(b, `,"title":`...)
	b = appendString(b, c.Title)
	b = appendField(b, "gmv", c.GMV)
	return appendField(b, "orders", c.Orders)
}

func appendLiveDeal(b []byte, d *live.Deal) []byte {
	b = append(b, `{"deal_id":`...)
	b = appendString(b, d.ID)
	b = append(b, `,"sku_id":`...)
	b = appendString(b, d.SKUID)
	b = appendField(b, "price", d.Price)
	b = appendField(b, "stock", d.Stock)
	b = appendField(b, "stock_left", d.StockLeft)
	b = appendField(b, "sold", d.Sold)
	b = append(b, `,"ended":`...)
	b = strconv.AppendBool(b, d.Ended)
	return append(b, '}')
}

func (s *Server) handleLeaderboard(w http.ResponseWriter, r *http.Request) {
	l, aerr := s.liveProjection()
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	top := leaderboardTopDefault
	if r.URL.Query().Has("top") || r.URL.Query().Has("limit") {
		n, aerr := listLimit(r)
		if aerr != nil {
			s.writeError(w, aerr)
			return
		}
		top = n
	}
	board := l.Leaderboard(top)
	b := append([]byte(nil), `{"channels":[`...)
	for i := range board {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendChannelHead(b, &board[i])
		b = append(b, '}')
	}
	b = append(b, `],"selling_deals":[`...)
	for i, d := range l.SellingDeals(10) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendLiveDeal(b, &d)
	}
	b = append(b, "]}"...)
	writeJSON(w, http.StatusOK, b)
}
