package loadgen

import (
	"context"
	"errors"

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

// clockRehearsal is GET /v1/gmv's clock on a server run with
// --rehearsal-clock; a server that predates the field sends none (its
// wall clock).
const clockRehearsal = "rehearsal"

// agreeClock checks the run's clock against the server's (read by
// readTotals): it turns the rehearsal clock on when the server runs on it
// and RehearsalClockAuto allows (on the binary transport, which carries the
// times), and refuses a rehearsal clock the server does not run on, before
// the catalog is imported rather than at the first order.
func (t *HTTPTarget) agreeClock(say func(string)) error {
	server := t.before.clock == clockRehearsal
	switch {
	case t.cfg.RehearsalClock && !server:
		return errors.New("the server runs on its wall clock: start it with fest serve --rehearsal-clock, or drop --rehearsal-clock")
	case server && !t.cfg.RehearsalClock && t.cfg.RehearsalClockAuto:
		if t.cfg.Transport != TransportBinary {
			if say != nil {
				say("the server runs on the rehearsal clock, but only the binary transport gives commands their festival time: the board's peak second will not be the festival's")
			}
			return nil
		}
		t.cfg.RehearsalClock = true
		if say != nil {
			say("the server runs on the rehearsal clock: each order, payment and cancellation gives its festival time")
		}
	}
	return nil
}
