package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/wire"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("server closed")

// backend is what the API needs once recovery is done.
type backend struct {
	eng   *engine.Engine
	store *orders.Store
	reads *projection.Runner // feeds store; its watermark says how far reads reach
	gw    *gateway
}

// Server serves the fest HTTP API. It answers /healthz at once and every
// other endpoint with 503 until Attach hands it a recovered engine.
type Server struct {
	cfg     Config
	tokens  []tokenRole
	mux     *http.ServeMux
	metrics *metrics
	be      atomic.Pointer[backend]
	gmv     gmvState
	asst    assistantState
	logi    logisticsState
	live    liveState
	bufs    sync.Pool // *[]byte request and response buffers
	closeMu sync.Mutex
	conns   *connMetrics // the connection bound of LimitListener
	feeds   feedState
	cl      *clusterState // nil on a single node
	fast    *fastPath     // nil with NetHTTPOnly or in a cluster
	// errorLog is net/http's error log given to HTTPServer (nil: the
	// standard logger), for the fast path's panics.
	errorLog atomic.Pointer[log.Logger]
	// placeOrder is the handler of POST /v1/orders, also called by the
	// fast path.
	placeOrder http.HandlerFunc
	// patterns are the routes as registered, for the test that keeps the
	// OpenAPI document in step with them.
	patterns []string
}

type tokenRole struct {
	token []byte
	role  Role
}

// New returns a server; it is not ready until Attach.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{
		cfg: cfg,
		tokens: []tokenRole{
			{[]byte(cfg.AdminToken), RoleAdmin},
			{[]byte(cfg.StorefrontToken), RoleStorefront},
			{[]byte(cfg.CarrierToken), RoleCarrier},
		},
		mux: http.NewServeMux(),
	}
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.gmv.init()
	s.metrics = newMetrics(s)
	s.conns = newConnMetrics(s.metrics.reg, cfg.ConnectionsMax)
	if cfg.Cluster != nil {
		cc := *cfg.Cluster
		cc.setDefaults()
		s.cl = newClusterState(s, cc)
	}
	s.initFeeds()
	s.routes()
	if s.cl == nil && !cfg.NetHTTPOnly {
		s.fast = newFastPath(s, s.placeOrder)
	}
	return s, nil
}

// Attach makes the server ready: eng is recovered, and reads, feeding
// store among its projections, follows it.
func (s *Server) Attach(eng *engine.Engine, reads *projection.Runner, store *orders.Store) {
	if s.cl != nil && s.cl.deps.Load() == nil {
		panic("server: Attach of a cluster node before AttachCluster")
	}
	gw := newGateway(eng, s.cfg.GatewayBatchMax, s.metrics)
	s.be.Store(&backend{eng: eng, store: store, reads: reads, gw: gw})
}

// Detach stops the gateway; afterwards the API answers 503 again. Call it
// after the HTTP server has stopped and before closing the engine. It
// waits for the single orders still running at most ShutdownTimeout.
func (s *Server) Detach() { s.DetachContext(context.Background()) }

// DetachContext is Detach whose wait for the single orders still running
// ends when ctx does (ShutdownTimeout if ctx has no deadline): a shutdown
// passes the context of the HTTP server's Shutdown, so that the two waits
// share one timeout instead of taking it twice.
func (s *Server) DetachContext(ctx context.Context) {
	if s.fast != nil {
		// A fast connection's request holds the backend it loaded until
		// it returns, as net/http's do until Shutdown returns (or its
		// timeout passes: then, as there, the stragglers are abandoned,
		// and the gateway answers them unavailable).
		if !s.fast.quiesce(ctx) {
			s.httpErrorLog().Printf("fest: single orders still running after the shutdown timeout of %v; detaching without them", s.cfg.ShutdownTimeout)
		}
	}
	be := s.be.Swap(nil)
	if be != nil {
		be.gw.close()
	}
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

type handlerFunc func(w http.ResponseWriter, r *http.Request, be *backend)

// api wraps an endpoint: authentication for roles (none: public), then
// readiness.
func (s *Server) api(h handlerFunc, roles ...Role) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(roles) > 0 {
			role := s.roleOf(r)
			if role == RoleNone {
				s.writeError(w, errUnauthenticated)
				return
			}
			allowed := false
			for _, ro := range roles {
				allowed = allowed || ro == role
			}
			if !allowed {
				s.writeError(w, errForbidden)
				return
			}
		}
		be := s.be.Load()
		if be == nil {
			s.writeError(w, errNotReady)
			return
		}
		h(w, r, be)
	}
}

// roleOf returns the role of the request's bearer token.
func (s *Server) roleOf(r *http.Request) Role {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return RoleNone
	}
	tok := []byte(strings.TrimSpace(h[len(prefix):]))
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(tok, t.token) == 1 {
			return t.role
		}
	}
	return RoleNone
}

// routeRecorder registers routes on the server's mux and remembers their
// patterns.
type routeRecorder struct{ s *Server }

func (rr routeRecorder) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	rr.s.mux.HandleFunc(pattern, h)
	rr.s.patterns = append(rr.s.patterns, pattern)
}

func (rr routeRecorder) Handle(pattern string, h http.Handler) {
	rr.s.mux.Handle(pattern, h)
	rr.s.patterns = append(rr.s.patterns, pattern)
}

func (s *Server) routes() {
	m := routeRecorder{s}
	admin, store := RoleAdmin, RoleStorefront

	m.HandleFunc("GET /{$}", s.handleIndex)
	m.HandleFunc("GET /healthz", s.handleHealthz)
	m.HandleFunc("GET /readyz", s.handleReadyz)
	m.Handle("GET /metrics", s.metrics.handler())
	m.HandleFunc("GET /v1/openapi.json", s.handleOpenAPI)
	m.HandleFunc("GET /v1/openapi-3.0.json", s.handleOpenAPI30)
	m.HandleFunc("GET /v1/events", s.api(s.handleEvents, admin))
	m.HandleFunc("GET /v1/cluster", s.api(s.handleCluster))

	m.HandleFunc("PUT /v1/brands/{brand_id}", s.api(s.handlePutBrand, admin))
	m.HandleFunc("PUT /v1/merchants/{merchant_id}", s.api(s.handlePutMerchant, admin))
	m.HandleFunc("PUT /v1/skus/{sku_id}", s.api(s.handlePutSKU, admin))
	m.HandleFunc("GET /v1/skus/{sku_id}", s.api(s.bySKU(s.handleGetSKU), admin, store))
	m.HandleFunc("POST /v1/skus/{sku_id}/stock", s.api(s.bySKU(s.handleAdjustStock), admin))
	m.HandleFunc("POST /v1/catalog:import", s.api(s.handleImport, admin))

	s.placeOrder = timed(s.metrics.ackPlace, s.api(s.handlePlaceOrder, store))
	m.HandleFunc("POST "+fastRoute, s.placeOrder)
	m.HandleFunc("POST /v1/orders:batch", timed(s.metrics.ackBatch, s.api(s.handleOrderBatch, store)))
	m.HandleFunc("POST /v1/orders:settle", timed(s.metrics.ackSettle, s.api(s.handleSettle, store)))
	// In a cluster, byOrderID forwards a request for an order owned
	// elsewhere; on a single node it is the handler itself.
	m.HandleFunc("GET /v1/orders/{order_id}", s.api(s.byOrderID(s.handleGetOrder, parseOrderID), store))
	m.HandleFunc("POST /v1/orders/{order_id}/pay", timed(s.metrics.ackPay, s.api(s.byOrderID(s.handlePay, parseOrderID), store)))
	m.HandleFunc("POST /v1/orders/{order_id}/cancel", s.api(s.byOrderID(s.handleCancel, parseOrderID), store))
	m.HandleFunc("GET /v1/buyers/{buyer_id}/orders", s.api(s.handleBuyerOrders, store))

	m.HandleFunc("GET /v1/gmv", s.handleGMV)
	m.HandleFunc("GET /v1/gmv/breakdown", s.handleBreakdown)
	m.HandleFunc("GET /v1/gmv/milestones", s.handleMilestones)
	m.HandleFunc("GET /v1/gmv/series", s.handleSeries)
	m.HandleFunc("GET /v1/gmv/stream", s.handleStream)

	m.HandleFunc("GET /v1/orders/{order_id}/parcel", s.api(s.byOrderID(s.handleOrderParcel, parseOrderID), store))
	m.HandleFunc("GET /v1/parcels/{parcel_id}", s.api(s.byOrderID(s.handleGetParcel, parseParcelID), store, RoleCarrier))
	m.HandleFunc("POST /v1/parcels/{parcel_id}/scans", s.api(s.byOrderID(s.handleScan, parseParcelID), RoleCarrier))
	m.HandleFunc("GET /v1/logistics/stats", s.handleLogisticsStats)

	m.HandleFunc("PUT /v1/live/channels/{channel_id}", s.api(s.handlePutChannel, admin))
	m.HandleFunc("PUT /v1/live/deals/{deal_id}", s.api(s.handlePutDeal, admin))
	m.HandleFunc("POST /v1/live/deals/{deal_id}/end", s.api(s.handleEndDeal, admin))
	m.HandleFunc("GET /v1/live/channels/{channel_id}", s.handleGetChannel)
	m.HandleFunc("GET /v1/live/leaderboard", s.handleLeaderboard)

	m.HandleFunc("POST /v1/assistant/messages", s.api(s.handleAssistantMessage, store))
	m.HandleFunc("GET /v1/assistant/stats", s.handleAssistantStats)

	// Unknown /v1 paths answer in the contract's error shape.
	m.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, newError(wire.CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	be := s.be.Load()
	if be == nil {
		s.writeError(w, errNotReady)
		return
	}
	if err := be.eng.Err(); err != nil {
		// The journal failed and the engine stopped (fail-stop): take this
		// node out of rotation until it is restarted and recovers.
		s.writeError(w, newError(wire.CodeUnavailable, "engine stopped: "+err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":"ready"}`+"\n"))
}

// readBody reads the whole body, at most limit bytes, into a pooled
// buffer; release it with s.putBuf.
func (s *Server) readBody(r *http.Request, limit int64) (*[]byte, *apiError) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	bp := s.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	if n := r.ContentLength; n > 0 && int64(cap(b)) < n {
		b = make([]byte, 0, n)
	}
	lr := io.LimitedReader{R: r.Body, N: limit + 1}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = b
			s.putBuf(bp)
			return nil, errInvalidJSON("read body: " + err.Error())
		}
	}
	*bp = b
	if int64(len(b)) > limit {
		s.putBuf(bp)
		return nil, errTooLarge
	}
	return bp, nil
}

// httpErrorLog is the log of net/http's connection errors.
func (s *Server) httpErrorLog() *log.Logger {
	if l := s.errorLog.Load(); l != nil {
		return l
	}
	return log.Default()
}

func (s *Server) putBuf(bp *[]byte) {
	// Very large buffers are dropped so one big batch does not pin memory.
	if cap(*bp) > 1<<20 {
		return
	}
	*bp = (*bp)[:0]
	s.bufs.Put(bp)
}

// readCtx bounds the wait of a read for the order store.
func (s *Server) readCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.ReadWaitMax)
}
