// One request on its way through the client: the encoded frame, its
// deadline, and the completion that decodes the node's answer. Owned by
// exactly one place at a time (a connection's table, or a hand-over between
// connections on the I/O thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::client {

using Clock = std::chrono::steady_clock;

// Runs on the I/O thread exactly once: with OK and the node's response
// (valid only during the call), or with the transport error and nullptr.
using Completion =
    std::function<void(const Status& transport, const wire::Response::Reader* response)>;

struct Call {
  uint64_t id = 0;             // unique per Client; echoed by the node
  std::vector<uint8_t> frame;  // header + body; freed once a write is sent
  const char* kind = "";       // "getTags", for error messages
  bool idempotent = false;     // reads: may be re-sent once after a connection loss
  int resends_left = 0;
  Clock::time_point deadline;
  std::chrono::milliseconds timeout{0};  // what the deadline was derived from
  Completion done;
};
using CallPtr = std::unique_ptr<Call>;

// Fails `call` with `status` (on the I/O thread).
inline void FailCall(Call& call, const Status& status) { call.done(status, nullptr); }

// The IO_ERROR of a call whose deadline passed; IsDeadlineExceeded() keys on
// the "deadline exceeded" prefix.
inline Status DeadlineExceeded(const Call& call, const std::string& address, bool sent) {
  return Status::IoError(std::string("deadline exceeded: ") + call.kind + " to " + address +
                         (sent ? " not answered within " : " not sent within ") +
                         std::to_string(call.timeout.count()) + " ms");
}

}  // namespace tagcache::client
