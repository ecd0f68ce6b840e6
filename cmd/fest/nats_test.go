package main

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNATSOptionsConfig(t *testing.T) {
	base := natsOptions{Name: "n1", Data: "/tmp/n1", Listen: "127.0.0.1:4222"}
	for _, tc := range []struct {
		name string
		edit func(*natsOptions)
		want string // a part of the error; "" for none
	}{
		{"single server", func(*natsOptions) {}, ""},
		{"clustered", func(o *natsOptions) {
			o.ClusterListen = "127.0.0.1:6222"
			o.Routes = "nats://127.0.0.1:6222, nats://127.0.0.1:6223,"
			o.MonitorListen = "127.0.0.1:8222"
		}, ""},
		{"no name", func(o *natsOptions) { o.Name = "" }, "--name is required"},
		{"no data", func(o *natsOptions) { o.Data = "" }, "--data is required"},
		{"bad listen", func(o *natsOptions) { o.Listen = "4222" }, `--listen "4222"`},
		{"bad port", func(o *natsOptions) { o.Listen = "127.0.0.1:70000" }, "bad port"},
		{"bad cluster listen", func(o *natsOptions) { o.ClusterListen = "x" }, `--cluster-listen "x"`},
		{"routes without cluster", func(o *natsOptions) { o.Routes = "nats://127.0.0.1:6222" }, "routes need a cluster port"},
		{"bad route", func(o *natsOptions) {
			o.ClusterListen = "127.0.0.1:6222"
			o.Routes = "127.0.0.1:6223"
		}, "is not a url"},
		{"monitor on another host", func(o *natsOptions) { o.MonitorListen = "0.0.0.0:8222" }, "must be on the host of --listen"},
		{"negative store", func(o *natsOptions) { o.MaxStoreBytes = -1 }, "negative store size"},
	} {
		o := base
		tc.edit(&o)
		cfg, err := o.config()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		case tc.want == "" && o.ClusterListen != "" && (cfg.ClusterName != "fest" || len(cfg.Routes) != 2 || cfg.MonitorPort != 8222):
			t.Errorf("%s: config %+v", tc.name, cfg)
		}
	}
}

// TestRunNATSFlags: fest nats refuses bad flags before starting anything.
func TestRunNATSFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data", t.TempDir()}, "--name is required"},
		{[]string{"--name", "n1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--name", "n1", "--max-store", "lots"}, `--max-store "lots"`},
	} {
		err := runNATS(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// lineWatch is an io.Writer that closes seen once a write contains want.
type lineWatch struct {
	mu   sync.Mutex
	b    strings.Builder
	want string
	seen chan struct{}
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.want) && w.seen != nil {
		close(w.seen)
		w.seen = nil
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRunNATSSingle: a single fest nats server starts with JetStream,
// says so, and stops when its context ends.
func TestRunNATSSingle(t *testing.T) {
	seen := make(chan struct{})
	out := &lineWatch{want: "fest nats: jetstream ready on n1", seen: seen}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runNATS(ctx, []string{"--name", "n1", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, out, io.Discard)
	}()
	select {
	case <-seen:
	case err := <-done:
		t.Fatalf("fest nats ended: %v\n%s", err, out)
	case <-time.After(30 * time.Second):
		t.Fatalf("fest nats not ready:\n%s", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("fest nats: %v", err)
	}
	if !strings.Contains(out.String(), "fest nats: server n1 stopped") {
		t.Fatalf("no stop line:\n%s", out)
	}
}
