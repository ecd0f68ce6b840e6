package baseline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fest-platform/fest/internal/festival"
)

// PostgresConfig is a PostgreSQL baseline. Start from DefaultPostgresConfig.
type PostgresConfig struct {
	// URL is the connection string, e.g. postgres://postgres@127.0.0.1:55432/postgres.
	URL string
	// Conns is the pool size: one connection per concurrent client.
	Conns int32
	// ConnectTimeout bounds the first connection.
	ConnectTimeout time.Duration
}

// DefaultPostgresConfig is a pool of Clients connections.
func DefaultPostgresConfig(url string) PostgresConfig {
	return PostgresConfig{URL: url, Conns: Clients, ConnectTimeout: 10 * time.Second}
}

// Validate reports the first thing wrong with c.
func (c PostgresConfig) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("no postgres url")
	case c.Conns < 1 || c.Conns > 1000:
		return fmt.Errorf("postgres conns %d out of range [1, 1000]", c.Conns)
	case c.ConnectTimeout <= 0:
		return errors.New("postgres connect timeout must be positive")
	}
	return nil
}

// Postgres is the one-transaction-per-order design.
type Postgres struct {
	pool *pgxpool.Pool
}

// OpenPostgres connects and checks that synchronous_commit is on: the
// baseline's claim (durable on acknowledgement, like fest) depends on it.
func OpenPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres config: %w", err)
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	pc.MaxConns = cfg.Conns
	pc.MinConns = cfg.Conns
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(cctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	var sc string
	if err := pool.QueryRow(cctx, "SHOW synchronous_commit").Scan(&sc); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect postgres %s: %w", pc.ConnConfig.Host, err)
	}
	if sc != "on" {
		pool.Close()
		return nil, fmt.Errorf("postgres synchronous_commit is %q: the baseline needs it on", sc)
	}
	return &Postgres{pool: pool}, nil
}

// Name is "postgres".
func (p *Postgres) Name() string { return "postgres" }

// Close closes the pool.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

const pgSchema = `
DROP TABLE IF EXISTS fest_order_items, fest_orders, fest_skus;
CREATE TABLE fest_skus (
	id    text PRIMARY KEY,
	price bigint NOT NULL,
	stock bigint NOT NULL CHECK (stock >= 0)
);
CREATE TABLE fest_orders (
	id          bigserial PRIMARY KEY,
	buyer_id    text NOT NULL,
	merchant_id text NOT NULL,
	channel     text NOT NULL,
	region      text NOT NULL,
	total       bigint NOT NULL,
	status      text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	paid_at     timestamptz
);
CREATE TABLE fest_order_items (
	order_id   bigint NOT NULL REFERENCES fest_orders (id),
	sku_id     text NOT NULL REFERENCES fest_skus (id),
	quantity   int NOT NULL,
	unit_price bigint NOT NULL,
	amount     bigint NOT NULL,
	PRIMARY KEY (order_id, sku_id)
);`

// Load recreates the tables and copies the SKUs in.
func (p *Postgres) Load(ctx context.Context, m *festival.Model) error {
	if _, err := p.pool.Exec(ctx, pgSchema); err != nil {
		return fmt.Errorf("create postgres schema: %w", err)
	}
	rows := make([][]any, len(m.SKUs))
	for i := range m.SKUs {
		s := &m.SKUs[i]
		rows[i] = []any{s.ID, s.Price, s.Stock}
	}
	if _, err := p.pool.CopyFrom(ctx, pgx.Identifier{"fest_skus"}, []string{"id", "price", "stock"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy skus into postgres: %w", err)
	}
	if _, err := p.pool.Exec(ctx, "ANALYZE fest_skus"); err != nil {
		return fmt.Errorf("analyze skus: %w", err)
	}
	return nil
}

// Place runs the order's transaction. Lines are updated in SKU-id order, as
// careful services do, so that two orders never deadlock on each other.
func (p *Postgres) Place(ctx context.Context, m *festival.Model, o *festival.Order) (string, int64, error) {
	lines := slices.Clone(o.Lines())
	slices.SortFunc(lines, func(a, b festival.Item) int { return int(a.SKU - b.SKU) })
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	prices := make([]int64, len(lines))
	var total int64
	for i, it := range lines {
		err := tx.QueryRow(ctx, `UPDATE fest_skus SET stock = stock - $1 WHERE id = $2 AND stock >= $1 RETURNING price`,
			int64(it.Qty), m.SKUs[it.SKU].ID).Scan(&prices[i])
		if errors.Is(err, pgx.ErrNoRows) {
			return "", 0, ErrOutOfStock
		}
		if err != nil {
			return "", 0, fmt.Errorf("reserve stock: %w", err)
		}
		total += prices[i] * int64(it.Qty)
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO fest_orders (buyer_id, merchant_id, channel, region, total, status)
		VALUES ($1, $2, $3, $4, $5, 'pending_payment') RETURNING id`,
		festival.BuyerID(o.Buyer), m.Merchants[o.Merchant].ID, m.ChannelName(o), m.BuyerRegion(o.Buyer), total).Scan(&id)
	if err != nil {
		return "", 0, fmt.Errorf("insert order: %w", err)
	}
	for i, it := range lines {
		if _, err := tx.Exec(ctx, `INSERT INTO fest_order_items (order_id, sku_id, quantity, unit_price, amount) VALUES ($1, $2, $3, $4, $5)`,
			id, m.SKUs[it.SKU].ID, it.Qty, prices[i], prices[i]*int64(it.Qty)); err != nil {
			return "", 0, fmt.Errorf("insert item: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", 0, fmt.Errorf("commit order: %w", err)
	}
	return strconv.FormatInt(id, 10), total, nil
}

// Pay marks the order paid in one statement.
func (p *Postgres) Pay(ctx context.Context, id string, amount int64) error {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return ErrNotFound
	}
	tag, err := p.pool.Exec(ctx, `UPDATE fest_orders SET status = 'paid', paid_at = now()
		WHERE id = $1 AND status = 'pending_payment' AND total = $2`, n, amount)
	if err != nil {
		return fmt.Errorf("pay order: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Tell the reasons apart, off the hot path.
	var status string
	var total int64
	err = p.pool.QueryRow(ctx, `SELECT status, total FROM fest_orders WHERE id = $1`, n).Scan(&status, &total)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("read order: %w", err)
	case status == "paid":
		return nil // already paid: idempotent, as the API is
	case status == "pending_payment" && total != amount:
		return ErrPaymentMismatch
	}
	return ErrInvalidState
}

// Cancel cancels a pending order and returns its stock, in one transaction.
func (p *Postgres) Cancel(ctx context.Context, id string) error {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return ErrNotFound
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var status string
	if err := tx.QueryRow(ctx, `SELECT status FROM fest_orders WHERE id = $1 FOR UPDATE`, n).Scan(&status); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		return fmt.Errorf("lock order: %w", err)
	}
	switch status {
	case "cancelled":
		return nil
	case "pending_payment":
	default:
		return ErrInvalidState
	}
	if _, err := tx.Exec(ctx, `UPDATE fest_orders SET status = 'cancelled' WHERE id = $1`, n); err != nil {
		return fmt.Errorf("cancel order: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE fest_skus s SET stock = s.stock + i.quantity FROM fest_order_items i
		WHERE i.order_id = $1 AND s.id = i.sku_id`, n); err != nil {
		return fmt.Errorf("release stock: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit cancel: %w", err)
	}
	return nil
}

// Stock reads every SKU's stock.
func (p *Postgres) Stock(ctx context.Context, m *festival.Model) ([]int64, error) {
	index := make(map[string]int, len(m.SKUs))
	for i := range m.SKUs {
		index[m.SKUs[i].ID] = i
	}
	out := make([]int64, len(m.SKUs))
	for i := range out {
		out[i] = -1
	}
	rows, err := p.pool.Query(ctx, `SELECT id, stock FROM fest_skus`)
	if err != nil {
		return nil, fmt.Errorf("read stock: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var stock int64
		if err := rows.Scan(&id, &stock); err != nil {
			return nil, fmt.Errorf("read stock: %w", err)
		}
		if i, ok := index[id]; ok {
			out[i] = stock
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stock: %w", err)
	}
	return out, nil
}

// Paid sums the paid orders.
func (p *Postgres) Paid(ctx context.Context) (int64, int64, error) {
	var gmv, n int64
	if err := p.pool.QueryRow(ctx, `SELECT coalesce(sum(total), 0)::bigint, count(*) FROM fest_orders WHERE status = 'paid'`).Scan(&gmv, &n); err != nil {
		return 0, 0, fmt.Errorf("sum paid orders: %w", err)
	}
	return gmv, n, nil
}
