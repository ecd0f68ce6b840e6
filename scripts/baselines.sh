#!/usr/bin/env bash
# baselines.sh: install and run the two baseline databases that `fest load --target postgres|redis`
# and `fest load --compare` measure fest against: PostgreSQL and Redis, on loopback only.
#
#   scripts/baselines.sh install                       # apt-get the Debian packages if missing
#   scripts/baselines.sh start DIR [PG_PORT] [REDIS_PORT]
#                                                      # initdb + start both under DIR; prints
#                                                      # FEST_TEST_POSTGRES_URL=... and FEST_TEST_REDIS_ADDR=...
#   scripts/baselines.sh stop DIR                      # stop both servers started under DIR
#
# `start` installs first when needed. Run as root (the CI machine and the dev machines are): PostgreSQL
# refuses to run as root, so it runs as the `postgres` user that its Debian package creates.
# Redis runs with `--appendonly yes --appendfsync always` (durable like fest's fsync-before-ack);
# the load driver switches it to `everysec` with CONFIG SET for its second, reported run.
set -euo pipefail

die() { echo "baselines.sh: $*" >&2; exit 1; }

pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	[ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

install() {
	local need=()
	[ -n "$(pg_bin)" ] || need+=(postgresql)
	command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
	[ ${#need[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "installing ${need[*]} needs root"
	echo "baselines.sh: installing ${need[*]}" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
	[ -n "$(pg_bin)" ] || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
}

as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		if command -v runuser >/dev/null 2>&1; then
			runuser -u postgres -- "$@"
		else
			su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
		fi
	else
		"$@"
	fi
}

start() {
	local dir=${1:?usage: baselines.sh start DIR [PG_PORT] [REDIS_PORT]}
	local pg_port=${2:-55432} redis_port=${3:-56379}
	install
	local bin
	bin=$(pg_bin)
	mkdir -p "$dir/pg" "$dir/redis"
	dir=$(cd "$dir" && pwd)
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres:postgres "$dir/pg"
		# postgres must be able to reach its directory through the parents (e.g. a 0700 /tmp/x).
		chmod o+x "$dir"
	fi

	# PostgreSQL: trust auth on loopback only, a private socket directory, synchronous_commit on
	# (the default, stated explicitly because the baseline's claim depends on it).
	if [ ! -f "$dir/pg/data/PG_VERSION" ]; then
		as_postgres "$bin/initdb" -D "$dir/pg/data" -U postgres -A trust -E UTF8 >"$dir/pg/initdb.log" 2>&1 ||
			{ cat "$dir/pg/initdb.log" >&2; die "initdb failed"; }
	fi
	as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 start \
		-o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir/pg -c synchronous_commit=on -c fsync=on -c max_connections=200 -c shared_buffers=256MB" >&2 ||
		{ tail -n 20 "$dir/pg/server.log" >&2 || true; die "pg_ctl start failed"; }

	# Redis: AOF fsync on every write, like a flash-sale service that must not lose an order.
	redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
		--appendonly yes --appendfsync always --save "" --daemonize yes \
		--pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" --protected-mode no >&2 ||
		die "redis-server failed to start"
	local i
	for i in $(seq 1 100); do
		redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis-cli -p "$redis_port" ping >/dev/null 2>&1 || die "redis did not answer on port $redis_port"

	echo "FEST_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
	echo "FEST_TEST_REDIS_ADDR=127.0.0.1:$redis_port"
}

stop() {
	local dir=${1:?usage: baselines.sh stop DIR}
	local bin
	bin=$(pg_bin) || true
	if [ -n "$bin" ] && [ -f "$dir/pg/data/postmaster.pid" ]; then
		as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >&2 || true
	fi
	if [ -f "$dir/redis/redis.pid" ]; then
		kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true
	fi
}

case "${1:-}" in
install) install ;;
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
*) die "usage: baselines.sh install | start DIR [PG_PORT] [REDIS_PORT] | stop DIR" ;;
esac
