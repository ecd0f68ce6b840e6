package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Segment files are named by the position of their first byte, zero-padded so
// that lexical order is position order.
const (
	segmentSuffix  = ".seg"
	segmentNameLen = 20 + len(segmentSuffix)
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

// segment is one file of the journal as the File tracks it.
type segment struct {
	start Position
	path  string
}

// listSegments returns the segment files in dir in position order. Other
// files are ignored so that the directory can hold, say, snapshots too.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments in %s: %w", dir, err)
	}
	var segs []segment
	for _, e := range ents {
		start, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		segs = append(segs, segment{start: start, path: filepath.Join(dir, e.Name())})
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

// syncDir fsyncs a directory so that a file created or renamed in it survives
// a crash; on Linux the new directory entry is otherwise not durable even when
// the file itself was fsynced.
func syncDir(dir string, fsync func(*os.File) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	err = fsync(d)
	if cerr := d.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}
