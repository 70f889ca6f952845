// The connections a client keeps to one node: connections_per_node of them,
// requests spread round-robin over the ready ones. Calls a lost connection
// hands back (never sent, or reads with a re-send left) go to another
// connection of the node; when none is usable they fail at once with
// IO_ERROR "node ... unavailable" instead of waiting for a reconnect.
//
// Threading: I/O thread only, like Connection.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "call.h"
#include "connection.h"

namespace tagcache::client {

class NodePool final : public Connection::Listener {
 public:
  NodePool(boost::asio::io_context& io, Connection::Endpoints endpoints, std::string address,
           ConnectionOptions options, int connections, std::function<uint64_t()> ids);
  ~NodePool() override;
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;

  // Starts every connection. `startup` runs once: with the node's hello as
  // soon as one connection is ready, or with the last error once every
  // connection has failed its first attempt.
  void Start(std::function<void(Result<HelloInfo>)> startup);
  // Sends `call` on a ready connection (round-robin), else on one still
  // connecting; fails it when there is none or all queues are full.
  void Dispatch(CallPtr call);
  // Closes every connection, failing their calls with `why`. Final.
  void Close(const Status& why);

  const std::string& address() const { return address_; }

 private:
  void OnReady(Connection& connection) override;
  void OnDown(Connection& connection, const Status& why, std::vector<CallPtr> orphans) override;

  const std::string address_;
  std::vector<std::shared_ptr<Connection>> connections_;
  size_t next_ = 0;  // round-robin position
  bool closed_ = false;
  Status last_error_;
  std::function<void(Result<HelloInfo>)> startup_;
  std::vector<bool> failed_at_startup_;
};

}  // namespace tagcache::client
