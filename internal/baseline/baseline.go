// Package baseline holds the two designs fest is measured against, built the
// way storefront services typically build them, and called once per order:
//
//   - Postgres: one transaction per order — a conditional UPDATE of each
//     SKU's stock (UPDATE ... SET stock = stock - q WHERE id = $ AND stock >= q),
//     an INSERT of the order and of its items, synchronous_commit on.
//   - Redis: a Lua script (EVALSHA) that checks and decrements every line's
//     stock and records the order, with the AOF fsynced on every write
//     (appendfsync always) or once a second (everysec).
//
// Both load the festival model's SKUs, place, pay and cancel orders, and
// answer the audit's questions (stock left per SKU, paid GMV). Launch starts
// throwaway servers on loopback for `fest load --compare`.
package baseline

import (
	"context"
	"errors"

	"github.com/fest-platform/fest/internal/festival"
)

// Errors of Place, Pay and Cancel that are answers, not failures.
var (
	ErrOutOfStock      = errors.New("out of stock")
	ErrInvalidState    = errors.New("invalid state")
	ErrPaymentMismatch = errors.New("payment mismatch")
	ErrNotFound        = errors.New("not found")
)

// Store is one baseline design. Its methods are safe for concurrent use: the
// driver calls them from its 64 clients.
type Store interface {
	// Name is the store's name in reports.
	Name() string
	// Load empties the store and loads the model's SKUs (price, stock).
	Load(ctx context.Context, m *festival.Model) error
	// Place places one order: all its lines' stock or nothing.
	Place(ctx context.Context, m *festival.Model, o *festival.Order) (id string, total int64, err error)
	// Pay marks a pending order paid; amount must equal its total.
	Pay(ctx context.Context, id string, amount int64) error
	// Cancel cancels a pending order and gives its stock back.
	Cancel(ctx context.Context, id string) error
	// Stock returns every SKU's stock left, by SKU index of m.
	Stock(ctx context.Context, m *festival.Model) ([]int64, error)
	// Paid returns the paid orders' total (fen) and count.
	Paid(ctx context.Context) (gmv, orders int64, err error)
	// Close releases the connections.
	Close() error
}

// Clients is how many concurrent clients call a baseline: as many as a
// fleet of storefront service instances would hold open.
const Clients = 64
