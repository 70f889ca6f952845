#include "metrics.h"

#include <array>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <string_view>

#include "cluster_state.h"
#include "limit_stats.h"
#include "request_stats.h"

namespace tagcache::net {
namespace {

// Request latency buckets: powers of two in microseconds, 32 µs to about
// 16.8 s. They fall on LatencyHistogram bucket boundaries (a bucket's upper
// bound is 2^k - 1 µs for the last bucket below 2^k), so the cumulative
// counts are exact, not interpolated; printed in seconds they are exact
// decimals too.
constexpr std::array<uint64_t, 18> kLatencyBoundsMicros = {
    32,      64,      128,     256,     512,      1024,     2048,      4096,      8192,
    16384,   32768,   65536,   131072,  262144,   524288,   1048576,   4194304,   16777216};

std::string Seconds(uint64_t micros) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%" PRIu64 ".%06" PRIu64, micros / 1'000'000,
                micros % 1'000'000);
  std::string s(buf);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

void Header(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void Sample(std::string& out, std::string_view name, std::string_view labels, uint64_t value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

void SampleSeconds(std::string& out, std::string_view name, std::string_view labels,
                   uint64_t micros) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += Seconds(micros);
  out += '\n';
}

// A gauge or counter family with one unlabelled sample.
void Single(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            uint64_t value) {
  Header(out, name, type, help);
  Sample(out, name, "", value);
}

std::string Label(std::string_view key, std::string_view value) {
  // Every label value here is one of our own fixed names: nothing to escape.
  std::string s(key);
  s += "=\"";
  s += value;
  s += '"';
  return s;
}

void RenderRequests(Service& service, std::string& out) {
  std::array<KindSummary, kNumKinds> kinds{};
  for (size_t loop = 0; loop < service.loop_count(); ++loop) {
    for (size_t k = 0; k < kNumKinds; ++k) service.loop_stats(loop).AddTo(k, kinds[k]);
  }
  Header(out, "tagcache_requests_total", "counter",
         "Requests answered, by request kind and response status.");
  for (size_t k = 0; k < kNumKinds; ++k) {
    const std::string kind = Label("kind", KindName(k));
    for (size_t s = 0; s < kNumStatusSlots; ++s) {
      // Every kind reports "ok" (so that rates exist from the start; a
      // malformed frame is never ok); other statuses once they occurred.
      const bool always = s == StatusSlot(StatusCode::kOk) && k != kKindMalformed;
      if (!always && kinds[k].by_status[s] == 0) continue;
      Sample(out, "tagcache_requests_total", kind + "," + Label("status", StatusSlotName(s)),
             kinds[k].by_status[s]);
    }
  }
  Header(out, "tagcache_request_duration_seconds", "histogram",
         "Time from a request's arrival to its response being queued, by request kind.");
  for (size_t k = 0; k < kNumKinds; ++k) {
    const KindSummary& sum = kinds[k];
    if (sum.count == 0) continue;
    const std::string kind = Label("kind", KindName(k));
    // Log buckets are ascending: walk them once while the bounds rise.
    uint64_t cumulative = 0;
    size_t b = 0;
    for (uint64_t bound : kLatencyBoundsMicros) {
      while (b < LatencyHistogram::kBuckets && LatencyHistogram::BucketUpper(b) < bound) {
        cumulative += sum.latency[b++];
      }
      Sample(out, "tagcache_request_duration_seconds_bucket",
             kind + "," + Label("le", Seconds(bound)), cumulative);
    }
    // +Inf is the count itself: a sample recorded after the buckets were
    // read must not make +Inf smaller than a finite bucket.
    uint64_t total = cumulative;
    for (; b < LatencyHistogram::kBuckets; ++b) total += sum.latency[b];
    Sample(out, "tagcache_request_duration_seconds_bucket", kind + ",le=\"+Inf\"", total);
    SampleSeconds(out, "tagcache_request_duration_seconds_sum", kind, sum.micros_sum);
    Sample(out, "tagcache_request_duration_seconds_count", kind, total);
  }
}

void RenderEngine(Service& service, std::string& out) {
  const EngineStats s = service.engine().Stats(/*detailed=*/false);
  Single(out, "tagcache_shards", "gauge", "Shards holding state on this node.", s.shards);
  Single(out, "tagcache_tags", "gauge", "Tags known to this node.", s.tags);
  Single(out, "tagcache_known_users", "gauge", "Users this node has seen.", s.known_users);
  Single(out, "tagcache_assignments", "gauge", "(user, tag) memberships held.", s.assignments);
  Header(out, "tagcache_memory_bytes", "gauge",
         "Memory by kind: the engine's estimates of its structures, and the process's "
         "resident set.");
  Sample(out, "tagcache_memory_bytes", Label("kind", "bitmaps"), s.memory.bitmap_bytes);
  Sample(out, "tagcache_memory_bytes", Label("kind", "overrides"), s.memory.override_bytes);
  Sample(out, "tagcache_memory_bytes", Label("kind", "user_index"), s.memory.index_bytes);
  Sample(out, "tagcache_memory_bytes", Label("kind", "known_users"), s.memory.known_bytes);
  if (MemoryGuard* memory = service.memory_guard()) {
    Sample(out, "tagcache_memory_bytes", Label("kind", "resident"), memory->ResidentBytes());
    Single(out, "tagcache_memory_limit_bytes", "gauge",
           "--max-memory: writes are refused above it (0: no limit).", memory->limit_bytes());
  }
  Header(out, "tagcache_events_total", "counter",
         "Tag events received, by outcome of the merge rules.");
  Sample(out, "tagcache_events_total", Label("result", "applied"), s.counters.events_applied);
  Sample(out, "tagcache_events_total", Label("result", "ignored"), s.counters.events_ignored);
  Header(out, "tagcache_snapshot_parts_total", "counter",
         "Snapshot parts received, by outcome of the merge rules.");
  Sample(out, "tagcache_snapshot_parts_total", Label("result", "applied"),
         s.counters.snapshots_applied);
  Sample(out, "tagcache_snapshot_parts_total", Label("result", "duplicate"),
         s.counters.snapshots_duplicate);
  Sample(out, "tagcache_snapshot_parts_total", Label("result", "stale"),
         s.counters.snapshots_stale);
  Sample(out, "tagcache_snapshot_parts_total", Label("result", "tie"), s.counters.snapshot_ties);
  Header(out, "tagcache_writes_refused_total", "counter", "Writes refused, by reason.");
  Sample(out, "tagcache_writes_refused_total", Label("reason", "future_timestamp"),
         s.counters.writes_refused_future);
  Sample(out, "tagcache_writes_refused_total", Label("reason", "memory"),
         service.memory_guard() ? service.memory_guard()->refused() : 0);
  durability::Durability* log = service.durability();
  Sample(out, "tagcache_writes_refused_total", Label("reason", "io"),
         log ? log->Stats().writes_refused_io : 0);
  Single(out, "tagcache_index_rebuilds_total", "counter",
         "Per-user shard indexes dropped by a bulk write and rebuilt in the background.",
         s.counters.index_rebuilds);
}

void RenderDurability(Service& service, std::string& out) {
  durability::Durability* log = service.durability();
  if (log == nullptr) return;  // a node without a data directory logs nothing
  const durability::DurabilityStats d = log->Stats();
  Single(out, "tagcache_wal_bytes_total", "counter", "Bytes appended to the WAL since start.",
         d.wal_bytes);
  Single(out, "tagcache_wal_records_total", "counter", "Records logged since start.", d.records);
  Single(out, "tagcache_wal_groups_total", "counter",
         "Group commits since start (one write and at most one fsync each).", d.groups);
  Single(out, "tagcache_wal_bytes_since_checkpoint", "gauge",
         "WAL bytes a restart would replay after the newest checkpoint.",
         d.wal_bytes_since_checkpoint);
  Header(out, "tagcache_wal_fsync_duration_seconds", "histogram", "Duration of WAL fsyncs.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < durability::kFsyncBucketMicros.size(); ++i) {
    cumulative += d.fsync_buckets[i];
    Sample(out, "tagcache_wal_fsync_duration_seconds_bucket",
           Label("le", Seconds(durability::kFsyncBucketMicros[i])), cumulative);
  }
  cumulative += d.fsync_buckets.back();
  Sample(out, "tagcache_wal_fsync_duration_seconds_bucket", "le=\"+Inf\"", cumulative);
  SampleSeconds(out, "tagcache_wal_fsync_duration_seconds_sum", "", d.fsync_micros_total);
  Sample(out, "tagcache_wal_fsync_duration_seconds_count", "", cumulative);
  Single(out, "tagcache_checkpoints_total", "counter", "Checkpoints written since start.",
         d.checkpoints);
  Single(out, "tagcache_checkpoint_failures_total", "counter",
         "Checkpoints that failed since start.", d.checkpoint_failures);
  Single(out, "tagcache_checkpoint_last_bytes", "gauge", "Size of the newest checkpoint written.",
         d.last_checkpoint_bytes);
  if (d.last_checkpoint_unix_ms != 0) {
    const auto now_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    const uint64_t age_ms = now_ms > d.last_checkpoint_unix_ms ? now_ms - d.last_checkpoint_unix_ms : 0;
    Header(out, "tagcache_checkpoint_age_seconds", "gauge",
           "Seconds since the newest checkpoint was written (absent until the first since start).");
    SampleSeconds(out, "tagcache_checkpoint_age_seconds", "", age_ms * 1000);
  }
  Header(out, "tagcache_recovery_seconds", "gauge", "How long the last start took to recover.");
  SampleSeconds(out, "tagcache_recovery_seconds", "", d.recovery.total_micros);
}

void RenderNetwork(Service& service, std::string& out) {
  Single(out, "tagcache_connections_open", "gauge", "Client connections being served.",
         service.connections());
  Single(out, "tagcache_connections_accepted_total", "counter",
         "Connections admitted since start.", service.connections_accepted());
  Single(out, "tagcache_connections_rejected_total", "counter",
         "Connections refused over --max-connections since start.",
         service.LimitCount(Limit::kConnections));
  Header(out, "tagcache_limit_rejections_total", "counter",
         "Times a protective limit refused, closed, clamped or throttled a connection or "
         "request, by limit.");
  for (size_t i = 0; i < kNumLimits; ++i) {
    const auto limit = static_cast<Limit>(i);
    Sample(out, "tagcache_limit_rejections_total", Label("limit", LimitName(limit)),
           service.LimitCount(limit));
  }
}

void RenderCluster(Service& service, std::string& out) {
  const ClusterState::View view = service.cluster().Current();
  Single(out, "tagcache_cluster_epoch", "gauge",
         "Epoch of the cluster map this node holds (0: standalone).", view.epoch());
  Single(out, "tagcache_cluster_moving", "gauge",
         "1 while the node's map describes a shard move in progress.",
         view.clustered() && view.placement->map().moving ? 1 : 0);
}

}  // namespace

std::string RenderMetrics(Service& service) {
  std::string out;
  out.reserve(64 << 10);
  RenderRequests(service, out);
  RenderNetwork(service, out);
  RenderEngine(service, out);
  RenderDurability(service, out);
  RenderCluster(service, out);
  return out;
}

}  // namespace tagcache::net
