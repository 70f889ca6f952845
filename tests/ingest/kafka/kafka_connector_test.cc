// tagcache-kafka end to end, without an external broker: this test process
// hosts librdkafka's mock cluster (a producer created with
// test.mock.num.brokers=1), and runs the real tagcache-server and the real
// connector as child processes pointed at the mock's bootstrap address.
// Results are read back through the client library (and tagctl), committed
// offsets through a consumer handle of the same group that never joins it.
//
// Every wait polls against a deadline. The mock's group coordinator delays
// the first join of a group by 3 s, so each connector start costs that much.
#include <gtest/gtest.h>
#include <librdkafka/rdkafkacpp.h>

// rdkafka_mock.h refuses to compile unless rdkafka.h came first.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/process.h"
#include "tagcache/client/client.h"
#include "tagcache/security/auth.h"

namespace tagcache {
namespace {

using std::chrono::milliseconds;
using testing::ChildProcess;
using testing::ServerProcess;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr char kTopic[] = "tags";
constexpr int kPartitions = 2;
#ifndef KAFKA_SESSION_TIMEOUT_MS
#define KAFKA_SESSION_TIMEOUT_MS "4000"
#endif

// Polls `done` every 50 ms until it holds or `limit` passes.
bool Eventually(const std::function<bool()>& done, milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return true;
}

std::string EventJson(uint64_t user, const std::string& tag, uint64_t ts) {
  return "{\"user\": " + std::to_string(user) + ", \"tag\": \"" + tag +
         "\", \"op\": \"set\", \"ts\": " + std::to_string(ts) + "}";
}

// The last "consumed=N" of the connector's stats lines; -1 when none yet.
int64_t LastConsumed(const std::string& log) {
  const size_t at = log.rfind("consumed=");
  if (at == std::string::npos) return -1;
  return std::stoll(log.substr(at + 9));
}

class KafkaConnectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    ASSERT_EQ(conf->set("test.mock.num.brokers", "1", err), RdKafka::Conf::CONF_OK) << err;
    ASSERT_EQ(conf->set("log_level", "3", err), RdKafka::Conf::CONF_OK) << err;  // quiet mock
    ASSERT_EQ(conf->set("linger.ms", "0", err), RdKafka::Conf::CONF_OK) << err;
    producer_.reset(RdKafka::Producer::create(conf.get(), err));
    ASSERT_NE(producer_, nullptr) << err;
    rd_kafka_mock_cluster_t* mc = rd_kafka_handle_mock_cluster(producer_->c_ptr());
    ASSERT_NE(mc, nullptr);
    bootstraps_ = rd_kafka_mock_cluster_bootstraps(mc);
    ASSERT_EQ(rd_kafka_mock_topic_create(mc, kTopic, kPartitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    group_ =
        std::string("tagcache-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  void TearDown() override {
    // TAGCACHE_KAFKA_TEST_LOGS=1 shows what the connectors logged.
    if (std::getenv("TAGCACHE_KAFKA_TEST_LOGS") != nullptr) {
      for (const auto& c : connectors_) std::cerr << "---- connector log\n" << c->Err();
    }
    // Children first: the mock cluster dies with the producer.
    connectors_.clear();
    server_.reset();
    checker_.reset();
    producer_.reset();
  }

  // Produces one message to `partition` and remembers what it should set.
  void Produce(int partition, const std::string& value) {
    const RdKafka::ErrorCode e =
        producer_->produce(kTopic, partition, RdKafka::Producer::RK_MSG_COPY,
                           const_cast<char*>(value.data()), value.size(), nullptr, 0, 0, nullptr);
    ASSERT_EQ(e, RdKafka::ERR_NO_ERROR) << RdKafka::err2str(e);
  }
  // `n` single-event messages over both partitions, users [first, first+n),
  // each getting tag `tag`.
  void ProduceEvents(uint64_t first, int n, const std::string& tag) {
    for (int i = 0; i < n; ++i) {
      const uint64_t user = first + static_cast<uint64_t>(i);
      Produce(static_cast<int>(user % kPartitions), EventJson(user, tag, 1000 + user));
      expected_[user].insert(tag);
    }
    Flush();
  }
  void Flush() { ASSERT_EQ(producer_->flush(10000), RdKafka::ERR_NO_ERROR); }

  // One past the last offset of each partition.
  std::vector<int64_t> EndOffsets() {
    std::vector<int64_t> out;
    for (int p = 0; p < kPartitions; ++p) {
      int64_t low = -1, high = -1;
      EXPECT_EQ(producer_->query_watermark_offsets(kTopic, p, &low, &high, 5000),
                RdKafka::ERR_NO_ERROR);
      out.push_back(high);
    }
    return out;
  }

  // The group's committed offset of each partition; negative when none.
  std::vector<int64_t> Committed() {
    std::string err;
    if (!checker_) {
      std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
      conf->set("bootstrap.servers", bootstraps_, err);
      conf->set("group.id", group_, err);
      conf->set("enable.auto.commit", "false", err);
      conf->set("log_level", "3", err);
      checker_.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
      EXPECT_NE(checker_, nullptr) << err;
      if (!checker_) return {};
    }
    std::vector<RdKafka::TopicPartition*> parts;
    for (int p = 0; p < kPartitions; ++p)
      parts.push_back(RdKafka::TopicPartition::create(kTopic, p));
    std::vector<int64_t> out;
    if (checker_->committed(parts, 5000) == RdKafka::ERR_NO_ERROR) {
      for (const RdKafka::TopicPartition* p : parts) out.push_back(p->offset());
    }
    RdKafka::TopicPartition::destroy(parts);
    return out;
  }

  bool CommittedReach(const std::vector<int64_t>& end, milliseconds limit) {
    return Eventually([&] { return Committed() == end; }, limit);
  }

  void StartServer(uint16_t port = 0, const std::vector<std::string>& args = {}) {
    server_ = ServerProcess::Start(TAGCACHE_SERVER_BIN, dir_.path(), port, args);
    ASSERT_NE(server_, nullptr);
  }

  // Starts a connector on the mock cluster; `seeds` defaults to the server.
  ChildProcess* StartConnector(std::vector<std::string> extra, std::string seeds = "") {
    if (seeds.empty()) seeds = server_->address();
    std::vector<std::string> args = {"--brokers",   bootstraps_, "--group",          group_,
                                     "--topic",     kTopic,      "--seeds",          seeds,
                                     "--linger-ms", "5",         "--stats-interval", "1"};
    // A killed member leaves the group after the session timeout: 45 s by
    // default. The mock drops a joining member whose session is shorter
    // than its 3 s join delay, hence 4 s.
    for (const char* property : {"session.timeout.ms=" KAFKA_SESSION_TIMEOUT_MS,
                                 "heartbeat.interval.ms=250", "fetch.wait.max.ms=50"}) {
      args.insert(args.end(), {"-X", property});
    }
    // librdkafka debug contexts for a failing run, e.g. "cgrp,fetch".
    if (const char* debug = std::getenv("TAGCACHE_KAFKA_TEST_DEBUG")) {
      args.insert(args.end(), {"-X", std::string("debug=") + debug, "--log-level", "debug"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    auto child = ChildProcess::Start(TAGCACHE_KAFKA_BIN, args, dir_.path());
    EXPECT_NE(child, nullptr);
    connectors_.push_back(std::move(child));
    return connectors_.back().get();
  }

  std::unique_ptr<Client> ConnectClient(const std::string& token = "") {
    ClientOptions options;
    options.seeds = {server_->address()};
    options.token = token;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  // True when every expected user has exactly the expected tags.
  bool AllVisible(Client& client) {
    std::vector<uint64_t> users;
    for (const auto& [user, tags] : expected_) users.push_back(user);
    auto got = client.GetTagsBatch(users);
    if (!got.ok()) return false;
    for (const client::UserTags& u : *got) {
      std::set<std::string> tags;
      for (const client::TagHit& hit : u.tags) tags.insert(hit.tag);
      if (tags != expected_.at(u.user)) return false;
    }
    return true;
  }
  std::string Logs(ChildProcess* c) { return c->Err(); }

  TempDir dir_;
  std::unique_ptr<RdKafka::Producer> producer_;
  std::unique_ptr<RdKafka::KafkaConsumer> checker_;
  std::string bootstraps_;
  std::string group_;
  std::unique_ptr<ServerProcess> server_;
  std::vector<std::unique_ptr<ChildProcess>> connectors_;
  std::map<uint64_t, std::set<std::string>> expected_;
};

TEST_F(KafkaConnectorTest, ProducedEventsBecomeVisible) {
  StartServer();
  ChildProcess* connector = StartConnector({"--commit-interval-ms", "200"});
  ASSERT_NE(connector, nullptr);

  ProduceEvents(1, 200, "fan");
  // Several events in one message (NDJSON), blank lines included.
  for (uint64_t user = 1001; user <= 1040; user += 4) {
    std::string value;
    for (uint64_t u = user; u < user + 4; ++u) {
      value += EventJson(u, "multi", 5000 + u) + "\n\n";
      expected_[u].insert("multi");
    }
    Produce(static_cast<int>(user % kPartitions), value);
  }
  Flush();

  auto client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  EXPECT_TRUE(CommittedReach(EndOffsets(), milliseconds(10000))) << Logs(connector);

#ifdef TAGCTL_BIN
  const testing::RunResult get =
      testing::RunProgram(TAGCTL_BIN, {"--seeds", server_->address(), "get", "1005"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("multi"), std::string::npos) << get.out;
#endif

  EXPECT_TRUE(Eventually([&] { return LastConsumed(Logs(connector)) == 210; }, milliseconds(5000)))
      << Logs(connector);
  const std::string log = Logs(connector);
  EXPECT_NE(log.find("events/s="), std::string::npos) << log;
  EXPECT_NE(log.find("tags/0 committed="), std::string::npos) << log;
  EXPECT_NE(log.find("lag=0"), std::string::npos) << log;
  EXPECT_EQ(connector->Terminate(milliseconds(20000)), 0) << Logs(connector);
}

TEST_F(KafkaConnectorTest, KillBeforeCommitLosesNothing) {
  StartServer();
  // No periodic commit during this run: everything it applies stays
  // uncommitted when it dies.
  ChildProcess* first = StartConnector({"--commit-interval-ms", "3600000"});
  ASSERT_NE(first, nullptr);
  ProduceEvents(1, 100, "before");
  auto client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000))) << Logs(first);
  for (int64_t offset : Committed()) EXPECT_LT(offset, 0) << "committed before the kill";
  first->Kill();

  ProduceEvents(101, 100, "after");
  ChildProcess* second = StartConnector({"--commit-interval-ms", "200"});
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(30000))) << Logs(second);
  EXPECT_TRUE(CommittedReach(EndOffsets(), milliseconds(10000))) << Logs(second);

  // The first 100 were delivered again and ignored by the merge as
  // duplicates: at-least-once, harmlessly.
  auto stats = client->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_GE((*stats)[0].events_ignored, 100u);
  EXPECT_EQ((*stats)[0].events_applied, 200u);
  EXPECT_EQ(second->Terminate(milliseconds(20000)), 0) << Logs(second);
}

TEST_F(KafkaConnectorTest, PoisonMessageIsSkippedWithItsOffsetLogged) {
  StartServer();
  ChildProcess* connector = StartConnector({"--commit-interval-ms", "200"});
  ASSERT_NE(connector, nullptr);

  // Partition 0: offsets 0-4 good, 5 undecodable, 6-10 good.
  for (uint64_t user = 0; user < 5; ++user) {
    Produce(0, EventJson(user, "ok", 100 + user));
    expected_[user].insert("ok");
  }
  Produce(0, "this is not json");
  for (uint64_t user = 5; user < 10; ++user) {
    Produce(0, EventJson(user, "ok", 100 + user));
    expected_[user].insert("ok");
  }
  // Partition 1: offset 0 holds three lines, the middle one undecodable;
  // offset 1 an event the node refuses (stamped years ahead); offset 2 good.
  Produce(1,
          EventJson(20, "ok", 1) + "\n{\"user\": 21, \"tag\": \"ok\"}\n" + EventJson(22, "ok", 1));
  expected_[20].insert("ok");
  expected_[22].insert("ok");
  Produce(1, EventJson(23, "future", uint64_t{1} << 62));
  Produce(1, EventJson(24, "ok", 1));
  expected_[24].insert("ok");
  expected_[23];  // must stay without tags
  Flush();

  auto client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  // Neither partition is blocked: both commit their end.
  const std::vector<int64_t> end = EndOffsets();
  EXPECT_EQ(end, (std::vector<int64_t>{11, 3}));
  EXPECT_TRUE(CommittedReach(end, milliseconds(10000))) << Logs(connector);

  const std::string log = Logs(connector);
  EXPECT_NE(log.find("poison message topic=tags partition=0 offset=5: "), std::string::npos) << log;
  EXPECT_NE(log.find("poison message topic=tags partition=1 offset=0: line 2: "), std::string::npos)
      << log;
  EXPECT_NE(log.find("refused event topic=tags partition=1 offset=1: FUTURE_TIMESTAMP"),
            std::string::npos)
      << log;
  EXPECT_TRUE(Eventually(
      [&] {
        const std::string l = Logs(connector);
        return l.find("poison=2 refused=1") != std::string::npos;
      },
      milliseconds(5000)))
      << Logs(connector);
  EXPECT_EQ(connector->Terminate(milliseconds(20000)), 0) << Logs(connector);
}

TEST_F(KafkaConnectorTest, CommitsWaitForTheCluster) {
  // The node is down at first: the connector consumes, but no offset may be
  // committed until the cluster acknowledged the events.
  const uint16_t port = testing::UnusedPort();
  ChildProcess* connector =
      StartConnector({"--commit-interval-ms", "200"}, "127.0.0.1:" + std::to_string(port));
  ASSERT_NE(connector, nullptr);
  ProduceEvents(1, 50, "a");
  ASSERT_TRUE(Eventually([&] { return LastConsumed(Logs(connector)) == 50; }, milliseconds(20000)))
      << Logs(connector);
  for (int64_t offset : Committed()) EXPECT_LT(offset, 0) << "committed without the cluster";

  StartServer(port);
  auto client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  const std::vector<int64_t> end_a = EndOffsets();
  ASSERT_TRUE(CommittedReach(end_a, milliseconds(10000))) << Logs(connector);

  // The node stops while events keep coming: they are consumed and retried,
  // and the committed offsets stay where the acknowledged events end.
  ASSERT_EQ(server_->Terminate(), 0);
  ProduceEvents(51, 50, "b");
  ASSERT_TRUE(Eventually([&] { return LastConsumed(Logs(connector)) == 100; }, milliseconds(10000)))
      << Logs(connector);
  // Several commit intervals pass.
  const auto hold_until = Clock::now() + milliseconds(1000);
  while (Clock::now() < hold_until) {
    ASSERT_EQ(Committed(), end_a) << Logs(connector);
    std::this_thread::sleep_for(milliseconds(100));
  }

  // Back on the same port and data directory: the retried events land and
  // the commits catch up.
  StartServer(port);
  client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  EXPECT_TRUE(CommittedReach(EndOffsets(), milliseconds(10000))) << Logs(connector);
  EXPECT_EQ(connector->Terminate(milliseconds(20000)), 0) << Logs(connector);
}

TEST_F(KafkaConnectorTest, BackpressurePausesConsumptionWithoutLeavingTheGroup) {
  // No node, and room for only 50 queued events: the connector pauses its
  // partitions instead of buffering the topic, keeps polling (so it stays
  // in the group), and resumes once the node is up.
  const uint16_t port = testing::UnusedPort();
  ChildProcess* connector =
      StartConnector({"--commit-interval-ms", "200", "--max-queued-events", "50"},
                     "127.0.0.1:" + std::to_string(port));
  ASSERT_NE(connector, nullptr);
  ProduceEvents(1, 200, "bp");
  ASSERT_TRUE(Eventually([&] { return Logs(connector).find("paused=yes") != std::string::npos; },
                         milliseconds(20000)))
      << Logs(connector);
  const int64_t consumed = LastConsumed(Logs(connector));
  EXPECT_GT(consumed, 0);
  EXPECT_LT(consumed, 200);
  // Two more stats lines: nothing consumed meanwhile, nothing committed.
  const size_t lines = Logs(connector).size();
  ASSERT_TRUE(Eventually(
      [&] {
        const std::string log = Logs(connector);
        return log.find("paused=yes", lines) != std::string::npos &&
               log.find("paused=yes", log.find("paused=yes", lines) + 1) != std::string::npos;
      },
      milliseconds(5000)))
      << Logs(connector);
  EXPECT_EQ(LastConsumed(Logs(connector)), consumed) << Logs(connector);
  for (int64_t offset : Committed()) EXPECT_LT(offset, 0);

  StartServer(port);
  auto client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  EXPECT_TRUE(CommittedReach(EndOffsets(), milliseconds(10000))) << Logs(connector);
  const std::string log = Logs(connector);
  EXPECT_EQ(log.find("revoked"), std::string::npos) << log;
  EXPECT_EQ(connector->Terminate(milliseconds(20000)), 0) << Logs(connector);
}

TEST_F(KafkaConnectorTest, SigtermCommitsWhatWasAcknowledged) {
  StartServer();
  // Only the shutdown commits in this run.
  ChildProcess* connector = StartConnector({"--commit-interval-ms", "3600000"});
  ASSERT_NE(connector, nullptr);
  ProduceEvents(1, 120, "t");
  auto client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  for (int64_t offset : Committed()) EXPECT_LT(offset, 0);

  EXPECT_EQ(connector->Terminate(milliseconds(20000)), 0) << Logs(connector);
  EXPECT_EQ(Committed(), EndOffsets()) << Logs(connector);
  EXPECT_NE(Logs(connector).find("shutdown commit: "), std::string::npos) << Logs(connector);
}

TEST_F(KafkaConnectorTest, ShutdownTimeoutLeavesUnacknowledgedEventsUncommitted) {
  StartServer();
  ChildProcess* connector =
      StartConnector({"--commit-interval-ms", "200", "--shutdown-timeout-s", "1"});
  ASSERT_NE(connector, nullptr);
  ProduceEvents(1, 20, "a");
  auto client = ConnectClient();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  const std::vector<int64_t> end_a = EndOffsets();
  ASSERT_TRUE(CommittedReach(end_a, milliseconds(10000))) << Logs(connector);

  ASSERT_EQ(server_->Terminate(), 0);
  ProduceEvents(21, 20, "b");
  ASSERT_TRUE(Eventually([&] { return LastConsumed(Logs(connector)) == 40; }, milliseconds(10000)))
      << Logs(connector);
  // The stop cannot wait for the cluster forever: exit 1 after the timeout,
  // and the events it could not deliver stay uncommitted for the next run.
  const auto start = Clock::now();
  EXPECT_EQ(connector->Terminate(milliseconds(20000)), 1) << Logs(connector);
  EXPECT_LT(Clock::now() - start, milliseconds(10000));
  EXPECT_EQ(Committed(), end_a) << Logs(connector);
  EXPECT_NE(Logs(connector).find("shutdown timeout: 20 events still unacknowledged"),
            std::string::npos)
      << Logs(connector);
}

// A node with an auth file: the connector's token (from --token-file)
// needs the write role, and its writes land.
TEST_F(KafkaConnectorTest, WritesWithItsToken) {
  const std::string auth = dir_.path() + "/auth";
  const std::string token_file = dir_.path() + "/kafka.token";
  {
    std::ofstream out(auth);
    out << "write:" << security::HashTokenHex("kafka-writer") << "\n"
        << "read:" << security::HashTokenHex("checker") << "\n";
    std::ofstream tok(token_file);
    tok << "kafka-writer\n";
  }
  StartServer(0, {"--auth-file", auth});
  ChildProcess* connector =
      StartConnector({"--commit-interval-ms", "200", "--token-file", token_file});
  ASSERT_NE(connector, nullptr);
  ProduceEvents(1, 20, "secured");
  auto client = ConnectClient("checker");
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(Eventually([&] { return AllVisible(*client); }, milliseconds(20000)))
      << Logs(connector);
  EXPECT_EQ(connector->Terminate(milliseconds(20000)), 0) << Logs(connector);
}

TEST_F(KafkaConnectorTest, UsageErrorsExitWithTwo) {
  testing::RunResult r = testing::RunProgram(TAGCACHE_KAFKA_BIN, {"--group", "g"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = testing::RunProgram(TAGCACHE_KAFKA_BIN, {"--brokers", bootstraps_, "--group", "g", "--topic",
                                               kTopic, "-X", "enable.auto.commit=true"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("enable.auto.commit"), std::string::npos) << r.err;
  r = testing::RunProgram(TAGCACHE_KAFKA_BIN, {"--brokers", bootstraps_, "--group", "g", "--topic",
                                               kTopic, "-X", "no.such.property=1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("no.such.property"), std::string::npos) << r.err;
  r = testing::RunProgram(TAGCACHE_KAFKA_BIN,
                          {"--brokers", bootstraps_, "--group", "g", "--topic", kTopic, "--tls"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--tls-ca"), std::string::npos) << r.err;
  r = testing::RunProgram(TAGCACHE_KAFKA_BIN, {"--brokers", bootstraps_, "--group", "g", "--topic",
                                               kTopic, "--token", "a", "--token-file", "/x"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("not both"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tagcache
