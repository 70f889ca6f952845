// The network node: serves one Engine over TCP with the tagcache wire
// protocol (tagcache/protocol/frame.h, docs/PROTOCOL.md). It accepts
// connections, reads pipelined request frames, answers cheap point lookups
// on its IO threads and runs heavy queries and writes on a worker pool.
// Asio stays behind this header: callers see options, Start, Run and Stop.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tagcache/common/status.h"
#include "tagcache/durability/durability.h"
#include "tagcache/storage/file_system.h"
#include "tagcache/protocol/frame.h"
#include "tagcache/server/engine.h"

namespace tagcache::net {

struct NodeOptions {
  // Address to listen on: a numeric address or a host name. Port 0 picks a
  // free port (read it back with Node::port()). Default: 127.0.0.1:7379.
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 7379;
  // Name the node reports in HelloReply. Default (empty): "HOST:PORT" as bound.
  std::string node_name;
  // Threads that run connections (each owns an event loop; a connection
  // stays on one). 0 means std::thread::hardware_concurrency(). Default: 0.
  int io_threads = 0;
  // Threads of the worker pool for heavy requests (audience queries,
  // writes, snapshots, stats). 0 means hardware_concurrency(). Default: 0.
  int workers = 0;
  // Engine configuration (shard_bits, query threads, future-timestamp bound).
  EngineOptions engine;
  // Largest frame body accepted after the hello. Default: 64 MiB.
  uint32_t max_frame_bytes = protocol::kDefaultMaxFrameBytes;
  // Requests of one connection executing or queued at once; when reached,
  // the node stops reading that connection until responses drain. Default: 256.
  uint32_t max_inflight = 256;
  // Response bytes a connection may hold unsent; above it the node stops
  // reading that connection. Default: 64 MiB.
  size_t max_output_bytes = size_t{64} << 20;
  // A connection whose unsent responses (pipelined in-flight ones included,
  // as they land) would exceed this is disconnected: a client that does not
  // read cannot make the node hold more. Never below max_output_bytes plus
  // one largest response (max_frame_bytes and its header), so a client
  // that reads is never cut off. 0: that minimum. Default: 0.
  size_t max_output_hard_bytes = 0;
  // Connections served at once; one more is answered OVERLOADED and closed.
  // Default: 10,000.
  uint32_t max_connections = 10'000;
  // A connection that sends no valid hello within this time is closed
  // (slowloris: a hello trickled in byte by byte is timed out too). Default: 10 s.
  std::chrono::milliseconds hello_timeout{10'000};
  // An established connection with no request, nothing in flight and
  // nothing to send for this long is closed. 0: never. Default: 300 s.
  std::chrono::milliseconds idle_timeout{300'000};
  // Largest page an Audience request gets; a larger limit is clamped to it
  // (the page says hasMore; the client continues from nextCursor). Also
  // clamped to what fits max_frame_bytes. Default: 1,000,000.
  uint32_t max_audience_page = 1'000'000;
  // A connection with unsent output that makes no write progress for this
  // long is closed (a client that never reads its responses). Default: 30 s.
  std::chrono::milliseconds write_timeout{30'000};
  // On Stop(): how long in-flight requests may take to finish and flush
  // before the remaining connections are closed. Default: 5 s.
  std::chrono::milliseconds shutdown_grace{5'000};
  // Directory of the write-ahead log and checkpoints. When set, Start()
  // first recovers the state from it, and every write is logged before it
  // is applied and acknowledged. Empty: nothing is persisted (a cache, or
  // tests). Default: empty.
  std::string data_dir;
  // Fsync policy, checkpoint triggers, recovery mode (its data_dir field is
  // ignored: data_dir above is used).
  durability::DurabilityOptions durability;
  // File system for the data directory; null: the real one. Tests inject faults here.
  storage::FileSystem* file_system = nullptr;
  // Over this resident memory, writes are refused with OVERLOADED and reads
  // keep working. 0: no limit. Default: 0.
  uint64_t max_memory_bytes = 0;
  // When true, SIGINT and SIGTERM call Stop() and SIGHUP calls
  // ReloadAuth(). Default: false (tests).
  bool stop_on_signals = false;
  // Prometheus text endpoint (GET /metrics over HTTP/1.1, docs/OPERATIONS.md),
  // served on a thread of its own. Empty host: no endpoint. Port 0 picks a
  // free port (Node::metrics_port()). Default: none.
  std::string metrics_host;
  uint16_t metrics_port = 0;
  // Extra exposition text appended to every scrape, produced by components
  // outside the node (the repair loop of tagcache-server). Called on the
  // metrics thread; must be thread-safe. Default: none.
  std::function<std::string()> extra_metrics;

  // Security (docs/SECURITY.md).
  // File of accepted tokens, `ROLE:SHA256HEX` a line (tagcache/security/auth.h).
  // Empty: no authentication; every client may do everything, so the node
  // then listens on loopback only (see insecure_listen_any). Default: empty.
  std::string auth_file;
  // Without auth_file, a non-loopback listen_host is replaced by 127.0.0.1
  // (::1 for IPv6) unless this is true. Default: false.
  bool insecure_listen_any = false;
  // TLS (1.2+): the node's PEM certificate chain and key; both or neither.
  // With tls_client_ca_file, clients must present a certificate signed by
  // that CA. Default: empty (plaintext).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
};

// A node owns its Engine, its event loops, the listening socket and the
// worker pool. Not copyable or movable.
//
// Lifecycle: construct, Start() (binds and listens), Run() (blocks until a
// Stop() completes), destroy. Stop() may be called from any thread, at any
// time after construction, any number of times.
class Node {
 public:
  explicit Node(NodeOptions options);
  // REQUIRES: Run() has returned, or was never called.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Recovers the state from data_dir (if set), then resolves the listen
  // address, binds and listens, and starts accepting (connections are
  // served once Run() runs). IO_ERROR naming the address when it cannot
  // listen, or naming the file and offset when recovery fails.
  // REQUIRES: called once, before Run().
  Status Start();

  // The bound port and "HOST:PORT" (IPv6 hosts in brackets). Valid after a
  // successful Start().
  uint16_t port() const;
  std::string listen_address() const;
  // The bound port of the metrics endpoint; 0 when there is none.
  uint16_t metrics_port() const;

  // Serves until Stop() has drained every connection (or the shutdown grace
  // ran out), then returns. Runs one event loop on the calling thread and
  // the others on threads of its own. REQUIRES: Start() succeeded.
  void Run();

  // Graceful shutdown: stop accepting, stop reading new requests, let
  // in-flight requests finish and their responses flush (bounded by
  // shutdown_grace), then close. Returns at once; Run() returns when done.
  // Thread-safe.
  void Stop();

  // The node's engine (thread-safe; tests and tools may write to it directly).
  Engine& engine();

  // Re-reads auth_file. On success the new table applies to new
  // connections and to each open connection's next request (a token no
  // longer listed is refused and its connection closed). On failure (the
  // error names file:line) the old table stays. BAD_REQUEST when the node
  // runs without an auth file. Thread-safe. REQUIRES: Start() succeeded.
  Status ReloadAuth();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagcache::net
