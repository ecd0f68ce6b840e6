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
	var ms int64
	digits := 0
	for i := 0; i < uuidBytes; i++ {
		c := key[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return 0, false
			}
			continue
		}
		v, ok := hexValue(c)
		if !ok {
			return 0, false
		}
		switch {
		case digits < 12:
			ms = ms<<4 | int64(v)
		case digits == 12 && v != 7:
			return 0, false // version nibble
		case digits == 16 && v&0b1100 != 0b1000:
			return 0, false // variant bits 10
		}
		digits++
	}
	return ms, true
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

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
