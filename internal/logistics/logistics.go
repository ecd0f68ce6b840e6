// Package logistics is the parcel read model: a projection of the engine's
// journal (registered with internal/projection's runner) that turns every
// paid order into a parcel, routes it (warehouse, carrier, destination, ETA)
// and keeps the history of its carrier scans for tracking.
//
// Scans are decided by the engine (engine.KindScanParcel), journaled and
// fsynced before the carrier's 200, so this package only applies decided
// facts: a parcel is created by EventOrderPaid, exactly once because the
// journal holds each payment once and the runner checkpoints the projection
// with the others; cancelled and expired orders never get one. To route a
// parcel at payment it keeps, for pending orders only, the merchant's and the
// buyer's regions from EventOrderPlaced, and each merchant's region from
// EventMerchantUpserted.
//
// A parcel's carrier, warehouse and ETA are functions of its order id, its
// origin and destination and the Config's tables, computed when read: they
// cost no memory, but a changed carrier table re-routes the parcels' views.
//
// Memory: 4 bytes per order of the journal (the index by order sequence),
// 40 bytes per parcel and 24 bytes per scan (locations and carrier codes
// interned). Bounding it by a cold tier, as the order store does, is left for
// later.
package logistics

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/projection"
)

// Defaults of Config.
const (
	DefaultStaleAfter             = 72 * time.Hour
	DefaultRateWindow             = 10 * time.Second
	DefaultDestination            = "CN"
	DefaultWarehousePrefix        = "WH-"
	defaultMerchantRegion         = "CN"
	internedMax                   = 1 << 20 // distinct locations and carrier codes deduplicated
	regionsMax                    = 1 << 16 // distinct regions (merchants' and buyers')
	rateBuckets                   = 64      // seconds of parcel creation counts kept, > RateWindow
	staleBucket                   = time.Minute
	rateWindowMax                 = rateBuckets - 2
	partitionsMax                 = 4096
	parcelIndexNone        uint32 = 0
)

// Config configures the projection.
type Config struct {
	// StaleAfter is how long a parcel may go without a scan before it is
	// stale (default 72h, of the clock below). Delivered and returned
	// parcels are never stale.
	StaleAfter time.Duration
	// Carriers is the carrier table (default DefaultCarriers()).
	Carriers []Carrier
	// Transit overrides DefaultTransit for the routes it names.
	Transit map[Route]time.Duration
	// Warehouses names the warehouse of an origin region; a region not
	// listed ships from "WH-" and the region.
	Warehouses map[string]string
	// RateWindow is the span of event time parcels_per_second averages
	// over (default 10s, at most 62s).
	RateWindow time.Duration
	// Now is the clock staleness and rates are judged by, in unix
	// nanoseconds: the engine's clock in fest serve. Nil: the time of the
	// last event applied, so that a replay judges as the journal did.
	Now func() int64
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.StaleAfter < 0 {
		return fmt.Errorf("logistics config: StaleAfter %v is negative", c.StaleAfter)
	}
	if c.RateWindow < 0 || c.RateWindow > rateWindowMax*time.Second {
		return fmt.Errorf("logistics config: RateWindow %v is not between 0 and %ds", c.RateWindow, rateWindowMax)
	}
	seen := map[string]bool{}
	for i, cr := range c.Carriers {
		switch {
		case cr.Code == "":
			return fmt.Errorf("logistics config: carrier %d has no code", i)
		case seen[cr.Code]:
			return fmt.Errorf("logistics config: carrier %q listed twice", cr.Code)
		case cr.Share <= 0:
			return fmt.Errorf("logistics config: carrier %q has share %d, not positive", cr.Code, cr.Share)
		}
		seen[cr.Code] = true
	}
	for r, d := range c.Transit {
		if d <= 0 {
			return fmt.Errorf("logistics config: transit %s to %s of %v is not positive", r.From, r.To, d)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if len(c.Carriers) == 0 {
		c.Carriers = DefaultCarriers()
	}
	if c.RateWindow == 0 {
		c.RateWindow = DefaultRateWindow
	}
	return c
}

// ErrNotFound is returned for an order that has no parcel (not paid).
var ErrNotFound = errors.New("no parcel")

// errInconsistent wraps an event the journal cannot hold: the projection
// stops (reads answer 503) rather than serve a wrong parcel.
var errInconsistent = errors.New("logistics: event inconsistent with the parcels")

// Parcel is a parcel as read: a copy, safe to keep.
type Parcel struct {
	OrderID     engine.OrderID
	Status      engine.ParcelStatus
	Carrier     string // the carrier's code
	CarrierName string
	Warehouse   string
	Origin      string // the merchant's region
	Destination string // the buyer's region
	CreatedAt   int64  // unix ns: the payment
	ETA         int64  // unix ns
	LastScanAt  int64  // unix ns, engine time of the last scan (CreatedAt before any)
	Stale       bool
	// Events are the parcel's history, oldest first: its creation (status
	// created, at the warehouse, at the payment) and every scan.
	Events []Event
}

// Event is one step of a parcel's history.
type Event struct {
	Status      engine.ParcelStatus
	Location    string
	At          int64 // unix ns: the carrier's time of the scan (the payment for created)
	CarrierCode string
}

// Stats is the body of GET /v1/logistics/stats (the creation lag is the
// runner's).
type Stats struct {
	Parcels          uint64
	ByStatus         [engine.ParcelStatusCount]uint64
	ParcelsPerSecond float64
	Stale            uint64
	Scans            uint64
	AsOf             int64 // unix ns of the clock the figures are judged at
}

// parcel is what the projection keeps of one parcel: 40 bytes. It and its
// scans hold no pointers, so the garbage collector never scans the millions
// of them (at the peak it would otherwise mark them on every cycle, taking
// CPU from the engine).
type parcel struct {
	order     engine.OrderID // so that a snapshot's chunk of parcels rebuilds the index
	createdAt int64
	lastAt    int64  // engine time of the last scan, or createdAt
	lastScan  uint64 // 1 + the index of its last scan in state.scanLog; 0: none
	origin    uint16 // region numbers
	dest      uint16
	status    engine.ParcelStatus
}

// scan is one carrier scan: 24 bytes, its strings interned, linked to the
// parcel's previous scan.
type scan struct {
	at int64 // the carrier's time
	// prevStatus is 1 + the index of the parcel's previous scan (0: none)
	// shifted left by 4, and the scan's status in the low 4 bits.
	prevStatus uint64
	location   uint32
	code       uint32
}

func (s *scan) status() engine.ParcelStatus { return engine.ParcelStatus(s.prevStatus & 0xf) }
func (s *scan) prev() uint64                { return s.prevStatus >> 4 }

// scansOf returns p's scans, oldest first.
func (st *state) scansOf(p *parcel) []scan {
	var out []scan
	for n := p.lastScan; n != 0; n = st.scanLog.at(int(n - 1)).prev() {
		out = append(out, *st.scanLog.at(int(n - 1)))
	}
	slices.Reverse(out)
	return out
}

// addScan appends a scan to p's history.
func (st *state) addScan(p *parcel, s scan, status engine.ParcelStatus) {
	s.prevStatus = p.lastScan<<4 | uint64(status)
	st.scanLog.push(s)
	st.scanChunks.touch((st.scanLog.len() - 1) / scansPerChunk)
	p.lastScan = uint64(st.scanLog.len())
}

// route is what a pending order needs for its parcel.
type route struct {
	origin, dest uint16
}

// state is everything the projection holds, replaced whole by a snapshot.
type state struct {
	regions     []string
	regionIndex map[string]uint16
	// merchants numbers each merchant id; merchantRegion[n] is merchant
	// n's region number.
	merchants      map[string]uint32
	merchantRegion []uint16
	// merchantIDs[n] is merchant n's id (the map's key), and lastMerchant
	// the number of the last SKU event's merchant (-1 before one): a
	// catalog lists a merchant's SKUs together, so most SKU events compare
	// an id instead of hashing it.
	merchantIDs  []string
	lastMerchant int32
	// bySlot[partition][slot] is 1 + the region number of the merchant of
	// the SKU in that engine slot, or 0 before the first order on it: a
	// cache filled from merchants, so that an order's origin costs one
	// index instead of a hash of its merchant id and a read of its region
	// (a SKU never moves between merchants; at the peak those were two
	// cache misses per order). A merchant that changes region empties it.
	// It is not in the snapshot; a loaded state fills it again.
	bySlot  [][]uint16
	pending *projection.Pending[route]
	// index[partition] finds 1 + the parcel's number in parcels of each
	// order sequence, or 0 (indexTable).
	index   []*indexTable
	parcels chunked[parcel]
	scanLog chunked[scan] // every parcel's scans, linked per parcel
	// strs are the interned locations and carrier codes (0 is ""); only the
	// first internedMax are deduplicated by strIndex, later ones are kept
	// one per scan so that the map stays bounded.
	strs     []string
	strIndex map[string]uint32

	// places is the snapshot's encoding of the regions and the merchants
	// (appendPlaces), nil once either changed: the festival's merchants are
	// the bulk of the snapshot's own section, and they change only with
	// the catalog.
	places []byte

	// The chunks of parcels, scanLog and strs changed since the last
	// durable snapshot (chunks.go).
	parcelChunks, scanChunks, strChunks chunkTrack

	byStatus [engine.ParcelStatusCount]uint64
	scans    uint64
	// active counts the parcels not yet delivered or returned by the
	// minute of their last activity, for the stale count.
	active map[int64]uint64
	// created counts parcels created per second of event time, a ring.
	created [rateBuckets]rateBucket
	lastAt  int64 // time of the last event applied
}

type rateBucket struct {
	second int64
	n      uint64
}

func newState() *state {
	return &state{
		regions:      []string{defaultMerchantRegion},
		regionIndex:  map[string]uint16{defaultMerchantRegion: 0},
		merchants:    map[string]uint32{},
		lastMerchant: -1,
		pending:      projection.NewPending[route](),
		parcels:      newChunked[parcel](parcelsPerChunk),
		scanLog:      newChunked[scan](scansPerChunk),
		strs:         []string{""},
		strIndex:     map[string]uint32{"": 0},
		active:       map[int64]uint64{},
	}
}

// Logistics is the parcel projection.
type Logistics struct {
	cfg    Config
	router *router

	mu sync.RWMutex
	// locked is set while a record is being applied: the write lock is
	// taken at its first event and released at Commit, so reads see whole
	// records (follower goroutine only).
	locked bool
	st     *state
	// applied is the position of the last record committed, which names
	// the chunks of the next snapshot (follower goroutine only).
	applied uint64
	// written is set between a WriteSnapshot and its SnapshotDurable.
	written   bool
	writtenAt uint64
}

// New returns an empty projection; register it with the runner.
func New(cfg Config) (*Logistics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Logistics{cfg: cfg, router: newRouter(&cfg), st: newState()}, nil
}

// Name implements projection.Projection.
func (l *Logistics) Name() string { return "logistics" }

// Apply implements projection.Projection.
func (l *Logistics) Apply(ev *engine.Event) error {
	if !l.locked {
		l.mu.Lock()
		l.locked = true
	}
	return l.st.apply(ev)
}

// Commit implements projection.Projection.
func (l *Logistics) Commit(pos uint64, at int64) {
	l.applied = pos
	l.unlock()
}

// Abort implements projection.Projection.
func (l *Logistics) Abort() { l.unlock() }

func (l *Logistics) unlock() {
	if l.locked {
		l.locked = false
		l.mu.Unlock()
	}
}

// region returns the number of region s. Regions come from buyers' orders,
// so their count is bounded: past regionsMax distinct ones, a new region is
// routed and shown as "CN" (number 0), the catch-all of the defaults.
func (st *state) region(s string) (uint16, error) {
	if s == "" {
		s = DefaultDestination
	}
	if n, ok := st.regionIndex[s]; ok {
		return n, nil
	}
	if len(st.regions) >= regionsMax {
		return 0, nil
	}
	n := uint16(len(st.regions))
	s = strings.Clone(s)
	st.regions = append(st.regions, s)
	st.places = nil
	st.regionIndex[s] = n
	return n, nil
}

func (st *state) intern(s string) uint32 {
	if n, ok := st.strIndex[s]; ok {
		return n
	}
	n := uint32(len(st.strs))
	s = strings.Clone(s)
	st.strs = append(st.strs, s)
	st.strChunks.touch((len(st.strs) - 1) / stringsPerChunk)
	if len(st.strIndex) < internedMax {
		st.strIndex[s] = n
	}
	return n
}

func (st *state) apply(ev *engine.Event) error {
	if ev.At > st.lastAt {
		st.lastAt = ev.At
	}
	switch ev.Kind {
	case engine.EventMerchantUpserted:
		st.places = nil
		r, err := st.region(ev.Merchant.Region)
		if err != nil {
			return err
		}
		if n, ok := st.merchants[ev.Merchant.ID]; ok {
			if st.merchantRegion[n] != r {
				// The cache does not say which slots are the merchant's;
				// a move is rare (a catalog correction), so it starts over.
				st.bySlot = nil
			}
			st.merchantRegion[n] = r
		} else {
			st.addMerchant(strings.Clone(ev.Merchant.ID), r)
		}
	case engine.EventSKUUpserted:
		// Filled at the import rather than at each SKU's first order: at
		// the peak a first order's merchant-id hash was most of the
		// origin's cost.
		if n, ok := st.skuMerchant(ev.SKU.MerchantID); ok {
			if cache := st.slotCache(ev.Partition, ev.SKUSlot); cache != nil && st.merchantRegion[n] < math.MaxUint16 {
				*cache = st.merchantRegion[n] + 1
			}
		}
	case engine.EventOrderPlaced:
		origin, ok := st.origin(ev)
		if !ok {
			return fmt.Errorf("%w: order %v of unknown merchant %q", errInconsistent, ev.OrderID, ev.MerchantID)
		}
		dest, err := st.region(ev.Region)
		if err != nil {
			return err
		}
		if !st.pending.Put(ev.OrderID, route{origin: origin, dest: dest}) {
			return fmt.Errorf("%w: order %v placed twice", errInconsistent, ev.OrderID)
		}
	case engine.EventOrderCancelled, engine.EventOrderExpired:
		st.pending.Take(ev.OrderID)
	case engine.EventOrderPaid:
		rt, ok := st.pending.Take(ev.OrderID)
		if !ok {
			return fmt.Errorf("%w: order %v paid but not pending", errInconsistent, ev.OrderID)
		}
		return st.create(ev.OrderID, rt, ev.At)
	case engine.EventParcelScanned:
		return st.scan(ev)
	}
	return nil
}

// addMerchant numbers a new merchant.
func (st *state) addMerchant(id string, region uint16) {
	st.merchants[id] = uint32(len(st.merchantRegion))
	st.merchantRegion = append(st.merchantRegion, region)
	st.merchantIDs = append(st.merchantIDs, id)
}

// skuMerchant returns the number of a SKU event's merchant.
func (st *state) skuMerchant(id string) (uint32, bool) {
	if n := st.lastMerchant; n >= 0 && st.merchantIDs[n] == id {
		return uint32(n), true
	}
	n, ok := st.merchants[id]
	if ok {
		st.lastMerchant = int32(n)
	}
	return n, ok
}

// origin returns the region number of an order's merchant: through the
// cache of its first line's SKU slot when the engine resolved that line,
// else (and to fill the cache) by the merchant's id.
func (st *state) origin(ev *engine.Event) (uint16, bool) {
	var cache *uint16
	if len(ev.Items) > 0 {
		if slot, ok := ev.Items[0].SKUSlot(); ok {
			cache = st.slotCache(ev.OrderID.Partition(), slot)
			if cache != nil && *cache != 0 {
				return *cache - 1, true
			}
		}
	}
	n, ok := st.merchants[ev.MerchantID]
	if !ok {
		return 0, false
	}
	r := st.merchantRegion[n]
	if cache != nil && r < math.MaxUint16 {
		*cache = r + 1
	}
	return r, true
}

// slotCache returns the bySlot entry of a SKU slot, growing the cache to
// it, or nil for a slot past the engine's bounds (never cached).
func (st *state) slotCache(partition int, slot uint32) *uint16 {
	if partition < 0 || partition >= slotPartitionsMax || slot >= skuSlotsMax {
		return nil
	}
	for len(st.bySlot) <= partition {
		st.bySlot = append(st.bySlot, nil)
	}
	if slot >= uint32(len(st.bySlot[partition])) {
		st.bySlot[partition] = slices.Grow(st.bySlot[partition], int(slot)+1-len(st.bySlot[partition]))[:slot+1]
	}
	return &st.bySlot[partition][slot]
}

// slotPartitionsMax and skuSlotsMax bound the slot cache: the engine's
// partitions, and SKUs per partition far above any catalog.
const (
	slotPartitionsMax = 4096
	skuSlotsMax       = 1 << 28
)

// indexTable is one partition's index from order sequence to parcel: a
// page of indexPageSize sequences is found through a block of
// indexBlockPages page pointers, both allocated as the sequences come. So
// the index never copies itself to grow, and an order id far ahead (only a
// damaged snapshot holds one) costs a block of 4 KiB and a page of 64 KiB,
// not a table up to it.
type indexTable [indexBlocks]*[indexBlockPages]*indexPage

// indexPage maps indexPageSize consecutive order sequences: 64 KiB.
type indexPage [indexPageSize]uint32

const (
	indexPageSize   = 1 << 14
	indexBlockPages = 1 << 9
	indexBlocks     = 1 << 9
	// orderSeqIndexMax is the most order sequences the index holds per
	// partition: 4.3 billion, a hundred times the 2020 festival's orders
	// in each of 64 partitions.
	orderSeqIndexMax = indexPageSize * indexBlockPages * indexBlocks
)

// slot returns the index entry of order id, growing the index to it; nil
// for an id the index cannot hold.
func (st *state) slot(id engine.OrderID) *uint32 {
	p, seq := id.Partition(), id.Seq()
	if seq == 0 || seq > orderSeqIndexMax {
		return nil
	}
	for len(st.index) <= p {
		st.index = append(st.index, nil)
	}
	if st.index[p] == nil {
		st.index[p] = new(indexTable)
	}
	i := seq - 1
	block := &st.index[p][i/(indexPageSize*indexBlockPages)]
	if *block == nil {
		*block = new([indexBlockPages]*indexPage)
	}
	page := &(*block)[i/indexPageSize%indexBlockPages]
	if *page == nil {
		*page = new(indexPage)
	}
	return &(*page)[i%indexPageSize]
}

func (st *state) lookup(id engine.OrderID) *parcel {
	n := st.lookupIndex(id)
	if n < 0 {
		return nil
	}
	return st.parcels.at(n)
}

// lookupIndex returns the index in parcels of order id's parcel, or -1.
func (st *state) lookupIndex(id engine.OrderID) int {
	p, seq := id.Partition(), id.Seq()
	if p >= len(st.index) || st.index[p] == nil || seq == 0 || seq > orderSeqIndexMax {
		return -1
	}
	i := seq - 1
	block := st.index[p][i/(indexPageSize*indexBlockPages)]
	if block == nil {
		return -1
	}
	page := block[i/indexPageSize%indexBlockPages]
	if page == nil {
		return -1
	}
	return int(page[i%indexPageSize]) - 1
}

func (st *state) create(id engine.OrderID, rt route, at int64) error {
	s := st.slot(id)
	switch {
	case s == nil:
		return fmt.Errorf("%w: order %v past the parcel index's %d orders a partition", errInconsistent, id, uint64(orderSeqIndexMax))
	case *s != parcelIndexNone:
		return fmt.Errorf("%w: order %v paid twice", errInconsistent, id)
	}
	st.parcels.push(parcel{order: id, createdAt: at, lastAt: at, origin: rt.origin, dest: rt.dest, status: engine.ParcelCreated})
	st.parcelChunks.touch((st.parcels.len() - 1) / parcelsPerChunk)
	*s = uint32(st.parcels.len())
	st.byStatus[engine.ParcelCreated]++
	st.active[at/int64(staleBucket)]++
	sec := at / int64(time.Second)
	b := &st.created[uint64(sec)%rateBuckets]
	if b.second != sec {
		*b = rateBucket{second: sec}
	}
	b.n++
	return nil
}

func final(s engine.ParcelStatus) bool {
	return s == engine.ParcelDelivered || s == engine.ParcelReturned
}

func (st *state) scan(ev *engine.Event) error {
	p := st.lookup(ev.OrderID)
	if p == nil {
		return fmt.Errorf("%w: scan of order %v which has no parcel", errInconsistent, ev.OrderID)
	}
	if !engine.ParcelTransitionAllowed(p.status, ev.ParcelStatus) {
		return fmt.Errorf("%w: order %v scanned %v from %v", errInconsistent, ev.OrderID, ev.ParcelStatus, p.status)
	}
	st.deactivate(p)
	st.parcelChunks.touch(st.lookupIndex(ev.OrderID) / parcelsPerChunk)
	st.byStatus[p.status]--
	p.status = ev.ParcelStatus
	st.byStatus[p.status]++
	p.lastAt = max(p.lastAt, ev.At)
	if !final(p.status) {
		st.active[p.lastAt/int64(staleBucket)]++
	}
	st.addScan(p, scan{at: ev.ScanAt, location: st.intern(ev.Location), code: st.intern(ev.CarrierCode)}, ev.ParcelStatus)
	st.scans++
	return nil
}

// deactivate removes p from the activity count of its last minute.
func (st *state) deactivate(p *parcel) {
	if final(p.status) {
		return
	}
	m := p.lastAt / int64(staleBucket)
	switch n := st.active[m]; n {
	case 0:
		panic(fmt.Sprintf("logistics: parcel active at minute %d not counted", m))
	case 1:
		delete(st.active, m)
	default:
		st.active[m] = n - 1
	}
}

// now is the clock staleness is judged by.
func (l *Logistics) now() int64 {
	if l.cfg.Now != nil {
		return max(l.cfg.Now(), l.st.lastAt)
	}
	return l.st.lastAt
}

// Parcel returns the parcel of order id, or ErrNotFound.
func (l *Logistics) Parcel(id engine.OrderID) (Parcel, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	st := l.st
	p := st.lookup(id)
	if p == nil {
		return Parcel{}, ErrNotFound
	}
	origin, dest := st.regions[p.origin], st.regions[p.dest]
	c := &l.router.carriers[l.router.carrier(orderHash(uint64(id)), origin)]
	out := Parcel{
		OrderID: id, Status: p.status, Carrier: c.Code, CarrierName: c.Name,
		Warehouse: l.warehouse(origin), Origin: origin, Destination: dest,
		CreatedAt: p.createdAt, ETA: p.createdAt + int64(l.router.transitTime(origin, dest)),
		LastScanAt: p.lastAt, Stale: l.stale(p, l.now()),
	}
	scans := st.scansOf(p)
	out.Events = make([]Event, 0, 1+len(scans))
	out.Events = append(out.Events, Event{Status: engine.ParcelCreated, Location: out.Warehouse, At: p.createdAt})
	for _, s := range scans {
		out.Events = append(out.Events, Event{Status: s.status(), Location: st.strs[s.location], At: s.at, CarrierCode: st.strs[s.code]})
	}
	return out, nil
}

func (l *Logistics) stale(p *parcel, now int64) bool {
	return !final(p.status) && now-p.lastAt >= int64(l.cfg.StaleAfter)
}

func (l *Logistics) warehouse(origin string) string {
	if w, ok := l.cfg.Warehouses[origin]; ok {
		return w
	}
	return DefaultWarehousePrefix + origin
}

// Stats returns the figures of GET /v1/logistics/stats. The stale count is
// kept by the minute of each parcel's last scan: a parcel within the minute
// of turning stale is counted once that minute has wholly passed the
// threshold, so the count may trail the parcels' own flags by a minute.
func (l *Logistics) Stats() Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	st := l.st
	now := l.now()
	out := Stats{ByStatus: st.byStatus, Scans: st.scans, AsOf: now}
	for _, n := range st.byStatus {
		out.Parcels += n
	}
	threshold := now - int64(l.cfg.StaleAfter)
	for minute, n := range st.active {
		if (minute+1)*int64(staleBucket) <= threshold+1 {
			out.Stale += n
		}
	}
	window := int64(l.cfg.RateWindow / time.Second)
	nowSec := now / int64(time.Second)
	var created uint64
	for _, b := range st.created {
		// The current second is still filling: the window is the whole
		// seconds before it.
		if b.n > 0 && b.second < nowSec && b.second >= nowSec-window {
			created += b.n
		}
	}
	out.ParcelsPerSecond = float64(created) / float64(window)
	return out
}
