#include "connection.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include "loop.h"
#include "request_reader.h"
#include "service.h"
#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/frame.h"

namespace tagcache::net {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// A closing connection reads and discards what the client still sends
// (at most this much, for at most this long) after shutting down its own
// side, so that unread input does not turn the close into a reset that
// could destroy the last response before the client reads it.
constexpr auto kLingerTimeout = std::chrono::seconds(1);
constexpr size_t kLingerMaxBytes = size_t{1} << 20;
// A large frame's buffer starts at this size and doubles as bytes arrive.
constexpr size_t kBigInitialBytes = size_t{64} << 10;
// Output buffers larger than this are released once written, not kept.
constexpr size_t kKeepOutputCapacity = size_t{1} << 20;

uint64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}

std::string Describe(const kj::Exception& e) {
  auto description = e.getDescription();
  std::string text(description.begin(), description.size());
  if (text.size() > 200) text.resize(200);
  return text;
}

bool IsOrdinaryDisconnect(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::operation_aborted;
}

}  // namespace

OwnedBody OwnedBody::Allocate(size_t capacity_bytes, size_t bytes) {
  OwnedBody body;
  body.words = std::make_unique_for_overwrite<uint64_t[]>(capacity_bytes / sizeof(uint64_t));
  body.capacity_bytes = capacity_bytes;
  body.bytes = bytes;
  return body;
}

OwnedBody OwnedBody::CopyOf(const uint8_t* data, size_t bytes) {
  OwnedBody body = Allocate(bytes, bytes);
  if (bytes > 0) std::memcpy(body.data(), data, bytes);
  return body;
}

Connection::Connection(Loop& loop, Service& service, asio::thread_pool& workers,
                       asio::ip::tcp::socket socket, bool reject, asio::ssl::context* tls)
    : loop_(loop),
      service_(service),
      workers_(workers),
      stream_(std::move(socket), tls),
      hello_timer_(loop.io()),
      write_timer_(loop.io()),
      idle_timer_(loop.io()),
      last_activity_(Clock::now()),
      reject_(reject),
      max_frame_bytes_(protocol::kPreHelloMaxFrameBytes) {}

Connection::~Connection() {
  // Normally Close() gave the admission back; a connection destroyed with
  // its loop (forced shutdown) never ran Close(). The Loop may be half
  // destroyed here: do not touch it.
  if (!closed_ && !reject_) service_.RemoveConnection();
}

void Connection::Start() {
  error_code ec;
  auto remote = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    peer_ = remote.address().is_v6() ? "[" + remote.address().to_string() + "]"
                                     : remote.address().to_string();
    peer_ += ":" + std::to_string(remote.port());
  } else {
    peer_ = "?";
  }
  loop_.Register(this, weak_from_this());
  stream_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  rbuf_ = std::make_unique_for_overwrite<uint64_t[]>(kReadBufferBytes / sizeof(uint64_t));
  if (!stream_.tls()) {
    StartServing();
    return;
  }
  // The hello timeout bounds the handshake too: a client that opens a
  // connection and stalls holds it no longer than one that sends no hello.
  ArmHelloTimer();
  handshaking_ = true;
  stream_.AsyncHandshake(asio::ssl::stream_base::server,
                         [self = shared_from_this()](const error_code& hs_ec) {
                           self->handshaking_ = false;
                           if (self->closed_) return;
                           if (hs_ec) {
                             // A plaintext client, an untrusted certificate, no client
                             // certificate when one is required: nothing can be answered.
                             spdlog::info("connection from {}: TLS handshake failed: {}",
                                          self->peer_, security::DescribeTlsError(hs_ec));
                             self->Close();
                             return;
                           }
                           self->StartServing();
                         });
}

void Connection::ArmHelloTimer() {
  hello_timer_.expires_after(service_.limits().hello_timeout);
  hello_timer_.async_wait([self = shared_from_this()](const error_code& wait_ec) {
    if (wait_ec || self->closed_ || self->hello_done_ || self->lingering_) return;
    spdlog::debug("closing connection from {}: no {}hello within {} ms", self->peer_,
                  self->stream_.tls() ? "TLS handshake and " : "",
                  self->service_.limits().hello_timeout.count());
    self->service_.CountLimit(Limit::kHelloTimeout);
    self->Close();
  });
}

void Connection::StartServing() {
  if (reject_) {
    spdlog::debug("rejecting connection from {}: {} connections already served", peer_,
                  service_.limits().max_connections);
    Service::AppendErrorFrame(0,
                              Status::Overloaded("too many connections: this node serves at most " +
                                                 std::to_string(service_.limits().max_connections)),
                              out_pending_);
    BeginDrain();
    return;
  }
  if (loop_.stopping()) {
    Close();
    return;
  }
  // Over TLS the timer armed before the handshake keeps running: one
  // timeout bounds handshake and hello together.
  if (!stream_.tls()) ArmHelloTimer();
  ArmIdleTimer(Clock::now() + service_.limits().idle_timeout);
  Pump();
}

void Connection::Pump() {
  if (pumping_) return;  // an outer Pump() on this stack finishes the job
  if (CloseIfOutputOverCap(0)) return;
  pumping_ = true;
  ProcessBuffer();
  MaybeWrite();
  MaybeRead();
  MaybeFinishDrain();
  pumping_ = false;
}

bool Connection::CanAcceptMore() const {
  const ServiceLimits& limits = service_.limits();
  // Request bodies waiting for workers are bounded too (about one
  // max-size frame), or a pipeline of large frames could hold
  // max_inflight * max_frame_bytes.
  return inflight_ < limits.max_inflight && inflight_bytes_ < limits.max_frame_bytes &&
         OutputBytes() <= limits.max_output_bytes;
}

// ---- Reading ----------------------------------------------------------------

void Connection::MaybeRead() {
  if (reading_ || closed_) return;
  if (!lingering_ && (draining_ || !CanAcceptMore())) return;  // backpressure
  uint8_t* base = reinterpret_cast<uint8_t*>(rbuf_.get());
  asio::mutable_buffer buffer;
  if (lingering_) {
    rbegin_ = rend_ = 0;
    buffer = asio::buffer(base, kReadBufferBytes);
  } else if (in_big_) {
    if (big_filled_ == big_.capacity_bytes) {
      // Grow with the bytes received, never to the claimed size at once.
      const size_t capacity = std::min(big_.bytes, big_.capacity_bytes * 2);
      OwnedBody grown = OwnedBody::Allocate(capacity, big_.bytes);
      std::memcpy(grown.data(), big_.data(), big_filled_);
      big_ = std::move(grown);
    }
    buffer = asio::buffer(big_.data() + big_filled_, big_.capacity_bytes - big_filled_);
  } else {
    if (rbegin_ > 0) {  // keep the partial frame at the front
      std::memmove(base, base + rbegin_, rend_ - rbegin_);
      rend_ -= rbegin_;
      rbegin_ = 0;
    }
    if (rend_ == kReadBufferBytes) {
      // Unreachable: a frame that does not fit goes to big_. Fail safe.
      spdlog::error("connection from {}: read buffer full; closing", peer_);
      Close();
      return;
    }
    buffer = asio::buffer(base + rend_, kReadBufferBytes - rend_);
  }
  reading_ = true;
  stream_.AsyncReadSome(
      buffer, [self = shared_from_this()](const error_code& ec, size_t n) { self->OnRead(ec, n); });
}

void Connection::OnRead(const error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  if (lingering_) {
    linger_discarded_ += n;
    if (ec || linger_discarded_ > kLingerMaxBytes) {
      Close();
    } else {
      MaybeRead();
    }
    return;
  }
  if (ec) {
    if (!IsOrdinaryDisconnect(ec)) {
      spdlog::debug("connection from {}: read failed: {}", peer_, ec.message());
    } else if (in_big_ || rend_ > rbegin_) {
      spdlog::debug("connection from {} closed in the middle of a frame", peer_);
    }
    in_big_ = false;
    big_ = {};
    rbegin_ = rend_ = 0;
    // The client may have half-closed after its last request: answer what
    // is in flight, then close.
    BeginDrain();
    return;
  }
  if (draining_) {
    rbegin_ = rend_ = 0;  // requests read after the drain began are not served
    Pump();
    return;
  }
  if (in_big_) {
    big_filled_ += n;
    if (big_filled_ == big_.bytes) {
      in_big_ = false;
      OwnedBody body = std::move(big_);
      big_ = {};
      HandleFrame(body.data(), body.bytes, &body);
    }
  } else {
    rend_ += n;
  }
  Pump();
}

void Connection::ProcessBuffer() {
  if (in_big_ || closed_ || lingering_) return;
  const uint8_t* base = reinterpret_cast<const uint8_t*>(rbuf_.get());
  while (!draining_ && !closed_ && CanAcceptMore()) {
    const size_t avail = rend_ - rbegin_;
    if (avail < protocol::kFrameHeaderBytes) break;
    const uint8_t* frame = base + rbegin_;
    Result<protocol::FrameHeader> header = protocol::DecodeFrameHeader(frame, max_frame_bytes_);
    if (!header.ok()) {
      if (protocol::DecodeFrameHeader(frame, UINT32_MAX).ok()) {  // only its size is wrong
        service_.CountLimit(hello_done_ ? Limit::kFrameBytes : Limit::kPreHelloFrame);
      }
      RejectMalformed(header.status());
      break;
    }
    const size_t body_bytes = header->body_bytes;
    const size_t have = avail - protocol::kFrameHeaderBytes;
    if (have >= body_bytes) {
      rbegin_ += protocol::kFrameHeaderBytes + body_bytes;
      HandleFrame(frame + protocol::kFrameHeaderBytes, body_bytes, nullptr);
      continue;
    }
    if (protocol::kFrameHeaderBytes + body_bytes > kReadBufferBytes) {
      // Too large for the read buffer: receive the rest into a buffer of its own.
      const size_t capacity = std::min(body_bytes, std::max(kBigInitialBytes, have));
      big_ = OwnedBody::Allocate(capacity, body_bytes);
      std::memcpy(big_.data(), frame + protocol::kFrameHeaderBytes, have);
      big_filled_ = have;
      in_big_ = true;
      rbegin_ = rend_ = 0;
    }
    break;  // wait for the rest of the frame
  }
  if (rbegin_ == rend_) rbegin_ = rend_ = 0;
}

void Connection::HandleFrame(const uint8_t* body, size_t body_bytes, OwnedBody* owned) {
  const Clock::time_point start = Clock::now();
  last_activity_ = start;
  if (owned != nullptr && hello_done_) {
    // A frame larger than the read buffer is never cheap, and checking its
    // whole tree could take milliseconds: the worker parses it (and checks
    // access). (Before the hello, frames are at most
    // kPreHelloMaxFrameBytes: parsed here.)
    if (auth_generation_ != service_.auth().generation()) RefreshRoles();
    StartHeavy(std::move(*owned), start);
    return;
  }
  // Frames follow 12-byte headers, so a body in the read buffer is aligned
  // only every other time; Cap'n Proto needs 8-byte alignment.
  const uint8_t* aligned = body;
  if (reinterpret_cast<uintptr_t>(body) % alignof(capnp::word) != 0) {
    uint8_t* scratch = loop_.body_scratch();  // body_bytes < kReadBufferBytes here
    std::memcpy(scratch, body, body_bytes);
    aligned = scratch;
  }
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(aligned),
                                        body_bytes / sizeof(capnp::word));
  try {
    RequestReader reader(words);
    Result<wire::Request::Reader> parsed = reader.Parse();
    if (!parsed.ok()) {
      RejectMalformed(parsed.status());
      return;
    }
    wire::Request::Reader req = *parsed;
    if (!hello_done_) {
      HandleHello(req, start);
      return;
    }
    if (auth_generation_ != service_.auth().generation() && !RefreshRoles()) {
      Allowed(req, start);  // answers UNAUTHORIZED
      BeginDrain();
      return;
    }
    if (Service::RunsInline(req)) {
      if (Allowed(req, start)) ExecuteInline(req, Service::KindOf(req), start);
      return;
    }
    StartHeavy(owned != nullptr ? std::move(*owned) : OwnedBody::CopyOf(body, body_bytes), start);
  } catch (const kj::Exception& e) {
    RejectMalformed(Status::BadRequest("malformed request: " + Describe(e)));
  } catch (const std::exception& e) {
    // Out of memory while buffering a response: nothing sensible to answer.
    spdlog::warn("connection from {}: {}; closing", peer_, e.what());
    Close();
  }
}

void Connection::HandleHello(wire::Request::Reader req, Clock::time_point start) {
  const uint64_t id = req.getId();
  if (req.which() != wire::Request::HELLO) {
    loop_.stats().Record(Service::KindOf(req), false, MicrosSince(start));
    Service::AppendErrorFrame(id, Status::BadRequest("the first request must be a hello"),
                              out_pending_);
    BeginDrain();
    return;
  }
  auto hello = req.getHello();
  if (hello.getVersion() != protocol::kProtocolVersion) {
    loop_.stats().Record(0, false, MicrosSince(start));
    Service::AppendErrorFrame(id,
                              Status(StatusCode::kUnsupportedVersion,
                                     "protocol version " + std::to_string(hello.getVersion()) +
                                         " is not supported; this node speaks version " +
                                         std::to_string(protocol::kProtocolVersion)),
                              out_pending_);
    BeginDrain();
    return;
  }
  Authenticator& auth = service_.auth();
  if (auth.enabled()) {
    auto token = hello.getToken();
    if (token.size() == 0) {
      loop_.stats().Record(0, false, MicrosSince(start));
      spdlog::info("refused connection from {}: no token in the hello", peer_);
      Service::AppendErrorFrame(
          id,
          Status::Unauthorized("this node requires a token: give the client one "
                               "(--token, --token-file or TAGCACHE_TOKEN)"),
          out_pending_);
      BeginDrain();
      return;
    }
    auth_generation_ = auth.generation();
    token_hash_ = security::HashToken({token.begin(), token.size()});
    roles_ = auth.Lookup(token_hash_);
    if (roles_.empty()) {
      loop_.stats().Record(0, false, MicrosSince(start));
      // The log names the peer, never the token.
      spdlog::info("refused connection from {}: unknown token", peer_);
      Service::AppendErrorFrame(id, Status::Unauthorized("the token is not accepted by this node"),
                                out_pending_);
      BeginDrain();
      return;
    }
  } else {
    roles_ = security::RoleSet::All();
  }
  hello_done_ = true;
  max_frame_bytes_ = service_.limits().max_frame_bytes;
  hello_timer_.cancel();
  if (spdlog::should_log(spdlog::level::debug)) {
    auto client = hello.getClient();
    std::string name(client.begin(), std::min<size_t>(client.size(), 64));
    spdlog::debug("connection from {}: hello from client '{}', roles {}", peer_, name,
                  security::DescribeRoles(roles_));
  }
  capnp::MallocMessageBuilder mb(loop_.segment_scratch());
  auto resp = mb.initRoot<wire::Response>();
  resp.setId(id);
  service_.FillHello(resp);
  protocol::AppendFrame(mb, out_pending_);
  loop_.stats().Record(0, true, MicrosSince(start));
}

bool Connection::RefreshRoles() {
  Authenticator& auth = service_.auth();
  auth_generation_ = auth.generation();
  if (!auth.enabled()) return true;
  roles_ = auth.Lookup(token_hash_);
  if (!roles_.empty()) return true;
  if (!revoked_) spdlog::info("connection from {}: its token was revoked by a reload", peer_);
  revoked_ = true;
  return false;
}

bool Connection::Allowed(wire::Request::Reader req, Clock::time_point start) {
  Status access = revoked_ ? Status::Unauthorized(
                                 "the token of this connection is no longer accepted (the node "
                                 "reloaded its auth file)")
                           : CheckAccess(req.which(), roles_);
  if (access.ok()) return true;
  loop_.stats().Record(Service::KindOf(req), false, MicrosSince(start));
  Service::AppendErrorFrame(req.getId(), access, out_pending_);
  return false;
}

void Connection::ExecuteInline(wire::Request::Reader req, size_t kind, Clock::time_point start) {
  capnp::MallocMessageBuilder mb(loop_.segment_scratch());
  auto resp = mb.initRoot<wire::Response>();
  const uint64_t id = req.getId();
  resp.setId(id);
  const StatusCode code = service_.Execute(req, resp);
  const bool fits = service_.AppendResponse(mb, id, out_pending_);
  loop_.stats().Record(kind, fits ? code : StatusCode::kOverloaded, MicrosSince(start));
}

void Connection::StartHeavy(OwnedBody body, Clock::time_point start) {
  if (++inflight_ == service_.limits().max_inflight) service_.CountLimit(Limit::kInflight);
  const size_t body_bytes = body.capacity_bytes;
  inflight_bytes_ += body_bytes;
  // The job owns a reference to the connection and keeps the loop alive
  // (a work guard) until its result has been posted back and handled.
  // A durable write finishes later, on another worker, once it is logged.
  asio::post(workers_, [self = shared_from_this(), body = std::move(body), body_bytes, start,
                        roles = roles_, guard = asio::make_work_guard(loop_.io())]() mutable {
    Service& service = self->service_;
    service.ExecuteFrameAsync(
        body.view(), roles,
        [self = std::move(self), body_bytes, start,
         guard = std::move(guard)](FrameResult result) mutable {
          asio::io_context& io = self->loop_.io();
          asio::post(io, [self = std::move(self), result = std::move(result), body_bytes, start,
                          guard = std::move(guard)]() mutable {
            self->OnHeavyDone(std::move(result), body_bytes, start);
          });
        });
  });
}

void Connection::OnHeavyDone(FrameResult result, size_t body_bytes, Clock::time_point start) {
  --inflight_;
  inflight_bytes_ -= body_bytes;
  if (closed_) return;
  last_activity_ = Clock::now();
  loop_.stats().Record(result.malformed ? kKindMalformed : result.kind,
                       result.malformed ? StatusCode::kBadRequest : result.code,
                       MicrosSince(start));
  // Checked before the response is added: a client that does not read never
  // makes the node hold more than the cap.
  if (CloseIfOutputOverCap(result.frame.size())) return;
  if (out_pending_.empty()) {
    out_pending_.swap(result.frame);
  } else {
    out_pending_.insert(out_pending_.end(), result.frame.begin(), result.frame.end());
  }
  if (result.malformed) {
    spdlog::debug("closing connection from {}: malformed request", peer_);
    BeginDrain();
  } else if (revoked_) {
    BeginDrain();  // it was answered UNAUTHORIZED
  }
  Pump();
}

void Connection::RejectMalformed(const Status& status) {
  loop_.stats().Record(kKindMalformed, StatusCode::kBadRequest, 0);
  spdlog::debug("closing connection from {}: {}", peer_, status.ToString());
  Service::AppendErrorFrame(0, status, out_pending_);
  BeginDrain();
}

// ---- Writing ----------------------------------------------------------------

void Connection::MaybeWrite() {
  if (writing_ || closed_ || out_pending_.empty()) return;
  out_writing_.clear();
  out_writing_.swap(out_pending_);  // out_pending_ reuses the old buffer
  if (out_pending_.capacity() > kKeepOutputCapacity) out_pending_ = {};
  write_off_ = 0;
  writing_ = true;
  write_deadline_ = Clock::now() + service_.limits().write_timeout;
  ArmWriteTimer();
  DoWrite();
}

void Connection::DoWrite() {
  stream_.AsyncWriteSome(
      asio::buffer(out_writing_.data() + write_off_, out_writing_.size() - write_off_),
      [self = shared_from_this()](const error_code& ec, size_t n) { self->OnWrite(ec, n); });
}

void Connection::OnWrite(const error_code& ec, size_t n) {
  if (closed_) {
    writing_ = false;
    return;
  }
  if (ec) {
    if (!IsOrdinaryDisconnect(ec)) {
      spdlog::debug("connection from {}: write failed: {}", peer_, ec.message());
    }
    writing_ = false;
    Close();
    return;
  }
  write_off_ += n;
  if (write_off_ < out_writing_.size()) {
    write_deadline_ = Clock::now() + service_.limits().write_timeout;  // progress
    DoWrite();
    return;
  }
  writing_ = false;
  write_off_ = 0;
  out_writing_.clear();
  if (out_writing_.capacity() > kKeepOutputCapacity) out_writing_ = {};
  Pump();
}

void Connection::ArmWriteTimer() {
  if (write_timer_armed_) return;  // it re-arms itself for a later deadline
  write_timer_armed_ = true;
  write_timer_.expires_at(write_deadline_);
  write_timer_.async_wait(
      [self = shared_from_this()](const error_code& ec) { self->OnWriteTimer(ec); });
}

void Connection::OnWriteTimer(const error_code& ec) {
  write_timer_armed_ = false;
  if (ec || closed_ || !writing_) return;
  if (Clock::now() >= write_deadline_) {
    spdlog::info(
        "closing connection from {}: it read none of its {} pending response bytes "
        "for {} ms",
        peer_, OutputBytes(), service_.limits().write_timeout.count());
    service_.CountLimit(Limit::kWriteTimeout);
    Close();
    return;
  }
  ArmWriteTimer();
}

bool Connection::CloseIfOutputOverCap(size_t incoming) {
  if (closed_ || lingering_) return false;
  const size_t cap = service_.limits().max_output_hard_bytes;
  const size_t unsent = OutputBytes();
  if (unsent + incoming <= cap) return false;
  spdlog::info(
      "closing connection from {}: {} unsent response bytes (+{} more) exceed the output cap of "
      "{} bytes; the client does not read its responses",
      peer_, unsent, incoming, cap);
  service_.CountLimit(Limit::kOutputBytes);
  Close();
  return true;
}

// ---- Idle timeout -------------------------------------------------------------

void Connection::ArmIdleTimer(Clock::time_point at) {
  if (service_.limits().idle_timeout.count() <= 0) return;
  idle_timer_.expires_at(at);
  idle_timer_.async_wait(
      [self = shared_from_this()](const error_code& ec) { self->OnIdleTimer(ec); });
}

void Connection::OnIdleTimer(const error_code& ec) {
  if (ec || closed_ || lingering_) return;
  const auto idle = service_.limits().idle_timeout;
  const Clock::time_point now = Clock::now();
  // Before the hello the hello timeout applies; a connection waiting for
  // its own requests or writing a response is not idle. The timer is
  // re-armed only when it fires, so requests cost no timer operation.
  const bool busy = !hello_done_ || inflight_ > 0 || writing_ || !out_pending_.empty();
  if (busy || now - last_activity_ < idle) {
    ArmIdleTimer(busy ? now + idle : last_activity_ + idle);
    return;
  }
  spdlog::debug("closing connection from {}: no request for {} ms", peer_, idle.count());
  service_.CountLimit(Limit::kIdleTimeout);
  Close();
}

// ---- Closing ----------------------------------------------------------------

void Connection::BeginDrain() {
  if (closed_) return;
  if (handshaking_) {
    // Nothing was received yet, and a TLS stream takes no reads or writes
    // while its handshake runs.
    Close();
    return;
  }
  draining_ = true;
  Pump();
}

void Connection::MaybeFinishDrain() {
  if (!draining_ || closed_ || lingering_ || inflight_ > 0 || writing_ || !out_pending_.empty()) {
    return;
  }
  StartLinger();
}

void Connection::StartLinger() {
  lingering_ = true;
  // big_ stays allocated: a read still pending may be filling it. Lingering
  // reads go to rbuf_ and are discarded.
  in_big_ = false;
  error_code ec;
  // With TLS too: no close_notify is sent (that would wait for the
  // peer's); the client has its responses and sees the stream end.
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec) {
    Close();
    return;
  }
  hello_timer_.expires_after(kLingerTimeout);
  hello_timer_.async_wait([self = shared_from_this()](const error_code& wait_ec) {
    if (wait_ec) return;
    self->Close();
  });
  MaybeRead();
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  error_code ec;
  stream_.socket().close(ec);  // pending operations complete with operation_aborted
  hello_timer_.cancel();
  write_timer_.cancel();
  idle_timer_.cancel();
  loop_.Unregister(this);
  if (!reject_) service_.RemoveConnection();
}

}  // namespace tagcache::net
