package orders

import (
	"math/rand/v2"
	"testing"

	"github.com/fest-platform/fest/internal/engine"
)

// TestBuyerTable checks the table against a map through puts, finds and
// removals: over a pool of 4,096 hashes (random, and then multiples of 2^52,
// whose few distinct values crowd a small table) the table runs up to three
// quarters full, so probes run long and the removals' backward shifts move
// entries.
func TestBuyerTable(t *testing.T) {
	for _, spread := range []uint64{0, 1 << 52} {
		tab := newBuyerTable(0)
		ref := map[uint64]engine.OrderID{}
		rng := rand.New(rand.NewPCG(1, spread))
		pool := make([]uint64, 4096)
		for i := range pool {
			pool[i] = rng.Uint64()
			if spread != 0 {
				pool[i] = uint64(i) * spread
			}
		}
		var order engine.OrderID
		for step := range 200_000 {
			h := pool[rng.IntN(len(pool))]
			s := tab.find(h)
			want, in := ref[h]
			if (s != nil) != in || (in && (s.newest != want || s.check != ^h)) {
				t.Fatalf("step %d: find %#x = %+v; want %d, %v", step, h, s, want, in)
			}
			switch {
			case in && step%3 != 0:
				tab.remove(s)
				delete(ref, h)
			case in:
				order++
				s.newest = order
				ref[h] = order
			default:
				order++
				tab.put(h, ^h, order)
				ref[h] = order
			}
		}
		if tab.len() != len(ref) {
			t.Fatalf("table holds %d, want %d", tab.len(), len(ref))
		}
		for _, h := range pool {
			s := tab.find(h)
			if want, in := ref[h]; (s != nil) != in || (in && s.newest != want) {
				t.Fatalf("find %#x = %+v; want %d, %v", h, s, want, in)
			}
		}
	}
}
