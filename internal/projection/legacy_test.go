package projection

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// legacySnapshot is a projection snapshot written before snapshots were
// incremental (order store FESTOS01, GMV FESTGM01), by the previous
// runner fed with newFeeder(r).place(t, 1500), at position 4000.
const (
	legacySnapshot       = "testdata/legacy-snap-00000000000000004000.bin"
	legacySnapshotPos    = 4000
	legacySnapshotOrders = 1500
)

// sameProjections checks that b's projections answer as a's do for every
// order a feeder placed.
func sameProjections(t *testing.T, a, b *Runner, f *feeder) {
	t.Helper()
	for p := range f.seqs {
		for seq := uint64(1); seq <= f.seqs[p]; seq++ {
			id := engine.OrderID(uint64(p)<<52 | seq)
			oa, errA := a.store.Get(id)
			ob, errB := b.store.Get(id)
			if errA != nil || errB != nil || fmt.Sprint(oa) != fmt.Sprint(ob) {
				t.Fatalf("order %v: %+v (%v) then %+v (%v)", id, oa, errA, ob, errB)
			}
			la, _, _ := a.store.ListByBuyer(oa.BuyerID, 1000, "")
			lb, _, _ := b.store.ListByBuyer(oa.BuyerID, 1000, "")
			if fmt.Sprint(la) != fmt.Sprint(lb) {
				t.Fatalf("history of %s: %d orders then %d", oa.BuyerID, len(la), len(lb))
			}
		}
	}
	ga, gb := a.gmv.GMV(), b.gmv.GMV()
	if ga.Amount != gb.Amount || ga.OrdersPlaced != gb.OrdersPlaced || ga.OrdersPaid != gb.OrdersPaid {
		t.Fatalf("gmv %+v then %+v", ga, gb)
	}
}

// TestLoadLegacySnapshot checks that a data directory from before
// incremental snapshots keeps its projections: the old snapshot loads into
// the same state the orders build, and the next snapshot, in the new
// layout, loads too.
func TestLoadLegacySnapshot(t *testing.T) {
	want, f := newRunner(t, t.TempDir(), nil)
	f.place(t, legacySnapshotOrders)
	if f.pos*1000 != legacySnapshotPos {
		t.Fatalf("the feeder ends at %d, the legacy snapshot at %d: the fixture no longer matches", f.pos*1000, legacySnapshotPos)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(legacySnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(legacySnapshot)[len("legacy-"):]), data, 0o600); err != nil {
		t.Fatal(err)
	}
	r, _ := newRunner(t, dir, nil)
	pos, err := r.Load()
	if err != nil || pos != legacySnapshotPos {
		t.Fatalf("load of the legacy snapshot: at %d: %v", pos, err)
	}
	sameProjections(t, want, r, f)

	// Both go on; the next snapshot is in the new layout and loads.
	g := *f
	g.r = r
	f.place(t, 700)
	g.place(t, 700)
	r.snapshot(g.pos * 1000)
	l, _ := newRunner(t, dir, nil)
	if pos, err := l.Load(); err != nil || pos != g.pos*1000 {
		t.Fatalf("load after the legacy one: at %d: %v", pos, err)
	}
	sameProjections(t, want, l, f)
}
