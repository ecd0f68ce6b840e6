// Package jetstream is a journal.Journal for one partition on NATS
// JetStream: the partition's records are the messages of one stream, with
// one subject, replicated (three ways by default) and fsynced on every
// replica before the publish is acknowledged.
//
// A record's position is its stream sequence: 1, 2, 3... with no gaps, so
// the writer knows the position of the record it appends before the
// server answers, and every publish carries the sequence it expects the
// stream to end at (Nats-Expected-Last-Sequence). That is the fence: a
// writer that has lost the partition to another node finds the stream moved
// on and cannot append. Open takes the partition by appending a fence
// marker, so whatever the previous writer appended before it is replayed,
// and nothing after it is accepted. Publishes are pipelined: many are in
// flight, and each done is called in order once its acknowledgement (and
// every earlier one) is in.
//
// Why a stream per partition and not one stream with a subject per
// partition: a stream's sequence is shared by its subjects, so a writer of
// one subject cannot know the sequence its next message gets while other
// partitions publish, and the per-subject fence (expected last subject
// sequence) would allow only one publish in flight per partition. A
// stream per partition also spreads the streams' leaders, and so the write
// load, over the servers, where one stream would put every write on its
// one leader. docs/cluster.md has the whole reasoning.
package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/journal"
)

var (
	// ErrFenced is wrapped (with journal.ErrStopped) by the error that stops
	// a journal whose stream was appended to by another writer: the
	// partition has a new owner, and this writer must stop serving it.
	ErrFenced = errors.New("journal fenced: another writer owns the partition")
	// ErrConfig is wrapped by Open for an invalid Config or a server that
	// cannot carry the journal (max_payload below the record bound).
	ErrConfig = errors.New("jetstream journal config invalid")
	// ErrStaleEpoch is wrapped (with ErrFenced) by Open's error when the
	// stream's last message was written by a later lease epoch than the
	// one Open was given: a retried or delayed take-over must not fence
	// the current owner.
	ErrStaleEpoch = errors.New("a later epoch has written the stream")
)

// Headers fest sets on its messages.
const (
	// headerFence marks the message Open appends to take the partition;
	// its value is the writer's epoch. Replay skips it.
	headerFence = "Fest-Fence"
)

// Config is one partition's journal.
type Config struct {
	// Conn is the connection to publish on (required); the journal does
	// not close it. Several journals may share one connection.
	Conn *nats.Conn
	// Partition is the partition whose records this journal holds.
	Partition int
	// StreamPrefix names the stream: StreamPrefix + partition; default
	// "FEST_P". The subject is SubjectPrefix + partition.
	StreamPrefix string
	// SubjectPrefix defaults to "fest.p.".
	SubjectPrefix string
	// Replicas is the stream's replication factor; default 3, 1 for a
	// single server. Open updates an existing stream's replicas to it.
	Replicas int
	// DuplicateWindow is how long the servers remember a message id, the
	// window in which a retried publish is recognised as a duplicate;
	// default 2 minutes. The journal does not rely on it for correctness:
	// a retry that lands outside the window is told apart by reading the
	// message back (see retry).
	DuplicateWindow time.Duration
	// Epoch identifies this writer in message ids: the lease's fencing
	// token (the KV revision at which it was acquired). Zero picks a
	// random epoch, for a journal used without leases. It must differ
	// between any two Opens of the same partition: within the duplicate
	// window, a second writer reusing an epoch could have its record taken
	// for the first one's at the same sequence.
	Epoch uint64
	// InflightMax bounds publishes awaiting their acknowledgement; Append
	// blocks when it is reached, which is how the servers' pace holds the
	// engine back. Default 1024.
	InflightMax int
	// InflightBytesMax bounds the bytes of those publishes, default 16 MiB:
	// a server disconnects a client that has more than its max_pending
	// (64 MiB by default) unread, so large records must not all be sent
	// at once. One record is always let through, however large.
	InflightBytesMax int
	// AckTimeout is how long a publish waits for its acknowledgement
	// before it is resent; default 2 s. A publish sent to a leader that
	// died is lost without an answer, so this is the writer's stall after
	// a leader's death (plus the election, when that is longer); a timeout
	// that was only slowness costs a resend, which the read-back makes
	// safe.
	AckTimeout time.Duration
	// RetryMax is how many times one record is resent after a timeout or
	// a server without a stream leader before the journal stops; default 10.
	RetryMax int
	// RetryWait is the pause before a resend, doubling each time up to
	// 1 s; default 50 ms.
	RetryWait time.Duration
	// RecordBytesMax is the largest record Append accepts (ErrTooLarge
	// above); default 16 MiB, the engine's bound. Open refuses a server
	// whose max_payload cannot carry it.
	RecordBytesMax int
	// Logger receives retries and the stopping error; default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultStreamPrefix    = "FEST_P"
	DefaultSubjectPrefix   = "fest.p."
	DefaultReplicas        = 3
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultInflightMax     = 1024
	DefaultInflightBytes   = 16 << 20
	DefaultAckTimeout      = 2 * time.Second
	DefaultRetryMax        = 10
	DefaultRetryWait       = 50 * time.Millisecond
	DefaultRecordBytesMax  = 16 << 20
	// headerBytesMax is room for the headers around a record.
	headerBytesMax = 1 << 10
	// retryWaitMax caps the doubling pause between resends.
	retryWaitMax = time.Second
	// fenceTriesMax bounds how often Open retries its fence while the
	// previous writer keeps appending: each try reads the stream's new end.
	fenceTriesMax = 100
)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Conn == nil:
		return fmt.Errorf("%w: no connection", ErrConfig)
	case c.Partition < 0:
		return fmt.Errorf("%w: partition %d", ErrConfig, c.Partition)
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas %d outside 1 to 5", ErrConfig, c.Replicas)
	case c.DuplicateWindow < 0, c.AckTimeout < 0, c.RetryWait < 0:
		return fmt.Errorf("%w: negative duration", ErrConfig)
	case c.InflightMax < 0, c.InflightBytesMax < 0, c.RetryMax < 0, c.RecordBytesMax < 0:
		return fmt.Errorf("%w: negative bound", ErrConfig)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.StreamPrefix == "" {
		c.StreamPrefix = DefaultStreamPrefix
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.Epoch == 0 {
		var b [8]byte
		rand.Read(b[:])
		c.Epoch = binary.LittleEndian.Uint64(b[:]) | 1<<63 // never zero, never a small revision
	}
	if c.InflightMax == 0 {
		c.InflightMax = DefaultInflightMax
	}
	if c.InflightBytesMax == 0 {
		c.InflightBytesMax = DefaultInflightBytes
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.RetryWait == 0 {
		c.RetryWait = DefaultRetryWait
	}
	if c.RecordBytesMax == 0 {
		c.RecordBytesMax = DefaultRecordBytesMax
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// StreamName is the stream of partition p under prefix.
func StreamName(prefix string, p int) string { return prefix + strconv.Itoa(p) }

// pending is one Append waiting for its acknowledgement; a barrier has no
// msg.
type pending struct {
	seq    uint64
	msg    *nats.Msg
	future natsjs.PubAckFuture
	// sendErr is set instead of future when the first send failed.
	sendErr error
	// connects is the journal's count of reconnections when p was sent:
	// a record sent before a reconnection may have been lost with the
	// old connection, and is resent at once instead of after AckTimeout.
	connects uint64
	done     func(error)
}

// Journal is one partition's journal on a JetStream stream.
type Journal struct {
	cfg     Config
	js      natsjs.JetStream
	stream  natsjs.Stream
	subject string
	name    string

	mu      sync.Mutex // serialises Append: sequence order is publish order
	closed  bool
	stopErr atomic.Pointer[error] // set once, by stop
	end     atomic.Uint64
	durable atomic.Uint64

	queue chan *pending // to the acker, in sequence order
	// flow guards inflightBytes; room is signalled as acknowledgements
	// come in or the journal stops.
	flow struct {
		sync.Mutex
		room  *sync.Cond
		bytes int
	}
	ackerWG sync.WaitGroup
	// connects counts the connection's reconnections, which status (the
	// connection's status listener) reports; kick wakes the acker for one.
	connects atomic.Uint64
	status   chan nats.Status
	kick     chan struct{}
	// stopped is closed when the journal stops; Append then fails at once.
	stopped  chan struct{}
	stopOnce sync.Once
}

var (
	_ journal.Journal  = (*Journal)(nil)
	_ journal.Follower = (*Journal)(nil)
)

// Open creates the partition's stream if it does not exist (or updates its
// replicas and duplicate window), then takes the partition: it appends a
// fence marker expecting the stream's current end, so that from then on a
// previous writer's appends are refused. Records acknowledged to that
// writer are all before the marker, and Replay returns them.
func Open(ctx context.Context, cfg Config) (*Journal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if max := cfg.Conn.MaxPayload(); max > 0 && max < int64(cfg.RecordBytesMax+headerBytesMax) {
		return nil, fmt.Errorf("%w: the server's max_payload is %d bytes, below the record bound %d plus %d for headers",
			ErrConfig, max, cfg.RecordBytesMax, headerBytesMax)
	}
	js, err := natsjs.New(cfg.Conn,
		natsjs.WithPublishAsyncMaxPending(cfg.InflightMax+2),
		natsjs.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream journal: connect: %w", err)
	}
	j := &Journal{
		cfg:     cfg,
		js:      js,
		name:    StreamName(cfg.StreamPrefix, cfg.Partition),
		subject: cfg.SubjectPrefix + strconv.Itoa(cfg.Partition),
		queue:   make(chan *pending, cfg.InflightMax),
		stopped: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	j.flow.room = sync.NewCond(&j.flow.Mutex)
	j.stream, err = createStream(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	last, err := j.fence(ctx)
	if err != nil {
		return nil, err
	}
	j.end.Store(last)
	j.durable.Store(last)
	j.status = cfg.Conn.StatusChanged(nats.CONNECTED)
	j.ackerWG.Add(2)
	go j.watchConnects()
	go j.acker()
	return j, nil
}

// createStream creates partition cfg.Partition's stream, or updates an
// existing one's replicas and duplicate window. Writers and readers make it
// alike, so that a node following a partition nobody has written yet
// finds its stream.
func createStream(ctx context.Context, js natsjs.JetStream, cfg Config) (natsjs.Stream, error) {
	name := StreamName(cfg.StreamPrefix, cfg.Partition)
	want := natsjs.StreamConfig{
		Name:       name,
		Subjects:   []string{cfg.SubjectPrefix + strconv.Itoa(cfg.Partition)},
		Storage:    natsjs.FileStorage,
		Replicas:   cfg.Replicas,
		Duplicates: cfg.DuplicateWindow,
		Retention:  natsjs.LimitsPolicy,
		Discard:    natsjs.DiscardNew, // limits never drop records silently
		// Nothing but a purge (RemoveBefore) removes records.
		DenyDelete:  true,
		AllowDirect: true,
	}
	// Several nodes starting at once create the same streams at once, and
	// in nats-server v2.14.5 one of those concurrent requests sometimes
	// never answers (reproduced with three clients on three servers). So
	// each attempt is bounded, a stream that exists with these settings
	// is taken as it is, and a timed-out attempt is retried until ctx ends.
	var err error
	for {
		actx, cancel := context.WithTimeout(ctx, createStreamAttemptTimeout)
		var stream natsjs.Stream
		stream, err = js.Stream(actx, name)
		if err == nil {
			c := stream.CachedInfo().Config
			if c.Replicas == want.Replicas && c.Duplicates == want.Duplicates {
				cancel()
				return newLockedStream(stream), nil
			}
		}
		stream, err = js.CreateOrUpdateStream(actx, want)
		cancel()
		if err == nil {
			return newLockedStream(stream), nil
		}
		if ctx.Err() != nil || !RetryCreate(err) {
			return nil, fmt.Errorf("jetstream journal: create stream %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(createRetryWait):
		}
	}
}

// lockedStream is a stream handle whose Info calls take turns: nats.go's
// Info stores its answer in the handle without a lock, and one Reader's
// handle is used at once by the engine's follower of the partition and by
// the read models' (a data race the race detector found after a rejoin).
// The lock is the handle's own, so only calls on one partition's handle
// wait for each other.
type lockedStream struct {
	natsjs.Stream
	mu *sync.Mutex
}

func newLockedStream(s natsjs.Stream) natsjs.Stream {
	return lockedStream{Stream: s, mu: new(sync.Mutex)}
}

// Info is the stream's Info, one call at a time.
func (s lockedStream) Info(ctx context.Context, opts ...natsjs.StreamInfoOpt) (*natsjs.StreamInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Stream.Info(ctx, opts...)
}

// errCodeClusterNoPeers is JetStream's "no suitable peers for placement"
// (nats.go names no constant for it).
const errCodeClusterNoPeers natsjs.ErrorCode = 10005

// createRetryWait is the pause between two attempts to create a stream or
// bucket.
const createRetryWait = 250 * time.Millisecond

// RetryCreate reports whether creating a stream or bucket failed in a way
// that passes while servers start together: an attempt that timed out, or
// "no suitable peers for placement" (error 10005) while not every server
// has joined JetStream yet.
func RetryCreate(err error) bool {
	var apiErr *natsjs.APIError
	return errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeClusterNoPeers)
}

// createStreamAttemptTimeout bounds one attempt of createStream.
const createStreamAttemptTimeout = 2 * time.Second

// fence appends the marker that takes the partition and returns its
// sequence.
func (j *Journal) fence(ctx context.Context) (uint64, error) {
	for range fenceTriesMax {
		info, err := j.stream.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("jetstream journal: read the end of %s: %w", j.name, err)
		}
		last := info.State.LastSeq
		if err := j.checkEpoch(ctx, last); err != nil {
			return 0, err
		}
		m := nats.NewMsg(j.subject)
		m.Header.Set(headerFence, strconv.FormatUint(j.cfg.Epoch, 10))
		m.Header.Set(nats.MsgIdHdr, j.msgID(last+1))
		ack, err := j.js.PublishMsg(ctx, m, natsjs.WithExpectLastSequence(last))
		if isWrongLastSequence(err) {
			continue // the previous writer appended meanwhile: fence again at the new end
		}
		if err != nil {
			return 0, fmt.Errorf("jetstream journal: fence %s at %d: %w", j.name, last, err)
		}
		if ack.Sequence != last+1 {
			panic(fmt.Sprintf("jetstream journal: fence of %s expecting end %d stored at %d (duplicate %v)", j.name, last, ack.Sequence, ack.Duplicate))
		}
		return ack.Sequence, nil
	}
	return 0, fmt.Errorf("jetstream journal: fence %s: another writer kept appending through %d tries: %w", j.name, fenceTriesMax, ErrFenced)
}

// leaseEpoch reports whether epoch is a lease's (a KV revision) rather
// than the random one of a journal used without leases, which has its top
// bit set: only lease epochs are ordered.
func leaseEpoch(epoch uint64) bool { return epoch != 0 && epoch < 1<<63 }

// checkEpoch refuses to fence a stream whose message at last (its last)
// was written by a later lease epoch than this writer's: that writer holds
// the lease now, and this Open is a stale take-over (a retry after a
// failed open, or one queued behind the loss of the lease).
func (j *Journal) checkEpoch(ctx context.Context, last uint64) error {
	if last == 0 || !leaseEpoch(j.cfg.Epoch) {
		return nil
	}
	m, err := j.stream.GetMsg(ctx, last)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return nil // purged: the stream is empty, and nobody's to judge
	}
	if err != nil {
		return fmt.Errorf("jetstream journal: read the last message of %s at %d: %w", j.name, last, err)
	}
	writer, ok := idEpoch(m.Header.Get(nats.MsgIdHdr))
	if ok && leaseEpoch(writer) && writer > j.cfg.Epoch {
		return fmt.Errorf("jetstream journal: open %s at epoch %d: its message %d was written at epoch %d: %w: %w",
			j.name, j.cfg.Epoch, last, writer, ErrStaleEpoch, ErrFenced)
	}
	return nil
}

// idEpoch is the epoch a message id names (msgID's inverse).
func idEpoch(id string) (uint64, bool) {
	e, _, ok := strings.Cut(id, "-")
	if !ok {
		return 0, false
	}
	epoch, err := strconv.ParseUint(e, 36, 64)
	return epoch, err == nil
}

func (j *Journal) msgID(seq uint64) string {
	// The epoch keeps two writers' ids apart: a new owner appending at a
	// sequence the old one also tried is never taken for its duplicate.
	return strconv.FormatUint(j.cfg.Epoch, 36) + "-" + strconv.FormatUint(seq, 10)
}

// errCodeDuplicateInProcess is JetStream's answer to a message whose id
// an earlier copy, not yet stored, still holds ("duplicate message id is
// in process", nats-server's errors.json): the first copy is being stored
// (after a leader change it may be replayed from the Raft log), so the
// resend must wait and ask again, not give up. nats.go names no constant
// for it.
const errCodeDuplicateInProcess natsjs.ErrorCode = 10158

// isDuplicateInProcess reports whether err is that answer.
func isDuplicateInProcess(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDuplicateInProcess
}

func isWrongLastSequence(err error) bool {
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant
}

// Append implements journal.Journal. The position it returns is the
// record's stream sequence.
func (j *Journal) Append(rec []byte, done func(err error)) (journal.Position, error) {
	if len(rec) > j.cfg.RecordBytesMax {
		return 0, fmt.Errorf("jetstream journal: append %d bytes, over %d: %w", len(rec), j.cfg.RecordBytesMax, journal.ErrTooLarge)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return 0, journal.ErrClosed
	}
	if err := j.err(); err != nil {
		return 0, err
	}
	p := &pending{done: done}
	if len(rec) == 0 {
		p.seq = j.end.Load()
		return j.enqueue(p)
	}
	if err := j.reserve(len(rec)); err != nil {
		return 0, err
	}
	p.seq = j.end.Load() + 1
	m := nats.NewMsg(j.subject)
	m.Data = rec
	// The id names the writer's epoch too: no separate header is
	// spent on it (every byte here is paid per record).
	m.Header.Set(nats.MsgIdHdr, j.msgID(p.seq))
	// The library adds the expected sequence header on each publish;
	// setting it on the message keeps it there for a resend.
	m.Header.Set(natsjs.ExpectedLastSeqHeader, strconv.FormatUint(p.seq-1, 10))
	p.msg = m
	p.connects = j.connects.Load()
	f, err := j.js.PublishMsgAsync(m)
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		// The connection is gone for good. Earlier records may still be
		// in flight and this one's sequence would be reused by the next
		// Append, so the journal stops rather than go on.
		err = j.stop(fmt.Errorf("%w: publish %s at %d: %w", journal.ErrStopped, j.name, p.seq, err))
		j.unreserve(len(rec))
		return 0, err
	case err != nil:
		// A write failed as the connection broke (it reconnects): the
		// acker resends the record in its turn, like one whose
		// acknowledgement timed out.
		p.sendErr = err
	default:
		p.future = f
	}
	j.end.Store(p.seq)
	return j.enqueue(p)
}

// reserve waits until n more bytes may be in flight (at once when nothing
// is), or the journal stops.
func (j *Journal) reserve(n int) error {
	j.flow.Lock()
	defer j.flow.Unlock()
	for j.flow.bytes > 0 && j.flow.bytes+n > j.cfg.InflightBytesMax {
		if err := j.err(); err != nil {
			return err
		}
		j.flow.room.Wait()
	}
	if err := j.err(); err != nil {
		return err
	}
	j.flow.bytes += n
	return nil
}

func (j *Journal) unreserve(n int) {
	j.flow.Lock()
	j.flow.bytes -= n
	if j.flow.bytes < 0 {
		panic(fmt.Sprintf("jetstream journal: %s has %d bytes in flight", j.name, j.flow.bytes))
	}
	j.flow.Unlock()
	j.flow.room.Broadcast()
}

// enqueue hands p to the acker, blocking while InflightMax are in flight.
func (j *Journal) enqueue(p *pending) (journal.Position, error) {
	select {
	case j.queue <- p:
	case <-j.stopped:
		// The acker fails what it holds and p never reached it: p's
		// record may have been sent, but no reply will say it succeeded.
		if p.msg != nil {
			j.unreserve(len(p.msg.Data))
		}
		p.done(j.err())
	}
	return journal.Position(p.seq), nil
}

// err is the error that stopped the journal, or nil.
func (j *Journal) err() error {
	if p := j.stopErr.Load(); p != nil {
		return *p
	}
	return nil
}

// stop records err as the stopping error (the first one wins), wakes
// Appends waiting for room and returns the error in force.
func (j *Journal) stop(err error) error {
	j.stopOnce.Do(func() {
		j.stopErr.Store(&err)
		close(j.stopped)
		j.flow.Lock() // so that no reserve misses the wake-up
		j.flow.Unlock()
		j.flow.room.Broadcast()
		j.cfg.Logger.Error("jetstream journal stopped", "stream", j.name, "err", err)
	})
	return j.err()
}

// watchConnects counts reconnections until Close removes the listener.
func (j *Journal) watchConnects() {
	defer j.ackerWG.Done()
	for range j.status {
		j.connects.Add(1)
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
}

// errReconnected is why a record sent before a reconnection is resent.
var errReconnected = errors.New("the connection was re-established after the record was sent")

// acker waits for each publish's acknowledgement in sequence order and
// calls the dones in that order, so that a record is reported durable only
// after every record before it is.
func (j *Journal) acker() {
	defer j.ackerWG.Done()
	for p := range j.queue {
		if err := j.err(); err != nil {
			if p.msg != nil {
				j.unreserve(len(p.msg.Data))
			}
			p.done(err)
			continue
		}
		if p.msg == nil { // a barrier: everything before it is durable
			p.done(nil)
			continue
		}
		err := j.await(p)
		j.unreserve(len(p.msg.Data))
		if err != nil {
			p.done(j.stop(err))
			continue
		}
		j.durable.Store(p.seq)
		p.done(nil)
	}
}

// await waits for p's acknowledgement, resending p when it does not come.
func (j *Journal) await(p *pending) error {
	if p.future == nil {
		return j.retry(p, p.sendErr)
	}
	for {
		select {
		case ack := <-p.future.Ok():
			return j.checkAck(p, ack)
		default:
		}
		if p.connects != j.connects.Load() {
			return j.retry(p, errReconnected)
		}
		select {
		case ack := <-p.future.Ok():
			return j.checkAck(p, ack)
		case err := <-p.future.Err():
			return j.retry(p, err)
		case <-j.kick:
		}
	}
}

func (j *Journal) checkAck(p *pending, ack *natsjs.PubAck) error {
	if ack.Sequence != p.seq {
		// The expected-sequence header allows nothing else, and a
		// duplicate's id names its sequence.
		panic(fmt.Sprintf("jetstream journal: %s acknowledged record %d at sequence %d (duplicate %v)",
			j.name, p.seq, ack.Sequence, ack.Duplicate))
	}
	return nil
}

// retry resends p after its publish failed with err, until it is stored,
// found already stored, found fenced, or RetryMax resends failed. Every
// record before p is durable when retry runs (the acker goes in order), so
// a "wrong last sequence" answer means one of three things, told apart by
// reading sequence p.seq back: p is not there yet (its first send reached
// the server before the resend of an earlier record, so resend), p is there
// with this writer's id (its acknowledgement was lost, or the duplicate
// window had passed), or another writer's message is there (fenced).
func (j *Journal) retry(p *pending, err error) error {
	wait := j.cfg.RetryWait
	for try := 0; ; try++ {
		if isWrongLastSequence(err) {
			stored, cerr := j.confirm(p)
			if stored || errors.Is(cerr, ErrFenced) {
				return cerr
			}
			if cerr != nil {
				err = cerr
			}
		} else if apiErr := (*natsjs.APIError)(nil); errors.As(err, &apiErr) && !isDuplicateInProcess(err) {
			// Any other refusal by the stream (too large, stream gone) is
			// the same on a resend.
			return fmt.Errorf("%w: publish %s at %d: %w", journal.ErrStopped, j.name, p.seq, err)
		}
		if try == j.cfg.RetryMax {
			return fmt.Errorf("%w: publish %s at %d: %d resends failed, the last with: %w",
				journal.ErrStopped, j.name, p.seq, try, err)
		}
		j.cfg.Logger.Warn("jetstream journal resends a record", "stream", j.name, "seq", p.seq, "try", try+1, "err", err)
		// The first resend goes at once: after a failover every record
		// in flight failed together, and once the first is resent the
		// others usually go through without a pause each.
		if try > 0 {
			time.Sleep(wait)
			wait = min(2*wait, retryWaitMax)
		}
		ctx, cancel := context.WithTimeout(context.Background(), j.cfg.AckTimeout)
		var ack *natsjs.PubAck
		ack, err = j.js.PublishMsg(ctx, p.msg)
		cancel()
		if err == nil {
			return j.checkAck(p, ack)
		}
	}
}

// confirm reads sequence p.seq back: stored is true when it holds p.
func (j *Journal) confirm(p *pending) (stored bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.AckTimeout)
	defer cancel()
	m, err := j.stream.GetMsg(ctx, p.seq)
	switch {
	case errors.Is(err, natsjs.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read back %s at %d: %w", j.name, p.seq, err)
	}
	if id := m.Header.Get(nats.MsgIdHdr); id != j.msgID(p.seq) {
		return false, fmt.Errorf("%w: %w: %s at %d holds message %q, not this writer's %q",
			journal.ErrStopped, ErrFenced, j.name, p.seq, id, j.msgID(p.seq))
	}
	return true, nil
}

// Replay implements journal.Journal: it calls fn for every record after
// from up to the journal's durable end when Replay starts, skipping fence
// markers. That end is at first Open's fence (the records acknowledged to
// earlier writers are all before it), and later only this writer's
// acknowledged records follow it. If the stream has run past what this
// writer appended, another writer has fenced it since, and Replay fails
// with ErrFenced rather than deliver that writer's records, which the
// caller would then apply again. It returns journal.ErrRemoved when
// records after from were purged.
func (j *Journal) Replay(from journal.Position, fn func(end journal.Position, rec []byte) error) error {
	to := j.durable.Load()
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.AckTimeout)
	info, err := j.stream.Info(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("jetstream journal: replay %s: read its state: %w", j.name, err)
	}
	if last, end := info.State.LastSeq, j.end.Load(); last > end {
		return fmt.Errorf("jetstream journal: replay %s: the stream ends at %d, past this writer's %d: %w: %w",
			j.name, last, end, journal.ErrStopped, ErrFenced)
	}
	if uint64(from) >= to {
		return nil
	}
	if first := info.State.FirstSeq; uint64(from)+1 < first {
		return fmt.Errorf("jetstream journal: replay %s from %d: the stream starts at %d: %w", j.name, from, first, journal.ErrRemoved)
	}
	return read(context.Background(), j.stream, j.name, uint64(from), to, false, fn, nil)
}

// Follow implements journal.Follower: records after from as they are
// stored (a JetStream consumer sees only messages a quorum has stored),
// until ctx ends.
func (j *Journal) Follow(ctx context.Context, from journal.Position, fn func(end journal.Position, rec []byte) error) error {
	return follow(ctx, j.stream, j.name, uint64(from), false, fn, nil)
}

// End implements journal.Journal: the sequence of the last record
// appended (acknowledged or not).
func (j *Journal) End() journal.Position { return journal.Position(j.end.Load()) }

// Durable implements journal.Journal: the sequence of the last record whose
// acknowledgement, and every earlier one's, is in.
func (j *Journal) Durable() journal.Position { return journal.Position(j.durable.Load()) }

// RemoveBefore implements journal.Journal as a purge of every message at
// or before pos (never past the durable end).
func (j *Journal) RemoveBefore(pos journal.Position) error {
	pos = min(pos, j.Durable())
	if pos == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.AckTimeout)
	defer cancel()
	if err := j.stream.Purge(ctx, natsjs.WithPurgeSequence(uint64(pos)+1)); err != nil {
		return fmt.Errorf("jetstream journal: purge %s through %d: %w", j.name, pos, err)
	}
	return nil
}

// Epoch is the writer's epoch, as in its message ids.
func (j *Journal) Epoch() uint64 { return j.cfg.Epoch }

// Close waits until every appended record is acknowledged (or failed) and
// its done called. It leaves the connection open. It returns the error that
// stopped the journal, if any.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	close(j.queue)
	j.mu.Unlock()
	j.cfg.Conn.RemoveStatusListener(j.status) // ends watchConnects
	j.ackerWG.Wait()
	return j.err()
}
