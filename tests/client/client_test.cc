// Client behaviour that needs no real server: deadlines, reconnects,
// re-sends, pipelining and error mapping, staged with FakeServer.
#include "tagcache/client/client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "fake_server.h"

namespace tagcache::client {
namespace {

using std::chrono::milliseconds;
using testing::EchoHandler;
using testing::FakeServer;
using Steady = std::chrono::steady_clock;

ClientOptions FastOptions(const std::string& address) {
  ClientOptions options;
  options.seeds = {address};
  options.connect_timeout = milliseconds(500);
  options.request_timeout = milliseconds(2000);
  options.reconnect_backoff_min = milliseconds(10);
  options.reconnect_backoff_max = milliseconds(100);
  return options;
}

std::unique_ptr<Client> MustConnect(const ClientOptions& options) {
  auto client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

// Calls `attempt` until it returns true or `limit` passes; true if it did.
template <typename Fn>
bool Eventually(Fn attempt, milliseconds limit = milliseconds(5000)) {
  const auto end = Steady::now() + limit;
  for (int i = 0; i < 1000 && Steady::now() < end; ++i) {
    if (attempt()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

// Collects async results; Wait() is bounded.
template <typename T>
class Collector {
 public:
  explicit Collector(size_t expected) : expected_(expected) {}
  Callback<T> Slot(size_t index) {
    return [this, index](Result<T> result) {
      std::lock_guard lock(mu_);
      results_.emplace_back(index, std::move(result));
      if (results_.size() == expected_) cv_.notify_all();
    };
  }
  bool Wait(milliseconds limit = milliseconds(20000)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return results_.size() == expected_; });
  }
  std::vector<std::pair<size_t, Result<T>>>& results() { return results_; }

 private:
  const size_t expected_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<size_t, Result<T>>> results_;
};

TEST(ClientConnectTest, RefusedPortFailsWithIoError) {
  uint16_t port;
  {
    FakeServer probe({}, EchoHandler);
    port = probe.port();
  }  // closed: nothing listens there now
  auto client = Client::Connect(FastOptions("127.0.0.1:" + std::to_string(port)));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kIoError) << client.status().ToString();
}

TEST(ClientConnectTest, SilentServerTimesOutWithinConnectTimeout) {
  FakeServer::Options silent;
  silent.answer_hello = false;  // accepts, reads, never answers
  FakeServer server(silent, EchoHandler);
  auto options = FastOptions(server.address());
  options.connect_timeout = milliseconds(300);
  const auto start = Steady::now();
  auto client = Client::Connect(options);
  const auto elapsed = Steady::now() - start;
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kIoError);
  EXPECT_NE(client.status().message().find("timed out"), std::string::npos)
      << client.status().ToString();
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, milliseconds(3000));
}

TEST(ClientConnectTest, MalformedSeedIsBadRequest) {
  auto client = Client::Connect(FastOptions("no-port-here"));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kBadRequest);
}

TEST(ClientConnectTest, SecondSeedIsUsedWhenTheFirstIsDown) {
  uint16_t dead_port;
  {
    FakeServer probe({}, EchoHandler);
    dead_port = probe.port();
  }
  FakeServer server({}, EchoHandler);
  auto options = FastOptions("127.0.0.1:" + std::to_string(dead_port));
  options.seeds.push_back(server.address());
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->nodes(), std::vector<std::string>{server.address()});
  EXPECT_EQ(client->shard_bits(), 20);
  EXPECT_TRUE(client->Ping().ok());
}

TEST(ClientConnectTest, HelloRefusalKeepsTheNodesStatus) {
  FakeServer::Options options;
  options.hello_status = wire::Status::UNSUPPORTED_VERSION;
  FakeServer server(options, EchoHandler);
  auto client = Client::Connect(FastOptions(server.address()));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kUnsupportedVersion) << client.status().ToString();
  EXPECT_NE(client.status().message().find("refused by the fake server"), std::string::npos);
}

TEST(ClientDeadlineTest, StallingServerGivesDeadlineExceeded) {
  // The hello is answered, then every request is read and never answered.
  FakeServer server({}, [](int, wire::Request::Reader, wire::Response::Builder) {
    return FakeServer::Reaction::kIgnore;
  });
  auto options = FastOptions(server.address());
  options.request_timeout = milliseconds(1000);
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);

  auto start = Steady::now();
  auto tags = client->GetTags(42);
  auto elapsed = Steady::now() - start;
  ASSERT_FALSE(tags.ok());
  EXPECT_EQ(tags.status().code(), StatusCode::kIoError);
  EXPECT_TRUE(IsDeadlineExceeded(tags.status())) << tags.status().ToString();
  EXPECT_GE(elapsed, milliseconds(990));
  EXPECT_LT(elapsed, milliseconds(5000));

  // A per-call deadline overrides the default.
  start = Steady::now();
  auto count = client->Count("a", CallOptions{milliseconds(100)});
  elapsed = Steady::now() - start;
  ASSERT_FALSE(count.ok());
  EXPECT_TRUE(IsDeadlineExceeded(count.status())) << count.status().ToString();
  EXPECT_GE(elapsed, milliseconds(95));
  EXPECT_LT(elapsed, milliseconds(900));
}

TEST(ClientDeadlineTest, LateAnswerIsDroppedAndTheConnectionKept) {
  FakeServer server({}, [](int c, wire::Request::Reader request, wire::Response::Builder response) {
    if (request.which() == wire::Request::GET_TAGS) {
      std::this_thread::sleep_for(milliseconds(300));  // answers after the deadline
    }
    return EchoHandler(c, request, response);
  });
  auto options = FastOptions(server.address());
  options.connections_per_node = 1;
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);
  auto tags = client->GetTags(1, false, CallOptions{milliseconds(100)});
  ASSERT_FALSE(tags.ok());
  EXPECT_TRUE(IsDeadlineExceeded(tags.status()));
  std::this_thread::sleep_for(milliseconds(400));  // the late answer has arrived
  EXPECT_TRUE(client->Ping().ok());
  EXPECT_EQ(server.hellos(), 1);  // same connection: no reconnect happened
}

TEST(ClientPipelineTest, OutOfOrderAnswersAreMatchedById) {
  constexpr size_t kRequests = 16;
  FakeServer::Options server_options;
  server_options.defer_batch = kRequests;  // answers only once all 16 are in, newest first
  FakeServer server(server_options,
                    [](int c, wire::Request::Reader request, wire::Response::Builder response) {
                      EchoHandler(c, request, response);
                      return FakeServer::Reaction::kDefer;
                    });
  auto options = FastOptions(server.address());
  options.connections_per_node = 1;
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);

  Collector<std::vector<TagHit>> collector(kRequests);
  for (size_t i = 0; i < kRequests; ++i) client->GetTagsAsync(100 + i, false, collector.Slot(i));
  ASSERT_TRUE(collector.Wait());
  for (auto& [index, result] : collector.results()) {
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    ASSERT_EQ(result->size(), 1u);
    EXPECT_EQ((*result)[0].tag, "u" + std::to_string(100 + index));
  }
  // The last answer (the first request's) arrived last.
  EXPECT_EQ(collector.results().back().first, 0u);
}

TEST(ClientPipelineTest, TenThousandRequestsOverFourConnections) {
  constexpr size_t kRequests = 10000;
  std::mutex mu;
  std::set<int> connections_used;
  FakeServer server({},
                    [&](int c, wire::Request::Reader request, wire::Response::Builder response) {
                      {
                        std::lock_guard lock(mu);
                        connections_used.insert(c);
                      }
                      return EchoHandler(c, request, response);
                    });
  auto options = FastOptions(server.address());
  options.connections_per_node = 4;
  options.max_in_flight = kRequests;
  options.request_timeout = milliseconds(20000);
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);
  // Connect() returns once one connection is ready; let the others finish.
  ASSERT_TRUE(Eventually([&] { return server.hellos() >= 4; }));

  Collector<std::vector<TagHit>> collector(kRequests);
  for (size_t i = 0; i < kRequests; ++i) client->GetTagsAsync(i, false, collector.Slot(i));
  ASSERT_TRUE(collector.Wait());
  size_t correct = 0;
  for (auto& [index, result] : collector.results()) {
    if (result.ok() && result->size() == 1 && (*result)[0].tag == "u" + std::to_string(index)) {
      ++correct;
    }
  }
  EXPECT_EQ(correct, kRequests);
  std::lock_guard lock(mu);
  EXPECT_EQ(connections_used.size(), 4u);
}

TEST(ClientReconnectTest, ReconnectsAfterTheNodeDropsConnections) {
  FakeServer server({}, EchoHandler);
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Ping().ok());
  const int hellos_before = server.hellos();

  server.DropConnections();
  EXPECT_TRUE(Eventually([&] { return client->Ping().ok(); }));
  EXPECT_GT(server.hellos(), hellos_before);  // the hello is repeated on reconnect
}

TEST(ClientReconnectTest, ReconnectsAfterTheNodeRestartsOnTheSamePort) {
  auto server = std::make_unique<FakeServer>(FakeServer::Options{}, EchoHandler);
  const uint16_t port = server->port();
  auto client = MustConnect(FastOptions(server->address()));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Ping().ok());

  server.reset();  // the node goes away...
  auto down = client->Ping();
  EXPECT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), StatusCode::kIoError);

  FakeServer::Options same_port;
  same_port.port = port;
  server = std::make_unique<FakeServer>(same_port, EchoHandler);  // ...and comes back
  ASSERT_NE(server->port(), 0);
  EXPECT_TRUE(Eventually([&] { return client->Ping().ok(); }));
  auto tags = client->GetTags(7);
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  EXPECT_EQ((*tags)[0].tag, "u7");
}

TEST(ClientRetryTest, ReadLostInFlightIsResentOnce) {
  std::atomic<int> get_tags_seen{0};
  FakeServer server(
      {}, [&](int c, wire::Request::Reader request, wire::Response::Builder response) {
        if (request.which() == wire::Request::GET_TAGS && get_tags_seen.fetch_add(1) == 0) {
          return FakeServer::Reaction::kClose;  // the first one dies with its connection
        }
        return EchoHandler(c, request, response);
      });
  auto options = FastOptions(server.address());
  options.connections_per_node = 2;
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return server.hellos() >= 2; }));

  auto tags = client->GetTags(5);
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  EXPECT_EQ((*tags)[0].tag, "u5");
  EXPECT_EQ(get_tags_seen.load(), 2);
}

TEST(ClientRetryTest, WriteLostInFlightIsNotResent) {
  std::atomic<int> writes_seen{0};
  FakeServer server({},
                    [&](int c, wire::Request::Reader request, wire::Response::Builder response) {
                      if (request.which() == wire::Request::APPLY_EVENTS) {
                        writes_seen.fetch_add(1);
                        return FakeServer::Reaction::kClose;
                      }
                      return EchoHandler(c, request, response);
                    });
  auto options = FastOptions(server.address());
  options.connections_per_node = 2;
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);

  auto applied = client->ApplyEvents({Event{1, "a", TagOp::kSet, 10}});
  ASSERT_FALSE(applied.ok());
  EXPECT_EQ(applied.status().code(), StatusCode::kIoError);
  EXPECT_NE(applied.status().message().find("may or may not have been applied"), std::string::npos)
      << applied.status().ToString();
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(writes_seen.load(), 1);
}

TEST(ClientErrorTest, AnswerWithAnUnknownIdClosesTheConnection) {
  FakeServer server({}, [](int c, wire::Request::Reader request, wire::Response::Builder response) {
    auto reaction = EchoHandler(c, request, response);
    if (request.which() == wire::Request::GET_TAGS) response.setId(request.getId() + 1000000);
    return reaction;
  });
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto tags = client->GetTags(1);
  ASSERT_FALSE(tags.ok());
  EXPECT_EQ(tags.status().code(), StatusCode::kIoError);
  EXPECT_NE(tags.status().message().find("not in flight"), std::string::npos)
      << tags.status().ToString();
  EXPECT_TRUE(Eventually([&] { return client->Ping().ok(); }));
}

TEST(ClientErrorTest, NodeStatusAndMessageAreKept) {
  FakeServer server({}, [](int, wire::Request::Reader, wire::Response::Builder response) {
    response.setStatus(wire::Status::UNKNOWN_TAG);
    response.setMessage("unknown tag 'nope'");
    response.setNone();
    return FakeServer::Reaction::kReply;
  });
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto count = client->Count("nope");
  ASSERT_FALSE(count.ok());
  EXPECT_EQ(count.status().code(), StatusCode::kUnknownTag);
  EXPECT_EQ(count.status().message(), "unknown tag 'nope'");
}

TEST(ClientErrorTest, AnswerOfTheWrongKindIsInternal) {
  FakeServer server({}, [](int, wire::Request::Reader, wire::Response::Builder response) {
    response.setCount(3);  // whatever was asked
    return FakeServer::Reaction::kReply;
  });
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto tags = client->GetTags(1);
  ASSERT_FALSE(tags.ok());
  EXPECT_EQ(tags.status().code(), StatusCode::kInternal);
  auto count = client->Count("a");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 3u);
}

TEST(ClientLimitsTest, FullQueueGivesOverloaded) {
  FakeServer server({}, [](int, wire::Request::Reader, wire::Response::Builder) {
    return FakeServer::Reaction::kIgnore;
  });
  auto options = FastOptions(server.address());
  options.connections_per_node = 1;
  options.max_in_flight = 1;
  options.max_queued = 2;
  options.request_timeout = milliseconds(300);
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);

  Collector<uint64_t> collector(4);
  for (size_t i = 0; i < 4; ++i) client->CountAsync("a", collector.Slot(i));
  ASSERT_TRUE(collector.Wait());
  int overloaded = 0, deadline = 0;
  for (auto& [index, result] : collector.results()) {
    if (result.status().code() == StatusCode::kOverloaded) ++overloaded;
    if (IsDeadlineExceeded(result.status())) ++deadline;
  }
  EXPECT_EQ(overloaded, 1);
  EXPECT_EQ(deadline, 3);
}

TEST(ClientThreadingTest, SyncCallFromACallbackIsRefused) {
  FakeServer server({}, EchoHandler);
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  std::promise<Status> inner;
  client->PingAsync([&](Result<std::chrono::microseconds> outer) {
    ASSERT_TRUE(outer.ok());
    inner.set_value(client->Ping().status());
  });
  auto future = inner.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(future.get().code(), StatusCode::kInternal);
}

TEST(ClientThreadingTest, DestroyingTheClientFailsPendingCalls) {
  FakeServer server({}, [](int, wire::Request::Reader, wire::Response::Builder) {
    return FakeServer::Reaction::kIgnore;
  });
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  Collector<std::vector<TagHit>> collector(3);
  for (size_t i = 0; i < 3; ++i) client->GetTagsAsync(i, false, collector.Slot(i));
  std::this_thread::sleep_for(milliseconds(50));
  client.reset();
  ASSERT_TRUE(collector.Wait(milliseconds(100)));  // already done when reset() returned
  for (auto& [index, result] : collector.results()) {
    EXPECT_EQ(result.status().code(), StatusCode::kIoError);
    EXPECT_EQ(result.status().message(), "client closed");
  }
}

// A node with a data directory, as the durability issue's server fills it in.
FakeServer::Reaction DurableNode(int /*connection*/, wire::Request::Reader request,
                                 wire::Response::Builder response) {
  switch (request.which()) {
    case wire::Request::STATS: {
      auto stats = response.initStats();
      stats.setShards(16);
      stats.setFsyncPolicy("batch");
      stats.setWalSegment(12);
      stats.setWalBytesSinceCheckpoint(4096);
      stats.setFsyncs(40);
      stats.setFsyncMicrosTotal(8000);
      stats.setFsyncMicrosMax(900);
      stats.setWritesRefusedIo(3);
      stats.setLastCheckpointUnixMs(1700000000123);
      stats.setTornTailsDropped(1);
      stats.setRecoveryMicros(250000);
      stats.setMemoryBytes(uint64_t{5} << 30);
      stats.setMaxMemoryBytes(uint64_t{8} << 30);
      stats.setWritesRefusedMemory(7);
      return FakeServer::Reaction::kReply;
    }
    case wire::Request::CHECKPOINT: {
      auto checkpoint = response.initCheckpoint();
      checkpoint.setPath("/var/lib/tagcache/checkpoint-000013.tcc");
      checkpoint.setWalSegment(13);
      checkpoint.setBytes(123456789);
      checkpoint.setMicros(842000);
      checkpoint.setSegmentsRemoved(2);
      return FakeServer::Reaction::kReply;
    }
    default:
      return EchoHandler(0, request, response);
  }
}

TEST(ClientStatsTest, DecodesDurabilityAndMemoryFields) {
  FakeServer server({}, DurableNode);
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto stats = client->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 1u);
  const NodeStats& n = (*stats)[0];
  EXPECT_EQ(n.node, server.address());
  EXPECT_EQ(n.shards, 16u);
  EXPECT_EQ(n.fsync_policy, "batch");
  EXPECT_EQ(n.wal_segment, 12u);
  EXPECT_EQ(n.wal_bytes_since_checkpoint, 4096u);
  EXPECT_EQ(n.fsyncs, 40u);
  EXPECT_EQ(n.fsync_micros_total, 8000u);
  EXPECT_EQ(n.fsync_micros_max, 900u);
  EXPECT_EQ(n.writes_refused_io, 3u);
  EXPECT_EQ(n.last_checkpoint_unix_ms, 1700000000123u);
  EXPECT_EQ(n.torn_tails_dropped, 1u);
  EXPECT_EQ(n.recovery_micros, 250000u);
  EXPECT_EQ(n.memory_bytes, uint64_t{5} << 30);
  EXPECT_EQ(n.max_memory_bytes, uint64_t{8} << 30);
  EXPECT_EQ(n.writes_refused_memory, 7u);
  // Fields the node left unset read as zero, not as a neighbour's value.
  EXPECT_EQ(n.wal_bytes, 0u);
  EXPECT_EQ(n.checkpoints, 0u);
}

TEST(ClientStatsTest, NodeWithoutDataDirectoryHasNoFsyncPolicy) {
  FakeServer server({}, [](int, wire::Request::Reader request, wire::Response::Builder response) {
    if (request.which() != wire::Request::STATS) return FakeServer::Reaction::kIgnore;
    response.initStats().setTags(5);  // a node from before durability: fields @16.. absent
    return FakeServer::Reaction::kReply;
  });
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto stats = client->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ((*stats)[0].tags, 5u);
  EXPECT_TRUE((*stats)[0].fsync_policy.empty());
  EXPECT_EQ((*stats)[0].max_memory_bytes, 0u);
}

TEST(ClientCheckpointTest, DecodesTheNodesReply) {
  FakeServer server({}, DurableNode);
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto checkpoints = client->Checkpoint(CallOptions{milliseconds(60000)});
  ASSERT_TRUE(checkpoints.ok()) << checkpoints.status().ToString();
  ASSERT_EQ(checkpoints->size(), 1u);
  const NodeCheckpoint& c = (*checkpoints)[0];
  EXPECT_EQ(c.node, server.address());
  EXPECT_EQ(c.path, "/var/lib/tagcache/checkpoint-000013.tcc");
  EXPECT_EQ(c.wal_segment, 13u);
  EXPECT_EQ(c.bytes, 123456789u);
  EXPECT_EQ(c.micros, 842000u);
  EXPECT_EQ(c.segments_removed, 2u);

  // The async form delivers the same answer.
  Collector<std::vector<NodeCheckpoint>> collector(1);
  client->CheckpointAsync(collector.Slot(0));
  ASSERT_TRUE(collector.Wait());
  auto& result = collector.results()[0].second;
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->size(), 1u);
  EXPECT_EQ((*result)[0].path, c.path);
  EXPECT_EQ((*result)[0].bytes, c.bytes);
}

TEST(ClientCheckpointTest, NodeErrorFailsTheCallWithItsStatus) {
  const std::string message =
      "this node has no data directory: nothing to checkpoint (start it with --data-dir)";
  FakeServer server({}, [&](int, wire::Request::Reader request, wire::Response::Builder response) {
    if (request.which() != wire::Request::CHECKPOINT) return FakeServer::Reaction::kIgnore;
    response.setStatus(wire::Status::BAD_REQUEST);
    response.setMessage(message);
    response.setNone();
    return FakeServer::Reaction::kReply;
  });
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto checkpoints = client->Checkpoint();
  ASSERT_FALSE(checkpoints.ok());
  EXPECT_EQ(checkpoints.status().code(), StatusCode::kBadRequest);
  EXPECT_EQ(checkpoints.status().message(), message);
}

TEST(ClientCheckpointTest, AnswerOfTheWrongKindIsInternal) {
  FakeServer server({}, [](int, wire::Request::Reader, wire::Response::Builder response) {
    response.initStats();  // whatever was asked
    return FakeServer::Reaction::kReply;
  });
  auto client = MustConnect(FastOptions(server.address()));
  ASSERT_NE(client, nullptr);
  auto checkpoints = client->Checkpoint();
  ASSERT_FALSE(checkpoints.ok());
  EXPECT_EQ(checkpoints.status().code(), StatusCode::kInternal) << checkpoints.status().ToString();
}

TEST(ClientCheckpointTest, LostInFlightIsNotResent) {
  std::atomic<int> checkpoints_seen{0};
  FakeServer server({},
                    [&](int c, wire::Request::Reader request, wire::Response::Builder response) {
                      if (request.which() == wire::Request::CHECKPOINT) {
                        checkpoints_seen.fetch_add(1);
                        return FakeServer::Reaction::kClose;
                      }
                      return EchoHandler(c, request, response);
                    });
  auto options = FastOptions(server.address());
  options.connections_per_node = 2;
  auto client = MustConnect(options);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(Eventually([&] { return server.hellos() >= 2; }));

  auto checkpoints = client->Checkpoint();
  ASSERT_FALSE(checkpoints.ok());
  EXPECT_EQ(checkpoints.status().code(), StatusCode::kIoError);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(checkpoints_seen.load(), 1);
}

}  // namespace
}  // namespace tagcache::client
