package client

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServerCPU returns the CPU time (user and system) the server process has
// used since it started, from process_cpu_seconds_total in its /metrics: a
// load generator takes it before and after a run for the server's CPU per
// order.
func (c *Client) ServerCPU(ctx context.Context) (time.Duration, error) {
	s, err := c.Metric(ctx, "process_cpu_seconds_total")
	if err != nil {
		return 0, fmt.Errorf("read server cpu: %w", err)
	}
	return time.Duration(s * float64(time.Second)), nil
}

// Metric returns the value of the unlabelled sample name in the server's
// /metrics (Prometheus text format).
func (c *Client) Metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("get /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("get /metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := name + " "
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %q: %w", name, v, err)
			}
			return f, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read /metrics: %w", err)
	}
	return 0, fmt.Errorf("no metric %s in /metrics", name)
}
