package orders

import (
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// BenchmarkStoreApplyPaid measures the store's cost per order placed and
// paid, the payment 20,000 orders after the placement (a few records
// later, as at the peak), over 64 partitions and 100,000 buyers.
func BenchmarkStoreApplyPaid(b *testing.B) {
	const lag = 20_000
	s, _ := Open(Config{})
	defer s.Close()
	items := []engine.Item{{SKUID: "sku-12345", Quantity: 1, UnitPrice: 29900, Amount: 29900}, {SKUID: "sku-777", Quantity: 2, UnitPrice: 1000, Amount: 2000}}
	place := engine.Event{Kind: engine.EventOrderPlaced, MerchantID: "m-1", Channel: "app", Region: "CN-ZJ", Items: items, Total: 31900, At: 1, PayBy: 2}
	pay := engine.Event{Kind: engine.EventOrderPaid, At: 3}
	id := func(i int) engine.OrderID { return engine.OrderID(uint64(i%64)<<52 | uint64(i/64+1)) }
	b.ReportAllocs()
	cpu := processCPUNanos()
	events := 0
	apply := func(ev *engine.Event) {
		events++
		ev.Position = uint64(events/1000 + 1)
		ev.Last = events%1000 == 0 // records hold about a thousand events
		if err := s.add(ev); err != nil {
			b.Fatal(err)
		}
		if ev.Last {
			s.Commit(ev.Position, ev.At)
		}
	}
	for i := 0; i < b.N; i++ {
		place.OrderID, place.BuyerID = id(i), buyers[i%len(buyers)]
		apply(&place)
		if i >= lag {
			pay.OrderID = id(i - lag)
			apply(&pay)
		}
	}
	if s.locked {
		s.Commit(uint64(events/1000+1), 3) // the last record, cut short
	}
	b.ReportMetric(float64(processCPUNanos()-cpu)/float64(b.N), "cpu-ns/op")
}
