package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// apiError is an error answer of the contract:
// {"error": {"code", "message", details...}}.
type apiError struct {
	Status    int
	Code      string
	Message   string
	Field     string
	SKUID     string
	Available int64
	Line      int // catalog import: the failing line
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// newError is an error answer with code's status from the contract's
// error table (wire.Errors), the one place that maps codes to statuses.
// A code outside the table is a programming error, and panics.
func newError(code, msg string) *apiError {
	spec, ok := wire.Spec(code)
	if !ok {
		panic("server: error code " + strconv.Quote(code) + " is not in the contract's table (wire.Errors): " + msg)
	}
	return &apiError{Status: spec.Status, Code: code, Message: msg}
}

func errInvalidJSON(msg string) *apiError { return newError(wire.CodeInvalidJSON, msg) }

func errInvalidArgument(field, msg string) *apiError {
	e := newError(wire.CodeInvalidArgument, msg)
	e.Field = field
	return e
}

func errNotFound(field, msg string) *apiError {
	e := newError(wire.CodeNotFound, msg)
	e.Field = field
	return e
}

var (
	errUnauthenticated = newError(wire.CodeUnauthenticated, "missing or unknown bearer token")
	errForbidden       = newError(wire.CodeForbidden, "this token's role may not call this endpoint")
	errTooLarge        = newError(wire.CodeTooLarge, "request body over the limit")
	errNotReady        = newError(wire.CodeUnavailable, "recovery in progress; retry shortly")
)

// engineCodes maps engine codes to the contract's codes and their
// messages; the status of each comes from the contract's table.
var engineCodes = [...]struct {
	code string
	msg  string
}{
	engine.CodeOK:                  {"ok", ""},
	engine.CodeNotFound:            {wire.CodeNotFound, "not found"},
	engine.CodeOutOfStock:          {wire.CodeOutOfStock, "not enough stock"},
	engine.CodeInvalidState:        {wire.CodeInvalidState, "the order's state does not allow this"},
	engine.CodeInvalidArgument:     {wire.CodeInvalidArgument, "invalid argument"},
	engine.CodePaymentMismatch:     {wire.CodePaymentMismatch, "amount differs from the order total"},
	engine.CodeIdempotencyMismatch: {wire.CodeIdempotencyMismatch, "Idempotency-Key reused with a different body"},
	engine.CodeOverloaded:          {wire.CodeOverloaded, "overloaded; retry after the Retry-After delay"},
	engine.CodeDealNotActive:       {wire.CodeDealNotActive, "the deal is not active now"},
	engine.CodeUnavailable:         {wire.CodeUnavailable, "the engine is unavailable"},
	engine.CodeConflict:            {wire.CodeConflict, "a precondition failed"},
	engine.CodeLimitExceeded:       {wire.CodeLimitExceeded, "the buyer's orders on this deal would exceed its limit_per_buyer"},
}

// resultError converts a failed engine result into an API error.
func resultError(r *engine.Result) *apiError {
	c := int(r.Code)
	if c >= len(engineCodes) || c == int(engine.CodeOK) {
		return newError(wire.CodeInternal, r.Code.String())
	}
	cs := engineCodes[c]
	e := newError(cs.code, cs.msg)
	e.Field = r.Field
	switch r.Code {
	case engine.CodeOutOfStock:
		e.SKUID, e.Available = r.SKUID, r.Available
		e.Message = "not enough stock for sku " + r.SKUID
	case engine.CodeConflict:
		if r.Ambiguous {
			// In cluster mode: the id was created for two merchants at
			// once through two nodes, and names neither now.
			e.Message = r.Field + " names an id that two merchants use; it must be renamed"
			break
		}
		e.SKUID, e.Available = r.SKUID, r.Available
		e.Message = "stock_expected differs from the available stock of sku " + r.SKUID + " (" + strconv.FormatInt(r.Available, 10) + ")"
	case engine.CodeNotFound, engine.CodeInvalidArgument:
		if r.Field != "" {
			e.Message = cs.msg + ": " + r.Field
		}
	case engine.CodeUnavailable:
		// In cluster mode Field gives the reason, not a field.
		e.Field = ""
		switch r.Field {
		case engine.UnavailableLease:
			e.Message = "this node's lease of the partition is not surely valid now; retry shortly"
		case engine.UnavailableFollowing:
			e.Message = "not found here while this node's copy of the cluster is catching up; retry shortly"
		}
	}
	return e
}

// appendError appends the error object {"code", "message", ...} (without
// the outer "error" wrapper).
func appendError(b []byte, e *apiError) []byte {
	b = append(b, `{"code":`...)
	b = appendString(b, e.Code)
	b = append(b, `,"message":`...)
	b = appendString(b, e.Message)
	if e.Field != "" {
		b = append(b, `,"field":`...)
		b = appendString(b, e.Field)
	}
	if e.Code == "out_of_stock" {
		b = append(b, `,"sku_id":`...)
		b = appendString(b, e.SKUID)
		b = append(b, `,"available":`...)
		b = strconv.AppendInt(b, e.Available, 10)
	}
	if e.Code == "conflict" && e.SKUID != "" {
		// The current value of the compare-and-set, to read again from.
		b = append(b, `,"sku_id":`...)
		b = appendString(b, e.SKUID)
		b = append(b, `,"stock_available":`...)
		b = strconv.AppendInt(b, e.Available, 10)
	}
	if e.Line > 0 {
		b = append(b, `,"line":`...)
		b = strconv.AppendInt(b, int64(e.Line), 10)
	}
	return append(b, '}')
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	if wire.Retryable(e.Code) {
		h.Set("Retry-After", strconv.Itoa(int((s.cfg.RetryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(e.Status)
	b := make([]byte, 0, 128)
	b = append(b, `{"error":`...)
	b = appendError(b, e)
	b = append(b, "}\n"...)
	w.Write(b)
}

// chunkingBytesMin is net/http's buffer before it frames an answer of
// unknown length chunked (bufferBeforeChunkingSize).
const chunkingBytesMin = 2048

// jsonContentType is shared by every response: net/http only reads header
// values, and assigning the map entry directly skips the canonicalization
// and the slice allocation of Header.Set on the order path.
var jsonContentType = []string{"application/json"}

// writeJSON sends a whole body. One past net/http's 2 KiB buffer gets its
// Content-Length here, which net/http would otherwise send chunked, so that
// net/http and the fast path (fastconn.go) frame every answer alike; a
// smaller one gets it from either without an allocation.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	if len(body) > chunkingBytesMin {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	w.Write(body)
}

// appendString appends s as a JSON string (the contract's escaping,
// shared with the Go client: wire.AppendJSONString).
func appendString(b []byte, s string) []byte { return wire.AppendJSONString(b, s) }

// appendTime appends a unix-nanosecond time as an RFC 3339 UTC string.
func appendTime(b []byte, ns int64) []byte {
	b = append(b, '"')
	b = time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
