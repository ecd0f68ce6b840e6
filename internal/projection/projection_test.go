package projection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
	gmvp "github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/orders"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type stack struct {
	eng   *engine.Engine
	store *orders.Store
	gmv   *gmvp.Projection
	proj  *testRunner
}

// open starts an engine and its projections on dir, as fest serve does,
// with snapshots every few KiB of journal.
func open(t *testing.T, dir string) *stack {
	t.Helper()
	s := &stack{}
	var err error
	s.store, _ = orders.Open(orders.Config{})
	s.gmv, _ = gmvp.New(gmvp.Config{})
	s.proj, err = newTR(projection.Config{Dir: filepath.Join(dir, "projections"), SnapshotEveryBytes: 4 << 10, Logger: quiet}, s.store, s.gmv)
	if err != nil {
		t.Fatal(err)
	}
	s.eng, err = engine.Open(engine.Config{Dir: dir, Partitions: 4, NoSync: true, SnapshotEveryBytes: 8 << 10, SegmentBytesMax: 16 << 10, RetainFrom: s.proj.Retain, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s.proj.Start(s.eng)
	return s
}

// must runs c and fails the test unless it succeeds.
func (s *stack) must(t *testing.T, c engine.Command) engine.Result {
	t.Helper()
	r := s.eng.Do(context.Background(), c)
	if !r.OK() {
		t.Fatalf("%v: %v", c.Kind, r.Err())
	}
	return r
}

// catalog creates the one brand, merchant and SKU the tests order from.
func (s *stack) catalog(t *testing.T) {
	t.Helper()
	s.must(t, engine.Command{Kind: engine.KindUpsertBrand, Brand: &engine.Brand{ID: "b"}})
	s.must(t, engine.Command{Kind: engine.KindUpsertMerchant, Merchant: &engine.Merchant{ID: "m", Kind: engine.MerchantTrader}})
	s.must(t, engine.Command{Kind: engine.KindUpsertSKU, SKU: &engine.SKU{ID: "s", MerchantID: "m", BrandID: "b", Price: 100, Stock: 1_000_000}})
}

func (s *stack) wait(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.proj.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
}

func (s *stack) close(t *testing.T) {
	t.Helper()
	s.proj.Close()
	s.store.Close()
	if err := s.eng.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestartFromSnapshot places and pays orders, restarts, and checks the
// projections come back the same from their snapshot (with old journal
// segments deleted), then keep following new orders.
func TestRestartFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	must := func(c engine.Command) engine.Result { return s.must(t, c) }
	s.catalog(t)
	var ids []engine.OrderID
	var gmv int64
	for i := 0; i < 600; i++ {
		r := must(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: fmt.Sprintf("buyer-%d", i%7), Items: []engine.Item{{SKUID: "s", Quantity: int32(1 + i%5)}}}})
		ids = append(ids, r.OrderID)
		if i%2 == 0 {
			must(engine.Command{Kind: engine.KindPay, OrderID: r.OrderID, Amount: r.Total})
			gmv += r.Total
		}
		if i == 450 {
			// The engine keeps the journal back to the older of its two
			// snapshots (recovery may fall back to it): this one, past the
			// first segment, and the final one of Close are the two kept
			// however few ran in the background.
			if err := s.eng.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.wait(t)
	if s.proj.Retain() == 0 {
		t.Fatal("no projection snapshot was taken")
	}
	before, _, _ := s.store.ListByBuyer("buyer-3", 1000, "")
	s.close(t)
	entries, _ := filepath.Glob(filepath.Join(dir, "journal", "*.seg"))
	first, _ := filepath.Glob(filepath.Join(dir, "journal", "00000000000000000000.seg"))
	if len(first) != 0 {
		t.Fatalf("the first journal segment was kept (%d segments): the projections' snapshot should let it go", len(entries))
	}

	s = open(t, dir)
	defer s.close(t)
	s.wait(t)
	if g := gmvTotals(s.gmv); g.GMV != gmv || g.OrdersPlaced != 600 || g.OrdersPaid != 300 {
		t.Fatalf("gmv after restart %+v, want %d", g, gmv)
	}
	for i, id := range ids {
		o, err := s.store.Get(id)
		if err != nil {
			t.Fatalf("order %d after restart: %v", i, err)
		}
		want := engine.StatusPending
		if i%2 == 0 {
			want = engine.StatusPaid
		}
		if o.Status != want || o.BuyerID != fmt.Sprintf("buyer-%d", i%7) {
			t.Fatalf("order %d after restart: %+v", i, o)
		}
	}
	after, _, _ := s.store.ListByBuyer("buyer-3", 1000, "")
	if len(after) != len(before) || after[0].ID != before[0].ID {
		t.Fatalf("buyer history changed: %d orders then %d", len(before), len(after))
	}
	r := must(engine.Command{Kind: engine.KindPlaceOrder, Order: engine.Order{BuyerID: "buyer-3", Items: []engine.Item{{SKUID: "s", Quantity: 1}}}})
	s.wait(t)
	if o, err := s.store.Get(r.OrderID); err != nil || o.BuyerID != "buyer-3" {
		t.Fatalf("new order after restart: %+v %v", o, err)
	}
	if h, _, _ := s.store.ListByBuyer("buyer-3", 1, ""); len(h) != 1 || h[0].ID != r.OrderID {
		t.Fatalf("newest of buyer-3: %+v", h)
	}
}

// testRunner is a runner with the two read models fest serves, kept at hand.
type testRunner struct {
	*projection.Runner
	store *orders.Store
	gmv   *gmvp.Projection
}

func newTR(cfg projection.Config, store *orders.Store, gmv *gmvp.Projection) (*testRunner, error) {
	r, err := projection.New(cfg, store, gmv)
	if err != nil {
		return nil, err
	}
	return &testRunner{Runner: r, store: store, gmv: gmv}, nil
}

// gmvTotals are the GMV projection's totals (a stopped projection's are
// zero, which the tests then report).
func gmvTotals(p *gmvp.Projection) gmvp.Totals {
	t, _ := p.Totals()
	return t
}

// gmvApplied is the journal position the GMV projection reflects.
func gmvApplied(p *gmvp.Projection) uint64 {
	pos, _ := p.Position()
	return pos
}
