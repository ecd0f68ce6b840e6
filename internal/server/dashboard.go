package server

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the big screen: one page, no build step and no
// third-party front-end code, live over GET /v1/gmv/stream and polling the
// breakdowns. It is built into the binary so that `fest demo` needs
// nothing beside it.
//
//go:embed dashboard/index.html
var dashboardHTML []byte

// handleIndex answers GET / with the dashboard.
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// The page loads nothing from elsewhere; say so to the browser.
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:")
	w.WriteHeader(http.StatusOK)
	w.Write(dashboardHTML)
}
