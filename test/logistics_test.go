package test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The acceptance checks of issue 9 (logistics) against the real binary.

type parcelAnswer struct {
	ParcelID    string `json:"parcel_id"`
	OrderID     string `json:"order_id"`
	Status      string `json:"status"`
	Carrier     string `json:"carrier"`
	Warehouse   string `json:"warehouse"`
	Destination string `json:"destination"`
	ETA         string `json:"eta"`
	Stale       bool   `json:"stale"`
	Events      []struct {
		Status      string `json:"status"`
		Location    string `json:"location"`
		At          string `json:"at"`
		CarrierCode string `json:"carrier_code"`
	} `json:"events"`
}

func decodeParcel(t testing.TB, b []byte) parcelAnswer {
	t.Helper()
	var p parcelAnswer
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("decode parcel: %v: %s", err, b)
	}
	return p
}

type logisticsStats struct {
	Parcels  uint64            `json:"parcels"`
	ByStatus map[string]uint64 `json:"by_status"`
	Stale    uint64            `json:"stale"`
}

func (f *fest) logisticsStats(t testing.TB) logisticsStats {
	t.Helper()
	var s logisticsStats
	if err := json.Unmarshal(f.must(200, "GET", "/v1/logistics/stats", "", nil).Body, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fest) placeOne(t testing.TB, region string) order {
	t.Helper()
	return decodeOrder(t, f.must(201, "POST", "/v1/orders", storefrontToken, map[string]any{"buyer_id": "u1", "items": []map[string]any{{"sku_id": "s1", "quantity": 1}}, "region": region}).Body)
}

func scanBody(status, location string, extra ...any) map[string]any {
	b := map[string]any{"status": status, "location": location}
	for i := 0; i+1 < len(extra); i += 2 {
		b[extra[i].(string)] = extra[i+1]
	}
	return b
}

func TestLogistics(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	f.seedCatalog(map[string]int{"s1": 1000})
	o := f.placeOne(t, "CN-BJ")
	pid := "P" + o.OrderID
	f.expectErr(404, "not_found", "order_id", "GET", "/v1/orders/"+o.OrderID+"/parcel", storefrontToken, nil)
	f.expectErr(404, "not_found", "parcel_id", "GET", "/v1/parcels/"+pid, carrierToken, nil)
	f.expectErr(404, "not_found", "parcel_id", "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("picked_up", "Hangzhou"))
	paidAt := time.Now()
	f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})

	p := decodeParcel(t, f.must(200, "GET", "/v1/orders/"+o.OrderID+"/parcel", storefrontToken, nil).Body)
	if p.ParcelID != pid || p.OrderID != o.OrderID || p.Status != "created" || p.Warehouse != "WH-CN-ZJ" || p.Destination != "CN-BJ" || p.Stale || p.Carrier == "" || len(p.Events) != 1 || p.Events[0].Status != "created" {
		t.Fatalf("new parcel: %+v", p)
	}
	eta, err := time.Parse(time.RFC3339, p.ETA)
	if err != nil || eta.Sub(paidAt) < 2*24*time.Hour || eta.Sub(paidAt) > 4*24*time.Hour {
		t.Errorf("eta %q of CN-ZJ to CN-BJ, paid at %v: want three days", p.ETA, paidAt)
	}

	// Roles.
	f.expectErr(401, "unauthenticated", "", "POST", "/v1/parcels/"+pid+"/scans", "", scanBody("picked_up", "Hangzhou"))
	f.expectErr(403, "forbidden", "", "POST", "/v1/parcels/"+pid+"/scans", storefrontToken, scanBody("picked_up", "Hangzhou"))
	f.expectErr(403, "forbidden", "", "POST", "/v1/parcels/"+pid+"/scans", adminToken, scanBody("picked_up", "Hangzhou"))
	f.expectErr(403, "forbidden", "", "GET", "/v1/orders/"+o.OrderID+"/parcel", carrierToken, nil)
	f.expectErr(401, "unauthenticated", "", "GET", "/v1/parcels/"+pid, "", nil)
	f.must(200, "GET", "/v1/parcels/"+pid, storefrontToken, nil)
	f.must(200, "GET", "/v1/logistics/stats", "", nil)

	// Bad scans name their field.
	for _, tc := range []struct {
		body  any
		field string
	}{
		{scanBody("teleported", "Hangzhou"), "status"},
		{scanBody("created", "Hangzhou"), "status"},
		{map[string]any{"location": "Hangzhou"}, "status"},
		{map[string]any{"status": "picked_up"}, "location"},
		{scanBody("picked_up", ""), "location"},
		{scanBody("picked_up", "Hangzhou", "at", time.Now().Add(48*time.Hour).UTC().Format(time.RFC3339)), "at"},
		{scanBody("picked_up", "Hangzhou", "at", paidAt.Add(-time.Hour).UTC().Format(time.RFC3339)), "at"},
		{scanBody("picked_up", "Hangzhou", "at", "yesterday"), "at"},
		{scanBody("picked_up", "Hangzhou", "hub", "x"), "hub"},
	} {
		f.expectErr(422, "invalid_argument", tc.field, "POST", "/v1/parcels/"+pid+"/scans", carrierToken, tc.body)
	}
	f.expectErr(404, "not_found", "parcel_id", "GET", "/v1/parcels/"+o.OrderID, carrierToken, nil)

	// A scan, its repeat, an illegal transition.
	at := time.Now().UTC().Format(time.RFC3339Nano)
	p = decodeParcel(t, f.must(200, "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("picked_up", "Hangzhou", "at", at, "carrier_code", "PU-01")).Body)
	if p.Status != "picked_up" || len(p.Events) != 2 || p.Events[1].Location != "Hangzhou" || p.Events[1].CarrierCode != "PU-01" || p.Events[1].At != at {
		t.Fatalf("after a pick-up: %+v", p)
	}
	p = decodeParcel(t, f.must(200, "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("picked_up", "Hangzhou", "carrier_code", "PU-01")).Body)
	if p.Status != "picked_up" || len(p.Events) != 2 {
		t.Fatalf("a repeated scan changed the parcel: %+v", p)
	}
	f.expectErr(409, "invalid_state", "", "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("delivered", "Beijing"))
	f.expectErr(409, "invalid_state", "", "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("picked_up", "Shanghai"))
	for i, hub := range []string{"Hangzhou hub", "Jinan hub", "Beijing hub"} {
		p = decodeParcel(t, f.must(200, "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("in_transit", hub)).Body)
		if p.Status != "in_transit" || len(p.Events) != 3+i || p.Events[2+i].Location != hub {
			t.Fatalf("in transit at %s: %+v", hub, p)
		}
	}
	f.must(200, "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("out_for_delivery", "Beijing"))
	f.must(200, "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("delivered", "Beijing"))
	f.expectErr(409, "invalid_state", "", "POST", "/v1/parcels/"+pid+"/scans", carrierToken, scanBody("returned", "Beijing"))

	// A cancelled order never has a parcel.
	c := f.placeOne(t, "CN-SH")
	f.must(200, "POST", "/v1/orders/"+c.OrderID+"/cancel", storefrontToken, nil)
	f.expectErr(404, "not_found", "order_id", "GET", "/v1/orders/"+c.OrderID+"/parcel", storefrontToken, nil)
	f.expectErr(404, "not_found", "parcel_id", "POST", "/v1/parcels/P"+c.OrderID+"/scans", carrierToken, scanBody("picked_up", "Shanghai"))

	// The assistant tracks the parcel of the buyer's order.
	r := f.must(200, "POST", "/v1/assistant/messages", storefrontToken, map[string]any{"buyer_id": "u1", "text": "where is my parcel for order " + o.OrderID, "session_id": "s"}).json(t)
	if r["intent"] != "parcel_tracking" || r["parcel_id"] != pid {
		t.Errorf("assistant on the parcel of %s: %v", o.OrderID, r)
	}

	s := f.logisticsStats(t)
	if s.Parcels != 1 || s.ByStatus["delivered"] != 1 || s.ByStatus["created"] != 0 || s.Stale != 0 {
		t.Errorf("stats %+v, want one delivered parcel", s)
	}
}

// TestParcelsAcrossKill: every paid order has exactly one parcel and no
// unpaid, cancelled or expired one does, and every acknowledged scan is
// kept, across kill -9 (scans in flight) and restarts.
func TestParcelsAcrossKill(t *testing.T) {
	t.Parallel()
	f := startFest(t, "", "--payment-timeout", "3s", "--snapshot-every-bytes", "20000")
	f.seedCatalog(map[string]int{"s1": 1_000_000})
	status := map[string]string{} // order id → acknowledged status
	for i := 0; i < 90; i++ {
		o := f.placeOne(t, "CN-"+[]string{"BJ", "GD", "XJ"}[i%3])
		status[o.OrderID] = "pending_payment"
		switch i % 3 {
		case 0, 1:
			f.must(200, "POST", "/v1/orders/"+o.OrderID+"/pay", storefrontToken, map[string]any{"amount": o.Total})
			status[o.OrderID] = "paid"
		case 2:
			if i%2 == 0 {
				f.must(200, "POST", "/v1/orders/"+o.OrderID+"/cancel", storefrontToken, nil)
				status[o.OrderID] = "cancelled"
			}
		}
	}
	var paid []string
	for id, s := range status {
		if s == "paid" {
			paid = append(paid, id)
		}
	}
	for _, id := range paid {
		f.must(200, "POST", "/v1/parcels/P"+id+"/scans", carrierToken, scanBody("picked_up", "origin"))
	}

	// Carriers scan every parcel through hub after hub until the kill.
	var mu sync.Mutex
	lastHub := map[string]int{} // order id → the last hub whose scan got a 200
	var stop atomic.Bool
	var wg sync.WaitGroup
	var acked atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for hub := 1; !stop.Load(); hub++ {
				for i := w; i < len(paid); i += 4 {
					id := paid[i]
					r, err := f.call("POST", "/v1/parcels/P"+id+"/scans", carrierToken, scanBody("in_transit", "hub "+strconv.Itoa(hub)))
					if err != nil {
						return // the server is gone
					}
					if r.Status != 200 {
						t.Errorf("scan %s at hub %d: %d %s", id, hub, r.Status, r.Body)
						return
					}
					acked.Add(1)
					mu.Lock()
					lastHub[id] = hub
					mu.Unlock()
				}
			}
		}()
	}
	for acked.Load() < int64(3*len(paid)) {
		time.Sleep(10 * time.Millisecond)
	}
	f.kill()
	stop.Store(true)
	wg.Wait()

	check := func(what string) {
		t.Helper()
		parcels := 0
		for id, s := range status {
			r := f.must(200, "GET", "/v1/orders/"+id, storefrontToken, nil)
			now := decodeOrder(t, r.Body).Status
			pr, err := f.call("GET", "/v1/orders/"+id+"/parcel", storefrontToken, nil)
			if err != nil {
				t.Fatal(err)
			}
			if s != "paid" {
				if pr.Status != 404 || now == "paid" {
					t.Errorf("%s: order %s acknowledged %s, now %s, has a parcel: %d %s", what, id, s, now, pr.Status, pr.Body)
				}
				continue
			}
			if pr.Status != 200 {
				t.Errorf("%s: paid order %s has no parcel: %d %s", what, id, pr.Status, pr.Body)
				continue
			}
			parcels++
			p := decodeParcel(t, pr.Body)
			hub := lastHub[id]
			found := hub == 0
			for _, e := range p.Events {
				found = found || e.Location == "hub "+strconv.Itoa(hub)
			}
			if !found || p.Status != "in_transit" && hub > 0 {
				t.Errorf("%s: parcel of %s lost its acknowledged scan at hub %d: %+v", what, id, hub, p)
			}
		}
		if s := f.logisticsStats(t); s.Parcels != uint64(parcels) || parcels != len(paid) {
			t.Errorf("%s: stats count %d parcels, %d paid orders have one, %d were paid", what, s.Parcels, parcels, len(paid))
		}
	}
	f.restart()
	check("after kill -9")
	// A clean stop writes the projections' snapshot; then a kill after
	// more scans replays from it.
	f.stop()
	f.restart()
	check("after a clean restart")
	for _, id := range paid[:5] {
		r := f.must(200, "POST", "/v1/parcels/P"+id+"/scans", carrierToken, scanBody("out_for_delivery", "city"))
		if p := decodeParcel(t, r.Body); p.Status != "out_for_delivery" {
			t.Fatalf("out for delivery: %+v", p)
		}
	}
	f.kill()
	f.restart()
	for _, id := range paid[:5] {
		p := decodeParcel(t, f.must(200, "GET", "/v1/parcels/P"+id, carrierToken, nil).Body)
		if p.Status != "out_for_delivery" {
			t.Errorf("after the second kill, parcel of %s is %s, want out_for_delivery", id, p.Status)
		}
	}
	// The pending orders expire (3s), and still get no parcel.
	time.Sleep(4 * time.Second)
	for id, s := range status {
		if s == "pending_payment" {
			f.expectErr(404, "not_found", "order_id", "GET", "/v1/orders/"+id+"/parcel", storefrontToken, nil)
		}
	}
	_ = fmt.Sprint
}
