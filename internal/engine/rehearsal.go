package engine

import "sync/atomic"

// rehearsalClock is the engine's clock in rehearsal mode
// (Config.RehearsalClock): the largest command time (Command.At) given so
// far, and at start the time of the last event recovered. A rehearsal
// replays a festival's own time compressed into a short run, so the
// server's wall clock says nothing of when an order was placed; time is an
// input of the deterministic core, so giving it per command changes no
// rule, only where the time comes from.
//
// Commands arrive from concurrent batches, so their times are only roughly
// in order. The clock never runs backwards (it is a maximum); each command
// is applied at its own time, so its events carry it exactly. What that
// changes is written at Config.RehearsalClock.
type rehearsalClock struct {
	now atomic.Int64 // unix nanoseconds
}

// advance moves the clock to at if at is later.
func (c *rehearsalClock) advance(at int64) {
	for {
		cur := c.now.Load()
		if at <= cur || c.now.CompareAndSwap(cur, at) {
			return
		}
	}
}

// load is the clock's time, the engine's Config.Now in rehearsal mode.
func (c *rehearsalClock) load() int64 { return c.now.Load() }

// admitTime checks a command's given time and moves the rehearsal clock to
// it. It returns false, with res answered, when the time is refused: given
// to an engine without the rehearsal clock, or negative.
func (e *Engine) admitTime(at int64, res *Result) bool {
	c := e.cfg.rehearsal
	if c == nil || at < 0 {
		*res = Result{Code: CodeInvalidArgument, Field: "at"}
		return false
	}
	c.advance(at)
	return true
}
