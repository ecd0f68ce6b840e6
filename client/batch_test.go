package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fest-platform/fest/wire"
)

// TestErrorOfUsesContractTable: a per-order error of a batch gets the
// status the contract's table gives its code, internal included (it was
// 422), and retryable codes a retry delay.
func TestErrorOfUsesContractTable(t *testing.T) {
	cases := []struct {
		code   string
		status int
		retry  time.Duration
	}{
		{"internal", 500, 0}, {"conflict", 409, 0}, {"limit_exceeded", 409, 0}, {"out_of_stock", 409, 0},
		{"invalid_argument", 422, 0}, {"not_found", 404, 0}, {"overloaded", 429, time.Second},
		{"unavailable", 503, time.Second}, {"gone", 410, 0},
	}
	for _, c := range cases {
		e := errorOf(&wire.Error{Code: c.code})
		if e.Status != c.status || e.RetryAfter != c.retry {
			t.Errorf("%s: status %d retry %v, want %d %v", c.code, e.Status, e.RetryAfter, c.status, c.retry)
		}
	}
}

// batchServer answers batches as fest does: order i is placed unless its
// buyer is "refused", which gets out_of_stock; settle actions succeed
// unless the order id is "gone".
func batchServer(t *testing.T) *httptest.Server {
	s := httptest.NewServer(batchMux(t))
	t.Cleanup(s.Close)
	return s
}

// batchQueries holds the query of the last batch batchMux served.
var batchQueries atomic.Value

// batchMux is batchServer's handler.
func batchMux(t *testing.T) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders:batch", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		batchQueries.Store(r.URL.RawQuery)
		if r.Header.Get("Content-Type") == "application/json" {
			var req struct {
				Orders []struct {
					BuyerID string `json:"buyer_id"`
				} `json:"orders"`
			}
			if err := json.Unmarshal(body, &req); err != nil {
				t.Errorf("server: json batch: %v: %s", err, body)
			}
			out := []any{}
			for i, o := range req.Orders {
				if o.BuyerID == "refused" {
					out = append(out, map[string]any{"error": map[string]any{"code": "out_of_stock", "message": "no", "sku_id": "s1", "available": 0}})
				} else {
					out = append(out, map[string]any{"order": map[string]any{"order_id": "o" + strconv.Itoa(i), "status": "pending_payment", "total": 100}})
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"results": out})
			return
		}
		orders, err := wire.DecodeRequest(body, nil, wire.BatchOrdersMax)
		if err != nil {
			t.Errorf("server: protobuf batch: %v", err)
		}
		var results []wire.Result
		for i, o := range orders {
			if o.BuyerID == "refused" {
				results = append(results, wire.Result{Error: &wire.Error{Code: "out_of_stock", Message: "no", SKUID: "s1"}})
				continue
			}
			if len(o.Items) != 2 || o.Items[1].SKUID != "s2" || o.Items[1].Quantity != 3 {
				t.Errorf("server: order %d items %+v", i, o.Items)
			}
			results = append(results, wire.Result{Order: wire.Order{OrderID: "o" + strconv.Itoa(i), Status: "pending_payment", Total: 100}})
		}
		w.Header().Set("Content-Type", wire.ContentType)
		w.Write(wire.AppendResponse(nil, results))
	})
	mux.HandleFunc("POST /v1/orders:settle", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		acts, err := wire.DecodeSettleRequest(body, nil, wire.BatchOrdersMax)
		if err != nil {
			t.Errorf("server: settle: %v", err)
		}
		var b []byte
		for _, a := range acts {
			res := wire.SettleResult{OrderID: a.OrderID, Status: "paid", Total: a.Amount, ChangedAtUnixNanos: 1}
			if a.Cancel {
				res.Status = "cancelled"
			}
			if a.OrderID == "gone" {
				res = wire.SettleResult{OrderID: a.OrderID, Error: &wire.Error{Code: "not_found", Message: "no order"}}
			}
			b = wire.AppendSettleResult(b, &res)
		}
		w.Write(b)
	})
	mux.HandleFunc("POST /overloaded/v1/orders:batch", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":{"code":"overloaded","message":"busy"}}`))
	})
	mux.HandleFunc("POST /garbage/v1/orders:batch", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte{0xff, 0xff, 0xff})
	})
	return mux
}

func newTestClient(t *testing.T, addr string) *Client {
	c, err := New(Config{Addr: addr, Token: "t", Conns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// placeBatches places a reused batch of three orders rounds times in
// each form against batchMux's server and checks each order's result and
// that the brief answer was asked for.
func placeBatches(t *testing.T, c *Client, b *OrderBatch, rounds int) {
	t.Helper()
	for _, place := range []struct {
		name string
		f    func(context.Context, *OrderBatch) error
	}{{"protobuf", c.PlaceBatch}, {"json", c.PlaceBatchJSON}} {
		for round := range rounds {
			b.Reset()
			for _, buyer := range []string{"u1", "refused", "u3"} {
				b.Add(wire.PlaceOrder{BuyerID: buyer, Items: []wire.Item{{SKUID: "s1", Quantity: 1}}, Region: "CN-ZJ"})
				b.AddItem("s2", 3)
			}
			if err := place.f(context.Background(), b); err != nil {
				t.Fatalf("%s round %d: %v", place.name, round, err)
			}
			if q := batchQueries.Load(); q != "answer=brief" {
				// A BatchResult needs only what the brief answer holds.
				t.Errorf("%s round %d: batch query %q, want answer=brief", place.name, round, q)
			}
			r := b.Results
			if len(r) != 3 || r[0].OrderID != "o0" || r[0].Status != "pending_payment" || r[0].Total != 100 || r[2].OrderID != "o2" {
				t.Fatalf("%s round %d: placed results %+v", place.name, round, r)
			}
			if r[1].Err == nil || r[1].Err.Code != "out_of_stock" || r[1].Err.Status != 409 || r[1].Err.SKUID != "s1" {
				t.Fatalf("%s round %d: refused result %+v", place.name, round, r[1])
			}
		}
	}
}

// TestPlaceBatch: both forms place a reused batch and give each order its
// result; a refused whole request is an *Error, an answer outside the
// contract ErrBadAnswer.
func TestPlaceBatch(t *testing.T) {
	s := batchServer(t)
	c := newTestClient(t, s.URL)
	var b OrderBatch
	placeBatches(t, c, &b, 2)
	busy := newTestClient(t, s.URL+"/overloaded")
	err := busy.PlaceBatch(context.Background(), &b)
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != "overloaded" || ae.Status != 429 || ae.RetryAfter != 2*time.Second {
		t.Errorf("overloaded server: %v", err)
	}
	garbage := newTestClient(t, s.URL+"/garbage")
	if err := garbage.PlaceBatch(context.Background(), &b); !errors.Is(err, ErrBadAnswer) {
		t.Errorf("garbage answer: %v, want ErrBadAnswer", err)
	}
}

// TestSettleBatch: payments and cancellations in one request, each with
// its result.
func TestSettleBatch(t *testing.T) {
	c := newTestClient(t, batchServer(t).URL)
	var b SettleBatch
	for range 2 {
		b.Reset()
		b.Pay("a", 100)
		b.Cancel("b")
		b.Pay("gone", 5)
		if err := c.SettleBatch(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		r := b.Results
		if len(r) != 3 || r[0].Status != "paid" || r[0].Total != 100 || r[0].ChangedAt.IsZero() || r[1].Status != "cancelled" ||
			r[2].Err == nil || r[2].Err.Status != 404 || r[2].OrderID != "gone" {
			t.Fatalf("results %+v", r)
		}
	}
	got, err := c.SettlePay(context.Background(), "x", 7)
	if err != nil || got.Status != "paid" || got.OrderID != "x" {
		t.Fatalf("SettlePay: %+v %v", got, err)
	}
	if _, err := c.SettleCancel(context.Background(), "gone"); err == nil {
		t.Fatal("SettleCancel of a missing order succeeded")
	}
}

// TestPlaceOrderJSONBody: the hand-built body of PlaceOrderJSON says what
// encoding/json says of the request, escaping included.
func TestPlaceOrderJSONBody(t *testing.T) {
	var got []byte
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"order_id":"o1","status":"pending_payment","total":5}`))
	}))
	defer s.Close()
	c := newTestClient(t, s.URL)
	for _, req := range []OrderRequest{
		{BuyerID: "u1", Items: []Item{{SKUID: "s1", Quantity: 2}, {SKUID: `s"2`, Quantity: 1}}, Channel: "live:c1", Region: "CN-ZJ", DealID: "d1"},
		{BuyerID: "买家", Items: []Item{{SKUID: "s1", Quantity: 1 << 40}}},
		{BuyerID: "u3"},
	} {
		o, err := c.PlaceOrderJSON(context.Background(), req)
		if err != nil || o.ID != "o1" {
			t.Fatalf("PlaceOrderJSON: %+v %v", o, err)
		}
		want, _ := json.Marshal(req)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("body %s: %v", got, err)
		}
		json.Unmarshal(want, &w)
		if gm, ok := g.(map[string]any); ok && gm["items"] != nil && len(gm["items"].([]any)) == 0 {
			gm["items"] = nil // [] for no items, where encoding/json says null: the server reads both as none
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("body %s, encoding/json says %s", got, want)
		}
	}
}
