package natsserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// waitMax bounds the checks' waits for answers; nothing asserts a duration.
const waitMax = 30 * time.Second

func TestEmbeddedServerIsSynchronous(t *testing.T) {
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Config{Name: "n1", Dir: t.TempDir(), MonitorPort: ports[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	if err := s.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	found, err := CheckSync(ctx, nil, []string{s.MonitorURL()}, waitMax)
	if err != nil {
		t.Fatalf("check the embedded server: %v", err)
	}
	if len(found) != 1 || !found[0].SyncAlways || found[0].Name != "n1" {
		t.Fatalf("embedded server reports %+v, want n1 with sync always", found)
	}

	// A client of the global account gets no system answers, and without
	// a monitoring URL nothing can be verified: that must be said.
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := CheckSync(ctx, nc, nil, 200*time.Millisecond); !errors.Is(err, ErrUnverified) {
		t.Fatalf("check without the system account: %v, want ErrUnverified", err)
	}
}

func TestCheckSyncRefusesTimerFsync(t *testing.T) {
	// An external server with the JetStream default: fsync every 2 minutes.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"server_name":"ext1","jetstream":{"config":{"max_memory":1,"sync_interval":120000000000}}}`))
	}))
	defer srv.Close()
	found, err := CheckSync(context.Background(), nil, []string{srv.URL}, waitMax)
	if !errors.Is(err, ErrNotSynchronous) {
		t.Fatalf("check of a timer-fsync server: %v, want ErrNotSynchronous", err)
	}
	if len(found) != 1 || found[0].SyncInterval != 2*time.Minute {
		t.Fatalf("found %+v", found)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"single", Config{Name: "a", Dir: "/d"}, true},
		{"cluster", Config{Name: "a", Dir: "/d", ClusterName: "c", ClusterPort: 6222, Routes: []string{"nats://127.0.0.1:6223"}}, true},
		{"no name", Config{Dir: "/d"}, false},
		{"no dir", Config{Name: "a"}, false},
		{"cluster without name", Config{Name: "a", Dir: "/d", ClusterPort: 6222}, false},
		{"routes without cluster", Config{Name: "a", Dir: "/d", Routes: []string{"nats://x:1"}}, false},
		{"bad route", Config{Name: "a", Dir: "/d", ClusterName: "c", ClusterPort: 1, Routes: []string{"::"}}, false},
		{"payload too large", Config{Name: "a", Dir: "/d", MaxPayloadBytes: 65 << 20}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func FuzzParseVarz(f *testing.F) {
	f.Add([]byte(`{"server_name":"n1","jetstream":{"config":{"sync_always":true,"sync_interval":120000000000}}}`))
	f.Add([]byte(`{"server_name":"n1","jetstream":{}}`))
	f.Add([]byte(`{"jetstream":{"config":null}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseVarz(b)
		if err != nil && s != (ServerSync{}) {
			t.Fatalf("error %v with a result %+v", err, s)
		}
	})
}

// TestRaftTimingsApplied: once a server has started, the embedded servers'
// Raft timings are fest's (raft.go), not nats-server's defaults, and they
// are sound.
func TestRaftTimingsApplied(t *testing.T) {
	s, err := Start(Config{Name: "raft", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := raftTimings(); got != DefaultRaftTimings {
		t.Fatalf("raft timings %+v, want %+v", got, DefaultRaftTimings)
	}
	for _, bad := range []RaftTimings{{}, {Heartbeat: time.Second, ElectionMin: 2 * time.Second, ElectionMax: 3 * time.Second}, {Heartbeat: 100 * time.Millisecond, ElectionMin: time.Second, ElectionMax: time.Second}} {
		if bad.Validate() == nil {
			t.Errorf("timings %+v accepted", bad)
		}
	}
}
