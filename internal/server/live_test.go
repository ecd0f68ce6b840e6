package server

import (
	"math"
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
		// Unix nanoseconds end in 2262: a later end must not wrap to a
		// window before its start, or an earlier start to one after it.
		{"an end after 2262", "d1", func(d *dealJSON) { d.EndsAt = str("2263-01-01T00:00:00Z") }, "ends_at"},
		{"an end one nanosecond past the last time", "d1", func(d *dealJSON) { d.EndsAt = str("2262-04-11T23:47:16.854775808Z") }, "ends_at"},
		{"a start before 1677", "d1", func(d *dealJSON) { d.StartsAt = str("1600-01-01T00:00:00Z") }, "starts_at"},
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

// TestTimeFieldRange checks the edges of the times a window can hold: the
// first and last unix nanoseconds of an int64 are accepted, one past
// either is 422 invalid_argument.
func TestTimeFieldRange(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2262-04-11T23:47:16.854775807Z", math.MaxInt64, true},
		{"2262-04-11T23:47:16.854775808Z", 0, false},
		{"1677-09-21T00:12:43.145224192Z", math.MinInt64, true},
		{"1677-09-21T00:12:43.145224191Z", 0, false},
		{"9999-12-31T23:59:59Z", 0, false},
	}
	for _, tt := range tests {
		got, aerr := timeField("ends_at", &tt.in)
		switch {
		case tt.ok && (aerr != nil || got != tt.want):
			t.Errorf("%s: %d %v, want %d", tt.in, got, aerr, tt.want)
		case !tt.ok && (aerr == nil || aerr.Status != 422 || aerr.Field != "ends_at" || aerr.Code != "invalid_argument"):
			t.Errorf("%s: %d %+v, want 422 invalid_argument ends_at", tt.in, got, aerr)
		}
	}
}
