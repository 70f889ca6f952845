#include "tagcache/protocol/tag_hits.h"
#include "fake_server.h"

#include <arpa/inet.h>
#include <capnp/message.h>
#include <gtest/gtest.h>
#include <kj/exception.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/frame.h"

namespace tagcache::testing {

struct FakeServer::Conn {
  int fd = -1;
  std::mutex write_mu;
};

namespace {

// Reads exactly n bytes; false on EOF, error or shutdown.
bool ReadFull(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool WriteFull(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t put = ::send(fd, p, n, MSG_NOSIGNAL);
    if (put <= 0) return false;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return true;
}

}  // namespace

FakeServer::FakeServer(Options options, Handler handler)
    : options_(options), handler_(std::move(handler)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(options_.port);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    ADD_FAILURE() << "fake server cannot listen on port " << options_.port;
    ::close(listen_fd_);
    listen_fd_ = -1;
    return;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeServer::~FakeServer() { Stop(); }

void FakeServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 20) <= 0) continue;  // 20 ms: Stop() is noticed quickly
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto conn = std::make_shared<Conn>();
    conn->fd = fd;
    const int index = accepted_.fetch_add(1);
    std::lock_guard lock(mu_);
    conns_.push_back(conn);
    threads_.emplace_back([this, conn, index] { Serve(conn, index); });
  }
}

void FakeServer::Serve(const std::shared_ptr<Conn>& conn, int index) {
  std::vector<std::vector<uint8_t>> deferred;
  for (;;) {
    uint8_t header_bytes[protocol::kFrameHeaderBytes];
    if (!ReadFull(conn->fd, header_bytes, sizeof(header_bytes))) return;
    auto header = protocol::DecodeFrameHeader(header_bytes, protocol::kDefaultMaxFrameBytes);
    if (!header.ok()) return;
    protocol::FrameBody body(header->body_bytes);
    if (!ReadFull(conn->fd, body.data(), body.size())) return;

    std::vector<uint8_t> frame;
    Reaction reaction = Reaction::kReply;
    try {
      protocol::BodyReader reader(body);
      auto request = reader.message().getRoot<wire::Request>();
      capnp::MallocMessageBuilder message;
      auto response = message.initRoot<wire::Response>();
      response.setId(request.getId());
      response.setStatus(wire::Status::OK);
      if (request.which() == wire::Request::HELLO) {
        hellos_.fetch_add(1);
        if (!options_.answer_hello) continue;
        if (options_.hello_status != wire::Status::OK) {
          response.setStatus(options_.hello_status);
          response.setMessage("refused by the fake server");
          response.setNone();
          protocol::AppendFrame(message, frame);
          std::lock_guard lock(conn->write_mu);
          WriteFull(conn->fd, frame.data(), frame.size());
          ::shutdown(conn->fd, SHUT_RDWR);
          return;
        }
        auto hello = response.initHello();
        hello.setVersion(protocol::kProtocolVersion);
        hello.setNode("fake");
        hello.setShardBits(static_cast<uint8_t>(options_.shard_bits));
        hello.setMaxFrameBytes(protocol::kDefaultMaxFrameBytes);
      } else if (request.which() == wire::Request::GET_CLUSTER_MAP) {
        // Like the hello, answered by itself: a standalone node (epoch 0).
        if (!options_.answer_hello) continue;
        response.initClusterMap().initMap().setEpoch(0);
      } else {
        requests_.fetch_add(1);
        if (!options_.answer_hello) continue;
        reaction = handler_(index, request, response);
      }
      protocol::AppendFrame(message, frame);
    } catch (const kj::Exception& e) {
      ADD_FAILURE() << "fake server: bad request frame: " << e.getDescription().cStr();
      return;
    }
    std::lock_guard lock(conn->write_mu);
    switch (reaction) {
      case Reaction::kReply:
        if (!WriteFull(conn->fd, frame.data(), frame.size())) return;
        break;
      case Reaction::kIgnore:
        break;
      case Reaction::kClose:
        ::shutdown(conn->fd, SHUT_RDWR);
        return;
      case Reaction::kDefer:
        deferred.push_back(std::move(frame));
        if (deferred.size() >= options_.defer_batch) {
          for (auto it = deferred.rbegin(); it != deferred.rend(); ++it) {
            if (!WriteFull(conn->fd, it->data(), it->size())) return;
          }
          deferred.clear();
        }
        break;
    }
  }
}

void FakeServer::DropConnections() {
  std::lock_guard lock(mu_);
  for (auto& conn : conns_) ::shutdown(conn->fd, SHUT_RDWR);
}

void FakeServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    for (auto& conn : conns_) ::shutdown(conn->fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& thread : threads) thread.join();
  std::lock_guard lock(mu_);
  for (auto& conn : conns_) ::close(conn->fd);
  conns_.clear();
}

FakeServer::Reaction EchoHandler(int /*connection*/, wire::Request::Reader request,
                                 wire::Response::Builder response) {
  switch (request.which()) {
    case wire::Request::PING:
      response.setNone();
      return FakeServer::Reaction::kReply;
    case wire::Request::GET_TAGS: {
      const std::vector<std::string> tags = {"u" + std::to_string(request.getGetTags().getUser())};
      protocol::WriteTagHits(response.initGetTags(), tags, false,
                             [](const std::string& t) { return std::string_view(t); },
                             [](const std::string&) { return uint64_t{0}; });
      return FakeServer::Reaction::kReply;
    }
    default:
      return FakeServer::Reaction::kIgnore;
  }
}

}  // namespace tagcache::testing
