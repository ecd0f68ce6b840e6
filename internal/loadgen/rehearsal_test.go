package loadgen

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fest-platform/fest/internal/festival"
)

// TestAuditSKU: a SKU's figures are checked against its stock on a fresh
// server, and against what the server held before the run on a rehearsal,
// where an earlier run's pending orders may expire meanwhile.
func TestAuditSKU(t *testing.T) {
	s := &festival.SKU{ID: "s1", Stock: 100}
	cases := []struct {
		name                   string
		before                 *skuFigures
		av, rs, sd             int64
		wantReserved, wantSold int64
		exact                  bool
		problems               []string // substrings, one per problem
	}{
		{name: "fresh and right", av: 90, rs: 4, sd: 6, wantReserved: 4, wantSold: 6, exact: true},
		{name: "fresh, stock lost", av: 80, rs: 4, sd: 6, wantReserved: 4, wantSold: 6, exact: true, problems: []string{"stocked 100"}},
		{name: "fresh, sold differs", av: 89, rs: 4, sd: 7, wantReserved: 4, wantSold: 6, exact: true, problems: []string{"sold 7"}},
		{name: "fresh, uncertain counts only conservation", av: 89, rs: 4, sd: 7, wantReserved: 4, wantSold: 6},
		{name: "fresh, negative", av: -1, rs: 95, sd: 6, wantReserved: 95, wantSold: 6, exact: true, problems: []string{"negative"}},
		// The earlier run left 30 available, 10 reserved, 60 sold; this run
		// sold 5 and holds 2 pending.
		{name: "rehearsal and right", before: &skuFigures{available: 30, reserved: 10, sold: 60}, av: 23, rs: 12, sd: 65, wantReserved: 2, wantSold: 5, exact: true},
		{name: "rehearsal, earlier pending expired", before: &skuFigures{available: 30, reserved: 10, sold: 60}, av: 33, rs: 2, sd: 65, wantReserved: 2, wantSold: 5, exact: true},
		// An import that reset the available stock to 100 gives sold units back.
		{name: "rehearsal, stock given back", before: &skuFigures{available: 30, reserved: 10, sold: 60}, av: 93, rs: 12, sd: 65, wantReserved: 2, wantSold: 5, exact: true,
			problems: []string{"stocked 100 != available 93 + reserved 12 + sold 65"}},
		{name: "rehearsal, counted as fresh", before: &skuFigures{available: 30, reserved: 10, sold: 60}, av: 23, rs: 12, sd: 5, wantReserved: 2, wantSold: 5, exact: true,
			problems: []string{"stocked 100", "sold 5 (60 before the run)"}},
		{name: "rehearsal, reserved beyond both runs", before: &skuFigures{available: 30, reserved: 10, sold: 60}, av: 20, rs: 15, sd: 65, wantReserved: 2, wantSold: 5, exact: true,
			problems: []string{"reserved 15 (10 before the run)"}},
		{name: "rehearsal, this run's pending lost", before: &skuFigures{available: 30, reserved: 10, sold: 60}, av: 34, rs: 1, sd: 65, wantReserved: 2, wantSold: 5, exact: true,
			problems: []string{"reserved 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := auditSKU(s, c.before, 0, c.av, c.rs, c.sd, c.wantReserved, c.wantSold, c.exact, false)
			if len(got) != len(c.problems) {
				t.Fatalf("problems %q, want %d like %q", got, len(c.problems), c.problems)
			}
			for i, p := range c.problems {
				if !strings.Contains(got[i], p) {
					t.Errorf("problem %d %q, want it to say %q", i, got[i], p)
				}
			}
		})
	}
}

// TestCompareChecksTargetsFirst: without redis-server (nor PostgreSQL's
// runner) on the PATH and with no fest binary, --compare runs nothing and
// says what is missing and how to install it; with every target given by
// address it needs nothing installed.
func TestCompareChecksTargetsFirst(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cc := CompareConfig{FestBinary: filepath.Join(t.TempDir(), "no-fest"), TempDir: t.TempDir(), HTTP: DefaultHTTPConfig()}
	cc.HTTP.Addr = ""
	runs, err := Compare(context.Background(), quietConfig(ProfileMidnight), cc, nil)
	if !errors.Is(err, ErrTargetsMissing) {
		t.Fatalf("Compare: %v, want ErrTargetsMissing", err)
	}
	if len(runs) != 0 {
		t.Fatalf("ran %d targets before the check", len(runs))
	}
	for _, want := range []string{"no-fest", "redis-server", "apt-get install -y", "--redis-addr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if os.Geteuid() == 0 && !strings.Contains(err.Error(), "postgresql") {
		t.Errorf("error %q does not name postgresql (no runuser on the PATH)", err)
	}
	given := CompareConfig{TempDir: t.TempDir(), HTTP: DefaultHTTPConfig(), PostgresURL: "postgres://127.0.0.1:1/x", RedisAddr: "127.0.0.1:1"}
	if err := given.CheckTargets(); err != nil {
		t.Errorf("every target given by address: %v", err)
	}
}
