package server

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// GET /v1/events: the committed events as NDJSON, for feeding Kafka, a
// warehouse or any other system of a festival's operators.
//
// Positions. The journal is a sequence of records, each holding one or
// more events, and a journal position is a record boundary. An event's
// position is "S:i": S is the journal position where its record starts
// (the end of the record before it), i the event's index in the record.
// from accepts either form:
//
//   - from=S (a bare journal position) starts with the first event of the
//     record starting at S: 0 is the start of the journal;
//   - from=S:i resumes after event i of that record.
//
// A consumer that stores the position of the last event it processed and
// reconnects with it as from therefore sees every event exactly once, also
// across a crash of the server: the feed shows only fsynced records, which
// recovery keeps, at the same positions.

// feedEventTypes are the type values of the feed's lines, in the order of
// engine.EventKind.
var feedEventTypes = []string{"brand_upserted", "merchant_upserted", "sku_upserted", "stock_changed", "order_placed", "order_paid", "order_cancelled", "order_expired",
	"parcel_scanned", "channel_put", "deal_put", "deal_ended"}

// feedTypeOf names an event kind on the feed; the engine's stock_adjusted
// is the contract's stock_changed.
func feedTypeOf(k engine.EventKind) string {
	if k == engine.EventNone || int(k) > len(feedEventTypes) {
		panic("server: event feed: no type for event kind " + k.String())
	}
	return feedEventTypes[k-1]
}

// feedPosition is a parsed from: a record start and the count of its
// events already seen.
type feedPosition struct {
	start uint64
	skip  int // events of the first record to leave out
}

// parseFeedPosition parses "S" or "S:i".
func parseFeedPosition(s string) (feedPosition, bool) {
	head, tail, hasIndex := strings.Cut(s, ":")
	start, err := strconv.ParseUint(head, 10, 64)
	if err != nil {
		return feedPosition{}, false
	}
	p := feedPosition{start: start}
	if hasIndex {
		i, err := strconv.ParseUint(tail, 10, 31)
		if err != nil {
			return feedPosition{}, false
		}
		p.skip = int(i) + 1
	}
	return p, true
}

// feedState bounds the feeds and stops them when the HTTP server shuts
// down: a feed never ends by itself, and http.Server.Shutdown waits for
// every handler.
type feedState struct {
	open     atomic.Int64
	stop     context.Context
	stopAll  context.CancelFunc
	events   prometheus.Counter
	rejected prometheus.Counter
}

func (s *Server) initFeeds() {
	f := &s.feeds
	f.stop, f.stopAll = context.WithCancel(context.Background())
	f.events = prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_event_feed_events_total", Help: "Events written to GET /v1/events feeds."})
	f.rejected = prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_event_feeds_rejected_total", Help: "GET /v1/events requests answered 503 because EventFeedsMax feeds were open."})
	s.metrics.reg.MustRegister(f.events, f.rejected,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fest_event_feeds", Help: "Open GET /v1/events feeds."}, func() float64 { return float64(f.open.Load()) }))
}

// closeFeeds ends every feed; HTTPServer registers it to run on Shutdown.
func (s *Server) closeFeeds() { s.feeds.stopAll() }

var errFeedsFull = newError(wire.CodeUnavailable, "too many event feeds open; retry later")

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, be *backend) {
	var from feedPosition
	if v := r.URL.Query().Get("from"); v != "" {
		p, ok := parseFeedPosition(v)
		if !ok {
			s.writeError(w, errInvalidArgument("from", "from is a journal position (digits) or an event's position (digits:digits)"))
			return
		}
		from = p
	}
	follow, end, durable := be.eng.Follow, be.eng.JournalEnd(), be.eng.Durable()
	if be.eng.Clustered() {
		// A cluster has a journal per partition (events_cluster.go).
		var aerr *apiError
		if follow, end, durable, aerr = partitionFeed(r, be); aerr != nil {
			s.writeError(w, aerr)
			return
		}
	}
	if from.start > end {
		s.writeError(w, errInvalidArgument("from", "from lies past the end of the journal ("+strconv.FormatUint(end, 10)+")"))
		return
	}
	if n := s.feeds.open.Add(1); n > int64(s.cfg.EventFeedsMax) {
		s.feeds.open.Add(-1)
		s.feeds.rejected.Inc()
		s.writeError(w, errFeedsFull)
		return
	}
	defer s.feeds.open.Add(-1)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.feeds.stop, cancel)()
	rc := http.NewResponseController(w)
	// The server's read and write timeouts bound ordinary requests; a feed
	// lives as long as its client, bounded instead by a deadline on each
	// write. A read deadline left in place would end the request (its
	// context) when it passes.
	rc.SetReadDeadline(time.Time{})
	deadline := func() { rc.SetWriteDeadline(time.Now().Add(s.cfg.EventFeedWriteTimeout)) }

	started := false
	start := func() {
		started = true
		h := w.Header()
		h.Set("Content-Type", "application/x-ndjson")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		deadline()
		w.WriteHeader(http.StatusOK)
		rc.Flush()
	}
	if from.start >= durable {
		// Nothing to read yet, so Follow waits without calling back: answer
		// now so the client knows it is connected. (From below the durable
		// position Follow reads at once, so a position it refuses, gone or
		// not a record boundary, is still answered with its error.)
		start()
	}

	bw := bufio.NewWriterSize(w, s.cfg.EventFeedBufferBytes)
	line := make([]byte, 0, 1024)
	recordStart, recordEnd, index := from.start, from.start, 0
	skip := from.skip
	err := follow(ctx, from.start, func(ev *engine.Event) error {
		if !started {
			start()
		}
		if ev.Position != recordEnd {
			recordStart, recordEnd, index = recordEnd, ev.Position, 0
			deadline()
		} else {
			index++
		}
		if skip > 0 {
			skip--
			if ev.Last {
				// Asked to resume after an index the record does not have:
				// the record is done either way.
				skip = 0
			}
			return nil
		}
		line = appendFeedEvent(line[:0], recordStart, index, ev)
		if _, err := bw.Write(line); err != nil {
			return err
		}
		s.feeds.events.Inc()
		if ev.Last {
			// A record's events are written together, then the client gets
			// them: never part of a record waiting in the buffer while the
			// feed idles.
			if err := bw.Flush(); err != nil {
				return err
			}
			return rc.Flush()
		}
		return nil
	})
	switch {
	case err == nil || ctx.Err() != nil:
	case started:
		// The status is sent; the client sees the stream end, and resumes.
		s.cfg.Logger.Warn("event feed ended", "from", from.start, "err", err)
	case errors.Is(err, journal.ErrRemoved):
		s.writeError(w, newError(wire.CodeGone, "the journal no longer holds position "+strconv.FormatUint(from.start, 10)+": "+err.Error()))
	case errors.Is(err, engine.ErrNoFollow):
		s.writeError(w, newError(wire.CodeUnavailable, "this journal cannot be followed"))
	default:
		// Follow reads at from at once; a frame that does not begin
		// there means from is not a record boundary.
		s.cfg.Logger.Warn("event feed refused its position", "from", from.start, "err", err)
		s.writeError(w, errInvalidArgument("from", "from is not a record boundary of this journal"))
	}
}

// appendFeedEvent appends one line of the feed.
func appendFeedEvent(b []byte, recordStart uint64, index int, ev *engine.Event) []byte {
	b = append(b, `{"position":"`...)
	b = strconv.AppendUint(b, recordStart, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, `","type":"`...)
	b = append(b, feedTypeOf(ev.Kind)...)
	b = append(b, `","at":`...)
	b = appendTime(b, ev.At)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(ev.Partition), 10)
	str := func(name, v string) {
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":`...)
		b = appendString(b, v)
	}
	num := func(name string, v int64) {
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, v, 10)
	}
	switch ev.Kind {
	case engine.EventBrandUpserted:
		br := &ev.Brand
		str("brand_id", br.ID)
		str("name", br.Name)
		str("country", br.Country)
		num("first_festival", int64(br.FirstFestival))
		b = append(b, `,"emerging":`...)
		b = strconv.AppendBool(b, br.Emerging)
		num("last_year_gmv", br.LastYearGMV)
	case engine.EventMerchantUpserted:
		m := &ev.Merchant
		str("merchant_id", m.ID)
		str("name", m.Name)
		str("brand_id", m.BrandID)
		str("kind", m.Kind.String())
		str("industry", m.Industry)
		str("region", m.Region)
	case engine.EventSKUUpserted:
		k := &ev.SKU
		str("sku_id", k.ID)
		str("merchant_id", k.MerchantID)
		str("brand_id", k.BrandID)
		str("title", k.Title)
		str("category", k.Category)
		num("price", k.Price)
		num("stock", k.Stock)
	case engine.EventStockAdjusted:
		str("sku_id", ev.SKUID)
		num("delta", ev.Delta)
	case engine.EventOrderPlaced:
		b = append(b, `,"order_id":"`...)
		b = ev.OrderID.AppendText(b)
		b = append(b, '"')
		str("buyer_id", ev.BuyerID)
		str("merchant_id", ev.MerchantID)
		str("channel", ev.Channel)
		str("region", ev.Region)
		if ev.DealID != "" {
			str("deal_id", ev.DealID)
		}
		b = append(b, `,"items":`...)
		b = appendItems(b, ev.Items, false)
		num("total", ev.Total)
		str("currency", "CNY")
		b = append(b, `,"pay_by":`...)
		b = appendTime(b, ev.PayBy)
	case engine.EventOrderPaid, engine.EventOrderCancelled, engine.EventOrderExpired:
		b = append(b, `,"order_id":"`...)
		b = ev.OrderID.AppendText(b)
		b = append(b, '"')
	case engine.EventParcelScanned:
		b = append(b, `,"order_id":"`...)
		b = ev.OrderID.AppendText(b)
		b = append(b, '"')
		str("status", ev.ParcelStatus.String())
		str("location", ev.Location)
		if ev.CarrierCode != "" {
			str("carrier_code", ev.CarrierCode)
		}
		b = append(b, `,"scanned_at":`...)
		b = appendTime(b, ev.ScanAt)
	case engine.EventChannelPut:
		c := &ev.LiveChannel
		str("channel_id", c.ID)
		str("title", c.Title)
		str("host", c.Host)
		b = append(b, `,"starts_at":`...)
		b = appendTime(b, c.StartsAt)
		b = append(b, `,"ends_at":`...)
		b = appendTime(b, c.EndsAt)
	case engine.EventDealPut:
		d := &ev.Deal
		str("deal_id", d.ID)
		str("channel_id", d.ChannelID)
		str("sku_id", d.SKUID)
		num("price", d.Price)
		num("stock", d.Stock)
		b = append(b, `,"starts_at":`...)
		b = appendTime(b, d.StartsAt)
		b = append(b, `,"ends_at":`...)
		b = appendTime(b, d.EndsAt)
		if d.LimitPerBuyer > 0 {
			num("limit_per_buyer", d.LimitPerBuyer)
		}
	case engine.EventDealEnded:
		str("deal_id", ev.DealID)
		str("sku_id", ev.SKUID)
		// The unsold units given back to the SKU's available stock.
		num("returned", ev.Delta)
	default:
		panic("server: event feed: unknown event kind " + ev.Kind.String())
	}
	return append(b, "}\n"...)
}
