// The Prometheus endpoint (NodeOptions::metrics_host, --metrics-listen):
// a node runs in process, the tests make requests through the client
// library and scrape GET /metrics with real HTTP requests over plain POSIX
// sockets, then check that the counters moved by exactly what was sent,
// that histograms are cumulative and consistent, and that bad HTTP gets an
// error while the node keeps serving.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/http_client.h"
#include "common/temp_dir.h"
#include "net/running_node.h"
#include "tagcache/net/node.h"

namespace tagcache::net {
namespace {

using std::chrono::milliseconds;
using testing::Get;
using testing::HttpResponse;
using testing::RawHttp;

// Series ("name{labels}") -> value, from exposition text; also checks that
// every sample's family was declared with # TYPE before it.
std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> out;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_TRUE(types.emplace(name, type).second) << "family declared twice: " << name;
      continue;
    }
    if (line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    if (space == std::string::npos) continue;
    const std::string series = line.substr(0, space);
    std::string family = series.substr(0, series.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (!types.count(family) && family.size() > s.size() &&
          family.compare(family.size() - s.size(), s.size(), s) == 0) {
        family.resize(family.size() - s.size());
      }
    }
    EXPECT_TRUE(types.count(family)) << "sample before its # TYPE: " << line;
    EXPECT_TRUE(out.emplace(series, std::stod(line.substr(space + 1))).second)
        << "duplicate series " << series;
  }
  return out;
}

std::map<std::string, double> Scrape(uint16_t port) {
  HttpResponse r = Get(port, "/metrics");
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_NE(r.head.find("text/plain; version=0.0.4"), std::string::npos) << r.head;
  return ParseExposition(r.body);
}

double Value(const std::map<std::string, double>& m, const std::string& series) {
  auto it = m.find(series);
  EXPECT_NE(it, m.end()) << "missing series " << series;
  return it == m.end() ? -1 : it->second;
}

double ValueOr0(const std::map<std::string, double>& m, const std::string& series) {
  auto it = m.find(series);
  return it == m.end() ? 0 : it->second;
}

std::string Requests(const std::string& kind, const std::string& status) {
  return "tagcache_requests_total{kind=\"" + kind + "\",status=\"" + status + "\"}";
}

// For every kind with a histogram: buckets are non-decreasing in le, +Inf
// equals _count, and _count equals the kind's requests over all statuses.
void ExpectHistogramsConsistent(const std::map<std::string, double>& m) {
  std::map<std::string, std::vector<std::pair<double, double>>> buckets;  // kind -> (le, n)
  const std::string prefix = "tagcache_request_duration_seconds_bucket{kind=\"";
  for (const auto& [series, value] : m) {
    if (series.rfind(prefix, 0) != 0) continue;
    const size_t kind_end = series.find('"', prefix.size());
    const std::string kind = series.substr(prefix.size(), kind_end - prefix.size());
    const size_t le_at = series.find("le=\"") + 4;
    const std::string le = series.substr(le_at, series.find('"', le_at) - le_at);
    buckets[kind].emplace_back(le == "+Inf" ? 1e300 : std::stod(le), value);
  }
  ASSERT_FALSE(buckets.empty());
  for (auto& [kind, list] : buckets) {
    std::sort(list.begin(), list.end());
    for (size_t i = 1; i < list.size(); ++i) {
      EXPECT_LE(list[i - 1].second, list[i].second) << kind << " buckets are not cumulative";
    }
    const double count = Value(m, "tagcache_request_duration_seconds_count{kind=\"" + kind + "\"}");
    EXPECT_EQ(list.back().second, count) << kind;
    double by_status = 0;
    for (const auto& [series, value] : m) {
      if (series.rfind("tagcache_requests_total{kind=\"" + kind + "\",", 0) == 0) by_status += value;
    }
    EXPECT_EQ(by_status, count) << kind;
    EXPECT_GE(Value(m, "tagcache_request_duration_seconds_sum{kind=\"" + kind + "\"}"), 0.0);
  }
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NodeOptions o;
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    o.io_threads = 2;
    o.workers = 2;
    o.engine.query_threads = 1;
    o.engine.shard_bits = 16;
    o.data_dir = dir_.path();
    o.metrics_host = "127.0.0.1";
    o.metrics_port = 0;
    o.extra_metrics = [] {
      return std::string("# HELP tagcache_test_extra Extra text.\n# TYPE tagcache_test_extra gauge\n"
                         "tagcache_test_extra 42\n");
    };
    node_ = MustStart(std::move(o));
    ASSERT_NE(node_, nullptr);
    port_ = node_->node().metrics_port();
    ASSERT_NE(port_, 0);
  }

  testing::ScopedTempDir dir_{"tagcache-metrics"};
  std::unique_ptr<RunningNode> node_;
  uint16_t port_ = 0;
};

TEST_F(MetricsTest, CountersMoveByExactlyWhatWasSent) {
  auto client = node_->Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->ApplyEvents({{7, "apple_fan", client::TagOp::kSet, 1000}}).ok());
  const auto before = Scrape(port_);

  for (int i = 0; i < 2; ++i) {
    const client::Event e{static_cast<client::UserId>(10 + i), "apple_fan",
                          client::TagOp::kSet, 2000};
    ASSERT_TRUE(client->ApplyEvents({e}).ok());
  }
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(client->GetTags(7).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->Count("apple_fan").ok());
  for (int i = 0; i < 2; ++i) {
    auto r = client->Count("no_such_tag");
    ASSERT_FALSE(r.ok());
    ASSERT_EQ(r.status().code(), StatusCode::kUnknownTag);
  }
  const auto after = Scrape(port_);

  auto delta = [&](const std::string& series) {
    return ValueOr0(after, series) - ValueOr0(before, series);
  };
  EXPECT_EQ(delta(Requests("applyEvents", "ok")), 2);
  EXPECT_EQ(delta(Requests("getTags", "ok")), 7);
  EXPECT_EQ(delta(Requests("count", "ok")), 3);
  EXPECT_EQ(delta(Requests("count", "unknown_tag")), 2);
  EXPECT_EQ(delta("tagcache_request_duration_seconds_count{kind=\"getTags\"}"), 7);
  EXPECT_EQ(delta("tagcache_request_duration_seconds_count{kind=\"count\"}"), 5);
  EXPECT_EQ(delta("tagcache_events_total{result=\"applied\"}"), 2);
  EXPECT_GT(delta("tagcache_wal_bytes_total"), 0);
  EXPECT_EQ(delta("tagcache_wal_records_total"), 2);
  ExpectHistogramsConsistent(after);

  // The log's fsync histogram is consistent too.
  const double fsyncs = Value(after, "tagcache_wal_fsync_duration_seconds_count");
  EXPECT_EQ(Value(after, "tagcache_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"), fsyncs);
  EXPECT_GE(fsyncs, 1);
  EXPECT_LE(Value(after, "tagcache_wal_fsync_duration_seconds_bucket{le=\"0.00005\"}"),
            Value(after, "tagcache_wal_fsync_duration_seconds_bucket{le=\"1\"}"));

  EXPECT_EQ(Value(after, "tagcache_tags"), 1);
  EXPECT_EQ(Value(after, "tagcache_assignments"), 3);
  EXPECT_GE(Value(after, "tagcache_connections_open"), 1);
  EXPECT_GE(Value(after, "tagcache_connections_accepted_total"), 1);
  EXPECT_GT(Value(after, "tagcache_memory_bytes{kind=\"resident\"}"), 0);
  EXPECT_GT(Value(after, "tagcache_memory_bytes{kind=\"bitmaps\"}"), 0);
  EXPECT_EQ(Value(after, "tagcache_cluster_epoch"), 0);
  for (const char* limit : {"connections", "output_bytes", "idle_timeout", "hello_timeout",
                            "expression", "audience_page", "memory"}) {
    EXPECT_EQ(Value(after, std::string("tagcache_limit_rejections_total{limit=\"") + limit + "\"}"),
              0)
        << limit;
  }
  EXPECT_EQ(Value(after, "tagcache_test_extra"), 42);
}

TEST_F(MetricsTest, LimitRejectionsAppearInTheMetrics) {
  auto client = node_->Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->ApplyEvents({{7, "a", client::TagOp::kSet, 1000}}).ok());
  auto r = client->Count(std::string(200, '(') + "a" + std::string(200, ')'));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nested deeper than the limit of 128"), std::string::npos)
      << r.status().ToString();
  const auto m = Scrape(port_);
  EXPECT_EQ(Value(m, "tagcache_limit_rejections_total{limit=\"expression\"}"), 1);
  EXPECT_EQ(Value(m, Requests("count", "bad_request")), 1);
}

TEST_F(MetricsTest, OtherPathsAreNotFoundAndOtherMethodsNotAllowed) {
  EXPECT_EQ(Get(port_, "/").status, 404);
  EXPECT_EQ(Get(port_, "/metricsx").status, 404);
  EXPECT_EQ(Get(port_, "/metrics?name[]=x").status, 200);  // Prometheus may add parameters
  HttpResponse post = RawHttp(port_,
                              "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              "Content-Length: 0\r\n\r\n");
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(post.head.find("Allow: GET"), std::string::npos) << post.head;
  EXPECT_EQ(RawHttp(port_, "DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status,
            405);
}

TEST_F(MetricsTest, KeepAliveServesSeveralScrapesOnOneConnection) {
  HttpResponse r = RawHttp(port_,
                           "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(r.status, 200);
  // The second response follows the first in the same stream.
  EXPECT_NE(r.body.find("HTTP/1.1 200"), std::string::npos);
}

TEST_F(MetricsTest, MalformedHttpIsRefusedAndTheNodeKeepsServing) {
  EXPECT_EQ(RawHttp(port_, "GARBAGE\r\n\r\n").status, 400);
  // A request head over the 8 KiB limit.
  EXPECT_EQ(RawHttp(port_, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20'000, 'a') +
                               "\r\n\r\n")
                .status,
            400);
  // A body the endpoint does not take.
  EXPECT_EQ(RawHttp(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
                .status,
            400);
  // Binary noise, and a request cut off half way: no response, no crash.
  std::string noise(4096, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 131) & 0xff);
  EXPECT_NE(RawHttp(port_, noise).status, 200);
  EXPECT_EQ(RawHttp(port_, "GET /metr").status, 0);
  // Still serving: metrics, and requests on the protocol port.
  EXPECT_EQ(Get(port_, "/metrics").status, 200);
  auto client = node_->Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Ping().ok());
}

TEST(MetricsEndpointTest, NoEndpointUnlessAsked) {
  NodeOptions o;
  o.listen_port = 0;
  o.io_threads = 1;
  o.workers = 2;
  auto node = MustStart(std::move(o));
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->node().metrics_port(), 0);
}

TEST(MetricsEndpointTest, UnusableAddressFailsStartNamingIt) {
  NodeOptions o;
  o.listen_port = 0;
  o.io_threads = 1;
  o.workers = 2;
  o.metrics_host = "256.0.0.1";  // not an address
  auto r = RunningNode::Start(std::move(o));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError) << r.status().ToString();
  EXPECT_NE(r.status().message().find("256.0.0.1"), std::string::npos) << r.status().ToString();
}

}  // namespace
}  // namespace tagcache::net
