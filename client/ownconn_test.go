package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/wire"
)

// newOwnClient is a client whose batch calls go over its own connections.
func newOwnClient(t *testing.T, addr string, timeout time.Duration) *Client {
	t.Helper()
	c, err := New(Config{Addr: addr, Token: "t", Conns: 1, OwnConns: true, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c.own == nil {
		t.Fatalf("client for %s has no own connections", addr)
	}
	return c
}

// TestOwnConnsBatchCalls: over the client's own connections the batch
// calls give what they give over net/http (TestPlaceBatch, TestSettleBatch,
// the same server), refusals and errors included, and reuse one
// connection.
func TestOwnConnsBatchCalls(t *testing.T) {
	s := httptest.NewUnstartedServer(batchMux(t))
	var conns atomic.Int64
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	c := newOwnClient(t, s.URL, 5*time.Second)
	var b OrderBatch
	placeBatches(t, c, &b, 3)
	var sb SettleBatch
	sb.Pay("a", 100)
	sb.Cancel("b")
	sb.Pay("gone", 5)
	if err := c.SettleBatch(context.Background(), &sb); err != nil {
		t.Fatal(err)
	}
	if r := sb.Results; len(r) != 3 || r[0].Status != "paid" || r[0].Total != 100 || r[0].ChangedAt.IsZero() || r[1].Status != "cancelled" ||
		r[2].Err == nil || r[2].Err.Status != 404 || r[2].OrderID != "gone" {
		t.Fatalf("settle results %+v", r)
	}
	if got, err := c.SettlePay(context.Background(), "x", 7); err != nil || got.Status != "paid" || got.OrderID != "x" {
		t.Fatalf("SettlePay: %+v %v", got, err)
	}
	if o, err := c.PlaceOrder(context.Background(), OrderRequest{BuyerID: "u1", Items: []Item{{SKUID: "s1", Quantity: 1}, {SKUID: "s2", Quantity: 3}}}); err != nil || o.ID != "o0" {
		t.Fatalf("PlaceOrder: %+v %v", o, err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for requests one after another, want 1", n)
	}

	busy := newOwnClient(t, s.URL+"/overloaded", 5*time.Second)
	err := busy.PlaceBatch(context.Background(), &b)
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != "overloaded" || ae.Status != 429 || ae.RetryAfter != 2*time.Second {
		t.Errorf("overloaded server: %v, want 429 overloaded with Retry-After 2s", err)
	}
	garbage := newOwnClient(t, s.URL+"/garbage", 5*time.Second)
	if err := garbage.PlaceBatch(context.Background(), &b); !errors.Is(err, ErrBadAnswer) {
		t.Errorf("garbage answer: %v, want ErrBadAnswer", err)
	}
}

// rawServer answers each connection with script, given the connection's
// number (from 0) and the request read from it (the head, then the body by
// its Content-Length). It records every request's body.
type rawServer struct {
	ln     net.Listener
	script func(conn int, req *http.Request, body []byte, w *bufio.Writer) (closeAfter bool)
	mu     sync.Mutex
	bodies []string
	conns  int
}

func newRawServer(t *testing.T, script func(conn int, req *http.Request, body []byte, w *bufio.Writer) bool) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, script: script}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			n := s.conns
			s.conns++
			s.mu.Unlock()
			go s.serve(n, c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *rawServer) serve(n int, c net.Conn) {
	defer c.Close()
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, string(body))
		s.mu.Unlock()
		closeAfter := s.script(n, req, body, bw)
		bw.Flush()
		if closeAfter {
			return
		}
	}
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *rawServer) counts() (requests, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies), s.conns
}

// settleAnswer is the protobuf answer of one successful payment of "a".
func settleAnswer() []byte {
	return wire.AppendSettleResult(nil, &wire.SettleResult{OrderID: "a", Status: "paid", Total: 100, ChangedAtUnixNanos: 1})
}

func payA(c *Client) error {
	var b SettleBatch
	b.Pay("a", 100)
	if err := c.SettleBatch(context.Background(), &b); err != nil {
		return err
	}
	if len(b.Results) != 1 || b.Results[0].Status != "paid" || b.Results[0].Err != nil {
		return fmt.Errorf("results %+v", b.Results)
	}
	return nil
}

// TestOwnConnsFraming: answers framed by Content-Length, chunked (chunks
// of any size, extensions, a trailer), after an interim 100, and unframed
// (to the end of the connection) all read whole; the request carries its
// head as the contract says.
func TestOwnConnsFraming(t *testing.T) {
	answer := settleAnswer()
	frames := []func(w *bufio.Writer) bool{
		func(w *bufio.Writer) bool {
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
			return false
		},
		func(w *bufio.Writer) bool {
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n%x;ext=1\r\n%s\r\n%X\r\n%s\r\n0\r\nTrailer: x\r\n\r\n", 2, answer[:2], len(answer)-2, answer[2:])
			return false
		},
		func(w *bufio.Writer) bool {
			fmt.Fprintf(w, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length:  %d \r\n\r\n%s", len(answer), answer)
			return false
		},
		func(w *bufio.Writer) bool {
			fmt.Fprintf(w, "HTTP/1.0 200 OK\r\n\r\n%s", answer)
			return true
		},
		func(w *bufio.Writer) bool {
			fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
			return true
		},
	}
	var heads []string
	var mu sync.Mutex
	s := newRawServer(t, func(conn int, req *http.Request, body []byte, w *bufio.Writer) bool {
		mu.Lock()
		heads = append(heads, fmt.Sprintf("%s %s host=%s ct=%s accept=%s auth=%s len=%d", req.Method, req.URL.Path, req.Host,
			req.Header.Get("Content-Type"), req.Header.Get("Accept"), req.Header.Get("Authorization"), req.ContentLength))
		k := len(heads) - 1
		mu.Unlock()
		return frames[k%len(frames)](w)
	})
	c := newOwnClient(t, s.url()+"/prefix", 5*time.Second)
	for k := range 2 * len(frames) {
		if err := payA(c); err != nil {
			t.Fatalf("answer %d: %v", k, err)
		}
	}
	want := fmt.Sprintf("POST /prefix/v1/orders:settle host=%s ct=application/x-protobuf accept=application/x-protobuf auth=Bearer t len=", s.ln.Addr())
	for _, h := range heads {
		if !strings.HasPrefix(h, want) {
			t.Fatalf("request head %q, want %q...", h, want)
		}
	}
	// Answers 3 (unframed) and 4 (Connection: close) of each round of five
	// end their connection: answers 0 to 3 share one, 4 has its own.
	if _, conns := s.counts(); conns != 4 {
		t.Errorf("%d connections, want 4 (an unframed or Connection: close answer ends its connection)", conns)
	}
}

// TestOwnConnsServerClosesIdle: a connection the server closed while it
// was idle is not written to; the next request dials a new one and is
// sent once.
func TestOwnConnsServerClosesIdle(t *testing.T) {
	answer := settleAnswer()
	s := newRawServer(t, func(conn int, req *http.Request, body []byte, w *bufio.Writer) bool {
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
		return true // closes without saying so
	})
	c := newOwnClient(t, s.url(), 5*time.Second)
	for k := range 5 {
		if err := payA(c); err != nil {
			t.Fatalf("request %d: %v", k, err)
		}
		time.Sleep(10 * time.Millisecond) // the close arrives
	}
	if requests, conns := s.counts(); requests != 5 || conns != 5 {
		t.Errorf("%d requests over %d connections, want 5 over 5", requests, conns)
	}
}

// TestOwnConnsNoAnswer: a request the server reads and then drops without
// an answer fails as a transport error and is not sent again (it may have
// been applied); the next request goes over a new connection.
func TestOwnConnsNoAnswer(t *testing.T) {
	answer := settleAnswer()
	s := newRawServer(t, func(conn int, req *http.Request, body []byte, w *bufio.Writer) bool {
		if conn == 0 {
			return true
		}
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
		return false
	})
	c := newOwnClient(t, s.url(), 5*time.Second)
	err := payA(c)
	var ae *Error
	if err == nil || errors.As(err, &ae) || errors.Is(err, ErrBadAnswer) {
		t.Fatalf("dropped request: %v, want a transport error", err)
	}
	if requests, _ := s.counts(); requests != 1 {
		t.Fatalf("the dropped request reached the server %d times, want once", requests)
	}
	if err := payA(c); err != nil {
		t.Fatalf("request after the drop: %v", err)
	}
	if requests, conns := s.counts(); requests != 2 || conns != 2 {
		t.Errorf("%d requests over %d connections, want 2 over 2", requests, conns)
	}
}

// TestOwnConnsMalformed: an answer the client cannot frame fails as a
// transport error, and its connection is not used again.
func TestOwnConnsMalformed(t *testing.T) {
	answer := settleAnswer()
	bad := []string{
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	}
	s := newRawServer(t, func(conn int, req *http.Request, body []byte, w *bufio.Writer) bool {
		if conn < len(bad) {
			w.WriteString(bad[conn])
			return conn == len(bad)-1
		}
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
		return false
	})
	c := newOwnClient(t, s.url(), 5*time.Second)
	for k, b := range bad {
		err := payA(c)
		var ae *Error
		if err == nil || errors.As(err, &ae) {
			t.Errorf("answer %q: %v, want a transport error", b, err)
		}
		if _, conns := s.counts(); conns != k+1 {
			t.Fatalf("after malformed answer %d: %d connections, want %d (a new one each)", k, conns, k+1)
		}
	}
	if err := payA(c); err != nil {
		t.Fatalf("request after the malformed answers: %v", err)
	}
}

// TestOwnConnsTimeoutAndCancel: a server that does not answer fails the
// request after Config.Timeout, and a cancelled context ends it at once,
// its error wrapping the context's.
func TestOwnConnsTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	s := newRawServer(t, func(conn int, req *http.Request, body []byte, w *bufio.Writer) bool {
		<-release
		return true
	})
	defer close(release)
	c := newOwnClient(t, s.url(), 200*time.Millisecond)
	start := time.Now()
	err := payA(c)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("unanswered request: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout of 200ms took %v", d)
	}
	long := newOwnClient(t, s.url(), time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	var b SettleBatch
	b.Pay("a", 1)
	if err := long.SettleBatch(ctx, &b); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v, want context.Canceled", err)
	}
	if requests, _ := s.counts(); requests != 2 {
		t.Errorf("%d requests reached the server, want 2", requests)
	}
}

// TestOwnConnsHTTPSUsesNetHTTP: an https server is not dialled by the
// client's own connections: its batches go through net/http.
func TestOwnConnsHTTPSUsesNetHTTP(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(settleAnswer())
	}))
	defer s.Close()
	c, err := New(Config{Addr: s.URL, Token: "t", OwnConns: true, HTTPClient: s.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.own != nil {
		t.Fatal("own connections to an https server")
	}
	if err := payA(c); err != nil {
		t.Fatal(err)
	}
}

// TestOwnConnsConcurrent: requests from many goroutines at once each get
// their own answer, and the idle connections kept stay within
// IdleConnsMax.
func TestOwnConnsConcurrent(t *testing.T) {
	s := newRawServer(t, func(conn int, req *http.Request, body []byte, w *bufio.Writer) bool {
		acts, err := wire.DecodeSettleRequest(body, nil, wire.BatchOrdersMax)
		if err != nil || len(acts) != 1 {
			w.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return false
		}
		a := wire.AppendSettleResult(nil, &wire.SettleResult{OrderID: acts[0].OrderID, Status: "paid", Total: acts[0].Amount})
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(a), a)
		return false
	})
	c, err := New(Config{Addr: s.url(), Token: "t", OwnConns: true, IdleConnsMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			var b SettleBatch
			for k := range 50 {
				id := "o" + strconv.Itoa(g*1000+k)
				b.Reset()
				b.Pay(id, int64(k))
				if err := c.SettleBatch(context.Background(), &b); err != nil {
					t.Error(err)
					return
				}
				if r := b.Results; len(r) != 1 || r[0].OrderID != id || r[0].Total != int64(k) {
					t.Errorf("%s: results %+v", id, r)
					return
				}
			}
		})
	}
	wg.Wait()
	c.own.mu.Lock()
	idle := len(c.own.mu.idle)
	c.own.mu.Unlock()
	if idle > 3 {
		t.Errorf("%d idle connections kept, want at most 3", idle)
	}
}
