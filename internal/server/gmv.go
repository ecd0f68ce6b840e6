package server

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/analytics"
)

// gmvState holds the GMV projection once recovery has handed it over.
type gmvState struct {
	a atomic.Pointer[analytics.Analytics]
}

// AttachAnalytics makes GET /v1/gmv answer from a.
func (s *Server) AttachAnalytics(a *analytics.Analytics) { s.gmv.a.Store(a) }

// handleGMV answers GET /v1/gmv (public).
func (s *Server) handleGMV(w http.ResponseWriter, r *http.Request) {
	a := s.gmv.a.Load()
	if a == nil {
		s.writeError(w, errNotReady)
		return
	}
	writeJSON(w, http.StatusOK, appendGMV(nil, a.GMV()))
}

// appendGMV renders the body of GET /v1/gmv; the big screen's stream will
// send the same bytes.
func appendGMV(b []byte, g analytics.GMV) []byte {
	b = append(b, `{"gmv":{"amount":`...)
	b = strconv.AppendInt(b, g.Amount, 10)
	b = append(b, `,"currency":"CNY"},"gmv_usd":{"amount":`...)
	b = strconv.AppendInt(b, g.AmountUSD, 10)
	b = append(b, `,"currency":"USD"},"orders_placed":`...)
	b = strconv.AppendUint(b, g.OrdersPlaced, 10)
	b = append(b, `,"orders_paid":`...)
	b = strconv.AppendUint(b, g.OrdersPaid, 10)
	b = append(b, `,"orders_per_second":`...)
	b = strconv.AppendFloat(b, g.OrdersPerSecond, 'f', 1, 64)
	b = append(b, `,"as_of":"`...)
	b = g.AsOf.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...)
}
