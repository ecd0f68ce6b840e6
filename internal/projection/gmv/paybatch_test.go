package gmv

import (
	"errors"
	"testing"

	"pgregory.net/rapid"

	"github.com/fest-platform/fest/internal/engine"
)

// TestQueuedPaymentsAsApplied checks that the payments a record queues
// leave the state as if each was applied as it came: the same random
// stream applied in records of up to 200 events (payments queued, and
// applied at the record's end or before what does not commute with them)
// and one event a record agree, as does a stream whose events come within
// the same second.
func TestQueuedPaymentsAsApplied(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		now := testStart
		cfg := testConfig(&now)
		whole, single := mustNew(t, cfg), mustNew(t, cfg)
		var s stream
		s.at = testStart.UnixNano()
		sameSecond := rapid.Bool().Draw(t, "same second")
		pos := uint64(0)
		for range rapid.IntRange(1, 10).Draw(t, "records") {
			n := rapid.IntRange(1, 200).Draw(t, "events")
			var at int64
			for i := range n {
				ev := s.next(t)
				if sameSecond {
					ev.At = s.at - s.at%1e9
				}
				pos++
				ev.Position, at = pos, ev.At
				ev.Last = i == n-1
				if err := whole.Apply(&ev); err != nil {
					t.Fatalf("apply %v: %v", ev.Kind, err)
				}
				one := ev
				one.Last = true
				if err := single.Apply(&one); err != nil {
					t.Fatalf("apply %v alone: %v", ev.Kind, err)
				}
				single.Commit(pos, ev.At)
			}
			whole.Commit(pos, at)
			now = testStart.Add(1 << 40)
			checkSame(t, whole, single)
		}
	})
}

// TestQueuedPaymentsInJournalOrder checks the orders of one record whose
// payment is queued: placed again after it (taken by the payment first, as
// before), and paid twice (refused at the second payment, as before).
func TestQueuedPaymentsInJournalOrder(t *testing.T) {
	now := testStart
	p := mustNew(t, testConfig(&now))
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
	at := testStart.UnixNano()
	place := func(id uint64) *engine.Event {
		return &engine.Event{Kind: engine.EventOrderPlaced, At: at, OrderID: engine.OrderID(id), MerchantID: "m", Channel: "app", Items: []engine.Item{{SKUID: "sku-a", Quantity: 1, UnitPrice: 100, Amount: 100}}, Total: 100}
	}
	pay := func(id uint64) *engine.Event {
		return &engine.Event{Kind: engine.EventOrderPaid, At: at, OrderID: engine.OrderID(id)}
	}
	for _, ev := range []*engine.Event{place(1), place(2), pay(1), place(1), pay(2)} {
		if err := p.Apply(ev); err != nil {
			t.Fatalf("apply %v of order %v: %v", ev.Kind, ev.OrderID, err)
		}
	}
	if err := p.Apply(pay(2)); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("second payment of order 2 in its record: %v, want ErrInconsistent", err)
	}
	p.Abort()

	p = mustNew(t, testConfig(&now))
	applyRecord(t, p, catalogEvents([]testBrand{{id: "a", country: "CN", category: "c"}}), 1)
	applyRecord(t, p, []engine.Event{*place(1), *place(2), *pay(1), *place(1), *pay(2)}, at)
	tot, err := p.Totals()
	if err != nil {
		t.Fatal(err)
	}
	if tot.GMV != 200 || tot.OrdersPaid != 2 || tot.OrdersPending != 1 {
		t.Fatalf("totals %+v, want GMV 200 of 2 paid orders and 1 pending", tot)
	}
}
