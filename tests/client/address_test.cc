// White-box: the client's address parser (client/src/address.h).
#include "address.h"

#include <gtest/gtest.h>

namespace tagcache::client {
namespace {

TEST(ParseHostPortTest, AcceptsHostAndPort) {
  auto hp = ParseHostPort("127.0.0.1:7379");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 7379);
  auto named = ParseHostPort("localhost:1");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->host, "localhost");
}

TEST(ParseHostPortTest, AcceptsBracketedIpv6) {
  auto hp = ParseHostPort("[::1]:65535");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 65535);
}

TEST(ParseHostPortTest, RejectsMalformedAddresses) {
  for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:65536", "host:8x", "::1:80",
                          "[::1]", "[::1:80", "host:-1"}) {
    auto hp = ParseHostPort(bad);
    EXPECT_FALSE(hp.ok()) << bad;
    if (!hp.ok()) {
      EXPECT_EQ(hp.status().code(), StatusCode::kBadRequest) << bad;
    }
  }
}

}  // namespace
}  // namespace tagcache::client
