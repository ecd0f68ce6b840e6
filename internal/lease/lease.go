// Package lease gives fest nodes ownership of partitions through leases in
// a JetStream key-value bucket: one key per partition naming its owner,
// renewed by the owner, taken over by another node once it has seen the
// key unchanged for a whole TTL. The KV revision at which a node acquired
// a lease is its fencing token (the journal's epoch): the partition's
// journal is opened with it and fences out every earlier writer, so a node
// that lost its lease without knowing it (paused, partitioned) cannot
// append, whatever its clock says.
//
// Expiry is judged on the taker's own clock, from when it saw the key
// change, never by comparing clocks of two nodes: only their rates need to
// agree. Partitions are spread evenly over the live nodes (those whose
// heartbeat key changed within a TTL); when a node joins, owners above
// their share hand partitions off in a planned way: the old owner stops,
// drains and releases, and the new one acquires and replays.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrLost is returned by Renew when the lease was taken over or
	// released: the node must stop serving the partition.
	ErrLost = errors.New("lease lost")
	// ErrHeld is returned by Acquire when another node holds a lease that
	// has not expired.
	ErrHeld = errors.New("lease held by another node")
	// ErrConfig is wrapped by New for an invalid Config.
	ErrConfig = errors.New("lease config invalid")
)

// Clock is the time source, injectable for tests.
type Clock interface {
	Now() time.Time
	// After is like time.After; Run waits on it between ticks.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Handler is what a node does when its ownership changes. The Manager
// calls it from Tick, one call at a time.
type Handler interface {
	// Acquired is called once the node holds partition's lease, acquired
	// at revision epoch: open the partition's journal with Epoch = epoch
	// (its fence refuses the previous owner), replay, then serve. An error
	// releases the lease again. It must return quickly: the tick that
	// calls it also renews the node's other leases, so a long replay runs
	// in the background (the partition answering 503 until it is done).
	Acquired(ctx context.Context, partition int, epoch uint64) error
	// Release is a planned hand-off: stop taking commands for partition,
	// drain what is in flight, close its journal. The lease is deleted
	// when Release returns nil. ctx bounds the wait (ReleaseTimeout): an
	// error (the hand-off still under way when ctx ended) keeps the lease,
	// renewed as before, and the next tick calls Release again, which
	// must then wait for the same hand-off rather than start another.
	Release(ctx context.Context, partition int) error
	// Lost is called when the lease was taken over or could not be
	// renewed for a TTL: stop serving partition at once (its journal is
	// fenced anyway).
	Lost(partition int)
}

// RenewalHandler is a Handler that also wants to know how long each lease
// is surely valid: Renewed is called when a lease is acquired (before
// Acquired) and after each successful renewal, with validFor = the
// renewal's send time + TTL - now, on the manager's clock. A node answers
// for the partition only within that (the engine's Cluster.Leased). It
// must return at once; it may be called from the renewer's goroutine
// while a tick calls the Handler's other methods.
type RenewalHandler interface {
	Renewed(partition int, validFor time.Duration)
}

// Config is one node's lease manager.
type Config struct {
	// KV is the JetStream context to make the bucket in (required).
	JetStream natsjs.JetStream
	// Bucket is the KV bucket; default "fest_leases".
	Bucket string
	// Replicas of the bucket; default 3, 1 for a single server.
	Replicas int
	// Node names this node (required): letters, digits, '-' and '_'.
	Node string
	// Address is where other nodes and clients reach this node's API
	// ("http://10.0.0.1:8080"); it is the heartbeat's value, shown by View.
	Address string
	// Partitions is the number of partitions to spread (required).
	Partitions int
	// TTL is how long a lease lasts without renewal, as seen by another
	// node; default 5 s. A failover takes about a TTL plus a RenewEvery.
	TTL time.Duration
	// RenewEvery is the period of Run's ticks, and of its renewals and
	// heartbeats, which run on a goroutine of their own so that a slow
	// hand-off in a tick does not hold them up; default TTL/3, at most
	// TTL/2.
	RenewEvery time.Duration
	// ReleaseTimeout bounds one call of the handler's Release in a tick
	// or a planned stop; default 2 TTL. A hand-off that takes longer is
	// waited for again at the next tick (the lease kept and renewed
	// meanwhile), or at a planned stop left to expire.
	ReleaseTimeout time.Duration
	// Clock defaults to the system clock.
	Clock Clock
	// Handler receives ownership changes (required).
	Handler Handler
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultBucket   = "fest_leases"
	DefaultReplicas = 3
	DefaultTTL      = 5 * time.Second
	// partitionsMax bounds the keys a tick reads; fest's engine allows no
	// more partitions than this.
	partitionsMax = 4096
	// requestTimeoutMax bounds each KV request of a tick (and of a
	// renewal round). The bound in force is RenewEvery if shorter
	// (requestTimeout): a request sent while the bucket elects a new
	// leader (its old one killed) gets no answer at all, and a tick that
	// waits longer than its period for it sees the dead node's leases
	// late, which delays the take-over by as much.
	requestTimeoutMax = 5 * time.Second
)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.JetStream == nil:
		return fmt.Errorf("%w: no jetstream", ErrConfig)
	case c.Handler == nil:
		return fmt.Errorf("%w: no handler", ErrConfig)
	case c.Node == "" || strings.ContainsFunc(c.Node, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}):
		return fmt.Errorf("%w: node name %q (letters, digits, - and _)", ErrConfig, c.Node)
	case c.Partitions < 1 || c.Partitions > partitionsMax:
		return fmt.Errorf("%w: %d partitions outside 1 to %d", ErrConfig, c.Partitions, partitionsMax)
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas %d", ErrConfig, c.Replicas)
	case c.TTL < 0 || c.RenewEvery < 0 || c.ReleaseTimeout < 0:
		return fmt.Errorf("%w: negative duration", ErrConfig)
	case c.TTL > 0 && c.RenewEvery > c.TTL/2:
		return fmt.Errorf("%w: renewing every %v is too slow for a TTL of %v (at most half)", ErrConfig, c.RenewEvery, c.TTL)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.RenewEvery == 0 {
		c.RenewEvery = c.TTL / 3
	}
	if c.ReleaseTimeout == 0 {
		c.ReleaseTimeout = 2 * c.TTL
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Lease is a partition held by this node.
type Lease struct {
	Partition int
	// Epoch is the revision at which the lease was acquired: the fencing
	// token, constant while the lease is held.
	Epoch uint64
	// Revision is the key's revision after the last renewal.
	Revision uint64
	// RenewedAt is when the last successful renewal was sent, on this
	// node's clock: the lease is surely still ours until RenewedAt + TTL.
	RenewedAt time.Time
	// TakeOverWait is, for a lease taken over from another node after it
	// expired, how long this node had seen that node's last renewal
	// unchanged when it took the key (a TTL or a little more); zero for a
	// lease that was free. It is the first part of a failover's time.
	TakeOverWait time.Duration
}

// Stats counts a manager's lease changes since it started.
type Stats struct {
	// Acquired counts leases acquired, TakenOver those of them taken from
	// another node after it expired.
	Acquired, TakenOver atomic.Uint64
	// Released counts planned hand-offs, Lost leases lost (taken over by
	// another node, or not renewed for a TTL).
	Released, Lost atomic.Uint64
}

// seen is what a node has observed of one key: its revision, and when (on
// its own clock) it first saw that revision.
type seen struct {
	revision uint64
	value    string
	at       time.Time
}

// Manager holds this node's leases.
type Manager struct {
	cfg Config
	kv  natsjs.KeyValue

	mu       sync.Mutex // guards owned for Owned and Valid; Tick runs alone
	owned    map[int]*Lease
	observed map[string]seen
	tickMu   sync.Mutex // one Tick at a time
	// renewMu serialises renewals with each other and with releases: two
	// renewals of one lease at once would see each other's revision as a
	// take-over.
	renewMu sync.Mutex
	// renewing is set while Run's renewer renews and heartbeats, so that
	// Tick leaves them to it.
	renewing atomic.Bool
	stats    Stats
}

// New creates (or binds to) the bucket.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// Nodes starting at once create the bucket at once, and in nats-server
	// v2.14.5 one of those concurrent requests sometimes never answers: each
	// attempt is bounded and retried, and an existing bucket is bound to as
	// it is.
	var kv natsjs.KeyValue
	var err error
	for {
		actx, cancel := context.WithTimeout(ctx, createAttemptTimeout)
		if kv, err = cfg.JetStream.KeyValue(actx, cfg.Bucket); err != nil {
			kv, err = cfg.JetStream.CreateOrUpdateKeyValue(actx, natsjs.KeyValueConfig{
				Bucket:   cfg.Bucket,
				History:  1,
				Replicas: cfg.Replicas,
				Storage:  natsjs.FileStorage,
			})
		}
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || !retryCreate(err) {
			return nil, fmt.Errorf("lease: create bucket %s: %w", cfg.Bucket, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return &Manager{cfg: cfg, kv: kv, owned: map[int]*Lease{}, observed: map[string]seen{}}, nil
}

// retryCreate reports whether creating the bucket failed in a way that
// passes while servers start together: an attempt that timed out, or "no
// suitable peers for placement" (JetStream error 10005) while not every
// server has joined yet.
func retryCreate(err error) bool {
	var apiErr *natsjs.APIError
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &apiErr) && apiErr.ErrorCode == 10005)
}

// createAttemptTimeout bounds one attempt to create the bucket.
const createAttemptTimeout = 2 * time.Second

func partitionKey(p int) string { return "p." + strconv.Itoa(p) }
func nodeKey(n string) string   { return "node." + n }

// Run ticks every RenewEvery until ctx ends, then releases every lease and
// removes the node's heartbeat (a planned stop: the others take over at
// once instead of after a TTL). Renewals and heartbeats run on a goroutine
// of their own, every RenewEvery, so that a tick waiting for a hand-off
// (Release) does not let the node's other leases expire.
func (m *Manager) Run(ctx context.Context) error {
	m.renewing.Store(true)
	renewCtx, stopRenewing := context.WithCancel(context.Background())
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		wait := m.cfg.RenewEvery
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-m.cfg.Clock.After(wait):
			}
			// After a failed round the next comes sooner: the lease's
			// validity is running out, and the bucket usually answers
			// again within a second or two (a new leader elected).
			wait = m.cfg.RenewEvery
			if m.renewAndHeartbeat(renewCtx) != nil {
				wait = m.cfg.RenewEvery / 4
			}
		}
	}()
	// The renewer goes on through the planned stop's hand-offs, which may
	// be slow, and ends only once every lease is released.
	defer func() {
		stopRenewing()
		<-renewed
		m.renewing.Store(false)
	}()
	for {
		wait := m.cfg.RenewEvery
		if err := m.Tick(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("lease tick failed", "node", m.cfg.Node, "err", err)
			// Sooner after a failure (the bucket electing a new leader,
			// most often): until a listing succeeds, a dead owner's last
			// renewal is not seen, and its TTL has not begun here.
			wait = m.cfg.RenewEvery / 4
		}
		select {
		case <-ctx.Done():
			err := m.ReleaseAll(context.Background())
			rctx, cancel := context.WithTimeout(context.Background(), m.requestTimeout())
			defer cancel()
			// Without its heartbeat key the node stops counting as live at
			// once, so the plan gives its share to the others now rather
			// than a TTL later.
			if derr := m.kv.Delete(rctx, nodeKey(m.cfg.Node)); derr != nil {
				err = errors.Join(err, fmt.Errorf("lease: remove heartbeat: %w", derr))
			}
			return err
		case <-m.cfg.Clock.After(wait):
		}
	}
}

// Tick is one round of the control loop: heartbeat, read every lease,
// renew the node's own, hand off what the spread gives to others, and
// acquire what it gives to this node and is free or expired.
func (m *Manager) Tick(ctx context.Context) error {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	now := m.cfg.Clock.Now()
	var errs []error
	// Renewals first: they need nothing read, and must not wait on a
	// listing that fails. Under Run its renewer does them.
	if !m.renewing.Load() {
		if err := m.renewAndHeartbeat(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.observe(ctx, now); err != nil {
		return errors.Join(append(errs, err)...)
	}

	owners := m.owners(now)
	plan := Plan(m.cfg.Partitions, m.live(now), owners)
	for p := range m.cfg.Partitions {
		m.mu.Lock()
		l := m.owned[p]
		m.mu.Unlock()
		switch {
		case l != nil && plan[p] != m.cfg.Node:
			if err := m.handOff(ctx, p); err != nil {
				errs = append(errs, err)
			}
		case l == nil && plan[p] == m.cfg.Node && owners[p] == "":
			if _, err := m.acquire(ctx, p, now); err != nil && !errors.Is(err, ErrHeld) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// listKeys lists the bucket's keys from its stream's subjects: one
// request the stream's leader answers. (KeyValue.Keys makes a consumer
// for every listing, and after a server holding a replica was killed
// those listings timed out for tens of seconds while requests went
// through.) A deleted key may be listed: Get then finds it gone.
func (m *Manager) listKeys(ctx context.Context) ([]string, error) {
	stream, err := m.cfg.JetStream.Stream(ctx, "KV_"+m.cfg.Bucket)
	if err != nil {
		return nil, err
	}
	prefix := "$KV." + m.cfg.Bucket + "."
	info, err := stream.Info(ctx, natsjs.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subject := range info.State.Subjects {
		keys = append(keys, strings.TrimPrefix(subject, prefix))
	}
	slices.Sort(keys)
	return keys, nil
}

// observe reads every key and notes when each revision was first seen.
func (m *Manager) observe(ctx context.Context, now time.Time) error {
	rctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	keys, err := m.listKeys(rctx)
	if err != nil {
		return fmt.Errorf("lease: list keys: %w", err)
	}
	if len(keys) > partitionsMax+partitionsMax { // partitions and at most as many nodes
		return fmt.Errorf("lease: bucket %s holds %d keys, more than a cluster of fest has", m.cfg.Bucket, len(keys))
	}
	present := map[string]bool{}
	for _, k := range keys {
		e, err := m.kv.Get(rctx, k)
		if errors.Is(err, natsjs.ErrKeyNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return fmt.Errorf("lease: read %s: %w", k, err)
		}
		present[k] = true
		if o, ok := m.observed[k]; !ok || o.revision != e.Revision() {
			m.observed[k] = seen{revision: e.Revision(), value: string(e.Value()), at: now}
		}
	}
	for k := range m.observed {
		if !present[k] {
			delete(m.observed, k)
		}
	}
	return nil
}

// expired reports whether key o has stayed unchanged for a whole TTL.
func (m *Manager) expired(o seen, now time.Time) bool { return now.Sub(o.at) >= m.cfg.TTL }

// View is the cluster as this node saw it at its last tick, the body of
// GET /v1/cluster.
type View struct {
	Node       string          `json:"node"`
	Nodes      []NodeView      `json:"nodes"`
	Partitions []PartitionView `json:"partitions"`
}

// NodeView is one node: its API address and whether its heartbeat
// changed within a TTL.
type NodeView struct {
	Node  string `json:"node"`
	Addr  string `json:"addr"`
	Alive bool   `json:"alive"`
}

// PartitionView is one partition's owner ("" while it has none) and the
// revision of its lease.
type PartitionView struct {
	Partition     int    `json:"partition"`
	Owner         string `json:"owner"`
	LeaseRevision uint64 `json:"lease_revision"`
}

// View returns the cluster as seen at the last tick.
func (m *Manager) View() View {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	now := m.cfg.Clock.Now()
	v := View{Node: m.cfg.Node, Nodes: []NodeView{{Node: m.cfg.Node, Addr: m.cfg.Address, Alive: true}}}
	for k, o := range m.observed {
		if n, ok := strings.CutPrefix(k, "node."); ok && n != m.cfg.Node {
			v.Nodes = append(v.Nodes, NodeView{Node: n, Addr: o.value, Alive: !m.expired(o, now)})
		}
	}
	slices.SortFunc(v.Nodes, func(a, b NodeView) int { return strings.Compare(a.Node, b.Node) })
	owners := m.owners(now)
	for p := range m.cfg.Partitions {
		pv := PartitionView{Partition: p, Owner: owners[p]}
		if pv.Owner != "" {
			pv.LeaseRevision = m.observed[partitionKey(p)].revision
			m.mu.Lock()
			if l := m.owned[p]; l != nil {
				pv.LeaseRevision = l.Revision
			}
			m.mu.Unlock()
		}
		v.Partitions = append(v.Partitions, pv)
	}
	return v
}

// owners maps each partition to the node holding an unexpired lease on it
// ("" when free); this node's own leases count while it holds them.
func (m *Manager) owners(now time.Time) map[int]string {
	owners := map[int]string{}
	for p := range m.cfg.Partitions {
		m.mu.Lock()
		_, mine := m.owned[p]
		m.mu.Unlock()
		if mine {
			owners[p] = m.cfg.Node
			continue
		}
		if o, ok := m.observed[partitionKey(p)]; ok && !m.expired(o, now) && o.value != m.cfg.Node {
			owners[p] = o.value
		}
	}
	return owners
}

// live is the nodes whose heartbeat changed within a TTL, this one always.
func (m *Manager) live(now time.Time) []string {
	nodes := []string{m.cfg.Node}
	for k, o := range m.observed {
		n, ok := strings.CutPrefix(k, "node.")
		if ok && n != m.cfg.Node && !m.expired(o, now) {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// renewAndHeartbeat renews every lease this node holds, then writes its
// heartbeat.
func (m *Manager) renewAndHeartbeat(ctx context.Context) error {
	m.renewMu.Lock()
	defer m.renewMu.Unlock()
	err := m.renew(ctx, m.cfg.Clock.Now())
	if _, herr := m.put(ctx, nodeKey(m.cfg.Node), []byte(m.cfg.Address)); herr != nil {
		err = errors.Join(err, fmt.Errorf("heartbeat: %w", herr))
	}
	return err
}

// renew renews every lease this node holds. A refused renewal (the key
// moved on) loses the lease. A renewal that fails otherwise (no answer:
// the bucket's leader died and its replicas elect another) is retried
// every RenewEvery, and loses the lease only once lostAfterFailing TTLs
// have passed since the last success: a later renewal at the same
// revision proves nobody took the key meanwhile, and until it succeeds
// the node answers nothing for the partition anyway (Valid is false past
// RenewedAt + TTL, and the journal's fence refuses its appends if another
// node did take over). Giving the lease up at one TTL would make every
// node drop all its partitions whenever the bucket's leader dies. The
// caller holds renewMu.
func (m *Manager) renew(ctx context.Context, now time.Time) (failed error) {
	m.mu.Lock()
	held := make([]*Lease, 0, len(m.owned))
	for _, l := range m.owned {
		held = append(held, l)
	}
	m.mu.Unlock()
	slices.SortFunc(held, func(a, b *Lease) int { return a.Partition - b.Partition })
	// The renewals go at once: one after another, a bucket whose leader
	// died (no answer until each request's timeout) would hold the last
	// one up past its TTL.
	errs := make([]error, len(held))
	var wg sync.WaitGroup
	// Each round is bounded by RenewEvery, so that rounds keep their pace
	// while requests go unanswered.
	rctx, cancel := context.WithTimeout(ctx, m.cfg.RenewEvery)
	defer cancel()
	for i, l := range held {
		wg.Go(func() { errs[i] = m.Renew(rctx, l) })
	}
	wg.Wait()
	for i, l := range held {
		err := errs[i]
		switch {
		case err == nil:
		case errors.Is(err, ErrLost) || now.Sub(l.RenewedAt) >= lostAfterFailing*m.cfg.TTL:
			m.cfg.Logger.Warn("lease lost", "node", m.cfg.Node, "partition", l.Partition, "err", err)
			m.stats.Lost.Add(1)
			m.drop(l.Partition)
			m.cfg.Handler.Lost(l.Partition)
		default:
			m.cfg.Logger.Warn("lease renewal failed, retried next tick", "node", m.cfg.Node, "partition", l.Partition, "err", err)
			failed = err
		}
	}
	return failed
}

// requestTimeout bounds one KV request: requestTimeoutMax, or RenewEvery
// if that is shorter.
func (m *Manager) requestTimeout() time.Duration { return min(requestTimeoutMax, m.cfg.RenewEvery) }

// lostAfterFailing is how many TTLs of failed renewals lose a lease.
const lostAfterFailing = 2

// Renew renews l, updating its Revision and RenewedAt. It returns ErrLost
// when the key is no longer at l's revision: another node took it.
func (m *Manager) Renew(ctx context.Context, l *Lease) error {
	sent := m.cfg.Clock.Now()
	rctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	rev, err := m.kv.Update(rctx, partitionKey(l.Partition), []byte(m.cfg.Node), l.Revision)
	if isWrongLastSequence(err) {
		return fmt.Errorf("lease: renew partition %d at revision %d: %w", l.Partition, l.Revision, ErrLost)
	}
	if err != nil {
		return fmt.Errorf("lease: renew partition %d: %w", l.Partition, err)
	}
	m.mu.Lock()
	l.Revision, l.RenewedAt = rev, sent
	m.mu.Unlock()
	m.renewed(l.Partition, sent)
	return nil
}

// renewed tells a RenewalHandler how long p's lease, renewed at sent, is
// surely valid.
func (m *Manager) renewed(p int, sent time.Time) {
	if rh, ok := m.cfg.Handler.(RenewalHandler); ok {
		rh.Renewed(p, sent.Add(m.cfg.TTL).Sub(m.cfg.Clock.Now()))
	}
}

// Acquire takes partition p's lease if it is free or has expired (seen
// unchanged for a TTL by this node), and calls the handler's Acquired.
func (m *Manager) Acquire(ctx context.Context, p int) (*Lease, error) {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	now := m.cfg.Clock.Now()
	if err := m.observe(ctx, now); err != nil {
		return nil, err
	}
	return m.acquire(ctx, p, now)
}

func (m *Manager) acquire(ctx context.Context, p int, now time.Time) (*Lease, error) {
	key := partitionKey(p)
	rctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	var rev uint64
	var err error
	var takeOverWait time.Duration
	o, ok := m.observed[key]
	if ok && o.value != m.cfg.Node {
		takeOverWait = now.Sub(o.at)
	}
	switch {
	case !ok:
		rev, err = m.kv.Create(rctx, key, []byte(m.cfg.Node))
	case m.expired(o, now) || o.value == m.cfg.Node:
		// An expired lease, or this node's own from before a restart: the
		// update at the observed revision fails if anyone renewed it.
		rev, err = m.kv.Update(rctx, key, []byte(m.cfg.Node), o.revision)
	default:
		return nil, fmt.Errorf("lease: partition %d: %w (%s, seen at revision %d)", p, ErrHeld, o.value, o.revision)
	}
	if isWrongLastSequence(err) || errors.Is(err, natsjs.ErrKeyExists) {
		return nil, fmt.Errorf("lease: partition %d: %w (another node was first)", p, ErrHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("lease: acquire partition %d: %w", p, err)
	}
	l := &Lease{Partition: p, Epoch: rev, Revision: rev, RenewedAt: now, TakeOverWait: takeOverWait}
	m.stats.Acquired.Add(1)
	if takeOverWait > 0 {
		m.stats.TakenOver.Add(1)
	}
	m.mu.Lock()
	m.owned[p] = l
	m.mu.Unlock()
	m.observed[key] = seen{revision: rev, value: m.cfg.Node, at: now}
	m.cfg.Logger.Info("lease acquired", "node", m.cfg.Node, "partition", p, "epoch", rev)
	m.renewed(p, now)
	if err := m.cfg.Handler.Acquired(ctx, p, rev); err != nil {
		m.release(ctx, l)
		return nil, fmt.Errorf("lease: take over partition %d: %w", p, err)
	}
	return l, nil
}

// handOff is a planned hand-off of p: the handler's Release, bounded by
// ReleaseTimeout, then the key's deletion. A Release that did not finish
// in time keeps the lease (renewed as before) for the next tick to try
// again.
func (m *Manager) handOff(ctx context.Context, p int) error {
	rctx, cancel := context.WithTimeout(ctx, m.cfg.ReleaseTimeout)
	err := m.cfg.Handler.Release(rctx, p)
	cancel()
	if err != nil {
		return fmt.Errorf("lease: hand partition %d off: %w (the lease is kept; tried again next tick)", p, err)
	}
	m.mu.Lock()
	l := m.owned[p]
	m.mu.Unlock()
	if l == nil {
		return nil // lost meanwhile
	}
	return m.release(ctx, l)
}

// release deletes l's key if it is still at l's revision.
func (m *Manager) release(ctx context.Context, l *Lease) error {
	// Under renewMu: no renewal moves the revision between the read and
	// the delete.
	m.renewMu.Lock()
	defer m.renewMu.Unlock()
	m.drop(l.Partition)
	m.mu.Lock()
	revision := l.Revision
	m.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	err := m.kv.Delete(rctx, partitionKey(l.Partition), natsjs.LastRevision(revision))
	if err != nil && !isWrongLastSequence(err) {
		return fmt.Errorf("lease: release partition %d: %w", l.Partition, err)
	}
	delete(m.observed, partitionKey(l.Partition))
	m.stats.Released.Add(1)
	m.cfg.Logger.Info("lease released", "node", m.cfg.Node, "partition", l.Partition)
	return nil
}

// ReleaseAll hands every lease off (the handler's Release, then delete),
// for a planned stop of the node. Each hand-off has its own ReleaseTimeout
// (and each deletion its own request timeout), so that one slow partition
// does not leave the others' keys to expire; a lease whose Release did not
// finish in time is dropped without deleting its key, for the others to
// take over once it expires.
func (m *Manager) ReleaseAll(ctx context.Context) error {
	m.tickMu.Lock()
	defer m.tickMu.Unlock()
	var errs []error
	for _, p := range m.Owned() {
		m.mu.Lock()
		l := m.owned[p]
		m.mu.Unlock()
		if l == nil {
			continue // lost meanwhile
		}
		rctx, cancel := context.WithTimeout(ctx, m.cfg.ReleaseTimeout)
		err := m.cfg.Handler.Release(rctx, p)
		cancel()
		if err != nil {
			m.drop(p)
			errs = append(errs, fmt.Errorf("lease: hand partition %d off: %w (left to expire)", p, err))
			continue
		}
		errs = append(errs, m.release(ctx, l))
	}
	return errors.Join(errs...)
}

// Stats returns the manager's counts of lease changes.
func (m *Manager) Stats() *Stats { return &m.stats }

func (m *Manager) drop(p int) {
	m.mu.Lock()
	delete(m.owned, p)
	m.mu.Unlock()
}

// Owned is the partitions this node holds, in order.
func (m *Manager) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := make([]int, 0, len(m.owned))
	for p := range m.owned {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// Valid reports whether this node surely holds p's lease now: held, and
// renewed less than a TTL ago. A node answers for p only while it is.
func (m *Manager) Valid(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.owned[p]
	return l != nil && m.cfg.Clock.Now().Sub(l.RenewedAt) < m.cfg.TTL
}

// Lease returns a copy of p's lease if this node holds it.
func (m *Manager) Lease(p int) (Lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.owned[p]
	if l == nil {
		return Lease{}, false
	}
	return *l, true
}

func (m *Manager) put(ctx context.Context, key string, value []byte) (uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	return m.kv.Put(rctx, key, value)
}

func isWrongLastSequence(err error) bool {
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant
}

// Plan spreads partitions evenly over the live nodes, moving as few as it
// can: each live owner keeps its partitions up to its share, and the rest
// go, in partition order, to the nodes below theirs. Shares differ by at
// most one; the larger ones go to the nodes first in name order. plan[p]
// is p's node. Every node computes the same plan from the same view.
func Plan(partitions int, live []string, owners map[int]string) []string {
	nodes := slices.Clone(live)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	if len(nodes) == 0 {
		panic("lease: plan with no live node (the planning node is always live)")
	}
	share := map[string]int{}
	for i, n := range nodes {
		share[n] = partitions / len(nodes)
		if i < partitions%len(nodes) {
			share[n]++
		}
	}
	count := map[string]int{}
	plan := make([]string, partitions)
	for p := range partitions {
		if o := owners[p]; o != "" && count[o] < share[o] { // share is 0 for a node not live
			plan[p] = o
			count[o]++
		}
	}
	next := 0
	for p := range partitions {
		if plan[p] != "" {
			continue
		}
		for count[nodes[next]] >= share[nodes[next]] {
			next++
		}
		plan[p] = nodes[next]
		count[nodes[next]]++
	}
	return plan
}
