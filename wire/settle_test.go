package wire

import (
	"errors"
	"reflect"
	"testing"
)

// TestSettleRoundTrip: what AppendSettleRequest and AppendSettleResponse
// encode, the decoders (and their reused views) read back unchanged.
func TestSettleRoundTrip(t *testing.T) {
	actions := []Settle{
		{OrderID: "abc", Amount: 59800, RehearsalTime: 1_604_937_626_000_000_000},
		{OrderID: "def", Cancel: true},
		{OrderID: "", Amount: -1},
		{},
	}
	b := AppendSettleRequest(nil, actions)
	got, err := DecodeSettleRequest(b, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, actions) {
		t.Fatalf("request round trip:\n got %+v\nwant %+v", got, actions)
	}
	var rv SettleRequestView
	for range 2 {
		if err := DecodeSettleRequestView(b, &rv, 10); err != nil {
			t.Fatal(err)
		}
		if len(rv.Actions) != 4 || string(rv.Actions[0].OrderID) != "abc" || !rv.Actions[1].Cancel || rv.Actions[2].Amount != -1 {
			t.Fatalf("request view: %+v", rv)
		}
	}
	if _, err := DecodeSettleRequest(b, nil, 3); err == nil || err.Error() != "actions: more than 3 actions" {
		t.Fatalf("limit: %v", err)
	}
	bad := AppendSettleRequest(nil, actions[:1])
	bad = append(bad, 0x0a, 0x02, 0x28, 0x01) // action 1 with field 5
	var fe *FieldError
	if _, err := DecodeSettleRequest(bad, nil, 10); !errors.As(err, &fe) || fe.Field != "actions[1].field 5" {
		t.Fatalf("unknown field: %v", err)
	}
	bad = append(AppendSettleRequest(nil, actions[:1]), 0x0a, 0x02, 0x12, 0x00) // action 1: amount as bytes
	if _, err := DecodeSettleRequest(bad, nil, 10); !errors.As(err, &fe) || fe.Field != "actions[1].amount" {
		t.Fatalf("wrong type: %v", err)
	}
	if _, err := DecodeSettleRequest([]byte{0x0a, 0x03, 0x0a, 0x05}, nil, 10); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}

	results := []SettleResult{
		{OrderID: "abc", Status: "paid", Total: 59800, ChangedAtUnixNanos: 1_600_000_000_000_000_000},
		{OrderID: "def", Status: "cancelled"},
		{OrderID: "zzz", Error: &Error{Code: "not_found", Message: "not found: actions[2].order_id", Field: "actions[2].order_id"}},
		{Error: &Error{Code: "payment_mismatch", Message: "amount differs"}},
		{},
	}
	rb := AppendSettleResponse(nil, results)
	gotRes, err := DecodeSettleResponse(rb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotRes, results) {
		t.Fatalf("response round trip:\n got %+v\nwant %+v", gotRes, results)
	}
	var v SettleResponseView
	for range 2 {
		if err := DecodeSettleResponseView(rb, &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Results) != 5 || string(v.Results[0].Status) != "paid" || v.Results[2].Error.Field != "actions[2].order_id" || v.Results[1].Error != nil {
			t.Fatalf("response view: %+v", v)
		}
	}
}

// FuzzDecodeSettleRequest: any body either decodes or fails with a
// FieldError or ErrMalformed, never panics, respects the limit, and what
// it decodes re-encodes to a body that decodes the same.
func FuzzDecodeSettleRequest(f *testing.F) {
	f.Add(AppendSettleRequest(nil, []Settle{{OrderID: "abc", Amount: 59800}, {OrderID: "def", Cancel: true}}))
	f.Add(AppendSettleRequest(nil, []Settle{{}}))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff})
	f.Add([]byte{0x0a, 0x02, 0x20, 0x01})
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})
	f.Add([]byte{0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 8
		got, err := DecodeSettleRequest(b, nil, limit)
		if len(got) > limit {
			t.Fatalf("%d actions past the limit", len(got))
		}
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		again, err := DecodeSettleRequest(AppendSettleRequest(nil, got), nil, limit)
		if err != nil || len(again) != len(got) || len(got) > 0 && !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoding: %v\n got %+v\nwant %+v", err, again, got)
		}
	})
}
