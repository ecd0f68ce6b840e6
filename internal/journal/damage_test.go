package journal

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestLengthBitFlipIsNotATornTail is the reproduction of issue 7, defect 2:
// a flipped bit in the length field of record 10 of 1,000 in the active
// segment made the length run past the end of the file, recovery took it
// for a torn tail, and 990 acknowledged records were dropped with only a
// warning. Open must refuse instead, naming the file and the offset.
func TestLengthBitFlipIsNotATornTail(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SegmentBytesMax = 1 << 30
	j := mustOpen(t, cfg)
	var recs [][]byte
	for i := range 1000 {
		recs = append(recs, payload(i, 100))
	}
	ends := appendAll(t, j, recs)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := segPath(dir, 0)
	// Record 10's frame starts where record 9's ends; its length field is
	// the first four bytes of the frame. Bit 4 of the third byte makes the
	// length 1 MiB larger: below the maximum, and past the end of the file.
	off := segmentHeaderLen + int64(ends[9])
	mutate(t, path, func(b []byte) []byte { b[off+2] ^= 0x10; return b })

	j, err := Open(cfg)
	if err == nil {
		n := len(replayAll(t, j, 0))
		j.Close()
		t.Fatalf("Open succeeded after a length bit flip and replays %d of %d records", n, len(recs))
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	for _, want := range []string{path, fmt.Sprintf("offset %d", off)} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	if size := fileSize(t, path); size != segmentHeaderLen+int64(ends[len(ends)-1]) {
		t.Fatalf("refusing to open truncated the segment to %d bytes", size)
	}
}
