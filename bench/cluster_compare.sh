#!/usr/bin/env bash
# Cluster figures (issue 7; results in docs/BENCHMARKS.md). Not part of CI.
#
#   bench/cluster_compare.sh [--users N] [--tags T] [--replicas R] [--dir DIR] [--build DIR]
#
# 1. bench/ingest_gen writes one portable Roaring file per tag (N users,
#    T tags, power-law popularity from 50 %), from one seed.
# 2. One node (Release, data directory, --fsync batch): `tagctl load`, then
#    bench/count_latency runs sequential Counts of 2-3-term expressions.
# 3. Three nodes on the same machine, `tagctl cluster init --replicas R`, the
#    same load and the same Counts (fan-out to three nodes, merged).
# 4. A fourth node joins: `tagctl cluster add-node` is timed and reports the
#    shard state bytes it moved; then every Count is checked again.
# Environment: QUERY_THREADS (per node, default 0 = cores), SETTLE (seconds
# to wait after a load before timing, default 15).
# Every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
USERS=100000000
TAGS=50
REPLICAS=1
DIR=/tmp/tagcache-cluster-bench
BUILD=$ROOT/build/release
while [ $# -gt 0 ]; do
  case "$1" in
    --users) USERS=$2; shift 2 ;;
    --tags) TAGS=$2; shift 2 ;;
    --replicas) REPLICAS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "usage: $0 [--users N] [--tags T] [--replicas R] [--dir DIR] [--build DIR]" >&2; exit 2 ;;
  esac
done

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTAGCACHE_BUILD_BENCH=ON \
  -DTAGCACHE_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j2 --target tagcache-server tagctl ingest_gen count_latency >/dev/null
SERVER=$BUILD/server/tagcache-server
TAGCTL=$BUILD/cluster/tagctl
COUNT=$BUILD/bench/count_latency

PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

QUERY_THREADS=${QUERY_THREADS:-0}  # per node; 1 suits three nodes sharing two cores
# A bulk load drops each shard's per-user index and rebuilds it 500 ms after
# the last write (seconds of CPU for 5 * 10^8 assignments): measure after it.
SETTLE=${SETTLE:-15}

start_node() {  # start_node NAME PORT
  mkdir -p "$DIR/$1"
  "$SERVER" --listen "127.0.0.1:$2" --data-dir "$DIR/$1" --fsync batch --repair-interval-s 0 \
    --query-threads "$QUERY_THREADS" \
    >"$DIR/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    "$TAGCTL" --seeds "127.0.0.1:$2" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node $1 did not start; log:" >&2
  cat "$DIR/$1.log" >&2
  exit 1
}

EXPRS=("tag000 & tag001" "tag001 & tag002 & !tag003" "tag004 | tag005" "tag000 - tag006")

rm -rf "$DIR" && mkdir -p "$DIR/roaring"
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== data: $USERS users x $TAGS tags (bench/ingest_gen --roaring)"
"$BUILD/bench/ingest_gen" --users "$USERS" --tags "$TAGS" --roaring "$DIR/roaring"
du -sh "$DIR/roaring"

echo "== one node"
start_node single 7601
"$TAGCTL" --seeds 127.0.0.1:7601 --timeout 600000 load "$DIR/roaring" --ts 1000 --json
sleep "$SETTLE"
"$COUNT" --seeds 127.0.0.1:7601 --reps 300 "${EXPRS[@]}"
stop_all

echo "== three nodes, replicas $REPLICAS"
start_node n1 7611
start_node n2 7612
start_node n3 7613
"$TAGCTL" --seeds 127.0.0.1:7611 cluster init --replicas "$REPLICAS" \
  --nodes n1=127.0.0.1:7611,n2=127.0.0.1:7612,n3=127.0.0.1:7613
"$TAGCTL" --seeds 127.0.0.1:7611 --timeout 600000 load "$DIR/roaring" --ts 1000 --json
sleep "$SETTLE"
"$COUNT" --seeds 127.0.0.1:7611 --reps 300 "${EXPRS[@]}"

echo "== add a fourth node"
start_node n4 7614
"$TAGCTL" --seeds 127.0.0.1:7611 --timeout 600000 cluster add-node n4=127.0.0.1:7614 --json
"$TAGCTL" --seeds 127.0.0.1:7611 cluster show
"$COUNT" --seeds 127.0.0.1:7611 --reps 20 "${EXPRS[@]}"
stop_all
