#include "memory_guard.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tagcache::net {

namespace {

constexpr int64_t kRefreshNanos = 5'000'000;  // a write burst sees RSS at most 5 ms old

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string FormatBytes(uint64_t bytes) {
  char buf[64];
  if (bytes >= (uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  } else if (bytes >= (uint64_t{1} << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  } else if (bytes >= (uint64_t{1} << 10)) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", static_cast<double>(bytes) / (1 << 10));
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  }
  return buf;
}

MemoryGuard::MemoryGuard(uint64_t limit_bytes) : limit_(limit_bytes) {}

uint64_t MemoryGuard::ResidentBytes() {
  // statm: "size resident shared text lib data dt", in pages.
  char buf[256];
  int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return rss_.load(std::memory_order_relaxed);
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return rss_.load(std::memory_order_relaxed);
  buf[n] = '\0';
  char* end = nullptr;
  std::strtoull(buf, &end, 10);
  const uint64_t pages = std::strtoull(end, nullptr, 10);
  const uint64_t bytes = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  rss_.store(bytes, std::memory_order_relaxed);
  rss_read_at_ns_.store(SteadyNanos(), std::memory_order_relaxed);
  return bytes;
}

uint64_t MemoryGuard::CachedResidentBytes() {
  const int64_t now = SteadyNanos();
  if (now - rss_read_at_ns_.load(std::memory_order_relaxed) < kRefreshNanos) {
    return rss_.load(std::memory_order_relaxed);
  }
  return ResidentBytes();
}

Status MemoryGuard::Admit(uint64_t write_bytes) {
  if (limit_ == 0) return Status::Ok();
  const uint64_t rss = CachedResidentBytes();
  if (rss + write_bytes <= limit_) return Status::Ok();
  refused_.fetch_add(1, std::memory_order_relaxed);
  return Status::Overloaded("write refused: the node uses " + FormatBytes(rss) +
                            " and this write needs about " + FormatBytes(write_bytes) +
                            " more, over --max-memory " + FormatBytes(limit_) +
                            "; reads keep working. Raise --max-memory, add nodes, or drop tags");
}

}  // namespace tagcache::net
