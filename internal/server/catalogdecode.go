package server

import (
	"github.com/fest-platform/fest/internal/engine"
)

// importLine is one catalog import line as decodeImportLine read it: its
// kind, its id (as "id" or as brand_id / merchant_id / sku_id) and the
// fields of the matching PUT.
type importLine struct {
	kind   engine.Kind
	id     string
	fields catalogFields
}

// Keys of an import line, one bit each: a key given twice, or a key of
// another kind of line, sends the line to encoding/json.
const (
	keyType uint32 = 1 << iota
	keyID
	keyBrandID
	keyMerchantID
	keySKUID
	keyName
	keyCountry
	keyFirstFestival
	keyEmerging
	keyLastYearGMV
	keyKind
	keyIndustry
	keyRegion
	keyTitle
	keyCategory
	keyPrice
	keyStock
	keyStockExpected
)

// The keys each kind of line may have: those of importBrand, importMerchant
// and importSKU.
const (
	brandKeys    = keyType | keyID | keyBrandID | keyName | keyCountry | keyFirstFestival | keyEmerging | keyLastYearGMV
	merchantKeys = keyType | keyID | keyMerchantID | keyName | keyBrandID | keyKind | keyIndustry | keyRegion
	skuKeys      = keyType | keyID | keySKUID | keyMerchantID | keyBrandID | keyTitle | keyCategory | keyPrice | keyStock | keyStockExpected
)

// decodeImportLine decodes one import line (without its newline, trimmed)
// into out. all is the whole body as one string and line starts at offset
// at in it: the strings of out are substrings of all, so that decoding a
// line allocates nothing. A line the fast path is not certain about is
// decoded by parseImportLine (encoding/json), so that the answers and error
// messages are exactly the strict decoder's; its strings are its own.
func decodeImportLine(all string, at int, line []byte, out *importLine) *apiError {
	if fastDecodeImportLine(all, at, line, out) {
		return nil
	}
	return parseImportLine(line, out)
}

// fastDecodeImportLine decodes line into out and reports whether it could.
// Like fastDecodeOrder it accepts only lines that encoding/json (strict)
// accepts, and then yields the same values: one object with a known
// "type", each key of that type at most once with its exact spelling,
// strings without escapes or control characters and in valid UTF-8,
// integers in canonical form of at most 18 digits (first_festival within
// int32), booleans as true or false. Anything else returns false.
func fastDecodeImportLine(all string, at int, line []byte, out *importLine) bool {
	d := fastDec{b: line}
	f := &out.fields
	*out = importLine{}
	var typ, id, brandID, merchantID, skuID span
	sub := func(s span) string {
		if s.to == 0 {
			return ""
		}
		return all[at+int(s.from) : at+int(s.to)]
	}
	d.ws()
	seen, ok := d.object(func(key []byte) (uint32, bool) {
		var bit uint32
		var str *string
		var sp *span
		var num *int64
		switch string(key) {
		case "type":
			bit, sp = keyType, &typ
		case "id":
			bit, sp = keyID, &id
		case "brand_id":
			bit, sp = keyBrandID, &brandID
		case "merchant_id":
			bit, sp = keyMerchantID, &merchantID
		case "sku_id":
			bit, sp = keySKUID, &skuID
		case "name":
			bit, str = keyName, &f.name
		case "country":
			bit, str = keyCountry, &f.country
			f.has |= hasCountry
		case "kind":
			bit, str = keyKind, &f.kind
			f.has |= hasKind
		case "industry":
			bit, str = keyIndustry, &f.industry
		case "region":
			bit, str = keyRegion, &f.region
		case "title":
			bit, str = keyTitle, &f.title
		case "category":
			bit, str = keyCategory, &f.category
		case "first_festival":
			v, ok := d.int()
			if !ok || v < -1<<31 || v >= 1<<31 {
				return 0, false
			}
			bit, f.firstFestival = keyFirstFestival, int32(v)
		case "emerging":
			bit = keyEmerging
			switch {
			case d.literal("true"):
				f.emerging = true
			case d.literal("false"):
			default:
				return 0, false
			}
		case "last_year_gmv":
			bit, num = keyLastYearGMV, &f.lastYearGMV
		case "price":
			bit, num = keyPrice, &f.price
			f.has |= hasPrice
		case "stock":
			bit, num = keyStock, &f.stock
			f.has |= hasStock
		case "stock_expected":
			bit, num = keyStockExpected, &f.stockExpected
			f.has |= hasStockExpected
		default:
			return 0, false
		}
		switch {
		case sp != nil || str != nil:
			s, ok := d.stringSpan()
			if !ok {
				return 0, false
			}
			if sp != nil {
				*sp = s
			} else {
				*str = sub(s)
			}
		case num != nil:
			v, ok := d.int()
			if !ok {
				return 0, false
			}
			*num = v
		}
		return bit, true
	})
	if !ok {
		return false
	}
	d.ws()
	if d.i != len(d.b) || typ.to == 0 {
		return false
	}
	switch string(line[typ.from:typ.to]) {
	case "brand":
		if seen&^brandKeys != 0 {
			return false
		}
		out.kind, out.id = engine.KindUpsertBrand, firstID(sub(id), sub(brandID))
	case "merchant":
		if seen&^merchantKeys != 0 {
			return false
		}
		// In a merchant line brand_id is the merchant's brand.
		out.kind, out.id = engine.KindUpsertMerchant, firstID(sub(id), sub(merchantID))
		f.brandID = sub(brandID)
	case "sku":
		if seen&^skuKeys != 0 {
			return false
		}
		out.kind, out.id = engine.KindUpsertSKU, firstID(sub(id), sub(skuID))
		f.brandID, f.merchantID = sub(brandID), sub(merchantID)
	default:
		return false
	}
	return true
}

// literal reads the literal word (true or false) if it comes next, not run
// into a following letter or digit.
func (d *fastDec) literal(word string) bool {
	end := d.i + len(word)
	if end > len(d.b) || string(d.b[d.i:end]) != word {
		return false
	}
	if end < len(d.b) {
		if c := d.b[end]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return false
		}
	}
	d.i = end
	return true
}
