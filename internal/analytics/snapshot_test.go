package analytics

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

type placed struct {
	id    engine.OrderID
	total int64
}

func totals(orders []placed) iter.Seq2[engine.OrderID, int64] {
	return func(yield func(engine.OrderID, int64) bool) {
		for _, o := range orders {
			if !yield(o.id, o.total) {
				return
			}
		}
	}
}

// TestSnapshotRestoresTotals checks that a GMV snapshot plus the order
// totals restore a projection that goes on adding payments of old orders,
// and that totals that do not match the snapshot are refused.
func TestSnapshotRestoresTotals(t *testing.T) {
	a, _ := New(Config{})
	var orders []placed
	pos := uint64(0)
	apply := func(a *Analytics, ev engine.Event) {
		t.Helper()
		pos++
		ev.Position, ev.Last = pos, true
		if err := a.Apply(&ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i++ {
		p := i % 3
		id := engine.OrderID(uint64(p)<<52 | uint64(i/3+1))
		orders = append(orders, placed{id, int64(100 * (i + 1))})
		apply(a, engine.Event{Kind: engine.EventOrderPlaced, OrderID: id, Total: int64(100 * (i + 1))})
		if i%4 == 0 {
			apply(a, engine.Event{Kind: engine.EventOrderPaid, OrderID: id})
		}
	}
	var buf bytes.Buffer
	if err := a.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	l, _ := New(Config{})
	if err := l.LoadSnapshot(bytes.NewReader(buf.Bytes()), pos, totals(orders)); err != nil {
		t.Fatal(err)
	}
	if l.GMV().Amount != a.GMV().Amount || l.GMV().OrdersPlaced != 40 || l.GMV().OrdersPaid != 10 || l.Applied() != pos {
		t.Fatalf("loaded %+v at %d, want %+v at %d", l.GMV(), l.Applied(), a.GMV(), pos)
	}
	apply(a, engine.Event{Kind: engine.EventOrderPaid, OrderID: orders[1].id})
	apply(l, engine.Event{Kind: engine.EventOrderPaid, OrderID: orders[1].id})
	if l.GMV().Amount != a.GMV().Amount {
		t.Fatalf("after a payment of an old order: %d, want %d", l.GMV().Amount, a.GMV().Amount)
	}

	bad := []struct {
		name   string
		data   []byte
		orders []placed
	}{
		{"empty", nil, orders},
		{"bad magic", append([]byte("FESTGM99"), buf.Bytes()[8:]...), orders},
		{"legacy magic without totals", append([]byte("FESTGM01"), buf.Bytes()[8:]...), orders},
		{"truncated", buf.Bytes()[:len(buf.Bytes())-1], orders},
		{"an order missing", buf.Bytes(), orders[1:]},
		{"an order too many", buf.Bytes(), append(orders[:len(orders):len(orders)], placed{engine.OrderID(14), 1})},
		{"out of sequence", buf.Bytes(), append([]placed{orders[3]}, orders...)},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			l, _ := New(Config{})
			if err := l.LoadSnapshot(bytes.NewReader(c.data), pos, totals(c.orders)); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("load: %v, want ErrBadSnapshot", err)
			}
			// The refused snapshot left the projection as it was: empty,
			// and able to load the good one.
			if g := l.GMV(); l.Applied() != 0 || g.Amount != 0 || g.OrdersPlaced != 0 || g.OrdersPaid != 0 {
				t.Fatalf("after the refused load: at %d with %+v, want an empty projection", l.Applied(), g)
			}
			if err := l.LoadSnapshot(bytes.NewReader(buf.Bytes()), pos, totals(orders)); err != nil {
				t.Fatalf("load after the refused one: %v", err)
			}
		})
	}
}

// TestStagedSnapshotInvisibleUntilInstalled checks that a staged GMV
// snapshot changes nothing a reader sees, that Install makes its totals
// visible and wakes a reader waiting for its position, and that a staged
// snapshot installs once only.
func TestStagedSnapshotInvisibleUntilInstalled(t *testing.T) {
	a, _ := New(Config{})
	var orders []placed
	for i := 0; i < 30; i++ {
		id := engine.OrderID(uint64(i%2)<<52 | uint64(i/2+1))
		orders = append(orders, placed{id, int64(10 * (i + 1))})
		if err := a.Apply(&engine.Event{Kind: engine.EventOrderPlaced, OrderID: id, Total: int64(10 * (i + 1)), Position: uint64(i + 1), Last: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Apply(&engine.Event{Kind: engine.EventOrderPaid, OrderID: orders[3].id, Position: 31, Last: true}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := a.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	l, _ := New(Config{})
	defer l.Close()
	l.Attach(fixedSource(31))
	waited := make(chan error, 1)
	go func() { waited <- l.WaitDurable(context.Background()) }()
	st, err := l.StageSnapshot(bytes.NewReader(buf.Bytes()), 31, totals(orders))
	if err != nil {
		t.Fatal(err)
	}
	if g := l.GMV(); l.Applied() != 0 || g.Amount != 0 || g.OrdersPlaced != 0 {
		t.Fatalf("staged, not installed: at %d with %+v, want an empty projection", l.Applied(), g)
	}
	l.Install(st)
	if err := <-waited; err != nil {
		t.Fatalf("wait across Install: %v", err)
	}
	if g := l.GMV(); l.Applied() != 31 || g.Amount != 40 || g.OrdersPlaced != 30 || g.OrdersPaid != 1 {
		t.Fatalf("installed: at %d with %+v, want 40 fen of 30 orders at 31", l.Applied(), g)
	}
	// A payment of an order from the snapshot finds its total.
	if err := l.Apply(&engine.Event{Kind: engine.EventOrderPaid, OrderID: orders[0].id, Position: 32, Last: true}); err != nil || l.GMV().Amount != 50 {
		t.Fatalf("payment after Install: %v, gmv %d, want 50", err, l.GMV().Amount)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second Install of one staged snapshot did not panic")
		}
	}()
	l.Install(st)
}

// fixedSource is a Source whose durable position is pos.
type fixedSource uint64

func (fixedSource) Follow(context.Context, uint64, func(*engine.Event) error) error { return nil }
func (p fixedSource) Durable() uint64                                               { return uint64(p) }
