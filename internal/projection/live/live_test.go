package live

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// feed applies events as the runner does: each its own record.
func feed(t *testing.T, l *Live, evs ...engine.Event) {
	t.Helper()
	for i := range evs {
		if err := l.Apply(&evs[i]); err != nil {
			t.Fatalf("apply %v: %v", evs[i].Kind, err)
		}
		l.Commit(uint64(i+1), evs[i].At)
	}
}

func order(id engine.OrderID, channel, deal string, q int32, total int64) engine.Event {
	return engine.Event{Kind: engine.EventOrderPlaced, OrderID: id, Channel: channel, DealID: deal, Total: total,
		Items: []engine.Item{{SKUID: "s", Quantity: q}}}
}

func TestChannelFigures(t *testing.T) {
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, l,
		engine.Event{Kind: engine.EventChannelPut, LiveChannel: engine.Channel{ID: "c1", Title: "One", Host: "H", EndsAt: 10}},
		engine.Event{Kind: engine.EventChannelPut, LiveChannel: engine.Channel{ID: "c2", Title: "Two", Host: "H", EndsAt: 10}},
		engine.Event{Kind: engine.EventDealPut, Deal: engine.Deal{ID: "d1", ChannelID: "c1", SKUID: "s", Price: 100, Stock: 10, EndsAt: 5}},
		order(1, "live:c1", "d1", 3, 300),  // paid
		order(2, "live:c1", "d1", 2, 200),  // cancelled: back to the deal
		order(3, "live:c1", "", 1, 5000),   // paid, not a deal order
		order(4, "live:c2", "", 1, 7000),   // paid
		order(5, "app", "", 1, 9000),       // paid, not live
		order(6, "live:nope", "", 1, 9000), // unknown channel: ignored
		order(7, "live:c1", "d1", 1, 100),  // expired after the deal ended: not back
		engine.Event{Kind: engine.EventOrderPaid, OrderID: 1},
		engine.Event{Kind: engine.EventOrderCancelled, OrderID: 2},
		engine.Event{Kind: engine.EventOrderPaid, OrderID: 3},
		engine.Event{Kind: engine.EventOrderPaid, OrderID: 4},
		engine.Event{Kind: engine.EventOrderPaid, OrderID: 5},
		engine.Event{Kind: engine.EventOrderPaid, OrderID: 6},
		engine.Event{Kind: engine.EventDealEnded, DealID: "d1", Delta: 6},
		engine.Event{Kind: engine.EventOrderExpired, OrderID: 7},
	)
	check := func(l *Live) {
		t.Helper()
		c, err := l.Channel("c1")
		if err != nil {
			t.Fatal(err)
		}
		if c.GMV != 5300 || c.Orders != 2 || len(c.Deals) != 1 {
			t.Fatalf("c1: gmv %d orders %d deals %d, want 5300, 2, 1", c.GMV, c.Orders, len(c.Deals))
		}
		if d := c.Deals[0]; d.Sold != 3 || d.StockLeft != 0 || !d.Ended {
			t.Fatalf("d1: sold %d left %d ended %v, want 3, 0, true", d.Sold, d.StockLeft, d.Ended)
		}
		board := l.Leaderboard(30)
		if len(board) != 2 || board[0].ID != "c2" || board[0].GMV != 7000 || board[1].ID != "c1" {
			t.Fatalf("leaderboard %+v", board)
		}
		if l.Stats().Pending != 0 {
			t.Fatalf("pending %d, want 0", l.Stats().Pending)
		}
	}
	check(l)
	var buf bytes.Buffer
	if err := l.WriteSnapshot(&buf, nil); err != nil {
		t.Fatal(err)
	}
	l2, _ := New(Config{})
	s, err := l2.StageSnapshot(bytes.NewReader(buf.Bytes()), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Install()
	check(l2)
	if _, err := l2.StageSnapshot(bytes.NewReader(buf.Bytes()[:buf.Len()-1]), 1, nil); err == nil {
		t.Fatal("a truncated snapshot was staged")
	}
}

func TestStockLeftWhileRunning(t *testing.T) {
	l, _ := New(Config{})
	feed(t, l,
		engine.Event{Kind: engine.EventChannelPut, LiveChannel: engine.Channel{ID: "c", EndsAt: 10}},
		engine.Event{Kind: engine.EventDealPut, Deal: engine.Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 1, Stock: 5, EndsAt: 5}},
		order(1, "live:c", "d", 2, 2),
		order(2, "live:c", "d", 1, 1),
		engine.Event{Kind: engine.EventOrderExpired, OrderID: 2},
	)
	c, _ := l.Channel("c")
	if c.Deals[0].StockLeft != 3 {
		t.Fatalf("stock left %d, want 3", c.Deals[0].StockLeft)
	}
	if got := l.SellingDeals(5); len(got) != 1 || got[0].ID != "d" {
		t.Fatalf("selling deals %+v", got)
	}
}

// TestSnapshotWithManyChannels round-trips 50 channels with a deal and a
// pending order on the last ones: their channel index (49) is a value, not
// a length, and may exceed the bytes that follow it in the section. Before,
// a snapshot with 30 or more channels did not load.
func TestSnapshotWithManyChannels(t *testing.T) {
	l, _ := New(Config{})
	var evs []engine.Event
	for i := range 50 {
		evs = append(evs, engine.Event{Kind: engine.EventChannelPut, LiveChannel: engine.Channel{ID: "c" + strconv.Itoa(i), Title: "T", Host: "H", EndsAt: 10}})
	}
	evs = append(evs,
		engine.Event{Kind: engine.EventDealPut, Deal: engine.Deal{ID: "d", ChannelID: "c49", SKUID: "s", Price: 1, Stock: 5, EndsAt: 5}},
		order(1, "live:c49", "", 1, 100),
		order(2, "live:c49", "d", 2, 2),
	)
	feed(t, l, evs...)
	var b bytes.Buffer
	if err := l.WriteSnapshot(&b, nil); err != nil {
		t.Fatal(err)
	}
	l2, _ := New(Config{})
	s, err := l2.StageSnapshot(bytes.NewReader(b.Bytes()), 1, nil)
	if err != nil {
		t.Fatalf("stage a snapshot of 50 channels: %v", err)
	}
	s.Install()
	c, err := l2.Channel("c49")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Deals) != 1 || c.Deals[0].StockLeft != 3 || l2.Stats().Pending != 2 {
		t.Fatalf("restored c49: deals %+v, pending %d; want one deal with 3 left and 2 pending", c.Deals, l2.Stats().Pending)
	}
}

// TestBadSnapshotIsProjectionBadSnapshot checks that a damaged section is
// refused with an error the runner recognizes, so that it sets the
// snapshot aside instead of failing the start.
func TestBadSnapshotIsProjectionBadSnapshot(t *testing.T) {
	l, _ := New(Config{})
	for name, data := range map[string][]byte{
		"bad magic":       []byte("FESTXXXX"),
		"truncated":       []byte(snapshotMagic + "\x00"),
		"channel too far": append([]byte(snapshotMagic), 0, 0, 0, 0, 1, 1, 0, 0),
	} {
		_, err := l.StageSnapshot(bytes.NewReader(data), 1, nil)
		if !errors.Is(err, ErrBadSnapshot) || !errors.Is(err, projection.ErrBadSnapshot) {
			t.Errorf("%s: %v, want an error wrapping live.ErrBadSnapshot and projection.ErrBadSnapshot", name, err)
		}
	}
}

// FuzzStageSnapshot feeds arbitrary bytes, seeded with a real section, to
// the snapshot loader: it must refuse or accept, never panic, and what it
// accepts must write out again.
func FuzzStageSnapshot(f *testing.F) {
	l, _ := New(Config{})
	feedAll(l,
		engine.Event{Kind: engine.EventChannelPut, LiveChannel: engine.Channel{ID: "c", Title: "T", EndsAt: 10}},
		engine.Event{Kind: engine.EventDealPut, Deal: engine.Deal{ID: "d", ChannelID: "c", SKUID: "s", Price: 1, Stock: 5, EndsAt: 5}},
		order(1, "live:c", "d", 2, 2),
		order(2, "live:c", "", 1, 7),
		engine.Event{Kind: engine.EventOrderPaid, OrderID: 2},
	)
	var buf bytes.Buffer
	if err := l.WriteSnapshot(&buf, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, _ := New(Config{})
		s, err := l.StageSnapshot(bytes.NewReader(data), 1, nil)
		if err != nil {
			return
		}
		s.Install()
		var out bytes.Buffer
		if err := l.WriteSnapshot(&out, nil); err != nil {
			t.Fatal(err)
		}
		l.Leaderboard(10)
		l.SellingDeals(10)
	})
}

func feedAll(l *Live, evs ...engine.Event) {
	for i := range evs {
		l.Apply(&evs[i])
		l.Commit(uint64(i+1), 0)
	}
}

// BenchmarkApplyOrders measures the projection's cost per order event on a
// mix like the festival's: one order in five on a live channel, each paid.
func BenchmarkApplyOrders(b *testing.B) {
	l, _ := New(Config{})
	for i := range 60 {
		ev := engine.Event{Kind: engine.EventChannelPut, LiveChannel: engine.Channel{ID: "ch" + string(rune('a'+i%26)) + string(rune('a'+i/26)), EndsAt: 1}}
		l.Apply(&ev)
	}
	l.Commit(1, 0)
	placed := make([]engine.Event, 5)
	for i := range placed {
		ch := "app"
		if i == 0 {
			ch = "live:chba"
		}
		placed[i] = order(0, ch, "", 1, 100)
	}
	paid := engine.Event{Kind: engine.EventOrderPaid}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev := &placed[i%5]
		ev.OrderID = engine.OrderID(i + 1)
		l.Apply(ev)
		paid.OrderID = ev.OrderID
		l.Apply(&paid)
		l.Commit(uint64(i), 0)
	}
}
