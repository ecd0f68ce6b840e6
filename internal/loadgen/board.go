package loadgen

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/festival"
	"github.com/fest-platform/fest/wire"
)

// BoardReader is a Target whose own figures of the run can be read (fest's
// GMV endpoints), for the festival report to show beside the generator's.
type BoardReader interface {
	Board(ctx context.Context) (*festival.Board, error)
}

// boardRowsMax is the most rows a breakdown answers (its top's bound).
const boardRowsMax = wire.ListTopMax

// Board reads the server's figures from GET /v1/gmv and its breakdowns,
// through the Go client. Call it after Audit, which waits for the GMV
// projection to count the last payments.
func (t *HTTPTarget) Board(ctx context.Context) (*festival.Board, error) {
	c := t.store
	g, err := c.GMV(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the board: %w", err)
	}
	b := &festival.Board{
		GMVFen: g.GMV.Amount, GMVUSDCents: g.GMVUSD.Amount, PaidOrders: g.OrdersPaid,
		Brands: g.Brands.Total, ForeignBrands: g.Brands.Foreign, FirstTimeBrands: g.Brands.FirstTime,
		EmergingBeatLastYear: g.Brands.EmergingBeatLastYear, EmergingGrew1000: g.Brands.EmergingGrew1000,
		EmergingTopCategory: g.Brands.EmergingTopCategory,
		Factories:           g.Merchants.Factories, ExportMerchants: g.Merchants.Factories + g.Merchants.Traders,
		Industries: g.Merchants.Industries, Complete: true,
	}
	if g.Growth != nil {
		b.Growth = *g.Growth
	}
	// On the rehearsal clock the server's seconds are the festival's.
	b.FestivalClock = t.cfg.RehearsalClock
	if g.PeakSecond != nil {
		b.PeakAt, b.PeakOrders = g.PeakSecond.At, g.PeakSecond.Orders
	}
	rows := func(by string) (map[string]int64, []client.BreakdownRow, error) {
		bd, err := c.GMVBreakdown(ctx, by, boardRowsMax)
		if err != nil {
			return nil, nil, fmt.Errorf("read the %s breakdown: %w", by, err)
		}
		if bd.Rest.Rows > 0 {
			b.Complete = false
		}
		m := make(map[string]int64, len(bd.Rows))
		for _, r := range bd.Rows {
			m[r.Key] = r.GMV
		}
		return m, bd.Rows, nil
	}
	if b.BrandGMV, _, err = rows("brand"); err != nil {
		return nil, err
	}
	if b.ChannelGMV, _, err = rows("channel"); err != nil {
		return nil, err
	}
	_, countries, err := rows("country")
	if err != nil {
		return nil, err
	}
	// The rows are largest first, the smaller key on a tie, as the
	// generator ranks them.
	for _, r := range countries {
		if r.Key != "CN" {
			b.CountryOrder = append(b.CountryOrder, r.Key)
		}
	}
	if !slices.IsSortedFunc(countries, func(x, y client.BreakdownRow) int {
		return cmp.Or(cmp.Compare(y.GMV, x.GMV), strings.Compare(x.Key, y.Key))
	}) {
		return nil, fmt.Errorf("the country breakdown is not largest first")
	}
	return b, nil
}
