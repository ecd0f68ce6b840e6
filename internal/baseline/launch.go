package baseline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// ErrNotInstalled is returned by the launchers when a server's binaries are
// missing: scripts/baselines.sh install puts them there.
var ErrNotInstalled = errors.New("not installed (run scripts/baselines.sh install)")

// Server is a throwaway database server started on loopback; Stop ends it.
type Server struct {
	// Addr is the URL (PostgreSQL) or host:port (Redis) to connect to.
	Addr string
	stop func() error
}

// Stop ends the server.
func (s *Server) Stop() error { return s.stop() }

// startTimeout bounds a server's start-up.
const startTimeout = 60 * time.Second

// FreePort asks the kernel for a free loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("postgresql: %w", ErrNotInstalled)
}

// Debian packages of the servers StartPostgres and StartRedis run.
const (
	PostgresPackage = "postgresql"
	RedisPackage    = "redis-server"
)

// CheckPostgres reports whether StartPostgres can run here: PostgreSQL's
// initdb and pg_ctl under /usr/lib/postgresql, and, as root, runuser and a
// postgres user to run them as. A missing part is ErrNotInstalled, named.
func CheckPostgres() error {
	if _, err := pgBinDir(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return fmt.Errorf("postgresql: runuser (package util-linux): %w", ErrNotInstalled)
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return fmt.Errorf("postgresql: no postgres user: %w", ErrNotInstalled)
	}
	return nil
}

// CheckRedis reports whether StartRedis can run here: redis-server on the
// PATH, else ErrNotInstalled.
func CheckRedis() error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("redis-server: %w", ErrNotInstalled)
	}
	return nil
}

// asPostgres runs a PostgreSQL tool as the postgres user when we are root
// (PostgreSQL refuses to run as root).
func asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

// StartPostgres initialises a cluster under dir and starts it on loopback
// at port, with synchronous_commit on.
func StartPostgres(ctx context.Context, dir string, port int) (*Server, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	pgdir := filepath.Join(dir, "pg")
	data := filepath.Join(pgdir, "data")
	if err := os.MkdirAll(pgdir, 0o755); err != nil {
		return nil, fmt.Errorf("make postgres dir: %w", err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("postgres user: %w", ErrNotInstalled)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(pgdir, uid, gid); err != nil {
			return nil, fmt.Errorf("chown postgres dir: %w", err)
		}
		// The postgres user must be able to walk down to its directory.
		for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, st.Mode().Perm()|0o001)
			}
		}
	}
	if out, err := asPostgres(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c synchronous_commit=on -c fsync=on -c max_connections=200 -c shared_buffers=256MB", port, pgdir)
	cctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if out, err := asPostgres(cctx, filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(pgdir, "server.log"), "-w", "-t", "60", "-o", opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(pgdir, "server.log"))
		return nil, fmt.Errorf("pg_ctl start: %w: %s %s", err, out, tail(log, 2000))
	}
	stop := func() error {
		out, err := asPostgres(context.Background(), filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
		}
		return nil
	}
	return &Server{Addr: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), stop: stop}, nil
}

// StartRedis starts redis-server on loopback at port with its AOF under dir,
// fsynced on every write.
func StartRedis(ctx context.Context, dir string, port int) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w", ErrNotInstalled)
	}
	rdir := filepath.Join(dir, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, fmt.Errorf("make redis dir: %w", err)
	}
	logf, err := os.Create(filepath.Join(rdir, "redis.log"))
	if err != nil {
		return nil, fmt.Errorf("create redis log: %w", err)
	}
	// Not CommandContext: the server outlives the start-up context and is
	// ended by Stop.
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", rdir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	stop := func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return nil
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return &Server{Addr: addr, stop: stop}, nil
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(filepath.Join(rdir, "redis.log"))
			return nil, fmt.Errorf("redis-server exited: %v: %s", err, tail(log, 2000))
		case <-ctx.Done():
			_ = stop()
			return nil, fmt.Errorf("wait for redis: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, fmt.Errorf("redis did not listen on %s within %v", addr, startTimeout)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
