package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// The client's own connections (Config.OwnConns).
//
// A batch request through net/http's Transport costs more around the
// request than the client spends encoding and decoding it: two goroutines
// per connection (the write and read loops) and a hand-off to each per
// request, a Request and its header map, a context with a timer, the body
// written through a bufio.Writer in several system calls, the answer read
// through two more readers and its chunks through a third. The load
// generator sends a few hundred thousand orders a second in batches of a
// thousand, and its CPU budget is a microsecond an order, all of it.
//
// So with OwnConns the batch calls (PlaceBatch, SettleBatch and the batches
// of PlaceOrder and SettlePay) keep keep-alive HTTP/1.1 connections of their
// own. A request is one write (the head and the body together, writev) and
// the answer is parsed here: the status line, the few headers the client
// reads, and a body framed by Content-Length or chunked, read straight into
// the caller's buffer. Everything else the contract asks of the transport
// stays as it was: the answer's status and error body become the same
// *Error (with Retry-After), the request is bounded by Config.Timeout and by
// its context, and a connection is used again only after its answer was
// read whole and the server did not ask to close it.
//
// A connection taken from the pool was idle, and the server may have
// closed it since (its idle timeout, a restart). net/http notices that with
// a read it keeps running on every idle connection; here the check is made
// when the connection is taken: a peek that does not wait (alive). A dead
// one is closed and another taken or dialled, so the request is never
// written to it. A request written and then not answered (the server closed
// the connection in the instant after the check, or died) is not sent
// again, as net/http does not send again a POST it wrote: it may have been
// applied. The error is a transport failure, never a guess.

// ownReadBytes is a connection's read buffer: the answer's status line and
// headers (about 200 bytes) and the first of its body. Bodies are read past
// it, straight into the caller's buffer.
const ownReadBytes = 4 << 10

// answerBytesMax bounds an answer's body: a batch of wire.BatchOrdersMax
// orders answers well under a megabyte.
const answerBytesMax = 64 << 20

// dialTimeout bounds a connection's dial, as the net/http Transport's
// dialer the client builds does.
const dialTimeout = 5 * time.Second

// errAnswerFraming is an answer whose HTTP framing the client cannot read.
var errAnswerFraming = errors.New("malformed HTTP answer")

// connPool is the own connections to one server: the idle ones, taken by
// one request at a time. Connections in use are not counted: as many as
// there are requests in flight.
type connPool struct {
	addr    string // host:port to dial
	host    string // the Host header
	prefix  string // the base URL's path, before each request's
	idleMax int
	mu      struct {
		sync.Mutex
		idle   []*ownConn // REQUIRES: mu
		closed bool       // REQUIRES: mu
	}
}

// ownConn is one connection with its buffers.
type ownConn struct {
	conn net.Conn
	br   *bufio.Reader
	head []byte      // the request's head, rebuilt per request
	bufs [2][]byte   // head and body, for the one write
	out  net.Buffers // bufs, consumed by the write
}

// newConnPool returns the pool for base, an http:// URL; ok is false for
// any other scheme, which then goes through net/http.
func newConnPool(base string, idleMax int) (p *connPool, ok bool) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, false
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &connPool{addr: addr, host: u.Host, prefix: u.EscapedPath(), idleMax: idleMax}, true
}

// get takes an idle connection that is still open, or dials one.
func (p *connPool) get(ctx context.Context) (*ownConn, error) {
	for {
		p.mu.Lock()
		n := len(p.mu.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		cn := p.mu.idle[n-1]
		p.mu.idle[n-1] = nil
		p.mu.idle = p.mu.idle[:n-1]
		p.mu.Unlock()
		if alive(cn.conn) {
			return cn, nil
		}
		cn.conn.Close()
	}
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &ownConn{conn: conn, br: bufio.NewReaderSize(conn, ownReadBytes)}, nil
}

// put returns a connection whose answer was read whole to the pool, or
// closes it when the pool is full or closed.
func (p *connPool) put(cn *ownConn) {
	p.mu.Lock()
	if p.mu.closed || len(p.mu.idle) >= p.idleMax {
		p.mu.Unlock()
		cn.conn.Close()
		return
	}
	p.mu.idle = append(p.mu.idle, cn)
	p.mu.Unlock()
}

// close closes the idle connections; those in use are closed when their
// requests end.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.mu.idle
	p.mu.idle, p.mu.closed = nil, true
	p.mu.Unlock()
	for _, cn := range idle {
		cn.conn.Close()
	}
}

// ownAnswer is what the client reads of an answer besides its body.
type ownAnswer struct {
	status      int
	retryAfter  string // the Retry-After header, "" when absent
	forwardedTo string // Fest-Forwarded-To, "" when absent
}

// aLongTimeAgo is a deadline in the past: setting it stops a request in
// flight at once.
var aLongTimeAgo = time.Unix(1, 0)

// post sends a POST of body (media type ctype, also accepted back) to path
// with the Authorization value auth, and reads the answer's body into
// *resp (reset first). The request ends by deadline or when ctx does.
func (p *connPool) post(ctx context.Context, deadline time.Time, path, ctype, auth string, body []byte, resp *[]byte) (ownAnswer, error) {
	cn, err := p.get(ctx)
	if err != nil {
		return ownAnswer{}, err
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := cn.conn.SetDeadline(deadline); err != nil {
		cn.conn.Close()
		return ownAnswer{}, err
	}
	// A context that can end interrupts the request by moving its deadline
	// to the past; the connection is then closed, as its answer was not
	// read whole.
	var stop func() bool
	if ctx.Done() != nil {
		conn := cn.conn
		stop = context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	}
	ans, keep, err := cn.roundTrip(p, path, ctype, auth, body, resp)
	if stop != nil && !stop() {
		keep = false
		if err != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
	}
	if !keep {
		cn.conn.Close()
		return ans, err
	}
	p.put(cn)
	return ans, err
}

// roundTrip writes the request and reads its answer; keep says whether the
// connection may carry another request.
func (cn *ownConn) roundTrip(p *connPool, path, ctype, auth string, body []byte, resp *[]byte) (ans ownAnswer, keep bool, err error) {
	h := append(cn.head[:0], "POST "...)
	h = append(h, p.prefix...)
	h = append(h, path...)
	h = append(h, " HTTP/1.1\r\nHost: "...)
	h = append(h, p.host...)
	h = append(h, "\r\nUser-Agent: fest-client\r\nContent-Type: "...)
	h = append(h, ctype...)
	h = append(h, "\r\nAccept: "...)
	h = append(h, ctype...)
	h = append(h, "\r\nAuthorization: "...)
	h = append(h, auth...)
	h = append(h, "\r\nContent-Length: "...)
	h = strconv.AppendInt(h, int64(len(body)), 10)
	h = append(h, "\r\n\r\n"...)
	cn.head = h
	cn.bufs = [2][]byte{h, body}
	cn.out = cn.bufs[:]
	if _, err := cn.out.WriteTo(cn.conn); err != nil {
		return ans, false, err
	}
	cn.bufs = [2][]byte{}
	return cn.readAnswer(resp)
}

// readAnswer reads one answer: its status line, headers and body.
func (cn *ownConn) readAnswer(resp *[]byte) (ans ownAnswer, keep bool, err error) {
	*resp = (*resp)[:0]
	var length int64 = -1
	var chunked bool
	for {
		keep = true
		line, err := cn.line()
		if err != nil {
			return ans, false, err
		}
		var minor byte
		if ans.status, minor, err = statusLine(line); err != nil {
			return ans, false, err
		}
		keep = minor == '1'
		for {
			line, err := cn.line()
			if err != nil {
				return ans, false, err
			}
			if len(line) == 0 {
				break
			}
			name, value, err := headerLine(line)
			if err != nil {
				return ans, false, err
			}
			switch {
			case asciiEqualFold(name, "Content-Length"):
				if length, err = contentLength(value); err != nil {
					return ans, false, err
				}
			case asciiEqualFold(name, "Transfer-Encoding"):
				if !asciiEqualFold(value, "chunked") {
					return ans, false, fmt.Errorf("%w: transfer encoding %q", errAnswerFraming, value)
				}
				chunked = true
			case asciiEqualFold(name, "Connection"):
				if asciiEqualFold(value, "close") {
					keep = false
				} else if asciiEqualFold(value, "keep-alive") {
					keep = true
				}
			case asciiEqualFold(name, "Retry-After"):
				ans.retryAfter = string(value)
			case asciiEqualFold(name, headerForwardedTo):
				ans.forwardedTo = string(value)
			}
		}
		// An interim answer (100 Continue, 103 Early Hints) precedes the
		// real one and has no body.
		if ans.status >= 200 || ans.status == 101 {
			break
		}
		length, chunked = -1, false
	}
	switch {
	case ans.status == 101:
		return ans, false, fmt.Errorf("%w: status 101 to a POST", errAnswerFraming)
	case ans.status == 204 || ans.status == 304:
		return ans, keep, nil
	case chunked:
		// Transfer-Encoding overrides Content-Length (RFC 9112, 6.3).
		err = cn.readChunked(resp)
	case length >= 0:
		err = cn.readBody(resp, int(length))
	default:
		// No framing: the body runs to the end of the connection.
		keep = false
		err = cn.readToEOF(resp)
	}
	if err != nil {
		return ans, false, err
	}
	return ans, keep, nil
}

// line reads one line without its CRLF (or bare LF); a line longer than the
// read buffer is a framing error.
func (cn *ownConn) line() ([]byte, error) {
	line, err := cn.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: header line over %d bytes", errAnswerFraming, ownReadBytes)
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// statusLine parses "HTTP/1.x SSS reason"; minor is the x.
func statusLine(line []byte) (status int, minor byte, err error) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
		return 0, 0, fmt.Errorf("%w: status line %q", errAnswerFraming, truncate(line))
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, fmt.Errorf("%w: status line %q", errAnswerFraming, truncate(line))
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, 0, fmt.Errorf("%w: status line %q", errAnswerFraming, truncate(line))
	}
	return status, line[7], nil
}

// headerLine splits "Name: value", trimming the value's spaces and tabs.
func headerLine(line []byte) (name, value []byte, err error) {
	for i, c := range line {
		if c == ':' {
			if i == 0 {
				break
			}
			value = line[i+1:]
			for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
				value = value[1:]
			}
			for n := len(value); n > 0 && (value[n-1] == ' ' || value[n-1] == '\t'); n = len(value) {
				value = value[:n-1]
			}
			return line[:i], value, nil
		}
		if c == ' ' || c == '\t' {
			break // a space before the colon, or an obsolete folded line
		}
	}
	return nil, nil, fmt.Errorf("%w: header line %q", errAnswerFraming, truncate(line))
}

// contentLength parses a Content-Length value.
func contentLength(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 18 {
		return 0, fmt.Errorf("%w: content length %q", errAnswerFraming, truncate(v))
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: content length %q", errAnswerFraming, truncate(v))
		}
		n = n*10 + int64(c-'0')
	}
	if n > answerBytesMax {
		return 0, fmt.Errorf("%w: answer of %d bytes, over %d", errAnswerFraming, n, answerBytesMax)
	}
	return n, nil
}

// readBody appends n bytes of body to *resp; past what the read buffer
// holds, they are read straight into *resp.
func (cn *ownConn) readBody(resp *[]byte, n int) error {
	b := *resp
	if len(b)+n > answerBytesMax {
		return fmt.Errorf("%w: answer over %d bytes", errAnswerFraming, answerBytesMax)
	}
	if cap(b)-len(b) < n {
		grown := make([]byte, len(b), len(b)+n)
		copy(grown, b)
		b = grown
	}
	at := len(b)
	b = b[:at+n]
	_, err := io.ReadFull(cn.br, b[at:])
	*resp = b
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readChunked appends a chunked body to *resp and reads its trailer.
func (cn *ownConn) readChunked(resp *[]byte) error {
	for {
		line, err := cn.line()
		if err != nil {
			return err
		}
		size, err := chunkSize(line)
		if err != nil {
			return err
		}
		if size == 0 {
			break
		}
		if err := cn.readBody(resp, size); err != nil {
			return err
		}
		if line, err := cn.line(); err != nil || len(line) != 0 {
			if err == nil {
				err = fmt.Errorf("%w: chunk not followed by CRLF", errAnswerFraming)
			}
			return err
		}
	}
	for { // the trailer's fields, up to the empty line
		line, err := cn.line()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
	}
}

// chunkSize parses a chunk's size line: hex digits, then any extension.
func chunkSize(line []byte) (int, error) {
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			d = 0xff
		}
		if d == 0xff {
			if c != ';' && c != ' ' && c != '\t' {
				return 0, fmt.Errorf("%w: chunk size %q", errAnswerFraming, truncate(line))
			}
			break
		}
		n = n<<4 | int64(d)
		if digits++; n > answerBytesMax {
			return 0, fmt.Errorf("%w: chunk over %d bytes", errAnswerFraming, answerBytesMax)
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("%w: chunk size %q", errAnswerFraming, truncate(line))
	}
	return int(n), nil
}

// readToEOF appends the rest of the connection's bytes to *resp.
func (cn *ownConn) readToEOF(resp *[]byte) error {
	b := *resp
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := cn.br.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if len(b) > answerBytesMax {
			*resp = b
			return fmt.Errorf("%w: answer over %d bytes", errAnswerFraming, answerBytesMax)
		}
		if err == io.EOF {
			*resp = b
			return nil
		}
		if err != nil {
			*resp = b
			return err
		}
	}
}

// asciiEqualFold reports whether b is s, ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x|0x20 != y|0x20 || (x|0x20) < 'a' || (x|0x20) > 'z' {
			if x != y {
				return false
			}
		}
	}
	return true
}

// truncate bounds a malformed line quoted in an error.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
