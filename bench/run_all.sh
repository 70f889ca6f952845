#!/usr/bin/env bash
# Builds the benchmarks (Release) and runs all of them in one go: the engine
# microbenchmarks with their raw-CRoaring anchors, the memory report, and the
# Redis anchors. Everything is teed to build/bench/results.txt.
#
# Usage: bench/run_all.sh [extra engine_bench flags, e.g. --benchmark_filter=Count]
# Env: REPETITIONS (default 5), MIN_TIME (seconds per run, default 0.5).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/bench"
results="$build/results.txt"
REPETITIONS=${REPETITIONS:-5}
MIN_TIME=${MIN_TIME:-0.5}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTAGCACHE_BUILD_BENCH=ON -DTAGCACHE_BUILD_TESTS=OFF
cmake --build "$build" -j2 --target engine_bench memory_report

{
  echo "== tagcache benchmarks, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)"
  echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
    "$(awk '/MemTotal/ {printf "%.1f GB RAM", $2 / 1048576}' /proc/meminfo), $(uname -srm)"
  echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "== $build/bench/engine_bench --benchmark_repetitions=$REPETITIONS" \
    "--benchmark_report_aggregates_only=true --benchmark_min_time=$MIN_TIME $*"
  "$build/bench/engine_bench" --benchmark_repetitions="$REPETITIONS" \
    --benchmark_report_aggregates_only=true --benchmark_min_time="$MIN_TIME" \
    "$@"
  echo
  echo "== $build/bench/memory_report"
  "$build/bench/memory_report"
  echo
  echo "== $root/bench/redis_anchor.sh"
  "$root/bench/redis_anchor.sh"
} 2>&1 | tee "$results"
echo "results written to $results"
