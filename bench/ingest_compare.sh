#!/usr/bin/env bash
# Ingestion throughput, tagcache next to Redis on the same data, same run
# (issue 6; results in docs/BENCHMARKS.md). Not part of CI: it writes ~10 GB
# of data and takes a few minutes.
#
#   bench/ingest_compare.sh [--users N] [--events N] [--dir DIR] [--keep-data]
#
# 1. bench/ingest_gen writes, from one seed: CSV pairs (user-major, 200 tags,
#    power-law popularity), one portable Roaring file per tag, NDJSON events,
#    and the same pairs and events in Redis' mass-insert protocol.
# 2. tagcache (Release, one node on 127.0.0.1, RAM only): `tagctl load` of
#    the CSV, then on a fresh node of the Roaring files; then a node with a
#    data directory and --fsync batch takes `tagctl stream` of the events.
# 3. Redis (--save '' --appendonly no for the loads; appendonly yes with
#    appendfsync everysec, its batch policy, for the events): `redis-cli
#    --pipe` of the same pairs (SADD per user, SETBIT per pair) and events.
# Every process started here is stopped by its pid.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
ROOT=$(pwd)
USERS=10600000   # ~10^8 pairs with the default popularity
EVENTS=2000000
DIR=/tmp/tagcache-ingest-bench
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --users) USERS=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --keep-data) KEEP=1; shift ;;
    *) echo "usage: $0 [--users N] [--events N] [--dir DIR] [--keep-data]" >&2; exit 2 ;;
  esac
done

BUILD=$ROOT/build/bench
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTAGCACHE_BUILD_BENCH=ON \
  -DTAGCACHE_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 --target tagcache-server tagctl ingest_gen >/dev/null
SERVER=$BUILD/server/tagcache-server
TAGCTL=$BUILD/cluster/tagctl
command -v redis-server >/dev/null || { echo "redis-server not installed (apt install redis-server)" >&2; exit 1; }

mkdir -p "$DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ "$KEEP" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

echo "==> generating $USERS users x 200 tags, $EVENTS events into $DIR"
if [ ! -f "$DIR/done" ]; then
  PAIRS=$("$BUILD/bench/ingest_gen" --users "$USERS" --csv "$DIR/pairs.csv" --roaring "$DIR/roaring" \
    --redis "$DIR/pairs.resp" --ndjson "$DIR/events.ndjson" --redis-events "$DIR/events.resp" \
    --events "$EVENTS" --ts-min 1700000000001 --ts-max 1700000100000)
  echo "$PAIRS" > "$DIR/done"
fi
PAIRS=$(cat "$DIR/done")
CSV_BYTES=$(stat -c %s "$DIR/pairs.csv")
ROARING_BYTES=$(du -cb "$DIR"/roaring/*.roaring | tail -1 | cut -f1)
# Warm the page cache for both readers alike.
cat "$DIR/pairs.csv" "$DIR"/roaring/* "$DIR/pairs.resp" "$DIR/events.ndjson" "$DIR/events.resp" > /dev/null

start_node() {  # start_node PORT [args...]: echo pid
  local port=$1; shift
  "$SERVER" --listen "127.0.0.1:$port" --log-level warn "$@" > "$DIR/node.$port.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do
    "$TAGCTL" --seeds "127.0.0.1:$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  echo "$pid"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# ---- tagcache ----------------------------------------------------------------
P=$(free_port); NODE=$(start_node "$P" --data-dir ''); PIDS+=("$NODE")
t0=$(now); "$TAGCTL" --seeds "127.0.0.1:$P" load "$DIR/pairs.csv" --ts 1700000000000 --json > "$DIR/load_csv.json"; t1=$(now)
TC_CSV_S=$(calc "$t1 - $t0")
# The node rebuilds the per-user index 500 ms after the last bulk part: sample after it.
sleep 3; TC_CSV_RSS=$(rss_kb "$NODE")
stop "$NODE"

P=$(free_port); NODE=$(start_node "$P" --data-dir ''); PIDS+=("$NODE")
t0=$(now); "$TAGCTL" --seeds "127.0.0.1:$P" load "$DIR/roaring" --ts 1700000000000 --json > "$DIR/load_roaring.json"; t1=$(now)
TC_ROARING_S=$(calc "$t1 - $t0")
# Events after the snapshot: some older than it (ignored), most newer.
stop "$NODE"

rm -rf "$DIR/data"
P=$(free_port); NODE=$(start_node "$P" --data-dir "$DIR/data" --fsync batch); PIDS+=("$NODE")
t0=$(now); "$TAGCTL" --seeds "127.0.0.1:$P" stream "$DIR/events.ndjson" --json --report-interval 0 > "$DIR/stream.json"; t1=$(now)
TC_STREAM_S=$(calc "$t1 - $t0")
stop "$NODE"; rm -rf "$DIR/data"

# ---- Redis -------------------------------------------------------------------
start_redis() {  # start_redis PORT [args...]: echo pid
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save '' --dir "$DIR" "$@" > "$DIR/redis.$port.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$pid"
}
P=$(free_port); REDIS=$(start_redis "$P" --appendonly no); PIDS+=("$REDIS")
t0=$(now); redis-cli -p "$P" --pipe < "$DIR/pairs.resp" > "$DIR/redis_pipe.txt"; t1=$(now)
RD_PAIRS_S=$(calc "$t1 - $t0")
RD_MEM=$(redis-cli -p "$P" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
stop "$REDIS"
rm -f "$DIR/appendonly.aof"; rm -rf "$DIR/appendonlydir"
P=$(free_port); REDIS=$(start_redis "$P" --appendonly yes --appendfsync everysec); PIDS+=("$REDIS")
t0=$(now); redis-cli -p "$P" --pipe < "$DIR/events.resp" > "$DIR/redis_events.txt"; t1=$(now)
RD_EVENTS_S=$(calc "$t1 - $t0")
stop "$REDIS"

# ---- Report ------------------------------------------------------------------
rate() { awk "BEGIN { printf \"%.0f\", $1 / $2 }"; }
mb() { awk "BEGIN { printf \"%.1f\", $1 / 1000000 }"; }
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "data: $PAIRS pairs, $USERS users, 200 tags; CSV $(mb "$CSV_BYTES") MB, Roaring $(mb "$ROARING_BYTES") MB; $EVENTS events"
echo
echo "| what | tagcache | Redis (redis-cli --pipe) |"
echo "|---|---|---|"
echo "| CSV pairs, file -> memory, acknowledged | $(printf '%.2f' "$TC_CSV_S") s = $(rate "$PAIRS" "$TC_CSV_S") pairs/s (node RSS $((TC_CSV_RSS / 1024)) MiB) | $(printf '%.2f' "$RD_PAIRS_S") s = $(rate "$PAIRS" "$RD_PAIRS_S") pairs/s (SADD per user + SETBIT per pair; used_memory $(mb "$RD_MEM") MB) |"
echo "| portable Roaring files | $(printf '%.2f' "$TC_ROARING_S") s = $(rate "$ROARING_BYTES / 1000000" "$TC_ROARING_S") MB/s ($(rate "$PAIRS" "$TC_ROARING_S") pairs/s) | (no bitmap import: same as the row above) |"
echo "| events, fsync batch / appendfsync everysec | $(printf '%.2f' "$TC_STREAM_S") s = $(rate "$EVENTS" "$TC_STREAM_S") events/s (tagctl stream) | $(printf '%.2f' "$RD_EVENTS_S") s = $(rate "$EVENTS" "$RD_EVENTS_S") events/s (SADD/SREM + SETBIT each) |"
echo
echo "tagctl summaries: $DIR/load_csv.json $DIR/load_roaring.json $DIR/stream.json (removed unless --keep-data)"
