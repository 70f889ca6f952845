// An event loop: one io_context run by exactly one thread, the connections
// assigned to it, and scratch memory its connections share (safe because
// everything on a loop runs on its one thread, one handler at a time).
#pragma once

#include <capnp/common.h>
#include <kj/array.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "request_stats.h"

namespace tagcache::net {

class Connection;

// Bytes of a connection's read buffer: frames up to this size (header
// included) are parsed from it; larger ones get a buffer of their own.
inline constexpr size_t kReadBufferBytes = 16 << 10;

class Loop {
 public:
  // `stats` must outlive the Loop.
  Loop(size_t index, RequestStats& stats);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  size_t index() const { return index_; }
  boost::asio::io_context& io() { return io_; }
  RequestStats& stats() { return stats_; }

  // Zeroed memory for the first segment of a response MessageBuilder
  // (MallocMessageBuilder zeroes what it used when destroyed). One user at a
  // time; loop thread only.
  kj::ArrayPtr<capnp::word> segment_scratch() { return segment_scratch_.asPtr(); }
  // kReadBufferBytes of 8-byte-aligned copy space for a frame body that is
  // not aligned in the read buffer. One user at a time; loop thread only.
  uint8_t* body_scratch() { return reinterpret_cast<uint8_t*>(body_scratch_.get()); }

  // The loop's live connections, for shutdown. Loop thread only.
  void Register(Connection* connection, std::weak_ptr<Connection> handle);
  void Unregister(Connection* connection);
  bool stopping() const { return stopping_; }

  // Drains every connection of the loop; closes what is left after `grace`
  // and stops the loop. Loop thread only.
  void BeginShutdown(std::chrono::milliseconds grace);

 private:
  static constexpr size_t kSegmentScratchWords = 2048;  // 16 KiB

  const size_t index_;
  boost::asio::io_context io_{1};  // one thread: no scheduler locking needed
  RequestStats& stats_;
  kj::Array<capnp::word> segment_scratch_;
  std::unique_ptr<uint64_t[]> body_scratch_;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections_;
  bool stopping_ = false;
  boost::asio::steady_timer drain_deadline_{io_};
};

}  // namespace tagcache::net
