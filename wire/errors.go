package wire

import "net/http"

// The codes of the contract's errors (the API's error table; docs/api.md):
// the "code" of a JSON error answer and of a protobuf Error.
const (
	CodeInvalidJSON         = "invalid_json"
	CodeInvalidProtobuf     = "invalid_protobuf"
	CodeUnauthenticated     = "unauthenticated"
	CodeForbidden           = "forbidden"
	CodeNotFound            = "not_found"
	CodeOutOfStock          = "out_of_stock"
	CodeInvalidState        = "invalid_state"
	CodeDealNotActive       = "deal_not_active"
	CodeConflict            = "conflict"
	CodeLimitExceeded       = "limit_exceeded"
	CodeTooLarge            = "too_large"
	CodeGone                = "gone"
	CodeInvalidArgument     = "invalid_argument"
	CodePaymentMismatch     = "payment_mismatch"
	CodeIdempotencyMismatch = "idempotency_mismatch"
	CodeOverloaded          = "overloaded"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
)

// ErrorSpec is one row of the contract's error table.
type ErrorSpec struct {
	Code   string
	Status int // the HTTP status of a single request's answer
	// Retry says the same request may succeed later unchanged: the server
	// sets Retry-After, and a client waits that long before sending it again.
	Retry bool
}

// Errors is the contract's error table, the one place that maps a code to
// its HTTP status and retry semantics: the server answers with these
// statuses and the client gives per-order errors of a batch (which arrive
// inside a 200) the status the single endpoint would have had.
var Errors = [...]ErrorSpec{
	{CodeInvalidJSON, http.StatusBadRequest, false},
	{CodeInvalidProtobuf, http.StatusBadRequest, false},
	{CodeUnauthenticated, http.StatusUnauthorized, false},
	{CodeForbidden, http.StatusForbidden, false},
	{CodeNotFound, http.StatusNotFound, false},
	{CodeOutOfStock, http.StatusConflict, false},
	{CodeInvalidState, http.StatusConflict, false},
	{CodeDealNotActive, http.StatusConflict, false},
	{CodeConflict, http.StatusConflict, false},
	{CodeLimitExceeded, http.StatusConflict, false},
	{CodeTooLarge, http.StatusRequestEntityTooLarge, false},
	{CodeGone, http.StatusGone, false},
	{CodeInvalidArgument, http.StatusUnprocessableEntity, false},
	{CodePaymentMismatch, http.StatusUnprocessableEntity, false},
	{CodeIdempotencyMismatch, http.StatusUnprocessableEntity, false},
	{CodeOverloaded, http.StatusTooManyRequests, true},
	{CodeUnavailable, http.StatusServiceUnavailable, true},
	{CodeInternal, http.StatusInternalServerError, false},
}

// Spec returns the table's row of code; ok is false for a code the
// contract does not have.
func Spec(code string) (spec ErrorSpec, ok bool) {
	for _, s := range Errors {
		if s.Code == code {
			return s, true
		}
	}
	return ErrorSpec{Code: code, Status: http.StatusInternalServerError}, false
}

// StatusOf is the HTTP status of code; a code the contract does not have
// is a server fault, 500.
func StatusOf(code string) int {
	s, _ := Spec(code)
	return s.Status
}

// Retryable reports whether a request refused with code may be sent again
// unchanged after the Retry-After delay.
func Retryable(code string) bool {
	s, _ := Spec(code)
	return s.Retry
}
