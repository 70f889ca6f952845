// Raw-frame access to a node for the in-process net tests: request frames
// built field by field, and a blocking POSIX client that sends them and
// reads response frames, including from a node that closes on it.
#pragma once

#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/frame.h"
#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::net {

using Fill = std::function<void(wire::Request::Builder)>;

inline std::vector<uint8_t> RequestFrame(uint64_t id, const Fill& fill) {
  capnp::MallocMessageBuilder mb;
  auto req = mb.initRoot<wire::Request>();
  req.setId(id);
  fill(req);
  std::vector<uint8_t> out;
  protocol::AppendFrame(mb, out);
  return out;
}

struct Reply {
  std::vector<uint64_t> words;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader;
  wire::Response::Reader get() { return reader->getRoot<wire::Response>(); }
};

class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SetReceiveTimeout(std::chrono::milliseconds(5000));
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void SetReceiveTimeout(std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  bool Send(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return false;
      p += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  }
  bool Send(const std::vector<uint8_t>& bytes) { return Send(bytes.data(), bytes.size()); }

  // Reads exactly n bytes; false on EOF, error or timeout.
  bool ReadExact(void* out, size_t n) {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
      ssize_t k = ::recv(fd_, p, n, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return false;
      p += k;
      n -= static_cast<size_t>(k);
    }
    return true;
  }

  // One response frame, or nullopt on EOF / error / timeout.
  std::optional<Reply> Read() {
    uint8_t header[protocol::kFrameHeaderBytes];
    if (!ReadExact(header, sizeof(header))) return std::nullopt;
    Result<protocol::FrameHeader> h = protocol::DecodeFrameHeader(header, 1u << 30);
    if (!h.ok()) {
      ADD_FAILURE() << "bad response header: " << h.status().ToString();
      return std::nullopt;
    }
    Reply reply;
    reply.words.resize(h->body_bytes / 8);
    if (!ReadExact(reply.words.data(), h->body_bytes)) return std::nullopt;
    capnp::ReaderOptions options;
    options.traversalLimitInWords = uint64_t{1} << 30;
    reply.reader = std::make_unique<capnp::FlatArrayMessageReader>(
        kj::arrayPtr(reinterpret_cast<const capnp::word*>(reply.words.data()), reply.words.size()),
        options);
    return reply;
  }

  // True once the node closed the connection (EOF or reset) within `timeout`;
  // any responses still queued are skipped.
  bool WaitClosed(std::chrono::milliseconds timeout) {
    SetReceiveTimeout(std::chrono::milliseconds(100));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<uint8_t> junk(1 << 16);
    while (std::chrono::steady_clock::now() < deadline) {
      ssize_t k = ::recv(fd_, junk.data(), junk.size(), 0);
      if (k == 0) return true;
      if (k < 0 && (errno == ECONNRESET || errno == EPIPE)) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

}  // namespace tagcache::net
