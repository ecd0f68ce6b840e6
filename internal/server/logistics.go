package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/logistics"
	"github.com/fest-platform/fest/wire"
)

// The logistics endpoints:
//   - GET /v1/orders/{order_id}/parcel (storefront): the parcel of an order;
//   - GET /v1/parcels/{parcel_id} (storefront, carrier): a parcel;
//   - POST /v1/parcels/{parcel_id}/scans (carrier): a carrier's scan, sent
//     through the engine (journaled and fsynced before the 200);
//   - GET /v1/logistics/stats (public).
//
// A parcel id is "P" and its order's id (engine.ParcelID), so a scan routes
// to its order's partition. All answer 503 until AttachLogistics.

// scanFutureMax is how far past the server's clock a scan's "at" may be: a
// carrier's clock may run a little fast, but a scan an hour ahead is a
// wrong time, refused (422) rather than kept as the parcel's history.
const scanFutureMax = time.Hour

// logisticsState holds the parcel projection once attached.
type logisticsState struct {
	l atomic.Pointer[logistics.Logistics]
}

// AttachLogistics makes the logistics endpoints answer from l, a projection
// fed by the runner attached with Attach.
func (s *Server) AttachLogistics(l *logistics.Logistics) { s.logi.l.Store(l) }

// parcelView is a parcel as the API answers it.
type parcelView struct {
	ParcelID    string
	OrderID     engine.OrderID
	Status      engine.ParcelStatus
	Carrier     string
	Warehouse   string
	Destination string
	ETA         int64 // unix ns
	Stale       bool
	Events      []parcelEventView
}

type parcelEventView struct {
	Status      engine.ParcelStatus
	Location    string
	At          int64 // unix ns
	CarrierCode string
}

func newParcelView(p *logistics.Parcel) parcelView {
	v := parcelView{
		ParcelID: engine.ParcelID(p.OrderID), OrderID: p.OrderID, Status: p.Status, Carrier: p.Carrier,
		Warehouse: p.Warehouse, Destination: p.Destination, ETA: p.ETA, Stale: p.Stale,
		Events: make([]parcelEventView, len(p.Events)),
	}
	for i, e := range p.Events {
		v.Events[i] = parcelEventView{Status: e.Status, Location: e.Location, At: e.At, CarrierCode: e.CarrierCode}
	}
	return v
}

func appendParcel(b []byte, p *parcelView) []byte {
	b = append(b, `{"parcel_id":`...)
	b = appendString(b, p.ParcelID)
	b = append(b, `,"order_id":"`...)
	b = p.OrderID.AppendText(b)
	b = append(b, `","status":"`...)
	b = append(b, p.Status.String()...)
	b = append(b, `","carrier":`...)
	b = appendString(b, p.Carrier)
	b = append(b, `,"warehouse":`...)
	b = appendString(b, p.Warehouse)
	b = append(b, `,"destination":`...)
	b = appendString(b, p.Destination)
	b = append(b, `,"eta":`...)
	b = appendTime(b, p.ETA)
	b = append(b, `,"stale":`...)
	b = strconv.AppendBool(b, p.Stale)
	b = append(b, `,"events":[`...)
	for i := range p.Events {
		e := &p.Events[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"status":"`...)
		b = append(b, e.Status.String()...)
		b = append(b, `","location":`...)
		b = appendString(b, e.Location)
		b = append(b, `,"at":`...)
		b = appendTime(b, e.At)
		if e.CarrierCode != "" {
			b = append(b, `,"carrier_code":`...)
			b = appendString(b, e.CarrierCode)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// loadParcel reads the parcel of order id. A parcel not found (or not yet
// in the status want, when want is not ParcelNone) may be one whose payment
// or scan was acknowledged a moment ago: wait until the projection reflects
// everything durable, then look again, as loadOrder does.
func (s *Server) loadParcel(ctx context.Context, be *backend, l *logistics.Logistics, id engine.OrderID, field string) (logistics.Parcel, *apiError) {
	p, err := l.Parcel(id)
	if err == nil {
		return p, nil
	}
	if werr := be.reads.WaitDurable(ctx); werr != nil {
		return logistics.Parcel{}, newError(wire.CodeUnavailable, "parcels are catching up; retry shortly")
	}
	p, err = l.Parcel(id)
	if errors.Is(err, logistics.ErrNotFound) {
		msg := "no parcel " + engine.ParcelID(id)
		if field == "order_id" {
			msg = "order " + id.String() + " has no parcel: it is not paid"
		}
		return logistics.Parcel{}, errNotFound(field, msg)
	}
	if err != nil {
		return logistics.Parcel{}, newError(wire.CodeInternal, err.Error())
	}
	return p, nil
}

func parseParcelID(r *http.Request) (engine.OrderID, *apiError) {
	id, err := engine.ParseParcelID(r.PathValue("parcel_id"))
	if err != nil {
		return 0, errNotFound("parcel_id", "no parcel "+strconv.Quote(r.PathValue("parcel_id")))
	}
	return id, nil
}

func (s *Server) writeParcel(w http.ResponseWriter, p *logistics.Parcel) {
	v := newParcelView(p)
	writeJSON(w, http.StatusOK, append(appendParcel(make([]byte, 0, 512), &v), '\n'))
}

func (s *Server) handleOrderParcel(w http.ResponseWriter, r *http.Request, be *backend) {
	s.serveParcel(w, r, be, parseOrderID, "order_id")
}

func (s *Server) handleGetParcel(w http.ResponseWriter, r *http.Request, be *backend) {
	s.serveParcel(w, r, be, parseParcelID, "parcel_id")
}

// serveParcel answers a parcel read whose order id parse takes from the
// path, naming field in its errors.
func (s *Server) serveParcel(w http.ResponseWriter, r *http.Request, be *backend, parse func(*http.Request) (engine.OrderID, *apiError), field string) {
	l := s.logi.l.Load()
	if l == nil {
		s.writeError(w, errNotReady)
		return
	}
	id, aerr := parse(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	ctx, cancel := s.readCtx(r)
	defer cancel()
	p, aerr := s.loadParcel(ctx, be, l, id, field)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	s.writeParcel(w, &p)
}

// scanJSON is the body of POST /v1/parcels/{parcel_id}/scans.
type scanJSON struct {
	Status      *string `json:"status"`
	Location    *string `json:"location"`
	At          *string `json:"at"`
	CarrierCode *string `json:"carrier_code"`
}

// scanCommand validates a scan's body into the engine's Scan; at is checked
// against the clock and the parcel's creation by the handler. The time,
// when omitted, is the time the scan is received.
func scanCommand(in *scanJSON, now time.Time) (engine.Scan, *apiError) {
	var sc engine.Scan
	if in.Status == nil {
		return sc, errInvalidArgument("status", "status is required")
	}
	st, ok := engine.ParseScanStatus(*in.Status)
	if !ok {
		return sc, errInvalidArgument("status", "unknown scan status "+strconv.Quote(*in.Status)+": one of picked_up, in_transit, out_for_delivery, delivered, failed_attempt, exception, returned")
	}
	sc.Status = st
	if in.Location == nil || *in.Location == "" {
		return sc, errInvalidArgument("location", "location is required")
	}
	if len(*in.Location) > engine.LocationBytesMax {
		return sc, errInvalidArgument("location", "location over "+strconv.Itoa(engine.LocationBytesMax)+" bytes")
	}
	sc.Location = *in.Location
	if in.CarrierCode != nil {
		if len(*in.CarrierCode) > engine.CarrierCodeBytesMax {
			return sc, errInvalidArgument("carrier_code", "carrier_code over "+strconv.Itoa(engine.CarrierCodeBytesMax)+" bytes")
		}
		sc.CarrierCode = *in.CarrierCode
	}
	at := now
	if in.At != nil {
		t, err := time.Parse(time.RFC3339Nano, *in.At)
		if err != nil {
			return sc, errInvalidArgument("at", "at is not an RFC 3339 time")
		}
		at = t
	}
	if at.After(now.Add(scanFutureMax)) {
		return sc, errInvalidArgument("at", "at is more than "+scanFutureMax.String()+" in the future")
	}
	sc.At = at.UnixNano()
	return sc, nil
}

func (s *Server) handleScan(w http.ResponseWriter, r *http.Request, be *backend) {
	l := s.logi.l.Load()
	if l == nil {
		s.writeError(w, errNotReady)
		return
	}
	id, aerr := parseParcelID(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	var in scanJSON
	aerr = s.decodeBody(r, &in)
	var sc engine.Scan
	if aerr == nil {
		sc, aerr = scanCommand(&in, time.Now())
	}
	if aerr != nil {
		s.metrics.scanRejected("edge")
		s.writeError(w, aerr)
		return
	}
	ctx, cancel := s.readCtx(r)
	defer cancel()
	// The parcel's creation bounds the scan's time from below; a parcel
	// that does not exist is answered here, before the engine.
	p, aerr := s.loadParcel(ctx, be, l, id, "parcel_id")
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	if sc.At < p.CreatedAt {
		s.metrics.scanRejected("edge")
		s.writeError(w, errInvalidArgument("at", "at is before the order was paid"))
		return
	}
	c := be.gw.getCall()
	defer be.gw.putCall(c)
	c.cmd = engine.Command{Kind: engine.KindScanParcel, OrderID: id, Scan: &sc}
	be.gw.do(c)
	res := c.res
	if !res.OK() {
		s.metrics.scanRejected(res.Code.String())
		e := resultError(&res)
		if res.Code == engine.CodeInvalidState {
			e.Message = "a parcel " + res.ParcelStatus.String() + " cannot be scanned " + sc.Status.String()
		}
		s.writeError(w, e)
		return
	}
	s.metrics.scans.Inc()
	// Read your write: the projection reflects the scan's record. When it
	// has not caught up within ReadWaitMax the scan is durable all the
	// same, so the answer is still the 200 the contract promises, with the
	// parcel as read before the engine and the engine's word on the scan:
	// an error here would be a 503 that a carrier resends, and a resend
	// after another scan of the parcel would apply this one twice. On a
	// single node every 503 of this endpoint thus means that nothing was
	// applied; in a cluster a forwarded scan's 503 may still come after its
	// owner applied it (forward.go).
	if err := be.reads.WaitResult(ctx, id.Partition(), res.Position); err != nil {
		p = scannedParcel(p, &sc, &res)
		s.writeParcel(w, &p)
		return
	}
	p, err := l.Parcel(id)
	if err != nil {
		s.writeError(w, newError(wire.CodeInternal, "scanned parcel not in the projection: "+err.Error()))
		return
	}
	s.writeParcel(w, &p)
}

// scannedParcel is p, read from the projection before the engine applied
// sc with result res, with the scan applied as the engine reports it: the
// status is the engine's, and a scan that changed the parcel (not a repeat
// of the last one) is its newest event. Scans acknowledged a moment before
// this one and not yet projected are missing from the events.
func scannedParcel(p logistics.Parcel, sc *engine.Scan, res *engine.Result) logistics.Parcel {
	p.Status = res.ParcelStatus
	if res.ChangedAt == 0 {
		return p // the last scan again: nothing changed
	}
	p.LastScanAt, p.Stale = res.ChangedAt, false
	p.Events = append(p.Events[:len(p.Events):len(p.Events)],
		logistics.Event{Status: sc.Status, Location: sc.Location, At: sc.At, CarrierCode: sc.CarrierCode})
	return p
}

func (s *Server) handleLogisticsStats(w http.ResponseWriter, r *http.Request) {
	l := s.logi.l.Load()
	be := s.be.Load()
	if l == nil || be == nil {
		s.writeError(w, errNotReady)
		return
	}
	st := l.Stats()
	lag := 0.0
	for _, lg := range be.reads.Lags() {
		if lg.Projection == l.Name() {
			lag = lg.Seconds
		}
	}
	writeJSON(w, http.StatusOK, appendLogisticsStats(nil, &st, lag))
}

func appendLogisticsStats(b []byte, st *logistics.Stats, lagSeconds float64) []byte {
	b = append(b, `{"parcels":`...)
	b = strconv.AppendUint(b, st.Parcels, 10)
	b = append(b, `,"by_status":{`...)
	for s := engine.ParcelCreated; int(s) < engine.ParcelStatusCount; s++ {
		if s > engine.ParcelCreated {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, s.String()...)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, st.ByStatus[s], 10)
	}
	b = append(b, `},"parcels_per_second":`...)
	b = strconv.AppendFloat(b, st.ParcelsPerSecond, 'f', 1, 64)
	b = append(b, `,"stale":`...)
	b = strconv.AppendUint(b, st.Stale, 10)
	b = append(b, `,"creation_lag_seconds":`...)
	b = strconv.AppendFloat(b, lagSeconds, 'f', 3, 64)
	b = append(b, `,"scans":`...)
	b = strconv.AppendUint(b, st.Scans, 10)
	b = append(b, `,"as_of":`...)
	b = appendTime(b, st.AsOf)
	return append(b, "}\n"...)
}

// logisticsCollector reads the parcel figures at scrape time; the creation
// lag is the runner's fest_projection_lag_{bytes,seconds}{projection="logistics"}.
type logisticsCollector struct{ s *Server }

var (
	descParcels      = prometheus.NewDesc("fest_parcels", "Parcels, by status.", []string{"status"}, nil)
	descParcelsStale = prometheus.NewDesc("fest_parcels_stale", "Parcels with no scan for the stale time.", nil, nil)
	descParcelScans  = prometheus.NewDesc("fest_parcel_scans_applied_total", "Carrier scans the parcel projection has applied.", nil, nil)
)

func (c *logisticsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descParcels
	ch <- descParcelsStale
	ch <- descParcelScans
}

func (c *logisticsCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.s.logi.l.Load()
	if l == nil {
		return
	}
	st := l.Stats()
	for s := engine.ParcelCreated; int(s) < engine.ParcelStatusCount; s++ {
		ch <- prometheus.MustNewConstMetric(descParcels, prometheus.GaugeValue, float64(st.ByStatus[s]), s.String())
	}
	ch <- prometheus.MustNewConstMetric(descParcelsStale, prometheus.GaugeValue, float64(st.Stale))
	ch <- prometheus.MustNewConstMetric(descParcelScans, prometheus.CounterValue, float64(st.Scans))
}

// scanMetrics are the counters of the scan endpoint.
type scanMetrics struct {
	scans         prometheus.Counter
	scanRejectVec *prometheus.CounterVec
}

func newScanMetrics(reg *prometheus.Registry, s *Server) scanMetrics {
	m := scanMetrics{
		scans:         prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_parcel_scans_total", Help: "Carrier scans accepted through the API."}),
		scanRejectVec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fest_parcel_scans_rejected_total", Help: "Carrier scans refused, by engine code (edge: the HTTP checks)."}, []string{"code"}),
	}
	reg.MustRegister(m.scans, m.scanRejectVec, &logisticsCollector{s: s})
	return m
}

func (m *scanMetrics) scanRejected(code string) { m.scanRejectVec.WithLabelValues(code).Inc() }
