package idempotency

// KeyTime returns the minting time a time-ordered key carries, in unix
// milliseconds: the 48-bit timestamp of a UUIDv7 (RFC 9562, the canonical
// 36-character form, version 7, variant 10) or of a ULID (26 Crockford
// base32 characters, either case). ok is false for any other key, which
// includes UUIDs of other versions and strings with a character outside the
// alphabet. The time is what the key claims; whether it is plausible is
// Store.TimeOrdered's question.
func KeyTime(key string) (unixMs int64, ok bool) {
	switch len(key) {
	case uuidBytes:
		return uuidV7Time(key)
	case ulidBytes:
		return ulidTime(key)
	}
	return 0, false
}

const (
	uuidBytes = 36
	ulidBytes = 26
)

func uuidV7Time(key string) (int64, bool) {
	if key[8] != '-' || key[13] != '-' || key[18] != '-' || key[23] != '-' || key[14] != '7' {
		return 0, false
	}
	if v := hexDigit[key[19]]; v == 0xff || v&0b1100 != 0b1000 {
		return 0, false // not variant 10
	}
	var ms int64
	bad := byte(0)
	for _, i := range [12]int{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12} {
		v := hexDigit[key[i]]
		bad |= v
		ms = ms<<4 | int64(v&0xf)
	}
	for _, i := range [18]int{15, 16, 17, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35} {
		bad |= hexDigit[key[i]]
	}
	if bad&0xf0 != 0 {
		return 0, false // a character is not a hex digit
	}
	return ms, true
}

// hexDigit maps a byte to its hex value, or 0xff.
var hexDigit = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
		t[c-'a'+'A'] = byte(c-'a') + 10
	}
	return t
}()

// crockford maps a byte to its Crockford base32 value, or 0xff. The
// decoder is strict: the aliases I, L and O that the spec lets a decoder
// read as 1, 1 and 0 make another spelling of the same key, which would be
// another idempotency key here anyway (keys are compared as strings).
var crockford = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	for v := 0; v < len(alphabet); v++ {
		c := alphabet[v]
		t[c] = byte(v)
		if 'A' <= c && c <= 'Z' {
			t[c+'a'-'A'] = byte(v)
		}
	}
	return t
}()

func ulidTime(key string) (int64, bool) {
	// 26 characters are 130 bits, so the first character carries only 3
	// (a larger one overflows the 128-bit ULID).
	if crockford[key[0]] > 7 {
		return 0, false
	}
	var ms int64
	for i := 0; i < ulidBytes; i++ {
		v := crockford[key[i]]
		if v == 0xff {
			return 0, false
		}
		if i < 10 {
			ms = ms<<5 | int64(v)
		}
	}
	return ms, true
}
