package server

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// A peer's protobuf answer to a forwarded part of a batch is split into
// one raw result per command. For a protobuf caller a placed order is
// spliced in as it is, with no decoding and no encoding on the way back;
// for a JSON caller it is decoded and rendered as this node renders its
// own. An error is always decoded, because its field path
// ("orders[3].items[0].sku_id") names the command's index in the part,
// which is rewritten to its index in the caller's batch.

// errBadAnswer wraps a peer answer outside the protocol.
var errBadAnswer = errors.New("answer outside the protocol")

// splitProtoResults splits a protobuf batch answer (repeated field 1 of
// result messages, as OrderBatchResponse and SettleBatchResponse are) into
// answers, one tagged element each; an element holding field errField is
// marked an error.
func splitProtoResults(b []byte, errField int, answers []remoteAnswer) error {
	k := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType || k >= len(answers) {
			return errBadAnswer
		}
		inner, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return errBadAnswer
		}
		isErr := false
		for rest := inner; len(rest) > 0; {
			fnum, ftyp, fn := protowire.ConsumeTag(rest)
			if fn < 0 {
				return errBadAnswer
			}
			fm := protowire.ConsumeFieldValue(fnum, ftyp, rest[fn:])
			if fm < 0 {
				return errBadAnswer
			}
			isErr = isErr || int(fnum) == errField
			rest = rest[fn+fm:]
		}
		answers[k] = remoteAnswer{set: true, raw: b[:n+m], sub: k, isErr: isErr}
		k++
		b = b[n+m:]
	}
	if k != len(answers) {
		return errBadAnswer
	}
	return nil
}

// jsonErrorBody is the contract's error answer.
type jsonErrorBody struct {
	Error *struct {
		Code           string `json:"code"`
		Message        string `json:"message"`
		Field          string `json:"field"`
		SKUID          string `json:"sku_id"`
		Available      int64  `json:"available"`
		StockAvailable *int64 `json:"stock_available"`
		Line           int    `json:"line"`
	} `json:"error"`
}

// decodeJSONError decodes {"error": {...}}, a whole answer or one result
// of a batch, into the error this node would have written; nil when b is
// not one. A code outside the contract's table is an internal error.
func decodeJSONError(b []byte) *apiError {
	var env jsonErrorBody
	if json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Code == "" {
		return nil
	}
	e := env.Error
	if _, ok := wire.Spec(e.Code); !ok {
		return newError(wire.CodeInternal, "a peer answered the unknown code "+strconv.Quote(e.Code)+": "+e.Message)
	}
	out := newError(e.Code, e.Message)
	out.Field, out.SKUID, out.Available, out.Line = e.Field, e.SKUID, e.Available, e.Line
	if e.StockAvailable != nil {
		out.Available = *e.StockAvailable
	}
	return out
}

// fromWireError is the error of a protobuf result as this node's.
func fromWireError(e *wire.Error) *apiError {
	if _, ok := wire.Spec(e.Code); !ok {
		return newError(wire.CodeInternal, "a peer answered the unknown code "+strconv.Quote(e.Code)+": "+e.Message)
	}
	out := newError(e.Code, e.Message)
	out.Field, out.SKUID, out.Available = e.Field, e.SKUID, e.Available
	return out
}

func toWireError(e *apiError) *wire.Error {
	return &wire.Error{Code: e.Code, Message: e.Message, Field: e.Field, SKUID: e.SKUID, Available: e.Available}
}

// renumber rewrites the field path of e from key[sub] to key[idx], in its
// message too.
func renumber(e *apiError, key string, sub, idx int) {
	if sub == idx {
		return
	}
	from := key + "[" + strconv.Itoa(sub) + "]"
	rest, ok := strings.CutPrefix(e.Field, from)
	if !ok || rest != "" && rest[0] != '.' {
		return
	}
	field := key + "[" + strconv.Itoa(idx) + "]" + rest
	e.Message = strings.Replace(e.Message, e.Field, field, 1)
	e.Field = field
}

// remoteError is the error answer a, renumbered to idx; ok is false when
// a holds a success to splice as it is.
func remoteError(a *remoteAnswer, key string, idx int, decode func([]byte) *apiError) (*apiError, bool) {
	if a.err != nil {
		return a.err, true
	}
	if !a.isErr {
		return nil, false
	}
	e := decode(a.raw)
	if e == nil {
		return newError(wire.CodeUnavailable, "a peer's answer did not decode"), true
	}
	renumber(e, key, a.sub, idx)
	return e, true
}

// appendRemoteJSONOrder appends the JSON result idx of an order batch
// answered by a peer (or here, without the engine), rendered from the
// peer's protobuf result as this node renders its own: the protobuf
// result holds every field of the JSON one.
func appendRemoteJSONOrder(b []byte, a *remoteAnswer, idx int, brief bool) []byte {
	e, isErr := remoteError(a, "orders", idx, decodeProtoOrderError)
	if !isErr {
		var v wire.ResponseView
		o, replayed, ok := orderOfProto(a.raw, &v)
		if ok {
			b = append(b, `{"order":`...)
			if brief {
				b = appendOrderBrief(b, &o)
			} else {
				b = appendOrder(b, &o)
			}
			if replayed {
				b = append(b, `,"replayed":true`...)
			}
			return append(b, '}')
		}
		e = newError(wire.CodeUnavailable, "a peer's answer did not decode")
	}
	b = append(b, `{"error":`...)
	b = appendError(b, e)
	return append(b, '}')
}

// orderOfProto is the view of the order of one tagged protobuf result.
func orderOfProto(raw []byte, v *wire.ResponseView) (orderView, bool, bool) {
	if wire.DecodeResponseView(raw, v) != nil || len(v.Results) != 1 || v.Results[0].Error != nil {
		return orderView{}, false, false
	}
	w := &v.Results[0].Order
	id, err := engine.ParseOrderID(string(w.OrderID))
	status, ok := parseOrderStatus(w.Status)
	if err != nil || !ok {
		return orderView{}, false, false
	}
	lines := v.OrderItems(0)
	items := make([]engine.Item, len(lines))
	for i, it := range lines {
		items[i] = engine.Item{SKUID: string(it.SKUID), Quantity: it.Quantity, UnitPrice: it.UnitPrice, Amount: it.Amount}
	}
	return orderView{
		ID: id, Status: status, BuyerID: string(w.BuyerID), MerchantID: string(w.MerchantID), Channel: string(w.Channel),
		Region: string(w.Region), DealID: string(w.DealID), Items: items, Total: w.Total,
		CreatedAt: w.CreatedAtUnixNanos, PayBy: w.PayByUnixNanos,
	}, w.Replayed, true
}

// parseOrderStatus is the status a result names.
func parseOrderStatus(name []byte) (engine.OrderStatus, bool) {
	for s := engine.StatusPending; s <= engine.StatusExpired; s++ {
		if string(name) == s.String() {
			return s, true
		}
	}
	return engine.StatusNone, false
}

// appendRemoteJSONSettle appends the JSON result idx of a settle batch
// answered by a peer, rendered from its protobuf result.
func appendRemoteJSONSettle(b []byte, a *remoteAnswer, idx int) []byte {
	e, isErr := remoteError(a, "actions", idx, decodeProtoSettleError)
	if !isErr {
		var v wire.SettleResponseView
		if wire.DecodeSettleResponseView(a.raw, &v) == nil && len(v.Results) == 1 {
			r := &v.Results[0]
			id, err := engine.ParseOrderID(string(r.OrderID))
			status, ok := parseOrderStatus(r.Status)
			if err == nil && ok {
				return appendSettledJSON(b, id, status, r.Total, r.ChangedAtUnixNanos)
			}
		}
		e = newError(wire.CodeUnavailable, "a peer's answer did not decode")
	}
	b = append(b, `{"error":`...)
	b = appendError(b, e)
	return append(b, '}')
}

func decodeProtoOrderError(raw []byte) *apiError {
	rs, err := wire.DecodeResponse(raw, nil)
	if err != nil || len(rs) != 1 || rs[0].Error == nil {
		return nil
	}
	return fromWireError(rs[0].Error)
}

func decodeProtoSettleError(raw []byte) *apiError {
	rs, err := wire.DecodeSettleResponse(raw, nil)
	if err != nil || len(rs) != 1 || rs[0].Error == nil {
		return nil
	}
	return fromWireError(rs[0].Error)
}

// appendRemoteProtoResult appends the protobuf order result idx of a batch
// answered by a peer.
func appendRemoteProtoResult(b []byte, a *remoteAnswer, idx int) []byte {
	e, isErr := remoteError(a, "orders", idx, decodeProtoOrderError)
	if !isErr {
		return append(b, a.raw...)
	}
	b = protowire.AppendTag(b, wire.OrderBatchResponseResults, protowire.BytesType)
	return protowire.AppendBytes(b, wire.AppendResult(nil, &wire.Result{Error: toWireError(e)}))
}

// appendRemoteProtoSettle appends the protobuf settle result idx of a
// batch answered by a peer; id is the order id as given.
func appendRemoteProtoSettle(b []byte, a *remoteAnswer, idx int, id string) []byte {
	e, isErr := remoteError(a, "actions", idx, decodeProtoSettleError)
	if !isErr {
		return append(b, a.raw...)
	}
	return wire.AppendSettleResult(b, &wire.SettleResult{OrderID: id, Error: toWireError(e)})
}
