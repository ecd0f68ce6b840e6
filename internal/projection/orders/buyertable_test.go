package orders

import (
	"math/rand/v2"
	"testing"
)

// TestBuyerTable checks the table against a map through puts, gets and
// removals: over a pool of 4,096 hashes (random, and then multiples of 2^52,
// whose few distinct values crowd a small table) the table runs up to three
// quarters full, so probes run long and the removals' backward shifts move
// entries.
func TestBuyerTable(t *testing.T) {
	for _, spread := range []uint64{0, 1 << 52} {
		tab := newBuyerTable(0)
		ref := map[uint64]uint32{}
		rng := rand.New(rand.NewPCG(1, spread))
		pool := make([]uint64, 4096)
		for i := range pool {
			pool[i] = rng.Uint64()
			if spread != 0 {
				pool[i] = uint64(i) * spread
			}
		}
		var index uint32
		for step := range 200_000 {
			h := pool[rng.IntN(len(pool))]
			if _, ok := ref[h]; ok && step%3 != 0 {
				if !tab.remove(h, ref[h]) {
					t.Fatalf("step %d: remove of %#x failed", step, h)
				}
				delete(ref, h)
			} else if !ok {
				index++
				tab.put(h, index)
				ref[h] = index
			}
			want, in := ref[h]
			if g, ok := tab.get(h); ok != in || (ok && g != want) {
				t.Fatalf("step %d: get %#x = %d, %v; want %d, %v", step, h, g, ok, want, in)
			}
		}
		if tab.len() != len(ref) {
			t.Fatalf("table holds %d, want %d", tab.len(), len(ref))
		}
		for h, i := range ref {
			if g, ok := tab.get(h); !ok || g != i {
				t.Fatalf("get %#x = %d, %v; want %d", h, g, ok, i)
			}
			if tab.remove(h, i+1) {
				t.Fatalf("remove of %#x with the wrong index succeeded", h)
			}
		}
		for _, h := range pool {
			if _, in := ref[h]; !in {
				if _, ok := tab.get(h); ok {
					t.Fatalf("get %#x found a removed hash", h)
				}
			}
		}
	}
}
