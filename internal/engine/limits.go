package engine

import "github.com/fest-platform/fest/internal/journal"

// Bounds on the strings of commands that the state and the journal keep. They
// match the HTTP API's bounds (internal/server), and together with the bounds
// in state.go they give every event a static maximum size, so that no input
// can make a journal record too large. A command over one of them is answered
// CodeInvalidArgument naming the field, at the gateway, before it is applied; the
// HTTP edge checks the same constants (exported below).
const (
	channelBytesMax        = 64  // "app", "web" or "live:<channel id>"
	regionBytesMax         = 32  // e.g. "CN-ZJ"
	countryBytesMax        = 8   // ISO 3166-1 alpha-2 with room for a subdivision
	idempotencyKeyBytesMax = 255 // hashed, never stored, but bounded like the API
)

// The bounds of commands, exported so that the HTTP edge checks the same
// ones (and answers with its own field paths) instead of keeping a copy.
const (
	IDBytesMax             = idLengthMax
	TextBytesMax           = textMax
	ChannelBytesMax        = channelBytesMax
	RegionBytesMax         = regionBytesMax
	IdempotencyKeyBytesMax = idempotencyKeyBytesMax
	OrderItemsMax          = orderItemsMax
	QuantityMax            = quantityMax
	PriceMax               = priceMax   // fen
	StockMax               = stockMax   // units a SKU's stock may be set to
	StockTotalMax          = stockTotal // available + reserved + sold (+ units in open deals) of one SKU
)

// Bounds on one journal record, shared by the worker that writes records and
// the decoder that reads them: a worker closes a record before either would be
// exceeded and carries the rest of its batch into the next record, so the
// decoder never meets a record it must refuse.
const (
	// recordEventsMax is 65,536: a batch of BatchSizeMax (8,192) commands
	// emits at most 8,192 events, so only an expiry wave (ExpireBatchMax per
	// owned partition) ever reaches it, and a test can reach it with a few
	// tens of thousands of orders.
	recordEventsMax = 1 << 16
	// recordBytesMax is 16 MiB, a quarter of journal.MaxRecordBytes so the
	// journal's own refusal (which stops the engine) is never reached. It
	// holds a whole batch of typical orders (about 100 bytes each) and about
	// a thousand of the longest allowed orders.
	recordBytesMax = 16 << 20
	// recordHeaderBytes is the version byte and the u32 event count.
	recordHeaderBytes = 5
	// commandEventsMax is the most events one command emits: an order, a
	// payment or a cancellation (or the expiry it finds due), one upsert,
	// one parcel scan.
	commandEventsMax = 1
)

// Static bounds on the encoded size of one event, derived from the field
// limits: the worker checks before applying a command that a record has room
// for commandBytesMax, and asserts after it that the command stayed within it.
const (
	uvarintBytesMax    = 10 // a 64-bit uvarint or varint
	stringPrefixMax    = 3  // uvarint length of a string up to 2 MiB
	eventHeaderBytes   = 1 + 2 + uvarintBytesMax
	orderEndEventBytes = eventHeaderBytes + uvarintBytesMax

	orderLineBytesMax   = uvarintBytesMax + stringPrefixMax + idLengthMax + uvarintBytesMax + uvarintBytesMax
	orderPlacedBytesMax = eventHeaderBytes + uvarintBytesMax +
		stringPrefixMax + idLengthMax + // buyer id
		stringPrefixMax + idLengthMax + // merchant id
		stringPrefixMax + channelBytesMax +
		stringPrefixMax + regionBytesMax +
		stringPrefixMax + idLengthMax + // deal id
		uvarintBytesMax + 1 + 8 + 8 + uvarintBytesMax + // pay-by, key flag, key hash, request hash, key minted
		uvarintBytesMax + orderItemsMax*orderLineBytesMax
	skuUpsertedBytesMax = eventHeaderBytes + uvarintBytesMax +
		3*(stringPrefixMax+idLengthMax) + // id, merchant id, brand id
		2*(stringPrefixMax+textMax) + // title, category
		2*uvarintBytesMax
	brandUpsertedBytesMax = eventHeaderBytes +
		stringPrefixMax + idLengthMax + stringPrefixMax + textMax + stringPrefixMax + countryBytesMax +
		uvarintBytesMax + 1 + uvarintBytesMax
	merchantUpsertedBytesMax = eventHeaderBytes +
		2*(stringPrefixMax+idLengthMax) + // id, brand id
		2*(stringPrefixMax+textMax) + 1 + // name, industry, kind
		stringPrefixMax + regionBytesMax
	stockAdjustedBytesMax = eventHeaderBytes + uvarintBytesMax + stringPrefixMax + idLengthMax + uvarintBytesMax
	parcelScannedBytesMax = eventHeaderBytes + uvarintBytesMax + 1 + // seq, status
		stringPrefixMax + locationBytesMax + stringPrefixMax + carrierCodeBytesMax +
		uvarintBytesMax // the carrier's time

	channelPutBytesMax = eventHeaderBytes + stringPrefixMax + channelIDBytesMax +
		2*(stringPrefixMax+textMax) + 2*uvarintBytesMax // title, host, window
	dealPutBytesMax = eventHeaderBytes + uvarintBytesMax +
		3*(stringPrefixMax+idLengthMax) + // id, channel id, sku id
		5*uvarintBytesMax // price, stock, window, limit
	// dealEndedBytesMax bounds a deal's end, emitted by EndDeal or by the
	// worker's pass over closing windows.
	dealEndedBytesMax = eventHeaderBytes + uvarintBytesMax + 2*(stringPrefixMax+idLengthMax) + uvarintBytesMax
	// commandBytesMax bounds the bytes one command adds to a record.
	commandBytesMax = commandEventsMax * max(orderPlacedBytesMax, skuUpsertedBytesMax, brandUpsertedBytesMax,
		merchantUpsertedBytesMax, stockAdjustedBytesMax, orderEndEventBytes, parcelScannedBytesMax,
		channelPutBytesMax, dealPutBytesMax, dealEndedBytesMax)
)

// Compile-time checks of the bounds' relations: a negative array length does
// not compile. The record must stay well under the journal's limit, and a
// record must hold many commands, not one.
var (
	_ [journal.MaxRecordBytes - 4*recordBytesMax]struct{}
	_ [recordBytesMax - 256*commandBytesMax]struct{}
	_ [stringBytesMax - textMax]struct{}
)

// recordRoom reports whether the record being built has room for events more
// events of bytes more bytes.
func (e *emitter) recordRoom(events, bytes int) bool {
	return e.events+events <= recordEventsMax && len(e.rec)+bytes <= recordBytesMax
}
