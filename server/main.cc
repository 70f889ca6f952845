// tagcache-server: one tagcache node on TCP. Parses flags, sets up logging,
// starts a net::Node (which recovers the state from --data-dir first) and
// serves until SIGINT or SIGTERM, then drains, syncs the log and exits 0.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>

#include "tagcache/client/client.h"
#include "tagcache/client/credentials.h"
#include "tagcache/cluster/repair.h"
#include "tagcache/net/node.h"
#include "tagcache/protocol/frame.h"

namespace {

// Splits "HOST:PORT" or "[IPV6]:PORT". Empty string on success, else an error.
std::string ParseListen(const std::string& text, std::string& host, uint16_t& port) {
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("]:");
    if (close == std::string::npos) return "expected [IPV6]:PORT, got '" + text + "'";
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) return "expected HOST:PORT, got '" + text + "'";
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port_text) > 65535) {
    return "bad port in '" + text + "'";
  }
  port = static_cast<uint16_t>(std::stoul(port_text));
  return "";
}

// Writes `port` to `path` through a temporary file and a rename, so a reader
// never sees a partial file.
bool WritePortFile(const std::string& path, uint16_t port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    out.flush();
    if (!out) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

// "4GiB", "512MiB", "100MB", "1073741824" -> bytes. Empty string on success.
std::string ParseBytes(const std::string& text, uint64_t& out) {
  size_t pos = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  if (pos == 0 || pos > 19) return "expected a size like 4GiB, 512MiB or 1073741824, got '" + text + "'";
  const uint64_t n = std::stoull(text.substr(0, pos));
  const std::string unit = text.substr(pos);
  uint64_t mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "K") mult = uint64_t{1} << 10;
  else if (unit == "MiB" || unit == "M") mult = uint64_t{1} << 20;
  else if (unit == "GiB" || unit == "G") mult = uint64_t{1} << 30;
  else if (unit == "TiB" || unit == "T") mult = uint64_t{1} << 40;
  else if (unit == "KB") mult = 1000;
  else if (unit == "MB") mult = 1000 * 1000;
  else if (unit == "GB") mult = 1000 * 1000 * 1000;
  else return "unknown unit '" + unit + "' in '" + text + "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB)";
  if (n > UINT64_MAX / mult) return "'" + text + "' is too large";
  out = n * mult;
  return "";
}

// What the repair loop has done since start, for the metrics endpoint
// (written by the repair thread, read by the metrics thread).
struct RepairCounters {
  std::atomic<uint64_t> passes{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> shards_checked{0};
  std::atomic<uint64_t> shards_repaired{0};
  std::atomic<uint64_t> merges{0};
  std::atomic<uint64_t> bytes{0};

  void Add(const tagcache::cluster::RepairReport& r) {
    passes.fetch_add(1, std::memory_order_relaxed);
    shards_checked.fetch_add(r.shards_checked, std::memory_order_relaxed);
    shards_repaired.fetch_add(r.shards_repaired, std::memory_order_relaxed);
    merges.fetch_add(r.merges, std::memory_order_relaxed);
    bytes.fetch_add(r.bytes, std::memory_order_relaxed);
  }

  // Prometheus text (docs/OPERATIONS.md "Metrics").
  std::string Render() const {
    std::string out;
    auto counter = [&](const char* name, const char* help, const std::atomic<uint64_t>& v) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" +
             name + " " + std::to_string(v.load(std::memory_order_relaxed)) + "\n";
    };
    counter("tagcache_repair_passes_total", "Background repair passes completed.", passes);
    counter("tagcache_repair_failures_total", "Background repair passes that failed.", failures);
    counter("tagcache_repair_shards_checked_total", "Owned shards compared with their replicas.",
            shards_checked);
    counter("tagcache_repair_shards_differing_total",
            "Owned shards whose replicas differed (and were repaired).", shards_repaired);
    counter("tagcache_repair_merges_total", "Replica states merged by repair.", merges);
    counter("tagcache_repair_bytes_total", "State bytes moved by repair.", bytes);
    return out;
  }
};

// The background repair pass (docs/CLUSTER.md): every `interval`, once the
// node has a settled cluster map, pulls the differing copies of the shards
// it owns from their other replicas. It talks to its own node through the
// client library like any peer, so merges are logged like any other write.
class RepairLoop {
 public:
  // `peer` carries the token and TLS settings the pass authenticates to
  // peers (and to its own node) with; its seeds are ignored.
  RepairLoop(std::string self_address, std::chrono::seconds interval, RepairCounters& counters,
             tagcache::client::ClientOptions peer)
      : self_(std::move(self_address)),
        interval_(interval),
        counters_(counters),
        peer_(std::move(peer)),
        thread_([this] { Run(); }) {}
  ~RepairLoop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    std::unique_ptr<tagcache::Client> client;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        if (wake_.wait_for(lock, interval_, [&] { return stop_; })) return;
      }
      if (!client) {
        tagcache::ClientOptions options = peer_;
        options.seeds = {self_};
        options.connections_per_node = 1;
        options.client_name = "tagcache-repair";
        options.request_timeout = std::chrono::seconds(60);
        auto connected = tagcache::Client::Connect(std::move(options));
        if (!connected.ok()) {
          if (connected.status().IsUnauthorized()) {
            spdlog::warn("repair pass: {}", connected.status().ToString());
          }
          continue;
        }
        client = std::move(*connected);
      }
      if (!client->RefreshMap().ok()) continue;
      const tagcache::cluster::ClusterMap map = client->cluster_map();
      if (map.epoch == 0 || map.moving) continue;
      auto me = client->GetNodeMap(self_);
      if (!me.ok() || me->node_id.empty()) continue;
      auto report = tagcache::cluster::RepairShards(*client, me->node_id);
      if (!report.ok()) {
        counters_.failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("repair pass: {}", report.status().ToString());
        continue;
      }
      counters_.Add(*report);
      if (report->shards_repaired > 0) {
        spdlog::info("repair pass: {} of {} owned shard(s) differed; {} merge(s), {} bytes",
                     report->shards_repaired, report->shards_checked, report->merges,
                     report->bytes);
      }
    }
  }

  const std::string self_;
  const std::chrono::seconds interval_;
  RepairCounters& counters_;
  const tagcache::client::ClientOptions peer_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the rest is initialised
};

}  // namespace

int main(int argc, char** argv) {
  tagcache::net::NodeOptions options;
  std::string listen = "127.0.0.1:7379";
  std::string data_dir = "./data";
  std::string log_level = "info";
  std::string port_file;
  int64_t hello_timeout_ms = options.hello_timeout.count();
  int64_t write_timeout_ms = options.write_timeout.count();
  int64_t shutdown_grace_ms = options.shutdown_grace.count();
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  options.workers = static_cast<int>(cores);
  options.io_threads = static_cast<int>(cores);

  std::string fsync = "batch";
  int64_t fsync_batch_ms = options.durability.batch_interval.count();
  std::string segment_bytes = "64MiB";
  std::string checkpoint_wal_bytes = "1GiB";
  int64_t checkpoint_interval_s = options.durability.checkpoint_interval.count();
  std::string wal_recovery = "strict";
  std::string max_memory = "0";
  std::string max_output_hard = "0";
  std::string metrics_listen;
  int64_t idle_timeout_s = options.idle_timeout.count() / 1000;

  CLI::App app{
      "tagcache-server: a tagcache node. Serves tag bitmaps over TCP (protocol v1).\n"
      "Every write is logged to --data-dir before it is acknowledged, and the state\n"
      "is recovered from there at start (docs/OPERATIONS.md)."};
  app.option_defaults()->always_capture_default();
  app.add_option("--listen", listen,
                 "Address to listen on, HOST:PORT or [IPV6]:PORT (port 0: any)");
  app.add_option("--data-dir", data_dir,
                 "Data directory for the WAL and checkpoints (created if missing). An empty "
                 "string keeps the state in RAM only: a restart loses it");
  app.add_option("--fsync", fsync,
                 "When a write is acknowledged: always (after an fsync covering it, shared by "
                 "concurrent writers), batch (after the fsync of its group, at most "
                 "--fsync-batch-ms later), none (once written to the OS: a power loss loses "
                 "recent writes)")
      ->check(CLI::IsMember({"always", "batch", "none"}));
  app.add_option("--fsync-batch-ms", fsync_batch_ms, "Group commit interval of --fsync batch")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000}));
  app.add_option("--wal-segment-bytes", segment_bytes, "Start a new WAL segment beyond this size");
  app.add_option("--checkpoint-wal-bytes", checkpoint_wal_bytes,
                 "Write a checkpoint once this much WAL was written since the last one (0: never)");
  app.add_option("--checkpoint-interval-s", checkpoint_interval_s,
                 "Write a checkpoint at least this often while writes arrive (0: never)")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400 * 365}));
  app.add_option("--wal-recovery", wal_recovery,
                 "Corruption before the end of the WAL: strict (refuse to start, naming file and "
                 "offset) or keep-valid-prefix (keep the records before it, drop the rest)")
      ->check(CLI::IsMember({"strict", "keep-valid-prefix"}));
  app.add_option("--recovery-threads", options.durability.recovery_threads,
                 "Threads decoding the checkpoint at start (0: cores)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--max-memory", max_memory,
                 "Refuse writes with OVERLOADED above this resident memory, e.g. 16GiB (0: no "
                 "limit); reads keep working");
  app.add_option("--workers", options.workers, "Worker threads for heavy requests (default: cores)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--io-threads", options.io_threads,
                 "Event-loop threads serving connections (default: cores)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--shard-bits", options.engine.shard_bits, "log2 of the users per shard")
      ->check(CLI::Range(8, 26));
  app.add_option("--max-future-ms", options.engine.max_future_ms,
                 "Refuse writes stamped more than this far ahead of the clock (0: no check)");
  app.add_option("--max-frame-bytes", options.max_frame_bytes,
                 "Largest request frame body accepted after the hello")
      ->check(CLI::Range(tagcache::protocol::kPreHelloMaxFrameBytes, uint32_t{1} << 30));
  app.add_option("--max-inflight", options.max_inflight,
                 "Requests executing at once per connection before reading pauses")
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--max-output-bytes", options.max_output_bytes,
                 "Unsent response bytes per connection before reading pauses")
      ->check(CLI::Range(size_t{64} << 10, size_t{1} << 40));
  app.add_option("--max-output-hard-bytes", max_output_hard,
                 "Disconnect a connection whose unsent responses exceed this, e.g. 256MiB (0 or "
                 "less than --max-output-bytes plus --max-frame-bytes: that sum)");
  app.add_option("--idle-timeout-s", idle_timeout_s,
                 "Close connections with no request for this long (0: never)")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400 * 7}));
  app.add_option("--max-audience-page", options.max_audience_page,
                 "Most user ids one audience page returns; a larger limit is clamped to it")
      ->check(CLI::Range(1u, 100'000'000u));
  app.add_option("--max-expr-bytes", options.engine.expr_limits.max_length,
                 "Longest query expression accepted, in bytes")
      ->check(CLI::Range(size_t{16}, size_t{16} << 20));
  app.add_option("--max-expr-depth", options.engine.expr_limits.max_depth,
                 "Deepest nesting of '(' and '!' accepted in a query expression")
      ->check(CLI::Range(1, 10'000));
  app.add_option("--max-expr-terms", options.engine.expr_limits.max_terms,
                 "Most tag references accepted in one query expression")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--metrics-listen", metrics_listen,
                 "Serve Prometheus metrics at http://HOST:PORT/metrics (default: off)");
  std::string metrics_port_file;
  app.add_option("--metrics-port-file", metrics_port_file,
                 "Write the metrics endpoint's bound port to this file once listening");
  app.add_option("--max-connections", options.max_connections,
                 "Connections served at once; more are answered OVERLOADED and closed")
      ->check(CLI::Range(1u, 1'000'000u));
  app.add_option("--hello-timeout-ms", hello_timeout_ms,
                 "Close connections without a hello by then")
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app.add_option("--write-timeout-ms", write_timeout_ms,
                 "Close connections that read none of their pending responses for this long")
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  app.add_option("--shutdown-grace-ms", shutdown_grace_ms,
                 "On SIGINT/SIGTERM, how long in-flight requests may take to finish")
      ->check(CLI::Range(int64_t{0}, int64_t{3'600'000}));
  app.add_option("--node-name", options.node_name,
                 "Name reported in hello replies (default: HOST:PORT)");
  app.add_option("--log-level", log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--port-file", port_file, "Write the bound port to this file once listening");
  int query_threads = 0;
  app.add_option("--query-threads", query_threads,
                 "Threads one audience query uses over this node's shards (0: cores)")
      ->check(CLI::Range(0, 1024));
  int64_t repair_interval_s = 300;
  app.add_option("--repair-interval-s", repair_interval_s,
                 "Seconds between background repair passes of a clustered node (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400 * 7}));
  std::string peer_token_file;
  std::string peer_tls_ca;
  app.add_option("--auth-file", options.auth_file,
                 "Accepted tokens, one ROLE:SHA256HEX a line (roles read, export, write, admin; "
                 "docs/SECURITY.md); reloaded on SIGHUP. Without it every client may do "
                 "everything and the node listens on loopback only");
  app.add_flag("--insecure-listen-any", options.insecure_listen_any,
               "Without --auth-file, listen on the --listen address even when it is not "
               "loopback (anyone who reaches it may read, export and overwrite every tag)");
  app.add_option("--peer-token-file", peer_token_file,
                 "Token (admin role on every node) the background repair pass authenticates "
                 "with");
  app.add_option("--tls-cert", options.tls_cert_file,
                 "PEM certificate chain: serve TLS 1.2+ only (with --tls-key)");
  app.add_option("--tls-key", options.tls_key_file, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", options.tls_client_ca_file,
                 "Require client certificates signed by this PEM CA");
  app.add_option("--peer-tls-ca", peer_tls_ca,
                 "PEM CA that peers' certificates chain to, for the background repair pass of a "
                 "TLS node (it presents --tls-cert as its client certificate)");
  CLI11_PARSE(app, argc, argv);

  // Logs go to stderr: stdout carries only the "listening" line.
  auto logger = spdlog::stderr_color_mt("tagcache-server");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%t] %v");
  spdlog::set_level(spdlog::level::from_str(log_level));

  std::string listen_error = ParseListen(listen, options.listen_host, options.listen_port);
  if (!listen_error.empty()) {
    spdlog::error("--listen: {}", listen_error);
    return 2;
  }
  options.hello_timeout = std::chrono::milliseconds(hello_timeout_ms);
  options.write_timeout = std::chrono::milliseconds(write_timeout_ms);
  options.idle_timeout = std::chrono::seconds(idle_timeout_s);
  if (!metrics_listen.empty()) {
    std::string metrics_error =
        ParseListen(metrics_listen, options.metrics_host, options.metrics_port);
    if (!metrics_error.empty()) {
      spdlog::error("--metrics-listen: {}", metrics_error);
      return 2;
    }
  }
  options.shutdown_grace = std::chrono::milliseconds(shutdown_grace_ms);
  options.engine.query_threads = query_threads > 0 ? query_threads : static_cast<int>(cores);
  options.stop_on_signals = true;

  uint64_t bytes = 0;
  uint64_t hard_output_bytes = 0;
  for (auto [flag, text, target] :
       {std::tuple{"--wal-segment-bytes", &segment_bytes, &options.durability.segment_bytes},
        std::tuple{"--checkpoint-wal-bytes", &checkpoint_wal_bytes,
                   &options.durability.checkpoint_wal_bytes},
        std::tuple{"--max-memory", &max_memory, &options.max_memory_bytes},
        std::tuple{"--max-output-hard-bytes", &max_output_hard, &hard_output_bytes}}) {
    std::string error = ParseBytes(*text, bytes);
    if (!error.empty()) {
      spdlog::error("{}: {}", flag, error);
      return 2;
    }
    *target = bytes;
  }
  options.max_output_hard_bytes = static_cast<size_t>(hard_output_bytes);
  if (options.durability.segment_bytes < 4096) {
    spdlog::error("--wal-segment-bytes: at least 4096 bytes");
    return 2;
  }
  options.durability.fsync = *tagcache::durability::ParseFsyncPolicy(fsync);
  options.durability.batch_interval = std::chrono::milliseconds(fsync_batch_ms);
  options.durability.checkpoint_interval = std::chrono::seconds(checkpoint_interval_s);
  options.durability.recovery_mode = wal_recovery == "strict"
                                         ? tagcache::storage::WalRecoveryMode::kStrict
                                         : tagcache::storage::WalRecoveryMode::kKeepValidPrefix;
  options.data_dir = data_dir;
  if (data_dir.empty()) {
    spdlog::warn("no --data-dir: state is kept in RAM only and a restart loses it");
  }

  RepairCounters repair_counters;  // outlives the node, whose metrics read it
  options.extra_metrics = [&repair_counters] { return repair_counters.Render(); };

  // What the background repair pass authenticates to nodes with.
  tagcache::client::ClientOptions peer;
  bool repair_possible = true;
  if (!peer_token_file.empty()) {
    auto token = tagcache::client::ReadTokenFile(peer_token_file);
    if (!token.ok()) {
      spdlog::error("--peer-token-file: {}", token.status().ToString());
      return 2;
    }
    peer.token = std::move(token).value();
  } else if (!options.auth_file.empty() && repair_interval_s > 0) {
    spdlog::warn(
        "--auth-file without --peer-token-file: the background repair pass has no token "
        "and is off");
    repair_possible = false;
  }
  if (!options.tls_cert_file.empty()) {
    if (peer_tls_ca.empty()) {
      if (repair_interval_s > 0) {
        spdlog::warn(
            "--tls-cert without --peer-tls-ca: the background repair pass cannot verify "
            "peers and is off");
      }
      repair_possible = false;
    } else {
      peer.tls.enabled = true;
      peer.tls.ca_file = peer_tls_ca;
      if (!options.tls_client_ca_file.empty()) {
        peer.tls.cert_file = options.tls_cert_file;
        peer.tls.key_file = options.tls_key_file;
      }
    }
  } else if (!peer_tls_ca.empty()) {
    spdlog::error("--peer-tls-ca needs --tls-cert (peers speak TLS only when this node does)");
    return 2;
  }

  tagcache::net::Node node(std::move(options));
  tagcache::Status status = node.Start();
  if (!status.ok()) {
    spdlog::error("{}", status.ToString());
    return 1;
  }
  // Before --port-file: whoever waits for that one finds this one too.
  if (!metrics_port_file.empty() && !WritePortFile(metrics_port_file, node.metrics_port())) {
    spdlog::error("cannot write --metrics-port-file {}: {}", metrics_port_file,
                  std::strerror(errno));
    return 1;
  }
  if (!port_file.empty() && !WritePortFile(port_file, node.port())) {
    spdlog::error("cannot write --port-file {}: {}", port_file, std::strerror(errno));
    return 1;
  }
  std::cout << "tagcache-server listening on " << node.listen_address() << std::endl;
  std::optional<RepairLoop> repair;
  if (repair_interval_s > 0 && repair_possible) {
    // A wildcard listen address is reached through loopback.
    std::string self = node.listen_address();
    if (self.rfind("0.0.0.0:", 0) == 0) self = "127.0.0.1:" + std::to_string(node.port());
    if (self.rfind("[::]:", 0) == 0) self = "[::1]:" + std::to_string(node.port());
    repair.emplace(self, std::chrono::seconds(repair_interval_s), repair_counters,
                   std::move(peer));
  }
  node.Run();
  return 0;
}
