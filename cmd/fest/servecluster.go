package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fest-platform/fest/internal/cluster"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal/jetstream"
	"github.com/fest-platform/fest/internal/lease"
	"github.com/fest-platform/fest/internal/natsserver"
	"github.com/fest-platform/fest/internal/server"
)

// fest serve --journal nats (docs/cluster.md): the engine in cluster mode
// on NATS JetStream, with an embedded NATS server per node or an external
// cluster. Everything here runs only with --journal nats.

// The engine in cluster mode routes requests for the HTTP layer.
var _ server.Router = (*engine.Engine)(nil)

const (
	// clusterPartitionsDefault is the partitions of a cluster when
	// --partitions is not given (a cluster has no data directory to store
	// the number in: every node must be given the same).
	clusterPartitionsDefault = 64
	// natsStartTimeout bounds the embedded server's start and its wait for
	// a JetStream meta leader (which needs a quorum of the servers up).
	natsStartTimeout = 2 * time.Minute
	// natsSyncCheckWait bounds the start-up check of an external server's
	// fsync setting.
	natsSyncCheckWait = 2 * time.Second
	// nodeStartTimeout bounds opening every partition's stream and
	// snapshot and replaying them, and the lease manager's start.
	nodeStartTimeout = 10 * time.Minute
)

// nodeCloseTimeout bounds the node's planned stop when close is called
// with the node still running (a failed start or shutdown's fallback).
const nodeCloseTimeout = 10 * time.Second

// rejoinsMax bounds the node's rejoins in place (rejoin) over the
// process's life: past it a fenced node exits, for its supervisor.
const rejoinsMax = 5

// clusterRun is what fest serve --journal nats runs besides the server.
type clusterRun struct {
	nats *natsserver.Server // nil with --nats-url
	conn *nats.Conn
	// leaseConn is the lease manager's connection (cluster.NodeConfig's
	// LeaseConn).
	leaseConn *nats.Conn
	// config is the node's configuration, kept for a rejoin.
	config cluster.NodeConfig

	// mu is held by a rejoin and by shutdown: node and the server's
	// backend (runningServer's eng, store, projections) change only under
	// it once the server runs.
	mu   sync.Mutex
	node *cluster.Node
	// current is node for /metrics, which must not wait for a rejoin:
	// nil while the node is being made again.
	current atomic.Pointer[cluster.Node]
	// rejoins counts the rejoins in place; failed is why the node stopped
	// for good (nodeFailed closed).
	rejoins atomic.Uint64
	failed  error
}

// failure is why the node stopped for good; set before nodeFailed closes.
func (run *clusterRun) failure() error { return run.failed }

// serverCluster returns the server's cluster settings: nil without
// --journal nats.
func (o *serveOptions) serverCluster() *server.ClusterConfig {
	if o.Cluster.Journal != "nats" {
		return nil
	}
	return &server.ClusterConfig{}
}

// splitHostPort parses a --nats-* listen address.
func splitHostPort(flagName, addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("--%s %q: %w", flagName, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("--%s %q: bad port", flagName, addr)
	}
	return host, n, nil
}

// openCluster starts the embedded NATS server (or connects to the external
// one), then the node: its engine in cluster mode, replaying every
// partition, and its lease manager. now is the engine's clock (nil: the
// wall clock).
func (rs *runningServer) openCluster(now func() int64) (*engine.Engine, error) {
	if rs.cluster != nil {
		return rs.startClusterNode() // a rejoin: connected already
	}
	o := &rs.opts.Cluster
	run := &clusterRun{}
	fail := func(err error) (*engine.Engine, error) {
		run.close()
		return nil, err
	}
	url := o.NATSURL
	replicas := o.Replicas
	if o.NATSListen != "" {
		host, port, err := splitHostPort("nats-listen", o.NATSListen)
		if err != nil {
			return nil, err
		}
		cfg := natsserver.Config{Name: o.Node, Dir: filepath.Join(rs.opts.Data, "nats"), Host: host, Port: port,
			Routes: splitList(o.NATSRoutes), Logger: slog.New(warnOnly{rs.log.Handler()})}
		if o.NATSClusterListen != "" {
			if cfg.ClusterHost, cfg.ClusterPort, err = splitHostPort("nats-cluster-listen", o.NATSClusterListen); err != nil {
				return nil, err
			}
			cfg.ClusterName = "fest"
		} else if replicas == 0 {
			replicas = 1 // a single server holds one replica
		}
		srv, err := natsserver.Start(cfg)
		if err != nil {
			return nil, fmt.Errorf("start embedded nats server: %w", err)
		}
		run.nats = srv
		ctx, cancel := context.WithTimeout(context.Background(), natsStartTimeout)
		err = srv.WaitJetStream(ctx)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("embedded nats server: wait for jetstream (the other servers must be up for a quorum): %w", err))
		}
		url = srv.ClientURL()
		fmt.Fprintf(rs.stdout, "fest serve: embedded nats server %s at %s\n", o.Node, url)
	}
	conn, err := nats.Connect(url, nats.Name("fest "+o.Node), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fail(fmt.Errorf("connect to nats at %s: %w", url, err))
	}
	run.conn = conn
	// The leases get a connection of their own: behind the journals'
	// publishes and the followers' deliveries on one connection, renewals
	// were answered too late under load.
	leaseConn, err := nats.Connect(url, nats.Name("fest "+o.Node+" leases"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fail(fmt.Errorf("connect to nats at %s for the leases: %w", url, err))
	}
	run.leaseConn = leaseConn
	if o.NATSURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*natsSyncCheckWait)
		found, err := natsserver.CheckSync(ctx, conn, splitList(o.NATSMonitorURLs), natsSyncCheckWait)
		cancel()
		natsserver.WarnSync(rs.log, found, err)
	}
	if replicas == 0 {
		replicas = jetstream.DefaultReplicas
	}
	partitions := rs.opts.Partitions
	if partitions == 0 {
		partitions = clusterPartitionsDefault
	}
	address := o.Advertise
	if address == "" {
		address = rs.URL
	}
	run.config = cluster.NodeConfig{
		Conn: conn, LeaseConn: leaseConn, Name: o.Node, Address: address, Partitions: partitions, Replicas: replicas,
		Engine: engine.Config{
			PaymentTimeout:           rs.opts.PaymentTimeout,
			IdempotencyWindow:        rs.opts.IdempotencyWindow,
			IdempotencyMintedAgeMax:  rs.opts.IdempotencyMintedAgeMax,
			IdempotencyMintedSkewMax: rs.opts.IdempotencyMintedSkewMax,
			RecordVersion:            rs.opts.RecordVersion,
			Logger:                   rs.log,
			Now:                      now,
		},
		Lease:  lease.Config{TTL: o.LeaseTTL},
		Logger: rs.log,
	}
	rs.cluster = run
	if err := rs.srv.RegisterMetrics(nodeMetrics{run}); err != nil {
		rs.cluster = nil
		return fail(fmt.Errorf("cluster node metrics: %w", err))
	}
	eng, err := rs.startClusterNode()
	if err != nil {
		rs.cluster = nil
		return fail(err)
	}
	fmt.Fprintf(rs.stdout, "fest serve: node %s in the cluster at %s (%d partitions, %d replicas, lease ttl %v)\n",
		o.Node, address, partitions, replicas, o.LeaseTTL)
	return eng, nil
}

// startClusterNode starts the node on the run's connections (replaying
// every partition) and watches it.
func (rs *runningServer) startClusterNode() (*engine.Engine, error) {
	run := rs.cluster
	ctx, cancel := context.WithTimeout(context.Background(), nodeStartTimeout)
	defer cancel()
	node, err := cluster.StartNode(ctx, run.config)
	if err != nil {
		return nil, fmt.Errorf("start cluster node: %w", err)
	}
	run.node = node
	run.current.Store(node)
	go rs.watchNode(node)
	return node.Engine(), nil
}

// watchNode waits for node's engine to stop on a failure. A node whose
// write was fenced (it lost its lease while paused, and the partition's
// new owner refused its record) rejoins in place as a follower; any other
// failure (a journal that gave up, a follower past the purged messages)
// makes the process exit non-zero for its supervisor, since what failed
// may fail again the same way and a restart is the known path.
func (rs *runningServer) watchNode(node *cluster.Node) {
	select {
	case <-node.Failed():
	case <-rs.closing:
		return
	}
	run := rs.cluster
	cause := node.Engine().Err()
	if !errors.Is(cause, jetstream.ErrFenced) || run.rejoins.Load() >= rejoinsMax {
		run.failed = cause
		close(rs.nodeFailed)
		return
	}
	if err := rs.rejoin(cause); err != nil {
		run.failed = errors.Join(cause, fmt.Errorf("rejoin in place: %w", err))
		close(rs.nodeFailed)
	}
}

// rejoin makes the node again in this process after its engine stopped
// fenced: the server answers 503 unavailable (with Retry-After) meanwhile,
// the stopped node is closed (its leases were handed off as it stopped)
// with the read models built from its engine, and a fresh engine loads
// the partitions' snapshots and replays their streams, as a restart
// would, on the same NATS connections and embedded server. Nothing of the
// old engine's state is kept: what the stream refused never reached a
// follower, so the fresh state is exactly the streams'.
func (rs *runningServer) rejoin(cause error) error {
	run := rs.cluster
	run.mu.Lock()
	defer run.mu.Unlock()
	select {
	case <-rs.closing:
		return nil // shutting down: nothing to rejoin
	default:
	}
	n := run.rejoins.Add(1)
	start := time.Now()
	rs.log.Warn("cluster node fenced: rejoining as a follower in this process", "node", run.config.Name, "rejoin", n, "err", cause)
	rs.srv.Detach()
	run.current.Store(nil)
	if err := run.closeNode(nodeCloseTimeout); err != nil {
		rs.log.Warn("close the fenced node", "node", run.config.Name, "err", err)
	}
	if err := rs.closeReadModels(); err != nil {
		rs.log.Warn("close the read models for the rejoin", "err", err)
	}
	rs.eng, rs.store, rs.board, rs.projections = nil, nil, nil, nil
	closed := time.Since(start)
	if err := rs.openBackend(); err != nil {
		return err
	}
	rs.log.Info("cluster node rejoined as a follower", "node", run.config.Name, "rejoin", n, "took", time.Since(start).Round(time.Millisecond),
		"closing", closed.Round(time.Millisecond))
	return nil
}

// descRejoins counts watchNode's rejoins in place.
var descRejoins = prometheus.NewDesc("fest_cluster_rejoins_total",
	"Times this process made its cluster node again after its engine stopped fenced (it had lost a lease while paused).", nil, nil)

// nodeMetrics is the node's series for /metrics, of whichever node runs
// now (a rejoin makes a new one, whose counters start again at zero),
// and the rejoins. It is unchecked (Describe sends nothing): the series
// of the current node are not known before it runs.
type nodeMetrics struct{ run *clusterRun }

func (m nodeMetrics) Describe(chan<- *prometheus.Desc) {}

func (m nodeMetrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descRejoins, prometheus.CounterValue, float64(m.run.rejoins.Load()))
	if n := m.run.current.Load(); n != nil {
		n.Metrics().Collect(ch)
	}
}

// closeNode stops the node in a planned way: every lease handed off (each
// partition drained and its journal closed), then the engine closed. It
// waits at most timeout: without a quorum of the NATS servers (the last
// node of a cluster stopping) nothing can be handed off, and the process
// exits anyway; its leases then expire after a TTL, as a crashed node's.
func (run *clusterRun) closeNode(timeout time.Duration) error {
	if run.node == nil {
		return nil
	}
	node := run.node
	run.node = nil
	done := make(chan error, 1)
	go func() { done <- node.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("close cluster node: %w", err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("close cluster node: not done after %v (no quorum of the nats servers?); exiting without handing every lease off", timeout)
	}
}

// close stops what the cluster run started: the node if still running,
// then the connection and the embedded server.
func (run *clusterRun) close() error {
	errs := []error{run.closeNode(nodeCloseTimeout)}
	if run.conn != nil {
		run.conn.Close()
	}
	if run.leaseConn != nil {
		run.leaseConn.Close()
	}
	if run.nats != nil {
		if err := run.nats.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close embedded nats server: %w", err))
		}
	}
	return errors.Join(errs...)
}

// clusterNode is the server's Config.Node: the node's name with --journal
// nats, the server's default otherwise.
func (o *serveOptions) clusterNode() string {
	if o.Cluster.Journal != "nats" {
		return ""
	}
	return o.Cluster.Node
}

// warnOnly passes on warnings and errors only: the embedded NATS server
// logs every route connection at Info.
type warnOnly struct{ slog.Handler }

func (h warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}
