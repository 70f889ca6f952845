// The real tagcache-server's limit and metrics flags: started as a process
// on 127.0.0.1, scraped over HTTP at the port it writes, and given bad
// flag values, which it must refuse with a message naming the flag.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "common/http_client.h"
#include "process.h"
#include "tagcache/client/client.h"

namespace tagcache::testing {
namespace {

using std::chrono::milliseconds;

// The port in `path` (--metrics-port-file), polled for up to 5 s; 0 when it
// never appeared. The server writes it before its --port-file.
uint16_t ReadPortFile(const std::string& path) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::ifstream in(path);
    unsigned port = 0;
    if (in >> port && port > 0 && port <= 65535) return static_cast<uint16_t>(port);
    std::this_thread::sleep_for(milliseconds(50));
  }
  return 0;
}

TEST(OpsIntegrationTest, MetricsEndpointAndLimitFlagsOfTheRealServer) {
  TempDir dir;
  const std::string metrics_port_file = dir.path() + "/metrics.port";
  auto server = ServerProcess::Start(TAGCACHE_SERVER_BIN, dir.path(), 0,
                                     {"--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                                      metrics_port_file, "--max-expr-depth", "4",
                                      "--max-audience-page", "10", "--idle-timeout-s", "60",
                                      "--repair-interval-s", "0"});
  ASSERT_NE(server, nullptr);
  const uint16_t metrics_port = ReadPortFile(metrics_port_file);
  ASSERT_NE(metrics_port, 0) << server->Log();

  client::ClientOptions options;
  options.seeds = {server->address()};
  options.connect_timeout = milliseconds(2000);
  options.request_timeout = milliseconds(10000);
  options.client_name = "ops-test";
  auto connected = client::Client::Connect(options);
  ASSERT_TRUE(connected.ok()) << connected.status().ToString();
  auto& client = **connected;
  std::vector<client::Event> events;
  for (client::UserId u = 0; u < 30; ++u) events.push_back({u, "t", client::TagOp::kSet, 1000});
  ASSERT_TRUE(client.ApplyEvents(events).ok());
  // --max-expr-depth 4 refuses a fifth level, naming the limit.
  auto deep = client.Count("(((((t)))))");
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.status().message().find("nested deeper than the limit of 4"), std::string::npos)
      << deep.status().ToString();
  // --max-audience-page 10 clamps a page of 30.
  auto page = client.Audience("t", 0, 30);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->users.size(), 10u);
  auto stats = client.Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 1u);
  bool saw_idle = false;
  for (const auto& l : (*stats)[0].limits) {
    if (l.limit == "idle_timeout") {
      saw_idle = true;
      EXPECT_EQ(l.value, 60'000u);
    }
    if (l.limit == "expression") {
      EXPECT_EQ(l.count, 1u);
    }
    if (l.limit == "audience_page") {
      EXPECT_EQ(l.count, 1u);
    }
  }
  EXPECT_TRUE(saw_idle);

  HttpResponse r = Get(metrics_port, "/metrics");
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_NE(r.body.find("tagcache_limit_rejections_total{limit=\"expression\"} 1\n"),
            std::string::npos);
  EXPECT_NE(r.body.find("tagcache_limit_rejections_total{limit=\"audience_page\"} 1\n"),
            std::string::npos);
  EXPECT_NE(r.body.find("tagcache_requests_total{kind=\"applyEvents\",status=\"ok\"} 1\n"),
            std::string::npos);
  // The repair loop's counters come from main(), outside the node.
  EXPECT_NE(r.body.find("tagcache_repair_passes_total 0\n"), std::string::npos);
  EXPECT_NE(r.body.find("tagcache_wal_bytes_total "), std::string::npos);
  EXPECT_EQ(Get(metrics_port, "/nope").status, 404);
  const std::string log = server->Log();
  EXPECT_EQ(server->Terminate(), 0) << log;
  // A stopped node serves no metrics.
  EXPECT_EQ(Get(metrics_port, "/metrics").status, 0);
}

TEST(OpsIntegrationTest, BadLimitAndMetricsFlagsAreRefusedNamingTheFlag) {
  TempDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--metrics-listen", "nonsense"}, "--metrics-listen"},
      {{"--metrics-listen", "127.0.0.1:99999"}, "--metrics-listen"},
      {{"--max-expr-depth", "0"}, "--max-expr-depth"},
      {{"--max-audience-page", "0"}, "--max-audience-page"},
      {{"--idle-timeout-s", "-1"}, "--idle-timeout-s"},
      {{"--max-output-hard-bytes", "12XB"}, "--max-output-hard-bytes"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--data-dir", ""};
    args.insert(args.end(), c.args.begin(), c.args.end());
    RunResult r = RunProgram(TAGCACHE_SERVER_BIN, args, milliseconds(10000));
    EXPECT_NE(r.exit_code, 0) << c.args[0] << " " << c.args[1];
    EXPECT_NE(r.exit_code, -1) << "the server hung on " << c.args[0];
    EXPECT_NE((r.err + r.out).find(c.says), std::string::npos)
        << c.args[0] << " " << c.args[1] << ": " << r.err << r.out;
  }
}

}  // namespace
}  // namespace tagcache::testing
