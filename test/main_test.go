// Package test holds fest's black-box tests: they build the real binary
// once, run it on temporary directories and free ports, and talk to it
// over HTTP only.
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the fest binary built by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "fest")
	build := exec.Command("go", "build", "-o", binPath, "../cmd/fest")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build fest:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	adminToken      = "test-admin-token"
	storefrontToken = "test-storefront-token"
	carrierToken    = "test-carrier-token"
)

// fest is one running server process.
type fest struct {
	t    testing.TB
	URL  string
	Dir  string
	args []string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startFest runs fest serve on dir (a new temporary directory when empty)
// and waits until it is ready.
func startFest(t testing.TB, dir string, extra ...string) *fest {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f := &fest{t: t, Dir: dir, args: extra}
	f.start()
	t.Cleanup(func() { f.stop() })
	return f
}

func (f *fest) start() {
	f.t.Helper()
	urlCh := make(chan string, 1)
	f.spawn(append([]string{"serve", "--addr", "127.0.0.1:0", "--data", f.Dir,
		"--admin-token", adminToken, "--storefront-token", storefrontToken, "--carrier-token", carrierToken}, f.args...), urlCh)
	select {
	case f.URL = <-urlCh:
	case <-f.done:
		f.t.Fatalf("fest exited before listening:\n%s", f.out)
	case <-time.After(20 * time.Second):
		f.t.Fatalf("fest did not listen in time:\n%s", f.out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(f.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("fest not ready in time:\n%s", f.out)
		}
		select {
		case <-f.done:
			f.t.Fatalf("fest exited during recovery:\n%s", f.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// spawn starts fest with args and returns at once: its stdout and stderr go
// to f.out, the address it prints is sent on urlCh, and f.done is closed
// when it exits.
func (f *fest) spawn(args []string, urlCh chan<- string) {
	f.t.Helper()
	cmd := exec.Command(binPath, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	// The goroutines below use their own process's buffer and channel: a
	// restart replaces f.out and f.done while the old ones may still run.
	out, done := &syncBuffer{}, make(chan struct{})
	f.out = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("start fest: %v", err)
	}
	f.cmd = cmd
	f.done = done
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if _, rest, ok := strings.Cut(line, "listening on "); ok {
				urlCh <- strings.Fields(rest)[0]
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(done) }()
}

// stop sends SIGTERM and waits for a clean exit.
func (f *fest) stop() {
	if f.cmd == nil {
		return
	}
	select {
	case <-f.done:
	default:
		f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.done:
		case <-time.After(30 * time.Second):
			f.cmd.Process.Kill()
			<-f.done
			f.t.Errorf("fest did not stop on SIGTERM:\n%s", f.out)
		}
	}
	f.cmd = nil
}

// kill sends SIGKILL: no shutdown of any kind.
func (f *fest) kill() {
	f.cmd.Process.Kill()
	<-f.done
	f.cmd = nil
}

// restart starts the server again on the same directory.
func (f *fest) restart() { f.start() }

// httpClient is shared so tests reuse keep-alive connections.
var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 512},
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// errCode returns error.code, or "".
func (r response) errCode() string {
	var m struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(r.Body, &m)
	return m.Error.Code
}

func (r response) errField() string {
	var m struct {
		Error struct{ Field string } `json:"error"`
	}
	json.Unmarshal(r.Body, &m)
	return m.Error.Field
}

// call sends a request with a token ("" for none) and a body (string,
// []byte or a value to encode as JSON).
func (f *fest) call(method, path, token string, body any, hdr ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, f.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// must is call that fails the test on a transport error or another status.
func (f *fest) must(status int, method, path, token string, body any, hdr ...string) response {
	f.t.Helper()
	r, err := f.call(method, path, token, body, hdr...)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != status {
		f.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, status, r.Body)
	}
	return r
}

// expectErr checks an error answer's status, code and (if not "") field.
func (f *fest) expectErr(status int, code, field, method, path, token string, body any, hdr ...string) response {
	f.t.Helper()
	r := f.must(status, method, path, token, body, hdr...)
	if got := r.errCode(); got != code {
		f.t.Fatalf("%s %s: code %q, want %q: %s", method, path, got, code, r.Body)
	}
	if field != "" && r.errField() != field {
		f.t.Fatalf("%s %s: field %q, want %q: %s", method, path, r.errField(), field, r.Body)
	}
	return r
}

// seedCatalog creates brand b1, merchants m1 and m2 and the given SKUs of
// m1 (id → stock) at price 1000 fen.
func (f *fest) seedCatalog(skus map[string]int) {
	f.t.Helper()
	f.must(200, "PUT", "/v1/brands/b1", adminToken, map[string]any{"name": "Brand One", "country": "US", "first_festival": 2015, "emerging": false, "last_year_gmv": 0})
	f.must(200, "PUT", "/v1/merchants/m1", adminToken, map[string]any{"name": "Shop One", "brand_id": "b1", "kind": "brand_store", "industry": "apparel", "region": "CN-ZJ"})
	f.must(200, "PUT", "/v1/merchants/m2", adminToken, map[string]any{"name": "Shop Two", "brand_id": "b1", "kind": "factory", "industry": "toys", "region": "CN-GD"})
	for id, stock := range skus {
		f.must(200, "PUT", "/v1/skus/"+id, adminToken, map[string]any{"merchant_id": "m1", "brand_id": "b1", "title": "Item " + id, "category": "apparel", "price": 1000, "stock": stock})
	}
}

// order is the subset of an order answer the tests compare.
type order struct {
	OrderID    string `json:"order_id"`
	Status     string `json:"status"`
	BuyerID    string `json:"buyer_id"`
	MerchantID string `json:"merchant_id"`
	Items      []struct {
		SKUID     string `json:"sku_id"`
		Quantity  int    `json:"quantity"`
		UnitPrice int64  `json:"unit_price"`
		Amount    int64  `json:"amount"`
	} `json:"items"`
	Total     int64  `json:"total"`
	Currency  string `json:"currency"`
	Channel   string `json:"channel"`
	Region    string `json:"region"`
	CreatedAt string `json:"created_at"`
	PayBy     string `json:"pay_by"`
	PaidAt    string `json:"paid_at"`
}

func decodeOrder(t testing.TB, b []byte) order {
	t.Helper()
	var o order
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("decode order: %v: %s", err, b)
	}
	return o
}

type skuView struct {
	Available int64 `json:"stock_available"`
	Reserved  int64 `json:"stock_reserved"`
	Sold      int64 `json:"sold"`
}

func (f *fest) sku(id string) skuView {
	f.t.Helper()
	r := f.must(200, "GET", "/v1/skus/"+id, adminToken, nil)
	var s skuView
	if err := json.Unmarshal(r.Body, &s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// startFestNoTokens runs fest serve without token flags, so they are
// generated into (or read from) dir.
func startFestNoTokens(t testing.TB, dir string) *fest {
	t.Helper()
	f := &fest{t: t, Dir: dir}
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", dir}
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "FEST_ADMIN_TOKEN=", "FEST_STOREFRONT_TOKEN=", "FEST_CARRIER_TOKEN=")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	f.cmd, f.out, f.done = cmd, out, done
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(f.stop)
	deadline := time.Now().Add(20 * time.Second)
	for f.URL == "" {
		if _, rest, ok := strings.Cut(out.String(), "listening on "); ok {
			f.URL = strings.Fields(rest)[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listening line:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		resp, err := http.Get(f.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readToken(t testing.TB, dir, role string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "tokens", role+".token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
