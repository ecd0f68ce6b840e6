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
// order adds no latency.
type gateway struct {
	eng      *engine.Engine
	in       chan *call
	batchMax int
	metrics  *metrics
	wg       sync.WaitGroup
	calls    sync.Pool
}

// call is one command waiting for its result.
type call struct {
	cmd  engine.Command
	res  engine.Result
	done chan struct{} // capacity 1, reused
}

func newGateway(eng *engine.Engine, batchMax int, m *metrics) *gateway {
	g := &gateway{eng: eng, in: make(chan *call, batchMax*4), batchMax: batchMax, metrics: m}
	g.calls.New = func() any { return &call{done: make(chan struct{}, 1)} }
	g.wg.Add(1)
	go g.collect()
	return g
}

func (g *gateway) getCall() *call { return g.calls.Get().(*call) }

func (g *gateway) putCall(c *call) {
	items := c.cmd.Order.Items[:0]
	c.cmd = engine.Command{}
	c.cmd.Order.Items = items
	c.res = engine.Result{}
	g.calls.Put(c)
}

// do runs c.cmd through a coalesced batch and fills c.res.
func (g *gateway) do(c *call) {
	g.in <- c
	<-c.done
}

func (g *gateway) collect() {
	defer g.wg.Done()
	for c := range g.in {
		b := engine.NewBatch(8)
		calls := make([]*call, 0, 8)
		b.Add(c.cmd)
		calls = append(calls, c)
	fill:
		for len(calls) < g.batchMax {
			select {
			case c, ok := <-g.in:
				if !ok {
					break fill
				}
				b.Add(c.cmd)
				calls = append(calls, c)
			default:
				break fill
			}
		}
		g.metrics.gatewayBatch.Observe(float64(len(calls)))
		g.eng.Submit(b)
		go finish(b, calls)
	}
}

// finish hands each call its result once the batch is durable.
func finish(b *engine.Batch, calls []*call) {
	<-b.Done()
	for i, c := range calls {
		req := &b.Requests[i]
		c.res = req.Result
		// The engine merged duplicate lines in place and priced them.
		c.cmd.Order.Items = req.Command.Order.Items
		c.done <- struct{}{}
	}
}

func (g *gateway) close() {
	close(g.in)
	g.wg.Wait()
}
