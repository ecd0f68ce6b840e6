package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a closed journal of n 500-byte records spread over three
// segments.
type fixture struct {
	dir  string
	cfg  Config
	recs [][]byte
	ends []Position
	segs []string // segment paths in order
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	fx := &fixture{dir: dir, cfg: testConfig(dir)}
	for i := range 20 {
		fx.recs = append(fx.recs, payload(i, 500))
	}
	j := mustOpen(t, fx.cfg)
	// One group per record makes the segment layout deterministic.
	for _, r := range fx.recs {
		fx.ends = append(fx.ends, appendSync(t, j, r))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	fx.segs = segFiles(t, dir)
	if len(fx.segs) != 3 {
		t.Fatalf("fixture has %d segments, want 3", len(fx.segs))
	}
	return fx
}

// frame returns the segment path and file offset of record k's frame.
func (fx *fixture) frame(k int) (string, int64) {
	start := fx.ends[k] - Position(frameLen(len(fx.recs[k])))
	for i := len(fx.segs) - 1; i >= 0; i-- {
		s, _ := parseSegmentName(filepath.Base(fx.segs[i]))
		if s <= start {
			return fx.segs[i], segmentHeaderLen + int64(start-s)
		}
	}
	panic("no segment")
}

// lastInSegment returns the index of the last record whose frame is in
// segment i.
func (fx *fixture) lastInSegment(i int) int {
	k := -1
	for j := range fx.recs {
		if p, _ := fx.frame(j); p == fx.segs[i] {
			k = j
		}
	}
	return k
}

// recordsInLast counts the records whose frames are in the last segment.
func (fx *fixture) recordsInLast() int {
	n := 0
	for k := range fx.recs {
		if p, _ := fx.frame(k); p == fx.segs[len(fx.segs)-1] {
			n++
		}
	}
	return n
}

func mutate(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func header(n uint32, crc uint32) []byte { return appendFrameHeader(nil, int(n), crc) }

func TestRecoverTornTail(t *testing.T) {
	last := func(fx *fixture) string { return fx.segs[len(fx.segs)-1] }
	lastOff := func(fx *fixture) int64 { _, off := fx.frame(len(fx.recs) - 1); return off }
	tests := []struct {
		name string
		tear func(fx *fixture, b []byte) []byte
		lost int                   // records lost from the end
		keep func(fx *fixture) int // records that survive, overriding lost
	}{
		{"payload cut short", func(fx *fixture, b []byte) []byte { return b[:len(b)-10] }, 1, nil},
		{"header cut short", func(fx *fixture, b []byte) []byte { return b[:lastOff(fx)+5] }, 1, nil},
		{"header cut one byte short", func(fx *fixture, b []byte) []byte { return b[:lastOff(fx)+frameHeaderLen-1] }, 1, nil},
		{"header only", func(fx *fixture, b []byte) []byte { return b[:lastOff(fx)+frameHeaderLen] }, 1, nil},
		{"trailing zeros", func(fx *fixture, b []byte) []byte { return append(b, make([]byte, 4096)...) }, 0, nil},
		{"last frame cut in its payload, the rest zero-filled", func(fx *fixture, b []byte) []byte { clear(b[len(b)-100:]); return b }, 1, nil},
		{"last frame cut in its trailer, the rest zero-filled", func(fx *fixture, b []byte) []byte { clear(b[len(b)-2:]); return b }, 1, nil},
		{"last frame cut in its header, the rest zero-filled", func(fx *fixture, b []byte) []byte {
			clear(b[lastOff(fx)+5:])
			return b
		}, 1, nil},
		{"valid header then zeros", func(fx *fixture, b []byte) []byte {
			return append(append(b, header(50, 99)...), make([]byte, 54)...)
		}, 0, nil},
		{"valid header then zeros past the frame", func(fx *fixture, b []byte) []byte {
			return append(append(b, header(50, 99)...), make([]byte, 500)...)
		}, 0, nil},
		{"a zero header", func(fx *fixture, b []byte) []byte { return append(b, make([]byte, frameHeaderLen)...) }, 0, nil},
		{"a few trailing zeros", func(fx *fixture, b []byte) []byte { return append(b, 0, 0, 0) }, 0, nil},
		{"short garbage header", func(fx *fixture, b []byte) []byte { return append(b, 0xff, 0xfe, 0xfd) }, 0, nil},
		{"length past EOF", func(fx *fixture, b []byte) []byte {
			return append(append(b, header(1000, 1234)...), "partial"...)
		}, 0, nil},
		{"valid header past EOF", func(fx *fixture, b []byte) []byte { return append(b, header(100, 1234)...) }, 0, nil},
		{"whole segment empty", func(fx *fixture, b []byte) []byte { return b[:0] }, 0, func(fx *fixture) int { return len(fx.recs) - fx.recordsInLast() }},
		{"segment header cut short", func(fx *fixture, b []byte) []byte { return b[:segmentHeaderLen-1] }, 0, func(fx *fixture) int { return len(fx.recs) - fx.recordsInLast() }},
		{"segment header only, zeroed", func(fx *fixture, b []byte) []byte { return make([]byte, segmentHeaderLen) }, 0, func(fx *fixture) int { return len(fx.recs) - fx.recordsInLast() }},
		{"segment header cut, the rest zero-filled", func(fx *fixture, b []byte) []byte {
			b = b[:segmentHeaderLen]
			clear(b[10:])
			return b
		}, 0, func(fx *fixture) int { return len(fx.recs) - fx.recordsInLast() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			mutate(t, last(fx), func(b []byte) []byte { return tt.tear(fx, b) })
			keep := len(fx.recs) - tt.lost
			if tt.keep != nil {
				keep = tt.keep(fx)
			}
			j := mustOpen(t, fx.cfg)
			var end Position
			if keep > 0 {
				end = fx.ends[keep-1]
			}
			if j.End() != end {
				t.Fatalf("End = %d, want %d", j.End(), end)
			}
			checkRecords(t, replayAll(t, j, 0), fx.recs[:keep], fx.ends[:keep])
			start, _ := parseSegmentName(filepath.Base(last(fx)))
			if size := fileSize(t, last(fx)); Position(size) != segmentHeaderLen+end-start {
				t.Fatalf("last segment is %d bytes, want truncation to %d", size, segmentHeaderLen+end-start)
			}
			// The journal continues after the repaired tail.
			p := appendSync(t, j, []byte("after recovery"))
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = mustOpen(t, fx.cfg)
			defer j.Close()
			want := append(fx.recs[:keep:keep], []byte("after recovery"))
			wantEnds := append(fx.ends[:keep:keep], p)
			checkRecords(t, replayAll(t, j, 0), want, wantEnds)
		})
	}
}

func TestRecoverCorrupt(t *testing.T) {
	tests := []struct {
		name string
		// damage breaks the fixture and returns the file and offset the
		// error must name.
		damage func(t *testing.T, fx *fixture) (string, int64)
		reason string
	}{
		{"crc mismatch mid last segment", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(len(fx.recs) - 2)
			mutate(t, path, func(b []byte) []byte { b[off+100] ^= 1; return b })
			return path, off
		}, "payload crc mismatch"},
		{"shortened length mid last segment", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(len(fx.recs) - 2)
			mutate(t, path, func(b []byte) []byte { b[off] ^= 0x80; return b })
			return path, off
		}, "header crc mismatch"},
		{"lengthened length of the last frame", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(len(fx.recs) - 1)
			mutate(t, path, func(b []byte) []byte { b[off+1] ^= 0x40; return b })
			return path, off
		}, "header crc mismatch"},
		{"crc mismatch on frame ending at EOF", func(t *testing.T, fx *fixture) (string, int64) {
			// A complete frame may have been acknowledged: never a torn tail.
			path, off := fx.frame(len(fx.recs) - 1)
			mutate(t, path, func(b []byte) []byte { b[len(b)-frameTrailerLen-1] ^= 0x40; return b })
			return path, off
		}, "payload crc mismatch"},
		{"trailer bit flip on frame ending at EOF", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(len(fx.recs) - 1)
			mutate(t, path, func(b []byte) []byte { b[len(b)-1] ^= 0x40; return b })
			return path, off
		}, "frame trailer mismatch"},
		{"last frame zeroed in the middle", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(len(fx.recs) - 1)
			mutate(t, path, func(b []byte) []byte { clear(b[len(b)-100 : len(b)-10]); return b })
			return path, off
		}, "payload crc mismatch"},
		{"garbage header at end", func(t *testing.T, fx *fixture) (string, int64) {
			path := fx.segs[len(fx.segs)-1]
			off := fileSize(t, path)
			mutate(t, path, func(b []byte) []byte { return append(b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12) })
			return path, off
		}, "header crc mismatch"},
		{"impossible length behind a valid header", func(t *testing.T, fx *fixture) (string, int64) {
			path := fx.segs[len(fx.segs)-1]
			off := fileSize(t, path)
			mutate(t, path, func(b []byte) []byte { return append(b, header(0xffffffff, 0)...) })
			return path, off
		}, "exceeds maximum"},
		{"zeroed frame followed by data", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(len(fx.recs) - 2)
			mutate(t, path, func(b []byte) []byte { clear(b[off : off+int64(frameLen(500))]); return b })
			return path, off
		}, "zero frame header"},
		{"last frame of first segment", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(fx.lastInSegment(0))
			mutate(t, path, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
			return path, off
		}, "frame trailer mismatch"},
		{"first segment torn", func(t *testing.T, fx *fixture) (string, int64) {
			mutate(t, fx.segs[0], func(b []byte) []byte { return b[:len(b)-3] })
			_, off := fx.frame(fx.lastInSegment(0))
			return fx.segs[0], off
		}, "past end"},
		{"first segment ends inside a frame header", func(t *testing.T, fx *fixture) (string, int64) {
			off := fileSize(t, fx.segs[0])
			mutate(t, fx.segs[0], func(b []byte) []byte { return append(b, 0, 0, 0) })
			return fx.segs[0], off
		}, "inside a frame header"},
		{"first segment has trailing zeros", func(t *testing.T, fx *fixture) (string, int64) {
			off := fileSize(t, fx.segs[0])
			mutate(t, fx.segs[0], func(b []byte) []byte { return append(b, make([]byte, 100)...) })
			return fx.segs[0], off
		}, "zero frame header"},
		{"segment header bit flip", func(t *testing.T, fx *fixture) (string, int64) {
			path := fx.segs[len(fx.segs)-1]
			mutate(t, path, func(b []byte) []byte { b[17] ^= 2; return b })
			return path, 0
		}, "segment header crc mismatch"},
		{"segment magic bit flip", func(t *testing.T, fx *fixture) (string, int64) {
			mutate(t, fx.segs[1], func(b []byte) []byte { b[3] ^= 2; return b })
			return fx.segs[1], 0
		}, "bad magic"},
		{"last segment zeroed", func(t *testing.T, fx *fixture) (string, int64) {
			// Its header was fsynced before its first frame was written,
			// so this is damage, not an interrupted creation.
			path := fx.segs[len(fx.segs)-1]
			mutate(t, path, func(b []byte) []byte { return make([]byte, len(b)) })
			return path, 0
		}, "bad magic"},
		{"misnamed segment", func(t *testing.T, fx *fixture) (string, int64) {
			// A copy of the first segment under the last one's name.
			path := fx.segs[len(fx.segs)-1]
			first, err := os.ReadFile(fx.segs[0])
			if err != nil {
				t.Fatal(err)
			}
			mutate(t, path, func([]byte) []byte { return first })
			return path, 0
		}, "names another start position"},
		{"middle segment truncated at a frame boundary", func(t *testing.T, fx *fixture) (string, int64) {
			path, off := fx.frame(len(fx.recs) - fx.recordsInLast() - 1)
			mutate(t, path, func(b []byte) []byte { return b[:off] })
			return path, off
		}, "gap"},
		{"middle segment missing", func(t *testing.T, fx *fixture) (string, int64) {
			if err := os.Remove(fx.segs[1]); err != nil {
				t.Fatal(err)
			}
			return fx.segs[0], fileSize(t, fx.segs[0])
		}, "gap"},
		{"overlapping segment", func(t *testing.T, fx *fixture) (string, int64) {
			start, _ := parseSegmentName(filepath.Base(fx.segs[1]))
			h := encodeSegmentHeader(start - 8)
			if err := os.WriteFile(segPath(fx.dir, start-8), h[:], 0o600); err != nil {
				t.Fatal(err)
			}
			return fx.segs[0], fileSize(t, fx.segs[0])
		}, "overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			path, off := tt.damage(t, fx)
			before := fileSize(t, fx.segs[len(fx.segs)-1])
			j, err := Open(fx.cfg)
			if err == nil {
				j.Close()
				t.Fatal("Open succeeded on a corrupt journal")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			for _, want := range []string{path, fmt.Sprintf("offset %d", off), tt.reason} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not mention %q", err, want)
				}
			}
			// Refusing to open must not repair anything.
			if after := fileSize(t, fx.segs[len(fx.segs)-1]); after != before {
				t.Fatalf("last segment changed from %d to %d bytes", before, after)
			}
		})
	}
}

// TestRecoverRefusesFormat1 checks that a journal written in the headerless
// format of earlier versions is refused with ErrFormat and a message saying
// so, rather than as damage or, worse, as an empty journal.
func TestRecoverRefusesFormat1(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	for i := range 3 {
		p := payload(i, 40)
		lenBytes := []byte{byte(len(p)), 0, 0, 0}
		crc := crc32c(append(lenBytes, p...))
		b = append(append(append(b, lenBytes...), byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)), p...)
	}
	path := segPath(dir, 0)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(testConfig(dir))
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("Open = %v, want ErrFormat naming %s and format 1", err, path)
	}
	if size := fileSize(t, path); size != int64(len(b)) {
		t.Fatalf("refusing changed the file to %d bytes", size)
	}
}

func TestRecoverIgnoresOtherFiles(t *testing.T) {
	fx := newFixture(t)
	for _, name := range []string{"notes.txt", "123.seg", "snap-00000000000000000001.bin", "0000000000000000000x.seg"} {
		if err := os.WriteFile(filepath.Join(fx.dir, name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := mustOpen(t, fx.cfg)
	defer j.Close()
	checkRecords(t, replayAll(t, j, 0), fx.recs, fx.ends)
}
