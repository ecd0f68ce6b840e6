package loadgen

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPTargetRoutesInACluster: the target routes by partition and sums
// every node's CPU when GET /v1/cluster names more than one node, and
// drives a single node (or a server without the endpoint, or with
// RouteOff) as one server.
func TestHTTPTargetRoutesInACluster(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nodes    int // in GET /v1/cluster; 0: the endpoint is missing
		routeOff bool
		routed   bool
		cpu      time.Duration
	}{
		{"three nodes", 3, false, true, 3 * 1500 * time.Millisecond},
		{"one node", 1, false, false, 1500 * time.Millisecond},
		{"no cluster endpoint", 0, false, false, 1500 * time.Millisecond},
		{"three nodes, route off", 3, true, false, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/v1/cluster":
					if tc.nodes == 0 {
						http.NotFound(w, r)
						return
					}
					// Every node is this one server: its CPU is counted once per node.
					writeClusterView(w, tc.nodes, url)
				case "/metrics":
					fmt.Fprint(w, "process_cpu_seconds_total 1.5\n")
				default:
					http.NotFound(w, r)
				}
			}))
			defer s.Close()
			url = s.URL
			cfg := DefaultHTTPConfig()
			cfg.Addr, cfg.RouteOff = s.URL, tc.routeOff
			target, err := NewHTTPTarget(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			if got := target.nodes != nil; got != tc.routed {
				t.Fatalf("routed %v, want %v", got, tc.routed)
			}
			cpu, err := target.ServerCPU(t.Context())
			if err != nil || cpu != tc.cpu {
				t.Fatalf("server cpu %v, %v; want %v", cpu, err, tc.cpu)
			}
		})
	}
}

// TestHTTPTargetResendsThroughAFailover: in a cluster, a payment answered
// 503 unavailable is sent again until it goes through; on a single server
// it is reported as it came. Orders' idempotency keys are distinct across
// calls.
func TestHTTPTargetResendsThroughAFailover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes int
		sends int32 // pay requests the server sees
		code  string
	}{
		{"cluster", 3, 3, ""},
		{"single server", 1, 1, "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			var pays atomic.Int32
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/v1/cluster":
					writeClusterView(w, tc.nodes, url)
				case strings.HasSuffix(r.URL.Path, "/pay"):
					w.Header().Set("Content-Type", "application/json")
					if pays.Add(1) < 3 {
						w.Header().Set("Retry-After", "1")
						w.WriteHeader(http.StatusServiceUnavailable)
						fmt.Fprint(w, `{"error":{"code":"unavailable","message":"failing over"}}`)
						return
					}
					fmt.Fprint(w, `{"order_id":"1","status":"paid","total":100}`)
				default:
					http.NotFound(w, r)
				}
			}))
			defer s.Close()
			url = s.URL
			cfg := DefaultHTTPConfig()
			cfg.Addr, cfg.Transport = s.URL, TransportJSON
			target, err := NewHTTPTarget(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			out := make([]Outcome, 1)
			target.Pay(t.Context(), []string{"1"}, []int64{100}, out)
			if out[0].Code != tc.code || pays.Load() != tc.sends {
				t.Fatalf("outcome %+v after %d sends; want code %q after %d", out[0], pays.Load(), tc.code, tc.sends)
			}
			a, b := target.orderKeys(2), target.orderKeys(1)
			if tc.nodes == 1 {
				if a != nil {
					t.Fatalf("orders keyed on a single server")
				}
				return
			}
			if keys := map[string]bool{a.key(0): true, a.key(1): true, b.key(0): true}; len(keys) != 3 {
				t.Fatalf("keys not distinct: %v", keys)
			}
		})
	}
}

// writeClusterView answers GET /v1/cluster with nodes nodes, all at url,
// and partition 0 owned by the first.
func writeClusterView(w http.ResponseWriter, nodes int, url string) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"node":"n1","order_id_partition_shift":56,"nodes":[`)
	for i := range nodes {
		if i > 0 {
			fmt.Fprint(w, ",")
		}
		fmt.Fprintf(w, `{"node":"n%d","addr":%q,"alive":true}`, i+1, url)
	}
	fmt.Fprint(w, `],"partitions":[{"partition":0,"owner":"n1","lease_revision":1}]}`)
}

// TestHTTPTargetResendsAScanNotApplied: a scan answered 503 unavailable
// (nothing applied: the parcels are catching up) is sent again, on a single
// server too, until it goes through; a scan the server did not answer
// (it may have been applied) and a refused one are reported as they came.
func TestHTTPTargetResendsAScanNotApplied(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, n int32) // the n-th scan request, from 1
		sends  int32
		code   string
	}{
		{"catching up, then applied", func(w http.ResponseWriter, n int32) {
			if n < 3 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, `{"error":{"code":"unavailable","message":"parcels are catching up; retry shortly"}}`)
				return
			}
			fmt.Fprint(w, `{"parcel_id":"P1","order_id":"1","status":"picked_up","events":[]}`)
		}, 3, ""},
		{"refused", func(w http.ResponseWriter, n int32) {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":{"code":"invalid_state","message":"a parcel delivered cannot be scanned picked_up"}}`)
		}, 1, "invalid_state"},
		{"no answer", func(w http.ResponseWriter, n int32) {
			panic(http.ErrAbortHandler)
		}, 1, CodeTransport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			var scans atomic.Int32
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/v1/cluster":
					writeClusterView(w, 1, url)
				case r.URL.Path == "/v1/parcels/P1/scans":
					w.Header().Set("Content-Type", "application/json")
					tc.answer(w, scans.Add(1))
				default:
					http.NotFound(w, r)
				}
			}))
			defer s.Close()
			url = s.URL
			cfg := DefaultHTTPConfig()
			cfg.Addr = s.URL
			target, err := NewHTTPTarget(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			out := make([]Outcome, 1)
			target.Scan(t.Context(), []string{"1"}, []ScanStep{{Status: "picked_up", Location: "hub"}}, out)
			if out[0].Code != tc.code || scans.Load() != tc.sends {
				t.Fatalf("outcome %+v after %d sends; want code %q after %d", out[0], scans.Load(), tc.code, tc.sends)
			}
		})
	}
}
