// An in-test tagcache node that speaks raw frames: it answers the hello (and
// getClusterMap, as a standalone node) by
// itself and hands every other request to a test-supplied handler, which
// decides to reply, stay silent, drop the connection, or defer the answer.
// Lets client tests stage stalls, disconnects and out-of-order answers
// without the real server. Loopback only; every blocking call is bounded.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::testing {

class FakeServer {
 public:
  enum class Reaction {
    kReply,   // send `response` now
    kIgnore,  // never answer this request
    kClose,   // close the connection without answering
    kDefer,   // hold the answer; see Options::defer_batch
  };
  // Runs on the connection's thread. `connection` counts accepted
  // connections from 0. `response` has the request's id and status OK set.
  using Handler = std::function<Reaction(int connection, wire::Request::Reader request,
                                         wire::Response::Builder response)>;

  struct Options {
    uint16_t port = 0;         // 0: any free port
    bool answer_hello = true;  // false: a node that accepts and never answers
    int shard_bits = 20;
    // Anything but OK: the hello is refused with this status.
    wire::Status hello_status = wire::Status::OK;
    // Deferred answers are sent, newest first, once this many are held.
    size_t defer_batch = 0;
  };

  // Listens on 127.0.0.1 at once. Aborts the test (ADD_FAILURE + port 0)
  // when the port cannot be bound.
  FakeServer(Options options, Handler handler);
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Closes the listener and every connection and joins the threads.
  void Stop();
  // Closes the accepted connections; keeps listening.
  void DropConnections();

  int connections_accepted() const { return accepted_.load(); }
  int hellos() const { return hellos_.load(); }
  int requests() const { return requests_.load(); }  // non-hello requests read

 private:
  struct Conn;
  void AcceptLoop();
  void Serve(const std::shared_ptr<Conn>& conn, int index);

  Options options_;
  Handler handler_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> hellos_{0};
  std::atomic<int> requests_{0};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Conn>> conns_;  // guarded by mu_
  std::vector<std::thread> threads_;          // guarded by mu_
};

// A reply handler for the common case: every request answered with an
// empty OK response of the right kind is not possible generically, so
// tests set what they need; this one answers ping and getTags (tag
// "u<user>" for every user) and ignores the rest.
FakeServer::Reaction EchoHandler(int connection, wire::Request::Reader request,
                                 wire::Response::Builder response);

}  // namespace tagcache::testing
