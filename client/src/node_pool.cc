#include "node_pool.h"

#include <algorithm>
#include <utility>

namespace tagcache::client {

NodePool::NodePool(boost::asio::io_context& io, Connection::Endpoints endpoints,
                   std::string address, ConnectionOptions options, int connections,
                   std::function<uint64_t()> ids)
    : address_(std::move(address)) {
  for (int i = 0; i < connections; ++i) {
    connections_.push_back(
        std::make_shared<Connection>(io, endpoints, address_, options, *this, ids));
  }
  failed_at_startup_.assign(connections_.size(), false);
}

NodePool::~NodePool() = default;

void NodePool::Start(std::function<void(Result<HelloInfo>)> startup) {
  startup_ = std::move(startup);
  for (auto& connection : connections_) connection->Start();
}

void NodePool::Dispatch(CallPtr call) {
  if (closed_) {
    FailCall(*call, Status::IoError("client closed"));
    return;
  }
  if (Clock::now() >= call->deadline) {
    FailCall(*call, DeadlineExceeded(*call, address_, /*sent=*/false));
    return;
  }
  const size_t n = connections_.size();
  bool all_full = false;
  // Ready connections first; a connection still connecting queues the call
  // until its hello is answered (or hands it back if the attempt fails).
  for (auto wanted : {Connection::State::kReady, Connection::State::kConnecting}) {
    for (size_t i = 0; i < n; ++i) {
      const size_t index = (next_ + i) % n;
      Connection& connection = *connections_[index];
      if (connection.state() != wanted) continue;
      if (connection.QueueFull()) {
        all_full = true;
        continue;
      }
      next_ = (index + 1) % n;
      connection.Submit(std::move(call));
      return;
    }
  }
  if (all_full) {
    FailCall(*call, Status::Overloaded("every connection to " + address_ +
                                       " has max_queued requests waiting"));
  } else {
    FailCall(*call, Status::IoError("node " + address_ + " unavailable (" + last_error_.message() +
                                    "); reconnecting"));
  }
}

void NodePool::Close(const Status& why) {
  if (closed_) return;
  closed_ = true;
  startup_ = nullptr;
  for (auto& connection : connections_) connection->Close(why);
}

void NodePool::OnReady(Connection& connection) {
  if (startup_) {
    auto startup = std::move(startup_);
    startup_ = nullptr;
    startup(connection.hello());
  }
}

void NodePool::OnDown(Connection& connection, const Status& why, std::vector<CallPtr> orphans) {
  last_error_ = why;
  if (startup_) {
    for (size_t i = 0; i < connections_.size(); ++i) {
      if (connections_[i].get() == &connection) failed_at_startup_[i] = true;
    }
    if (std::all_of(failed_at_startup_.begin(), failed_at_startup_.end(),
                    [](bool failed) { return failed; })) {
      auto startup = std::move(startup_);
      startup_ = nullptr;
      startup(why);
    }
  }
  for (CallPtr& call : orphans) Dispatch(std::move(call));
}

}  // namespace tagcache::client
