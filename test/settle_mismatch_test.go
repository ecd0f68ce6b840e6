package test

import (
	"testing"

	"github.com/fest-platform/fest/wire"
)

// TestSettlePaidOrderOtherAmount checks that a settle pay of another
// amount on an already-paid order is payment_mismatch for that action, as
// POST /v1/orders/{id}/pay answers it, in JSON and in protobuf, also when
// the order was paid earlier in the same request; the right amount is
// still the 200 of a repeated pay.
func TestSettlePaidOrderOtherAmount(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	ids := f.placeN(3)
	const path = "/v1/orders:settle"
	f.must(200, "POST", "/v1/orders/"+ids[0]+"/pay", storefrontToken, map[string]any{"amount": 1000})
	f.expectErr(422, "payment_mismatch", "amount", "POST", "/v1/orders/"+ids[0]+"/pay", storefrontToken, map[string]any{"amount": 999})

	a := decodeSettle(t, f.must(200, "POST", path, storefrontToken, map[string]any{"actions": []map[string]any{
		{"order_id": ids[0], "action": "pay", "amount": 999},
		{"order_id": ids[0], "action": "pay", "amount": 1000},
		{"order_id": ids[1], "action": "pay", "amount": 1000},
		{"order_id": ids[1], "action": "pay", "amount": 1001},
		{"order_id": ids[1], "action": "pay", "amount": 1000},
	}}).Body)
	wantSettle(t, a, 0, "payment_mismatch", "actions[0].amount", "")
	wantSettle(t, a, 1, "", "", "paid")
	wantSettle(t, a, 2, "", "", "paid")
	wantSettle(t, a, 3, "payment_mismatch", "actions[3].amount", "")
	wantSettle(t, a, 4, "", "", "paid")

	res := f.settleProto(wire.AppendSettleRequest(nil, []wire.Settle{
		{OrderID: ids[0], Amount: 1},
		{OrderID: ids[2], Amount: 1000},
		{OrderID: ids[2], Amount: 2000},
		{OrderID: ids[2], Amount: 1000},
	}))
	wantProto(t, res, 0, "payment_mismatch", "actions[0].amount", "")
	wantProto(t, res, 1, "", "", "paid")
	wantProto(t, res, 2, "payment_mismatch", "actions[2].amount", "")
	wantProto(t, res, 3, "", "", "paid")
	if s := f.sku("s1"); s.Sold != 3 || s.Reserved != 0 {
		t.Fatalf("stock after settle: %+v", s)
	}
}
