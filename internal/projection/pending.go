package projection

import (
	"fmt"
	"iter"
	"math/bits"

	"github.com/fest-platform/fest/internal/engine"
)

// Pending is what a read model keeps for each order from its placement until
// its payment, cancellation or expiry (the GMV attribution of its lines, the
// route of its parcel).
//
// A Go map keyed by order id costs a hash, a probe that misses the cache and
// a move of the value on every insert and delete, and at the peak every
// order goes through it twice: that was a tenth of the whole server's CPU.
// Most orders, though, are paid within seconds of their placement, and a
// partition numbers its orders in sequence. So each partition keeps a ring
// of the most recent sequence numbers (a window), where an order's value is
// found by indexing; an order still pending when the window moves past it
// (an order left unpaid, a slow payer) moves to its partition's straggler
// log. The window per partition is bounded (WindowMax), so the rings use at
// most partitions × WindowMax × size of V.
//
// The window passes its orders in sequence, so the straggler log is an
// array sorted by sequence that only grows at its end: moving an order there
// is an append, where a map insert cost a hash, a probe missing the cache
// and now and then the map's growth (at the midnight peak, about one order
// in ten is left unpaid, and the map's inserts were a twentieth of the
// server's CPU). The array is kept in blocks of stragglerBlock entries, so
// that it never copies itself to grow: a slice doubling copied the whole
// log each time, and left the old one to the collector. An order is found
// in it by binary search, and taking one marks it; the log is compacted
// once most of it is taken, and gives its emptied blocks back to a few
// kept for the next to grow. An order put
// below its window (the logistics projection puts an order at its payment,
// not in sequence) goes to a map, which is left with only those.
//
// Pending is not safe for concurrent use; the follower goroutine owns it.
type Pending[V any] struct {
	parts    []pendingRing[V]
	overflow map[engine.OrderID]V
	n        int
	// spare are straggler blocks emptied by a compaction, for the next log
	// to grow (at most stragglerSpareMax).
	spare [][]straggler[V]
}

// PendingWindowMax is the most sequence numbers a partition's ring covers:
// at 583,000 orders a second over 64 partitions, about half a second of
// each partition's orders; an order paid later is found in the map.
const PendingWindowMax = 4096

// pendingWindowMin is a new partition's first window: rings grow to
// PendingWindowMax only where the orders come.
const pendingWindowMin = 64

// pendingRing is one partition's window: slot seq & (len(values)-1) holds
// the value of order seq for base <= seq < base+len(values), when its bit is
// set in present; and the orders below base that the window passed while
// still pending.
type pendingRing[V any] struct {
	values  []V
	present []uint64
	base    uint64
	// stragglers are in increasing sequence, every one below base; a
	// taken one keeps its place, its seq marked with stragglerTaken.
	stragglers stragglerLog[V]
	taken      int // stragglers marked taken
}

// stragglerLog is an array of stragglers in blocks of stragglerBlock: entry
// i is blocks[i/stragglerBlock][i%stragglerBlock], for i below n; the
// blocks past entry n are empty, kept to grow into.
type stragglerLog[V any] struct {
	blocks [][]straggler[V]
	n      int
}

// stragglerBlockShift sets the entries of a straggler block, 256: a block
// of the GMV board's values is about 26 KiB.
const (
	stragglerBlockShift = 8
	stragglerBlock      = 1 << stragglerBlockShift
	// stragglerSpareMax bounds the emptied blocks a table keeps.
	stragglerSpareMax = 16
)

func (l *stragglerLog[V]) len() int { return l.n }

// at returns entry i, which must be below len.
func (l *stragglerLog[V]) at(i int) *straggler[V] {
	return &l.blocks[i>>stragglerBlockShift][i&(stragglerBlock-1)]
}

// straggler is one order of a partition's straggler log.
type straggler[V any] struct {
	seq   uint64 // the order's sequence, | stragglerTaken once taken
	value V
}

// stragglerTaken marks a straggler taken; sequences use 52 bits.
const stragglerTaken = 1 << 63

// stragglersCompactMin is the least log compacted: below it, taken entries
// cost too little to move the rest for.
const stragglersCompactMin = 64

// NewPending returns an empty table.
func NewPending[V any]() *Pending[V] {
	return &Pending[V]{overflow: make(map[engine.OrderID]V)}
}

// Len returns the number of orders in the table.
func (t *Pending[V]) Len() int { return t.n }

// Put adds order id with value v and reports whether it was added: false
// (and nothing changed) when the order is already in the table.
func (t *Pending[V]) Put(id engine.OrderID, v V) bool {
	p, seq := id.Partition(), id.Seq()
	if seq == 0 {
		// The engine numbers orders from 1; a decoder checks the ids it
		// reads before they get here.
		panic(fmt.Sprintf("projection: pending order %v without a sequence number", id))
	}
	for len(t.parts) <= p {
		t.parts = append(t.parts, pendingRing[V]{})
	}
	r := &t.parts[p]
	if r.values == nil {
		r.values = make([]V, pendingWindowMin)
		r.present = make([]uint64, (pendingWindowMin+63)/64)
		r.base = seq
	}
	if seq < r.base {
		if _, in := r.findStraggler(seq); in {
			return false
		}
		return t.putOverflow(id, v)
	}
	if seq-r.base >= uint64(len(r.values)) {
		t.advance(p, r, seq)
	}
	i := seq & uint64(len(r.values)-1)
	if r.present[i/64]&(1<<(i%64)) != 0 {
		return false
	}
	// An order in the map has a sequence number below its ring's base
	// (bases only grow), so an order in the window is not also there.
	r.values[i] = v
	r.present[i/64] |= 1 << (i % 64)
	t.n++
	return true
}

func (t *Pending[V]) putOverflow(id engine.OrderID, v V) bool {
	if _, dup := t.overflow[id]; dup {
		return false
	}
	t.overflow[id] = v
	t.n++
	return true
}

// advance makes room for seq in partition p's window: it doubles the window
// up to PendingWindowMax, then moves the window's oldest orders still
// pending to the partition's straggler log, in sequence, after the ones it
// holds (which are below the old base).
func (t *Pending[V]) advance(p int, r *pendingRing[V], seq uint64) {
	for seq-r.base >= uint64(len(r.values)) && len(r.values) < PendingWindowMax {
		r.grow()
	}
	size := uint64(len(r.values))
	if seq-r.base < size {
		return
	}
	// The new base leaves seq as the window's newest slot; every slot in
	// [base, newBase) leaves the window (all of them when the jump is
	// wider than the window).
	newBase := seq - size + 1
	end := min(newBase, r.base+size)
	for s := r.base; s < end; s++ {
		i := s & (size - 1)
		if r.present[i/64]&(1<<(i%64)) == 0 {
			continue
		}
		t.appendStraggler(r, straggler[V]{seq: s, value: r.values[i]})
		r.present[i/64] &^= 1 << (i % 64)
		var zero V
		r.values[i] = zero
	}
	r.base = newBase
}

// appendStraggler adds e at the end of r's straggler log.
func (t *Pending[V]) appendStraggler(r *pendingRing[V], e straggler[V]) {
	l := &r.stragglers
	if l.n == len(l.blocks)<<stragglerBlockShift { // every block full
		var b []straggler[V]
		if k := len(t.spare); k > 0 {
			b, t.spare[k-1] = t.spare[k-1], nil
			t.spare = t.spare[:k-1]
		} else {
			b = make([]straggler[V], stragglerBlock)
		}
		l.blocks = append(l.blocks, b)
	}
	*l.at(l.n) = e
	l.n++
}

// grow doubles the window, laying each present value at its new slot.
func (r *pendingRing[V]) grow() {
	old, oldPresent := r.values, r.present
	size := uint64(2 * len(old))
	r.values = make([]V, size)
	r.present = make([]uint64, (size+63)/64)
	for w, word := range oldPresent {
		for word != 0 {
			j := uint64(w*64 + bits.TrailingZeros64(word))
			word &= word - 1
			// Slot j of the old ring holds the one seq of the old window
			// congruent to j, found from the base.
			seq := r.base + (j-r.base)&uint64(len(old)-1)
			i := seq & (size - 1)
			r.values[i] = old[j]
			r.present[i/64] |= 1 << (i % 64)
		}
	}
}

// findStraggler returns the index of seq's untaken entry in r's straggler
// log, and whether there is one.
func (r *pendingRing[V]) findStraggler(seq uint64) (int, bool) {
	log := &r.stragglers
	lo, hi := 0, log.n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if log.at(mid).seq&^stragglerTaken < seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < log.n && log.at(lo).seq == seq
}

// takeStraggler marks entry i of r's straggler log taken and returns its
// value, compacting the log once most of it is taken.
func (t *Pending[V]) takeStraggler(r *pendingRing[V], i int) V {
	log := &r.stragglers
	e := log.at(i)
	v := e.value
	var zero V
	e.value = zero
	e.seq |= stragglerTaken
	r.taken++
	if n := log.n; n >= stragglersCompactMin && 2*r.taken > n {
		kept := 0
		for j := range n {
			if e := log.at(j); e.seq&stragglerTaken == 0 {
				if j != kept {
					*log.at(kept) = *e
				}
				kept++
			}
		}
		for j := kept; j < n; j++ {
			*log.at(j) = straggler[V]{}
		}
		log.n = kept
		r.taken = 0
		// The log keeps its emptied blocks to grow into again, as a slice
		// keeps its capacity, but gives back what a burst of stragglers
		// left behind: to the blocks kept for the next log to grow, past
		// them to the collector.
		used := (kept + stragglerBlock - 1) >> stragglerBlockShift
		if keep := 2*used + 1; len(log.blocks) > 2*keep {
			for j := keep; j < len(log.blocks); j++ {
				if len(t.spare) < stragglerSpareMax {
					t.spare = append(t.spare, log.blocks[j])
				}
				log.blocks[j] = nil
			}
			log.blocks = log.blocks[:keep]
		}
	}
	return v
}

// slot returns the ring slot of id and whether id is in its window.
func (t *Pending[V]) slot(id engine.OrderID) (*pendingRing[V], uint64, bool) {
	p, seq := id.Partition(), id.Seq()
	if p >= len(t.parts) {
		return nil, 0, false
	}
	r := &t.parts[p]
	if r.values == nil || seq < r.base || seq-r.base >= uint64(len(r.values)) {
		return nil, 0, false
	}
	return r, seq & uint64(len(r.values)-1), true
}

// Get returns order id's value and whether the order is in the table.
func (t *Pending[V]) Get(id engine.OrderID) (V, bool) {
	r, i, in := t.slot(id)
	if in && r.present[i/64]&(1<<(i%64)) != 0 {
		return r.values[i], true
	}
	var zero V
	if in || t.aboveBase(id) {
		// Only orders below their ring's base are in the log or the map: a
		// new order, ahead of the window, costs no search.
		return zero, false
	}
	if r := t.ring(id); r != nil {
		if j, ok := r.findStraggler(id.Seq()); ok {
			return r.stragglers.at(j).value, true
		}
	}
	v, ok := t.overflow[id]
	return v, ok
}

// aboveBase reports whether id is at or past its partition's ring base.
func (t *Pending[V]) aboveBase(id engine.OrderID) bool {
	p := id.Partition()
	return p < len(t.parts) && t.parts[p].values != nil && id.Seq() >= t.parts[p].base
}

// ring returns id's partition's ring, nil when the partition has none.
func (t *Pending[V]) ring(id engine.OrderID) *pendingRing[V] {
	if p := id.Partition(); p < len(t.parts) {
		return &t.parts[p]
	}
	return nil
}

// Windowed returns where order id's value is held when it is in its
// partition's window, nil when it is not there (below the window, ahead of
// it, or not in the table). Finding it reads the window's presence bits
// only, which stay in the cache, not the value; the pointer is valid until
// the next Put or Take. It lets a caller that holds several ids read their
// values in a row, so that their cache misses overlap.
func (t *Pending[V]) Windowed(id engine.OrderID) *V {
	if r, i, in := t.slot(id); in && r.present[i/64]&(1<<(i%64)) != 0 {
		return &r.values[i]
	}
	return nil
}

// Has reports whether order id is in the table.
func (t *Pending[V]) Has(id engine.OrderID) bool {
	_, ok := t.Get(id)
	return ok
}

// Take removes order id and returns its value, and whether it was there.
func (t *Pending[V]) Take(id engine.OrderID) (V, bool) {
	if r, i, ok := t.slot(id); ok && r.present[i/64]&(1<<(i%64)) != 0 {
		v := r.values[i]
		var zero V
		r.values[i] = zero
		r.present[i/64] &^= 1 << (i % 64)
		t.n--
		return v, true
	}
	if t.aboveBase(id) {
		var zero V
		return zero, false
	}
	if r := t.ring(id); r != nil {
		if j, ok := r.findStraggler(id.Seq()); ok {
			t.n--
			return t.takeStraggler(r, j), true
		}
	}
	v, ok := t.overflow[id]
	if ok {
		delete(t.overflow, id)
		t.n--
	}
	return v, ok
}

// All yields every order in the table with its value: the map's first,
// then each partition's in sequence, its straggler log then its window.
// The table must not change (no Put or Take) until the iteration ends: a
// Take compacts the straggler log in place, under the range walking it.
func (t *Pending[V]) All() iter.Seq2[engine.OrderID, V] {
	return func(yield func(engine.OrderID, V) bool) {
		for id, v := range t.overflow {
			if !yield(id, v) {
				return
			}
		}
		for p := range t.parts {
			r := &t.parts[p]
			for j := range r.stragglers.len() {
				if e := r.stragglers.at(j); e.seq&stragglerTaken == 0 && !yield(engine.OrderIDOf(p, e.seq), e.value) {
					return
				}
			}
			size := uint64(len(r.values))
			for s := r.base; s < r.base+size; s++ {
				i := s & (size - 1)
				if r.present[i/64]&(1<<(i%64)) != 0 && !yield(engine.OrderIDOf(p, s), r.values[i]) {
					return
				}
			}
		}
	}
}

// check panics when the table's count disagrees with its contents: a bug
// in the table, for tests.
func (t *Pending[V]) check() {
	n := len(t.overflow)
	for p := range t.parts {
		r := &t.parts[p]
		for _, w := range r.present {
			n += bits.OnesCount64(w)
		}
		taken := 0
		log := &r.stragglers
		if log.n > len(log.blocks)<<stragglerBlockShift {
			panic(fmt.Sprintf("projection: partition %d holds %d stragglers in %d blocks", p, log.n, len(log.blocks)))
		}
		for i := range log.n {
			if e := log.at(i); e.seq&stragglerTaken != 0 {
				taken++
			} else if e.seq >= r.base || (i > 0 && e.seq <= log.at(i-1).seq&^stragglerTaken) {
				panic(fmt.Sprintf("projection: partition %d's straggler %d (order %d) out of sequence or not below base %d", p, i, e.seq, r.base))
			}
		}
		if taken != r.taken {
			panic(fmt.Sprintf("projection: partition %d counts %d stragglers taken, holds %d", p, r.taken, taken))
		}
		n += log.n - taken
	}
	if n != t.n {
		panic(fmt.Sprintf("projection: pending table counts %d orders, holds %d", t.n, n))
	}
}
