package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fest-platform/fest/internal/engine"
)

// The rehearsal clock (Config.RehearsalClock, docs/api.md): a client may
// give each command its festival time, in the protobuf batches' field
// rehearsal_time_unix_nanos or, for JSON requests, in the header
// HeaderRehearsalTime, which applies to every command of the request that
// gives none itself.

// HeaderRehearsalTime carries a JSON request's festival time: unix
// milliseconds or RFC 3339.
const HeaderRehearsalTime = "Fest-Rehearsal-Time"

// rehearsalFieldProto is the protobuf field's name in error answers.
const rehearsalFieldProto = "rehearsal_time_unix_nanos"

// rehearsalTimeMax bounds a given time (unix ns): year 2200, far past any
// festival and far from int64's end, so pay-by (time + payment timeout)
// never overflows.
var rehearsalTimeMax = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// checkRehearsalTime answers whether t, a time given in field, may be
// applied: only on a server with the rehearsal clock, and positive.
func (s *Server) checkRehearsalTime(field string, t int64) *apiError {
	switch {
	case !s.cfg.RehearsalClock:
		return errInvalidArgument(field, field+": a festival time is taken only by a server run with --rehearsal-clock")
	case t <= 0 || t > rehearsalTimeMax:
		return errInvalidArgument(field, field+": festival time out of range")
	}
	return nil
}

// rehearsalHeader returns the festival time of r's header (unix ns, 0 for
// none), or the error to answer.
func (s *Server) rehearsalHeader(r *http.Request) (int64, *apiError) {
	v := r.Header.Get(HeaderRehearsalTime)
	if v == "" {
		return 0, nil
	}
	var t int64
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms <= 0 || ms > rehearsalTimeMax/1e6 {
			return 0, errInvalidArgument(HeaderRehearsalTime, HeaderRehearsalTime+": festival time out of range")
		}
		t = ms * 1e6
	} else if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
		t = ts.UnixNano()
	} else {
		return 0, errInvalidArgument(HeaderRehearsalTime, fmt.Sprintf("%s: %q is neither unix milliseconds nor RFC 3339", HeaderRehearsalTime, v))
	}
	if aerr := s.checkRehearsalTime(HeaderRehearsalTime, t); aerr != nil {
		return 0, aerr
	}
	return t, nil
}

// stampRehearsal gives every command of batch that has no time of its own
// the header's time at.
func stampRehearsal(batch *engine.Batch, at int64) {
	for i := range batch.Requests {
		if c := &batch.Requests[i].Command; c.At == 0 {
			c.At = at
		}
	}
}
