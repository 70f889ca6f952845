#!/usr/bin/env bash
# Restart time of a big node, cold cache. Starts tagcache-server (--fsync
# batch, no automatic checkpoints) on a fresh data dir on disk, loads USERS x
# TAGS with power-law densities (MEAN tags per user; write_load --load-only,
# the same generator as net_load), writes a checkpoint (tagctl checkpoint),
# records the assignments and a few counts, kills the server with SIGKILL,
# evicts the data files from the page cache (dd iflag=nocache: no
# drop_caches needed), measures the disk's sequential read speed on the
# checkpoint (dd iflag=direct), evicts again, restarts on the same data dir
# and measures the time until the port file appears. Prints the server's own
# recovery breakdown ("recovered in ... checkpoint ... (N bytes, M ms)"),
# the checkpoint read speed against dd's, and checks that the counts after
# the restart equal those before the kill (exit 1 if not).
#
# Memory: the node holds ~3.4 bytes per assignment, so the default
# 10^8 users x 10 tags each (10^9 assignments) needs ~3.4 GB of RAM, and
# about as much disk for the checkpoint plus the load's WAL.
#
# Env: USERS (default 100000000), TAGS (default 50), MEAN (default 10),
#      SEED (default 1), BUILD_DIR (default build/release), SKIP_BUILD=1,
#      DATA_PARENT (where the temp data dir goes, default build/: on disk),
#      KEEP_DATA=1 (leave the data dir), SERVER_FLAGS (extra server flags).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/release}
USERS=${USERS:-100000000}
TAGS=${TAGS:-50}
MEAN=${MEAN:-10}
SEED=${SEED:-1}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTAGCACHE_BUILD_BENCH=ON -DTAGCACHE_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j2 --target tagcache-server tagctl write_load
fi
server_bin="$build/server/tagcache-server"
tagctl_bin="$build/cluster/tagctl"
[ -f "$tagctl_bin" ] && [ -x "$tagctl_bin" ] || tagctl_bin=$(find "$build" -name tagctl -type f -perm -u+x | head -1)

mkdir -p "${DATA_PARENT:-$root/build}"
tmp=$(mktemp -d "${DATA_PARENT:-$root/build}/recovery.XXXXXX")
data="$tmp/data"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "${KEEP_DATA:-0}" = 1 ]; then echo "data kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

start_server() {  # log file; sets pid and port
  rm -f "$tmp/port"
  "$server_bin" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$data" \
    --fsync batch --checkpoint-wal-bytes 0 --checkpoint-interval-s 0 --log-level info \
    ${SERVER_FLAGS:-} >"$1" 2>&1 &
  pid=$!
  while [ ! -s "$tmp/port" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tagcache-server exited during start:" >&2
      tail -20 "$1" >&2
      wait "$pid" 2>/dev/null || true
      pid=""
      exit 1
    fi
    sleep 0.02
  done
  port=$(cat "$tmp/port")
}

tagctl() { "$tagctl_bin" --seeds "127.0.0.1:$port" "$@"; }

evict() {  # files: written back first (dirty pages cannot be dropped), then dropped
  for f in "$@"; do
    sync "$f"
    dd if="$f" iflag=nocache count=0 status=none
  done
}

cached() {  # how much of the files the page cache still holds
  if command -v fincore >/dev/null; then
    fincore -b -n -o RES "$@" 2>/dev/null | awk '{s += $1} END {printf "%.0f MB cached", s / 1e6}'
  else
    echo "fincore not installed"
  fi
}

# Counts compared across the restart: a few tags and one expression.
last=$(printf 'tag%04d' $((TAGS - 1)))
mid=$(printf 'tag%04d' $((TAGS / 2)))
exprs=("tag0000" "$mid" "$last")
[ "$TAGS" -ge 2 ] && exprs+=("tag0000 & !tag0001")
counts() { for e in "${exprs[@]}"; do tagctl --json count "$e" | jq -r .count; done; }

echo "== $(date -u '+%F %T UTC'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)"
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
  "$(awk '/MemTotal/ {printf "%.1f GB RAM", $2 / 1048576}' /proc/meminfo), $(uname -srm)"
echo "== data dir: $data on $(df -T "$tmp" | awk 'NR == 2 {print $1 " (" $2 "), " int($5 / 1048576) " GB free"}')"

start_server "$tmp/server1.log"
echo "== tagcache-server on 127.0.0.1:$port (pid $pid); loading $USERS users x $TAGS tags, mean $MEAN"
"$build/bench/write_load" --server "127.0.0.1:$port" --load-only --users "$USERS" \
  --tags "$TAGS" --mean "$MEAN" --seed "$SEED"

t=$(now)
ckpt=$(tagctl --json checkpoint)
ckpt_path=$(echo "$ckpt" | jq -r '.nodes[0].path')
echo "== checkpoint: $ckpt_path, $(echo "$ckpt" | jq -r '.nodes[0].bytes') bytes," \
  "written in $(echo "$ckpt" | jq -r '.nodes[0].micros / 1e6') s on the node, $(echo "$ckpt" | jq -r '.nodes[0].segments_removed') WAL segment(s) removed ($(secs_since "$t") s round trip)"
stats=$(tagctl --json stats)
assignments=$(echo "$stats" | jq -r '.nodes[0].assignments')
echo "== stats: $assignments assignments, $(echo "$stats" | jq -r '.nodes[0].known_users') known users," \
  "RSS $(echo "$stats" | jq -r '.nodes[0].memory.memory_bytes / 1e9 * 100 | floor / 100') GB"
before=$(counts)

kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""
echo "== killed with SIGKILL; data dir: $(du -sh "$data" | cut -f1)"
find "$data" -type f -printf "   %10s %P\n" | sort -k2 | head -20

mapfile -t files < <(find "$data" -type f)
ckpt_file="$ckpt_path"
[ -f "$ckpt_file" ] || ckpt_file="$data/$(basename "$ckpt_path")"
ckpt_bytes=$(stat -c %s "$ckpt_file")
evict "${files[@]}"
echo "== evicted from the page cache: $(cached "${files[@]}")"
dd_out=$(dd if="$ckpt_file" of=/dev/null bs=4M iflag=direct 2>&1 | tail -1)
dd_secs=$(echo "$dd_out" | sed -E 's/.* copied, ([0-9.e+-]+) s,.*/\1/')
dd_mbs=$(awk -v b="$ckpt_bytes" -v s="$dd_secs" 'BEGIN {printf "%.0f", b / s / 1e6}')
echo "== disk: dd bs=4M iflag=direct of the checkpoint: $dd_out"
evict "${files[@]}"
echo "== evicted again: $(cached "${files[@]}")"

t=$(now)
start_server "$tmp/server2.log"
restart_s=$(secs_since "$t")
echo "== restarted: port file after $restart_s s"
line=$(grep -m1 'recovered in' "$tmp/server2.log" || true)
echo "   server: ${line#*] }"
after=$(counts)

total_ms=$(echo "$line" | sed -nE 's/.*recovered in ([0-9]+) ms.*/\1/p')
ckpt_ms=$(echo "$line" | sed -nE 's/.*checkpoint [^ ]+ \(([0-9]+) bytes, ([0-9]+) ms\).*/\2/p')
log_bytes=$(echo "$line" | sed -nE 's/.*checkpoint [^ ]+ \(([0-9]+) bytes, ([0-9]+) ms\).*/\1/p')
read_mbs=$(awk -v b="${log_bytes:-0}" -v ms="${ckpt_ms:-0}" 'BEGIN {if (ms > 0) printf "%.0f", b / (ms / 1000) / 1e6; else print "n/a"}')

echo
echo "| measure | value |"
echo "|---|---:|"
echo "| users x tags (mean) | $USERS x $TAGS ($MEAN) |"
echo "| assignments | $assignments |"
echo "| checkpoint bytes | $ckpt_bytes ($(awk -v b="$ckpt_bytes" -v a="$assignments" 'BEGIN {printf "%.2f", b / a}') per assignment) |"
echo "| disk sequential read (dd iflag=direct) | $dd_mbs MB/s |"
echo "| checkpoint read + decode (node's checkpoint ms) | ${ckpt_ms:-?} ms = $read_mbs MB/s |"
echo "| checkpoint read speed / dd speed | $(awk -v r="$read_mbs" -v d="$dd_mbs" 'BEGIN {if (r + 0 > 0) printf "%.2f", r / d; else print "n/a"}') |"
echo "| recovery (node's 'recovered in') | $(awk -v ms="${total_ms:-0}" 'BEGIN {printf "%.2f", ms / 1000}') s |"
echo "| assignments recovered per second | $(awk -v a="$assignments" -v ms="${total_ms:-0}" 'BEGIN {if (ms > 0) printf "%.0f M/s", a / (ms / 1000) / 1e6; else print "n/a"}') |"
echo "| restart until port file | $restart_s s |"

echo
status=0
for i in "${!exprs[@]}"; do
  b=$(echo "$before" | sed -n "$((i + 1))p")
  a=$(echo "$after" | sed -n "$((i + 1))p")
  if [ "$a" = "$b" ]; then verdict=ok; else verdict=MISMATCH; status=1; fi
  echo "count '${exprs[$i]}': before kill $b, after restart $a: $verdict"
done
stats=$(tagctl --json stats)
a2=$(echo "$stats" | jq -r '.nodes[0].assignments')
if [ "$a2" = "$assignments" ]; then verdict=ok; else verdict=MISMATCH; status=1; fi
echo "assignments: before kill $assignments, after restart $a2: $verdict"

kill "$pid"
wait "$pid" 2>/dev/null || true
pid=""
exit "$status"
