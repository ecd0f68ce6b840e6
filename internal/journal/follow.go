package journal

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fest-platform/fest/internal/vfs"
)

// Follower is implemented by journals that can be read while they are
// written: projections consume committed records through it.
type Follower interface {
	// Follow calls fn for every durable record ending after from, in order,
	// then waits for more, until ctx ends (returning ctx.Err()) or fn fails.
	// rec is valid only during the call.
	Follow(ctx context.Context, from Position, fn func(end Position, rec []byte) error) error
}

var _ Follower = (*File)(nil)

// notifyDurable wakes the followers, if any: a new channel per fsync is
// cheap next to the fsync, but not worth making when nobody follows.
func (f *File) notifyDurable() {
	if f.followers.Load() == 0 {
		return
	}
	next := make(chan struct{})
	old := f.durableCh.Swap(&next)
	close(*old)
}

// followPoll bounds how long a follower sleeps when it saw no signal, in
// case the writer stopped or the journal was closed.
const followPoll = 200 * time.Millisecond

// Follow implements Follower. It reads the segment files (from the page
// cache, usually) up to the durable position, so a follower never sees a
// record that a crash could take back, and a slow follower costs the
// writer nothing: it simply falls behind and catches up.
func (f *File) Follow(ctx context.Context, from Position, fn func(end Position, rec []byte) error) error {
	f.followers.Add(1)
	defer f.followers.Add(-1)
	var r *segmentReader
	defer func() {
		if r != nil {
			r.close()
		}
	}()
	for {
		wait := f.durableCh.Load()
		durable := Position(f.durable.Load())
		if r != nil && r.end == 0 {
			// The segment was active when opened; the writer may have
			// moved on to a new one since.
			r.end = f.segmentAfter(r.start)
		}
		for from < durable {
			if r == nil || r.limitAt(from) {
				if r != nil {
					r.close()
				}
				var err error
				if r, err = f.openAt(from); err != nil {
					return err
				}
			}
			rec, end, err := r.next(durable)
			if err != nil {
				return err
			}
			if rec == nil {
				r.close()
				r = nil
				continue
			}
			if err := fn(end, rec); err != nil {
				return err
			}
			from = end
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-*wait:
		case <-time.After(followPoll):
		}
	}
}

// segmentReader reads frames of one segment from a record boundary.
type segmentReader struct {
	f     vfs.File
	start Position // segment start
	at    Position // position of the next frame
	end   Position // start of the next segment, or 0 for the active one
	s     *frameScanner
}

// openAt opens the segment holding the record that starts at from.
func (f *File) openAt(from Position) (*segmentReader, error) {
	f.mu.Lock()
	segs := append([]segment(nil), f.mu.segs...)
	f.mu.Unlock()
	if from < segs[0].start {
		return nil, fmt.Errorf("follow from %d: %w: journal starts at %d", from, ErrRemoved, segs[0].start)
	}
	i := len(segs) - 1
	for i > 0 && segs[i].start > from {
		i--
	}
	var end Position
	if i+1 < len(segs) {
		end = segs[i+1].start
	}
	fh, err := f.cfg.FS.OpenFile(segs[i].path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open segment %s: %w", segs[i].path, err)
	}
	if _, err := fh.Seek(segmentHeaderLen+int64(from-segs[i].start), io.SeekStart); err != nil {
		fh.Close()
		return nil, fmt.Errorf("seek segment %s: %w", segs[i].path, err)
	}
	return &segmentReader{f: fh, start: segs[i].start, at: from, end: end}, nil
}

// limitAt reports whether from is past this segment: the reader must move
// to the next one.
func (r *segmentReader) limitAt(from Position) bool {
	return r.end != 0 && from >= r.end || from != r.at
}

// next returns the next record ending at or before limit, or nil when this
// segment has no more (the caller reopens at the next segment).
func (r *segmentReader) next(limit Position) ([]byte, Position, error) {
	if r.end != 0 && r.at >= r.end {
		return nil, 0, nil
	}
	stop := limit
	if r.end != 0 && r.end < stop {
		stop = r.end
	}
	if r.s == nil {
		r.s = newFrameScanner(r.f, 0)
	}
	// The scanner's size is the bytes readable from where it began.
	base := r.at - Position(r.s.off)
	r.s.size = int64(stop - base)
	rec, err := r.s.next()
	if err == io.EOF {
		if r.end == 0 || stop < r.end {
			// The active segment, or more to come in this one: the caller
			// only asks when limit is beyond at.
			return nil, 0, fmt.Errorf("follow: no record at %d below durable %d in segment %s", r.at, limit, r.f.Name())
		}
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("follow segment %s at %d: %v", r.f.Name(), r.at, err)
	}
	r.at = base + Position(r.s.off)
	return rec, r.at, nil
}

func (r *segmentReader) close() { r.f.Close() }

// segmentAfter returns the start of the segment after the one starting at
// start, or 0 if that one is still the active segment.
func (f *File) segmentAfter(start Position) Position {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.mu.segs {
		if s.start > start {
			return s.start
		}
	}
	return 0
}
