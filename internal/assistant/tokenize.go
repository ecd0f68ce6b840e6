package assistant

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Language is a message's language.
type Language uint8

// Languages. English is also the answer for a message with no words
// (only digits or emoji).
const (
	English Language = iota
	Chinese
	Vietnamese
	languageCount
)

var languageCodes = [languageCount]string{"en", "zh", "vi"}

// String returns the language's ISO 639-1 code, as the API prints it.
func (l Language) String() string {
	if l < languageCount {
		return languageCodes[l]
	}
	return "language(" + strconv.Itoa(int(l)) + ")"
}

// Languages lists every language in order.
func Languages() []Language { return []Language{English, Chinese, Vietnamese} }

// ParseLanguage returns the language of an ISO 639-1 code.
func ParseLanguage(s string) (Language, bool) {
	for i, c := range languageCodes {
		if c == s {
			return Language(i), true
		}
	}
	return 0, false
}

// Intent is what a message asks for.
type Intent uint8

// Intents, as in the API contract.
const (
	OrderStatus Intent = iota
	ParcelTracking
	CancelOrder
	RefundReturn
	PaymentHelp
	PromotionRules
	DeliveryTime
	ChangeAddress
	Greeting
	HumanAgent
	Other
	intentCount
)

var intentNames = [intentCount]string{
	"order_status", "parcel_tracking", "cancel_order", "refund_return", "payment_help",
	"promotion_rules", "delivery_time", "change_address", "greeting", "human_agent", "other",
}

// String returns the intent's name in the API.
func (i Intent) String() string {
	if i < intentCount {
		return intentNames[i]
	}
	return "intent(" + strconv.Itoa(int(i)) + ")"
}

// Intents lists every intent in order.
func Intents() []Intent {
	out := make([]Intent, intentCount)
	for i := range out {
		out[i] = Intent(i)
	}
	return out
}

// ParseIntent returns the intent of an API name.
func ParseIntent(s string) (Intent, bool) {
	for i, n := range intentNames {
		if n == s {
			return Intent(i), true
		}
	}
	return 0, false
}

// Tokenization. A message becomes a list of tokens, each either a Latin
// word (English or Vietnamese: letters and digits, lowercased, Vietnamese
// diacritics and đ folded to ASCII so "đơn hàng" and "don hang" are the
// same two syllables) or one Chinese character (Chinese has no spaces; the
// features pair neighbouring characters instead of segmenting words).
// Everything else separates tokens.

type tokenKind uint8

const (
	tokenWord tokenKind = iota // a Latin word, folded into tokenizer.folded
	tokenHan                   // one Han character
)

type token struct {
	kind tokenKind
	// joined: the token follows the previous one with nothing between
	// (two Han characters of one run, or a word right after a '#').
	joined bool
	hash   bool // a Latin word right after '#'
	mark   bool // the word had a Vietnamese diacritic or đ
	han    rune // tokenHan: the character
	// tokenWord: the folded word is folded[start:end] and the original
	// text is text[textStart:textEnd].
	start, end         int32
	textStart, textEnd int32
}

// tokenizer holds the reusable buffers of one message; see tokenizers.
type tokenizer struct {
	text   string
	folded []byte
	tokens []token
	// features are the hashed feature buckets of the whole message;
	// latinFeatures those of its Latin words only (for the en/vi model).
	features      []uint32
	latinFeatures []uint32
}

// Bounds of the pooled buffers: a message is at most textBytesLimit bytes,
// but a pooled tokenizer keeps at most this much, so one long message does
// not pin memory.
const pooledTokensMax = 1024

func (t *tokenizer) reset(text string) {
	t.text = text
	t.folded = t.folded[:0]
	t.tokens = t.tokens[:0]
	t.features = t.features[:0]
	t.latinFeatures = t.latinFeatures[:0]
}

func (t *tokenizer) release() {
	t.text = ""
	if cap(t.tokens) > pooledTokensMax {
		t.tokens = nil
	}
	if cap(t.features) > 8*pooledTokensMax {
		t.features, t.latinFeatures = nil, nil
	}
	if cap(t.folded) > 8*pooledTokensMax {
		t.folded = nil
	}
}

func (t *tokenizer) word(i int) []byte {
	tk := &t.tokens[i]
	return t.folded[tk.start:tk.end]
}

// tokenize splits text into tokens.
func (t *tokenizer) tokenize(text string) {
	t.reset(text)
	inWord := false
	afterHash := false
	prevHan := false
	for i := 0; i < len(text); {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
		}
		switch c, mark := foldRune(r); {
		case c != 0:
			if !inWord {
				t.tokens = append(t.tokens, token{kind: tokenWord, hash: afterHash, joined: afterHash,
					start: int32(len(t.folded)), textStart: int32(i)})
				inWord = true
			}
			tk := &t.tokens[len(t.tokens)-1]
			t.folded = append(t.folded, c)
			tk.end, tk.textEnd = int32(len(t.folded)), int32(i+size)
			tk.mark = tk.mark || mark
			afterHash, prevHan = false, false
		case unicode.Is(unicode.Han, r):
			t.tokens = append(t.tokens, token{kind: tokenHan, han: r, joined: prevHan})
			inWord, afterHash, prevHan = false, false, true
		default:
			inWord, prevHan = false, false
			afterHash = r == '#'
		}
		i += size
	}
}

// foldRune returns the lowercase ASCII letter or digit r folds to (0 for a
// rune that is not part of a Latin word) and whether it carried a
// Vietnamese diacritic.
func foldRune(r rune) (byte, bool) {
	switch {
	case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
		return byte(r), false
	case r >= 'A' && r <= 'Z':
		return byte(r) + 'a' - 'A', false
	case r >= foldFirst && r < foldFirst+rune(len(foldTable)):
		c := foldTable[r-foldFirst]
		return c, c != 0
	}
	return 0, false
}

// foldTable maps the accented Latin letters of U+00C0 to U+1EFF (Latin-1,
// Latin Extended-A/B and Latin Extended Additional, where Vietnamese's
// stacked tone marks live) to their base ASCII letter; 0 for the rest.
const foldFirst = 0xC0

var foldTable = func() (t [0x1F00 - foldFirst]byte) {
	groups := map[byte]string{
		'a': "àáảãạăằắẳẵặâầấẩẫậäåā",
		'd': "đ",
		'e': "èéẻẽẹêềếểễệëē",
		'i': "ìíỉĩịïī",
		'o': "òóỏõọôồốổỗộơờớởỡợöø",
		'u': "ùúủũụưừứửữựüū",
		'y': "ỳýỷỹỵÿ",
		'c': "ç",
		'n': "ñ",
	}
	for base, s := range groups {
		for _, r := range s {
			t[r-foldFirst] = base
			if u := unicode.ToUpper(r); u >= foldFirst && u < 0x1F00 {
				t[u-foldFirst] = base
			}
		}
	}
	return t
}()
