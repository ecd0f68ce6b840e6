package server

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fest-platform/fest/wire"
)

// A peer's answer to a forwarded part of a batch is split into one raw
// element per command and spliced into this node's answer as it is: a
// placed order costs no decoding and no encoding on the way back. Only an
// error is decoded, because its field path ("orders[3].items[0].sku_id")
// names the command's index in the part, which is rewritten to its index
// in the caller's batch.

// errBadAnswer wraps a peer answer outside the protocol.
var errBadAnswer = errors.New("answer outside the protocol")

// splitJSONResults splits a JSON batch answer, {"results": [...]}, into
// answers, one element each: there must be exactly len(answers). Each
// element must be a valid JSON object; an element that begins with
// {"error" is marked an error.
func splitJSONResults(b []byte, answers []remoteAnswer) error {
	i := skipSpace(b, 0)
	for _, want := range []string{`{`, `"results"`, `:`, `[`} {
		if !strings.HasPrefix(string(b[i:]), want) {
			return errBadAnswer
		}
		i = skipSpace(b, i+len(want))
	}
	k := 0
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			end, err := objectEnd(b, i)
			if err != nil || k >= len(answers) {
				return errBadAnswer
			}
			el := b[i:end]
			answers[k] = remoteAnswer{set: true, raw: el, sub: k, isErr: strings.HasPrefix(string(el), `{"error"`)}
			k++
			i = skipSpace(b, end)
			if i >= len(b) {
				return errBadAnswer
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return errBadAnswer
			}
			i = skipSpace(b, i+1)
		}
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '}' || skipSpace(b, i+1) != len(b) || k != len(answers) {
		return errBadAnswer
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// objectEnd returns the end of the JSON object that starts at b[i],
// checked with json.Valid.
func objectEnd(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return 0, errBadAnswer
	}
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
			if j >= len(b) {
				return 0, errBadAnswer
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				if !json.Valid(b[i : j+1]) {
					return 0, errBadAnswer
				}
				return j + 1, nil
			}
		}
	}
	return 0, errBadAnswer
}

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

// appendRemoteJSON appends the JSON result idx of a batch answered by a
// peer (or here, without the engine).
func appendRemoteJSON(b []byte, a *remoteAnswer, key string, idx int) []byte {
	e, isErr := remoteError(a, key, idx, decodeJSONError)
	if !isErr {
		return append(b, a.raw...)
	}
	b = append(b, `{"error":`...)
	b = appendError(b, e)
	return append(b, '}')
}

// appendRemoteProtoResult appends the protobuf order result idx of a batch
// answered by a peer.
func appendRemoteProtoResult(b []byte, a *remoteAnswer, idx int) []byte {
	e, isErr := remoteError(a, "orders", idx, func(raw []byte) *apiError {
		rs, err := wire.DecodeResponse(raw, nil)
		if err != nil || len(rs) != 1 || rs[0].Error == nil {
			return nil
		}
		return fromWireError(rs[0].Error)
	})
	if !isErr {
		return append(b, a.raw...)
	}
	b = protowire.AppendTag(b, wire.OrderBatchResponseResults, protowire.BytesType)
	return protowire.AppendBytes(b, wire.AppendResult(nil, &wire.Result{Error: toWireError(e)}))
}

// appendRemoteProtoSettle appends the protobuf settle result idx of a
// batch answered by a peer; id is the order id as given.
func appendRemoteProtoSettle(b []byte, a *remoteAnswer, idx int, id string) []byte {
	e, isErr := remoteError(a, "actions", idx, func(raw []byte) *apiError {
		rs, err := wire.DecodeSettleResponse(raw, nil)
		if err != nil || len(rs) != 1 || rs[0].Error == nil {
			return nil
		}
		return fromWireError(rs[0].Error)
	})
	if !isErr {
		return append(b, a.raw...)
	}
	return wire.AppendSettleResult(b, &wire.SettleResult{OrderID: id, Error: toWireError(e)})
}
