package server

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestLimitListener checks the connection bound: connections up to it are
// served, one more is answered 503 with Retry-After and closed, and a
// closed connection frees its slot.
func TestLimitListener(t *testing.T) {
	s, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c", ConnectionsMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer(nil)
	go srv.Serve(s.LimitListener(ln))
	defer srv.Close()
	get := func(c net.Conn) *http.Response {
		t.Helper()
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	defer b.Close()
	for _, c := range []net.Conn{a, b} {
		if r := get(c); r.StatusCode != 200 {
			t.Fatalf("within the bound: %d", r.StatusCode)
		}
	}
	over := dial()
	r := get(over)
	over.Close()
	if r.StatusCode != 503 || r.Header.Get("Retry-After") != "1" || !r.Close {
		t.Fatalf("over the bound: %d Retry-After %q close %v", r.StatusCode, r.Header.Get("Retry-After"), r.Close)
	}
	a.Close()
	// The slot frees once the server reads the close; until then a new
	// connection may still be turned away.
	for i := 0; ; i++ {
		c := dial()
		r := get(c)
		c.Close()
		if r.StatusCode == 200 {
			break
		}
		if i == 1000 {
			t.Fatalf("a freed slot is never reused: %d", r.StatusCode)
		}
	}
	if got := s.conns.rejected; got == nil {
		t.Fatal("no rejected counter")
	}
	if !strings.Contains(string(s.busyAnswer()), "\r\n\r\n{\"error\":{\"code\":\"unavailable\"") {
		t.Fatalf("busy answer: %q", s.busyAnswer())
	}
}
