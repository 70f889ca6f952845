# Shell helpers shared by the bench scripts (source it; not run by itself).

# A loopback port nothing listens on: a refused connect (bash's /dev/tcp)
# means free. For servers that cannot take port 0 (redis-server); a race
# with another process remains, so callers retry a failed start.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  echo "$(basename "$0"): no free loopback port" >&2
  return 1
}

# Seconds since the epoch with nanoseconds, for timing steps.
now() { date +%s.%N; }
