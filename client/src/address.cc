#include "address.h"

#include <charconv>

namespace tagcache::client {

Result<HostPort> ParseHostPort(std::string_view address) {
  auto bad = [&](std::string_view why) {
    return Status::BadRequest("bad address '" + std::string(address) + "': " + std::string(why) +
                              " (expected host:port)");
  };
  HostPort out;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string_view::npos) return bad("unterminated '['");
    out.host = std::string(address.substr(1, close - 1));
    if (close + 1 >= address.size() || address[close + 1] != ':') return bad("missing port");
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return bad("missing port");
    out.host = std::string(address.substr(0, colon));
    // A bare IPv6 literal has more colons: it must be bracketed.
    if (out.host.find(':') != std::string::npos) return bad("IPv6 addresses need [brackets]");
    port = address.substr(colon + 1);
  }
  if (out.host.empty()) return bad("missing host");
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return bad("port must be a number in 1..65535");
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

}  // namespace tagcache::client
