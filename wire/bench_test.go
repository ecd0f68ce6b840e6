package wire

import (
	"strconv"
	"testing"
)

// benchOrders is a batch of n typical festival orders: one to three items.
func benchOrders(n int) []PlaceOrder {
	orders := make([]PlaceOrder, n)
	for i := range orders {
		items := make([]Item, 1+i%3)
		for k := range items {
			items[k] = Item{SKUID: "S" + strconv.Itoa(100000+i*3+k), Quantity: int32(1 + k)}
		}
		orders[i] = PlaceOrder{BuyerID: "B" + strconv.Itoa(1000000+i), Items: items, Channel: "app", Region: "CN-ZJ"}
	}
	return orders
}

func benchResults(n int) []Result {
	results := make([]Result, n)
	for i, o := range benchOrders(n) {
		items := make([]OrderItem, len(o.Items))
		for k, it := range o.Items {
			items[k] = OrderItem{SKUID: it.SKUID, Quantity: it.Quantity, UnitPrice: 29900, Amount: 29900 * int64(it.Quantity)}
		}
		results[i] = Result{Order: Order{OrderID: strconv.FormatInt(int64(1<<40+i), 36), Status: "pending_payment", BuyerID: o.BuyerID,
			MerchantID: "M42", Items: items, Total: 29900, Currency: "CNY", Channel: "app", Region: "CN-ZJ",
			CreatedAtUnixNanos: 1604851200000000000, PayByUnixNanos: 1604853000000000000}}
	}
	return results
}

const benchBatch = 1000

// BenchmarkDecodeRequestView is the server's decoding of a 1,000-order
// batch: allocs/op must stay 0 once the view has grown.
func BenchmarkDecodeRequestView(b *testing.B) {
	body := AppendRequest(nil, benchOrders(benchBatch))
	var v RequestView
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeRequestView(body, &v, benchBatch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendRequest is the client's encoding of a 1,000-order batch.
func BenchmarkAppendRequest(b *testing.B) {
	orders := benchOrders(benchBatch)
	var body []byte
	b.ReportAllocs()
	for b.Loop() {
		body = AppendRequest(body[:0], orders)
	}
}

// BenchmarkAppendResult is the server's encoding of a 1,000-order answer,
// one result at a time into the response buffer, each sized and encoded
// in place (AppendResponseResult).
func BenchmarkAppendResult(b *testing.B) {
	results := benchResults(benchBatch)
	var body []byte
	b.ReportAllocs()
	for b.Loop() {
		body = body[:0]
		for i := range results {
			body = AppendResponseResult(body, &results[i])
		}
	}
}

// BenchmarkDecodeResponseView is the client's decoding of a 1,000-order
// answer: allocs/op must stay 0 once the view has grown.
func BenchmarkDecodeResponseView(b *testing.B) {
	body := AppendResponse(nil, benchResults(benchBatch))
	var v ResponseView
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeResponseView(body, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSettleRequestView is the server's decoding of a
// 1,000-action settle batch.
func BenchmarkDecodeSettleRequestView(b *testing.B) {
	acts := make([]Settle, benchBatch)
	for i := range acts {
		acts[i] = Settle{OrderID: strconv.FormatInt(int64(1<<40+i), 36), Amount: 29900, Cancel: i%10 == 0}
	}
	body := AppendSettleRequest(nil, acts)
	var v SettleRequestView
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeSettleRequestView(body, &v, benchBatch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSettleResponseView is the client's decoding of a
// 1,000-action settle answer.
func BenchmarkDecodeSettleResponseView(b *testing.B) {
	var body []byte
	for i := range benchBatch {
		body = AppendSettleResult(body, &SettleResult{OrderID: strconv.FormatInt(int64(1<<40+i), 36), Status: "paid", Total: 29900, ChangedAtUnixNanos: 1604851200000000000})
	}
	var v SettleResponseView
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeSettleResponseView(body, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeResponse is the allocating decoder (every string of
// every order copied), which the load driver used before it went through
// the client's views.
func BenchmarkDecodeResponse(b *testing.B) {
	body := AppendResponse(nil, benchResults(benchBatch))
	var results []Result
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if results, err = DecodeResponse(body, results[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
