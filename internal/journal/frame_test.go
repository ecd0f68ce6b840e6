package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestDecodeFrame(t *testing.T) {
	valid := appendFrame(nil, []byte("hello"))
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	huge := binary.LittleEndian.AppendUint32(nil, MaxRecordBytes+1)
	huge = binary.LittleEndian.AppendUint32(huge, 0)

	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantN   int
		wantErr error
	}{
		{"valid", valid, []byte("hello"), 13, nil},
		{"valid with trailing bytes", append(bytes.Clone(valid), 1, 2, 3), []byte("hello"), 13, nil},
		{"empty payload", appendFrame(nil, nil), []byte{}, 8, nil},
		{"empty input", nil, nil, 0, errShortHeader},
		{"short header", valid[:7], nil, 0, errShortHeader},
		{"header only", valid[:8], nil, 0, errShortFrame},
		{"short payload", valid[:12], nil, 0, errShortFrame},
		{"length too large", huge, nil, 0, errBadLength},
		{"payload bit flip", flip(valid, 10), nil, 0, errChecksum},
		{"crc bit flip", flip(valid, 5), nil, 0, errChecksum},
		{"length bit flip shorter", flip(valid, 0), nil, 0, errChecksum},
		{"zero header", make([]byte, 16), nil, 0, errChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, err := decodeFrame(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if n != tt.wantN || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %q (n=%d), want %q (n=%d)", got, n, tt.want, tt.wantN)
			}
		})
	}
}

func TestFrameLayout(t *testing.T) {
	// The on-disk format is fixed: length LE, then CRC32C over the length
	// bytes and the payload, then the payload.
	f := appendFrame(nil, []byte{0xAA, 0xBB})
	if got := binary.LittleEndian.Uint32(f[0:4]); got != 2 {
		t.Fatalf("length = %d", got)
	}
	want := []byte{2, 0, 0, 0, 0xAA, 0xBB}
	if got, w := binary.LittleEndian.Uint32(f[4:8]), crc32c(want); got != w {
		t.Fatalf("crc = %08x, want %08x", got, w)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, []byte("hello")))
	f.Add(appendFrame(nil, nil))
	f.Add(appendFrame(appendFrame(nil, []byte("a")), []byte("b")))
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, 8))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, n, err := decodeFrame(b)
		if err != nil {
			if payload != nil || n != 0 {
				t.Fatalf("error %v with payload/n set", err)
			}
			return
		}
		if n != frameLen(len(payload)) || n > len(b) {
			t.Fatalf("n = %d for payload %d, input %d", n, len(payload), len(b))
		}
		if re := appendFrame(nil, payload); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded frame differs:\n%x\n%x", re, b[:n])
		}
		// The streaming scanner must agree with the buffer decoder.
		s := newFrameScanner(bytes.NewReader(b), int64(len(b)))
		got, err := s.next()
		if err != nil || !bytes.Equal(got, payload) || s.off != int64(n) {
			t.Fatalf("scanner: %v, %x at %d; decoder: %x at %d", err, got, s.off, payload, n)
		}
	})
}

func TestLengthCRC(t *testing.T) {
	for _, n := range []uint32{0, 1, 255, 256, 65537, MaxRecordBytes, 0xffffffff} {
		b := binary.LittleEndian.AppendUint32(nil, n)
		if got, want := lengthCRC(n), crc32c(b); got != want {
			t.Fatalf("lengthCRC(%d) = %08x, want %08x", n, got, want)
		}
	}
}
