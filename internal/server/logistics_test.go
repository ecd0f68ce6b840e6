package server

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/logistics"
)

func TestScanCommand(t *testing.T) {
	now := time.Date(2020, 11, 11, 0, 0, 0, 0, time.UTC)
	str := func(s string) *string { return &s }
	long := func(n int) *string { b := make([]byte, n); return str(string(b)) }
	for _, tc := range []struct {
		name  string
		in    scanJSON
		field string // "" when valid
		at    time.Time
	}{
		{"minimal", scanJSON{Status: str("picked_up"), Location: str("Hangzhou")}, "", now},
		{"with time and code", scanJSON{Status: str("delivered"), Location: str("Beijing"), At: str("2020-11-10T23:30:00.5Z"), CarrierCode: str("D1")}, "", now.Add(-30*time.Minute + 500*time.Millisecond)},
		{"an hour ahead", scanJSON{Status: str("in_transit"), Location: str("x"), At: str("2020-11-11T01:00:00Z")}, "", now.Add(time.Hour)},
		{"no status", scanJSON{Location: str("x")}, "status", now},
		{"created", scanJSON{Status: str("created"), Location: str("x")}, "status", now},
		{"unknown status", scanJSON{Status: str("lost"), Location: str("x")}, "status", now},
		{"no location", scanJSON{Status: str("picked_up")}, "location", now},
		{"empty location", scanJSON{Status: str("picked_up"), Location: str("")}, "location", now},
		{"long location", scanJSON{Status: str("picked_up"), Location: long(engine.LocationBytesMax + 1)}, "location", now},
		{"long carrier code", scanJSON{Status: str("picked_up"), Location: str("x"), CarrierCode: long(engine.CarrierCodeBytesMax + 1)}, "carrier_code", now},
		{"bad time", scanJSON{Status: str("picked_up"), Location: str("x"), At: str("11/11/2020")}, "at", now},
		{"far future", scanJSON{Status: str("picked_up"), Location: str("x"), At: str("2020-11-11T01:00:01Z")}, "at", now},
	} {
		sc, aerr := scanCommand(&tc.in, now)
		switch {
		case tc.field == "" && aerr != nil:
			t.Errorf("%s: refused: %v", tc.name, aerr)
		case tc.field != "" && (aerr == nil || aerr.Field != tc.field || aerr.Status != 422):
			t.Errorf("%s: %+v, want 422 field %s", tc.name, aerr, tc.field)
		case tc.field == "" && sc.At != tc.at.UnixNano():
			t.Errorf("%s: at %v, want %v", tc.name, time.Unix(0, sc.At).UTC(), tc.at)
		}
	}
}

func TestParcelJSON(t *testing.T) {
	id := engine.OrderIDOf(3, 77)
	p := logistics.Parcel{OrderID: id, Status: engine.ParcelInTransit, Carrier: "zto", Warehouse: "WH-CN-ZJ", Destination: "CN-BJ",
		ETA: 3e18, Stale: true, Events: []logistics.Event{
			{Status: engine.ParcelCreated, Location: "WH-CN-ZJ", At: 1e18},
			{Status: engine.ParcelPickedUp, Location: "Hangzhou \"east\"", At: 2e18, CarrierCode: "PU"},
		}}
	v := newParcelView(&p)
	b := appendParcel(nil, &v)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	type wire struct {
		ParcelID    string              `json:"parcel_id"`
		OrderID     string              `json:"order_id"`
		Status      string              `json:"status"`
		Carrier     string              `json:"carrier"`
		Warehouse   string              `json:"warehouse"`
		Destination string              `json:"destination"`
		ETA         string              `json:"eta"`
		Stale       bool                `json:"stale"`
		Events      []map[string]string `json:"events"`
	}
	var w wire
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("parcel JSON %s: %v", b, err)
	}
	if w.ParcelID != "P"+id.String() || w.OrderID != id.String() || w.Status != "in_transit" || w.ETA != "2065-01-24T05:20:00Z" || !w.Stale || len(w.Events) != 2 {
		t.Fatalf("parcel JSON %s", b)
	}
	if _, ok := w.Events[0]["carrier_code"]; ok || w.Events[1]["carrier_code"] != "PU" || w.Events[1]["location"] != `Hangzhou "east"` {
		t.Errorf("events %v", w.Events)
	}
	st := logistics.Stats{Parcels: 3, ParcelsPerSecond: 1.5, Stale: 1, AsOf: 1e18}
	st.ByStatus[engine.ParcelCreated], st.ByStatus[engine.ParcelDelivered] = 2, 1
	var s map[string]any
	if err := json.Unmarshal(appendLogisticsStats(nil, &st, 0.25), &s); err != nil {
		t.Fatal(err)
	}
	if s["parcels"] != 3.0 || s["stale"] != 1.0 || s["creation_lag_seconds"] != 0.25 || s["by_status"].(map[string]any)["delivered"] != 1.0 || len(s["by_status"].(map[string]any)) != 8 {
		t.Errorf("stats %v", s)
	}
}

// TestScannedParcel: the answer to a durable scan the projection has not
// reflected yet carries the engine's status and the scan as its last event,
// and a repeat of the last scan changes nothing but the status.
func TestScannedParcel(t *testing.T) {
	id := engine.OrderIDOf(1, 5)
	before := logistics.Parcel{OrderID: id, Status: engine.ParcelPickedUp, CreatedAt: 1e18, LastScanAt: 1e18, Stale: true,
		Events: make([]logistics.Event, 2, 4)}
	before.Events[0] = logistics.Event{Status: engine.ParcelCreated, Location: "WH", At: 1e18}
	before.Events[1] = logistics.Event{Status: engine.ParcelPickedUp, Location: "Hangzhou", At: 1e18}
	sc := engine.Scan{Status: engine.ParcelInTransit, Location: "Shanghai", At: 2e18, CarrierCode: "T1"}
	p := scannedParcel(before, &sc, &engine.Result{ParcelStatus: engine.ParcelInTransit, ChangedAt: 3e18})
	if p.Status != engine.ParcelInTransit || p.Stale || p.LastScanAt != 3e18 || len(p.Events) != 3 ||
		p.Events[2] != (logistics.Event{Status: engine.ParcelInTransit, Location: "Shanghai", At: 2e18, CarrierCode: "T1"}) {
		t.Errorf("scanned parcel %+v", p)
	}
	if len(before.Events) != 2 || before.Events[:3][2] != (logistics.Event{}) {
		t.Errorf("the parcel read before the scan changed: %+v", before.Events[:3])
	}
	repeat := scannedParcel(before, &engine.Scan{Status: engine.ParcelPickedUp, Location: "Hangzhou"}, &engine.Result{ParcelStatus: engine.ParcelPickedUp})
	if repeat.Status != engine.ParcelPickedUp || !repeat.Stale || repeat.LastScanAt != 1e18 || len(repeat.Events) != 2 {
		t.Errorf("repeated scan %+v", repeat)
	}
}
