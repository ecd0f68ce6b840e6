package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// FuzzRecover damages a segment of a valid journal in fuzzer-chosen ways and
// checks that Open either refuses with ErrCorrupt or recovers a prefix of the
// original records, byte for byte, that the journal can append after.
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
	f.Add(uint8(5), uint8(0), uint32(0), []byte{0, 0, 0xff, 0, 1, 0xff, 0, 2, 0xff, 0, 3, 0xff})
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
		path := segs[int(seg)%len(segs)]
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		changed := false
		if trunc != 0 {
			if cut := int(trunc % uint32(len(b)+1)); cut < len(b) {
				b, changed = b[:cut], true
			}
		}
		for ; len(edits) >= 3 && len(b) > 0; edits = edits[3:] {
			off := int(binary.BigEndian.Uint16(edits)) % len(b)
			if edits[2] != 0 {
				b[off] ^= edits[2]
				changed = true
			}
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
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
