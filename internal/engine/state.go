package engine

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// Bounds on command fields. A command outside them is rejected with
// CodeInvalidArgument before it changes anything.
const (
	quantityMax = 999
	stockMax    = 1_000_000_000     // units of one SKU
	priceMax    = 1_000_000_000_000 // fen: 10 billion CNY
	idLengthMax = 128               // bytes of an id
	textMax     = 1024              // bytes of a name or title
	stockTotal  = 1<<31 - 1         // available + reserved + sold of one SKU
	inlineItems = 3                 // items held inside a pending order
)

// skuState is a SKU in a partition: what an order touches, and where its
// text is. It is kept small (24 bytes) because a partition holds millions:
// the price (at most priceMax, 40 bits) and the merchant's slot (24 bits)
// share a word, and the SKU's id, title, brand and category are one record
// in the partition's text arena (skuRecord), found by text.
type skuState struct {
	priceMerchant uint64 // price in fen, low priceBits; merchant slot above
	available     int32
	reserved      int32
	sold          int32
	text          uint32 // offset of the SKU's record in the partition's arena
}

const (
	priceBits = 40
	priceMask = 1<<priceBits - 1
	// merchantSlotsMax bounds the merchants of one partition, so that a
	// slot fits the 24 bits skuState keeps: a new merchant past it is
	// refused with CodeOverloaded. With 64 partitions that is a billion
	// merchants.
	merchantSlotsMax = 1 << (64 - priceBits)
)

// A price fits its bits.
var _ [priceMask - priceMax]struct{}

func newSKUState(merchant uint32) skuState {
	return skuState{priceMerchant: uint64(merchant) << priceBits}
}

func (s *skuState) price() int64     { return int64(s.priceMerchant & priceMask) }
func (s *skuState) merchant() uint32 { return uint32(s.priceMerchant >> priceBits) }

// setPrice sets the price, which the caller checked to be 0 to priceMax.
func (s *skuState) setPrice(price int64) {
	if price < 0 || price > priceMax {
		panic(fmt.Sprintf("engine: sku price %d outside 0 to %d", price, int64(priceMax)))
	}
	s.priceMerchant = s.priceMerchant&^priceMask | uint64(price)
}

// skuRecord is the text of a SKU as its arena record holds it: id and
// title, brand id and category as numbers into the partition's interned
// strings (brand ids and categories repeat across millions of SKUs). The
// strings share the arena's bytes, which never change once written.
type skuRecord struct {
	id, title       string
	brand, category uint32
}

// appendSKURecord encodes r: uvarint lengths before id and title, uvarint
// brand and category numbers.
func appendSKURecord(b []byte, r *skuRecord) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.id)))
	b = append(b, r.id...)
	b = binary.AppendUvarint(b, uint64(len(r.title)))
	b = append(b, r.title...)
	b = binary.AppendUvarint(b, uint64(r.brand))
	return binary.AppendUvarint(b, uint64(r.category))
}

// skuRecordBytesMax bounds an encoded record: an id and a title of their
// longest, with their lengths, and two 32-bit numbers.
const skuRecordBytesMax = stringPrefixMax + idLengthMax + stringPrefixMax + textMax + 2*5

// record decodes the record of SKU slot.
func (p *partition) record(slot uint32) skuRecord {
	b := p.text.at(p.skus[slot].text)
	var r skuRecord
	var n int
	r.id, n = arenaString(b)
	b = b[n:]
	r.title, n = arenaString(b)
	b = b[n:]
	brand, n := binary.Uvarint(b)
	category, _ := binary.Uvarint(b[n:])
	r.brand, r.category = uint32(brand), uint32(category)
	return r
}

// arenaString reads a uvarint-prefixed string of an arena record, sharing
// its bytes, and returns the bytes it took.
func arenaString(b []byte) (string, int) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		panic(fmt.Sprintf("engine: text arena record cut short (%d bytes, length %d)", len(b), n))
	}
	if n == 0 {
		return "", k
	}
	return unsafe.String(&b[k], int(n)), k + int(n)
}

// skuID returns the id of SKU slot, sharing the arena's bytes.
func (p *partition) skuID(slot uint32) string {
	id, _ := arenaString(p.text.at(p.skus[slot].text))
	return id
}

// setRecord makes r the text of SKU slot, writing a record unless the
// SKU's record already says the same. The caller checked that the arena
// has room (textRoom).
func (p *partition) setRecord(slot uint32, r *skuRecord, fresh bool) {
	if !fresh {
		if old := p.record(slot); old == *r {
			return
		}
	}
	p.scratch = appendSKURecord(p.scratch[:0], r)
	p.skus[slot].text = p.text.append(p.scratch)
}

// textArena holds a partition's SKU records back to back in chunks that
// never move or change once written, so that strings may share them. An
// offset is a chunk's number (12 bits) and a position in it (20 bits): the
// arena holds at most textChunksMax chunks of textChunkBytes, 4 GiB, and a
// SKU whose record would not fit is refused (textRoom). The first chunks
// are small, so that a partition of few SKUs costs little.
type textArena struct {
	chunks [][]byte
}

const (
	textChunkBits       = 20
	textChunkBytes      = 1 << textChunkBits // 1 MiB
	textChunksMax       = 1 << (32 - textChunkBits)
	textFirstChunkBytes = 4 << 10
)

// Every record fits in a chunk.
var _ [textFirstChunkBytes - skuRecordBytesMax]struct{}

// room reports whether a record of n bytes can be appended.
func (a *textArena) room(n int) bool {
	if k := len(a.chunks); k > 0 {
		last := a.chunks[k-1]
		if cap(last)-len(last) >= n {
			return true
		}
	}
	return len(a.chunks) < textChunksMax
}

// append copies rec into the arena and returns its offset. The caller
// checked room.
func (a *textArena) append(rec []byte) uint32 {
	k := len(a.chunks)
	if k == 0 || cap(a.chunks[k-1])-len(a.chunks[k-1]) < len(rec) {
		if k == textChunksMax {
			panic(fmt.Sprintf("engine: text arena of %d chunks full", k))
		}
		size := textChunkBytes
		if k > 0 {
			size = min(textChunkBytes, 2*cap(a.chunks[k-1]))
		} else {
			size = textFirstChunkBytes
		}
		a.chunks = append(a.chunks, make([]byte, 0, size))
		k++
	}
	c := a.chunks[k-1]
	off := uint32(k-1)<<textChunkBits | uint32(len(c))
	a.chunks[k-1] = append(c, rec...)
	return off
}

// at returns the arena's bytes from offset on, to the end of their chunk.
func (a *textArena) at(off uint32) []byte {
	return a.chunks[off>>textChunkBits][off&(textChunkBytes-1):]
}

// bytes returns the arena's size, for the memory figures.
func (a *textArena) bytes() int {
	n := 0
	for _, c := range a.chunks {
		n += cap(c)
	}
	return n
}

type merchantState struct {
	m Merchant
	// brand is m.BrandID's number in the partition's interned strings, 0
	// until a SKU of the merchant's own brand needs it: most SKUs are of
	// their merchant's brand, and so cost no look-up of it.
	brand uint32
}

// pendingItem is one line of a pending order.
type pendingItem struct {
	slot     uint32
	quantity uint32
}

// pendingOrder is what the engine keeps of an unpaid order: enough to pay
// it (total), expire it (payBy) and release its stock (items). Up to three
// lines are held inline so that typical orders cost one map slot and no
// allocation.
type pendingOrder struct {
	total     int64
	createdAt int64
	payBy     int64
	merchant  uint32
	count     uint16 // lines, at most orderItemsMax
	deal      uint16 // the deal's slot + 1, 0 for an order on no deal
	inline    [inlineItems]pendingItem
	more      []pendingItem
}

func (o *pendingOrder) item(i int) pendingItem {
	if i < inlineItems {
		return o.inline[i]
	}
	return o.more[i-inlineItems]
}

// partition is the state of one logical partition. Only its worker touches
// it (except brands, read by other partitions' workers under brandsMu), so
// none of it is locked on the hot path.
type partition struct {
	id int

	skus []skuState
	// text holds the SKUs' records (skuRecord); scratch is the buffer a
	// record is encoded in before it is copied there.
	text    textArena
	scratch []byte
	// claimedSlot is the slot + 1 of the SKU whose id upsertSKU has just
	// put in the directory, for the evolveSKU of its event; 0 otherwise.
	claimedSlot uint32

	merchantsMu   sync.RWMutex // guards writes of merchantSlots and merchants
	merchantSlots map[string]uint32
	merchants     []merchantState

	brandsMu sync.RWMutex
	brands   map[string]*Brand

	// orders[seq-1] is the status of every order placed in this partition:
	// one byte per order, so that pay and cancel stay idempotent for the
	// whole festival. Everything else about a finished order lives in the
	// order store.
	orders []OrderStatus
	// parcelStatus[seq-1] and parcelLocation[seq-1] are the parcel of
	// order seq: its status (ParcelNone unless the order is paid) and the
	// hash of its last scan's location (0 before the first scan). They grow
	// to the highest paid order: five bytes per order (parcel.go).
	parcelStatus   []ParcelStatus
	parcelLocation []uint32
	// pending holds the unpaid orders by seq, from pendingBase on: seqs are
	// dense, so a slice indexed by seq replaces a hash map (no hashing, and
	// recent orders, the ones paid, sit next to each other in memory).
	// Finished orders leave nil holes until expiry moves pendingBase past
	// them.
	pending      []*pendingOrder
	pendingBase  uint64
	pendingCount int
	// expireCursor is the lowest seq that may still be pending: orders are
	// created with non-decreasing payBy, so expiry scans forward from here.
	expireCursor uint64
	// pendingFree recycles pendingOrder values (no allocation per order).
	pendingFree []*pendingOrder

	// keys is the memory tier of the partition's idempotency keys
	// (idempotency.go).
	keys memoryKeys

	// interned holds one copy of each brand id and category of its SKUs;
	// internIndex finds a string's number.
	interned    []string
	internIndex map[string]uint32

	soldOut soldOutSet

	// channelsMu guards channels, read by other partitions' workers when
	// a deal is put (like brands).
	channelsMu sync.RWMutex
	channels   map[string]*Channel
	// deals are the partition's deals by slot, ended ones included;
	// dealSlots finds a slot by id; dealsOpen are the slots of the deals
	// not ended, and dealEndNext the earliest end among them
	// (math.MaxInt64 when none), the one comparison a batch pays (deal.go).
	deals       []*dealState
	dealSlots   map[string]uint32
	dealsOpen   []uint32
	dealEndNext int64
	// dealCarved holds, per SKU slot, the units left in its open deals:
	// carved out of the SKU's available stock, they come back when a deal
	// ends, so they count in the SKU's stockTotal bound. A SKU without
	// such units has no entry, so the map has at most one entry per open
	// deal. Replay and snapshot load rebuild it from the deals.
	dealCarved map[uint32]int32

	// lastAt is the time of the last applied event, to keep time monotonic.
	lastAt int64
}

func newPartition(id int) *partition {
	return &partition{
		id:            id,
		merchantSlots: make(map[string]uint32),
		interned:      []string{""},
		internIndex:   map[string]uint32{"": 0},
		brands:        make(map[string]*Brand),
		pendingBase:   1,
		keys:          newMemoryKeys(),
		expireCursor:  1,
		channels:      make(map[string]*Channel),
		dealSlots:     make(map[string]uint32),
		dealCarved:    make(map[uint32]int32),
		dealEndNext:   math.MaxInt64,
	}
}

func (p *partition) nextSeq() uint64 { return uint64(len(p.orders)) + 1 }

func (p *partition) newPending() *pendingOrder {
	if len(p.pendingFree) == 0 {
		// Allocate in slabs: most orders stay pending for a while, so the
		// free list is often empty, and one allocation per order would be
		// the engine's main garbage.
		slab := make([]pendingOrder, pendingSlab)
		// Write the slab before anything reads it. Fresh memory from the
		// kernel is mapped on first use, and a page first read (by the
		// collector's scan or by touch) is mapped to the shared zero page,
		// so that its first write is a copy-on-write fault that flushes
		// the page from every core's TLB: an interprocessor interrupt,
		// about a tenth of the engine's time in fest bench before this.
		// Written first, the page is mapped once, with no flush. The
		// write is to a field without pointers: clearing the slab whole
		// would go through the write barrier, which, while the collector
		// marks, reads each pointer slot before writing it.
		for i := range slab {
			slab[i].payBy = 0
			p.pendingFree = append(p.pendingFree, &slab[i])
		}
	}
	n := len(p.pendingFree)
	o := p.pendingFree[n-1]
	p.pendingFree = p.pendingFree[:n-1]
	return o
}

const (
	pendingFreeMax = 4096
	pendingSlab    = 256
)

func (p *partition) freePending(o *pendingOrder) {
	if len(p.pendingFree) < pendingFreeMax {
		more := o.more[:0]
		*o = pendingOrder{more: more}
		p.pendingFree = append(p.pendingFree, o)
	}
}

// checkSKU panics if a SKU's books are impossible: that is a bug in the
// engine, and continuing would risk overselling.
func (p *partition) checkSKU(slot uint32) {
	s := &p.skus[slot]
	// One test for the three: the OR of the counts is negative exactly
	// when one of them is, and the check stays small enough to be inlined
	// into apply, which makes it for every line.
	if s.available|s.reserved|s.sold < 0 {
		p.negativeStock(slot)
	}
}

// negativeStock panics with the books of SKU slot, which checkSKU found
// impossible.
func (p *partition) negativeStock(slot uint32) {
	s := &p.skus[slot]
	panic(fmt.Sprintf("engine: partition %d sku %q (slot %d) has negative stock: available %d reserved %d sold %d",
		p.id, p.skuID(slot), slot, s.available, s.reserved, s.sold))
}

// stockHeld returns the units a SKU holds in all: available, reserved,
// sold and carved into its open deals. Commands keep it within stockTotal.
func (p *partition) stockHeld(slot uint32) int64 {
	s := &p.skus[slot]
	return int64(s.available) + int64(s.reserved) + int64(s.sold) + int64(p.dealCarved[slot])
}

// checkStockHeld panics if a SKU holds more than stockTotal units: ending
// its deals would then overflow its available stock.
func (p *partition) checkStockHeld(slot uint32) {
	if n := p.stockHeld(slot); n > stockTotal {
		panic(fmt.Sprintf("engine: partition %d sku %q (slot %d) holds %d units, over %d (carved into deals %d)",
			p.id, p.skuID(slot), slot, n, int64(stockTotal), p.dealCarved[slot]))
	}
}

// carve adds delta units to those of SKU slot in open deals.
func (p *partition) carve(slot uint32, delta int32) {
	n := p.dealCarved[slot] + delta
	switch {
	case n < 0:
		panic(fmt.Sprintf("engine: partition %d sku slot %d has %d units carved into deals", p.id, slot, n))
	case n == 0:
		delete(p.dealCarved, slot)
	default:
		p.dealCarved[slot] = n
	}
}

func (p *partition) updateSoldOut(slot uint32) {
	p.soldOut.set(slot, p.skus[slot].available == 0)
}

// pendingOrderAt returns the pending order seq, or nil.
func (p *partition) pendingOrderAt(seq uint64) *pendingOrder {
	if seq < p.pendingBase || seq-p.pendingBase >= uint64(len(p.pending)) {
		return nil
	}
	return p.pending[seq-p.pendingBase]
}

// addPending records the pending order seq, which must be the next order.
func (p *partition) addPending(seq uint64, po *pendingOrder) {
	if seq != p.pendingBase+uint64(len(p.pending)) {
		panic(fmt.Sprintf("engine: partition %d pending order %d added out of order (window %d+%d)", p.id, seq, p.pendingBase, len(p.pending)))
	}
	if len(p.pending) == cap(p.pending) {
		// Grow to twice the window, not by append's quarter: the window
		// also slides (removePending trims its front, and the room before
		// it is lost), so at append's growth a window of unpaid orders was
		// copied about four times per order placed, with twice it once.
		grown := make([]*pendingOrder, len(p.pending), max(2*len(p.pending), pendingWindowMin))
		// Write the whole table before the collector or the copy's write
		// barrier reads it (see newPending), as bytes: nil over nil needs
		// no barrier.
		room := grown[:cap(grown)]
		clear(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(room))), uintptr(len(room))*unsafe.Sizeof(room[0])))
		copy(grown, p.pending)
		p.pending = grown
	}
	p.pending = append(p.pending, po)
	p.pendingCount++
}

// pendingWindowMin is the smallest room the pending window is given.
const pendingWindowMin = 256

// removePending forgets the pending order seq and trims finished orders
// from the front of the window.
func (p *partition) removePending(seq uint64) {
	p.pending[seq-p.pendingBase] = nil
	p.pendingCount--
	n := 0
	for n < len(p.pending) && p.pending[n] == nil {
		n++
	}
	if n > 0 {
		p.pending = p.pending[n:]
		p.pendingBase += uint64(n)
	}
}
