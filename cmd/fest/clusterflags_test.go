package main

import (
	"io"
	"strings"
	"testing"
)

func TestClusterFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // a part of the error; "" for none
	}{
		{nil, ""},
		{[]string{"--journal", "file"}, ""},
		{[]string{"--journal", "kafka"}, `--journal "kafka": want one of file, nats`},
		{[]string{"--nats-url", "nats://x:4222"}, "the --nats-* flags need --journal nats"},
		{[]string{"--journal", "nats", "--node", "a"}, "needs --nats-url (an external NATS cluster) or --nats-listen"},
		{[]string{"--journal", "nats", "--node", "", "--nats-listen", "127.0.0.1:4222"}, "needs --node"},
		{[]string{"--journal", "nats", "--node", "a", "--nats-url", "nats://x", "--nats-listen", "127.0.0.1:4222"}, "exclude each other"},
		{[]string{"--journal", "nats", "--node", "a", "--nats-listen", "127.0.0.1:4222", "--nats-routes", "nats://127.0.0.1:6222"}, "--nats-routes needs --nats-cluster-listen"},
		{[]string{"--journal", "nats", "--node", "a", "--nats-listen", "127.0.0.1:4222", "--nats-replicas", "7"}, "--nats-replicas 7 outside 0..5"},
		{[]string{"--journal", "nats", "--node", "a", "--nats-listen", "127.0.0.1:4222", "--nats-cluster-listen", "127.0.0.1:6222", "--nats-routes", "nats://127.0.0.1:6223"}, ""},
		{[]string{"--journal", "nats", "--node", "a", "--nats-url", "nats://a:4222,nats://b:4222"}, ""},
	} {
		_, _, err := parseServeFlags("serve", tc.args, io.Discard)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestClusterPorts(t *testing.T) {
	ports, err := clusterPorts(3, 8081, 0, 6222)
	if err != nil {
		t.Fatal(err)
	}
	if got := ports[0]; got[0] != 8081 || got[1] != 8082 || got[2] != 8083 {
		t.Errorf("http ports %v", got)
	}
	if got := ports[2]; got[0] != 6222 || got[2] != 6224 {
		t.Errorf("route ports %v", got)
	}
	for _, p := range ports[1] {
		if p == 0 {
			t.Errorf("free ports %v", ports[1])
		}
	}
}
