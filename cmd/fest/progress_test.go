package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fest-platform/fest/internal/loadgen"
)

func TestProgressShare(t *testing.T) {
	for _, c := range []struct {
		name string
		p    loadgen.Progress
		want int64
	}{
		{"by time", loadgen.Progress{Elapsed: 15 * time.Second, Planned: 30 * time.Second, Orders: -1}, 500},
		{"orders first", loadgen.Progress{Elapsed: time.Second, Planned: 30 * time.Minute, Orders: 1000, Placed: 250}, 250},
		{"time first", loadgen.Progress{Elapsed: 27 * time.Minute, Planned: 30 * time.Minute, Orders: 1000, Placed: 250}, 900},
		{"past the end", loadgen.Progress{Elapsed: 31 * time.Second, Planned: 30 * time.Second, Orders: -1}, 1000},
		{"nothing planned", loadgen.Progress{}, 0},
	} {
		if got := progressShare(c.p); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567", 100000: "100,000"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestProgressPlainLines: off a terminal, a line every 10 seconds of the
// run and one at its end, no control characters.
func TestProgressPlainLines(t *testing.T) {
	var out bytes.Buffer
	lp := newLoadProgress(&out, false)
	for s := 1; s <= 25; s++ {
		lp.update(loadgen.Progress{Target: "fest", Profile: "midnight", Elapsed: time.Duration(s) * time.Second, Planned: 25 * time.Second, Orders: -1,
			Placed: int64(s) * 1000, PerSecond: 1000, P99ms: 4.2, GMV: int64(s) * 100_000})
	}
	lp.update(loadgen.Progress{Target: "fest", Profile: "midnight", Elapsed: 25 * time.Second, Placed: 25_000, GMV: 2_500_000, Done: true})
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (10s, 20s, the end):\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[0], "placed 10,000  1,000/s  p99 4.2 ms  errors 0  GMV ¥10,000") {
		t.Errorf("first line: %s", lines[0])
	}
	if !strings.Contains(lines[2], "placed 25,000  1,000/s on average") || !strings.Contains(lines[2], "GMV ¥25,000") {
		t.Errorf("last line: %s", lines[2])
	}
	if strings.ContainsAny(out.String(), "\r\033") {
		t.Errorf("control characters off a terminal: %q", out.String())
	}
}

// TestProgressBar: on a terminal the bar is drawn in place and finished.
func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	lp := newLoadProgress(&out, true)
	lp.update(loadgen.Progress{Target: "fest", Profile: "midnight", Elapsed: 5 * time.Second, Planned: 10 * time.Second, Orders: -1, Placed: 5000, PerSecond: 1000, P99ms: 3})
	if s := out.String(); !strings.Contains(s, " 50%") || !strings.Contains(s, "placed 5,000  1,000/s  p99 3.0 ms") {
		t.Fatalf("bar: %q", s)
	}
	lp.update(loadgen.Progress{Target: "fest", Profile: "midnight", Elapsed: 10 * time.Second, Placed: 10000, Done: true})
	if s := out.String(); !strings.Contains(s, "100%") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("finished bar: %q", s)
	}
}
