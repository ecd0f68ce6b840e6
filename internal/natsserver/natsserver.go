// Package natsserver runs an embedded NATS server with JetStream for fest's
// cluster mode, configured the way fest's durability promise needs: file
// storage in a given directory and an fsync after every write
// (sync_interval: always), since Jepsen found that JetStream's default
// two-minute fsync loses acknowledged writes in a coordinated power failure.
// It also checks an external server's setting and warns loudly when it is
// not synchronous.
package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotReady is returned by Start when the server does not accept clients
// within Config.ReadyTimeout, and by WaitJetStream when no JetStream meta
// leader is known before the context ends.
var ErrNotReady = errors.New("nats server not ready")

// Config describes one embedded server. A single node leaves the cluster
// fields empty; each node of a three-node cluster names the other two in
// Routes (naming itself too is harmless).
type Config struct {
	// Name is the server's name, unique in the cluster (required); fest
	// uses the node's name.
	Name string
	// Dir is the JetStream storage directory (required); the server keeps
	// its streams in Dir/jetstream.
	Dir string
	// Host is the client listen address; default "127.0.0.1".
	Host string
	// Port is the client port; 0 picks a free port (see ClientURL).
	Port int
	// ClusterName names the cluster; required when ClusterPort is set.
	ClusterName string
	// ClusterHost is the route listen address; default Host.
	ClusterHost string
	// ClusterPort is the route port; 0 runs a single, unclustered server.
	ClusterPort int
	// Routes are the other nodes' route URLs ("nats://127.0.0.1:6223").
	Routes []string
	// ReadyTimeout bounds how long Start waits for the client listener;
	// default 10 s.
	ReadyTimeout time.Duration
	// MaxStoreBytes caps JetStream file storage, in bytes; 0 lets the
	// server take what the disk has.
	MaxStoreBytes int64
	// MaxPayloadBytes is the largest message the server accepts, in bytes;
	// default DefaultMaxPayloadBytes, room for the engine's largest record
	// (16 MiB) and its headers. NATS' own default of 1 MiB is too small
	// for a batch record.
	MaxPayloadBytes int32
	// MonitorPort is the HTTP monitoring port (/varz, /jsz); 0 leaves it
	// off: fest's own /metrics reports what matters, and an embedded
	// server opens no port it was not asked for.
	MonitorPort int
	// Logger receives the server's log at Info (notices), Warn and Error;
	// nil discards it.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultHost         = "127.0.0.1"
	DefaultReadyTimeout = 10 * time.Second
	// DefaultMaxPayloadBytes is 16 MiB for a record and 64 KiB for the
	// headers and protocol around it.
	DefaultMaxPayloadBytes = 16<<20 + 64<<10
)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("natsserver: name is required")
	case c.Dir == "":
		return errors.New("natsserver: storage directory is required")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("natsserver: port %d out of range", c.Port)
	case c.MonitorPort < 0 || c.MonitorPort > 65535:
		return fmt.Errorf("natsserver: monitor port %d out of range", c.MonitorPort)
	case c.ClusterPort < 0 || c.ClusterPort > 65535:
		return fmt.Errorf("natsserver: cluster port %d out of range", c.ClusterPort)
	case c.ClusterPort != 0 && c.ClusterName == "":
		return errors.New("natsserver: a clustered server needs a cluster name")
	case c.ClusterPort == 0 && len(c.Routes) > 0:
		return errors.New("natsserver: routes need a cluster port")
	case c.ReadyTimeout < 0:
		return errors.New("natsserver: negative ready timeout")
	case c.MaxStoreBytes < 0:
		return errors.New("natsserver: negative store size")
	case c.MaxPayloadBytes < 0 || c.MaxPayloadBytes > 64<<20:
		return fmt.Errorf("natsserver: max payload %d bytes outside 0 to 64 MiB", c.MaxPayloadBytes)
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return fmt.Errorf("natsserver: route %q is not a url like nats://host:port", r)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.ClusterHost == "" {
		c.ClusterHost = c.Host
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	return c
}

// Server is a running embedded NATS server.
type Server struct {
	cfg Config
	ns  *server.Server
}

// routePingInterval and routePingsOutMax are the cluster routes' liveness
// check (an external cluster wants the same: cluster { ping_interval: "1s",
// ping_max: 3 }, docs/cluster.md).
const (
	routePingInterval = time.Second
	routePingsOutMax  = 3
)

// Start starts the server and waits until it accepts client connections.
// In a cluster, JetStream itself is ready only once a quorum of nodes has
// elected a meta leader: WaitJetStream waits for that.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	setRaftTimings() // raft.go: elections after a server's death within 3 s
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		// Every write is fsynced before it is acknowledged (in a cluster,
		// on each replica before it counts toward the quorum): this is
		// what makes an acknowledged order survive a power failure of
		// every node at once.
		SyncAlways:        true,
		JetStreamMaxStore: cfg.MaxStoreBytes,
		MaxPayload:        cfg.MaxPayloadBytes,
		NoSigs:            true,
		NoLog:             cfg.Logger == nil,
		HTTPHost:          cfg.Host,
		HTTPPort:          cfg.MonitorPort,
	}
	if cfg.ClusterPort != 0 {
		opts.Cluster = server.ClusterOpts{
			Name: cfg.ClusterName,
			Host: cfg.ClusterHost,
			Port: cfg.ClusterPort,
			// A peer that stops answering without closing its sockets (a
			// stopped process, a machine gone without a TCP reset) is
			// dropped after routePingsOutMax missed pings a
			// routePingInterval apart, about 3 s, instead of NATS' 2 × 2
			// minutes: until then its share of the lease bucket's and the
			// streams' requests goes unanswered, and every lease tick of
			// the survivors times out (TestCluster/SIGSTOPPastLease).
			PingInterval: routePingInterval,
			MaxPingsOut:  routePingsOutMax,
		}
		for _, r := range cfg.Routes {
			u, _ := url.Parse(r) // checked by Validate
			opts.Routes = append(opts.Routes, u)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: configure %s: %w", cfg.Name, err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(logger{cfg.Logger.With("nats", cfg.Name)}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(cfg.ReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("natsserver: start %s: %w within %v", cfg.Name, ErrNotReady, cfg.ReadyTimeout)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("natsserver: start %s: jetstream did not start (see the server log)", cfg.Name)
	}
	if jc := ns.JetStreamConfig(); jc == nil || !jc.SyncAlways {
		panic(fmt.Sprintf("natsserver: %s started without sync_always although fest asked for it", cfg.Name))
	}
	return &Server{cfg: cfg, ns: ns}, nil
}

// WaitJetStream waits until this server knows a JetStream meta leader and
// is current with it, so that creating a stream can succeed. A clustered
// server needs a quorum of its peers up for that.
func (s *Server) WaitJetStream(ctx context.Context) error {
	const poll = 20 * time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if s.ns.JetStreamIsCurrent() && (!s.ns.JetStreamIsClustered() || s.metaLeaderKnown()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsserver: wait for jetstream on %s: %w: %w", s.cfg.Name, ErrNotReady, ctx.Err())
		case <-t.C:
		}
	}
}

func (s *Server) metaLeaderKnown() bool {
	jsz, err := s.ns.Jsz(&server.JSzOptions{})
	return err == nil && jsz.Meta != nil && jsz.Meta.Leader != ""
}

// ClientURL is the URL clients connect to ("nats://127.0.0.1:4222").
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// ClusterURL is the URL other nodes name in their Routes; empty for an
// unclustered server.
func (s *Server) ClusterURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats://" + net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
}

// Name is the server's name.
func (s *Server) Name() string { return s.cfg.Name }

// Close shuts the server down and waits until it has stopped, its files
// closed, so that the directory can be reopened or removed.
func (s *Server) Close() error {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	return nil
}

// logger adapts the server's printf-style logging to slog. Debug and trace
// output is off (SetLoggerV2 is told so); they are dropped here too.
type logger struct{ l *slog.Logger }

func (l logger) Noticef(format string, v ...any) { l.l.Info(fmt.Sprintf(format, v...)) }
func (l logger) Warnf(format string, v ...any)   { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l logger) Errorf(format string, v ...any)  { l.l.Error(fmt.Sprintf(format, v...)) }
func (l logger) Fatalf(format string, v ...any)  { l.l.Error("fatal: " + fmt.Sprintf(format, v...)) }
func (l logger) Debugf(string, ...any)           {}
func (l logger) Tracef(string, ...any)           {}

// IsStreamLeader reports whether this server leads the named stream of the
// global account (for tests that kill the leader on purpose).
func (s *Server) IsStreamLeader(stream string) bool {
	return s.ns.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream)
}

// MonitorURL is the monitoring endpoint's base URL, empty when it is off.
func (s *Server) MonitorURL() string {
	if s.cfg.MonitorPort == 0 {
		return ""
	}
	return "http://" + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.MonitorPort))
}
