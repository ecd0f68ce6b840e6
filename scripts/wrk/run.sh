#!/usr/bin/env bash
# run.sh: single JSON POST /v1/orders under wrk against a fresh `fest serve`.
#
#   scripts/wrk/run.sh [FEST_BINARY] [DURATION] [CONNECTIONS]   # defaults: ./fest 20s 64
#
# Starts the server on a temp dir and a free loopback port, imports brand b-1, merchant m-1 and
# WRK_SKUS SKUs (default 1000) with enough stock for the run, runs `wrk -t2 -cC -dD --latency` with
# orders.lua, and prints req/s, p99, the non-2xx count and the server's CPU µs per answered request
# (utime+stime of /proc/PID/stat before and after the wrk run, over wrk's request count).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-./fest}
duration=${2:-20s}
conns=${3:-64}
export WRK_SKUS=${WRK_SKUS:-1000}
export WRK_BUYERS=${WRK_BUYERS:-100000}
command -v wrk >/dev/null || { echo "run.sh: wrk missing (apt-get install -y wrk)" >&2; exit 1; }

dir=$(mktemp -d /tmp/fest-wrk.XXXXXX)
port=$(( 20000 + RANDOM % 20000 ))
admin=admin-wrk
export FEST_TOKEN=store-wrk
"$bin" serve --addr 127.0.0.1:$port --data "$dir/data" --admin-token $admin \
	--storefront-token $FEST_TOKEN --carrier-token carrier-wrk >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
url=http://127.0.0.1:$port
ready=
for _ in $(seq 100); do
	curl -sf "$url/readyz" >/dev/null 2>&1 && { ready=1; break; }
	sleep 0.1
done
[ -n "$ready" ] || { echo "run.sh: server not ready after 10 s" >&2; cat "$dir/serve.log" >&2; exit 1; }

{
	echo '{"type":"brand","brand_id":"b-1","name":"Brand","country":"CN","first_festival":2020,"emerging":false,"last_year_gmv":0}'
	echo '{"type":"merchant","merchant_id":"m-1","name":"Merchant","brand_id":"b-1","kind":"brand_store","industry":"apparel","region":"CN-ZJ"}'
	for i in $(seq "$WRK_SKUS"); do
		echo "{\"type\":\"sku\",\"sku_id\":\"sku-$i\",\"merchant_id\":\"m-1\",\"brand_id\":\"b-1\",\"title\":\"SKU $i\",\"category\":\"apparel\",\"price\":9900,\"stock\":100000000}"
	done
} >"$dir/catalog.ndjson"
curl -sf -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/x-ndjson' \
	--data-binary @"$dir/catalog.ndjson" "$url/v1/catalog:import" >/dev/null || {
	echo "run.sh: catalog import failed" >&2; cat "$dir/serve.log" >&2; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
wrk -t2 -c"$conns" -d"$duration" --latency -s "$here/orders.lua" "$url" >"$dir/wrk.out"
after=$(ticks)
cat "$dir/wrk.out"
answered=$(awk '/^answered/ {print $2}' "$dir/wrk.out")
awk -v b="$before" -v a="$after" -v hz="$hz" -v n="$answered" \
	'BEGIN { printf "server_cpu_us_per_request %.1f\n", (a - b) / hz * 1e6 / n }'
