package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/fest-platform/fest/client"
	"github.com/fest-platform/fest/internal/baseline"
	"github.com/fest-platform/fest/internal/loadgen"
)

const loadUsage = `fest load drives the festival workload against a fest server (or a baseline),
checks every answer, audits the books and reports.

Usage:
  fest load [flags]                        against the fest server at --addr
  fest load --target postgres|redis ...    against a baseline (see docs/load.md)
  fest load --compare ...                  fest, PostgreSQL and Redis on the same workload

Flags:
`

// runLoad is `fest load`: flags (with FEST_* fallbacks) into the loadgen
// configs, then one run or a comparison, then the reports.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fest load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, loadUsage); printDefaultsExcept(fs, "cpuprofile") }
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	hd := loadgen.DefaultHTTPConfig()
	var (
		addr       = fs.String("addr", env("FEST_ADDR", hd.Addr), "fest server address (FEST_ADDR)")
		adminTok   = fs.String("admin-token", env("FEST_ADMIN_TOKEN", ""), "admin token (FEST_ADMIN_TOKEN)")
		storeTok   = fs.String("storefront-token", env("FEST_STOREFRONT_TOKEN", ""), "storefront token (FEST_STOREFRONT_TOKEN)")
		carrierTok = fs.String("carrier-token", env("FEST_CARRIER_TOKEN", ""), "carrier token (FEST_CARRIER_TOKEN)")
		profile    = fs.String("profile", env("FEST_LOAD_PROFILE", loadgen.ProfileFestival), "festival, midnight or flash")
		scale      = fs.Float64("scale", 0.0001, "fraction of the real festival (1.0 = 2.32 billion paid orders)")
		seed       = fs.Uint64("seed", 2020, "model seed: the same seed, the same festival")
		speed      = fs.Float64("speed", 20_000, "festival profile: festival seconds per wall second (0: as fast as possible)")
		rate       = fs.String("rate", "max", "midnight profile: orders per second, or max")
		duration   = fs.Duration("duration", 0, "midnight: run length (default 30s); festival and flash: a cap (default 30m)")
		target     = fs.String("target", "fest", "fest, postgres, redis or redis-everysec")
		compare    = fs.Bool("compare", false, "run fest, postgres and redis one after another on the same workload")
		pgURL      = fs.String("postgres-url", env("FEST_POSTGRES_URL", ""), "PostgreSQL URL for --target postgres / --compare (FEST_POSTGRES_URL; compare starts one if empty)")
		redisAddr  = fs.String("redis-addr", env("FEST_REDIS_ADDR", ""), "Redis host:port for --target redis / --compare (FEST_REDIS_ADDR; compare starts one if empty)")
		transport  = fs.String("transport", hd.Transport, "to fest: binary (batched protobuf), json-batch, or json (one request per order)")
		batch      = fs.Int("batch", hd.Batch, "orders per batch request")
		inFlight   = fs.Int("inflight", hd.InFlight, "batches in flight (json: concurrent requests; default 64)")
		payPar     = fs.Int("pay-parallel", hd.PayParallel, "--transport json: payment requests in flight per batch (the batched transports settle a batch in one request)")
		payAfter   = fs.String("pay-after", "auto", "defer payments until the placement window closes: true, false, or auto (midnight on a target that pays one order per request: the baselines, --transport json)")
		payWindow  = fs.Duration("pay-window", 20*time.Second, "with deferred payments: how long the pay phase may run")
		scanWindow = fs.Duration("scan-window", loadgen.DefaultConfig().ScanWindow, "fest: after the orders, how long carriers scan the paid orders' parcels through their states (0: no scans)")
		scanMax    = fs.Int("scan-parcels-max", loadgen.DefaultConfig().ScanParcelsMax, "fest: parcels the carriers scan at most (the first paid)")
		jsonOut    = fs.Bool("json", false, "end with one JSON line: the result")
		report     = fs.String("report", "", "write an HTML report with plots to this file")
		quiet      = fs.Bool("quiet", false, "no live progress")
		questions  = fs.String("questions", "auto", "assistant questions per second beside the orders of a single run against fest: a number, 0 (none), or auto (the festival profile: 2.1 billion × scale over the festival, at --speed; other profiles: none)")
		rehearsal  = fs.Bool("rehearsal-clock", false, "festival profile against fest serve --rehearsal-clock: give each order, payment and cancellation its festival time, so the server's board tells the peak second too (binary transport; default: on when the server runs on the rehearsal clock)")
		// cpuprofile is hidden from the usage: it is for whoever tunes the
		// generator (its CPU per order is in the reports), not for a rehearsal.
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile of this process's order phase to this file")
		festAddrSet bool
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("load: unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { festAddrSet = festAddrSet || f.Name == "addr" })
	festAddrSet = festAddrSet || os.Getenv("FEST_ADDR") != ""

	// Resolve the run's config.
	lc := loadgen.DefaultConfig()
	lc.Profile = *profile
	lc.Speed = *speed
	switch *rate {
	case "max", "":
		lc.Rate = 0
	default:
		r, err := strconv.ParseFloat(*rate, 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("load: --rate %q: want a positive number or max", *rate)
		}
		lc.Rate = r
	}
	lc.Duration = *duration
	if lc.Duration == 0 {
		lc.Duration = 30 * time.Minute
		if lc.Profile == loadgen.ProfileMidnight {
			lc.Duration = 30 * time.Second
		}
	}
	switch *payAfter {
	case "auto":
		if *compare {
			// Side by side, every target does the same work: the baselines
			// pay one order per request, so all defer payments alike.
			lc.PayAfter = lc.Profile == loadgen.ProfileMidnight
			break
		}
		// Decided per target: midnight defers payments only where they
		// cost a request each (the baselines, --transport json).
		lc.PayAfterAuto = true
	case "true", "false":
		lc.PayAfter = *payAfter == "true"
	default:
		return fmt.Errorf("load: --pay-after %q: want true, false or auto", *payAfter)
	}
	lc.PayWindow = *payWindow
	lc.ScanWindow, lc.ScanParcelsMax = *scanWindow, *scanMax
	if !*quiet {
		// Progress goes to stderr, beside the reports on stdout: a bar when
		// stderr is a terminal, plain lines when it is a file or a pipe.
		lc.Progress = stderr
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			lc.ProgressTTY = true
		}
		lc.OnProgress = newLoadProgress(stderr, lc.ProgressTTY).update
		lc.Say = func(s string) {
			if lc.ProgressTTY {
				fmt.Fprint(stderr, "\r\033[K")
			}
			fmt.Fprintln(stderr, "fest load:", s)
		}
	}
	setLoadGCPercent()
	if *cpuProfile != "" {
		stop, err := profileOrderPhase(&lc, *cpuProfile)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		defer stop()
	}
	if err := lc.Validate(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	hc := hd
	hc.Addr, hc.AdminToken, hc.StorefrontToken, hc.CarrierToken = *addr, *adminTok, *storeTok, *carrierTok
	hc.Transport, hc.Batch, hc.InFlight, hc.PayParallel = *transport, *batch, *inFlight, *payPar
	hc.RehearsalClock = *rehearsal
	// The festival profile follows the server's clock unless told.
	hc.RehearsalClockAuto = lc.Profile == loadgen.ProfileFestival && !isSet(fs, "rehearsal-clock")
	if *rehearsal && lc.Profile != loadgen.ProfileFestival {
		return fmt.Errorf("load: --rehearsal-clock is for the festival profile, which has festival times")
	}
	if hc.Transport == loadgen.TransportJSON && !isSet(fs, "inflight") {
		hc.InFlight = baseline.Clients
	}
	if err := hc.Validate(); err != nil {
		return fmt.Errorf("load: %w", err)
	}

	if lc.Say != nil {
		lc.Say(fmt.Sprintf("generating the %s model (scale %g, seed %d)", lc.Profile, *scale, *seed))
	}
	m, err := loadgen.BuildModel(lc.Profile, *seed, *scale)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}

	var runs []*loadgen.Result
	var runErr error
	var qs *questionStream
	if *compare {
		tmp, err := os.MkdirTemp("", "fest-compare-")
		if err != nil {
			return fmt.Errorf("load: make temp dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("load: find the fest binary: %w", err)
		}
		cc := loadgen.CompareConfig{FestBinary: exe, TempDir: tmp, HTTP: hc, PostgresURL: *pgURL, RedisAddr: *redisAddr}
		if !festAddrSet {
			cc.HTTP.Addr = ""
		}
		runs, runErr = loadgen.Compare(ctx, lc, cc, m)
	} else {
		t, err := newLoadTarget(ctx, *target, hc, *pgURL, *redisAddr)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		qrate, err := questionRate(*questions, lc, *target, *scale)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		qs, err = startQuestions(ctx, qrate, hc, m.Buyers, *seed)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		res, err := loadgen.RunTarget(ctx, lc, m, t)
		if res != nil {
			runs = append(runs, res)
		}
		runErr = err
		qs.stop()
	}

	// Reports: text for each run, the comparison table, HTML, JSON last.
	for _, r := range runs {
		if err := loadgen.WriteText(stdout, r); err != nil {
			return fmt.Errorf("load: write report: %w", err)
		}
	}
	if qs != nil {
		qs.report(stdout)
	}
	if *compare && len(runs) > 0 {
		if err := loadgen.WriteCompareText(stdout, runs); err != nil {
			return fmt.Errorf("load: write report: %w", err)
		}
	}
	if *report != "" && len(runs) > 0 {
		if err := writeHTMLReport(*report, runs); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	}
	if *jsonOut && len(runs) > 0 {
		var err error
		if *compare {
			err = loadgen.WriteCompareJSON(stdout, runs)
		} else {
			err = loadgen.WriteJSON(stdout, runs[0])
		}
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
	}
	if runErr != nil {
		return fmt.Errorf("load: %w", runErr)
	}
	var failed []string
	for _, r := range runs {
		if !r.Audit.OK {
			failed = append(failed, r.Target)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("load: audit failed on %s", strings.Join(failed, ", "))
	}
	return nil
}

// questionRate resolves --questions: auto is the published 2.1 billion
// questions scaled like the orders, on the festival profile against fest.
func questionRate(flagValue string, lc loadgen.Config, target string, scale float64) (float64, error) {
	if flagValue == "auto" {
		if lc.Profile != loadgen.ProfileFestival || target != "fest" || lc.Speed <= 0 {
			return 0, nil
		}
		return loadgen.QuestionRate(scale, lc.Speed), nil
	}
	r, err := strconv.ParseFloat(flagValue, 64)
	if err != nil || r < 0 {
		return 0, fmt.Errorf("--questions %q: want a rate, 0 or auto", flagValue)
	}
	if r > 0 && target != "fest" {
		return 0, fmt.Errorf("--questions: the baselines have no assistant (--target %s)", target)
	}
	return r, nil
}

// questionStream is the assistant's question stream of a run.
type questionStream struct {
	rate   float64
	cancel context.CancelFunc
	done   chan struct{}
	res    *loadgen.QuestionResult
	err    error
	client *client.Client
}

// startQuestions starts asking at rate (none when 0) until report.
func startQuestions(ctx context.Context, rate float64, hc loadgen.HTTPConfig, buyers int, seed uint64) (*questionStream, error) {
	qs := &questionStream{rate: rate, done: make(chan struct{})}
	if rate == 0 {
		close(qs.done)
		return qs, nil
	}
	c, err := client.New(client.Config{Addr: hc.Addr, Token: hc.StorefrontToken, Conns: 1})
	if err != nil {
		return nil, fmt.Errorf("assistant questions: %w", err)
	}
	ask := func(ctx context.Context, buyer, session, text string) (string, bool, error) {
		r, err := c.Ask(ctx, client.AssistantMessage{BuyerID: buyer, SessionID: session, Text: text})
		return r.Language, r.Handoff, err
	}
	qctx, cancel := context.WithCancel(ctx)
	qs.cancel, qs.client = cancel, c
	go func() {
		defer close(qs.done)
		qs.res, qs.err = loadgen.RunQuestions(qctx, loadgen.QuestionConfig{Rate: rate, Buyers: max(buyers, 1), Seed: seed}, ask)
	}()
	return qs, nil
}

// stop ends the stream and waits for its last answers.
func (qs *questionStream) stop() {
	if qs.cancel == nil {
		return
	}
	qs.cancel()
	<-qs.done
	qs.client.Close()
}

// report prints what the stream did (nothing when it did not run).
func (qs *questionStream) report(w io.Writer) {
	if qs.cancel == nil {
		return
	}
	if qs.err != nil {
		fmt.Fprintf(w, "assistant: %v\n", qs.err)
		return
	}
	r := qs.res
	fmt.Fprintf(w, "assistant: %d questions in %v (%.0f/s, target %.0f/s): %d answered, %d failed, %d handed off, %d answered in another language; latency p50 %v p99 %v; by language en %d zh %d vi %d\n",
		r.Sent, r.Elapsed.Round(time.Millisecond), float64(r.Sent)/r.Elapsed.Seconds(), qs.rate, r.Answered, r.Failed, r.Handoffs, r.Mislabelled,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.ByLanguage["en"], r.ByLanguage["zh"], r.ByLanguage["vi"])
	if r.FirstError != "" {
		fmt.Fprintf(w, "assistant: first failure: %s\n", r.FirstError)
	}
}

// printDefaultsExcept is fs.PrintDefaults without the hidden flags.
func printDefaultsExcept(fs *flag.FlagSet, hidden ...string) {
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shown.SetOutput(fs.Output())
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(hidden, f.Name) {
			shown.Var(f.Value, f.Name, f.Usage)
		}
	})
	shown.PrintDefaults()
}

// profileOrderPhase writes a CPU profile of this process's order phase to
// path: from the run's first progress sample (a second in, past the
// catalog import) to its last, so that neither the import nor the audit
// and the carrier phase blur the generator's cost per order. stop ends a
// profile still running (a run that failed) and closes the file.
func profileOrderPhase(lc *loadgen.Config, path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	var started, stopped bool
	next := lc.OnProgress
	lc.OnProgress = func(p loadgen.Progress) {
		switch {
		case !started && !p.Done:
			started = pprof.StartCPUProfile(f) == nil
		case started && !stopped && p.Done:
			pprof.StopCPUProfile()
			stopped = true
		}
		if next != nil {
			next(p)
		}
	}
	return func() {
		if started && !stopped {
			pprof.StopCPUProfile()
		}
		f.Close()
	}, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// newLoadTarget opens the target of a single run.
func newLoadTarget(ctx context.Context, name string, hc loadgen.HTTPConfig, pgURL, redisAddr string) (loadgen.Target, error) {
	switch name {
	case "fest":
		return loadgen.NewHTTPTarget(hc)
	case "postgres":
		if pgURL == "" {
			return nil, errors.New("--target postgres needs --postgres-url or FEST_POSTGRES_URL (scripts/baselines.sh start prints one)")
		}
		s, err := baseline.OpenPostgres(ctx, baseline.DefaultPostgresConfig(pgURL))
		if err != nil {
			return nil, err
		}
		return loadgen.NewStoreTarget(s), nil
	case "redis", "redis-everysec":
		if redisAddr == "" {
			return nil, errors.New("--target redis needs --redis-addr or FEST_REDIS_ADDR (scripts/baselines.sh start prints one)")
		}
		rc := baseline.DefaultRedisConfig(redisAddr)
		if name == "redis-everysec" {
			rc.AppendFsync = "everysec"
		}
		s, err := baseline.OpenRedis(ctx, rc)
		if err != nil {
			return nil, err
		}
		return loadgen.NewStoreTarget(s), nil
	}
	return nil, fmt.Errorf("unknown target %q (want fest, postgres, redis or redis-everysec)", name)
}

func writeHTMLReport(path string, runs []*loadgen.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	if err := loadgen.WriteHTML(f, runs); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close report: %w", err)
	}
	return nil
}

// setLoadGCPercent gives fest load the server's GOGC (gcPercentDefault)
// unless GOGC is set. The generator's heap is mostly the festival model
// (catalog, buyers) and the audit's per-SKU books, live for the whole run,
// while its garbage is the HTTP client's per-request objects: at Go's
// default of 100 the collector marked that live heap 20 times in 10 s of
// the midnight profile, 731 ns of CPU an order; at 400, 6 times and 273 ns
// (docs/load.md).
func setLoadGCPercent() {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		return
	}
	debug.SetGCPercent(gcPercentDefault)
}
