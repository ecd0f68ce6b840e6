package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/fest-platform/fest/wire"
)

// The OpenAPI 3.1 document of the API as built, assembled once from small
// helpers so each endpoint reads as one line of intent.

type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func jsonBody(schema obj) obj {
	return obj{"required": true, "content": obj{"application/json": obj{"schema": schema}}}
}

func resp(desc string, schema obj) obj {
	r := obj{"description": desc}
	if schema != nil {
		r["content"] = obj{"application/json": obj{"schema": schema}}
	}
	return r
}

func errResp(desc string) obj { return resp(desc, ref("Error")) }

// retryResp is an error answer that carries Retry-After.
func retryResp(desc string) obj {
	r := errResp(desc + "; Retry-After set")
	r["headers"] = obj{"Retry-After": obj{"description": "seconds to wait before retrying", "schema": obj{"type": "integer"}}}
	return r
}

func pathParam(name string) obj {
	return obj{"name": name, "in": "path", "required": true, "schema": obj{"type": "string"}}
}

// op builds an operation. security names the roles that may call it; nil
// makes it public, which the document says with an empty security list so
// that linters and generators do not take it for an oversight. Its
// operationId is set by finishPaths, from the method and the path.
func op(summary string, security []string, params []obj, body obj, responses obj) obj {
	o := obj{"summary": summary, "responses": responses, "security": []obj{}}
	if security != nil {
		sec := []obj{}
		for _, s := range security {
			sec = append(sec, obj{s: []string{}})
		}
		o["security"] = sec
		responses["401"] = errResp("unauthenticated: missing or unknown token")
		responses["403"] = errResp("forbidden: token of another role")
		if _, ok := responses["503"]; !ok {
			responses["503"] = retryResp("unavailable: recovery in progress")
		}
	}
	if params != nil {
		o["parameters"] = params
	}
	if body != nil {
		o["requestBody"] = body
	}
	return o
}

func props(required []string, p obj) obj {
	o := obj{"type": "object", "additionalProperties": false, "properties": p}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

var (
	str     = obj{"type": "string"}
	integer = obj{"type": "integer", "format": "int64"}
	boolean = obj{"type": "boolean"}
	rfc3339 = obj{"type": "string", "format": "date-time"}
)

func buildOpenAPI() obj {
	admin, storefront := []string{"admin"}, []string{"storefront"}
	both := []string{"admin", "storefront"}
	common := func(extra obj) obj {
		r := obj{"422": errResp("invalid_argument (field in `field`)"), "400": errResp("invalid_json"), "413": errResp("too_large"), "503": retryResp("unavailable: recovery in progress, the engine stopped after a journal failure, or too many connections")}
		for k, v := range extra {
			r[k] = v
		}
		return r
	}
	liveDeal := props(nil, obj{"deal_id": str, "sku_id": str, "price": integer, "stock": integer, "stock_left": integer, "sold": integer, "ended": boolean})
	schemas := obj{
		"LiveDeal": liveDeal,
		"LiveChannel": props(nil, obj{"channel_id": str, "title": str, "host": str, "starts_at": rfc3339, "ends_at": rfc3339, "gmv": integer, "orders": integer,
			"deals": obj{"type": "array", "items": ref("LiveDeal")}}),
		"Deal": props(nil, obj{"deal_id": str, "channel_id": str, "sku_id": str, "price": integer, "stock": integer, "starts_at": rfc3339, "ends_at": rfc3339,
			"limit_per_buyer": integer, "stock_left": integer, "reserved": integer, "sold": integer, "returned": integer, "ended": boolean, "ended_at": rfc3339}),
		"Error": props([]string{"error"}, obj{"error": props([]string{"code", "message"}, obj{
			"code":    obj{"type": "string", "enum": []string{"invalid_json", "invalid_protobuf", "unauthenticated", "forbidden", "not_found", "out_of_stock", "invalid_state", "deal_not_active", "too_large", "invalid_argument", "payment_mismatch", "idempotency_mismatch", "overloaded", "unavailable", "conflict", "gone", "limit_exceeded"}},
			"message": str, "field": str, "sku_id": str, "available": integer, "line": integer,
			"stock_available": obj{"type": "integer", "format": "int64", "description": "conflict: the SKU's available stock now"},
		})}),
		"Brand": props([]string{"name", "country"}, obj{"brand_id": obj{"type": "string", "readOnly": true}, "name": str, "country": obj{"type": "string", "pattern": "^[A-Z]{2}$"}, "first_festival": integer, "emerging": boolean, "last_year_gmv": integer}),
		"Merchant": props([]string{"name", "brand_id", "kind"}, obj{"merchant_id": obj{"type": "string", "readOnly": true}, "name": str, "brand_id": str,
			"kind": obj{"type": "string", "enum": []string{"brand_store", "factory", "trader"}}, "industry": str, "region": str}),
		"SKUInput": props([]string{"merchant_id", "brand_id", "title", "price"}, obj{"merchant_id": str, "brand_id": str, "title": str, "category": str, "price": integer,
			"stock": obj{"type": "integer", "format": "int64", "minimum": 0, "maximum": skuTotalMax,
				"description": "a new SKU: required, its available stock; an existing SKU: optional (omitted: unchanged), and applies only with stock_expected"},
			"stock_expected": obj{"type": "integer", "format": "int64", "minimum": 0, "maximum": skuTotalMax,
				"description": "with stock on an existing SKU: the stock_available last read; stock applies only if it still matches, else 409 conflict (a new SKU: 0)"}}),
		"SKU": props(nil, obj{"sku_id": str, "merchant_id": str, "brand_id": str, "title": str, "category": str, "price": integer, "currency": str, "stock_available": integer, "stock_reserved": integer, "sold": integer}),
		"OrderInput": props([]string{"buyer_id", "items"}, obj{"buyer_id": str,
			"items":   obj{"type": "array", "minItems": 1, "maxItems": orderItemsMax, "items": props([]string{"sku_id", "quantity"}, obj{"sku_id": str, "quantity": obj{"type": "integer", "minimum": 1, "maximum": itemQuantityMax}})},
			"channel": obj{"type": "string", "description": "app (default), web or live:<channel_id>"}, "region": str, "deal_id": str}),
		"Money": props([]string{"amount", "currency"}, obj{"amount": obj{"type": "integer", "format": "int64", "description": "fen (CNY) or cents (USD)"}, "currency": obj{"type": "string", "enum": []string{"CNY", "USD"}}}),
		"GMV": props([]string{"gmv", "gmv_usd", "orders_placed", "orders_paid", "orders_per_second", "as_of"}, obj{
			"gmv": ref("Money"), "gmv_usd": ref("Money"), "orders_placed": integer, "orders_paid": integer, "orders_per_second": obj{"type": "number"}, "as_of": rfc3339,
			"position": integer, "lag": props(nil, obj{"positions": integer, "seconds": obj{"type": "number"}}), "orders_pending": integer,
			"last_year_gmv": ref("Money"), "growth": obj{"type": "number", "description": "0.26 for +26%; present when last_year_gmv is positive"},
			"brands": props(nil, obj{"total": integer, "foreign": integer, "first_time": integer, "emerging": integer, "selling": integer, "foreign_selling": integer,
				"first_time_selling": integer, "emerging_selling": integer, "emerging_top_category": integer, "emerging_beat_last_year": integer,
				"emerging_grew_1000": integer, "grew_1000": integer, "over_threshold": integer}),
			"merchants":               props(nil, obj{"total": integer, "factories": integer, "traders": integer, "industries": integer}),
			"channels_over_threshold": integer, "milestone_threshold": integer, "festival_year": integer, "milestones_not_kept": integer,
			"peak_second": props([]string{"at", "orders"}, obj{"at": rfc3339, "orders": integer}),
			"clock":       obj{"type": "string", "enum": []string{"wall", "rehearsal"}},
		}),
		"Breakdown": props([]string{"by", "rows"}, obj{"by": str,
			"rows": obj{"type": "array", "items": props([]string{"key", "gmv", "orders", "share"}, obj{
				"key": str, "name": str, "gmv": obj{"type": "integer", "format": "int64", "description": "fen"}, "orders": integer, "share": obj{"type": "number"},
				"last_year_gmv": integer, "growth": obj{"type": "number"}})},
			"rest": props(nil, obj{"rows": integer, "gmv": integer}), "gmv": integer, "position": integer, "as_of": rfc3339}),
		"Order": props(nil, obj{"order_id": str, "status": obj{"type": "string", "enum": []string{"pending_payment", "paid", "cancelled", "expired"}}, "buyer_id": str, "merchant_id": str,
			"items": obj{"type": "array", "items": props(nil, obj{"sku_id": str, "quantity": integer, "unit_price": integer, "amount": integer})},
			"total": integer, "currency": str, "channel": str, "region": str, "deal_id": str, "created_at": rfc3339, "pay_by": rfc3339, "paid_at": rfc3339, "cancelled_at": rfc3339, "expired_at": rfc3339}),
	}
	parcelStatuses := []string{"created", "picked_up", "in_transit", "out_for_delivery", "delivered", "failed_attempt", "exception", "returned"}
	parcelSchema := props(nil, obj{"parcel_id": str, "order_id": str, "status": obj{"type": "string", "enum": parcelStatuses}, "carrier": str, "warehouse": str,
		"destination": str, "eta": rfc3339, "stale": obj{"type": "boolean", "description": "no scan for --parcel-stale-after (default 72h)"},
		"events": obj{"type": "array", "items": props(nil, obj{"status": obj{"type": "string", "enum": parcelStatuses}, "location": str, "at": rfc3339, "carrier_code": str})}})
	schemas["Money"] = props([]string{"amount", "currency"}, obj{"amount": obj{"type": "integer", "format": "int64", "description": "minor units (fen, cents)"}, "currency": str})
	schemas["Event"] = props([]string{"position", "type", "at"}, obj{
		"position": obj{"type": "string", "pattern": "^[0-9]+:[0-9]+$", "description": "journal position of the event's record start and the event's index in the record: pass it as from to resume after this event"},
		"type":     obj{"type": "string", "enum": feedEventTypes},
		"at":       rfc3339, "partition": integer,
		"brand_id": str, "merchant_id": str, "sku_id": str, "order_id": str, "buyer_id": str, "name": str, "country": str, "kind": str, "title": str, "category": str,
		"first_festival": integer, "emerging": boolean, "last_year_gmv": integer, "industry": str,
		"price": integer, "stock": obj{"type": "integer", "format": "int64", "description": "sku_upserted: the available stock"},
		"delta":   obj{"type": "integer", "format": "int64", "description": "stock_changed: the change of available stock"},
		"channel": str, "region": str, "deal_id": str, "total": integer, "currency": str, "pay_by": rfc3339,
		"status": str, "location": str, "carrier_code": str, "scanned_at": rfc3339,
		"channel_id": str, "host": str, "starts_at": rfc3339, "ends_at": rfc3339, "limit_per_buyer": integer,
		"returned": obj{"type": "integer", "format": "int64", "description": "deal_ended: the unsold units given back to the SKU's available stock"},
		"items":    obj{"type": "array", "items": props(nil, obj{"sku_id": str, "quantity": integer, "unit_price": integer})},
	})
	batchOrder := obj{"allOf": []obj{ref("OrderInput")}, "properties": obj{"idempotency_key": str}}
	paths := obj{
		"/v1/brands/{brand_id}": obj{"put": op("Create or replace a brand", admin, []obj{pathParam("brand_id")}, jsonBody(ref("Brand")), common(obj{"200": resp("the brand", ref("Brand"))}))},
		"/v1/merchants/{merchant_id}": obj{"put": op("Create or replace a merchant", admin, []obj{pathParam("merchant_id")}, jsonBody(ref("Merchant")),
			common(obj{"200": resp("the merchant", ref("Merchant")), "404": errResp("unknown brand_id")}))},
		"/v1/skus/{sku_id}": obj{
			"put": op("Create or replace a SKU; on an existing SKU stock changes only by compare-and-set with stock_expected", admin, []obj{pathParam("sku_id")}, jsonBody(ref("SKUInput")),
				common(obj{"200": resp("the SKU", ref("SKU")), "404": errResp("unknown merchant_id or brand_id"),
					"409": errResp("conflict: stock_expected differs from the available stock, which stock_available reports"),
					"422": errResp("invalid_argument (field in `field`): stock without stock_expected on an existing SKU is field stock_expected; a new SKU without stock is field stock")})),
			"get": op("A SKU with its stock figures", both, []obj{pathParam("sku_id")}, nil, obj{"200": resp("the SKU", ref("SKU")), "404": errResp("not_found")}),
		},
		"/v1/skus/{sku_id}/stock": obj{"post": op("Adjust available stock by delta", admin, []obj{pathParam("sku_id")}, jsonBody(props([]string{"delta"}, obj{"delta": integer})),
			common(obj{"200": resp("the SKU", ref("SKU")), "404": errResp("not_found"), "409": errResp("out_of_stock")}))},
		"/v1/catalog:import": obj{"post": op("Import brands, merchants and SKUs from NDJSON (one object a line with type and id)", admin, nil,
			obj{"required": true, "content": obj{"application/x-ndjson": obj{"schema": str}}},
			common(obj{"200": resp("counts", props(nil, obj{"imported": props(nil, obj{"brand": integer, "merchant": integer, "sku": integer})})), "404": errResp("a reference to an unknown brand or merchant (with line)"),
				"409": errResp("conflict: a SKU line's stock_expected differs from the stock (with line and stock_available); nothing applied")}))},
		"/v1/orders": obj{"post": op("Place an order (Idempotency-Key header honoured)", storefront,
			[]obj{{"name": "Idempotency-Key", "in": "header", "schema": obj{"type": "string", "maxLength": 255},
				"description": "the same key with the same body returns the first order again; remembered for the idempotency window (--idempotency-window, default 24h), across restarts"}}, jsonBody(ref("OrderInput")),
			common(obj{"201": resp("the order", ref("Order")), "404": errResp("unknown sku"), "409": errResp("out_of_stock or deal_not_active"), "422": errResp("invalid_argument (field in `field`), or idempotency_mismatch: the key was used with another body"), "429": retryResp("overloaded")}))},
		"/v1/orders:batch": obj{"post": op("Place up to 10,000 orders; JSON or application/x-protobuf (see docs/api.md)", storefront,
			[]obj{{"name": "answer", "in": "query", "schema": obj{"type": "string", "enum": []string{"full", "brief"}, "default": "full"},
				"description": "full: each placed order as POST /v1/orders answers it; brief: only its order_id, status, total and pay_by"}},
			obj{"required": true, "content": obj{
				"application/json":       obj{"schema": props([]string{"orders"}, obj{"orders": obj{"type": "array", "maxItems": wire.BatchOrdersMax, "items": batchOrder}})},
				"application/x-protobuf": obj{"schema": obj{"type": "string", "contentMediaType": "application/x-protobuf", "description": "fest.v1.OrderBatchRequest"}},
			}},
			common(obj{"200": resp("one result per order, in input order", props(nil, obj{"results": obj{"type": "array", "items": props(nil, obj{"order": ref("Order"), "error": obj{"type": "object"}, "replayed": boolean})}})), "422": errResp("invalid_argument: answer is neither full nor brief; nothing applied")}))},
		"/v1/orders:settle": obj{"post": op("Pay and cancel up to 10,000 orders in one request; JSON or application/x-protobuf (see docs/api.md)", storefront, nil,
			obj{"required": true, "content": obj{
				"application/json": obj{"schema": props([]string{"actions"}, obj{"actions": obj{"type": "array", "minItems": 1, "maxItems": wire.BatchOrdersMax, "items": props([]string{"order_id", "action"}, obj{
					"order_id": str, "action": obj{"type": "string", "enum": []string{"pay", "cancel"}},
					"amount": obj{"type": "integer", "format": "int64", "description": "pay: required, the order's total (fen); cancel: must be absent"}})}})},
				"application/x-protobuf": obj{"schema": obj{"type": "string", "contentMediaType": "application/x-protobuf", "description": "fest.v1.SettleBatchRequest"}},
			}},
			common(obj{"200": resp("one result per action, in input order; per-action errors: not_found, invalid_state, payment_mismatch (another amount than the total, also on an order already paid), invalid_argument, overloaded",
				props(nil, obj{"results": obj{"type": "array", "items": props(nil, obj{
					"order": props(nil, obj{"order_id": str, "status": obj{"type": "string", "enum": []string{"paid", "cancelled"}}, "total": integer, "paid_at": rfc3339, "cancelled_at": rfc3339}),
					"error": obj{"type": "object"}})}}))}))},
		"/v1/orders/{order_id}": obj{"get": op("An order with its current status", storefront, []obj{pathParam("order_id")}, nil, obj{"200": resp("the order", ref("Order")), "404": errResp("not_found")})},
		"/v1/orders/{order_id}/pay": obj{"post": op("Pay an order with its total", storefront, []obj{pathParam("order_id")}, jsonBody(props([]string{"amount"}, obj{"amount": integer})),
			common(obj{"200": resp("the paid order (also when already paid with this amount)", ref("Order")), "404": errResp("not_found"), "409": errResp("invalid_state: cancelled or expired"),
				"422": errResp("payment_mismatch: amount differs from the total (also when already paid), or invalid_argument")}))},
		"/v1/orders/{order_id}/cancel": obj{"post": op("Cancel a pending order; its stock is released", storefront, []obj{pathParam("order_id")}, nil,
			obj{"200": resp("the cancelled order", ref("Order")), "404": errResp("not_found"), "409": errResp("invalid_state: paid or expired")})},
		"/v1/buyers/{buyer_id}/orders": obj{"get": op("A buyer's orders, newest first", storefront,
			[]obj{pathParam("buyer_id"), {"name": "limit", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": wire.ListTopMax, "default": 50}}, {"name": "cursor", "in": "query", "schema": str}}, nil,
			obj{"200": resp("a page", props(nil, obj{"orders": obj{"type": "array", "items": ref("Order")}, "next_cursor": obj{"type": []string{"string", "null"}}})), "422": errResp("invalid limit or cursor")})},
		"/v1/assistant/messages": obj{"post": op("Ask the customer-service assistant (English, Chinese, Vietnamese); answers from the buyer's own orders, cancels only after a yes in the same session_id", storefront, nil,
			jsonBody(props([]string{"buyer_id", "text", "session_id"}, obj{"buyer_id": str, "text": obj{"type": "string", "maxLength": 2000, "description": "at most 2,000 bytes by default"}, "session_id": str})),
			common(obj{"200": resp("the answer", props(nil, obj{
				"language":   obj{"type": "string", "enum": []string{"en", "zh", "vi"}},
				"intent":     obj{"type": "string", "enum": []string{"order_status", "parcel_tracking", "cancel_order", "refund_return", "payment_help", "promotion_rules", "delivery_time", "change_address", "greeting", "human_agent", "other"}},
				"confidence": obj{"type": "number"}, "answer": str, "handoff": boolean,
				"order_id": obj{"type": []string{"string", "null"}}, "parcel_id": obj{"type": []string{"string", "null"}}}))}))},
		"/v1/assistant/stats": obj{"get": op("The assistant's counters since start", nil, nil, nil, obj{"200": resp("counters", props(nil, obj{
			"questions": integer, "by_intent": obj{"type": "object", "additionalProperties": integer}, "by_language": obj{"type": "object", "additionalProperties": integer},
			"automated_share": obj{"type": "number", "description": "the share answered without a handoff to a person"}})), "503": errResp("the assistant is not started yet")})},
		"/v1/orders/{order_id}/parcel": obj{"get": op("The parcel of a paid order", storefront, []obj{pathParam("order_id")}, nil,
			obj{"200": resp("the parcel", parcelSchema), "404": errResp("not_found: no such order, or not paid (no parcel before payment)")})},
		"/v1/parcels/{parcel_id}": obj{"get": op("A parcel; its id is P and its order's id", []string{"storefront", "carrier"}, []obj{pathParam("parcel_id")}, nil,
			obj{"200": resp("the parcel", parcelSchema), "404": errResp("not_found")})},
		"/v1/parcels/{parcel_id}/scans": obj{"post": op("A carrier's scan; answered once it is journaled and fsynced", []string{"carrier"}, []obj{pathParam("parcel_id")},
			jsonBody(props([]string{"status", "location"}, obj{"status": obj{"type": "string", "enum": parcelStatuses[1:]}, "location": obj{"type": "string", "minLength": 1, "maxLength": 128},
				"at":           obj{"type": "string", "format": "date-time", "description": "the carrier's time of the scan (default: when received); not before the payment, at most 1h ahead"},
				"carrier_code": obj{"type": "string", "maxLength": 64, "description": "the carrier's own event code"}})),
			common(obj{"200": resp("the parcel after the scan (a repeat of the last scan, same status and location, changes nothing)", parcelSchema), "404": errResp("not_found: no parcel"),
				"409": errResp("invalid_state: the transition table does not allow this scan"), "422": errResp("invalid_argument (field in `field`): status, location, at, carrier_code")}))},
		"/v1/logistics/stats": obj{"get": op("Parcel figures", nil, nil, nil, obj{"200": resp("figures", props(nil, obj{"parcels": integer,
			"by_status": obj{"type": "object", "additionalProperties": integer}, "parcels_per_second": obj{"type": "number"}, "stale": integer,
			"creation_lag_seconds": obj{"type": "number"}, "scans": integer, "as_of": rfc3339})), "503": errResp("not ready")})},
		"/v1/live/channels/{channel_id}": obj{
			"put": op("Create or replace a livestream channel; its orders carry the channel live:<channel_id>", admin, []obj{pathParam("channel_id")},
				jsonBody(props([]string{"title", "host", "starts_at", "ends_at"}, obj{"title": str, "host": str, "starts_at": rfc3339, "ends_at": rfc3339})),
				common(obj{"200": resp("the channel", props(nil, obj{"channel_id": str, "title": str, "host": str, "starts_at": rfc3339, "ends_at": rfc3339}))})),
			"get": op("A channel with its GMV and paid orders (every paid order on live:<channel_id>) and its deals", nil, []obj{pathParam("channel_id")}, nil,
				obj{"200": resp("the channel", ref("LiveChannel")), "404": errResp("not_found"), "503": retryResp("unavailable")}),
		},
		"/v1/live/deals/{deal_id}": obj{"put": op("Create a flash deal, carving its stock out of the SKU's available stock; the same body again changes nothing, other terms are 409 conflict", admin, []obj{pathParam("deal_id")},
			jsonBody(props([]string{"channel_id", "sku_id", "price", "stock", "starts_at", "ends_at"}, obj{"channel_id": str, "sku_id": str, "price": integer, "stock": integer,
				"starts_at": rfc3339, "ends_at": rfc3339, "limit_per_buyer": obj{"type": "integer", "format": "int64", "minimum": 1, "description": "units per buyer in pending or paid orders; default none"}})),
			common(obj{"200": resp("the deal", ref("Deal")), "404": errResp("unknown sku_id or channel_id"),
				"409": errResp("out_of_stock: the SKU has less available stock than the deal's; conflict: the deal exists with other terms")}))},
		"/v1/live/deals/{deal_id}/end": obj{"post": op("End a deal early; its unsold stock returns to the SKU, exactly once (ending an ended deal changes nothing)", admin, []obj{pathParam("deal_id")}, nil,
			obj{"200": resp("the ended deal", ref("Deal")), "404": errResp("not_found")})},
		"/v1/live/leaderboard": obj{"get": op("Channels by GMV, largest first, and the running deals closest to selling out", nil,
			[]obj{{"name": "top", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": 1000, "default": 30}}}, nil,
			obj{"200": resp("the leaderboard", props(nil, obj{"channels": obj{"type": "array", "items": props(nil, obj{"channel_id": str, "title": str, "gmv": integer, "orders": integer})},
				"selling_deals": obj{"type": "array", "items": ref("LiveDeal")}})), "422": errResp("invalid_argument: field top"), "503": retryResp("unavailable")})},
		"/v1/cluster": obj{"get": op("The cluster: this node, every node's address and liveness, every partition's owner and lease revision; a single node owns every partition. "+
			"Any node accepts any request and forwards it to the partition's owner (see docs/api.md, Cluster)", nil, nil, nil,
			obj{"200": resp("the cluster as this node sees it", props([]string{"node", "nodes", "partitions"}, obj{"node": str,
				"nodes": obj{"type": "array", "items": props([]string{"node", "addr", "alive"}, obj{"node": str, "addr": str, "alive": boolean})},
				"partitions": obj{"type": "array", "items": props([]string{"partition", "owner", "lease_revision"}, obj{"partition": integer,
					"owner": obj{"type": "string", "description": "the owning node; empty while the partition fails over"}, "lease_revision": integer})},
				"order_id_partition_shift": obj{"type": "integer", "description": "extension: an order id is a base-36 64-bit number whose bits from this one up are its partition"}})),
				"503": retryResp("unavailable: recovery in progress")})},
		"/healthz":             obj{"get": op("Liveness", nil, nil, nil, obj{"200": resp("ok", props(nil, obj{"status": str}))})},
		"/readyz":              obj{"get": op("Readiness: 200 once recovery is done", nil, nil, nil, obj{"200": resp("ready", nil), "503": errResp("recovering")})},
		"/metrics":             obj{"get": op("Prometheus metrics", nil, nil, nil, obj{"200": obj{"description": "text exposition format"}})},
		"/v1/openapi.json":     obj{"get": op("This document (OpenAPI 3.1)", nil, nil, nil, obj{"200": obj{"description": "OpenAPI 3.1", "content": obj{"application/json": obj{"schema": obj{"type": "object"}}}}})},
		"/v1/openapi-3.0.json": obj{"get": op("This document as OpenAPI 3.0, for generators that do not read 3.1", nil, nil, nil, obj{"200": obj{"description": "OpenAPI 3.0", "content": obj{"application/json": obj{"schema": obj{"type": "object"}}}}})},
		"/":                    obj{"get": op("The big-screen dashboard: one page, live over /v1/gmv/stream", nil, nil, nil, obj{"200": obj{"description": "HTML", "content": obj{"text/html": obj{"schema": str}}}})},
		"/v1/gmv": obj{"get": op("GMV totals at one journal position, with the projection's lag and the festival counts", nil, nil, nil,
			obj{"200": resp("the totals", ref("GMV")), "503": retryResp("unavailable: recovering, or the GMV projection stopped")})},
		"/v1/gmv/breakdown": obj{"get": op("The top rows of one breakdown at one journal position; rows plus rest add up to gmv", nil,
			[]obj{{"name": "by", "in": "query", "required": true, "schema": obj{"type": "string", "enum": []string{"brand", "merchant", "category", "country", "channel", "region", "industry", "kind"}}},
				{"name": "top", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": wire.ListTopMax, "default": 20}}}, nil,
			obj{"200": resp("the breakdown", ref("Breakdown")), "422": errResp("invalid_argument: field by (unknown dimension) or top (not 1 to 1000)"), "503": retryResp("unavailable")})},
		"/v1/gmv/milestones": obj{"get": op("Brands and channels that reached a GMV threshold, in the order they did", nil, nil, nil,
			obj{"200": resp("the milestones", props(nil, obj{"milestones": obj{"type": "array", "items": props(nil, obj{
				"kind": obj{"type": "string", "enum": []string{"brand", "channel"}}, "key": str, "threshold": integer, "reached_at": rfc3339})}})), "503": retryResp("unavailable")})},
		"/v1/gmv/series": obj{"get": op("Placed and paid orders and paid GMV per second of event time, oldest first (extension)", nil,
			[]obj{{"name": "seconds", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": 3600, "default": 300}}}, nil,
			obj{"200": resp("the series", props(nil, obj{"seconds": obj{"type": "array", "items": props(nil, obj{"at": rfc3339, "placed": integer, "paid": integer, "gmv": integer})}})),
				"422": errResp("invalid_argument: field seconds"), "503": retryResp("unavailable")})},
		"/v1/gmv/stream": obj{"get": op("Server-sent events: an event named gmv at once and every second, whose data is the body of GET /v1/gmv", nil, nil, nil,
			obj{"200": obj{"description": "text/event-stream", "content": obj{"text/event-stream": obj{"schema": str}}}, "503": retryResp("unavailable: recovering, or too many streams")})},
		"/v1/events": obj{"get": op("Committed events from a journal position on, as NDJSON, following new ones until the client disconnects (see docs/api.md)", admin,
			[]obj{{"name": "from", "in": "query", "schema": obj{"type": "string", "pattern": "^[0-9]+(:[0-9]+)?$"},
				"description": "a journal position (0, the default: the journal's start) or the position of the last event processed, to resume after it"}}, nil,
			obj{"200": obj{"description": "one event a line; a line without its newline is incomplete (the connection ended)", "content": obj{"application/x-ndjson": obj{"schema": ref("Event")}}},
				"410": errResp("gone: the journal no longer holds that position; start again from an empty from"),
				"422": errResp("invalid_argument (field from): not a position this journal has"),
				"503": retryResp("unavailable: recovery in progress, or too many event feeds open")})},
	}
	finishPaths(paths)
	return obj{
		"openapi": "3.1.0",
		"info": obj{"title": "fest", "version": "1",
			"description": "The 11.11 shopping festival API: catalog, orders, operations. Errors are {\"error\": {\"code\", \"message\", ...}}; money is integer fen. " +
				"The server cuts off a client that does not send its headers within --read-header-timeout (default 5s) or its whole request within --read-timeout (default 60s), " +
				"bounds a request to the end of its answer by --write-timeout (default 90s), closes idle connections after --idle-timeout (default 2m), and answers a connection beyond " +
				"--connections-max (default 10,000) with 503 unavailable and Retry-After."},
		"servers": []obj{{"url": "/"}},
		"paths":   paths,
		"components": obj{
			"schemas": schemas,
			"securitySchemes": obj{
				"admin":      obj{"type": "http", "scheme": "bearer", "description": "admin role token"},
				"storefront": obj{"type": "http", "scheme": "bearer", "description": "storefront role token"},
				"carrier":    obj{"type": "http", "scheme": "bearer", "description": "carrier role token (parcel scans)"},
			},
		},
	}
}

// finishPaths gives every operation its operationId, derived from its
// method and path so that an endpoint added later cannot forget one and
// names follow one rule: the method, then the path's words, a collection
// named singular before its id (PUT /v1/skus/{sku_id} is putSku, POST
// /v1/orders:batch is postOrdersBatch, GET /v1/buyers/{buyer_id}/orders is
// getBuyerOrders), and a 4XX answer to those that document none.
func finishPaths(paths obj) {
	for path, item := range paths {
		for method, o := range item.(obj) {
			o := o.(obj)
			if _, ok := o["operationId"]; !ok {
				o["operationId"] = operationID(method, path)
			}
			responses := o["responses"].(obj)
			has4xx := false
			for code := range responses {
				has4xx = has4xx || code[0] == '4'
			}
			if !has4xx {
				// Even an endpoint that takes nothing can be refused by the
				// HTTP server itself, before any handler.
				responses["4XX"] = obj{"description": "the HTTP server refused the request itself (malformed, or headers over the limit), in plain text"}
			}
		}
	}
}

// operationID derives an operation's id from its method and path.
func operationID(method, path string) string {
	var words []string
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/v1"), "/") {
		if strings.HasPrefix(seg, "{") {
			if n := len(words); n > 0 {
				words[n-1] = strings.TrimSuffix(words[n-1], "s")
			}
			continue
		}
		words = append(words, strings.FieldsFunc(seg, func(r rune) bool { return r == ':' || r == '.' || r == '-' || r == '_' })...)
	}
	if len(words) == 0 {
		words = []string{"index"}
	}
	id := strings.ToLower(method)
	for _, w := range words {
		id += strings.ToUpper(w[:1]) + w[1:]
	}
	return id
}

// openAPI30 converts the 3.1 document into OpenAPI 3.0 for generators that
// read only 3.0 (oapi-codegen among them). The 3.1 document uses only what
// has a 3.0 spelling: a type list with "null" becomes nullable, and
// contentMediaType becomes format binary.
func openAPI30(doc obj) obj {
	out := convert30(doc).(obj)
	out["openapi"] = "3.0.3"
	return out
}

func convert30(v any) any {
	switch v := v.(type) {
	case obj:
		out := make(obj, len(v))
		for k, e := range v {
			out[k] = convert30(e)
		}
		if types, ok := v["type"].([]string); ok {
			var rest []string
			for _, t := range types {
				if t == "null" {
					out["nullable"] = true
				} else {
					rest = append(rest, t)
				}
			}
			if len(rest) != 1 {
				panic(fmt.Sprintf("openapi: type list %v has no OpenAPI 3.0 spelling", types))
			}
			out["type"] = rest[0]
		}
		if _, ok := v["contentMediaType"]; ok {
			delete(out, "contentMediaType")
			out["format"] = "binary"
		}
		return out
	case []obj:
		out := make([]obj, len(v))
		for i, e := range v {
			out[i] = convert30(e).(obj)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = convert30(e)
		}
		return out
	default:
		return v
	}
}

func marshalDoc(doc obj) []byte {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("openapi: " + err.Error())
	}
	return b
}

var (
	openAPIDoc   = sync.OnceValue(func() []byte { return marshalDoc(buildOpenAPI()) })
	openAPI30Doc = sync.OnceValue(func() []byte { return marshalDoc(openAPI30(buildOpenAPI())) })
)

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, openAPIDoc())
}

func (s *Server) handleOpenAPI30(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, openAPI30Doc())
}
