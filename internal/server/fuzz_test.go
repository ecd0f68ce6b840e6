package server

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

// FuzzDecodeOrderJSON: any body either decodes into a valid command or is
// rejected with one of the contract's codes; it never panics.
func FuzzDecodeOrderJSON(f *testing.F) {
	for _, s := range []string{
		`{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":2}],"channel":"live:c1","region":"CN-ZJ"}`,
		`{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":"2"}]}`,
		`{"buyer_id":"u1","items":[],"x":1}`,
		`{"buyer_id":7}`, `[]`, `null`, `{`, ``, `{"buyer_id":"u1"} {}`,
		`{"buyer_id":"\u0000","items":[{"sku_id":"a/b","quantity":1000}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var o orderJSON
		if aerr := decodeOrder(body, &o); aerr != nil {
			if aerr.Code != "invalid_json" && aerr.Code != "invalid_argument" {
				t.Fatalf("decode error code %q", aerr.Code)
			}
			return
		}
		var cmd engine.Command
		if aerr := orderCommand(&o, "", -1, &cmd); aerr != nil {
			if aerr.Code != "invalid_argument" || aerr.Field == "" {
				t.Fatalf("validation error %+v", aerr)
			}
			return
		}
		if cmd.Kind != engine.KindPlaceOrder || len(cmd.Order.Items) < 1 || len(cmd.Order.Items) > orderItemsMax {
			t.Fatalf("accepted an invalid order: %+v", cmd)
		}
		for _, it := range cmd.Order.Items {
			if it.Quantity < 1 || it.Quantity > itemQuantityMax || !validID(it.SKUID) {
				t.Fatalf("accepted item %+v", it)
			}
		}
		// The answer of an accepted order is valid JSON.
		_ = appendString(nil, cmd.Order.BuyerID)
	})
}

// FuzzDecodeBatchProto: the binary decoder never panics, and what it accepts
// re-encodes to a body that decodes to the same orders.
func FuzzDecodeBatchProto(f *testing.F) {
	f.Add(wire.AppendRequest(nil, []wire.PlaceOrder{{BuyerID: "u1", Items: []wire.Item{{SKUID: "s1", Quantity: 2}}, Channel: "app", IdempotencyKey: "k"}}))
	f.Add(wire.AppendRequest(nil, []wire.PlaceOrder{{BuyerID: "u", Items: []wire.Item{{SKUID: "a", Quantity: -1}, {SKUID: "b", Quantity: 999}}}, {}}))
	f.Add([]byte{0x0a, 0xff})
	f.Add([]byte{0x12, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		orders, err := wire.DecodeRequest(body, nil, 100)
		if err != nil {
			return
		}
		again, err := wire.DecodeRequest(wire.AppendRequest(nil, orders), nil, 100)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(orders) {
			t.Fatalf("round trip: %d orders, want %d", len(again), len(orders))
		}
		for i := range orders {
			a, b := orders[i], again[i]
			if a.BuyerID != b.BuyerID || a.Channel != b.Channel || a.Region != b.Region || a.DealID != b.DealID || a.IdempotencyKey != b.IdempotencyKey || len(a.Items) != len(b.Items) {
				t.Fatalf("round trip order %d: %+v vs %+v", i, a, b)
			}
			for j := range a.Items {
				if a.Items[j] != b.Items[j] {
					t.Fatalf("round trip item: %+v vs %+v", a.Items[j], b.Items[j])
				}
			}
		}
	})
}

// FuzzDecodeSettle: a settle body, protobuf or JSON, either is rejected
// whole with one of the contract's codes or gives one entry per action,
// each an engine pay or cancel or a per-action not_found/invalid_argument
// naming its action. It never panics.
func FuzzDecodeSettle(f *testing.F) {
	f.Add(true, wire.AppendSettleRequest(nil, []wire.Settle{{OrderID: "1", Amount: 59800}, {OrderID: "2", Cancel: true}, {OrderID: "x/y", Cancel: true, Amount: 3}}))
	f.Add(true, []byte{})
	f.Add(true, []byte{0x0a, 0xff})
	f.Add(true, []byte{0x0a, 0x02, 0x20, 0x01})
	f.Add(false, []byte(`{"actions":[{"order_id":"1","action":"pay","amount":59800},{"order_id":"2","action":"cancel"}]}`))
	f.Add(false, []byte(`{"actions":[{"order_id":"1","action":"cancel","amount":1},{"order_id":"1","action":"refund","x":1}]}`))
	f.Add(false, []byte(`{"actions":[]}`))
	f.Fuzz(func(t *testing.T, proto bool, body []byte) {
		s := &Server{cfg: Config{BatchOrdersMax: 50}}
		var entries []settleEntry
		var batch *engine.Batch
		var aerr *apiError
		if proto {
			var done func()
			entries, batch, done, aerr = s.decodeProtoSettle(body)
			if done != nil {
				defer done()
			}
		} else {
			entries, batch, aerr = s.decodeJSONSettle(body)
		}
		if aerr != nil {
			switch aerr.Code {
			case "invalid_argument", "invalid_protobuf", "invalid_json":
			default:
				t.Fatalf("request error %+v", aerr)
			}
			return
		}
		if len(entries) < 1 || len(entries) > 50 {
			t.Fatalf("%d actions accepted", len(entries))
		}
		n := 0
		for i, e := range entries {
			if e.err != nil {
				if e.err.Code != "invalid_argument" && e.err.Code != "not_found" || !strings.HasPrefix(e.err.Field, "actions["+strconv.Itoa(i)+"].") {
					t.Fatalf("action %d error %+v", i, e.err)
				}
				continue
			}
			if e.req != n {
				t.Fatalf("action %d at request %d, want %d", i, e.req, n)
			}
			n++
			cmd := batch.Requests[e.req].Command
			if cmd.Kind != engine.KindPay && cmd.Kind != engine.KindCancel || cmd.Kind == engine.KindCancel && cmd.Amount != 0 || cmd.Amount < 0 || cmd.OrderID.String() == "" {
				t.Fatalf("action %d command %+v", i, cmd)
			}
		}
		if n != len(batch.Requests) {
			t.Fatalf("%d requests for %d valid actions", len(batch.Requests), n)
		}
	})
}
