package assistant

import (
	"strings"

	"github.com/fest-platform/fest/internal/engine"
)

// Entities. An order id is the base-36 text the API prints (engine.OrderID:
// lowercase letters and digits, at most 13 characters). Ids of the first
// partition are short ("5", "2s") and look like any number, so a word is
// taken for an order id only when it is marked as one:
//   - right after '#' ("#2s"), or
//   - with a digit, right after a cue word ("order 2s", "đơn hàng 2s",
//     "订单 2s", "单号：2s"), or
//   - with a digit and long enough not to be a word or a quantity: at
//     least orderIDBytesBare characters (ids of the other partitions have
//     11 to 13).
//
// Without a digit, "order status" would name the order "status", which is
// valid base 36.
//
// Parcel ids are matched by Config.ParcelPattern first, and a parcel id is
// never also read as an order id.

// orderIDBytesBare is the length from which an id needs no cue.
const orderIDBytesBare = 9

// orderCueWords precede an order id in a Latin-script message (folded:
// "đơn" is "don").
var orderCueWords = map[string]bool{
	"order": true, "orders": true, "oder": true, "ordr": true, "id": true, "no": true, "number": true,
	"don": true, "hang": true, "dh": true, "ma": true, "so": true,
}

// orderCueHan are the Han characters that end a Chinese cue (订单, 单号,
// 编号, 订单号).
var orderCueHan = map[rune]bool{'单': true, '号': true}

// orderID returns the first order id the message names, or "".
func orderID(t *tokenizer, parcelStart, parcelEnd int) string {
	for i := range t.tokens {
		tk := &t.tokens[i]
		if tk.kind != tokenWord || int(tk.textStart) < parcelEnd && int(tk.textEnd) > parcelStart {
			continue
		}
		w := t.word(i)
		if len(w) > 13 || !ascii(t.text[tk.textStart:tk.textEnd]) {
			continue
		}
		if _, err := engine.ParseOrderID(string(w)); err != nil {
			continue
		}
		if tk.hash || hasDigit(w) && (cued(t, i) || len(w) >= orderIDBytesBare) {
			return string(w)
		}
	}
	return ""
}

// cued reports whether the token before i is an order cue.
func cued(t *tokenizer, i int) bool {
	if i == 0 {
		return false
	}
	tk := &t.tokens[i-1]
	if tk.kind == tokenHan {
		return orderCueHan[tk.han]
	}
	return orderCueWords[string(t.word(i-1))]
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func hasDigit(w []byte) bool {
	for _, c := range w {
		if c >= '0' && c <= '9' {
			return true
		}
	}
	return false
}

// parcelID returns the first parcel id in the text (uppercased) and its
// byte span, or "" and (-1, -1).
func (a *Assistant) parcelID(text string) (string, int, int) {
	loc := a.parcelRE.FindStringIndex(text)
	if loc == nil {
		return "", -1, -1
	}
	return strings.ToUpper(text[loc[0]:loc[1]]), loc[0], loc[1]
}
