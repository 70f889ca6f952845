// --json output: one document per run, field names documented in
// docs/CLI.md. The only translation unit that includes nlohmann-json.
#include <nlohmann/json.hpp>
#include <ostream>

#include "report.h"

namespace tagcache::tagctl {
namespace {

using Json = nlohmann::ordered_json;  // fields in the documented order

Json ToJson(const GetReport& r) {
  Json tags = Json::array();
  for (const auto& hit : r.tags) tags.push_back(hit.tag);
  Json doc = {{"user", r.user}, {"tags", std::move(tags)}};
  if (r.with_ts) {
    Json ts = Json::object();
    for (const auto& hit : r.tags) ts[hit.tag] = hit.ts;
    doc["ts"] = std::move(ts);
  }
  return doc;
}

Json ToJson(const HasReport& r) {
  Json has = Json::object();
  for (size_t i = 0; i < r.tags.size(); ++i) has[r.tags[i]] = i < r.has.size() && r.has[i];
  return {{"user", r.user}, {"has", std::move(has)}};
}

Json ToJson(const WriteReport& r) {
  return {{"user", r.user},
          {"tag", r.tag},
          {"op", r.op == client::TagOp::kSet ? "set" : "clear"},
          {"ts", r.ts},
          {"applied", r.result.applied},
          {"ignored", r.result.ignored}};
}

Json ToJson(const CountReport& r) { return {{"count", r.count}}; }

Json ToJson(const AudienceReport& r) {
  Json doc = {{"users", r.page.users}};
  doc["cursor"] = r.page.next_cursor ? Json(*r.page.next_cursor) : Json(nullptr);
  return doc;
}

Json ToJson(const AudienceFileReport& r) {
  return {{"file", r.file}, {"format", r.format}, {"count", r.count}, {"shards", r.shards}};
}

Json ToJson(const TopTagsReport& r) {
  Json tags = Json::array();
  for (const auto& tc : r.tags) tags.push_back({{"tag", tc.tag}, {"count", tc.count}});
  return {{"tags", std::move(tags)}};
}

// null on a node without a data directory, as the human output's "none".
Json DurabilityJson(const client::NodeStats& n) {
  if (n.fsync_policy.empty()) return nullptr;
  return {{"fsync_policy", n.fsync_policy},
          {"wal_segment", n.wal_segment},
          {"wal_bytes", n.wal_bytes},
          {"wal_bytes_since_checkpoint", n.wal_bytes_since_checkpoint},
          {"wal_records", n.wal_records},
          {"wal_groups", n.wal_groups},
          {"fsyncs", n.fsyncs},
          {"fsync_micros_total", n.fsync_micros_total},
          {"fsync_micros_max", n.fsync_micros_max},
          {"writes_refused_io", n.writes_refused_io},
          {"checkpoints", n.checkpoints},
          {"checkpoint_failures", n.checkpoint_failures},
          {"last_checkpoint_unix_ms", n.last_checkpoint_unix_ms},
          {"last_checkpoint_bytes", n.last_checkpoint_bytes},
          {"torn_tails_dropped", n.torn_tails_dropped},
          {"recovery_micros", n.recovery_micros}};
}

Json MemoryJson(const client::NodeStats& n) {
  return {{"memory_bytes", n.memory_bytes},
          {"max_memory_bytes", n.max_memory_bytes},
          {"writes_refused_memory", n.writes_refused_memory}};
}

Json ToJson(const StatsReport& r) {
  Json nodes = Json::array();
  for (const auto& n : r.nodes) {
    Json requests = Json::array();
    for (const auto& k : n.requests) {
      requests.push_back({{"kind", k.kind},
                          {"count", k.count},
                          {"errors", k.errors},
                          {"p50_micros", k.p50_micros},
                          {"p99_micros", k.p99_micros}});
    }
    Json limits = Json::array();
    for (const auto& l : n.limits) {
      limits.push_back({{"limit", l.limit}, {"value", l.value}, {"count", l.count}});
    }
    nodes.push_back({{"node", n.node},
                     {"shards", n.shards},
                     {"tags", n.tags},
                     {"known_users", n.known_users},
                     {"assignments", n.assignments},
                     {"bitmap_bytes", n.bitmap_bytes},
                     {"override_bytes", n.override_bytes},
                     {"index_bytes", n.index_bytes},
                     {"known_bytes", n.known_bytes},
                     {"connections", n.connections},
                     {"events_applied", n.events_applied},
                     {"events_ignored", n.events_ignored},
                     {"writes_refused_future", n.writes_refused_future},
                     {"snapshots_applied", n.snapshots_applied},
                     {"snapshots_stale", n.snapshots_stale},
                     {"snapshot_ties", n.snapshot_ties},
                     {"durability", DurabilityJson(n)},
                     {"memory", MemoryJson(n)},
                     {"requests", std::move(requests)},
                     {"limits", std::move(limits)}});
  }
  return {{"nodes", std::move(nodes)}};
}

Json ToJson(const CheckpointReport& r) {
  Json nodes = Json::array();
  for (const auto& c : r.nodes) {
    nodes.push_back({{"node", c.node},
                     {"path", c.path},
                     {"wal_segment", c.wal_segment},
                     {"bytes", c.bytes},
                     {"micros", c.micros},
                     {"segments_removed", c.segments_removed}});
  }
  return {{"nodes", std::move(nodes)}};
}

Json ToJson(const PingReport& r) {
  return {
      {"ok", true}, {"nodes", r.nodes}, {"rtt_micros", r.rtt_micros}, {"shard_bits", r.shard_bits}};
}

}  // namespace

void PrintJson(const Report& report, std::ostream& out) {
  const Json doc = std::visit([](const auto& r) { return ToJson(r); }, report);
  // Replace, never throw, on bytes that are not UTF-8 (e.g. a bad tag typed
  // on the command line).
  out << doc.dump(-1, ' ', false, Json::error_handler_t::replace) << '\n';
}

}  // namespace tagcache::tagctl
