package orders

import (
	"fmt"

	"github.com/fest-platform/fest/internal/engine"
)

// buyerTable finds a buyer's newest order in memory by two 64-bit hashes
// of its id. It replaces a Go map[uint64]uint32 from the first hash to an
// entry in a slice of buyers, which at the peak cost two cache misses per
// placement (the map's probe, then the entry) beside the map's own
// control-word probe: here the hashes and the newest order share one
// 24-byte slot of an open-addressed table (linear probing), so a placement
// reads and writes one. Removal shifts the following slots back, so the
// table needs no tombstones. The first hash is the key: one slot per hash,
// which the store's collision map makes true.
type buyerTable struct {
	// slots has a power-of-two length and is at most three quarters full.
	slots []buyerSlot
	n     int
	shift uint // 64 - log2(len(slots))
}

// buyerSlot is one buyer. An order id is never 0 (sequences start at 1),
// so newest 0 marks an empty slot.
type buyerSlot struct {
	hash   uint64 // of the id, under the store's seed
	check  uint64 // of the id, under its check seed
	newest engine.OrderID
}

// buyerTableMin is a new table's slots.
const buyerTableMin = 64

// newBuyerTable returns a table sized for hint buyers.
func newBuyerTable(hint int) buyerTable {
	size, shift := buyerTableMin, uint(64-6)
	for size*3 < hint*4 {
		size *= 2
		shift--
	}
	return buyerTable{slots: make([]buyerSlot, size), shift: shift}
}

// home spreads the hash's bits to the slot where its probe starts.
func (t *buyerTable) home(h uint64) uint64 { return (h * 0x9e3779b97f4a7c15) >> t.shift }

// find returns the slot holding hash h, or nil.
func (t *buyerTable) find(h uint64) *buyerSlot {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(h); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.newest == 0 {
			return nil
		}
		if s.hash == h {
			return s
		}
	}
}

// put adds a buyer; its hash must not be in the table, and newest must not
// be 0.
func (t *buyerTable) put(h, check uint64, newest engine.OrderID) {
	if newest == 0 {
		panic(fmt.Sprintf("orders: buyer %#x added without an order", h))
	}
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	i := t.home(h)
	for ; t.slots[i].newest != 0; i = (i + 1) & mask {
		if t.slots[i].hash == h {
			panic(fmt.Sprintf("orders: buyer hash %#x added twice", h))
		}
	}
	t.slots[i] = buyerSlot{hash: h, check: check, newest: newest}
	t.n++
}

// remove removes the buyer in slot s (from find).
func (t *buyerTable) remove(s *buyerSlot) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(s.hash)
	for &t.slots[i] != s {
		if t.slots[i].newest == 0 {
			panic(fmt.Sprintf("orders: buyer %#x removed from a slot outside its probe", s.hash))
		}
		i = (i + 1) & mask
	}
	// Backward shift: move each following entry whose probe started at
	// or before the hole into it, until an empty slot ends the run.
	for j := (i + 1) & mask; t.slots[j].newest != 0; j = (j + 1) & mask {
		if home := t.home(t.slots[j].hash); (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = buyerSlot{}
	t.n--
}

func (t *buyerTable) grow() {
	old := t.slots
	t.slots = make([]buyerSlot, 2*len(old))
	t.shift--
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.newest == 0 {
			continue
		}
		i := t.home(s.hash)
		for t.slots[i].newest != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// len returns the number of buyers.
func (t *buyerTable) len() int { return t.n }
