package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

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

// clusterRun is what fest serve --journal nats runs besides the server.
type clusterRun struct {
	nats *natsserver.Server // nil with --nats-url
	conn *nats.Conn
	node *cluster.Node
}

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
	ctx, cancel := context.WithTimeout(context.Background(), nodeStartTimeout)
	defer cancel()
	node, err := cluster.StartNode(ctx, cluster.NodeConfig{
		Conn: conn, Name: o.Node, Address: address, Partitions: partitions, Replicas: replicas,
		Engine: engine.Config{
			PaymentTimeout:           rs.opts.PaymentTimeout,
			IdempotencyWindow:        rs.opts.IdempotencyWindow,
			IdempotencyMintedAgeMax:  rs.opts.IdempotencyMintedAgeMax,
			IdempotencyMintedSkewMax: rs.opts.IdempotencyMintedSkewMax,
			Logger:                   rs.log,
			Now:                      now,
		},
		Lease:  lease.Config{TTL: o.LeaseTTL},
		Logger: rs.log,
	})
	if err != nil {
		return fail(fmt.Errorf("start cluster node: %w", err))
	}
	run.node = node
	rs.cluster = run
	if err := rs.srv.RegisterMetrics(node.Metrics()); err != nil {
		return fail(fmt.Errorf("cluster node metrics: %w", err))
	}
	go func() {
		// A node whose engine stopped (fenced, or a journal that gave up)
		// serves nothing: the process exits non-zero for its supervisor
		// to restart it, which rejoins from the streams.
		select {
		case <-node.Failed():
			close(rs.nodeFailed)
		case <-rs.closing:
		}
	}()
	fmt.Fprintf(rs.stdout, "fest serve: node %s in the cluster at %s (%d partitions, %d replicas, lease ttl %v)\n",
		o.Node, address, partitions, replicas, o.LeaseTTL)
	return node.Engine(), nil
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
