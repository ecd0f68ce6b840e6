package server

import (
	"bytes"
	"context"
	"log"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path for single orders.
//
// net/http spends most of a single order's CPU around the handler, not in
// it: per request it starts a background read to notice a client that
// goes away (a goroutine wake-up, a read that finds nothing, and two
// deadline changes to stop it again), sets the read and write deadlines
// again, builds a fresh header map, request and response, and parks the
// connection's goroutine twice. Measured with wrk (64 connections, one
// JSON POST /v1/orders each), that was about 27 µs of a 55 µs request,
// against 7 µs in fest's own handler.
//
// So LimitListener serves keep-alive connections itself while they send
// nothing but the one request shape that carries single orders: an
// HTTP/1.1 `POST /v1/orders` with a Content-Length, whose headers and body
// have fully arrived in one read buffer. Such a request runs the same
// handler net/http would route it to (authentication, metrics, decoding,
// errors: one code path), and its answer is framed as net/http frames it
// (status line, the handler's headers, Date, Content-Length). The first
// request of any other shape, or one not complete in the buffer, hands the
// connection with the bytes read so far to net/http for the rest of its
// life, through the listener's Accept: every other route, the event feed's
// streaming, chunked or oversized bodies, Expect, Connection: close,
// malformed requests and their 400s, slow clients and their timeouts stay
// exactly net/http's. The fast path refuses rather than imitates.
const (
	// fastReadBytes is a fast connection's read buffer: a single order of
	// a few items with its headers takes about 400 bytes; a request that
	// does not fit goes to net/http (which reads its headers into 4 KiB).
	fastReadBytes = 4096
	// fastHeadersMax bounds the header lines of a fast request; more go
	// to net/http.
	fastHeadersMax = 32
)

// fastPath is the server's set of fast connections.
type fastPath struct {
	handler  http.HandlerFunc // POST /v1/orders, as the mux routes it
	idle     time.Duration    // keep-alive wait for the next request (net/http's IdleTimeout, else ReadTimeout)
	header   time.Duration    // wait for a new connection's first request (ReadHeaderTimeout, else ReadTimeout)
	write    time.Duration    // WriteTimeout from the end of a request's read
	shutdown time.Duration    // ShutdownTimeout: quiesce's longest wait (0: none)
	errorLog func() *log.Logger

	mu sync.Mutex
	// closing is set by Detach and when the listener closes: no fast
	// request starts afterwards (the connection goes to net/http).
	// REQUIRES: mu.
	closing bool
	// closed is set when the listener closes: a fast connection closes
	// once idle. REQUIRES: mu.
	closed bool
	conns  map[*fastConn]struct{}
	active sync.WaitGroup // requests in the handler or their answer's write; Detach waits for them
}

func newFastPath(s *Server, handler http.HandlerFunc) *fastPath {
	idle := s.cfg.IdleTimeout
	if idle == 0 {
		idle = s.cfg.ReadTimeout
	}
	header := s.cfg.ReadHeaderTimeout
	if header == 0 {
		header = s.cfg.ReadTimeout
	}
	return &fastPath{
		handler: handler, idle: idle, header: header, write: s.cfg.WriteTimeout, shutdown: s.cfg.ShutdownTimeout,
		errorLog: s.httpErrorLog,
		conns:    make(map[*fastConn]struct{}),
	}
}

// fastConn is one connection served by the fast path, and the request,
// header map, body reader and buffers it reuses from one request to the
// next. Handlers of the fast route do not keep the request past their
// return, as with net/http.
type fastConn struct {
	c      *limitConn
	active bool // REQUIRES: fastPath.mu. A request is in the handler.
	buf    []byte
	out    []byte
	req    *http.Request
	body   bytes.Reader
	resp   fastResponse
	cancel context.CancelFunc
	// last holds each header's value on the previous request, one value
	// each, at most fastHeadersMax of them (see addHeader).
	last map[string][]string
}

// closeIdle closes the fast connections waiting for a request and lets
// the busy ones close after their answer; it runs when the listener
// closes (http.Server's Shutdown or Close), as net/http closes its own
// idle connections then.
func (f *fastPath) closeIdle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing, f.closed = true, true
	for fc := range f.conns {
		if !fc.active {
			fc.c.Close()
		}
	}
}

// quiesce stops new requests on fast connections (they go to net/http,
// which answers 503 once detached) and waits for those in the handler
// until ctx ends, or when ctx has no deadline at most f.shutdown if it is
// set; false if some were still running then.
func (f *fastPath) quiesce(ctx context.Context) bool {
	f.mu.Lock()
	f.closing = true
	f.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok && f.shutdown > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.shutdown)
		defer cancel()
	}
	if ctx.Done() == nil {
		f.active.Wait()
		return true
	}
	// The waiter ends with the last request, after quiesce if need be.
	done := make(chan struct{})
	go func() {
		f.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// serve runs one accepted connection until it closes or is handed to
// net/http through handoff.
func (f *fastPath) serve(c *limitConn, handoff func(net.Conn)) {
	fc := &fastConn{c: c, buf: make([]byte, fastReadBytes)}
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		handoff(c)
		return
	}
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	handed := false
	defer func() {
		f.mu.Lock()
		delete(f.conns, fc)
		f.mu.Unlock()
		if fc.cancel != nil {
			fc.cancel()
		}
		if !handed {
			c.Close()
		}
	}()
	n := 0 // bytes in fc.buf
	// A new connection's first request has the read-header timeout, as
	// with net/http; the idle timeout runs only between requests, so that a
	// silent connection does not hold a slot of ConnectionsMax for longer.
	wait := f.header
	for {
		if n == 0 {
			if wait > 0 {
				c.SetReadDeadline(time.Now().Add(wait))
			}
			m, err := c.Read(fc.buf)
			n = m
			if err != nil {
				if n > 0 {
					// net/http answers what arrived and then sees the error.
					handed = true
					c.SetReadDeadline(time.Time{})
					handoff(&prefixConn{limitConn: c, prefix: fc.buf[:n]})
				}
				return
			}
		}
		used, ok := fc.parse(fc.buf[:n])
		if ok && !f.begin(fc) {
			ok = false
		}
		if !ok {
			handed = true
			c.SetReadDeadline(time.Time{})
			handoff(&prefixConn{limitConn: c, prefix: fc.buf[:n]})
			return
		}
		if f.write > 0 {
			c.SetWriteDeadline(time.Now().Add(f.write))
		}
		keep := f.run(fc)
		if keep {
			_, err := c.Write(fc.out)
			keep = err == nil
		}
		// The request counts as active until its answer is written, so
		// that Detach (and the shutdown after it) does not close the
		// engine under an acknowledgement still on its way.
		f.active.Done()
		if !f.end(fc) || !keep {
			return
		}
		wait = f.idle
		n = copy(fc.buf, fc.buf[used:n])
	}
}

// begin marks fc busy; false if the server is closing.
func (f *fastPath) begin(fc *fastConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	fc.active = true
	f.active.Add(1)
	return true
}

// end marks fc idle again; false if it should close (the listener closed
// and closeIdle may have passed it by while it was busy).
func (f *fastPath) end(fc *fastConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc.active = false
	return !f.closed
}

// run calls the handler and frames its answer into fc.out; false if the
// connection must close after it (a panic, or the handler asked).
func (f *fastPath) run(fc *fastConn) (keep bool) {
	defer func() {
		if p := recover(); p != nil {
			keep = false
			if p != http.ErrAbortHandler {
				f.errorLog().Printf("http: panic serving %s: %v\n%s", fc.req.RemoteAddr, p, debug.Stack())
			}
		}
	}()
	fc.resp.reset()
	f.handler(&fc.resp, fc.req)
	fc.out = fc.resp.frame(fc.out[:0])
	return fc.resp.header.Get("Connection") != "close"
}

// fastRoute is the one route the fast path serves.
const fastRoute = "/v1/orders"

// parse reads one request from b into fc.req. ok is false unless b holds
// a whole request of the fast shape (see the comment at the top); used is
// its length.
func (fc *fastConn) parse(b []byte) (used int, ok bool) {
	const line = "POST " + fastRoute + " HTTP/1.1\r\n"
	if !bytes.HasPrefix(b, []byte(line)) {
		return 0, false
	}
	if fc.req == nil {
		fc.start()
	}
	h := fc.req.Header
	clear(h)
	i := len(line)
	host, length, seenHost := "", -1, false
	for lines := 0; ; lines++ {
		end := bytes.Index(b[i:], []byte("\r\n"))
		if end < 0 || lines > fastHeadersMax {
			return 0, false
		}
		l := b[i : i+end]
		i += end + 2
		if len(l) == 0 {
			break
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return 0, false
		}
		key, ok := canonicalKey(l[:colon])
		if !ok {
			return 0, false
		}
		v, ok := fieldValue(l[colon+1:])
		if !ok {
			return 0, false
		}
		switch key {
		case "Host":
			if seenHost || !validHost(v) {
				return 0, false
			}
			seenHost = true
			host = fc.req.Host // the previous request's, usually the same
			if host != string(v) {
				host = string(v)
			}
			continue // net/http moves it to Request.Host
		case "Content-Length":
			if length >= 0 {
				return 0, false
			}
			if length = contentLength(v); length < 0 {
				return 0, false
			}
		case "Connection":
			if !bytes.EqualFold(v, []byte("keep-alive")) {
				return 0, false
			}
		case "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer":
			return 0, false
		}
		fc.addHeader(key, v)
	}
	if !seenHost || length < 0 || len(b)-i < length {
		return 0, false
	}
	fc.req.Host = host
	fc.req.ContentLength = int64(length)
	fc.body.Reset(b[i : i+length])
	return i + length, true
}

// addHeader adds the value v of header key to the request. A client sends
// the same headers on every request of a connection (its token, its
// content type), so a value equal to the one the previous request carried
// reuses its string and slice: handlers read request headers and never
// change them.
func (fc *fastConn) addHeader(key string, v []byte) {
	h := fc.req.Header
	if prev, ok := h[key]; ok {
		// A repeated header: a fresh slice, not one shared with last time.
		h[key] = append(prev[:len(prev):len(prev)], string(v))
		return
	}
	if last, ok := fc.last[key]; ok && last[0] == string(v) {
		h[key] = last
		return
	}
	vs := []string{string(v)}
	if len(fc.last) >= fastHeadersMax {
		clear(fc.last)
	}
	fc.last[key] = vs
	h[key] = vs
}

// start makes the request, maps and context fc reuses, at its first
// request of the fast shape: a connection handed over at once (a batch
// client's) costs only the read buffer.
func (fc *fastConn) start() {
	ctx, cancel := context.WithCancel(context.Background())
	fc.cancel = cancel
	fc.req = (&http.Request{
		Method: http.MethodPost, URL: &url.URL{Path: fastRoute}, RequestURI: fastRoute,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, 8), Body: fastBody{&fc.body}, RemoteAddr: fc.c.RemoteAddr().String(),
	}).WithContext(ctx)
	fc.resp.header = make(http.Header, 4)
	fc.last = make(map[string][]string)
}

// commonKeys interns the canonical names of the headers a single order
// usually carries, so parsing them allocates nothing.
var commonKeys = map[string]string{}

func init() {
	for _, k := range []string{"Host", "Content-Length", "Content-Type", "Authorization", "User-Agent",
		"Accept", "Accept-Encoding", "Connection", "Idempotency-Key", HeaderRehearsalTime} {
		commonKeys[k] = k
	}
}

// canonicalKey returns the canonical form of a header name made of
// letters, digits and dashes (textproto's: upper case first and after a
// dash); ok is false for any other name, which net/http then judges.
func canonicalKey(name []byte) (string, bool) {
	if len(name) > 64 {
		return "", false
	}
	var a [64]byte
	k := a[:len(name)]
	upper := true
	for j, c := range name {
		switch {
		case c >= 'a' && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case c >= 'A' && c <= 'Z':
			if !upper {
				c += 'a' - 'A'
			}
		case c >= '0' && c <= '9', c == '-':
		default:
			return "", false
		}
		k[j] = c
		upper = c == '-'
	}
	if s, ok := commonKeys[string(k)]; ok {
		return s, true
	}
	return string(k), true
}

// fieldValue trims a header value of spaces and tabs; ok is false if it
// holds a control byte or one outside ASCII.
func fieldValue(v []byte) ([]byte, bool) {
	v = bytes.Trim(v, " \t")
	for _, c := range v {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return nil, false
		}
	}
	return v, true
}

// validHost accepts a host[:port] of letters, digits, dots, dashes,
// colons and brackets: a subset of what net/http accepts.
func validHost(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
		if !ok {
			return false
		}
	}
	return true
}

// contentLength parses a Content-Length of at most 7 digits (the fast
// buffer is far smaller); -1 if it is not one.
func contentLength(v []byte) int {
	if len(v) == 0 || len(v) > 7 {
		return -1
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// fastBody is a request body over the read buffer.
type fastBody struct{ *bytes.Reader }

func (fastBody) Close() error { return nil }

// fastResponse collects a handler's answer, framed once it returns.
type fastResponse struct {
	header http.Header
	status int
	head   []byte // the header lines, taken when the status is written
	body   []byte
}

func (r *fastResponse) reset() {
	clear(r.header)
	r.status = 0
	r.head = r.head[:0]
	r.body = r.body[:0]
}

func (r *fastResponse) Header() http.Header { return r.header }

// WriteHeader takes the headers as they are now: later changes are
// ignored, as net/http ignores them.
func (r *fastResponse) WriteHeader(status int) {
	if r.status != 0 {
		return
	}
	r.status = status
	if len(r.body) == 0 && r.header.Get("Content-Type") == "" {
		// Sniffed from the first write, as net/http does; see frame.
		r.status = -status
		return
	}
	r.head = appendHeader(r.head, r.header)
}

func (r *fastResponse) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	r.body = append(r.body, p...)
	return len(p), nil
}

// frame appends the whole HTTP/1.1 answer to b.
func (r *fastResponse) frame(b []byte) []byte {
	status := r.status
	switch {
	case status == 0:
		status = http.StatusOK
		r.head = appendHeader(r.head, r.header)
	case status < 0:
		status = -status
		if len(r.body) > 0 {
			r.header.Set("Content-Type", http.DetectContentType(r.body))
		}
		r.head = appendHeader(r.head, r.header)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if text := http.StatusText(status); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(status), 10)
	}
	b = append(b, "\r\n"...)
	b = append(b, r.head...)
	if r.header.Get("Date") == "" {
		b = append(b, "Date: "...)
		b = appendDate(b)
		b = append(b, "\r\n"...)
	}
	bodyAllowed := status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
	if bodyAllowed && r.header.Get("Content-Length") == "" {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if bodyAllowed {
		b = append(b, r.body...)
	}
	return b
}

// appendHeader appends h in net/http's wire form: sorted by name, one line
// a value, a value's CR and LF turned to spaces and its ends trimmed.
func appendHeader(b []byte, h http.Header) []byte {
	var a [8]string
	keys := a[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !validToken(k) {
			continue // net/http drops such a header too
		}
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			b = append(b, strings.Trim(v, " \t")...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// validToken reports whether k is an HTTP token (RFC 9110 tchar).
func validToken(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// The Date header changes once a second: formatted once a second.
var dateCache atomic.Pointer[dateLine]

type dateLine struct {
	unix int64
	text []byte
}

func appendDate(b []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.unix != now.Unix() {
		d = &dateLine{unix: now.Unix(), text: now.UTC().AppendFormat(nil, http.TimeFormat)}
		dateCache.Store(d)
	}
	return append(b, d.text...)
}

// prefixConn is a connection handed to net/http with the bytes the fast
// path read from it and did not serve.
type prefixConn struct {
	*limitConn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		if len(c.prefix) == 0 {
			c.prefix = nil // the fast buffer is not kept for the connection's life
		}
		return n, nil
	}
	return c.limitConn.Read(p)
}
