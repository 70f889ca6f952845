// TLS for nodes and clients (Boost.Asio SSL over OpenSSL; TLS 1.2 or newer
// only). Builds the two kinds of SSL contexts and wraps a TCP socket that may
// or may not speak TLS, so plaintext connections pay one predictable branch
// per read or write call and nothing per byte.
// Network code only: this header pulls in Asio's SSL layer.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <memory>
#include <string>
#include <utility>  // before Asio (Boost 1.74 needs it; harmless later)

#include "tagcache/common/status.h"

namespace tagcache::security {

struct TlsServerFiles {
  std::string cert_file;       // PEM certificate chain of the node
  std::string key_file;        // PEM private key of cert_file
  std::string client_ca_file;  // non-empty: require client certificates signed by this CA
};

struct TlsClientFiles {
  std::string ca_file;    // PEM CA(s) the server's certificate must chain to. REQUIRED.
  std::string cert_file;  // optional client certificate (nodes with --tls-client-ca)
  std::string key_file;   // its key; REQUIRED when cert_file is set
};

// A server context: TLS 1.2+, the node's certificate and key, and client
// certificate verification when client_ca_file is set. BAD_REQUEST naming
// the file and OpenSSL's reason when one cannot be loaded or the key does
// not match the certificate.
Result<std::shared_ptr<boost::asio::ssl::context>> MakeServerContext(const TlsServerFiles& files);

// A client context: TLS 1.2+, peers verified against ca_file. The host name
// (or IP address) check is per connection: see TlsStream::PrepareClient.
Result<std::shared_ptr<boost::asio::ssl::context>> MakeClientContext(const TlsClientFiles& files);

// OpenSSL's reason for a TLS failure, in words ("certificate verify failed",
// "wrong version number"), for error messages.
std::string DescribeTlsError(const boost::system::error_code& ec);

// A TCP socket with an optional TLS layer on top. Not copyable or movable
// (the TLS layer refers to the socket).
class TlsStream {
 public:
  // `context` null: plaintext. Otherwise the context must outlive the stream.
  TlsStream(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* context)
      : socket_(std::move(socket)) {
    if (context != nullptr) tls_ = std::make_unique<Tls>(socket_, *context);
  }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  bool tls() const { return tls_ != nullptr; }
  boost::asio::ip::tcp::socket& socket() { return socket_; }

  // The AsyncReadStream / AsyncWriteStream names, so that composed
  // operations (boost::asio::async_write) take a TlsStream.
  using executor_type = boost::asio::ip::tcp::socket::executor_type;
  executor_type get_executor() { return socket_.get_executor(); }
  template <typename Buffers, typename Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    AsyncReadSome(buffers, std::forward<Handler>(handler));
  }
  template <typename Buffers, typename Handler>
  void async_write_some(const Buffers& buffers, Handler&& handler) {
    AsyncWriteSome(buffers, std::forward<Handler>(handler));
  }

  // Client side, before the handshake: sends `host` as SNI (when it is a
  // name) and checks that the server's certificate is for `host` (a DNS
  // name or an IP address). False when OpenSSL refuses the name.
  bool PrepareClient(const std::string& host);

  template <typename Handler>
  void AsyncHandshake(boost::asio::ssl::stream_base::handshake_type type, Handler&& handler) {
    tls_->async_handshake(type, std::forward<Handler>(handler));
  }
  template <typename Buffers, typename Handler>
  void AsyncReadSome(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }
  template <typename Buffers, typename Handler>
  void AsyncWriteSome(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      socket_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

 private:
  using Tls = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;
  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<Tls> tls_;  // after socket_: refers to it
};

}  // namespace tagcache::security
