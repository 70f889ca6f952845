// Per request kind counters and latency histograms for the Stats request.
// One RequestStats per event loop, written only by that loop's thread
// (plain load+store on relaxed atomics: no contended read-modify-write on
// the hot path) and read by any thread that answers Stats.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tagcache/common/status.h"

namespace tagcache::net {

// Request kinds as counted: the wire union's members in schema order
// (Request::Which values 0..19), then two pseudo-kinds.
inline constexpr size_t kKindUnknown = 20;    // a union member this node does not know
inline constexpr size_t kKindMalformed = 21;  // a frame that could not be read at all
inline constexpr size_t kNumKinds = 22;

// Response statuses as counted: the StatusCode values 0..11, then one slot
// for outcomes recorded only as failed (Record with ok = false).
inline constexpr size_t kNumStatusCodes = 12;
inline constexpr size_t kStatusUnspecified = kNumStatusCodes;
inline constexpr size_t kNumStatusSlots = kNumStatusCodes + 1;

// The slot of `code` (kStatusUnspecified for a code this build does not know).
inline size_t StatusSlot(StatusCode code) {
  const auto n = static_cast<size_t>(code);
  return n < kNumStatusCodes ? n : kStatusUnspecified;
}
// Stable lower-case label of a slot ("ok", "bad_request", ..., "error").
std::string_view StatusSlotName(size_t slot);

// Stable name of a kind, as Stats reports it ("getTags", "malformed"...).
std::string_view KindName(size_t kind);

// Log-bucketed latency histogram in microseconds: exact below 16 µs, then
// four buckets per power of two (at most 25% relative error).
class LatencyHistogram {
 public:
  static constexpr size_t kBuckets = 256;
  using Counts = std::array<uint64_t, kBuckets>;

  static size_t BucketOf(uint64_t micros);
  // Largest value that falls into bucket `b`.
  static uint64_t BucketUpper(size_t b);
  // The upper bound of the bucket holding quantile q in [0, 1]; 0 when empty.
  static uint64_t Percentile(const Counts& counts, double q);

  // REQUIRES: a single writer thread.
  void Record(uint64_t micros) { Bump(buckets_[BucketOf(micros)]); }
  void AddTo(Counts& out) const;

  static void Bump(std::atomic<uint64_t>& a) {
    a.store(a.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

struct KindSummary {
  uint64_t count = 0;
  uint64_t errors = 0;
  uint64_t micros_sum = 0;
  std::array<uint64_t, kNumStatusSlots> by_status{};
  LatencyHistogram::Counts latency{};
};

class RequestStats {
 public:
  // REQUIRES: kind < kNumKinds; a single writer thread per RequestStats.
  void Record(size_t kind, StatusCode code, uint64_t micros) {
    RecordSlot(kind, StatusSlot(code), micros);
  }
  // For callers that know only success or failure (the failure is counted
  // with status "error").
  void Record(size_t kind, bool ok, uint64_t micros) {
    RecordSlot(kind, ok ? StatusSlot(StatusCode::kOk) : kStatusUnspecified, micros);
  }
  // Adds this loop's numbers for `kind` into `out`. Thread-safe.
  void AddTo(size_t kind, KindSummary& out) const;

 private:
  void RecordSlot(size_t kind, size_t slot, uint64_t micros) {
    Kind& k = kinds_[kind];
    LatencyHistogram::Bump(k.count);
    if (slot != StatusSlot(StatusCode::kOk)) LatencyHistogram::Bump(k.errors);
    LatencyHistogram::Bump(k.by_status[slot]);
    k.micros_sum.store(k.micros_sum.load(std::memory_order_relaxed) + micros,
                       std::memory_order_relaxed);
    k.latency.Record(micros);
  }

  struct Kind {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<uint64_t> micros_sum{0};
    std::array<std::atomic<uint64_t>, kNumStatusSlots> by_status{};
    LatencyHistogram latency;
  };
  std::array<Kind, kNumKinds> kinds_;
};

}  // namespace tagcache::net
