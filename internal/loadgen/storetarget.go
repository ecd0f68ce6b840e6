package loadgen

import (
	"context"
	"errors"
	"fmt"

	"github.com/fest-platform/fest/internal/baseline"
	"github.com/fest-platform/fest/internal/festival"
)

// StoreTarget drives a baseline store as its users do: baseline.Clients
// concurrent clients, each one order per call.
type StoreTarget struct {
	store baseline.Store
}

// NewStoreTarget wraps an opened baseline store.
func NewStoreTarget(s baseline.Store) *StoreTarget { return &StoreTarget{store: s} }

// Name is the store's name.
func (t *StoreTarget) Name() string { return t.store.Name() }

// Shape is one order per call, baseline.Clients calls in flight.
func (t *StoreTarget) Shape() (int, int) { return 1, baseline.Clients }

// Close closes the store.
func (t *StoreTarget) Close() error { return t.store.Close() }

// Prepare loads the SKUs.
func (t *StoreTarget) Prepare(ctx context.Context, m *festival.Model, say func(string)) error {
	if say != nil {
		say(fmt.Sprintf("loading %s skus into %s", group(int64(len(m.SKUs))), t.store.Name()))
	}
	return t.store.Load(ctx, m)
}

func storeCode(err error) (string, string) {
	switch {
	case err == nil:
		return "", ""
	case errors.Is(err, baseline.ErrOutOfStock):
		return CodeOutOfStock, ""
	case errors.Is(err, baseline.ErrInvalidState):
		return "invalid_state", ""
	case errors.Is(err, baseline.ErrPaymentMismatch):
		return "payment_mismatch", ""
	case errors.Is(err, baseline.ErrNotFound):
		return "not_found", ""
	}
	return CodeTransport, err.Error()
}

// Place places each order with one call.
func (t *StoreTarget) Place(ctx context.Context, m *festival.Model, orders []*festival.Order, out []Outcome) {
	for i, o := range orders {
		id, total, err := t.store.Place(ctx, m, o)
		code, detail := storeCode(err)
		out[i] = Outcome{Code: code, Detail: detail, ID: id, Total: total}
	}
}

// Pay pays each order with one call.
func (t *StoreTarget) Pay(ctx context.Context, ids []string, totals []int64, out []Outcome) {
	for i := range ids {
		code, detail := storeCode(t.store.Pay(ctx, ids[i], totals[i]))
		out[i] = Outcome{Code: code, Detail: detail}
	}
}

// Cancel cancels each order with one call.
func (t *StoreTarget) Cancel(ctx context.Context, ids []string, out []Outcome) {
	for i := range ids {
		code, detail := storeCode(t.store.Cancel(ctx, ids[i]))
		out[i] = Outcome{Code: code, Detail: detail}
	}
}

// Audit checks every SKU's stock left against the stock loaded less what
// the driver saw reserved and sold, and the paid GMV against the driver's.
// The baselines have no payment timeout, so nothing expires behind our back.
func (t *StoreTarget) Audit(ctx context.Context, m *festival.Model, l *Ledger) ([]string, error) {
	stock, err := t.store.Stock(ctx, m)
	if err != nil {
		return nil, err
	}
	var problems []string
	exact := !l.Uncertain.Load()
	for i, left := range stock {
		s := &m.SKUs[i]
		switch {
		case left < 0:
			problems = append(problems, fmt.Sprintf("sku %s: missing or negative stock %d", s.ID, left))
		case exact && left != s.Stock-l.SKUs[i].Reserved.Load()-l.SKUs[i].Sold.Load():
			problems = append(problems, fmt.Sprintf("sku %s: stock left %d, want %d - %d reserved - %d sold", s.ID, left, s.Stock, l.SKUs[i].Reserved.Load(), l.SKUs[i].Sold.Load()))
		case left > s.Stock:
			problems = append(problems, fmt.Sprintf("sku %s: stock left %d above the %d loaded", s.ID, left, s.Stock))
		}
		if len(problems) >= maxProblemsListed {
			problems = append(problems, "more problems not listed")
			break
		}
	}
	gmv, n, err := t.store.Paid(ctx)
	if err != nil {
		return problems, err
	}
	if gmv != l.Tally.GMV || (exact && n != l.Tally.PaidOrders) {
		problems = append(problems, fmt.Sprintf("gmv: %s has %d fen in %d paid orders, driver saw %d fen in %d", t.store.Name(), gmv, n, l.Tally.GMV, l.Tally.PaidOrders))
	}
	return problems, nil
}
