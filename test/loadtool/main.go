// Command loadtool measures the fest HTTP API from a separate process:
// single JSON orders over N keep-alive connections (-mode json), or the Go
// client's automatic batching (-mode client). It prints orders/s and
// latency percentiles. The server must have SKUs sku-0..sku-(skus-1).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/client"
)

func main() {
	addr := flag.String("addr", "http://127.0.0.1:8080", "server")
	token := flag.String("token", "", "storefront token")
	adminToken := flag.String("admin-token", "", "admin token: when set, the catalog is created first")
	mode := flag.String("mode", "json", "json or client")
	conns := flag.Int("c", 64, "json: connections; client: concurrent PlaceOrder goroutines")
	clientConns := flag.Int("client-conns", 4, "client: batch requests in flight")
	dur := flag.Duration("d", 10*time.Second, "duration")
	skus := flag.Int("skus", 1000, "SKUs")
	flag.Parse()
	if *adminToken != "" {
		if err := seed(*addr, *adminToken, *skus); err != nil {
			fmt.Fprintln(os.Stderr, "seed:", err)
			os.Exit(1)
		}
	}
	var lat [][]time.Duration
	var okN, errN atomic.Int64
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	lat = make([][]time.Duration, *conns)
	var c *client.Client
	if *mode == "client" {
		var err error
		c, err = client.New(client.Config{Addr: *addr, Token: *token, Conns: *clientConns, BatchMax: 8192})
		if err != nil {
			panic(err)
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}}
	start := time.Now()
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 1))
			var body bytes.Buffer
			for time.Now().Before(deadline) {
				sku := "sku-" + strconv.Itoa(r.IntN(*skus))
				buyer := "buyer-" + strconv.Itoa(r.IntN(1_000_000))
				t0 := time.Now()
				var err error
				if c != nil {
					_, err = c.PlaceOrder(context.Background(), client.OrderRequest{BuyerID: buyer, Items: []client.Item{{SKUID: sku, Quantity: 1}}})
				} else {
					body.Reset()
					body.WriteString(`{"buyer_id":"` + buyer + `","items":[{"sku_id":"` + sku + `","quantity":1}],"channel":"app","region":"CN-ZJ"}`)
					req, _ := http.NewRequest("POST", *addr+"/v1/orders", bytes.NewReader(body.Bytes()))
					req.Header.Set("Authorization", "Bearer "+*token)
					req.Header.Set("Content-Type", "application/json")
					resp, e := hc.Do(req)
					if e == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 201 {
							e = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					err = e
				}
				if err != nil {
					errN.Add(1)
					continue
				}
				okN.Add(1)
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
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
	fmt.Printf("mode %s, %d concurrent, %v: %d ok, %d errors, %.0f orders/s, p50 %v, p99 %v, p999 %v\n",
		*mode, *conns, el.Round(time.Millisecond), okN.Load(), errN.Load(), float64(okN.Load())/el.Seconds(), pct(0.5), pct(0.99), pct(0.999))
	if c != nil {
		c.Close()
	}
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
		return err
	}
	defer c.Close()
	_, err = c.ImportCatalog(context.Background(), strings.NewReader(b.String()))
	return err
}
