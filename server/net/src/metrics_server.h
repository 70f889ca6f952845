// A small HTTP/1.1 server (Boost.Beast) for the metrics endpoint: GET or
// HEAD /metrics answers the text `render` produces as Prometheus text
// format 0.0.4; other paths get 404, other methods 405, a request that
// cannot be parsed 400. It runs on a thread and io_context of its own, so a
// scrape (which walks the engine's shards) never delays a request loop,
// and nothing a scraper sends can reach the request path. Bounded: request
// head 8 KiB, no request body, 16 connections, 10 s per read or write.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tagcache/common/status.h"

namespace tagcache::net {

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  // Listens on host:port (port 0: a free one) and starts serving on its own
  // thread. IO_ERROR naming the address when it cannot listen. `render` is
  // called on that thread, once per GET; it must be thread-safe with
  // respect to the rest of the node, and outlive the server.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& host, uint16_t port,
                                                      Render render);
  // Stop()s.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const;
  // Closes the listener and every connection, and joins the thread. Idempotent.
  void Stop();

 private:
  class Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagcache::net
