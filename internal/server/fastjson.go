package server

import (
	"unicode/utf8"
)

// decodeOrder decodes the body of POST /v1/orders into o (reusing o.Items).
// The common shape of a body is decoded by hand, without reflection; any
// body the fast path is not certain about is decoded again by
// encoding/json, so the answers and error messages are exactly those of
// decodeStrict.
func decodeOrder(body []byte, o *orderJSON) *apiError {
	if fastDecodeOrder(body, o) {
		return nil
	}
	items := o.Items[:0]
	*o = orderJSON{}
	if aerr := decodeStrict(body, o); aerr != nil {
		return locateItemError(body, aerr, false)
	}
	if o.Items == nil {
		// Keep the pooled slice for the next request.
		o.Items = items[:0:0]
	}
	return nil
}

// fastDecodeOrder decodes body into o and reports whether it could. It
// accepts only bodies that encoding/json (strict) accepts, and then yields
// the same values: one object, each known key at most once with its exact
// spelling, strings without escapes or control characters and in valid
// UTF-8, quantities as plain integers of at most 18 digits. Anything else
// (unknown, duplicate or case-folded keys, escapes, null, fractions,
// exponents, syntax errors) returns false and leaves the decision to
// encoding/json.
//
// Every string of the result is a substring of one copy of the body: one
// allocation per request instead of one per field. The engine keeps no
// strings of an order, so the copy lives only as long as the request.
func fastDecodeOrder(body []byte, o *orderJSON) bool {
	d := fastDec{b: body}
	items := o.Items[:0]
	*o = orderJSON{}
	o.Items = items
	d.ws()
	_, ok := d.object(func(key []byte) (uint32, bool) {
		var field int
		switch string(key) {
		case "items":
			return 1, d.items(o)
		case "buyer_id":
			field = 0
		case "channel":
			field = 1
		case "region":
			field = 2
		case "deal_id":
			field = 3
		default:
			return 0, false
		}
		var ok bool
		o.spans[field], ok = d.stringSpan()
		return 2 << field, ok
	})
	if !ok {
		return false
	}
	d.ws()
	if d.i != len(d.b) {
		return false
	}
	d.finish(o)
	return true
}

// span is the content of a string in the body; to == 0 means absent (a
// string's content never ends at offset 0, after its opening quote).
type span struct{ from, to int32 }

// fastDec is a cursor over a JSON body.
type fastDec struct {
	b []byte
	i int
}

func (d *fastDec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDec) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// rawString reads a string without escapes and returns its bytes.
func (d *fastDec) rawString() ([]byte, bool) {
	sp, ok := d.stringSpan()
	if !ok {
		return nil, false
	}
	return d.b[sp.from:sp.to], true
}

// stringSpan reads a string and returns the span of its content. It fails
// on escapes, control characters and invalid UTF-8, which encoding/json
// would rewrite or reject.
func (d *fastDec) stringSpan() (span, bool) {
	if !d.eat('"') {
		return span{}, false
	}
	from := d.i
	ascii := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			to := d.i
			d.i++
			if !ascii && !utf8.Valid(d.b[from:to]) {
				return span{}, false
			}
			return span{int32(from), int32(to)}, true
		case c == '\\' || c < 0x20:
			return span{}, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return span{}, false
}

// object reads an object. field reads the value of each key and returns
// the key's bit, so that a key given twice fails, and whether the value
// was read; an unknown key fails (bit 0 with false). seen is the bits of
// the keys read.
func (d *fastDec) object(field func(key []byte) (bit uint32, ok bool)) (seen uint32, ok bool) {
	if !d.eat('{') {
		return 0, false
	}
	d.ws()
	if d.eat('}') {
		return 0, true
	}
	for {
		d.ws()
		key, ok := d.rawString()
		if !ok {
			return seen, false
		}
		d.ws()
		if !d.eat(':') {
			return seen, false
		}
		d.ws()
		bit, ok := field(key)
		if !ok || seen&bit != 0 {
			return seen, false
		}
		seen |= bit
		d.ws()
		if d.eat(',') {
			continue
		}
		return seen, d.eat('}')
	}
}

// items reads the items array into o.Items.
func (d *fastDec) items(o *orderJSON) bool {
	if !d.eat('[') {
		return false
	}
	d.ws()
	if d.eat(']') {
		return true
	}
	for {
		d.ws()
		var it itemJSON
		_, ok := d.object(func(key []byte) (uint32, bool) {
			var ok bool
			switch string(key) {
			case "sku_id":
				it.sku, ok = d.stringSpan()
				return 1, ok
			case "quantity":
				it.Quantity, ok = d.int()
				return 2, ok
			}
			return 0, false
		})
		if !ok {
			return false
		}
		o.Items = append(o.Items, it)
		d.ws()
		if d.eat(',') {
			continue
		}
		if d.eat(']') {
			return true
		}
		return false
	}
}

// int reads an integer in JSON's canonical form, at most 18 digits (so it
// fits an int64), not followed by a fraction or exponent.
func (d *fastDec) int() (int64, bool) {
	neg := d.eat('-')
	start := d.i
	var v int64
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		v = v*10 + int64(d.b[d.i]-'0')
		d.i++
	}
	n := d.i - start
	if n == 0 || n > 18 || (n > 1 && d.b[start] == '0') {
		return 0, false
	}
	if d.i < len(d.b) {
		if c := d.b[d.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	if neg {
		v = -v
	}
	return v, true
}

// finish turns the spans into strings: one copy of the part of the body
// that holds them, sliced.
func (d *fastDec) finish(o *orderJSON) {
	lo, hi := int32(len(d.b)), int32(0)
	note := func(s span) {
		if s.to != 0 {
			lo, hi = min(lo, s.from), max(hi, s.to)
		}
	}
	for _, s := range o.spans {
		note(s)
	}
	for i := range o.Items {
		note(o.Items[i].sku)
	}
	if hi <= lo {
		return
	}
	all := string(d.b[lo:hi])
	sub := func(s span) string {
		if s.to == 0 {
			return ""
		}
		return all[s.from-lo : s.to-lo]
	}
	o.BuyerID, o.Channel, o.Region, o.DealID = sub(o.spans[0]), sub(o.spans[1]), sub(o.spans[2]), sub(o.spans[3])
	for i := range o.Items {
		o.Items[i].SKUID = sub(o.Items[i].sku)
	}
}
