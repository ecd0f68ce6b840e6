// Package main is loadtool, which measures the fest HTTP API from a separate process:
// single JSON orders over N keep-alive connections (-mode json), or the Go
// client's automatic batching (-mode client). It prints orders/s, latency
// percentiles and its own CPU time per order. The server must have SKUs
// sku-0..sku-(skus-1) (-admin-token creates them first).
//
// In json mode the requests are written and the responses parsed by hand
// over raw TCP connections (-http raw, the default): net/http's client
// costs more CPU per request than the server's whole order path, and on a
// shared machine the load tool's CPU is taken from the server. -http std
// uses net/http for comparison.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fest-platform/fest/client"
)

func main() {
	addr := flag.String("addr", "http://127.0.0.1:8080", "server")
	token := flag.String("token", "", "storefront token")
	adminToken := flag.String("admin-token", "", "admin token: when set, the catalog is created first")
	mode := flag.String("mode", "json", "json or client")
	httpImpl := flag.String("http", "raw", "json mode: raw (hand-written HTTP/1.1) or std (net/http)")
	conns := flag.Int("c", 64, "json: connections; client: concurrent PlaceOrder goroutines")
	clientConns := flag.Int("client-conns", 0, "client: batch requests in flight (0: the client's default)")
	batchMax := flag.Int("batch-max", 8192, "client: most orders per batch request")
	dur := flag.Duration("d", 10*time.Second, "duration")
	skus := flag.Int("skus", 1000, "SKUs")
	cpuProfile := flag.String("cpuprofile", "", "write the load tool's CPU profile here")
	flag.Parse()
	if *adminToken != "" {
		if err := seed(*addr, *adminToken, *skus); err != nil {
			fmt.Fprintln(os.Stderr, "seed:", err)
			os.Exit(1)
		}
	}
	// Names are built once so that the measuring loop allocates little.
	skuNames := make([]string, *skus)
	for i := range skuNames {
		skuNames[i] = "sku-" + strconv.Itoa(i)
	}
	const buyersN = 1 << 16
	buyerNames := make([]string, buyersN)
	for i := range buyerNames {
		buyerNames[i] = "buyer-" + strconv.Itoa(i*15+7)
	}

	var errN atomic.Int64
	var firstErr atomic.Value
	noteErr := func(err error) {
		errN.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	lat := make([][]time.Duration, *conns)
	var c *client.Client
	var hc *http.Client
	switch {
	case *mode == "client":
		var err error
		c, err = client.New(client.Config{Addr: *addr, Token: *token, Conns: *clientConns, BatchMax: *batchMax})
		if err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
	case *mode == "json" && *httpImpl == "std":
		hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}}
	case *mode == "json" && *httpImpl == "raw":
	default:
		fmt.Fprintln(os.Stderr, "unknown -mode or -http")
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	start := time.Now()
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 1))
			l := make([]time.Duration, 0, 1024)
			defer func() { lat[i] = l }()
			var rc *rawConn
			if *mode == "json" && hc == nil {
				var err error
				if rc, err = dialRaw(*addr, *token); err != nil {
					noteErr(err)
					return
				}
				defer rc.close()
			}
			var body []byte
			items := make([]client.Item, 1)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				sku := skuNames[r.IntN(len(skuNames))]
				buyer := buyerNames[r.IntN(buyersN)]
				var err error
				switch {
				case c != nil:
					items[0] = client.Item{SKUID: sku, Quantity: 1}
					_, err = c.PlaceOrder(context.Background(), client.OrderRequest{BuyerID: buyer, Items: items})
				case rc != nil:
					body = appendOrderBody(body[:0], buyer, sku)
					err = rc.post(body)
				default:
					body = appendOrderBody(body[:0], buyer, sku)
					err = stdPost(hc, *addr, *token, body)
				}
				if err != nil {
					noteErr(err)
					if rc != nil && rc.broken {
						return
					}
					continue
				}
				// Successes are counted by their latencies: no shared
				// counter for thousands of goroutines to contend on.
				l = append(l, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(float64(len(all))*p))]
	}
	n := int64(len(all))
	perOrder := time.Duration(0)
	if n > 0 {
		perOrder = cpu / time.Duration(n)
	}
	fmt.Printf("mode %s, %d concurrent, %v: %d ok, %d errors, %.0f orders/s, p50 %v, p99 %v, p999 %v; loadtool cpu %v/order\n",
		*mode, *conns, el.Round(time.Millisecond), n, errN.Load(), float64(n)/el.Seconds(), pct(0.5), pct(0.99), pct(0.999), perOrder)
	if e := firstErr.Load(); e != nil {
		fmt.Println("first error:", e)
	}
	if c != nil {
		c.Close()
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func appendOrderBody(b []byte, buyer, sku string) []byte {
	b = append(b, `{"buyer_id":"`...)
	b = append(b, buyer...)
	b = append(b, `","items":[{"sku_id":"`...)
	b = append(b, sku...)
	return append(b, `","quantity":1}],"channel":"app","region":"CN-ZJ"}`...)
}

func stdPost(hc *http.Client, addr, token string, body []byte) error {
	req, err := http.NewRequest("POST", addr+"/v1/orders", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// rawConn is one keep-alive HTTP/1.1 connection driven by hand: the
// request is written with one syscall and the response read through a
// buffer; only the status line and Content-Length are parsed.
type rawConn struct {
	conn   net.Conn
	r      *bufio.Reader
	head   []byte // request line and headers up to "Content-Length: "
	req    []byte
	broken bool
}

func dialRaw(addr, token string) (*rawConn, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("parse addr: %w", err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	head := "POST /v1/orders HTTP/1.1\r\nHost: " + u.Host + "\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nContent-Length: "
	return &rawConn{conn: conn, r: bufio.NewReaderSize(conn, 16<<10), head: []byte(head)}, nil
}

func (c *rawConn) close() { c.conn.Close() }

var errBadResponse = errors.New("malformed HTTP response")

func (c *rawConn) post(body []byte) error {
	c.req = append(c.req[:0], c.head...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.conn.Write(c.req); err != nil {
		c.broken = true
		return fmt.Errorf("write request: %w", err)
	}
	status, length := 0, -1
	for first := true; ; first = false {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			c.broken = true
			return fmt.Errorf("read response: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if first {
			if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
				c.broken = true
				return errBadResponse
			}
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), "Content-Length") {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length < 0 {
		// The server always sends Content-Length for these small bodies;
		// anything else (chunked) is not worth parsing here.
		c.broken = true
		return errBadResponse
	}
	if _, err := c.r.Discard(length); err != nil {
		c.broken = true
		return fmt.Errorf("read body: %w", err)
	}
	if status != http.StatusCreated {
		return fmt.Errorf("status %d", status)
	}
	return nil
}

// seed imports brand, merchants and SKUs with a large stock.
func seed(addr, token string, skus int) error {
	var b strings.Builder
	b.WriteString(`{"type":"brand","id":"lb","name":"Load Brand","country":"CN"}` + "\n")
	for m := 0; m < 64; m++ {
		fmt.Fprintf(&b, `{"type":"merchant","id":"lm-%d","name":"Shop","brand_id":"lb","kind":"trader"}`+"\n", m)
	}
	for s := 0; s < skus; s++ {
		fmt.Fprintf(&b, `{"type":"sku","id":"sku-%d","merchant_id":"lm-%d","brand_id":"lb","title":"Item","price":1000,"stock":1000000000}`+"\n", s, s%64)
	}
	c, err := client.New(client.Config{Addr: addr, Token: token})
	if err != nil {
		return fmt.Errorf("seed client: %w", err)
	}
	defer c.Close()
	if _, err = c.ImportCatalog(context.Background(), strings.NewReader(b.String())); err != nil {
		return fmt.Errorf("import catalog: %w", err)
	}
	return nil
}
