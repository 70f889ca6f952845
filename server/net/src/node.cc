// Threads: `io_threads` event loops (one io_context and one thread each; a
// connection lives on one loop, so its state needs no locks), a worker
// thread_pool for heavy requests, and the engine's own query helpers.
// Loop 0 also runs the acceptor and the signal handler; it hands accepted
// sockets to the loops round-robin.
#include "tagcache/net/node.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cluster_state.h"
#include "connection.h"
#include "loop.h"
#include "memory_guard.h"
#include "metrics.h"
#include "metrics_server.h"
#include "service.h"
#include "tagcache/security/auth.h"
#include "tagcache/security/tls.h"

namespace tagcache::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

size_t ThreadsOr(int requested) {
  if (requested > 0) return static_cast<size_t>(requested);
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string FormatEndpoint(const tcp::endpoint& ep) {
  std::string host = ep.address().to_string();
  if (ep.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(ep.port());
}

ServiceLimits LimitsOf(const NodeOptions& o) {
  ServiceLimits limits;
  limits.max_frame_bytes = std::max(o.max_frame_bytes, protocol::kPreHelloMaxFrameBytes);
  limits.max_inflight = std::max<uint32_t>(o.max_inflight, 1);
  limits.max_output_bytes = o.max_output_bytes;
  // One largest response may always land on top of the pause threshold.
  const size_t floor =
      o.max_output_bytes + protocol::kFrameHeaderBytes + size_t{limits.max_frame_bytes};
  limits.max_output_hard_bytes = std::max(o.max_output_hard_bytes, floor);
  limits.max_connections = std::max<uint32_t>(o.max_connections, 1);
  limits.hello_timeout = o.hello_timeout;
  limits.write_timeout = o.write_timeout;
  limits.idle_timeout = o.idle_timeout;
  limits.max_audience_page = std::max<uint32_t>(o.max_audience_page, 1);
  return limits;
}

}  // namespace

class Node::Impl {
 public:
  explicit Impl(NodeOptions options)
      : options_(std::move(options)),
        engine_(options_.engine),
        cluster_(options_.data_dir.empty() ? nullptr : EnsureFileSystem(options_, owned_fs_),
                 options_.data_dir, engine_.shard_bits()),
        service_(engine_, cluster_, LimitsOf(options_), options_.node_name,
                 ThreadsOr(options_.io_threads)),
        // At least two: a map change waits on a worker for earlier writes,
        // whose logged completions also need a worker to finish.
        pool_(std::max<size_t>(2, ThreadsOr(options_.workers))) {
    const size_t n = ThreadsOr(options_.io_threads);
    loops_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      loops_.push_back(std::make_unique<Loop>(i, service_.loop_stats(i)));
      guards_.push_back(asio::make_work_guard(loops_.back()->io()));
    }
    accept_backoff_.emplace(loops_[0]->io());
  }

  ~Impl() {
    // The metrics thread reads the service, the engine and the log.
    if (metrics_) metrics_->Stop();
    // The log's continuations run on the pool: drain them while it runs.
    if (durability_) durability_->Stop();
    // Abandoned worker jobs hold connections whose sockets belong to the
    // loops: stop the pool before the loops go.
    pool_.stop();
    pool_.join();
  }

  Status Start() {
    memory_guard_.emplace(options_.max_memory_bytes);
    service_.set_memory_guard(&*memory_guard_);
    if (!options_.data_dir.empty()) {
      Status s = OpenDurability();
      if (!s.ok()) return s;
      // The map the node had: it rejoins its cluster owning the same shards,
      // and forgets the ones a finished move took away while it was down.
      if (s = cluster_.Load(); !s.ok()) return s;
      if (size_t dropped = service_.DropUnownedShards(); dropped > 0) {
        spdlog::info("dropped {} shard(s) this node no longer owns", dropped);
      }
    }
    if (!options_.auth_file.empty()) {
      Result<security::AuthTable> table = security::AuthTable::Load(options_.auth_file);
      if (!table.ok()) return table.status();
      spdlog::info("authentication on: {} token(s) from {}", table->entries(), options_.auth_file);
      service_.auth().Install(std::move(table).value());
    }
    if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty() ||
        !options_.tls_client_ca_file.empty()) {
      auto ctx = security::MakeServerContext(
          {options_.tls_cert_file, options_.tls_key_file, options_.tls_client_ca_file});
      if (!ctx.ok()) return ctx.status();
      tls_ = std::move(ctx).value();
    }
    Loop& loop0 = *loops_[0];
    error_code ec;
    tcp::resolver resolver(loop0.io());
    auto results = resolver.resolve(options_.listen_host, std::to_string(options_.listen_port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    const std::string wanted = options_.listen_host + ":" + std::to_string(options_.listen_port);
    if (ec || results.empty()) {
      return Status::IoError("cannot resolve listen address " + wanted + ": " +
                             (ec ? ec.message() : std::string("no address")));
    }
    tcp::endpoint endpoint = results.begin()->endpoint();
    if (options_.auth_file.empty() && !endpoint.address().is_loopback()) {
      // Like Redis's protected mode: a node without authentication is
      // reachable from this machine only, unless the operator insists.
      if (options_.insecure_listen_any) {
        spdlog::warn(
            "no --auth-file and --insecure-listen-any: anyone who can reach {} may read, export "
            "and overwrite every tag",
            wanted);
      } else {
        const asio::ip::address loopback =
            endpoint.address().is_v6() ? asio::ip::address(asio::ip::address_v6::loopback())
                                       : asio::ip::address(asio::ip::address_v4::loopback());
        spdlog::warn(
            "no --auth-file: listening on {} instead of {} (loopback only; give --auth-file, "
            "or --insecure-listen-any to accept unauthenticated clients from the network)",
            loopback.to_string(), endpoint.address().to_string());
        endpoint.address(loopback);
      }
    }
    acceptor_.emplace(loop0.io());
    auto fail = [&](const char* what) {
      acceptor_.reset();
      return Status::IoError(std::string("cannot listen on ") + wanted + ": " + what + ": " +
                             ec.message());
    };
    if (acceptor_->open(endpoint.protocol(), ec)) return fail("open");
    if (acceptor_->set_option(tcp::acceptor::reuse_address(true), ec)) return fail("SO_REUSEADDR");
    if (acceptor_->bind(endpoint, ec)) return fail("bind");
    if (acceptor_->listen(asio::socket_base::max_listen_connections, ec)) return fail("listen");
    bound_ = acceptor_->local_endpoint(ec);
    if (ec) return fail("getsockname");
    if (options_.node_name.empty()) service_.set_node_name(FormatEndpoint(bound_));

    spdlog::info(
        "tagcache-server on {}: shard_bits={} io_threads={} workers={} max_frame_bytes={} "
        "max_inflight={} max_output_bytes={} max_output_hard_bytes={} max_connections={} "
        "idle_timeout_ms={} max_memory={}; {}",
        FormatEndpoint(bound_), engine_.shard_bits(), loops_.size(), ThreadsOr(options_.workers),
        service_.limits().max_frame_bytes, service_.limits().max_inflight,
        service_.limits().max_output_bytes, service_.limits().max_output_hard_bytes,
        service_.limits().max_connections, service_.limits().idle_timeout.count(),
        options_.max_memory_bytes == 0 ? std::string("none")
                                       : FormatBytes(options_.max_memory_bytes),
        durability_ ? "data directory " + options_.data_dir + ", fsync " +
                          std::string(durability::FsyncPolicyName(options_.durability.fsync))
                    : std::string("no data directory: state is kept in RAM only"));
    spdlog::info(
        "security: {}; {}",
        service_.auth().enabled()
            ? "tokens required (" + options_.auth_file + ")"
            : std::string("NO authentication (no --auth-file): every client may do "
                          "everything"),
        !tls_ ? std::string("TLS off (plaintext)")
        : options_.tls_client_ca_file.empty()
            ? std::string("TLS on")
            : "TLS on, client certificates required (CA " + options_.tls_client_ca_file + ")");

    if (!options_.metrics_host.empty()) {
      Result<std::unique_ptr<MetricsServer>> metrics = MetricsServer::Start(
          options_.metrics_host, options_.metrics_port, [this] {
            std::string text = RenderMetrics(service_);
            if (options_.extra_metrics) text += options_.extra_metrics();
            return text;
          });
      if (!metrics.ok()) {
        acceptor_.reset();
        return metrics.status();
      }
      metrics_ = std::move(*metrics);
      spdlog::info("metrics on http://{}:{}/metrics", options_.metrics_host, metrics_->port());
    }

    if (options_.stop_on_signals) {
      signals_.emplace(loop0.io(), SIGINT, SIGTERM);
      signals_->async_wait([this](const error_code& wait_ec, int signo) {
        if (wait_ec) return;
        spdlog::info("received signal {}: shutting down", signo);
        RequestStop();
      });
      hangup_.emplace(loop0.io(), SIGHUP);
      WaitForHangup();
    }
    DoAccept();
    return Status::Ok();
  }

  void Run() {
    std::vector<std::thread> threads;
    threads.reserve(loops_.size() - 1);
    for (size_t i = 1; i < loops_.size(); ++i) {
      threads.emplace_back([loop = loops_[i].get()] { RunLoop(*loop); });
    }
    RunLoop(*loops_[0]);
    for (auto& t : threads) t.join();
    if (metrics_) metrics_->Stop();  // a stopped node is not scraped as if it served
    // Log what was submitted and let its continuations run before the pool goes.
    if (durability_) durability_->Stop();
    pool_.wait();  // jobs still running after a forced stop finish; their results are dropped
    spdlog::info("tagcache-server stopped");
  }

  void RequestStop() {
    if (stop_requested_.exchange(true)) return;
    // Everything about accepting lives on loop 0.
    asio::post(loops_[0]->io(), [this] { BeginShutdown(); });
  }

  Status ReloadAuth() {
    if (options_.auth_file.empty()) {
      return Status::BadRequest("no --auth-file: nothing to reload");
    }
    Result<security::AuthTable> table = security::AuthTable::Load(options_.auth_file);
    if (!table.ok()) {
      spdlog::error("auth file reload failed, keeping the previous tokens: {}",
                    table.status().ToString());
      return table.status();
    }
    const size_t n = table->entries();
    service_.auth().Install(std::move(table).value());
    spdlog::info("auth file reloaded: {} token(s) from {}", n, options_.auth_file);
    return Status::Ok();
  }

  uint16_t port() const { return bound_.port(); }
  uint16_t metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  std::string listen_address() const { return FormatEndpoint(bound_); }
  Engine& engine() { return engine_; }

 private:
  static void RunLoop(Loop& loop) {
    std::string name = "tc-io-" + std::to_string(loop.index());
    pthread_setname_np(pthread_self(), name.c_str());
    for (;;) {
      try {
        loop.io().run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("loop {}: unexpected exception: {}", loop.index(), e.what());
      } catch (...) {
        spdlog::error("loop {}: unexpected non-standard exception", loop.index());
      }
    }
  }

  void WaitForHangup() {
    hangup_->async_wait([this](const error_code& wait_ec, int) {
      if (wait_ec || stopping_) return;
      if (options_.auth_file.empty()) {
        spdlog::info("received SIGHUP: no --auth-file to reload");
      } else {
        (void)ReloadAuth();  // logs the outcome; a bad file keeps the old table
      }
      WaitForHangup();
    });
  }

  // The data directory's file system: the injected one, else the real one
  // (created once, owned by the node).
  static storage::FileSystem* EnsureFileSystem(NodeOptions& options,
                                               std::unique_ptr<storage::FileSystem>& owned) {
    if (!options.file_system) {
      owned = storage::NewPosixFileSystem();
      options.file_system = owned.get();
    }
    return options.file_system;
  }

  Status OpenDurability() {
    EnsureFileSystem(options_, owned_fs_);
    durability::DurabilityOptions opts = options_.durability;
    opts.data_dir = options_.data_dir;
    spdlog::info("recovering from {} ...", opts.data_dir);
    Result<std::unique_ptr<durability::Durability>> opened = durability::Durability::Open(
        opts, engine_, *options_.file_system,
        [this](std::function<void()> fn) { asio::post(pool_, std::move(fn)); });
    if (!opened.ok()) return opened.status();
    durability_ = std::move(*opened);
    const durability::RecoveryReport& r = durability_->recovery();
    const EngineStats stats = engine_.Stats(false);
    spdlog::info(
        "recovered in {} ms: checkpoint {} ({} bytes, {} ms), {} WAL record(s) in {} segment(s) "
        "replayed in {} ms ({} refused by the merge rules), {} torn tail(s) dropped; {} tags, "
        "{} assignments",
        r.total_micros / 1000, r.checkpoint.empty() ? std::string("none") : r.checkpoint,
        r.checkpoint_bytes, r.checkpoint_micros / 1000, r.wal.records, r.wal.segments,
        r.replay_micros / 1000, r.records_refused, r.wal.torn_tails.size(), stats.tags,
        stats.assignments);
    service_.set_durability(durability_.get());
    return Status::Ok();
  }

  void DoAccept() {
    Loop& target = *loops_[next_loop_];
    next_loop_ = (next_loop_ + 1) % loops_.size();
    // Impl owns the loops, so it outlives every handler they run.
    acceptor_->async_accept(target.io(), [this, &target](const error_code& ec, tcp::socket socket) {
      OnAccept(target, ec, std::move(socket));
    });
  }

  void OnAccept(Loop& target, const error_code& ec, tcp::socket socket) {
    if (stopping_) return;  // the socket closes with its destructor
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // E.g. EMFILE: retrying at once would spin; back off a little.
      spdlog::warn("accept failed: {}; retrying in 100 ms", ec.message());
      accept_backoff_->expires_after(std::chrono::milliseconds(100));
      accept_backoff_->async_wait([this](const error_code& wait_ec) {
        if (!wait_ec && !stopping_) DoAccept();
      });
      return;
    }
    const bool admitted = service_.TryAddConnection();
    auto connection = std::make_shared<Connection>(target, service_, pool_, std::move(socket),
                                                   !admitted, tls_.get());
    asio::post(target.io(), [connection = std::move(connection)] { connection->Start(); });
    DoAccept();
  }

  // On loop 0.
  void BeginShutdown() {
    if (stopping_) return;
    stopping_ = true;
    error_code ec;
    if (acceptor_) acceptor_->close(ec);
    accept_backoff_->cancel();
    if (signals_) {
      signals_->cancel(ec);
      signals_->clear(ec);  // a second signal now has its default effect
    }
    if (hangup_) hangup_->cancel(ec);
    spdlog::info("shutting down: no new connections; draining {} connection(s) (grace {} ms)",
                 service_.connections(), options_.shutdown_grace.count());
    for (auto& loop : loops_) {
      asio::post(loop->io(), [loop = loop.get(), grace = options_.shutdown_grace] {
        loop->BeginShutdown(grace);
      });
    }
    // Each loop now runs until its connections are gone (the posted drain is work).
    for (auto& guard : guards_) guard.reset();
  }

  // Declaration order is destruction order reversed: the pool (whose jobs
  // use the engine, the service and the loops) goes first, the engine last.
  NodeOptions options_;
  // Before cluster_, which keeps a pointer to it.
  std::unique_ptr<storage::FileSystem> owned_fs_;
  Engine engine_;
  ClusterState cluster_;
  Service service_;
  // The TLS context of every connection; null: plaintext. Declared before
  // the loops so that it outlives the connections they hold.
  std::shared_ptr<asio::ssl::context> tls_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::optional<tcp::acceptor> acceptor_;
  std::optional<asio::steady_timer> accept_backoff_;
  std::optional<asio::signal_set> signals_;
  std::optional<asio::signal_set> hangup_;
  tcp::endpoint bound_;
  size_t next_loop_ = 0;
  bool stopping_ = false;  // loop 0 only
  std::atomic<bool> stop_requested_{false};
  asio::thread_pool pool_;
  // After the pool: destroyed before it (~Impl stops durability first anyway).
  std::optional<MemoryGuard> memory_guard_;
  std::unique_ptr<durability::Durability> durability_;
  // Last: stopped (in ~Impl) before anything it reads goes.
  std::unique_ptr<MetricsServer> metrics_;
};

Node::Node(NodeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Node::~Node() = default;
Status Node::Start() { return impl_->Start(); }
uint16_t Node::port() const { return impl_->port(); }
uint16_t Node::metrics_port() const { return impl_->metrics_port(); }
std::string Node::listen_address() const { return impl_->listen_address(); }
void Node::Run() { impl_->Run(); }
void Node::Stop() { impl_->RequestStop(); }
Engine& Node::engine() { return impl_->engine(); }
Status Node::ReloadAuth() { return impl_->ReloadAuth(); }

}  // namespace tagcache::net
