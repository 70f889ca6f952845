// What tagbench drives: a Target opens Sessions, each an independent,
// pipelined stream of operations (one TCP connection for Redis; a share of
// the client's pooled connections for tagcache). Workloads and drivers are
// written once against this interface.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "tagbench/op.h"
#include "tagcache/common/status.h"

namespace tagcache::tagbench {

using Clock = std::chrono::steady_clock;

// The outcome of one op: `error` empty on success, else a short stable name
// (a tagcache StatusCode name such as "UNKNOWN_TAG", or the first word of a
// Redis error such as "ERR"/"WRONGTYPE", or "IO_ERROR") and a message.
struct OpOutcome {
  std::string error;
  std::string message;
  OpAnswer answer;
};

struct Completion {
  uint64_t token = 0;  // the token given to Send
  OpOutcome outcome;
};

struct SessionOptions {
  int index = 0;              // distinct per session of a target (temp key names)
  bool keep_answers = false;  // fill OpAnswer::tags / has / top (cross-checks), not just counts
};

// Not thread-safe: one thread drives a session.
class Session {
 public:
  virtual ~Session() = default;
  // Starts `op`; it completes later through Next() with `token`. Never
  // blocks for the answer.
  virtual void Send(const Op& op, uint64_t token) = 0;
  // The next completion (any op sent and not yet returned), waiting until
  // `deadline` at most; nullopt when none arrived by then.
  virtual std::optional<Completion> Next(Clock::time_point deadline) = 0;
  // Optional handler mode, for targets with their own I/O thread: from now
  // on every completion is passed to `handler` on that thread instead of
  // being queued for Next(), and the handler may call Send (the closed loop
  // then never hops threads, as a service using the client would run it).
  // Returns false when unsupported (Next() stays the way). REQUIRES: called
  // before the first Send; `handler` must not block.
  virtual bool SetHandler(std::function<void(Completion)> handler) {
    (void)handler;
    return false;
  }
};

struct MemoryReport {
  uint64_t data_bytes = 0;  // what the server accounts to data (used_memory; bitmaps + index + ...)
  uint64_t rss_bytes = 0;   // the server process's resident set
};

class Target {
 public:
  virtual ~Target() = default;
  // "tagcache 127.0.0.1:7379" / "redis 127.0.0.1:6379".
  virtual std::string Describe() const = 0;
  // "tagcache" or "redis".
  virtual std::string Kind() const = 0;
  virtual Result<std::unique_ptr<Session>> OpenSession(const SessionOptions& options) = 0;
  virtual Result<MemoryReport> Memory() = 0;
};

}  // namespace tagcache::tagbench
