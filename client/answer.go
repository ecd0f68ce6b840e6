package client

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fest-platform/fest/wire"
)

// The lean decoders of the batch answers.
//
// A placed order's answer carries the whole order (buyer, merchant, items,
// currency, channel, region, times) where PlaceBatch reports its id, status
// and total; the views of wire.DecodeResponseView cost a 150-byte record
// per order, written and then read again. These decoders walk an answer in
// the shape the server writes (one field per result: the order, or the
// error) straight into the batch's Results, passing over the fields they
// do not report after checking them as the strict decoder does (a known
// field number of the right wire type, a length inside the message). An
// answer of any other shape, or one the checks refuse, is decoded again by
// wire's strict decoder, whose results or error stand: the lean one can
// only be faster, never answer differently (TestLeanDecodersAgree and
// FuzzLeanDecoders hold it to that). The rare error result is itself
// decoded by the strict decoder, on its own bytes.

// Tags of the answers' fields, one byte each: field number and wire type.
const (
	tagBytes = byte(protowire.BytesType)
	tagInt   = byte(protowire.VarintType)

	tagResponseResult = byte(wire.OrderBatchResponseResults)<<3 | tagBytes
	tagResultOrder    = byte(wire.OrderResultOrder)<<3 | tagBytes
	tagResultError    = byte(wire.OrderResultError)<<3 | tagBytes

	tagOrderID         = byte(wire.OrderOrderID)<<3 | tagBytes
	tagOrderStatus     = byte(wire.OrderStatus)<<3 | tagBytes
	tagOrderBuyerID    = byte(wire.OrderBuyerID)<<3 | tagBytes
	tagOrderMerchantID = byte(wire.OrderMerchantID)<<3 | tagBytes
	tagOrderItems      = byte(wire.OrderItems)<<3 | tagBytes
	tagOrderTotal      = byte(wire.OrderTotal)<<3 | tagInt
	tagOrderCurrency   = byte(wire.OrderCurrency)<<3 | tagBytes
	tagOrderChannel    = byte(wire.OrderChannel)<<3 | tagBytes
	tagOrderRegion     = byte(wire.OrderRegion)<<3 | tagBytes
	tagOrderDealID     = byte(wire.OrderDealID)<<3 | tagBytes
	tagOrderCreatedAt  = byte(wire.OrderCreatedAtUnixNanos)<<3 | tagInt
	tagOrderPayBy      = byte(wire.OrderPayByUnixNanos)<<3 | tagInt
	tagOrderReplayed   = byte(wire.OrderReplayed)<<3 | tagInt

	tagSettleResponseResult = byte(wire.SettleBatchResponseResults)<<3 | tagBytes
	tagSettleOrderID        = byte(wire.SettleResultOrderID)<<3 | tagBytes
	tagSettleStatus         = byte(wire.SettleResultStatus)<<3 | tagBytes
	tagSettleTotal          = byte(wire.SettleResultTotal)<<3 | tagInt
	tagSettleChangedAt      = byte(wire.SettleResultChangedAtUnixNanos)<<3 | tagInt
	tagSettleError          = byte(wire.SettleResultError)<<3 | tagBytes
)

// orderIDBytesGuess sizes the string of an answer's order ids: fest's are
// base 36 of a 64-bit number, at most 13 bytes.
const orderIDBytesGuess = 13

// cutBytes splits a length-prefixed field's value from b; ok is false when
// the length is malformed or runs past b (as protowire.ConsumeBytes).
func cutBytes(b []byte) (v, rest []byte, ok bool) {
	n, i, ok := readVarint(b, 0)
	if !ok || n > uint64(len(b)-i) {
		return nil, nil, false
	}
	return b[i : i+int(n)], b[i+int(n):], true
}

// cutVarint splits a varint from b.
func cutVarint(b []byte) (x uint64, rest []byte, ok bool) {
	x, i, ok := readVarint(b, 0)
	if !ok {
		return 0, nil, false
	}
	return x, b[i:], true
}

// readVarint reads the varint at b[i:] and returns the index after it. It
// accepts exactly what protowire.ConsumeVarint accepts (at most ten bytes,
// the tenth 0 or 1). Its one-byte case, nearly every length of the
// answers, is written out in readFields' loop: with the call to
// readLongVarint, readVarint is over the compiler's inlining budget.
func readVarint(b []byte, i int) (x uint64, next int, ok bool) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, true
	}
	return readLongVarint(b, i)
}

// readLongVarint is readVarint past its first byte's case. With eight
// bytes at hand it reads the varint without a loop: the byte that ends it
// found by a test of all eight at once, their seven-bit groups gathered
// by masks. Totals are two or three bytes, times nine.
//
//go:noinline
func readLongVarint(b []byte, i int) (x uint64, next int, ok bool) {
	if i+8 <= len(b) {
		w := binary.LittleEndian.Uint64(b[i:])
		stop := ^w & 0x8080808080808080
		n := 8
		if stop != 0 {
			n = bits.TrailingZeros64(stop)/8 + 1
			w &= 1<<(8*uint(n)) - 1 // 0 - 1, every bit, when n is 8
		}
		x = w&0x7f | w>>1&0x3f80 | w>>2&0x1fc000 | w>>3&0xfe00000 | w>>4&0x7f0000000 |
			w>>5&0x3f800000000 | w>>6&0x1fc0000000000 | w>>7&0xfe000000000000
		if stop != 0 {
			return x, i + n, true
		}
		// Eight bytes continued: the ninth ends the varint or the tenth
		// does, which may then be only 0 or 1.
		if i+8 < len(b) && b[i+8] < 0x80 {
			return x | uint64(b[i+8])<<56, i + 9, true
		}
		if i+9 < len(b) && b[i+9] <= 1 {
			return x | uint64(b[i+8]&0x7f)<<56 | uint64(b[i+9])<<63, i + 10, true
		}
		return 0, 0, false
	}
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(b) {
			return 0, 0, false
		}
		c := b[i]
		i++
		if shift == 63 && c > 1 {
			return 0, 0, false
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, i, true
		}
	}
	return 0, 0, false
}

// skipVarint returns the index after the varint at b[i:], accepting what
// readVarint accepts. The times of an order are nine-byte varints of no
// interest to the batch calls: eight bytes are tested at once for the one
// that ends the varint.
func skipVarint(b []byte, i int) (next int, ok bool) {
	if i+8 > len(b) {
		_, next, ok = readVarint(b, i)
		return next, ok
	}
	if stop := ^binary.LittleEndian.Uint64(b[i:]) & 0x8080808080808080; stop != 0 {
		return i + bits.TrailingZeros64(stop)/8 + 1, true
	}
	switch {
	case i+8 < len(b) && b[i+8] < 0x80:
		return i + 9, true
	case i+9 < len(b) && b[i+9] <= 1:
		return i + 10, true
	}
	return 0, false
}

// What the lean decoders do with a field, by its tag byte (fieldKind
// tables): an unknown tag, or a wrong wire type for its number, declines.
const (
	fieldUnknown    = iota
	fieldSkipBytes  // a length-prefixed field the decoder passes over
	fieldSkipVarint // a varint field it passes over
	fieldID         // the order id
	fieldStatus     // the status
	fieldTotal      // the total (a varint)
	fieldChangedAt  // a settle result's change time (a varint)
	fieldError      // a settle result's error (length-prefixed)
)

// orderFields and settleFields are the kinds of an Order's and of a
// SettleResult's fields.
var orderFields, settleFields = func() (o, s [256]uint8) {
	for _, t := range []byte{tagOrderBuyerID, tagOrderMerchantID, tagOrderItems, tagOrderCurrency, tagOrderChannel, tagOrderRegion, tagOrderDealID} {
		o[t] = fieldSkipBytes
	}
	for _, t := range []byte{tagOrderCreatedAt, tagOrderPayBy, tagOrderReplayed} {
		o[t] = fieldSkipVarint
	}
	o[tagOrderID], o[tagOrderStatus], o[tagOrderTotal] = fieldID, fieldStatus, fieldTotal
	s[tagSettleOrderID], s[tagSettleStatus], s[tagSettleTotal] = fieldID, fieldStatus, fieldTotal
	s[tagSettleChangedAt], s[tagSettleError] = fieldChangedAt, fieldError
	return o, s
}()

// leanFields is what the lean decoders read of one message.
type leanFields struct {
	id, status       []byte
	total, changedAt int64
	failed           bool // a settle result's error field was there
}

// readFields reads message m by kinds, a later field overwriting an
// earlier one as in the strict decoder.
func readFields(m []byte, kinds *[256]uint8) (f leanFields, ok bool) {
	for i := 0; i < len(m); {
		k := kinds[m[i]]
		i++
		switch k {
		case fieldSkipBytes, fieldID, fieldStatus, fieldError:
			// The length, its one-byte case inlined (readVarint is not).
			var n uint64
			if i < len(m) && m[i] < 0x80 {
				n = uint64(m[i])
				i++
			} else if n, i, ok = readLongVarint(m, i); !ok {
				return f, false
			}
			if n > uint64(len(m)-i) {
				return f, false
			}
			switch v := m[i : i+int(n)]; k {
			case fieldID:
				f.id = v
			case fieldStatus:
				f.status = v
			case fieldError:
				f.failed = true
			}
			i += int(n)
		case fieldSkipVarint:
			if i+8 <= len(m) {
				// Eight bytes tested at once for the one that ends
				// the varint (skipVarint, inlined).
				if stop := ^binary.LittleEndian.Uint64(m[i:]) & 0x8080808080808080; stop != 0 {
					i += bits.TrailingZeros64(stop)/8 + 1
					break
				}
			}
			if i, ok = skipVarint(m, i); !ok {
				return f, false
			}
		case fieldTotal, fieldChangedAt:
			var x uint64
			if i < len(m) && m[i] < 0x80 {
				x = uint64(m[i])
				i++
			} else if x, i, ok = readLongVarint(m, i); !ok {
				return f, false
			}
			if k == fieldTotal {
				f.total = int64(x)
			} else {
				f.changedAt = int64(x)
			}
		default:
			return f, false
		}
	}
	return f, true
}

// decodeLean decodes the answer in b.resp into b.Results, as fillResults
// does from the strict view; false when the answer is not of the lean
// shape or does not hold one result per order (the caller then decodes it
// strictly, for its results or its precise error).
func (b *OrderBatch) decodeLean() bool {
	body := b.resp
	results := slices.Grow(b.Results[:0], b.n)[:b.n]
	// The ids are appended to one buffer and each result's OrderID is a
	// string of its bytes: one allocation per answer. A buffer that
	// grows leaves the earlier ids in the old one, which they keep alive;
	// no byte is written twice, so every string stays as it was made.
	ids := make([]byte, 0, orderIDBytesGuess*b.n)
	n := 0
	for len(body) > 0 {
		if body[0] != tagResponseResult || n == len(results) {
			return false
		}
		start := len(b.resp) - len(body)
		res, rest, ok := cutBytes(body[1:])
		if !ok || len(res) == 0 {
			return false
		}
		body = rest
		inner, after, ok := cutBytes(res[1:])
		if !ok || len(after) != 0 {
			return false // several fields in one result: the strict decoder merges them
		}
		r := &results[n]
		n++
		switch res[0] {
		case tagResultOrder:
			f, ok := readFields(inner, &orderFields)
			if !ok {
				return false
			}
			r.OrderID, r.Err = "", nil
			if len(f.id) > 0 {
				at := len(ids)
				ids = append(ids, f.id...)
				r.OrderID = unsafe.String(&ids[at], len(f.id))
			}
			r.Status, r.Total = statusString(f.status), f.total
		case tagResultError:
			e, ok := b.strictError(b.resp[start : len(b.resp)-len(body)])
			if !ok {
				return false
			}
			*r = BatchResult{Err: e}
		default:
			return false
		}
	}
	if n != len(results) {
		return false
	}
	b.Results = results
	return true
}

// strictError decodes one error result, whole (its tag, length and
// body), with the strict decoder.
func (b *OrderBatch) strictError(whole []byte) (*Error, bool) {
	if err := wire.DecodeResponseView(whole, &b.one); err != nil || len(b.one.Results) != 1 || b.one.Results[0].Error == nil {
		return nil, false
	}
	e := errorOf(b.one.Results[0].Error)
	clear(b.one.Results)
	return e, true
}

// decodeLean decodes the answer in b.resp into b.Results, as settledOf
// does from the strict view; false as OrderBatch.decodeLean.
func (b *SettleBatch) decodeLean() bool {
	body := b.resp
	results := slices.Grow(b.Results[:0], len(b.acts))[:len(b.acts)]
	n := 0
	for len(body) > 0 {
		if body[0] != tagSettleResponseResult || n == len(results) {
			return false
		}
		start := len(b.resp) - len(body)
		res, rest, ok := cutBytes(body[1:])
		if !ok {
			return false
		}
		body = rest
		f, ok := readFields(res, &settleFields)
		if !ok {
			return false
		}
		r := &results[n]
		act := &b.acts[n]
		n++
		if f.failed {
			e, ok := b.strictError(b.resp[start : len(b.resp)-len(body)])
			if !ok {
				return false
			}
			*r = SettleResult{Settled: Settled{OrderID: same(f.id, act.OrderID)}, Err: e}
			continue
		}
		*r = SettleResult{Settled: Settled{OrderID: same(f.id, act.OrderID), Status: statusString(f.status), Total: f.total}}
		if f.changedAt != 0 {
			r.ChangedAt = time.Unix(0, f.changedAt).UTC()
		}
	}
	if n != len(results) {
		return false
	}
	b.Results = results
	return true
}

// strictError decodes one result, whole (its tag, length and body), with
// the strict decoder, for its error.
func (b *SettleBatch) strictError(whole []byte) (*Error, bool) {
	if err := wire.DecodeSettleResponseView(whole, &b.one); err != nil || len(b.one.Results) != 1 || b.one.Results[0].Error == nil {
		return nil, false
	}
	e := errorOf(b.one.Results[0].Error)
	clear(b.one.Results)
	return e, true
}
