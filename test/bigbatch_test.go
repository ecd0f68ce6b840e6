package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The largest batch the API allows: its body and order bounds, and the
// longest order (lines) and ids.
const (
	bigBatchBodyBytesMax = 16 << 20
	bigBatchOrdersMax    = 10_000
	bigOrderLinesMax     = 100
	bigIDBytes           = 128
	bigBatchClients      = 8
	bigBatchDuration     = 10 * time.Second
)

// longID returns an id of exactly bigIDBytes bytes ending in n.
func longID(prefix string, n int) string {
	tail := prefix + strconv.Itoa(n)
	return strings.Repeat("x", bigIDBytes-len(tail)) + tail
}

// bigBatchBody returns a POST /v1/orders:batch body of orders of
// bigOrderLinesMax lines of SKUs with bigIDBytes-byte ids, as many as fit
// in bigBatchBodyBytesMax, and their number.
func bigBatchBody(client int, skus []string) ([]byte, int) {
	var b bytes.Buffer
	b.Grow(bigBatchBodyBytesMax)
	b.WriteString(`{"orders":[`)
	var order bytes.Buffer
	n := 0
	for n < bigBatchOrdersMax {
		order.Reset()
		if n > 0 {
			order.WriteByte(',')
		}
		fmt.Fprintf(&order, `{"buyer_id":%q,"items":[`, longID("buyer-"+strconv.Itoa(client)+"-", n%1000))
		for k := 0; k < bigOrderLinesMax; k++ {
			if k > 0 {
				order.WriteByte(',')
			}
			fmt.Fprintf(&order, `{"sku_id":%q,"quantity":1}`, skus[(n+k)%len(skus)])
		}
		order.WriteString(`],"channel":"app","region":"CN-ZJ"}`)
		if b.Len()+order.Len()+len("]}") > bigBatchBodyBytesMax {
			break
		}
		b.Write(order.Bytes())
		n++
	}
	b.WriteString("]}")
	return b.Bytes(), n
}

// TestLargestBatches has eight storefront clients send the largest batches
// the API allows for ten seconds, then checks that the server is still
// ready and serving: a normal order succeeds.
func TestLargestBatches(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	var imp strings.Builder
	skus := make([]string, bigOrderLinesMax)
	for i := range skus {
		skus[i] = longID("sku-", i)
		fmt.Fprintf(&imp, `{"type":"sku","id":%q,"merchant_id":"m1","brand_id":"b1","title":"Long","price":100,"stock":1000000000}`+"\n", skus[i])
	}
	f.must(200, "POST", "/v1/catalog:import", adminToken, imp.String())

	client := &http.Client{Timeout: 5 * time.Minute}
	var mu sync.Mutex
	statuses := map[int]int{}
	var transportErrs []string
	var checked bool
	var wg sync.WaitGroup
	end := time.Now().Add(bigBatchDuration)
	for c := 0; c < bigBatchClients; c++ {
		body, n := bigBatchBody(c, skus)
		if c == 0 {
			t.Logf("batch body: %d bytes, %d orders of %d lines", len(body), n, bigOrderLinesMax)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				req, err := http.NewRequest("POST", f.URL+"/v1/orders:batch", bytes.NewReader(body))
				if err != nil {
					panic(err)
				}
				req.Header.Set("Authorization", "Bearer "+storefrontToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					transportErrs = append(transportErrs, err.Error())
					mu.Unlock()
					return
				}
				out, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				check := !checked && resp.StatusCode == 200 && err == nil
				checked = checked || check
				mu.Unlock()
				if check {
					var a struct {
						Results []json.RawMessage `json:"results"`
					}
					if err := json.Unmarshal(out, &a); err != nil || len(a.Results) != n {
						t.Errorf("batch answer: %d results for %d orders (%v)", len(a.Results), n, err)
					} else if !bytes.HasPrefix(a.Results[0], []byte(`{"order":`)) {
						t.Errorf("first result of a large batch: %.300s", a.Results[0])
					}
				}
				if resp.StatusCode != 200 && resp.StatusCode != 429 {
					t.Errorf("batch: status %d: %.300s", resp.StatusCode, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("batch answers by status: %v", statuses)
	if len(transportErrs) > 0 {
		t.Errorf("%d batches failed in transport; first: %s", len(transportErrs), transportErrs[0])
	}
	if statuses[200] == 0 {
		t.Errorf("no large batch was served")
	}
	if r, err := f.call("GET", "/readyz", "", nil); err != nil || r.Status != 200 {
		t.Fatalf("after the large batches the server is not ready: %v %d %s\n%s", err, r.Status, r.Body, lastLines(f.out.String(), 20))
	}
	f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "after", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}})
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
