package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fest-platform/fest/internal/vfs"
)

// Segment files are named by the position of their first record's frame,
// zero-padded so that lexical order is position order.
const (
	segmentSuffix  = ".seg"
	segmentNameLen = 20 + len(segmentSuffix)
)

// Every segment file begins with a fixed header:
//
//	[8]  magic "FESTJRNL"
//	[4]  format version (2), little endian
//	[4]  header length (32), little endian
//	[8]  start position (the position its name encodes), little endian
//	[4]  zero, reserved
//	[4]  CRC32C of the 28 bytes above
//
// It lets recovery refuse, with a clear message, a file of the older format
// (format 1 had no header: frames began at offset 0) and a file renamed or
// copied under another segment's name. Positions count frame bytes only:
// the record at position p of a segment starting at s ends at file offset
// segmentHeaderLen + (p - s).
const (
	segmentMagic     = "FESTJRNL"
	segmentVersion   = 2
	segmentHeaderLen = 32
)

func segmentName(start Position) string { return fmt.Sprintf("%020d%s", uint64(start), segmentSuffix) }

// parseSegmentName returns the start position encoded in a segment file name.
func parseSegmentName(name string) (Position, bool) {
	if len(name) != segmentNameLen || !strings.HasSuffix(name, segmentSuffix) {
		return 0, false
	}
	digits := name[:20]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return Position(v), true
}

// encodeSegmentHeader returns the header of the segment starting at start.
func encodeSegmentHeader(start Position) [segmentHeaderLen]byte {
	var h [segmentHeaderLen]byte
	copy(h[0:8], segmentMagic)
	binary.LittleEndian.PutUint32(h[8:12], segmentVersion)
	binary.LittleEndian.PutUint32(h[12:16], segmentHeaderLen)
	binary.LittleEndian.PutUint64(h[16:24], uint64(start))
	binary.LittleEndian.PutUint32(h[28:32], crc32.Checksum(h[0:28], castagnoli))
	return h
}

// Reasons a segment header is refused; Open wraps them with ErrCorrupt or
// ErrFormat and the file name.
var (
	errSegmentHeaderChecksum = errors.New("segment header crc mismatch")
	errSegmentMagic          = errors.New("segment header has a bad magic")
	errSegmentMisnamed       = errors.New("segment header names another start position")
	errSegmentVersion        = errors.New("unsupported segment format version")
)

// decodeSegmentHeader checks h, the first segmentHeaderLen bytes of the
// segment file named for start.
func decodeSegmentHeader(h []byte, start Position) error {
	if len(h) < segmentHeaderLen {
		panic(fmt.Sprintf("journal: segment header of %d bytes", len(h)))
	}
	if crc32.Checksum(h[0:28], castagnoli) != binary.LittleEndian.Uint32(h[28:32]) {
		if !bytes.Equal(h[0:8], []byte(segmentMagic)) {
			return errSegmentMagic
		}
		return errSegmentHeaderChecksum
	}
	if !bytes.Equal(h[0:8], []byte(segmentMagic)) {
		return errSegmentMagic
	}
	if v := binary.LittleEndian.Uint32(h[8:12]); v != segmentVersion {
		return fmt.Errorf("%w %d (this fest reads version %d)", errSegmentVersion, v, segmentVersion)
	}
	if n := binary.LittleEndian.Uint32(h[12:16]); n != segmentHeaderLen {
		return fmt.Errorf("%w: header length %d, want %d", errSegmentVersion, n, segmentHeaderLen)
	}
	if r := binary.LittleEndian.Uint32(h[24:28]); r != 0 {
		return fmt.Errorf("%w: reserved field is %#x, not zero", errSegmentVersion, r)
	}
	if p := Position(binary.LittleEndian.Uint64(h[16:24])); p != start {
		return fmt.Errorf("%w: header says %d, file name says %d", errSegmentMisnamed, p, start)
	}
	return nil
}

// looksLikeFormat1 reports whether b, the start of a segment file, begins
// with a valid frame of the headerless format 1 ([u32 length][u32
// CRC32C(length bytes ‖ payload)][payload]). It only serves to word the
// refusal of an old journal clearly.
func looksLikeFormat1(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	n := binary.LittleEndian.Uint32(b[0:4])
	if uint64(len(b)-8) < uint64(n) {
		return false
	}
	crc := crc32.Update(crc32.Checksum(b[0:4], castagnoli), castagnoli, b[8:8+n])
	return crc == binary.LittleEndian.Uint32(b[4:8])
}

// segment is one file of the journal as the File tracks it.
type segment struct {
	start Position
	path  string
}

// listSegments returns the segment files in dir in position order. Other
// files are ignored so that the directory can hold, say, snapshots too.
func listSegments(fsys vfs.FS, dir string) ([]segment, error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments in %s: %w", dir, err)
	}
	var segs []segment
	for _, name := range names {
		start, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		segs = append(segs, segment{start: start, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b segment) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	return segs, nil
}
