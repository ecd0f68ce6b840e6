package assistant

import "sync"

// Features. Each token yields a few features, hashed into one of
// bucketsCount buckets (the hashing trick: no vocabulary to store, and a
// typo or an unseen word costs nothing):
//   - a Latin word: the word and the pair with the previous word (each
//     counted twice), and its character trigrams with boundary marks (^or,
//     ord, ..., er$), which keep "oder" and "ordr" close to "order";
//   - a Han character: the character, and the pair and triple it ends in
//     its run (查询 → 查, 询, 查询), a segmenter's work without a dictionary.
//
// Long alphanumeric words (order and parcel ids) are one shared feature,
// so an id says "an id was named" without teaching the model the id.

const (
	bucketBits   = 17
	bucketsCount = 1 << bucketBits
	bucketMask   = bucketsCount - 1

	// idWordBytesMin: a word this long with a digit is an id, not a word.
	idWordBytesMin = 6
	// numberBytesMax: longer runs of digits are one "number" feature.
	numberBytesMax = 4
)

// Feature kinds seed the hash so a word and a character pair never meet.
const (
	seedWord uint32 = 2166136261 + iota*16777619
	seedWordPair
	seedTrigram
	seedHan
	seedHanPair
	seedHanTriple
	seedSpecial
)

const fnvPrime = 16777619

func hashBytes(h uint32, b []byte) uint32 {
	for _, c := range b {
		h ^= uint32(c)
		h *= fnvPrime
	}
	return h
}

func hashRune(h uint32, r rune) uint32 {
	h ^= uint32(r)
	h *= fnvPrime
	h ^= uint32(r) >> 16
	h *= fnvPrime
	return h
}

// finalize mixes the hash's high bits into the bucket index.
func finalize(h uint32) uint32 {
	h ^= h >> 15
	h *= 0x2c1b3c6d
	h ^= h >> 12
	return h & bucketMask
}

// wordClass sorts a Latin word: an ordinary word, an id or a long number.
func wordClass(w []byte, afterHash bool) byte {
	digits := 0
	for _, c := range w {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	switch {
	case afterHash || digits > 0 && len(w) >= idWordBytesMin && digits < len(w):
		return 'i'
	case digits == len(w) && len(w) > numberBytesMax:
		return 'n'
	}
	return 'w'
}

// featurize fills t.features and t.latinFeatures from t.tokens.
func (t *tokenizer) featurize() {
	var prevWord []byte
	for i := range t.tokens {
		tk := &t.tokens[i]
		if tk.kind == tokenHan {
			prevWord = nil
			t.features = append(t.features, finalize(hashRune(seedHan, tk.han)))
			if tk.joined {
				p := t.tokens[i-1].han
				t.features = append(t.features, finalize(hashRune(hashRune(seedHanPair, p), tk.han)))
				if i >= 2 && t.tokens[i-1].joined {
					pp := t.tokens[i-2].han
					t.features = append(t.features, finalize(hashRune(hashRune(hashRune(seedHanTriple, pp), p), tk.han)))
				}
			}
			continue
		}
		w := t.word(i)
		start := len(t.features)
		switch wordClass(w, tk.hash) {
		case 'i':
			w = idMarker
			t.features = append(t.features, finalize(hashBytes(seedSpecial, w)))
		case 'n':
			w = numberMarker
			t.features = append(t.features, finalize(hashBytes(seedSpecial, w)))
		default:
			// The word and its pair count twice: a six-letter word has six
			// trigrams, which would otherwise outvote the word itself (on
			// the held-out split, English gained about 1.5 points and
			// Vietnamese 3).
			h := finalize(hashBytes(seedWord, w))
			t.features = append(t.features, h, h)
			if len(w) >= 3 {
				t.trigrams(w)
			}
		}
		if prevWord != nil {
			h := finalize(hashBytes(hashBytes(seedWordPair, prevWord)^' ', w))
			t.features = append(t.features, h, h)
		}
		prevWord = w
		t.latinFeatures = append(t.latinFeatures, t.features[start:]...)
	}
}

var (
	idMarker     = []byte("<id>")
	numberMarker = []byte("<num>")
)

// trigrams appends the character trigrams of ^w$.
func (t *tokenizer) trigrams(w []byte) {
	const boundary = '^'
	var a, b byte = boundary, w[0]
	for i := 1; i <= len(w); i++ {
		c := byte('$')
		if i < len(w) {
			c = w[i]
		}
		h := seedTrigram
		h = (h ^ uint32(a)) * fnvPrime
		h = (h ^ uint32(b)) * fnvPrime
		h = (h ^ uint32(c)) * fnvPrime
		t.features = append(t.features, finalize(h))
		a, b = b, c
	}
}

// tokenizers pools tokenizers so a question allocates no buffers.
var tokenizers = sync.Pool{New: func() any {
	return &tokenizer{
		folded:        make([]byte, 0, 256),
		tokens:        make([]token, 0, 64),
		features:      make([]uint32, 0, 256),
		latinFeatures: make([]uint32, 0, 256),
	}
}}

// analyze tokenizes and featurizes text with a pooled tokenizer; give it
// back with putTokenizer.
func analyze(text string) *tokenizer {
	t := tokenizers.Get().(*tokenizer)
	t.tokenize(text)
	t.featurize()
	return t
}

func putTokenizer(t *tokenizer) {
	t.release()
	tokenizers.Put(t)
}
