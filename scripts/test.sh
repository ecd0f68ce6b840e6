#!/usr/bin/env bash
# test.sh: fest's whole test suite, exactly as CI runs it (.ci/run calls this).
#
# It installs and starts what the tests need (PostgreSQL and Redis from Debian's packages, on
# loopback, for the baseline adapters; Debian's chromium for the dashboard's browser test), then runs
# go vet, every test under the race detector, the browser test, and every fuzz target briefly. Set
# FEST_FUZZ_TIME (default 5s per target) to fuzz longer.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FEST_FUZZ_TIME:-5s}
work=$(mktemp -d "${TMPDIR:-/tmp}/fest-test.XXXXXX")
# PostgreSQL runs as its own user and must be able to reach its directory.
chmod 755 "$work"
cleanup() {
	bash scripts/baselines.sh stop "$work/baselines" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# free_port prints a loopback port nothing listens on, from a range picked
# by this script's process id so that parallel runs rarely meet.
free_port() {
	local p=$((20000 + ($$ * 7 + $1 * 1009) % 20000))
	while (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}

# phase prints a section's heading and how long the one before it took, so
# that a run's log shows where the suite's time goes.
phase_name="" phase_start=$SECONDS
phase() {
	[ -z "$phase_name" ] || echo "   ($phase_name: $((SECONDS - phase_start)) s)"
	phase_name=$1 phase_start=$SECONDS
	[ -z "$1" ] || echo "== $1"
}

phase "starting PostgreSQL and Redis on loopback for the baseline tests"
# baselines.sh prints the addresses as NAME=value lines.
env_lines=$(bash scripts/baselines.sh start "$work/baselines" "$(free_port 1)" "$(free_port 2)" | grep '^FEST_TEST_')
eval "export $(echo $env_lines)"
echo "$env_lines"

phase "go vet"
go vet ./...
go vet -tags browser ./cmd/fest

# The black-box tests (./test) take the longest and mostly wait on the fest
# processes they start, and go test would start them last (after every
# other package): they run from the start instead, beside the other
# packages, which take one slot (-p 1) so that two test processes share
# the two cores as before.
phase "go test -race"
go test -race -count=1 -timeout 25m ./test >"$work/race-blackbox.log" 2>&1 &
blackbox=$!
others=$(go list ./... | grep -v '/fest/test$')
if ! go test -race -count=1 -timeout 25m -p 1 $others; then
	kill "$blackbox" 2>/dev/null || true
	wait "$blackbox" || true
	exit 1
fi
if ! wait "$blackbox"; then
	cat "$work/race-blackbox.log"
	echo "the black-box tests (./test) failed"
	exit 1
fi
grep -E '^(ok|FAIL|---)' "$work/race-blackbox.log"

# The dashboard in a real browser (chromedp driving Debian's chromium): the test fails, rather than
# skips, without chromium, so install it here when missing.
phase "the dashboard in chromium"
if ! command -v chromium >/dev/null 2>&1; then
	[ "$(id -u)" -eq 0 ] || { echo "the browser test needs chromium: run apt-get install -y chromium as root"; exit 1; }
	echo "installing chromium (and an emoji font for the flags)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
fi
if go test -count=1 -tags browser -run '^TestDashboardInBrowser$' -v ./cmd/fest >"$work/browser.log" 2>&1; then
	grep -E 'screenshot of the dashboard' "$work/browser.log"
else
	tail -n 60 "$work/browser.log"
	echo "the dashboard's browser test failed"
	exit 1
fi

# The storage-fault simulation: the real engine, journal, snapshots and
# projections on a simulated disk that loses unsynced writes, tears them,
# drops unsynced directory entries, fails fsyncs and flips bits. Each seed has
# several crash points (about 4.5 on average); FEST_SIM_SEEDS sets how many seeds (default 1000).
sim_seeds=${FEST_SIM_SEEDS:-1000}
phase "storage-fault simulation, $sim_seeds seeds"
if FEST_SIM_SEEDS=$sim_seeds go test -count=1 -v -run '^TestCrashSimulation$' -timeout 20m ./internal/simulation >"$work/sim.log" 2>&1; then
	grep -E 'seeds in' "$work/sim.log"
else
	grep -v -E '^time=|^[0-9/]+ [0-9:]+ (INFO|WARN|ERROR)' "$work/sim.log" | tail -n 150
	echo "the storage-fault simulation failed: its seed and replay command are above"
	exit 1
fi

phase "allocation and memory checks (not meaningful under -race)"
# Only the packages that have such tests: building every other package's
# test binary without -race again would cost a minute for nothing.
alloc_pkgs=$(grep -rl --include='*_test.go' -E '^func Test[A-Za-z0-9_]*(Alloc|Memory)' . | xargs -n1 dirname | sort -u)
go test -count=1 -run 'Alloc|Memory' $alloc_pkgs

# The ecosystem tests run the tools fest's users run: Redocly's linter, the
# generated Go and TypeScript clients, promtool with the Grafana dashboard.
# Node, npm and promtool come from Debian's packages, the npm packages at the
# versions test/clients/ts/package.json pins, installed into a cache outside
# the repository. A tool that cannot be installed fails the suite.
phase "ecosystem: OpenAPI lint, generated clients, Grafana dashboard"
need_apt=()
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v promtool >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
npm_dir=${FEST_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fest-npm}
mkdir -p "$npm_dir"
if ! cmp -s test/clients/ts/package.json "$npm_dir/package.json" || [ ! -d "$npm_dir/node_modules" ]; then
	cp test/clients/ts/package.json "$npm_dir/package.json"
	(cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error)
fi
go vet -tags ecosystem ./test
FEST_NODE_MODULES=$npm_dir go test -tags ecosystem -count=1 -run '^TestEcosystem' -timeout 10m ./test

# Each package's fuzz-instrumented test binary is built once (go test -fuzz
# would link it again for every target), two packages at a time; then two
# targets run at a time, one fuzzing worker each, from their package's
# directory (where testdata/fuzz holds the seed corpus and any failing input
# is written), with the fuzzing cache where go test keeps it.
phase "fuzz targets, $fuzztime each, two at a time"
fuzz_targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r file; do
	pkg=./$(dirname "${file#./}")
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed "s|^func |$pkg |"
done)
fuzz_bin="$work/fuzz-bin"
fuzz_cache="$(go env GOCACHE)/fuzz"
mkdir -p "$fuzz_bin"
# fuzz_name turns ./internal/engine into internal_engine.
fuzz_name() { echo "${1#./}" | tr / _; }
fuzz_build() {
	local pkg=$1 name
	name=$(fuzz_name "$pkg")
	if ! go test -c -fuzz=. -o "$fuzz_bin/$name.test" "$pkg" >"$work/fuzz-build-$name.log" 2>&1; then
		cat "$work/fuzz-build-$name.log"
		echo "building $pkg's fuzz targets failed"
		return 1
	fi
}
fuzz_one() {
	local pkg=$1 target=$2
	local log="$work/fuzz-$target.log" corpus="$pkg/testdata/fuzz/$target"
	local bin importpath
	bin="$fuzz_bin/$(fuzz_name "$pkg").test"
	importpath=$(go list "$pkg")
	# (A target without a corpus directory counts zero inputs.)
	count_inputs() { { ls "$corpus" 2>/dev/null || true; } | wc -l; }
	run_target() {
		(cd "$pkg" && "$bin" -test.run='^$' -test.fuzz="^${target}\$" -test.fuzztime="$1" -test.parallel=1 \
			-test.fuzzcachedir="$fuzz_cache/$importpath") >"$log" 2>&1
	}
	local before after report="-- $target ($pkg)"
	before=$(count_inputs)
	if ! run_target "$fuzztime"; then
		# Go 1.26's fuzzing coordinator can report "context deadline
		# exceeded" as -fuzztime runs out, with no failing input
		# (go.dev/issue/75804, fixed in Go 1.27). Only that, with no new
		# input written, is run again, by count, which has no deadline to
		# race; anything else fails the suite.
		after=$(count_inputs)
		if grep -q 'context deadline exceeded' "$log" && [ "$after" -eq "$before" ] &&
			run_target "${FEST_FUZZ_RETRY_EXECS:-2000x}"; then
			report+=$'\n(the coordinator\'s deadline race of go.dev/issue/75804; passed when run again by count)'
		else
			printf '%s\n%s\nfuzz target %s failed\n' "$report" "$(grep -v 'fuzz: elapsed' "$log" | tail -n 60)" "$target"
			return 1
		fi
	fi
	printf '%s\n%s\n' "$report" "$(tail -n 1 "$log")"
}
export -f fuzz_name fuzz_build fuzz_one
export work fuzztime fuzz_bin fuzz_cache
echo "$fuzz_targets" | awk '{print $1}' | sort -u | xargs -P 2 -L 1 bash -c 'fuzz_build "$0"'
echo "$fuzz_targets" | xargs -P 2 -L 1 bash -c 'fuzz_one "$0" "$1"'
phase ""
echo "== all tests passed in $SECONDS s"
