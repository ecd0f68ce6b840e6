package client

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fest-platform/fest/wire"
)

// Tags of the request's fields, one byte each.
const (
	tagRequestOrder = byte(wire.OrderBatchRequestOrders)<<3 | tagBytes

	tagPlaceBuyerID        = byte(wire.PlaceOrderBuyerID)<<3 | tagBytes
	tagPlaceItems          = byte(wire.PlaceOrderItems)<<3 | tagBytes
	tagPlaceChannel        = byte(wire.PlaceOrderChannel)<<3 | tagBytes
	tagPlaceRegion         = byte(wire.PlaceOrderRegion)<<3 | tagBytes
	tagPlaceDealID         = byte(wire.PlaceOrderDealID)<<3 | tagBytes
	tagPlaceIdempotencyKey = byte(wire.PlaceOrderIdempotencyKey)<<3 | tagBytes
	tagPlaceRehearsalTime  = byte(wire.PlaceOrderRehearsalTime)<<3 | tagInt

	tagItemSKUID    = byte(wire.ItemSKUID)<<3 | tagBytes
	tagItemQuantity = byte(wire.ItemQuantity)<<3 | tagInt
)

// closeOrder closes the open order: its fields after the items, then its
// length. The bytes are wire.AppendRequest's (TestEncodeProtoIsAppendRequest)
// in one pass: wire sizes each order before writing it, a second walk over
// its strings and items, where here each order is written after a one-byte
// length that is set once the order is done; the rare order of 128 bytes or
// more is then moved up to make room for a longer one.
func (b *OrderBatch) closeOrder() {
	if !b.open {
		return
	}
	o, body := &b.tail, b.body
	body = appendStringField(body, tagPlaceChannel, o.Channel)
	body = appendStringField(body, tagPlaceRegion, o.Region)
	body = appendStringField(body, tagPlaceDealID, o.DealID)
	body = appendStringField(body, tagPlaceIdempotencyKey, o.IdempotencyKey)
	body = appendIntField(body, tagPlaceRehearsalTime, o.RehearsalTime)
	b.body = setLength(body, b.start)
	b.open, b.tail = false, wire.PlaceOrder{}
}

// appendItem appends one items field of a PlaceOrder.
func appendItem(body []byte, skuID string, quantity int32) []byte {
	n := stringFieldSize(skuID) + intFieldSize(int64(quantity))
	body = appendVarint(append(body, tagPlaceItems), uint64(n))
	body = appendStringField(body, tagItemSKUID, skuID)
	return appendIntField(body, tagItemQuantity, int64(quantity))
}

// setLength writes the length of the message that starts at body[start:],
// after the one byte left for it at body[start-1], moving the message up
// when its length takes more than that byte.
func setLength(body []byte, start int) []byte {
	n := len(body) - start
	if n < 0x80 {
		body[start-1] = byte(n)
		return body
	}
	k := protowire.SizeVarint(uint64(n))
	var room [9]byte
	body = append(body, room[:k-1]...)
	copy(body[start+k-1:], body[start:start+n])
	protowire.AppendVarint(body[:start-1], uint64(n))
	return body
}

// appendVarint appends v, its one-byte case inlined.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// appendStringField appends a string field, none when s is empty (proto3).
func appendStringField(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	if len(s) < 0x80 {
		b = append(b, tag, byte(len(s)))
	} else {
		b = protowire.AppendVarint(append(b, tag), uint64(len(s)))
	}
	return append(b, s...)
}

// appendIntField appends a varint field, none when v is 0.
func appendIntField(b []byte, tag byte, v int64) []byte {
	switch u := uint64(v); {
	case u == 0:
		return b
	case u < 1<<7:
		return append(b, tag, byte(u))
	case u < 1<<14:
		return append(b, tag, byte(u)|0x80, byte(u>>7))
	}
	return protowire.AppendVarint(append(b, tag), uint64(v))
}

func stringFieldSize(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func intFieldSize(v int64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(uint64(v))
}
