#include "request_stats.h"

#include <bit>

namespace tagcache::net {

std::string_view KindName(size_t kind) {
  static constexpr std::array<std::string_view, kNumKinds> kNames = {
      "hello",        "ping",           "getTags",         "hasTags", "getTagsBatch",
      "count",        "audience",       "audienceBitmaps", "topTags", "applyEvents",
      "loadSnapshot", "commitSnapshot", "stats",           "checkpoint", "getClusterMap",
      "setClusterMap", "shardDigests", "exportShard",    "mergeShard", "listShards", "unknown",
      "malformed"};
  return kind < kNumKinds ? kNames[kind] : std::string_view("unknown");
}

std::string_view StatusSlotName(size_t slot) {
  static constexpr std::array<std::string_view, kNumStatusSlots> kNames = {
      "ok",           "bad_request",         "unknown_tag", "stale_snapshot", "wrong_node",
      "overloaded",   "unauthorized",        "unsupported_version", "internal", "incomplete",
      "io_error",     "future_timestamp",    "error"};
  return slot < kNumStatusSlots ? kNames[slot] : std::string_view("error");
}

size_t LatencyHistogram::BucketOf(uint64_t micros) {
  if (micros < 16) return static_cast<size_t>(micros);
  const int e = std::bit_width(micros) - 1;  // >= 4
  const uint64_t sub = (micros >> (e - 2)) & 3;
  return 16 + static_cast<size_t>(e - 4) * 4 + static_cast<size_t>(sub);
}

uint64_t LatencyHistogram::BucketUpper(size_t b) {
  if (b < 16) return b;
  const int e = static_cast<int>((b - 16) / 4) + 4;
  const uint64_t sub = (b - 16) % 4;
  const uint64_t lower = (4 + sub) << (e - 2);
  return lower + (uint64_t{1} << (e - 2)) - 1;
}

uint64_t LatencyHistogram::Percentile(const Counts& counts, double q) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0) return 0;
  // The rank of the quantile, 1-based: the smallest value with at least
  // q * total observations at or below it.
  uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total) + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > total) rank = total;
  uint64_t seen = 0;
  for (size_t b = 0; b < kBuckets; ++b) {
    seen += counts[b];
    if (seen >= rank) return BucketUpper(b);
  }
  return BucketUpper(kBuckets - 1);
}

void LatencyHistogram::AddTo(Counts& out) const {
  for (size_t b = 0; b < kBuckets; ++b) out[b] += buckets_[b].load(std::memory_order_relaxed);
}

void RequestStats::AddTo(size_t kind, KindSummary& out) const {
  const Kind& k = kinds_[kind];
  out.count += k.count.load(std::memory_order_relaxed);
  out.errors += k.errors.load(std::memory_order_relaxed);
  out.micros_sum += k.micros_sum.load(std::memory_order_relaxed);
  for (size_t s = 0; s < kNumStatusSlots; ++s) {
    out.by_status[s] += k.by_status[s].load(std::memory_order_relaxed);
  }
  k.latency.AddTo(out.latency);
}

}  // namespace tagcache::net
