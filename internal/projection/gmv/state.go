package gmv

import (
	"fmt"
	"math"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// state is everything the projection knows, and everything its snapshot
// holds. It is written by apply (under the projection's write lock) and
// read under the read lock.
type state struct {
	// The catalog view. brands and merchants are parallel to the rows of
	// dims[DimBrand] and dims[DimMerchant]: a brand's index is its row.
	brands    []brandInfo
	merchants []merchantInfo
	skus      []skuInfo
	skuIDs    skuIDs // the id of each row of skus
	// skuByID finds a SKU's row by its id; nil (and not kept) while every
	// SKU event and order line came with its engine slot (findSKU).
	skuByID map[string]int32
	// bySlot[p][slot] is the SKU in that slot of partition p, so that an
	// order line finds its SKU by the slot the engine resolved, without
	// hashing its id: at the peak that hash and its cache misses were a
	// fifth of the server's CPU. The entry holds the SKU's row and a copy
	// of what a placement reads of it, so that a line costs one read
	// rather than the slot's and then the row's: at the peak each was a
	// cache miss.
	bySlot [][]slotEntry
	// lastMerchant and lastCategory are the rows of the last SKU event's
	// merchant and category (-1 before one): a catalog lists a merchant's
	// SKUs together, and those of a brand, so most SKU events compare an
	// id instead of hashing it.
	lastMerchant, lastCategory int32
	// skusStale is set when a brand's country or a merchant's kind or
	// industry changed after SKUs were indexed (or after a snapshot load):
	// the next placement derives the SKUs' copies of them again.
	skusStale bool

	dims [dimCount]dim

	// pending is the attribution of each order placed and not yet paid,
	// cancelled or expired; wide holds the lines past inlineLines of the
	// few orders that have more.
	pending *projection.Pending[pendingOrder]
	wide    map[engine.OrderID][]line
	// payQueue holds the record's latest payments of orders in their
	// pending window, applied together (flushPays) at the record's end, at
	// payBatch of them, or before any event they do not commute with. Not
	// in the snapshot: a snapshot is taken between records, when it is
	// empty.
	payQueue []queuedPay
	// touched absorbs the loads by which flushPays brings the queued
	// orders' values and rows into the cache; nothing reads it.
	touched int64

	// cells is the GMV of each (brand, category) pair sold, keyed by
	// cellKey, for the category leaders; leaders[c] is the brand leading
	// category c (largest GMV, the smaller brand id on a tie), -1 before
	// any sale.
	cells   cellTable
	leaders []int32
	// leaderGMV[c] is the GMV of category c's leading cell (0 before any
	// sale), so that a sale of another brand compares with it instead of
	// looking the leader's cell up again.
	leaderGMV []int64

	gmv          int64 // fen, paid orders
	placed, paid uint64

	milestones        []Milestone
	reached           map[milestoneKey]struct{}
	milestonesDropped uint64

	series [SeriesSeconds]second
	// scratch absorbs events too old for the series; nothing reads it.
	scratch second
	// peak is the busiest second by placed orders so far (unix 0 before
	// any), checked on each placement: the series keeps an hour of
	// seconds, enough for events that arrive a little out of time order,
	// and the peak is exact as long as every placement of a second lands
	// within that hour of the newest second seen. On a tie the second
	// that reached the count first keeps the title.
	peak second

	position uint64 // journal position of the last committed record
	at       int64  // its event time, unix ns

	counts counts // derived from the rest (counts.go)

	// catalogGen counts the catalog events applied, so that a snapshot
	// knows whether the catalog chunk of the last durable one still holds
	// the catalog (snapshot.go); catalogStored is that chunk, and
	// catalogWritten the one of a WriteSnapshot not yet durable. Not in the
	// snapshot; the runner's goroutine only.
	catalogGen                    uint64
	catalogStored, catalogWritten catalogChunk
}

type brandInfo struct {
	name          string
	country       int32 // row of dims[DimCountry]
	firstFestival int32
	emerging      bool
	lastYearGMV   int64 // fen
}

type merchantInfo struct {
	name     string
	kind     int32 // row of dims[DimKind]
	industry int32 // row of dims[DimIndustry]
	// brand is the row of the merchant's own brand, -1 if it has none, it
	// was not known when the merchant was put, or the state was loaded
	// (not in the snapshot): most SKUs are of their merchant's brand, whose
	// id they then compare instead of hashing.
	brand int32
}

type skuInfo struct {
	brand     int32
	category  int32
	partition int32  // the engine's partition of the SKU
	slot      uint32 // its slot there
	merchant  int32  // its merchant's row, -1 if unknown
	// country (the brand's), kind and industry (the merchant's, -1 without
	// one) are copies, derived (derive) so that a placement reads one SKU
	// entry per line instead of the SKU's, its brand's and its merchant's:
	// at the peak each was a cache miss.
	country, kind, industry int32
}

// skuHot is what a placement reads of a line's SKU.
type skuHot struct {
	brand, category, country, merchant, kind, industry int32
}

func (s *skuInfo) hot() skuHot {
	return skuHot{brand: s.brand, category: s.category, country: s.country, merchant: s.merchant, kind: s.kind, industry: s.industry}
}

// slotEntry is an entry of bySlot: the row+1 of the SKU in the slot (0:
// none) and a copy of the row's skuHot, kept in step by indexSlot. It is
// 32 bytes, so that no entry straddles two cache lines.
type slotEntry struct {
	skuHot
	row int32
	_   int32
}

// derive copies the SKU's brand's country and merchant's kind and industry.
func (s *skuInfo) derive(st *state) {
	s.country = st.brands[s.brand].country
	s.kind, s.industry = -1, -1
	if s.merchant >= 0 {
		m := &st.merchants[s.merchant]
		s.kind, s.industry = m.kind, m.industry
	}
}

// deriveSKUs derives every SKU's copies again (skusStale), and the slots'
// copies of them.
func (st *state) deriveSKUs() {
	for i := range st.skus {
		st.skus[i].derive(st)
	}
	for _, part := range st.bySlot {
		for i := range part {
			if e := &part[i]; e.row != 0 {
				e.skuHot = st.skus[e.row-1].hot()
			}
		}
	}
	st.skusStale = false
}

// partitionsMax and skuSlotsMax bound the slot index: the engine's
// partitions, and SKUs per partition far above any catalog.
const (
	partitionsMax = 4096
	skuSlotsMax   = 1 << 28
)

// line is the part of a pending order's total that goes to one brand,
// category and country (the brand's, at placement).
type line struct {
	brand, category, country int32
	amount                   int64 // fen
}

// pendingOrder is a pending order's attribution, decided at placement. It
// stays under 128 bytes so that the map keeps it inline.
type pendingOrder struct {
	merchant, channel, region, industry, kind int32
	lines                                     int32 // distinct lines, inline first
	inline                                    [inlineLines]line
}

// second is one second of the series: placed orders and paid GMV whose
// event time fell in it.
type second struct {
	unix   int64 // the second, unix seconds; 0: empty
	placed uint64
	paid   uint64
	gmv    int64 // fen
}

// Milestone is a brand or channel reaching a GMV threshold.
type Milestone struct {
	Kind      Dimension // DimBrand or DimChannel
	Key       string    // brand id or channel
	Threshold int64     // fen
	ReachedAt int64     // event time of the payment that reached it, unix ns
}

type milestoneKey struct {
	kind      Dimension
	row       int32
	threshold int64
}

// dim is one breakdown: its keys interned to rows.
type dim struct {
	keys   []string
	index  map[string]int32
	totals []total
}

// total is a row's sums. A payment adds to both, so they share an entry:
// at the peak, the payment path's reads of a merchant's or a brand's row
// were a cache miss each, two when the sums were in separate slices.
type total struct {
	gmv    int64  // fen
	orders uint64 // paid orders with a line in the row
	// recheck is, in a brand's row, the GMV (fen) at or past which a
	// payment can change the brand's counts (counts.go; math.MinInt64
	// before its first sale), unused in the other dimensions' rows. It is
	// in the row rather than a slice of its own because every paid line
	// compares it with the GMV it just added: at the peak its own slice
	// was one more cache miss per line.
	recheck int64
}

func newState() *state {
	st := &state{
		pending: projection.NewPending[pendingOrder](),
		wide:    make(map[engine.OrderID][]line),
		cells:   newCellTable(),
		reached: make(map[milestoneKey]struct{}),
		counts:  counts{domestic: -1},

		lastMerchant: -1,
		lastCategory: -1,
	}
	for i := range st.dims {
		st.dims[i].index = make(map[string]int32)
	}
	return st
}

// row returns key's row, adding it (a copy of key) if new.
func (d *dim) row(key string) int32 {
	if r, ok := d.index[key]; ok {
		return r
	}
	return d.add(internKey(key))
}

func (d *dim) add(key string) int32 {
	r := int32(len(d.keys))
	d.keys = append(d.keys, key)
	d.index[key] = r
	d.totals = append(d.totals, total{})
	return r
}

// openRow is row for the dimensions whose keys come from orders: past
// keysMax rows, new keys go to OtherKey.
func (d *dim) openRow(key string, keysMax int) int32 {
	if r, ok := d.index[key]; ok {
		return r
	}
	if len(d.keys) >= keysMax {
		if r, ok := d.index[OtherKey]; ok {
			return r
		}
		return d.add(OtherKey)
	}
	return d.add(internKey(key))
}

func cellKey(brand, category int32) uint64 { return uint64(brand)<<32 | uint64(uint32(category)) }

// apply folds one event into the state. The payments it queues are applied
// by the end of the event that ends their record (ev.Last), or by flushPays.
func (st *state) apply(cfg *Config, ev *engine.Event) error {
	if err := st.applyEvent(cfg, ev); err != nil {
		return err
	}
	if ev.Last {
		st.flushPays(cfg)
	}
	return nil
}

func (st *state) applyEvent(cfg *Config, ev *engine.Event) error {
	switch ev.Kind {
	case engine.EventOrderPlaced:
		return st.place(cfg, ev)
	case engine.EventOrderPaid:
		return st.queuePay(cfg, ev)
	case engine.EventBrandUpserted, engine.EventMerchantUpserted, engine.EventSKUUpserted, engine.EventOrderCancelled, engine.EventOrderExpired:
		// Each of them reads or changes what a queued payment does.
		st.flushPays(cfg)
	}
	switch ev.Kind {
	case engine.EventBrandUpserted:
		st.catalogGen++
		st.upsertBrand(cfg, &ev.Brand)
	case engine.EventMerchantUpserted:
		st.catalogGen++
		st.upsertMerchant(&ev.Merchant)
	case engine.EventSKUUpserted:
		st.catalogGen++
		return st.upsertSKU(&ev.SKU, ev.Partition, ev.SKUSlot)
	case engine.EventOrderCancelled, engine.EventOrderExpired:
		po, ok := st.pending.Take(ev.OrderID)
		if !ok {
			return fmt.Errorf("%w: %v of order %v, which is not pending", ErrInconsistent, ev.Kind, ev.OrderID)
		}
		if po.lines > inlineLines {
			delete(st.wide, ev.OrderID)
		}
	}
	return nil
}

func (st *state) upsertBrand(cfg *Config, b *engine.Brand) {
	r := st.dims[DimBrand].row(b.ID)
	if int(r) == len(st.brands) {
		st.brands = append(st.brands, brandInfo{})
		st.counts.brandBits = append(st.counts.brandBits, 0)
		st.dims[DimBrand].totals[r].recheck = math.MinInt64
		st.counts.leads = append(st.counts.leads, 0)
	}
	bi := &st.brands[r]
	if bi.name != b.Name {
		bi.name = internKey(b.Name)
	}
	country := st.dims[DimCountry].row(b.Country)
	if country != bi.country && len(st.skus) > 0 {
		st.skusStale = true
	}
	bi.country = country
	if b.Country == DomesticCountry {
		st.counts.domestic = bi.country
	}
	bi.firstFestival = b.FirstFestival
	bi.emerging = b.Emerging
	st.counts.lastYearGMV += b.LastYearGMV - bi.lastYearGMV
	bi.lastYearGMV = b.LastYearGMV
	st.refreshBrand(cfg, r)
}

func (st *state) upsertMerchant(m *engine.Merchant) {
	r := st.dims[DimMerchant].row(m.ID)
	if int(r) == len(st.merchants) {
		st.merchants = append(st.merchants, merchantInfo{kind: -1})
	}
	mi := &st.merchants[r]
	mi.brand = -1
	if b, ok := st.dims[DimBrand].index[m.BrandID]; ok && m.BrandID != "" {
		mi.brand = b
	}
	if mi.name != m.Name {
		mi.name = internKey(m.Name)
	}
	if mi.kind >= 0 {
		st.addMerchant(mi.kind, mi.industry, -1)
	}
	kind, industry := st.dims[DimKind].row(m.Kind.String()), st.dims[DimIndustry].row(m.Industry)
	if (kind != mi.kind || industry != mi.industry) && len(st.skus) > 0 {
		st.skusStale = true
	}
	mi.kind, mi.industry = kind, industry
	st.addMerchant(mi.kind, mi.industry, 1)
}

func (st *state) upsertSKU(s *engine.SKU, partition int, slot uint32) error {
	merchant := st.skuMerchant(s.MerchantID)
	brand, ok := st.skuBrand(s.BrandID, merchant)
	if !ok {
		return fmt.Errorf("%w: sku %q of unknown brand %q", ErrInconsistent, s.ID, s.BrandID)
	}
	category := st.skuCategory(s.Category)
	info := skuInfo{brand: brand, category: category, partition: int32(partition), slot: slot, merchant: merchant}
	info.derive(st)
	if r, ok := st.findSKU(s.ID, partition, slot); ok {
		if old := &st.skus[r]; old.partition != info.partition || old.slot != info.slot {
			// The slot the row had still names it (only events the engine
			// did not write move a SKU), with a copy of the row as it was:
			// the next placement copies every row to its slots again.
			st.skusStale = true
		}
		st.skus[r] = info
		st.indexSlot(r)
	} else {
		st.addSKU(s.ID, info)
	}
	return nil
}

// skuMerchant returns the row of a SKU event's merchant, -1 if unknown.
func (st *state) skuMerchant(id string) int32 {
	ms := &st.dims[DimMerchant]
	if r := st.lastMerchant; r >= 0 && ms.keys[r] == id {
		return r
	}
	r, ok := ms.index[id]
	if !ok {
		return -1
	}
	st.lastMerchant = r
	return r
}

// skuBrand returns the row of a SKU event's brand: its merchant's own
// brand when it is that one.
func (st *state) skuBrand(id string, merchant int32) (int32, bool) {
	bs := &st.dims[DimBrand]
	if merchant >= 0 {
		if r := st.merchants[merchant].brand; r >= 0 && bs.keys[r] == id {
			return r, true
		}
	}
	r, ok := bs.index[id]
	return r, ok
}

// skuCategory returns the row of a SKU event's category, adding it if new.
func (st *state) skuCategory(name string) int32 {
	cats := &st.dims[DimCategory]
	if r := st.lastCategory; r >= 0 && cats.keys[r] == name {
		return r
	}
	r := cats.row(name)
	if int(r) == len(st.leaders) {
		st.leaders = append(st.leaders, -1)
		st.leaderGMV = append(st.leaderGMV, 0)
	}
	st.lastCategory = r
	return r
}

// indexSlot makes SKU row r found by its partition and slot.
func (st *state) indexSlot(r int32) {
	s := &st.skus[r]
	p := int(s.partition)
	if p < 0 || p >= partitionsMax || s.slot >= skuSlotsMax {
		return // outside the engine's bounds: found by id only
	}
	for len(st.bySlot) <= p {
		st.bySlot = append(st.bySlot, nil)
	}
	for uint32(len(st.bySlot[p])) <= s.slot {
		st.bySlot[p] = append(st.bySlot[p], slotEntry{})
	}
	st.bySlot[p][s.slot] = slotEntry{skuHot: s.hot(), row: r + 1}
}

// lineSKU finds the SKU of an order line: by its slot in the order's
// partition when the engine resolved one (resolved is then true), else by
// its id.
func (st *state) lineSKU(partition int, it *engine.Item) (sku skuHot, resolved, ok bool) {
	if slot, ok := it.SKUSlot(); ok {
		if e := st.slotEntry(partition, slot); e != nil && e.row != 0 {
			return e.skuHot, true, true
		}
	}
	r, ok := st.skuByLineID(it.SKUID)
	if !ok {
		return skuHot{}, false, false
	}
	return st.skus[r].hot(), false, true
}

// merchantOf finds an order's merchant row, with its kind and industry:
// the merchant of its first line's SKU when the engine resolved that line
// (the engine places an order only on SKUs of its merchant, and the SKU's
// merchant here follows the same journal), else by the order's merchant
// id. first is the first line's SKU as lineSKU found it, resolved whether
// it was found by its slot, so that the placement looks that line up once.
func (st *state) merchantOf(ev *engine.Event, first *skuHot, resolved bool) (merchant, kind, industry int32, ok bool) {
	if resolved && first.merchant >= 0 {
		return first.merchant, first.kind, first.industry, true
	}
	m, ok := st.dims[DimMerchant].index[ev.MerchantID]
	if !ok {
		return 0, 0, 0, false
	}
	mi := &st.merchants[m]
	return m, mi.kind, mi.industry, true
}

// place keeps the attribution of a new order.
func (st *state) place(cfg *Config, ev *engine.Event) error {
	if len(st.payQueue) > 0 && unixSecond(ev.At) != unixSecond(st.payQueue[0].at) {
		// A placement and a payment commute only within one second of the
		// series, where neither empties the slot the other counts in.
		st.flushPays(cfg)
	}
	if st.pending.Has(ev.OrderID) {
		if len(st.payQueue) == 0 {
			return fmt.Errorf("%w: order %v placed twice", ErrInconsistent, ev.OrderID)
		}
		// A queued payment may be this order's: applied in journal order,
		// it takes the order before the placement comes.
		st.flushPays(cfg)
		if st.pending.Has(ev.OrderID) {
			return fmt.Errorf("%w: order %v placed twice", ErrInconsistent, ev.OrderID)
		}
	}
	if st.skusStale {
		st.deriveSKUs()
	}
	partition := ev.OrderID.Partition()
	var first skuHot
	firstResolved, firstOK := false, false
	if len(ev.Items) > 0 {
		first, firstResolved, firstOK = st.lineSKU(partition, &ev.Items[0])
	}
	merchant, kind, industry, ok := st.merchantOf(ev, &first, firstResolved)
	if !ok {
		return fmt.Errorf("%w: order %v of unknown merchant %q", ErrInconsistent, ev.OrderID, ev.MerchantID)
	}
	po := pendingOrder{
		merchant: merchant,
		channel:  st.dims[DimChannel].openRow(ev.Channel, cfg.OpenKeysMax),
		region:   st.dims[DimRegion].openRow(ev.Region, cfg.OpenKeysMax),
		industry: industry,
		kind:     kind,
	}
	var sum int64
	var extra []line
	for i := range ev.Items {
		it := &ev.Items[i]
		sku, ok := first, firstOK
		if i > 0 {
			sku, _, ok = st.lineSKU(partition, it)
		}
		if !ok {
			return fmt.Errorf("%w: order %v line of unknown sku %q", ErrInconsistent, ev.OrderID, it.SKUID)
		}
		l := line{brand: sku.brand, category: sku.category, country: sku.country, amount: it.Amount}
		sum += it.Amount
		extra = po.addLine(l, extra)
	}
	if sum != ev.Total {
		// The journal's decoder derives Total from the lines, so this is a
		// record the engine did not write.
		return fmt.Errorf("%w: order %v total %d fen, its lines %d", ErrInconsistent, ev.OrderID, ev.Total, sum)
	}
	st.pending.Put(ev.OrderID, po)
	if extra != nil {
		st.wide[ev.OrderID] = extra
	}
	st.placed++
	sec := st.secondOf(ev.At)
	sec.placed++
	if sec.placed > st.peak.placed && sec != &st.scratch {
		st.peak = second{unix: sec.unix, placed: sec.placed}
	}
	return nil
}

// addLine merges l into the order's lines of the same brand, category and
// country, or adds it (inline, else to extra, which it returns).
func (po *pendingOrder) addLine(l line, extra []line) []line {
	n := min(int(po.lines), inlineLines)
	for i := 0; i < n; i++ {
		if in := &po.inline[i]; in.brand == l.brand && in.category == l.category && in.country == l.country {
			in.amount += l.amount
			return extra
		}
	}
	for i := range extra {
		if in := &extra[i]; in.brand == l.brand && in.category == l.category && in.country == l.country {
			in.amount += l.amount
			return extra
		}
	}
	if po.lines < inlineLines {
		po.inline[po.lines] = l
	} else {
		extra = append(extra, l)
	}
	po.lines++
	return extra
}

// queuedPay is a payment of payQueue: its order and event time.
type queuedPay struct {
	id engine.OrderID
	at int64 // unix ns
}

// payBatch is the most payments queued: enough that their cache misses
// overlap (a core has about a dozen in flight), few enough that the queue
// stays in the cache.
const payBatch = 16

func unixSecond(at int64) int64 { return at / 1e9 }

// queuePay applies a payment, or queues it to apply with the next ones.
//
// At the peak an order is paid long after its placement, among millions of
// others, so its pending value and the rows it adds to are cache misses:
// paid one by one, each miss was waited for alone, a third of the GMV
// board's time. Queued, flushPays reads the values of a batch in a row,
// then their rows, with the misses in flight together. A queued payment
// is of an order in its pending window, not queued already, of the same
// second as the others: so it cannot fail, and it commutes with the
// placements of other orders that come before the batch is applied (a
// placement touches no total, and only the placed count of that second).
// Every other event it does not commute with (a catalog event, a
// cancellation, an expiry, a placement of the same order) applies the
// queue first, so the state is as if each payment was applied as it came.
func (st *state) queuePay(cfg *Config, ev *engine.Event) error {
	if n := len(st.payQueue); n > 0 {
		again := unixSecond(ev.At) != unixSecond(st.payQueue[0].at)
		for i := 0; i < n && !again; i++ {
			again = st.payQueue[i].id == ev.OrderID
		}
		if again {
			st.flushPays(cfg)
		}
	}
	if st.pending.Windowed(ev.OrderID) == nil {
		// Below its window, or not pending (an error, in journal order).
		st.flushPays(cfg)
		return st.pay(cfg, ev.OrderID, ev.At)
	}
	st.payQueue = append(st.payQueue, queuedPay{id: ev.OrderID, at: ev.At})
	if len(st.payQueue) >= payBatch {
		st.flushPays(cfg)
	}
	return nil
}

// flushPays applies the queued payments, in the order they came. It first
// reads each one's pending value, then the rows of its merchant and brands
// and the home slots of its cells, in loops that do nothing else, so that
// the misses overlap.
func (st *state) flushPays(cfg *Config) {
	q := st.payQueue
	if len(q) == 0 {
		return
	}
	var touched int64
	for i := range q {
		if po := st.pending.Windowed(q[i].id); po != nil {
			// The value spans two cache lines.
			touched += int64(po.merchant) + po.inline[inlineLines-1].amount
		}
	}
	merchants, brands := st.dims[DimMerchant].totals, st.dims[DimBrand].totals
	for i := range q {
		if po := st.pending.Windowed(q[i].id); po != nil {
			touched += merchants[po.merchant].gmv
			for j := range min(int(po.lines), inlineLines) {
				l := &po.inline[j]
				touched += brands[l.brand].gmv + st.cells.homeSlot(cellKey(l.brand, l.category)).gmv
			}
		}
	}
	st.touched += touched
	for i := range q {
		if err := st.pay(cfg, q[i].id, q[i].at); err != nil {
			// queuePay queues only payments of orders in their window,
			// and applies the queue before any event that could take one.
			panic(fmt.Sprintf("gmv: queued payment %d of %d: %v", i, len(q), err))
		}
	}
	st.payQueue = q[:0]
}

// pay adds a pending order's attribution to the totals and breakdowns.
func (st *state) pay(cfg *Config, id engine.OrderID, at int64) error {
	po, ok := st.pending.Take(id)
	if !ok {
		return fmt.Errorf("%w: payment of order %v, which is not pending", ErrInconsistent, id)
	}
	lines := po.inline[:min(int(po.lines), inlineLines)]
	var extra []line
	if po.lines > inlineLines {
		extra = st.wide[id]
		delete(st.wide, id)
	}
	var total int64
	for _, l := range lines {
		total += l.amount
	}
	for _, l := range extra {
		total += l.amount
	}
	st.gmv += total
	st.paid++
	sec := st.secondOf(at)
	sec.paid++
	sec.gmv += total
	st.addRow(cfg, DimMerchant, po.merchant, total, at)
	st.addRow(cfg, DimChannel, po.channel, total, at)
	st.addRow(cfg, DimRegion, po.region, total, at)
	st.addRow(cfg, DimIndustry, po.industry, total, at)
	st.addRow(cfg, DimKind, po.kind, total, at)
	st.addLines(cfg, lines, lines, extra, at)
	st.addLines(cfg, extra, lines, extra, at)
	return nil
}

// addLines adds each line's amount to its brand, category and country, and
// counts the order once in each row it touches: a row counts the order at
// the first line (of all of them, inline then extra) that names it.
func (st *state) addLines(cfg *Config, ls, inline, extra []line, at int64) {
	brands, categories, countries := st.dims[DimBrand].totals, st.dims[DimCategory].totals, st.dims[DimCountry].totals
	for i := range ls {
		l := &ls[i]
		first := firstLines(l, inline, extra)
		brand := &brands[l.brand]
		before := brand.gmv
		brand.gmv = before + l.amount
		categories[l.category].gmv += l.amount
		countries[l.country].gmv += l.amount
		if first&firstBrand != 0 {
			brand.orders++
		}
		if first&firstCategory != 0 {
			categories[l.category].orders++
		}
		if first&firstCountry != 0 {
			countries[l.country].orders++
		}
		st.milestone(cfg, DimBrand, l.brand, before, at)
		st.addCell(cfg, l.brand, l.category, l.amount)
		if brand.gmv >= brand.recheck {
			st.refreshBrand(cfg, l.brand)
		}
	}
}

const (
	firstBrand = 1 << iota
	firstCategory
	firstCountry
)

// firstLines reports for which of its rows l is the first line of the
// order naming them.
func firstLines(l *line, inline, extra []line) int {
	first := firstBrand | firstCategory | firstCountry
	for _, ls := range [2][]line{inline, extra} {
		for i := range ls {
			o := &ls[i]
			if o == l {
				return first
			}
			if o.brand == l.brand {
				first &^= firstBrand
			}
			if o.category == l.category {
				first &^= firstCategory
			}
			if o.country == l.country {
				first &^= firstCountry
			}
		}
	}
	panic("gmv: line not among its order's lines")
}

// addRow adds one paid order of amount fen to a row.
func (st *state) addRow(cfg *Config, d Dimension, r int32, amount int64, at int64) {
	dm := &st.dims[d]
	before := dm.totals[r].gmv
	dm.totals[r].gmv = before + amount
	dm.totals[r].orders++
	if d == DimChannel {
		st.milestone(cfg, d, r, before, at)
		if t := cfg.MilestoneThresholds[0]; before < t && dm.totals[r].gmv >= t {
			st.counts.channelsOver++
		}
	}
}

// milestone records the thresholds a row's GMV crossed since before.
func (st *state) milestone(cfg *Config, d Dimension, r int32, before int64, at int64) {
	after := st.dims[d].totals[r].gmv
	for _, t := range cfg.MilestoneThresholds {
		if before >= t || after < t {
			continue
		}
		k := milestoneKey{kind: d, row: r, threshold: t}
		if _, ok := st.reached[k]; ok {
			continue
		}
		if len(st.milestones) >= cfg.MilestonesMax {
			st.milestonesDropped++
			continue
		}
		st.reached[k] = struct{}{}
		st.milestones = append(st.milestones, Milestone{Kind: d, Key: st.dims[d].keys[r], Threshold: t, ReachedAt: at})
	}
}

// addCell adds to a (brand, category) pair and keeps the category's
// leader: GMV only grows, so the leader changes only to the brand that
// just sold.
func (st *state) addCell(cfg *Config, brand, category int32, amount int64) {
	v := st.cells.add(cellKey(brand, category), amount)
	lead := st.leaders[category]
	if lead == brand {
		st.leaderGMV[category] = v
		return
	}
	if lead < 0 || st.leads(brand, v, lead, st.leaderGMV[category]) {
		st.leaders[category], st.leaderGMV[category] = brand, v
		st.counts.leads[brand]++
		st.refreshBrand(cfg, brand)
		if lead >= 0 {
			st.counts.leads[lead]--
			st.refreshBrand(cfg, lead)
		}
	}
}

// leads reports whether brand a with GMV va ranks before brand b with vb:
// more GMV, or the same and the smaller id.
func (st *state) leads(a int32, va int64, b int32, vb int64) bool {
	if va != vb {
		return va > vb
	}
	keys := st.dims[DimBrand].keys
	return keys[a] < keys[b]
}

// secondOf returns the series slot of event time at (unix ns), emptied if
// it held an older second. An event more than an hour older than the slot
// it maps to, or of the epoch's first second (0 marks an empty slot), goes
// to a scratch slot that is not kept.
func (st *state) secondOf(at int64) *second {
	unix := at / 1e9
	if unix <= 0 {
		st.scratch = second{}
		return &st.scratch
	}
	s := &st.series[unix%SeriesSeconds]
	switch {
	case s.unix == unix:
	case s.unix < unix:
		*s = second{unix: unix}
	default:
		st.scratch = second{}
		return &st.scratch
	}
	return s
}
