// Package wire is the protobuf contract of fest's batches: the request and
// response bodies of POST /v1/orders:batch and POST /v1/orders:settle with
// Content-Type: application/x-protobuf, the API's error table (code, HTTP
// status, retry) and the contract's limits. Server, client and load driver
// all use it.
//
// The schema is fest.proto in this folder. The codec is hand-written on
// protowire rather than generated, so it needs no protoc and allocates only
// the strings it returns (the views allocate nothing); its field numbers are
// the named constants of fields.go, and TestCodecMatchesProto checks every
// message, field name, number and type against fest.proto.
//
// Unlike stock protobuf, the decoders reject unknown field numbers, as the
// JSON API rejects unknown fields.
package wire

import (
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// ContentType is the media type of the binary form.
const ContentType = "application/x-protobuf"

// ErrMalformed is returned for a body that is not a valid message.
var ErrMalformed = errors.New("malformed protobuf")

// Item is one line of a PlaceOrder.
type Item struct {
	SKUID    string
	Quantity int32
}

// PlaceOrder is one order of a batch request.
type PlaceOrder struct {
	BuyerID        string
	Items          []Item
	Channel        string
	Region         string
	DealID         string
	IdempotencyKey string
	// RehearsalTime is the order's festival time, unix nanoseconds (0:
	// none), for a server with the rehearsal clock.
	RehearsalTime int64
}

// OrderItem is one line of a placed order.
type OrderItem struct {
	SKUID     string
	Quantity  int32
	UnitPrice int64
	Amount    int64
}

// Order is a placed order.
type Order struct {
	OrderID            string
	Status             string
	BuyerID            string
	MerchantID         string
	Items              []OrderItem
	Total              int64
	Currency           string
	Channel            string
	Region             string
	DealID             string
	CreatedAtUnixNanos int64
	PayByUnixNanos     int64
	Replayed           bool
}

// Error is a rejected order.
type Error struct {
	Code      string
	Message   string
	Field     string
	SKUID     string
	Available int64
}

// Result is one entry of a batch response: Error is nil when Order is set.
type Result struct {
	Order Order
	Error *Error
}

// FieldError reports an unknown or mistyped field; Field is a JSON-style path.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// AppendRequest appends the encoded OrderBatchRequest of orders to b.
func AppendRequest(b []byte, orders []PlaceOrder) []byte {
	for i := range orders {
		o := &orders[i]
		b = appendTag(b, OrderBatchRequestOrders, protowire.BytesType)
		b = appendVarint(b, uint64(placeOrderSize(o)))
		b = appendPlaceOrder(b, o)
	}
	return b
}

func itemSize(it *Item) int {
	n := 0
	if it.SKUID != "" {
		n += 1 + protowire.SizeBytes(len(it.SKUID))
	}
	if it.Quantity != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(it.Quantity)))
	}
	return n
}

func placeOrderSize(o *PlaceOrder) int {
	n := strSize(o.BuyerID) + strSize(o.Channel) + strSize(o.Region) + strSize(o.DealID) + strSize(o.IdempotencyKey) + intSize(o.RehearsalTime)
	for i := range o.Items {
		n += 1 + protowire.SizeBytes(itemSize(&o.Items[i]))
	}
	return n
}

func strSize(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func appendStr(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendVarint is protowire.AppendVarint with its one-byte case inlined:
// the tags and lengths of the contract's messages are nearly all under
// 128, and protowire's is too large to inline. The bytes are the same.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// appendTag appends the tag of field num, which must be 1 to 15 (a
// one-byte tag): every field of the contract is (fields.go). It is small
// enough to inline, where protowire.AppendTag is not.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	if uint32(num-1) > 14 {
		panic("wire: a field number outside 1 to 15 needs a tag of more than one byte")
	}
	return append(b, byte(num)<<3|byte(typ&7))
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, protowire.VarintType)
	// Quantities, prices and most totals take one or two bytes.
	switch u := uint64(v); {
	case u < 1<<7:
		return append(b, byte(u))
	case u < 1<<14:
		return append(b, byte(u)|0x80, byte(u>>7))
	}
	return protowire.AppendVarint(b, uint64(v))
}

func appendPlaceOrder(b []byte, o *PlaceOrder) []byte {
	b = appendStr(b, PlaceOrderBuyerID, o.BuyerID)
	for i := range o.Items {
		it := &o.Items[i]
		b = appendTag(b, PlaceOrderItems, protowire.BytesType)
		b = appendVarint(b, uint64(itemSize(it)))
		b = appendStr(b, ItemSKUID, it.SKUID)
		b = appendInt(b, ItemQuantity, int64(it.Quantity))
	}
	b = appendStr(b, PlaceOrderChannel, o.Channel)
	b = appendStr(b, PlaceOrderRegion, o.Region)
	b = appendStr(b, PlaceOrderDealID, o.DealID)
	b = appendStr(b, PlaceOrderIdempotencyKey, o.IdempotencyKey)
	b = appendInt(b, PlaceOrderRehearsalTime, o.RehearsalTime)
	return b
}

// reader walks the fields of one message.
type reader struct {
	b []byte
}

// next returns the next field; ok is false at the end.
func (r *reader) next() (num protowire.Number, typ protowire.Type, ok bool, err error) {
	if len(r.b) == 0 {
		return 0, 0, false, nil
	}
	// Fields 1 to 15 have a one-byte tag: every field of the contract's
	// hot messages. The general decoding below handles the others and
	// the errors.
	if t := r.b[0]; t < 0x80 && t>>3 != 0 {
		r.b = r.b[1:]
		return protowire.Number(t >> 3), protowire.Type(t & 7), true, nil
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		return 0, 0, false, fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
	}
	r.b = r.b[n:]
	return num, typ, true, nil
}

// path names a field for error messages; it is formatted only on error so
// decoding allocates nothing for names.
type path struct {
	order int // -1: not inside an order
	item  int // -1: not inside an item
	field string
}

func (p path) String() string {
	s := ""
	if p.order >= 0 {
		s = "orders[" + strconv.Itoa(p.order) + "]"
	}
	if p.item >= 0 {
		s += ".items[" + strconv.Itoa(p.item) + "]"
	}
	if p.field != "" {
		if s != "" {
			s += "."
		}
		s += p.field
	}
	return s
}

func (r *reader) bytes(field path, typ protowire.Type) ([]byte, error) {
	if typ != protowire.BytesType {
		return nil, &FieldError{Field: field.String(), Msg: "wrong wire type"}
	}
	// A length under 128 is one byte: ids, codes, most submessages.
	if len(r.b) > 0 && r.b[0] < 0x80 {
		if n := 1 + int(r.b[0]); n <= len(r.b) {
			v := r.b[1:n]
			r.b = r.b[n:]
			return v, nil
		}
	}
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, field.String(), protowire.ParseError(n))
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) varint(field path, typ protowire.Type) (uint64, error) {
	if typ != protowire.VarintType {
		return 0, &FieldError{Field: field.String(), Msg: "wrong wire type"}
	}
	if len(r.b) > 0 && r.b[0] < 0x80 {
		v := uint64(r.b[0])
		r.b = r.b[1:]
		return v, nil
	}
	v, n := protowire.ConsumeVarint(r.b)
	if n < 0 {
		return 0, fmt.Errorf("%w: %s: %v", ErrMalformed, field.String(), protowire.ParseError(n))
	}
	r.b = r.b[n:]
	return v, nil
}

// DecodeRequest decodes an OrderBatchRequest, appending to orders (which
// may be a reused slice) and stopping with an error after ordersMax orders.
func DecodeRequest(b []byte, orders []PlaceOrder, ordersMax int) ([]PlaceOrder, error) {
	var v RequestView
	err := DecodeRequestView(b, &v, ordersMax)
	for i := range v.Orders {
		ov := &v.Orders[i]
		o := PlaceOrder{
			BuyerID: string(ov.BuyerID), Channel: string(ov.Channel), Region: string(ov.Region),
			DealID: string(ov.DealID), IdempotencyKey: string(ov.IdempotencyKey), RehearsalTime: ov.RehearsalTime,
		}
		for _, it := range v.OrderItems(i) {
			o.Items = append(o.Items, Item{SKUID: string(it.SKUID), Quantity: it.Quantity})
		}
		orders = append(orders, o)
	}
	return orders, err
}

// RequestView is a decoded OrderBatchRequest whose strings are views of the
// body: decoding allocates nothing once its slices have grown, and the
// views are valid as long as the body is. Reuse it with DecodeRequestView.
type RequestView struct {
	Orders []PlaceOrderView
	Items  []ItemView // every order's items, in order; see OrderItems
}

// PlaceOrderView is one order of a RequestView.
type PlaceOrderView struct {
	BuyerID, Channel, Region, DealID, IdempotencyKey []byte
	ItemsFrom, ItemsTo                               int   // its items are Items[ItemsFrom:ItemsTo]
	RehearsalTime                                    int64 // unix ns, 0: none
}

// ItemView is one line of a PlaceOrderView.
type ItemView struct {
	SKUID    []byte
	Quantity int32
}

// OrderItems returns the items of order i.
func (v *RequestView) OrderItems(i int) []ItemView {
	o := &v.Orders[i]
	return v.Items[o.ItemsFrom:o.ItemsTo]
}

// DecodeRequestView decodes an OrderBatchRequest into v (reset first),
// stopping with an error after ordersMax orders. On error, v holds the
// orders decoded before the failing one.
func DecodeRequestView(b []byte, v *RequestView, ordersMax int) error {
	clear(v.Orders)
	clear(v.Items)
	v.Orders, v.Items = v.Orders[:0], v.Items[:0]
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if num != OrderBatchRequestOrders {
			return &FieldError{Field: fmt.Sprintf("field %d", num), Msg: "unknown field"}
		}
		body, err := r.bytes(path{order: len(v.Orders), item: -1}, typ)
		if err != nil {
			return err
		}
		if len(v.Orders) >= ordersMax {
			return &FieldError{Field: "orders", Msg: fmt.Sprintf("more than %d orders", ordersMax)}
		}
		mark := len(v.Items)
		o := PlaceOrderView{ItemsFrom: mark}
		if err := v.decodePlaceOrder(body, &o, len(v.Orders)); err != nil {
			v.Items = v.Items[:mark]
			return err
		}
		o.ItemsTo = len(v.Items)
		v.Orders = append(v.Orders, o)
	}
}

func (v *RequestView) decodePlaceOrder(b []byte, o *PlaceOrderView, idx int) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		switch num {
		case PlaceOrderBuyerID, PlaceOrderChannel, PlaceOrderRegion, PlaceOrderDealID, PlaceOrderIdempotencyKey:
			s, err := r.bytes(path{order: idx, item: -1, field: orderFieldNames[num]}, typ)
			if err != nil {
				return err
			}
			switch num {
			case PlaceOrderBuyerID:
				o.BuyerID = s
			case PlaceOrderChannel:
				o.Channel = s
			case PlaceOrderRegion:
				o.Region = s
			case PlaceOrderDealID:
				o.DealID = s
			case PlaceOrderIdempotencyKey:
				o.IdempotencyKey = s
			}
		case PlaceOrderItems:
			s, err := r.bytes(path{order: idx, item: -1, field: orderFieldNames[num]}, typ)
			if err != nil {
				return err
			}
			var it ItemView
			if err := decodeItem(s, &it, idx, len(v.Items)-o.ItemsFrom); err != nil {
				return err
			}
			v.Items = append(v.Items, it)
		case PlaceOrderRehearsalTime:
			x, err := r.varint(path{order: idx, item: -1, field: orderFieldNames[num]}, typ)
			if err != nil {
				return err
			}
			o.RehearsalTime = int64(x)
		default:
			return &FieldError{Field: fmt.Sprintf("orders[%d].field %d", idx, num), Msg: "unknown field"}
		}
	}
}

// orderFieldNames names PlaceOrder's fields by number, for error paths.
var orderFieldNames = [...]string{PlaceOrderBuyerID: "buyer_id", PlaceOrderItems: "items", PlaceOrderChannel: "channel",
	PlaceOrderRegion: "region", PlaceOrderDealID: "deal_id", PlaceOrderIdempotencyKey: "idempotency_key",
	PlaceOrderRehearsalTime: "rehearsal_time_unix_nanos"}

func decodeItem(b []byte, it *ItemView, idx, item int) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		switch num {
		case ItemSKUID:
			v, err := r.bytes(path{order: idx, item: item, field: "sku_id"}, typ)
			if err != nil {
				return err
			}
			it.SKUID = v
		case ItemQuantity:
			v, err := r.varint(path{order: idx, item: item, field: "quantity"}, typ)
			if err != nil {
				return err
			}
			q := int64(v)
			if q < -1<<31 || q > 1<<31-1 {
				return &FieldError{Field: fmt.Sprintf("orders[%d].items[%d].quantity", idx, item), Msg: "out of int32 range"}
			}
			it.Quantity = int32(q)
		default:
			return &FieldError{Field: fmt.Sprintf("orders[%d].items[%d].field %d", idx, item, num), Msg: "unknown field"}
		}
	}
}

// AppendResponse appends the encoded OrderBatchResponse of results to b.
func AppendResponse(b []byte, results []Result) []byte {
	for i := range results {
		b = AppendResponseResult(b, &results[i])
	}
	return b
}

// AppendResponseResult appends r as one results field of an
// OrderBatchResponse (tag, length, body), sized first so that the body is
// encoded in place rather than into a scratch buffer and copied.
func AppendResponseResult(b []byte, r *Result) []byte {
	inner := resultInnerSize(r)
	b = appendTag(b, OrderBatchResponseResults, protowire.BytesType)
	// The body is one field, the order or the error, whose tags are of one
	// size.
	b = appendVarint(b, uint64(protowire.SizeTag(max(OrderResultOrder, OrderResultError))+protowire.SizeBytes(inner)))
	return appendResult(b, r, inner)
}

// AppendResponseOrder is AppendResponseResult for the result of a placed
// order o whose id is given as its number: the id's text, base 36 as the
// API spells order ids, is written from id straight into b, not copied
// from a string made for it. o.OrderID is ignored.
func AppendResponseOrder(b []byte, o *Order, id uint64) []byte {
	var text [orderIDBytesMax]byte
	idText := AppendOrderID(text[:0], id)
	idBytes := len(idText)
	inner := orderSize(o) - strSize(o.OrderID) + 1 + protowire.SizeBytes(idBytes)
	b = appendTag(b, OrderBatchResponseResults, protowire.BytesType)
	b = appendVarint(b, uint64(protowire.SizeTag(OrderResultOrder)+protowire.SizeBytes(inner)))
	b = appendTag(b, OrderResultOrder, protowire.BytesType)
	b = appendVarint(b, uint64(inner))
	b = appendTag(b, OrderOrderID, protowire.BytesType)
	b = appendVarint(b, uint64(idBytes))
	b = append(b, idText...)
	return appendOrderFields(b, o)
}

// orderIDBytesMax is the length of the longest order id's text (base 36
// of 2^64-1).
const orderIDBytesMax = 13

// AppendOrderID appends the text of order id id, base 36 in lower case
// as strconv.AppendUint(b, id, 36) writes it, but dividing by a constant,
// which the compiler turns into a multiplication (strconv divides by its
// variable base: a hardware division per digit).
func AppendOrderID(b []byte, id uint64) []byte {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	var text [orderIDBytesMax]byte
	i := len(text)
	for id >= 36 {
		q := id / 36
		i--
		text[i] = digits[id-q*36]
		id = q
	}
	i--
	text[i] = digits[id]
	return append(b, text[i:]...)
}

// resultInnerSize is the length of r's order or error message, the one
// field of its OrderResult.
func resultInnerSize(r *Result) int {
	if r.Error != nil {
		return errorSize(r.Error)
	}
	return orderSize(&r.Order)
}

// AppendResult appends the body of one OrderResult (without its tag).
func AppendResult(b []byte, r *Result) []byte { return appendResult(b, r, resultInnerSize(r)) }

// appendResult is AppendResult with the size of r's message, inner,
// computed by the caller (resultInnerSize), so that it is computed once.
func appendResult(b []byte, r *Result, inner int) []byte {
	if r.Error != nil {
		b = appendTag(b, OrderResultError, protowire.BytesType)
		b = appendVarint(b, uint64(inner))
		return errorBody(b, r.Error)
	}
	o := &r.Order
	b = appendTag(b, OrderResultOrder, protowire.BytesType)
	b = appendVarint(b, uint64(inner))
	b = appendStr(b, OrderOrderID, o.OrderID)
	return appendOrderFields(b, o)
}

// appendOrderFields appends the fields of o after its id.
func appendOrderFields(b []byte, o *Order) []byte {
	b = appendStr(b, OrderStatus, o.Status)
	b = appendStr(b, OrderBuyerID, o.BuyerID)
	b = appendStr(b, OrderMerchantID, o.MerchantID)
	for i := range o.Items {
		it := &o.Items[i]
		b = appendTag(b, OrderItems, protowire.BytesType)
		b = appendVarint(b, uint64(orderItemSize(it)))
		b = appendStr(b, OrderItemSKUID, it.SKUID)
		b = appendInt(b, OrderItemQuantity, int64(it.Quantity))
		b = appendInt(b, OrderItemUnitPrice, it.UnitPrice)
		b = appendInt(b, OrderItemAmount, it.Amount)
	}
	b = appendInt(b, OrderTotal, o.Total)
	b = appendStr(b, OrderCurrency, o.Currency)
	b = appendStr(b, OrderChannel, o.Channel)
	b = appendStr(b, OrderRegion, o.Region)
	b = appendStr(b, OrderDealID, o.DealID)
	b = appendInt(b, OrderCreatedAtUnixNanos, o.CreatedAtUnixNanos)
	b = appendInt(b, OrderPayByUnixNanos, o.PayByUnixNanos)
	if o.Replayed {
		b = appendInt(b, OrderReplayed, 1)
	}
	return b
}

func intSize(v int64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(uint64(v))
}

func orderItemSize(it *OrderItem) int {
	return strSize(it.SKUID) + intSize(int64(it.Quantity)) + intSize(it.UnitPrice) + intSize(it.Amount)
}

func orderSize(o *Order) int {
	n := strSize(o.OrderID) + strSize(o.Status) + strSize(o.BuyerID) + strSize(o.MerchantID) +
		intSize(o.Total) + strSize(o.Currency) + strSize(o.Channel) + strSize(o.Region) + strSize(o.DealID) +
		intSize(o.CreatedAtUnixNanos) + intSize(o.PayByUnixNanos)
	if o.Replayed {
		n += 2
	}
	for i := range o.Items {
		n += 1 + protowire.SizeBytes(orderItemSize(&o.Items[i]))
	}
	return n
}

// DecodeResponse decodes an OrderBatchResponse, appending to results.
func DecodeResponse(b []byte, results []Result) ([]Result, error) {
	var v ResponseView
	err := DecodeResponseView(b, &v)
	for i := range v.Results {
		rv := &v.Results[i]
		ov := &rv.Order
		res := Result{Error: rv.Error, Order: Order{
			OrderID: string(ov.OrderID), Status: string(ov.Status), BuyerID: string(ov.BuyerID),
			MerchantID: string(ov.MerchantID), Total: ov.Total, Currency: string(ov.Currency),
			Channel: string(ov.Channel), Region: string(ov.Region), DealID: string(ov.DealID),
			CreatedAtUnixNanos: ov.CreatedAtUnixNanos, PayByUnixNanos: ov.PayByUnixNanos, Replayed: ov.Replayed,
		}}
		for _, it := range v.OrderItems(i) {
			res.Order.Items = append(res.Order.Items, OrderItem{SKUID: string(it.SKUID), Quantity: it.Quantity, UnitPrice: it.UnitPrice, Amount: it.Amount})
		}
		results = append(results, res)
	}
	return results, err
}

// ResponseView is a decoded OrderBatchResponse whose order strings are
// views of the body (valid as long as the body is), so that a client can
// decode a batch without allocating per field. Errors are rare and are
// decoded into ordinary values.
type ResponseView struct {
	Results []ResultView
	Items   []OrderItemView // every order's items, in order; see OrderItems
	// SkipItems, when set, leaves the orders' items undecoded (OrderItems
	// returns none): a client that reads only ids, statuses and totals
	// saves the decoding of every line.
	SkipItems bool
}

// ResultView is one result of a ResponseView: Error is nil when Order is set.
type ResultView struct {
	Order OrderView
	Error *Error
}

// OrderView is a placed order of a ResponseView.
type OrderView struct {
	OrderID, Status, BuyerID, MerchantID, Currency, Channel, Region, DealID []byte
	ItemsFrom, ItemsTo                                                      int // its items are Items[ItemsFrom:ItemsTo]
	Total, CreatedAtUnixNanos, PayByUnixNanos                               int64
	Replayed                                                                bool
}

// OrderItemView is one line of an OrderView.
type OrderItemView struct {
	SKUID     []byte
	Quantity  int32
	UnitPrice int64
	Amount    int64
}

// OrderItems returns the items of result i's order.
func (v *ResponseView) OrderItems(i int) []OrderItemView {
	o := &v.Results[i].Order
	return v.Items[o.ItemsFrom:o.ItemsTo]
}

// DecodeResponseView decodes an OrderBatchResponse into v (reset first).
func DecodeResponseView(b []byte, v *ResponseView) error {
	results, items := len(v.Results), len(v.Items)
	v.Results, v.Items = v.Results[:0], v.Items[:0]
	err := v.decode(b)
	// The decode overwrote the entries it appended; those of the previous
	// answer past them would keep its body and errors alive. (Clearing
	// them all first would be one more pass over the batch's views.)
	clear(v.Results[len(v.Results):max(results, len(v.Results))])
	clear(v.Items[len(v.Items):max(items, len(v.Items))])
	return err
}

func (v *ResponseView) decode(b []byte) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		if num != OrderBatchResponseResults {
			return &FieldError{Field: fmt.Sprintf("field %d", num), Msg: "unknown field"}
		}
		body, err := r.bytes(path{order: -1, item: -1, field: "results"}, typ)
		if err != nil {
			return err
		}
		mark := len(v.Items)
		res := ResultView{Order: OrderView{ItemsFrom: mark, ItemsTo: mark}}
		if err := v.decodeResult(body, &res); err != nil {
			v.Items = v.Items[:mark]
			return err
		}
		v.Results = append(v.Results, res)
	}
}

func (v *ResponseView) decodeResult(b []byte, res *ResultView) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		body, err := r.bytes(path{order: -1, item: -1, field: "result"}, typ)
		if err != nil {
			return err
		}
		switch num {
		case OrderResultOrder:
			if err := v.decodeOrder(body, &res.Order); err != nil {
				return err
			}
		case OrderResultError:
			e := &Error{}
			if err := decodeError(body, e); err != nil {
				return err
			}
			res.Error = e
		default:
			return &FieldError{Field: fmt.Sprintf("result.field %d", num), Msg: "unknown field"}
		}
	}
}

func (v *ResponseView) decodeOrder(b []byte, o *OrderView) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		switch num {
		case OrderOrderID, OrderStatus, OrderBuyerID, OrderMerchantID, OrderCurrency, OrderChannel, OrderRegion, OrderDealID:
			s, err := r.bytes(path{order: -1, item: -1, field: "order"}, typ)
			if err != nil {
				return err
			}
			switch num {
			case OrderOrderID:
				o.OrderID = s
			case OrderStatus:
				o.Status = s
			case OrderBuyerID:
				o.BuyerID = s
			case OrderMerchantID:
				o.MerchantID = s
			case OrderCurrency:
				o.Currency = s
			case OrderChannel:
				o.Channel = s
			case OrderRegion:
				o.Region = s
			case OrderDealID:
				o.DealID = s
			}
		case OrderItems:
			s, err := r.bytes(path{order: -1, item: -1, field: "order.items"}, typ)
			if err != nil {
				return err
			}
			if v.SkipItems {
				continue
			}
			var it OrderItemView
			if err := decodeOrderItem(s, &it); err != nil {
				return err
			}
			v.Items = append(v.Items, it)
			o.ItemsTo = len(v.Items)
		case OrderTotal, OrderCreatedAtUnixNanos, OrderPayByUnixNanos, OrderReplayed:
			x, err := r.varint(path{order: -1, item: -1, field: "order"}, typ)
			if err != nil {
				return err
			}
			switch num {
			case OrderTotal:
				o.Total = int64(x)
			case OrderCreatedAtUnixNanos:
				o.CreatedAtUnixNanos = int64(x)
			case OrderPayByUnixNanos:
				o.PayByUnixNanos = int64(x)
			case OrderReplayed:
				o.Replayed = x != 0
			}
		default:
			return &FieldError{Field: fmt.Sprintf("order.field %d", num), Msg: "unknown field"}
		}
	}
}

func decodeOrderItem(b []byte, it *OrderItemView) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		if num == OrderItemSKUID {
			s, err := r.bytes(path{order: -1, item: -1, field: "item.sku_id"}, typ)
			if err != nil {
				return err
			}
			it.SKUID = s
			continue
		}
		x, err := r.varint(path{order: -1, item: -1, field: "item"}, typ)
		if err != nil {
			return err
		}
		switch num {
		case OrderItemQuantity:
			it.Quantity = int32(int64(x))
		case OrderItemUnitPrice:
			it.UnitPrice = int64(x)
		case OrderItemAmount:
			it.Amount = int64(x)
		default:
			return &FieldError{Field: fmt.Sprintf("item.field %d", num), Msg: "unknown field"}
		}
	}
}

func decodeError(b []byte, e *Error) error {
	r := reader{b: b}
	for {
		num, typ, ok, err := r.next()
		if err != nil || !ok {
			return err
		}
		if num == ErrorAvailable {
			v, err := r.varint(path{order: -1, item: -1, field: "error.available"}, typ)
			if err != nil {
				return err
			}
			e.Available = int64(v)
			continue
		}
		v, err := r.bytes(path{order: -1, item: -1, field: "error"}, typ)
		if err != nil {
			return err
		}
		s := string(v)
		switch num {
		case ErrorCode:
			e.Code = s
		case ErrorMessage:
			e.Message = s
		case ErrorField:
			e.Field = s
		case ErrorSKUID:
			e.SKUID = s
		default:
			return &FieldError{Field: fmt.Sprintf("error.field %d", num), Msg: "unknown field"}
		}
	}
}
