package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/fest-platform/fest/internal/natsserver"
)

// fest nats (docs/cluster.md, "A NATS cluster of its own"): a standalone
// NATS server with JetStream, configured as fest's embedded servers are
// (file storage, an fsync after every write, room for the engine's largest
// record), for running the NATS cluster apart from the fest nodes, which
// then connect with fest serve --journal nats --nats-url. It is the same
// internal/natsserver the embedded servers use, so the settings fest's
// durability rests on cannot drift between the two ways of running it.

// natsOptions are fest nats's settings, from flags only: fest serve's
// FEST_NATS_* variables name its own NATS settings, and one environment may
// hold both.
type natsOptions struct {
	// Name is the server's name, unique in the NATS cluster.
	Name string
	// Data is the JetStream storage directory.
	Data string
	// Listen is the client address (host:port).
	Listen string
	// ClusterListen is the route address; empty: a single server.
	ClusterListen string
	// Routes are the cluster's route URLs, comma separated (naming this
	// server's own is harmless).
	Routes string
	// MonitorListen is the HTTP monitoring address (/varz, which fest
	// serve --nats-monitor-url reads to check the fsync setting); empty:
	// off.
	MonitorListen string
	// MaxStoreBytes caps JetStream file storage; 0: what the disk has.
	MaxStoreBytes int64
}

// natsReadyLogEvery spaces the log lines while the server waits for a
// JetStream meta leader (a quorum of its cluster up).
const natsReadyLogEvery = 10 * time.Second

// runNATS runs a standalone NATS server until ctx ends (SIGINT, SIGTERM),
// then shuts it down, waiting for its files to close.
func runNATS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o natsOptions
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Name, "name", "", "the server's name, unique in the NATS cluster (required)")
	fs.StringVar(&o.Data, "data", "./fest-nats", "JetStream storage directory")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:4222", "client address host:port")
	fs.StringVar(&o.ClusterListen, "cluster-listen", "", "route address host:port; empty: a single server")
	fs.StringVar(&o.Routes, "routes", "", "the cluster's route URLs nats://host:port, comma separated")
	fs.StringVar(&o.MonitorListen, "monitor-listen", "", "HTTP monitoring address host:port (/varz); empty: off")
	maxStore := fs.String("max-store", "0", "cap on JetStream file storage (bytes, or with KiB, MiB, GiB, ...); 0: what the disk has")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("nats: unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.MaxStoreBytes, err = parseBytes(*maxStore); err != nil {
		return fmt.Errorf("nats: --max-store %q: %w", *maxStore, err)
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// A standalone server logs its notices (start-up, routes joining and
	// leaving) as nats-server does: they are what its operator watches.
	cfg.Logger = log
	srv, err := natsserver.Start(cfg)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	fmt.Fprintf(stdout, "fest nats: server %s listening on %s\n", cfg.Name, srv.ClientURL())
	if u := srv.ClusterURL(); u != "" {
		fmt.Fprintf(stdout, "fest nats: routes on %s\n", u)
	}
	// JetStream serves only once a quorum of the cluster has elected a
	// meta leader; say when, so an operator starting the servers one by
	// one sees the cluster form. The server accepts connections (and its
	// peers' routes) meanwhile.
	go func() {
		for {
			wctx, cancel := context.WithTimeout(ctx, natsReadyLogEvery)
			err := srv.WaitJetStream(wctx)
			cancel()
			switch {
			case err == nil:
				fmt.Fprintf(stdout, "fest nats: jetstream ready on %s\n", cfg.Name)
				return
			case ctx.Err() != nil:
				return
			default:
				log.Warn("fest nats: jetstream not ready yet: waiting for a quorum of the cluster's servers", "server", cfg.Name)
			}
		}
	}()
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("nats: close: %w", err)
	}
	fmt.Fprintf(stdout, "fest nats: server %s stopped\n", cfg.Name)
	return nil
}

// config turns the flags into the server's Config.
func (o natsOptions) config() (natsserver.Config, error) {
	if o.Name == "" {
		return natsserver.Config{}, errors.New("nats: --name is required")
	}
	if o.Data == "" {
		return natsserver.Config{}, errors.New("nats: --data is required")
	}
	cfg := natsserver.Config{Name: o.Name, Dir: o.Data, MaxStoreBytes: o.MaxStoreBytes, Routes: splitList(o.Routes)}
	var err error
	if cfg.Host, cfg.Port, err = splitHostPort("listen", o.Listen); err != nil {
		return cfg, fmt.Errorf("nats: %w", err)
	}
	if o.ClusterListen != "" {
		if cfg.ClusterHost, cfg.ClusterPort, err = splitHostPort("cluster-listen", o.ClusterListen); err != nil {
			return cfg, fmt.Errorf("nats: %w", err)
		}
		cfg.ClusterName = "fest"
	}
	if o.MonitorListen != "" {
		host, port, err := splitHostPort("monitor-listen", o.MonitorListen)
		if err != nil {
			return cfg, fmt.Errorf("nats: %w", err)
		}
		if host != cfg.Host {
			// natsserver.Config has one host for clients and monitoring.
			return cfg, fmt.Errorf("nats: --monitor-listen %q must be on the host of --listen (%s)", o.MonitorListen, cfg.Host)
		}
		cfg.MonitorPort = port
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("nats: %w", err)
	}
	return cfg, nil
}
