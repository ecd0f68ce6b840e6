package server

import (
	"errors"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{AdminToken: "a", StorefrontToken: "s", CarrierToken: "c"}
	tests := []struct {
		name   string
		change func(c *Config)
		valid  bool
	}{
		{"defaults", func(c *Config) {}, true},
		{"missing token", func(c *Config) { c.CarrierToken = "" }, false},
		{"equal tokens", func(c *Config) { c.CarrierToken = c.AdminToken }, false},
		{"negative read header timeout", func(c *Config) { c.ReadHeaderTimeout = -time.Second }, false},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -time.Second }, false},
		{"read header timeout past the read timeout", func(c *Config) { c.ReadHeaderTimeout, c.ReadTimeout = 10*time.Second, 5*time.Second }, false},
		{"write timeout not past the read timeout", func(c *Config) { c.ReadTimeout, c.WriteTimeout = 10*time.Second, 10*time.Second }, false},
		{"write timeout not past the read wait", func(c *Config) {
			c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout, c.ReadWaitMax = time.Second, time.Second, 2*time.Second, 3*time.Second
		}, false},
		{"short timeouts in order", func(c *Config) {
			c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout, c.ReadWaitMax = time.Second, 2*time.Second, 4*time.Second, time.Second
		}, true},
		{"negative connections", func(c *Config) { c.ConnectionsMax = -1 }, false},
		{"one connection", func(c *Config) { c.ConnectionsMax = 1 }, true},
		{"connections past the limit", func(c *Config) { c.ConnectionsMax = connectionsMaxLimit + 1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			err := c.Validate()
			if (err == nil) != tt.valid {
				t.Fatalf("Validate() = %v, want valid %v", err, tt.valid)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, not wrapping ErrConfig", err)
			}
		})
	}
	d := Config{}.WithDefaults()
	if d.ReadHeaderTimeout != defaultReadHeaderTimeout || d.ReadTimeout != defaultReadTimeout || d.WriteTimeout != defaultWriteTimeout ||
		d.IdleTimeout != defaultIdleTimeout || d.ConnectionsMax != defaultConnectionsMax {
		t.Fatalf("WithDefaults: %+v", d)
	}
}

// TestCheckImportStock runs the import's stock rule over file orders of
// lines, as the engine's upsertSKU decides them.
func TestCheckImportStock(t *testing.T) {
	existing := &engine.Result{Available: 700, SKU: &engine.SKU{ID: "s"}}
	set := func(stock, expected int64) engine.SKU {
		return engine.SKU{ID: "s", Stock: stock, StockCompared: true, StockExpected: expected}
	}
	tests := []struct {
		name      string
		existing  *engine.Result // nil: a new SKU
		lines     []engine.SKU
		wantCode  string // of the last line; "" for none
		wantField string
		wantAvail int64 // conflict detail
	}{
		{"new with stock", nil, []engine.SKU{{ID: "s", Stock: 5}}, "", "", 0},
		{"new without stock", nil, []engine.SKU{{ID: "s", StockOmitted: true}}, "invalid_argument", "stock", 0},
		{"new with stock_expected 0", nil, []engine.SKU{set(5, 0)}, "", "", 0},
		{"new with stock_expected 1", nil, []engine.SKU{set(5, 1)}, "conflict", "", 0},
		{"existing without stock", existing, []engine.SKU{{ID: "s", StockOmitted: true}}, "", "", 0},
		{"existing without stock_expected", existing, []engine.SKU{{ID: "s", Stock: 5}}, "invalid_argument", "stock_expected", 0},
		{"existing, right", existing, []engine.SKU{set(5, 700)}, "", "", 0},
		{"existing, stale", existing, []engine.SKU{set(5, 600)}, "conflict", "", 700},
		{"second line compares with the first", existing, []engine.SKU{set(5, 700), set(9, 5)}, "", "", 0},
		{"second line stale after the first", existing, []engine.SKU{set(5, 700), set(9, 700)}, "conflict", "", 5},
		{"new, then existing by the earlier line", nil, []engine.SKU{{ID: "s", Stock: 3}, {ID: "s", Stock: 4}}, "invalid_argument", "stock_expected", 0},
		{"new, then compared with the earlier line", nil, []engine.SKU{{ID: "s", Stock: 3}, set(4, 3)}, "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[string]skuLineState{}
			found := func(string) bool { return true }
			merchantFound := func(string) (bool, string) { return true, "" }
			var aerr *apiError
			for i := range tt.lines {
				if aerr = checkImportSKU(&tt.lines[i], tt.existing, seen, merchantFound, found); aerr != nil && i < len(tt.lines)-1 {
					t.Fatalf("line %d: %v", i+1, aerr)
				}
			}
			switch {
			case tt.wantCode == "" && aerr != nil:
				t.Fatalf("got %v, want none", aerr)
			case tt.wantCode != "" && (aerr == nil || aerr.Code != tt.wantCode || aerr.Field != tt.wantField):
				t.Fatalf("got %v, want %s field %q", aerr, tt.wantCode, tt.wantField)
			case tt.wantCode == "conflict" && aerr.Available != tt.wantAvail:
				t.Fatalf("conflict reports %d available, want %d", aerr.Available, tt.wantAvail)
			}
		})
	}
}
