package engine

import (
	"errors"
	"math/bits"
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
//
// It accepts what strconv.ParseUint(s, 36, 64) does, limited to lower
// case and 13 characters, in one pass with a table: a settle batch parses
// an id per action, and strconv's general loop (a check pass, then a
// parse dividing by its variable base) cost a tenth of decoding one.
func ParseOrderID(s string) (OrderID, error) {
	if len(s) == 0 || len(s) > orderIDTextMax {
		return 0, ErrBadOrderID
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := base36Digits[s[i]]
		if d == base36NotDigit {
			return 0, ErrBadOrderID
		}
		hi, lo := bits.Mul64(v, 36)
		var carry uint64
		v, carry = bits.Add64(lo, uint64(d), 0)
		if hi|carry != 0 {
			return 0, ErrBadOrderID // beyond 2^64-1
		}
	}
	if v&orderSeqMask == 0 {
		return 0, ErrBadOrderID
	}
	return OrderID(v), nil
}

// orderIDTextMax is the length of the longest id's text: base 36 of
// 2^64-1.
const orderIDTextMax = 13

// base36NotDigit marks the bytes that are not a lower-case base 36 digit
// in base36Digits.
const base36NotDigit = 0xff

// base36Digits maps a byte to its value as a lower-case base 36 digit.
var base36Digits = func() (t [256]byte) {
	for i := range t {
		t[i] = base36NotDigit
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

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
