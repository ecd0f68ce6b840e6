package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Settle is one action of a SettleBatchRequest: pay OrderID with Amount
// (its total, fen), or cancel it when Cancel is set (Amount must then be 0).
type Settle struct {
	OrderID string
	Amount  int64
	Cancel  bool
	// RehearsalTime is the action's festival time, unix nanoseconds (0:
	// none), for a server with the rehearsal clock.
	RehearsalTime int64
}

// SettleResult is one entry of a SettleBatchResponse. Error is nil on
// success; OrderID is set either way. Total and ChangedAtUnixNanos are set
// when the action changed the order; an order already paid (or already
// cancelled) answers its status alone.
type SettleResult struct {
	OrderID            string
	Status             string
	Total              int64
	ChangedAtUnixNanos int64
	Error              *Error
}

func settleSize(s *Settle) int {
	n := strSize(s.OrderID) + intSize(s.Amount) + intSize(s.RehearsalTime)
	if s.Cancel {
		n += 2
	}
	return n
}

// AppendSettleRequest appends the encoded SettleBatchRequest of actions to b.
func AppendSettleRequest(b []byte, actions []Settle) []byte {
	for i := range actions {
		s := &actions[i]
		b = appendTag(b, SettleBatchRequestActions, protowire.BytesType)
		b = appendVarint(b, uint64(settleSize(s)))
		b = appendStr(b, SettleOrderID, s.OrderID)
		b = appendInt(b, SettleAmount, s.Amount)
		if s.Cancel {
			b = appendInt(b, SettleCancel, 1)
		}
		b = appendInt(b, SettleRehearsalTime, s.RehearsalTime)
	}
	return b
}

// SettleRequestView is a decoded SettleBatchRequest whose order ids are
// views of the body (valid as long as the body is). Reuse it with
// DecodeSettleRequestView.
type SettleRequestView struct {
	Actions []SettleView
}

// SettleView is one action of a SettleRequestView.
type SettleView struct {
	OrderID       []byte
	Amount        int64
	Cancel        bool
	RehearsalTime int64 // unix ns, 0: none
}

// DecodeSettleRequest decodes a SettleBatchRequest, appending to actions
// and stopping with an error after actionsMax actions.
func DecodeSettleRequest(b []byte, actions []Settle, actionsMax int) ([]Settle, error) {
	var v SettleRequestView
	err := DecodeSettleRequestView(b, &v, actionsMax)
	for _, a := range v.Actions {
		actions = append(actions, Settle{OrderID: string(a.OrderID), Amount: a.Amount, Cancel: a.Cancel, RehearsalTime: a.RehearsalTime})
	}
	return actions, err
}

// DecodeSettleRequestView decodes a SettleBatchRequest into v (reset
// first), stopping with an error after actionsMax actions. On error, v holds
// the actions decoded before the failing one. Field errors name the action
// as the JSON form does: actions[i].amount.
func DecodeSettleRequestView(b []byte, v *SettleRequestView, actionsMax int) error {
	clear(v.Actions)
	v.Actions = v.Actions[:0]
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		if num != SettleBatchRequestActions {
			return &FieldError{Field: fmt.Sprintf("field %d", num), Msg: "unknown field"}
		}
		idx := len(v.Actions)
		body, err := r.bytes(path{order: -1, item: -1, field: "actions"}, typ)
		if err != nil {
			return err
		}
		if idx >= actionsMax {
			return &FieldError{Field: "actions", Msg: fmt.Sprintf("more than %d actions", actionsMax)}
		}
		var a SettleView
		if err := decodeSettle(body, &a, idx); err != nil {
			return err
		}
		v.Actions = append(v.Actions, a)
	}
}

func decodeSettle(b []byte, a *SettleView, idx int) error {
	r := reader{b: b}
	field := func(name string) path {
		return path{order: -1, item: -1, field: fmt.Sprintf("actions[%d].%s", idx, name)}
	}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		switch num {
		case SettleOrderID:
			if typ != protowire.BytesType {
				return &FieldError{Field: field("order_id").String(), Msg: "wrong wire type"}
			}
			s, err := r.bytes(path{order: -1, item: -1}, typ)
			if err != nil {
				return fmt.Errorf("%w (actions[%d].order_id)", err, idx)
			}
			a.OrderID = s
		case SettleAmount, SettleCancel, SettleRehearsalTime:
			name := "amount"
			switch num {
			case SettleCancel:
				name = "cancel"
			case SettleRehearsalTime:
				name = "rehearsal_time_unix_nanos"
			}
			if typ != protowire.VarintType {
				return &FieldError{Field: field(name).String(), Msg: "wrong wire type"}
			}
			x, err := r.varint(path{order: -1, item: -1}, typ)
			if err != nil {
				return fmt.Errorf("%w (actions[%d].%s)", err, idx, name)
			}
			switch num {
			case SettleAmount:
				a.Amount = int64(x)
			case SettleCancel:
				a.Cancel = x != 0
			default:
				a.RehearsalTime = int64(x)
			}
		default:
			return &FieldError{Field: fmt.Sprintf("actions[%d].field %d", idx, num), Msg: "unknown field"}
		}
	}
}

func errorBody(b []byte, e *Error) []byte {
	b = appendStr(b, ErrorCode, e.Code)
	b = appendStr(b, ErrorMessage, e.Message)
	b = appendStr(b, ErrorField, e.Field)
	b = appendStr(b, ErrorSKUID, e.SKUID)
	return appendInt(b, ErrorAvailable, e.Available)
}

func errorSize(e *Error) int {
	return strSize(e.Code) + strSize(e.Message) + strSize(e.Field) + strSize(e.SKUID) + intSize(e.Available)
}

// AppendSettleResult appends one SettleResult, with its tag (field 1 of
// SettleBatchResponse), to b: a response is these appended in input order.
func AppendSettleResult(b []byte, r *SettleResult) []byte {
	n := strSize(r.OrderID) + strSize(r.Status) + intSize(r.Total) + intSize(r.ChangedAtUnixNanos)
	if r.Error != nil {
		n += 1 + protowire.SizeBytes(errorSize(r.Error))
	}
	b = appendTag(b, SettleBatchResponseResults, protowire.BytesType)
	b = appendVarint(b, uint64(n))
	b = appendStr(b, SettleResultOrderID, r.OrderID)
	b = appendStr(b, SettleResultStatus, r.Status)
	b = appendInt(b, SettleResultTotal, r.Total)
	b = appendInt(b, SettleResultChangedAtUnixNanos, r.ChangedAtUnixNanos)
	if r.Error != nil {
		b = appendTag(b, SettleResultError, protowire.BytesType)
		b = appendVarint(b, uint64(errorSize(r.Error)))
		b = errorBody(b, r.Error)
	}
	return b
}

// AppendSettleResponse appends the encoded SettleBatchResponse of results.
func AppendSettleResponse(b []byte, results []SettleResult) []byte {
	for i := range results {
		b = AppendSettleResult(b, &results[i])
	}
	return b
}

// SettleResponseView is a decoded SettleBatchResponse whose strings are
// views of the body (valid as long as the body is); errors are decoded into
// ordinary values. Reuse it with DecodeSettleResponseView.
type SettleResponseView struct {
	Results []SettleResultView
}

// SettleResultView is one result of a SettleResponseView.
type SettleResultView struct {
	OrderID, Status           []byte
	Total, ChangedAtUnixNanos int64
	Error                     *Error
}

// DecodeSettleResponse decodes a SettleBatchResponse, appending to results.
func DecodeSettleResponse(b []byte, results []SettleResult) ([]SettleResult, error) {
	var v SettleResponseView
	err := DecodeSettleResponseView(b, &v)
	for _, r := range v.Results {
		results = append(results, SettleResult{OrderID: string(r.OrderID), Status: string(r.Status), Total: r.Total, ChangedAtUnixNanos: r.ChangedAtUnixNanos, Error: r.Error})
	}
	return results, err
}

// DecodeSettleResponseView decodes a SettleBatchResponse into v (reset
// first). As DecodeResponseView, it clears only the previous answer's
// results past this one's.
func DecodeSettleResponseView(b []byte, v *SettleResponseView) error {
	results := len(v.Results)
	v.Results = v.Results[:0]
	err := v.decode(b)
	clear(v.Results[len(v.Results):max(results, len(v.Results))])
	return err
}

func (v *SettleResponseView) decode(b []byte) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		if num != SettleBatchResponseResults {
			return &FieldError{Field: fmt.Sprintf("field %d", num), Msg: "unknown field"}
		}
		body, err := r.bytes(path{order: -1, item: -1, field: "results"}, typ)
		if err != nil {
			return err
		}
		var res SettleResultView
		if err := decodeSettleResult(body, &res); err != nil {
			return err
		}
		v.Results = append(v.Results, res)
	}
}

func decodeSettleResult(b []byte, res *SettleResultView) error {
	r := reader{b: b}
	at := path{order: -1, item: -1, field: "result"}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		switch num {
		case SettleResultOrderID, SettleResultStatus, SettleResultError:
			s, err := r.bytes(at, typ)
			if err != nil {
				return err
			}
			switch num {
			case SettleResultOrderID:
				res.OrderID = s
			case SettleResultStatus:
				res.Status = s
			case SettleResultError:
				e := &Error{}
				if err := decodeError(s, e); err != nil {
					return err
				}
				res.Error = e
			}
		case SettleResultTotal, SettleResultChangedAtUnixNanos:
			x, err := r.varint(at, typ)
			if err != nil {
				return err
			}
			if num == SettleResultTotal {
				res.Total = int64(x)
			} else {
				res.ChangedAtUnixNanos = int64(x)
			}
		default:
			return &FieldError{Field: fmt.Sprintf("result.field %d", num), Msg: "unknown field"}
		}
	}
}
