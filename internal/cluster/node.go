package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/journal/jetstream"
	"github.com/fest-platform/fest/internal/lease"
)

// NodeConfig is one fest node of a cluster.
type NodeConfig struct {
	// Conn is the node's connection to NATS (required); the node does not
	// close it.
	Conn *nats.Conn
	// Name names the node (required): letters, digits, '-' and '_'.
	Name string
	// Address is where other nodes and clients reach this node's HTTP API
	// ("http://10.0.0.1:8080"), published in its heartbeat.
	Address string
	// Partitions is the cluster's fixed number of partitions (required).
	Partitions int
	// Replicas of every partition's stream, of the snapshot bucket and of
	// the lease bucket; default 3, 1 for a single server.
	Replicas int
	// Engine is the engine's configuration; the node sets its Partitions
	// and Cluster (Dir and Journal must be unset).
	Engine engine.Config
	// Journal is the template of each partition's journal configuration;
	// the node sets Conn, Partition, Replicas, Epoch and Logger.
	Journal jetstream.Config
	// Snapshots is the template of each partition's snapshot store; the
	// node sets JetStream, Partition and Replicas.
	Snapshots jetstream.SnapshotConfig
	// Lease is the template of the lease manager's configuration (TTL,
	// Clock...); the node sets JetStream, Node, Address, Partitions,
	// Replicas, Handler and Logger.
	Lease lease.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c NodeConfig) Validate() error {
	switch {
	case c.Conn == nil:
		return errors.New("cluster node config: no nats connection")
	case c.Name == "":
		return errors.New("cluster node config: no node name")
	case c.Partitions < 1:
		return fmt.Errorf("cluster node config: %d partitions", c.Partitions)
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("cluster node config: %d replicas outside 1 to 5", c.Replicas)
	case c.Engine.Dir != "" || c.Engine.Journal != nil || c.Engine.Cluster != nil:
		return errors.New("cluster node config: the engine's Dir, Journal and Cluster are the node's to set")
	}
	return nil
}

// Node is a running fest node: its engine follows every partition and
// serves those whose lease it holds, and its lease manager ticks in the
// background.
type Node struct {
	cfg     NodeConfig
	engine  *engine.Engine
	leases  *lease.Manager
	handler *Handler
	cancel  context.CancelFunc
	ran     chan error

	closeOnce sync.Once
	closeErr  error
}

// StartNode opens the engine in cluster mode (loading every partition's
// newest snapshot and replaying its stream after it, which may take a
// while), then starts the lease manager, which acquires the node's share of
// the partitions.
func StartNode(ctx context.Context, cfg NodeConfig) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = jetstream.DefaultReplicas
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	js, err := natsjs.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("cluster node %s: jetstream: %w", cfg.Name, err)
	}
	journalConfig := func(p int, epoch uint64) jetstream.Config {
		c := cfg.Journal
		c.Conn, c.Partition, c.Replicas, c.Epoch, c.Logger = cfg.Conn, p, cfg.Replicas, epoch, cfg.Logger
		return c
	}
	ecfg := cfg.Engine
	ecfg.Partitions = cfg.Partitions
	if ecfg.Logger == nil {
		ecfg.Logger = cfg.Logger
	}
	ecfg.Cluster = &engine.Cluster{
		Node: cfg.Name,
		// A partition takes commands only while its lease is surely
		// valid: the handler extends it at every renewal.
		Leased: true,
		OpenJournal: func(ctx context.Context, p int, epoch uint64) (journal.Journal, error) {
			return jetstream.Open(ctx, journalConfig(p, epoch))
		},
		OpenStream: func(ctx context.Context, p int) (engine.Stream, error) {
			return jetstream.OpenReader(ctx, journalConfig(p, 0))
		},
		OpenSnapshots: func(ctx context.Context, p int) (engine.PartitionSnapshots, error) {
			c := cfg.Snapshots
			c.JetStream, c.Partition, c.Replicas = js, p, cfg.Replicas
			return jetstream.OpenSnapshots(ctx, c)
		},
		// RetainFrom stays nil: no stream is purged, since the read models
		// rebuild from every stream's start (docs/cluster.md, "Read models
		// in cluster mode").
	}
	eng, err := engine.Open(ecfg)
	if err != nil {
		return nil, fmt.Errorf("cluster node %s: open engine: %w", cfg.Name, err)
	}
	h, err := NewHandler(HandlerConfig{Engine: eng, Partitions: cfg.Partitions, LeaseMargin: leaseMargin(cfg.Lease), Logger: cfg.Logger})
	if err != nil {
		eng.Close()
		return nil, err
	}
	lcfg := cfg.Lease
	lcfg.JetStream, lcfg.Node, lcfg.Address, lcfg.Partitions = js, cfg.Name, cfg.Address, cfg.Partitions
	lcfg.Replicas, lcfg.Handler, lcfg.Logger = cfg.Replicas, h, cfg.Logger
	m, err := lease.New(ctx, lcfg)
	if err != nil {
		h.Close()
		eng.Close()
		return nil, fmt.Errorf("cluster node %s: %w", cfg.Name, err)
	}
	h.SetLeases(m.Lease)
	runCtx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, engine: eng, leases: m, handler: h, cancel: cancel, ran: make(chan error, 1)}
	go func() { n.ran <- m.Run(runCtx) }()
	go func() {
		// A stopped engine serves nothing: hand its partitions off now
		// (those still draining finish first) rather than hold their
		// leases until the process restarts.
		select {
		case <-eng.Failed():
			cfg.Logger.Error("engine stopped: handing every partition off; restart the node", "node", cfg.Name, "err", eng.Err())
			cancel()
		case <-runCtx.Done():
		}
	}()
	return n, nil
}

// leaseMargin is the handler's LeaseMargin for lease configuration c: the
// default, but never more than a sixth of the TTL, so that a lease renewed
// every TTL/3 stays valid between renewals with room for one that fails.
func leaseMargin(c lease.Config) time.Duration {
	ttl := c.TTL
	if ttl == 0 {
		ttl = lease.DefaultTTL
	}
	return min(DefaultLeaseMargin, ttl/6)
}

// finalSnapshotsTimeout bounds the snapshots of a planned Close: past it
// the partitions are handed off without the rest (a restart then replays
// more), rather than hold the others' take-over up.
const finalSnapshotsTimeout = 30 * time.Second

// Engine is the node's engine: Submit, Locate and Owns for the HTTP layer.
func (n *Node) Engine() *engine.Engine { return n.engine }

// Leases is the node's lease manager: View for GET /v1/cluster, Stats for
// /metrics.
func (n *Node) Leases() *lease.Manager { return n.leases }

// HandlerStats are the node's take-over figures for /metrics.
func (n *Node) HandlerStats() *HandlerStats { return n.handler.Stats() }

// Failed is closed when the engine stops on a failure (a fenced or failed
// journal): the node then hands every partition off, and the process
// should exit (after Close) and be restarted, which rejoins the cluster
// from the streams.
func (n *Node) Failed() <-chan struct{} { return n.engine.Failed() }

// Close stops the node in a planned way: every partition served here is
// snapshotted, the lease manager hands every partition off (each drained
// and its journal closed, so that the others take over at once instead of
// after a TTL), then the engine closes.
// A second Close returns the first one's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// A snapshot of every partition served here first, while they are
		// still served, so that a restart of the whole cluster replays
		// only what comes after them. A failure is logged, not fatal: the
		// streams hold everything.
		var err error
		if n.engine.Err() == nil {
			ctx, cancel := context.WithTimeout(context.Background(), finalSnapshotsTimeout)
			serr := n.engine.SnapshotPartitions(ctx)
			cancel()
			if serr != nil {
				n.cfg.Logger.Warn("final snapshots before the hand-off failed; a restart replays more", "node", n.cfg.Name, "err", serr)
			}
		}
		n.cancel()
		err = <-n.ran
		n.handler.Close()
		if cerr := n.engine.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		n.closeErr = err
	})
	return n.closeErr
}

// Ensure jetstream.Snapshots and jetstream.Reader fit the engine's
// interfaces.
var (
	_ engine.PartitionSnapshots = (*jetstream.Snapshots)(nil)
	_ engine.Stream             = (*jetstream.Reader)(nil)
)
