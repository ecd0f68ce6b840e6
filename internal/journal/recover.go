package journal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// recovered is the state of the journal directory after recovery.
type recovered struct {
	segs     []segment // at least one; the last is the tail to append to
	tailSize int64     // size of the last segment after any truncation
}

// recoverDir scans every segment, checks that they tile the position space
// without gaps or overlaps, and truncates a torn tail in the last segment.
//
// A torn tail is what a crash during a group write can leave behind: the
// group's bytes are written in order but may reach the disk only partly, or
// (on some filesystems) as a file whose size grew but whose blocks read as
// zeros. Anything else is damage that a crash cannot explain — a bad frame
// followed by good data, or any bad frame in a segment that was complete and
// fsynced before the next one was created — and recovery refuses to guess:
// Open fails with ErrCorrupt naming the file and offset, and an operator
// decides.
func recoverDir(dir string, fsync func(*os.File) error, log *slog.Logger) (recovered, error) {
	segs, err := listSegments(dir)
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
				ErrCorrupt, prev.path, size, what, expect, seg.path, seg.start)
		}
		size, err = recoverSegment(seg.path, i == len(segs)-1, fsync, log)
		if err != nil {
			return recovered{}, err
		}
		prev = seg
		expect = seg.start + Position(size)
	}
	return recovered{segs: segs, tailSize: size}, nil
}

// recoverSegment validates every frame of one segment and returns its valid
// length. Only in the last segment is a torn tail truncated.
func recoverSegment(path string, last bool, fsync func(*os.File) error, log *slog.Logger) (int64, error) {
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return 0, fmt.Errorf("open segment %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat segment %s: %w", path, err)
	}
	size := st.Size()
	s := newFrameScanner(f, size)
	for {
		_, err := s.next()
		if err == nil {
			continue
		}
		if err == io.EOF {
			return size, nil
		}
		var d *damage
		if !errors.As(err, &d) {
			return 0, fmt.Errorf("scan segment %s: %w", path, err)
		}
		torn := false
		if last {
			switch d.reason {
			case errShortHeader, errShortFrame:
				torn = true
			default:
				// A bad frame is still a torn tail if nothing but zeros
				// follows it; that covers a checksum mismatch on a frame that
				// ends exactly at EOF as well as zero-filled preallocation.
				zero, err := s.restIsZero()
				if err != nil {
					return 0, fmt.Errorf("scan segment %s: %w", path, err)
				}
				torn = zero
			}
		}
		if !torn {
			return 0, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, path, d.off, d.reason)
		}
		if err := f.Truncate(d.off); err != nil {
			return 0, fmt.Errorf("truncate torn tail of %s at offset %d: %w", path, d.off, err)
		}
		if err := fsync(f); err != nil {
			return 0, fmt.Errorf("fsync truncated segment %s: %w", path, err)
		}
		log.Warn("journal: truncated torn tail",
			"path", path, "offset", d.off, "dropped_bytes", size-d.off, "reason", d.reason.Error())
		return d.off, nil
	}
}
