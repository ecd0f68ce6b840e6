package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/vfs"
)

// fastFixture is an engine with SKU s1 (stock 1,000) of merchant m behind two
// servers on loopback listeners: one with the fast path, one NetHTTPOnly.
type fastFixture struct {
	fast, plain string // addresses
	fastSrv     *Server
	fastHTTP    *http.Server
}

func newFastFixture(t *testing.T) *fastFixture {
	t.Helper()
	eng := openTestEngine(t, 2)
	f := &fastFixture{}
	for _, plain := range []bool{false, true} {
		s, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c", NetHTTPOnly: plain})
		if err != nil {
			t.Fatal(err)
		}
		if plain != (s.fast == nil) {
			t.Fatalf("NetHTTPOnly %v: fast path %v", plain, s.fast != nil)
		}
		s.Attach(eng, nil, nil)
		t.Cleanup(s.Detach)
		addr, hs := serveLoopback(t, s)
		if plain {
			f.plain = addr
		} else {
			f.fast, f.fastSrv, f.fastHTTP = addr, s, hs
		}
	}
	c := f.dial(t, f.plain)
	defer c.Close()
	catalog := `{"type":"brand","id":"b","name":"B","country":"CN"}
{"type":"merchant","id":"m","name":"M","brand_id":"b","kind":"trader"}
{"type":"sku","id":"s1","merchant_id":"m","brand_id":"b","title":"T","price":100,"stock":1000}
`
	for i := range manyItems {
		catalog += `{"type":"sku","id":"k` + strconv.Itoa(i) + `","merchant_id":"m","brand_id":"b","title":"T","price":100,"stock":1000}` + "\n"
	}
	if r := roundTrip(t, c, "POST /v1/catalog:import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nContent-Length: "+strconv.Itoa(len(catalog))+"\r\n\r\n"+catalog); r.status != 200 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	return f
}

func (f *fastFixture) dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

type answer struct {
	status int
	header http.Header
	body   string
}

// readAnswer reads one response from r.
func readAnswer(t *testing.T, r *bufio.Reader) answer {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func roundTrip(t *testing.T, c net.Conn, raw string) answer {
	t.Helper()
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	return readAnswer(t, bufio.NewReader(c))
}

func orderRequest(auth, body string, extra ...string) string {
	h := "POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
	if auth != "" {
		h += "Authorization: Bearer " + auth + "\r\n"
	}
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// volatile are the parts of an order answer that differ between two
// placements: its id and times.
var volatile = regexp.MustCompile(`"(order_id|created_at|pay_by)":"[^"]*"`)

// TestFastPathAnswersAsNetHTTP sends the same single-order requests to the
// fast path and to net/http: status, headers (but Date and the length) and body agree,
// successes, refusals and rejected headers alike.
func TestFastPathAnswersAsNetHTTP(t *testing.T) {
	f := newFastFixture(t)
	good := `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}]}`
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"placed", orderRequest("s", good), 201},
		{"no token", orderRequest("", good), 401},
		{"wrong role", orderRequest("c", good), 403},
		{"bad json", orderRequest("s", `{"buyer_id":`), 400},
		{"unknown field", orderRequest("s", `{"buyer_id":"u1","x":1,"items":[{"sku_id":"s1","quantity":1}]}`), 422},
		{"unknown sku", orderRequest("s", `{"buyer_id":"u1","items":[{"sku_id":"nope","quantity":1}]}`), 404},
		{"out of stock", orderRequest("s", `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":999}]}`), 409},
		{"bad rehearsal header", orderRequest("s", good, HeaderRehearsalTime+": soon"), 422},
		{"empty body", orderRequest("s", ""), 400},
		// Handed to net/http, which answers them itself.
		{"no host", strings.Replace(orderRequest("s", good), "Host: 127.0.0.1\r\n", "", 1), 400},
		{"two hosts", strings.Replace(orderRequest("s", good), "Host: 127.0.0.1\r\n", "Host: a\r\nHost: b\r\n", 1), 400},
		{"bad header name", orderRequest("s", good, "Bad Name: x"), 400},
		{"chunked", "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(good)), 16) + "\r\n" + good + "\r\n0\r\n\r\n", 201},
		{"with query", strings.Replace(orderRequest("s", good), "/v1/orders ", "/v1/orders?x=1 ", 1), 201},
		// An answer past net/http's 2 KiB buffer, which it would frame
		// chunked without the length writeJSON gives it.
		{"many items", orderRequest("s", manyItemsOrder()), 201},
	} {
		var got [2]answer
		for i, addr := range []string{f.fast, f.plain} {
			c := f.dial(t, addr)
			got[i] = roundTrip(t, c, tc.raw)
			c.Close()
		}
		fast, plain := got[0], got[1]
		if fast.status != tc.status || plain.status != tc.status {
			t.Errorf("%s: status fast %d, net/http %d, want %d (%s)", tc.name, fast.status, plain.status, tc.status, fast.body)
			continue
		}
		if a, b := volatile.ReplaceAllString(fast.body, "_"), volatile.ReplaceAllString(plain.body, "_"); a != b {
			t.Errorf("%s: body fast %s\nnet/http %s", tc.name, a, b)
		}
		if (fast.header.Get("Content-Length") == "") != (plain.header.Get("Content-Length") == "") {
			t.Errorf("%s: Content-Length fast %q, net/http %q (framed otherwise)", tc.name, fast.header.Get("Content-Length"), plain.header.Get("Content-Length"))
		}
		if n := fast.header.Get("Content-Length"); plain.header.Get("Content-Length") != "" && n != strconv.Itoa(len(fast.body)) {
			t.Errorf("%s: fast Content-Length %q for %d bytes", tc.name, n, len(fast.body))
		}
		// An order's id and times vary in length from one to the next.
		for _, h := range []http.Header{fast.header, plain.header} {
			h.Del("Date")
			h.Del("Content-Length")
		}
		if a, b := headerText(fast.header), headerText(plain.header); a != b {
			t.Errorf("%s: headers fast %q, net/http %q", tc.name, a, b)
		}
	}
}

// serveLoopback serves s on a loopback port until the test ends and
// returns its address.
func serveLoopback(tb testing.TB, s *Server) (string, *http.Server) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := s.HTTPServer(nil)
	go hs.Serve(s.LimitListener(ln))
	tb.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), hs
}

// manyItems is the number of lines of manyItemsOrder, whose answer is
// over 2 KiB.
const manyItems = 45

func manyItemsOrder() string {
	var b strings.Builder
	b.WriteString(`{"buyer_id":"u9","items":[`)
	for i := range manyItems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"sku_id":"k` + strconv.Itoa(i) + `","quantity":1}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

func headerText(h http.Header) string {
	var b strings.Builder
	h.Write(&b)
	return b.String()
}

// TestFastPathHandsOver runs one connection through fast requests, a
// pipelined pair, a request of another route (which hands the connection
// to net/http) and fast-shaped requests after it: every one is answered,
// in order, and the Date header is there.
func TestFastPathHandsOver(t *testing.T) {
	f := newFastFixture(t)
	c := f.dial(t, f.fast)
	defer c.Close()
	r := bufio.NewReader(c)
	order := orderRequest("s", `{"buyer_id":"u2","items":[{"sku_id":"s1","quantity":1}]}`)
	write := func(s string) {
		t.Helper()
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(step string, status int) {
		t.Helper()
		a := readAnswer(t, r)
		if a.status != status || a.header.Get("Date") == "" || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %v %s", step, a.status, a.header, a.body)
		}
	}
	write(order)
	expect("first order", 201)
	write(order + order)
	expect("pipelined first", 201)
	expect("pipelined second", 201)
	// Half a request, then the rest: net/http waits for it.
	write(order[:20])
	time.Sleep(20 * time.Millisecond)
	write(order[20:])
	expect("split order", 201)
	write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	expect("healthz", 200)
	write(orderRequest("s", `{"buyer_id":"u2","items":[{"sku_id":"s1","quantity":999}]}`))
	expect("order after the handover", 409)
}

// TestFastPathDetach checks that a fast connection open across Detach is
// answered by net/http, 503 unavailable, rather than reaching a closed
// gateway.
func TestFastPathDetach(t *testing.T) {
	f := newFastFixture(t)
	c := f.dial(t, f.fast)
	defer c.Close()
	r := bufio.NewReader(c)
	order := orderRequest("s", `{"buyer_id":"u3","items":[{"sku_id":"s1","quantity":1}]}`)
	c.Write([]byte(order))
	if a := readAnswer(t, r); a.status != 201 {
		t.Fatalf("before Detach: %d %s", a.status, a.body)
	}
	f.fastSrv.Detach()
	c.Write([]byte(order))
	if a := readAnswer(t, r); a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("after Detach: %d %v %s", a.status, a.header, a.body)
	}
}

// TestFastPathQuiesceBounded checks that Detach's wait for the fast
// path's requests ends after ShutdownTimeout with one still running, and
// that without the timeout it ends with the last request.
func TestFastPathQuiesceBounded(t *testing.T) {
	f := &fastPath{shutdown: time.Millisecond}
	f.active.Add(1)
	if f.quiesce(context.Background()) {
		t.Fatal("quiesce with a request running: true before the timeout, want false")
	}
	// A shutdown's context bounds the wait instead of ShutdownTimeout, so
	// that the HTTP server's Shutdown and this wait share one timeout.
	f.shutdown = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	start := time.Now()
	if f.quiesce(ctx) {
		t.Fatal("quiesce with a request running: true before the context's end, want false")
	}
	if waited := time.Since(start); waited > time.Minute {
		t.Fatalf("quiesce waited %v with a context of 1 ms", waited)
	}
	f.active.Done()
	f.shutdown = 0
	if !f.quiesce(context.Background()) {
		t.Fatal("quiesce with no request running: false, want true")
	}
}

// TestFastPathShutdown checks that Shutdown closes a fast connection
// waiting for its next request, as net/http closes its idle ones, and
// returns.
func TestFastPathShutdown(t *testing.T) {
	f := newFastFixture(t)
	c := f.dial(t, f.fast)
	defer c.Close()
	r := bufio.NewReader(c)
	c.Write([]byte(orderRequest("s", `{"buyer_id":"u4","items":[{"sku_id":"s1","quantity":1}]}`)))
	if a := readAnswer(t, r); a.status != 201 {
		t.Fatalf("order: %d %s", a.status, a.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.fastHTTP.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("idle fast connection after Shutdown: read %v, want EOF", err)
	}
}

// BenchmarkSingleOrderLoopback is single JSON POST /v1/orders over
// loopback TCP from 64 keep-alive connections, through the fast path and
// through net/http alone (the engine's fsync skipped; client and server
// share the process, so allocs/op counts both, the client's being the
// same for the two).
func BenchmarkSingleOrderLoopback(b *testing.B) {
	for _, plain := range []bool{false, true} {
		name := "fast"
		if plain {
			name = "nethttp"
		}
		b.Run(name, func(b *testing.B) {
			eng, err := engine.Open(engine.Config{Dir: b.TempDir(), Partitions: 8, JournalFsync: func(vfs.File) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			s, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c", NetHTTPOnly: plain})
			if err != nil {
				b.Fatal(err)
			}
			s.Attach(eng, nil, nil)
			defer s.Detach()
			seedBenchSKU(b, eng)
			addr, _ := serveLoopback(b, s)
			raw := []byte(orderRequest("s", `{"buyer_id":"u1","items":[{"sku_id":"s","quantity":1}],"channel":"app"}`))
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				for pb.Next() {
					if _, err := c.Write(raw); err != nil {
						b.Error(err)
						return
					}
					if err := skipAnswer(r, http.StatusCreated); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user and system CPU time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// skipAnswer reads one response with a Content-Length from r, and fails
// unless its status is want.
func skipAnswer(r *bufio.Reader, want int) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 "+strconv.Itoa(want))) {
		return fmt.Errorf("answer %q", line)
	}
	length := -1
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length < 0 {
		return errors.New("answer without Content-Length")
	}
	_, err = r.Discard(length)
	return err
}

// FuzzFastParse checks the fast path's request parser against net/http's:
// whatever bytes arrive, a request the fast path accepts is one that
// http.ReadRequest reads the same (method, path, host, headers, body), so
// the fast path never serves a request net/http would refuse or read
// otherwise.
func FuzzFastParse(f *testing.F) {
	body := `{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":1}]}`
	for _, seed := range []string{
		orderRequest("s", body),
		orderRequest("s", body, "Idempotency-Key: k1", "X-Extra:  spaced value \t"),
		orderRequest("s", body) + orderRequest("s", body),
		"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
		"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 02\r\nconnection: KEEP-ALIVE\r\n\r\n{}",
		"POST /v1/orders HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
		"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n folded\r\n\r\n{}",
		"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nA:\r\n\r\n{}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fc := &fastConn{c: &limitConn{Conn: fakeAddrConn{}}}
		used, ok := fc.parse(raw)
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw[:used])))
		if err != nil {
			t.Fatalf("fast path accepts %q, net/http refuses it: %v", raw[:used], err)
		}
		got := fc.req
		if want.Method != got.Method || want.URL.Path != got.URL.Path || want.URL.RawQuery != "" || want.Host != got.Host ||
			want.ContentLength != got.ContentLength || want.Close {
			t.Fatalf("%q: net/http reads %s %s host %q length %d close %v; fast %s %s host %q length %d",
				raw[:used], want.Method, want.URL, want.Host, want.ContentLength, want.Close, got.Method, got.URL, got.Host, got.ContentLength)
		}
		// The server removes Host from the map (Request.Host has it).
		want.Header.Del("Host")
		if a, b := headerText(want.Header), headerText(got.Header); a != b {
			t.Fatalf("%q: headers net/http %q, fast %q", raw[:used], a, b)
		}
		wb, _ := io.ReadAll(want.Body)
		gb, _ := io.ReadAll(got.Body)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("%q: body net/http %q, fast %q", raw[:used], wb, gb)
		}
	})
}

// fakeAddrConn is a connection with an address and nothing else, for the
// parser's request.
type fakeAddrConn struct{ net.Conn }

func (fakeAddrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// TestFastPathFirstRequestTimeout: a new connection that sends nothing is
// closed after the read-header timeout, as net/http closes it, not after
// the idle timeout, which runs only between requests.
func TestFastPathFirstRequestTimeout(t *testing.T) {
	s, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c",
		ReadHeaderTimeout: 100 * time.Millisecond, IdleTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if s.fast == nil {
		t.Fatal("no fast path")
	}
	addr, _ := serveLoopback(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Far longer than the read-header timeout, far shorter than the idle one.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silent new connection: read %v, want it closed by the server", err)
	}
}
