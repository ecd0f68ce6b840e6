package server

import (
	"testing"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// BenchmarkClusterBatch is POST /v1/orders:batch on node a of a two-node
// cluster on loopback: "local" holds only a's orders (the cost of locating
// each order on a cluster node), "forwarded" only b's (a forwards the
// whole batch to b over HTTP and splices b's answer), "split" half and
// half. Both nodes run in this process, so the time and allocations per
// order are those of both.
func BenchmarkClusterBatch(b *testing.B) {
	for _, tc := range []struct {
		name  string
		skus  []string
		proto bool
	}{
		{"local", []string{"sa-big"}, true},
		{"forwarded", []string{"sb-big"}, true},
		{"split", []string{"sa-big", "sb-big"}, true},
		{"forwarded-json", []string{"sb-big"}, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newTestCluster(b)
			c.a.addSKUStock(b, 1, "sa-big", engine.StockMax)
			c.b.addSKUStock(b, 5, "sb-big", engine.StockMax)
			if !tc.proto {
				runBatchBench(b, c.a.srv.Handler(), benchBatchBody(tc.skus[0], false), false)
				return
			}
			orders := make([]wire.PlaceOrder, benchBatchOrders)
			for i := range orders {
				orders[i] = wire.PlaceOrder{BuyerID: "u", Region: "CN-ZJ", Items: []wire.Item{{SKUID: tc.skus[i%len(tc.skus)], Quantity: 1}}}
			}
			runBatchBench(b, c.a.srv.Handler(), wire.AppendRequest(nil, orders), true)
		})
	}
}
