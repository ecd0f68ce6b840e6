package engine

import (
	"strconv"
	"sync/atomic"
	"unsafe"
)

// Kind names a command.
type Kind uint8

// The commands. Catalog commands and order commands travel the same path:
// through a partition's worker and the journal, so replay restores both.
const (
	KindNone Kind = iota
	// KindUpsertBrand creates or replaces a brand (Brand).
	KindUpsertBrand
	// KindUpsertMerchant creates or replaces a merchant (Merchant).
	KindUpsertMerchant
	// KindUpsertSKU creates or replaces a SKU (SKU). A new SKU starts with
	// Stock available. On an existing SKU the available stock changes only
	// by compare-and-set: Stock applies when StockExpected still equals the
	// available stock (else CodeConflict), so a catalog sync can never make
	// sold or reserved units sellable again; StockOmitted keeps it as it is.
	KindUpsertSKU
	// KindAdjustStock adds Delta to a SKU's available stock (SKUID, Delta).
	KindAdjustStock
	// KindPlaceOrder reserves stock and records a pending order (Order).
	KindPlaceOrder
	// KindPay pays a pending order (OrderID, Amount). Idempotent.
	KindPay
	// KindCancel cancels a pending order and releases its stock (OrderID).
	// Idempotent.
	KindCancel
	// KindGetSKU reads a SKU's stock figures (SKUID). It writes nothing but
	// is answered in order with the partition's other commands.
	KindGetSKU
	// KindGetOrder reads an order's status as the engine holds it (OrderID).
	KindGetOrder
	// KindScanParcel records a carrier's scan of the parcel of a paid order
	// (OrderID, Scan). The transition must be one ParcelTransitionAllowed
	// allows (else CodeInvalidState); a scan equal to the parcel's last one
	// (same status and location) succeeds and emits nothing. An order that
	// is not paid has no parcel (CodeNotFound).
	KindScanParcel
	// KindPutChannel creates or replaces a livestream channel (Channel).
	// A channel lives in partition FNV-1a("channel/" + id) mod P, like a
	// brand, and is read by the partitions of its deals.
	KindPutChannel
	// KindPutDeal creates a flash deal (Deal) in its SKU's partition,
	// carving Deal.Stock out of the SKU's available stock (CodeOutOfStock if
	// there is not enough). Putting a deal that exists with the same body
	// succeeds and changes nothing; with another body it is CodeConflict
	// (a deal's terms are fixed once buyers may have seen them).
	KindPutDeal
	// KindEndDeal ends a deal early (Deal.ID): its unsold stock returns to
	// the SKU. Ending an ended deal succeeds and changes nothing.
	KindEndDeal
	// KindGetDeal reads a deal's figures (Deal.ID).
	KindGetDeal
	kindCount
)

var kindNames = [...]string{"none", "upsert_brand", "upsert_merchant", "upsert_sku", "adjust_stock", "place_order", "pay", "cancel", "get_sku", "get_order", "scan_parcel", "put_channel", "put_deal", "end_deal", "get_deal"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MerchantKind is the kind of a merchant.
type MerchantKind uint8

// Merchant kinds.
const (
	MerchantBrandStore MerchantKind = iota + 1
	MerchantFactory
	MerchantTrader
)

var merchantKindNames = [...]string{"", "brand_store", "factory", "trader"}

func (k MerchantKind) String() string {
	if int(k) < len(merchantKindNames) {
		return merchantKindNames[k]
	}
	return ""
}

// ParseMerchantKind parses "brand_store", "factory" or "trader".
func ParseMerchantKind(s string) (MerchantKind, bool) {
	for i := 1; i < len(merchantKindNames); i++ {
		if merchantKindNames[i] == s {
			return MerchantKind(i), true
		}
	}
	return 0, false
}

// Brand is a brand of the catalog.
type Brand struct {
	ID            string
	Name          string
	Country       string // ISO 3166-1 alpha-2; CN is domestic
	FirstFestival int32  // year of the brand's first festival
	Emerging      bool
	LastYearGMV   int64 // fen
}

// Merchant is a shop; it and all its SKUs live in one partition.
type Merchant struct {
	ID       string
	Name     string
	BrandID  string
	Kind     MerchantKind
	Industry string
	Region   string // e.g. CN-ZJ
}

// SKU is a stock-keeping unit. In an upsert, Stock is the available stock
// to set; in results and events it is the available stock.
type SKU struct {
	ID         string
	MerchantID string
	BrandID    string
	Title      string
	Category   string
	Price      int64 // fen
	Stock      int64 // units

	// The stock precondition of an upsert (read only from commands; events
	// and results leave them zero). StockOmitted says the caller gave no
	// Stock: an existing SKU keeps its available stock, and a new SKU is
	// refused (a new SKU needs its stock). Otherwise, on an existing SKU,
	// StockCompared must be set and StockExpected, the available stock the
	// caller last read, must still equal the available stock for Stock to
	// apply. On a new SKU a compared StockExpected must be 0, the stock of a
	// SKU that does not exist.
	StockOmitted  bool
	StockCompared bool
	StockExpected int64 // units
}

// Channel is a livestream channel: a host selling to viewers. Orders on
// it carry the channel "live:<ID>".
type Channel struct {
	ID       string
	Title    string
	Host     string
	StartsAt int64 // unix nanoseconds
	EndsAt   int64 // unix nanoseconds, after StartsAt
}

// Deal is a flash deal: Stock units of a SKU carved out of its available
// stock, sold at Price inside [StartsAt, EndsAt) to orders on the channel
// live:<ChannelID>, at most LimitPerBuyer units per buyer (0: no limit).
type Deal struct {
	ID            string
	ChannelID     string
	SKUID         string
	Price         int64 // fen
	Stock         int64 // units
	StartsAt      int64 // unix nanoseconds, inclusive
	EndsAt        int64 // unix nanoseconds, exclusive
	LimitPerBuyer int64 // units, 0 for none
}

// DealStatus is a deal with its figures, the answer of GetDeal, PutDeal
// and EndDeal. Left + Reserved + Sold + Returned == Deal.Stock always.
type DealStatus struct {
	Deal
	Left     int64 // units still for sale (0 once ended)
	Reserved int64 // units in unpaid deal orders
	Sold     int64 // units in paid deal orders
	Returned int64 // units given back to the SKU when the deal ended
	Ended    bool
	EndedAt  int64 // unix nanoseconds, when Ended
}

// Item is one line of an order. The caller sets SKUID and Quantity; the
// engine merges lines of the same SKU (the merged lines come first and
// Order.Items is shortened) and fills UnitPrice and Amount.
type Item struct {
	SKUID     string
	Quantity  int32
	UnitPrice int64 // fen, set by the engine
	Amount    int64 // fen, set by the engine

	ref skuRef // resolved by the router
}

// Order is the body of a place-order command.
type Order struct {
	BuyerID string
	Items   []Item
	Channel string // app, web or live:<channel_id>
	Region  string
	DealID  string
	// IdempotencyKey, when set, makes the command idempotent: the same key
	// with the same RequestHash returns the first order; with another
	// RequestHash it fails with CodeIdempotencyMismatch.
	IdempotencyKey string
	RequestHash    uint64

	stored storedKey // the worker's disk look-up of the key, an input of apply
}

// Command is one request to the engine. Only the fields of its Kind are read.
//
// Catalog payloads are pointers so that a Command stays small: batches of
// orders are copied and scanned by the million.
//
// A payment's and a cancellation's fields come right after Kind, so that
// they and the request's partition share one cache line: the worker reads
// them first (worker.touch), and half the requests at the peak are these.
// At, which the router and the worker read for every command, is on that
// line too, and an order's fields follow it, before the catalog's
// pointers: an order's request is then three cache lines, a payment's one.
type Command struct {
	Kind    Kind
	OrderID OrderID
	Amount  int64 // Pay, fen
	// At is the command's time, unix nanoseconds (0: the engine's clock).
	// Only an engine with Config.RehearsalClock takes it; it is applied at
	// it and the clock moves to it.
	At       int64
	Order    Order
	Brand    *Brand    // UpsertBrand
	Merchant *Merchant // UpsertMerchant
	SKU      *SKU      // UpsertSKU
	SKUID    string    // AdjustStock, GetSKU
	Delta    int64     // AdjustStock, units
	Scan     *Scan     // ScanParcel
	Channel  *Channel  // PutChannel
	Deal     *Deal     // PutDeal; EndDeal and GetDeal read only its ID
}

// Scan is the body of a scan-parcel command: what a carrier reports. The
// engine's clock stamps the event (Event.At); At is the carrier's own time
// of the scan, checked against the order's payment at the HTTP edge.
type Scan struct {
	Status      ParcelStatus
	Location    string
	CarrierCode string // the carrier's own event code, optional
	At          int64  // unix nanoseconds, the carrier's time of the scan
}

// Request is a command and the slot its result is written to.
type Request struct {
	// partition is set by the router. It comes first, beside the command's
	// kind, so that the worker's first read of a request (worker.touch)
	// needs one cache line, not that and the request's last.
	partition int32

	Command Command
	Result  Result

	// The padding makes a request seven cache lines exactly, so that in a
	// batch's array (whose large allocation starts on a page) every request
	// starts on a line and its hot fields fall on the same lines: at 416
	// bytes every second request straddled one more line than it needs.
	_ [requestPadBytes]byte
}

// requestPadBytes pads a Request to a whole number of 64-byte lines.
const requestPadBytes = 448 - (unsafe.Sizeof(requestFields{}))

// requestFields is Request without its padding, to size it.
type requestFields struct {
	partition int32
	Command   Command
	Result    Result
}

// Batch carries requests into the engine. Submit routes each request to its
// partition; Done is closed once every request has its result and every
// journal record those results depend on is durable (fsynced).
//
// A Batch may be reused after Done is closed: call Reset.
type Batch struct {
	Requests []Request

	done      chan struct{}
	remaining atomic.Int32
	perWorker [][]int32 // request indexes per worker (per partition in cluster mode), reused
	touched   []int32   // in cluster mode, the partitions perWorker holds indexes for
	// keyed is set by Submit when a routed request is a keyed order: only
	// then does a worker look keys up before applying the batch's shards,
	// a pass over every request that, at thousands of requests a batch,
	// read them through the cache once more than applying them does.
	keyed bool
}

// keyedOrder reports whether r places an order with an idempotency key.
func (r *Request) keyedOrder() bool {
	return r.Command.Kind == KindPlaceOrder && r.Command.Order.IdempotencyKey != ""
}

// NewBatch returns an empty batch with room for n requests.
func NewBatch(n int) *Batch {
	return &Batch{Requests: make([]Request, 0, n)}
}

// Add appends a command and returns a pointer to its request.
func (b *Batch) Add(c Command) *Request {
	b.Requests = append(b.Requests, Request{Command: c})
	return &b.Requests[len(b.Requests)-1]
}

// Done is closed when every result is final and durable.
func (b *Batch) Done() <-chan struct{} { return b.done }

// Wait blocks until Done is closed.
func (b *Batch) Wait() { <-b.done }

// Reset empties the batch for reuse; it must not be in flight.
func (b *Batch) Reset() {
	clear(b.Requests)
	b.Requests = b.Requests[:0]
	b.done = nil
}
