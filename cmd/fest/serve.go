package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/fest-platform/fest/internal/assistant"
	"github.com/fest-platform/fest/internal/engine"
	"github.com/fest-platform/fest/internal/journal"
	"github.com/fest-platform/fest/internal/logistics"
	"github.com/fest-platform/fest/internal/projection"
	"github.com/fest-platform/fest/internal/projection/gmv"
	"github.com/fest-platform/fest/internal/projection/live"
	"github.com/fest-platform/fest/internal/projection/orders"
	"github.com/fest-platform/fest/internal/server"
	"github.com/fest-platform/fest/internal/vfs"
)

// rehearsalPaymentTimeout is the payment timeout on the rehearsal clock
// when none is given: 30 days of festival time, longer than the festival.
const rehearsalPaymentTimeout = 720 * time.Hour

// serveOptions are the settings of fest serve, from flags and FEST_*
// environment variables (a flag wins over its variable).
type serveOptions struct {
	Addr            string
	Data            string
	Partitions      int
	PaymentTimeout  time.Duration
	AdminToken      string
	StorefrontToken string
	CarrierToken    string
	ShutdownTimeout time.Duration
	// RehearsalClock runs the engine on the festival time clients give
	// each command (docs/api.md, The rehearsal clock), for fest load
	// --profile festival --rehearsal-clock.
	RehearsalClock bool

	// The HTTP server's bounds (server.Config has their meaning).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	NetHTTPOnly       bool
	ConnectionsMax    int
	// EventFeedsMax and EventFeedWriteTimeout bound GET /v1/events.
	EventFeedsMax         int
	EventFeedWriteTimeout time.Duration

	// SnapshotEveryBytes and SegmentBytesMax size the engine's snapshots
	// and journal segments (engine.Config has their meaning).
	SnapshotEveryBytes int64
	SegmentBytesMax    int64
	// ReadSnapshotEveryBytes is the read models' snapshot interval
	// (projection.Config.SnapshotEveryBytes; 0: it grows with the state).
	ReadSnapshotEveryBytes uint64
	// RecordVersion is the version of the journal records the engine
	// writes (engine.Config.RecordVersion): 2 during a rolling upgrade
	// from a build that writes version 2 (docs/cluster.md), 0 the default.
	RecordVersion int
	// IdempotencyWindow is how long idempotency keys are remembered.
	IdempotencyWindow time.Duration
	// IdempotencyMintedAgeMax and IdempotencyMintedSkewMax bound how far
	// before and after its first use a UUIDv7 or ULID key may have been
	// minted to be kept as time-ordered (engine.Config has their meaning).
	IdempotencyMintedAgeMax  time.Duration
	IdempotencyMintedSkewMax time.Duration
	// GMVMilestones are the GMV projection's milestone thresholds in fen
	// (nil: its default, 100 million CNY); the demo sets small ones.
	GMVMilestones []int64
	// OrdersMemory is the order store's memory budget in bytes; older
	// orders move to its cold tier on disk past it.
	OrdersMemory int64

	// Assistant bounds the customer-service assistant (assistant.Config
	// has their meaning).
	Assistant assistant.Config
	// ParcelStaleAfter is how long a parcel may go without a scan before
	// it is flagged stale (logistics.Config.StaleAfter).
	ParcelStaleAfter time.Duration
	// GCPercent is the Go collector's GOGC for the serving process
	// (gcPercentDefault; GOGC in the environment, when set, decides
	// instead). Negative: the collector is off.
	GCPercent int

	// Cluster holds the replicated journal's settings (clusterflags.go).
	Cluster clusterOptions
}

// gcPercentDefault is fest serve's GOGC. The server's heap is mostly
// long-lived read-model state that grows through the day; at Go's default
// of 100 the collector ran 47 times in 20 s of the midnight profile and
// took 7% of the server's CPU, a third of it stopping busy goroutines to
// scan their stacks. At 400 it runs a quarter as often, for a heap that may
// grow to five times the live data between cycles instead of twice.
const gcPercentDefault = 400

// shutdownTimeoutDefault bounds how long in-flight requests may take to
// finish after SIGINT or SIGTERM.
const shutdownTimeoutDefault = 10 * time.Second

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// parseBytes reads a size: a number of bytes, or one with a unit (KiB,
// MiB, GiB, TiB; KB, MB, GB, TB in powers of ten).
func parseBytes(v string) (int64, error) {
	units := []struct {
		suffix string
		scale  int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	num, scale := strings.TrimSpace(v), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, scale = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.scale
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || n*float64(scale) > math.MaxInt64 {
		return 0, fmt.Errorf("size %q: want bytes, or a number with KiB, MiB, GiB or TiB", v)
	}
	return int64(n * float64(scale)), nil
}

// parseServeFlags reads flags and FEST_* variables.
func parseServeFlags(name string, args []string, stderr io.Writer) (serveOptions, *flag.FlagSet, error) {
	var o serveOptions
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Addr, "addr", envOr("FEST_ADDR", ":8080"), "listen address (FEST_ADDR)")
	fs.StringVar(&o.Data, "data", envOr("FEST_DATA", "./fest-data"), "data directory: journal, snapshots, order store, tokens (FEST_DATA)")
	partitions, err := strconv.Atoi(envOr("FEST_PARTITIONS", "0"))
	if err != nil {
		return o, fs, fmt.Errorf("FEST_PARTITIONS: %w", err)
	}
	fs.IntVar(&o.Partitions, "partitions", partitions, "partitions, fixed when the data directory is created; 0: 64 or the stored number (FEST_PARTITIONS)")
	timeout, err := time.ParseDuration(envOr("FEST_PAYMENT_TIMEOUT", "15m"))
	if err != nil {
		return o, fs, fmt.Errorf("FEST_PAYMENT_TIMEOUT: %w", err)
	}
	fs.DurationVar(&o.PaymentTimeout, "payment-timeout", timeout, "unpaid orders expire after this (FEST_PAYMENT_TIMEOUT)")
	window, err := time.ParseDuration(envOr("FEST_IDEMPOTENCY_WINDOW", "24h"))
	if err != nil {
		return o, fs, fmt.Errorf("FEST_IDEMPOTENCY_WINDOW: %w", err)
	}
	fs.DurationVar(&o.IdempotencyWindow, "idempotency-window", window, "a retried Idempotency-Key returns its first order within this, across restarts (FEST_IDEMPOTENCY_WINDOW)")
	fs.DurationVar(&o.IdempotencyMintedAgeMax, "idempotency-minted-age-max", 2*time.Minute, "a UUIDv7 or ULID Idempotency-Key minted at most this long before its first use is time-ordered: kept for the whole window in no memory per key")
	fs.DurationVar(&o.IdempotencyMintedSkewMax, "idempotency-minted-skew-max", time.Minute, "a UUIDv7 or ULID Idempotency-Key minted at most this long after its first use (a client clock ahead) is time-ordered")
	fs.StringVar(&o.AdminToken, "admin-token", envOr("FEST_ADMIN_TOKEN", ""), "admin bearer token; generated into <data>/tokens if empty (FEST_ADMIN_TOKEN)")
	fs.StringVar(&o.StorefrontToken, "storefront-token", envOr("FEST_STOREFRONT_TOKEN", ""), "storefront bearer token; generated if empty (FEST_STOREFRONT_TOKEN)")
	fs.StringVar(&o.CarrierToken, "carrier-token", envOr("FEST_CARRIER_TOKEN", ""), "carrier bearer token; generated if empty (FEST_CARRIER_TOKEN)")
	fs.BoolVar(&o.RehearsalClock, "rehearsal-clock", os.Getenv("FEST_REHEARSAL_CLOCK") == "1", "run on the festival time each request gives (fest load --rehearsal-clock); the payment timeout is then festival time too, 720h unless given (FEST_REHEARSAL_CLOCK=1)")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", shutdownTimeoutDefault, "how long in-flight requests may finish on shutdown")
	fs.Int64Var(&o.SnapshotEveryBytes, "snapshot-every-bytes", 1<<30, "journal growth in bytes after which the engine snapshots in the background; negative: only at shutdown")
	fs.Uint64Var(&o.ReadSnapshotEveryBytes, "read-snapshot-every-bytes", 0, "journal growth in bytes after which the read models (order store, GMV, logistics) snapshot; 0: eight times the last snapshot file, within 256 MiB and 1 GiB (a restart replays up to that much journal)")
	fs.Int64Var(&o.SegmentBytesMax, "segment-bytes-max", journal.DefaultSegmentBytesMax, "journal segment size in bytes")
	recordVersion, err := strconv.Atoi(envOr("FEST_RECORD_VERSION", "0"))
	if err != nil {
		return o, fs, fmt.Errorf("FEST_RECORD_VERSION: %w", err)
	}
	fs.IntVar(&o.RecordVersion, "record-version", recordVersion, "journal record version written: 3, or 2 while a cluster is upgraded from a build that reads only 2 (docs/cluster.md); 0: 3. Every version is read (FEST_RECORD_VERSION)")
	o.OrdersMemory = orders.DefaultMemoryBytes
	if v := os.Getenv("FEST_ORDERS_MEMORY"); v != "" {
		n, err := parseBytes(v)
		if err != nil {
			return o, fs, fmt.Errorf("%s: FEST_ORDERS_MEMORY: %w", name, err)
		}
		o.OrdersMemory = n
	}
	fs.Func("orders-memory", "memory budget of the order store, e.g. 2GiB or 512MiB (default 2GiB); older orders move to disk past it (FEST_ORDERS_MEMORY)", func(v string) error {
		n, err := parseBytes(v)
		o.OrdersMemory = n
		return err
	})
	def := server.Config{}.WithDefaults()
	fs.DurationVar(&o.ReadHeaderTimeout, "read-header-timeout", def.ReadHeaderTimeout, "time a client has to send a request's headers")
	fs.DurationVar(&o.ReadTimeout, "read-timeout", def.ReadTimeout, "time a client has to send a whole request, headers and body")
	fs.DurationVar(&o.WriteTimeout, "write-timeout", def.WriteTimeout, "time from a request's headers to the end of its answer (must exceed --read-timeout)")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", def.IdleTimeout, "a keep-alive connection with no request for this long is closed")
	fs.BoolVar(&o.NetHTTPOnly, "net-http-only", false, "serve single POST /v1/orders through net/http too, not the fast path (docs/api.md)")
	fs.IntVar(&o.ConnectionsMax, "connections-max", def.ConnectionsMax, "open client connections at most; one more is answered 503 unavailable with Retry-After and closed")
	fs.IntVar(&o.EventFeedsMax, "event-feeds-max", def.EventFeedsMax, "open GET /v1/events feeds at most; one more is answered 503 unavailable with Retry-After")
	fs.DurationVar(&o.EventFeedWriteTimeout, "event-feed-write-timeout", def.EventFeedWriteTimeout, "an event feed whose client takes longer than this to accept a record's events is closed")
	adef := assistant.Config{}.WithDefaults()
	fs.IntVar(&o.Assistant.SessionsMax, "assistant-sessions-max", adef.SessionsMax, "assistant: pending cancel confirmations remembered at most; the least recent is forgotten")
	fs.DurationVar(&o.Assistant.SessionAgeMax, "assistant-session-age-max", adef.SessionAgeMax, "assistant: how long a cancel waits for the buyer's yes")
	fs.Float64Var(&o.Assistant.ConfidenceMin, "assistant-confidence-min", adef.ConfidenceMin, "assistant: below this intent probability the message is handed to a person")
	fs.IntVar(&o.Assistant.TextBytesMax, "assistant-text-bytes-max", adef.TextBytesMax, "assistant: longest message text in bytes")
	fs.StringVar(&o.Assistant.ParcelPattern, "assistant-parcel-pattern", adef.ParcelPattern, "assistant: regular expression of a parcel id in a message")
	stale, err := time.ParseDuration(envOr("FEST_PARCEL_STALE_AFTER", logistics.DefaultStaleAfter.String()))
	if err != nil {
		return o, fs, fmt.Errorf("FEST_PARCEL_STALE_AFTER: %w", err)
	}
	fs.DurationVar(&o.ParcelStaleAfter, "parcel-stale-after", stale, "a parcel with no scan for this long is flagged stale (FEST_PARCEL_STALE_AFTER)")
	gcPercent := gcPercentDefault
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		gcPercent = debug.SetGCPercent(-1) // read the runtime's setting from GOGC
		debug.SetGCPercent(gcPercent)
	}
	addClusterFlags(fs, &o.Cluster)
	fs.IntVar(&o.GCPercent, "gc-percent", gcPercent, "the Go collector's GOGC: the heap may grow by this percentage of the live data between collections; negative: off (GOGC when set)")
	if err := fs.Parse(args); err != nil {
		return o, fs, err
	}
	if o.RehearsalClock && !isSet(fs, "payment-timeout") && os.Getenv("FEST_PAYMENT_TIMEOUT") == "" {
		// The payment timeout is festival time on the rehearsal clock, and a
		// compressed run delivers payments festival hours after their
		// orders: by default no order expires before the festival is over.
		o.PaymentTimeout = rehearsalPaymentTimeout
	}
	if o.ParcelStaleAfter <= 0 {
		return o, fs, fmt.Errorf("%s: --parcel-stale-after %v must be positive", name, o.ParcelStaleAfter)
	}
	if err := o.Assistant.Validate(); err != nil {
		return o, fs, fmt.Errorf("%s: %w", name, err)
	}
	if o.IdempotencyWindow <= 0 {
		return o, fs, fmt.Errorf("%s: --idempotency-window %v must be positive", name, o.IdempotencyWindow)
	}
	if err := o.Cluster.validate(name); err != nil {
		return o, fs, err
	}
	if o.IdempotencyMintedAgeMax <= 0 || o.IdempotencyMintedSkewMax <= 0 {
		return o, fs, fmt.Errorf("%s: --idempotency-minted-age-max %v and --idempotency-minted-skew-max %v must be positive", name, o.IdempotencyMintedAgeMax, o.IdempotencyMintedSkewMax)
	}
	if fs.NArg() > 0 {
		return o, fs, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	return o, fs, nil
}

// runServe runs the HTTP API until ctx is cancelled (SIGINT, SIGTERM), then
// shuts down gracefully: stop accepting, drain, final fsync and snapshot.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, _, err := parseServeFlags("serve", args, stderr)
	if err != nil {
		return err
	}
	debug.SetGCPercent(o.GCPercent)
	rs, err := startServer(ctx, o, stdout, stderr)
	if err != nil {
		return err
	}
	return rs.wait(ctx)
}

// runningServer is a started fest serve.
type runningServer struct {
	opts    serveOptions
	URL     string
	Tokens  map[string]string // role → token
	httpSrv *http.Server
	srv     *server.Server
	log     *slog.Logger
	stdout  io.Writer

	served chan error // the HTTP server's exit
	opened chan error // recovery's outcome
	eng    *engine.Engine
	store  *orders.Store
	board  *gmv.Projection

	projections *projection.Runner

	// With --journal nats (servecluster.go): the node, its connection and
	// embedded server; nodeFailed is closed when the node's engine stops
	// on a failure, closing when shutdown begins.
	cluster    *clusterRun
	nodeFailed chan struct{}
	closing    chan struct{}
}

// startServer listens at once (so /healthz and /readyz answer during
// recovery) and opens the order store and the engine in the background.
func startServer(ctx context.Context, o serveOptions, stdout, stderr io.Writer) (*runningServer, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.RehearsalClock && o.Cluster.Journal == "nats" {
		// Forwarded commands do not carry their festival time (yet).
		return nil, errors.New("--rehearsal-clock runs on a single node, not with --journal nats")
	}
	if err := os.MkdirAll(o.Data, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	tokens := map[string]*string{"admin": &o.AdminToken, "storefront": &o.StorefrontToken, "carrier": &o.CarrierToken}
	for _, role := range []string{"admin", "storefront", "carrier"} {
		if *tokens[role] != "" {
			continue
		}
		tok, path, created, err := loadOrCreateToken(o.Data, role)
		if err != nil {
			return nil, err
		}
		*tokens[role] = tok
		verb := "read from"
		if created {
			verb = "generated into"
		}
		fmt.Fprintf(stdout, "fest serve: %s token %s %s\n", role, verb, path)
	}
	srv, err := server.New(server.Config{
		AdminToken: o.AdminToken, StorefrontToken: o.StorefrontToken, CarrierToken: o.CarrierToken, Logger: log,
		ReadHeaderTimeout: o.ReadHeaderTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		IdleTimeout: o.IdleTimeout, ShutdownTimeout: o.ShutdownTimeout, ConnectionsMax: o.ConnectionsMax, NetHTTPOnly: o.NetHTTPOnly,
		EventFeedsMax: o.EventFeedsMax, EventFeedWriteTimeout: o.EventFeedWriteTimeout,
		Node: o.clusterNode(), Address: o.Cluster.Advertise, Cluster: o.serverCluster(),
		RehearsalClock: o.RehearsalClock,
	})
	if err != nil {
		return nil, fmt.Errorf("configure server: %w", err)
	}
	// The assistant trains its models from the examples built into the
	// binary (a fraction of a second) and reads orders through the server
	// once recovery has attached the backend.
	asst, err := assistant.New(o.Assistant, srv.AssistantOrders(), srv.AssistantParcels())
	if err != nil {
		return nil, fmt.Errorf("start assistant: %w", err)
	}
	srv.AttachAssistant(asst)
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	rs := &runningServer{
		opts: o, srv: srv, log: log, stdout: stdout,
		URL:    "http://" + displayAddr(ln.Addr()),
		Tokens: map[string]string{"admin": o.AdminToken, "storefront": o.StorefrontToken, "carrier": o.CarrierToken},
		served: make(chan error, 1),
		opened: make(chan error, 1),

		nodeFailed: make(chan struct{}),
		closing:    make(chan struct{}),
	}
	rs.httpSrv = srv.HTTPServer(slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	go func() { rs.served <- rs.httpSrv.Serve(srv.LimitListener(ln)) }()
	fmt.Fprintf(stdout, "fest serve: listening on %s (data %s, payment timeout %v)\n", rs.URL, o.Data, o.PaymentTimeout)
	go func() { rs.opened <- rs.open() }()
	return rs, nil
}

// open recovers the engine and starts the order store.
func (rs *runningServer) open() error {
	start := time.Now()
	fmt.Fprintf(rs.stdout, "fest serve: recovering from %s ...\n", rs.opts.Data)
	if err := rs.openBackend(); err != nil {
		return err
	}
	fmt.Fprintf(rs.stdout, "fest serve: ready in %v (%d partitions, %d SKUs, journal at byte %d)\n",
		time.Since(start).Round(time.Millisecond), rs.eng.Partitions(), rs.eng.SKUCount(), rs.eng.Durable())
	return nil
}

// openBackend opens the order store, the read models and the engine, and
// attaches them to the server: at start, and again when a cluster node
// rejoins in place (servecluster.go).
func (rs *runningServer) openBackend() error {
	if rs.opts.Cluster.Journal == "nats" {
		// In cluster mode the read models are rebuilt from the streams at
		// every start (no projection snapshots): the order store's cold
		// tier left by the last run would hold orders twice.
		if err := os.RemoveAll(filepath.Join(rs.opts.Data, "orders")); err != nil {
			return fmt.Errorf("clear the order store's cold tier: %w", err)
		}
	}
	store, err := orders.Open(orders.Config{Dir: filepath.Join(rs.opts.Data, "orders"), MemoryBytes: rs.opts.OrdersMemory, Logger: rs.log})
	if err != nil {
		return fmt.Errorf("open order store: %w", err)
	}
	board, err := gmv.New(gmv.Config{MilestoneThresholds: rs.opts.GMVMilestones})
	if err != nil {
		store.Close()
		return fmt.Errorf("open gmv projection: %w", err)
	}
	// Parcels judge staleness by the engine's clock (the wall clock).
	parcels, err := logistics.New(logistics.Config{StaleAfter: rs.opts.ParcelStaleAfter, Now: func() int64 { return time.Now().UnixNano() }})
	if err != nil {
		store.Close()
		return fmt.Errorf("open logistics: %w", err)
	}
	channels, err := live.New(live.Config{})
	if err != nil {
		store.Close()
		return fmt.Errorf("open live projection: %w", err)
	}
	now, err := testClock()
	if err != nil {
		store.Close()
		return err
	}
	// Every read model is one registration with the runner.
	proj, err := projection.New(projection.Config{Dir: filepath.Join(rs.opts.Data, "projections"), Logger: rs.log, SnapshotEveryBytes: rs.opts.ReadSnapshotEveryBytes}, store, board, parcels, channels)
	if err != nil {
		store.Close()
		return fmt.Errorf("open projections: %w", err)
	}
	var eng *engine.Engine
	if rs.opts.Cluster.Journal == "nats" {
		eng, err = rs.openCluster(now)
	} else {
		eng, err = engine.Open(engine.Config{
			Dir:            rs.opts.Data,
			Partitions:     rs.opts.Partitions,
			PaymentTimeout: rs.opts.PaymentTimeout,
			RehearsalClock: rs.opts.RehearsalClock,
			// The fsyncs feed the latency histogram of /metrics.
			JournalFsync: func(f vfs.File) error {
				t := time.Now()
				err := f.Sync()
				rs.srv.ObserveFsync(time.Since(t))
				return err
			},
			RetainFrom:               proj.Retain,
			FS:                       newSnapshotTimer(vfs.OS, rs.opts.Data, rs.srv.ObserveSnapshot),
			SnapshotEveryBytes:       rs.opts.SnapshotEveryBytes,
			IdempotencyWindow:        rs.opts.IdempotencyWindow,
			IdempotencyMintedAgeMax:  rs.opts.IdempotencyMintedAgeMax,
			IdempotencyMintedSkewMax: rs.opts.IdempotencyMintedSkewMax,
			SegmentBytesMax:          rs.opts.SegmentBytesMax,
			RecordVersion:            rs.opts.RecordVersion,
			Logger:                   rs.log,
			Now:                      now, // nil: the wall clock
		})
	}
	if err != nil {
		store.Close()
		return fmt.Errorf("open engine: %w", err)
	}
	proj.Start(eng)
	rs.eng, rs.store, rs.board, rs.projections = eng, store, board, proj
	if rs.cluster != nil {
		rs.srv.AttachCluster(eng, rs.cluster.node.Leases())
	}
	rs.srv.Attach(eng, proj, store)
	rs.srv.AttachGMV(board)
	rs.srv.AttachLogistics(parcels)
	rs.srv.AttachLive(channels)
	return nil
}

// wait serves until ctx ends or something fails, then shuts down.
func (rs *runningServer) wait(ctx context.Context) error {
	var runErr error
	opened := rs.opened
	for runErr == nil {
		select {
		case <-ctx.Done():
			return rs.shutdown(nil)
		case err := <-rs.served:
			return rs.shutdown(fmt.Errorf("http server: %w", err))
		case err := <-opened:
			opened = nil
			runErr = err
		case <-rs.nodeFailed:
			return rs.shutdown(fmt.Errorf("cluster node stopped, restart it: %w", rs.cluster.failure()))
		}
	}
	return rs.shutdown(runErr)
}

// shutdown stops accepting, lets in-flight requests finish, then closes the
// order store and the engine (final fsync and snapshot).
func (rs *runningServer) shutdown(cause error) error {
	fmt.Fprintln(rs.stdout, "fest serve: shutting down ...")
	ctx, cancel := context.WithTimeout(context.Background(), rs.opts.ShutdownTimeout)
	defer cancel()
	errs := []error{cause}
	if err := rs.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	// unbounded is the time of the waits below that the timeout does not
	// bound: the single orders' wait in Detach gets it back.
	var unbounded time.Duration
	if rs.opened != nil && rs.eng == nil && cause == nil {
		// Recovery still running: let it finish so the engine is closed
		// cleanly rather than abandoned mid-replay.
		t := time.Now()
		if err := <-rs.opened; err != nil {
			errs = append(errs, err)
		}
		unbounded += time.Since(t)
	}
	close(rs.closing)
	if rs.cluster != nil {
		// A rejoin in progress ends first (it sees closing and stops).
		t := time.Now()
		rs.cluster.mu.Lock()
		defer rs.cluster.mu.Unlock()
		unbounded += time.Since(t)
	}
	detachCtx := ctx
	if deadline, ok := ctx.Deadline(); ok && unbounded > 0 {
		var cancelDetach context.CancelFunc
		detachCtx, cancelDetach = context.WithDeadline(context.Background(), deadline.Add(unbounded))
		defer cancelDetach()
	}
	rs.srv.DetachContext(detachCtx)
	if rs.cluster != nil {
		// Hand every lease off before the read models stop: the other
		// nodes take over at once.
		if err := rs.cluster.closeNode(rs.opts.ShutdownTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if err := rs.closeReadModels(); err != nil {
		errs = append(errs, err)
	}
	if rs.cluster != nil {
		if err := rs.cluster.close(); err != nil { // the node closed the engine
			errs = append(errs, err)
		}
	} else if rs.eng != nil {
		if err := rs.eng.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close engine: %w", err))
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		fmt.Fprintln(rs.stdout, "fest serve: stopped cleanly")
	}
	return err
}

// closeReadModels stops the read models and closes the order store: at
// shutdown, and before a cluster node's rejoin opens them again.
func (rs *runningServer) closeReadModels() error {
	if rs.projections != nil {
		rs.projections.Close()
	}
	if rs.store != nil {
		if err := rs.store.Close(); err != nil {
			return fmt.Errorf("close order store: %w", err)
		}
	}
	return nil
}

// loadOrCreateToken returns the role's token stored in the data directory,
// generating it on first start.
func loadOrCreateToken(data, role string) (tok, path string, created bool, err error) {
	dir := filepath.Join(data, "tokens")
	path = filepath.Join(dir, role+".token")
	b, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, path, false, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", path, false, fmt.Errorf("read %s token: %w", role, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", path, false, fmt.Errorf("create token directory: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", path, false, fmt.Errorf("generate %s token: %w", role, err)
	}
	tok = role[:2] + "_" + hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", path, false, fmt.Errorf("store %s token: %w", role, err)
	}
	return tok, path, true, nil
}

// displayAddr turns a listener address into one a browser can open.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		return net.JoinHostPort("localhost", strconv.Itoa(tcp.Port))
	}
	return tcp.String()
}
