#!/usr/bin/env bash
# Redis anchors for the engine benchmarks (issue 3): what the same audience
# counts and the same tag storage cost in Redis, measured on this machine.
#
# Starts its own redis-server (Debian's; no persistence) on 127.0.0.1 at the
# first free port from 6390, and with a small raw-socket RESP client in
# python3 (no Python packages needed):
#  1. SETs three bitmaps of $USERS bits (default 10^8) at 50 %, 10 % and 1 %
#     density, generated in Python and sent whole;
#  2. times, $REPS times each (median, min, p90 client-side; server-side
#     usec_per_call from INFO commandstats):
#       a & b:       BITOP AND tmp a b ; BITCOUNT tmp
#       a & b & !c:  BITOP NOT nc c ; BITOP AND tmp a b nc ; BITCOUNT tmp   (two BITOPs:
#                    Redis 7.0 has no ANDNOT)
#     and checks every count against the count computed in Python;
#  3. memory per (user, tag) assignment from INFO memory used_memory deltas on
#     a sample of $SAMPLE_USERS users (default 100,000) with 1,000 power-law
#     tags, ~18 per user (the memory_report model): per-user SETs of tag names
#     (SADD), per-tag bitmaps built by SETBIT, and per-tag bitmaps SET whole.
# Stops only the redis-server it started. Takes about a minute.
#
# Usage: bench/redis_anchor.sh   (env: USERS, REPS, SAMPLE_USERS, PORT_BASE)
set -euo pipefail

USERS=${USERS:-100000000}
REPS=${REPS:-30}
SAMPLE_USERS=${SAMPLE_USERS:-100000}
PORT_BASE=${PORT_BASE:-6390}

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y redis-server redis-tools
  else
    echo "redis_anchor: redis-server/redis-cli missing: apt-get install -y redis-server redis-tools" >&2
    exit 1
  fi
fi
command -v python3 >/dev/null || { echo "redis_anchor: python3 is needed" >&2; exit 1; }

port=""
for ((p = PORT_BASE; p < PORT_BASE + 100; p++)); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "redis_anchor: no free port in $PORT_BASE..$((PORT_BASE + 99))" >&2; exit 1; }

workdir=$(mktemp -d)
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no \
  --dir "$workdir" --logfile "$workdir/redis.log" &
redis_pid=$!
cleanup() {
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
  kill -0 "$redis_pid" 2>/dev/null || { cat "$workdir/redis.log" >&2; exit 1; }
  sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null

echo "== Redis anchors: $(redis-server --version)"
echo "   redis-server pid $redis_pid on 127.0.0.1:$port, --save '' --appendonly no;" \
  "$(nproc) cores; $(uname -srm)"

python3 - "$port" "$USERS" "$REPS" "$SAMPLE_USERS" <<'PY'
import random
import socket
import statistics
import sys
import time

port, users, reps, sample_users = (int(x) for x in sys.argv[1:5])


class Redis:
    """Minimal RESP2 client over one socket: enough for timing and INFO."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb", buffering=1 << 16)

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = b"%d" % a
            out.append(b"$%d\r\n" % len(a))
            out.append(a)
            out.append(b"\r\n")
        return b"".join(out)

    def read(self):
        line = self.reader.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            return data[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read()

    def pipeline(self, commands, chunk=2000):
        """Sends commands in chunks, reading every reply (errors raise)."""
        for i in range(0, len(commands), chunk):
            part = commands[i:i + chunk]
            self.sock.sendall(b"".join(self.encode(*c) for c in part))
            for _ in part:
                self.read()

    def info(self, section):
        text = self.call("INFO", section).decode()
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


def random_bitmap(nbits, p, seed):
    """A random nbits-bit big int, each bit set with probability p (to 2^-32):
    random words combined by p's binary digits, least significant first."""
    rng = random.Random(seed)
    nbytes = nbits // 8
    m = min(round(p * 2**32), 2**32 - 1)
    lowest = (m & -m).bit_length() - 1
    x = 0
    for i in range(lowest, 32):
        r = int.from_bytes(rng.randbytes(nbytes), "little")
        x = (x | r) if (m >> i) & 1 else (x & r)
    return x


def server_usec(r):
    stats = r.info("commandstats")
    out = {}
    for key, value in stats.items():
        fields = dict(kv.split("=") for kv in value.split(","))
        out[key.replace("cmdstat_", "")] = float(fields["usec_per_call"])
    return out


def timed(r, commands, expected, reps):
    """Runs the command sequence twice to warm up, then reps times; returns
    client-side ms per query and server-side usec_per_call by command."""
    times = []
    for i in range(reps + 2):
        if i == 2:
            r.call("CONFIG", "RESETSTAT")
        t0 = time.perf_counter()
        reply = None
        for c in commands:
            reply = r.call(*c)
        t1 = time.perf_counter()
        if reply != expected:
            raise SystemExit("count mismatch: Redis %s, expected %s" % (reply, expected))
        if i >= 2:
            times.append((t1 - t0) * 1e3)
    return times, server_usec(r)


def summary(times):
    times = sorted(times)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    return "median %7.2f ms  min %7.2f  p90 %7.2f  (n=%d)" % (
        statistics.median(times), times[0], p90, len(times))


r = Redis(port)
assert users % 8 == 0, "USERS must be a multiple of 8"

# ---- 1. bitmaps -------------------------------------------------------------
t0 = time.perf_counter()
a = random_bitmap(users, 0.50, 1)
b = random_bitmap(users, 0.10, 2)
c = random_bitmap(users, 0.01, 3)
nbytes = users // 8
for key, x in (("a", a), ("b", b), ("c", c)):
    r.call("SET", key, x.to_bytes(nbytes, "little"))
expected_ab = (a & b).bit_count()
expected_abnc = (a & b & ~c).bit_count()
print("bitmaps: %d bits each, densities a %.4f b %.4f c %.4f; built and SET in %.1f s" % (
    users, a.bit_count() / users, b.bit_count() / users, c.bit_count() / users,
    time.perf_counter() - t0))
print("used_memory with the three bitmaps: %.1f MB" % (int(r.info("memory")["used_memory"]) / 1e6))

# ---- 2. timings -------------------------------------------------------------
ab, srv_ab = timed(r, [("BITOP", "AND", "tmp", "a", "b"), ("BITCOUNT", "tmp")], expected_ab, reps)
abnc, srv_abnc = timed(r, [("BITOP", "NOT", "nc", "c"), ("BITOP", "AND", "tmp", "a", "b", "nc"),
                           ("BITCOUNT", "tmp")], expected_abnc, reps)
abnc3, _ = timed(r, [("BITOP", "AND", "tmp", "a", "b"), ("BITOP", "NOT", "nc", "c"),
                     ("BITOP", "AND", "tmp", "tmp", "nc"), ("BITCOUNT", "tmp")], expected_abnc, reps)

print()
print("a & b      (BITOP AND tmp a b; BITCOUNT tmp), count %d:" % expected_ab)
print("   client  " + summary(ab))
print("   server  BITOP %.0f us + BITCOUNT %.0f us per call (mean, INFO commandstats)" % (
    srv_ab["bitop"], srv_ab["bitcount"]))
print("a & b & !c (BITOP NOT nc c; BITOP AND tmp a b nc; BITCOUNT tmp), count %d:" % expected_abnc)
print("   client  " + summary(abnc))
print("   server  BITOPs 2 x %.0f us + BITCOUNT %.0f us per call (mean, INFO commandstats)" % (
    srv_abnc["bitop"], srv_abnc["bitcount"]))
print("a & b & !c, three BITOPs (AND tmp a b; NOT nc c; AND tmp tmp nc; BITCOUNT):")
print("   client  " + summary(abnc3))

# ---- 3. memory per (user, tag) assignment -------------------------------------
TAGS, TOP, MEAN = 1000, 0.5, 18.0


def power_law(tags, top, mean):
    lo, hi = 0.0, 16.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if sum(top * k ** -mid for k in range(1, tags + 1)) > mean:
            lo = mid
        else:
            hi = mid
    s = (lo + hi) / 2
    return s, [top * k ** -s for k in range(1, tags + 1)]


s, density = power_law(TAGS, TOP, MEAN)
rng = random.Random(4)
members = []  # per tag, sorted user ids in [0, sample_users)
for p in density:
    k = round(p * sample_users)  # exact expected size: fine for a memory sample
    members.append(sorted(rng.sample(range(sample_users), k)))
assignments = sum(len(m) for m in members)
tags_of = [[] for _ in range(sample_users)]
for t, m in enumerate(members):
    name = "tag:%04d" % t
    for u in m:
        tags_of[u].append(name)


def measure(load):
    r.call("FLUSHALL")
    before = int(r.info("memory")["used_memory"])
    load()
    after = int(r.info("memory")["used_memory"])
    return after - before


def load_sets():
    r.pipeline([("SADD", "u:%d" % u) + tuple(tags) for u, tags in enumerate(tags_of) if tags])


def load_setbit():
    # In user order, as an event stream over time would set them.
    cmds = []
    for u, tags in enumerate(tags_of):
        for name in tags:
            cmds.append(("SETBIT", name, u, 1))
    r.pipeline(cmds, chunk=5000)


def load_whole_bitmaps():
    for t, m in enumerate(members):
        if not m:
            continue
        buf = bytearray(m[-1] // 8 + 1)  # the length SETBIT would give
        for u in m:
            buf[u >> 3] |= 0x80 >> (u & 7)  # Redis bit order: bit 0 is the MSB of byte 0
        r.call("SET", "tag:%04d" % t, bytes(buf))


print()
print("memory: %d users x %d tags, p_r = %.2f * r^-%.3f (mean %.1f tags/user): %d assignments" % (
    sample_users, TAGS, TOP, s, assignments / sample_users, assignments))
print("   (used_memory delta after FLUSHALL, allocator size classes included)")
for label, load in (("per-user SETs of tag names (SADD u:<id> ...)", load_sets),
                    ("per-tag bitmaps built by SETBIT, users ascending", load_setbit),
                    ("per-tag bitmaps SET whole (exact length)", load_whole_bitmaps)):
    t0 = time.perf_counter()
    delta = measure(load)
    print("   %-50s %8.2f bytes/assignment  (%.1f MB, loaded in %.1f s)" % (
        label, delta / assignments, delta / 1e6, time.perf_counter() - t0))
print("   note: a per-tag bitmap costs about users/8 bytes whatever its density, so per")
print("   assignment it is ~ tags / (8 * mean tags per user) = %.2f bytes here." % (TAGS / (8 * MEAN)))
r.call("FLUSHALL")
PY
echo "== Redis anchors done"
