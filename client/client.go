// Package client is the Go client of the fest HTTP API.
//
// PlaceOrder merges concurrent calls into batches automatically, as
// TigerBeetle's clients do: calls queue up while earlier batches are in
// flight, and each of Config.Conns sender goroutines takes everything
// queued (up to BatchMax orders) into one protobuf POST /v1/orders:batch
// over a keep-alive connection. A lone call is sent at once; under load,
// thousands of orders share one request, one engine batch and one fsync.
// SettlePay and SettleCancel are merged the same way into protobuf
// POST /v1/orders:settle requests.
//
// Every other call is one JSON request. Failures are *Error values carrying
// the API's status, code, message and field.
//
// With Config.Route the client reads the cluster's map (GET /v1/cluster)
// and sends each batch's parts straight to the nodes owning their
// partitions (cluster.go); without it every request goes to Config.Addr,
// which forwards what it does not own.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fest-platform/fest/wire"
)

// Config configures a Client.
type Config struct {
	// Addr is the server: "http://host:port" or "host:port".
	Addr string
	// Token is the bearer token (storefront for orders, admin for catalog).
	Token string
	// Conns is the number of batch requests in flight at once (default 4).
	Conns int
	// BatchMax is the most orders in one batch request (default 4,096; the
	// server accepts up to wire.BatchOrdersMax).
	BatchMax int
	// Timeout bounds each HTTP request (default 30s).
	Timeout time.Duration
	// IdleConnsMax is the keep-alive connections kept open to the server
	// (default 4×Conns); callers that run many requests at once besides
	// the batch senders (PlaceBatch from many goroutines) raise it.
	IdleConnsMax int
	// HTTPClient, if set, is used instead of a client built for Conns
	// keep-alive connections.
	HTTPClient *http.Client
	// Route sends each batch's parts straight to the nodes that own their
	// partitions, by the map of GET /v1/cluster, read at New and again
	// when an answer says the map is stale (see cluster.go). Without it
	// every request goes to Addr, which forwards what it does not own.
	Route bool
	// OwnConns sends the batch requests (PlaceBatch, SettleBatch, their
	// JSON forms, and the batches PlaceOrder and SettlePay merge into)
	// over keep-alive HTTP/1.1 connections of the client's own, each
	// request one write and its answer parsed by the client, rather than
	// through net/http (ownconn.go): about half the client's CPU per
	// batch. Every other call, and any server on https, still goes
	// through net/http (HTTPClient). Up to IdleConnsMax idle connections
	// are kept per server.
	OwnConns bool
}

// Client talks to one fest server. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string
	http *http.Client

	in     chan *call // bounded: BatchMax*Conns; a full queue blocks PlaceOrder (or its ctx ends it)
	settle chan *settleCall
	scalls sync.Pool
	auth   []string // the Authorization header value
	calls  sync.Pool
	route  *router // nil without Config.Route
	// own is the own connections to base (nil without Config.OwnConns or
	// for an https base); pools those to the cluster's other nodes.
	own   *connPool
	pools struct {
		sync.Mutex
		byBase map[string]*connPool // REQUIRES: mu; nil entry: base not on http
	}
	states sync.Pool // *batchState of routed parts
	sstate sync.Pool // *settleState of routed parts
	wg     sync.WaitGroup
	mu     sync.RWMutex // guards closed against sends on in
	closed bool
}

// ErrClosed is returned by calls after Close.
var ErrClosed = errors.New("client closed")

// Error is an error answer of the API.
type Error struct {
	Status    int    // HTTP status
	Code      string // e.g. out_of_stock, invalid_argument, overloaded
	Message   string
	Field     string // the offending field, when known
	SKUID     string // out_of_stock: the SKU short of stock
	Available int64  // out_of_stock: its available stock
	// StockAvailable is a conflict's current stock_available (the value a
	// stock_expected compare-and-set should have carried).
	StockAvailable int64
	// RetryAfter is the server's Retry-After for 429 and 503 answers.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := fmt.Sprintf("fest: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Field != "" && !strings.Contains(e.Message, e.Field) {
		s += " (field " + e.Field + ")"
	}
	return s
}

// Item is one line of an order request.
type Item struct {
	SKUID    string `json:"sku_id"`
	Quantity int    `json:"quantity"`
}

// OrderRequest is an order to place.
type OrderRequest struct {
	BuyerID string `json:"buyer_id"`
	Items   []Item `json:"items"`
	Channel string `json:"channel,omitempty"` // app (default), web, live:<channel_id>
	Region  string `json:"region,omitempty"`
	DealID  string `json:"deal_id,omitempty"`
	// IdempotencyKey makes a retried request return the first order.
	IdempotencyKey string `json:"-"`
}

// OrderItem is one line of a placed order.
type OrderItem struct {
	SKUID     string `json:"sku_id"`
	Quantity  int    `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
	Amount    int64  `json:"amount"`
}

// Order is an order as the server reports it. Money is in fen.
type Order struct {
	ID          string      `json:"order_id"`
	Status      string      `json:"status"`
	BuyerID     string      `json:"buyer_id"`
	MerchantID  string      `json:"merchant_id"`
	Items       []OrderItem `json:"items"`
	Total       int64       `json:"total"`
	Currency    string      `json:"currency"`
	Channel     string      `json:"channel"`
	Region      string      `json:"region"`
	DealID      string      `json:"deal_id,omitempty"`
	CreatedAt   time.Time   `json:"created_at"`
	PayBy       time.Time   `json:"pay_by"`
	PaidAt      time.Time   `json:"paid_at,omitzero"`
	CancelledAt time.Time   `json:"cancelled_at,omitzero"`
	ExpiredAt   time.Time   `json:"expired_at,omitzero"`
	// Replayed is set when an idempotency key returned an earlier order.
	Replayed bool `json:"replayed,omitempty"`
}

// call is one PlaceOrder waiting for its batch.
type call struct {
	req   *OrderRequest
	order Order
	err   error
	done  chan struct{} // capacity 1
}

// New returns a client and starts its batch senders; Close stops them.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("client: Addr is required")
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 4
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 4096
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.IdleConnsMax <= 0 {
		cfg.IdleConnsMax = cfg.Conns * 4
	}
	base := strings.TrimRight(cfg.Addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if _, err := url.Parse(base); err != nil {
		return nil, fmt.Errorf("client: parse Addr: %w", err)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.IdleConnsMax,
			MaxIdleConnsPerHost: cfg.IdleConnsMax,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}}
	}
	c := &Client{cfg: cfg, base: base, http: hc, in: make(chan *call, cfg.BatchMax*cfg.Conns),
		settle: make(chan *settleCall, cfg.BatchMax*cfg.Conns), auth: []string{"Bearer " + cfg.Token}}
	if cfg.OwnConns {
		c.own, _ = newConnPool(base, cfg.IdleConnsMax)
	}
	c.calls.New = func() any { return &call{done: make(chan struct{}, 1)} }
	c.scalls.New = func() any { return &settleCall{done: make(chan struct{}, 1)} }
	if cfg.Route {
		c.startRouting()
	}
	for i := 0; i < cfg.Conns; i++ {
		c.wg.Add(2)
		go c.sender()
		go c.settleSender()
	}
	return c, nil
}

// Close stops the batch senders after the queued calls are sent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	close(c.in)
	close(c.settle)
	c.mu.Unlock()
	c.wg.Wait()
	c.http.CloseIdleConnections()
	if c.own != nil {
		c.own.close()
	}
	c.pools.Lock()
	for _, p := range c.pools.byBase {
		if p != nil {
			p.close()
		}
	}
	c.pools.byBase = nil
	c.pools.Unlock()
	return nil
}

// poolFor is the own connections to the node at base, nil when the batch
// requests to it go through net/http (no OwnConns, or https).
func (c *Client) poolFor(base string) *connPool {
	if !c.cfg.OwnConns {
		return nil
	}
	if base == c.base {
		return c.own
	}
	c.pools.Lock()
	defer c.pools.Unlock()
	p, ok := c.pools.byBase[base]
	if !ok {
		if c.pools.byBase == nil {
			c.pools.byBase = map[string]*connPool{}
		}
		p, _ = newConnPool(base, c.cfg.IdleConnsMax)
		c.pools.byBase[base] = p
	}
	return p
}

// PlaceOrder places one order; concurrent calls share batch requests.
func (c *Client) PlaceOrder(ctx context.Context, req OrderRequest) (Order, error) {
	cl := c.calls.Get().(*call)
	cl.req = &req
	if err := handOff(ctx, c, c.in, cl, cl.done); err != nil {
		return Order{}, err
	}
	o, err := cl.order, cl.err
	*cl = call{done: cl.done}
	c.calls.Put(cl)
	return o, err
}

// handOff gives a call to the senders on ch and waits until it is done or
// ctx ends. A call abandoned to ctx stays with its sender and must not be
// reused; the caller simply drops it.
func handOff[T any](ctx context.Context, c *Client, ch chan<- T, cl T, done <-chan struct{}) error {
	// A context that can never end (Background, TODO) needs no select:
	// plain channel operations are markedly cheaper at thousands of calls
	// per millisecond.
	ctxDone := ctx.Done()
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return ErrClosed
	}
	if ctxDone == nil {
		ch <- cl
	} else {
		select {
		case ch <- cl:
		case <-ctxDone:
			c.mu.RUnlock()
			return ctx.Err()
		}
	}
	c.mu.RUnlock()
	if ctxDone == nil {
		<-done
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctxDone:
		return ctx.Err()
	}
}

// batchState is one sender's reusable buffers.
type batchState struct {
	calls  []*call
	batch  OrderBatch
	view   *wire.ResponseView // &batch.view
	intern map[string]string  // merchant ids, bounded by internMax
}

// collect appends first and whatever else is waiting on in, up to max
// calls: what arrived while the previous batch was in flight goes out as
// one request.
func collect[T any](calls []T, first T, in <-chan T, max int) []T {
	calls = append(calls, first)
	for len(calls) < max {
		select {
		case cl, ok := <-in:
			if !ok {
				return calls
			}
			calls = append(calls, cl)
		default:
			return calls
		}
	}
	return calls
}

// errorOf converts an error result of a batch answer.
func errorOf(e *wire.Error) *Error {
	return &Error{Status: wire.StatusOf(e.Code), Code: e.Code, Message: e.Message, Field: e.Field, SKUID: e.SKUID, Available: e.Available, RetryAfter: retryAfterOf(e.Code)}
}

// internMax bounds a sender's table of merchant ids; past it, ids are
// allocated per order as usual.
const internMax = 1 << 16

// sender sends batches until Close.
func (c *Client) sender() {
	defer c.wg.Done()
	st := newBatchState(c.cfg.BatchMax)
	for first := range c.in {
		st.calls = collect(st.calls[:0], first, c.in, c.cfg.BatchMax)
		if c.route != nil {
			c.placeRouted(st)
		} else {
			c.placeCalls(st, c.base, st.calls)
		}
		clear(st.calls)
	}
}

func newBatchState(callsMax int) *batchState {
	st := &batchState{calls: make([]*call, 0, callsMax), intern: make(map[string]string)}
	st.view = &st.batch.view
	return st
}

// placeCalls sends calls as one batch to the node at base and hands each
// its answer.
func (c *Client) placeCalls(st *batchState, base string, calls []*call) {
	st.batch.Reset()
	for _, cl := range calls {
		r := cl.req
		st.batch.Add(wire.PlaceOrder{BuyerID: r.BuyerID, Channel: r.Channel, Region: r.Region, DealID: r.DealID, IdempotencyKey: r.IdempotencyKey})
		for _, it := range r.Items {
			st.batch.AddItem(it.SKUID, int32(it.Quantity))
		}
	}
	hdr, err := c.sendOrderBatchTo(context.Background(), base, batchPath, &st.batch)
	for i, cl := range calls {
		if err != nil {
			cl.err = err
		} else if e := st.view.Results[i].Error; e != nil {
			cl.err = errorOf(e)
		} else {
			cl.order = st.fromView(i, cl.req)
			if c.route != nil && len(cl.req.Items) > 0 {
				c.route.learn(cl.req.Items[0].SKUID, cl.order.ID)
			}
		}
		cl.done <- struct{}{}
	}
	if c.route != nil {
		c.route.observe(base, hdr, err, st.view.Results)
	}
}

// fromView builds result i's order. Strings the server echoes back are
// taken from the request (or constants, or the merchant table) when their
// bytes are equal, so an order costs two allocations: its id and its items.
func (st *batchState) fromView(i int, req *OrderRequest) Order {
	w := &st.view.Results[i].Order
	o := Order{
		ID: string(w.OrderID), Status: statusString(w.Status), BuyerID: same(w.BuyerID, req.BuyerID),
		MerchantID: st.internMerchant(w.MerchantID), Total: w.Total, Currency: same(w.Currency, "CNY"),
		Channel: channelString(w.Channel, req.Channel), Region: same(w.Region, req.Region), DealID: same(w.DealID, req.DealID),
		Replayed:  w.Replayed,
		CreatedAt: time.Unix(0, w.CreatedAtUnixNanos).UTC(), PayBy: time.Unix(0, w.PayByUnixNanos).UTC(),
	}
	items := st.view.OrderItems(i)
	o.Items = make([]OrderItem, len(items))
	for k, it := range items {
		sku := ""
		if k < len(req.Items) {
			sku = req.Items[k].SKUID
		}
		o.Items[k] = OrderItem{SKUID: same(it.SKUID, sku), Quantity: int(it.Quantity), UnitPrice: it.UnitPrice, Amount: it.Amount}
	}
	return o
}

// same returns known if b spells it, else a new string of b.
func same(b []byte, known string) string {
	if string(b) == known {
		return known
	}
	return string(b)
}

func statusString(b []byte) string {
	switch string(b) {
	case "pending_payment":
		return "pending_payment"
	case "paid":
		return "paid"
	case "cancelled":
		return "cancelled"
	case "expired":
		return "expired"
	}
	return string(b)
}

func channelString(b []byte, requested string) string {
	switch string(b) {
	case requested:
		return requested
	case "app":
		return "app"
	case "web":
		return "web"
	}
	return string(b)
}

func (st *batchState) internMerchant(b []byte) string {
	if s, ok := st.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(st.intern) < internMax {
		st.intern[s] = s
	}
	return s
}

// retryAfterOf is the wait before retrying a per-order error of a batch
// (which arrives inside a 200, without a Retry-After header): the server's
// default delay for the codes the contract's table marks retryable.
func retryAfterOf(code string) time.Duration {
	if wire.Retryable(code) {
		return time.Second
	}
	return 0
}

// HTTPCodePrefix begins the Code of an *Error whose answer was not the
// contract's error body (a proxy's page, say): "http_" and the status.
const HTTPCodePrefix = "http_"

// decodeError builds an *Error from an error answer of status with its
// Retry-After header (retryAfter, "" when absent) and body.
func decodeError(status int, retryAfter string, body []byte) error {
	var env struct {
		Error jsonError `json:"error"`
	}
	var e *Error
	if err := json.Unmarshal(body, &env); err != nil || env.Error.Code == "" {
		e = &Error{Status: status, Code: HTTPCodePrefix + strconv.Itoa(status), Message: strings.TrimSpace(string(body))}
	} else {
		e = env.Error.apiError(status)
	}
	if retryAfter != "" {
		if s, err := strconv.Atoi(retryAfter); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

// do sends one JSON request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, in, out any) error {
	return c.doAt(ctx, c.base, method, path, hdr, in, out)
}

// doAt is do to the node at base.
func (c *Client) doAt(ctx context.Context, base, method, path string, hdr http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		switch v := in.(type) {
		case io.Reader:
			body = v
		default:
			b, err := json.Marshal(in)
			if err != nil {
				return fmt.Errorf("fest: encode %s %s: %w", method, path, err)
			}
			body = bytes.NewReader(b)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("fest: build %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("fest: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("fest: read %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return decodeError(resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("fest: decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// PlaceOrderJSON places one order with a single JSON POST /v1/orders (no
// batching); IdempotencyKey goes in the Idempotency-Key header.
func (c *Client) PlaceOrderJSON(ctx context.Context, req OrderRequest) (Order, error) {
	var hdr http.Header
	if req.IdempotencyKey != "" {
		hdr = http.Header{"Idempotency-Key": {req.IdempotencyKey}}
	}
	// The body is built as the batches' JSON is, without reflection; a
	// quantity beyond int32 (which the server refuses) goes through
	// encoding/json as it is, so that the server sees what was asked.
	var in any = req
	items := make([]wire.Item, len(req.Items))
	inRange := true
	for i, it := range req.Items {
		inRange = inRange && it.Quantity == int(int32(it.Quantity))
		items[i] = wire.Item{SKUID: it.SKUID, Quantity: int32(it.Quantity)}
	}
	if inRange {
		in = bytes.NewReader(appendOrderJSON(make([]byte, 0, 256), req.BuyerID, items, req.Channel, req.Region, req.DealID, ""))
	}
	var o Order
	err := c.do(ctx, http.MethodPost, "/v1/orders", hdr, in, &o)
	return o, err
}

// Pay pays an order with its total (fen).
func (c *Client) Pay(ctx context.Context, orderID string, amount int64) (Order, error) {
	var o Order
	err := c.doAt(ctx, c.orderBase(orderID), http.MethodPost, "/v1/orders/"+url.PathEscape(orderID)+"/pay", nil, map[string]int64{"amount": amount}, &o)
	return o, err
}

// Cancel cancels a pending order.
func (c *Client) Cancel(ctx context.Context, orderID string) (Order, error) {
	var o Order
	err := c.doAt(ctx, c.orderBase(orderID), http.MethodPost, "/v1/orders/"+url.PathEscape(orderID)+"/cancel", nil, nil, &o)
	return o, err
}

// GetOrder reads an order.
func (c *Client) GetOrder(ctx context.Context, orderID string) (Order, error) {
	var o Order
	err := c.doAt(ctx, c.orderBase(orderID), http.MethodGet, "/v1/orders/"+url.PathEscape(orderID), nil, nil, &o)
	return o, err
}

// BuyerOrders returns a page of a buyer's orders, newest first, and the
// cursor of the next page ("" at the end).
func (c *Client) BuyerOrders(ctx context.Context, buyerID string, limit int, cursor string) ([]Order, string, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var page struct {
		Orders     []Order `json:"orders"`
		NextCursor *string `json:"next_cursor"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/buyers/"+url.PathEscape(buyerID)+"/orders?"+q.Encode(), nil, nil, &page); err != nil {
		return nil, "", err
	}
	next := ""
	if page.NextCursor != nil {
		next = *page.NextCursor
	}
	return page.Orders, next, nil
}

// Brand is a brand of the catalog.
type Brand struct {
	ID            string `json:"brand_id,omitempty"`
	Name          string `json:"name"`
	Country       string `json:"country"`
	FirstFestival int    `json:"first_festival,omitempty"`
	Emerging      bool   `json:"emerging"`
	LastYearGMV   int64  `json:"last_year_gmv"`
}

// Merchant is a shop.
type Merchant struct {
	ID       string `json:"merchant_id,omitempty"`
	Name     string `json:"name"`
	BrandID  string `json:"brand_id"`
	Kind     string `json:"kind"` // brand_store, factory, trader
	Industry string `json:"industry,omitempty"`
	Region   string `json:"region,omitempty"`
}

// SKU is a stock-keeping unit; the stock figures are read-only.
type SKU struct {
	ID             string `json:"sku_id,omitempty"`
	MerchantID     string `json:"merchant_id"`
	BrandID        string `json:"brand_id"`
	Title          string `json:"title"`
	Category       string `json:"category,omitempty"`
	Price          int64  `json:"price"`
	Stock          int64  `json:"stock"`
	Currency       string `json:"currency,omitempty"`
	StockAvailable int64  `json:"stock_available,omitempty"`
	StockReserved  int64  `json:"stock_reserved,omitempty"`
	Sold           int64  `json:"sold,omitempty"`
}

// PutBrand creates or replaces a brand (admin).
func (c *Client) PutBrand(ctx context.Context, b Brand) (Brand, error) {
	id := b.ID
	b.ID = ""
	var out Brand
	err := c.do(ctx, http.MethodPut, "/v1/brands/"+url.PathEscape(id), nil, b, &out)
	return out, err
}

// PutMerchant creates or replaces a merchant (admin).
func (c *Client) PutMerchant(ctx context.Context, m Merchant) (Merchant, error) {
	id := m.ID
	m.ID = ""
	var out Merchant
	err := c.do(ctx, http.MethodPut, "/v1/merchants/"+url.PathEscape(id), nil, m, &out)
	return out, err
}

// PutSKU creates a SKU with Stock as its available stock (admin). On an
// existing SKU use UpdateSKU: a stock change there is a compare-and-set.
func (c *Client) PutSKU(ctx context.Context, s SKU) (SKU, error) {
	body := map[string]any{"merchant_id": s.MerchantID, "brand_id": s.BrandID, "title": s.Title, "category": s.Category, "price": s.Price, "stock": s.Stock}
	var out SKU
	err := c.do(ctx, http.MethodPut, "/v1/skus/"+url.PathEscape(s.ID), nil, body, &out)
	return out, err
}

// UpdateSKU replaces an existing SKU's fields (admin). With expected nil the
// stock is left as it is and s.Stock is ignored; otherwise the stock is set
// to s.Stock only if the available stock is still *expected, else the
// error is a 409 conflict carrying the current stock_available. A sync can
// therefore never make sold or reserved units sellable again.
func (c *Client) UpdateSKU(ctx context.Context, s SKU, expected *int64) (SKU, error) {
	body := map[string]any{"merchant_id": s.MerchantID, "brand_id": s.BrandID, "title": s.Title, "category": s.Category, "price": s.Price}
	if expected != nil {
		body["stock"], body["stock_expected"] = s.Stock, *expected
	}
	var out SKU
	err := c.do(ctx, http.MethodPut, "/v1/skus/"+url.PathEscape(s.ID), nil, body, &out)
	return out, err
}

// GetSKU reads a SKU with its stock figures.
func (c *Client) GetSKU(ctx context.Context, id string) (SKU, error) {
	var out SKU
	err := c.do(ctx, http.MethodGet, "/v1/skus/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// AdjustStock adds delta to a SKU's available stock (admin).
func (c *Client) AdjustStock(ctx context.Context, id string, delta int64) (SKU, error) {
	var out SKU
	err := c.do(ctx, http.MethodPost, "/v1/skus/"+url.PathEscape(id)+"/stock", nil, map[string]int64{"delta": delta}, &out)
	return out, err
}

// ImportResult counts the objects of an import.
type ImportResult struct {
	Brand    int `json:"brand"`
	Merchant int `json:"merchant"`
	SKU      int `json:"sku"`
}

// ImportCatalog posts an NDJSON catalog (admin): one object a line with
// "type" (brand, merchant, sku), "id" and the fields of the matching PUT.
func (c *Client) ImportCatalog(ctx context.Context, ndjson io.Reader) (ImportResult, error) {
	var out struct {
		Imported ImportResult `json:"imported"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/catalog:import", http.Header{"Content-Type": {"application/x-ndjson"}}, ndjson, &out)
	return out.Imported, err
}
