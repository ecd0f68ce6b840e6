// Package loadgen is `fest load`: it drives a festival model
// (internal/festival) against a target — a fest server over its public API,
// or one of the baselines (PostgreSQL, Redis) — checks every answer, audits
// the books afterwards and reports: text, one JSON line, and an HTML page
// with plots.
//
// The driver is open-loop where the profile has a schedule (each order is due
// at a time; latency counts from then, so a slow server cannot hide its
// queueing by slowing the generator down) and closed-loop at --rate max.
package loadgen

import (
	"context"
	"sync/atomic"

	"github.com/fest-platform/fest/internal/festival"
)

// Target is a system the driver places orders on. Every call is made with a
// slice of orders; a target that serves one order per call (the baselines)
// is driven with slices of one by many goroutines (Shape).
type Target interface {
	// Name is the target's name in reports: fest, postgres, redis, ...
	Name() string
	// Shape is how the driver should call Place: at most batch orders a
	// call, inFlight calls at a time.
	Shape() (batch, inFlight int)
	// Prepare loads the model's catalog into an empty target.
	Prepare(ctx context.Context, m *festival.Model, say func(string)) error
	// Place places orders[i] and writes its outcome to out[i].
	Place(ctx context.Context, m *festival.Model, orders []*festival.Order, out []Outcome)
	// Pay pays placed orders (ids[i], of totals[i] fen); out[i] is the outcome.
	Pay(ctx context.Context, ids []string, totals []int64, out []Outcome)
	// Cancel cancels placed orders.
	Cancel(ctx context.Context, ids []string, out []Outcome)
	// Audit checks the target's books against what the driver saw
	// acknowledged and returns the problems found.
	Audit(ctx context.Context, m *festival.Model, l *Ledger) ([]string, error)
	// Close releases the target's connections.
	Close() error
}

// Settler is a Target that pays and cancels in batches: one call, one
// request, whatever the mix. The driver then settles each placed batch
// with one Settle call, and --pay-after auto pays during the run.
type Settler interface {
	// Settle pays ids[i] with totals[i], or cancels it when cancel[i] is
	// set, and writes its outcome to out[i].
	Settle(ctx context.Context, ids []string, totals []int64, cancel []bool, out []Outcome)
	// SettlesInBatches reports whether Settle is batched on this target
	// (for fest: the binary and json-batch transports).
	SettlesInBatches() bool
}

// settles reports whether t settles in batches.
func settles(t Target) (Settler, bool) {
	s, ok := t.(Settler)
	if !ok || !s.SettlesInBatches() {
		return nil, false
	}
	return s, true
}

// Error codes the driver uses besides the API's own.
const (
	CodeTransport  = "transport"  // no answer: connection refused, timeout, reset
	CodeBadAnswer  = "bad_answer" // an answer the contract does not allow
	CodeOverloaded = "overloaded"
	CodeOutOfStock = "out_of_stock"
	// CodeLimitExceeded refuses a deal order past the deal's limit per
	// buyer: expected of a flash deal's burst.
	CodeLimitExceeded = "limit_exceeded"
)

// Outcome is the answer to one order's call. Code is empty on success.
type Outcome struct {
	Code string
	// ID and Total are set by Place on success: the server's order id and total (fen).
	ID    string
	Total int64
	// Detail describes a bad answer.
	Detail string
}

// Ledger is what the driver saw acknowledged, per SKU and in total: the
// audit compares the target's books with it.
type Ledger struct {
	// SKUs are the books per SKU index.
	SKUs []SKUBook
	// Uncertain is set when some call got no answer: its effect on the books
	// is unknown, so only conservation (not exact counts) can be checked.
	Uncertain atomic.Bool
	// Tally is filled at the end of the run.
	Tally *festival.Tally
}

// SKUBook is the driver's books on one SKU: one record, so that an order
// line's placement and payment touch one place in memory rather than an
// array each (the SKUs are hundreds of thousands, read at random: a cache
// miss per array).
type SKUBook struct {
	// Reserved and Sold are units in acknowledged pending orders and in
	// acknowledged paid orders.
	Reserved atomic.Int64
	Sold     atomic.Int64
	// Touched marks a SKU that some order named, so the audit reads only those.
	Touched atomic.Bool
}

// touch marks the SKU touched. It stores only when the mark is not set yet:
// the workers on other cores keep their copies of the mark's cache line,
// where a store per order line would take it from them every time.
func (b *SKUBook) touch() {
	if !b.Touched.Load() {
		b.Touched.Store(true)
	}
}

// reserve marks the SKUs of placed orders touched and books their units as
// reserved: book with every order still pending.
func (l *Ledger) reserve(orders []*festival.Order) { l.book(orders, nil, nil) }

// book books placed orders once their fates are known, each as what it
// ended: pending orders' units reserved, paid orders' sold, cancelled
// orders' neither; every SKU named is marked touched. As reserve, the
// marks' reads first, in a pass of nothing but reads (a cache miss each,
// over hundreds of thousands of SKUs), which the processor runs many at
// once, then the adds to the lines now in the cache: an atomic add waits
// for every load before it, so adds among the reads would take the misses
// one at a time.
func (l *Ledger) book(pending, paid, cancelled []*festival.Order) {
	for _, orders := range [...][]*festival.Order{pending, paid, cancelled} {
		for _, o := range orders {
			for _, it := range o.Lines() {
				l.SKUs[it.SKU].touch()
			}
		}
	}
	for _, o := range pending {
		for _, it := range o.Lines() {
			l.SKUs[it.SKU].Reserved.Add(int64(it.Qty))
		}
	}
	for _, o := range paid {
		for _, it := range o.Lines() {
			l.SKUs[it.SKU].Sold.Add(int64(it.Qty))
		}
	}
}

// unreserve takes the units of cancelled orders, booked as reserved, off.
func (l *Ledger) unreserve(orders []*festival.Order) {
	for _, o := range orders {
		for _, it := range o.Lines() {
			l.SKUs[it.SKU].Reserved.Add(-int64(it.Qty))
		}
	}
}

// sell moves the units of paid orders from reserved to sold.
func (l *Ledger) sell(orders []*festival.Order) {
	for _, o := range orders {
		for _, it := range o.Lines() {
			b := &l.SKUs[it.SKU]
			b.Reserved.Add(-int64(it.Qty))
			b.Sold.Add(int64(it.Qty))
		}
	}
}

func newLedger(m *festival.Model) *Ledger {
	return &Ledger{SKUs: make([]SKUBook, len(m.SKUs))}
}
