package server

import (
	"testing"
	"time"
)

// TestDealCommand checks the conversion of a PUT deal body: required
// fields, bounds and the window, each naming its field.
func TestDealCommand(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n int64) *int64 { return &n }
	start, end := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 11, 0, 0, 1, 0, time.UTC)
	valid := func() dealJSON {
		return dealJSON{ChannelID: str("c1"), SKUID: str("s1"), Price: num(500), Stock: num(10),
			StartsAt: str(start.Format(time.RFC3339Nano)), EndsAt: str(end.Format(time.RFC3339Nano))}
	}
	tests := []struct {
		name      string
		id        string
		edit      func(d *dealJSON)
		wantField string // "" for success
	}{
		{"valid", "d1", func(d *dealJSON) {}, ""},
		{"with a limit", "d1", func(d *dealJSON) { d.LimitPerBuyer = num(2) }, ""},
		{"bad id", "a/b", func(d *dealJSON) {}, "deal_id"},
		{"no channel", "d1", func(d *dealJSON) { d.ChannelID = nil }, "channel_id"},
		{"no sku", "d1", func(d *dealJSON) { d.SKUID = nil }, "sku_id"},
		{"no price", "d1", func(d *dealJSON) { d.Price = nil }, "price"},
		{"negative price", "d1", func(d *dealJSON) { d.Price = num(-1) }, "price"},
		{"no stock", "d1", func(d *dealJSON) { d.Stock = nil }, "stock"},
		{"zero stock", "d1", func(d *dealJSON) { d.Stock = num(0) }, "stock"},
		{"bad start", "d1", func(d *dealJSON) { d.StartsAt = str("tomorrow") }, "starts_at"},
		{"no end", "d1", func(d *dealJSON) { d.EndsAt = nil }, "ends_at"},
		{"end at the start", "d1", func(d *dealJSON) { d.EndsAt = d.StartsAt }, "ends_at"},
		{"zero limit", "d1", func(d *dealJSON) { d.LimitPerBuyer = num(0) }, "limit_per_buyer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.edit(&d)
			cmd, aerr := d.command(tt.id)
			switch {
			case tt.wantField == "" && aerr != nil:
				t.Fatalf("refused: %s: %s", aerr.Field, aerr.Message)
			case tt.wantField != "" && aerr == nil:
				t.Fatalf("accepted, want 422 field %s", tt.wantField)
			case tt.wantField != "" && (aerr.Field != tt.wantField || aerr.Status != 422):
				t.Fatalf("status %d field %q, want 422 %q", aerr.Status, aerr.Field, tt.wantField)
			case tt.wantField == "":
				if cmd.Deal.StartsAt != start.UnixNano() || cmd.Deal.EndsAt != end.UnixNano() || cmd.Deal.Stock != 10 {
					t.Fatalf("deal %+v", cmd.Deal)
				}
			}
		})
	}
}
