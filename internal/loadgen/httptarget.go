package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fest-platform/fest/internal/festival"
	"github.com/fest-platform/fest/wire"
)

// Transports to a fest server.
const (
	TransportBinary    = "binary"     // POST /v1/orders:batch in protobuf (client/wire)
	TransportJSONBatch = "json-batch" // POST /v1/orders:batch in JSON
	TransportJSON      = "json"       // one POST /v1/orders per order
)

// HTTPConfig is a fest server to drive. Start from DefaultHTTPConfig.
type HTTPConfig struct {
	// Addr is the server's base URL or host:port.
	Addr string
	// Tokens of the three roles.
	AdminToken, StorefrontToken, CarrierToken string
	// Transport is binary, json-batch or json.
	Transport string
	// Batch is the orders per batch request; InFlight the batches (or, for
	// json, single requests) in flight.
	Batch, InFlight int
	// PayParallel is the payment requests in flight per batch on the json
	// transport, which pays one order per request (the batched transports
	// settle a batch in one POST /v1/orders:settle).
	PayParallel int
	// ImportChunkBytes bounds one catalog-import request (the server takes
	// up to 16 MiB).
	ImportChunkBytes int
	// Timeout bounds one request.
	Timeout time.Duration
}

// DefaultHTTPConfig batches 1,000 orders per request, 8 in flight.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{
		Addr:             "127.0.0.1:8080",
		Transport:        TransportBinary,
		Batch:            1000,
		InFlight:         8,
		PayParallel:      8,
		ImportChunkBytes: 8 << 20,
		Timeout:          30 * time.Second,
	}
}

// Validate reports the first thing wrong with c.
func (c HTTPConfig) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("no server address")
	case c.Transport != TransportBinary && c.Transport != TransportJSONBatch && c.Transport != TransportJSON:
		return fmt.Errorf("unknown transport %q (want binary, json-batch or json)", c.Transport)
	case c.Batch < 1 || c.Batch > 10_000:
		return fmt.Errorf("batch %d out of range [1, 10000]", c.Batch)
	case c.InFlight < 1 || c.InFlight > 1024:
		return fmt.Errorf("in-flight %d out of range [1, 1024]", c.InFlight)
	case c.PayParallel < 1 || c.PayParallel > 256:
		return fmt.Errorf("pay parallelism %d out of range [1, 256]", c.PayParallel)
	case c.ImportChunkBytes < 1<<10 || c.ImportChunkBytes > 16<<20:
		return fmt.Errorf("import chunk %d bytes out of range [1 KiB, 16 MiB]", c.ImportChunkBytes)
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	}
	return nil
}

// HTTPTarget drives a fest server through its public HTTP API.
type HTTPTarget struct {
	cfg    HTTPConfig
	base   string
	client *http.Client
	bufs   sync.Pool
}

// NewHTTPTarget returns a target for the server cfg names.
func NewHTTPTarget(cfg HTTPConfig) (*HTTPTarget, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("http target config: %w", err)
	}
	base := strings.TrimRight(cfg.Addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	conns := cfg.InFlight * max(cfg.PayParallel, 1) * 2
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	t := &HTTPTarget{cfg: cfg, base: base, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}
	t.bufs.New = func() any { b := make([]byte, 0, 64<<10); return &b }
	return t, nil
}

// Name is "fest".
func (t *HTTPTarget) Name() string { return "fest" }

// Shape: batches for the batch transports, single orders for json.
func (t *HTTPTarget) Shape() (int, int) {
	if t.cfg.Transport == TransportJSON {
		return 1, t.cfg.InFlight
	}
	return t.cfg.Batch, t.cfg.InFlight
}

// Close closes idle connections.
func (t *HTTPTarget) Close() error {
	t.client.CloseIdleConnections()
	return nil
}

// apiErr is the contract's error body.
type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// do sends one request and returns the status and body (read in full).
func (t *HTTPTarget) do(ctx context.Context, method, path, token, ctype string, body []byte, dst []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, dst, fmt.Errorf("new request: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, dst, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(dst[:0])
	if _, err := io.Copy(b, resp.Body); err != nil {
		return resp.StatusCode, b.Bytes(), fmt.Errorf("read %s %s: %w", method, path, err)
	}
	return resp.StatusCode, b.Bytes(), nil
}

func errorCode(status int, body []byte) (code, detail string) {
	var e apiErr
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code, e.Error.Message
	}
	return CodeBadAnswer, fmt.Sprintf("status %d: %.200s", status, body)
}

// Ready waits until GET /readyz answers 200, or ctx ends.
func (t *HTTPTarget) Ready(ctx context.Context) error {
	for {
		st, _, err := t.do(ctx, http.MethodGet, "/readyz", "", "", nil, nil)
		if err == nil && st == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("status %d", st)
			}
			return fmt.Errorf("wait for %s/readyz: %w (last: %v)", t.base, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Prepare imports the catalog with POST /v1/catalog:import in chunks:
// brands, then merchants, then SKUs (each refers to the ones before), and
// creates the livestream channels.
func (t *HTTPTarget) Prepare(ctx context.Context, m *festival.Model, say func(string)) error {
	start := time.Now()
	kinds := []struct {
		name string
		n    int
		line func(b []byte, i int) []byte
	}{
		{"brand", len(m.Brands), func(b []byte, i int) []byte { return appendBrandLine(b, &m.Brands[i]) }},
		{"merchant", len(m.Merchants), func(b []byte, i int) []byte { return appendMerchantLine(b, m, &m.Merchants[i]) }},
		{"sku", len(m.SKUs), func(b []byte, i int) []byte { return appendSKULine(b, m, &m.SKUs[i]) }},
	}
	for _, k := range kinds {
		if err := t.importKind(ctx, k.name, k.n, k.line); err != nil {
			return err
		}
	}
	for i := range m.Channels {
		c := &m.Channels[i]
		body := fmt.Appendf(nil, `{"title":%q,"host":%q,"starts_at":"2020-10-31T16:00:00Z","ends_at":"2020-11-11T16:00:00Z"}`, c.Title, c.Host)
		st, resp, err := t.do(ctx, http.MethodPut, "/v1/live/channels/"+c.ID, t.cfg.AdminToken, "application/json", body, nil)
		if err != nil {
			return fmt.Errorf("put channel %s: %w", c.ID, err)
		}
		if st == http.StatusNotFound || st == http.StatusMethodNotAllowed {
			// A server without livestream channels takes live:<id> orders
			// all the same; their figures are then the driver's own.
			if say != nil {
				say("server has no livestream channel endpoint; channels not created")
			}
			break
		}
		if st != http.StatusOK {
			code, msg := errorCode(st, resp)
			return fmt.Errorf("put channel %s: %s: %s", c.ID, code, msg)
		}
	}
	if say != nil {
		say(fmt.Sprintf("catalog imported: %s brands, %s merchants, %s skus in %.1fs",
			group(int64(len(m.Brands))), group(int64(len(m.Merchants))), group(int64(len(m.SKUs))), time.Since(start).Seconds()))
	}
	return nil
}

// importParallel is the import requests in flight: two keeps the server's
// partitions busy while the next chunk is encoded and sent.
const importParallel = 2

func (t *HTTPTarget) importKind(ctx context.Context, kind string, n int, line func([]byte, int) []byte) error {
	type chunk struct {
		body  []byte
		first int
	}
	chunks := make(chan chunk)
	errc := make(chan error, importParallel)
	var wg sync.WaitGroup
	for range importParallel {
		wg.Go(func() {
			for c := range chunks {
				st, resp, err := t.do(ctx, http.MethodPost, "/v1/catalog:import", t.cfg.AdminToken, "application/x-ndjson", c.body, nil)
				if err == nil && st != http.StatusOK {
					code, msg := errorCode(st, resp)
					err = fmt.Errorf("%s: %s", code, msg)
				}
				if err != nil {
					select {
					case errc <- fmt.Errorf("import %ss from #%d: %w", kind, c.first, err):
					default:
					}
					for range chunks { // drain so the producer ends
					}
					return
				}
			}
		})
	}
	var b []byte
	first := 0
	for i := 0; i < n; i++ {
		if len(errc) > 0 || ctx.Err() != nil {
			break
		}
		b = line(b, i)
		if len(b) >= t.cfg.ImportChunkBytes-4096 || i == n-1 {
			chunks <- chunk{body: b, first: first}
			b, first = nil, i+1
		}
	}
	close(chunks)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	return ctx.Err()
}

func appendBrandLine(b []byte, br *festival.Brand) []byte {
	b = append(b, `{"type":"brand","id":`...)
	b = strconv.AppendQuote(b, br.ID)
	b = append(b, `,"name":`...)
	b = strconv.AppendQuote(b, br.Name)
	b = append(b, `,"country":`...)
	b = strconv.AppendQuote(b, br.Country)
	b = append(b, `,"first_festival":`...)
	b = strconv.AppendInt(b, int64(br.FirstFestival), 10)
	b = append(b, `,"emerging":`...)
	b = strconv.AppendBool(b, br.Emerging)
	b = append(b, `,"last_year_gmv":`...)
	b = strconv.AppendInt(b, br.LastYearGMV, 10)
	return append(b, "}\n"...)
}

func appendMerchantLine(b []byte, m *festival.Model, mc *festival.Merchant) []byte {
	b = append(b, `{"type":"merchant","id":`...)
	b = strconv.AppendQuote(b, mc.ID)
	b = append(b, `,"name":`...)
	b = strconv.AppendQuote(b, mc.Name)
	b = append(b, `,"brand_id":`...)
	b = strconv.AppendQuote(b, m.Brands[mc.Brand].ID)
	b = append(b, `,"kind":`...)
	b = strconv.AppendQuote(b, mc.Kind)
	b = append(b, `,"industry":`...)
	b = strconv.AppendQuote(b, mc.Industry)
	b = append(b, `,"region":`...)
	b = strconv.AppendQuote(b, mc.Region)
	return append(b, "}\n"...)
}

func appendSKULine(b []byte, m *festival.Model, s *festival.SKU) []byte {
	b = append(b, `{"type":"sku","id":`...)
	b = strconv.AppendQuote(b, s.ID)
	b = append(b, `,"merchant_id":`...)
	b = strconv.AppendQuote(b, m.Merchants[s.Merchant].ID)
	b = append(b, `,"brand_id":`...)
	b = strconv.AppendQuote(b, m.Brands[s.Brand].ID)
	b = append(b, `,"title":`...)
	b = strconv.AppendQuote(b, s.Title)
	b = append(b, `,"category":`...)
	b = strconv.AppendQuote(b, s.Category)
	b = append(b, `,"price":`...)
	b = strconv.AppendInt(b, s.Price, 10)
	b = append(b, `,"stock":`...)
	b = strconv.AppendInt(b, s.Stock, 10)
	return append(b, "}\n"...)
}

// appendOrderJSON appends the JSON of a place-order request.
func appendOrderJSON(b []byte, m *festival.Model, o *festival.Order) []byte {
	b = append(b, `{"buyer_id":"`...)
	b = append(b, festival.BuyerID(o.Buyer)...)
	b = append(b, `","items":[`...)
	for i, it := range o.Lines() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sku_id":"`...)
		b = append(b, m.SKUs[it.SKU].ID...)
		b = append(b, `","quantity":`...)
		b = strconv.AppendInt(b, int64(it.Qty), 10)
		b = append(b, '}')
	}
	b = append(b, `],"channel":"`...)
	b = append(b, m.ChannelName(o)...)
	b = append(b, `","region":"`...)
	b = append(b, m.BuyerRegion(o.Buyer)...)
	return append(b, `"}`...)
}

// orderJSON is the part of an order answer the driver checks.
type orderJSON struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	Total   int64  `json:"total"`
}

type batchResultJSON struct {
	Order *orderJSON `json:"order"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Place sends the orders as one batch (binary or json-batch) or as single
// requests (json).
func (t *HTTPTarget) Place(ctx context.Context, m *festival.Model, orders []*festival.Order, out []Outcome) {
	switch t.cfg.Transport {
	case TransportJSON:
		for i, o := range orders {
			t.placeOne(ctx, m, o, &out[i])
		}
	case TransportJSONBatch:
		t.placeJSONBatch(ctx, m, orders, out)
	default:
		t.placeBinary(ctx, m, orders, out)
	}
}

func setAll(out []Outcome, code, detail string) {
	for i := range out {
		out[i] = Outcome{Code: code, Detail: detail}
	}
}

func (t *HTTPTarget) placeOne(ctx context.Context, m *festival.Model, o *festival.Order, out *Outcome) {
	bp := t.bufs.Get().(*[]byte)
	defer t.bufs.Put(bp)
	body := appendOrderJSON((*bp)[:0], m, o)
	st, resp, err := t.do(ctx, http.MethodPost, "/v1/orders", t.cfg.StorefrontToken, "application/json", body, nil)
	*bp = body
	switch {
	case err != nil:
		*out = Outcome{Code: CodeTransport, Detail: err.Error()}
	case st == http.StatusCreated:
		var oj orderJSON
		if err := json.Unmarshal(resp, &oj); err != nil || oj.Status != "pending_payment" {
			*out = Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("201 body %.200s", resp)}
			return
		}
		*out = Outcome{ID: oj.OrderID, Total: oj.Total}
	default:
		code, msg := errorCode(st, resp)
		*out = Outcome{Code: code, Detail: msg}
	}
}

func (t *HTTPTarget) placeJSONBatch(ctx context.Context, m *festival.Model, orders []*festival.Order, out []Outcome) {
	bp := t.bufs.Get().(*[]byte)
	defer t.bufs.Put(bp)
	b := append((*bp)[:0], `{"orders":[`...)
	for i, o := range orders {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOrderJSON(b, m, o)
	}
	b = append(b, "]}"...)
	*bp = b
	results, ok := t.postJSONBatch(ctx, "/v1/orders:batch", "batch", b, out[:len(orders)])
	if !ok {
		return
	}
	for i, r := range results {
		switch {
		case r.Order != nil && r.Order.Status == "pending_payment":
			out[i] = Outcome{ID: r.Order.OrderID, Total: r.Order.Total}
		case r.Error != nil:
			out[i] = Outcome{Code: r.Error.Code, Detail: r.Error.Message}
		default:
			out[i] = Outcome{Code: CodeBadAnswer, Detail: "result with neither order nor error"}
		}
	}
}

// binaryScratch is a worker's reusable protobuf request and response.
type binaryScratch struct {
	req     []wire.PlaceOrder
	items   []wire.Item
	body    []byte
	resp    []byte
	results []wire.Result
}

var binaryScratchPool = sync.Pool{New: func() any { return &binaryScratch{} }}

func (t *HTTPTarget) placeBinary(ctx context.Context, m *festival.Model, orders []*festival.Order, out []Outcome) {
	s := binaryScratchPool.Get().(*binaryScratch)
	defer binaryScratchPool.Put(s)
	s.req = s.req[:0]
	s.items = s.items[:0]
	for _, o := range orders {
		for _, it := range o.Lines() {
			s.items = append(s.items, wire.Item{SKUID: m.SKUs[it.SKU].ID, Quantity: it.Qty})
		}
	}
	k := 0
	for _, o := range orders {
		n := int(o.NItems)
		s.req = append(s.req, wire.PlaceOrder{
			BuyerID: festival.BuyerID(o.Buyer),
			Items:   s.items[k : k+n : k+n],
			Channel: m.ChannelName(o),
			Region:  m.BuyerRegion(o.Buyer),
		})
		k += n
	}
	s.body = wire.AppendRequest(s.body[:0], s.req)
	st, resp, err := t.do(ctx, http.MethodPost, "/v1/orders:batch", t.cfg.StorefrontToken, wire.ContentType, s.body, s.resp)
	s.resp = resp
	if err != nil {
		setAll(out, CodeTransport, err.Error())
		return
	}
	if st != http.StatusOK {
		code, msg := errorCode(st, resp)
		setAll(out, code, msg)
		return
	}
	s.results, err = wire.DecodeResponse(resp, s.results[:0])
	if err != nil || len(s.results) != len(orders) {
		setAll(out, CodeBadAnswer, fmt.Sprintf("batch of %d: %d results (%v)", len(orders), len(s.results), err))
		return
	}
	for i := range s.results {
		r := &s.results[i]
		switch {
		case r.Error != nil:
			out[i] = Outcome{Code: r.Error.Code, Detail: r.Error.Message}
		case r.Order.Status == "pending_payment":
			out[i] = Outcome{ID: r.Order.OrderID, Total: r.Order.Total}
		default:
			out[i] = Outcome{Code: CodeBadAnswer, Detail: "placed order in status " + r.Order.Status}
		}
	}
}

// SettlesInBatches: the batched transports pay and cancel through
// POST /v1/orders:settle (binary: protobuf; json-batch: JSON), one request
// per call; json pays one order per request.
func (t *HTTPTarget) SettlesInBatches() bool { return t.cfg.Transport != TransportJSON }

// Pay pays each order: one settle request on the batched transports, else
// POST /v1/orders/{id}/pay, PayParallel at a time.
func (t *HTTPTarget) Pay(ctx context.Context, ids []string, totals []int64, out []Outcome) {
	if t.SettlesInBatches() {
		t.Settle(ctx, ids, totals, make([]bool, len(ids)), out)
		return
	}
	t.each(len(ids), func(i int) {
		body := strconv.AppendInt([]byte(`{"amount":`), totals[i], 10)
		body = append(body, '}')
		out[i] = t.transition(ctx, "/v1/orders/"+ids[i]+"/pay", body, "paid")
	})
}

// Cancel cancels each order: one settle request on the batched transports,
// else POST /v1/orders/{id}/cancel.
func (t *HTTPTarget) Cancel(ctx context.Context, ids []string, out []Outcome) {
	if t.SettlesInBatches() {
		cancel := make([]bool, len(ids))
		for i := range cancel {
			cancel[i] = true
		}
		t.Settle(ctx, ids, make([]int64, len(ids)), cancel, out)
		return
	}
	t.each(len(ids), func(i int) {
		out[i] = t.transition(ctx, "/v1/orders/"+ids[i]+"/cancel", nil, "cancelled")
	})
}

// settleMax is the most actions of one settle request (the server's limit).
const settleMax = 10_000

// Settle pays ids[i] with totals[i], or cancels it when cancel[i] is set,
// with POST /v1/orders:settle: protobuf on the binary transport, JSON on
// the others; at most settleMax actions a request.
func (t *HTTPTarget) Settle(ctx context.Context, ids []string, totals []int64, cancel []bool, out []Outcome) {
	for lo := 0; lo < len(ids); lo += settleMax {
		hi := min(len(ids), lo+settleMax)
		if t.cfg.Transport == TransportBinary {
			t.settleBinary(ctx, ids[lo:hi], totals[lo:hi], cancel[lo:hi], out[lo:hi])
		} else {
			t.settleJSON(ctx, ids[lo:hi], totals[lo:hi], cancel[lo:hi], out[lo:hi])
		}
	}
}

// settleScratch is a worker's reusable protobuf settle request and response.
type settleScratch struct {
	acts []wire.Settle
	body []byte
	resp []byte
	view wire.SettleResponseView
}

var settleScratchPool = sync.Pool{New: func() any { return &settleScratch{} }}

func settleWant(cancel bool) string {
	if cancel {
		return "cancelled"
	}
	return "paid"
}

func (t *HTTPTarget) settleBinary(ctx context.Context, ids []string, totals []int64, cancel []bool, out []Outcome) {
	s := settleScratchPool.Get().(*settleScratch)
	defer settleScratchPool.Put(s)
	s.acts = s.acts[:0]
	for i, id := range ids {
		a := wire.Settle{OrderID: id, Cancel: cancel[i]}
		if !cancel[i] {
			a.Amount = totals[i]
		}
		s.acts = append(s.acts, a)
	}
	s.body = wire.AppendSettleRequest(s.body[:0], s.acts)
	clear(s.acts)
	st, resp, err := t.do(ctx, http.MethodPost, "/v1/orders:settle", t.cfg.StorefrontToken, wire.ContentType, s.body, s.resp)
	s.resp = resp
	if err != nil {
		setAll(out, CodeTransport, err.Error())
		return
	}
	if st != http.StatusOK {
		code, msg := errorCode(st, resp)
		setAll(out, code, msg)
		return
	}
	err = wire.DecodeSettleResponseView(resp, &s.view)
	defer clear(s.view.Results)
	if err != nil || len(s.view.Results) != len(ids) {
		setAll(out, CodeBadAnswer, fmt.Sprintf("settle of %d: %d results (%v)", len(ids), len(s.view.Results), err))
		return
	}
	for i := range s.view.Results {
		r := &s.view.Results[i]
		switch want := settleWant(cancel[i]); {
		case r.Error != nil:
			out[i] = Outcome{Code: r.Error.Code, Detail: ids[i] + ": " + r.Error.Message}
		case string(r.Status) != want || string(r.OrderID) != ids[i]:
			out[i] = Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("settle %s: want %s, got order %q in status %q", ids[i], want, r.OrderID, r.Status)}
		default:
			out[i] = Outcome{}
		}
	}
}

func (t *HTTPTarget) settleJSON(ctx context.Context, ids []string, totals []int64, cancel []bool, out []Outcome) {
	bp := t.bufs.Get().(*[]byte)
	defer t.bufs.Put(bp)
	b := append((*bp)[:0], `{"actions":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"order_id":`...)
		b = strconv.AppendQuote(b, id)
		if cancel[i] {
			b = append(b, `,"action":"cancel"}`...)
		} else {
			b = append(b, `,"action":"pay","amount":`...)
			b = strconv.AppendInt(b, totals[i], 10)
			b = append(b, '}')
		}
	}
	b = append(b, "]}"...)
	*bp = b
	results, ok := t.postJSONBatch(ctx, "/v1/orders:settle", "settle", b, out)
	if !ok {
		return
	}
	for i, r := range results {
		switch want := settleWant(cancel[i]); {
		case r.Error != nil:
			out[i] = Outcome{Code: r.Error.Code, Detail: ids[i] + ": " + r.Error.Message}
		case r.Order == nil || r.Order.Status != want || r.Order.OrderID != ids[i]:
			out[i] = Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("settle %s: want %s, got %+v", ids[i], want, r.Order)}
		default:
			out[i] = Outcome{}
		}
	}
}

// postJSONBatch posts a JSON batch body and returns its results, one per
// entry of out; when the request fails or the answer does not fit, it sets
// every outcome and returns false.
func (t *HTTPTarget) postJSONBatch(ctx context.Context, path, what string, body []byte, out []Outcome) ([]batchResultJSON, bool) {
	st, resp, err := t.do(ctx, http.MethodPost, path, t.cfg.StorefrontToken, "application/json", body, nil)
	if err != nil {
		setAll(out, CodeTransport, err.Error())
		return nil, false
	}
	if st != http.StatusOK {
		code, msg := errorCode(st, resp)
		setAll(out, code, msg)
		return nil, false
	}
	var answer struct {
		Results []batchResultJSON `json:"results"`
	}
	if err := json.Unmarshal(resp, &answer); err != nil || len(answer.Results) != len(out) {
		setAll(out, CodeBadAnswer, fmt.Sprintf("%s of %d: %d results (%v)", what, len(out), len(answer.Results), err))
		return nil, false
	}
	return answer.Results, true
}

func (t *HTTPTarget) transition(ctx context.Context, path string, body []byte, want string) Outcome {
	st, resp, err := t.do(ctx, http.MethodPost, path, t.cfg.StorefrontToken, "application/json", body, nil)
	switch {
	case err != nil:
		return Outcome{Code: CodeTransport, Detail: err.Error()}
	case st == http.StatusOK:
		var oj orderJSON
		if err := json.Unmarshal(resp, &oj); err != nil || oj.Status != want {
			return Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("%s: want status %s, got %.200s", path, want, resp)}
		}
		return Outcome{}
	default:
		code, msg := errorCode(st, resp)
		return Outcome{Code: code, Detail: path + ": " + msg}
	}
}

// each runs f(0..n-1), PayParallel at a time.
func (t *HTTPTarget) each(n int, f func(i int)) { eachParallel(n, t.cfg.PayParallel, f) }

// eachParallel runs f(0..n-1), par at a time.
func eachParallel(n, par int, f func(i int)) {
	par = min(n, par)
	if par <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range par {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// skuJSON is the part of GET /v1/skus/{id} the audit reads.
type skuJSON struct {
	StockAvailable *int64 `json:"stock_available"`
	StockReserved  *int64 `json:"stock_reserved"`
	Sold           *int64 `json:"sold"`
}

// gmvJSON is GET /v1/gmv.
type gmvJSON struct {
	GMV struct {
		Amount int64 `json:"amount"`
	} `json:"gmv"`
	OrdersPaid int64 `json:"orders_paid"`
}

// auditParallel is the SKU reads in flight during the audit.
const auditParallel = 16

// gmvSettle bounds the wait for the GMV projection to catch up with the
// last payments (it is a consumer of the journal and may lag).
const gmvSettle = 15 * time.Second

// Audit reads every touched SKU (stocked = available + reserved + sold, and
// reserved and sold as the driver saw them acknowledged) and the GMV.
func (t *HTTPTarget) Audit(ctx context.Context, m *festival.Model, l *Ledger) ([]string, error) {
	var mu sync.Mutex
	var problems []string
	add := func(p string) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < maxProblemsListed {
			problems = append(problems, p)
		} else if len(problems) == maxProblemsListed {
			problems = append(problems, "more problems not listed")
		}
	}
	var touched []int
	for i := range m.SKUs {
		if l.Touched[i].Load() {
			touched = append(touched, i)
		}
	}
	exact := !l.Uncertain.Load()
	var firstErr error
	var errOnce sync.Once
	sem := make(chan struct{}, auditParallel)
	var wg sync.WaitGroup
	for _, i := range touched {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s := &m.SKUs[i]
			st, resp, err := t.do(ctx, http.MethodGet, "/v1/skus/"+s.ID, t.cfg.AdminToken, "", nil, nil)
			if err != nil || st != http.StatusOK {
				errOnce.Do(func() { firstErr = fmt.Errorf("get sku %s: status %d: %v %.200s", s.ID, st, err, resp) })
				return
			}
			var sj skuJSON
			if err := json.Unmarshal(resp, &sj); err != nil || sj.StockAvailable == nil || sj.StockReserved == nil || sj.Sold == nil {
				add(fmt.Sprintf("sku %s: answer lacks stock_available/stock_reserved/sold: %.200s", s.ID, resp))
				return
			}
			av, rs, sd := *sj.StockAvailable, *sj.StockReserved, *sj.Sold
			if av+rs+sd != s.Stock {
				add(fmt.Sprintf("sku %s: stocked %d != available %d + reserved %d + sold %d", s.ID, s.Stock, av, rs, sd))
			}
			if av < 0 || rs < 0 || sd < 0 {
				add(fmt.Sprintf("sku %s: negative figure: available %d reserved %d sold %d", s.ID, av, rs, sd))
			}
			if exact {
				if want := l.Sold[i].Load(); sd != want {
					add(fmt.Sprintf("sku %s: sold %d, driver saw %d units paid", s.ID, sd, want))
				}
				if want := l.Reserved[i].Load(); rs != want {
					add(fmt.Sprintf("sku %s: reserved %d, driver saw %d units in pending orders", s.ID, rs, want))
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return problems, firstErr
	}
	// GMV: the projection may lag the last payments; wait for it to settle.
	want := l.Tally.GMV
	deadline := time.Now().Add(gmvSettle)
	var g gmvJSON
	for {
		st, resp, err := t.do(ctx, http.MethodGet, "/v1/gmv", "", "", nil, nil)
		if err != nil || st != http.StatusOK {
			return problems, fmt.Errorf("get gmv: status %d: %v %.200s", st, err, resp)
		}
		if err := json.Unmarshal(resp, &g); err != nil {
			return problems, fmt.Errorf("decode gmv: %w", err)
		}
		if g.GMV.Amount == want || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return problems, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if g.GMV.Amount != want {
		add(fmt.Sprintf("gmv: server %d fen (%d paid orders), driver saw %d fen paid (%d orders) acknowledged", g.GMV.Amount, g.OrdersPaid, want, l.Tally.PaidOrders))
	}
	return problems, nil
}

// maxProblemsListed bounds the audit's list: past it, one line says so.
const maxProblemsListed = 50

// scanAnswerJSON is the part of a parcel answer the carrier phase checks.
type scanAnswerJSON struct {
	Status string `json:"status"`
}

// scanParallel is the scan requests in flight: each waits for its fsync
// (group-committed with the others) and for the parcel projection, so many
// carriers must scan at once for the commits to be shared.
const scanParallel = 64

// Scan implements Carrier: one POST /v1/parcels/{id}/scans per scan, with
// the carrier token, scanParallel at a time. A parcel id is "P" and its
// order's id.
func (t *HTTPTarget) Scan(ctx context.Context, orderIDs []string, scans []ScanStep, out []Outcome) {
	eachParallel(len(orderIDs), scanParallel, func(i int) {
		body, _ := json.Marshal(map[string]string{"status": scans[i].Status, "location": scans[i].Location})
		path := "/v1/parcels/P" + orderIDs[i] + "/scans"
		st, resp, err := t.do(ctx, http.MethodPost, path, t.cfg.CarrierToken, "application/json", body, nil)
		switch {
		case err != nil:
			out[i] = Outcome{Code: CodeTransport, Detail: err.Error()}
		case st == http.StatusOK:
			var a scanAnswerJSON
			if err := json.Unmarshal(resp, &a); err != nil || a.Status != scans[i].Status {
				out[i] = Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("%s: want status %s, got %.200s", path, scans[i].Status, resp)}
			}
		default:
			code, msg := errorCode(st, resp)
			out[i] = Outcome{Code: code, Detail: path + ": " + msg}
		}
	})
}

// logisticsStatsJSON is GET /v1/logistics/stats.
type logisticsStatsJSON struct {
	Parcels  int64            `json:"parcels"`
	ByStatus map[string]int64 `json:"by_status"`
}

// ParcelStats implements Carrier. The parcels are a projection of the
// journal and may lag the last payments: it waits, as the GMV audit does,
// for them to equal the server's paid orders.
func (t *HTTPTarget) ParcelStats(ctx context.Context) (ParcelStats, error) {
	deadline := time.Now().Add(gmvSettle)
	for {
		st, resp, err := t.do(ctx, http.MethodGet, "/v1/logistics/stats", "", "", nil, nil)
		if err != nil || st != http.StatusOK {
			return ParcelStats{}, fmt.Errorf("get logistics stats: status %d: %v %.200s", st, err, resp)
		}
		var ls logisticsStatsJSON
		if err := json.Unmarshal(resp, &ls); err != nil {
			return ParcelStats{}, fmt.Errorf("decode logistics stats: %w", err)
		}
		st, resp, err = t.do(ctx, http.MethodGet, "/v1/gmv", "", "", nil, nil)
		if err != nil || st != http.StatusOK {
			return ParcelStats{}, fmt.Errorf("get gmv: status %d: %v %.200s", st, err, resp)
		}
		var g gmvJSON
		if err := json.Unmarshal(resp, &g); err != nil {
			return ParcelStats{}, fmt.Errorf("decode gmv: %w", err)
		}
		ps := ParcelStats{Parcels: ls.Parcels, Delivered: ls.ByStatus["delivered"], Returned: ls.ByStatus["returned"]}
		ps.InFlight = ps.Parcels - ps.Delivered - ps.Returned
		if ps.Parcels == g.OrdersPaid {
			return ps, nil
		}
		if time.Now().After(deadline) {
			return ps, fmt.Errorf("%d parcels for %d paid orders %v after the run", ps.Parcels, g.OrdersPaid, gmvSettle)
		}
		select {
		case <-ctx.Done():
			return ps, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
