package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unsafe"
)

// EventKind names an event: a fact the engine has decided, recorded in the
// journal. Replay applies events, never commands, so it needs no checks and
// no clock, and projections learn everything they need from them.
type EventKind uint8

// The events.
const (
	EventNone EventKind = iota
	EventBrandUpserted
	EventMerchantUpserted
	EventSKUUpserted
	EventStockAdjusted
	EventOrderPlaced
	EventOrderPaid
	EventOrderCancelled
	EventOrderExpired
	// EventParcelScanned is a carrier's scan of a paid order's parcel
	// (OrderID, ParcelStatus, Location, CarrierCode, ScanAt). At is the
	// engine's time of the scan, ScanAt the carrier's.
	EventParcelScanned
	// EventChannelPut creates or replaces a livestream channel
	// (LiveChannel).
	EventChannelPut
	// EventDealPut creates a deal (Deal, SKUSlot): Deal.Stock units leave
	// the SKU's available stock for the deal's.
	EventDealPut
	// EventDealEnded ends a deal (DealID, SKUSlot, SKUID): its Delta unsold
	// units return to the SKU's available stock, exactly once.
	EventDealEnded
	eventKindCount
)

var eventKindNames = [...]string{"none", "brand_upserted", "merchant_upserted", "sku_upserted", "stock_adjusted", "order_placed", "order_paid", "order_cancelled", "order_expired", "parcel_scanned", "channel_put", "deal_put", "deal_ended"}

func (k EventKind) String() string {
	if int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is one decided fact. Only the fields of its Kind are meaningful.
//
// Events handed out by DecodeRecord and Follow alias the record's buffer:
// their strings and Items are valid only during the callback.
type Event struct {
	Kind      EventKind
	Partition int
	At        int64 // unix nanoseconds
	// Position is the journal position of the record holding the event (set
	// by Follow and replay; zero while deciding).
	Position uint64
	// Last is set on the last event of its record: a consumer that has
	// handled it may checkpoint at Position.
	Last bool

	Brand    Brand    // BrandUpserted
	Merchant Merchant // MerchantUpserted
	SKU      SKU      // SKUUpserted (SKU.Stock is the new available stock)
	SKUSlot  uint32   // SKUUpserted, StockAdjusted
	SKUID    string   // StockAdjusted
	Delta    int64    // StockAdjusted

	OrderID     OrderID // order events
	BuyerID     string  // OrderPlaced
	MerchantID  string  // OrderPlaced
	Channel     string
	Region      string
	DealID      string
	Items       []Item // OrderPlaced: merged lines with prices
	Total       int64  // OrderPlaced, fen
	PayBy       int64  // OrderPlaced, unix nanoseconds
	KeyHash     uint64 // OrderPlaced: idempotency key hash, 0 if none
	RequestHash uint64 // OrderPlaced
	// KeyMinted is the minting time of a time-ordered key (unix ms, see
	// idempotency.KeyTime and Store.TimeOrdered), decided when the order
	// was placed; 0 for any other key (and in version 1 records).
	KeyMinted int64 // OrderPlaced

	ParcelStatus ParcelStatus // ParcelScanned: the status scanned
	Location     string       // ParcelScanned
	CarrierCode  string       // ParcelScanned, optional
	ScanAt       int64        // ParcelScanned: the carrier's time, unix nanoseconds

	LiveChannel Channel // ChannelPut
	Deal        Deal    // DealPut
}

// The record versions: the first byte of every record the engine writes.
// Version 2 adds an OrderPlaced event's KeyMinted after its request hash;
// version 1 records are still read, their keys with KeyMinted 0. Version 3
// writes an event's time as its difference from the time of the record's
// event before it (the first event's from 0), and an OrderPlaced event's key
// hash behind a byte saying whether it has a key. The events of a batch
// share one time, which took nine bytes in each of them and now takes one,
// and an order without a key wrote eight zero bytes: together about a
// quarter of a typical order's bytes, which the journal writes and every
// follower reads. Every version is read; recordLayoutOf says which layout
// each one has, so that a new version must be given one there, or its
// records are refused rather than misread.
const (
	recordVersionV1 = 1
	recordVersionV2 = 2
	recordVersionV3 = 3
	// recordVersionDefault is the version the engine writes unless
	// Config.RecordVersion says otherwise.
	recordVersionDefault = recordVersionV3
)

// recordLayout is what a record's version says about the layout of its
// events.
type recordLayout struct {
	// relativeTimes: an event's time is its difference from the time of
	// the record's event before it (version 3).
	relativeTimes bool
	// keyFlag: an order's key hash is behind a byte saying whether it has
	// one (version 3); before, the hash is always there, 0 for none.
	keyFlag bool
	// keyMinted: a keyed order has its key's minting time (version 2 on).
	keyMinted bool
}

// recordLayoutOf returns the layout of a record of version v; ok is false
// for a version the engine does not know.
func recordLayoutOf(v byte) (layout recordLayout, ok bool) {
	switch v {
	case recordVersionV1:
		return recordLayout{}, true
	case recordVersionV2:
		return recordLayout{keyMinted: true}, true
	case recordVersionV3:
		return recordLayout{relativeTimes: true, keyFlag: true, keyMinted: true}, true
	}
	return recordLayout{}, false
}

// keyMintedMax bounds KeyMinted: a UUIDv7's or ULID's time is 48 bits.
const keyMintedMax = 1<<48 - 1

// Limits that bound decoding: a record claiming more is corrupt. The
// record's own bounds, recordEventsMax and recordBytesMax, are in limits.go:
// the worker writing records obeys the same ones.
const (
	orderItemsMax  = 100
	stringBytesMax = 1 << 16
)

// ErrBadRecord is returned when a journal record does not decode.
var ErrBadRecord = errors.New("bad journal record")

// appendRecordHeader starts a record of version (recordVersionV2 or
// recordVersionV3, the two the engine writes); the event count is patched
// in by finishRecord.
func appendRecordHeader(b []byte, version byte) []byte {
	if version != recordVersionV2 && version != recordVersionV3 {
		panic(fmt.Sprintf("engine: writing a record of version %d", version))
	}
	return append(b, version, 0, 0, 0, 0)
}

func finishRecord(b []byte, events int) {
	binary.LittleEndian.PutUint32(b[1:5], uint32(events))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendEvent encodes ev as the event after one of time prevAt in its
// record (0 for a record's first event), in the layout of version, the
// record's (see appendRecordHeader). The layout per kind is documented in
// docs/architecture.md.
func appendEvent(b []byte, ev *Event, prevAt int64, version byte) []byte {
	b = append(b, byte(ev.Kind))
	b = binary.LittleEndian.AppendUint16(b, uint16(ev.Partition))
	if version == recordVersionV2 {
		prevAt = 0 // a version 2 record's times are whole
	}
	// The difference wraps around like the reader's sum, so that every
	// pair of times round-trips.
	b = binary.AppendVarint(b, ev.At-prevAt)
	switch ev.Kind {
	case EventBrandUpserted:
		b = appendBrand(b, &ev.Brand)
	case EventMerchantUpserted:
		b = appendMerchant(b, &ev.Merchant)
	case EventSKUUpserted:
		s := &ev.SKU
		b = binary.AppendUvarint(b, uint64(ev.SKUSlot))
		b = appendString(b, s.ID)
		b = appendString(b, s.MerchantID)
		b = appendString(b, s.BrandID)
		b = appendString(b, s.Title)
		b = appendString(b, s.Category)
		b = binary.AppendVarint(b, s.Price)
		b = binary.AppendVarint(b, s.Stock)
	case EventStockAdjusted:
		b = binary.AppendUvarint(b, uint64(ev.SKUSlot))
		b = appendString(b, ev.SKUID)
		b = binary.AppendVarint(b, ev.Delta)
	case EventOrderPlaced:
		b = binary.AppendUvarint(b, ev.OrderID.Seq())
		b = appendString(b, ev.BuyerID)
		b = appendString(b, ev.MerchantID)
		b = appendString(b, ev.Channel)
		b = appendString(b, ev.Region)
		b = appendString(b, ev.DealID)
		b = binary.AppendVarint(b, ev.PayBy-ev.At)
		switch {
		case version == recordVersionV2:
			b = binary.LittleEndian.AppendUint64(b, ev.KeyHash) // 0: none
		case ev.KeyHash == 0:
			b = append(b, 0)
		default:
			b = append(b, 1)
			b = binary.LittleEndian.AppendUint64(b, ev.KeyHash)
		}
		if ev.KeyHash != 0 {
			b = binary.LittleEndian.AppendUint64(b, ev.RequestHash)
			if ev.KeyMinted < 0 || ev.KeyMinted > keyMintedMax {
				// The reader would refuse this record and recovery with it.
				panic(fmt.Sprintf("engine: encoding order %v with key minted at %d", ev.OrderID, ev.KeyMinted))
			}
			b = binary.AppendUvarint(b, uint64(ev.KeyMinted))
		}
		b = binary.AppendUvarint(b, uint64(len(ev.Items)))
		for i := range ev.Items {
			it := &ev.Items[i]
			if it.Quantity < 1 || it.Quantity > quantityMax {
				// The reader would refuse this record and recovery with it.
				panic(fmt.Sprintf("engine: encoding order %v with quantity %d of %q", ev.OrderID, it.Quantity, it.SKUID))
			}
			b = binary.AppendUvarint(b, uint64(it.ref.slot()))
			b = appendString(b, it.SKUID)
			b = binary.AppendUvarint(b, uint64(it.Quantity))
			b = binary.AppendVarint(b, it.UnitPrice)
		}
	case EventOrderPaid, EventOrderCancelled, EventOrderExpired:
		b = binary.AppendUvarint(b, ev.OrderID.Seq())
	case EventParcelScanned:
		if ev.ParcelStatus <= ParcelCreated || ev.ParcelStatus >= parcelStatusCount {
			panic(fmt.Sprintf("engine: encoding a scan of order %v with status %d", ev.OrderID, ev.ParcelStatus))
		}
		b = binary.AppendUvarint(b, ev.OrderID.Seq())
		b = append(b, byte(ev.ParcelStatus))
		b = appendString(b, ev.Location)
		b = appendString(b, ev.CarrierCode)
		b = binary.AppendVarint(b, ev.ScanAt)
	case EventChannelPut:
		ch := &ev.LiveChannel
		b = appendString(b, ch.ID)
		b = appendString(b, ch.Title)
		b = appendString(b, ch.Host)
		b = binary.AppendVarint(b, ch.StartsAt)
		b = binary.AppendVarint(b, ch.EndsAt)
	case EventDealPut:
		b = binary.AppendUvarint(b, uint64(ev.SKUSlot))
		b = appendDeal(b, &ev.Deal)
	case EventDealEnded:
		b = binary.AppendUvarint(b, uint64(ev.SKUSlot))
		b = appendString(b, ev.SKUID)
		b = appendString(b, ev.DealID)
		b = binary.AppendVarint(b, ev.Delta)
	default:
		panic("engine: encode of unknown event kind " + ev.Kind.String())
	}
	return b
}

// appendBrand encodes a brand: in brand events and in snapshots.
func appendBrand(b []byte, br *Brand) []byte {
	b = appendString(b, br.ID)
	b = appendString(b, br.Name)
	b = appendString(b, br.Country)
	b = binary.AppendVarint(b, int64(br.FirstFestival))
	if br.Emerging {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return binary.AppendVarint(b, br.LastYearGMV)
}

// appendDeal encodes a deal's terms: in deal events and in snapshots.
func appendDeal(b []byte, d *Deal) []byte {
	b = appendString(b, d.ID)
	b = appendString(b, d.ChannelID)
	b = appendString(b, d.SKUID)
	b = binary.AppendVarint(b, d.Price)
	b = binary.AppendVarint(b, d.Stock)
	b = binary.AppendVarint(b, d.StartsAt)
	b = binary.AppendVarint(b, d.EndsAt)
	return binary.AppendVarint(b, d.LimitPerBuyer)
}

// deal reads what appendDeal wrote and checks the bounds the router
// enforces; the strings alias the input.
func (d *decoder) deal(dl *Deal) {
	dl.ID = d.string()
	dl.ChannelID = d.string()
	dl.SKUID = d.string()
	dl.Price = d.varint()
	dl.Stock = d.varint()
	dl.StartsAt = d.varint()
	dl.EndsAt = d.varint()
	dl.LimitPerBuyer = d.varint()
	if d.err == nil && (!validID(dl.ID) || !validID(dl.ChannelID) || !validID(dl.SKUID) || dl.Price < 0 || dl.Price > priceMax ||
		dl.Stock < 1 || dl.Stock > stockMax || dl.EndsAt <= dl.StartsAt || dl.LimitPerBuyer < 0 || dl.LimitPerBuyer > stockMax) {
		d.fail("bad deal")
	}
}

// appendMerchant encodes a merchant: in merchant events and in snapshots.
func appendMerchant(b []byte, m *Merchant) []byte {
	b = appendString(b, m.ID)
	b = appendString(b, m.Name)
	b = appendString(b, m.BrandID)
	b = append(b, byte(m.Kind))
	b = appendString(b, m.Industry)
	return appendString(b, m.Region)
}

// decoder reads a record. Its strings alias the record (no allocation); a
// decode error is sticky and names the offset.
type decoder struct {
	b   []byte
	off int
	err error
	// layout is what the record's version says about its events (records
	// only: a snapshot has its own version, passed to decodePartition).
	layout recordLayout
	// prevAt is the time of the record's event before, which a version 3
	// event's time is relative to.
	prevAt int64
}

func (d *decoder) fail(what string) {
	d.failAt(d.off, what)
}

// failAt fails naming the field at byte off: one already read, whose
// value is wrong, is reported where it starts.
func (d *decoder) failAt(off int, what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrBadRecord, what, off)
	}
}

func (d *decoder) byte1() byte {
	if d.err != nil || d.off >= len(d.b) {
		d.fail("short byte")
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) uint16() uint16 {
	if d.err != nil || len(d.b)-d.off < 2 {
		d.fail("short uint16")
		return 0
	}
	v := binary.LittleEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil || len(d.b)-d.off < 8 {
		d.fail("short uint64")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > stringBytesMax || n > uint64(len(d.b)-d.off) {
		d.fail("bad string length")
		return ""
	}
	if n == 0 {
		return ""
	}
	s := unsafe.String(&d.b[d.off], int(n))
	d.off += int(n)
	return s
}

// brand reads what appendBrand wrote; the strings alias the input.
func (d *decoder) brand(br *Brand) {
	br.ID = d.string()
	br.Name = d.string()
	br.Country = d.string()
	br.FirstFestival = int32(d.varint())
	br.Emerging = d.byte1() == 1
	br.LastYearGMV = d.varint()
}

// merchant reads what appendMerchant wrote; the strings alias the input.
func (d *decoder) merchant(m *Merchant) {
	m.ID = d.string()
	m.Name = d.string()
	m.BrandID = d.string()
	m.Kind = MerchantKind(d.byte1())
	m.Industry = d.string()
	m.Region = d.string()
}

// decodeEvent reads one event into ev, reusing ev.Items.
func (d *decoder) event(ev *Event, partitions int) {
	items := ev.Items[:0]
	*ev = Event{Items: items}
	ev.Kind = EventKind(d.byte1())
	ev.Partition = int(d.uint16())
	ev.At = d.varint()
	if d.layout.relativeTimes {
		ev.At += d.prevAt
		d.prevAt = ev.At
	}
	if d.err == nil && (ev.Partition >= partitions) {
		d.fail("partition out of range")
	}
	switch ev.Kind {
	case EventBrandUpserted:
		d.brand(&ev.Brand)
	case EventMerchantUpserted:
		d.merchant(&ev.Merchant)
	case EventSKUUpserted:
		s := &ev.SKU
		ev.SKUSlot = uint32(d.uvarint())
		s.ID = d.string()
		s.MerchantID = d.string()
		s.BrandID = d.string()
		s.Title = d.string()
		s.Category = d.string()
		s.Price = d.varint()
		s.Stock = d.varint()
	case EventStockAdjusted:
		ev.SKUSlot = uint32(d.uvarint())
		ev.SKUID = d.string()
		ev.Delta = d.varint()
	case EventOrderPlaced:
		ev.OrderID = d.orderID(ev.Partition)
		ev.BuyerID = d.string()
		ev.MerchantID = d.string()
		ev.Channel = d.string()
		ev.Region = d.string()
		ev.DealID = d.string()
		ev.PayBy = ev.At + d.varint()
		if !d.layout.keyFlag {
			ev.KeyHash = d.uint64()
		} else {
			flagAt := d.off
			switch flag := d.byte1(); flag {
			case 0:
			case 1:
				hashAt := d.off
				if ev.KeyHash = d.uint64(); ev.KeyHash == 0 && d.err == nil {
					d.failAt(hashAt, "zero key hash")
				}
			default:
				d.failAt(flagAt, "bad key flag "+strconv.Itoa(int(flag)))
			}
		}
		if ev.KeyHash != 0 {
			ev.RequestHash = d.uint64()
			if d.layout.keyMinted {
				ev.KeyMinted = int64(d.value(keyMintedMax, "key minting time"))
			}
		}
		n := d.uvarint()
		if n == 0 || n > orderItemsMax {
			d.fail("bad item count")
			return
		}
		var total int64
		for i := 0; i < int(n) && d.err == nil; i++ {
			slot := uint32(d.uvarint())
			it := Item{ref: newSKURef(ev.Partition, slot)}
			it.SKUID = d.string()
			q := d.uvarint()
			if q == 0 || q > quantityMax {
				d.fail("bad quantity")
			}
			it.Quantity = int32(q)
			it.UnitPrice = d.varint()
			if it.UnitPrice < 0 || it.UnitPrice > priceMax {
				d.fail("bad unit price")
			}
			it.Amount = it.UnitPrice * int64(it.Quantity)
			total += it.Amount
			items = append(items, it)
		}
		ev.Items = items
		ev.Total = total
	case EventOrderPaid, EventOrderCancelled, EventOrderExpired:
		ev.OrderID = d.orderID(ev.Partition)
	case EventParcelScanned:
		ev.OrderID = d.orderID(ev.Partition)
		ev.ParcelStatus = ParcelStatus(d.byte1())
		if d.err == nil && (ev.ParcelStatus <= ParcelCreated || ev.ParcelStatus >= parcelStatusCount) {
			d.fail("bad parcel status")
		}
		ev.Location = d.string()
		ev.CarrierCode = d.string()
		if d.err == nil && (ev.Location == "" || len(ev.Location) > locationBytesMax || len(ev.CarrierCode) > carrierCodeBytesMax) {
			d.fail("bad scan location or carrier code")
		}
		ev.ScanAt = d.varint()
	case EventChannelPut:
		ch := &ev.LiveChannel
		ch.ID = d.string()
		ch.Title = d.string()
		ch.Host = d.string()
		ch.StartsAt = d.varint()
		ch.EndsAt = d.varint()
		if d.err == nil && (!validID(ch.ID) || len(ch.ID) > channelIDBytesMax || len(ch.Title) > textMax || len(ch.Host) > textMax || ch.EndsAt <= ch.StartsAt) {
			d.fail("bad channel")
		}
	case EventDealPut:
		ev.SKUSlot = uint32(d.uvarint())
		d.deal(&ev.Deal)
	case EventDealEnded:
		ev.SKUSlot = uint32(d.uvarint())
		ev.SKUID = d.string()
		ev.DealID = d.string()
		ev.Delta = d.varint()
		if d.err == nil && (ev.Delta < 0 || ev.Delta > stockMax || !validID(ev.DealID)) {
			d.fail("bad deal end")
		}
	default:
		d.fail("unknown event kind " + ev.Kind.String())
	}
}

func (d *decoder) orderID(partition int) OrderID {
	seq := d.uvarint()
	if d.err != nil {
		return 0
	}
	if seq == 0 || seq > orderSeqMask {
		d.fail("bad order sequence")
		return 0
	}
	return newOrderID(partition, seq)
}

// DecodeRecord calls fn for each event of a journal record written by the
// engine. partitions bounds the partition numbers accepted. The event and
// its strings are valid only during fn.
func DecodeRecord(rec []byte, partitions int, fn func(ev *Event) error) error {
	var ev Event
	return decodeRecord(rec, partitions, &ev, fn)
}

func decodeRecord(rec []byte, partitions int, ev *Event, fn func(ev *Event) error) error {
	if len(rec) < recordHeaderBytes {
		return fmt.Errorf("%w: short header", ErrBadRecord)
	}
	if len(rec) > recordBytesMax {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadRecord, len(rec), recordBytesMax)
	}
	layout, ok := recordLayoutOf(rec[0])
	if !ok {
		return fmt.Errorf("%w: version %d", ErrBadRecord, rec[0])
	}
	n := binary.LittleEndian.Uint32(rec[1:5])
	if n > recordEventsMax {
		return fmt.Errorf("%w: %d events", ErrBadRecord, n)
	}
	d := decoder{b: rec, off: recordHeaderBytes, layout: layout}
	for i := uint32(0); i < n; i++ {
		d.event(ev, partitions)
		if d.err != nil {
			return fmt.Errorf("event %d: %w", i, d.err)
		}
		ev.Last = i == n-1
		if err := fn(ev); err != nil {
			return err
		}
	}
	if d.off != len(rec) {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(rec)-d.off)
	}
	return nil
}
