#include "tagcache/security/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ip/address.hpp>

namespace tagcache::security {
namespace {

namespace ssl = boost::asio::ssl;

Status LoadError(const std::string& what, const std::string& file,
                 const boost::system::error_code& ec) {
  return Status::BadRequest("cannot load " + what + " " + file + ": " + DescribeTlsError(ec));
}

// TLS 1.2 is the floor: 1.0 and 1.1 are deprecated (RFC 8996).
Status SetFloor(ssl::context& ctx) {
  if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1) {
    return Status::Internal("OpenSSL refused TLS 1.2 as the minimum protocol version");
  }
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  return Status::Ok();
}

}  // namespace

std::string DescribeTlsError(const boost::system::error_code& ec) {
  if (ec.category() == boost::asio::error::get_ssl_category()) {
    // The verify result says more than "certificate verify failed" alone.
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof(buf));
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    return reason != nullptr ? std::string(reason) : std::string(buf);
  }
  if (ec == ssl::error::stream_truncated) return "the peer closed the TLS stream";
  return ec.message();
}

Result<std::shared_ptr<ssl::context>> MakeServerContext(const TlsServerFiles& files) {
  if (files.cert_file.empty() || files.key_file.empty()) {
    return Status::BadRequest("TLS needs both a certificate (--tls-cert) and its key (--tls-key)");
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  if (Status s = SetFloor(*ctx); !s.ok()) return s;
  boost::system::error_code ec;
  if (ctx->use_certificate_chain_file(files.cert_file, ec)) {
    return LoadError("TLS certificate", files.cert_file, ec);
  }
  if (ctx->use_private_key_file(files.key_file, ssl::context::pem, ec)) {
    return LoadError("TLS key", files.key_file, ec);
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return Status::BadRequest("TLS key " + files.key_file + " does not match certificate " +
                              files.cert_file);
  }
  if (!files.client_ca_file.empty()) {
    if (ctx->load_verify_file(files.client_ca_file, ec)) {
      return LoadError("client CA file", files.client_ca_file, ec);
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  return ctx;
}

Result<std::shared_ptr<ssl::context>> MakeClientContext(const TlsClientFiles& files) {
  if (files.ca_file.empty()) {
    return Status::BadRequest(
        "TLS needs a CA file to verify the server with (--tls-ca / ClientOptions::tls.ca_file)");
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (Status s = SetFloor(*ctx); !s.ok()) return s;
  boost::system::error_code ec;
  if (ctx->load_verify_file(files.ca_file, ec)) return LoadError("CA file", files.ca_file, ec);
  ctx->set_verify_mode(ssl::verify_peer);
  if (!files.cert_file.empty() || !files.key_file.empty()) {
    if (files.cert_file.empty() || files.key_file.empty()) {
      return Status::BadRequest("a TLS client certificate needs both the certificate and its key");
    }
    if (ctx->use_certificate_chain_file(files.cert_file, ec)) {
      return LoadError("TLS client certificate", files.cert_file, ec);
    }
    if (ctx->use_private_key_file(files.key_file, ssl::context::pem, ec)) {
      return LoadError("TLS client key", files.key_file, ec);
    }
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      return Status::BadRequest("TLS client key " + files.key_file +
                                " does not match certificate " + files.cert_file);
    }
  }
  return ctx;
}

bool TlsStream::PrepareClient(const std::string& host) {
  if (!tls_) return true;
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  // SNI carries names only (RFC 6066); an IP address is checked, not sent.
  if (ec && SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str()) != 1) return false;
  tls_->set_verify_callback(ssl::host_name_verification(host));
  return true;
}

}  // namespace tagcache::security
