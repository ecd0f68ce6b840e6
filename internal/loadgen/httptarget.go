package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/festival"
	"github.com/fest-platform/fest/wire"
)

// Transports to a fest server.
const (
	TransportBinary    = "binary"     // POST /v1/orders:batch in protobuf (wire)
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
	// up to wire.BatchBodyBytesMax).
	ImportChunkBytes int
	// Timeout bounds one request.
	Timeout time.Duration
	// RehearsalClock gives each command its festival time, for a server
	// run with --rehearsal-clock (rehearsalclock.go); binary transport only.
	RehearsalClock bool
	// RehearsalClockAuto turns RehearsalClock on when the server says it
	// runs on the rehearsal clock (GET /v1/gmv's clock), read in Prepare:
	// the festival profile's default, so that its report has the server's
	// peak second whenever the server can tell it.
	RehearsalClockAuto bool
	// RouteOff keeps every request on Addr. Otherwise, when GET
	// /v1/cluster names more than one node, the orders and settlements
	// go straight to their partitions' owners (client.Config.Route) and
	// the server CPU reported is every node's.
	RouteOff bool
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
	case c.Batch < 1 || c.Batch > wire.BatchOrdersMax:
		return fmt.Errorf("batch %d out of range [1, %d]", c.Batch, wire.BatchOrdersMax)
	case c.InFlight < 1 || c.InFlight > 1024:
		return fmt.Errorf("in-flight %d out of range [1, 1024]", c.InFlight)
	case c.PayParallel < 1 || c.PayParallel > 256:
		return fmt.Errorf("pay parallelism %d out of range [1, 256]", c.PayParallel)
	case c.ImportChunkBytes < 1<<10 || c.ImportChunkBytes > wire.BatchBodyBytesMax:
		return fmt.Errorf("import chunk %d bytes out of range [1 KiB, %d MiB]", c.ImportChunkBytes, wire.BatchBodyBytesMax>>20)
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	case c.RehearsalClock && c.Transport != TransportBinary:
		return errors.New("the rehearsal clock needs the binary transport")
	}
	return nil
}

// HTTPTarget drives a fest server through the public Go client (client/),
// one client per role over one pool of keep-alive connections.
type HTTPTarget struct {
	cfg                   HTTPConfig
	admin, store, carrier *client.Client
	orderBatches, settles sync.Pool // *client.OrderBatch, *client.SettleBatch
	before                *serverBefore
	// nodes are admin clients of every node of a cluster (nil for a
	// single server), for the server CPU of all of them.
	nodes []*client.Client
	hc    *http.Client
	// keyPrefix and keysUsed make the orders' idempotency keys in a
	// cluster (orderKeys).
	keyPrefix string
	keysUsed  atomic.Uint64
}

// clusterProbeTimeout bounds NewHTTPTarget's GET /v1/cluster; a server
// that does not answer it in time is driven as a single server.
const clusterProbeTimeout = 5 * time.Second

// NewHTTPTarget returns a target for the server cfg names.
func NewHTTPTarget(cfg HTTPConfig) (*HTTPTarget, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("http target config: %w", err)
	}
	conns := cfg.InFlight * max(cfg.PayParallel, 1) * 2
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("http target: idempotency key prefix: %w", err)
	}
	t := &HTTPTarget{cfg: cfg, before: &serverBefore{}, keyPrefix: "fest-load-" + hex.EncodeToString(raw[:]) + "-"}
	for _, role := range []struct {
		c     **client.Client
		token string
	}{{&t.admin, cfg.AdminToken}, {&t.store, cfg.StorefrontToken}, {&t.carrier, cfg.CarrierToken}} {
		// The driver calls the batch methods itself, from its own
		// goroutines: one sender per client is all the merging it needs.
		// The batches go over the client's own connections, which cost
		// about half what net/http does per request
		// (client.BenchmarkPlaceBatch); every other call over hc.
		c, err := client.New(client.Config{Addr: cfg.Addr, Token: role.token, Conns: 1, Timeout: cfg.Timeout, HTTPClient: hc, OwnConns: true, IdleConnsMax: conns})
		if err != nil {
			return nil, fmt.Errorf("http target: %w", err)
		}
		*role.c = c
	}
	t.hc = hc
	if !cfg.RouteOff {
		if err := t.routeToOwners(); err != nil {
			t.Close()
			return nil, fmt.Errorf("http target: %w", err)
		}
	}
	t.orderBatches.New = func() any { return &client.OrderBatch{} }
	t.settles.New = func() any { return &client.SettleBatch{} }
	return t, nil
}

// Name is "fest".
func (t *HTTPTarget) Name() string { return "fest" }

// routeToOwners makes the storefront client route by partition when the
// server is a cluster of more than one node (asked at NewHTTPTarget and
// again in Ready, for a server that was not up yet): a load through one node
// would otherwise have that node forward two thirds of a three-node
// cluster's orders.
func (t *HTTPTarget) routeToOwners() error {
	if t.nodes != nil {
		return nil // routed already
	}
	hc := t.hc
	ctx, cancel := context.WithTimeout(context.Background(), clusterProbeTimeout)
	defer cancel()
	v, err := t.admin.Cluster(ctx)
	if err != nil || len(v.Nodes) < 2 {
		return nil // a single server, or one without GET /v1/cluster
	}
	store, err := client.New(client.Config{Addr: t.cfg.Addr, Token: t.cfg.StorefrontToken, Conns: 1, Timeout: t.cfg.Timeout, HTTPClient: hc, Route: true,
		OwnConns: true, IdleConnsMax: t.cfg.InFlight * max(t.cfg.PayParallel, 1) * 2})
	if err != nil {
		return err
	}
	t.store.Close()
	t.store = store
	for _, n := range v.Nodes {
		c, err := client.New(client.Config{Addr: n.Addr, Token: t.cfg.AdminToken, Conns: 1, Timeout: t.cfg.Timeout, HTTPClient: hc})
		if err != nil {
			return err
		}
		t.nodes = append(t.nodes, c)
	}
	return nil
}

// ServerCPU implements CPUReporter from the server's /metrics: the sum
// of every node's in a cluster.
func (t *HTTPTarget) ServerCPU(ctx context.Context) (time.Duration, error) {
	if t.nodes == nil {
		return t.admin.ServerCPU(ctx)
	}
	var sum time.Duration
	for _, c := range t.nodes {
		d, err := c.ServerCPU(ctx)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// Shape: batches for the batch transports, single orders for json.
func (t *HTTPTarget) Shape() (int, int) {
	if t.cfg.Transport == TransportJSON {
		return 1, t.cfg.InFlight
	}
	return t.cfg.Batch, t.cfg.InFlight
}

// Close stops the clients and closes their connections.
func (t *HTTPTarget) Close() error {
	for _, c := range append([]*client.Client{t.admin, t.store, t.carrier}, t.nodes...) {
		c.Close()
	}
	return nil
}

// outcomeOf is the outcome of a call that failed as a whole: the API's
// error code, bad_answer for an answer outside the contract, else
// transport (no answer).
func outcomeOf(err error) Outcome {
	var ae *client.Error
	switch {
	case errors.As(err, &ae) && strings.HasPrefix(ae.Code, client.HTTPCodePrefix):
		return Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("status %d: %.200s", ae.Status, ae.Message)}
	case errors.As(err, &ae):
		return Outcome{Code: ae.Code, Detail: ae.Message}
	case errors.Is(err, client.ErrBadAnswer):
		return Outcome{Code: CodeBadAnswer, Detail: err.Error()}
	}
	return Outcome{Code: CodeTransport, Detail: err.Error()}
}

func setAll(out []Outcome, o Outcome) {
	for i := range out {
		out[i] = o
	}
}

// Ready waits until GET /readyz answers 200, or ctx ends.
func (t *HTTPTarget) Ready(ctx context.Context) error {
	for {
		err := t.store.Ready(ctx)
		if err == nil && !t.cfg.RouteOff {
			// A server not up at NewHTTPTarget's probe is asked again.
			err = t.routeToOwners()
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s/readyz: %w (last: %v)", t.cfg.Addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Prepare imports the catalog with POST /v1/catalog:import in chunks:
// brands, then merchants, then SKUs (each refers to the ones before), and
// creates the livestream channels. A server that holds some of the
// model's SKUs already (an earlier rehearsal) keeps their stock: see
// importSKUs.
func (t *HTTPTarget) Prepare(ctx context.Context, m *festival.Model, say func(string)) error {
	start := time.Now()
	if err := t.before.readLive(ctx, t.admin, m); err != nil {
		return err
	}
	if err := t.before.readTotals(ctx, t.store); err != nil {
		return err
	}
	if err := t.agreeClock(say); err != nil {
		return err
	}
	brands := func(l *client.CatalogLines, i int) { brandLine(l, &m.Brands[i]) }
	if err := t.importKind(ctx, "brand", len(m.Brands), brands); err != nil {
		return err
	}
	merchants := func(l *client.CatalogLines, i int) { merchantLine(l, m, &m.Merchants[i]) }
	if err := t.importKind(ctx, "merchant", len(m.Merchants), merchants); err != nil {
		return err
	}
	if err := t.importSKUs(ctx, m, say); err != nil {
		return err
	}
	liveFrom, liveTo := time.Date(2020, 10, 31, 16, 0, 0, 0, time.UTC), time.Date(2020, 11, 11, 16, 0, 0, 0, time.UTC)
	for i := range m.Channels {
		c := &m.Channels[i]
		_, err := t.admin.PutChannel(ctx, client.LiveChannel{ID: c.ID, Title: c.Title, Host: c.Host, StartsAt: liveFrom, EndsAt: liveTo})
		var ae *client.Error
		if errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed) {
			// A server without livestream channels takes live:<id> orders
			// all the same; their figures are then the driver's own.
			if say != nil {
				say("server has no livestream channel endpoint; channels not created")
			}
			break
		}
		if err != nil {
			o := outcomeOf(err)
			return fmt.Errorf("put channel %s: %s: %s", c.ID, o.Code, o.Detail)
		}
		if i == len(m.Channels)-1 {
			if err := t.putDeals(ctx, m); err != nil {
				return err
			}
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

// importKind imports lines 0..n-1 of one kind in chunks of at most
// ImportChunkBytes.
func (t *HTTPTarget) importKind(ctx context.Context, kind string, n int, line func(*client.CatalogLines, int)) error {
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
				// In a cluster a chunk answered unavailable (its part for a
				// partition failing over) or not answered is sent again:
				// brands and merchants are upserts, and a SKU line that
				// would now change stock sold since is refused on
				// stock_expected, which importSKUs answers with its census.
				_, err := t.admin.ImportCatalog(ctx, bytes.NewReader(c.body))
				for fo := t.newFailover(); err != nil && fo.again(ctx, outcomeOf(err)); {
					_, err = t.admin.ImportCatalog(ctx, bytes.NewReader(c.body))
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
	var lines client.CatalogLines
	first := 0
	for i := 0; i < n; i++ {
		if len(errc) > 0 || ctx.Err() != nil {
			break
		}
		line(&lines, i)
		if lines.Len() >= t.cfg.ImportChunkBytes-4096 || i == n-1 {
			chunks <- chunk{body: lines.Detach(), first: first}
			first = i + 1
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

// brandLine, merchantLine and skuLine add the model's catalog objects to
// an import body.
func brandLine(l *client.CatalogLines, br *festival.Brand) {
	l.Brand(&client.Brand{ID: br.ID, Name: br.Name, Country: br.Country, FirstFestival: int(br.FirstFestival), Emerging: br.Emerging, LastYearGMV: br.LastYearGMV})
}

func merchantLine(l *client.CatalogLines, m *festival.Model, mc *festival.Merchant) {
	l.Merchant(&client.Merchant{ID: mc.ID, Name: mc.Name, BrandID: m.Brands[mc.Brand].ID, Kind: mc.Kind, Industry: mc.Industry, Region: mc.Region})
}

func skuLine(l *client.CatalogLines, m *festival.Model, s *festival.SKU) {
	l.SKU(&client.SKU{ID: s.ID, MerchantID: m.Merchants[s.Merchant].ID, BrandID: m.Brands[s.Brand].ID, Title: s.Title, Category: s.Category, Price: s.Price, Stock: s.Stock})
}

// Place sends the orders as one batch (binary or json-batch) or as single
// requests (json). In a cluster it rides through a failover (see
// failover): each order carries an idempotency key of its own, and what is
// answered unavailable or not answered at all is sent again with it.
func (t *HTTPTarget) Place(ctx context.Context, m *festival.Model, orders []*festival.Order, out []Outcome) {
	keys := t.orderKeys(len(orders))
	if t.cfg.Transport == TransportJSON {
		for i, o := range orders {
			var key string
			if keys != nil {
				key = keys.key(i)
			}
			fo := t.newFailover()
			for t.placeOne(ctx, m, o, key, &out[i]); fo.again(ctx, out[i]); {
				t.placeOne(ctx, m, o, key, &out[i])
			}
		}
		return
	}
	b := t.orderBatches.Get().(*client.OrderBatch)
	defer t.orderBatches.Put(b)
	if keys == nil {
		t.placeBatch(ctx, m, b, orders, nil, nil, out)
		return
	}
	// pending are the orders still owed an answer, by index into orders.
	pending := make([]int, len(orders))
	for i := range pending {
		pending[i] = i
	}
	fo := t.newFailover()
	for {
		t.placeBatch(ctx, m, b, orders, pending, keys, out)
		next := pending[:0]
		for _, i := range pending {
			if fo.resendable(out[i]) {
				next = append(next, i)
			}
		}
		if len(next) == 0 || !fo.wait(ctx) {
			return
		}
		pending = next
	}
}

// placeBatch sends one batch of the orders named by idx (nil: all of
// them), each with its key when keys is set, and writes each one's
// outcome at its index in out.
func (t *HTTPTarget) placeBatch(ctx context.Context, m *festival.Model, b *client.OrderBatch, orders []*festival.Order, idx []int, keys *orderKeys, out []Outcome) {
	b.Reset()
	n := len(orders)
	if idx != nil {
		n = len(idx)
	}
	at := func(j int) int {
		if idx == nil {
			return j
		}
		return idx[j]
	}
	for j := range n {
		i := at(j)
		o := orders[i]
		po := wire.PlaceOrder{BuyerID: m.BuyerID(o.Buyer), Channel: m.ChannelName(o), Region: m.Region(o), DealID: m.DealID(o), RehearsalTime: t.rehearsalAt(o)}
		if keys != nil {
			po.IdempotencyKey = keys.key(i)
		}
		b.Add(po)
		for _, it := range o.Lines() {
			b.AddItem(m.SKUID(it.SKU), it.Qty)
		}
	}
	var err error
	if t.cfg.Transport == TransportJSONBatch {
		err = t.store.PlaceBatchJSON(ctx, b)
	} else {
		err = t.store.PlaceBatch(ctx, b)
	}
	if err != nil {
		oc := outcomeOf(err)
		for j := range n {
			out[at(j)] = oc
		}
		return
	}
	for j := range b.Results {
		r := &b.Results[j]
		i := at(j)
		switch {
		case r.Err != nil:
			out[i] = Outcome{Code: r.Err.Code, Detail: r.Err.Message}
		case r.Status == "pending_payment":
			out[i] = Outcome{ID: r.OrderID, Total: r.Total}
		default:
			out[i] = Outcome{Code: CodeBadAnswer, Detail: "placed order in status " + r.Status}
		}
	}
}

func (t *HTTPTarget) placeOne(ctx context.Context, m *festival.Model, o *festival.Order, key string, out *Outcome) {
	lines := o.Lines()
	req := client.OrderRequest{BuyerID: m.BuyerID(o.Buyer), Items: make([]client.Item, len(lines)), Channel: m.ChannelName(o), Region: m.Region(o), DealID: m.DealID(o), IdempotencyKey: key}
	for k, it := range lines {
		req.Items[k] = client.Item{SKUID: m.SKUID(it.SKU), Quantity: int(it.Qty)}
	}
	placed, err := t.store.PlaceOrderJSON(ctx, req)
	switch {
	case err != nil:
		*out = outcomeOf(err)
	case placed.Status != "pending_payment":
		*out = Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("201 with order %s in status %q", placed.ID, placed.Status)}
	default:
		*out = Outcome{ID: placed.ID, Total: placed.Total}
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
		fo := t.newFailover()
		for {
			o, err := t.store.Pay(ctx, ids[i], totals[i])
			if out[i] = transitionOutcome("/v1/orders/"+ids[i]+"/pay", o, err, "paid"); !fo.again(ctx, out[i]) {
				return
			}
		}
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
		fo := t.newFailover()
		for {
			o, err := t.store.Cancel(ctx, ids[i])
			if out[i] = transitionOutcome("/v1/orders/"+ids[i]+"/cancel", o, err, "cancelled"); !fo.again(ctx, out[i]) {
				return
			}
		}
	})
}

// transitionOutcome checks the answer of a single pay or cancel.
func transitionOutcome(path string, o client.Order, err error, want string) Outcome {
	switch {
	case err != nil:
		out := outcomeOf(err)
		if out.Code != CodeTransport {
			out.Detail = path + ": " + out.Detail
		}
		return out
	case o.Status != want:
		return Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("%s: want status %s, got order %q in status %q", path, want, o.ID, o.Status)}
	}
	return Outcome{}
}

func settleWant(cancel bool) string {
	if cancel {
		return "cancelled"
	}
	return "paid"
}

// Settle pays ids[i] with totals[i], or cancels it when cancel[i] is set,
// with POST /v1/orders:settle: protobuf on the binary transport, JSON on
// the others; at most wire.BatchOrdersMax actions a request.
func (t *HTTPTarget) Settle(ctx context.Context, ids []string, totals []int64, cancel []bool, out []Outcome) {
	t.settle(ctx, ids, totals, cancel, nil, out)
}

// settle is Settle with each action's festival time (ats nil: none).
func (t *HTTPTarget) settle(ctx context.Context, ids []string, totals []int64, cancel []bool, ats []int64, out []Outcome) {
	b := t.settles.Get().(*client.SettleBatch)
	defer t.settles.Put(b)
	for lo := 0; lo < len(ids); lo += wire.BatchOrdersMax {
		hi := min(len(ids), lo+wire.BatchOrdersMax)
		var chunkAts []int64
		if ats != nil {
			chunkAts = ats[lo:hi]
		}
		t.settleChunk(ctx, b, ids[lo:hi], totals[lo:hi], cancel[lo:hi], chunkAts, out[lo:hi])
		t.settleAgain(ctx, b, ids[lo:hi], totals[lo:hi], cancel[lo:hi], chunkAts, out[lo:hi])
	}
}

// settleAgain sends again, in a cluster, the actions of a settled chunk
// answered unavailable or not answered: paying a paid order and cancelling
// a cancelled one answer 200 (API.md), so an action applied already is
// harmless to repeat.
func (t *HTTPTarget) settleAgain(ctx context.Context, b *client.SettleBatch, ids []string, totals []int64, cancel []bool, ats []int64, out []Outcome) {
	fo := t.newFailover()
	var idx []int
	for i := range out {
		if fo.resendable(out[i]) {
			idx = append(idx, i)
		}
	}
	for len(idx) > 0 && fo.wait(ctx) {
		subIDs, subTotals, subCancel := make([]string, len(idx)), make([]int64, len(idx)), make([]bool, len(idx))
		var subAts []int64
		if ats != nil {
			subAts = make([]int64, len(idx))
		}
		for j, i := range idx {
			subIDs[j], subTotals[j], subCancel[j] = ids[i], totals[i], cancel[i]
			if ats != nil {
				subAts[j] = ats[i]
			}
		}
		subOut := make([]Outcome, len(idx))
		t.settleChunk(ctx, b, subIDs, subTotals, subCancel, subAts, subOut)
		next := idx[:0]
		for j, i := range idx {
			if out[i] = subOut[j]; fo.resendable(out[i]) {
				next = append(next, i)
			}
		}
		idx = next
	}
}

func (t *HTTPTarget) settleChunk(ctx context.Context, b *client.SettleBatch, ids []string, totals []int64, cancel []bool, ats []int64, out []Outcome) {
	b.Reset()
	for i, id := range ids {
		if cancel[i] {
			b.Cancel(id)
		} else {
			b.Pay(id, totals[i])
		}
		if ats != nil {
			b.At(ats[i])
		}
	}
	var err error
	if t.cfg.Transport == TransportBinary {
		err = t.store.SettleBatch(ctx, b)
	} else {
		err = t.store.SettleBatchJSON(ctx, b)
	}
	if err != nil {
		setAll(out, outcomeOf(err))
		return
	}
	for i := range b.Results {
		r := &b.Results[i]
		switch want := settleWant(cancel[i]); {
		case r.Err != nil:
			out[i] = Outcome{Code: r.Err.Code, Detail: ids[i] + ": " + r.Err.Message}
		case r.Status != want || r.OrderID != ids[i]:
			out[i] = Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("settle %s: want %s, got order %q in status %q", ids[i], want, r.OrderID, r.Status)}
		default:
			out[i] = Outcome{}
		}
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

// auditParallel is the SKU reads in flight during the audit.
const auditParallel = 16

// gmvSettle bounds the wait for the GMV projection to catch up with the
// last payments (it is a consumer of the journal and may lag).
const gmvSettle = 15 * time.Second

// Audit reads every touched SKU (stocked = available + reserved + sold, and
// reserved and sold as the driver saw them acknowledged, beside what the
// server held before the run) and the GMV.
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
		if l.SKUs[i].Touched.Load() {
			touched = append(touched, i)
		}
	}
	exact := !l.Uncertain.Load()
	liveProblems, dealLeft, err := t.auditLive(ctx, m, l)
	if err != nil {
		return liveProblems, err
	}
	for _, p := range liveProblems {
		add(p)
	}
	var firstErr error
	var errOnce sync.Once
	sem := make(chan struct{}, auditParallel)
	var wg sync.WaitGroup
	for _, i := range touched {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s := &m.SKUs[i]
			sku, err := t.admin.GetSKU(ctx, s.ID)
			for fo := t.newFailover(); err != nil && fo.again(ctx, outcomeOf(err)); {
				sku, err = t.admin.GetSKU(ctx, s.ID)
			}
			if err != nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("get sku %s: %w", s.ID, err) })
				return
			}
			for _, p := range auditSKU(s, t.before.sku(i), dealLeft[int32(i)], sku.StockAvailable, sku.StockReserved, sku.Sold, l.SKUs[i].Reserved.Load(), l.SKUs[i].Sold.Load(), exact, t.cfg.RehearsalClock) {
				add(p)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return problems, firstErr
	}
	// GMV: the projection may lag the last payments; wait for it to settle.
	want := t.before.gmv + l.Tally.GMV
	deadline := time.Now().Add(gmvSettle)
	var g client.GMV
	for {
		var err error
		if g, err = t.store.GMV(ctx); err != nil {
			return problems, fmt.Errorf("get gmv: %w", err)
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
		add(fmt.Sprintf("gmv: server %d fen (%d paid orders), driver saw %d fen paid (%d orders) acknowledged%s",
			g.GMV.Amount, g.OrdersPaid, l.Tally.GMV, l.Tally.PaidOrders, t.before.gmvNote()))
	}
	return problems, nil
}

// auditSKU checks one SKU's figures as the server reports them (available,
// reserved, sold) against its stock and what the driver saw acknowledged
// (units in pending orders, units paid). before is what the server held
// before the run, nil on a SKU this run's import created: the run's own
// figures are then the server's less before's. Pending orders of an
// earlier run may expire during this one, moving their units from
// reserved back to available, so with before the reserved figure may lie
// anywhere from this run's units to that plus before's. With mayExpire
// (the rehearsal clock: the payment timeout runs on festival time, days of
// it in one run) this run's own pending orders may have expired too, so
// the reserved figure may be as low as 0.
func auditSKU(s *festival.SKU, before *skuFigures, inDeals, av, rs, sd, wantReserved, wantSold int64, exact, mayExpire bool) []string {
	var problems []string
	stocked, rs0, sd0 := s.Stock, int64(0), int64(0)
	if before != nil {
		stocked, rs0, sd0 = before.available+before.reserved+before.sold+before.inDeals, before.reserved, before.sold
	}
	if av+rs+sd+inDeals != stocked {
		problems = append(problems, fmt.Sprintf("sku %s: stocked %d != available %d + reserved %d + sold %d + %d left in deals", s.ID, stocked, av, rs, sd, inDeals))
	}
	if av < 0 || rs < 0 || sd < 0 {
		problems = append(problems, fmt.Sprintf("sku %s: negative figure: available %d reserved %d sold %d", s.ID, av, rs, sd))
	}
	if !exact {
		return problems
	}
	if sd-sd0 != wantSold {
		problems = append(problems, fmt.Sprintf("sku %s: sold %d (%d before the run), driver saw %d units paid", s.ID, sd, sd0, wantSold))
	}
	if rs < wantReserved && !mayExpire || rs > wantReserved+rs0 {
		problems = append(problems, fmt.Sprintf("sku %s: reserved %d (%d before the run), driver saw %d units in pending orders", s.ID, rs, rs0, wantReserved))
	}
	return problems
}

// maxProblemsListed bounds the audit's list: past it, one line says so.
const maxProblemsListed = 50

// scanParallel is the scan requests in flight: each waits for its fsync
// (group-committed with the others) and for the parcel projection, so many
// carriers must scan at once for the commits to be shared.
const scanParallel = 64

// Scan implements Carrier: one POST /v1/parcels/{id}/scans per scan, with
// the carrier token, scanParallel at a time. A parcel id is "P" and its
// order's id.
//
// A scan answered 503 unavailable was not applied (docs/api.md, Logistics:
// the parcel projection had not caught up with the payments, or the server
// was not ready), so it is sent again, on every target, within the
// failover budget (50 ms to 1 s apart, for at most 20 s): after a --compare
// run's deferred payments the projection lags the carriers' first scans by
// seconds. No answer at all is not resent: that scan may have been applied.
// In a cluster a forwarded scan may be answered 503 after its owner applied
// it; the resend is safe all the same, since the carriers scan a parcel's
// steps one round at a time, so a resend is the parcel's last scan again,
// which changes nothing. The budget's deadline is the call's, shared by its
// scans: a server that keeps answering 503 costs one call 20 s, not 20 s
// for each wave of scanParallel scans.
func (t *HTTPTarget) Scan(ctx context.Context, orderIDs []string, scans []ScanStep, out []Outcome) {
	deadline := time.Now().Add(failoverResendFor)
	eachParallel(len(orderIDs), scanParallel, func(i int) {
		path := "/v1/parcels/P" + orderIDs[i] + "/scans"
		resend := failover{pause: failoverPauseMin, deadline: deadline}
		for {
			out[i] = t.scan(ctx, orderIDs[i], scans[i])
			if out[i].Code != wire.CodeUnavailable || !resend.again(ctx, out[i]) {
				break
			}
		}
		if out[i].Code != "" && out[i].Code != CodeTransport {
			out[i].Detail = path + ": " + out[i].Detail
		}
	})
}

// scan sends one scan of the parcel of order orderID.
func (t *HTTPTarget) scan(ctx context.Context, orderID string, sc ScanStep) Outcome {
	p, err := t.carrier.ScanParcel(ctx, "P"+orderID, client.Scan{Status: sc.Status, Location: sc.Location})
	switch {
	case err != nil:
		return outcomeOf(err)
	case p.Status != sc.Status:
		return Outcome{Code: CodeBadAnswer, Detail: fmt.Sprintf("want status %s, got parcel in status %q", sc.Status, p.Status)}
	}
	return Outcome{}
}

// ParcelStats implements Carrier. The parcels are a projection of the
// journal and may lag the last payments: it waits, as the GMV audit does,
// for them to equal the server's paid orders. The counts are the run's:
// the server's less what it held before the run.
func (t *HTTPTarget) ParcelStats(ctx context.Context) (ParcelStats, error) {
	deadline := time.Now().Add(gmvSettle)
	for {
		ls, err := t.store.LogisticsStats(ctx)
		if err != nil {
			return ParcelStats{}, fmt.Errorf("get logistics stats: %w", err)
		}
		g, err := t.store.GMV(ctx)
		if err != nil {
			return ParcelStats{}, fmt.Errorf("get gmv: %w", err)
		}
		b := &t.before.parcels
		ps := ParcelStats{Parcels: ls.Parcels - b.Parcels, Delivered: ls.ByStatus["delivered"] - b.Delivered, Returned: ls.ByStatus["returned"] - b.Returned}
		ps.InFlight = ps.Parcels - ps.Delivered - ps.Returned
		if ls.Parcels == g.OrdersPaid {
			return ps, nil
		}
		if time.Now().After(deadline) {
			return ps, fmt.Errorf("%d parcels for %d paid orders %v after the run", ls.Parcels, g.OrdersPaid, gmvSettle)
		}
		select {
		case <-ctx.Done():
			return ps, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// In a cluster a partition fails over: while its dead or paused owner's
// lease runs out and another node takes it over, its requests are answered
// 503 unavailable (with Retry-After), and a request to a node that died is
// not answered at all. The target sends those again, with the same
// idempotency key for an order, until the budget below runs out; the
// client refreshes its cluster map on each such answer, so a resend goes
// to the new owner. What is still unanswered then is reported as it was:
// unavailable (a problem of the run) or transport (the driver's books are
// uncertain and the audit checks conservation only). Outside a cluster
// only a carrier scan answered 503 is sent again (Scan); nothing else is.
const (
	// failoverResendFor bounds the resends after the first failed answer:
	// a failover is a lease TTL (5 s by default) plus its detection and
	// the take-over, under 10 s (docs/cluster.md).
	failoverResendFor = 20 * time.Second
	// failoverResendsMax bounds the resends of one call.
	failoverResendsMax = 60
	// failoverPauseMin and failoverPauseMax are the pause before a resend,
	// doubling from the first to the second: the server's Retry-After for
	// unavailable is a second.
	failoverPauseMin = 50 * time.Millisecond
	failoverPauseMax = time.Second
)

// failover is the resend budget of one call; nil outside a cluster, where
// nothing but a refused scan is resent.
type failover struct {
	deadline time.Time // zero until the first failure
	resends  int
	pause    time.Duration
}

// newFailover is a call's budget: nil unless the target routes in a
// cluster.
func (t *HTTPTarget) newFailover() *failover {
	if t.nodes == nil {
		return nil
	}
	return &failover{pause: failoverPauseMin}
}

// resendable reports whether o may be sent again: unavailable, or no
// answer, within the budget.
func (f *failover) resendable(o Outcome) bool {
	if f == nil || o.Code != wire.CodeUnavailable && o.Code != CodeTransport {
		return false
	}
	if f.deadline.IsZero() {
		f.deadline = time.Now().Add(failoverResendFor)
	}
	return f.resends < failoverResendsMax && time.Now().Before(f.deadline)
}

// wait pauses before a resend; false when ctx ended.
func (f *failover) wait(ctx context.Context) bool {
	f.resends++
	select {
	case <-ctx.Done():
		return false
	case <-time.After(f.pause):
	}
	f.pause = min(2*f.pause, failoverPauseMax)
	return true
}

// again is resendable and then wait, for a call of one request.
func (f *failover) again(ctx context.Context, o Outcome) bool {
	return f.resendable(o) && f.wait(ctx)
}

// orderKeys gives the orders of one Place call their idempotency keys in
// a cluster: the target's random prefix and a number of its own per order,
// unique across runs and targets.
type orderKeys struct {
	prefix string
	first  uint64
}

// orderKeys returns n orders' keys, nil outside a cluster (a key costs the
// server its memory for the idempotency window; a single server's figures
// stay as they were).
func (t *HTTPTarget) orderKeys(n int) *orderKeys {
	if t.nodes == nil {
		return nil
	}
	return &orderKeys{prefix: t.keyPrefix, first: t.keysUsed.Add(uint64(n)) - uint64(n)}
}

func (k *orderKeys) key(i int) string {
	return k.prefix + strconv.FormatUint(k.first+uint64(i), 36)
}
