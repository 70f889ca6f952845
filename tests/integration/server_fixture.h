// The fixture every integration test uses: a real tagcache-server on
// 127.0.0.1 (free port) under a temp dir, started per test and stopped by
// SIGTERM at the end, which must exit 0.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "process.h"
#include "tagcache/client/client.h"

namespace tagcache::testing {

// Paths of the built binaries (compile definitions from CMake).
inline const char* ServerBinary() { return TAGCACHE_SERVER_BIN; }
inline const char* TagctlBinary() { return TAGCTL_BIN; }
inline const char* ExampleBinary() { return TAGCACHE_CLIENT_EXAMPLE_BIN; }

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServerProcess::Start(ServerBinary(), dir_.path());
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    if (server_) {
      const std::string log = server_->Log();
      EXPECT_EQ(server_->Terminate(), 0) << "tagcache-server log:\n" << log;
    }
  }

  client::ClientOptions Options() const {
    client::ClientOptions options;
    options.seeds = {server_->address()};
    options.connect_timeout = std::chrono::milliseconds(2000);
    options.request_timeout = std::chrono::milliseconds(10000);
    options.reconnect_backoff_min = std::chrono::milliseconds(20);
    options.reconnect_backoff_max = std::chrono::milliseconds(500);
    options.client_name = "integration-test";
    return options;
  }

  std::unique_ptr<client::Client> Connect(const client::ClientOptions& options) {
    auto client = client::Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(client).value() : nullptr;
  }
  std::unique_ptr<client::Client> Connect() { return Connect(Options()); }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

}  // namespace tagcache::testing
