package loadgen

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fest-platform/fest/internal/baseline"
	"github.com/fest-platform/fest/internal/festival"
)

// Flash profile sizes: the 10,000 buyers on one livestream deal of
// 500 units, which carries its SKU's whole stock (so a baseline without
// deals sells the same 500 units of the SKU).
const (
	FlashBuyers = 10_000
	FlashStock  = 500
)

// BuildModel generates the model a profile runs: the calibrated festival,
// the same catalog with ample stock for the open-ended midnight profile, or
// the single flash-sale SKU.
func BuildModel(profile string, seed uint64, scale float64) (*festival.Model, error) {
	if profile == ProfileFlash {
		return festival.NewFlash(seed, FlashBuyers, FlashStock)
	}
	c := festival.DefaultConfig()
	c.Seed = seed
	c.Scale = scale
	c.AmpleStock = profile == ProfileMidnight
	m, err := festival.New(c)
	if err != nil {
		return nil, fmt.Errorf("build %s model: %w", profile, err)
	}
	return m, nil
}

// FestServer is a fest server started by the driver for --compare.
type FestServer struct {
	Addr   string
	Tokens [3]string // admin, storefront, carrier
	cmd    *exec.Cmd
	done   chan error
}

// StartFest runs `bin serve` on a free loopback port with data under dir
// and the given tokens, and waits until /readyz answers.
func StartFest(ctx context.Context, bin, dir string, tokens [3]string, log io.Writer) (*FestServer, error) {
	port, err := baseline.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	data := filepath.Join(dir, "fest")
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data", data,
		"--admin-token", tokens[0], "--storefront-token", tokens[1], "--carrier-token", tokens[2])
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start fest serve: %w", err)
	}
	s := &FestServer{Addr: addr, Tokens: tokens, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	t, err := NewHTTPTarget(HTTPConfig{Addr: addr, Transport: TransportJSON, Batch: 1, InFlight: 1, PayParallel: 1, ImportChunkBytes: 1 << 20, Timeout: time.Second})
	if err != nil {
		s.Stop()
		return nil, err
	}
	defer t.Close()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- t.Ready(rctx) }()
	select {
	case err := <-ready:
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("fest serve: %w", err)
		}
	case err := <-s.done:
		s.done <- err
		return nil, fmt.Errorf("fest serve exited before ready: %v", err)
	}
	return s, nil
}

// Stop interrupts the server and waits for it (killing it after 30 s).
func (s *FestServer) Stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// CompareConfig is a --compare run: fest, PostgreSQL and Redis one after
// another on the same workload. Empty addresses start a server of that kind
// under TempDir.
type CompareConfig struct {
	FestBinary  string // the fest executable (os.Executable)
	TempDir     string
	HTTP        HTTPConfig // fest's address (empty: start one) and tokens
	PostgresURL string
	RedisAddr   string
	// ServerLog receives the started servers' output.
	ServerLog io.Writer
}

// Validate reports the first thing wrong with c.
func (c CompareConfig) Validate() error {
	if c.TempDir == "" {
		return errors.New("compare needs a temporary directory")
	}
	if c.HTTP.Addr == "" && c.FestBinary == "" {
		return errors.New("compare needs a fest address or the fest binary to start")
	}
	return nil
}

// CheckTargets reports whether every target of a comparison can start
// before any runs: the fest binary when no fest address is given, and
// PostgreSQL and Redis when no URL or address is given for them. The error
// names everything missing and how to install it.
func (c CompareConfig) CheckTargets() error {
	var missing []string
	var packages []string
	if c.HTTP.Addr == "" {
		if fi, err := os.Stat(c.FestBinary); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, fmt.Sprintf("the fest binary %q cannot be run (give --addr of a running fest serve)", c.FestBinary))
		}
	}
	if c.PostgresURL == "" {
		if err := baseline.CheckPostgres(); err != nil {
			missing = append(missing, err.Error()+" (or give --postgres-url)")
			packages = append(packages, baseline.PostgresPackage)
		}
	}
	if c.RedisAddr == "" {
		if err := baseline.CheckRedis(); err != nil {
			missing = append(missing, err.Error()+" (or give --redis-addr)")
			packages = append(packages, baseline.RedisPackage)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	msg := "cannot start every target of the comparison, so none was run: " + strings.Join(missing, "; ")
	if len(packages) > 0 {
		msg += fmt.Sprintf(". Install with: apt-get install -y %s (as root), or scripts/baselines.sh install", strings.Join(packages, " "))
	}
	return fmt.Errorf("%w: %s", ErrTargetsMissing, msg)
}

// ErrTargetsMissing is returned by Compare when a target cannot start.
var ErrTargetsMissing = errors.New("compare")

// Compare runs the workload against fest, postgres, redis (appendfsync
// always) and redis (everysec), in that order, and returns the results.
// It first checks that every target can start (CheckTargets) and runs none
// if one cannot. A target that fails to set up all the same ends the
// comparison with an error; the results so far are returned with it.
func Compare(ctx context.Context, cfg Config, cc CompareConfig, m *festival.Model) ([]*Result, error) {
	if err := cc.Validate(); err != nil {
		return nil, fmt.Errorf("compare config: %w", err)
	}
	if err := cc.CheckTargets(); err != nil {
		return nil, err
	}
	say := cfg.Say
	if say == nil {
		say = func(string) {}
	}
	logw := cc.ServerLog
	if logw == nil {
		logw = io.Discard
	}
	var runs []*Result

	// fest.
	hc := cc.HTTP
	if hc.Addr == "" {
		tokens := [3]string{"admin-" + randToken(), "store-" + randToken(), "carrier-" + randToken()}
		say("starting fest serve on a temporary directory")
		fs, err := StartFest(ctx, cc.FestBinary, cc.TempDir, tokens, logw)
		if err != nil {
			return runs, err
		}
		defer fs.Stop()
		hc.Addr = fs.Addr
		hc.AdminToken, hc.StorefrontToken, hc.CarrierToken = tokens[0], tokens[1], tokens[2]
	}
	ft, err := NewHTTPTarget(hc)
	if err != nil {
		return runs, err
	}
	res, err := runOne(ctx, cfg, m, ft)
	if res != nil {
		runs = append(runs, res)
	}
	if err != nil {
		return runs, err
	}

	// PostgreSQL.
	pgURL := cc.PostgresURL
	if pgURL == "" {
		port, err := baseline.FreePort()
		if err != nil {
			return runs, err
		}
		say("starting postgres on loopback")
		srv, err := baseline.StartPostgres(ctx, cc.TempDir, port)
		if err != nil {
			return runs, fmt.Errorf("start postgres: %w", err)
		}
		defer srv.Stop()
		pgURL = srv.Addr
	}
	pg, err := baseline.OpenPostgres(ctx, baseline.DefaultPostgresConfig(pgURL))
	if err != nil {
		return runs, err
	}
	res, err = runOne(ctx, cfg, m, NewStoreTarget(pg))
	if res != nil {
		runs = append(runs, res)
	}
	if err != nil {
		return runs, err
	}

	// Redis, fsync always then everysec.
	raddr := cc.RedisAddr
	if raddr == "" {
		port, err := baseline.FreePort()
		if err != nil {
			return runs, err
		}
		say("starting redis on loopback")
		srv, err := baseline.StartRedis(ctx, cc.TempDir, port)
		if err != nil {
			return runs, fmt.Errorf("start redis: %w", err)
		}
		defer srv.Stop()
		raddr = srv.Addr
	}
	for _, fsync := range []string{"always", "everysec"} {
		rc := baseline.DefaultRedisConfig(raddr)
		rc.AppendFsync = fsync
		rd, err := baseline.OpenRedis(ctx, rc)
		if err != nil {
			return runs, err
		}
		res, err = runOne(ctx, cfg, m, NewStoreTarget(rd))
		if res != nil {
			runs = append(runs, res)
		}
		if err != nil {
			return runs, err
		}
	}
	return runs, nil
}

// RunTarget prepares target (loads the catalog), runs the workload and
// closes the target.
func RunTarget(ctx context.Context, cfg Config, m *festival.Model, target Target) (*Result, error) {
	return runOne(ctx, cfg, m, target)
}

func runOne(ctx context.Context, cfg Config, m *festival.Model, t Target) (*Result, error) {
	defer t.Close()
	if err := t.Prepare(ctx, m, cfg.Say); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", t.Name(), err)
	}
	if cfg.Say != nil {
		cfg.Say(fmt.Sprintf("running %s on %s", cfg.Profile, t.Name()))
	}
	res, err := Run(ctx, cfg, m, t)
	if err != nil {
		return res, fmt.Errorf("run %s: %w", t.Name(), err)
	}
	return res, nil
}

func randToken() string { return rand.Text() }
