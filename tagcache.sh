#!/usr/bin/env bash
# The two Quick start commands (README.md):
#   ./tagcache.sh run    install what is missing, build Release, run a node on 127.0.0.1:7379
#   ./tagcache.sh test   install what is missing, build, run the whole test suite (ctest)
# Extra:
#   ./tagcache.sh run [server flags]  e.g. --listen 127.0.0.1:7400 (see tagcache-server --help)
#   ./tagcache.sh demo              the in-process engine demo on the real bitmap datasets
#   ./tagcache.sh test --sanitize   the same suite built with ASan+UBSan
#   ./tagcache.sh bench             Release microbenchmarks + Redis anchors (slow; not CI)
#   ./tagcache.sh fuzz [SECONDS]    every libFuzzer target (fuzz/) for SECONDS each (default
#                                   60) under ASan+UBSan, built with clang in build/fuzz
# Works on a fresh Debian 12 machine as root, or as a user with sudo.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
DATASETS=${TAGCACHE_DATASETS:-$ROOT/../shared/datasets/real-roaring}

PACKAGES=(build-essential cmake ninja-build pkg-config ccache unzip
  libboost1.81-dev libroaring-dev libxxhash-dev capnproto libcapnp-dev libssl-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev zlib1g-dev librdkafka-dev
  libhiredis-dev redis-server redis-tools openssl)

# Only `fuzz` needs these: clang with libFuzzer and the sanitizer runtimes.
FUZZ_PACKAGES=(clang libclang-rt-14-dev lld)

install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends "${missing[@]}"
}

build() {  # build DIR BUILD_TYPE [cmake args...]
  local dir=$1 type=$2
  shift 2
  cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j2
}

unpack_datasets() {  # unpack_datasets DEST: the real bitmap datasets, one directory each
  local dest=$1
  for zip in census1881 wikileaks-noquotes; do
    if [ ! -f "$DATASETS/$zip.zip" ]; then
      echo "missing dataset $DATASETS/$zip.zip (set TAGCACHE_DATASETS)" >&2
      exit 1
    fi
    mkdir -p "$dest/$zip"
    unzip -q -o "$DATASETS/$zip.zip" -d "$dest/$zip"
  done
}

cmd=${1:-}
case "$cmd" in
  run)
    shift
    install_missing "${PACKAGES[@]}"
    build build/release Release -DTAGCACHE_BUILD_TESTS=OFF
    echo "==> tagcache-server (Ctrl-C stops it); tagctl is build/release/cluster/tagctl"
    exec ./build/release/server/tagcache-server "$@"
    ;;
  demo)
    install_missing "${PACKAGES[@]}"
    build build/release Release -DTAGCACHE_BUILD_TESTS=OFF
    data=$(mktemp -d)
    trap 'rm -rf "$data"' EXIT
    unpack_datasets "$data"
    ./build/release/server/tagcache-demo "$data/census1881" "$data/wikileaks-noquotes"
    ;;
  test)
    install_missing "${PACKAGES[@]}"
    if [ "${2:-}" = "--sanitize" ]; then
      build build/asan Debug -DTAGCACHE_SANITIZE=ON
      export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
      TAGCACHE_DATASETS=$DATASETS ctest --test-dir build/asan --output-on-failure -j2
    else
      build build/test RelWithDebInfo
      TAGCACHE_DATASETS=$DATASETS ctest --test-dir build/test --output-on-failure -j2
    fi
    ;;
  bench)
    install_missing "${PACKAGES[@]}"
    ./bench/run_all.sh
    exec ./bench/net_compare.sh
    ;;
  fuzz)
    secs=${2:-60}
    case "$secs" in ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$secs'" >&2; exit 2;; esac
    install_missing "${PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
    start=$(date +%s)
    CC=clang CXX=clang++ cmake -S "$ROOT" -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DTAGCACHE_FUZZ=ON -DTAGCACHE_BUILD_TESTS=OFF >/dev/null
    # Every fuzz/<name>_fuzz.cc is a target (fuzz/CMakeLists.txt lists the same names).
    targets=$(cd fuzz && ls ./*_fuzz.cc | sed 's|^\./||; s|_fuzz\.cc$||')
    cmake --build build/fuzz -j2 --target $(printf 'fuzz_%s ' $targets)
    echo "==> fuzz build: $(( $(date +%s) - start )) s; running each target for ${secs} s"
    run_dir=build/fuzz/run
    rm -rf "$run_dir"
    failed=()
    for t in $targets; do
      # A scratch copy of the seeds: what the fuzzer learns does not grow the committed corpus.
      mkdir -p "$run_dir/$t/corpus" "$run_dir/$t/artifacts"
      cp -r fuzz/corpus/"$t"/. "$run_dir/$t/corpus/"
      if [ -d fuzz/regressions/"$t" ]; then cp -r fuzz/regressions/"$t"/. "$run_dir/$t/corpus/"; fi
      export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
      if ./build/fuzz/fuzz/fuzz_"$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
          -max_len=65536 -print_final_stats=1 \
          -artifact_prefix="$run_dir/$t/artifacts/" "$run_dir/$t/corpus" >"$run_dir/$t/log" 2>&1; then
        echo "==> $t: ok ($(grep -o 'cov: [0-9]*' "$run_dir/$t/log" | tail -1),$(grep -o 'exec/s: [0-9]*' "$run_dir/$t/log" | tail -1 | sed 's/^/ /'))"
      else
        failed+=("$t")
        echo "==> $t: FAILED; log $run_dir/$t/log" >&2
        tail -n 40 "$run_dir/$t/log" >&2
        for a in "$run_dir/$t"/artifacts/*; do
          [ -e "$a" ] || continue
          echo "    crash input: $a" >&2
          echo "    reproduce:   ./build/fuzz/fuzz/fuzz_$t $a   (or build/dev/fuzz/fuzz_${t}_replay $a)" >&2
          echo "    keep it:     minimize with -minimize_crash=1, copy to fuzz/regressions/$t/, fix, add a test" >&2
        done
      fi
    done
    echo "==> fuzz: $(( $(date +%s) - start )) s in all"
    if [ ${#failed[@]} -gt 0 ]; then
      echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 run [server flags]|test [--sanitize]|demo|bench|fuzz [SECONDS]" >&2
    exit 2
    ;;
esac
