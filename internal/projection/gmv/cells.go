package gmv

import (
	"fmt"
	"iter"
)

// cellTable is the GMV of each (brand, category) pair sold, keyed by
// cellKey. It replaces a Go map on the payment path: every paid line adds to
// a cell, and the map's hash, control-word probe and slot were two cache
// misses per line at the peak, where this open-addressed table (linear
// probing, the key and its value in one 16-byte slot) costs one. Cells are
// never removed, so the table needs no tombstones.
type cellTable struct {
	// slots holds key+1 (0: empty) and the cell's GMV, fen; its length is
	// a power of two, at most three quarters full.
	slots []cellSlot
	n     int
	shift uint // 64 - log2(len(slots))
}

type cellSlot struct {
	key uint64 // cellKey + 1; 0: empty
	gmv int64  // fen
}

// cellTableMin is a new table's slots.
const cellTableMin = 64

// cellsMax bounds the table: a cell per brand and category, far past the
// festival's 250,000 brands selling in a few categories each. Past it the
// table would need more than 2^33 slots; the state is then corrupt.
const cellsMax = 1 << 32

func newCellTable() cellTable {
	return cellTable{slots: make([]cellSlot, cellTableMin), shift: 64 - 6}
}

func (t *cellTable) home(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> t.shift }

// homeSlot returns the slot where a search for cell k starts.
func (t *cellTable) homeSlot(k uint64) *cellSlot { return &t.slots[t.home(k)] }

// get returns cell k's GMV (0 if the pair has not sold) and whether it is
// in the table.
func (t *cellTable) get(k uint64) (int64, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k+1 {
			return s.gmv, true
		}
		if s.key == 0 {
			return 0, false
		}
	}
}

// add adds amount to cell k, creating it, and returns its new GMV.
func (t *cellTable) add(k uint64, amount int64) int64 {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(k); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k+1 {
			s.gmv += amount
			return s.gmv
		}
		if s.key == 0 {
			if (t.n+1)*4 > len(t.slots)*3 {
				t.grow()
				return t.add(k, amount)
			}
			s.key, s.gmv = k+1, amount
			t.n++
			return amount
		}
	}
}

func (t *cellTable) grow() {
	if t.n >= cellsMax {
		panic(fmt.Sprintf("gmv: more than %d (brand, category) cells", cellsMax))
	}
	old := t.slots
	t.slots = make([]cellSlot, 2*len(old))
	t.shift--
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.key == 0 {
			continue
		}
		i := t.home(s.key - 1)
		for t.slots[i].key != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// len returns the number of cells.
func (t *cellTable) len() int { return t.n }

// all yields every cell, in slot order.
func (t *cellTable) all() iter.Seq2[uint64, int64] {
	return func(yield func(uint64, int64) bool) {
		for _, s := range t.slots {
			if s.key != 0 && !yield(s.key-1, s.gmv) {
				return
			}
		}
	}
}
