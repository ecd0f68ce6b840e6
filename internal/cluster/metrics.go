package cluster

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The node's series for /metrics (docs/cluster.md, "What to watch"),
// read at scrape time.
var (
	descLeaseChanges = prometheus.NewDesc("fest_cluster_lease_changes_total",
		"Lease changes of this node since it started: acquired (taken_over: of them, taken from a node whose lease expired), released (planned hand-offs), lost.", []string{"change"}, nil)
	descServed = prometheus.NewDesc("fest_cluster_partitions_served",
		"Partitions this node serves now.", nil, nil)
	descFailover = prometheus.NewDesc("fest_cluster_failover_seconds",
		"The last take-over's failover time: from this node first seeing the old owner's last lease renewal (the owner may have died up to a renewal period later) to the partition served here (the lease TTL, then opening and replaying).", nil, nil)
	descTakeOver = prometheus.NewDesc("fest_cluster_takeover_seconds",
		"The last take-over's part after the lease was acquired: stopping the follower, fencing the journal, replaying its tail.", nil, nil)
	descTakeOvers = prometheus.NewDesc("fest_cluster_takeovers_total",
		"Partitions taken over from an expired lease and served.", nil, nil)
	descAddFailures = prometheus.NewDesc("fest_cluster_serve_failures_total",
		"Attempts to serve an acquired partition that failed (each logged; retried while the lease is held).", nil, nil)
	descFollowerLag = prometheus.NewDesc("fest_cluster_follower_lag_records",
		"Records of a partition's stream this node knows of and has not applied (0 when served here; -1 while its follower is not reading, when the lag is unknown).", []string{"partition"}, nil)
	descBehind = prometheus.NewDesc("fest_cluster_followers_behind",
		"Partitions whose follower here is behind its stream or not reading: while any is, a not-found is answered 503.", nil, nil)
	descQueue = prometheus.NewDesc("fest_cluster_queue_depth",
		"Submissions queued for a partition's worker (partitions served here).", []string{"partition"}, nil)
	descUnavailable = prometheus.NewDesc("fest_cluster_unavailable_total",
		"Commands answered 503 unavailable by this node's engine, by reason: not_served (another node's partition), lease (the lease not surely valid), following (not found while a follower is behind).", []string{"reason"}, nil)
)

// Metrics returns the node's Prometheus collector.
func (n *Node) Metrics() prometheus.Collector { return nodeCollector{n} }

type nodeCollector struct{ n *Node }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeaseChanges, descServed, descFailover, descTakeOver, descTakeOvers, descAddFailures, descFollowerLag, descBehind, descQueue, descUnavailable} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ls := n.leases.Stats()
	counter(descLeaseChanges, ls.Acquired.Load(), "acquired")
	counter(descLeaseChanges, ls.TakenOver.Load(), "taken_over")
	counter(descLeaseChanges, ls.Released.Load(), "released")
	counter(descLeaseChanges, ls.Lost.Load(), "lost")
	hs := n.handler.Stats()
	gauge(descFailover, time.Duration(hs.LastFailoverNanos.Load()).Seconds())
	gauge(descTakeOver, time.Duration(hs.LastTakeOverNanos.Load()).Seconds())
	counter(descTakeOvers, hs.TakeOvers.Load())
	counter(descAddFailures, hs.AddFailures.Load())
	e := n.engine
	served, behind := 0, 0
	for p := range n.cfg.Partitions {
		label := strconv.Itoa(p)
		if depth, ok := e.PartitionQueueDepth(p); ok {
			served++
			gauge(descQueue, float64(depth), label)
		}
		lag, known := e.FollowerLag(p)
		v := float64(lag)
		if !known {
			v = -1
		}
		if !known || lag > 0 {
			behind++
		}
		gauge(descFollowerLag, v, label)
	}
	gauge(descServed, float64(served))
	gauge(descBehind, float64(behind))
	st := e.Stats()
	counter(descUnavailable, st.NotServed.Load(), "not_served")
	counter(descUnavailable, st.LeaseNotValid.Load(), "lease")
	counter(descUnavailable, st.NotFoundBehind.Load(), "following")
}
