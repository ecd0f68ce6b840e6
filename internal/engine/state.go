package engine

import (
	"fmt"
	"math"
	"sync"
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

// skuState is the hot part of a SKU: what an order touches. It is kept
// small (24 bytes) because a partition holds millions.
type skuState struct {
	price     int64
	available int32
	reserved  int32
	sold      int32
	merchant  uint32 // merchant slot in the partition
}

// skuText is the descriptive part of a SKU, read only by queries. Brand
// ids and categories repeat across millions of SKUs, so they are numbers
// into the partition's table of interned strings (index 0 is "").
type skuText struct {
	id       string
	title    string
	brand    uint32
	category uint32
}

func (p *partition) brandOf(t *skuText) string    { return p.interned[t.brand] }
func (p *partition) categoryOf(t *skuText) string { return p.interned[t.category] }

type merchantState struct {
	m Merchant
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

	skus    []skuState
	skuText []skuText

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
		for i := range slab {
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
	if s.available < 0 || s.reserved < 0 || s.sold < 0 {
		panic(fmt.Sprintf("engine: partition %d sku %q (slot %d) has negative stock: available %d reserved %d sold %d",
			p.id, p.skuText[slot].id, slot, s.available, s.reserved, s.sold))
	}
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
			p.id, p.skuText[slot].id, slot, n, int64(stockTotal), p.dealCarved[slot]))
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
	p.pending = append(p.pending, po)
	p.pendingCount++
}

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
