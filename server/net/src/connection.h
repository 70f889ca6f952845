// One client connection: reads pipelined request frames, runs cheap ones
// inline and heavy ones on the worker pool, and writes responses coalesced,
// one write in flight at a time. Everything here runs on the connection's
// loop thread; worker results are posted back to it.
//
// Lifetime: owned by shared_ptrs held by its own pending operations (read,
// write, timers, worker jobs); the Loop keeps only a weak_ptr. It closes
// itself on error, on a timeout, or when a drain completes.
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/protocol/tagcache.capnp.h"
#include "tagcache/security/auth.h"
#include "tagcache/security/tls.h"

namespace tagcache::net {

class Loop;
class Service;
struct FrameResult;

// A frame body in word-aligned memory of its own (Cap'n Proto rejects
// unaligned input). Movable, not copyable.
struct OwnedBody {
  std::unique_ptr<uint64_t[]> words;
  size_t capacity_bytes = 0;  // allocated
  size_t bytes = 0;           // the body's size

  // An uninitialised body of capacity `capacity_bytes` (a multiple of 8).
  static OwnedBody Allocate(size_t capacity_bytes, size_t bytes);
  static OwnedBody CopyOf(const uint8_t* data, size_t bytes);
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words.get()); }
  kj::ArrayPtr<const capnp::word> view() const {
    return {reinterpret_cast<const capnp::word*>(words.get()), bytes / sizeof(capnp::word)};
  }
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `socket` belongs to loop.io(). With `reject`, the connection answers
  // OVERLOADED and closes without reading (over max_connections); otherwise
  // it holds one admission of service.TryAddConnection(), given back on Close().
  // `tls` non-null: the connection starts with a TLS handshake (bounded by
  // the hello timeout); the context must outlive the connection.
  Connection(Loop& loop, Service& service, boost::asio::thread_pool& workers,
             boost::asio::ip::tcp::socket socket, bool reject, boost::asio::ssl::context* tls);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts serving. Loop thread only; call once.
  void Start();
  // Stops reading new requests; closes once in-flight requests are answered
  // and the output is flushed. Loop thread only; idempotent.
  void BeginDrain();
  // Closes at once, dropping unsent output. Loop thread only; idempotent.
  void Close();

 private:
  using Clock = std::chrono::steady_clock;

  // After the TLS handshake (or at once): the OVERLOADED answer, or the hello wait.
  void StartServing();
  // Closes the connection unless the hello (and, over TLS, the handshake)
  // completes within the hello timeout.
  void ArmHelloTimer();

  // Access: re-checks the token after an auth file reload. False when the
  // token is no longer accepted (the connection then drains).
  bool RefreshRoles();
  // Answers `req` UNAUTHORIZED when the connection may not send it.
  bool Allowed(wire::Request::Reader req, Clock::time_point start);

  // Reading.
  void MaybeRead();
  void OnRead(const boost::system::error_code& ec, size_t n);
  void ProcessBuffer();
  // Parses and dispatches one request. `owned`, when given, holds `body`
  // and may be moved to a worker job.
  void HandleFrame(const uint8_t* body, size_t body_bytes, OwnedBody* owned);
  void HandleHello(wire::Request::Reader req, Clock::time_point start);
  void ExecuteInline(wire::Request::Reader req, size_t kind, Clock::time_point start);
  void StartHeavy(OwnedBody body, Clock::time_point start);
  void OnHeavyDone(FrameResult result, size_t body_bytes, Clock::time_point start);
  // Answers a frame that could not be read (id 0) and drains.
  void RejectMalformed(const Status& status);

  // Writing.
  size_t OutputBytes() const { return out_pending_.size() + out_writing_.size() - write_off_; }
  bool CanAcceptMore() const;
  void MaybeWrite();
  void DoWrite();
  void OnWrite(const boost::system::error_code& ec, size_t n);
  void ArmWriteTimer();
  void OnWriteTimer(const boost::system::error_code& ec);
  // Closes the connection when its unsent output (plus `incoming` bytes
  // about to be added) exceeds the hard output cap; true then.
  bool CloseIfOutputOverCap(size_t incoming);

  // Idle timeout (limits().idle_timeout; not armed when 0).
  void ArmIdleTimer(Clock::time_point at);
  void OnIdleTimer(const boost::system::error_code& ec);

  // Closing.
  void MaybeFinishDrain();
  void StartLinger();
  // Progress after any event: run buffered frames, write, read, finish a drain.
  void Pump();

  Loop& loop_;
  Service& service_;
  boost::asio::thread_pool& workers_;
  security::TlsStream stream_;
  boost::asio::steady_timer hello_timer_;  // also bounds the lingering close
  boost::asio::steady_timer write_timer_;
  boost::asio::steady_timer idle_timer_;
  Clock::time_point last_activity_;  // the last request received or answered
  const bool reject_;

  std::string peer_;  // "address:port", for logs

  // Input: a word-aligned buffer; [rbegin_, rend_) holds unprocessed bytes.
  std::unique_ptr<uint64_t[]> rbuf_;
  size_t rbegin_ = 0;
  size_t rend_ = 0;
  // A frame too large for rbuf_ is received into big_, which grows with the
  // bytes actually received (a claimed length is never allocated up front).
  bool in_big_ = false;
  OwnedBody big_;
  size_t big_filled_ = 0;
  uint32_t max_frame_bytes_;  // pre-hello limit until the hello succeeds

  // Output: out_writing_[write_off_..] is being written; responses produced
  // meanwhile collect in out_pending_ and go out together in the next write.
  std::vector<uint8_t> out_pending_;
  std::vector<uint8_t> out_writing_;
  size_t write_off_ = 0;
  Clock::time_point write_deadline_;

  uint32_t inflight_ = 0;      // requests on the worker pool
  size_t inflight_bytes_ = 0;  // their request bodies, held until they finish
  bool reading_ = false;
  bool writing_ = false;
  bool write_timer_armed_ = false;
  bool handshaking_ = false;  // TLS handshake in progress
  bool hello_done_ = false;
  // What the hello's token grants (every role without an auth file), and
  // the auth table generation it was looked up in.
  security::RoleSet roles_;
  security::TokenHash token_hash_{};
  uint64_t auth_generation_ = 0;
  bool revoked_ = false;
  bool draining_ = false;
  bool lingering_ = false;
  size_t linger_discarded_ = 0;
  bool closed_ = false;
  bool pumping_ = false;
};

}  // namespace tagcache::net
