package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/fest-platform/fest/wire"
)

// BenchmarkPlaceBatch is the client's side of one 1,000-order protobuf
// batch against a server that answers a prepared body: encoding, the
// HTTP round trip on loopback and decoding. allocs/op counts the whole
// request: none of them is per order.
func BenchmarkPlaceBatch(b *testing.B) {
	const n = 1000
	results := make([]wire.Result, n)
	for i := range results {
		results[i] = wire.Result{Order: wire.Order{OrderID: strconv.FormatInt(int64(1<<40+i), 36), Status: "pending_payment", BuyerID: "B" + strconv.Itoa(i),
			MerchantID: "M42", Items: []wire.OrderItem{{SKUID: "S" + strconv.Itoa(i), Quantity: 1, UnitPrice: 29900, Amount: 29900}},
			Total: 29900, Currency: "CNY", Channel: "app", Region: "CN-ZJ", CreatedAtUnixNanos: 1, PayByUnixNanos: 2}}
	}
	answer := wire.AppendResponse(nil, results)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(answer)
	}))
	defer s.Close()
	c, err := New(Config{Addr: s.URL, Conns: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buyers, skus := make([]string, n), make([]string, n)
	for i := range n {
		buyers[i], skus[i] = "B"+strconv.Itoa(i), "S"+strconv.Itoa(i)
	}
	var batch OrderBatch
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		batch.Reset()
		for i := range n {
			batch.Add(wire.PlaceOrder{BuyerID: buyers[i], Channel: "app", Region: "CN-ZJ"})
			batch.AddItem(skus[i], 1)
		}
		if err := c.PlaceBatch(ctx, &batch); err != nil {
			b.Fatal(err)
		}
	}
}
