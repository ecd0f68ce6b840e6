package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// POST /v1/orders:settle pays and cancels up to BatchOrdersMax orders in
// one request and one engine batch. It answers from the engine's results
// alone (status, total, time of the change) and never waits for the order
// store: the full order is GET /v1/orders/{id}.

// settleActionJSON is one action of the JSON body.
type settleActionJSON struct {
	OrderID string `json:"order_id"`
	Action  string `json:"action"`
	Amount  *int64 `json:"amount"`
}

type settleJSON struct {
	Actions []settleActionJSON `json:"actions"`
}

// settleEntry is one action on its way through the engine.
type settleEntry struct {
	id  string    // the order id as given
	err *apiError // rejected at the edge
	req int       // index in the engine batch, -1 when err is set
}

func actionPath(idx int, name string) string {
	return "actions[" + strconv.Itoa(idx) + "]." + name
}

// settleCommand validates one action and returns its engine command.
// amount is nil when the action has none.
func settleCommand(idx int, id, action string, amount *int64) (engine.Command, *apiError) {
	var kind engine.Kind
	switch action {
	case "pay":
		kind = engine.KindPay
		if amount == nil {
			return engine.Command{}, errInvalidArgument(actionPath(idx, "amount"), actionPath(idx, "amount")+": amount is required to pay")
		}
		if *amount < 0 || *amount > amountMax {
			return engine.Command{}, errInvalidArgument(actionPath(idx, "amount"), actionPath(idx, "amount")+": amount out of range")
		}
	case "cancel":
		kind = engine.KindCancel
		if amount != nil {
			return engine.Command{}, errInvalidArgument(actionPath(idx, "amount"), actionPath(idx, "amount")+": a cancel takes no amount")
		}
	case "":
		return engine.Command{}, errInvalidArgument(actionPath(idx, "action"), actionPath(idx, "action")+": action is required (pay or cancel)")
	default:
		return engine.Command{}, errInvalidArgument(actionPath(idx, "action"), actionPath(idx, "action")+": action must be pay or cancel")
	}
	oid, err := engine.ParseOrderID(id)
	if err != nil {
		return engine.Command{}, errNotFound(actionPath(idx, "order_id"), "no order "+strconv.Quote(id))
	}
	cmd := engine.Command{Kind: kind, OrderID: oid}
	if amount != nil {
		cmd.Amount = *amount
	}
	return cmd, nil
}

func (s *Server) handleSettle(w http.ResponseWriter, r *http.Request, be *backend) {
	observe := func(n int) { s.metrics.settleBatch.Observe(float64(n)) }
	serveBatch(s, w, r, be, settleBatch, s.decodeJSONSettle, s.decodeProtoSettle, observe, func(out []byte, proto bool, entries []settleEntry, batch *engine.Batch, remote *remoteAnswers) []byte {
		s.checkRepeatedPays(r, be, entries, batch, remote)
		if proto {
			return s.appendProtoSettle(out, entries, batch, remote)
		}
		return s.appendJSONSettle(out, entries, batch, remote)
	})
}

// checkRepeatedPays answers a pay of an order that was already paid, with
// another amount than its total, payment_mismatch, as POST
// /v1/orders/{id}/pay does. The engine keeps no total of a paid order (one
// status byte per order for the whole festival), so the total is read from
// the order store; only repeated pays pay for that read, and an order paid
// before is in the store once it is durable.
func (s *Server) checkRepeatedPays(r *http.Request, be *backend, entries []settleEntry, batch *engine.Batch, remote *remoteAnswers) {
	var ctx context.Context
	for i := range entries {
		e := &entries[i]
		if e.err != nil || remote != nil && remote.get(e.req) != nil {
			continue // the owner checked its own repeated pays
		}
		req := &batch.Requests[e.req]
		res := &req.Result
		if req.Command.Kind != engine.KindPay || !res.OK() || res.Status != engine.StatusPaid || res.ChangedAt != 0 {
			continue
		}
		if ctx == nil {
			var cancel context.CancelFunc
			ctx, cancel = s.readCtx(r)
			defer cancel()
		}
		o, aerr := s.loadOrder(ctx, be, req.Command.OrderID, engine.StatusPaid)
		if aerr != nil {
			e.err = aerr
			continue
		}
		if o.Total != req.Command.Amount {
			*res = engine.Result{Code: engine.CodePaymentMismatch, Field: "amount", OrderID: req.Command.OrderID, Total: o.Total}
		}
	}
}

func (s *Server) decodeJSONSettle(body []byte) ([]settleEntry, *engine.Batch, *apiError) {
	var req settleJSON
	if aerr := decodeStrict(body, &req); aerr != nil {
		return nil, nil, locateElementError[settleActionJSON](body, aerr, "actions", func(_ []byte, e *apiError) *apiError { return e })
	}
	if err := s.checkActions(len(req.Actions)); err != nil {
		return nil, nil, err
	}
	entries := make([]settleEntry, len(req.Actions))
	batch := engine.NewBatch(len(req.Actions))
	for i := range req.Actions {
		a := &req.Actions[i]
		entries[i].id = a.OrderID
		cmd, aerr := settleCommand(i, a.OrderID, a.Action, a.Amount)
		if aerr != nil {
			entries[i].err, entries[i].req = aerr, -1
			continue
		}
		entries[i].req = len(batch.Requests)
		batch.Add(cmd)
	}
	return entries, batch, nil
}

func (s *Server) checkActions(n int) *apiError {
	if n == 0 {
		return errInvalidArgument("actions", "actions: 1 to "+strconv.Itoa(s.cfg.BatchOrdersMax)+" actions are required")
	}
	if n > s.cfg.BatchOrdersMax {
		return errInvalidArgument("actions", "actions: at most "+strconv.Itoa(s.cfg.BatchOrdersMax)+" actions per request")
	}
	return nil
}

// settleScratch is the reusable state of decoding one protobuf settle body.
type settleScratch struct {
	view    wire.SettleRequestView
	batch   *engine.Batch // reused, as protoScratch's
	entries []settleEntry
	text    bodyText // the ids of the entries (see bodyText)
}

var settleScratchPool = newScratchCache[settleScratch]()

// decodeProtoSettle decodes a binary settle batch straight into engine
// commands. The body is copied into a pooled bodyText and every order id
// is a substring of it (ids are only kept for the answer, which done
// outlives).
func (s *Server) decodeProtoSettle(body []byte) (entries []settleEntry, batch *engine.Batch, done func(), aerr *apiError) {
	ps := settleScratchPool.get()
	done = func() {
		if cap(ps.view.Actions) > 2*defaultBatchOrdersMax {
			ps.view = wire.SettleRequestView{}
		}
		clear(ps.view.Actions)
		ps.view.Actions = ps.view.Actions[:0]
		releaseScratch(&ps.batch, &ps.entries, 2*s.cfg.BatchOrdersMax)
		ps.text.release()
		settleScratchPool.put(ps)
	}
	err := wire.DecodeSettleRequestView(body, &ps.view, s.cfg.BatchOrdersMax)
	var fe *wire.FieldError
	switch {
	case errors.As(err, &fe):
		done()
		return nil, nil, nil, errInvalidArgument(fe.Field, fe.Error())
	case err != nil:
		done()
		return nil, nil, nil, newError(wire.CodeInvalidProtobuf, err.Error())
	}
	if aerr := s.checkActions(len(ps.view.Actions)); aerr != nil {
		done()
		return nil, nil, nil, aerr
	}
	ps.text.load(body)
	str := func(v []byte) string { return ps.text.str(body, v) }
	acts := ps.view.Actions
	entries = scratchEntries(&ps.entries, len(acts))
	batch = scratchBatch(&ps.batch, len(acts))
	for i := range acts {
		a := &acts[i]
		id := str(a.OrderID)
		entries[i].id = id
		action, amount := "pay", &a.Amount
		if a.Cancel {
			action = "cancel"
			if a.Amount == 0 {
				amount = nil
			}
		}
		if a.RehearsalTime != 0 {
			// A time refused is the whole request's error, before any
			// action's own.
			if aerr := s.checkRehearsalTime(actionPath(i, rehearsalFieldProto), a.RehearsalTime); aerr != nil {
				done()
				return nil, nil, nil, aerr
			}
		}
		cmd, aerr := settleCommand(i, id, action, amount)
		if aerr != nil {
			entries[i].err, entries[i].req = aerr, -1
			continue
		}
		cmd.At = a.RehearsalTime
		entries[i].req = len(batch.Requests)
		batch.Add(cmd)
	}
	return entries, batch, done, nil
}

// settleResult returns the engine's answer to entry i, or its error, and
// counts paid and cancelled orders.
func (s *Server) settleResult(idx int, e *settleEntry, batch *engine.Batch) (*engine.Request, *apiError) {
	if e.err != nil {
		return nil, e.err
	}
	req := &batch.Requests[e.req]
	res := &req.Result
	if !res.OK() {
		aerr := resultError(res)
		if aerr.Field != "" {
			aerr.Field = actionPath(idx, aerr.Field)
			if res.Code == engine.CodeNotFound || res.Code == engine.CodeInvalidArgument {
				aerr.Message = engineCodes[res.Code].msg + ": " + aerr.Field
			}
		}
		return nil, aerr
	}
	if res.ChangedAt != 0 {
		if req.Command.Kind == engine.KindPay {
			s.metrics.paid.Inc()
		} else {
			s.metrics.cancelled.Inc()
		}
	}
	return req, nil
}

func (s *Server) appendJSONSettle(b []byte, entries []settleEntry, batch *engine.Batch, remote *remoteAnswers) []byte {
	b = append(b, `{"results":[`...)
	for i := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		if remote != nil && entries[i].err == nil {
			if a := remote.get(entries[i].req); a != nil {
				b = appendRemoteJSONSettle(b, a, i)
				continue
			}
		}
		req, aerr := s.settleResult(i, &entries[i], batch)
		if aerr != nil {
			b = append(b, `{"error":`...)
			b = appendError(b, aerr)
			b = append(b, '}')
			continue
		}
		res := &req.Result
		b = appendSettledJSON(b, req.Command.OrderID, res.Status, res.Total, res.ChangedAt)
	}
	return append(b, "]}\n"...)
}

// appendSettledJSON appends the JSON result of a settled action:
// {"order": {"order_id", "status", "total" when set, and the time of the
// change when this action made it}}.
func appendSettledJSON(b []byte, id engine.OrderID, status engine.OrderStatus, total, changedAt int64) []byte {
	b = append(b, `{"order":{"order_id":"`...)
	b = wire.AppendOrderID(b, uint64(id))
	b = append(b, `","status":"`...)
	b = append(b, status.String()...)
	b = append(b, '"')
	if total != 0 {
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, total, 10)
	}
	if changedAt != 0 {
		switch status {
		case engine.StatusPaid:
			b = append(b, `,"paid_at":`...)
		case engine.StatusCancelled:
			b = append(b, `,"cancelled_at":`...)
		default:
			b = append(b, `,"expired_at":`...)
		}
		b = appendTime(b, changedAt)
	}
	return append(b, "}}"...)
}

func (s *Server) appendProtoSettle(b []byte, entries []settleEntry, batch *engine.Batch, remote *remoteAnswers) []byte {
	var idBuf [16]byte
	var we wire.Error
	grown := false // room made for the rest after the first success
	for i := range entries {
		e := &entries[i]
		if remote != nil && e.err == nil {
			if a := remote.get(e.req); a != nil {
				b = appendRemoteProtoSettle(b, a, i, e.id)
				continue
			}
		}
		req, aerr := s.settleResult(i, e, batch)
		if aerr != nil {
			we = wire.Error{Code: aerr.Code, Message: aerr.Message, Field: aerr.Field, SKUID: aerr.SKUID, Available: aerr.Available}
			b = wire.AppendSettleResult(b, &wire.SettleResult{OrderID: e.id, Error: &we})
			continue
		}
		res := &req.Result
		// The canonical id is the one given unless it had leading zeros:
		// the comparison allocates nothing.
		id := e.id
		if canon := wire.AppendOrderID(idBuf[:0], uint64(req.Command.OrderID)); string(canon) != id {
			id = string(canon)
		}
		start := len(b)
		b = wire.AppendSettleResult(b, &wire.SettleResult{
			OrderID: id, Status: res.Status.String(), Total: res.Total, ChangedAtUnixNanos: res.ChangedAt,
		})
		if !grown {
			grown = true
			b = growForResults(b, len(b)-start, len(entries)-1-i)
		}
	}
	return b
}
