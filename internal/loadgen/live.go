package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/festival"
)

// Livestream deals in the load: the model's flash sales are deals of its
// channels (festival.Deal). The server judges a deal's window by its own
// clock while the generator compresses festival time (--speed), so the
// generator opens every deal for the whole run and lets its orders arrive
// in bursts at the festival times of the sales; a deal's stock, price,
// channel and limit per buyer are the model's.

// dealWindowAfter is how long after Prepare a deal stays open: longer than
// any run.
const dealWindowAfter = 7 * 24 * time.Hour

// LiveResult is the livestream part of a run's result.
type LiveResult struct {
	// DealOrders are the deal orders accepted, DealRejected those refused
	// (sold out, limit per buyer), and RouterRejected the refusals the
	// server answered at its router without reaching the partition
	// (fest_live_deal_gateway_rejected_total, read before and after).
	DealOrders     int64 `json:"deal_orders"`
	DealRejected   int64 `json:"deal_rejected"`
	RouterRejected int64 `json:"router_rejected"`
	// AcceptP99 and RejectP99 are the p99 latencies, in milliseconds, of
	// the deal orders accepted and refused.
	AcceptP99 float64 `json:"accept_p99_ms"`
	RejectP99 float64 `json:"reject_p99_ms"`
}

// liveStats collects the deal orders' latencies during a run.
type liveStats struct {
	accept, reject *hdrhistogram.Histogram // microseconds, under run.mu
	routerBefore   int64
}

func newLiveStats() liveStats {
	return liveStats{accept: hdrhistogram.New(1, latencyMaxUs, 3), reject: hdrhistogram.New(1, latencyMaxUs, 3)}
}

// recordDeal records the latency of a deal order, accepted or not.
func (r *run) recordDeal(d time.Duration, accepted bool) {
	us := latencyUs(d)
	r.mu.Lock()
	if accepted {
		_ = r.live.accept.RecordValue(us)
	} else {
		_ = r.live.reject.RecordValue(us)
	}
	r.mu.Unlock()
}

// liveResult builds the livestream result, nil for a run without deals.
func (r *run) liveResult(ctx context.Context) *LiveResult {
	if len(r.m.Deals) == 0 {
		return nil
	}
	r.mu.Lock()
	lr := &LiveResult{
		DealOrders:   r.live.accept.TotalCount(),
		DealRejected: r.live.reject.TotalCount(),
		AcceptP99:    float64(r.live.accept.ValueAtQuantile(99)) / 1000,
		RejectP99:    float64(r.live.reject.ValueAtQuantile(99)) / 1000,
	}
	r.mu.Unlock()
	if t, ok := r.target.(*HTTPTarget); ok {
		if n, err := t.dealRouterRejected(ctx); err == nil {
			lr.RouterRejected = n - r.live.routerBefore
		}
	}
	return lr
}

// startLive reads the router counter before the run.
func (r *run) startLive(ctx context.Context) {
	r.live = newLiveStats()
	if t, ok := r.target.(*HTTPTarget); ok && len(r.m.Deals) > 0 {
		r.live.routerBefore, _ = t.dealRouterRejected(ctx)
	}
}

// dealRouterRejected reads fest_live_deal_gateway_rejected_total from
// /metrics.
func (t *HTTPTarget) dealRouterRejected(ctx context.Context) (int64, error) {
	v, err := t.admin.Metric(ctx, "fest_live_deal_gateway_rejected_total")
	return int64(v), err
}

// putDeals creates the model's deals, open from a minute ago for
// dealWindowAfter, or on the rehearsal clock for the whole festival.
func (t *HTTPTarget) putDeals(ctx context.Context, m *festival.Model) error {
	from, to := time.Now().UTC().Add(-time.Minute), time.Now().UTC().Add(dealWindowAfter)
	if t.cfg.RehearsalClock {
		// On festival time: open for the whole festival, as its channels.
		from, to = festival.FestivalStart.Add(-time.Minute), festival.FestivalStart.Add(festivalDays*24*time.Hour)
	}
	for i := range m.Deals {
		d := &m.Deals[i]
		_, err := t.admin.PutDeal(ctx, client.Deal{ID: d.ID, ChannelID: m.Channels[d.Channel].ID, SKUID: m.SKUs[d.SKU].ID, Price: d.Price, Stock: d.Stock,
			StartsAt: from, EndsAt: to, LimitPerBuyer: d.LimitPerBuyer})
		var ae *client.Error
		if errors.As(err, &ae) && ae.Code == "conflict" {
			// An earlier run put this deal (with its own window): a
			// rehearsal sells what it left (serverBefore.dealLeft).
			continue
		}
		if err != nil {
			o := outcomeOf(err)
			return fmt.Errorf("put deal %s: %s: %s", d.ID, o.Code, o.Detail)
		}
	}
	return nil
}

// festivalDays is the festival's length: 1 to 11 November.
const festivalDays = 11

// liveSettle is how long the audit waits for the livestream projection to
// count the last payments.
const liveSettle = 30 * time.Second

// auditLive compares GET /v1/live/leaderboard with the driver's own
// recomputation from the orders it saw paid (Tally.ChannelGMV), and
// returns the deals' unsold units by SKU index for the stock conservation
// check (a SKU's stock_available excludes them).
func (t *HTTPTarget) auditLive(ctx context.Context, m *festival.Model, l *Ledger) (problems []string, dealLeft map[int32]int64, err error) {
	if len(m.Channels) == 0 || l.Tally == nil {
		return nil, nil, nil
	}
	want := map[string]int64{}
	for i, g := range l.Tally.ChannelGMV {
		want[m.Channels[i].ID] = g
	}
	deadline := time.Now().Add(liveSettle)
	var diffs []string
	for {
		board, err := t.admin.Leaderboard(ctx, 1000)
		if err != nil {
			return nil, nil, fmt.Errorf("get leaderboard: %w", err)
		}
		diffs = diffs[:0]
		seen := map[string]bool{}
		for _, c := range board.Channels {
			seen[c.ID] = true
			if w, g0 := want[c.ID], t.before.channelGMV[c.ID]; c.GMV-g0 != w {
				diffs = append(diffs, fmt.Sprintf("channel %s: leaderboard gmv %d fen (%d before the run), driver saw %d paid", c.ID, c.GMV, g0, w))
			}
		}
		for id, w := range want {
			if !seen[id] && w != 0 {
				diffs = append(diffs, fmt.Sprintf("channel %s: not on the leaderboard, driver saw %d fen paid", id, w))
			}
		}
		if len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !l.Uncertain.Load() {
		problems = append(problems, diffs...)
	}
	dealLeft, err = dealsLeft(ctx, t.admin, m, false)
	return problems, dealLeft, err
}

// dealsLeft returns the units left in the model's deals by SKU index, read
// from the channels that hold them. With missingOK a channel the server
// does not know (a fresh server, before Prepare put it) counts as none.
func dealsLeft(ctx context.Context, c *client.Client, m *festival.Model, missingOK bool) (map[int32]int64, error) {
	left := map[int32]int64{}
	skuOf := map[string]int32{} // deal id → SKU index
	channels := map[int16]bool{}
	for i := range m.Deals {
		skuOf[m.Deals[i].ID] = m.Deals[i].SKU
		channels[m.Deals[i].Channel] = true
	}
	for ci := range channels {
		id := m.Channels[ci].ID
		ch, err := c.Channel(ctx, id)
		var ae *client.Error
		if missingOK && errors.As(err, &ae) && ae.Status == 404 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get channel %s: %w", id, err)
		}
		for _, d := range ch.Deals {
			if sku, ok := skuOf[d.DealID]; ok {
				left[sku] += d.StockLeft
			}
		}
	}
	return left, nil
}
