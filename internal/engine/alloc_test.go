package engine

import (
	"testing"
)

// TestWorkerBatchAllocs checks that the worker path (routing, applying,
// record bounds, journal append, replies) allocates nothing per order: a
// round of 128 orders placed and paid costs a few allocations per batch
// (its done channel, the journal's bookkeeping), never one per order.
func TestWorkerBatchAllocs(t *testing.T) {
	const orders = 128
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 4, Workers: 1, NoSync: true, SnapshotEveryBytes: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	testCatalog(t, e, 1, 4, 1_000_000_000)
	place, pay := NewBatch(orders), NewBatch(orders)
	items := make([][]Item, orders)
	for i := range items {
		items[i] = make([]Item, 2)
		place.Add(Command{Kind: KindPlaceOrder})
		pay.Add(Command{Kind: KindPay})
	}
	round := func() {
		for i := range place.Requests {
			items[i][0] = Item{SKUID: "s0-0", Quantity: 1}
			items[i][1] = Item{SKUID: "s0-1", Quantity: 1}
			place.Requests[i].Command.Order = Order{BuyerID: "buyer", Channel: "app", Items: items[i]}
		}
		e.Submit(place)
		place.Wait()
		for i := range pay.Requests {
			r := &place.Requests[i].Result
			if !r.OK() {
				t.Fatal(r.Err())
			}
			pay.Requests[i].Command.OrderID, pay.Requests[i].Command.Amount = r.OrderID, r.Total
		}
		e.Submit(pay)
		pay.Wait()
		for i := range pay.Requests {
			if r := &pay.Requests[i].Result; !r.OK() {
				t.Fatal(r.Err())
			}
		}
	}
	for range 20 { // grow the state's slices and free lists first
		round()
	}
	const perRoundMax = 16 // two batches' fixed costs; one per order would be 256
	got := testing.AllocsPerRun(50, round)
	t.Logf("%.1f allocations per round", got)
	if got > perRoundMax {
		t.Fatalf("%.1f allocations per round of %d orders placed and paid, want at most %d", got, orders, perRoundMax)
	}
}
