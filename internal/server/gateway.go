package server

import (
	"sync"

	"github.com/fest-platform/fest/internal/engine"
)

// gateway coalesces concurrent single commands (one HTTP order each) into
// engine batches. Submitting a batch costs a few channel operations per
// partition worker whatever its size, so with 64 connections ordering at
// once, one Submit carries dozens of orders instead of one. The collector
// never waits to fill a batch: it takes what is queued and goes, so a lone
// order adds no latency; while the engine is busy, calls queue up in the
// meantime and the next batch is larger by itself.
type gateway struct {
	eng      *engine.Engine
	in       chan *call // bounded: batchMax*4; a full queue blocks handlers (back-pressure)
	batchMax int
	metrics  *metrics
	wg       sync.WaitGroup
	calls    sync.Pool // *call
	batches  sync.Pool // *gwBatch
	// mu orders the handlers' sends on in before its close: a handler
	// still running past the shutdown timeout (Detach abandons those)
	// would otherwise send on the closed channel and bring the process
	// down. Handlers hold it shared, close exclusively.
	mu struct {
		sync.RWMutex
		closed bool
	}
}

// call is one command waiting for its result.
type call struct {
	in   orderJSON // the decoded body, reused across requests
	cmd  engine.Command
	res  engine.Result
	done chan struct{} // capacity 1, reused
}

// gwBatch is one engine batch of the gateway and the calls it answers;
// both are reused once the answers are handed out.
type gwBatch struct {
	b     *engine.Batch
	calls []*call
}

// pooledItemsMax bounds the item slices kept in pooled calls: an order
// has at most orderItemsMax items, but a rejected body may have had more.
const pooledItemsMax = 4 * orderItemsMax

func newGateway(eng *engine.Engine, batchMax int, m *metrics) *gateway {
	g := &gateway{eng: eng, in: make(chan *call, batchMax*4), batchMax: batchMax, metrics: m}
	g.calls.New = func() any { return &call{done: make(chan struct{}, 1)} }
	g.batches.New = func() any { return &gwBatch{b: engine.NewBatch(16)} }
	g.wg.Add(1)
	go g.collect()
	return g
}

func (g *gateway) getCall() *call { return g.calls.Get().(*call) }

func (g *gateway) putCall(c *call) {
	// Strings are dropped so a pooled call does not pin request bodies.
	in := c.in.Items
	clear(in)
	if cap(in) > pooledItemsMax {
		in = nil
	}
	items := c.cmd.Order.Items
	clear(items)
	if cap(items) > pooledItemsMax {
		items = nil
	}
	c.in = orderJSON{Items: in[:0]}
	c.cmd = engine.Command{}
	c.cmd.Order.Items = items[:0]
	c.res = engine.Result{}
	g.calls.Put(c)
}

// do runs c.cmd through a coalesced batch and fills c.res. After close it
// answers CodeUnavailable, as the stopped engine would.
func (g *gateway) do(c *call) {
	g.mu.RLock()
	if g.mu.closed {
		g.mu.RUnlock()
		c.res = engine.Result{Code: engine.CodeUnavailable}
		return
	}
	// A full queue blocks here, holding mu shared: close waits for the
	// collector, which is still draining the queue, to take the call.
	g.in <- c
	g.mu.RUnlock()
	<-c.done
}

func (g *gateway) collect() {
	defer g.wg.Done()
	for c := range g.in {
		gb := g.batches.Get().(*gwBatch)
		gb.b.Add(c.cmd)
		gb.calls = append(gb.calls, c)
	fill:
		for len(gb.calls) < g.batchMax {
			select {
			case c, ok := <-g.in:
				if !ok {
					break fill
				}
				gb.b.Add(c.cmd)
				gb.calls = append(gb.calls, c)
			default:
				break fill
			}
		}
		g.metrics.gatewayBatch.Observe(float64(len(gb.calls)))
		g.eng.Submit(gb.b)
		go g.finish(gb)
	}
}

// finish hands each call its result once the batch is durable, then
// recycles the batch.
func (g *gateway) finish(gb *gwBatch) {
	<-gb.b.Done()
	for i, c := range gb.calls {
		req := &gb.b.Requests[i]
		c.res = req.Result
		// The engine merged duplicate lines in place and priced them.
		c.cmd.Order.Items = req.Command.Order.Items
		c.done <- struct{}{}
	}
	clear(gb.calls)
	gb.calls = gb.calls[:0]
	gb.b.Reset()
	g.batches.Put(gb)
}

// close stops the collector once every call sent has been submitted; the
// calls made later are answered CodeUnavailable.
func (g *gateway) close() {
	g.mu.Lock()
	g.mu.closed = true
	close(g.in)
	g.mu.Unlock()
	g.wg.Wait()
}
