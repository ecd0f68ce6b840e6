package server

import (
	"net/http/httptest"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// TestRehearsalHeader: the header's forms, its bounds, and its refusal by a
// server without the rehearsal clock.
func TestRehearsalHeader(t *testing.T) {
	const peak = int64(1_605_024_026_000_000_000) // 2020-11-11 00:00:26 +08:00
	for _, c := range []struct {
		name, value string
		clock       bool
		want        int64
		refused     bool
	}{
		{"none", "", true, 0, false},
		{"none without the clock", "", false, 0, false},
		{"unix ms", "1605024026000", true, peak, false},
		{"rfc 3339", "2020-11-11T00:00:26+08:00", true, peak, false},
		{"rfc 3339 nanos", "2020-11-10T16:00:26.000000007Z", true, peak + 7, false},
		{"without the clock", "1605024026000", false, 0, true},
		{"zero", "0", true, 0, true},
		{"negative", "-5", true, 0, true},
		{"past 2200", "7258118400001", true, 0, true},
		{"before 1970", "1969-12-31T23:59:59Z", true, 0, true},
		{"neither", "yesterday", true, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &Server{cfg: Config{RehearsalClock: c.clock}}
			r := httptest.NewRequest("POST", "/v1/orders", nil)
			if c.value != "" {
				r.Header.Set(HeaderRehearsalTime, c.value)
			}
			got, aerr := s.rehearsalHeader(r)
			switch {
			case c.refused && (aerr == nil || aerr.Field != HeaderRehearsalTime):
				t.Fatalf("got %d, %v; want refused naming %s", got, aerr, HeaderRehearsalTime)
			case !c.refused && (aerr != nil || got != c.want):
				t.Fatalf("got %d, %v; want %d", got, aerr, c.want)
			}
		})
	}
	b := engine.NewBatch(2)
	b.Add(engine.Command{Kind: engine.KindPay})
	b.Add(engine.Command{Kind: engine.KindPay, At: 5})
	stampRehearsal(b, peak)
	if b.Requests[0].Command.At != peak || b.Requests[1].Command.At != 5 {
		t.Fatalf("stamped %d and %d: the header gives only commands without a time their time", b.Requests[0].Command.At, b.Requests[1].Command.At)
	}
}
