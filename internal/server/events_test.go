package server

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
)

func TestParseFeedPosition(t *testing.T) {
	for _, c := range []struct {
		in   string
		want feedPosition
		ok   bool
	}{
		{"0", feedPosition{0, 0}, true},
		{"1234", feedPosition{1234, 0}, true},
		{"1234:0", feedPosition{1234, 1}, true},
		{"1234:7", feedPosition{1234, 8}, true},
		{"18446744073709551615", feedPosition{1<<64 - 1, 0}, true},
		{"18446744073709551616", feedPosition{}, false},
		{"", feedPosition{}, false},
		{"-1", feedPosition{}, false},
		{"+1", feedPosition{}, false},
		{"1:", feedPosition{}, false},
		{":1", feedPosition{}, false},
		{"1:2:3", feedPosition{}, false},
		{"1:-2", feedPosition{}, false},
		{"1:2147483648", feedPosition{}, false},
		{"0x10", feedPosition{}, false},
	} {
		got, ok := parseFeedPosition(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("parseFeedPosition(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseFeedPosition: a position that parses prints back to itself (so
// a consumer's stored position names one event), and nothing panics.
func FuzzParseFeedPosition(f *testing.F) {
	for _, s := range []string{"0", "12:3", "1:", "99999999999999999999", "7:2147483647", "a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parseFeedPosition(s)
		if !ok {
			return
		}
		back := strconv.FormatUint(p.start, 10)
		if p.skip > 0 {
			back += ":" + strconv.Itoa(p.skip-1)
		}
		if back != s {
			again, _ := parseFeedPosition(back)
			if again != p {
				t.Fatalf("%q parsed as %+v, printed as %q, which parses as %+v", s, p, back, again)
			}
		}
	})
}

// TestFeedEventLines renders one event of every kind and checks each line
// is one JSON object with the contract's fields.
func TestFeedEventLines(t *testing.T) {
	at := time.Date(2026, 11, 11, 0, 0, 1, 0, time.UTC).UnixNano()
	events := []engine.Event{
		{Kind: engine.EventBrandUpserted, Brand: engine.Brand{ID: "b1", Name: "Brand \"One\"\n", Country: "CN", FirstFestival: 2015, Emerging: true}},
		{Kind: engine.EventMerchantUpserted, Merchant: engine.Merchant{ID: "m1", Name: "Shop", BrandID: "b1", Kind: engine.MerchantFactory}},
		{Kind: engine.EventSKUUpserted, SKU: engine.SKU{ID: "s1", MerchantID: "m1", BrandID: "b1", Title: "Tee", Price: 990, Stock: 5}},
		{Kind: engine.EventStockAdjusted, SKUID: "s1", Delta: -3},
		{Kind: engine.EventOrderPlaced, OrderID: 42, BuyerID: "u1", MerchantID: "m1", Channel: "app", Items: []engine.Item{{SKUID: "s1", Quantity: 2, UnitPrice: 990}}, Total: 1980, PayBy: at + int64(15*time.Minute)},
		{Kind: engine.EventOrderPaid, OrderID: 42},
		{Kind: engine.EventOrderCancelled, OrderID: 43},
		{Kind: engine.EventOrderExpired, OrderID: 44},
		{Kind: engine.EventParcelScanned, OrderID: 42, ParcelStatus: engine.ParcelPickedUp, Location: "Hangzhou", ScanAt: at},
		{Kind: engine.EventChannelPut, LiveChannel: engine.Channel{ID: "c1", Title: "Show", Host: "Viya", StartsAt: at, EndsAt: at + int64(time.Hour)}},
		{Kind: engine.EventDealPut, Deal: engine.Deal{ID: "d1", ChannelID: "c1", SKUID: "s1", Price: 500, Stock: 100, StartsAt: at, EndsAt: at + int64(time.Minute), LimitPerBuyer: 2}},
		{Kind: engine.EventDealEnded, DealID: "d1", SKUID: "s1", Delta: 40},
	}
	want := map[engine.EventKind]map[string]any{
		engine.EventBrandUpserted:    {"type": "brand_upserted", "brand_id": "b1", "name": "Brand \"One\"\n", "emerging": true, "first_festival": 2015.0},
		engine.EventMerchantUpserted: {"type": "merchant_upserted", "merchant_id": "m1", "kind": "factory"},
		engine.EventSKUUpserted:      {"type": "sku_upserted", "sku_id": "s1", "price": 990.0, "stock": 5.0},
		engine.EventStockAdjusted:    {"type": "stock_changed", "sku_id": "s1", "delta": -3.0},
		engine.EventOrderPlaced:      {"type": "order_placed", "order_id": "16", "buyer_id": "u1", "total": 1980.0, "currency": "CNY", "pay_by": "2026-11-11T00:15:01Z"},
		engine.EventOrderPaid:        {"type": "order_paid", "order_id": "16"},
		engine.EventOrderCancelled:   {"type": "order_cancelled", "order_id": "17"},
		engine.EventOrderExpired:     {"type": "order_expired", "order_id": "18"},
		engine.EventParcelScanned:    {"type": "parcel_scanned", "order_id": "16", "status": "picked_up", "location": "Hangzhou"},
		engine.EventChannelPut:       {"type": "channel_put", "channel_id": "c1", "host": "Viya", "ends_at": "2026-11-11T01:00:01Z"},
		engine.EventDealPut:          {"type": "deal_put", "deal_id": "d1", "channel_id": "c1", "stock": 100.0, "limit_per_buyer": 2.0},
		engine.EventDealEnded:        {"type": "deal_ended", "deal_id": "d1", "returned": 40.0},
	}
	var doc struct {
		Components struct {
			Schemas struct {
				Event struct {
					Properties map[string]any `json:"properties"`
				} `json:"Event"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc(), &doc); err != nil {
		t.Fatal(err)
	}
	documented := doc.Components.Schemas.Event.Properties
	for i := range events {
		ev := &events[i]
		ev.At = at
		line := appendFeedEvent(nil, 500, i, ev)
		if line[len(line)-1] != '\n' {
			t.Fatalf("%s: line without its newline", ev.Kind)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s: %v: %s", ev.Kind, err, line)
		}
		for k := range m {
			if documented[k] == nil {
				t.Errorf("%s: field %s is not in the OpenAPI Event schema", ev.Kind, k)
			}
		}
		if m["position"] != "500:"+strconv.Itoa(i) || m["at"] != "2026-11-11T00:00:01Z" {
			t.Errorf("%s: position %v, at %v", ev.Kind, m["position"], m["at"])
		}
		for k, v := range want[ev.Kind] {
			if m[k] != v {
				t.Errorf("%s: %s = %#v, want %#v (line %s)", ev.Kind, k, m[k], v, line)
			}
		}
	}
	if len(feedEventTypes) != len(want) {
		t.Fatalf("%d feed types, %d tested", len(feedEventTypes), len(want))
	}
}
