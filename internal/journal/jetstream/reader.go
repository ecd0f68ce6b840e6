package jetstream

import (
	"context"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/journal"
)

// Reader is read-only access to one partition's stream, for a node that
// follows a partition another node writes: it never appends, so it never
// fences the writer, and any number of readers may follow one stream.
type Reader struct {
	stream natsjs.Stream
	name   string
}

var _ journal.Follower = (*Reader)(nil)

// OpenReader binds to partition cfg.Partition's stream, creating it with
// the writer's settings if nobody has yet (so a reader started before the
// first writer follows from the first record). Only Conn, Partition,
// StreamPrefix, SubjectPrefix, Replicas and DuplicateWindow are read.
func OpenReader(ctx context.Context, cfg Config) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	js, err := natsjs.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("jetstream reader: connect: %w", err)
	}
	stream, err := createStream(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	return &Reader{stream: stream, name: StreamName(cfg.StreamPrefix, cfg.Partition)}, nil
}

// Replay calls fn for every record after from up to the stream's end when
// Replay starts, like Journal.Replay, except that a fence marker (a new
// writer taking the partition) is delivered too, as an empty record, so
// that the reader's position reaches the stream's end. It returns
// journal.ErrRemoved when records after from were purged.
func (r *Reader) Replay(from journal.Position, fn func(end journal.Position, rec []byte) error) error {
	return replay(r.stream, r.name, from, true, fn)
}

// Follow implements journal.Follower: records after from as a quorum
// stores them, until ctx ends, fence markers as empty records (see
// Replay). It returns an error wrapping journal.ErrRemoved when the record
// after from has been purged.
func (r *Reader) Follow(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error) error {
	return follow(ctx, r.stream, r.name, uint64(from), true, fn, nil)
}

// FollowPending is Follow that also tells pending, as it learns it, how
// many of the stream's records follow the last one delivered: first from
// the stream's state when the follow starts, then after each record from
// the server's count in the message's metadata. 0 means the follower is
// at the stream's end, as of the server's last word.
func (r *Reader) FollowPending(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error, pending func(n uint64)) error {
	return follow(ctx, r.stream, r.name, uint64(from), true, fn, pending)
}

// follow reads the records after from until ctx ends: first those up to
// the stream's end now, as replay does (a short tail with direct gets),
// then a consumer from there. After a server was killed, a consumer made
// at a sequence the stream held was seen to deliver nothing from it, and
// a follower restarted over and over from the same place would never get
// past it; the direct gets do.
func follow(ctx context.Context, stream natsjs.Stream, name string, from uint64, fences bool, fn func(end journal.Position, rec []byte) error, pending func(uint64)) error {
	ictx, cancel := context.WithTimeout(ctx, directGetTimeout)
	info, err := stream.Info(ictx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("jetstream journal: follow %s from %d: read its state: %w", name, from, err)
	}
	last := info.State.LastSeq
	if pending != nil {
		pending(max(last, from) - from)
	}
	if last > from {
		if first := info.State.FirstSeq; from+1 < first {
			return fmt.Errorf("jetstream journal: follow %s from %d: the stream starts at %d: %w", name, from, first, journal.ErrRemoved)
		}
		if err := read(ctx, stream, name, from, last, fences, fn, pending); err != nil {
			return err
		}
		from = last
	}
	return read(ctx, stream, name, from, 0, fences, fn, pending)
}

// Last is the sequence of the stream's last message now (0 when empty).
func (r *Reader) Last(ctx context.Context) (journal.Position, error) {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream reader: read the end of %s: %w", r.name, err)
	}
	return journal.Position(info.State.LastSeq), nil
}

// Close releases nothing (the connection is the caller's); it is there so
// that a Reader can be closed like a Journal.
func (r *Reader) Close() error { return nil }

// replay delivers the records after from through the stream's end as
// replay starts; fences says whether fence markers are delivered.
func replay(stream natsjs.Stream, name string, from journal.Position, fences bool, fn func(end journal.Position, rec []byte) error) error {
	ctx := context.Background()
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("jetstream journal: replay %s: read its state: %w", name, err)
	}
	last := info.State.LastSeq
	if uint64(from) >= last {
		return nil
	}
	if first := info.State.FirstSeq; uint64(from)+1 < first {
		return fmt.Errorf("jetstream journal: replay %s from %d: the stream starts at %d: %w", name, from, first, journal.ErrRemoved)
	}
	return read(ctx, stream, name, uint64(from), last, fences, fn, nil)
}

// readPullExpiry and readHeartbeat are read's pull requests' lifetime and
// the server's heartbeat period within them; two heartbeats missed reset
// the consumer.
const (
	readPullExpiry = 5 * time.Second
	readHeartbeat  = time.Second
)

// read delivers the records after from through last (0: without end),
// and the fence markers as empty records if fences is set; pending, if
// set, is told after each record how many the stream holds after it.
func read(ctx context.Context, stream natsjs.Stream, name string, from, last uint64, fences bool, fn func(end journal.Position, rec []byte) error, pending func(uint64)) error {
	if last != 0 && last-from <= directReadMax {
		return readDirect(ctx, stream, name, from, last, fences, fn, pending)
	}
	cons, err := stream.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:   from + 1,
	})
	if err != nil {
		return fmt.Errorf("jetstream journal: read %s from %d: %w", name, from, err)
	}
	// Short pulls with frequent heartbeats: an ordered consumer made while
	// a new stream's replicas settle sometimes gets no message and no
	// error, and only a missed heartbeat makes it reset (recreate itself
	// at the next sequence). With nats.go's defaults (30 s pulls, 5 s
	// heartbeats) nodes starting together stalled about 10 s per stream.
	it, err := cons.Messages(natsjs.PullExpiry(readPullExpiry), natsjs.PullHeartbeat(readHeartbeat))
	if err != nil {
		return fmt.Errorf("jetstream journal: read %s from %d: %w", name, from, err)
	}
	defer it.Stop()
	next := from + 1
	for last == 0 || next <= last {
		msg, err := it.Next(natsjs.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("jetstream journal: read %s at %d: %w", name, next, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("jetstream journal: read %s at %d: %w", name, next, err)
		}
		seq := meta.Sequence.Stream
		if seq != next {
			if next == from+1 && seq > next {
				// The consumer starts at the stream's first message: the
				// records from next on were purged.
				return fmt.Errorf("jetstream journal: read %s from %d: the stream starts at %d: %w", name, from, seq, journal.ErrRemoved)
			}
			// Sequences are dense: only a purge removes messages, and
			// only from the front. A gap means a record is lost.
			return fmt.Errorf("jetstream journal: read %s: expected sequence %d, got %d: %w", name, next, seq, journal.ErrCorrupt)
		}
		next++
		rec := msg.Data()
		skip := false
		if msg.Headers().Get(headerFence) != "" {
			skip = !fences
			rec = nil
		}
		if !skip {
			if err := fn(journal.Position(seq), rec); err != nil {
				return err
			}
		}
		if pending != nil {
			pending(meta.NumPending)
		}
	}
	return nil
}

const (
	// directReadMax is the longest replay read message by message with
	// direct gets instead of a consumer: a take-over's tail. Any replica
	// answers a direct get, so it goes on while a killed server's streams
	// elect new leaders, when a new consumer was seen to get nothing for
	// tens of seconds; one request per record is slow only for long
	// replays, which a consumer reads.
	directReadMax = 4096
	// directGetTimeout bounds one direct get, and directGetTriesMax the
	// tries of one record (a replica may not hold the newest record yet,
	// or not answer while its server is dying).
	directGetTimeout  = 2 * time.Second
	directGetTriesMax = 20
	directGetWait     = 50 * time.Millisecond
)

// readDirect is read of the records after from through last, one direct
// get each.
func readDirect(ctx context.Context, stream natsjs.Stream, name string, from, last uint64, fences bool, fn func(end journal.Position, rec []byte) error, pending func(uint64)) error {
	for seq := from + 1; seq <= last; seq++ {
		var msg *natsjs.RawStreamMsg
		var err error
		for range directGetTriesMax {
			gctx, cancel := context.WithTimeout(ctx, directGetTimeout)
			msg, err = stream.GetMsg(gctx, seq)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(directGetWait):
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("jetstream journal: read %s at %d: %w", name, seq, err)
		}
		rec := msg.Data
		skip := false
		if msg.Header.Get(headerFence) != "" {
			skip = !fences
			rec = nil
		}
		if !skip {
			if err := fn(journal.Position(seq), rec); err != nil {
				return err
			}
		}
		if pending != nil {
			pending(last - seq) // at least: more may have come since
		}
	}
	return nil
}
