package loadgen

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The carrier phase: after the orders, carriers scan the parcels of the
// orders paid, so that they move through the contract's states (most to
// delivered, a share through failed attempts, exceptions and returns), as
// Cainiao moved 2020's parcels in the days after the peak, decoupled from
// order taking. It runs after the placement window so that it never costs
// the peak anything, for at most Config.ScanWindow.

// Carrier is a Target whose parcels carriers scan (fest).
type Carrier interface {
	// Scan sends scans[i] for the parcel of order orderIDs[i] and writes
	// its outcome to out[i].
	Scan(ctx context.Context, orderIDs []string, scans []ScanStep, out []Outcome)
	// ParcelStats reads the target's parcel counts.
	ParcelStats(ctx context.Context) (ParcelStats, error)
}

// ScanStep is one carrier scan.
type ScanStep struct {
	Status   string
	Location string
}

// ParcelStats are the target's parcel figures after the run.
type ParcelStats struct {
	Parcels   int64
	Delivered int64
	Returned  int64
	InFlight  int64 // neither delivered nor returned
}

// PublishedParcels is Cainiao's 2020 figure: delivery orders over the 11
// days of the festival.
const PublishedParcels = 2_320_000_000

// parcelPaths are the journeys a parcel takes, with their share in
// hundredths: every path obeys the contract's transition table.
var parcelPaths = []struct {
	share int
	steps []string
}{
	{80, []string{"picked_up", "in_transit", "in_transit", "out_for_delivery", "delivered"}},
	{8, []string{"picked_up", "in_transit", "out_for_delivery", "failed_attempt", "out_for_delivery", "delivered"}},
	{4, []string{"picked_up", "in_transit", "out_for_delivery", "failed_attempt", "returned"}},
	{5, []string{"picked_up", "exception", "in_transit", "out_for_delivery", "delivered"}},
	{3, []string{"picked_up", "in_transit", "exception", "returned"}},
}

// pathOf returns the path of the i-th parcel kept: shares by i mod 100.
func pathOf(i int) []string {
	k := i % 100
	for _, p := range parcelPaths {
		if k < p.share {
			return p.steps
		}
		k -= p.share
	}
	panic(fmt.Sprintf("loadgen: parcel path shares add up to less than 100 (%d left)", k))
}

// scanLocation names the place of step j of a parcel: each step at its own
// hub, so an in_transit after an in_transit is the next hub, not a repeat.
func scanLocation(status string, j int) string {
	return status + " hub " + strconv.Itoa(j)
}

// parcels keeps the ids of paid orders for the carrier phase, the first
// ScanParcelsMax of them.
type parcelKeeper struct {
	mu   sync.Mutex
	ids  []string
	max  int
	seen atomic.Int64
}

// keep counts the paid orders' ids and keeps them while there is room:
// one call per settled batch, one lock.
func (k *parcelKeeper) keep(ids []string) {
	if len(ids) == 0 {
		return
	}
	k.seen.Add(int64(len(ids)))
	k.mu.Lock()
	if room := k.max - len(k.ids); room > 0 {
		k.ids = append(k.ids, ids[:min(room, len(ids))]...)
	}
	k.mu.Unlock()
}

// carrierResult is what the carrier phase reports.
type carrierResult struct {
	scans, rejected int64
	elapsed         time.Duration
	parcels         int // parcels driven
}

// scanChunk is the scans per Scan call (the target runs them PayParallel at
// a time).
const scanChunk = 1000

// scanParcels runs the carrier phase over the kept parcels: round j sends
// every parcel's j-th step, until all paths end or the window closes.
func (r *run) scanParcels(ctx context.Context, c Carrier) carrierResult {
	ids := r.parcels.ids
	res := carrierResult{parcels: len(ids)}
	if r.cfg.Say != nil {
		r.cfg.Say(fmt.Sprintf("carriers scanning %s parcels (at most %v)", group(int64(len(ids))), r.cfg.ScanWindow))
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, r.cfg.ScanWindow)
	defer cancel()
	longest := 0
	for _, p := range parcelPaths {
		longest = max(longest, len(p.steps))
	}
	batchIDs := make([]string, 0, scanChunk)
	batch := make([]ScanStep, 0, scanChunk)
	out := make([]Outcome, scanChunk)
	flush := func() {
		if len(batchIDs) == 0 {
			return
		}
		o := out[:len(batchIDs)]
		clear(o)
		// ctx, not sctx: a call under way finishes, so its outcome is known.
		c.Scan(ctx, batchIDs, batch, o)
		for i := range o {
			if o[i].Code == "" {
				res.scans++
				continue
			}
			res.rejected++
			r.mu.Lock()
			r.mu.errors["scan_"+o[i].Code]++
			r.mu.Unlock()
			r.problem("scan rejected: "+o[i].Code, o[i].Detail)
		}
		batchIDs, batch = batchIDs[:0], batch[:0]
	}
	for j := 0; j < longest && sctx.Err() == nil; j++ {
		for i, id := range ids {
			if sctx.Err() != nil {
				break
			}
			path := pathOf(i)
			if j >= len(path) {
				continue
			}
			batchIDs = append(batchIDs, id)
			batch = append(batch, ScanStep{Status: path[j], Location: scanLocation(path[j], j)})
			if len(batchIDs) == scanChunk {
				flush()
			}
		}
		flush()
	}
	res.elapsed = time.Since(start)
	return res
}

// carrierNote is the report's line on the carrier phase.
func carrierNote(cr carrierResult, kept, paid int64) string {
	rate := float64(cr.scans) / max(cr.elapsed.Seconds(), 1e-9)
	n := fmt.Sprintf("carriers: %s scans of %s parcels in %.1fs (%s scans/s), %s refused",
		group(cr.scans), group(int64(cr.parcels)), cr.elapsed.Seconds(), group(int64(rate)), group(cr.rejected))
	if kept < paid {
		n += fmt.Sprintf("; %s parcels of %s not driven (--scan-parcels-max)", group(paid-kept), group(paid))
	}
	return n
}
