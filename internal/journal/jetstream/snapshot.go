package jetstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/journal"
)

// SnapshotConfig is one partition's snapshot store in a JetStream object
// store bucket, so that a node taking the partition over loads the newest
// snapshot and replays only the stream's tail after it.
type SnapshotConfig struct {
	// JetStream is the context to make the bucket in (required).
	JetStream natsjs.JetStream
	// Bucket is the object store; default "fest_snapshots". Every
	// partition's snapshots share it, named p<partition>/<position>.
	Bucket string
	// Replicas of the bucket; default 3, 1 for a single server.
	Replicas int
	// Partition whose snapshots these are.
	Partition int
	// Keep is how many snapshots are kept, newest first; default 2, so
	// that a damaged newest one leaves an older one to fall back on.
	// Older ones are deleted after each Write.
	Keep int
}

// Defaults of SnapshotConfig.
const (
	DefaultSnapshotBucket = "fest_snapshots"
	DefaultSnapshotKeep   = 2
	// snapshotsMax bounds the objects one List reads for a partition.
	snapshotsMax = 1024
)

// Validate reports the first invalid field.
func (c SnapshotConfig) Validate() error {
	switch {
	case c.JetStream == nil:
		return fmt.Errorf("%w: snapshots without a jetstream", ErrConfig)
	case c.Partition < 0:
		return fmt.Errorf("%w: snapshots of partition %d", ErrConfig, c.Partition)
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("%w: snapshot replicas %d", ErrConfig, c.Replicas)
	case c.Keep < 0 || c.Keep > snapshotsMax:
		return fmt.Errorf("%w: keep %d snapshots", ErrConfig, c.Keep)
	}
	return nil
}

// Snapshots is one partition's snapshots. The object store checks each
// object's SHA-256 digest as it is read, so damage is reported, never
// loaded.
type Snapshots struct {
	cfg    SnapshotConfig
	store  natsjs.ObjectStore
	prefix string
}

// OpenSnapshots creates (or binds to) the bucket.
func OpenSnapshots(ctx context.Context, cfg SnapshotConfig) (*Snapshots, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultSnapshotBucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = DefaultReplicas
	}
	if cfg.Keep == 0 {
		cfg.Keep = DefaultSnapshotKeep
	}
	// Nodes starting at once create the bucket at once; as with the
	// streams (createStream), each attempt is bounded and retried, and an
	// existing bucket is bound to as it is.
	var store natsjs.ObjectStore
	var err error
	for {
		actx, cancel := context.WithTimeout(ctx, createStreamAttemptTimeout)
		if store, err = cfg.JetStream.ObjectStore(actx, cfg.Bucket); err != nil {
			store, err = cfg.JetStream.CreateOrUpdateObjectStore(actx, natsjs.ObjectStoreConfig{
				Bucket:   cfg.Bucket,
				Replicas: cfg.Replicas,
				Storage:  natsjs.FileStorage,
			})
		}
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || !RetryCreate(err) {
			return nil, fmt.Errorf("jetstream snapshots: create bucket %s: %w", cfg.Bucket, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(createRetryWait):
		}
	}
	return &Snapshots{cfg: cfg, store: store, prefix: "p" + strconv.Itoa(cfg.Partition) + "/"}, nil
}

func (s *Snapshots) name(pos journal.Position) string {
	return fmt.Sprintf("%s%020d", s.prefix, uint64(pos))
}

// WriteFrom stores the snapshot at pos with what fn writes to w, then
// deletes the snapshots past Keep. The object becomes visible whole or not
// at all (its metadata is written last).
func (s *Snapshots) WriteFrom(ctx context.Context, pos journal.Position, fn func(w io.Writer) error) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(fn(pw)) }()
	_, err := s.store.Put(ctx, natsjs.ObjectMeta{Name: s.name(pos)}, pr)
	pr.CloseWithError(err) // unblocks fn if Put gave up early
	if err != nil {
		return fmt.Errorf("jetstream snapshots: write partition %d at %d: %w", s.cfg.Partition, pos, err)
	}
	return s.prune(ctx, pos)
}

// List returns the positions of the partition's snapshots, newest first.
func (s *Snapshots) List(ctx context.Context) ([]journal.Position, error) {
	infos, err := s.store.List(ctx)
	if errors.Is(err, natsjs.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream snapshots: list: %w", err)
	}
	var ps []journal.Position
	for _, info := range infos {
		rest, ok := strings.CutPrefix(info.Name, s.prefix)
		if !ok || info.Deleted {
			continue
		}
		pos, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			continue // not one of fest's names: left alone
		}
		ps = append(ps, journal.Position(pos))
		if len(ps) > snapshotsMax {
			return nil, fmt.Errorf("jetstream snapshots: partition %d has more than %d snapshots", s.cfg.Partition, snapshotsMax)
		}
	}
	slices.Sort(ps)
	slices.Reverse(ps)
	return ps, nil
}

// Open returns the snapshot at pos. Reading it to the end checks its
// digest: a damaged object fails its last Read with an error wrapping
// journal.ErrCorrupt.
func (s *Snapshots) Open(ctx context.Context, pos journal.Position) (io.ReadCloser, error) {
	r, err := s.store.Get(ctx, s.name(pos))
	if err != nil {
		return nil, fmt.Errorf("jetstream snapshots: open partition %d at %d: %w", s.cfg.Partition, pos, err)
	}
	return digestReader{r}, nil
}

type digestReader struct{ natsjs.ObjectResult }

func (d digestReader) Read(p []byte) (int, error) {
	n, err := d.ObjectResult.Read(p)
	if errors.Is(err, natsjs.ErrDigestMismatch) {
		err = fmt.Errorf("%w: %w", journal.ErrCorrupt, err)
	}
	return n, err
}

// Oldest is the position of the oldest snapshot kept (0 without one): the
// partition's journal may be purged up to it (RemoveBefore), once every
// read model's checkpoint has passed it too.
func (s *Snapshots) Oldest(ctx context.Context) (journal.Position, error) {
	ps, err := s.List(ctx)
	if err != nil || len(ps) == 0 {
		return 0, err
	}
	return ps[len(ps)-1], nil
}

// prune deletes the snapshots past Keep, counting written (just put) even
// when the object store's listing, read through a new consumer, does not
// show it yet: on a busy server it may lag the Put's acknowledgement.
func (s *Snapshots) prune(ctx context.Context, written journal.Position) error {
	ps, err := s.List(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(ps, written) {
		ps = append(ps, written)
		slices.Sort(ps)
		slices.Reverse(ps)
	}
	for _, pos := range ps[min(len(ps), s.cfg.Keep):] {
		if err := s.store.Delete(ctx, s.name(pos)); err != nil && !errors.Is(err, natsjs.ErrObjectNotFound) {
			return fmt.Errorf("jetstream snapshots: delete partition %d at %d: %w", s.cfg.Partition, pos, err)
		}
	}
	return nil
}
