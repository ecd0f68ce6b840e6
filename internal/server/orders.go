package server

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/wire"
)

// orderView is an order as the API answers it, built from the engine's
// result for an order just placed, or from the order store for a read: the
// answer's shape is the HTTP edge's, not the store's.
type orderView struct {
	ID                                           engine.OrderID
	Status                                       engine.OrderStatus
	BuyerID, MerchantID, Channel, Region, DealID string
	Items                                        []engine.Item // merged lines with UnitPrice and Amount
	Total                                        int64         // fen
	CreatedAt, PayBy                             int64         // unix ns
	ChangedAt                                    int64         // unix ns of paid, cancelled or expired
}

// storedView is the view of an order read from the store.
func storedView(o *orders.Order) orderView {
	return orderView{
		ID: o.ID, Status: o.Status, BuyerID: o.BuyerID, MerchantID: o.MerchantID, Channel: o.Channel, Region: o.Region,
		DealID: o.DealID, Items: o.Items, Total: o.Total, CreatedAt: o.CreatedAt, PayBy: o.PayBy, ChangedAt: o.ChangedAt,
	}
}

// appendOrder appends the JSON of an order.
func appendOrder(b []byte, o *orderView) []byte {
	b = append(b, `{"order_id":"`...)
	// wire's base 36 divides by a constant, strconv's by a variable.
	b = wire.AppendOrderID(b, uint64(o.ID))
	b = append(b, `","status":"`...)
	b = append(b, o.Status.String()...)
	b = append(b, `","buyer_id":`...)
	b = appendString(b, o.BuyerID)
	b = append(b, `,"merchant_id":`...)
	b = appendString(b, o.MerchantID)
	b = append(b, `,"items":`...)
	b = appendItems(b, o.Items, true)
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, o.Total, 10)
	b = append(b, `,"currency":"CNY","channel":`...)
	b = appendString(b, o.Channel)
	b = append(b, `,"region":`...)
	b = appendString(b, o.Region)
	if o.DealID != "" {
		b = append(b, `,"deal_id":`...)
		b = appendString(b, o.DealID)
	}
	b = append(b, `,"created_at":`...)
	b = appendTime(b, o.CreatedAt)
	b = append(b, `,"pay_by":`...)
	b = appendTime(b, o.PayBy)
	if o.ChangedAt != 0 {
		switch o.Status {
		case engine.StatusPaid:
			b = append(b, `,"paid_at":`...)
		case engine.StatusCancelled:
			b = append(b, `,"cancelled_at":`...)
		case engine.StatusExpired:
			b = append(b, `,"expired_at":`...)
		}
		b = appendTime(b, o.ChangedAt)
	}
	return append(b, '}')
}

// appendOrderBrief appends the JSON of o as a batch's answer=brief gives
// it: order_id, status, total and pay_by.
func appendOrderBrief(b []byte, o *orderView) []byte {
	b = append(b, `{"order_id":"`...)
	b = wire.AppendOrderID(b, uint64(o.ID))
	b = append(b, `","status":"`...)
	b = append(b, o.Status.String()...)
	b = append(b, `","total":`...)
	b = strconv.AppendInt(b, o.Total, 10)
	b = append(b, `,"pay_by":`...)
	b = appendTime(b, o.PayBy)
	return append(b, '}')
}

// parseBatchAnswer reads the answer query parameter of POST
// /v1/orders:batch: full (the default), every placed order as POST
// /v1/orders answers it, or brief, only its order_id, status, total and
// pay_by. A storefront at peak rates needs no echo of what it sent, and
// the echo is most of the answer's bytes on both ends.
func parseBatchAnswer(r *http.Request) (bool, *apiError) {
	if r.URL.RawQuery == "" {
		return false, nil
	}
	switch r.URL.Query().Get("answer") {
	case "", "full":
		return false, nil
	case "brief":
		return true, nil
	}
	return false, errInvalidArgument("answer", "answer must be full or brief")
}

// appendItems appends the JSON array of an order's lines, with each line's
// amount when withAmount is set (the event feed's lines carry none).
func appendItems(b []byte, items []engine.Item, withAmount bool) []byte {
	b = append(b, '[')
	for i := range items {
		it := &items[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sku_id":`...)
		b = appendString(b, it.SKUID)
		b = append(b, `,"quantity":`...)
		b = strconv.AppendInt(b, int64(it.Quantity), 10)
		b = append(b, `,"unit_price":`...)
		b = strconv.AppendInt(b, it.UnitPrice, 10)
		if withAmount {
			b = append(b, `,"amount":`...)
			b = strconv.AppendInt(b, it.Amount, 10)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// placedOrder builds the view of an order the engine has just placed from
// the command (its items merged and priced in place) and the result.
func placedOrder(cmd *engine.Command, res *engine.Result) orderView {
	o := &cmd.Order
	return orderView{
		ID: res.OrderID, BuyerID: o.BuyerID, MerchantID: res.MerchantID,
		Channel: o.Channel, Region: o.Region, DealID: o.DealID, Items: o.Items,
		Total: res.Total, CreatedAt: res.CreatedAt, PayBy: res.PayBy, Status: engine.StatusPending,
	}
}

// asCreated turns an order read back from the store into the view its
// placement answered: an Idempotency-Key replay returns the first response
// again, whatever the order's status is now.
func asCreated(o *orderView) {
	o.Status, o.ChangedAt = engine.StatusPending, 0
}

// loadOrder reads an order from the store. An order not found yet may be
// one acknowledged a moment ago that the store has not applied: wait until
// the store reflects everything durable, then look again. want, when not
// StatusNone, is the status the engine reported: a store still showing an
// older status is waited for the same way.
func (s *Server) loadOrder(ctx context.Context, be *backend, id engine.OrderID, want engine.OrderStatus) (orderView, *apiError) {
	o, err := be.store.Get(id)
	if err == nil && (want == engine.StatusNone || o.Status == want) {
		return storedView(&o), nil
	}
	if err != nil && !errors.Is(err, orders.ErrNotFound) {
		return orderView{}, storeError(err)
	}
	if werr := be.reads.WaitDurable(ctx); werr != nil {
		return orderView{}, newError(wire.CodeUnavailable, "order store is catching up; retry shortly")
	}
	o, err = be.store.Get(id)
	if errors.Is(err, orders.ErrNotFound) {
		return orderView{}, errNotFound("order_id", "no order "+id.String())
	}
	if err != nil {
		return orderView{}, storeError(err)
	}
	return storedView(&o), nil
}

// storeError answers a failure of the order store: its cold tier's disk
// is a 503 (retryable), anything else a 500.
func storeError(err error) *apiError {
	if errors.Is(err, orders.ErrColdTier) {
		return newError(wire.CodeUnavailable, err.Error())
	}
	return newError(wire.CodeInternal, err.Error())
}

func (s *Server) reject(w http.ResponseWriter, e *apiError) {
	s.metrics.rejectedCode(e.Code)
	s.writeError(w, e)
}

func (s *Server) handlePlaceOrder(w http.ResponseWriter, r *http.Request, be *backend) {
	bp, aerr := s.readBody(r, s.cfg.BodyBytesMax)
	if aerr != nil {
		s.reject(w, aerr)
		return
	}
	defer s.putBuf(bp)
	c := be.gw.getCall()
	defer be.gw.putCall(c)
	if aerr = decodeOrder(*bp, &c.in); aerr != nil {
		s.reject(w, aerr)
		return
	}
	if aerr = orderCommand(&c.in, r.Header.Get("Idempotency-Key"), -1, &c.cmd); aerr != nil {
		s.reject(w, aerr)
		return
	}
	if c.cmd.At, aerr = s.rehearsalHeader(r); aerr != nil {
		s.reject(w, aerr)
		return
	}
	if s.cl != nil {
		req := engine.Request{Command: c.cmd}
		if s.cl.elsewhere(w, r, be, &req, *bp, s.handlePlaceOrder) {
			return
		}
	}
	be.gw.do(c)
	res := &c.res
	if !res.OK() {
		s.metrics.rejected(res.Code)
		s.writeError(w, resultError(res))
		return
	}
	var view orderView
	if res.Replayed {
		ctx, cancel := s.readCtx(r)
		view, aerr = s.loadOrder(ctx, be, res.OrderID, engine.StatusNone)
		cancel()
		if aerr != nil {
			s.writeError(w, aerr)
			return
		}
		asCreated(&view)
	} else {
		s.metrics.placed.Inc()
		view = placedOrder(&c.cmd, res)
	}
	b := appendOrder((*bp)[:0], &view)
	b = append(b, '\n')
	writeJSON(w, http.StatusCreated, b)
	*bp = b
}

func parseOrderID(r *http.Request) (engine.OrderID, *apiError) {
	id, err := engine.ParseOrderID(r.PathValue("order_id"))
	if err != nil {
		return 0, errNotFound("order_id", "no order "+strconv.Quote(r.PathValue("order_id")))
	}
	return id, nil
}

type payJSON struct {
	Amount *int64 `json:"amount"`
}

func (s *Server) handlePay(w http.ResponseWriter, r *http.Request, be *backend) {
	id, aerr := parseOrderID(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	bp, aerr := s.readBody(r, s.cfg.BodyBytesMax)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	var p payJSON
	aerr = decodeStrict(*bp, &p)
	s.putBuf(bp)
	if aerr == nil && p.Amount == nil {
		aerr = errInvalidArgument("amount", "amount is required")
	}
	if aerr == nil && (*p.Amount < 0 || *p.Amount > amountMax) {
		aerr = errInvalidArgument("amount", "amount out of range")
	}
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	s.orderCommand(w, r, be, engine.Command{Kind: engine.KindPay, OrderID: id, Amount: *p.Amount})
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request, be *backend) {
	id, aerr := parseOrderID(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	bp, aerr := s.readBody(r, s.cfg.BodyBytesMax)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	// The body is optional; when present it must be an empty object.
	if len(*bp) > 0 {
		var empty struct{}
		aerr = decodeStrict(*bp, &empty)
	}
	s.putBuf(bp)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	s.orderCommand(w, r, be, engine.Command{Kind: engine.KindCancel, OrderID: id})
}

// orderCommand runs pay or cancel and answers with the order.
func (s *Server) orderCommand(w http.ResponseWriter, r *http.Request, be *backend, cmd engine.Command) {
	var aerr *apiError
	if cmd.At, aerr = s.rehearsalHeader(r); aerr != nil {
		s.writeError(w, aerr)
		return
	}
	c := be.gw.getCall()
	defer be.gw.putCall(c)
	c.cmd = cmd
	be.gw.do(c)
	res := c.res
	if !res.OK() {
		s.writeError(w, resultError(&res))
		return
	}
	if cmd.Kind == engine.KindPay && res.ChangedAt != 0 {
		s.metrics.paid.Inc()
	}
	if cmd.Kind == engine.KindCancel && res.ChangedAt != 0 {
		s.metrics.cancelled.Inc()
	}
	ctx, cancel := s.readCtx(r)
	defer cancel()
	o, aerr := s.loadOrder(ctx, be, cmd.OrderID, res.Status)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	if o.Status != res.Status {
		o.Status, o.ChangedAt = res.Status, res.ChangedAt
	}
	if cmd.Kind == engine.KindPay && res.ChangedAt == 0 && o.Total != cmd.Amount {
		// Already paid: a retry is answered 200, but a retry with another
		// amount is still the wrong amount, not a success.
		s.writeError(w, resultError(&engine.Result{Code: engine.CodePaymentMismatch, Field: "amount", OrderID: cmd.OrderID, Total: o.Total}))
		return
	}
	writeJSON(w, http.StatusOK, append(appendOrder(make([]byte, 0, 512), &o), '\n'))
}

func (s *Server) handleGetOrder(w http.ResponseWriter, r *http.Request, be *backend) {
	id, aerr := parseOrderID(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	ctx, cancel := s.readCtx(r)
	defer cancel()
	o, aerr := s.loadOrder(ctx, be, id, engine.StatusNone)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	if o.Status == engine.StatusPending {
		// The store may lag a payment or cancellation the engine has
		// already acknowledged: the engine holds every order's status.
		res := be.eng.Do(ctx, engine.Command{Kind: engine.KindGetOrder, OrderID: id})
		if res.OK() && res.Status != engine.StatusPending {
			o, aerr = s.loadOrder(ctx, be, id, res.Status)
			if aerr != nil {
				s.writeError(w, aerr)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, append(appendOrder(make([]byte, 0, 512), &o), '\n'))
}

// listLimit parses limit (or top): default 50, 1 to 1,000.
func listLimit(r *http.Request) (int, *apiError) {
	q := r.URL.Query()
	name := "limit"
	v := q.Get("limit")
	if v == "" && q.Has("top") {
		name, v = "top", q.Get("top")
	}
	if v == "" && !q.Has(name) {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > wire.ListTopMax {
		return 0, errInvalidArgument(name, name+" must be an integer from 1 to "+strconv.Itoa(wire.ListTopMax))
	}
	return n, nil
}

func (s *Server) handleBuyerOrders(w http.ResponseWriter, r *http.Request, be *backend) {
	buyer := r.PathValue("buyer_id")
	if !validID(buyer) {
		s.writeError(w, errInvalidArgument("buyer_id", "invalid buyer_id"))
		return
	}
	limit, aerr := listLimit(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	ctx, cancel := s.readCtx(r)
	defer cancel()
	// Orders this buyer was just told about must be listed: catch up with
	// everything durable first (usually already there).
	if err := be.reads.WaitDurable(ctx); err != nil {
		s.writeError(w, newError(wire.CodeUnavailable, "order store is catching up; retry shortly"))
		return
	}
	stored, next, err := be.store.ListByBuyer(buyer, limit, r.URL.Query().Get("cursor"))
	if errors.Is(err, orders.ErrBadCursor) {
		s.writeError(w, errInvalidArgument("cursor", "invalid cursor"))
		return
	}
	if err != nil {
		s.writeError(w, storeError(err))
		return
	}
	list := make([]orderView, len(stored))
	for i := range stored {
		list[i] = storedView(&stored[i])
	}
	s.refreshStatuses(ctx, be, list)
	b := make([]byte, 0, 256*len(list)+64)
	b = append(b, `{"orders":[`...)
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOrder(b, &list[i])
	}
	b = append(b, `],"next_cursor":`...)
	if next == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, next)
	}
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// refreshStatuses asks the engine for the status of the pending orders of
// a page, since the store may lag a payment the engine has acknowledged.
func (s *Server) refreshStatuses(ctx context.Context, be *backend, list []orderView) {
	b := engine.NewBatch(0)
	var idx []int
	for i := range list {
		if list[i].Status == engine.StatusPending {
			b.Add(engine.Command{Kind: engine.KindGetOrder, OrderID: list[i].ID})
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	be.eng.Submit(b)
	select {
	case <-b.Done():
	case <-ctx.Done():
		return
	}
	for k, i := range idx {
		res := &b.Requests[k].Result
		if res.OK() && res.Status != engine.StatusPending {
			if o, err := be.store.Get(list[i].ID); err == nil && o.Status == res.Status {
				list[i] = storedView(&o)
			} else {
				list[i].Status = res.Status
			}
		}
	}
}

// isProtobuf reports whether the request body is the binary form. Any
// other Content-Type (none, text/plain, the form type curl -d sends...) is
// read as JSON, as on every other endpoint.
func isProtobuf(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	switch ct {
	case "":
		return false
	case wire.ContentType:
		// What every client sends: no parse, and no map of parameters.
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == wire.ContentType || mt == "application/protobuf"
}

// batchEntry is one order of a batch on its way through the engine.
type batchEntry struct {
	err *apiError // rejected at the edge
	req int       // index in the engine batch
}

func (s *Server) handleOrderBatch(w http.ResponseWriter, r *http.Request, be *backend) {
	brief, aerr := parseBatchAnswer(r)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	observe := func(n int) { s.metrics.orderBatch.Observe(float64(n)) }
	serveBatch(s, w, r, be, ordersBatch, s.decodeJSONBatch, s.decodeProtoBatch, observe, func(out []byte, proto bool, entries []batchEntry, batch *engine.Batch, remote *remoteAnswers) []byte {
		// Replayed orders are read back from the store; wait for it once.
		var waitErr *apiError
		waited := false
		ctx, cancel := s.readCtx(r)
		defer cancel()
		load := func(res *engine.Result) (orderView, *apiError) {
			if !waited {
				waited = true
				if err := be.reads.WaitDurable(ctx); err != nil {
					waitErr = newError(wire.CodeUnavailable, "order store is catching up; retry shortly")
				}
			}
			if waitErr != nil {
				return orderView{}, waitErr
			}
			return s.loadOrder(ctx, be, res.OrderID, engine.StatusNone)
		}
		if proto {
			return s.appendProtoResults(out, entries, batch, load, remote, brief)
		}
		return s.appendJSONResults(out, entries, batch, load, remote, brief)
	})
}

// serveBatch serves a batch endpoint: read the body, decode it (protobuf
// by Content-Type, else JSON) into entries and one engine batch, apply the
// batch, and answer 200 with what render appends. Errors of the whole
// request are answered before anything is applied. In a cluster the batch
// is applied across the nodes (clusterState.dispatch), and render gets the
// answers of the commands applied elsewhere; on a single node remote is
// nil.
func serveBatch[E any](s *Server, w http.ResponseWriter, r *http.Request, be *backend, kind *batchKind,
	decodeJSON func([]byte) ([]E, *engine.Batch, *apiError),
	decodeProto func([]byte) ([]E, *engine.Batch, func(), *apiError),
	observe func(entries int),
	render func(out []byte, proto bool, entries []E, batch *engine.Batch, remote *remoteAnswers) []byte) {
	proto := isProtobuf(r)
	bp, aerr := s.readBody(r, s.cfg.BatchBodyBytesMax)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	defer s.putBuf(bp)
	var entries []E
	var batch *engine.Batch
	if proto {
		var done func()
		entries, batch, done, aerr = decodeProto(*bp)
		if done != nil {
			defer done()
		}
	} else {
		entries, batch, aerr = decodeJSON(*bp)
	}
	if aerr == nil && r.Header.Get(HeaderRehearsalTime) != "" {
		var at int64
		if at, aerr = s.rehearsalHeader(r); aerr == nil {
			stampRehearsal(batch, at)
		}
	}
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	observe(len(entries))
	var remote *remoteAnswers
	switch {
	case len(batch.Requests) == 0:
	case s.cl == nil:
		be.eng.Submit(batch)
		<-batch.Done()
	default:
		var notOwned int
		remote, aerr, notOwned = s.cl.dispatch(r, be, kind, batch)
		if aerr != nil {
			s.writeNotOwner(w, notOwned)
			return
		}
		if remote != nil && len(remote.forwardedTo) > 0 {
			w.Header().Set(HeaderForwardedTo, strings.Join(remote.forwardedTo, ","))
		}
	}
	out := render((*bp)[:0], proto, entries, batch, remote)
	if proto {
		w.Header().Set("Content-Type", wire.ContentType)
	} else {
		w.Header()["Content-Type"] = jsonContentType
	}
	// The answer is whole before the first byte goes out: its length spares
	// net/http the chunked framing of a body past its buffer, and the
	// client a read of the last chunk.
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	*bp = out
}

func (s *Server) decodeJSONBatch(body []byte) ([]batchEntry, *engine.Batch, *apiError) {
	var req batchJSON
	if aerr := decodeStrict(body, &req); aerr != nil {
		return nil, nil, locateElementError[batchOrderJSON](body, aerr, "orders", func(el []byte, e *apiError) *apiError {
			return locateItemError(el, e, true)
		})
	}
	if req.Orders == nil {
		return nil, nil, errInvalidArgument("orders", "orders is required")
	}
	if len(req.Orders) > s.cfg.BatchOrdersMax {
		return nil, nil, errInvalidArgument("orders", "at most "+strconv.Itoa(s.cfg.BatchOrdersMax)+" orders per batch")
	}
	entries := make([]batchEntry, len(req.Orders))
	batch := engine.NewBatch(len(req.Orders))
	var cmd engine.Command
	for i := range req.Orders {
		o := &req.Orders[i]
		cmd = engine.Command{}
		if aerr := orderCommand(&o.orderJSON, o.IdempotencyKey, i, &cmd); aerr != nil {
			entries[i] = batchEntry{err: aerr, req: -1}
			continue
		}
		entries[i].req = len(batch.Requests)
		batch.Add(cmd)
	}
	return entries, batch, nil
}

// locateElementError names the element of a field error in the array at
// key: encoding/json reports an unknown field without its path and a wrong
// type without the index, so on that (rare) path the elements are decoded
// one by one to find the culprit. refine may name the field within the
// element more precisely.
func locateElementError[T any](body []byte, aerr *apiError, key string, refine func(elem []byte, e *apiError) *apiError) *apiError {
	if aerr.Code != "invalid_argument" {
		return aerr
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return aerr
	}
	var elems []json.RawMessage
	if json.Unmarshal(raw[key], &elems) != nil {
		return aerr
	}
	for i, el := range elems {
		var one T
		if e := decodeStrict(el, &one); e != nil {
			at := key + "[" + strconv.Itoa(i) + "]"
			if e.Field == "body" {
				return errInvalidArgument(at, at+" must be an object")
			}
			return prefixField(refine(el, e), at+".")
		}
	}
	return aerr
}

// protoScratch is the reusable state of decoding one protobuf batch.
type protoScratch struct {
	view  wire.RequestView
	items []engine.Item
	// batch and entries are the engine batch and the edge's entries of
	// the request, reused: a fresh batch of 10,000 orders was the
	// server's largest allocation, megabytes a request.
	batch   *engine.Batch
	entries []batchEntry
	text    bodyText
}

// bodyText is a pooled copy of a protobuf body whose substrings are the
// ids of the request's commands. The commands, their entries and the copy
// live exactly as long as one another: pooled together, released together
// by the decoder's done once the answer is written. The engine keeps no
// string of a command (it clones what it stores), and the answer is
// rendered into the body's buffer, never into the copy. A fresh string of
// the body was the batch path's largest allocation, tens of kilobytes a
// request.
type bodyText struct{ b []byte }

// bodyTextBytesMax bounds the copy kept in a pool, as putBuf bounds the
// body buffers.
const bodyTextBytesMax = 1 << 20

// load copies body into t.
func (t *bodyText) load(body []byte) { t.b = append(t.b[:0], body...) }

// str returns the text of v, a subslice of the body last loaded.
func (t *bodyText) str(body, v []byte) string {
	if len(v) == 0 {
		return ""
	}
	// v is a subslice of body: its offset is the difference of the caps.
	off := cap(body) - cap(v)
	return unsafe.String(&t.b[off : off+len(v)][0], len(v))
}

// release empties t, dropping a copy too large to keep in a pool.
func (t *bodyText) release() {
	if cap(t.b) > bodyTextBytesMax {
		t.b = nil
	}
	t.b = t.b[:0]
}

// scratchEntries returns entries emptied to length n, reusing s's array
// when it is large enough.
func scratchEntries[E any](s *[]E, n int) []E {
	if cap(*s) < n {
		*s = make([]E, n)
	}
	*s = (*s)[:n]
	clear(*s)
	return *s
}

// scratchBatch returns *b reset with room for n requests, allocating it
// the first time or when it is smaller: one allocation of the right size
// rather than append's doubling from a smaller one.
func scratchBatch(b **engine.Batch, n int) *engine.Batch {
	if *b == nil || cap((*b).Requests) < n {
		*b = engine.NewBatch(n)
	}
	(*b).Reset()
	return *b
}

// scratchCache keeps the decoders' scratch across garbage collections,
// which empty a sync.Pool: at festival rates one runs every few hundred
// milliseconds, and a scratch lost regrows its slices from nothing (a
// 1,000-order batch's requests alone are 400 KB). The first
// scratchCacheKept are held in a channel, more in a pool as before; the
// scratch's own bounds (releaseScratch) cap what each holds.
type scratchCache[T any] struct {
	kept chan *T
	pool sync.Pool
}

// scratchCacheKept is the scratch of each kind kept across collections:
// a few batch clients' worth.
const scratchCacheKept = 4

func newScratchCache[T any]() *scratchCache[T] {
	return &scratchCache[T]{kept: make(chan *T, scratchCacheKept)}
}

func (c *scratchCache[T]) get() *T {
	select {
	case s := <-c.kept:
		return s
	default:
	}
	if s, ok := c.pool.Get().(*T); ok {
		return s
	}
	return new(T)
}

func (c *scratchCache[T]) put(s *T) {
	select {
	case c.kept <- s:
	default:
		c.pool.Put(s)
	}
}

// releaseScratch drops a pooled batch and entries grown past a full batch,
// so that one huge request does not pin its memory in the pool.
func releaseScratch[E any](b **engine.Batch, entries *[]E, max int) {
	if *b != nil {
		(*b).Reset()
		if cap((*b).Requests) > max {
			*b = nil
		}
	}
	clear(*entries)
	if cap(*entries) > max {
		*entries = nil
	}
}

var protoScratchPool = newScratchCache[protoScratch]()

// protoScratchItemsMax bounds the item slab kept in the pool (one full
// batch of one-line orders).
const protoScratchItemsMax = 16 << 10

// decodeProtoBatch decodes a binary batch straight into engine commands.
// The body is copied into a pooled bodyText and every id of the batch is a
// substring of it, and the items of all orders share one pooled slab: a
// batch allocates nothing once the pool is warm. Neither outlives the
// request: the engine keeps no strings of an order, and both are only
// released (by done) after the results are encoded.
func (s *Server) decodeProtoBatch(body []byte) (entries []batchEntry, batch *engine.Batch, done func(), aerr *apiError) {
	ps := protoScratchPool.get()
	done = func() {
		clear(ps.items)
		if cap(ps.items) > protoScratchItemsMax {
			ps.items = nil
		}
		ps.items = ps.items[:0]
		// The views point into the request's body buffer: cleared, a kept
		// scratch pins no old body (up to 16 MiB) once the buffer itself
		// has gone back to its pool or been dropped.
		if len(ps.view.Items) > protoScratchItemsMax {
			ps.view = wire.RequestView{}
		} else {
			clear(ps.view.Orders)
			clear(ps.view.Items)
			ps.view.Orders, ps.view.Items = ps.view.Orders[:0], ps.view.Items[:0]
		}
		releaseScratch(&ps.batch, &ps.entries, 2*s.cfg.BatchOrdersMax)
		ps.text.release()
		protoScratchPool.put(ps)
	}
	err := wire.DecodeRequestView(body, &ps.view, s.cfg.BatchOrdersMax)
	var fe *wire.FieldError
	switch {
	case errors.As(err, &fe):
		done()
		return nil, nil, nil, errInvalidArgument(fe.Field, fe.Error())
	case err != nil:
		done()
		return nil, nil, nil, newError(wire.CodeInvalidProtobuf, err.Error())
	}
	ps.text.load(body)
	str := func(v []byte) string { return ps.text.str(body, v) }
	orders := ps.view.Orders
	entries = scratchEntries(&ps.entries, len(orders))
	batch = scratchBatch(&ps.batch, len(orders))
	if cap(ps.items) < len(ps.view.Items) {
		ps.items = make([]engine.Item, 0, len(ps.view.Items))
	}
	slab := ps.items[:len(ps.view.Items)]
	for i := range orders {
		o := &orders[i]
		if o.RehearsalTime != 0 {
			// A time refused is the whole request's error, before any
			// order's own.
			if aerr := s.checkRehearsalTime("orders["+strconv.Itoa(i)+"]."+rehearsalFieldProto, o.RehearsalTime); aerr != nil {
				ps.items = slab
				done()
				return nil, nil, nil, aerr
			}
		}
		cmd := engine.Command{Order: engine.Order{Items: slab[o.ItemsFrom:o.ItemsFrom:o.ItemsTo]}, At: o.RehearsalTime}
		items := ps.view.OrderItems(i)
		aerr := startOrderCommand(&cmd, str(o.BuyerID), str(o.Channel), str(o.Region), str(o.DealID), str(o.IdempotencyKey), len(items), i)
		for j := 0; aerr == nil && j < len(items); j++ {
			aerr = addOrderItem(&cmd, i, j, str(items[j].SKUID), int64(items[j].Quantity))
		}
		if aerr != nil {
			entries[i] = batchEntry{err: aerr, req: -1}
			continue
		}
		finishOrderCommand(&cmd)
		entries[i].req = len(batch.Requests)
		batch.Add(cmd)
	}
	ps.items = slab
	return entries, batch, done, nil
}

// batchResult returns the view or error of entry idx after the batch is
// done, counting an order placed in *placed: the caller adds them to the
// metric once a request, not once an order (one atomic add shared by every
// core).
func (s *Server) batchResult(idx int, e batchEntry, batch *engine.Batch, load func(*engine.Result) (orderView, *apiError), placed *int) (orderView, bool, *apiError) {
	if e.err != nil {
		s.metrics.rejectedCode(e.err.Code)
		return orderView{}, false, e.err
	}
	req := &batch.Requests[e.req]
	res := &req.Result
	if !res.OK() {
		s.metrics.rejected(res.Code)
		aerr := resultError(res)
		if aerr.Field != "" {
			aerr.Field = fieldPath(idx, aerr.Field)
			if res.Code == engine.CodeNotFound || res.Code == engine.CodeInvalidArgument {
				aerr.Message = engineCodes[res.Code].msg + ": " + aerr.Field
			}
		}
		return orderView{}, false, aerr
	}
	if res.Replayed {
		o, aerr := load(res)
		asCreated(&o)
		return o, true, aerr
	}
	*placed++
	return placedOrder(&req.Command, res), false, nil
}

// growForResults makes room in b for n more results of about size bytes
// each (the first one's), plus an eighth: the answer is rendered into the
// request body's buffer, which is much smaller, and growing it by
// doubling copied it again at every step.
//
// The first result's size is capped at resultGuessMax: a large first order
// ahead of thousands of small results (errors, say) would otherwise reserve
// many times the answer; results larger than that grow the buffer as
// append does.
func growForResults(b []byte, size, n int) []byte {
	size = min(size, resultGuessMax)
	return slices.Grow(b, size*n+size*n/8)
}

// resultGuessMax bounds the per-result room growForResults reserves (bytes):
// a placed order of a few lines takes about 100 to 200.
const resultGuessMax = 256

// countPlaced adds n orders placed to the metric.
func (s *Server) countPlaced(n int) {
	if n > 0 {
		s.metrics.placed.Add(float64(n))
	}
}

func (s *Server) appendJSONResults(b []byte, entries []batchEntry, batch *engine.Batch, load func(*engine.Result) (orderView, *apiError), remote *remoteAnswers, brief bool) []byte {
	placed := 0
	b = append(b, `{"results":[`...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		if remote != nil && e.err == nil {
			if a := remote.get(e.req); a != nil {
				b = appendRemoteJSONOrder(b, a, i, brief)
				continue
			}
		}
		o, replayed, aerr := s.batchResult(i, e, batch, load, &placed)
		if aerr != nil {
			b = append(b, `{"error":`...)
			b = appendError(b, aerr)
			b = append(b, '}')
			continue
		}
		b = append(b, `{"order":`...)
		if brief {
			b = appendOrderBrief(b, &o)
		} else {
			b = appendOrder(b, &o)
		}
		if replayed {
			b = append(b, `,"replayed":true`...)
		}
		b = append(b, '}')
	}
	s.countPlaced(placed)
	return append(b, "]}\n"...)
}

func (s *Server) appendProtoResults(b []byte, entries []batchEntry, batch *engine.Batch, load func(*engine.Result) (orderView, *apiError), remote *remoteAnswers, brief bool) []byte {
	var items []wire.OrderItem // reused from one order to the next
	placed := 0
	for i, e := range entries {
		if remote != nil && e.err == nil {
			if a := remote.get(e.req); a != nil {
				b = appendRemoteProtoResult(b, a, i)
				continue
			}
		}
		o, replayed, aerr := s.batchResult(i, e, batch, load, &placed)
		start := len(b)
		if brief && aerr == nil {
			b = appendProtoBrief(b, &o, replayed)
		} else {
			b = appendProtoResult(b, &o, replayed, aerr, &items)
		}
		if i == 0 {
			b = growForResults(b, len(b)-start, len(entries)-1)
		}
	}
	s.countPlaced(placed)
	return b
}

// appendProtoBrief appends the brief result of placed order o (the batch's
// answer=brief): its id, status, total and pay_by, which are what a
// storefront needs to pay it, without the echo of the request.
func appendProtoBrief(b []byte, o *orderView, replayed bool) []byte {
	order := wire.Order{Status: o.Status.String(), Total: o.Total, PayByUnixNanos: o.PayBy, Replayed: replayed}
	return wire.AppendResponseOrder(b, &order, uint64(o.ID))
}

// appendProtoResult appends one result of a protobuf batch answer: the
// order, or aerr. The order id is encoded from its number
// (wire.AppendResponseOrder), with no text made for it.
func appendProtoResult(b []byte, o *orderView, replayed bool, aerr *apiError, items *[]wire.OrderItem) []byte {
	if aerr != nil {
		res := wire.Result{Error: &wire.Error{Code: aerr.Code, Message: aerr.Message, Field: aerr.Field, SKUID: aerr.SKUID, Available: aerr.Available}}
		return wire.AppendResponseResult(b, &res)
	}
	its := (*items)[:0]
	for _, it := range o.Items {
		its = append(its, wire.OrderItem{SKUID: it.SKUID, Quantity: it.Quantity, UnitPrice: it.UnitPrice, Amount: it.Amount})
	}
	*items = its
	order := wire.Order{
		Status:  o.Status.String(),
		BuyerID: o.BuyerID, MerchantID: o.MerchantID, Items: its, Total: o.Total,
		Currency: "CNY", Channel: o.Channel, Region: o.Region, DealID: o.DealID,
		CreatedAtUnixNanos: o.CreatedAt, PayByUnixNanos: o.PayBy, Replayed: replayed,
	}
	b = wire.AppendResponseOrder(b, &order, uint64(o.ID))
	clear(its) // no strings of this batch pinned by the next
	return b
}
