package projection_test

import (
	"maps"
	"testing"

	"pgregory.net/rapid"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// TestPendingAgainstMap drives the table and a plain map with the same
// random placements (mostly in sequence per partition, as the engine numbers
// them, sometimes far ahead or behind), lookups and removals, and compares
// them after every step.
func TestPendingAgainstMap(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		table := projection.NewPending[uint64]()
		model := map[engine.OrderID]uint64{}
		next := map[int]uint64{}
		var placed []engine.OrderID
		steps := rapid.IntRange(1, 3000).Draw(t, "steps")
		for step := range steps {
			switch op := rapid.IntRange(0, 9).Draw(t, "op"); {
			case op < 5: // place the partition's next order, or jump
				p := rapid.IntRange(0, 3).Draw(t, "partition")
				seq := next[p] + 1
				switch rapid.IntRange(0, 20).Draw(t, "jump") {
				case 0:
					seq += uint64(rapid.IntRange(1, 3*projection.PendingWindowMax).Draw(t, "ahead"))
				case 1:
					if back := uint64(rapid.IntRange(1, 2*projection.PendingWindowMax).Draw(t, "behind")); back < seq {
						seq -= back
					}
				}
				next[p] = max(next[p], seq)
				id := engine.OrderIDOf(p, seq)
				v := uint64(step)
				_, had := model[id]
				if added := table.Put(id, v); added == had {
					t.Fatalf("Put(%v) = %v, model had it: %v", id, added, had)
				}
				if !had {
					model[id] = v
					placed = append(placed, id)
				}
			case op < 8 && len(placed) > 0: // settle a placed order, maybe twice
				id := placed[rapid.IntRange(0, len(placed)-1).Draw(t, "settle")]
				want, had := model[id]
				got, ok := table.Take(id)
				if ok != had || got != want {
					t.Fatalf("Take(%v) = %d, %v; want %d, %v", id, got, ok, want, had)
				}
				delete(model, id)
			case len(placed) > 0: // look one up
				id := placed[rapid.IntRange(0, len(placed)-1).Draw(t, "get")]
				want, had := model[id]
				if got, ok := table.Get(id); ok != had || got != want || table.Has(id) != had {
					t.Fatalf("Get(%v) = %d, %v; want %d, %v", id, got, ok, want, had)
				}
			}
			if table.Len() != len(model) {
				t.Fatalf("Len = %d, model %d", table.Len(), len(model))
			}
		}
		table.Check()
		all := maps.Collect(table.All())
		if !maps.Equal(all, model) {
			t.Fatalf("All holds %d orders, model %d, or they differ", len(all), len(model))
		}
	})
}

// BenchmarkPending places orders over 64 partitions and settles each 2,000
// orders later, leaving one in 25 pending for good, against a Go map doing
// the same.
func BenchmarkPending(b *testing.B) {
	type value struct{ a, b, c, d, e, f int64 }
	const partitions, lag, leaveEvery = 64, 2000, 25
	id := func(i int) engine.OrderID { return engine.OrderIDOf(i%partitions, uint64(i/partitions+1)) }
	b.Run("table", func(b *testing.B) {
		t := projection.NewPending[value]()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			t.Put(id(i), value{a: int64(i)})
			if j := i - lag; j >= 0 && j%leaveEvery != 0 {
				if _, ok := t.Take(id(j)); !ok {
					b.Fatal("lost")
				}
			}
			i++
		}
	})
	b.Run("map", func(b *testing.B) {
		m := map[engine.OrderID]value{}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			m[id(i)] = value{a: int64(i)}
			if j := i - lag; j >= 0 && j%leaveEvery != 0 {
				if _, ok := m[id(j)]; !ok {
					b.Fatal("lost")
				}
				delete(m, id(j))
			}
			i++
		}
	})
}
