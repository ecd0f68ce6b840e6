package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRecover damages a segment of a valid journal in fuzzer-chosen ways and
// checks recovery's promise: Open either refuses with ErrCorrupt, or replays
// a prefix of the original records, byte for byte, that the journal can
// append after; and that prefix is short only where a crash could have cut
// the journal, so no record is ever dropped silently. A record may be lost
// only if its frame is in the last segment and the file was truncated
// before its frame's end, or everything from some point before its frame's
// end to the end of the file is zero (a write cut and zero-filled).
//
// The inputs: nrec picks how many records to write (sizes vary so frames
// straddle group and segment boundaries), seg picks the segment to damage,
// trunc (if nonzero) truncates it, and edits is a list of 3-byte
// (offset u16, xor byte) byte flips.
func FuzzRecover(f *testing.F) {
	f.Add(uint8(10), uint8(0), uint32(0), []byte{})
	f.Add(uint8(10), uint8(255), uint32(100), []byte{})
	f.Add(uint8(10), uint8(0), uint32(0), []byte{0, 20, 1})
	f.Add(uint8(30), uint8(1), uint32(0), []byte{1, 0, 0x80})
	f.Add(uint8(30), uint8(2), uint32(7), []byte{0, 3, 0xff, 0, 4, 0xff})
	f.Add(uint8(30), uint8(2), uint32(40), []byte{})
	f.Add(uint8(5), uint8(0), uint32(0), []byte{0, 0, 0xff, 0, 1, 0xff, 0, 2, 0xff, 0, 3, 0xff})
	f.Add(uint8(12), uint8(255), uint32(0), []byte{0, 34, 0x10})
	f.Fuzz(func(t *testing.T, nrec, seg uint8, trunc uint32, edits []byte) {
		dir := t.TempDir()
		cfg := testConfig(dir)
		cfg.SegmentBytesMax = 700
		cfg.GroupBytesMax = 300
		j := mustOpen(t, cfg)
		n := int(nrec)%40 + 1
		var recs [][]byte
		for i := range n {
			recs = append(recs, payload(i, 1+(i*53)%250))
		}
		// One group per record keeps the layout a function of the input.
		var ends []Position
		for _, r := range recs {
			ends = append(ends, appendSync(t, j, r))
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}

		segs := segFiles(t, dir)
		damaged := int(seg) % len(segs)
		path := segs[damaged]
		segStart, _ := parseSegmentName(filepath.Base(path))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		orig := len(b)
		changed := false
		cut := orig
		if trunc != 0 {
			if c := int(trunc % uint32(len(b)+1)); c < len(b) {
				b, changed, cut = b[:c], true, c
			}
		}
		for ; len(edits) >= 3 && len(b) > 0; edits = edits[3:] {
			off := int(binary.BigEndian.Uint16(edits)) % len(b)
			if edits[2] != 0 {
				b[off] ^= edits[2]
				changed = true
			}
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}

		j, err = Open(cfg)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed without ErrCorrupt: %v", err)
			}
			return
		}
		got := replayAll(t, j, 0)
		if len(got) > len(recs) {
			t.Fatalf("replayed %d records from %d", len(got), len(recs))
		}
		if !changed && len(got) != len(recs) {
			t.Fatalf("undamaged journal replayed %d of %d records", len(got), len(recs))
		}
		for i, r := range got {
			if r.end != ends[i] || !bytes.Equal(r.rec, recs[i]) {
				t.Fatalf("record %d is not the original (end %d vs %d)", i, r.end, ends[i])
			}
		}
		if k := len(got); k < len(recs) {
			// The first lost record must be in the damaged segment, the last
			// one, where a crash could have cut it.
			frameStart := ends[k] - Position(frameLen(len(recs[k])))
			if damaged != len(segs)-1 || frameStart < segStart {
				t.Fatalf("lost records %d.. (of %d) outside the damaged last segment", k, len(recs))
			}
			startOff := segmentHeaderLen + int(frameStart-segStart)
			endOff := segmentHeaderLen + int(ends[k]-segStart)
			cutInside := cut < endOff
			zeros, err := zeroTailStart(bytes.NewReader(b), 0, int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			zeroTail := zeros < int64(endOff)
			if !cutInside && !zeroTail {
				t.Fatalf("record %d (file offsets %d-%d) dropped silently: file cut at %d of %d", k, startOff, endOff, cut, orig)
			}
		}
		wantEnd := j.Start()
		if len(got) > 0 {
			wantEnd = got[len(got)-1].end
		}
		if j.End() != wantEnd {
			t.Fatalf("End = %d after replaying %d records", j.End(), len(got))
		}
		p := appendSync(t, j, []byte("more"))
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = mustOpen(t, cfg)
		defer j.Close()
		again := replayAll(t, j, 0)
		if len(again) != len(got)+1 || again[len(got)].end != p || string(again[len(got)].rec) != "more" {
			t.Fatalf("after appending to the recovered journal: %d records", len(again))
		}
	})
}
