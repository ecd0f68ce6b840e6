package wire

import (
	"bytes"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
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

// TestAppendResponseOrder: an order encoded with its id as a number is
// byte for byte the order encoded with the id's base-36 text, for ids of
// every length and fields long enough for two-byte lengths; and the
// inlined varint is protowire's.
func TestAppendResponseOrder(t *testing.T) {
	long := strings.Repeat("x", 200)
	for _, id := range []uint64{0, 1, 35, 36, 1295, 1296, 1 << 40, math.MaxUint64} {
		o := Order{Status: "pending_payment", BuyerID: long, MerchantID: "m1",
			Items: []OrderItem{{SKUID: "s1", Quantity: 2, UnitPrice: 100, Amount: 200}},
			Total: 200, Currency: "CNY", Channel: "app", Region: "CN-ZJ", CreatedAtUnixNanos: 1, PayByUnixNanos: 2, Replayed: id%2 == 1}
		got := AppendResponseOrder([]byte{9}, &o, id)
		o.OrderID = strconv.FormatUint(id, 36)
		want := AppendResponseResult([]byte{9}, &Result{Order: o})
		if !bytes.Equal(got, want) {
			t.Fatalf("id %d:\n got %x\nwant %x", id, got, want)
		}
	}
	for _, id := range []uint64{0, 1, 35, 36, 1295, 1296, 1<<40 + 7, math.MaxUint64} {
		if got, want := string(AppendOrderID([]byte("x"), id)), "x"+strconv.FormatUint(id, 36); got != want {
			t.Fatalf("AppendOrderID(%d) = %q, want %q", id, got, want)
		}
	}
	for _, v := range []uint64{0, 1, 127, 128, 200, 16383, 16384, 1<<63 + 5, 1 << 35, math.MaxUint64} {
		if got, want := appendVarint(nil, v), protowire.AppendVarint(nil, v); !bytes.Equal(got, want) {
			t.Fatalf("varint %d: %x, want %x", v, got, want)
		}
		if v == 0 {
			continue
		}
		want := protowire.AppendVarint(protowire.AppendTag(nil, OrderTotal, protowire.VarintType), v)
		if got := appendInt(nil, OrderTotal, int64(v)); !bytes.Equal(got, want) {
			t.Fatalf("int %d: %x, want %x", v, got, want)
		}
	}
}
