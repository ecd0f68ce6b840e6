package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/wire"
)

func TestSplitProtoResults(t *testing.T) {
	results := []wire.Result{
		{Order: wire.Order{OrderID: "1", Status: "pending_payment", Items: []wire.OrderItem{{SKUID: "s", Quantity: 1}}}},
		{Error: &wire.Error{Code: "not_found", Message: "m", Field: "orders[1].items[0].sku_id"}},
	}
	body := wire.AppendResponse(nil, results)
	answers := make([]remoteAnswer, 2)
	if err := splitProtoResults(body, int(wire.OrderResultError), answers); err != nil {
		t.Fatal(err)
	}
	if answers[0].isErr || !answers[1].isErr || !bytes.Equal(append(append([]byte(nil), answers[0].raw...), answers[1].raw...), body) {
		t.Errorf("answers %+v", answers)
	}
	// Renumbered to 7, the error reads back with its field moved.
	out := appendRemoteProtoResult(nil, &answers[1], 7)
	got, err := wire.DecodeResponse(out, nil)
	if err != nil || len(got) != 1 || got[0].Error == nil || got[0].Error.Field != "orders[7].items[0].sku_id" {
		t.Errorf("renumbered: %+v %v", got, err)
	}
	if splitProtoResults(body, int(wire.OrderResultError), make([]remoteAnswer, 3)) == nil {
		t.Error("two results accepted for three")
	}
	if splitProtoResults(body[:len(body)-1], int(wire.OrderResultError), make([]remoteAnswer, 2)) == nil {
		t.Error("truncated answer accepted")
	}
	settle := wire.AppendSettleResponse(nil, []wire.SettleResult{{OrderID: "1", Status: "paid"}, {OrderID: "2", Error: &wire.Error{Code: "payment_mismatch", Message: "m", Field: "actions[1].amount"}}})
	if err := splitProtoResults(settle, int(wire.SettleResultError), answers); err != nil || answers[0].isErr || !answers[1].isErr {
		t.Errorf("settle: %+v %v", answers, err)
	}
	out = appendRemoteProtoSettle(nil, &answers[1], 4, "2")
	sr, err := wire.DecodeSettleResponse(out, nil)
	if err != nil || len(sr) != 1 || sr[0].OrderID != "2" || sr[0].Error.Field != "actions[4].amount" || sr[0].Error.Code != "payment_mismatch" {
		t.Errorf("settle renumbered: %+v %v", sr, err)
	}
}

// FuzzSplitProtoResults: an accepted answer is its elements end to end,
// each a tagged result.
func FuzzSplitProtoResults(f *testing.F) {
	f.Add(wire.AppendResponse(nil, []wire.Result{{Order: wire.Order{OrderID: "1"}}, {Error: &wire.Error{Code: "x"}}}), 2)
	f.Add([]byte{0x0a, 0x00}, 1)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		answers := make([]remoteAnswer, n)
		if splitProtoResults(body, int(wire.OrderResultError), answers) != nil {
			return
		}
		var joined []byte
		for _, a := range answers {
			if len(a.raw) == 0 || a.raw[0] != 0x0a {
				t.Fatalf("element %q is not field 1", a.raw)
			}
			joined = append(joined, a.raw...)
		}
		if !bytes.Equal(joined, body) {
			t.Fatalf("elements %q do not make up %q", joined, body)
		}
	})
}

// TestRemoteJSON: a peer's protobuf result renders as the JSON this node
// renders itself: an order exactly as appendOrder writes it, an error
// renumbered to the caller's index.
func TestRemoteJSON(t *testing.T) {
	for _, tc := range []struct {
		name     string
		e        wire.Error
		sub, idx int
		want     string
	}{
		{"renumbered", wire.Error{Code: "not_found", Message: "not found: orders[0].items[2].sku_id", Field: "orders[0].items[2].sku_id"}, 0, 12,
			`{"error":{"code":"not_found","message":"not found: orders[12].items[2].sku_id","field":"orders[12].items[2].sku_id"}}`},
		{"out of stock kept whole", wire.Error{Code: "out_of_stock", Message: "not enough stock for sku orders[1]", SKUID: "orders[1]", Available: 3}, 1, 5,
			`{"error":{"code":"out_of_stock","message":"not enough stock for sku orders[1]","sku_id":"orders[1]","available":3}}`},
		{"conflict", wire.Error{Code: "conflict", Message: "m", SKUID: "s", Available: 7}, 0, 1,
			`{"error":{"code":"conflict","message":"m","sku_id":"s","stock_available":7}}`},
		{"another prefix untouched", wire.Error{Code: "invalid_argument", Message: "m", Field: "orders[10].buyer_id"}, 1, 2,
			`{"error":{"code":"invalid_argument","message":"m","field":"orders[10].buyer_id"}}`},
		{"unknown code", wire.Error{Code: "weird", Message: "m"}, 0, 0, `{"error":{"code":"internal","message":"a peer answered the unknown code \"weird\": m"}}`},
	} {
		a := remoteAnswer{set: true, raw: wire.AppendResponse(nil, []wire.Result{{Error: &tc.e}}), sub: tc.sub, isErr: true}
		if got := string(appendRemoteJSONOrder(nil, &a, tc.idx, false)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	o := orderView{ID: engine.OrderIDOf(5, 77), Status: engine.StatusPending, BuyerID: "买家 \"1\"", MerchantID: "m", Channel: "live:c", Region: "CN-ZJ", DealID: "d",
		Items: []engine.Item{{SKUID: "s1", Quantity: 2, UnitPrice: 100, Amount: 200}, {SKUID: "s2", Quantity: 1, UnitPrice: 5, Amount: 5}},
		Total: 205, CreatedAt: 1_600_000_000_123_456_789, PayBy: 1_600_000_900_000_000_000}
	for _, replayed := range []bool{false, true} {
		w := wire.Order{OrderID: o.ID.String(), Status: o.Status.String(), BuyerID: o.BuyerID, MerchantID: o.MerchantID, Total: o.Total, Currency: "CNY",
			Channel: o.Channel, Region: o.Region, DealID: o.DealID, CreatedAtUnixNanos: o.CreatedAt, PayByUnixNanos: o.PayBy, Replayed: replayed}
		for _, it := range o.Items {
			w.Items = append(w.Items, wire.OrderItem{SKUID: it.SKUID, Quantity: it.Quantity, UnitPrice: it.UnitPrice, Amount: it.Amount})
		}
		a := remoteAnswer{set: true, raw: wire.AppendResponse(nil, []wire.Result{{Order: w}})}
		want := `{"order":` + string(appendOrder(nil, &o))
		if replayed {
			want += `,"replayed":true`
		}
		want += "}"
		if got := string(appendRemoteJSONOrder(nil, &a, 3, false)); got != want {
			t.Errorf("order, replayed %v:\n got %s\nwant %s", replayed, got, want)
		}
	}
	id := engine.OrderIDOf(2, 9)
	a := remoteAnswer{set: true, raw: wire.AppendSettleResult(nil, &wire.SettleResult{OrderID: id.String(), Status: "paid", Total: 500, ChangedAtUnixNanos: 1e18})}
	if got, want := string(appendRemoteJSONSettle(nil, &a, 0)), string(appendSettledJSON(nil, id, engine.StatusPaid, 500, 1e18)); got != want {
		t.Errorf("settle:\n got %s\nwant %s", got, want)
	}
}

// FuzzRemoteJSON: whatever a peer answers, the JSON rendered from it is
// valid JSON.
func FuzzRemoteJSON(f *testing.F) {
	f.Add(wire.AppendResponse(nil, []wire.Result{{Order: wire.Order{OrderID: "1", Status: "paid"}}}), false, false)
	f.Add(wire.AppendResponse(nil, []wire.Result{{Error: &wire.Error{Code: "not_found", Field: "orders[0].x"}}}), true, false)
	f.Add(wire.AppendSettleResult(nil, &wire.SettleResult{OrderID: "1", Status: "paid"}), false, true)
	f.Fuzz(func(t *testing.T, raw []byte, isErr, settle bool) {
		a := remoteAnswer{set: true, raw: raw, isErr: isErr}
		var out []byte
		if settle {
			out = appendRemoteJSONSettle(nil, &a, 1)
		} else {
			out = appendRemoteJSONOrder(nil, &a, 1, false)
		}
		if !json.Valid(out) {
			t.Fatalf("%q rendered as invalid JSON %q", raw, out)
		}
	})
}

func TestClusterConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cc   ClusterConfig
		ok   bool
	}{
		{"defaults", ClusterConfig{}, true},
		{"too many conns", ClusterConfig{PeerConnsMax: peerConnsMaxLimit + 1}, false},
		{"negative inflight", ClusterConfig{PeerInflightMax: -1}, false},
		{"negative timeout", ClusterConfig{ForwardTimeout: -1}, false},
		{"negative view age", ClusterConfig{ViewAgeMax: -1}, false},
		{"negative answer bound", ClusterConfig{PeerAnswerBytesMax: -1}, false},
	} {
		cfg := Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c", Cluster: &tc.cc}
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestAttachClusterRequired: a cluster node cannot be made ready without
// its router and membership, nor a single node given them.
func TestAttachClusterRequired(t *testing.T) {
	mustPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		fn()
	}
	cl, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c", Cluster: &ClusterConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	mustPanic("Attach before AttachCluster", func() { cl.Attach(nil, nil, nil) })
	mustPanic("AttachCluster without a router", func() { cl.AttachCluster(nil, &viewHolder{}) })
	mustPanic("AttachCluster on a single node", func() { newTestServer(t).AttachCluster(&tableRouter{}, &viewHolder{}) })
}

// TestSendBounds: a forward past the in-flight bound waits for a slot
// until its context ends (busy), an answer past PeerAnswerBytesMax is
// refused, and the caller's Authorization goes unchanged with the
// forwarding mark.
func TestSendBounds(t *testing.T) {
	var gotAuth, gotBy, gotKey string
	peerSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotBy, gotKey = r.Header.Get("Authorization"), r.Header.Get(HeaderForwardedBy), r.Header.Get("Idempotency-Key")
		w.Write(bytes.Repeat([]byte("x"), 100))
	}))
	defer peerSrv.Close()
	s, err := New(Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c", Cluster: &ClusterConfig{PeerInflightMax: 1, PeerAnswerBytesMax: 100}})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cl
	c.peersMu.Lock()
	p := c.peerLocked("b", peerSrv.URL)
	c.peersMu.Unlock()
	tab := &routeTable{node: "a"}
	from := http.Header{"Authorization": {"Bearer s"}}
	a, err := c.send(context.Background(), tab, p, http.MethodGet, "/v1/orders/1", from, "", "", nil, 1)
	if err != nil || a.status != 200 || len(a.body) != 100 || gotAuth != "Bearer s" || gotBy != "a" {
		t.Fatalf("send: %+v %v; Authorization %q, %s %q", a, err, gotAuth, HeaderForwardedBy, gotBy)
	}
	// Idempotency-Key goes with a single order only: on a batch part
	// net/http would take it as leave to resend the part.
	keyed := http.Header{"Authorization": {"Bearer s"}, "Idempotency-Key": {"k-1"}}
	if _, err := c.send(context.Background(), tab, p, http.MethodPost, "/v1/orders", keyed, "", "", []byte("{}"), 1); err != nil || gotKey != "k-1" {
		t.Fatalf("single order: %v, Idempotency-Key %q", err, gotKey)
	}
	if _, err := c.send(context.Background(), tab, p, http.MethodPost, "/v1/orders:batch", keyed, "", wire.ContentType, []byte{}, 2); err != nil || gotKey != "" {
		t.Fatalf("batch part: %v, Idempotency-Key %q forwarded", err, gotKey)
	}
	c.cfg.PeerAnswerBytesMax = 99
	if _, err := c.send(context.Background(), tab, p, http.MethodGet, "/", from, "", "", nil, 1); err == nil {
		t.Error("an answer over the bound was accepted")
	}
	p.inflight <- struct{}{} // the one slot taken
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.send(ctx, tab, p, http.MethodGet, "/", from, "", "", nil, 1); !errors.Is(err, errPeerBusy) {
		t.Errorf("past the in-flight bound: %v, want %v", err, errPeerBusy)
	}
}

// TestPartEncodersRoundTrip: the parts a node sends its peers decode, by
// the peers' own decoders, into the very commands they were made from.
func TestPartEncodersRoundTrip(t *testing.T) {
	s := newTestServer(t)
	orders := []engine.Command{
		{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "u1", Channel: "app", Items: []engine.Item{{SKUID: "s1", Quantity: 2}, {SKUID: "s\"2\\", Quantity: 1}}}},
		{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "买家", Channel: "live:c1", Region: "CN-ZJ", DealID: "d1", IdempotencyKey: "k1", Items: []engine.Item{{SKUID: "s3", Quantity: 999}}}},
	}
	for i := range orders {
		finishOrderCommand(&orders[i])
	}
	reqs := make([]engine.Request, 3)
	reqs[0].Command, reqs[2].Command = orders[0], orders[1] // index 1 stays home
	idx := []int32{0, 2}
	check := func(name string, got *engine.Batch, aerr *apiError) {
		t.Helper()
		if aerr != nil || len(got.Requests) != 2 {
			t.Fatalf("%s: %v", name, aerr)
		}
		for k, want := range orders {
			if g := got.Requests[k].Command; !reflect.DeepEqual(g, want) {
				t.Errorf("%s: command %d\n got %+v\nwant %+v", name, k, g, want)
			}
		}
	}
	_, pb, done, aerr := s.decodeProtoBatch(encodeOrdersProto(nil, reqs, idx))
	check("protobuf", pb, aerr)
	done()

	settle := []engine.Command{
		{Kind: engine.KindPay, OrderID: engine.OrderIDOf(5, 42), Amount: 12345},
		{Kind: engine.KindCancel, OrderID: engine.OrderIDOf(1, 7)},
	}
	sreqs := []engine.Request{{Command: settle[0]}, {Command: settle[1]}}
	_, got, sdone, aerr := s.decodeProtoSettle(encodeSettleProto(nil, sreqs, []int32{0, 1}))
	if aerr != nil || len(got.Requests) != 2 {
		t.Fatalf("settle: %v", aerr)
	}
	for k, want := range settle {
		if g := got.Requests[k].Command; !reflect.DeepEqual(g, want) {
			t.Errorf("settle: command %d: %+v, want %+v", k, g, want)
		}
	}
	sdone()
}
