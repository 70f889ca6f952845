// EventSender against a real node in this process (server/net on
// 127.0.0.1, RAM only): batching, exactly one outcome per event in Add
// order, isolation of refused events by splitting, retries of transient
// failures (a stopped node, and one that comes back), linger and the
// in-flight bound.
#include "tagcache/ingest/event_sender.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tagcache/client/client.h"
#include "tagcache/net/node.h"

namespace tagcache::ingest {
namespace {

using client::Event;
using client::TagOp;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

uint64_t NowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

Event MakeEvent(uint64_t user, std::string tag, uint64_t ts, TagOp op = TagOp::kSet) {
  Event e;
  e.user = user;
  e.tag = std::move(tag);
  e.ts = ts;
  e.op = op;
  return e;
}

// Every outcome the sender reported, and the batches as delivered.
class Collector {
 public:
  OutcomeCallback Callback() {
    return [this](std::vector<EventOutcome> outcomes) {
      std::lock_guard<std::mutex> lock(mu_);
      batches_.push_back(outcomes);
      for (const EventOutcome& o : outcomes) {
        ++count_[o.token];
        status_[o.token] = o.status;
      }
    };
  }
  std::vector<std::vector<EventOutcome>> batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  std::map<uint64_t, int> count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::map<uint64_t, Status> status() const {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::vector<EventOutcome>> batches_;
  std::map<uint64_t, int> count_;
  std::map<uint64_t, Status> status_;
};

class EventSenderTest : public ::testing::Test {
 protected:
  void StartNode(uint16_t port = 0) {
    net::NodeOptions o;
    o.listen_host = "127.0.0.1";
    o.listen_port = port;
    o.io_threads = 1;
    o.workers = 2;
    o.engine.query_threads = 1;
    o.engine.shard_bits = 16;
    o.shutdown_grace = milliseconds(1000);
    node_ = std::make_unique<net::Node>(std::move(o));
    Status s = node_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    port_ = node_->port();
    thread_ = std::thread([this] { node_->Run(); });
  }

  void StopNode() {
    if (!node_) return;
    node_->Stop();
    thread_.join();
    node_.reset();
  }

  void Connect() {
    ClientOptions o;
    o.seeds = {"127.0.0.1:" + std::to_string(port_)};
    o.request_timeout = milliseconds(2000);
    o.connect_timeout = milliseconds(500);
    o.reconnect_backoff_min = milliseconds(10);
    o.reconnect_backoff_max = milliseconds(100);
    o.client_name = "event_sender_test";
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
  }

  void TearDown() override {
    client_.reset();
    StopNode();
  }

  std::set<std::string> TagsOf(uint64_t user) {
    auto r = client_->GetTags(user);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::set<std::string> tags;
    if (r.ok()) {
      for (const auto& hit : *r) tags.insert(hit.tag);
    }
    return tags;
  }

  std::unique_ptr<net::Node> node_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::unique_ptr<Client> client_;
};

TEST_F(EventSenderTest, TenThousandEventsGetOneOutcomeEachInAddOrder) {
  StartNode();
  Connect();
  Collector collector;
  EventSenderOptions options;
  options.batch_events = 97;  // not a divisor of the count: the last batch is partial
  options.max_in_flight_batches = 4;
  {
    EventSender sender(client_.get(), options, collector.Callback());
    // 5,000 winning sets, then 5,000 older writes of the same user and tag
    // that the merge must ignore.
    uint64_t token = 0;
    for (uint64_t user = 0; user < 5000; ++user) {
      sender.Add(MakeEvent(user * 7, "tag" + std::to_string(user % 13), 1000 + user), ++token);
    }
    for (uint64_t user = 0; user < 5000; ++user) {
      sender.Add(MakeEvent(user * 7, "tag" + std::to_string(user % 13), 999, TagOp::kClear),
                 ++token);
    }
    sender.Flush();
    const EventSenderStats stats = sender.stats();
    EXPECT_EQ(stats.events_added, 10000u);
    EXPECT_EQ(stats.accepted, 10000u);
    EXPECT_EQ(stats.applied, 5000u);
    EXPECT_EQ(stats.ignored, 5000u);
    EXPECT_EQ(stats.accepted, stats.applied + stats.ignored);
    EXPECT_EQ(stats.rejected, 0u);
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_EQ(stats.batches_sent, (10000u + 96) / 97);
  }
  const auto count = collector.count();
  ASSERT_EQ(count.size(), 10000u);
  for (const auto& [token, n] : count) EXPECT_EQ(n, 1) << "token " << token;
  for (const auto& [token, status] : collector.status()) {
    EXPECT_TRUE(status.ok()) << token << ": " << status.ToString();
  }
  // Each batch holds consecutive tokens in Add order.
  const auto batches = collector.batches();
  EXPECT_EQ(batches.size(), (10000u + 96) / 97);
  for (const auto& batch : batches) {
    ASSERT_FALSE(batch.empty());
    EXPECT_LE(batch.size(), 97u);
    for (size_t i = 1; i < batch.size(); ++i) EXPECT_EQ(batch[i].token, batch[i - 1].token + 1);
  }
  EXPECT_EQ(TagsOf(0), std::set<std::string>{"tag0"});
  EXPECT_EQ(TagsOf(7 * 4999), std::set<std::string>{"tag" + std::to_string(4999 % 13)});
  EXPECT_TRUE(TagsOf(1).empty());
}

TEST_F(EventSenderTest, RefusedEventsAreIsolatedAndTheirNeighboursApplied) {
  StartNode();
  Connect();
  Collector collector;
  EventSenderOptions options;
  options.batch_events = 64;
  const uint64_t future = NowMs() + 10ull * 24 * 3600 * 1000;  // far beyond the node's bound
  std::set<uint64_t> bad = {5, 6, 40, 63, 64};                 // 63|64 straddle two batches
  {
    EventSender sender(client_.get(), options, collector.Callback());
    for (uint64_t i = 0; i < 100; ++i) {
      sender.Add(MakeEvent(1000 + i, "t", bad.count(i) ? future : 10), i);
    }
    sender.Flush();
    const EventSenderStats stats = sender.stats();
    EXPECT_EQ(stats.accepted, 95u);
    EXPECT_EQ(stats.applied, 95u);
    EXPECT_EQ(stats.rejected, 5u);
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_EQ(stats.batches_sent, 2u);
  }
  const auto status = collector.status();
  ASSERT_EQ(status.size(), 100u);
  for (const auto& [token, s] : status) {
    if (bad.count(token)) {
      EXPECT_TRUE(s.IsFutureTimestamp()) << token << ": " << s.ToString();
    } else {
      EXPECT_TRUE(s.ok()) << token << ": " << s.ToString();
    }
  }
  EXPECT_EQ(collector.batches().size(), 2u);
  EXPECT_EQ(TagsOf(1000 + 4), std::set<std::string>{"t"});
  EXPECT_TRUE(TagsOf(1000 + 5).empty());
  EXPECT_EQ(TagsOf(1000 + 7), std::set<std::string>{"t"});
  EXPECT_EQ(TagsOf(1000 + 62), std::set<std::string>{"t"});
  EXPECT_EQ(TagsOf(1000 + 65), std::set<std::string>{"t"});
}

TEST_F(EventSenderTest, ABatchOfOnlyRefusedEventsRejectsEachOne) {
  StartNode();
  Connect();
  Collector collector;
  EventSenderOptions options;
  options.batch_events = 16;
  EventSender sender(client_.get(), options, collector.Callback());
  const uint64_t future = NowMs() + 10ull * 24 * 3600 * 1000;
  for (uint64_t i = 0; i < 11; ++i) sender.Add(MakeEvent(i, "t", future), i);
  sender.Flush();
  EXPECT_EQ(sender.stats().rejected, 11u);
  EXPECT_EQ(sender.stats().accepted, 0u);
  const auto batches = collector.batches();
  ASSERT_EQ(batches.size(), 1u);
  ASSERT_EQ(batches[0].size(), 11u);
  for (const EventOutcome& o : batches[0]) {
    EXPECT_TRUE(o.status.IsFutureTimestamp()) << o.status.ToString();
  }
}

TEST_F(EventSenderTest, AStoppedNodeFailsTheEventsAfterRetryFor) {
  StartNode();
  Connect();
  StopNode();
  Collector collector;
  EventSenderOptions options;
  options.batch_events = 4;
  options.retry_for = milliseconds(400);
  options.retry_backoff_min = milliseconds(20);
  options.retry_backoff_max = milliseconds(80);
  const auto start = Clock::now();
  {
    EventSender sender(client_.get(), options, collector.Callback());
    for (uint64_t i = 0; i < 10; ++i) sender.Add(MakeEvent(i, "t", 5), i);
    sender.Flush();
    const EventSenderStats stats = sender.stats();
    EXPECT_EQ(stats.failed, 10u);
    EXPECT_EQ(stats.accepted, 0u);
    EXPECT_EQ(stats.rejected, 0u);
    EXPECT_GE(stats.retries, 3u);  // three batches, each retried at least once
  }
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(380));
  EXPECT_LT(elapsed, milliseconds(4000));
  const auto status = collector.status();
  ASSERT_EQ(status.size(), 10u);
  for (const auto& [token, s] : status) {
    EXPECT_EQ(s.code(), StatusCode::kIoError) << token << ": " << s.ToString();
  }
}

TEST_F(EventSenderTest, ANodeBackWithinRetryForGetsTheEvents) {
  StartNode();
  const uint16_t port = port_;
  Connect();
  StopNode();
  Collector collector;
  EventSenderOptions options;
  options.batch_events = 8;
  options.retry_for = milliseconds(4000);
  options.retry_backoff_min = milliseconds(20);
  options.retry_backoff_max = milliseconds(100);
  EventSender sender(client_.get(), options, collector.Callback());
  for (uint64_t i = 0; i < 20; ++i) sender.Add(MakeEvent(i, "back", 5), i);
  sender.Poll();
  EXPECT_FALSE(sender.WaitIdle(milliseconds(300)));  // nothing answers yet
  StartNode(port);
  sender.Flush();
  const EventSenderStats stats = sender.stats();
  EXPECT_EQ(stats.accepted, 20u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_GT(stats.retries, 0u);
  for (const auto& [token, s] : collector.status()) {
    EXPECT_TRUE(s.ok()) << token << ": " << s.ToString();
  }
  EXPECT_EQ(collector.status().size(), 20u);
  EXPECT_EQ(TagsOf(19), std::set<std::string>{"back"});
}

TEST_F(EventSenderTest, LingerSendsAPartialBatchOnPoll) {
  StartNode();
  Connect();
  Collector collector;
  EventSenderOptions options;
  options.batch_events = 1000;
  options.linger = milliseconds(100);
  EventSender sender(client_.get(), options, collector.Callback());
  sender.Add(MakeEvent(77, "slow", 3), 1);
  sender.Poll();  // too early: the batch waits for company
  EXPECT_EQ(sender.stats().batches_sent, 0u);
  std::this_thread::sleep_for(milliseconds(20));
  sender.Poll();
  EXPECT_EQ(sender.stats().batches_sent, 0u);
  std::this_thread::sleep_for(milliseconds(100));
  sender.Poll();
  EXPECT_EQ(sender.stats().batches_sent, 1u);
  EXPECT_TRUE(sender.WaitIdle(milliseconds(3000)));
  EXPECT_EQ(sender.stats().accepted, 1u);
  ASSERT_EQ(collector.status().size(), 1u);
  EXPECT_TRUE(collector.status().at(1).ok());
  EXPECT_EQ(TagsOf(77), std::set<std::string>{"slow"});
}

TEST_F(EventSenderTest, AddBlocksWhileTheInFlightBatchesAreOutstanding) {
  StartNode();
  Connect();
  StopNode();  // nothing answers: the one in-flight slot stays taken for retry_for
  Collector collector;
  EventSenderOptions options;
  options.batch_events = 1;
  options.max_in_flight_batches = 1;
  options.retry_for = milliseconds(300);
  options.retry_backoff_min = milliseconds(20);
  EventSender sender(client_.get(), options, collector.Callback());
  sender.Add(MakeEvent(1, "t", 5), 1);  // sent at once
  const auto start = Clock::now();
  sender.Add(MakeEvent(2, "t", 5), 2);  // waits for the first batch's outcome
  EXPECT_GE(Clock::now() - start, milliseconds(200));
  EXPECT_EQ(collector.count().count(1), 1u);
  sender.Flush();
  EXPECT_EQ(sender.stats().failed, 2u);
}

TEST_F(EventSenderTest, DestructorFlushesTheOpenBatch) {
  StartNode();
  Connect();
  Collector collector;
  EventSenderOptions options;
  options.linger = milliseconds(60000);
  {
    EventSender sender(client_.get(), options, collector.Callback());
    for (uint64_t i = 0; i < 5; ++i) sender.Add(MakeEvent(i, "d", 1), i);
  }
  EXPECT_EQ(collector.count().size(), 5u);
  EXPECT_EQ(TagsOf(4), std::set<std::string>{"d"});
}

}  // namespace
}  // namespace tagcache::ingest
