#!/usr/bin/env bash
# GetTags over the network, tagcache vs Redis, same machine, same run
# (issue 4's targets). Starts its own tagcache-server and redis-server on
# free loopback ports, loads the same users (default 10^6) x ~20 tags into
# both, and measures: tagcache through the client library (net_load) and
# Redis SMEMBERS on per-user sets (redis-benchmark), unpipelined (50
# connections) and pipelined (32 connections x depth 16). Stops only what it
# started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/bench"
USERS=${USERS:-1000000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTAGCACHE_BUILD_BENCH=ON -DTAGCACHE_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j2 --target tagcache-server net_load

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
  "$(date -u '+%F %T UTC'), commit $(git -C "$root" rev-parse --short HEAD)"

"$build/server/tagcache-server" --listen 127.0.0.1:0 --port-file "$tmp/port" \
  --data-dir "$tmp/data" --log-level warn ${SERVER_FLAGS:-} >"$tmp/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
echo "== tagcache-server on 127.0.0.1:$port"
"$build/bench/net_load" --server "127.0.0.1:$port" --users "$USERS" \
  --connections 50 --depth 1 --seconds "$SECONDS_PER_RUN"
"$build/bench/net_load" --server "127.0.0.1:$port" --users "$USERS" \
  --connections 32 --depth 16 --seconds "$SECONDS_PER_RUN" --no-load

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
  >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "== $(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$rport"
"$build/bench/net_load" --redis-dump "$tmp/redis.resp" --users "$USERS"
redis-cli -p "$rport" --pipe <"$tmp/redis.resp" | tail -1
echo "keys: $(redis-cli -p "$rport" dbsize)"
n=$((USERS * 2))
for spec in "50 1" "32 16"; do
  set -- $spec
  echo "-- redis SMEMBERS: $1 connections x pipeline $2"
  redis-benchmark -p "$rport" -c "$1" -P "$2" -n "$n" -r "$USERS" --threads 1 \
    SMEMBERS u:__rand_int__ 2>&1 | tr '\r' '\n' | grep -A4 "^Summary" | tail -4
done
