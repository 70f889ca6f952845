// Counters of the node's protective limits: each time a limit refuses a
// connection or a request, closes a connection, or clamps or throttles one,
// its counter moves. Reported by the Stats request (StatsReply.limits) and
// as tagcache_limit_rejections_total{limit=...} (docs/OPERATIONS.md).
// These events are rare next to requests, so a shared relaxed fetch_add is
// cheap enough; nothing here is on a request's common path.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tagcache::net {

enum class Limit : uint8_t {
  kConnections,       // a connection over max_connections: answered OVERLOADED, closed
  kPreHelloFrame,     // a frame over 16 KiB before the hello: BAD_REQUEST, closed
  kFrameBytes,        // a frame over max_frame_bytes after the hello: BAD_REQUEST, closed
  kHelloTimeout,      // no valid hello within hello_timeout: closed
  kIdleTimeout,       // no request for idle_timeout: closed
  kWriteTimeout,      // unsent output with no write progress for write_timeout: closed
  kInflight,          // max_inflight reached: reading paused until responses drain
  kOutputBytes,       // unsent output over the output cap: closed
  kResponseBytes,     // a response over max_frame_bytes: answered OVERLOADED instead
  kExpression,        // an expression over its length, depth or term limit: BAD_REQUEST
  kAudiencePage,      // an audience page larger than max_audience_page: clamped
  kMemory,            // a write over --max-memory: OVERLOADED (counted by MemoryGuard)
};
inline constexpr size_t kNumLimits = 12;

// The stable label of a limit ("connections", "output_bytes", ...).
constexpr std::string_view LimitName(Limit limit) {
  constexpr std::array<std::string_view, kNumLimits> kNames = {
      "connections",  "pre_hello_frame_bytes", "frame_bytes",    "hello_timeout",
      "idle_timeout", "write_timeout",         "inflight",       "output_bytes",
      "response_bytes", "expression",          "audience_page",  "memory"};
  return kNames[static_cast<size_t>(limit)];
}

class LimitCounters {
 public:
  void Count(Limit limit) {
    counts_[static_cast<size_t>(limit)].fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t Get(Limit limit) const {
    return counts_[static_cast<size_t>(limit)].load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kNumLimits> counts_{};
};

}  // namespace tagcache::net
