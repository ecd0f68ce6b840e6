package engine

import (
	"errors"
	"strconv"
)

// OrderID identifies an order. Its top bits carry the partition, so pay and
// cancel route to the right worker without any lookup; the rest is the
// partition's order sequence, starting at 1. Rendered in base 36 it takes
// at most 13 characters.
type OrderID uint64

const (
	orderSeqBits  = 52
	orderSeqMask  = 1<<orderSeqBits - 1
	partitionsMax = 1 << (64 - orderSeqBits) // 4,096
)

// newOrderID builds an id; seq must be at least 1.
func newOrderID(partition int, seq uint64) OrderID {
	if seq == 0 || seq > orderSeqMask || partition < 0 || partition >= partitionsMax {
		panic("engine: order id out of range: partition " + strconv.Itoa(partition) + " seq " + strconv.FormatUint(seq, 10))
	}
	return OrderID(uint64(partition)<<orderSeqBits | seq)
}

// Partition returns the partition the order lives in.
func (id OrderID) Partition() int { return int(uint64(id) >> orderSeqBits) }

// Seq returns the order's sequence number within its partition.
func (id OrderID) Seq() uint64 { return uint64(id) & orderSeqMask }

// String renders the id in base 36.
func (id OrderID) String() string { return strconv.FormatUint(uint64(id), 36) }

// AppendText appends the id's text form to b without allocating.
func (id OrderID) AppendText(b []byte) []byte { return strconv.AppendUint(b, uint64(id), 36) }

// ErrBadOrderID is returned by ParseOrderID for a malformed id.
var ErrBadOrderID = errors.New("malformed order id")

// ParseOrderID parses the text form of an id. It checks the form only;
// whether the order exists is the engine's answer.
func ParseOrderID(s string) (OrderID, error) {
	if len(s) == 0 || len(s) > 13 {
		return 0, ErrBadOrderID
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return 0, ErrBadOrderID
		}
	}
	v, err := strconv.ParseUint(s, 36, 64)
	if err != nil || v&orderSeqMask == 0 {
		return 0, ErrBadOrderID
	}
	return OrderID(v), nil
}

// skuRef locates a SKU: its partition and its slot in that partition's
// tables. The top bit marks a resolved reference so the zero value means
// "not resolved".
type skuRef uint64

const skuRefValid = 1 << 63

func newSKURef(partition int, slot uint32) skuRef {
	return skuRef(skuRefValid | uint64(partition)<<32 | uint64(slot))
}

func (r skuRef) valid() bool    { return r&skuRefValid != 0 }
func (r skuRef) partition() int { return int(uint64(r) >> 32 & 0xffff) }
func (r skuRef) slot() uint32   { return uint32(r) }

// SKUSlot is the slot of the line's SKU in its order's partition, as the
// router resolved it: set on the lines of commands the engine applied and
// of OrderPlaced events read from the journal (the record stores it). A
// read model can index SKUs densely by (Partition, SKUSlot) of the
// SKUUpserted events instead of hashing ids on every order line. ok is
// false for a line the engine has not resolved.
func (it *Item) SKUSlot() (slot uint32, ok bool) {
	if !it.ref.valid() {
		return 0, false
	}
	return it.ref.slot(), true
}

// OrderIDOf returns the id of order seq of partition, for read models that
// index orders by partition and sequence. It panics out of range.
func OrderIDOf(partition int, seq uint64) OrderID { return newOrderID(partition, seq) }
