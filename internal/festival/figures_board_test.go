package festival

import (
	"strings"
	"testing"
	"time"
)

// TestPeakSecondOnTheBoard: on the rehearsal clock the server's busiest
// second tells both peak figures, under the generator's rules; on its own
// clock it tells neither.
func TestPeakSecondOnTheBoard(t *testing.T) {
	m := model(t)
	plan := m.Plan()
	peakAt := FestivalStart.Add(PeakSecond * time.Second)
	peak := int64(plan.PlacedBySecond[PeakSecond])
	const ordersName, busiestName = "orders in the peak second (11-11 00:00:26)", "busiest second is the peak second"
	tests := []struct {
		name             string
		change           func(b *Board)
		ordersOK, isPeak bool
		told             bool   // the server has values
		text             string // in the server's text of the orders figure
	}{
		{name: "the plan on the festival clock", ordersOK: true, isPeak: true, told: true},
		{name: "a tenth of the peak lost", change: func(b *Board) { b.PeakOrders = peak * 9 / 10 }, isPeak: true, told: true},
		{name: "the busiest second a second late", change: func(b *Board) { b.PeakAt = peakAt.Add(time.Second) }, told: true, text: "not the peak second"},
		{name: "the server's own clock", change: func(b *Board) { b.FestivalClock = false }, text: "n/a (server clock)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := boardOf(m, plan)
			b.FestivalClock, b.PeakAt, b.PeakOrders = true, peakAt, peak
			if tc.change != nil {
				tc.change(b)
			}
			var orders, busiest *Figure
			figs := m.FiguresWithBoard(plan, b)
			for i := range figs {
				switch figs[i].Name {
				case ordersName:
					orders = &figs[i]
				case busiestName:
					busiest = &figs[i]
				}
			}
			if orders == nil || busiest == nil {
				t.Fatal("no peak figures")
			}
			if orders.ServerOK != tc.ordersOK || !strings.Contains(orders.ServerText, tc.text) {
				t.Errorf("orders in the peak second: server ok %t (%v %q), want %t", orders.ServerOK, orders.Server, orders.ServerText, tc.ordersOK)
			}
			if (busiest.Server != nil) != tc.told || busiest.ServerOK != tc.isPeak {
				t.Errorf("busiest second: server %v ok %t, want told %t ok %t", busiest.Server, busiest.ServerOK, tc.told, tc.isPeak)
			}
		})
	}
}
