package orders

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// coldModel is what the orders of a coldFeeder should read back as.
type coldModel struct {
	orders  map[engine.OrderID]Order
	byBuyer map[string][]engine.OrderID // placement order
}

// coldFeeder writes a journal of synthetic events (kept, to replay after a
// restart) into a store, and keeps the model of what it placed.
type coldFeeder struct {
	rng    *rand.Rand
	seqs   [16]uint64
	pos    uint64
	at     int64
	events []engine.Event // every event, with Position and Last set
	model  coldModel
}

func newColdFeeder(seed uint64) *coldFeeder {
	return &coldFeeder{rng: rand.New(rand.NewPCG(seed, 7)), model: coldModel{orders: map[engine.OrderID]Order{}, byBuyer: map[string][]engine.OrderID{}}}
}

// record appends a record of n events: mostly orders, and payments and
// cancellations of orders placed any time before (many of them by now in
// the cold tier).
func (f *coldFeeder) record(n int) []engine.Event {
	f.pos += 100
	start := len(f.events)
	for i := 0; i < n; i++ {
		f.at++
		var ev engine.Event
		if r := f.rng.IntN(10); r < 3 && len(f.model.orders) > 0 {
			// Settle a random pending order.
			p := f.rng.IntN(len(f.seqs))
			if f.seqs[p] == 0 {
				continue
			}
			id := orderIDOf(p, 1+f.rng.Uint64N(f.seqs[p]))
			o := f.model.orders[id]
			if o.Status != engine.StatusPending {
				continue
			}
			kind, status := engine.EventOrderPaid, engine.StatusPaid
			if r == 2 {
				kind, status = engine.EventOrderCancelled, engine.StatusCancelled
			}
			ev = engine.Event{Kind: kind, OrderID: id, At: f.at}
			o.Status, o.ChangedAt = status, f.at
			f.model.orders[id] = o
		} else {
			p := f.rng.IntN(len(f.seqs))
			f.seqs[p]++
			id := orderIDOf(p, f.seqs[p])
			buyer := fmt.Sprintf("buyer-%d", f.rng.IntN(300))
			items := []engine.Item{{SKUID: fmt.Sprintf("sku-%d", f.rng.IntN(50)), Quantity: int32(1 + f.rng.IntN(3)), UnitPrice: 990}}
			items[0].Amount = items[0].UnitPrice * int64(items[0].Quantity)
			ev = engine.Event{Kind: engine.EventOrderPlaced, OrderID: id, BuyerID: buyer, MerchantID: "m-1", Channel: "app", Region: "CN-ZJ",
				Items: items, Total: items[0].Amount, At: f.at, PayBy: f.at + 1e9}
			f.model.orders[id] = Order{ID: id, BuyerID: buyer, MerchantID: "m-1", Channel: "app", Region: "CN-ZJ", Items: items,
				Total: items[0].Amount, CreatedAt: f.at, PayBy: f.at + 1e9, Status: engine.StatusPending}
			f.model.byBuyer[buyer] = append(f.model.byBuyer[buyer], id)
		}
		ev.Position = f.pos
		f.events = append(f.events, ev)
	}
	if len(f.events) == start {
		return nil
	}
	f.events[len(f.events)-1].Last = true
	return f.events[start:]
}

// apply feeds events to s as the runner does.
func apply(t testing.TB, s *Store, events []engine.Event) {
	t.Helper()
	for i := range events {
		ev := &events[i]
		if err := s.Apply(ev); err != nil {
			t.Fatal(err)
		}
		if ev.Last {
			s.Commit(ev.Position, ev.At)
		}
	}
}

// check reads every order and every buyer's history, in pages of 50, and
// compares them with the model.
func (m *coldModel) check(t *testing.T, s *Store) {
	t.Helper()
	for id, want := range m.orders {
		if uint64(id)%coldCheckEvery != 0 {
			continue
		}
		got, err := s.Get(id)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("order %v: %+v (%v), want %+v", id, got, err, want)
		}
	}
	for buyer, ids := range m.byBuyer {
		if len(ids)%coldCheckEvery != 0 {
			continue
		}
		var listed []engine.OrderID
		cursor := ""
		for page := 0; ; page++ {
			list, next, err := s.ListByBuyer(buyer, 50, cursor)
			if err != nil {
				t.Fatalf("history of %s, page %d: %v", buyer, page, err)
			}
			for _, o := range list {
				listed = append(listed, o.ID)
			}
			if next == "" {
				break
			}
			cursor = next
			if page > len(ids) {
				t.Fatalf("history of %s: more pages than orders", buyer)
			}
		}
		want := slices.Clone(ids)
		slices.Reverse(want)
		if !slices.Equal(listed, want) {
			t.Fatalf("history of %s: %v, want %v", buyer, listed, want)
		}
	}
}

// openCold opens a store with a cold tier in dir, whose memory tier holds
// about chunks arena chunks.
func openColdStore(t *testing.T, dir string, chunks int64) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, MemoryBytes: memoryBytesMin})
	if err != nil {
		t.Fatal(err)
	}
	s.hotBudget = chunks * arenaChunkBytes
	return s
}

// TestColdTierKeepsEveryOrder places orders past the memory budget, so
// that most move to the cold tier, settles orders in both tiers, and
// checks every order and every buyer's history; then restarts from a
// snapshot taken in the middle, losing what the cold tier had not flushed
// (as a crash would), replays the rest, and checks again.
func TestColdTierKeepsEveryOrder(t *testing.T) {
	dir := t.TempDir()
	f := newColdFeeder(1)
	s := openColdStore(t, dir, coldBudgetChunks)
	for i := 0; i < coldRecords; i++ {
		apply(t, s, f.record(1000))
	}
	s.evictUnderBudget()
	st := s.Stats()
	if st.ColdOrders == 0 || st.Evictions == 0 {
		t.Fatalf("no order moved to the cold tier: %+v", st)
	}
	if st.ResidentBytes > uint64(s.hotBudget+s.coldFixed+arenaChunkBytes) {
		t.Fatalf("resident %d bytes, over the budget %d", st.ResidentBytes, s.hotBudget+s.coldFixed)
	}
	f.model.check(t, s)
	checkArenaBytes(t, s)

	cs := newMemChunks()
	var manifest bytes.Buffer
	if err := s.WriteSnapshot(&manifest, cs); err != nil {
		t.Fatal(err)
	}
	s.SnapshotDurable()
	snapPos, snapEvents := f.pos, len(f.events)
	for i := 0; i < coldRecords*2/3; i++ {
		apply(t, s, f.record(1000))
	}
	s.evictUnderBudget()
	f.model.check(t, s)
	// Close drops Pebble's memtables unflushed (its write-ahead log is
	// off): what a crash loses.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	l := openColdStore(t, dir, coldBudgetChunks)
	defer l.Close()
	if err := l.LoadSnapshot(bytes.NewReader(manifest.Bytes()), snapPos, cs); err != nil {
		t.Fatal(err)
	}
	apply(t, l, f.events[snapEvents:])
	l.evictUnderBudget()
	f.model.check(t, l)
	checkArenaBytes(t, l)
	if got := l.Stats().Orders; got != uint64(len(f.model.orders)) {
		t.Fatalf("%d orders after the restart, want %d", got, len(f.model.orders))
	}
}

// TestColdTierRefusesMissingColdOrders checks that a snapshot counting
// orders cold is refused by a store whose cold tier does not hold them.
func TestColdTierRefusesMissingColdOrders(t *testing.T) {
	f := newColdFeeder(2)
	s := openColdStore(t, t.TempDir(), 2)
	for i := 0; i < 50; i++ {
		apply(t, s, f.record(1000))
	}
	s.evictUnderBudget()
	cs := newMemChunks()
	var manifest bytes.Buffer
	if err := s.WriteSnapshot(&manifest, cs); err != nil {
		t.Fatal(err)
	}
	s.Close()
	other := openColdStore(t, t.TempDir(), 2)
	defer other.Close()
	if err := other.LoadSnapshot(bytes.NewReader(manifest.Bytes()), f.pos, cs); err == nil {
		t.Fatal("a snapshot whose cold orders are not in the cold tier loaded")
	}
	none, _ := Open(Config{})
	if err := none.LoadSnapshot(bytes.NewReader(manifest.Bytes()), f.pos, cs); err == nil {
		t.Fatal("a snapshot with cold orders loaded into a store without a cold tier")
	}
}

// checkArenaBytes checks that Stats().ArenaBytes is the bytes of the
// records in the resident arena chunks: an eviction once took away their
// length prefixes too, and the counter wrapped below zero.
func checkArenaBytes(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	var want uint64
	for _, chunk := range s.mu.arena[s.mu.firstResident:] {
		for off := 0; off < len(chunk); {
			n, k := binary.Uvarint(chunk[off:])
			want += n
			off += k + int(n)
		}
	}
	s.mu.Unlock()
	if got := s.Stats().ArenaBytes; got != want {
		t.Fatalf("ArenaBytes %d, the resident records hold %d", got, want)
	}
}
