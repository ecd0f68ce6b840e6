package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fest-platform/fest/internal/engine"
)

// metrics are the Prometheus series of /metrics. Hot-path counters are
// resolved once (no label lookups per order); engine and projection figures
// are read at scrape time.
type metrics struct {
	reg          *prometheus.Registry
	placed       prometheus.Counter
	paid         prometheus.Counter
	cancelled    prometheus.Counter
	rejectedVec  *prometheus.CounterVec
	rejectedBy   [16]prometheus.Counter // by engine.Code
	gatewayBatch prometheus.Histogram
	orderBatch   prometheus.Histogram
	settleBatch  prometheus.Histogram
	fsync        prometheus.Histogram
	scanMetrics  // logistics.go
	snapshot     prometheus.Histogram
	// ack observes, per order operation, the time from a request's arrival
	// to its answer: for an accepted order, to its acknowledgement, after
	// the fsync that made it durable.
	ackPlace, ackBatch, ackSettle, ackPay prometheus.Observer
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.placed = prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_orders_placed_total", Help: "Orders placed through the API."})
	m.paid = prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_orders_paid_total", Help: "Orders paid through the API."})
	m.cancelled = prometheus.NewCounter(prometheus.CounterOpts{Name: "fest_orders_cancelled_total", Help: "Orders cancelled through the API."})
	m.rejectedVec = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fest_orders_rejected_total", Help: "Orders rejected, by error code."}, []string{"code"})
	for c := engine.CodeNotFound; c <= engine.CodeUnavailable; c++ {
		m.rejectedBy[c] = m.rejectedVec.WithLabelValues(c.String())
	}
	m.gatewayBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fest_gateway_batch_size", Help: "Single orders and payments coalesced into one engine batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	m.orderBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fest_order_batch_request_size", Help: "Orders per POST /v1/orders:batch request.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)})
	m.settleBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fest_settle_batch_request_size", Help: "Pay and cancel actions per POST /v1/orders:settle request.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)})
	m.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fest_journal_fsync_seconds", Help: "Journal fsync latency.", Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14)})
	m.snapshot = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fest_engine_snapshot_seconds", Help: "Time to write one engine snapshot file, from its creation to its rename into place.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)})
	ack := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fest_order_ack_seconds", Help: "Time from an order request's arrival to its answer (an accepted order: its durable acknowledgement), by operation.",
		Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16)}, []string{"operation"})
	m.ackPlace, m.ackBatch, m.ackSettle, m.ackPay = ack.WithLabelValues("place"), ack.WithLabelValues("batch"), ack.WithLabelValues("settle"), ack.WithLabelValues("pay")
	f(m.snapshot)
	f(ack)
	f(m.placed)
	f(m.paid)
	f(m.cancelled)
	f(m.rejectedVec)
	f(m.gatewayBatch)
	f(m.orderBatch)
	f(m.settleBatch)
	f(m.fsync)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f(&engineCollector{s: s})
	f(&assistantCollector{s: s})
	m.scanMetrics = newScanMetrics(m.reg, s)
	return m
}

// rejected counts a rejection by engine code.
func (m *metrics) rejected(c engine.Code) {
	if int(c) < len(m.rejectedBy) && m.rejectedBy[c] != nil {
		m.rejectedBy[c].Inc()
	}
}

// rejectedCode counts a rejection decided at the edge by its API code.
func (m *metrics) rejectedCode(code string) {
	m.rejectedVec.WithLabelValues(code).Inc()
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// RegisterMetrics adds c's series to /metrics: a cluster node's
// (cluster.Node.Metrics), which the server does not know of itself.
func (s *Server) RegisterMetrics(c prometheus.Collector) error { return s.metrics.reg.Register(c) }

// ObserveFsync records one journal fsync; serve wires it into the journal.
func (s *Server) ObserveFsync(d time.Duration) { s.metrics.fsync.Observe(d.Seconds()) }

// ObserveSnapshot records the writing of one engine snapshot; serve wires
// it into the engine's file system.
func (s *Server) ObserveSnapshot(d time.Duration) { s.metrics.snapshot.Observe(d.Seconds()) }

// timed observes into o how long h takes.
func timed(o prometheus.Observer, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h(w, r)
		o.Observe(time.Since(start).Seconds())
	}
}

// engineCollector reads the engine's and the order store's counters at
// scrape time.
type engineCollector struct{ s *Server }

var (
	descCommands    = prometheus.NewDesc("fest_engine_commands_total", "Commands applied by partition workers.", nil, nil)
	descDealGateway = prometheus.NewDesc("fest_live_deal_gateway_rejected_total", "Deal orders answered at the router, sold out or ended, without reaching their partition.", nil, nil)
	descRejected    = prometheus.NewDesc("fest_engine_rejected_total", "Commands answered with a non-OK code (workers and gateway).", []string{"where"}, nil)
	descOverloaded  = prometheus.NewDesc("fest_engine_overloaded_total", "Commands refused because a worker queue was full.", nil, nil)
	descBatches     = prometheus.NewDesc("fest_engine_batches_total", "Worker batches applied.", nil, nil)
	descEvents      = prometheus.NewDesc("fest_engine_events_total", "Events written to the journal.", nil, nil)
	descRecords     = prometheus.NewDesc("fest_journal_records_total", "Journal records written.", nil, nil)
	descJournal     = prometheus.NewDesc("fest_journal_bytes_total", "Journal payload bytes written.", nil, nil)
	descDurable     = prometheus.NewDesc("fest_journal_durable_position_bytes", "Durable journal position.", nil, nil)
	descQueue       = prometheus.NewDesc("fest_engine_queue_depth", "Submissions queued per worker.", []string{"worker"}, nil)
	descSKUs        = prometheus.NewDesc("fest_catalog_skus", "SKUs in the catalog.", nil, nil)
	descLagBytes    = prometheus.NewDesc("fest_projection_lag_bytes", "Journal bytes the projection has not applied yet.", []string{"projection"}, nil)
	descLagSeconds  = prometheus.NewDesc("fest_projection_lag_seconds", "Age of the last applied event while the projection is behind.", []string{"projection"}, nil)
	descStoreEvents = prometheus.NewDesc("fest_orderstore_events_total", "Events applied by the order store.", nil, nil)
	descStoreNanos  = prometheus.NewDesc("fest_orderstore_apply_seconds_total", "Time the order store spent committing batches.", nil, nil)
	descStoreCommit = prometheus.NewDesc("fest_orderstore_commits_total", "Order store batch commits.", nil, nil)
	descReady       = prometheus.NewDesc("fest_ready", "1 once recovery is done.", nil, nil)
	descSnapshots   = prometheus.NewDesc("fest_engine_snapshots_total", "Engine snapshots written.", nil, nil)
	descSnapFailed  = prometheus.NewDesc("fest_engine_snapshot_failures_total", "Engine snapshots that failed (each is logged).", nil, nil)
	descSnapshotNow = prometheus.NewDesc("fest_engine_snapshot_in_progress", "1 while the engine writes a snapshot.", nil, nil)

	descCatchUp        = prometheus.NewDesc("fest_projection_catchup_seconds", "Time the read models took to reflect what was durable, probed every 50 ms, since start.", nil, nil)
	descStoreOrders    = prometheus.NewDesc("fest_orderstore_orders", "Orders held by the order store, by tier.", []string{"tier"}, nil)
	descStoreResident  = prometheus.NewDesc("fest_orderstore_resident_bytes", "The order store's estimate of its resident memory, held to fest_orderstore_memory_budget_bytes.", nil, nil)
	descStoreBudget    = prometheus.NewDesc("fest_orderstore_memory_budget_bytes", "The order store's memory budget (0: no cold tier, unbounded).", nil, nil)
	descStoreEvictions = prometheus.NewDesc("fest_orderstore_evictions_total", "Arena chunks (1 MiB of orders) moved to the cold tier.", nil, nil)
	descStoreColdReads = prometheus.NewDesc("fest_orderstore_cold_reads_total", "Orders read from the cold tier.", nil, nil)

	descIdempotencyKeys      = prometheus.NewDesc("fest_idempotency_keys", "Idempotency keys held, by tier (memory: as of each partition's last batch).", []string{"tier"}, nil)
	descIdempotencyOldest    = prometheus.NewDesc("fest_idempotency_oldest_key_age_seconds", "Age of the oldest idempotency key held in either tier.", nil, nil)
	descIdempotencyIndex     = prometheus.NewDesc("fest_idempotency_disk_index_bytes", "Memory of the disk tier's index of other keys (8 bytes a slot, 11 to 21 a key).", nil, nil)
	descIdempotencyForgotten = prometheus.NewDesc("fest_idempotency_forgotten_early_total", "Other keys the disk tier dropped before their window to stay within its index bound.", nil, nil)

	descIdempotencyClass          = prometheus.NewDesc("fest_idempotency_keys_by_class", "Idempotency keys held, by tier and class (time_ordered: UUIDv7 or ULID minted near its first use; other).", []string{"tier", "class"}, nil)
	descIdempotencyTimedIndex     = prometheus.NewDesc("fest_idempotency_time_ordered_index_bytes", "Memory of the index of the disk tier's time-ordered runs.", nil, nil)
	descIdempotencyHorizon        = prometheus.NewDesc("fest_idempotency_horizon_age_seconds", "How far the time-ordered tier's horizon is behind now: a time-ordered key minted since never reads the disk (0 while that tier is empty).", nil, nil)
	descIdempotencyTimedForgotten = prometheus.NewDesc("fest_idempotency_time_ordered_forgotten_early_total", "Time-ordered keys dropped before their window to stay within their index bound.", nil, nil)
	descIdempotencyTimeRejected   = prometheus.NewDesc("fest_idempotency_time_rejected_total", "First uses of UUIDv7 or ULID keys minted too far from their use to be time-ordered (a client clock off), kept as other keys.", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCommands, descRejected, descDealGateway, descOverloaded, descBatches, descEvents, descRecords, descJournal, descDurable, descQueue, descSKUs, descLagBytes, descLagSeconds, descStoreEvents, descStoreNanos, descStoreCommit, descReady,
		descCatchUp, descSnapshots, descSnapFailed, descSnapshotNow,
		descStoreOrders, descStoreResident, descStoreBudget, descStoreEvictions, descStoreColdReads,
		descIdempotencyKeys, descIdempotencyOldest, descIdempotencyIndex, descIdempotencyForgotten,
		descIdempotencyClass, descIdempotencyTimedIndex, descIdempotencyHorizon, descIdempotencyTimedForgotten, descIdempotencyTimeRejected} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	be := c.s.be.Load()
	if be == nil {
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, 1)
	st := be.eng.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descCommands, st.Commands.Load())
	counter(descRejected, st.Rejected.Load(), "worker")
	counter(descRejected, st.GatewayRejected.Load(), "gateway")
	counter(descDealGateway, st.DealGatewayRejected.Load())
	counter(descOverloaded, st.Overloaded.Load())
	counter(descBatches, st.Batches.Load())
	counter(descEvents, st.Events.Load())
	counter(descRecords, st.Records.Load())
	counter(descSnapshots, st.Snapshots.Load())
	counter(descSnapFailed, st.SnapshotFailures.Load())
	snapping := 0.0
	if be.eng.Snapshotting() {
		snapping = 1
	}
	ch <- prometheus.MustNewConstMetric(descSnapshotNow, prometheus.GaugeValue, snapping)
	counter(descJournal, st.RecordBytes.Load())
	ch <- prometheus.MustNewConstMetric(descDurable, prometheus.GaugeValue, float64(be.eng.Durable()))
	for w := 0; w < be.eng.Workers(); w++ {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(be.eng.QueueDepth(w)), strconv.Itoa(w))
	}
	ch <- prometheus.MustNewConstMetric(descSKUs, prometheus.GaugeValue, float64(be.eng.SKUCount()))
	is := be.eng.IdempotencyStats()
	ch <- prometheus.MustNewConstMetric(descIdempotencyKeys, prometheus.GaugeValue, float64(is.MemoryKeys), "memory")
	ch <- prometheus.MustNewConstMetric(descIdempotencyKeys, prometheus.GaugeValue, float64(is.DiskKeys), "disk")
	ch <- prometheus.MustNewConstMetric(descIdempotencyOldest, prometheus.GaugeValue, is.OldestAge.Seconds())
	ch <- prometheus.MustNewConstMetric(descIdempotencyIndex, prometheus.GaugeValue, float64(is.DiskIndexBytes))
	counter(descIdempotencyForgotten, is.ForgottenEarly)
	ch <- prometheus.MustNewConstMetric(descIdempotencyClass, prometheus.GaugeValue, float64(is.MemoryTimedKeys), "memory", "time_ordered")
	ch <- prometheus.MustNewConstMetric(descIdempotencyClass, prometheus.GaugeValue, float64(is.MemoryKeys-is.MemoryTimedKeys), "memory", "other")
	ch <- prometheus.MustNewConstMetric(descIdempotencyClass, prometheus.GaugeValue, float64(is.DiskTimedKeys), "disk", "time_ordered")
	ch <- prometheus.MustNewConstMetric(descIdempotencyClass, prometheus.GaugeValue, float64(is.DiskKeys-is.DiskTimedKeys), "disk", "other")
	ch <- prometheus.MustNewConstMetric(descIdempotencyTimedIndex, prometheus.GaugeValue, float64(is.DiskTimedIndexBytes))
	ch <- prometheus.MustNewConstMetric(descIdempotencyHorizon, prometheus.GaugeValue, is.HorizonAge.Seconds())
	counter(descIdempotencyTimedForgotten, is.TimedForgottenEarly)
	counter(descIdempotencyTimeRejected, is.TimeRejected)
	for _, l := range be.reads.Lags() {
		ch <- prometheus.MustNewConstMetric(descLagBytes, prometheus.GaugeValue, float64(l.Positions), l.Projection)
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, l.Seconds, l.Projection)
	}
	qs, count, sum := be.reads.CatchUp(50, 99, 100)
	ch <- prometheus.MustNewConstSummary(descCatchUp, uint64(count), sum.Seconds(),
		map[float64]float64{0.5: qs[0].Seconds(), 0.99: qs[1].Seconds(), 1: qs[2].Seconds()})
	ss := be.store.Stats()
	counter(descStoreEvents, ss.Events)
	ch <- prometheus.MustNewConstMetric(descStoreNanos, prometheus.CounterValue, float64(ss.CommitNanos)/1e9)
	counter(descStoreCommit, ss.Commits)
	ch <- prometheus.MustNewConstMetric(descStoreOrders, prometheus.GaugeValue, float64(ss.MemoryOrders), "memory")
	ch <- prometheus.MustNewConstMetric(descStoreOrders, prometheus.GaugeValue, float64(ss.ColdOrders), "cold")
	ch <- prometheus.MustNewConstMetric(descStoreResident, prometheus.GaugeValue, float64(ss.ResidentBytes))
	ch <- prometheus.MustNewConstMetric(descStoreBudget, prometheus.GaugeValue, float64(ss.MemoryBytes))
	counter(descStoreEvictions, ss.Evictions)
	counter(descStoreColdReads, ss.ColdReads)
}
