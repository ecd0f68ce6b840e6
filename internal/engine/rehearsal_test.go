package engine

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestRehearsalTimeRefusedWithoutTheClock: an engine on its own clock
// refuses a command that gives its time, and nothing changes.
func TestRehearsalTimeRefusedWithoutTheClock(t *testing.T) {
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 2, NoSync: true, Logger: quiet, SnapshotEveryBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	testCatalog(t, e, 1, 1, 5)
	before := e.core.dump()
	ctx := context.Background()
	for _, cmd := range []Command{
		{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-0", Quantity: 1}}}, At: 1},
		{Kind: KindAdjustStock, SKUID: "s0-0", Delta: 3, At: time.Now().UnixNano()},
	} {
		if r := e.Do(ctx, cmd); r.Code != CodeInvalidArgument || r.Field != "at" {
			t.Errorf("%v with a time: %v field %q, want invalid_argument at", cmd.Kind, r.Code, r.Field)
		}
	}
	if after := e.core.dump(); after != before {
		t.Errorf("a refused time changed the state:\n%s\nwas\n%s", after, before)
	}
}

// TestRehearsalClock runs an engine on the times its commands give, out
// of order as concurrent batches give them: each command is applied at its
// own time, the clock is the largest, expiry runs on it late but never
// early, and replay of the journal rebuilds the same state.
func TestRehearsalClock(t *testing.T) {
	base := time.Date(2020, 11, 10, 16, 0, 0, 0, time.UTC).UnixNano() // 11-11 00:00 in UTC+8
	sec := func(s int) int64 { return base + int64(s)*int64(time.Second) }
	dir := t.TempDir()
	cfg := Config{Dir: dir, Partitions: 2, NoSync: true, Logger: quiet, SnapshotEveryBytes: -1, IdleTick: -1,
		PaymentTimeout: 10 * time.Second, RehearsalClock: true}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testCatalog(t, e, 1, 2, 20)
	ctx := context.Background()
	place := func(at int64) Result {
		t.Helper()
		r := e.Do(ctx, Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-0", Quantity: 1}}}, At: at})
		if !r.OK() {
			t.Fatalf("place at %d: %v", at, r.Err())
		}
		if at != 0 && (r.CreatedAt != at || r.PayBy != at+int64(10*time.Second)) {
			t.Fatalf("order placed at %d: created %d, pay by %d", at, r.CreatedAt, r.PayBy)
		}
		return r
	}
	// One batch whose times are out of order: each is applied at its own.
	b := NewBatch(0)
	for _, s := range []int{5, 2, 9} {
		b.Add(Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-0", Quantity: 1}}}, At: sec(s)})
	}
	mustBatch(t, e, b)
	a, bb, c := b.Requests[0].Result, b.Requests[1].Result, b.Requests[2].Result
	for i, s := range []int{5, 2, 9} {
		if got := b.Requests[i].Result.CreatedAt; got != sec(s) {
			t.Fatalf("order %d created at %d, want its own time %d", i, got, sec(s))
		}
	}
	if now := e.cfg.Now(); now != sec(9) {
		t.Fatalf("clock %d, want the largest time given, %d", now, sec(9))
	}
	// The clock at 13: b (pay by 12) is due, but expiry stops at a (pay by
	// 15), the first order not due: b expires late, never early.
	place(sec(13))
	if g := e.Do(ctx, Command{Kind: KindGetOrder, OrderID: bb.OrderID}); g.Status != StatusPending {
		t.Fatalf("order b: %v, want still pending (expiry stops at the first order not due)", g.Status)
	}
	// Paid at its own time, before its pay-by, b is paid.
	if r := e.Do(ctx, Command{Kind: KindPay, OrderID: bb.OrderID, Amount: bb.Total, At: sec(11)}); !r.OK() || r.ChangedAt != sec(11) {
		t.Fatalf("pay b at 11: %v changed at %d", r.Err(), r.ChangedAt)
	}
	// A payment given at the pay-by finds the order expired: it moved
	// the clock to 19, so its batch expired a (pay by 15) and c first.
	if r := e.Do(ctx, Command{Kind: KindPay, OrderID: c.OrderID, Amount: c.Total, At: sec(19)}); r.Code != CodeInvalidState {
		t.Fatalf("pay c at its pay-by: %v, want invalid_state", r.Code)
	}
	if g := e.Do(ctx, Command{Kind: KindGetOrder, OrderID: a.OrderID}); g.Status != StatusExpired {
		t.Fatalf("order a: %v, want expired", g.Status)
	}
	// A command without a time is applied at the clock.
	if r := place(0); r.CreatedAt != sec(19) {
		t.Fatalf("order without a time created at %d, want the clock %d", r.CreatedAt, sec(19))
	}
	if r := e.Do(ctx, Command{Kind: KindPlaceOrder, Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s0-1", Quantity: 1}}}, At: -1}); r.Code != CodeInvalidArgument || r.Field != "at" {
		t.Fatalf("a negative time: %v field %q", r.Code, r.Field)
	}
	live := e.core.dump()
	// Replay of the journal alone (a copy taken before Close, which takes
	// a snapshot) and from the snapshot give the same state, and the clock
	// resumes at the last event's time.
	copyDir(t, dir, dir+"-journal")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir + "-journal", dir} {
		cfg.Dir = d
		e, err = Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.core.dump(); got != live {
			t.Fatalf("%s: recovered state differs\n%s\nlive:\n%s", d, got, live)
		}
		if now := e.cfg.Now(); now != sec(19) {
			t.Fatalf("%s: clock after recovery %d, want %d", d, now, sec(19))
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRehearsalClockConcurrent submits batches with times in no order
// from several goroutines: every order is created at its own time, and the
// clock ends at the largest.
func TestRehearsalClockConcurrent(t *testing.T) {
	e, err := Open(Config{Dir: t.TempDir(), Partitions: 4, NoSync: true, Logger: quiet, SnapshotEveryBytes: -1,
		PaymentTimeout: time.Hour, RehearsalClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	testCatalog(t, e, 4, 2, 1_000_000)
	base := time.Date(2020, 11, 10, 16, 0, 0, 0, time.UTC).UnixNano()
	const goroutines, batches, orders = 4, 20, 50
	done := make(chan *Batch, goroutines*batches)
	for g := range goroutines {
		go func() {
			for i := range batches {
				b := NewBatch(orders)
				for j := range orders {
					// A scrambled time per order, distinct across the run.
					n := (g*batches*orders + i*orders + j) * 7919 % (goroutines * batches * orders)
					b.Add(Command{Kind: KindPlaceOrder, At: base + int64(n)*int64(time.Millisecond),
						Order: Order{BuyerID: "u", Items: []Item{{SKUID: "s" + strconv.Itoa(j%4) + "-0", Quantity: 1}}}})
				}
				e.Submit(b)
				b.Wait()
				done <- b
			}
		}()
	}
	for range goroutines * batches {
		b := <-done
		for i := range b.Requests {
			r := &b.Requests[i]
			if !r.Result.OK() || r.Result.CreatedAt != r.Command.At {
				t.Fatalf("order at %d: %v, created at %d", r.Command.At, r.Result.Err(), r.Result.CreatedAt)
			}
		}
	}
	if want := base + int64(goroutines*batches*orders-1)*int64(time.Millisecond); e.cfg.Now() != want {
		t.Fatalf("clock %d, want the largest time %d", e.cfg.Now(), want)
	}
}
