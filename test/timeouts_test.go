package test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// trickleMax bounds how long a slow client trickles before the test gives
// up on the server cutting it off: far longer than the timeouts the
// servers below are started with, so only a server without them fails.
const trickleMax = 60 * time.Second

func dialFest(t *testing.T, f *fest) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// trickle writes msg one byte a second until the server closes the
// connection (a write fails or a read sees the answer or the end) and
// returns what the server sent; it fails the test if all of msg was sent
// or trickleMax passed without the server acting.
func trickle(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	deadline := time.Now().Add(trickleMax)
	for i := 0; i < len(msg); i++ {
		select {
		case s := <-got:
			return s
		case <-time.After(time.Second):
		}
		if _, err := c.Write([]byte{msg[i]}); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds a client trickling one byte a second after %v", trickleMax)
		}
	}
	select {
	case s := <-got:
		return s
	case <-time.After(trickleMax):
		t.Fatalf("the server neither answered nor closed a slow client")
		return ""
	}
}

// TestSlowClientIsCutOff checks that a client sending one byte a second,
// in its headers or in its body, cannot hold a connection or a handler
// forever, and that the server keeps serving others meanwhile.
func TestSlowClientIsCutOff(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--read-header-timeout", "2s", "--read-timeout", "4s", "--write-timeout", "10s")
	f.seedCatalog(map[string]int{"s1": 10})

	t.Run("headers", func(t *testing.T) {
		c := dialFest(t, f)
		got := trickle(t, c, "POST /v1/orders HTTP/1.1\r\nHost: fest\r\nAuthorization: Bearer "+storefrontToken+"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
		if strings.Contains(got, " 201 ") {
			t.Fatalf("a trickled request was served: %q", got)
		}
	})
	t.Run("body", func(t *testing.T) {
		c := dialFest(t, f)
		body := `{"buyer_id":"slow","items":[{"sku_id":"s1","quantity":1}]}` + strings.Repeat(" ", 200)
		head := "POST /v1/orders HTTP/1.1\r\nHost: fest\r\nAuthorization: Bearer " + storefrontToken + "\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := c.Write([]byte(head)); err != nil {
			t.Fatal(err)
		}
		// Meanwhile others are served.
		f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "fast", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}})
		got := trickle(t, c, body)
		if strings.Contains(got, " 201 ") {
			t.Fatalf("a trickled body was served: %q", got)
		}
	})
	if s := f.sku("s1"); s.Reserved != 1 {
		t.Fatalf("stock after the slow clients: %+v", s)
	}
	f.must(200, "GET", "/readyz", "", nil)
}

// TestConnectionBound checks that a connection beyond --connections-max is
// answered 503 unavailable with Retry-After at once, and that a freed slot
// serves again.
func TestConnectionBound(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--connections-max", "3", "--read-header-timeout", "30s")
	// startFest's readiness check may have left a keep-alive connection in
	// the shared client: close it so the server holds only ours.
	httpClient.CloseIdleConnections()
	held := make([]net.Conn, 0, 3)
	for len(held) < 3 {
		c := dialFest(t, f)
		// A full request keeps the connection open and proves it counted.
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: fest\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("held connection %d: status %d", len(held), resp.StatusCode)
		}
		held = append(held, c)
	}
	c := dialFest(t, f)
	c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: fest\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a connection over the bound got no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"unavailable"`) {
		t.Fatalf("over the bound: status %d Retry-After %q body %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	held[0].Close()
	// The server frees the slot when it reads the close: retry a few times.
	var last error
	for i := 0; i < 100; i++ {
		r, err := f.call("GET", "/readyz", "", nil)
		if err == nil && r.Status == 200 {
			last = nil
			break
		}
		last = errors.New("not served yet")
		if err == nil {
			last = errors.New(string(r.Body))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("a freed slot does not serve: %v", last)
	}
	m := string(f.must(200, "GET", "/metrics", "", nil).Body)
	// At least the one turned away above; a retry of the loop may have
	// been turned away too before the server saw the close.
	if strings.Contains(m, "fest_http_connections_rejected_total 0\n") || !strings.Contains(m, "fest_http_connections_rejected_total ") || !strings.Contains(m, "fest_http_connections_max 3\n") {
		t.Fatalf("connection metrics:\n%s", grepLines(m, "fest_http_conn"))
	}
}
