package wire

import "testing"

// TestDecodeResponseViewSkipItems: with SkipItems the orders decode as
// without, but for their items; and reusing a view for a shorter answer
// leaves nothing of the longer one.
func TestDecodeResponseViewSkipItems(t *testing.T) {
	body := AppendResponse(nil, []Result{
		{Order: Order{OrderID: "o1", Status: "pending_payment", Total: 300, Items: []OrderItem{{SKUID: "s1", Quantity: 3, UnitPrice: 100, Amount: 300}}}},
		{Error: &Error{Code: "out_of_stock", Message: "gone", SKUID: "s2"}},
		{Order: Order{OrderID: "o3", Status: "pending_payment", Total: 50, Items: []OrderItem{{SKUID: "s3", Quantity: 1, UnitPrice: 50, Amount: 50}, {SKUID: "s4", Quantity: 1}}}},
	})
	for _, skip := range []bool{false, true} {
		v := ResponseView{SkipItems: skip}
		if err := DecodeResponseView(body, &v); err != nil {
			t.Fatalf("skip %t: %v", skip, err)
		}
		if len(v.Results) != 3 || string(v.Results[0].Order.OrderID) != "o1" || v.Results[0].Order.Total != 300 ||
			v.Results[1].Error == nil || v.Results[1].Error.Code != "out_of_stock" || string(v.Results[2].Order.OrderID) != "o3" {
			t.Fatalf("skip %t: results %+v", skip, v.Results)
		}
		wantItems := 3
		if skip {
			wantItems = 0
		}
		if len(v.Items) != wantItems || len(v.OrderItems(2)) != wantItems-min(wantItems, 1) {
			t.Errorf("skip %t: %d items, order 3 has %d", skip, len(v.Items), len(v.OrderItems(2)))
		}
		short := AppendResponse(nil, []Result{{Order: Order{OrderID: "o9", Status: "paid"}}})
		if err := DecodeResponseView(short, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Results) != 1 || string(v.Results[0].Order.OrderID) != "o9" {
			t.Fatalf("skip %t: reused view %+v", skip, v.Results)
		}
		if stale := v.Results[:3]; stale[1].Error != nil || stale[2].Order.OrderID != nil {
			t.Errorf("skip %t: the longer answer's results stay past the shorter's: %+v", skip, stale[1:])
		}
	}
}
