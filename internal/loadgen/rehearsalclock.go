package loadgen

import (
	"context"

	"github.com/fest-platform/fest/internal/festival"
)

// The rehearsal clock (fest serve --rehearsal-clock, HTTPConfig.
// RehearsalClock): the festival profile gives each command its own
// festival time, so that the server stamps every event with its order's
// festival second however the run compresses time, and the board's peak
// second can be read from the server. A payment or cancellation is given
// its order's time: the model settles an order as soon as it is placed.

// festivalTime is o's festival time, unix nanoseconds.
func festivalTime(o *festival.Order) int64 {
	return festival.FestivalStart.UnixNano() + o.AtMs*1e6
}

// rehearsalSettler is a Settler that can give each action its festival
// time (ats[i], unix ns), when the target runs on the rehearsal clock.
type rehearsalSettler interface {
	Settler
	rehearsal() bool
	settleAt(ctx context.Context, ids []string, totals []int64, cancel []bool, ats []int64, out []Outcome)
}

// rehearsal reports whether t gives the server each command's time.
func (t *HTTPTarget) rehearsal() bool { return t.cfg.RehearsalClock }

// rehearsalAt is the time to give o's placement: its festival time on the
// rehearsal clock, else none.
func (t *HTTPTarget) rehearsalAt(o *festival.Order) int64 {
	if !t.cfg.RehearsalClock {
		return 0
	}
	return festivalTime(o)
}

// settleAt is Settle with each action's festival time.
func (t *HTTPTarget) settleAt(ctx context.Context, ids []string, totals []int64, cancel []bool, ats []int64, out []Outcome) {
	t.settle(ctx, ids, totals, cancel, ats, out)
}
