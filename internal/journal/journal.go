// Package journal is fest's durable log: the source of truth from which the
// engine's state is rebuilt after a crash.
//
// A Journal accepts opaque records (the engine decides their content), makes
// them durable in the order they were appended, and replays them in that same
// order. The file implementation in this package writes segment files of
// CRC32C-checked frames (the header checked apart from the payload, so that a
// torn tail is told from damage) with group commit; a replicated
// implementation (NATS JetStream) can satisfy the same interface.
package journal

import "errors"

// Position is a point in the journal: the byte offset just past the end of a
// record's frame, counted from the start of the journal across all segments.
// Positions only grow; zero is the empty journal.
type Position uint64

// Journal is the interface the engine writes through.
//
// Append is called concurrently by several partition workers. The journal
// assigns each record its position at Append time, so positions follow the
// order of Append calls, and makes records durable strictly in that order.
type Journal interface {
	// Append queues rec to be written and fsynced and returns the position
	// just past its frame. The journal owns rec until done is called; done is
	// called exactly once, from the journal's goroutine, after the fsync that
	// covers rec and every record appended before it (err == nil), or with the
	// error that stopped the journal. An empty rec writes nothing: its done is
	// called once every earlier record is durable (a barrier).
	//
	// Append never blocks for long: at most until the writer has room
	// (a bounded queue of QueueBytesMax); it returns ErrClosed or the stopping
	// error (wrapping ErrStopped) instead of queuing after Close or a failure.
	Append(rec []byte, done func(err error)) (Position, error)

	// Replay calls fn for every record whose end position is greater than
	// from, in order. rec is only valid during the call. It must be called
	// before the first Append.
	Replay(from Position, fn func(end Position, rec []byte) error) error

	// End returns the position past the last appended record.
	End() Position

	// Durable returns the position past the last fsynced record.
	Durable() Position

	// RemoveBefore deletes whole segments that end at or before pos: they are
	// covered by a snapshot and by every projection's checkpoint.
	RemoveBefore(pos Position) error

	// Close waits for every appended record to be durable (calling its done),
	// stops the writer and closes the files.
	Close() error
}

var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("journal closed")
	// ErrStopped wraps the error that stopped the journal (fail-stop after an
	// fsync or write error: fsync is never retried on the same file).
	ErrStopped = errors.New("journal stopped")
	// ErrCorrupt is returned by Open when the journal holds damage that a
	// crash cannot explain; the error names the file and the offset.
	ErrCorrupt = errors.New("journal corrupt")
	// ErrFormat is returned by Open for a segment file of another format
	// version, such as one written by an older fest.
	ErrFormat = errors.New("journal format not supported")
	// ErrTooLarge is returned by Append for a record longer than
	// MaxRecordBytes.
	ErrTooLarge = errors.New("journal record too large")
	// ErrRemoved is returned by Replay when asked to start before the first
	// segment that still exists: those records were deleted by RemoveBefore.
	ErrRemoved = errors.New("journal records removed")
)
