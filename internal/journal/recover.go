package journal

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fest-platform/fest/internal/vfs"
)

// recovered is the state of the journal directory after recovery.
type recovered struct {
	segs     []segment // at least one; the last is the tail to append to
	tailSize int64     // data bytes (after the header) of the last segment after any truncation
}

// recoverDir scans every segment, checks that they tile the position space
// without gaps or overlaps, and truncates a torn tail in the last segment.
//
// A torn tail is what a crash during a group write can leave behind: the
// group's bytes reach the disk only as a prefix, cut at any byte, and on
// some file systems the lost rest of the write reads as zeros where it
// extended the file. Nothing in it was acknowledged, because a group's
// records are acknowledged only after the fsync that covers all of them, and
// the next group is written only after that. Anything else is damage, which
// a crash cannot explain and which may sit on acknowledged records; recovery
// refuses to guess: Open fails with an error wrapping ErrCorrupt naming the
// file and offset, and an operator decides. The decision, for the frame at
// which the scan of a segment stops ("cut" means: every byte from some point
// inside the frame, as far as its header can be trusted, to the end of the
// file is zero):
//
//	segment   what is found                                        verdict
//	last      the file ends inside the frame header                torn: truncate
//	last      header valid, the frame runs past the end of file    torn: truncate
//	last      header and every byte after it zero                  torn: truncate
//	last      header fails its checksum, cut inside the header     torn: truncate
//	last      header valid, payload or trailer bad, frame cut      torn: truncate
//	any       header fails its checksum, a non-zero byte after it  damage
//	any       header valid, payload or trailer bad, not cut        damage
//	earlier   anything but a clean end at a frame boundary         damage
//
// Every complete frame ends in a non-zero trailer byte that no single bit
// flip can zero, so a complete frame, which may have been acknowledged, is
// never taken for a cut one: a payload that fails its checksum at the very
// end of the file is damage.
func recoverDir(cfg Config) (recovered, error) {
	segs, err := listSegments(cfg.FS, cfg.Dir)
	if err != nil {
		return recovered{}, err
	}
	if len(segs) == 0 {
		return recovered{}, nil
	}
	var (
		expect = segs[0].start
		prev   segment
		size   int64
	)
	for i, seg := range segs {
		if i > 0 && seg.start != expect {
			what := "gap"
			if seg.start < expect {
				what = "overlap"
			}
			return recovered{}, fmt.Errorf("%w: %s offset %d: %s: segment ends at position %d but next segment %s starts at %d",
				ErrCorrupt, prev.path, segmentHeaderLen+size, what, expect, seg.path, seg.start)
		}
		size, err = recoverSegment(cfg, seg, i == len(segs)-1)
		if err != nil {
			return recovered{}, err
		}
		prev = seg
		expect = seg.start + Position(size)
	}
	return recovered{segs: segs, tailSize: size}, nil
}

// recoverSegment validates the header and every frame of one segment and
// returns the length of its valid data (after the header). Only in the last
// segment is a torn tail truncated, or a torn creation rewritten.
func recoverSegment(cfg Config, seg segment, last bool) (int64, error) {
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR
	}
	f, err := cfg.FS.OpenFile(seg.path, flag, 0)
	if err != nil {
		return 0, fmt.Errorf("open segment %s: %w", seg.path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return 0, fmt.Errorf("stat segment %s: %w", seg.path, err)
	}
	if err := checkSegmentHeader(cfg, f, seg, size, last); err != nil {
		if errors.Is(err, errTornCreation) {
			return 0, nil
		}
		return 0, err
	}
	if _, err := f.Seek(segmentHeaderLen, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek segment %s: %w", seg.path, err)
	}
	dataSize := size - segmentHeaderLen
	s := newFrameScanner(f, dataSize)
	for {
		_, err := s.next()
		if err == nil {
			continue
		}
		if err == io.EOF {
			return dataSize, nil
		}
		var d *damage
		if !errors.As(err, &d) {
			return 0, fmt.Errorf("scan segment %s: %w", seg.path, err)
		}
		off := segmentHeaderLen + d.off
		torn := false
		if last {
			switch d.reason {
			case errShortHeader, errShortFrame:
				torn = true
			default:
				// A write cut by a crash with its lost rest zero-filled
				// leaves the bad frame's real bytes, then zeros to the end
				// of the file.
				zeros, err := zeroTailStart(f, off, size)
				if err != nil {
					return 0, fmt.Errorf("scan segment %s: %w", seg.path, err)
				}
				frameEnd := off + frameHeaderLen
				if headerIntact(d.reason) {
					frameEnd = off + d.frameBytes
				}
				torn = zeros < frameEnd
			}
		}
		if !torn {
			return 0, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, seg.path, off, d.reason)
		}
		if err := f.Truncate(off); err != nil {
			return 0, fmt.Errorf("truncate torn tail of %s at offset %d: %w", seg.path, off, err)
		}
		if err := cfg.Fsync(f); err != nil {
			return 0, fmt.Errorf("fsync truncated segment %s: %w", seg.path, err)
		}
		cfg.Logger.Warn("journal: truncated torn tail",
			"path", seg.path, "offset", off, "dropped_bytes", size-off, "reason", d.reason.Error())
		return d.off, nil
	}
}

// errTornCreation is returned by checkSegmentHeader after it rewrote the
// header of a last segment whose creation a crash interrupted.
var errTornCreation = errors.New("torn segment creation")

// checkSegmentHeader verifies the header of seg, whose file f has size
// bytes. A last segment no longer than a header that holds a prefix of its
// header, then possibly zeros, is a creation that a crash interrupted, and
// its header is rewritten (errTornCreation). A longer file cannot be one: the
// writer fsyncs a new segment's header before it writes any frame into it,
// so a file with frames has a durable header, and one that fails is damage.
func checkSegmentHeader(cfg Config, f vfs.File, seg segment, size int64, last bool) error {
	want := encodeSegmentHeader(seg.start)
	n := min(size, segmentHeaderLen)
	head := make([]byte, n)
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("read segment header %s: %w", seg.path, err)
	}
	if last && size <= segmentHeaderLen && isHeaderPrefix(head, want[:n]) {
		return rewriteSegmentHeader(cfg, f, seg, size, want)
	}
	if size < segmentHeaderLen {
		return fmt.Errorf("%w: %s offset 0: file of %d bytes ends inside the segment header", ErrCorrupt, seg.path, size)
	}
	err := decodeSegmentHeader(head, seg.start)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errSegmentMagic) && looksLikeFormat1(readPrefix(f, size)):
		return fmt.Errorf("%w: %s: a segment of journal format 1, written by an older fest; this one reads format %d only",
			ErrFormat, seg.path, segmentVersion)
	case errors.Is(err, errSegmentVersion):
		return fmt.Errorf("%w: %s: %v", ErrFormat, seg.path, err)
	}
	return fmt.Errorf("%w: %s offset 0: %v", ErrCorrupt, seg.path, err)
}

// isHeaderPrefix reports whether head is a strict prefix of the complete
// header want, possibly followed by zeros: what a crash leaves of the header
// write of a new segment, the lost part of which may read as zeros.
func isHeaderPrefix(head, want []byte) bool {
	k := 0
	for k < len(head) && head[k] == want[k] {
		k++
	}
	return k < segmentHeaderLen && isZero(head[k:])
}

// readPrefix returns the first bytes of f, enough to hold one format-1 frame
// of the length its first four bytes announce (bounded by MaxRecordBytes),
// or nil if they cannot be read.
func readPrefix(f vfs.File, size int64) []byte {
	var lenBytes [4]byte
	if _, err := f.ReadAt(lenBytes[:], 0); err != nil {
		return nil
	}
	n := int64(lenBytes[0]) | int64(lenBytes[1])<<8 | int64(lenBytes[2])<<16 | int64(lenBytes[3])<<24
	n = min(n+8, size, MaxRecordBytes+8)
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil
	}
	return b
}

// rewriteSegmentHeader replaces a torn creation's content by a fresh header.
func rewriteSegmentHeader(cfg Config, f vfs.File, seg segment, size int64, h [segmentHeaderLen]byte) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("truncate torn segment %s: %w", seg.path, err)
	}
	if _, err := f.WriteAt(h[:], 0); err != nil {
		return fmt.Errorf("rewrite header of torn segment %s: %w", seg.path, err)
	}
	if err := cfg.Fsync(f); err != nil {
		return fmt.Errorf("fsync segment %s: %w", seg.path, err)
	}
	cfg.Logger.Warn("journal: rewrote the header of a segment whose creation a crash interrupted",
		"path", seg.path, "old_bytes", size)
	return errTornCreation
}
