package client

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fest-platform/fest/wire"
)

// randomString is empty, short, or (now and then) long enough for a
// two-byte length.
func randomString(rng *rand.Rand, prefix string) string {
	switch rng.IntN(8) {
	case 0:
		return ""
	case 1:
		return prefix + strings.Repeat("x", 120+rng.IntN(200))
	}
	return fmt.Sprintf("%s%d", prefix, rng.IntN(1_000_000))
}

func randomInt(rng *rand.Rand) int64 {
	switch rng.IntN(5) {
	case 0:
		return 0
	case 1:
		return -rng.Int64N(1 << 40)
	case 2:
		return rng.Int64N(1 << 62)
	}
	return rng.Int64N(1 << 15)
}

// TestEncodeProtoIsAppendRequest: the one-pass encoding writes the bytes
// wire.AppendRequest writes, for orders of every size: empty fields,
// negative and large numbers, orders over 127 and over 16,383 bytes.
func TestEncodeProtoIsAppendRequest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b OrderBatch
	for round := range 300 {
		b.Reset()
		var orders []wire.PlaceOrder
		for range 1 + rng.IntN(20) {
			o := wire.PlaceOrder{BuyerID: randomString(rng, "u"), Channel: randomString(rng, "live:"), Region: randomString(rng, "CN-"),
				DealID: randomString(rng, "d"), IdempotencyKey: randomString(rng, "k"), RehearsalTime: randomInt(rng)}
			for range rng.IntN(2) { // items given to Add
				o.Items = append(o.Items, wire.Item{SKUID: randomString(rng, "s"), Quantity: int32(randomInt(rng))})
			}
			b.Add(o)
			items := rng.IntN(4)
			if rng.IntN(50) == 0 {
				items = 200 + rng.IntN(400) // an order over 16 KiB
			}
			for range items {
				it := wire.Item{SKUID: randomString(rng, "s"), Quantity: int32(randomInt(rng))}
				b.AddItem(it.SKUID, it.Quantity)
				o.Items = append(o.Items, it)
			}
			orders = append(orders, o)
		}
		b.encodeProto()
		if want := wire.AppendRequest(nil, orders); !bytes.Equal(b.body, want) {
			t.Fatalf("round %d: encodeProto wrote %d bytes that differ from wire.AppendRequest's %d", round, len(b.body), len(want))
		}
		b.readBack()
		if got, err := wire.DecodeRequest(b.body, nil, len(orders)); err != nil || !reflect.DeepEqual(got, orders) {
			t.Fatalf("round %d: the request reads back as %+v (%v), want %+v", round, got, err, orders)
		}
		if b.Len() != len(orders) || len(b.req.Orders) != len(orders) {
			t.Fatalf("round %d: Len %d, read back %d orders, want %d", round, b.Len(), len(b.req.Orders), len(orders))
		}
	}
}

// randomPlaceAnswer is the answer to a batch of n orders as fest writes it,
// with some results refused.
func randomPlaceAnswer(rng *rand.Rand, n int) []byte {
	var body []byte
	for range n {
		r := wire.Result{Order: wire.Order{OrderID: randomString(rng, "o"), Status: []string{"pending_payment", "paid", "", "odd"}[rng.IntN(4)],
			BuyerID: randomString(rng, "u"), MerchantID: randomString(rng, "m"), Total: randomInt(rng), Currency: "CNY",
			Channel: randomString(rng, "live:"), Region: randomString(rng, "CN-"), DealID: randomString(rng, "d"),
			CreatedAtUnixNanos: randomInt(rng), PayByUnixNanos: randomInt(rng), Replayed: rng.IntN(3) == 0}}
		for range rng.IntN(3) {
			r.Order.Items = append(r.Order.Items, wire.OrderItem{SKUID: randomString(rng, "s"), Quantity: int32(randomInt(rng)), UnitPrice: randomInt(rng), Amount: randomInt(rng)})
		}
		if rng.IntN(5) == 0 {
			r = wire.Result{Error: &wire.Error{Code: []string{"out_of_stock", "overloaded", "invalid_argument"}[rng.IntN(3)],
				Message: randomString(rng, "m"), Field: randomString(rng, "f"), SKUID: randomString(rng, "s"), Available: randomInt(rng)}}
		}
		body = wire.AppendResponseResult(body, &r)
	}
	return body
}

// randomSettleAnswer is the answer to n settle actions.
func randomSettleAnswer(rng *rand.Rand, acts []wire.Settle) []byte {
	var body []byte
	for _, a := range acts {
		r := wire.SettleResult{OrderID: a.OrderID, Status: []string{"paid", "cancelled", "", "odd"}[rng.IntN(4)], Total: randomInt(rng), ChangedAtUnixNanos: randomInt(rng)}
		if rng.IntN(4) == 0 {
			r.OrderID = randomString(rng, "o") // an id other than the action's
		}
		if rng.IntN(5) == 0 {
			r.Error = &wire.Error{Code: "not_found", Message: randomString(rng, "m"), Field: randomString(rng, "f")}
		}
		body = wire.AppendSettleResult(body, &r)
	}
	return body
}

// strictPlace decodes b.resp as PlaceBatch did before the lean decoder.
func strictPlace(b *OrderBatch) ([]BatchResult, error) {
	b.view.SkipItems = true
	if err := b.decodeView(); err != nil {
		return nil, err
	}
	b.fillResults()
	return append([]BatchResult(nil), b.Results...), nil
}

func strictSettle(b *SettleBatch) ([]SettleResult, error) {
	if err := b.decodeView(); err != nil {
		return nil, err
	}
	var out []SettleResult
	for i := range b.view.Results {
		out = append(out, b.settledOf(i))
	}
	return out, nil
}

// checkPlaceAgrees: on body, the lean decoder either declines or gives
// exactly the strict decoder's results.
func checkPlaceAgrees(t *testing.T, body []byte, n int) {
	t.Helper()
	var b OrderBatch
	for range n {
		b.Add(wire.PlaceOrder{BuyerID: "u"})
	}
	b.resp = body
	want, err := strictPlace(&b)
	leanAgrees(t, body, want, err, &b.Results, b.decodeLean)
}

func checkSettleAgrees(t *testing.T, body []byte, acts []wire.Settle) {
	t.Helper()
	b := SettleBatch{acts: acts, resp: body}
	want, err := strictSettle(&b)
	leanAgrees(t, body, want, err, &b.Results, b.decodeLean)
}

// leanAgrees decodes body with lean into *results and checks that, unless
// it declines, the strict decoder accepted body (its err nil) and gave the
// same results (want).
func leanAgrees[R any](t *testing.T, body []byte, want []R, err error, results *[]R, lean func() bool) {
	t.Helper()
	*results = nil
	if !lean() {
		return
	}
	if err != nil {
		t.Fatalf("lean decoder accepted an answer the strict one refuses (%v): %x", err, body)
	}
	if !reflect.DeepEqual(*results, want) {
		t.Fatalf("lean results %+v, strict %+v", *results, want)
	}
}

// TestLeanDecodersAgree: on the answers fest writes, the lean decoders
// accept and give the strict decoders' results; on answers cut short or
// with one byte changed, they decline or still agree.
func TestLeanDecodersAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 300 {
		n := rng.IntN(30)
		body := randomPlaceAnswer(rng, n)
		var b OrderBatch
		for range n {
			b.Add(wire.PlaceOrder{BuyerID: "u"})
		}
		b.resp = body
		want, err := strictPlace(&b)
		if err != nil {
			t.Fatalf("round %d: strict decoder: %v", round, err)
		}
		b.Results = nil
		if !b.decodeLean() {
			t.Fatalf("round %d: the lean decoder declined an answer as fest writes it", round)
		}
		if !reflect.DeepEqual(b.Results, want) {
			t.Fatalf("round %d: lean results %+v, strict %+v", round, b.Results, want)
		}
		checkPlaceAgrees(t, body, n+1) // a result short
		if len(body) > 0 {
			checkPlaceAgrees(t, body[:rng.IntN(len(body))], n)
			mutated := bytes.Clone(body)
			mutated[rng.IntN(len(mutated))] ^= byte(1 + rng.IntN(255))
			checkPlaceAgrees(t, mutated, n)
		}

		acts := make([]wire.Settle, rng.IntN(30))
		for i := range acts {
			acts[i] = wire.Settle{OrderID: randomString(rng, "o"), Amount: randomInt(rng), Cancel: rng.IntN(2) == 0}
		}
		sbody := randomSettleAnswer(rng, acts)
		sb := SettleBatch{acts: acts, resp: sbody}
		swant, err := strictSettle(&sb)
		if err != nil {
			t.Fatalf("round %d: strict settle decoder: %v", round, err)
		}
		sb.Results = nil
		if !sb.decodeLean() {
			t.Fatalf("round %d: the lean settle decoder declined an answer as fest writes it", round)
		}
		if !reflect.DeepEqual(sb.Results, swant) {
			t.Fatalf("round %d: lean settle results %+v, strict %+v", round, sb.Results, swant)
		}
		if len(sbody) > 0 {
			checkSettleAgrees(t, sbody[:rng.IntN(len(sbody))], acts)
			mutated := bytes.Clone(sbody)
			mutated[rng.IntN(len(mutated))] ^= byte(1 + rng.IntN(255))
			checkSettleAgrees(t, mutated, acts)
		}
	}
}

// FuzzLeanDecoders: on any bytes, the lean decoders decline or agree with
// the strict ones.
func FuzzLeanDecoders(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	f.Add(randomPlaceAnswer(rng, 3), uint8(3))
	f.Add(randomSettleAnswer(rng, []wire.Settle{{OrderID: "a"}, {OrderID: "b", Cancel: true}}), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, n uint8) {
		checkPlaceAgrees(t, body, int(n%32))
		acts := make([]wire.Settle, n%32)
		for i := range acts {
			acts[i] = wire.Settle{OrderID: "o" + fmt.Sprint(i)}
		}
		checkSettleAgrees(t, body, acts)
	})
}

// TestVarintReadersAreProtowire: readVarint and skipVarint accept exactly
// the varints protowire.ConsumeVarint accepts, and end where it does.
func TestVarintReadersAreProtowire(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200_000 {
		b := make([]byte, rng.IntN(14))
		for k := range b {
			switch rng.IntN(3) {
			case 0:
				b[k] = byte(rng.IntN(256))
			case 1:
				b[k] = 0x80 | byte(rng.IntN(128))
			default:
				b[k] = byte(rng.IntN(3))
			}
		}
		at := 0
		if len(b) > 0 {
			at = rng.IntN(len(b))
		}
		want, n := protowire.ConsumeVarint(b[at:])
		x, next, ok := readVarint(b, at)
		if ok != (n >= 0) || ok && (x != want || next != at+n) {
			t.Fatalf("readVarint(%x, %d) = %d, %d, %v; protowire says %d, %d", b, at, x, next, ok, want, n)
		}
		next, ok = skipVarint(b, at)
		if ok != (n >= 0) || ok && next != at+n {
			t.Fatalf("skipVarint(%x, %d) = %d, %v; protowire says %d", b, at, next, ok, n)
		}
	}
}
