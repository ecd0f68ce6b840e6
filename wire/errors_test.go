package wire

import (
	"net/http"
	"testing"
)

// TestErrorTable: every code of the contract has its status and retry
// semantics, and a code outside the contract is a 500.
func TestErrorTable(t *testing.T) {
	cases := []struct {
		code   string
		status int
		retry  bool
	}{
		{CodeInvalidJSON, 400, false}, {CodeInvalidProtobuf, 400, false},
		{CodeUnauthenticated, 401, false}, {CodeForbidden, 403, false}, {CodeNotFound, 404, false},
		{CodeOutOfStock, 409, false}, {CodeInvalidState, 409, false}, {CodeDealNotActive, 409, false},
		{CodeConflict, 409, false}, {CodeLimitExceeded, 409, false},
		{CodeGone, 410, false}, {CodeTooLarge, 413, false},
		{CodeInvalidArgument, 422, false}, {CodePaymentMismatch, 422, false}, {CodeIdempotencyMismatch, 422, false},
		{CodeOverloaded, 429, true}, {CodeUnavailable, 503, true},
		{CodeInternal, 500, false}, {"no_such_code", 500, false},
	}
	for _, c := range cases {
		if got := StatusOf(c.code); got != c.status {
			t.Errorf("StatusOf(%q) = %d, want %d", c.code, got, c.status)
		}
		if got := Retryable(c.code); got != c.retry {
			t.Errorf("Retryable(%q) = %v, want %v", c.code, got, c.retry)
		}
	}
	seen := map[string]bool{}
	for _, s := range Errors {
		if seen[s.Code] {
			t.Errorf("code %q twice in the table", s.Code)
		}
		seen[s.Code] = true
		if http.StatusText(s.Status) == "" {
			t.Errorf("code %q: status %d is no HTTP status", s.Code, s.Status)
		}
	}
	if len(seen) != len(cases)-1 {
		t.Errorf("table has %d codes, the test %d", len(seen), len(cases)-1)
	}
}
