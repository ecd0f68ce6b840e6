package orders

import "fmt"

// buyerTable finds a buyer's index by the 64-bit hash of its id. It
// replaces a Go map[uint64]uint32 on the placement path, where the map's
// control-word probe and then its slot were a cache miss each at the peak:
// this open-addressed table (linear probing, the hash and the index in one
// 16-byte slot, four to a cache line) costs one. Removal shifts the
// following slots back, so the table needs no tombstones. The hash is the
// key: one hash per entry, which the store's collision map makes true.
type buyerTable struct {
	// slots has a power-of-two length and is at most three quarters full.
	slots []buyerSlot
	n     int
	shift uint // 64 - log2(len(slots))
}

type buyerSlot struct {
	hash  uint64
	index uint32 // the buyer's index + 1; 0: empty
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

// home spreads the hash's bits (maphash is already uniform, but a caller's
// hash need not be) to the slot where its probe starts.
func (t *buyerTable) home(h uint64) uint64 { return (h * 0x9e3779b97f4a7c15) >> t.shift }

// get returns the index of the buyer whose id hashes to h.
func (t *buyerTable) get(h uint64) (uint32, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(h); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.index == 0 {
			return 0, false
		}
		if s.hash == h {
			return s.index - 1, true
		}
	}
}

// put adds hash h with the buyer's index; h must not be in the table.
func (t *buyerTable) put(h uint64, index uint32) {
	if index == buyersMax {
		panic(fmt.Sprintf("orders: buyer index %d past the table's", index))
	}
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	i := t.home(h)
	for ; t.slots[i].index != 0; i = (i + 1) & mask {
		if t.slots[i].hash == h {
			panic(fmt.Sprintf("orders: buyer hash %#x added twice", h))
		}
	}
	t.slots[i] = buyerSlot{hash: h, index: index + 1}
	t.n++
}

// remove removes hash h if it maps to index, and reports whether it did.
func (t *buyerTable) remove(h uint64, index uint32) bool {
	mask := uint64(len(t.slots) - 1)
	i := t.home(h)
	for ; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.index == 0 {
			return false
		}
		if s.hash == h {
			if s.index-1 != index {
				return false
			}
			break
		}
	}
	// Backward shift: move each following entry whose probe started at
	// or before the hole into it, until an empty slot ends the run.
	for j := (i + 1) & mask; t.slots[j].index != 0; j = (j + 1) & mask {
		if home := t.home(t.slots[j].hash); (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = buyerSlot{}
	t.n--
	return true
}

func (t *buyerTable) grow() {
	old := t.slots
	t.slots = make([]buyerSlot, 2*len(old))
	t.shift--
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.index == 0 {
			continue
		}
		i := t.home(s.hash)
		for t.slots[i].index != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// len returns the number of entries.
func (t *buyerTable) len() int { return t.n }
