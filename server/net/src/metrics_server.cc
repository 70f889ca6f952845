#include <utility>  // before Asio: Boost 1.74's awaitable.hpp needs std::exchange

#include "metrics_server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <thread>

namespace tagcache::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using boost::system::error_code;

constexpr size_t kMaxHeaderBytes = 8 << 10;
constexpr int kMaxConnections = 16;
constexpr auto kIoTimeout = std::chrono::seconds(10);
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// What the sessions share with the server; held by shared_ptr so that a
// session destroyed with the io_context never touches a destroyed server.
struct Shared {
  MetricsServer::Render render;
  int open_connections = 0;  // the server's thread only
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {
    ++shared_->open_connections;
  }
  ~Session() { --shared_->open_connections; }

  void Read() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(0);  // GET carries no body
    stream_.expires_after(kIoTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](const error_code& ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(const error_code& ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == http::error::partial_message) {
      Close();
      return;
    }
    if (ec) {
      // Anything else is a request that cannot be parsed (or is too large):
      // say so and close.
      Respond(http::status::bad_request, "bad request: " + ec.message() + "\n", false, 11);
      return;
    }
    const auto& req = parser_->get();
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    if (req.method() != http::verb::get) {
      res_ = {};
      res_.set(http::field::allow, "GET");
      Respond(http::status::method_not_allowed, "only GET is served\n", keep_alive, version);
      return;
    }
    const beast::string_view target = req.target();
    const beast::string_view path = target.substr(0, target.find('?'));
    if (path != "/metrics") {
      res_ = {};
      Respond(http::status::not_found, "not found: the metrics are at /metrics\n", keep_alive,
              version);
      return;
    }
    std::string body;
    try {
      body = shared_->render();
    } catch (const std::exception& e) {
      res_ = {};
      Respond(http::status::internal_server_error, std::string("cannot render: ") + e.what() + "\n",
              false, version);
      return;
    }
    res_ = {};
    res_.set(http::field::content_type, kContentType);
    Respond(http::status::ok, std::move(body), keep_alive, version);
  }

  // Sends res_ (whose extra headers the caller set) with `status` and `body`.
  void Respond(http::status status, std::string body, bool keep_alive, unsigned version) {
    res_.result(status);
    res_.version(version);
    if (res_.find(http::field::content_type) == res_.end()) {
      res_.set(http::field::content_type, "text/plain; charset=utf-8");
    }
    res_.keep_alive(keep_alive);
    res_.body() = std::move(body);
    res_.prepare_payload();
    stream_.expires_after(kIoTimeout);
    http::async_write(stream_, res_,
                      [self = shared_from_this(), keep_alive](const error_code& ec, size_t) {
                        if (ec || !keep_alive) {
                          self->Close();
                          return;
                        }
                        self->Read();
                      });
  }

  void Close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{kMaxHeaderBytes};  // bounds what a request may make us hold
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::response<http::string_body> res_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace

class MetricsServer::Impl {
 public:
  explicit Impl(Render render) : shared_(std::make_shared<Shared>()) {
    shared_->render = std::move(render);
  }

  ~Impl() { Stop(); }

  Status Listen(const std::string& host, uint16_t port) {
    error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    const std::string wanted = host + ":" + std::to_string(port);
    if (ec || results.empty()) {
      return Status::IoError("cannot resolve metrics address " + wanted + ": " +
                             (ec ? ec.message() : std::string("no address")));
    }
    const tcp::endpoint endpoint = results.begin()->endpoint();
    auto fail = [&](const char* what) {
      return Status::IoError(std::string("cannot listen for metrics on ") + wanted + ": " + what +
                             ": " + ec.message());
    };
    if (acceptor_.open(endpoint.protocol(), ec)) return fail("open");
    if (acceptor_.set_option(tcp::acceptor::reuse_address(true), ec)) return fail("SO_REUSEADDR");
    if (acceptor_.bind(endpoint, ec)) return fail("bind");
    if (acceptor_.listen(asio::socket_base::max_listen_connections, ec)) return fail("listen");
    port_ = acceptor_.local_endpoint(ec).port();
    if (ec) return fail("getsockname");
    Accept();
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "tc-metrics");
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("metrics endpoint: unexpected exception: {}", e.what());
        }
      }
    });
    return Status::Ok();
  }

  uint16_t port() const { return port_; }

  void Stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      error_code ignored;
      acceptor_.close(ignored);
      backoff_.cancel();
      io_.stop();  // open sessions are dropped with the io_context
    });
    thread_.join();
  }

 private:
  void Accept() {
    acceptor_.async_accept([this](const error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // E.g. EMFILE: retrying at once would spin.
        backoff_.expires_after(std::chrono::milliseconds(100));
        backoff_.async_wait([this](const error_code& wait_ec) {
          if (!wait_ec) Accept();
        });
        return;
      }
      {
        if (shared_->open_connections >= kMaxConnections) {
          error_code ignored;
          socket.close(ignored);  // a scraper needs one; more is a flood
        } else {
          std::make_shared<Session>(std::move(socket), shared_)->Read();
        }
      }
      Accept();
    });
  }

  std::shared_ptr<Shared> shared_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  asio::steady_timer backoff_{io_};
  uint16_t port_ = 0;
  std::thread thread_;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsServer::~MetricsServer() = default;

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& host, uint16_t port,
                                                            Render render) {
  auto impl = std::make_unique<Impl>(std::move(render));
  if (Status s = impl->Listen(host, port); !s.ok()) return s;
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

uint16_t MetricsServer::port() const { return impl_->port(); }
void MetricsServer::Stop() { impl_->Stop(); }

}  // namespace tagcache::net
