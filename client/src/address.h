// Node addresses as users write them: "host:port" or "[v6-address]:port".
// Parsing only; name resolution happens where the client connects.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tagcache/common/status.h"

namespace tagcache::client {

struct HostPort {
  std::string host;  // without brackets for IPv6 literals
  uint16_t port = 0;
};

// BAD_REQUEST naming the address for a missing host, a missing or
// non-numeric port, or a port outside 1..65535.
Result<HostPort> ParseHostPort(std::string_view address);

}  // namespace tagcache::client
