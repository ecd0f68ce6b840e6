package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fest-platform/fest/internal/lease"
)

// clusterOptions are fest serve's settings for the replicated journal
// (docs/cluster.md). Journal "file" (the default) leaves every other field
// unused, and fest serve then runs exactly as a single node always has.
type clusterOptions struct {
	// Journal is "file" (the local journal) or "nats" (one JetStream
	// stream per partition, partitions owned through leases).
	Journal string
	// Node names this node in the cluster (default: the host name).
	Node string
	// Advertise is the HTTP address other nodes and clients reach this
	// node at (default: the listen address, with 127.0.0.1 for an empty
	// host).
	Advertise string
	// NATSURL is an external NATS cluster's client URLs, comma separated;
	// empty: run an embedded server (NATSListen).
	NATSURL string
	// NATSMonitorURLs are the external servers' monitoring URLs, for the
	// start-up check that each fsyncs every write.
	NATSMonitorURLs string
	// NATSListen is the embedded server's client address (host:port).
	NATSListen string
	// NATSClusterListen is the embedded server's route address; empty: a
	// single server.
	NATSClusterListen string
	// NATSRoutes are the other embedded servers' route URLs, comma
	// separated.
	NATSRoutes string
	// Replicas is each stream's and bucket's replica count (default 3, or
	// 1 for a single embedded server).
	Replicas int
	// LeaseTTL is how long a partition's lease lasts without renewal
	// (lease.Config.TTL): a dead node's partitions are served again about
	// a TTL and a third after its last renewal.
	LeaseTTL time.Duration
}

// journalKinds are the values of --journal.
var journalKinds = []string{"file", "nats"}

// addClusterFlags registers the cluster flags on fs.
func addClusterFlags(fs *flag.FlagSet, o *clusterOptions) {
	host, _ := os.Hostname()
	fs.StringVar(&o.Journal, "journal", envOr("FEST_JOURNAL", "file"), "journal: file (local, the default) or nats (replicated on NATS JetStream; see docs/cluster.md) (FEST_JOURNAL)")
	fs.StringVar(&o.Node, "node", envOr("FEST_NODE", host), "with --journal nats: this node's name in the cluster (FEST_NODE)")
	fs.StringVar(&o.Advertise, "advertise", envOr("FEST_ADVERTISE", ""), "with --journal nats: the HTTP address other nodes and clients reach this node at (default: the listen address) (FEST_ADVERTISE)")
	fs.StringVar(&o.NATSURL, "nats-url", envOr("FEST_NATS_URL", ""), "with --journal nats: an external NATS cluster's URLs, comma separated (FEST_NATS_URL)")
	fs.StringVar(&o.NATSMonitorURLs, "nats-monitor-url", envOr("FEST_NATS_MONITOR_URL", ""), "with --nats-url: the servers' monitoring URLs, to check that each fsyncs every write (FEST_NATS_MONITOR_URL)")
	fs.StringVar(&o.NATSListen, "nats-listen", envOr("FEST_NATS_LISTEN", ""), "with --journal nats: run an embedded NATS server with clients on this host:port (FEST_NATS_LISTEN)")
	fs.StringVar(&o.NATSClusterListen, "nats-cluster-listen", envOr("FEST_NATS_CLUSTER_LISTEN", ""), "the embedded NATS server's route address host:port; empty: a single server (FEST_NATS_CLUSTER_LISTEN)")
	fs.StringVar(&o.NATSRoutes, "nats-routes", envOr("FEST_NATS_ROUTES", ""), "the other embedded servers' route URLs, comma separated (FEST_NATS_ROUTES)")
	fs.IntVar(&o.Replicas, "nats-replicas", 0, "replicas of each partition's stream; 0: 3, or 1 for a single embedded server")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", lease.DefaultTTL, "with --journal nats: a partition's lease lasts this long without renewal; a dead node's partitions are taken over after about 1.3 times this")
}

// validate reports the first inconsistent cluster flag.
func (o *clusterOptions) validate(name string) error {
	switch o.Journal {
	case "file":
		if o.NATSURL != "" || o.NATSListen != "" || o.NATSClusterListen != "" || o.NATSRoutes != "" {
			return fmt.Errorf("%s: the --nats-* flags need --journal nats", name)
		}
		return nil
	case "nats":
	default:
		return fmt.Errorf("%s: --journal %q: want one of %s", name, o.Journal, strings.Join(journalKinds, ", "))
	}
	switch {
	case o.Node == "":
		return fmt.Errorf("%s: --journal nats needs --node", name)
	case o.NATSURL == "" && o.NATSListen == "":
		return fmt.Errorf("%s: --journal nats needs --nats-url (an external NATS cluster) or --nats-listen (an embedded server)", name)
	case o.NATSURL != "" && o.NATSListen != "":
		return fmt.Errorf("%s: --nats-url and --nats-listen exclude each other: connect to a cluster or run a server", name)
	case o.NATSRoutes != "" && o.NATSClusterListen == "":
		return fmt.Errorf("%s: --nats-routes needs --nats-cluster-listen", name)
	case o.Replicas < 0 || o.Replicas > 5:
		return fmt.Errorf("%s: --nats-replicas %d outside 0..5", name, o.Replicas)
	case o.LeaseTTL < 100*time.Millisecond:
		return fmt.Errorf("%s: --lease-ttl %v: at least 100ms", name, o.LeaseTTL)
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
