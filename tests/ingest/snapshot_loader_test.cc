// LoadSnapshotSet against an in-process node on 127.0.0.1: parts and
// commits per tag, re-runs, stale snapshots, rule 4 (shards absent from a
// newer load are emptied), dropped tags, a tight in-flight budget, a node
// that is gone.
#include "tagcache/ingest/snapshot_loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tagcache/client/client.h"
#include "tagcache/ingest/snapshot_set.h"
#include "tagcache/net/node.h"

namespace tagcache::ingest {
namespace {

using client::Client;
using client::ClientOptions;
using std::chrono::milliseconds;

constexpr int kShardBits = 12;  // 4096 users a shard: small data spans many shards
constexpr uint64_t kTs = 1'700'000'000'000;

class SnapshotLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { StartNode(); }
  void TearDown() override {
    client_.reset();
    StopNode();
  }

  void StartNode() {
    net::NodeOptions o;
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    o.io_threads = 1;
    o.workers = 2;
    o.engine.query_threads = 1;
    o.engine.shard_bits = kShardBits;
    o.shutdown_grace = milliseconds(2000);
    node_ = std::make_unique<net::Node>(std::move(o));
    Status s = node_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    thread_ = std::thread([this] { node_->Run(); });
    ClientOptions c;
    c.seeds = {"127.0.0.1:" + std::to_string(node_->port())};
    c.request_timeout = milliseconds(5000);
    auto connected = Client::Connect(c);
    ASSERT_TRUE(connected.ok()) << connected.status().ToString();
    client_ = std::move(connected).value();
  }

  void StopNode() {
    if (!node_) return;
    node_->Stop();
    thread_.join();
    node_.reset();
  }

  // The members of `tag` on the node, read back through the audience.
  std::set<uint64_t> Members(const std::string& tag) {
    std::set<uint64_t> out;
    uint64_t cursor = 0;
    for (int page = 0; page < 1000; ++page) {
      auto got = client_->Audience(tag, cursor, 65536);
      if (!got.ok() && got.status().IsUnknownTag()) return out;
      EXPECT_TRUE(got.ok()) << got.status().ToString();
      if (!got.ok()) return out;
      out.insert(got->users.begin(), got->users.end());
      if (!got->next_cursor) break;
      cursor = *got->next_cursor;
    }
    return out;
  }

  SnapshotSet MakeSet(const std::map<std::string, std::set<uint64_t>>& tags) {
    SnapshotSet set(kShardBits);
    for (const auto& [tag, users] : tags) {
      set.AddTag(tag);
      for (uint64_t u : users) set.Add(tag, u);
    }
    return set;
  }

  std::vector<TagLoadResult> Load(const std::map<std::string, std::set<uint64_t>>& tags,
                                  uint64_t ts, uint64_t max_in_flight = 64u << 20) {
    SnapshotSet set = MakeSet(tags);
    SnapshotLoadOptions options;
    options.ts = ts;
    options.max_in_flight_bytes = max_in_flight;
    options.request_timeout = milliseconds(5000);
    auto results = LoadSnapshotSet(client_.get(), &set, options);
    EXPECT_TRUE(results.ok()) << results.status().ToString();
    EXPECT_EQ(set.tag_count(), 0u) << "every loaded tag is erased from the set";
    return results.ok() ? std::move(results).value() : std::vector<TagLoadResult>{};
  }

  std::unique_ptr<net::Node> node_;
  std::thread thread_;
  std::unique_ptr<Client> client_;
};

std::set<uint64_t> RandomUsers(std::mt19937_64& rng, size_t n, uint64_t limit) {
  std::set<uint64_t> out;
  while (out.size() < n) out.insert(rng() % limit);
  return out;
}

TEST_F(SnapshotLoaderTest, LoadsEveryTagAcrossShardsAndReportsWhatItSent) {
  std::mt19937_64 rng(7);
  std::map<std::string, std::set<uint64_t>> tags = {
      {"apple_fan", RandomUsers(rng, 5000, 40 << kShardBits)},
      {"frequent_buyer", RandomUsers(rng, 300, 3 << kShardBits)},
      {"one_user", {(uint64_t{5} << kShardBits) - 1}},
  };
  auto results = Load(tags, kTs);
  ASSERT_EQ(results.size(), 3u);
  for (const TagLoadResult& r : results) {
    EXPECT_EQ(r.state, TagLoadState::kApplied) << r.tag << ": " << r.message;
    EXPECT_EQ(r.users, tags[r.tag].size()) << r.tag;
    std::set<uint64_t> shards;
    for (uint64_t u : tags[r.tag]) shards.insert(u >> kShardBits);
    EXPECT_EQ(r.shards_sent, shards.size()) << r.tag;
    EXPECT_EQ(Members(r.tag), tags[r.tag]) << r.tag;
  }
  EXPECT_EQ(results[0].tag, "apple_fan") << "tags are loaded in name order";
}

TEST_F(SnapshotLoaderTest, ARerunOfTheSameLoadChangesNothing) {
  std::mt19937_64 rng(8);
  std::map<std::string, std::set<uint64_t>> tags = {{"t", RandomUsers(rng, 2000, 20 << kShardBits)}};
  ASSERT_EQ(Load(tags, kTs).at(0).state, TagLoadState::kApplied);
  auto again = Load(tags, kTs);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].state, TagLoadState::kUnchanged) << again[0].message;
  EXPECT_EQ(again[0].ties, 0u);
  EXPECT_EQ(Members("t"), tags["t"]);
}

TEST_F(SnapshotLoaderTest, AnOlderSnapshotIsRefusedAsStaleAndChangesNothing) {
  std::map<std::string, std::set<uint64_t>> newer = {{"t", {1, 2, 3}}, {"u", {9}}};
  ASSERT_EQ(Load(newer, kTs).at(0).state, TagLoadState::kApplied);
  std::map<std::string, std::set<uint64_t>> older = {{"t", {4, 5}}, {"v", {7}}};
  auto results = Load(older, kTs - 1);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].tag, "t");
  EXPECT_EQ(results[0].state, TagLoadState::kStale);
  EXPECT_NE(results[0].message.find("STALE_SNAPSHOT"), std::string::npos) << results[0].message;
  EXPECT_EQ(results[1].state, TagLoadState::kApplied) << "staleness is per tag";
  EXPECT_EQ(Members("t"), (std::set<uint64_t>{1, 2, 3}));
  EXPECT_EQ(Members("v"), (std::set<uint64_t>{7}));
}

TEST_F(SnapshotLoaderTest, ShardsAbsentFromANewerLoadAreEmptied) {
  const uint64_t s0 = 10, s1 = (uint64_t{1} << kShardBits) + 10, s7 = (uint64_t{7} << kShardBits);
  ASSERT_EQ(Load({{"t", {s0, s1, s7}}}, kTs).at(0).state, TagLoadState::kApplied);
  auto results = Load({{"t", {s1 + 1}}}, kTs + 1);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].state, TagLoadState::kApplied);
  EXPECT_EQ(results[0].shards_sent, 1u);
  EXPECT_GE(results[0].shards_emptied, 2u) << "shards 0 and 7 held members as of kTs";
  EXPECT_EQ(Members("t"), (std::set<uint64_t>{s1 + 1}));
}

TEST_F(SnapshotLoaderTest, ATagWithNoMembersIsDropped) {
  ASSERT_EQ(Load({{"gone", {1, 5000, 90000}}}, kTs).at(0).state, TagLoadState::kApplied);
  auto results = Load({{"gone", {}}}, kTs + 5);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].state, TagLoadState::kApplied) << results[0].message;
  EXPECT_EQ(results[0].shards_sent, 0u);
  EXPECT_TRUE(Members("gone").empty());
  // An event older than the drop stays superseded by it (rule 1 via rule 4).
  auto applied = client_->ApplyEvents({{5000, "gone", client::TagOp::kSet, kTs + 4}});
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_TRUE(Members("gone").empty());
}

TEST_F(SnapshotLoaderTest, ATinyInFlightBudgetStillLoadsEverything) {
  std::mt19937_64 rng(9);
  std::map<std::string, std::set<uint64_t>> tags;
  for (int i = 0; i < 12; ++i) {
    tags["tag" + std::to_string(i)] = RandomUsers(rng, 400, 30 << kShardBits);
  }
  std::vector<SnapshotLoadProgress> seen;
  SnapshotSet set = MakeSet(tags);
  SnapshotLoadOptions options;
  options.ts = kTs;
  options.max_in_flight_bytes = 1;  // one part at a time
  auto results = LoadSnapshotSet(client_.get(), &set, options,
                                 [&](const SnapshotLoadProgress& p) { seen.push_back(p); });
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->size(), tags.size());
  for (const TagLoadResult& r : *results) {
    EXPECT_EQ(r.state, TagLoadState::kApplied) << r.tag << ": " << r.message;
    EXPECT_EQ(Members(r.tag), tags[r.tag]) << r.tag;
  }
  ASSERT_FALSE(seen.empty()) << "the final progress is always reported";
  EXPECT_EQ(seen.back().tags_done, tags.size());
  EXPECT_EQ(seen.back().tags_total, tags.size());
  EXPECT_EQ(seen.back().bytes_sent, seen.back().bytes_total);
}

TEST_F(SnapshotLoaderTest, ZeroTimestampIsABadRequest) {
  SnapshotSet set = MakeSet({{"t", {1}}});
  SnapshotLoadOptions options;
  options.ts = 0;
  auto results = LoadSnapshotSet(client_.get(), &set, options);
  ASSERT_FALSE(results.ok());
  EXPECT_TRUE(results.status().IsBadRequest()) << results.status().ToString();
}

TEST_F(SnapshotLoaderTest, ANodeThatIsGoneFailsEveryTagWithTheTransportError) {
  StopNode();
  SnapshotSet set = MakeSet({{"a", {1, 2}}, {"b", {}}});
  SnapshotLoadOptions options;
  options.ts = kTs;
  options.request_timeout = milliseconds(500);
  auto results = LoadSnapshotSet(client_.get(), &set, options);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->size(), 2u);
  for (const TagLoadResult& r : *results) {
    EXPECT_EQ(r.state, TagLoadState::kFailed) << r.tag;
    EXPECT_NE(r.message.find("IO_ERROR"), std::string::npos) << r.message;
  }
}

TEST(TagLoadStateTest, NamesAreStable) {
  EXPECT_STREQ(TagLoadStateName(TagLoadState::kApplied), "applied");
  EXPECT_STREQ(TagLoadStateName(TagLoadState::kUnchanged), "unchanged");
  EXPECT_STREQ(TagLoadStateName(TagLoadState::kStale), "stale");
  EXPECT_STREQ(TagLoadStateName(TagLoadState::kFailed), "failed");
}

}  // namespace
}  // namespace tagcache::ingest
