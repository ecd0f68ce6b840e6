package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/fest-platform/fest/wire"
)

// ErrBadAnswer wraps an answer the contract does not allow: a body that
// does not decode, or a batch answer with another number of results than
// the batch had.
var ErrBadAnswer = errors.New("answer outside the contract")

// OrderBatch is a batch of orders for PlaceBatch and PlaceBatchJSON, with
// the buffers of its request and answer: reused (Reset, Add, place), it
// allocates nothing per order (the placed orders' ids share one string per
// answer).
//
// The orders are encoded as they are added, straight into the protobuf
// request (wire's OrderBatchRequest, the bytes wire.AppendRequest writes):
// the batch keeps no copy of them, so each order's strings are read once,
// when the caller has just made them, and a thousand orders' request is
// 40 KB of memory rather than that and 150 KB of records read again to
// encode it. The JSON form and the routed parts read the orders back from
// the request (wire.DecodeRequestView).
type OrderBatch struct {
	// Results is the answer for each order, in the order they were added,
	// after a place call returned nil.
	Results []BatchResult

	n    int    // the orders added
	body []byte // the request, up to the open order's items
	// The order added last is open while items may follow it: its message
	// starts at body[start:] after a one-byte length, and its fields after
	// the items (channel, region, deal, key, time) are in tail until it is
	// closed (closeOrder).
	open  bool
	start int
	tail  wire.PlaceOrder // Items unused

	req    wire.RequestView // body read back, for PlaceBatchJSON and the routed parts
	items  []wire.Item      // an order's items from req, for the JSON form
	text   []byte           // the JSON request
	resp   []byte
	view   wire.ResponseView
	one    wire.ResponseView // an error result's, in the lean decoding
	answer jsonBatchAnswer
}

// BatchResult is the answer for one order of a batch: Err is nil when the
// order was placed.
type BatchResult struct {
	OrderID string
	Status  string // pending_payment, or the earlier order's status on a replayed idempotency key
	Total   int64  // fen
	Err     *Error
}

// Reset empties the batch, keeping its buffers. It does not clear them:
// the next orders overwrite the last batch's, which keep at most one
// batch's strings alive meanwhile, and a pass over a thousand orders'
// buffers per batch is a cost the generator's budget has no room for.
func (b *OrderBatch) Reset() {
	b.n, b.body, b.open, b.tail, b.Results = 0, b.body[:0], false, wire.PlaceOrder{}, b.Results[:0]
}

// Len is the number of orders added since Reset.
func (b *OrderBatch) Len() int { return b.n }

// Add appends an order; its Items are encoded at once, so the caller may
// reuse them. AddItem appends more items to it.
func (b *OrderBatch) Add(o wire.PlaceOrder) {
	b.closeOrder()
	body := append(b.body, tagRequestOrder, 0)
	b.start = len(body)
	body = appendStringField(body, tagPlaceBuyerID, o.BuyerID)
	for i := range o.Items {
		body = appendItem(body, o.Items[i].SKUID, o.Items[i].Quantity)
	}
	b.body = body
	o.Items = nil
	b.tail, b.open = o, true
	b.n++
}

// AddItem appends an item to the order added last.
func (b *OrderBatch) AddItem(skuID string, quantity int32) {
	if !b.open {
		panic("client: OrderBatch.AddItem before Add, or after the batch was sent")
	}
	b.body = appendItem(b.body, skuID, quantity)
}

// encodeProto finishes the request in b.body: its last order closed.
func (b *OrderBatch) encodeProto() { b.closeOrder() }

// readBack decodes the request into b.req, for the JSON form and the
// routed parts.
func (b *OrderBatch) readBack() {
	b.encodeProto()
	if err := wire.DecodeRequestView(b.body, &b.req, b.n); err != nil || len(b.req.Orders) != b.n {
		// The request is the batch's own encoding of what Add was given.
		panic(fmt.Sprintf("client: an OrderBatch's own request of %d orders does not decode (%d orders): %v", b.n, len(b.req.Orders), err))
	}
}

// viewString is the bytes of v as a string without a copy: for views of
// b.body read within one call, while b.body is not written.
func viewString(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	return unsafe.String(&v[0], len(v))
}

// Paths of the batch endpoint. A BatchResult is an order's id, status and
// total, which the brief answer holds (docs/api.md, Brief batch answers):
// the batch calls ask for it, and only the single-order calls coalesced
// into batches, which return whole orders, ask for the full one. A server
// older than the option ignores it and answers in full, which decodes the
// same.
const (
	batchPath      = "/v1/orders:batch"
	batchPathBrief = "/v1/orders:batch?answer=brief"
)

// sendOrderBatchTo posts the batch in protobuf to path on the node at base and
// decodes the answer into b.view, whose views point into b.resp; the answer
// has one result per order. It returns the answer's headers.
func (c *Client) sendOrderBatchTo(ctx context.Context, base, path string, b *OrderBatch) (http.Header, error) {
	b.encodeProto()
	hdr, err := c.postBodyTo(ctx, base, path, "batch", wire.ContentType, b.body, &b.resp)
	if err != nil {
		return hdr, err
	}
	return hdr, b.decodeView()
}

// decodeView decodes the answer in b.resp into b.view, strictly, with one
// result per order.
func (b *OrderBatch) decodeView() error {
	if err := wire.DecodeResponseView(b.resp, &b.view); err != nil {
		return fmt.Errorf("fest: decode batch response: %w: %w", ErrBadAnswer, err)
	}
	if len(b.view.Results) != b.n {
		return fmt.Errorf("fest: %w: batch answered %d results for %d orders", ErrBadAnswer, len(b.view.Results), b.n)
	}
	return nil
}

// PlaceBatch places the batch's orders with one protobuf
// POST /v1/orders:batch (at most wire.BatchOrdersMax orders) and fills
// b.Results. The error is the whole request's: a transport failure, an
// *Error answer, or ErrBadAnswer; each order's own refusal is its
// result's Err.
func (c *Client) PlaceBatch(ctx context.Context, b *OrderBatch) error {
	// A BatchResult is the order's id, status and total: the answer's
	// items need no decoding. (The single-order calls, which share the
	// batch's sending, read them.)
	b.view.SkipItems = true
	if c.route != nil {
		return c.placeBatchRouted(ctx, b)
	}
	b.encodeProto()
	if _, err := c.postBodyTo(ctx, c.base, batchPathBrief, "batch", wire.ContentType, b.body, &b.resp); err != nil {
		return err
	}
	if b.decodeLean() {
		return nil
	}
	if err := b.decodeView(); err != nil {
		return err
	}
	b.fillResults()
	return nil
}

// fillResults sets b.Results from b.view. The placed orders' ids are
// copied into one string, of which each result's OrderID is a substring:
// one allocation for the answer rather than one per order (a kept id
// keeps its answer's ids alive, a few bytes per order).
func (b *OrderBatch) fillResults() {
	var n int
	for i := range b.view.Results {
		n += len(b.view.Results[i].Order.OrderID)
	}
	var sb strings.Builder
	sb.Grow(n)
	for i := range b.view.Results {
		sb.Write(b.view.Results[i].Order.OrderID)
	}
	ids, at := sb.String(), 0
	b.Results = b.Results[:0]
	for i := range b.view.Results {
		r := &b.view.Results[i]
		id := ids[at : at+len(r.Order.OrderID)]
		at += len(id)
		if r.Error != nil {
			b.Results = append(b.Results, BatchResult{Err: errorOf(r.Error)})
			continue
		}
		b.Results = append(b.Results, BatchResult{OrderID: id, Status: statusString(r.Order.Status), Total: r.Order.Total})
	}
}

// jsonBatchAnswer is the part of a JSON batch or settle answer the batch
// calls read.
type jsonBatchAnswer struct {
	Results []jsonBatchResult `json:"results"`
}

type jsonBatchResult struct {
	Order *struct {
		OrderID string `json:"order_id"`
		Status  string `json:"status"`
		Total   int64  `json:"total"`
	} `json:"order"`
	Error *jsonError `json:"error"`
}

// jsonError is the contract's error object.
type jsonError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field"`
	SKUID     string `json:"sku_id"`
	Available int64  `json:"available"`
	// StockAvailable is the current stock of a 409 conflict.
	StockAvailable int64 `json:"stock_available"`
}

// apiError is e as an *Error with the status the contract gives its code.
func (e *jsonError) apiError(status int) *Error {
	return &Error{Status: status, Code: e.Code, Message: e.Message, Field: e.Field, SKUID: e.SKUID, Available: e.Available, StockAvailable: e.StockAvailable}
}

// postJSONBatch posts a JSON batch body and decodes its answer into
// answer, which must hold n results.
func (c *Client) postJSONBatch(ctx context.Context, path, what string, body []byte, resp *[]byte, answer *jsonBatchAnswer, n int) error {
	if err := c.postBody(ctx, path, what, "application/json", body, resp); err != nil {
		return err
	}
	clear(answer.Results)
	answer.Results = answer.Results[:0]
	if err := json.Unmarshal(*resp, answer); err != nil {
		return fmt.Errorf("fest: decode %s response: %w: %w", what, ErrBadAnswer, err)
	}
	if len(answer.Results) != n {
		return fmt.Errorf("fest: %w: %s answered %d results for %d", ErrBadAnswer, what, len(answer.Results), n)
	}
	return nil
}

// PlaceBatchJSON is PlaceBatch in the JSON form of POST /v1/orders:batch.
func (c *Client) PlaceBatchJSON(ctx context.Context, b *OrderBatch) error {
	b.readBack()
	text := append(b.text[:0], `{"orders":[`...)
	for i := range b.req.Orders {
		if i > 0 {
			text = append(text, ',')
		}
		o := &b.req.Orders[i]
		b.items = b.items[:0]
		for _, it := range b.req.OrderItems(i) {
			b.items = append(b.items, wire.Item{SKUID: viewString(it.SKUID), Quantity: it.Quantity})
		}
		text = appendOrderJSON(text, viewString(o.BuyerID), b.items, viewString(o.Channel), viewString(o.Region), viewString(o.DealID), viewString(o.IdempotencyKey))
	}
	b.text = append(text, "]}"...)
	if err := c.postJSONBatch(ctx, batchPathBrief, "batch", b.text, &b.resp, &b.answer, b.n); err != nil {
		return err
	}
	b.Results = b.Results[:0]
	for _, r := range b.answer.Results {
		switch {
		case r.Error != nil:
			b.Results = append(b.Results, BatchResult{Err: r.Error.apiError(wire.StatusOf(r.Error.Code))})
		case r.Order != nil:
			b.Results = append(b.Results, BatchResult{OrderID: r.Order.OrderID, Status: r.Order.Status, Total: r.Order.Total})
		default:
			return fmt.Errorf("fest: %w: batch result with neither order nor error", ErrBadAnswer)
		}
	}
	return nil
}

// appendOrderJSON appends the JSON of one order request.
func appendOrderJSON(b []byte, buyerID string, items []wire.Item, channel, region, dealID, idemKey string) []byte {
	o := jsonObject{b: b}
	o.open().str("buyer_id", buyerID).key("items")
	o.b = append(o.b, '[')
	for i, it := range items {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.open().str("sku_id", it.SKUID).num("quantity", int64(it.Quantity)).close()
	}
	o.b = append(o.b, ']')
	return o.strIf("channel", channel).strIf("region", region).strIf("deal_id", dealID).strIf("idempotency_key", idemKey).close().b
}

// jsonObject appends the fields of JSON objects to b: open, then str, num
// and strIf per field, then close. It builds request bodies without
// reflection; strings are escaped as the server escapes its own.
type jsonObject struct {
	b     []byte
	first bool // no field yet in the object just opened
}

func (o *jsonObject) open() *jsonObject {
	o.b, o.first = append(o.b, '{'), true
	return o
}

func (o *jsonObject) close() *jsonObject {
	o.b, o.first = append(o.b, '}'), false
	return o
}

// key appends a field's name and colon, after a comma unless it is the
// object's first field.
func (o *jsonObject) key(name string) *jsonObject {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = append(append(append(o.b, '"'), name...), '"', ':')
	return o
}

func (o *jsonObject) str(name, v string) *jsonObject {
	o.key(name)
	o.b = wire.AppendJSONString(o.b, v)
	return o
}

// strIf appends a string field unless v is empty (omitempty).
func (o *jsonObject) strIf(name, v string) *jsonObject {
	if v == "" {
		return o
	}
	return o.str(name, v)
}

func (o *jsonObject) num(name string, v int64) *jsonObject {
	o.key(name)
	o.b = strconv.AppendInt(o.b, v, 10)
	return o
}

func (o *jsonObject) boolean(name string, v bool) *jsonObject {
	o.key(name)
	o.b = strconv.AppendBool(o.b, v)
	return o
}

// SettleBatch is a batch of payments and cancellations for SettleBatch
// and SettleBatchJSON, with the buffers of its request and answer.
type SettleBatch struct {
	// Results is the answer for each action, in the order they were added,
	// after a settle call returned nil.
	Results []SettleResult

	acts   []wire.Settle
	body   []byte
	resp   []byte
	view   wire.SettleResponseView
	one    wire.SettleResponseView // an error result's, in the lean decoding
	answer jsonBatchAnswer
}

// SettleResult is the answer for one action: Err is nil when it succeeded.
type SettleResult struct {
	Settled
	Err *Error
}

// Reset empties the batch, keeping its buffers. As OrderBatch.Reset, it
// does not clear them: the next actions overwrite the last batch's.
func (b *SettleBatch) Reset() {
	b.acts, b.Results = b.acts[:0], b.Results[:0]
}

// Len is the number of actions added since Reset.
func (b *SettleBatch) Len() int { return len(b.acts) }

// Pay adds the payment of an order with its total (fen).
func (b *SettleBatch) Pay(orderID string, amount int64) {
	b.acts = append(b.acts, wire.Settle{OrderID: orderID, Amount: amount})
}

// Cancel adds the cancellation of a pending order.
func (b *SettleBatch) Cancel(orderID string) {
	b.acts = append(b.acts, wire.Settle{OrderID: orderID, Cancel: true})
}

// At gives the action added last its festival time (unix ns), for a server
// run with --rehearsal-clock; SettleBatch (protobuf) sends it.
func (b *SettleBatch) At(t int64) { b.acts[len(b.acts)-1].RehearsalTime = t }

// sendSettleBatchTo posts the actions in protobuf to the node at base,
// POST /v1/orders:settle, and decodes the answer into b.view, whose views
// point into b.resp. It returns the answer's headers.
func (c *Client) sendSettleBatchTo(ctx context.Context, base string, b *SettleBatch) (http.Header, error) {
	b.body = wire.AppendSettleRequest(b.body[:0], b.acts)
	hdr, err := c.postBodyTo(ctx, base, "/v1/orders:settle", "settle", wire.ContentType, b.body, &b.resp)
	if err != nil {
		return hdr, err
	}
	return hdr, b.decodeView()
}

// decodeView decodes the answer in b.resp into b.view, strictly, with one
// result per action.
func (b *SettleBatch) decodeView() error {
	if err := wire.DecodeSettleResponseView(b.resp, &b.view); err != nil {
		return fmt.Errorf("fest: decode settle response: %w: %w", ErrBadAnswer, err)
	}
	if len(b.view.Results) != len(b.acts) {
		return fmt.Errorf("fest: %w: settle answered %d results for %d actions", ErrBadAnswer, len(b.view.Results), len(b.acts))
	}
	return nil
}

// settledOf is result i of b.view; strings equal to the action's are the
// action's own, so a success allocates nothing.
func (b *SettleBatch) settledOf(i int) SettleResult {
	r := &b.view.Results[i]
	if r.Error != nil {
		return SettleResult{Settled: Settled{OrderID: same(r.OrderID, b.acts[i].OrderID)}, Err: errorOf(r.Error)}
	}
	s := Settled{OrderID: same(r.OrderID, b.acts[i].OrderID), Status: statusString(r.Status), Total: r.Total}
	if r.ChangedAtUnixNanos != 0 {
		s.ChangedAt = time.Unix(0, r.ChangedAtUnixNanos).UTC()
	}
	return SettleResult{Settled: s}
}

// SettleBatch pays and cancels the batch's orders with one protobuf
// POST /v1/orders:settle (at most wire.BatchOrdersMax actions) and fills
// b.Results. Errors are as PlaceBatch's.
func (c *Client) SettleBatch(ctx context.Context, b *SettleBatch) error {
	if c.route != nil {
		return c.settleBatchRouted(ctx, b)
	}
	b.body = wire.AppendSettleRequest(b.body[:0], b.acts)
	if _, err := c.postBodyTo(ctx, c.base, "/v1/orders:settle", "settle", wire.ContentType, b.body, &b.resp); err != nil {
		return err
	}
	if b.decodeLean() {
		return nil
	}
	if err := b.decodeView(); err != nil {
		return err
	}
	b.Results = b.Results[:0]
	for i := range b.view.Results {
		b.Results = append(b.Results, b.settledOf(i))
	}
	clear(b.view.Results)
	return nil
}

// SettleBatchJSON is SettleBatch in the JSON form of POST /v1/orders:settle;
// its results carry the order's status (and total) but no change time.
func (c *Client) SettleBatchJSON(ctx context.Context, b *SettleBatch) error {
	o := jsonObject{b: append(b.body[:0], `{"actions":[`...)}
	for i, a := range b.acts {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.open().str("order_id", a.OrderID)
		if a.Cancel {
			o.str("action", "cancel")
		} else {
			o.str("action", "pay").num("amount", a.Amount)
		}
		o.close()
	}
	b.body = append(o.b, "]}"...)
	if err := c.postJSONBatch(ctx, "/v1/orders:settle", "settle", b.body, &b.resp, &b.answer, len(b.acts)); err != nil {
		return err
	}
	b.Results = b.Results[:0]
	for i, r := range b.answer.Results {
		switch {
		case r.Error != nil:
			b.Results = append(b.Results, SettleResult{Settled: Settled{OrderID: b.acts[i].OrderID}, Err: r.Error.apiError(wire.StatusOf(r.Error.Code))})
		case r.Order != nil:
			b.Results = append(b.Results, SettleResult{Settled: Settled{OrderID: same([]byte(r.Order.OrderID), b.acts[i].OrderID), Status: r.Order.Status, Total: r.Order.Total}})
		default:
			return fmt.Errorf("fest: %w: settle result with neither order nor error", ErrBadAnswer)
		}
	}
	return nil
}

// postBody posts body of content type ctype to path and reads a 200
// answer into *resp; any other status becomes the API's *Error. what names
// the request in errors.
func (c *Client) postBody(ctx context.Context, path, what, ctype string, body []byte, resp *[]byte) error {
	_, err := c.postBodyTo(ctx, c.base, path, what, ctype, body, resp)
	return err
}

// postBodyTo is postBody to the node at base; it returns the answer's
// headers (nil when there was no answer). Over the client's own
// connections (Config.OwnConns) those are only the ones the client reads,
// Retry-After and Fest-Forwarded-To, and nil when neither was sent.
func (c *Client) postBodyTo(ctx context.Context, base, path, what, ctype string, body []byte, resp *[]byte) (http.Header, error) {
	if p := c.poolFor(base); p != nil {
		return c.postOwn(ctx, p, path, what, ctype, body, resp)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("fest: build %s request: %w", what, err)
	}
	ct := jsonContentType
	if ctype == wire.ContentType {
		ct = protoContentType
	}
	req.Header["Content-Type"] = ct
	req.Header["Accept"] = ct
	req.Header["Authorization"] = c.auth
	r, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fest: send %s: %w", what, err)
	}
	defer r.Body.Close()
	if *resp, err = readAll((*resp)[:0], r.Body); err != nil {
		return r.Header, fmt.Errorf("fest: read %s response: %w", what, err)
	}
	if r.StatusCode != http.StatusOK {
		return r.Header, decodeError(r.StatusCode, r.Header.Get("Retry-After"), *resp)
	}
	return r.Header, nil
}

// postOwn is postBodyTo over the client's own connections of pool p.
func (c *Client) postOwn(ctx context.Context, p *connPool, path, what, ctype string, body []byte, resp *[]byte) (http.Header, error) {
	ans, err := p.post(ctx, time.Now().Add(c.cfg.Timeout), path, ctype, c.auth[0], body, resp)
	var hdr http.Header
	if ans.retryAfter != "" || ans.forwardedTo != "" {
		hdr = http.Header{}
		if ans.retryAfter != "" {
			hdr["Retry-After"] = []string{ans.retryAfter}
		}
		if ans.forwardedTo != "" {
			hdr[headerForwardedTo] = []string{ans.forwardedTo}
		}
	}
	switch {
	case err != nil && ans.status == 0:
		return nil, fmt.Errorf("fest: send %s: %w", what, err)
	case err != nil:
		return hdr, fmt.Errorf("fest: read %s response: %w", what, err)
	case ans.status != http.StatusOK:
		return hdr, decodeError(ans.status, ans.retryAfter, *resp)
	}
	return hdr, nil
}

// readAll appends what r holds to b, as io.ReadAll does, into b's
// capacity first: a reused buffer reads an answer without allocating.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

var (
	protoContentType = []string{wire.ContentType}
	jsonContentType  = []string{"application/json"}
)
