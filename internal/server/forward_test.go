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

func TestSplitJSONResults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		n     int
		ok    bool
		isErr []bool
	}{
		{"two", `{"results":[{"order":{"order_id":"x"}},{"error":{"code":"not_found","message":"m"}}]}` + "\n", 2, true, []bool{false, true}},
		{"spaces", ` { "results" : [ {"order":{"a":"]}\"{"}} , {"error":{}} ] } `, 2, true, []bool{false, true}},
		{"empty", `{"results":[]}`, 0, true, nil},
		{"too few", `{"results":[{"order":{}}]}`, 2, false, nil},
		{"too many", `{"results":[{"order":{}},{"order":{}}]}`, 1, false, nil},
		{"not an object", `{"results":[1]}`, 1, false, nil},
		{"invalid element", `{"results":[{"order":}]}`, 1, false, nil},
		{"mismatched brackets", `{"results":[{"order":[}]]}`, 1, false, nil},
		{"trailing data", `{"results":[{"order":{}}]}x`, 1, false, nil},
		{"other key", `{"orders":[{"order":{}}]}`, 1, false, nil},
		{"truncated", `{"results":[{"order":{}}`, 1, false, nil},
		{"unterminated string", `{"results":[{"order":"}]}`, 1, false, nil},
	} {
		answers := make([]remoteAnswer, tc.n)
		err := splitJSONResults([]byte(tc.body), answers)
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok %v", tc.name, err, tc.ok)
			continue
		}
		for i, want := range tc.isErr {
			if a := answers[i]; !a.set || a.sub != i || a.isErr != want || !json.Valid(a.raw) {
				t.Errorf("%s: answer %d: %+v %s", tc.name, i, a, a.raw)
			}
		}
	}
}

// FuzzSplitJSONResults: whatever the splitter accepts, encoding/json reads
// as the same elements.
func FuzzSplitJSONResults(f *testing.F) {
	for _, s := range []string{`{"results":[{"order":{"order_id":"1"}},{"error":{"code":"x"}}]}`, `{"results":[]}`, ` {"results" :[ {"a":"\"}"} ]} `, `{"results":[{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var std struct {
			Results []json.RawMessage `json:"results"`
		}
		n := 1
		stdErr := json.Unmarshal(body, &std)
		if stdErr == nil {
			n = len(std.Results)
		}
		answers := make([]remoteAnswer, n)
		if splitJSONResults(body, answers) != nil {
			return
		}
		if stdErr != nil {
			t.Fatalf("split accepted %q, encoding/json refused it: %v", body, stdErr)
		}
		for i, a := range answers {
			if !bytes.Equal(a.raw, std.Results[i]) {
				t.Fatalf("element %d: %q, encoding/json read %q", i, a.raw, std.Results[i])
			}
		}
	})
}

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

func TestRemoteJSONErrors(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		sub, idx  int
		want      string
	}{
		{"renumbered", `{"error":{"code":"not_found","message":"not found: orders[0].items[2].sku_id","field":"orders[0].items[2].sku_id"}}`, 0, 12,
			`{"error":{"code":"not_found","message":"not found: orders[12].items[2].sku_id","field":"orders[12].items[2].sku_id"}}`},
		{"out of stock kept whole", `{"error":{"code":"out_of_stock","message":"not enough stock for sku orders[1]","sku_id":"orders[1]","available":3}}`, 1, 5,
			`{"error":{"code":"out_of_stock","message":"not enough stock for sku orders[1]","sku_id":"orders[1]","available":3}}`},
		{"conflict", `{"error":{"code":"conflict","message":"m","sku_id":"s","stock_available":7}}`, 0, 1,
			`{"error":{"code":"conflict","message":"m","sku_id":"s","stock_available":7}}`},
		{"another prefix untouched", `{"error":{"code":"invalid_argument","message":"m","field":"orders[10].buyer_id"}}`, 1, 2,
			`{"error":{"code":"invalid_argument","message":"m","field":"orders[10].buyer_id"}}`},
		{"unknown code", `{"error":{"code":"weird","message":"m"}}`, 0, 0, `{"error":{"code":"internal","message":"a peer answered the unknown code \"weird\": m"}}`},
		{"not an error", `{"error":7}`, 0, 0, `{"error":{"code":"unavailable","message":"a peer's answer did not decode"}}`},
	} {
		a := remoteAnswer{set: true, raw: []byte(tc.raw), sub: tc.sub, isErr: true}
		if got := string(appendRemoteJSON(nil, &a, "orders", tc.idx)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	ok := remoteAnswer{set: true, raw: []byte(`{"order":{"order_id":"1"}}`)}
	if got := string(appendRemoteJSON(nil, &ok, "orders", 3)); got != `{"order":{"order_id":"1"}}` {
		t.Errorf("success: %s", got)
	}
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
	var gotAuth, gotBy string
	peerSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotBy = r.Header.Get("Authorization"), r.Header.Get(HeaderForwardedBy)
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
	a, err := c.send(context.Background(), tab, p, http.MethodGet, "/v1/orders/1", from, "", nil, 1)
	if err != nil || a.status != 200 || len(a.body) != 100 || gotAuth != "Bearer s" || gotBy != "a" {
		t.Fatalf("send: %+v %v; Authorization %q, %s %q", a, err, gotAuth, HeaderForwardedBy, gotBy)
	}
	c.cfg.PeerAnswerBytesMax = 99
	if _, err := c.send(context.Background(), tab, p, http.MethodGet, "/", from, "", nil, 1); err == nil {
		t.Error("an answer over the bound was accepted")
	}
	p.inflight <- struct{}{} // the one slot taken
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.send(ctx, tab, p, http.MethodGet, "/", from, "", nil, 1); !errors.Is(err, errPeerBusy) {
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
	_, jb, aerr := s.decodeJSONBatch(encodeOrdersJSON(nil, reqs, idx))
	check("json", jb, aerr)
	_, pb, done, aerr := s.decodeProtoBatch(encodeOrdersProto(nil, reqs, idx))
	check("protobuf", pb, aerr)
	done()

	settle := []engine.Command{
		{Kind: engine.KindPay, OrderID: engine.OrderIDOf(5, 42), Amount: 12345},
		{Kind: engine.KindCancel, OrderID: engine.OrderIDOf(1, 7)},
	}
	sreqs := []engine.Request{{Command: settle[0]}, {Command: settle[1]}}
	for name, body := range map[string][]byte{"json": encodeSettleJSON(nil, sreqs, []int32{0, 1}), "protobuf": encodeSettleProto(nil, sreqs, []int32{0, 1})} {
		var got *engine.Batch
		if name == "json" {
			_, got, aerr = s.decodeJSONSettle(body)
		} else {
			var done func()
			_, got, done, aerr = s.decodeProtoSettle(body)
			defer done()
		}
		if aerr != nil || len(got.Requests) != 2 {
			t.Fatalf("settle %s: %v", name, aerr)
		}
		for k, want := range settle {
			if g := got.Requests[k].Command; !reflect.DeepEqual(g, want) {
				t.Errorf("settle %s: command %d: %+v, want %+v", name, k, g, want)
			}
		}
	}
}
