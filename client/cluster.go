package client

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/wire"
)

// Cluster is the answer of GET /v1/cluster: the node asked, every node's
// address and liveness, and every partition's owner.
type Cluster struct {
	Node       string             `json:"node"`
	Nodes      []ClusterNode      `json:"nodes"`
	Partitions []ClusterPartition `json:"partitions"`
	// OrderIDPartitionShift is where an order id's partition starts: the
	// id is a base-36 64-bit number whose bits from this one up are its
	// partition (an extension of the contract).
	OrderIDPartitionShift int `json:"order_id_partition_shift"`
}

// ClusterNode is one node of a Cluster.
type ClusterNode struct {
	Node  string `json:"node"`
	Addr  string `json:"addr"`
	Alive bool   `json:"alive"`
}

// ClusterPartition is one partition's owner ("" while it fails over).
type ClusterPartition struct {
	Partition     int    `json:"partition"`
	Owner         string `json:"owner"`
	LeaseRevision uint64 `json:"lease_revision"`
}

// Cluster reads GET /v1/cluster from Addr.
func (c *Client) Cluster(ctx context.Context) (Cluster, error) {
	var v Cluster
	err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &v)
	return v, err
}

// With Config.Route the client sends each part of a batch straight to the
// owner of its partition. Any node accepts any request and forwards what
// it does not own, so the map only saves a hop: a stale or missing entry
// is never a wrong answer. The map has two halves:
//
//   - partition → node, from GET /v1/cluster: read at New and again (at
//     most every refreshEveryMin, in the background) when an answer sent
//     by the map says it is stale: the node forwarded part of it
//     (Fest-Forwarded-To) or answered unavailable;
//   - SKU → partition, learned from placed orders: an order's partition is
//     in its id (order_id_partition_shift), and all the items of an order
//     are in its first SKU's partition. A SKU not learned yet goes to
//     Addr, which forwards it, and its answer teaches the SKU.
//
// Payments and cancellations need no learning: their order ids carry the
// partition.

// skuPartitionsMax bounds the SKUs the map remembers; past it new SKUs go
// to Addr (and are forwarded there) until the client is made again.
const skuPartitionsMax = 1 << 20

// refreshEveryMin spaces the map's refreshes.
const refreshEveryMin = 100 * time.Millisecond

// headerForwardedTo is the server's Fest-Forwarded-To.
const headerForwardedTo = "Fest-Forwarded-To"

// router is the client's cluster map.
type router struct {
	c  *Client
	mu struct {
		sync.RWMutex
		owners []string // base URL by partition; "" unknown
		shift  int      // 0 until the first map arrived
		skus   map[string]int32
	}
	refreshing  atomic.Bool
	refreshedAt atomic.Int64 // unix ns of the last refresh started
}

func (c *Client) startRouting() {
	c.route = &router{c: c}
	c.route.mu.skus = map[string]int32{}
	c.states.New = func() any { return newBatchState(c.cfg.BatchMax) }
	c.sstate.New = func() any { return &settleState{} }
	// The first map is read now, briefly; without it every request goes
	// to Addr until a stale answer brings one.
	ctx, cancel := context.WithTimeout(context.Background(), min(c.cfg.Timeout, 5*time.Second))
	defer cancel()
	c.route.refresh(ctx)
}

// refresh reads the cluster map from Addr.
func (r *router) refresh(ctx context.Context) {
	r.refreshedAt.Store(time.Now().UnixNano())
	v, err := r.c.Cluster(ctx)
	if err != nil || v.OrderIDPartitionShift <= 0 || v.OrderIDPartitionShift >= 64 {
		return // keep the old map; the next stale answer tries again
	}
	addrs := make(map[string]string, len(v.Nodes))
	for _, n := range v.Nodes {
		addrs[n.Node] = normalizeBase(n.Addr)
	}
	owners := make([]string, len(v.Partitions))
	for _, p := range v.Partitions {
		if p.Partition >= 0 && p.Partition < len(owners) {
			owners[p.Partition] = addrs[p.Owner]
		}
	}
	r.mu.Lock()
	r.mu.owners, r.mu.shift = owners, v.OrderIDPartitionShift
	r.mu.Unlock()
}

// stale refreshes the map in the background, at most one refresh at a time
// and one per refreshEveryMin.
func (r *router) stale() {
	if time.Since(time.Unix(0, r.refreshedAt.Load())) < refreshEveryMin || !r.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer r.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), r.c.cfg.Timeout)
		defer cancel()
		r.refresh(ctx)
	}()
}

func normalizeBase(addr string) string {
	addr = strings.TrimRight(addr, "/")
	if addr != "" && !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return addr
}

// partitionOf is the partition of an order id, false when it does not
// parse or no map has arrived. REQUIRES: r.mu held.
func (r *router) partitionOfLocked(orderID string) (int, bool) {
	if r.mu.shift == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(orderID, 36, 64)
	if err != nil {
		return 0, false
	}
	return int(v >> r.mu.shift), true
}

// ownerLocked is the base URL of partition p's owner, Addr when unknown.
// REQUIRES: r.mu held.
func (r *router) ownerLocked(p int) string {
	if p >= 0 && p < len(r.mu.owners) && r.mu.owners[p] != "" {
		return r.mu.owners[p]
	}
	return r.c.base
}

// orderBase is where a request about an order goes.
func (c *Client) orderBase(orderID string) string {
	r := c.route
	if r == nil {
		return c.base
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.partitionOfLocked(orderID)
	if !ok {
		return c.base
	}
	return r.ownerLocked(p)
}

// skuBase is where an order whose first SKU is sku goes.
func (r *router) skuBase(sku string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.mu.skus[sku]
	if !ok {
		return r.c.base
	}
	return r.ownerLocked(int(p))
}

// learn notes the partition of sku from an order placed with it first.
func (r *router) learn(sku, orderID string) {
	r.mu.RLock()
	p, ok := r.partitionOfLocked(orderID)
	known, had := r.mu.skus[sku]
	full := len(r.mu.skus) >= skuPartitionsMax
	r.mu.RUnlock()
	if !ok || had && int(known) == p || !had && full {
		return
	}
	// The map keeps its own copy of the id: sku may be a view of a
	// batch's request, which the batch's next orders overwrite.
	r.mu.Lock()
	r.mu.skus[strings.Clone(sku)] = int32(p)
	r.mu.Unlock()
}

// observe reads an answer of a part sent to base for signs that the map
// is stale.
func (r *router) observe(base string, hdr http.Header, err error, results []wire.ResultView) {
	if r.staleAnswer(base, hdr, err) {
		r.stale()
		return
	}
	for i := range results {
		if e := results[i].Error; e != nil && e.Code == "unavailable" {
			r.stale()
			return
		}
	}
}

func (r *router) observeSettle(base string, hdr http.Header, err error, results []wire.SettleResultView) {
	if r.staleAnswer(base, hdr, err) {
		r.stale()
		return
	}
	for i := range results {
		if e := results[i].Error; e != nil && e.Code == "unavailable" {
			r.stale()
			return
		}
	}
}

// staleAnswer: a node chosen by the map forwarded part of the request, or
// the request failed as a whole (the node may be gone).
func (r *router) staleAnswer(base string, hdr http.Header, err error) bool {
	return err != nil || base != r.c.base && hdr.Get(headerForwardedTo) != ""
}

// groupBy splits items by the base each goes to, keeping their order
// within a group; idx are the items' indexes.
func groupBy[T any](items []T, baseOf func(i int) string) (bases []string, groups [][]int) {
	at := map[string]int{}
	for i := range items {
		b := baseOf(i)
		k, ok := at[b]
		if !ok {
			k = len(bases)
			at[b] = k
			bases = append(bases, b)
			groups = append(groups, nil)
		}
		groups[k] = append(groups[k], i)
	}
	return bases, groups
}

// each runs fn for every group, at once, and waits.
func each(groups [][]int, fn func(k int)) {
	if len(groups) == 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	for k := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(k)
		}()
	}
	wg.Wait()
}

// placeRouted sends a sender's calls, a part per owner.
func (c *Client) placeRouted(st *batchState) {
	calls := st.calls
	bases, groups := groupBy(calls, func(i int) string {
		if len(calls[i].req.Items) == 0 {
			return c.base
		}
		return c.route.skuBase(calls[i].req.Items[0].SKUID)
	})
	if len(groups) == 1 {
		c.placeCalls(st, bases[0], calls)
		return
	}
	each(groups, func(k int) {
		part := make([]*call, len(groups[k]))
		for j, i := range groups[k] {
			part[j] = calls[i]
		}
		ps := c.states.Get().(*batchState)
		c.placeCalls(ps, bases[k], part)
		c.states.Put(ps)
	})
}

// settleRouted sends a settle sender's calls, a part per owner.
func (c *Client) settleRouted(st *settleState) {
	calls := st.calls
	bases, groups := groupBy(calls, func(i int) string { return c.orderBase(calls[i].act.OrderID) })
	if len(groups) == 1 {
		c.settleCalls(st, bases[0], calls)
		return
	}
	each(groups, func(k int) {
		part := make([]*settleCall, len(groups[k]))
		for j, i := range groups[k] {
			part[j] = calls[i]
		}
		ps := c.sstate.Get().(*settleState)
		c.settleCalls(ps, bases[k], part)
		c.sstate.Put(ps)
	})
}

// partError is the answer of each entry of a part whose request failed as
// a whole while other parts went through: its *Error, or a transport
// failure as unavailable (the entries may or may not have been applied).
func partError(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: err.Error(), RetryAfter: time.Second}
}

// placeBatchRouted is PlaceBatch with Route: a part per owner, sent at
// once, the results merged back in b's order. A part that fails as a
// whole gives each of its orders partError; the call fails only when
// every part did.
func (c *Client) placeBatchRouted(ctx context.Context, b *OrderBatch) error {
	r := c.route
	b.readBack()
	bases, groups := groupBy(b.req.Orders, func(i int) string {
		if items := b.req.OrderItems(i); len(items) > 0 {
			return r.skuBase(viewString(items[0].SKUID))
		}
		return c.base
	})
	if len(groups) <= 1 {
		base := c.base
		if len(bases) == 1 {
			base = bases[0]
		}
		hdr, err := c.sendOrderBatchTo(ctx, base, batchPathBrief, b)
		r.observe(base, hdr, err, b.view.Results)
		if err != nil {
			return err
		}
		b.learnFrom(r)
		b.fillResults()
		return nil
	}
	results := make([]BatchResult, b.n)
	errs := make([]error, len(groups))
	each(groups, func(k int) {
		// The parts read b's request, written by none of them.
		var part OrderBatch
		for _, i := range groups[k] {
			o := &b.req.Orders[i]
			part.Add(wire.PlaceOrder{BuyerID: viewString(o.BuyerID), Channel: viewString(o.Channel), Region: viewString(o.Region),
				DealID: viewString(o.DealID), IdempotencyKey: viewString(o.IdempotencyKey), RehearsalTime: o.RehearsalTime})
			for _, it := range b.req.OrderItems(i) {
				part.AddItem(viewString(it.SKUID), it.Quantity)
			}
		}
		hdr, err := c.sendOrderBatchTo(ctx, bases[k], batchPathBrief, &part)
		r.observe(bases[k], hdr, err, part.view.Results)
		errs[k] = err
		if err != nil {
			for _, i := range groups[k] {
				results[i] = BatchResult{Err: partError(err)}
			}
			return
		}
		part.learnFrom(r)
		part.fillResults()
		for j, i := range groups[k] {
			results[i] = part.Results[j]
		}
	})
	if allFailed(errs) {
		return errs[0]
	}
	b.Results = append(b.Results[:0], results...)
	return nil
}

// learnFrom teaches r the partition of each placed order's first SKU.
func (b *OrderBatch) learnFrom(r *router) {
	b.readBack()
	for i := range b.view.Results {
		res := &b.view.Results[i]
		if items := b.req.OrderItems(i); res.Error == nil && len(items) > 0 {
			r.learn(viewString(items[0].SKUID), string(res.Order.OrderID))
		}
	}
}

// settleBatchRouted is SettleBatch with Route, as placeBatchRouted.
func (c *Client) settleBatchRouted(ctx context.Context, b *SettleBatch) error {
	r := c.route
	bases, groups := groupBy(b.acts, func(i int) string { return c.orderBase(b.acts[i].OrderID) })
	if len(groups) <= 1 {
		base := c.base
		if len(bases) == 1 {
			base = bases[0]
		}
		hdr, err := c.sendSettleBatchTo(ctx, base, b)
		r.observeSettle(base, hdr, err, b.view.Results)
		if err != nil {
			return err
		}
		b.Results = b.Results[:0]
		for i := range b.view.Results {
			b.Results = append(b.Results, b.settledOf(i))
		}
		clear(b.view.Results)
		return nil
	}
	results := make([]SettleResult, len(b.acts))
	errs := make([]error, len(groups))
	each(groups, func(k int) {
		var part SettleBatch
		for _, i := range groups[k] {
			part.acts = append(part.acts, b.acts[i])
		}
		hdr, err := c.sendSettleBatchTo(ctx, bases[k], &part)
		r.observeSettle(bases[k], hdr, err, part.view.Results)
		errs[k] = err
		for j, i := range groups[k] {
			if err != nil {
				results[i] = SettleResult{Settled: Settled{OrderID: b.acts[i].OrderID}, Err: partError(err)}
				continue
			}
			results[i] = part.settledOf(j)
		}
	})
	if allFailed(errs) {
		return errs[0]
	}
	b.Results = append(b.Results[:0], results...)
	return nil
}

func allFailed(errs []error) bool {
	for _, err := range errs {
		if err == nil {
			return false
		}
	}
	return true
}
