#include "connection.h"

#include <kj/exception.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <utility>

#include "address.h"
#include "tagcache/protocol/codec.h"

namespace tagcache::client {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

struct Connection::Link {
  Link(asio::io_context& io, asio::ssl::context* tls)
      : stream(tcp::socket(io), tls), in(kReadChunk) {}
  security::TlsStream stream;
  // Received bytes not yet handled: in[begin, end). One read takes whatever
  // the socket has, and every complete frame in it is handled in the same
  // handler, so requests issued by those completions leave in one write.
  std::vector<uint8_t> in;
  size_t begin = 0;
  size_t end = 0;
  static constexpr size_t kReadChunk = 64 * 1024;
};

Connection::Connection(asio::io_context& io, Endpoints endpoints, std::string address,
                       ConnectionOptions options, Listener& listener, std::function<uint64_t()> ids)
    : io_(io),
      endpoints_(std::move(endpoints)),
      address_(std::move(address)),
      options_(std::move(options)),
      listener_(listener),
      ids_(std::move(ids)),
      deadline_timer_(io),
      connect_timer_(io),
      backoff_timer_(io),
      backoff_(options_.backoff_min),
      jitter_(std::random_device{}()) {}

Connection::~Connection() = default;

void Connection::Start() { Connect(); }

void Connection::Connect() {
  state_ = State::kConnecting;
  auto link = std::make_shared<Link>(io_, options_.tls.get());
  link_ = link;
  hello_id_ = 0;
  auto self = shared_from_this();
  connect_timer_.expires_after(options_.connect_timeout);
  connect_timer_.async_wait([self, link](const error_code& ec) {
    if (ec || self->link_ != link || self->state_ != State::kConnecting) return;
    self->Lost(Status::IoError("connecting to " + self->address_ + " timed out after " +
                               std::to_string(self->options_.connect_timeout.count()) + " ms"));
  });
  asio::async_connect(link->stream.socket(), endpoints_,
                      [self, link](const error_code& ec, const tcp::endpoint& /*endpoint*/) {
                        if (self->link_ != link) return;  // timed out or closed meanwhile
                        if (ec) {
                          self->Lost(Status::IoError("could not connect to " + self->address_ +
                                                     ": " + ec.message()));
                          return;
                        }
                        self->OnTcpConnected(link);
                      });
}

void Connection::OnTcpConnected(const std::shared_ptr<Link>& link) {
  if (!link->stream.tls()) {
    OnConnected(link);
    return;
  }
  // The certificate must be for the host the address names (name or IP).
  Result<HostPort> hp = ParseHostPort(address_);
  if (!hp.ok() || !link->stream.PrepareClient(hp->host)) {
    Lost(Status::BadRequest("cannot verify TLS for address " + address_));
    return;
  }
  auto self = shared_from_this();
  // Bounded by the connect timer, which runs until the hello is answered.
  link->stream.AsyncHandshake(asio::ssl::stream_base::client, [self, link](const error_code& ec) {
    if (self->link_ != link) return;
    if (ec) {
      self->Lost(Status::IoError("TLS handshake with " + self->address_ +
                                 " failed: " + security::DescribeTlsError(ec) +
                                 " (a plaintext port, or a certificate the CA does not vouch "
                                 "for?)"));
      return;
    }
    self->OnConnected(link);
  });
}

void Connection::OnConnected(const std::shared_ptr<Link>& link) {
  error_code ignored;
  link->stream.socket().set_option(tcp::no_delay(true), ignored);
  // Nothing else is written before the hello is answered: calls wait in the
  // queue until kReady (a node accepts only small frames before the hello).
  hello_id_ = ids_();
  out_ = EncodeHello(hello_id_, options_.client_name, options_.token);
  Flush();
  ReadHeader(link);
}

void Connection::ReadHeader(const std::shared_ptr<Link>& link) {
  // Make room: drop handled bytes, and grow for a frame larger than the buffer.
  if (link->begin > 0) {
    std::memmove(link->in.data(), link->in.data() + link->begin, link->end - link->begin);
    link->end -= link->begin;
    link->begin = 0;
  }
  if (link->in.size() - link->end < Link::kReadChunk / 4) {
    link->in.resize(link->in.size() + Link::kReadChunk);
  }
  auto self = shared_from_this();
  link->stream.AsyncReadSome(
      asio::buffer(link->in.data() + link->end, link->in.size() - link->end),
      [self, link](const error_code& ec, size_t n) {
        if (self->link_ != link) return;
        if (ec) {
          const bool closed = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
          std::string why =
              closed ? "connection closed by " + self->address_
                     : "reading from " + self->address_ + ": " + security::DescribeTlsError(ec);
          if (self->state_ == State::kConnecting && !link->stream.tls()) {
            // A TLS node drops a plaintext hello without a word.
            why += " before answering the hello (a TLS port? then enable TLS)";
          }
          self->Lost(Status::IoError(why));
          return;
        }
        link->end += n;
        while (link->end - link->begin >= protocol::kFrameHeaderBytes) {
          auto header = protocol::DecodeFrameHeader(link->in.data() + link->begin,
                                                    self->options_.max_response_bytes);
          if (!header.ok()) {
            self->Lost(Status::IoError("bad frame from " + self->address_ + ": " +
                                       header.status().ToString()));
            return;
          }
          const size_t frame = protocol::kFrameHeaderBytes + header->body_bytes;
          // Incomplete: read more. The buffer grows only as bytes arrive
          // (ReadHeader), never to a length the peer merely claims.
          if (link->end - link->begin < frame) break;
          // Bodies start 12 bytes into a frame: copy into 8-byte-aligned memory.
          protocol::FrameBody body(header->body_bytes);
          std::memcpy(body.data(), link->in.data() + link->begin + protocol::kFrameHeaderBytes,
                      header->body_bytes);
          link->begin += frame;
          self->OnFrame(link, body);
          if (self->link_ != link) return;  // the frame ended the connection
        }
        self->ReadHeader(link);
      });
}

void Connection::OnFrame(const std::shared_ptr<Link>& link, const protocol::FrameBody& body) {
  try {
    protocol::BodyReader reader(body);  // throws on a malformed segment table
    Result<wire::Response::Reader> parsed = protocol::ParseResponse(reader);
    if (!parsed.ok()) {
      Lost(Status::IoError("malformed response from " + address_ + ": " +
                           parsed.status().message()));
      return;
    }
    const wire::Response::Reader response = *parsed;
    const uint64_t id = response.getId();
    if (state_ == State::kConnecting) {
      if (id != hello_id_) {
        Status refused = ResponseStatus(response);
        Lost(refused.ok()
                 ? Status::IoError(address_ + " answered something else than the hello")
                 : Status(refused.code(), address_ + " refused the hello: " + refused.message()));
        return;
      }
      OnHelloReply(response);
      return;
    }
    if (id == 0) {
      // The node could not read one of our frames and will close: we cannot
      // tell which request it was, so the connection's calls all go.
      Status why = ResponseStatus(response);
      Lost(Status::IoError(address_ + " could not read a request: " + why.ToString()));
      return;
    }
    auto it = calls_.find(id);
    if (it == calls_.end() || !it->second.sent) {
      if (abandoned_.erase(id) > 0) return;  // answered after its deadline
      Lost(Status::IoError(address_ + " answered request id " + std::to_string(id) +
                           ", which is not in flight"));
      return;
    }
    CallPtr call = Take(it);
    call->done(Status::Ok(), &response);
  } catch (const kj::Exception& e) {
    if (link_ == link) {
      Lost(Status::IoError("malformed response from " + address_ + ": " +
                           e.getDescription().cStr()));
    }
    return;
  }
  Pump();
}

void Connection::OnHelloReply(const wire::Response::Reader& response) {
  Result<HelloInfo> hello = DecodeHello(response);
  if (!hello.ok()) {
    const Status& why = hello.status();
    Lost(Status(why.code(), address_ + " refused the hello: " + why.message()));
    return;
  }
  hello_ = std::move(hello).value();
  max_request_bytes_ =
      hello_.max_frame_bytes != 0 ? hello_.max_frame_bytes : protocol::kDefaultMaxFrameBytes;
  state_ = State::kReady;
  connect_timer_.cancel();
  backoff_ = options_.backoff_min;
  listener_.OnReady(*this);
  Pump();
}

void Connection::Lost(const Status& why) {
  if (state_ == State::kClosed || state_ == State::kBackoff) return;
  last_error_ = why;
  if (link_) {
    error_code ignored;
    link_->stream.socket().close(ignored);
    link_.reset();
  }
  connect_timer_.cancel();
  writing_ = false;
  out_.clear();

  std::vector<CallPtr> orphans;
  std::vector<CallPtr> failed;
  for (auto& [id, entry] : calls_) {
    deadlines_.erase(entry.deadline);
    Call& call = *entry.call;
    if (!entry.sent) {
      orphans.push_back(std::move(entry.call));
    } else if (call.idempotent && call.resends_left > 0 && !call.frame.empty()) {
      --call.resends_left;
      orphans.push_back(std::move(entry.call));
    } else {
      failed.push_back(std::move(entry.call));
    }
  }
  calls_.clear();
  queue_.clear();
  queued_ = 0;
  in_flight_ = 0;
  abandoned_.clear();
  abandoned_order_.clear();
  state_ = State::kBackoff;
  ScheduleReconnect();

  for (CallPtr& call : failed) {
    FailCall(*call, Status::IoError(
                        "connection to " + address_ + " lost after the " + call->kind +
                        " request was sent (" + why.message() + ")" +
                        (call->idempotent ? "" : "; the write may or may not have been applied")));
  }
  listener_.OnDown(*this, why, std::move(orphans));
}

void Connection::ScheduleReconnect() {
  std::uniform_real_distribution<double> spread(0.8, 1.2);
  const auto delay = std::chrono::milliseconds(
      static_cast<int64_t>(static_cast<double>(backoff_.count()) * spread(jitter_)));
  backoff_ = std::min(backoff_ * 2, options_.backoff_max);
  backoff_timer_.expires_after(delay);
  auto self = shared_from_this();
  backoff_timer_.async_wait([self](const error_code& ec) {
    if (ec || self->state_ != State::kBackoff) return;
    self->Connect();
  });
}

void Connection::Close(const Status& why) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  last_error_ = why;
  if (link_) {
    error_code ignored;
    link_->stream.socket().close(ignored);
    link_.reset();
  }
  deadline_timer_.cancel();
  connect_timer_.cancel();
  backoff_timer_.cancel();
  FailAll(why);
}

void Connection::FailAll(const Status& why) {
  std::vector<CallPtr> calls;
  calls.reserve(calls_.size());
  for (auto& [id, entry] : calls_) calls.push_back(std::move(entry.call));
  calls_.clear();
  deadlines_.clear();
  queue_.clear();
  queued_ = 0;
  in_flight_ = 0;
  for (CallPtr& call : calls) FailCall(*call, why);
}

void Connection::Abandon(uint64_t id) {
  abandoned_.insert(id);
  abandoned_order_.push_back(id);
  const size_t limit = std::max<size_t>(1024, options_.max_in_flight);
  while (abandoned_order_.size() > limit) {
    abandoned_.erase(abandoned_order_.front());
    abandoned_order_.pop_front();
  }
}

void Connection::Submit(CallPtr call) {
  if (state_ != State::kReady && state_ != State::kConnecting) {
    FailCall(*call,
             Status::IoError("connection to " + address_ + " is down: " + last_error_.message()));
    return;
  }
  if (queued_ >= options_.max_queued) {
    FailCall(*call, Status::Overloaded(std::to_string(queued_) + " requests already queued for " +
                                       address_ + " (max_queued)"));
    return;
  }
  const uint64_t id = call->id;
  Entry entry;
  entry.deadline = deadlines_.emplace(call->deadline, id);
  entry.call = std::move(call);
  calls_.emplace(id, std::move(entry));
  queue_.push_back(id);
  ++queued_;
  ArmDeadlineTimer();
  Pump();
}

CallPtr Connection::Take(std::unordered_map<uint64_t, Entry>::iterator it) {
  Entry& entry = it->second;
  if (entry.sent) {
    --in_flight_;
  } else {
    --queued_;
  }
  deadlines_.erase(entry.deadline);
  CallPtr call = std::move(entry.call);
  calls_.erase(it);
  return call;
}

void Connection::Pump() {
  while (state_ == State::kReady && in_flight_ < options_.max_in_flight && !queue_.empty()) {
    const uint64_t id = queue_.front();
    queue_.pop_front();
    auto it = calls_.find(id);
    if (it == calls_.end() || it->second.sent) continue;  // completed while queued
    Call& call = *it->second.call;
    const size_t body_bytes = call.frame.size() - protocol::kFrameHeaderBytes;
    if (body_bytes > max_request_bytes_) {
      CallPtr failed = Take(it);
      FailCall(*failed, Status::BadRequest(std::string(failed->kind) + " request of " +
                                           std::to_string(body_bytes) +
                                           " bytes exceeds the node's frame limit of " +
                                           std::to_string(max_request_bytes_) + " bytes"));
      continue;
    }
    out_.insert(out_.end(), call.frame.begin(), call.frame.end());
    // Only reads may be re-sent, so only they keep their bytes.
    if (!call.idempotent) std::vector<uint8_t>().swap(call.frame);
    it->second.sent = true;
    --queued_;
    ++in_flight_;
  }
  Flush();
}

void Connection::Flush() {
  // Deferred to the end of the current batch of handlers: completions that
  // each issue a new request (a closed loop) then share one write instead
  // of a send system call each.
  if (writing_ || flush_posted_ || out_.empty() || !link_) return;
  flush_posted_ = true;
  asio::post(link_->stream.get_executor(), [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->WriteOut();
  });
}

void Connection::WriteOut() {
  if (writing_ || out_.empty() || !link_) return;
  writing_ = true;
  auto buffer = std::make_shared<std::vector<uint8_t>>(std::move(out_));
  out_ = std::vector<uint8_t>();
  auto link = link_;
  auto self = shared_from_this();
  asio::async_write(
      link->stream, asio::buffer(*buffer), [self, link, buffer](const error_code& ec, size_t) {
        if (self->link_ != link) return;  // Lost() reset writing_ already
        self->writing_ = false;
        if (ec) {
          self->Lost(Status::IoError("writing to " + self->address_ + ": " + ec.message()));
          return;
        }
        self->Flush();
      });
}

void Connection::ArmDeadlineTimer() {
  if (deadlines_.empty() || state_ == State::kClosed) return;
  const Clock::time_point earliest = deadlines_.begin()->first;
  if (deadline_armed_ && deadline_armed_at_ <= earliest) return;
  deadline_armed_ = true;
  deadline_armed_at_ = earliest;
  deadline_timer_.expires_at(earliest);  // cancels a later wait, if any
  auto self = shared_from_this();
  deadline_timer_.async_wait([self](const error_code& ec) {
    if (ec == asio::error::operation_aborted || self->state_ == State::kClosed) return;
    self->OnDeadlineTimer();
  });
}

void Connection::OnDeadlineTimer() {
  deadline_armed_ = false;
  const Clock::time_point now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto it = calls_.find(deadlines_.begin()->second);
    if (it == calls_.end()) {  // cannot happen: entries erase their deadline
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    const bool sent = it->second.sent;
    CallPtr call = Take(it);
    if (sent) Abandon(call->id);  // its answer may still come
    FailCall(*call, DeadlineExceeded(*call, address_, sent));
  }
  Pump();
  ArmDeadlineTimer();
}

}  // namespace tagcache::client
