#!/usr/bin/env bash
# Acknowledged-write throughput with durability on, tagcache vs Redis, same
# machine, same run. Every case gets a fresh server on a free loopback port
# and a fresh data directory (under one temp dir, removed at the end):
#   tagcache --fsync batch   W=8 and W=32 writers x batches of 1000 events
#   tagcache --fsync always  batches of 1000 and of 1, W = 1, 8, 64
#                            (group commit: 64 writers share each fsync)
#   tagcache --fsync none    W=8 x 1000
#   redis-server --appendonly yes --appendfsync always|everysec: redis-benchmark
#                            SADD, 1/8/64 connections x pipeline 1/16
# tagcache is driven by write_load (W closed-loop writers, one ApplyEvents
# batch in flight each); Redis by redis-benchmark (a pipeline of 16 is the
# nearest thing to a batch). Prints the machine, the data disk's fsync cost,
# and a markdown table. Stops only the servers it started, by pid.
#
# Env: SECONDS_PER_CASE (default 10), USERS (write_load's user range,
#      default 10^7), TAGS (default 200), BUILD_DIR (default build/release),
#      SKIP_BUILD=1 (use BUILD_DIR as it is), DATA_PARENT (where the temp
#      dir goes, default build/: the data disk, never a tmpfs), DD_COUNT
#      (dsync writes of the fsync probe, default 2000), SERVER_FLAGS (extra
#      tagcache-server flags), CASES (space-separated subset of: batch
#      always none redis; default all).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/release}
SECONDS_PER_CASE=${SECONDS_PER_CASE:-10}
USERS=${USERS:-10000000}
TAGS=${TAGS:-200}
DD_COUNT=${DD_COUNT:-2000}
CASES=${CASES:-batch always none redis}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTAGCACHE_BUILD_BENCH=ON -DTAGCACHE_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j2 --target tagcache-server write_load
fi

mkdir -p "${DATA_PARENT:-$root/build}"
tmp=$(mktemp -d "${DATA_PARENT:-$root/build}/durability.XXXXXX")
pids=()  # servers still running
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

stop_server() {  # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]+"${keep[@]}"}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- context: machine and disk
echo "== $(date -u '+%F %T UTC'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)"
echo "== uname: $(uname -a)"
echo "== cpu: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1);" \
  "$(awk '/MemTotal/ {printf "%.1f GB RAM", $2 / 1048576}' /proc/meminfo);" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== data dir: $tmp on $(df -T "$tmp" | awk 'NR == 2 {print $1 " (" $2 ")"}')"
dd_out=$(dd if=/dev/zero of="$tmp/ddprobe" bs=4k count="$DD_COUNT" oflag=dsync 2>&1 | tail -1)
dd_secs=$(echo "$dd_out" | sed -E 's/.* copied, ([0-9.e+-]+) s,.*/\1/')
rm -f "$tmp/ddprobe"
echo "== fsync cost: dd bs=4k count=$DD_COUNT oflag=dsync: $dd_out" \
  "=> $(awk -v s="$dd_secs" -v n="$DD_COUNT" 'BEGIN {printf "%.0f us per synced 4 KiB write (%.0f/s)", s / n * 1e6, n / s}')"
echo

rows=()
case_no=0

# ---- tagcache: one fresh server and data dir per case
tc_case() {  # fsync writers batch
  local fsync=$1 writers=$2 batch=$3
  case_no=$((case_no + 1))
  local dir="$tmp/tc$case_no"
  mkdir -p "$dir"
  "$build/server/tagcache-server" --listen 127.0.0.1:0 --port-file "$dir/port" \
    --data-dir "$dir/data" --fsync "$fsync" --log-level warn ${SERVER_FLAGS:-} \
    >"$dir/server.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do [ -s "$dir/port" ] && break; sleep 0.1; done
  if [ ! -s "$dir/port" ]; then
    echo "tagcache-server did not start:" >&2
    cat "$dir/server.log" >&2
    exit 1
  fi
  local port
  port=$(cat "$dir/port")
  echo "-- tagcache --fsync $fsync: $writers writers x batch $batch (127.0.0.1:$port)"
  local out rc=0
  out=$("$build/bench/write_load" --server "127.0.0.1:$port" --writers "$writers" \
    --batch "$batch" --seconds "$SECONDS_PER_CASE" --users "$USERS" --tags "$TAGS" --json) || rc=$?
  echo "$out" | grep -v '^{'
  stop_server "$pid"
  local json
  json=$(echo "$out" | grep '^{' | tail -1)
  if [ -z "$json" ]; then
    rows+=("| tagcache fsync=$fsync, W=$writers, B=$batch | failed (exit $rc) | | | |")
    return
  fi
  local errs
  errs=$(echo "$json" | jq -r '[.errors | to_entries[] | "\(.key) \(.value)"] | join(", ")')
  rows+=("$(echo "$json" | jq -r --arg f "$fsync" --arg e "${errs:-}" \
    '"| tagcache fsync=\($f), W=\(.writers), B=\(.batch) | \(.events_per_s | floor) events/s | \(.p50_us) | \(.p99_us) | \(if .wal then "\(.wal.fsyncs / .seconds | floor) fsyncs/s" else "" end)\(if $e != "" then "; errors: " + $e else "" end) |"')")
}

# ---- Redis: one fresh server and dir per appendfsync setting
redis_case() {  # appendfsync
  local appendfsync=$1
  case_no=$((case_no + 1))
  local dir="$tmp/redis$case_no" port
  mkdir -p "$dir"
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync "$appendfsync" --dir "$dir" >"$dir/redis.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "-- $(redis-server --version | cut -d' ' -f1-3) --appendonly yes --appendfsync $appendfsync (127.0.0.1:$port)"
  for c in 1 8 64; do
    for pipe in 1 16; do
      # redis-benchmark stops after -n requests, not after a time: a short
      # probe gives the rate, then -n is sized for SECONDS_PER_CASE.
      local probe_n=$((500 * c * pipe)) probe rate n csv
      [ "$probe_n" -le 20000 ] || probe_n=20000
      probe=$(redis-benchmark -p "$port" -t sadd -n "$probe_n" -c "$c" -P "$pipe" \
        -r "$USERS" --threads 1 --csv 2>/dev/null | grep '^"SADD"')
      rate=$(echo "$probe" | cut -d, -f2 | tr -d '"')
      n=$(awk -v r="$rate" -v s="$SECONDS_PER_CASE" -v m="$probe_n" \
        'BEGIN {n = int(r * s); print (n < m ? m : n)}')
      csv=$(redis-benchmark -p "$port" -t sadd -n "$n" -c "$c" -P "$pipe" \
        -r "$USERS" --threads 1 --csv 2>/dev/null | grep '^"SADD"')
      # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
      IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$(echo "$csv" | tr -d '"')"
      echo "   SADD $c connections x pipeline $pipe: $rps req/s, p50 $p50 ms, p99 $p99 ms ($n requests)"
      rows+=("$(awk -v a="$appendfsync" -v c="$c" -v p="$pipe" -v r="$rps" -v p50="$p50" -v p99="$p99" \
        'BEGIN {printf "| redis appendfsync=%s, SADD -c %d -P %d | %.0f requests/s | %.0f | %.0f | |", a, c, p, r, p50 * 1000, p99 * 1000}')")
    done
  done
  stop_server "$pid"
}

for group in $CASES; do
  case $group in
    batch) tc_case batch 8 1000; tc_case batch 32 1000 ;;
    always)
      for b in 1000 1; do for w in 1 8 64; do tc_case always "$w" "$b"; done; done ;;
    none) tc_case none 8 1000 ;;
    redis)
      if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
        redis_case always
        redis_case everysec
      else
        echo "-- redis-server/redis-benchmark not installed: Redis rows skipped"
      fi ;;
    *) echo "unknown case group '$group' (batch always none redis)" >&2; exit 2 ;;
  esac
done

echo
echo "Durable writes, ${SECONDS_PER_CASE} s per case (tagcache: W writers x B events per ApplyEvents," \
  "latency per batch; Redis: one SADD per request, latency per request)"
echo
echo "| case | throughput | p50 us | p99 us | notes |"
echo "|---|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
