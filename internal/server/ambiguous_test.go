package server

import (
	"net/http"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// TestAmbiguousIDError: a request naming an id two merchants hold (cluster
// mode, engine Result.Ambiguous) is 409 conflict with the field and a
// message saying so, without the compare-and-set's stock figures.
func TestAmbiguousIDError(t *testing.T) {
	e := resultError(&engine.Result{Code: engine.CodeConflict, Ambiguous: true, Field: "items[1].sku_id"})
	if e.Status != http.StatusConflict || e.Code != "conflict" || e.Field != "items[1].sku_id" {
		t.Fatalf("got %d %s field %q", e.Status, e.Code, e.Field)
	}
	want := `{"code":"conflict","message":"items[1].sku_id names an id that two merchants use; it must be renamed","field":"items[1].sku_id"}`
	if got := string(appendError(nil, e)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// The compare-and-set's conflict is as before.
	e = resultError(&engine.Result{Code: engine.CodeConflict, SKUID: "s1", Available: 3})
	if got, want := string(appendError(nil, e)), `{"code":"conflict","message":"stock_expected differs from the available stock of sku s1 (3)","sku_id":"s1","stock_available":3}`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
