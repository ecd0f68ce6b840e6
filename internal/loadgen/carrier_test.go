package loadgen

import (
	"context"
	"sync"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// carrierTarget is memTarget with parcels: a parcel per paid order, scans
// checked against the engine's transition table.
type carrierTarget struct {
	memTarget
	pmu     sync.Mutex
	parcels map[string]engine.ParcelStatus
	last    map[string]string
}

func (t *carrierTarget) Scan(_ context.Context, ids []string, scans []ScanStep, out []Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pmu.Lock()
	defer t.pmu.Unlock()
	if t.parcels == nil {
		t.parcels, t.last = map[string]engine.ParcelStatus{}, map[string]string{}
	}
	for i, id := range ids {
		o := t.orders[id]
		if o == nil || o.status != "paid" {
			out[i] = Outcome{Code: "not_found"}
			continue
		}
		cur, ok := t.parcels[id]
		if !ok {
			cur = engine.ParcelCreated
		}
		to, ok := engine.ParseScanStatus(scans[i].Status)
		if !ok || !engine.ParcelTransitionAllowed(cur, to) {
			out[i] = Outcome{Code: "invalid_state", Detail: cur.String() + " to " + scans[i].Status}
			continue
		}
		t.parcels[id], t.last[id] = to, scans[i].Location
	}
}

func (t *carrierTarget) ParcelStats(context.Context) (ParcelStats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pmu.Lock()
	defer t.pmu.Unlock()
	var ps ParcelStats
	for _, o := range t.orders {
		if o.status == "paid" {
			ps.Parcels++
		}
	}
	for _, s := range t.parcels {
		switch s {
		case engine.ParcelDelivered:
			ps.Delivered++
		case engine.ParcelReturned:
			ps.Returned++
		}
	}
	ps.InFlight = ps.Parcels - ps.Delivered - ps.Returned
	return ps, nil
}

// TestCarrierPhase: every path is legal, the shares add up, and the
// report counts parcels.
func TestCarrierPhase(t *testing.T) {
	total := 0
	for _, p := range parcelPaths {
		total += p.share
		last := engine.ParcelCreated
		for _, s := range p.steps {
			st, ok := engine.ParseScanStatus(s)
			if !ok || !engine.ParcelTransitionAllowed(last, st) {
				t.Fatalf("path %v: %s after %v is not allowed", p.steps, s, last)
			}
			last = st
		}
		if last != engine.ParcelDelivered && last != engine.ParcelReturned {
			t.Errorf("path %v ends in %v", p.steps, last)
		}
	}
	if total != 100 {
		t.Fatalf("path shares add up to %d", total)
	}
	m := festivalModel(t)
	tgt := &carrierTarget{}
	cfg := quietConfig(ProfileFestival)
	cfg.ScanParcelsMax = 1000
	res, err := RunTarget(context.Background(), cfg, m, tgt)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Audit.OK {
		t.Fatalf("audit failed: %v", res.Audit.Problems)
	}
	if res.ParcelsCreated != res.Paid || res.Paid == 0 {
		t.Errorf("parcels created %d, paid orders %d", res.ParcelsCreated, res.Paid)
	}
	driven := min(res.Paid, 1000)
	if res.ParcelsDelivered+res.ParcelsReturned != driven || res.ParcelsReturned == 0 {
		t.Errorf("%d delivered and %d returned of %d parcels driven", res.ParcelsDelivered, res.ParcelsReturned, driven)
	}
	if want := driven * 93 / 100; res.ParcelsDelivered < want-20 || res.ParcelsDelivered > want+20 {
		t.Errorf("%d delivered of %d, want about 93%%", res.ParcelsDelivered, driven)
	}
	if res.ScansPerSec <= 0 {
		t.Errorf("scans per second %v", res.ScansPerSec)
	}
}
