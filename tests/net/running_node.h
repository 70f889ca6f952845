// A tagcache node serving in process on its own thread, for tests that talk
// to it through the client library. Destroying it stops the node and waits
// for Run() to return, which releases its data directory's lock, so a new
// node may open the same directory afterwards.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "tagcache/client/client.h"
#include "tagcache/net/node.h"

namespace tagcache::net {

class RunningNode {
 public:
  // The Start() status when the node does not come up (the node is then
  // destroyed without running, as Node allows).
  static Result<std::unique_ptr<RunningNode>> Start(NodeOptions options) {
    auto node = std::make_unique<Node>(std::move(options));
    Status s = node->Start();
    if (!s.ok()) return s;
    return std::unique_ptr<RunningNode>(new RunningNode(std::move(node)));
  }
  ~RunningNode() {
    node_->Stop();
    thread_.join();
  }
  RunningNode(const RunningNode&) = delete;
  RunningNode& operator=(const RunningNode&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(node_->port()); }
  uint16_t port() const { return node_->port(); }
  // The node itself (its engine, its metrics port).
  Node& node() { return *node_; }

  // Client options seeded with this node, with test-sized timeouts.
  client::ClientOptions Options(const std::string& client_name = "test") const {
    client::ClientOptions options;
    options.seeds = {address()};
    options.connect_timeout = std::chrono::milliseconds(2000);
    options.request_timeout = std::chrono::milliseconds(10000);
    options.reconnect_backoff_min = std::chrono::milliseconds(20);
    options.reconnect_backoff_max = std::chrono::milliseconds(500);
    options.client_name = client_name;
    return options;
  }

  // A client seeded with this node (a test failure, and null, if it cannot connect).
  std::unique_ptr<client::Client> Connect(const std::string& client_name = "test") const {
    return Connect(Options(client_name));
  }
  std::unique_ptr<client::Client> Connect(const client::ClientOptions& options) const {
    auto c = client::Client::Connect(options);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

 private:
  explicit RunningNode(std::unique_ptr<Node> node) : node_(std::move(node)) {
    thread_ = std::thread([n = node_.get()] { n->Run(); });
  }
  std::unique_ptr<Node> node_;
  std::thread thread_;
};

// A small node for in-process tests: a free loopback port, one IO thread,
// two workers, one query thread, 2^16-user shards, a 2 s shutdown grace.
inline NodeOptions SmallTestNodeOptions() {
  NodeOptions o;
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  o.io_threads = 1;
  o.workers = 2;
  o.engine.query_threads = 1;
  o.engine.shard_bits = 16;
  o.shutdown_grace = std::chrono::milliseconds(2000);
  return o;
}

// RunningNode::Start, failing the test (and returning null) when the node
// does not come up.
inline std::unique_ptr<RunningNode> MustStart(NodeOptions options) {
  auto r = RunningNode::Start(std::move(options));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

}  // namespace tagcache::net
