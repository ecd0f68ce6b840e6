package server

import (
	"math/rand/v2"
	"testing"
)

// checkSameDecode fails if the hand-written decoder accepts a body that
// encoding/json rejects or decodes differently, and checks that decodeOrder
// answers exactly as decodeStrict does (with the item of a field error
// located by locateItemError).
func checkSameDecode(t *testing.T, body []byte) {
	t.Helper()
	var want orderJSON
	wantErr := decodeStrict(body, &want)
	if wantErr != nil {
		wantErr = locateItemError(body, wantErr, false)
	}
	var fast orderJSON
	if fastDecodeOrder(body, &fast) {
		if wantErr != nil {
			t.Fatalf("fast decoder accepted %q; encoding/json: %v", body, wantErr)
		}
		if !sameOrder(&fast, &want) {
			t.Fatalf("fast decoder on %q: %+v; encoding/json: %+v", body, fast, want)
		}
	}
	// decodeOrder with a dirty reused value answers as decodeStrict.
	got := orderJSON{BuyerID: "stale", Region: "stale", Items: []itemJSON{{SKUID: "stale", Quantity: 9}}}
	gotErr := decodeOrder(body, &got)
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("decodeOrder(%q) = %v, decodeStrict = %v", body, gotErr, wantErr)
	case gotErr != nil && *gotErr != *wantErr:
		t.Fatalf("decodeOrder(%q) = %+v, decodeStrict = %+v", body, *gotErr, *wantErr)
	case gotErr == nil && !sameOrder(&got, &want):
		t.Fatalf("decodeOrder(%q) = %+v, decodeStrict = %+v", body, got, want)
	}
}

func sameOrder(a, b *orderJSON) bool {
	if a.BuyerID != b.BuyerID || a.Channel != b.Channel || a.Region != b.Region || a.DealID != b.DealID || len(a.Items) != len(b.Items) {
		return false
	}
	for i := range a.Items {
		if a.Items[i].SKUID != b.Items[i].SKUID || a.Items[i].Quantity != b.Items[i].Quantity {
			return false
		}
	}
	return true
}

var orderBodies = []string{
	`{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":2}],"channel":"live:c1","region":"CN-ZJ"}`,
	` { "buyer_id" : "u1" , "items" : [ { "quantity" : 2 , "sku_id" : "s1" } , {"sku_id":"s2","quantity":-0} ] , "deal_id":"d" } ` + "\n",
	`{"buyer_id":"u1","items":[{"sku_id":"s1","quantity":"2"}]}`,
	`{"buyer_id":"u1","items":[],"x":1}`,
	`{"buyer_id":7}`, `[]`, `null`, `{`, ``, `{"buyer_id":"u1"} {}`, `{}`, `{"items":[]}`, `{"items":null}`,
	`{"buyer_id":"\u0000","items":[{"sku_id":"a/b","quantity":1000}]}`,
	`{"BUYER_ID":"u1"}`, `{"buyer_id":"a","buyer_id":"b"}`, `{"items":[{"sku_id":"a","sku_id":"b"}]}`,
	`{"items":[{"quantity":1.0}]}`, `{"items":[{"quantity":1e2}]}`, `{"items":[{"quantity":01}]}`,
	`{"items":[{"quantity":9223372036854775807}]}`, `{"items":[{"quantity":9223372036854775808}]}`,
	`{"items":[{"quantity":123456789012345678}]}`, `{"items":[{"quantity":-}]}`,
	"{\"buyer_id\":\"\xff\"}", `{"buyer_id":"中文"}`, "{\"buyer_id\":\"a\tb\"}", `{"buyer_id":"a\"b"}`,
	`{"region":null}`, `{"items":[{}]}`, `{"items":[{},]}`, `{"items":[,]}`, `{,}`, `{"a"}`,
	`{"buyer_id":"u"}x`, "\ufeff{}", `{"items":[{"sku_id":"s","quantity":1}`, `{"items":{}}`,
}

func TestFastDecodeOrderMatchesEncodingJSON(t *testing.T) {
	for _, b := range orderBodies {
		checkSameDecode(t, []byte(b))
	}
	// The common shape takes the fast path.
	var o orderJSON
	if !fastDecodeOrder([]byte(orderBodies[0]), &o) || !fastDecodeOrder([]byte(orderBodies[1]), &o) {
		t.Fatal("fast decoder refused a plain order")
	}
}

// TestFastDecodeOrderRandom mutates valid bodies at random: every result
// must match encoding/json's.
func TestFastDecodeOrderRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "{}[]:,\" \\ue0123456789-.+abuyer_iditemsquantitysku_idchannelregiondeal_idnull\x00\x7f\xc3\xa9\xff"
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := 0; i < n; i++ {
		b := []byte(orderBodies[r.IntN(len(orderBodies))])
		for k := r.IntN(4); k >= 0 && len(b) > 0; k-- {
			p := r.IntN(len(b))
			switch r.IntN(3) {
			case 0:
				b[p] = alphabet[r.IntN(len(alphabet))]
			case 1:
				b = append(b[:p], b[p+1:]...)
			default:
				b = append(b[:p], append([]byte{alphabet[r.IntN(len(alphabet))]}, b[p:]...)...)
			}
		}
		checkSameDecode(t, b)
	}
}

// FuzzFastDecodeOrder is the differential fuzz target: the hand-written
// decoder never accepts what encoding/json rejects and never decodes
// differently, and decodeOrder answers exactly as decodeStrict.
func FuzzFastDecodeOrder(f *testing.F) {
	for _, b := range orderBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSameDecode(t, body)
	})
}

func BenchmarkDecodeOrder(b *testing.B) {
	body := []byte(orderBodies[0])
	var o orderJSON
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if decodeOrder(body, &o) != nil {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o = orderJSON{}
			if decodeStrict(body, &o) != nil {
				b.Fatal("rejected")
			}
		}
	})
}
