// MemoryGuard: the node's --max-memory. Writes are refused with OVERLOADED
// while the process's resident memory plus an estimate of what the write
// adds is over the limit; reads never ask it, so they keep working. RSS is
// read from /proc/self/statm at most every few milliseconds, so admission
// costs an atomic load on the hot path.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "tagcache/common/status.h"

namespace tagcache::net {

class MemoryGuard {
 public:
  // limit_bytes 0: no limit (Admit always succeeds, RSS is still reported).
  explicit MemoryGuard(uint64_t limit_bytes);

  // OK, or OVERLOADED naming the node's memory, the write's estimate and the limit.
  Status Admit(uint64_t write_bytes);

  uint64_t limit_bytes() const { return limit_; }
  // The resident set size, refreshed now.
  uint64_t ResidentBytes();
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  uint64_t CachedResidentBytes();

  const uint64_t limit_;
  std::atomic<uint64_t> rss_{0};
  std::atomic<int64_t> rss_read_at_ns_{0};
  std::atomic<uint64_t> refused_{0};
};

// "1.50 GiB", "512.0 MiB", "42 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace tagcache::net
