package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// loadResult is the part of `fest load --json`'s last line the tests read.
type loadResult struct {
	Orders int64 `json:"orders"`
	Audit  struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
	} `json:"audit"`
}

// runLoad runs `fest load` with args and returns its JSON result, stderr,
// and the error of the run.
func runLoad(t *testing.T, env []string, args ...string) (loadResult, string, error) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"load"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res loadResult
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if last := lines[len(lines)-1]; strings.HasPrefix(last, "{") {
		if jerr := json.Unmarshal([]byte(last), &res); jerr != nil {
			t.Fatalf("fest load's json line %q: %v", last, jerr)
		}
	}
	return res, stderr.String(), err
}

// TestLoadRehearsal runs `fest load` twice against one server: the second
// run finds the catalog there, keeps the stock the first run sold (the
// contract's stock rule), and its audit, which counts the second run
// beside what the server held before it, passes.
func TestLoadRehearsal(t *testing.T) {
	t.Parallel()
	f := startFest(t, "")
	args := []string{"--addr", f.URL, "--admin-token", adminToken, "--storefront-token", storefrontToken, "--carrier-token", carrierToken,
		"--profile", "midnight", "--scale", "0.00001", "--rate", "max", "--duration", "2s", "--scan-window", "0", "--json"}
	for run := 1; run <= 2; run++ {
		res, stderr, err := runLoad(t, nil, args...)
		if err != nil || !res.Audit.OK || res.Orders == 0 {
			t.Fatalf("run %d: %v, %d orders, audit ok %v: %q\n%s", run, err, res.Orders, res.Audit.OK, res.Audit.Problems, stderr)
		}
		if run == 2 && !strings.Contains(stderr, "rehearsal") {
			t.Errorf("run 2 did not find the catalog of run 1:\n%s", stderr)
		}
	}
}

// TestLoadCompareChecksTargets: `fest load --compare` on a machine without
// Redis (nor PostgreSQL's runner) runs no target, fest included, and says
// what to install.
func TestLoadCompareChecksTargets(t *testing.T) {
	_, stderr, err := runLoad(t, []string{"PATH=" + t.TempDir()}, "--compare", "--profile", "midnight", "--duration", "1s", "--scan-window", "0")
	if err == nil {
		t.Fatalf("--compare without redis-server succeeded:\n%s", stderr)
	}
	for _, want := range []string{"redis-server", "apt-get install -y", "none was run"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "starting fest serve") || strings.Contains(stderr, "running midnight") {
		t.Errorf("a target ran before the check:\n%s", stderr)
	}
}
