package loadgen

import (
	"fmt"
	"net/http"
	"net/http/httptest"
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
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, `{"node":"n1","order_id_partition_shift":56,"nodes":[`)
					for i := range tc.nodes {
						if i > 0 {
							fmt.Fprint(w, ",")
						}
						// Every node is this one server: its CPU is counted once per node.
						fmt.Fprintf(w, `{"node":"n%d","addr":%q,"alive":true}`, i+1, url)
					}
					fmt.Fprint(w, `],"partitions":[{"partition":0,"owner":"n1","lease_revision":1}]}`)
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
