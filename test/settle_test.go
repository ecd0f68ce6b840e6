package test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/wire"
)

// settleAnswer is the JSON answer of POST /v1/orders:settle.
type settleAnswer struct {
	Results []struct {
		Order *struct {
			OrderID     string  `json:"order_id"`
			Status      string  `json:"status"`
			Total       *int64  `json:"total"`
			PaidAt      *string `json:"paid_at"`
			CancelledAt *string `json:"cancelled_at"`
		} `json:"order"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	} `json:"results"`
}

func decodeSettle(t *testing.T, b []byte) settleAnswer {
	t.Helper()
	var a settleAnswer
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("settle answer: %v: %s", err, b)
	}
	return a
}

// placeN places n one-unit orders of s1 (1,000 fen each) and returns their ids.
func (f *fest) placeN(n int) []string {
	f.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		o := decodeOrder(f.t, f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "buyer", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}}).Body)
		ids[i] = o.OrderID
	}
	return ids
}

// wantSettle checks result i: code "" for success with the given status.
func wantSettle(t *testing.T, a settleAnswer, i int, code, field, status string) {
	t.Helper()
	r := a.Results[i]
	if code == "" {
		if r.Order == nil || r.Error != nil || r.Order.Status != status {
			t.Fatalf("result %d: want order %s, got order %+v error %+v", i, status, r.Order, r.Error)
		}
		return
	}
	if r.Error == nil || r.Order != nil || r.Error.Code != code || field != "" && r.Error.Field != field {
		t.Fatalf("result %d: want %s (field %q), got order %+v error %+v", i, code, field, r.Order, r.Error)
	}
}

func TestSettleJSON(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	ids := f.placeN(5)
	const path = "/v1/orders:settle"
	body := map[string]any{"actions": []map[string]any{
		{"order_id": ids[0], "action": "pay", "amount": 1000},
		{"order_id": ids[1], "action": "cancel"},
		{"order_id": ids[2], "action": "pay", "amount": 999},
		{"order_id": "zzzzzzzz", "action": "pay", "amount": 1000},
		{"order_id": "NOT/AN-ID", "action": "pay", "amount": 1000},
		{"order_id": ids[3], "action": "cancel", "amount": 1000},
		{"order_id": ids[3], "action": "refund"},
		{"order_id": ids[3], "action": "pay"},
		{"order_id": ids[4], "action": "pay", "amount": -1},
	}}
	a := decodeSettle(t, f.must(200, "POST", path, storefrontToken, body).Body)
	if len(a.Results) != 9 {
		t.Fatalf("results: %+v", a)
	}
	wantSettle(t, a, 0, "", "", "paid")
	if o := a.Results[0].Order; o.OrderID != ids[0] || o.Total == nil || *o.Total != 1000 || o.PaidAt == nil || o.CancelledAt != nil {
		t.Fatalf("paid: %+v", o)
	}
	wantSettle(t, a, 1, "", "", "cancelled")
	if o := a.Results[1].Order; o.CancelledAt == nil || o.PaidAt != nil {
		t.Fatalf("cancelled: %+v", o)
	}
	wantSettle(t, a, 2, "payment_mismatch", "actions[2].amount", "")
	wantSettle(t, a, 3, "not_found", "actions[3].order_id", "")
	wantSettle(t, a, 4, "not_found", "actions[4].order_id", "")
	wantSettle(t, a, 5, "invalid_argument", "actions[5].amount", "")
	wantSettle(t, a, 6, "invalid_argument", "actions[6].action", "")
	wantSettle(t, a, 7, "invalid_argument", "actions[7].amount", "")
	wantSettle(t, a, 8, "invalid_argument", "actions[8].amount", "")

	// Repeated pay, pay after cancel, cancel after pay, repeated cancel.
	a = decodeSettle(t, f.must(200, "POST", path, storefrontToken, map[string]any{"actions": []map[string]any{
		{"order_id": ids[0], "action": "pay", "amount": 1000},
		{"order_id": ids[1], "action": "pay", "amount": 1000},
		{"order_id": ids[0], "action": "cancel"},
		{"order_id": ids[1], "action": "cancel"},
		{"order_id": ids[2], "action": "pay", "amount": 1000},
	}}).Body)
	wantSettle(t, a, 0, "", "", "paid")
	if o := a.Results[0].Order; o.PaidAt != nil || o.Total != nil {
		t.Fatalf("repeated pay answers the status alone: %+v", o)
	}
	wantSettle(t, a, 1, "invalid_state", "", "")
	wantSettle(t, a, 2, "invalid_state", "", "")
	wantSettle(t, a, 3, "", "", "cancelled")
	wantSettle(t, a, 4, "", "", "paid")

	// The books and the single endpoints agree.
	if o := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+ids[0], storefrontToken, nil).Body); o.Status != "paid" || o.PaidAt == "" {
		t.Fatalf("get paid: %+v", o)
	}
	if o := decodeOrder(t, f.must(200, "GET", "/v1/orders/"+ids[1], storefrontToken, nil).Body); o.Status != "cancelled" {
		t.Fatalf("get cancelled: %+v", o)
	}
	if s := f.sku("s1"); s.Available != 6 || s.Reserved != 2 || s.Sold != 2 {
		t.Fatalf("stock after settle: %+v", s)
	}
	m := string(f.must(200, "GET", "/metrics", "", nil).Body)
	if !strings.Contains(m, "\nfest_orders_paid_total 2\n") || !strings.Contains(m, "\nfest_orders_cancelled_total 1\n") {
		t.Fatalf("metrics do not count settled orders:\n%s", grepLines(m, "fest_orders_"))
	}

	// Whole-request errors.
	f.expectErr(422, "invalid_argument", "actions", "POST", path, storefrontToken, `{"actions":[]}`)
	f.expectErr(422, "invalid_argument", "actions", "POST", path, storefrontToken, `{}`)
	tooMany := `{"actions":[` + strings.Repeat(`{"order_id":"1","action":"cancel"},`, 10000) + `{"order_id":"1","action":"cancel"}]}`
	f.expectErr(422, "invalid_argument", "actions", "POST", path, storefrontToken, tooMany)
	f.expectErr(422, "invalid_argument", "color", "POST", path, storefrontToken, `{"actions":[{"order_id":"1","action":"cancel"}],"color":1}`)
	f.expectErr(422, "invalid_argument", "actions[1].color", "POST", path, storefrontToken, `{"actions":[{"order_id":"1","action":"cancel"},{"order_id":"1","action":"cancel","color":1}]}`)
	f.expectErr(422, "invalid_argument", "actions[0].amount", "POST", path, storefrontToken, `{"actions":[{"order_id":"1","action":"pay","amount":"1000"}]}`)
	f.expectErr(400, "invalid_json", "", "POST", path, storefrontToken, `{"actions":[`)
	f.expectErr(403, "forbidden", "", "POST", path, adminToken, body)
	f.expectErr(403, "forbidden", "", "POST", path, carrierToken, body)
	f.expectErr(401, "unauthenticated", "", "POST", path, "", body)
	huge := `{"actions":[{"order_id":"` + strings.Repeat("x", 16<<20) + `","action":"cancel"}]}`
	f.expectErr(413, "too_large", "", "POST", path, storefrontToken, huge)
	// Validated before anything is applied: nothing changed.
	if s := f.sku("s1"); s.Available != 6 || s.Reserved != 2 || s.Sold != 2 {
		t.Fatalf("stock after rejected requests: %+v", s)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// settleProto posts a protobuf settle body and decodes the 200 answer.
func (f *fest) settleProto(body []byte) []wire.SettleResult {
	f.t.Helper()
	r := f.must(200, "POST", "/v1/orders:settle", storefrontToken, body, "Content-Type", wire.ContentType)
	if ct := r.Header.Get("Content-Type"); ct != wire.ContentType {
		f.t.Fatalf("settle answer Content-Type %q", ct)
	}
	res, err := wire.DecodeSettleResponse(r.Body, nil)
	if err != nil {
		f.t.Fatalf("decode settle answer: %v", err)
	}
	return res
}

func wantProto(t *testing.T, res []wire.SettleResult, i int, code, field, status string) {
	t.Helper()
	r := res[i]
	if code == "" {
		if r.Error != nil || r.Status != status {
			t.Fatalf("result %d: want %s, got %+v (error %+v)", i, status, r, r.Error)
		}
		return
	}
	if r.Error == nil || r.Error.Code != code || field != "" && r.Error.Field != field {
		t.Fatalf("result %d: want %s (field %q), got %+v (error %+v)", i, code, field, r, r.Error)
	}
}

func TestSettleProtobuf(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 10})
	ids := f.placeN(4)
	res := f.settleProto(wire.AppendSettleRequest(nil, []wire.Settle{
		{OrderID: ids[0], Amount: 1000},
		{OrderID: ids[1], Cancel: true},
		{OrderID: ids[2], Amount: 1001},
		{OrderID: "zzzzzzzz", Amount: 1000},
		{OrderID: "bad id", Amount: 1000},
		{OrderID: ids[3], Cancel: true, Amount: 5},
		{OrderID: "", Cancel: true},
	}))
	if len(res) != 7 {
		t.Fatalf("results: %+v", res)
	}
	wantProto(t, res, 0, "", "", "paid")
	if r := res[0]; r.OrderID != ids[0] || r.Total != 1000 || r.ChangedAtUnixNanos == 0 {
		t.Fatalf("paid: %+v", r)
	}
	wantProto(t, res, 1, "", "", "cancelled")
	if r := res[1]; r.ChangedAtUnixNanos == 0 {
		t.Fatalf("cancelled: %+v", r)
	}
	wantProto(t, res, 2, "payment_mismatch", "actions[2].amount", "")
	wantProto(t, res, 3, "not_found", "actions[3].order_id", "")
	wantProto(t, res, 4, "not_found", "actions[4].order_id", "")
	if res[4].OrderID != "bad id" {
		t.Fatalf("an error result names the id given: %+v", res[4])
	}
	wantProto(t, res, 5, "invalid_argument", "actions[5].amount", "")
	wantProto(t, res, 6, "not_found", "actions[6].order_id", "")

	res = f.settleProto(wire.AppendSettleRequest(nil, []wire.Settle{
		{OrderID: ids[0], Amount: 1000},
		{OrderID: ids[1], Amount: 1000},
		{OrderID: ids[0], Cancel: true},
		{OrderID: ids[2], Amount: 1000},
	}))
	wantProto(t, res, 0, "", "", "paid")
	if res[0].ChangedAtUnixNanos != 0 || res[0].Total != 0 {
		t.Fatalf("repeated pay answers the status alone: %+v", res[0])
	}
	wantProto(t, res, 1, "invalid_state", "", "")
	wantProto(t, res, 2, "invalid_state", "", "")
	wantProto(t, res, 3, "", "", "paid")
	if s := f.sku("s1"); s.Available != 7 || s.Reserved != 1 || s.Sold != 2 {
		t.Fatalf("stock after settle: %+v", s)
	}

	const path = "/v1/orders:settle"
	ct := []string{"Content-Type", wire.ContentType}
	f.expectErr(422, "invalid_argument", "actions", "POST", path, storefrontToken, []byte{}, ct...)
	many := make([]wire.Settle, 10_001)
	for i := range many {
		many[i] = wire.Settle{OrderID: "1", Cancel: true}
	}
	f.expectErr(422, "invalid_argument", "actions", "POST", path, storefrontToken, wire.AppendSettleRequest(nil, many), ct...)
	unknown := append(wire.AppendSettleRequest(nil, []wire.Settle{{OrderID: ids[3], Cancel: true}}), 0x0a, 0x02, 0x28, 0x01)
	f.expectErr(422, "invalid_argument", "actions[1].field 5", "POST", path, storefrontToken, unknown, ct...)
	f.expectErr(422, "invalid_argument", "field 2", "POST", path, storefrontToken, []byte{0x12, 0x00}, ct...)
	f.expectErr(400, "invalid_protobuf", "", "POST", path, storefrontToken, []byte{0x0a, 0xff}, ct...)
	f.expectErr(403, "forbidden", "", "POST", path, adminToken, unknown, ct...)
	f.expectErr(401, "unauthenticated", "", "POST", path, "", unknown, ct...)
	if s := f.sku("s1"); s.Available != 7 || s.Reserved != 1 || s.Sold != 2 {
		t.Fatalf("stock after rejected requests: %+v", s)
	}
}

// The Go client's SettlePay and SettleCancel: concurrent calls share
// protobuf requests; errors are *client.Error.
func TestSettleClient(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 200})
	c, err := client.New(client.Config{Addr: f.URL, Token: storefrontToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const n = 100
	orders := make([]client.Order, n)
	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() {
			o, err := c.PlaceOrder(ctx, client.OrderRequest{BuyerID: "cb", Items: []client.Item{{SKUID: "s1", Quantity: 1}}})
			if err != nil {
				t.Error(err)
			}
			orders[i] = o
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range orders {
		wg.Go(func() {
			o := orders[i]
			var s client.Settled
			var err error
			if i%4 == 0 {
				s, err = c.SettleCancel(ctx, o.ID)
				if err != nil || s.Status != "cancelled" || s.OrderID != o.ID || s.ChangedAt.IsZero() {
					t.Errorf("settle cancel %s: %+v %v", o.ID, s, err)
				}
				return
			}
			s, err = c.SettlePay(ctx, o.ID, o.Total)
			if err != nil || s.Status != "paid" || s.Total != o.Total || s.ChangedAt.IsZero() {
				t.Errorf("settle pay %s: %+v %v", o.ID, s, err)
			}
		})
	}
	wg.Wait()
	if s := f.sku("s1"); s.Sold != 75 || s.Reserved != 0 || s.Available != 125 {
		t.Fatalf("stock after client settle: %+v", s)
	}
	var e *client.Error
	if _, err := c.SettlePay(ctx, orders[0].ID, orders[0].Total); !errors.As(err, &e) || e.Code != "invalid_state" || e.Status != 409 {
		t.Fatalf("pay cancelled: %v", err)
	}
	if _, err := c.SettlePay(ctx, orders[1].ID, orders[1].Total); err != nil {
		t.Fatalf("pay paid again: %v", err)
	}
	// Another amount is still the wrong amount, as /pay answers it.
	if _, err := c.SettlePay(ctx, orders[1].ID, 1); !errors.As(err, &e) || e.Code != "payment_mismatch" || e.Status != 422 {
		t.Fatalf("pay paid again with another amount: %v", err)
	}
	if _, err := c.SettlePay(ctx, "nope!", 1); !errors.As(err, &e) || e.Code != "not_found" || e.Status != 404 {
		t.Fatalf("pay bad id: %v", err)
	}
	o, err := c.PlaceOrder(ctx, client.OrderRequest{BuyerID: "cb", Items: []client.Item{{SKUID: "s1", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SettlePay(ctx, o.ID, o.Total+1); !errors.As(err, &e) || e.Code != "payment_mismatch" || e.Status != 422 {
		t.Fatalf("pay wrong amount: %v", err)
	}
	// The single endpoints are unchanged: Pay answers the full order.
	p, err := c.Pay(ctx, o.ID, o.Total)
	if err != nil || p.Status != "paid" || len(p.Items) != 1 || p.PaidAt.IsZero() {
		t.Fatalf("pay: %+v %v", p, err)
	}
	// A wrong role is the whole request's error, for every call in it.
	ac, err := client.New(client.Config{Addr: f.URL, Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := ac.SettleCancel(ctx, o.ID); !errors.As(err, &e) || e.Code != "forbidden" || e.Status != 403 {
		t.Fatalf("admin settle: %v", err)
	}
}
