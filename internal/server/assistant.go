package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fest-platform/fest/internal/assistant"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// The customer-service assistant's endpoints:
//   - POST /v1/assistant/messages (storefront) answers a buyer's message;
//   - GET /v1/assistant/stats (public) counts the questions.
//
// Both answer 503 until AttachAssistant. The assistant reads orders
// through assistantOrders, the one adapter between it and the order store
// and engine.

// assistantState holds the assistant once it is trained and attached.
type assistantState struct {
	a atomic.Pointer[assistant.Assistant]
}

// AttachAssistant makes the assistant's endpoints answer from a.
func (s *Server) AttachAssistant(a *assistant.Assistant) { s.asst.a.Store(a) }

// AssistantOrders returns the live order data the assistant reads: the
// order store and the engine of the attached backend (none before Attach:
// every order is then unknown).
func (s *Server) AssistantOrders() assistant.Orders { return assistantOrders{s} }

// assistantJSON is the body of POST /v1/assistant/messages.
type assistantJSON struct {
	BuyerID   string `json:"buyer_id"`
	Text      string `json:"text"`
	SessionID string `json:"session_id"`
}

// assistantBodyBytesMax bounds the body: the longest text the assistant
// reads, every byte escaped as \u00XX in the worst case, and the rest.
func assistantBodyBytesMax(a *assistant.Assistant) int64 {
	return int64(6*a.Config().TextBytesMax) + 1024
}

func (s *Server) handleAssistantMessage(w http.ResponseWriter, r *http.Request, be *backend) {
	a := s.asst.a.Load()
	if a == nil {
		s.writeError(w, errNotReady)
		return
	}
	bp, aerr := s.readBody(r, assistantBodyBytesMax(a))
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	var in assistantJSON
	aerr = decodeStrict(*bp, &in)
	s.putBuf(bp)
	if aerr == nil && in.BuyerID != "" && !validID(in.BuyerID) {
		aerr = errInvalidArgument("buyer_id", "invalid buyer_id")
	}
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	reply, err := a.Answer(r.Context(), assistant.Message{BuyerID: in.BuyerID, SessionID: in.SessionID, Text: in.Text, At: time.Now()})
	var me *assistant.MessageError
	switch {
	case errors.As(err, &me):
		s.writeError(w, errInvalidArgument(me.Field, me.Reason))
		return
	case err != nil:
		s.writeError(w, newError(wire.CodeInternal, err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, appendReply(make([]byte, 0, 256+len(reply.Answer)), &reply))
}

// appendReply renders the answer of POST /v1/assistant/messages.
func appendReply(b []byte, r *assistant.Reply) []byte {
	b = append(b, `{"language":"`...)
	b = append(b, r.Language.String()...)
	b = append(b, `","intent":"`...)
	b = append(b, r.Intent.String()...)
	b = append(b, `","confidence":`...)
	b = strconv.AppendFloat(b, r.Confidence, 'f', 3, 64)
	b = append(b, `,"answer":`...)
	b = appendString(b, r.Answer)
	b = append(b, `,"handoff":`...)
	b = strconv.AppendBool(b, r.Handoff)
	b = append(b, `,"order_id":`...)
	b = appendStringOrNull(b, r.OrderID)
	b = append(b, `,"parcel_id":`...)
	b = appendStringOrNull(b, r.ParcelID)
	return append(b, "}\n"...)
}

func appendStringOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// handleAssistantStats answers GET /v1/assistant/stats (public).
func (s *Server) handleAssistantStats(w http.ResponseWriter, r *http.Request) {
	a := s.asst.a.Load()
	if a == nil {
		s.writeError(w, errNotReady)
		return
	}
	writeJSON(w, http.StatusOK, appendAssistantStats(nil, a.Stats()))
}

// appendAssistantStats renders the body of GET /v1/assistant/stats, every
// intent and language listed (zero included) so a dashboard's keys are
// stable.
func appendAssistantStats(b []byte, st assistant.Stats) []byte {
	b = append(b, `{"questions":`...)
	b = strconv.AppendUint(b, st.Questions, 10)
	b = append(b, `,"by_intent":{`...)
	for i, in := range assistant.Intents() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, in.String()...)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, st.ByIntent[in], 10)
	}
	b = append(b, `},"by_language":{`...)
	for i, l := range assistant.Languages() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, l.String()...)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, st.ByLanguage[l], 10)
	}
	b = append(b, `},"automated_share":`...)
	b = strconv.AppendFloat(b, st.AutomatedShare, 'f', 4, 64)
	return append(b, "}\n"...)
}

// assistantCollector reads the assistant's counters at scrape time.
type assistantCollector struct{ s *Server }

var (
	descAssistantIntent    = prometheus.NewDesc("fest_assistant_questions_total", "Questions the assistant answered, by intent.", []string{"intent"}, nil)
	descAssistantLanguage  = prometheus.NewDesc("fest_assistant_questions_by_language_total", "Questions the assistant answered, by language.", []string{"language"}, nil)
	descAssistantAutomated = prometheus.NewDesc("fest_assistant_automated_total", "Questions answered without a handoff to a person.", nil, nil)
)

func (c *assistantCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAssistantIntent
	ch <- descAssistantLanguage
	ch <- descAssistantAutomated
}

func (c *assistantCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.s.asst.a.Load()
	if a == nil {
		return
	}
	st := a.Stats()
	for _, in := range assistant.Intents() {
		ch <- prometheus.MustNewConstMetric(descAssistantIntent, prometheus.CounterValue, float64(st.ByIntent[in]), in.String())
	}
	for _, l := range assistant.Languages() {
		ch <- prometheus.MustNewConstMetric(descAssistantLanguage, prometheus.CounterValue, float64(st.ByLanguage[l]), l.String())
	}
	ch <- prometheus.MustNewConstMetric(descAssistantAutomated, prometheus.CounterValue, float64(st.Automated))
}

// assistantOrders adapts today's order store and engine to the
// assistant's Orders. It is the one place that knows both sides; it reads
// as GET /v1/orders/{id} and GET /v1/buyers/{id}/orders do and cancels as
// POST /v1/orders/{id}/cancel does.
type assistantOrders struct{ s *Server }

func (o assistantOrders) Order(ctx context.Context, id string) (assistant.OrderView, bool) {
	be := o.s.be.Load()
	oid, err := engine.ParseOrderID(id)
	if be == nil || err != nil {
		return assistant.OrderView{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, o.s.cfg.ReadWaitMax)
	defer cancel()
	ord, aerr := o.s.loadOrder(ctx, be, oid, engine.StatusNone)
	if aerr != nil {
		return assistant.OrderView{}, false
	}
	return assistantView(ctx, be, &ord), true
}

func (o assistantOrders) LatestOrder(ctx context.Context, buyerID string) (assistant.OrderView, bool) {
	be := o.s.be.Load()
	if be == nil || !validID(buyerID) {
		return assistant.OrderView{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, o.s.cfg.ReadWaitMax)
	defer cancel()
	// An order the buyer was just told about must be found: catch up with
	// everything durable first, as the buyer's order list does.
	if err := be.reads.WaitDurable(ctx); err != nil {
		return assistant.OrderView{}, false
	}
	latest, _, err := be.store.ListByBuyer(buyerID, 1, "")
	if err != nil || len(latest) == 0 {
		return assistant.OrderView{}, false
	}
	v := storedView(&latest[0])
	return assistantView(ctx, be, &v), true
}

// assistantView converts an order, asking the engine for the status of a
// pending one: the store may lag a payment or cancellation the engine has
// acknowledged.
func assistantView(ctx context.Context, be *backend, o *orderView) assistant.OrderView {
	status := o.Status
	if status == engine.StatusPending {
		res := be.eng.Do(ctx, engine.Command{Kind: engine.KindGetOrder, OrderID: o.ID})
		if res.OK() {
			status = res.Status
		}
	}
	return assistant.OrderView{
		ID: o.ID.String(), BuyerID: o.BuyerID, Status: status.String(), Total: o.Total,
		CreatedAt: time.Unix(0, o.CreatedAt).UTC(),
	}
}

// Cancel runs the cancel through the gateway, which answers once the
// cancellation is durable.
func (o assistantOrders) Cancel(ctx context.Context, id string) error {
	be := o.s.be.Load()
	if be == nil {
		return fmt.Errorf("cancel order %s: %w", id, errNotReady)
	}
	oid, err := engine.ParseOrderID(id)
	if err != nil {
		return fmt.Errorf("cancel order %s: %w", id, err)
	}
	if o.s.cl != nil {
		// In a cluster the order's owner cancels it (forward_assistant.go).
		if done, err := o.s.cl.cancelElsewhere(ctx, oid); done {
			return err
		}
	}
	c := be.gw.getCall()
	defer be.gw.putCall(c)
	c.cmd = engine.Command{Kind: engine.KindCancel, OrderID: oid}
	be.gw.do(c)
	res := &c.res
	switch {
	case res.Code == engine.CodeInvalidState:
		return fmt.Errorf("cancel order %s: %w", id, assistant.ErrNotCancellable)
	case !res.OK():
		return fmt.Errorf("cancel order %s: %w", id, res.Err())
	}
	if res.ChangedAt != 0 {
		o.s.metrics.cancelled.Inc()
	}
	return nil
}

// AssistantParcels returns the live parcel data the assistant reads: the
// logistics projection of the attached backend (none before AttachLogistics:
// every parcel is then unknown).
func (s *Server) AssistantParcels() assistant.Parcels { return assistantParcels{s} }

// assistantParcels adapts the logistics projection to the assistant's
// Parcels, reading as GET /v1/parcels/{id} does; the buyer is the order's,
// from the order store.
type assistantParcels struct{ s *Server }

func (p assistantParcels) Parcel(ctx context.Context, id string) (assistant.ParcelView, bool) {
	oid, err := engine.ParseParcelID(id)
	if err != nil {
		return assistant.ParcelView{}, false
	}
	return p.view(ctx, oid)
}

func (p assistantParcels) OrderParcel(ctx context.Context, orderID string) (assistant.ParcelView, bool) {
	oid, err := engine.ParseOrderID(orderID)
	if err != nil {
		return assistant.ParcelView{}, false
	}
	return p.view(ctx, oid)
}

func (p assistantParcels) view(ctx context.Context, id engine.OrderID) (assistant.ParcelView, bool) {
	be, l := p.s.be.Load(), p.s.logi.l.Load()
	if be == nil || l == nil {
		return assistant.ParcelView{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, p.s.cfg.ReadWaitMax)
	defer cancel()
	parcel, aerr := p.s.loadParcel(ctx, be, l, id, "parcel_id")
	if aerr != nil {
		return assistant.ParcelView{}, false
	}
	o, aerr := p.s.loadOrder(ctx, be, id, engine.StatusNone)
	if aerr != nil {
		return assistant.ParcelView{}, false
	}
	return assistant.ParcelView{
		ID: engine.ParcelID(id), OrderID: id.String(), BuyerID: o.BuyerID,
		Status: parcel.Status.String(), ETA: time.Unix(0, parcel.ETA).UTC(),
	}, true
}
