#include "loop.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <utility>

#include "connection.h"

namespace tagcache::net {

Loop::Loop(size_t index, RequestStats& stats)
    : index_(index),
      stats_(stats),
      segment_scratch_(kj::heapArray<capnp::word>(kSegmentScratchWords)),
      body_scratch_(std::make_unique<uint64_t[]>(kReadBufferBytes / sizeof(uint64_t))) {
  std::memset(segment_scratch_.begin(), 0, segment_scratch_.size() * sizeof(capnp::word));
}

Loop::~Loop() = default;

void Loop::Register(Connection* connection, std::weak_ptr<Connection> handle) {
  connections_.emplace(connection, std::move(handle));
}

void Loop::Unregister(Connection* connection) {
  connections_.erase(connection);
  if (stopping_ && connections_.empty()) drain_deadline_.cancel();
}

void Loop::BeginShutdown(std::chrono::milliseconds grace) {
  if (stopping_) return;
  stopping_ = true;
  // Draining may close a connection at once, which unregisters it: iterate a copy.
  std::vector<std::shared_ptr<Connection>> live;
  live.reserve(connections_.size());
  for (auto& entry : connections_) {
    if (auto c = entry.second.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) c->BeginDrain();
  live.clear();
  if (connections_.empty()) return;
  drain_deadline_.expires_after(grace);
  // The Loop owns io_: this handler cannot outlive it.
  drain_deadline_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // every connection finished in time
    spdlog::warn("loop {}: {} connection(s) still busy after the shutdown grace; closing them",
                 index_, connections_.size());
    std::vector<std::shared_ptr<Connection>> left;
    for (auto& entry : connections_) {
      if (auto c = entry.second.lock()) left.push_back(std::move(c));
    }
    for (auto& c : left) c->Close();
    connections_.clear();
    io_.stop();  // worker results still on their way are dropped with the io_context
  });
}

}  // namespace tagcache::net
