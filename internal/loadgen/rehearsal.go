package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/festival"
	"github.com/fest-platform/fest/wire"
)

// A rehearsal is a run against a server that an earlier run (or anyone)
// left with orders and stock: the import must not give back the stock the
// earlier run sold, and the audit must count this run's figures beside what
// the server held before. serverBefore is what the target read before the
// run for that.

// skuFigures are a SKU's stock figures as the server reported them.
type skuFigures struct {
	available, reserved, sold int64
	// inDeals is the units of the SKU carved into the model's deals that
	// an earlier run put (and left running): stock the SKU's available
	// figure excludes.
	inDeals int64
}

// serverBefore is what the server held before the run: its GMV and parcel
// counts, and the figures of each model SKU that existed already (nil for
// a SKU this run's import created, and for all of them on a fresh server).
type serverBefore struct {
	gmv  int64
	paid int64
	// clock is GET /v1/gmv's clock ("wall", "rehearsal"; empty from a
	// server that predates it).
	clock string
	// channelGMV is each channel's GMV on the leaderboard, and dealLeft the
	// units left in the model's deals by SKU index, as earlier runs left
	// them (empty on a fresh server).
	channelGMV map[string]int64
	dealLeft   map[int32]int64
	parcels    ParcelStats
	skus       []*skuFigures // by model SKU index; nil slice: none existed
	existed    int
}

// sku is the figures of model SKU i before the run, or nil.
func (b *serverBefore) sku(i int) *skuFigures {
	if b.skus == nil {
		return nil
	}
	return b.skus[i]
}

// gmvNote is the audit's note on an earlier run's GMV, "" without one.
func (b *serverBefore) gmvNote() string {
	if b.gmv == 0 {
		return ""
	}
	return fmt.Sprintf(", beside %d fen (%d orders) the server held before the run", b.gmv, b.paid)
}

// readTotals reads the server's GMV and parcel counts before the run. The
// GMV projection may still be counting an earlier run's last payments; the
// earlier run's audit waited for it, so a lag here is a run started while
// another still pays, which no audit can tell apart.
func (b *serverBefore) readTotals(ctx context.Context, c *client.Client) error {
	g, err := c.GMV(ctx)
	if err != nil {
		return fmt.Errorf("read the gmv before the run: %w", err)
	}
	b.gmv, b.paid, b.clock = g.GMV.Amount, g.OrdersPaid, g.Clock
	ls, err := c.LogisticsStats(ctx)
	var ae *client.Error
	switch {
	case errors.As(err, &ae) && ae.Status == 404:
		// A server without logistics: no parcels before, none after.
	case err != nil:
		return fmt.Errorf("read the logistics stats before the run: %w", err)
	default:
		b.parcels = ParcelStats{Parcels: ls.Parcels, Delivered: ls.ByStatus["delivered"], Returned: ls.ByStatus["returned"]}
	}
	return nil
}

// readLive reads what earlier runs left of the model's livestream: the
// channels' GMV and the units left in the model's deals (a rehearsal keeps
// the deals it finds, whose terms are fixed once put).
func (b *serverBefore) readLive(ctx context.Context, c *client.Client, m *festival.Model) error {
	b.channelGMV, b.dealLeft = map[string]int64{}, map[int32]int64{}
	if len(m.Channels) == 0 {
		return nil
	}
	board, err := c.Leaderboard(ctx, 1000)
	var ae *client.Error
	switch {
	case errors.As(err, &ae) && ae.Status == 404:
		return nil // a server without livestream channels
	case err != nil:
		return fmt.Errorf("read the leaderboard before the run: %w", err)
	}
	for _, ch := range board.Channels {
		b.channelGMV[ch.ID] = ch.GMV
	}
	if b.dealLeft, err = dealsLeft(ctx, c, m, true); err != nil {
		return fmt.Errorf("read the deals before the run: %w", err)
	}
	return nil
}

// importSKUs imports the model's SKUs with their stock. On a server that
// holds some of them already the import refuses a line (a stock without
// stock_expected on an existing SKU, the contract's rule that keeps sold
// units sold); the target then reads every model SKU (the census), keeps
// the figures of those that exist for the audit, and imports only the
// others: an existing SKU keeps the stock it has.
func (t *HTTPTarget) importSKUs(ctx context.Context, m *festival.Model, say func(string)) error {
	all := func(l *client.CatalogLines, i int) { skuLine(l, m, &m.SKUs[i]) }
	err := t.importKind(ctx, "sku", len(m.SKUs), all)
	var ae *client.Error
	if err == nil || !errors.As(err, &ae) || ae.Code != wire.CodeInvalidArgument || ae.Field != "stock_expected" {
		return err
	}
	if say != nil {
		say("the server holds skus of the model already (a rehearsal): reading their stock, importing only the others")
	}
	start := time.Now()
	if err := t.census(ctx, m); err != nil {
		return err
	}
	missing := make([]int, 0, len(m.SKUs)-t.before.existed)
	for i := range m.SKUs {
		if t.before.skus[i] == nil {
			missing = append(missing, i)
		}
	}
	if say != nil {
		say(fmt.Sprintf("%s skus exist (kept as they are), %s to import; read in %.1fs",
			group(int64(t.before.existed)), group(int64(len(missing))), time.Since(start).Seconds()))
	}
	some := func(l *client.CatalogLines, k int) { skuLine(l, m, &m.SKUs[missing[k]]) }
	return t.importKind(ctx, "sku", len(missing), some)
}

// censusParallel is the SKU reads in flight during the census.
const censusParallel = 32

// census reads every model SKU into t.before.skus: figures for those that
// exist, nil for those the server does not have.
func (t *HTTPTarget) census(ctx context.Context, m *festival.Model) error {
	skus := make([]*skuFigures, len(m.SKUs))
	var next atomic.Int64
	var existed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range censusParallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(skus) || ctx.Err() != nil {
					return
				}
				s, err := t.admin.GetSKU(ctx, m.SKUs[i].ID)
				var ae *client.Error
				switch {
				case errors.As(err, &ae) && ae.Code == wire.CodeNotFound:
					continue
				case err != nil:
					errOnce.Do(func() { firstErr = fmt.Errorf("read sku %s before the run: %w", m.SKUs[i].ID, err) })
					next.Store(int64(len(skus)))
					return
				}
				skus[i] = &skuFigures{available: s.StockAvailable, reserved: s.StockReserved, sold: s.Sold, inDeals: t.before.dealLeft[int32(i)]}
				existed.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.before.skus, t.before.existed = skus, int(existed.Load())
	return nil
}
