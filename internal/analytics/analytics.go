// Package analytics is the real-time GMV projection: it follows the
// engine's committed events and keeps the festival's running totals for
// GET /v1/gmv (and, later, the big screen and its breakdowns).
//
// GMV is the total of paid orders. A paid event names only its order, so
// the projection keeps each order's total from the moment it is placed, in
// a dense table per partition indexed by the order's sequence (8 bytes an
// order). Like the order store it is fed by a follower shared with the
// other projections, which also snapshots it (internal/projection).
package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/internal/engine"
)

// DefaultUSDRate is CNY per USD: the 2020 festival's 498.2 billion CNY were
// reported as 74.1 billion USD.
const DefaultUSDRate = 6.7233

// ErrClosed is returned after Close.
var ErrClosed = errors.New("analytics closed")

// Source is what the projection follows: the engine's committed events.
type Source interface {
	Follow(ctx context.Context, from uint64, fn func(ev *engine.Event) error) error
	Durable() uint64
}

// Config configures the projection.
type Config struct {
	// USDRate is CNY per USD for gmv_usd (default 6.7233).
	USDRate float64
	// RateWindow is the span over which orders_per_second is averaged
	// (default 5s).
	RateWindow time.Duration
	// Now is the wall clock (default time.Now); tests set it.
	Now func() time.Time
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.USDRate < 0 || math.IsNaN(c.USDRate) || math.IsInf(c.USDRate, 0) {
		return fmt.Errorf("analytics config: USDRate %v is not a positive number", c.USDRate)
	}
	if c.RateWindow < 0 {
		return fmt.Errorf("analytics config: RateWindow %v is negative", c.RateWindow)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.USDRate == 0 {
		c.USDRate = DefaultUSDRate
	}
	if c.RateWindow == 0 {
		c.RateWindow = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// GMV is the body of GET /v1/gmv.
type GMV struct {
	Amount          int64 // fen (CNY)
	AmountUSD       int64 // cents
	OrdersPlaced    uint64
	OrdersPaid      uint64
	OrdersPerSecond float64 // placed orders per second, over RateWindow
	AsOf            time.Time
}

// Analytics is the GMV projection.
type Analytics struct {
	cfg Config

	// Written by the follower goroutine only.
	totals [][]int64 // totals[partition][seq-1], fen

	gmv       atomic.Int64
	placed    atomic.Uint64
	paid      atomic.Uint64
	lastAt    atomic.Int64 // event time of the last applied event
	applied   atomic.Uint64
	src       atomic.Pointer[sourceBox]
	appliedMu sync.Mutex
	advanced  chan struct{} // closed when applied advances; guarded by appliedMu

	rate struct {
		sync.Mutex
		samples []rateSample
	}

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

type sourceBox struct{ Source }

type rateSample struct {
	at     time.Time
	placed uint64
}

// New returns a projection; feed it with Apply and call Attach.
func New(cfg Config) (*Analytics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Analytics{cfg: cfg, totals: make([][]int64, 4096), advanced: make(chan struct{})}, nil
}

// Attach names the source (for lag, as_of and WaitDurable) of the
// projection, which a follower shared with the other projections feeds
// through Apply, and starts the orders-per-second sampler.
func (a *Analytics) Attach(src Source) {
	a.once.Do(func() {
		a.src.Store(&sourceBox{src})
		ctx, cancel := context.WithCancel(context.Background())
		a.cancel = cancel
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.sampleRate(ctx)
		}()
	})
}

// Apply folds one event into the totals, in journal order.
func (a *Analytics) Apply(ev *engine.Event) error {
	switch ev.Kind {
	case engine.EventOrderPlaced:
		p, seq := ev.OrderID.Partition(), ev.OrderID.Seq()
		if seq != uint64(len(a.totals[p]))+1 {
			return fmt.Errorf("analytics: partition %d order %d follows %d", p, seq, len(a.totals[p]))
		}
		a.totals[p] = append(a.totals[p], ev.Total)
		a.placed.Add(1)
	case engine.EventOrderPaid:
		p, seq := ev.OrderID.Partition(), ev.OrderID.Seq()
		if seq == 0 || seq > uint64(len(a.totals[p])) {
			return fmt.Errorf("analytics: payment of unknown order %v", ev.OrderID)
		}
		a.gmv.Add(a.totals[p][seq-1])
		a.paid.Add(1)
	}
	a.lastAt.Store(ev.At)
	return nil
}

// sampleRate records the placed count every second for orders_per_second.
func (a *Analytics) sampleRate(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a.rate.Lock()
		now := a.cfg.Now()
		a.rate.samples = append(a.rate.samples, rateSample{at: now, placed: a.placed.Load()})
		// Keep the window plus one sample; the bound is a handful.
		for len(a.rate.samples) > 2 && now.Sub(a.rate.samples[1].at) >= a.cfg.RateWindow {
			a.rate.samples = a.rate.samples[1:]
		}
		a.rate.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GMV returns the running totals.
func (a *Analytics) GMV() GMV {
	g := GMV{
		Amount:       a.gmv.Load(),
		OrdersPlaced: a.placed.Load(),
		OrdersPaid:   a.paid.Load(),
	}
	g.AmountUSD = int64(math.Round(float64(g.Amount) / a.cfg.USDRate))
	now := a.cfg.Now()
	a.rate.Lock()
	if n := len(a.rate.samples); n > 0 {
		first := a.rate.samples[0]
		if d := now.Sub(first.at).Seconds(); d >= 0.5 {
			g.OrdersPerSecond = float64(g.OrdersPlaced-first.placed) / d
		}
	}
	a.rate.Unlock()
	g.AsOf = now.UTC()
	if b := a.src.Load(); b != nil && a.applied.Load() < b.Durable() {
		// Behind the journal: the figures are as of the last event applied.
		if at := a.lastAt.Load(); at > 0 {
			g.AsOf = time.Unix(0, at).UTC()
		}
	}
	return g
}

// WaitDurable waits until the projection reflects everything durable at
// the time of the call.
func (a *Analytics) WaitDurable(ctx context.Context) error {
	b := a.src.Load()
	if b == nil {
		return ErrClosed
	}
	pos := b.Durable()
	for a.applied.Load() < pos {
		a.appliedMu.Lock()
		ch := a.advanced
		a.appliedMu.Unlock()
		if a.applied.Load() >= pos {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for position %d (at %d): %w", pos, a.applied.Load(), ctx.Err())
		}
	}
	return nil
}

// Lag returns how far, in journal bytes, the projection is behind.
func (a *Analytics) Lag() uint64 {
	if b := a.src.Load(); b != nil {
		if d, ap := b.Durable(), a.applied.Load(); d > ap {
			return d - ap
		}
	}
	return 0
}

// Close stops the sampler.
func (a *Analytics) Close() error {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	return nil
}

// Applied is the journal position the projection reflects.
func (a *Analytics) Applied() uint64 { return a.applied.Load() }
