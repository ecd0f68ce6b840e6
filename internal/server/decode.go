package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/fnv"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	"github.com/fest-platform/fest/internal/engine"
)

// Field limits checked at the edge, before the engine: the engine's own
// bounds, so that the two never disagree.
const (
	idBytesMax      = engine.IDBytesMax // buyer, sku, merchant, brand, deal ids
	regionBytesMax  = engine.RegionBytesMax
	channelBytesMax = engine.ChannelBytesMax
	textBytesMax    = engine.TextBytesMax // names, titles
	idemKeyBytesMax = engine.IdempotencyKeyBytesMax
	orderItemsMax   = engine.OrderItemsMax
	itemQuantityMax = engine.QuantityMax
	amountMax       = 1 << 53 // fen; far above any order, below float rounding
)

// Messages of the rules above, built from the limits so that a limit
// moved in the engine changes its message too.
var (
	idRuleMsg       = " must be 1 to " + strconv.Itoa(idBytesMax) + " bytes without control characters or '/'"
	itemsRuleMsg    = "an order has 1 to " + strconv.Itoa(orderItemsMax) + " items"
	quantityRuleMsg = "quantity must be 1 to " + strconv.Itoa(itemQuantityMax)
)

// orderJSON is the body of POST /v1/orders.
type orderJSON struct {
	BuyerID string     `json:"buyer_id"`
	Items   []itemJSON `json:"items"`
	Channel string     `json:"channel"`
	Region  string     `json:"region"`
	DealID  string     `json:"deal_id"`

	spans [4]span // fastDecodeOrder: buyer_id, channel, region, deal_id
}

type itemJSON struct {
	SKUID    string `json:"sku_id"`
	Quantity int64  `json:"quantity"`

	sku span // fastDecodeOrder: sku_id
}

// batchOrderJSON is one order of POST /v1/orders:batch.
type batchOrderJSON struct {
	orderJSON
	IdempotencyKey string `json:"idempotency_key"`
}

type batchJSON struct {
	Orders []batchOrderJSON `json:"orders"`
}

// decodeStrict decodes exactly one JSON value into v, rejecting unknown
// fields and trailing data, and converts decoding errors into the
// contract's: invalid_json (400) for syntax, invalid_argument (422, with
// field) for unknown fields and wrong types.
func decodeStrict(body []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errInvalidJSON("unexpected data after the JSON value")
	}
	if field, dup := exactKeys(body, reflect.TypeOf(v)); field != "" {
		if dup {
			return errInvalidArgument(field, "field "+strconv.Quote(field)+" given twice")
		}
		return errInvalidArgument(field, "unknown field "+strconv.Quote(field))
	}
	return nil
}

func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errInvalidJSON("empty body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errInvalidJSON("truncated JSON")
	case errors.As(err, &syn):
		return errInvalidJSON("invalid JSON at byte " + strconv.FormatInt(syn.Offset, 10) + ": " + syn.Error())
	case errors.As(err, &typ):
		field := jsonFieldPath(typ.Field)
		if field == "" {
			return errInvalidArgument("body", "the body must be a JSON object")
		}
		return errInvalidArgument(field, field+": expected "+jsonTypeName(typ.Type)+", got JSON "+typ.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return errInvalidArgument(f, "unknown field "+strconv.Quote(f))
	}
	return errInvalidJSON(strings.TrimPrefix(msg, "json: "))
}

// jsonFieldPath turns encoding/json's field path into the JSON one: the
// names of embedded Go structs (orderJSON, skuJSON...) are dropped. JSON
// names are snake_case, so a segment with an upper-case letter is Go's.
func jsonFieldPath(f string) string {
	if strings.IndexFunc(f, unicode.IsUpper) < 0 {
		return f
	}
	segs := strings.Split(f, ".")
	out := segs[:0]
	for _, seg := range segs {
		if strings.IndexFunc(seg, unicode.IsUpper) < 0 {
			out = append(out, seg)
		}
	}
	return strings.Join(out, ".")
}

// jsonTypeName names the JSON type expected for a Go type.
func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another type"
}

// prefixField puts prefix before the field of a field error, in its
// message too.
func prefixField(e *apiError, prefix string) *apiError {
	if e.Field == "" {
		return e
	}
	field := prefix + e.Field
	if rest, ok := strings.CutPrefix(e.Message, e.Field+": "); ok {
		e.Message = field + ": " + rest
	} else {
		e.Message = field + ": " + e.Message
	}
	e.Field = field
	return e
}

// locateItemError names the item of a field error in an order's items:
// encoding/json reports "items.quantity" without the index (and an unknown
// field without its path), so on that (rare) path the items are decoded
// one by one to find the culprit. batch allows idempotency_key.
func locateItemError(raw []byte, aerr *apiError, batch bool) *apiError {
	if aerr.Code != "invalid_argument" || aerr.Field == "body" {
		return aerr
	}
	var probe struct {
		BuyerID        string            `json:"buyer_id"`
		Items          []json.RawMessage `json:"items"`
		Channel        string            `json:"channel"`
		Region         string            `json:"region"`
		DealID         string            `json:"deal_id"`
		IdempotencyKey *string           `json:"idempotency_key"`
	}
	if decodeStrict(raw, &probe) != nil || !batch && probe.IdempotencyKey != nil {
		return aerr // the error is outside the items
	}
	for i, it := range probe.Items {
		var one itemJSON
		if e := decodeStrict(it, &one); e != nil && e.Code == "invalid_argument" {
			at := "items[" + strconv.Itoa(i) + "]"
			if e.Field == "body" {
				return errInvalidArgument(at, at+" must be an object")
			}
			return prefixField(e, at+".")
		}
	}
	return aerr
}

// validID checks an identifier: 1..idBytesMax bytes, no control characters
// or slashes (ids appear in paths).
func validID(s string) bool {
	if len(s) == 0 || len(s) > idBytesMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '/' {
			return false
		}
	}
	return true
}

func validChannel(s string) bool {
	switch {
	case s == "app" || s == "web":
		return true
	case strings.HasPrefix(s, "live:"):
		return len(s) <= channelBytesMax && validID(s[len("live:"):])
	}
	return false
}

// fieldPath names a field of order idx of a batch ("orders[3].buyer_id"),
// or of the single order when idx is negative. It is called only on
// errors, so valid orders cost no string building.
func fieldPath(idx int, name string) string {
	if idx < 0 {
		return name
	}
	return "orders[" + strconv.Itoa(idx) + "]." + name
}

// orderCommand validates a JSON order and fills cmd (reusing cmd's Items
// slice). idx is the order's index in a batch, or -1 for a single order.
func orderCommand(o *orderJSON, idemKey string, idx int, cmd *engine.Command) *apiError {
	if aerr := startOrderCommand(cmd, o.BuyerID, o.Channel, o.Region, o.DealID, idemKey, len(o.Items), idx); aerr != nil {
		return aerr
	}
	for i := range o.Items {
		if aerr := addOrderItem(cmd, idx, i, o.Items[i].SKUID, o.Items[i].Quantity); aerr != nil {
			return aerr
		}
	}
	finishOrderCommand(cmd)
	return nil
}

// startOrderCommand validates an order's fields other than its items, in
// the order the contract's errors name them, and starts cmd with them
// (the channel defaulted); addOrderItem adds each item and
// finishOrderCommand ends it. The JSON and the protobuf decoders share
// them, each straight from its own decoded form.
func startOrderCommand(cmd *engine.Command, buyerID, channel, region, dealID, idemKey string, items, idx int) *apiError {
	if buyerID == "" {
		return errInvalidArgument(fieldPath(idx, "buyer_id"), "buyer_id is required")
	}
	if !validID(buyerID) {
		return errInvalidArgument(fieldPath(idx, "buyer_id"), "buyer_id"+idRuleMsg)
	}
	if items == 0 || items > orderItemsMax {
		return errInvalidArgument(fieldPath(idx, "items"), itemsRuleMsg)
	}
	if channel == "" {
		channel = "app"
	}
	if !validChannel(channel) {
		return errInvalidArgument(fieldPath(idx, "channel"), "channel must be app, web or live:<channel_id>")
	}
	if len(region) > regionBytesMax {
		return errInvalidArgument(fieldPath(idx, "region"), "region is at most "+strconv.Itoa(regionBytesMax)+" bytes")
	}
	if dealID != "" && !validID(dealID) {
		return errInvalidArgument(fieldPath(idx, "deal_id"), "invalid deal_id")
	}
	if len(idemKey) > idemKeyBytesMax {
		return errInvalidArgument(fieldPath(idx, "idempotency_key"), "idempotency key is at most "+strconv.Itoa(idemKeyBytesMax)+" bytes")
	}
	cmd.Kind = engine.KindPlaceOrder
	cmd.Order = engine.Order{
		BuyerID:        buyerID,
		Items:          cmd.Order.Items[:0],
		Channel:        channel,
		Region:         region,
		DealID:         dealID,
		IdempotencyKey: idemKey,
	}
	return nil
}

// addOrderItem validates item i of order idx and adds it to cmd.
func addOrderItem(cmd *engine.Command, idx, i int, skuID string, quantity int64) *apiError {
	if !validID(skuID) {
		return errInvalidArgument(fieldPath(idx, "items["+strconv.Itoa(i)+"].sku_id"), "sku_id is required (1 to "+strconv.Itoa(idBytesMax)+" bytes)")
	}
	if quantity < 1 || quantity > itemQuantityMax {
		return errInvalidArgument(fieldPath(idx, "items["+strconv.Itoa(i)+"].quantity"), quantityRuleMsg)
	}
	cmd.Order.Items = append(cmd.Order.Items, engine.Item{SKUID: skuID, Quantity: int32(quantity)})
	return nil
}

// finishOrderCommand ends an order started by startOrderCommand.
func finishOrderCommand(cmd *engine.Command) {
	if cmd.Order.IdempotencyKey != "" {
		cmd.Order.RequestHash = requestHash(&cmd.Order)
	}
}

// requestHash is the FNV-64a hash of an order's canonical form (defaults
// applied, items as given), so a retried body that differs only in
// whitespace or field order still matches its Idempotency-Key.
func requestHash(o *engine.Order) uint64 {
	h := fnv.New64a()
	var sep = []byte{0}
	io.WriteString(h, o.BuyerID)
	h.Write(sep)
	for i := range o.Items {
		io.WriteString(h, o.Items[i].SKUID)
		h.Write(sep)
		io.WriteString(h, strconv.Itoa(int(o.Items[i].Quantity)))
		h.Write(sep)
	}
	h.Write(sep)
	io.WriteString(h, o.Channel)
	h.Write(sep)
	io.WriteString(h, o.Region)
	h.Write(sep)
	io.WriteString(h, o.DealID)
	v := h.Sum64()
	if v == 0 {
		v = 1
	}
	return v
}
