#!/usr/bin/env bash
# tagcache and Redis side by side, same machine, same run, tagbench driving
# both (issue 8; docs/BENCH.md). Not part of CI, except `--smoke` (tiny data,
# seconds per workload), which CI runs as the ctest TagbenchSmoke.RunComparison.
#
#   bench/run-comparison.sh [--users N] [--tags T] [--scale] [--duration S]
#       [--warmup S] [--connections C] [--depth D] [--rate R] [--durability]
#       [--dir DIR] [--out FILE] [--bin-dir BUILD_DIR] [--keep-data] [--smoke]
#       [--audience-only]
#
# 1. Builds tagcache-server, tagctl and tagbench in Release (build/release),
#    unless --bin-dir names a build directory that has them.
# 2. tagbench gen: N users (default 10^7; --scale: 10^8) x T tags (200),
#    power-law popularity 50 % .. 0.001 %, events older and newer than the
#    snapshot, and the same merged state as Redis mass-insert protocol.
# 3. Starts a tagcache node (port 0, RAM only; --durability: --fsync batch)
#    and a redis-server (--save '' --appendonly no; --durability: appendonly
#    everysec) on 127.0.0.1; loads both (tagctl load + tagctl stream;
#    redis-cli --pipe) and checks they answer alike (tagbench verify).
# 4. Runs each workload against tagcache, then Redis, alternating, and
#    writes a markdown report (machine, dataset, commands, load, memory,
#    one row per workload and op) to --out (default DIR/comparison.md) and
#    stdout. Every process started here is stopped by its pid.
# With --audience-only (for --scale: 10^8 users' per-user sets do not fit
# in RAM next to everything else), Redis gets only the per-tag bitmaps and
# only the count and top_tags workloads run.
# With --smoke, exits 1 unless every op of every run had a nonzero
# throughput and no errors on both targets, and redis-server must exist.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
ROOT=$(pwd)

USERS=10000000; TAGS=200; DURATION=10; WARMUP=2; CONNECTIONS=32; DEPTH=16; RATE=50000
EVENTS=1000000; SEED=1; DIR=/tmp/tagcache-comparison; OUT=""; BIN_DIR=""; KEEP=0; SMOKE=0; DURABLE=0; AUDIENCE_ONLY=0
usage() { sed -n '6,10p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --users) USERS=$2; shift 2 ;;
    --tags) TAGS=$2; shift 2 ;;
    --scale) USERS=100000000; shift ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --depth) DEPTH=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --durability) DURABLE=1; shift ;;
    --dir) DIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --keep-data) KEEP=1; shift ;;
    --smoke) SMOKE=1; shift ;;
    --audience-only) AUDIENCE_ONLY=1; shift ;;
    *) usage ;;
  esac
done
if [ "$SMOKE" = 1 ]; then
  USERS=5000; TAGS=20; EVENTS=2000; DURATION=1.5; WARMUP=0.3; CONNECTIONS=4; DEPTH=4; RATE=400
fi
OUT=${OUT:-$DIR/comparison.md}

for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null || {
    echo "run-comparison: $tool not installed (apt-get install redis-server redis-tools; ./tagcache.sh installs them)" >&2
    exit 1
  }
done

if [ -z "$BIN_DIR" ]; then
  BIN_DIR=$ROOT/build/release
  cmake -S "$ROOT" -B "$BIN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTAGCACHE_BUILD_TESTS=OFF >/dev/null
  cmake --build "$BIN_DIR" -j2 --target tagcache-server tagctl tagbench >/dev/null
fi
SERVER=$BIN_DIR/server/tagcache-server
TAGCTL=$BIN_DIR/cluster/tagctl
TAGBENCH=$BIN_DIR/bench/tagbench/tagbench
for b in "$SERVER" "$TAGCTL" "$TAGBENCH"; do
  [ -x "$b" ] || { echo "run-comparison: missing $b (build it, or drop --bin-dir)" >&2; exit 1; }
done
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BIN_DIR/CMakeCache.txt" 2>/dev/null || true)

mkdir -p "$DIR"
rm -rf "$DIR/reports"; mkdir -p "$DIR/reports"
R=$DIR/reports
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR/data" "$DIR/node-data" "$DIR/redis-data"; fi
}
trap cleanup EXIT

calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
json_field() { sed -n "s/^ *\"$2\": *\([0-9.e+-]*\),\{0,1\}$/\1/p" "$1" | head -1; }

# ---- 1. dataset ---------------------------------------------------------------
echo "==> tagbench gen: $USERS users x $TAGS tags, $EVENTS events ($DIR/data)" >&2
GEN_CMD=("$TAGBENCH" gen --dir "$DIR/data" --users "$USERS" --tags "$TAGS" --events "$EVENTS" --seed "$SEED" --redis-resp)
[ "$SMOKE" = 1 ] && GEN_CMD+=(--min-density 0.001)
[ "$AUDIENCE_ONLY" = 1 ] && GEN_CMD+=(--redis-audience-only)
"${GEN_CMD[@]}" | tee "$DIR/gen.txt" >&2
SNAP_TS=$(json_field "$DIR/data/dataset.json" snapshot_ts)
ASSIGN=$(json_field "$DIR/data/dataset.json" final_assignments)

# ---- 2. servers and loads -------------------------------------------------------
NODE_ARGS=(--data-dir '')
REDIS_ARGS=(--save '' --appendonly no)
if [ "$DURABLE" = 1 ]; then
  rm -rf "$DIR/node-data" "$DIR/redis-data"; mkdir -p "$DIR/redis-data"
  NODE_ARGS=(--data-dir "$DIR/node-data" --fsync batch)
  REDIS_ARGS=(--save '' --appendonly yes --appendfsync everysec)
fi
rm -f "$DIR/node.port"
"$SERVER" --listen 127.0.0.1:0 --port-file "$DIR/node.port" --log-level warn "${NODE_ARGS[@]}" \
  > "$DIR/node.log" 2>&1 &
NODE_PID=$!; PIDS+=("$NODE_PID")
for _ in $(seq 1 200); do [ -s "$DIR/node.port" ] && break; sleep 0.05; done
[ -s "$DIR/node.port" ] || { echo "run-comparison: tagcache-server did not start:" >&2; cat "$DIR/node.log" >&2; exit 1; }
NODE=127.0.0.1:$(cat "$DIR/node.port")

REDIS_PORT=""
for _ in 1 2 3 4 5; do
  port=$(free_port)
  mkdir -p "$DIR/redis-data"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR/redis-data" "${REDIS_ARGS[@]}" > "$DIR/redis.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  if redis-cli -p "$port" ping >/dev/null 2>&1 && kill -0 "$pid" 2>/dev/null; then
    REDIS_PORT=$port; REDIS_PID=$pid; PIDS+=("$pid"); break
  fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
done
[ -n "$REDIS_PORT" ] || { echo "run-comparison: redis-server did not start:" >&2; cat "$DIR/redis.log" >&2; exit 1; }
REDIS=redis://127.0.0.1:$REDIS_PORT

echo "==> loading tagcache ($NODE): tagctl load + tagctl stream" >&2
t0=$(now)
"$TAGCTL" --seeds "$NODE" load "$DIR/data/snapshot.csv" --ts "$SNAP_TS" --json > "$DIR/load.json"
"$TAGCTL" --seeds "$NODE" stream "$DIR/data/events.ndjson" --json --report-interval 0 > "$DIR/stream.json"
t1=$(now); TC_LOAD_S=$(calc "$t1 - $t0")
echo "==> loading Redis ($REDIS): redis-cli --pipe" >&2
t0=$(now)
redis-cli -p "$REDIS_PORT" --pipe < "$DIR/data/redis.resp" > "$DIR/redis-pipe.txt"
t1=$(now); RD_LOAD_S=$(calc "$t1 - $t0")
grep -q "errors: 0" "$DIR/redis-pipe.txt" || { echo "run-comparison: redis-cli --pipe reported errors:" >&2; cat "$DIR/redis-pipe.txt" >&2; exit 1; }
# The node rebuilds its per-user index once bulk parts stop arriving (500 ms).
sleep 2

echo "==> tagbench verify: both targets must answer alike" >&2
VERIFY_OPS=$([ "$SMOKE" = 1 ] && echo 30 || echo 20)
VERIFY_ARGS=()
[ "$AUDIENCE_ONLY" = 1 ] && VERIFY_ARGS+=(--audience-only)
"$TAGBENCH" verify --dataset "$DIR/data" --target "$NODE" --target "$REDIS" --ops "$VERIFY_OPS" "${VERIFY_ARGS[@]}" | tee "$DIR/verify.txt" >&2

# ---- 3. workloads ----------------------------------------------------------------
# name | tagbench run arguments. Audience queries run with few concurrent
# callers (analysts and campaign tools, not an online service's fan-out).
C=$CONNECTIONS; D=$DEPTH
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)  # other work on a shared machine shows here
WORKLOADS=(
  "lookup|-w lookup -c $C -d $D"
  "lookup-hot|-w lookup-hot -c $C -d $D"
  "lookup-open|-w lookup -c $C -d $D --rate $RATE"
  "batch|-w batch -c $C -d 4 --batch 32"
  "has|-w has -c $C -d $D"
  "count-2-3|-w count --terms 2-3 -c 4 -d 1"
  "count-1-6|-w count --terms 1-6 -c 4 -d 1"
  "top-10pct|-w top --audience-share 0.1 --top-k 10 -c 2 -d 1"
  "mixed|-w mixed -c $C -d $D"
  "update|-w update -c $C -d $D"
)
if [ "$AUDIENCE_ONLY" = 1 ]; then
  WORKLOADS=("${WORKLOADS[5]}" "${WORKLOADS[6]}" "${WORKLOADS[7]}")
fi
RUN_CMDS=()
FAILED=0
for w in "${WORKLOADS[@]}"; do
  name=${w%%|*}; args=${w#*|}
  for kind in tagcache redis; do
    url=$([ "$kind" = tagcache ] && echo "$NODE" || echo "$REDIS")
    echo "==> $name on $kind" >&2
    # shellcheck disable=SC2086  # args is a list of flags
    "$TAGBENCH" run --dataset "$DIR/data" --target "$url" $args --warmup "$WARMUP" --duration "$DURATION" \
      --seed "$SEED" --json "$R/$name.$kind.json" >&2 || FAILED=1
  done
  RUN_CMDS+=("tagbench run --dataset DATA --target {tagcache|redis} $args --warmup $WARMUP --duration $DURATION --seed $SEED")
done

# ---- 4. report -------------------------------------------------------------------
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
FIRST=${WORKLOADS[0]%%|*}
TC_RSS=$(json_field "$R/$FIRST.tagcache.json" memory_rss_bytes)
TC_DATA=$(json_field "$R/$FIRST.tagcache.json" memory_data_bytes)
RD_USED=$(json_field "$R/$FIRST.redis.json" memory_data_bytes)
RD_RSS=$(json_field "$R/$FIRST.redis.json" memory_rss_bytes)
per() { awk "BEGIN { if ($2 > 0) printf \"%.2f\", $1 / $2; else print \"-\" }"; }
mb() { awk "BEGIN { printf \"%.1f\", $1 / 1000000 }"; }
{
  echo "## tagcache vs Redis, same machine, same run (bench/run-comparison.sh)"
  echo
  echo "- machine: $(nproc) cores ($CPU), $MEM RAM, Linux $(uname -r); both servers and tagbench on it; load average before the runs: $LOADAVG"
  echo "- build: ${BUILD_TYPE:-unknown}; $(redis-server --version | cut -d' ' -f1-3); durability: $([ "$DURABLE" = 1 ] && echo 'tagcache --fsync batch, Redis appendonly everysec' || echo 'off (tagcache RAM only, Redis --save "" --appendonly no)')"
  [ "$AUDIENCE_ONLY" = 1 ] && echo "- audience-only run: Redis holds only the per-tag bitmaps (no per-user sets), so its memory is not the two-query layout"
  echo "- dataset: $(head -1 "$DIR/gen.txt" | sed 's/^dataset [^:]*: //'); $ASSIGN assignments after the events (seed $SEED)"
  echo
  echo "| load and memory | tagcache | Redis | Redis / tagcache |"
  echo "|---|---:|---:|---:|"
  echo "| load time (s) | $TC_LOAD_S (tagctl load + stream) | $RD_LOAD_S (redis-cli --pipe) | $(per "$RD_LOAD_S" "$TC_LOAD_S") |"
  echo "| server memory (MB) | $(mb "$TC_RSS") RSS ($(mb "$TC_DATA") data) | $(mb "$RD_USED") used_memory ($(mb "$RD_RSS") RSS) | $(per "$RD_USED" "$TC_RSS") |"
  echo "| bytes per assignment | $(per "$TC_RSS" "$ASSIGN") RSS | $(per "$RD_USED" "$ASSIGN") used_memory | $(per "$RD_USED" "$TC_RSS") |"
  echo
  first=1
  for w in "${WORKLOADS[@]}"; do
    name=${w%%|*}
    [ -f "$R/$name.tagcache.json" ] && [ -f "$R/$name.redis.json" ] || continue
    if [ "$first" = 1 ]; then
      "$TAGBENCH" compare --markdown "$R/$name.tagcache.json" "$R/$name.redis.json" \
        | awk -v n="$name" 'NR <= 2 { print; next } { sub(/^\| [^|]* \|/, "| " n " |"); print }'
      first=0
    else
      "$TAGBENCH" compare --markdown "$R/$name.tagcache.json" "$R/$name.redis.json" | tail -n +3 \
        | sed "s/^| [^|]* |/| $name |/"
    fi
  done
  echo
  echo "Latency in microseconds (open loop: from the intended send time). Ratios: ops/s tagcache/Redis,"
  echo "p99 Redis/tagcache (above 1: tagcache better). Answers cross-checked first: $(cat "$DIR/verify.txt")."
  echo
  echo "Commands:"
  echo
  echo '```sh'
  echo "bench/run-comparison.sh --users $USERS --tags $TAGS --events $EVENTS --duration $DURATION --warmup $WARMUP --connections $C --depth $D --rate $RATE$([ "$DURABLE" = 1 ] && echo ' --durability')$([ "$SMOKE" = 1 ] && echo ' --smoke')$([ "$AUDIENCE_ONLY" = 1 ] && echo ' --audience-only')"
  echo "# which runs:"
  echo "tagbench gen --dir DATA --users $USERS --tags $TAGS --events $EVENTS --seed $SEED --redis-resp$([ "$AUDIENCE_ONLY" = 1 ] && echo ' --redis-audience-only')"
  echo "tagctl load DATA/snapshot.csv --ts $SNAP_TS && tagctl stream DATA/events.ndjson"
  echo "redis-cli --pipe < DATA/redis.resp"
  for c in "${RUN_CMDS[@]}"; do echo "$c"; done
  echo '```'
} > "$OUT"
cat "$OUT"

if [ "$SMOKE" = 1 ]; then
  "$TAGBENCH" check "$R"/*.json >&2 || FAILED=1
fi
exit "$FAILED"
