// One pipelined TCP connection to a node. Requests are written as soon as
// they arrive (coalesced into one write while the previous is in flight),
// answered in any order and matched by id; a deadline timer fails the ones
// not answered in time. A lost connection reconnects by itself with
// exponential backoff and repeats the hello.
//
// Threading: everything runs on the client's I/O thread; no locks.
// Lifetime: owned by shared_ptr (handlers keep it alive); the listener must
// outlive every handler, i.e. stay alive until the io_context has stopped.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "call.h"
#include "tagcache/common/status.h"
#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/frame.h"
#include "tagcache/security/tls.h"
#include "wire_codec.h"

namespace tagcache::client {

struct ConnectionOptions {
  std::chrono::milliseconds connect_timeout{2000};
  size_t max_in_flight = 1024;
  size_t max_queued = 65536;
  std::chrono::milliseconds backoff_min{50};
  std::chrono::milliseconds backoff_max{2000};
  uint32_t max_response_bytes = 256u << 20;
  std::string client_name;
  std::string token;  // sent in the hello; empty: none
  // Non-null: every connection speaks TLS with this context and checks the
  // node's certificate against the host part of its address.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class State {
    kBackoff,     // disconnected, waiting to retry; takes no calls
    kConnecting,  // TCP connect + hello in progress; calls wait in the queue
    kReady,       // hello answered; calls are sent
    kClosed,      // Close() was called; final
  };

  // What the owning pool hears. Called on the I/O thread.
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnReady(Connection& connection) = 0;
    // The connection was lost or could not be established. `orphans` are
    // calls it can no longer carry but that may still go elsewhere: never
    // sent, or reads with a re-send left. Sent writes were already failed.
    virtual void OnDown(Connection& connection, const Status& why,
                        std::vector<CallPtr> orphans) = 0;
  };

  using Endpoints = boost::asio::ip::tcp::resolver::results_type;

  // `ids` hands out request ids (the hello needs one). Does not connect
  // until Start().
  Connection(boost::asio::io_context& io, Endpoints endpoints, std::string address,
             ConnectionOptions options, Listener& listener, std::function<uint64_t()> ids);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts the first connection attempt. REQUIRES: called once.
  void Start();
  // Fails every call with `why`, closes the socket and stops reconnecting.
  void Close(const Status& why);

  // Takes ownership of `call`: sends it now (kReady, below max_in_flight)
  // or queues it. Fails it at once with OVERLOADED when the queue is full,
  // BAD_REQUEST when the frame exceeds the node's limit, IO_ERROR when the
  // connection is neither ready nor connecting.
  void Submit(CallPtr call);

  State state() const { return state_; }
  bool QueueFull() const { return queued_ >= options_.max_queued; }
  const std::string& address() const { return address_; }
  // Valid once the connection has been ready at least once.
  const HelloInfo& hello() const { return hello_; }

 private:
  struct Link;  // one socket and its buffers: replaced on every reconnect
  struct Entry {
    CallPtr call;
    bool sent = false;
    std::multimap<Clock::time_point, uint64_t>::iterator deadline;
  };

  void Connect();
  void OnTcpConnected(const std::shared_ptr<Link>& link);
  void OnConnected(const std::shared_ptr<Link>& link);
  void ReadHeader(const std::shared_ptr<Link>& link);
  void OnFrame(const std::shared_ptr<Link>& link, const protocol::FrameBody& body);
  void OnHelloReply(const wire::Response::Reader& response);
  void Lost(const Status& why);
  void ScheduleReconnect();
  void Enqueue(CallPtr call);
  void Pump();
  void Flush();     // schedules WriteOut after the current handlers
  void WriteOut();  // starts the one async_write of the coalesced output
  void ArmDeadlineTimer();
  void OnDeadlineTimer();
  // Removes the entry for `id` (which must exist) and returns its call.
  CallPtr Take(std::unordered_map<uint64_t, Entry>::iterator it);
  void FailAll(const Status& why);
  void Abandon(uint64_t id);

  boost::asio::io_context& io_;
  const Endpoints endpoints_;
  const std::string address_;
  const ConnectionOptions options_;
  Listener& listener_;
  const std::function<uint64_t()> ids_;

  State state_ = State::kBackoff;
  std::shared_ptr<Link> link_;  // current socket; null in kBackoff/kClosed
  HelloInfo hello_;
  uint64_t hello_id_ = 0;
  uint32_t max_request_bytes_ = protocol::kPreHelloMaxFrameBytes;
  Status last_error_;

  // Every call this connection owns, sent or queued, by id.
  std::unordered_map<uint64_t, Entry> calls_;
  // Queued ids in arrival order; may hold ids already completed (skipped).
  std::deque<uint64_t> queue_;
  size_t queued_ = 0;         // entries not yet sent
  size_t in_flight_ = 0;      // entries sent, not answered
  std::vector<uint8_t> out_;  // frames waiting for the current write to finish
  bool writing_ = false;
  bool flush_posted_ = false;  // a WriteOut is queued on the executor

  // Ids of sent calls that timed out: their late answers are dropped. Any
  // other unknown id is a protocol error. Bounded: the oldest are forgotten
  // beyond max(1024, max_in_flight), and all of them on reconnect.
  std::unordered_set<uint64_t> abandoned_;
  std::deque<uint64_t> abandoned_order_;

  std::multimap<Clock::time_point, uint64_t> deadlines_;
  boost::asio::steady_timer deadline_timer_;
  bool deadline_armed_ = false;
  Clock::time_point deadline_armed_at_;

  boost::asio::steady_timer connect_timer_;
  boost::asio::steady_timer backoff_timer_;
  std::chrono::milliseconds backoff_;
  std::minstd_rand jitter_;
};

}  // namespace tagcache::client
