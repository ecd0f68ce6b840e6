package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/fest-platform/fest/internal/festival"
	"github.com/fest-platform/fest/wire"
)

// BenchmarkHTTPTargetPlace is the driver's side of one 1,000-order
// protobuf batch: building the request from the model's orders, the round
// trip to a server on loopback that answers a prepared body, and checking
// each answer into an Outcome. allocs/op and ns/op are per batch.
func BenchmarkHTTPTargetPlace(b *testing.B) {
	const n = 1000
	m, err := BuildModel(ProfileMidnight, 7, festival.MinScale)
	if err != nil {
		b.Fatal(err)
	}
	orders := make([]*festival.Order, n)
	results := make([]wire.Result, n)
	for i := range orders {
		o := &m.Orders[i%len(m.Orders)]
		orders[i] = o
		items := make([]wire.OrderItem, 0, o.NItems)
		for _, it := range o.Lines() {
			items = append(items, wire.OrderItem{SKUID: m.SKUs[it.SKU].ID, Quantity: it.Qty, UnitPrice: m.SKUs[it.SKU].Price, Amount: m.SKUs[it.SKU].Price * int64(it.Qty)})
		}
		results[i] = wire.Result{Order: wire.Order{OrderID: strconv.FormatInt(int64(1<<40+i), 36), Status: "pending_payment", BuyerID: festival.BuyerID(o.Buyer),
			MerchantID: m.Merchants[m.SKUs[o.Lines()[0].SKU].Merchant].ID, Items: items, Total: 100, Currency: "CNY", Channel: m.ChannelName(o),
			Region: m.BuyerRegion(o.Buyer), CreatedAtUnixNanos: 1, PayByUnixNanos: 2}}
	}
	answer := wire.AppendResponse(nil, results)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(answer)
	}))
	defer s.Close()
	cfg := DefaultHTTPConfig()
	cfg.Addr = s.URL
	t, err := NewHTTPTarget(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	out := make([]Outcome, n)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		t.Place(ctx, m, orders, out)
		if out[0].Code != "" || out[n-1].ID == "" {
			b.Fatalf("outcome %+v", out[0])
		}
	}
}
