package server

import (
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of turning away a connection over ConnectionsMax.
const (
	// rejectingMax bounds the connections being turned away at once. Each
	// is answered on its own goroutine (write the 503, drain what the
	// client sent so the close is not a reset); beyond this many a
	// connection is closed without an answer, so a flood cannot grow
	// goroutines without bound.
	rejectingMax = 256
	// rejectLingerMax bounds the time spent on one turned-away connection.
	rejectLingerMax = time.Second
	// rejectDrainBytesMax bounds what is read and discarded from one.
	rejectDrainBytesMax = 64 << 10
)

// HTTPServer returns an http.Server serving s with the configured
// read-header, read, write and idle timeouts. Serve it on
// s.LimitListener(ln) to bound the open connections. errorLog receives
// the connection errors of net/http (nil: the standard logger).
//
// A handler that streams for longer than WriteTimeout (an event feed)
// must extend its own deadline with http.ResponseController.
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          errorLog,
	}
	// Shutdown waits for every handler, and the GMV streams end only when
	// told to.
	hs.RegisterOnShutdown(s.gmv.closeStreams)
	// Event feeds never end by themselves; Shutdown waits for handlers.
	hs.RegisterOnShutdown(s.closeFeeds)
	s.errorLog.Store(errorLog)
	return hs
}

// connMetrics counts the connections of LimitListener.
type connMetrics struct {
	slots    chan struct{} // one token per open connection, ConnectionsMax deep
	rejected prometheus.Counter
	dropped  prometheus.Counter
}

func newConnMetrics(reg *prometheus.Registry, connectionsMax int) *connMetrics {
	m := &connMetrics{
		slots:    make(chan struct{}, connectionsMax),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_http_connections_rejected_total", Help: "Connections over the connection bound, answered 503 and closed."}),
		dropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_http_connections_dropped_total", Help: "Connections over the connection bound closed without an answer (too many being turned away at once)."}),
	}
	reg.MustRegister(m.rejected, m.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fest_http_connections", Help: "Open client connections."}, func() float64 { return float64(len(m.slots)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fest_http_connections_max", Help: "The bound on open client connections."}, func() float64 { return float64(cap(m.slots)) }),
	)
	return m
}

// LimitListener bounds ln to ConnectionsMax open connections. A
// connection accepted beyond the bound is not served: it is answered at
// once with 503 unavailable and Retry-After and closed, and Accept goes on
// to the next one. Turning it away (rather than leaving it in the kernel's
// accept queue until a slot frees) tells the client at once to back off,
// in the contract's words, instead of a connect that hangs until the
// client's own timeout. All listeners of one Server share the bound.
func (s *Server) LimitListener(ln net.Listener) net.Listener {
	l := &limitListener{Listener: ln, m: s.conns, busy: s.busyAnswer(), rejecting: make(chan struct{}, rejectingMax)}
	if s.fast != nil {
		// Connections start on the fast path (fastconn.go) and reach
		// net/http through Accept when they leave it.
		l.fast = s.fast
		l.handed = make(chan net.Conn)
		l.errs = make(chan error)
		l.done = make(chan struct{})
	}
	return l
}

// busyAnswer is the whole HTTP answer to a connection over the bound.
func (s *Server) busyAnswer() []byte {
	body := `{"error":{"code":"unavailable","message":"too many connections; retry after the Retry-After delay"}}` + "\n"
	retry := strconv.Itoa(int((s.cfg.RetryAfter + time.Second - 1) / time.Second))
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: " + retry +
		"\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

type limitListener struct {
	net.Listener
	m         *connMetrics
	busy      []byte
	rejecting chan struct{} // one token per connection being turned away

	// With the fast path on, an accept loop of its own takes the
	// connections; Accept returns those handed over and the loop's errors.
	fast      *fastPath
	handed    chan net.Conn
	errs      chan error
	done      chan struct{} // closed by Close
	startOnce sync.Once
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	if l.fast == nil {
		return l.acceptLimited()
	}
	l.startOnce.Do(func() { go l.acceptFast() })
	select {
	case c := <-l.handed:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// acceptFast accepts connections for the fast path until the listener
// fails for good, passing every error on to Accept as net/http expects
// (it retries the temporary ones).
func (l *limitListener) acceptFast() {
	for {
		c, err := l.acceptLimited()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			if ne, ok := err.(net.Error); !ok || !ne.Temporary() { //nolint:staticcheck // net/http's own test
				return
			}
			continue
		}
		go l.fast.serve(c.(*limitConn), l.handoff)
	}
}

// handoff gives c to net/http; once the listener is closed nobody
// accepts, and c is closed instead, as an idle connection on Shutdown.
func (l *limitListener) handoff(c net.Conn) {
	select {
	case l.handed <- c:
	case <-l.done:
		c.Close()
	}
}

// Close stops accepting. With the fast path on it also closes the fast
// connections waiting for a request, and the busy ones after their
// answer: http.Server's Close and Shutdown both close the listener first
// and then net/http's own idle connections, but cannot see these. The
// fast path then stays off for the server's other listeners too, whose
// connections net/http serves from then on.
func (l *limitListener) Close() error {
	if l.done != nil {
		l.closeOnce.Do(func() {
			close(l.done)
			l.fast.closeIdle()
		})
	}
	return l.Listener.Close()
}

func (l *limitListener) acceptLimited() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.m.slots <- struct{}{}:
			return &limitConn{Conn: c, slots: l.m.slots}, nil
		default:
		}
		l.reject(c)
	}
}

// reject answers a connection over the bound and closes it, off the
// accept loop.
func (l *limitListener) reject(c net.Conn) {
	select {
	case l.rejecting <- struct{}{}:
	default:
		l.m.dropped.Inc()
		c.Close()
		return
	}
	l.m.rejected.Inc()
	go func() {
		defer func() { <-l.rejecting }()
		c.SetDeadline(time.Now().Add(rejectLingerMax))
		c.Write(l.busy)
		// Closing a socket with unread data sends a reset, which may
		// reach the client before it reads the answer: stop writing,
		// read what it sent, then close.
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, rejectDrainBytesMax))
		c.Close()
	}()
}

// limitConn gives its slot back when closed (once: net/http may close a
// connection more than once).
type limitConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.slots })
	return err
}

// CloseWrite half-closes the connection where the underlying one can, as
// net/http does before closing a connection with an unread request body.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
