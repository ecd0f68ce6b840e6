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
// (an order left unpaid, a slow payer) moves to a map beside the rings. The
// window per partition is bounded (WindowMax), so the rings use at most
// partitions × WindowMax × size of V, and the map holds only the stragglers.
//
// Pending is not safe for concurrent use; the follower goroutine owns it.
type Pending[V any] struct {
	parts    []pendingRing[V]
	overflow map[engine.OrderID]V
	n        int
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
// set in present.
type pendingRing[V any] struct {
	values  []V
	present []uint64
	base    uint64
}

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
// pending to the map.
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
		t.overflow[engine.OrderIDOf(p, s)] = r.values[i]
		r.present[i/64] &^= 1 << (i % 64)
		var zero V
		r.values[i] = zero
	}
	r.base = newBase
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
		// Only orders below their ring's base are in the map: a new order,
		// ahead of the window, costs no hash.
		return zero, false
	}
	v, ok := t.overflow[id]
	return v, ok
}

// aboveBase reports whether id is at or past its partition's ring base.
func (t *Pending[V]) aboveBase(id engine.OrderID) bool {
	p := id.Partition()
	return p < len(t.parts) && t.parts[p].values != nil && id.Seq() >= t.parts[p].base
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
	v, ok := t.overflow[id]
	if ok {
		delete(t.overflow, id)
		t.n--
	}
	return v, ok
}

// All yields every order in the table with its value: the map's stragglers
// first, then each partition's window from its oldest slot.
func (t *Pending[V]) All() iter.Seq2[engine.OrderID, V] {
	return func(yield func(engine.OrderID, V) bool) {
		for id, v := range t.overflow {
			if !yield(id, v) {
				return
			}
		}
		for p := range t.parts {
			r := &t.parts[p]
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
		for _, w := range t.parts[p].present {
			n += bits.OnesCount64(w)
		}
	}
	if n != t.n {
		panic(fmt.Sprintf("projection: pending table counts %d orders, holds %d", t.n, n))
	}
}
