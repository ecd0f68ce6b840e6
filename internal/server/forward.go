package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// peer is another node: its address, its own pool of kept-alive HTTP/1.1
// connections, and the bound on the forwards in flight to it.
type peer struct {
	node, addr string
	client     *http.Client
	transport  *http.Transport // nil when ClusterConfig.Transport is used
	inflight   chan struct{}   // capacity PeerInflightMax
}

// peerLocked returns the peer for node at addr, made (or remade, when its
// address changed) as needed. REQUIRES: c.peersMu held.
func (c *clusterState) peerLocked(node, addr string) *peer {
	addr = normalizeAddr(addr)
	if p := c.peers[node]; p != nil {
		if p.addr == addr {
			return p
		}
		p.close()
	}
	p := &peer{node: node, addr: addr, inflight: make(chan struct{}, c.cfg.PeerInflightMax)}
	rt := c.cfg.Transport
	if rt == nil {
		// HTTP/1.1 only: one request per connection at a time, as the
		// pool is sized, and no multiplexing to hide a slow peer behind.
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		p.transport = &http.Transport{
			Protocols:           &protocols,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxConnsPerHost:     c.cfg.PeerConnsMax,
			MaxIdleConns:        c.cfg.PeerConnsMax,
			MaxIdleConnsPerHost: c.cfg.PeerConnsMax,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		rt = p.transport
	}
	p.client = &http.Client{Transport: rt, Timeout: c.cfg.ForwardTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c.peers[node] = p
	return p
}

// close drops the peer's idle connections; requests in flight finish.
func (p *peer) close() {
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
}

// peerAnswer is a peer's answer, its body read whole.
type peerAnswer struct {
	status int
	header http.Header
	body   []byte
}

// notOwner reports whether the peer refused the request for a partition
// it does not serve (nothing of it was applied).
func (a *peerAnswer) notOwner() bool {
	return a.status == http.StatusServiceUnavailable && a.header.Get(HeaderNotOwner) != ""
}

// send forwards one request to p and reads its answer, at most
// PeerAnswerBytesMax of it. Authorization goes unchanged: the peer checks
// the caller's token itself.
func (c *clusterState) send(ctx context.Context, t *routeTable, p *peer, method, uri string, from http.Header, after, contentType string, body []byte, commands int) (*peerAnswer, error) {
	select {
	case p.inflight <- struct{}{}:
	default:
		select {
		case p.inflight <- struct{}{}:
		case <-ctx.Done():
			c.metrics.errors.WithLabelValues(p.node, "busy").Inc()
			return nil, errPeerBusy
		}
	}
	defer func() { <-p.inflight }()
	if t.tentative[p] {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.TentativeForwardTimeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.addr+uri, rd)
	if err != nil {
		return nil, err
	}
	for _, h := range forwardedHeaders {
		if h == "Idempotency-Key" && (method != http.MethodPost || uri != "/v1/orders") {
			// Only a single order honours the header. net/http resends a
			// request that carries it when a reused connection fails before
			// the answer (it takes the header for a promise that a resend
			// is harmless), so on a batch part, which the header does not
			// deduplicate, it could apply the part twice.
			continue
		}
		if v := from.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Accept", contentType)
	}
	req.Header.Set(HeaderForwardedBy, t.node)
	if after != "" {
		req.Header.Set(HeaderAfter, after)
	}
	c.metrics.requests.WithLabelValues(p.node).Inc()
	c.metrics.orders.WithLabelValues(p.node).Add(float64(commands))
	resp, err := p.client.Do(req)
	if err != nil {
		c.metrics.errors.WithLabelValues(p.node, "unreachable").Inc()
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.PeerAnswerBytesMax+1))
	if err == nil && int64(len(b)) > c.cfg.PeerAnswerBytesMax {
		err = errors.New("answer over " + strconv.FormatInt(c.cfg.PeerAnswerBytesMax, 10) + " bytes")
	}
	if err != nil {
		c.metrics.errors.WithLabelValues(p.node, "answer").Inc()
		return nil, err
	}
	a := &peerAnswer{status: resp.StatusCode, header: resp.Header, body: b}
	if a.notOwner() {
		c.metrics.errors.WithLabelValues(p.node, "not_owner").Inc()
	}
	return a, nil
}

// forwardedHeaders are the request headers a forward carries over.
var forwardedHeaders = []string{"Authorization", "Content-Type", "Accept", "Idempotency-Key"}

// errUnreachable answers the entries of a peer that could not be reached
// or answered outside the protocol. The command may or may not have been
// applied there, as with any 503.
func errUnreachable(p *peer, err error) *apiError {
	return newError(wire.CodeUnavailable, "node "+p.node+" did not answer: "+err.Error())
}

// byOrderID wraps a handler whose path names an order or a parcel: in a
// cluster, a request for a partition owned elsewhere is forwarded. On a
// single node it is h itself.
func (s *Server) byOrderID(h handlerFunc, parse func(*http.Request) (engine.OrderID, *apiError)) handlerFunc {
	if s.cl == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request, be *backend) {
		id, aerr := parse(r)
		if aerr != nil {
			h(w, r, be) // the handler answers the malformed id
			return
		}
		req := engine.Request{Command: engine.Command{Kind: engine.KindGetOrder, OrderID: id}}
		if !s.cl.elsewhere(w, r, be, &req, nil, h) {
			h(w, r, be)
		}
	}
}

// bySKU wraps a handler whose path names a SKU, as byOrderID does: the
// SKU's partition is the router's (the engine's directory).
func (s *Server) bySKU(h handlerFunc) handlerFunc {
	if s.cl == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request, be *backend) {
		req := engine.Request{Command: engine.Command{Kind: engine.KindGetSKU, SKUID: r.PathValue("sku_id")}}
		if !s.cl.elsewhere(w, r, be, &req, nil, h) {
			h(w, r, be)
		}
	}
}

// elsewhere serves a single request whose command is req when its
// partition is owned by another node, and reports whether it did; false
// means: serve it here. body is the request's body when already read
// (nil: it is read here, up to BodyBytesMax).
func (c *clusterState) elsewhere(w http.ResponseWriter, r *http.Request, be *backend, req *engine.Request, body []byte, h handlerFunc) bool {
	rt := c.router()
	p, ok := rt.Locate(req)
	if !ok || rt.Owns(p) {
		return false
	}
	s := c.s
	if r.Header.Get(HeaderForwardedBy) != "" {
		s.writeNotOwner(w, p)
		return true
	}
	if body == nil && r.Method != http.MethodGet {
		bp, aerr := s.readBody(r, s.cfg.BodyBytesMax)
		if aerr != nil {
			s.writeError(w, aerr)
			return true
		}
		defer s.putBuf(bp)
		body = *bp
	}
	if c.forwardSingle(w, r, p, body, false) {
		return true
	}
	// The partition moved here: serve it with the body again.
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	h(w, r, be)
	return true
}

// forwardSingle forwards a single request for partition p, whose body is
// body, to p's owner and relays its answer; false means the partition
// moved here meanwhile and nothing was answered: serve it here. A causal
// request (a catalog or live write) carries HeaderAfter, and its owner's
// positions are recorded and waited for here before the answer is
// relayed, so that the caller's next request to this node sees the write.
func (c *clusterState) forwardSingle(w http.ResponseWriter, r *http.Request, p int, body []byte, causal bool) bool {
	s := c.s
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.ForwardTimeout)
	defer cancel()
	t := c.routes()
	var after string
	if causal {
		after = c.afterHeader()
	}
	for attempt := 0; ; attempt++ {
		o := t.owner(p)
		if o == self || o == nil {
			s.writeError(w, errNoOwner(p))
			return true
		}
		a, err := c.send(ctx, t, o, r.Method, r.URL.RequestURI(), r.Header, after, "", body, 1)
		if err != nil {
			s.writeError(w, errUnreachable(o, err))
			return true
		}
		if a.notOwner() && attempt == 0 {
			t = c.rebuild(t)
			if c.router().Owns(p) {
				return false
			}
			continue
		}
		if causal {
			c.learn(ctx, a.header.Get(HeaderPositions))
		}
		relay(w, a, o)
		return true
	}
}

// relay writes a peer's answer as this node's.
func relay(w http.ResponseWriter, a *peerAnswer, from *peer) {
	h := w.Header()
	for _, k := range []string{"Content-Type", "Retry-After", HeaderNotOwner} {
		if v := a.header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	h.Set(HeaderForwardedTo, from.node)
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// batchKind is what forwarding needs to know of a batch endpoint. Parts
// always travel between nodes in protobuf, whatever the caller's format:
// it is the cheaper to decode by far, and one format between nodes is one
// to get right. A JSON caller's answer is rendered from the protobuf
// results (forward_answer.go).
type batchKind struct {
	path string
	// errField is the field number of the error in one protobuf result.
	errField int32
	// encode appends a protobuf body of the endpoint holding the commands
	// reqs[idx...].
	encode func(b []byte, reqs []engine.Request, idx []int32) []byte
}

var ordersBatch = &batchKind{path: "/v1/orders:batch", errField: int32(wire.OrderResultError), encode: encodeOrdersProto}

var settleBatch = &batchKind{path: "/v1/orders:settle", errField: int32(wire.SettleResultError), encode: encodeSettleProto}

// remoteAnswer is the answer to one command of a batch that was not
// applied by this node's engine.
type remoteAnswer struct {
	set bool
	// err is an answer given here: no owner, the owner unreachable.
	err *apiError
	// raw is the peer's answer, one tagged protobuf result, sub its index
	// in the part sent; isErr marks an error, whose field path names sub
	// and is rewritten when rendered.
	raw   []byte
	sub   int
	isErr bool
}

// remoteAnswers are the answers of a batch's commands, by request index,
// that the local engine did not give.
type remoteAnswers struct {
	byReq []remoteAnswer
	// forwardedTo names the peers the batch went to, for HeaderForwardedTo.
	mu          sync.Mutex
	forwardedTo []string
}

// get returns the remote answer of request i, nil when the local engine
// answered it.
func (ra *remoteAnswers) get(i int) *remoteAnswer {
	if ra == nil || i < 0 || !ra.byReq[i].set {
		return nil
	}
	return &ra.byReq[i]
}

func (ra *remoteAnswers) answer(i int, e *apiError) {
	ra.byReq[i] = remoteAnswer{set: true, err: e}
}

func (ra *remoteAnswers) went(node string) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for _, n := range ra.forwardedTo {
		if n == node {
			return
		}
	}
	ra.forwardedTo = append(ra.forwardedTo, node)
}

// dispatch applies a decoded batch across the cluster: the commands this
// node serves go to its engine, the others to their owners, a part per
// owner, all at once; it returns when every command has its answer. It
// returns nil answers when every command was local (the batch was applied
// exactly as on a single node), and an error only for a forwarded request
// naming a partition this node does not serve (nothing was applied).
func (c *clusterState) dispatch(r *http.Request, be *backend, kind *batchKind, batch *engine.Batch) (*remoteAnswers, *apiError, int) {
	rt := c.router()
	n := len(batch.Requests)
	forwardedIn := r.Header.Get(HeaderForwardedBy) != ""
	var t *routeTable
	var dest []*peer // by request; nil: local
	var ra *remoteAnswers
	for i := range batch.Requests {
		p, ok := rt.Locate(&batch.Requests[i])
		if !ok || rt.Owns(p) {
			continue
		}
		if forwardedIn {
			return nil, errNotOwner(p), p
		}
		if dest == nil {
			t = c.routes()
			dest = make([]*peer, n)
			ra = &remoteAnswers{byReq: make([]remoteAnswer, n)}
		}
		switch o := t.owner(p); o {
		case nil, self:
			ra.answer(i, errNoOwner(p))
		default:
			dest[i] = o
		}
	}
	if dest == nil {
		be.eng.Submit(batch)
		<-batch.Done()
		return nil, nil, 0
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.ForwardTimeout)
	defer cancel()
	var local []int32
	parts := map[*peer][]int32{}
	for i, o := range dest {
		switch {
		case ra.byReq[i].set:
		case o == nil:
			local = append(local, int32(i))
		default:
			parts[o] = append(parts[o], int32(i))
		}
	}
	var wg sync.WaitGroup
	for o, idx := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.forwardPart(ctx, r, be, kind, batch, o, idx, ra, t, 0)
		}()
	}
	c.applyLocal(be, batch, local)
	wg.Wait()
	return ra, nil, 0
}

// applyLocal runs the commands batch.Requests[idx...] on this node's
// engine, in a batch of their own, and puts the answers back in place.
func (c *clusterState) applyLocal(be *backend, batch *engine.Batch, idx []int32) {
	if len(idx) == 0 {
		return
	}
	lb := engine.NewBatch(len(idx))
	for _, i := range idx {
		lb.Add(batch.Requests[i].Command)
	}
	be.eng.Submit(lb)
	<-lb.Done()
	for k, i := range idx {
		batch.Requests[i] = lb.Requests[k]
	}
}

// forwardPart sends the commands batch.Requests[idx...] to o as one
// request of the batch endpoint and fills their answers. When o answers
// that it does not own one of them, the view is refreshed and the part is
// dispatched again, once: to this node's engine, to the new owners, or
// answered unavailable.
func (c *clusterState) forwardPart(ctx context.Context, r *http.Request, be *backend, kind *batchKind, batch *engine.Batch, o *peer, idx []int32, ra *remoteAnswers, t *routeTable, attempt int) {
	ra.went(o.node)
	body := kind.encode(nil, batch.Requests, idx)
	uri := kind.path
	if q := r.URL.RawQuery; q != "" {
		// The caller's options (a batch's answer=brief) hold for its parts.
		uri += "?" + q
	}
	a, err := c.send(ctx, t, o, http.MethodPost, uri, r.Header, "", wire.ContentType, body, len(idx))
	fail := func(e *apiError) {
		for _, i := range idx {
			ra.answer(int(i), e)
		}
	}
	switch {
	case err != nil:
		fail(errUnreachable(o, err))
	case a.notOwner() && attempt == 0:
		c.redispatch(ctx, r, be, kind, batch, idx, ra, c.rebuild(t))
	case a.status != http.StatusOK:
		fail(peerError(a))
	default:
		answers := make([]remoteAnswer, len(idx))
		if err := splitProtoResults(a.body, int(kind.errField), answers); err != nil {
			c.metrics.errors.WithLabelValues(o.node, "answer").Inc()
			fail(errUnreachable(o, err))
			return
		}
		for k, i := range idx {
			ra.byReq[i] = answers[k]
		}
	}
}

// redispatch sends a refused part again by the refreshed table t.
func (c *clusterState) redispatch(ctx context.Context, r *http.Request, be *backend, kind *batchKind, batch *engine.Batch, idx []int32, ra *remoteAnswers, t *routeTable) {
	rt := c.router()
	var local []int32
	parts := map[*peer][]int32{}
	for _, i := range idx {
		p, ok := rt.Locate(&batch.Requests[i])
		switch o := t.owner(p); {
		case !ok || rt.Owns(p):
			local = append(local, i)
		case o == nil || o == self:
			ra.answer(int(i), errNoOwner(p))
		default:
			parts[o] = append(parts[o], i)
		}
	}
	var wg sync.WaitGroup
	for o, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.forwardPart(ctx, r, be, kind, batch, o, part, ra, t, 1)
		}()
	}
	c.applyLocal(be, batch, local)
	wg.Wait()
}

// peerError is the error a peer answered a whole forwarded request with,
// as this node's answer to each of its commands.
func peerError(a *peerAnswer) *apiError {
	if e := decodeJSONError(a.body); e != nil {
		return e
	}
	return newError(wire.CodeUnavailable, "a peer answered "+strconv.Itoa(a.status)+": "+strings.TrimSpace(string(a.body[:min(len(a.body), 200)])))
}

// Encoders of the parts sent to peers: the contract's protobuf request
// bodies, built from the commands this node already validated.

func encodeOrdersProto(b []byte, reqs []engine.Request, idx []int32) []byte {
	orders := make([]wire.PlaceOrder, len(idx))
	itemsTotal := 0
	for _, i := range idx {
		itemsTotal += len(reqs[i].Command.Order.Items)
	}
	slab := make([]wire.Item, 0, itemsTotal)
	for k, i := range idx {
		o := &reqs[i].Command.Order
		from := len(slab)
		for _, it := range o.Items {
			slab = append(slab, wire.Item{SKUID: it.SKUID, Quantity: it.Quantity})
		}
		orders[k] = wire.PlaceOrder{BuyerID: o.BuyerID, Items: slab[from:len(slab):len(slab)], Channel: o.Channel,
			Region: o.Region, DealID: o.DealID, IdempotencyKey: o.IdempotencyKey}
	}
	return wire.AppendRequest(b, orders)
}

func encodeSettleProto(b []byte, reqs []engine.Request, idx []int32) []byte {
	acts := make([]wire.Settle, len(idx))
	for k, i := range idx {
		cmd := &reqs[i].Command
		acts[k] = wire.Settle{OrderID: cmd.OrderID.String(), Amount: cmd.Amount, Cancel: cmd.Kind == engine.KindCancel}
	}
	return wire.AppendSettleRequest(b, acts)
}
