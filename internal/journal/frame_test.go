package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

func TestDecodeFrame(t *testing.T) {
	valid := appendFrame(nil, []byte("hello"))
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	// A header whose own checksum holds but whose length is impossible.
	huge := appendFrameHeader(nil, MaxRecordBytes+1, 0)

	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantN   int
		wantErr error
	}{
		{"valid", valid, []byte("hello"), 21, nil},
		{"valid with trailing bytes", append(bytes.Clone(valid), 1, 2, 3), []byte("hello"), 21, nil},
		{"empty payload", appendFrame(nil, nil), []byte{}, 16, nil},
		{"empty input", nil, nil, 0, errShortHeader},
		{"short header", valid[:11], nil, 0, errShortHeader},
		{"header only", valid[:12], nil, 0, errShortFrame},
		{"short payload", valid[:16], nil, 0, errShortFrame},
		{"short trailer", valid[:20], nil, 0, errShortFrame},
		{"trailer bit flip", flip(valid, 20), nil, 0, errTrailer},
		{"trailer zeroed", append(bytes.Clone(valid[:17]), 0, 0, 0, 0), nil, 0, errTrailer},
		{"length too large", huge, nil, 0, errBadLength},
		{"payload bit flip", flip(valid, 14), nil, 0, errChecksum},
		{"length bit flip", flip(valid, 0), nil, 0, errHeaderChecksum},
		{"length high bit flip", flip(valid, 3), nil, 0, errHeaderChecksum},
		{"payload crc bit flip", flip(valid, 5), nil, 0, errHeaderChecksum},
		{"header crc bit flip", flip(valid, 9), nil, 0, errHeaderChecksum},
		{"zero header", make([]byte, 16), nil, 0, errZeroHeader},
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
	// The on-disk format is fixed: length LE, CRC32C of the payload, CRC32C
	// of those 8 bytes, the payload, then "FEND".
	f := appendFrame(nil, []byte{0xAA, 0xBB})
	if len(f) != 18 || string(f[14:]) != "FEND" {
		t.Fatalf("frame %x", f)
	}
	if frameTrailer[frameTrailerLen-1]&(frameTrailer[frameTrailerLen-1]-1) == 0 {
		t.Fatal("the trailer's last byte must have two bits set, so that no single bit flip zeroes it")
	}
	if got := binary.LittleEndian.Uint32(f[0:4]); got != 2 {
		t.Fatalf("length = %d", got)
	}
	if got, w := binary.LittleEndian.Uint32(f[4:8]), crc32c([]byte{0xAA, 0xBB}); got != w {
		t.Fatalf("payload crc = %08x, want %08x", got, w)
	}
	if got, w := binary.LittleEndian.Uint32(f[8:12]), crc32c(f[0:8]); got != w {
		t.Fatalf("header crc = %08x, want %08x", got, w)
	}
}

func TestSegmentHeader(t *testing.T) {
	h := encodeSegmentHeader(12345)
	if string(h[0:8]) != segmentMagic || binary.LittleEndian.Uint32(h[8:12]) != segmentVersion ||
		binary.LittleEndian.Uint64(h[16:24]) != 12345 || binary.LittleEndian.Uint32(h[28:32]) != crc32c(h[0:28]) {
		t.Fatalf("header layout %x", h)
	}
	reseal := func(b [segmentHeaderLen]byte) [segmentHeaderLen]byte {
		binary.LittleEndian.PutUint32(b[28:32], crc32c(b[0:28]))
		return b
	}
	version3 := h
	binary.LittleEndian.PutUint32(version3[8:12], 3)
	otherMagic := h
	copy(otherMagic[0:8], "FESTSNAP")
	tests := []struct {
		name string
		h    [segmentHeaderLen]byte
		want error
	}{
		{"valid", h, nil},
		{"misnamed", encodeSegmentHeader(999), errSegmentMisnamed},
		{"version 3", reseal(version3), errSegmentVersion},
		{"other magic", reseal(otherMagic), errSegmentMagic},
		{"zero", [segmentHeaderLen]byte{}, errSegmentMagic},
	}
	for i := range segmentHeaderLen {
		b := h
		b[i] ^= 0x04
		want := errSegmentHeaderChecksum
		if i < 8 {
			want = errSegmentMagic
		}
		tests = append(tests, struct {
			name string
			h    [segmentHeaderLen]byte
			want error
		}{fmt.Sprint("flip byte ", i), b, want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := decodeSegmentHeader(tt.h[:], 12345); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("decodeSegmentHeader = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, []byte("hello")))
	f.Add(appendFrame(nil, nil))
	f.Add(appendFrame(appendFrame(nil, []byte("a")), []byte("b")))
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, 12))
	f.Add(appendFrameHeader(nil, 0xffffffff, 0))
	f.Add(appendFrameHeader(nil, 100, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, n, err := decodeFrame(b)
		// The streaming scanner must agree with the buffer decoder.
		s := newFrameScanner(bytes.NewReader(b), int64(len(b)))
		got, serr := s.next()
		if err != nil {
			if payload != nil || n != 0 {
				t.Fatalf("error %v with payload/n set", err)
			}
			var d *damage
			if len(b) == 0 {
				if serr == nil {
					t.Fatal("scanner decoded an empty input")
				}
			} else if !errors.As(serr, &d) || d.reason != err || d.off != 0 {
				t.Fatalf("decoder: %v; scanner: %v", err, serr)
			}
			return
		}
		if n != frameLen(len(payload)) || n > len(b) {
			t.Fatalf("n = %d for payload %d, input %d", n, len(payload), len(b))
		}
		if re := appendFrame(nil, payload); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded frame differs:\n%x\n%x", re, b[:n])
		}
		if serr != nil || !bytes.Equal(got, payload) || s.off != int64(n) {
			t.Fatalf("scanner: %v, %x at %d; decoder: %x at %d", serr, got, s.off, payload, n)
		}
	})
}

func FuzzDecodeSegmentHeader(f *testing.F) {
	h := encodeSegmentHeader(7)
	f.Add(h[:], uint64(7))
	f.Add(h[:], uint64(8))
	f.Add(make([]byte, segmentHeaderLen), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, start uint64) {
		if len(b) < segmentHeaderLen {
			return
		}
		err := decodeSegmentHeader(b, Position(start))
		want := encodeSegmentHeader(Position(start))
		if (err == nil) != bytes.Equal(b[:segmentHeaderLen], want[:]) {
			t.Fatalf("decodeSegmentHeader(%x, %d) = %v", b[:segmentHeaderLen], start, err)
		}
	})
}
