// A minimal blocking HTTP/1.1 client over POSIX sockets on 127.0.0.1, for
// tests of the metrics endpoint: it sends bytes exactly as given (so tests
// can send malformed requests too) and reads the raw response. Bounded: 5 s
// and 16 MiB per exchange.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace tagcache::testing {

struct HttpResponse {
  int status = 0;  // 0: no response at all
  std::string head;
  std::string body;
};

// Sends `request` as is on a new connection to 127.0.0.1:port and reads the
// response until the server closes the connection (bounded: 5 s and 16 MiB).
inline HttpResponse RawHttp(uint16_t port, const std::string& request) {
  HttpResponse out;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return out;
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  size_t off = 0;
  while (off < request.size()) {
    ssize_t k = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (k <= 0) break;
    off += static_cast<size_t>(k);
  }
  ::shutdown(fd, SHUT_WR);  // the server sees the end of what we send at once
  std::string all;
  char buf[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline && all.size() < (size_t{16} << 20)) {
    ssize_t k = ::recv(fd, buf, sizeof(buf), 0);
    if (k <= 0) break;
    all.append(buf, static_cast<size_t>(k));
  }
  ::close(fd);
  const size_t split = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.", 0) != 0 || split == std::string::npos) return out;
  out.status = std::stoi(all.substr(9, 3));
  out.head = all.substr(0, split);
  out.body = all.substr(split + 4);
  return out;
}

inline HttpResponse Get(uint16_t port, const std::string& target) {
  return RawHttp(port, "GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

}  // namespace tagcache::testing
