package engine

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// The look-ahead answers every line it looked up as lookup does (known,
// unknown and over-long ids), leaves out what is no order or does not fit,
// and routing with its answers refuses and accepts exactly as without.
func TestLookAheadAgreesWithLookup(t *testing.T) {
	c, ids := stageCatalog()
	rng := rand.New(rand.NewPCG(7, 7))
	id := func() string {
		switch rng.IntN(10) {
		case 0:
			return "unknown-" + strconv.Itoa(rng.IntN(100))
		case 1:
			return string(make([]byte, idLengthMax+1))
		}
		m := ids[rng.IntN(len(ids))]
		return m[rng.IntN(len(m))]
	}
	for round := range 2000 {
		reqs := make([]Request, 1+rng.IntN(lookAheadGroup))
		for k := range reqs {
			if rng.IntN(5) == 0 {
				reqs[k].Command = Command{Kind: KindPay, OrderID: newOrderID(0, 1)}
				continue
			}
			// Lines from none to past the look-ahead's room, most of them
			// one merchant's, some of two.
			items := make([]Item, rng.IntN(lookAheadLines/2))
			m := ids[rng.IntN(len(ids))]
			for i := range items {
				items[i] = Item{SKUID: m[rng.IntN(len(m))], Quantity: 1}
				if rng.IntN(8) == 0 {
					items[i].SKUID = id()
				}
			}
			reqs[k].Command = Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: items}}
		}
		var la lookAhead
		c.dir.lookAhead(reqs, &la)
		lines := 0 // looked up so far in the group
		for k := range reqs {
			cmd := &reqs[k].Command
			looked := la.lines(k, len(cmd.Order.Items))
			tooLong := false
			for _, it := range cmd.Order.Items {
				tooLong = tooLong || len(it.SKUID) > idLengthMax
			}
			fits := cmd.Kind == KindPlaceOrder && len(cmd.Order.Items) > 0 && !tooLong && lines+len(cmd.Order.Items) <= lookAheadLines
			if fits != (looked != nil) {
				t.Fatalf("round %d request %d (%v, %d lines, %d before, an id too long %v): looked up %v, want %v",
					round, k, cmd.Kind, len(cmd.Order.Items), lines, tooLong, looked != nil, fits)
			}
			if !fits {
				continue
			}
			lines += len(cmd.Order.Items)
			for i, it := range cmd.Order.Items {
				want, _ := c.dir.lookup(it.SKUID)
				if looked[i] != want {
					t.Fatalf("round %d request %d line %d (%q): looked up %x, lookup %x", round, k, i, it.SKUID, looked[i], want)
				}
			}
		}
		for k := range reqs {
			cmd := &reqs[k].Command
			if cmd.Kind != KindPlaceOrder {
				continue
			}
			looked := la.lines(k, len(cmd.Order.Items))
			// The route's answer is the same with the answers as without.
			with, without := reqs[k], reqs[k]
			with.Command.Order.Items = append([]Item(nil), cmd.Order.Items...)
			without.Command.Order.Items = append([]Item(nil), cmd.Order.Items...)
			pw, okw := c.routeGated(&with, false, looked)
			po, oko := c.routeGated(&without, false, nil)
			if pw != po || okw != oko || with.Result != without.Result {
				t.Fatalf("round %d request %d: routed with the look-ahead (%d, %v, %+v), without (%d, %v, %+v)", round, k, pw, okw, with.Result, po, oko, without.Result)
			}
		}
	}
}
