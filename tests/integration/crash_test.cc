// Crash tests (ctest label `fault`): a real tagcache-server with a data
// directory is killed with SIGKILL at a random moment while clients write,
// then restarted on the same directory. Every write it acknowledged must be
// there and nothing that was never sent may appear. Checkpoints run often
// (--checkpoint-wal-bytes 64KiB), so kills also land in the middle of them.
//
// Cycles: 20 per policy by default (CI); TAGCACHE_CRASH_CYCLES sets more.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <roaring/roaring.hh>

#include "process.h"
#include "server_fixture.h"
#include "tagcache/client/client.h"

namespace tagcache::testing {
namespace {

using client::Client;

int Cycles() {
  const char* env = std::getenv("TAGCACHE_CRASH_CYCLES");
  if (env && std::atoi(env) > 0) return std::atoi(env);
  return 20;
}

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

client::ClientOptions OptionsFor(const ServerProcess& server) {
  client::ClientOptions options;
  options.seeds = {server.address()};
  options.connect_timeout = std::chrono::milliseconds(5000);
  options.request_timeout = std::chrono::milliseconds(20000);
  options.reconnect_backoff_min = std::chrono::milliseconds(20);
  options.reconnect_backoff_max = std::chrono::milliseconds(200);
  options.client_name = "crash-test";
  return options;
}

std::unique_ptr<Client> ConnectTo(const ServerProcess& server) {
  auto client = Client::Connect(OptionsFor(server));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

// Every user of `expr`, through paged Audience calls (bounded by count).
std::set<uint64_t> AudienceOf(Client& client, const std::string& expr) {
  std::set<uint64_t> users;
  uint64_t cursor = 0;
  for (int page_no = 0; page_no < 10'000; ++page_no) {
    auto page = client.Audience(expr, cursor, 100'000);
    if (!page.ok()) {
      if (page.status().IsUnknownTag()) return users;  // nothing was ever written
      ADD_FAILURE() << page.status().ToString();
      return users;
    }
    users.insert(page->users.begin(), page->users.end());
    if (!page->next_cursor) return users;
    cursor = *page->next_cursor;
  }
  ADD_FAILURE() << "audience paging did not end";
  return users;
}

// What the writers sent and what the server acknowledged, across cycles.
struct Ledger {
  std::mutex mu;
  std::set<uint64_t> sets_sent, sets_acked;
  std::set<uint64_t> clears_sent, clears_acked;
};

// Streams set events for fresh users (and clears of acknowledged ones)
// from `threads` writers, up to 16 batches in flight each, until `stop`.
void WriteUntilStopped(Client& client, Ledger& ledger, uint64_t first_user, int threads,
                       std::atomic<bool>& stop) {
  std::vector<std::thread> writers;
  std::atomic<uint64_t> next_user{first_user};
  for (int w = 0; w < threads; ++w) {
    writers.emplace_back([&, w] {
      std::mutex mu;
      std::condition_variable cv;
      int inflight = 0;
      uint64_t batch_no = 0;
      std::mt19937_64 rng(static_cast<uint64_t>(w) * 7919 + first_user);
      while (!stop.load()) {
        {
          std::unique_lock lock(mu);
          cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return inflight < 16; });
          if (inflight >= 16) continue;
          ++inflight;
        }
        std::vector<client::Event> events;
        std::vector<uint64_t> users;
        bool clears = (++batch_no % 5) == 0;
        {
          std::lock_guard lock(ledger.mu);
          clears = clears && !ledger.sets_acked.empty();
          if (clears) {
            // Opt-outs of users whose set was acknowledged, stamped later.
            auto it = ledger.sets_acked.lower_bound(rng() % (*ledger.sets_acked.rbegin() + 1));
            for (int i = 0; i < 8 && it != ledger.sets_acked.end(); ++i, ++it) {
              if (ledger.clears_sent.count(*it)) continue;
              users.push_back(*it);
            }
            for (uint64_t u : users) ledger.clears_sent.insert(u);
          } else {
            for (int i = 0; i < 20; ++i) users.push_back(next_user.fetch_add(1));
            for (uint64_t u : users) ledger.sets_sent.insert(u);
          }
        }
        const client::TagOp op = clears ? client::TagOp::kClear : client::TagOp::kSet;
        // Clears are stamped after every set of the run, so they win.
        const uint64_t ts = clears ? NowMs() + 1000 : NowMs();
        for (uint64_t u : users) events.push_back(client::Event{u, "w", op, ts});
        if (events.empty()) {
          std::lock_guard lock(mu);
          --inflight;
          continue;
        }
        client.ApplyEventsAsync(events, [&, users, clears](Result<client::ApplyEventsResult> r) {
          // A write is acknowledged only by an OK answer.
          if (r.ok()) {
            std::lock_guard lock(ledger.mu);
            for (uint64_t u : users) (clears ? ledger.clears_acked : ledger.sets_acked).insert(u);
          }
          std::lock_guard lock(mu);
          --inflight;
          cv.notify_all();
        });
      }
      // Wait (bounded) for the callbacks that reference this frame.
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::seconds(30), [&] { return inflight == 0; });
      EXPECT_EQ(inflight, 0) << "callbacks still pending";
    });
  }
  for (auto& t : writers) t.join();
}

void CheckEvents(Client& client, Ledger& ledger, const std::string& context) {
  const std::set<uint64_t> present = AudienceOf(client, "w");
  std::lock_guard lock(ledger.mu);
  for (uint64_t u : present) {
    ASSERT_TRUE(ledger.sets_sent.count(u)) << context << ": user " << u << " was never written";
    ASSERT_FALSE(ledger.clears_acked.count(u))
        << context << ": user " << u << " has an acknowledged clear but is still tagged";
  }
  for (uint64_t u : ledger.sets_acked) {
    if (ledger.clears_sent.count(u)) continue;  // a sent clear may or may not have landed
    ASSERT_TRUE(present.count(u)) << context << ": acknowledged set of user " << u << " was lost";
  }
}

void RunEventCrashCycles(const std::string& policy) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  const std::vector<std::string> args = {"--fsync", policy, "--checkpoint-wal-bytes", "64KiB",
                                         "--wal-segment-bytes", "32KiB"};
  Ledger ledger;
  std::mt19937_64 rng(42);
  const int cycles = Cycles();
  for (int cycle = 0; cycle < cycles; ++cycle) {
    auto server = ServerProcess::Start(ServerBinary(), dir.path(), 0, args, data,
                                       std::chrono::milliseconds(60000));
    ASSERT_NE(server, nullptr) << "cycle " << cycle;
    {
      auto client = ConnectTo(*server);
      ASSERT_NE(client, nullptr);
      CheckEvents(*client, ledger, policy + " cycle " + std::to_string(cycle) + " after restart");
      if (::testing::Test::HasFatalFailure()) {
        ADD_FAILURE() << server->Log();
        return;
      }
      std::atomic<bool> stop{false};
      std::thread killer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 400));
        server->Kill();
        stop = true;
      });
      WriteUntilStopped(*client, ledger, uint64_t{1'000'000} * (cycle + 1), 3, stop);
      killer.join();
    }
  }
  auto server = ServerProcess::Start(ServerBinary(), dir.path(), 0, args, data,
                                     std::chrono::milliseconds(60000));
  ASSERT_NE(server, nullptr);
  auto client = ConnectTo(*server);
  ASSERT_NE(client, nullptr);
  CheckEvents(*client, ledger, policy + " final restart");
  std::lock_guard lock(ledger.mu);
  std::printf("%s: %d cycles, %zu sets and %zu clears acknowledged, %zu and %zu sent\n",
              policy.c_str(), cycles, ledger.sets_acked.size(), ledger.clears_acked.size(),
              ledger.sets_sent.size(), ledger.clears_sent.size());
  EXPECT_GT(ledger.sets_acked.size(), 100u);
  EXPECT_GT(ledger.clears_acked.size(), 0u);
  EXPECT_EQ(server->Terminate(), 0) << server->Log();
}

TEST(CrashTest, FsyncAlwaysKeepsEveryAcknowledgedWriteAcrossKill9) {
  RunEventCrashCycles("always");
}

TEST(CrashTest, FsyncBatchKeepsEveryAcknowledgedWriteAcrossKill9) {
  RunEventCrashCycles("batch");
}

// A snapshot load killed half way: per shard, the tag is entirely one
// version's members (old or new, never a mix), and every shard whose part
// was acknowledged holds that version or a newer one.
TEST(CrashTest, SnapshotLoadInFlightLeavesEachShardEntirelyOldOrNew) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  const std::vector<std::string> args = {"--fsync", "always", "--shard-bits", "8",
                                         "--checkpoint-wal-bytes", "256KiB"};
  constexpr uint64_t kShards = 48;
  // Version v's members in a shard: a pattern that differs between versions
  // (and sizes that vary); version 0 is "never loaded": empty.
  auto members = [](uint64_t version, uint64_t shard) {
    Roaring r;
    if (version == 0) return r;
    std::mt19937 rng(static_cast<uint32_t>(version * 1009 + shard));
    const uint32_t percent = 20 + static_cast<uint32_t>(version * 13 % 60);
    for (uint32_t o = 0; o < 256; ++o) {
      if (rng() % 100 < percent) r.add(o);
    }
    return r;
  };
  std::map<uint64_t, uint64_t> acked_version;  // shard -> newest acknowledged version
  std::mutex mu;
  std::mt19937_64 rng(7);
  const int cycles = std::max(5, Cycles() / 2);
  for (int cycle = 0; cycle <= cycles; ++cycle) {
    auto server = ServerProcess::Start(ServerBinary(), dir.path(), 0, args, data,
                                       std::chrono::milliseconds(60000));
    ASSERT_NE(server, nullptr);
    auto client = ConnectTo(*server);
    ASSERT_NE(client, nullptr);
    // Check what the previous cycle left.
    const std::set<uint64_t> present = AudienceOf(*client, "snap");
    for (uint64_t shard = 0; shard < kShards && cycle > 0; ++shard) {
      Roaring got;
      for (auto it = present.lower_bound(shard << 8); it != present.end() && *it < ((shard + 1) << 8);
           ++it) {
        got.add(static_cast<uint32_t>(*it & 255));
      }
      std::vector<uint64_t> matched;
      for (uint64_t v = 0; v <= static_cast<uint64_t>(cycle); ++v) {
        if (got == members(v, shard)) matched.push_back(v);
      }
      ASSERT_EQ(matched.size(), 1u) << "cycle " << cycle << ": shard " << shard << " holds "
                                    << got.cardinality()
                                    << " members that are not exactly one version's";
      std::lock_guard lock(mu);
      ASSERT_GE(matched[0], acked_version[shard])
          << "shard " << shard << ": version " << acked_version[shard]
          << " was acknowledged but the shard holds version " << matched[0];
    }
    if (cycle == cycles) {
      EXPECT_EQ(server->Terminate(), 0) << server->Log();
      break;
    }
    // Load version cycle+1 part by part (pipelined), then commit; kill at random.
    const uint64_t version = static_cast<uint64_t>(cycle) + 1;
    const uint64_t ts = 1'000'000 + version;
    std::atomic<bool> stop{false};
    std::thread killer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 60));
      server->Kill();
      stop = true;
    });
    std::atomic<int> pending{0};
    for (uint64_t shard = 0; shard < kShards && !stop; ++shard) {
      Roaring part = members(version, shard);
      std::string bytes(part.getSizeInBytes(true), '\0');
      part.write(bytes.data(), true);
      ++pending;
      client->LoadSnapshotAsync("snap", ts, shard, bytes,
                                [&, shard](Result<client::SnapshotOutcome> r) {
                                  if (r.ok()) {
                                    std::lock_guard lock(mu);
                                    acked_version[shard] = std::max(acked_version[shard], version);
                                  }
                                  --pending;
                                });
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    killer.join();
    client.reset();  // completes every pending call
    EXPECT_EQ(pending.load(), 0);
  }
}

}  // namespace
}  // namespace tagcache::testing
