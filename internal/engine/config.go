package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/vfs"
)

// Config configures an Engine. The zero value of every field but Dir means
// its default.
type Config struct {
	// Dir is the data directory: engine.json (fixed settings), journal/ and
	// snapshots/. Created if missing.
	Dir string
	// Partitions is the number of logical partitions, fixed when Dir is
	// created (default 64, at most 4,096). On an existing Dir it must be 0
	// or the stored number.
	Partitions int
	// Workers is the number of goroutines applying commands; worker w owns
	// the partitions p with p % Workers == w (default 2, at most
	// Partitions).
	Workers int
	// BatchSizeMax is the number of commands a worker takes into one batch,
	// one journal record (default 8,192).
	BatchSizeMax int
	// QueueDepthMax bounds each worker's queue, in submissions (default
	// 4,096). A submission that finds the queue full is answered at once
	// with CodeOverloaded.
	QueueDepthMax int
	// InflightRecordsMax bounds the records each worker has handed to the
	// journal and not yet seen durable (default 4). A worker that reaches it
	// waits, so a slow disk turns into full queues and CodeOverloaded.
	InflightRecordsMax int
	// PaymentTimeout is how long an order may stay unpaid before it expires
	// and its stock is released (default 15m).
	PaymentTimeout time.Duration
	// IdempotencyWindow is how long an idempotency key is remembered
	// (default 24h): a retry within it returns the first order.
	IdempotencyWindow time.Duration
	// IdempotencyKeysMax is the number of keys each partition keeps in
	// memory (default 1,000,000); older keys of the window move to the
	// disk tier in Dir/idempotency. Past twice this number (the disk not
	// keeping up) a new keyed order is answered CodeOverloaded. Without a
	// Dir there is no disk tier and the oldest keys past it are forgotten.
	IdempotencyKeysMax int
	// IdempotencyIndexBytesMax bounds the memory of the disk tier's index
	// (default 4 GiB, 10.7 to 21 bytes a key); past it the oldest keys on
	// disk are forgotten before their window, counted and logged.
	IdempotencyIndexBytesMax int64
	// IdempotencyRunDelayMax is how long the disk tier gathers spilled
	// keys into one run file (default 2s): fewer, larger runs.
	IdempotencyRunDelayMax time.Duration
	// IdempotencyMintedAgeMax and IdempotencyMintedSkewMax bound how long
	// before (default 2m) and after (default 1m) its first use a UUIDv7 or
	// ULID key may have been minted to be time-ordered: kept for the whole
	// window in the disk tier's time-ordered runs, which need no memory per
	// key. IdempotencyTimedIndexBytesMax bounds those runs' index (default
	// 1 GiB; a day at the peak needs about 360 MB). Zero is the default;
	// the disk tier validates them.
	IdempotencyMintedAgeMax       time.Duration
	IdempotencyMintedSkewMax      time.Duration
	IdempotencyTimedIndexBytesMax int64
	// ExpireBatchMax bounds the orders one partition expires per batch, so
	// a wave of expiries does not stall new orders (default 4,096).
	ExpireBatchMax int
	// IdleTick is how often an idle worker wakes to expire unpaid orders
	// (default 100ms). Negative: never; orders then expire only when a batch
	// runs, which makes a simulation's disk operations depend on its
	// commands alone.
	IdleTick time.Duration
	// SnapshotEveryBytes is the journal growth, in bytes, after which a
	// snapshot is taken in the background (default 1 GiB; negative: only
	// on Close and on request). It counts from the last attempt, so a
	// failed snapshot is retried only after another SnapshotEveryBytes.
	SnapshotEveryBytes int64
	// FS is the file system under Dir: engine.json, the directory lock,
	// the journal, snapshots and the idempotency store (default vfs.OS;
	// tests pass a simulated disk).
	FS vfs.FS
	// Journal, if set, is used instead of the file journal in Dir (for a
	// replicated journal, or a test double). The engine closes it.
	Journal journal.Journal
	// SegmentBytesMax is the file journal's segment size (default 256 MiB).
	SegmentBytesMax int64
	// JournalFsync, if set, replaces the file journal's fsync (to count
	// fsyncs in benchmarks, or to make one fail in tests).
	JournalFsync func(vfs.File) error
	// RecordVersion is the version of the journal records the engine
	// writes: 3 (the default, also meant by 0) or 2, the version builds from
	// before version 3 write and the only one they read. Records of every
	// version are read whatever it is. It is for a rolling upgrade of a
	// cluster (docs/cluster.md): the upgraded nodes write version 2 until
	// no node of the older build is left to read their records.
	RecordVersion int
	// NoSync skips fsync. For tests only: acknowledged orders are then not
	// durable.
	NoSync bool
	// Now returns the current time in unix nanoseconds (default: the wall
	// clock). Time enters each batch from here, never inside apply; the
	// router also reads it, from callers' goroutines, for an order on a
	// sold-out deal (is its window closed?). It must be safe for
	// concurrent use.
	Now func() int64
	// RehearsalClock runs the engine on the time its commands give
	// (Command.At) instead of Now: the clock is the largest time given so
	// far (at start, the last event's), commands without a time are
	// applied at it, and each command with a time is applied at its own,
	// so that its events carry it exactly (default off: a command with a
	// time is then refused, CodeInvalidArgument field "at", and Now is the
	// clock). It is for rehearsals, replaying a festival's time compressed
	// (fest load --profile festival): expiry and deal windows then run on
	// the festival's time. Since concurrent batches give times only
	// roughly in order, and expiry walks orders by sequence and stops at
	// the first not yet due, an order may expire a little late, never
	// early; an order's pay-by is its own time plus PaymentTimeout, in the
	// same festival time; a command whose time is before a deadline the
	// clock has already passed (its order expired, its deal ended) is too
	// late, as a buyer's would be; idempotency keys are kept for
	// IdempotencyWindow of the given time, and UUIDv7 or ULID keys minted
	// on the wall clock are not time-ordered on it (they are kept like any
	// other key). Now is not read in this mode.
	RehearsalClock bool
	// RetainFrom, if set, returns the journal position the engine's
	// consumers still need; segments past it are never removed.
	RetainFrom func() uint64
	// Logger receives start-up, recovery and failure messages (default
	// slog.Default()).
	Logger *slog.Logger
	// rehearsal is the clock of RehearsalClock, set by withDefaults.
	rehearsal *rehearsalClock
	// Cluster, if set, runs the engine in cluster mode (cluster.go): every
	// partition's state is kept from its own replicated journal, and only
	// the partitions added with AddPartition are served here. Dir,
	// Journal, Workers and SnapshotEveryBytes are then not used, and
	// Partitions is required.
	Cluster *Cluster
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.Cluster != nil {
		switch {
		case c.Dir != "" || c.Journal != nil:
			return errors.New("engine config: cluster mode keeps no data directory and no single journal: Dir and Journal must be unset")
		case c.Partitions < 1:
			return errors.New("engine config: cluster mode needs Partitions, the cluster's fixed number")
		}
		if err := c.Cluster.Validate(); err != nil {
			return err
		}
	}
	switch {
	case c.Dir == "" && c.Journal == nil && c.Cluster == nil:
		return errors.New("engine config: Dir is required")
	case c.Partitions < 0 || c.Partitions > partitionsMax:
		return fmt.Errorf("engine config: Partitions %d outside 1..%d", c.Partitions, partitionsMax)
	case c.Workers < 0:
		return fmt.Errorf("engine config: Workers %d is negative", c.Workers)
	case c.BatchSizeMax < 0 || c.QueueDepthMax < 0 || c.InflightRecordsMax < 0 || c.ExpireBatchMax < 0 || c.IdempotencyKeysMax < 0 || c.IdempotencyIndexBytesMax < 0 || c.IdempotencyRunDelayMax < 0:
		return errors.New("engine config: limits must not be negative")
	case c.PaymentTimeout < 0:
		return fmt.Errorf("engine config: PaymentTimeout %v is negative", c.PaymentTimeout)
	case c.IdempotencyWindow < 0:
		return fmt.Errorf("engine config: IdempotencyWindow %v is negative", c.IdempotencyWindow)
	case c.RecordVersion != 0 && c.RecordVersion != recordVersionV2 && c.RecordVersion != recordVersionV3:
		return fmt.Errorf("engine config: RecordVersion %d is neither %d nor %d (0: %d)", c.RecordVersion, recordVersionV2, recordVersionV3, recordVersionDefault)
	}
	return nil
}

func (c Config) withDefaults() Config {
	// Partitions is defaulted by Open: an existing directory decides it.
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.BatchSizeMax == 0 {
		c.BatchSizeMax = 8192
	}
	if c.QueueDepthMax == 0 {
		c.QueueDepthMax = 4096
	}
	if c.InflightRecordsMax == 0 {
		c.InflightRecordsMax = 4
	}
	if c.PaymentTimeout == 0 {
		c.PaymentTimeout = 15 * time.Minute
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = 24 * time.Hour
	}
	if c.IdempotencyKeysMax == 0 {
		c.IdempotencyKeysMax = 1_000_000
	}
	if c.ExpireBatchMax == 0 {
		c.ExpireBatchMax = 4096
	}
	if c.IdleTick == 0 {
		c.IdleTick = 100 * time.Millisecond
	}
	if c.SnapshotEveryBytes == 0 {
		c.SnapshotEveryBytes = 1 << 30
	}
	if c.RecordVersion == 0 {
		c.RecordVersion = recordVersionDefault
	}
	if c.RehearsalClock && c.rehearsal == nil {
		c.rehearsal = &rehearsalClock{}
		c.Now = c.rehearsal.load
	}
	if c.Now == nil {
		c.Now = func() int64 { return time.Now().UnixNano() }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FS == nil {
		c.FS = vfs.OS
	}
	return c
}
