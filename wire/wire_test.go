package wire

import (
	"reflect"
	"testing"
)

// TestResponseRoundTrip: what AppendResponse encodes, DecodeResponse and
// DecodeResponseView (reused across calls) read back unchanged.
func TestResponseRoundTrip(t *testing.T) {
	results := []Result{
		{Order: Order{OrderID: "abc", Status: "pending_payment", BuyerID: "u1", MerchantID: "m1",
			Items: []OrderItem{{SKUID: "s1", Quantity: 2, UnitPrice: 100, Amount: 200}, {SKUID: "s2", Quantity: 1, UnitPrice: 5, Amount: 5}},
			Total: 205, Currency: "CNY", Channel: "live:c", Region: "CN-ZJ", DealID: "d", CreatedAtUnixNanos: 1, PayByUnixNanos: 2, Replayed: true}},
		{Error: &Error{Code: "out_of_stock", Message: "no", SKUID: "s1", Available: 3}},
		{Order: Order{OrderID: "x", Status: "paid", Items: []OrderItem{{SKUID: "s3", Quantity: 1}}}},
	}
	b := AppendResponse(nil, results)
	got, err := DecodeResponse(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, results) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, results)
	}
	var v ResponseView
	for range 2 {
		if err := DecodeResponseView(b, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Results) != 3 || string(v.Results[0].Order.OrderID) != "abc" || len(v.OrderItems(0)) != 2 ||
			string(v.OrderItems(2)[0].SKUID) != "s3" || v.Results[1].Error.Available != 3 || len(v.OrderItems(1)) != 0 {
			t.Fatalf("view: %+v", v)
		}
	}
}

// TestRequestRoundTrip: DecodeRequest and DecodeRequestView agree with
// AppendRequest, and a bad body's error names the order and item.
func TestRequestRoundTrip(t *testing.T) {
	orders := []PlaceOrder{
		{BuyerID: "u1", Items: []Item{{SKUID: "s1", Quantity: 2}, {SKUID: "s2", Quantity: -1}}, Channel: "web", Region: "r", DealID: "d", IdempotencyKey: "k", RehearsalTime: 1_604_937_626_000_000_000},
		{BuyerID: "u2"},
		{BuyerID: "u3", Items: []Item{{SKUID: "s3", Quantity: 1}}},
	}
	b := AppendRequest(nil, orders)
	got, err := DecodeRequest(b, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, orders) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, orders)
	}
	var v RequestView
	if err := DecodeRequestView(b, &v, 10); err != nil {
		t.Fatal(err)
	}
	if len(v.Orders) != 3 || len(v.OrderItems(1)) != 0 || string(v.OrderItems(2)[0].SKUID) != "s3" {
		t.Fatalf("view: %+v", v)
	}
	if _, err := DecodeRequest(b, nil, 2); err == nil || err.Error() != "orders: more than 2 orders" {
		t.Fatalf("limit: %v", err)
	}
	bad := AppendRequest(nil, orders[:1])
	bad = append(bad, 0x0a, 0x04, 0x12, 0x02, 0x18, 0x01) // order 1, item 0 with field 3
	if _, err := DecodeRequest(bad, nil, 10); err == nil || err.Error() != "orders[1].items[0].field 3: unknown field" {
		t.Fatalf("bad item: %v", err)
	}
}
