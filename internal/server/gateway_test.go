package server

import (
	"sync"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// A single order still running when the gateway closes (a straggler that
// Detach abandoned after the shutdown timeout) is answered unavailable,
// not sent on the closed queue: that send was a panic that took the whole
// process down. Calls racing the close are each answered, either by the
// engine or as unavailable.
func TestGatewayCallsAfterCloseAreUnavailable(t *testing.T) {
	eng := openTestEngine(t, 4)
	// A queue of 4 calls for 256 callers: most of them wait on the full
	// queue, holding the gateway's lock shared, while close waits for it.
	g := newGateway(eng, 1, newTestServer(t).metrics)
	order := engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u", Items: []engine.Item{{SKUID: "none", Quantity: 1}}}}

	var wg sync.WaitGroup
	codes := make([]engine.Code, 256)
	for i := range codes {
		wg.Go(func() {
			c := g.getCall()
			c.cmd = order
			g.do(c)
			codes[i] = c.res.Code
		})
	}
	g.close()
	wg.Wait()
	for i, code := range codes {
		// The SKU is unknown: an order the engine took is not found.
		if code != engine.CodeNotFound && code != engine.CodeUnavailable {
			t.Errorf("call %d racing the close answered %v, want not found or unavailable", i, code)
		}
	}

	c := g.getCall()
	c.cmd = order
	g.do(c)
	if c.res.Code != engine.CodeUnavailable {
		t.Fatalf("call after close answered %v, want %v", c.res.Code, engine.CodeUnavailable)
	}
}
