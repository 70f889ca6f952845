// What the cluster builds on: audience queries scoped to a set of shards
// (a node answers for the shards it owns, a coordinator adds the answers
// up), per-shard digests (replicas find the shards that differ) and
// dropping a shard (a node gives a shard up after a move).

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <roaring/roaring.hh>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "server/test_util.h"
#include "tagcache/server/engine.h"

namespace tagcache::test {
namespace {

// Shards of 256 users, so a few hundred users spread over many shards.
constexpr int kBits = 8;
constexpr uint64_t kShards = 12;
constexpr UserId U(uint64_t shard, uint64_t offset) { return UserAt(shard, offset, kBits); }

using Events = std::vector<Event>;
using Users = std::vector<UserId>;

const std::vector<std::string> kTags{"a", "b", "c", "d"};

// Random events over kShards shards plus snapshots and a commit that
// empties shards, so columns have bases, overrides and floors.
Events RandomEvents(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  Events out;
  for (size_t i = 0; i < n; ++i) {
    UserId user = U(rng() % kShards, rng() % 64);
    const std::string& tag = kTags[rng() % kTags.size()];
    Timestamp ts = 1 + rng() % 200;
    out.push_back(rng() % 4 == 0 ? ClearEv(user, tag, ts) : SetEv(user, tag, ts));
  }
  return out;
}

void BuildState(Engine& engine) {
  TC_ASSERT_OK(engine.ApplyEvents(RandomEvents(7, 3000)));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("c", 100, Users{U(0, 1), U(1, 2), U(3, 3), U(3, 4)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("e", 50, Users{U(2, 1), U(5, 5), U(11, 6)}));
}

const std::vector<std::string> kExprs{"a",        "!a",     "a & b",        "a | c", "b - d",
                                      "!(a | b)", "!c & d", "(a & !b) | e", "e"};

const ShardFilter kEven = [](uint64_t shard) { return shard % 2 == 0; };
const ShardFilter kOdd = [](uint64_t shard) { return shard % 2 == 1; };

Users FilteredAudience(const Engine& engine, const std::string& expr, const ShardFilter& filter,
                       size_t limit) {
  Users out;
  UserId cursor = 0;
  for (;;) {
    Result<AudiencePage> page = engine.Audience(expr, cursor, limit, filter);
    if (!page.ok()) {
      ADD_FAILURE() << expr << " -> " << page.status().ToString();
      return {};
    }
    out.insert(out.end(), page->users.begin(), page->users.end());
    if (!page->next_cursor) return out;
    cursor = *page->next_cursor;
  }
}

std::map<uint64_t, Roaring> BitmapsOf(const Engine& engine, const std::string& expr,
                                      const ShardFilter& filter) {
  std::map<uint64_t, Roaring> out;
  Result<std::vector<ShardBitmap>> bitmaps = engine.AudienceBitmaps(expr, filter);
  EXPECT_TRUE(bitmaps.ok()) << expr;
  if (!bitmaps.ok()) return out;
  for (const ShardBitmap& b : *bitmaps) {
    Roaring r = Roaring::read(b.portable.data(), true);
    EXPECT_EQ(r.cardinality(), b.cardinality);
    EXPECT_TRUE(out.emplace(b.shard, std::move(r)).second) << "shard " << b.shard << " twice";
  }
  return out;
}

std::map<std::string, uint64_t> TopOf(const Engine& engine, const std::string& expr,
                                      const ShardFilter& filter) {
  std::map<std::string, uint64_t> out;
  Result<std::vector<TagCount>> top = engine.TopTags(expr, 0, filter);
  EXPECT_TRUE(top.ok()) << expr;
  if (!top.ok()) return out;
  for (const TagCount& t : *top) out[std::string(t.tag)] = t.count;
  return out;
}

// ---- Shard filters -------------------------------------------------------------

TEST(EngineClusterTest, DisjointFiltersAddUpToTheUnfilteredAnswer) {
  Engine engine(TestOptions(kBits, 2));
  BuildState(engine);
  for (const std::string& expr : kExprs) {
    SCOPED_TRACE(expr);
    Result<uint64_t> all = engine.Count(expr);
    Result<uint64_t> even = engine.Count(expr, kEven);
    Result<uint64_t> odd = engine.Count(expr, kOdd);
    TC_ASSERT_OK(all);
    TC_ASSERT_OK(even);
    TC_ASSERT_OK(odd);
    EXPECT_GT(*even, 0u);
    EXPECT_GT(*odd, 0u);
    EXPECT_EQ(*even + *odd, *all);

    Users all_users = AllAudience(engine, expr);
    Users even_users = FilteredAudience(engine, expr, kEven, 7);
    Users odd_users = FilteredAudience(engine, expr, kOdd, 7);
    EXPECT_EQ(even_users.size(), *even);
    for (UserId u : even_users) EXPECT_EQ((u >> kBits) % 2, 0u) << u;
    for (UserId u : odd_users) EXPECT_EQ((u >> kBits) % 2, 1u) << u;
    Users merged = even_users;
    merged.insert(merged.end(), odd_users.begin(), odd_users.end());
    std::sort(merged.begin(), merged.end());
    EXPECT_EQ(merged, all_users);

    std::map<uint64_t, Roaring> bitmaps = BitmapsOf(engine, expr, kEven);
    for (auto& [shard, bitmap] : BitmapsOf(engine, expr, kOdd)) {
      EXPECT_TRUE(bitmaps.emplace(shard, bitmap).second) << "shard " << shard << " in both";
    }
    EXPECT_EQ(bitmaps, BitmapsOf(engine, expr, {}));

    std::map<std::string, uint64_t> top = TopOf(engine, expr, kEven);
    for (const auto& [tag, count] : TopOf(engine, expr, kOdd)) top[tag] += count;
    EXPECT_EQ(top, TopOf(engine, expr, {}));
  }
}

TEST(EngineClusterTest, FilterSelectingOneShardAnswersForItAlone) {
  Engine engine(TestOptions(kBits));
  BuildState(engine);
  const ShardFilter only3 = [](uint64_t shard) { return shard == 3; };
  const ShardFilter none = [](uint64_t) { return false; };
  for (const std::string& expr : kExprs) {
    SCOPED_TRACE(expr);
    Users all = AllAudience(engine, expr);
    Users want;
    for (UserId u : all) {
      if (u >> kBits == 3) want.push_back(u);
    }
    EXPECT_EQ(FilteredAudience(engine, expr, only3, 1000), want);
    // A cursor beyond the shard: nothing left.
    Result<AudiencePage> page = engine.Audience(expr, U(4, 0), 10, only3);
    TC_ASSERT_OK(page);
    EXPECT_TRUE(page->users.empty());
    EXPECT_FALSE(page->next_cursor);
    Result<uint64_t> n = engine.Count(expr, none);
    TC_ASSERT_OK(n);
    EXPECT_EQ(*n, 0u);
    EXPECT_TRUE(BitmapsOf(engine, expr, none).empty());
    EXPECT_TRUE(TopOf(engine, expr, none).empty());
  }
}

TEST(EngineClusterTest, FilterIsAskedOnlyAboutShardsHoldingState) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(2, 1), "a", 10), SetEv(U(9, 1), "a", 10)}));
  std::set<uint64_t> asked;
  std::mutex mu;
  ShardFilter record = [&](uint64_t shard) {
    std::lock_guard<std::mutex> lock(mu);
    asked.insert(shard);
    return true;
  };
  TC_ASSERT_OK(engine.Count("a", record));
  EXPECT_EQ(asked, (std::set<uint64_t>{2, 9}));
  Result<uint64_t> unknown = engine.Count("nope", record);
  EXPECT_FALSE(unknown.ok());
  EXPECT_TRUE(unknown.status().IsUnknownTag()) << unknown.status().ToString();
}

TEST(EngineClusterTest, TopTagsWithKZeroReturnsEveryNonzeroTagRanked) {
  Engine engine(TestOptions(kBits));
  BuildState(engine);
  TC_ASSERT_OK(engine.ApplyFullSnapshot("never", 10, Users{}));  // a tag no user has
  for (const std::string& expr : kExprs) {
    SCOPED_TRACE(expr);
    Result<std::vector<TagCount>> all = engine.TopTags(expr, 0);
    TC_ASSERT_OK(all);
    Result<std::vector<TagCount>> big = engine.TopTags(expr, 1000);
    TC_ASSERT_OK(big);
    ASSERT_EQ(all->size(), big->size());
    for (size_t i = 0; i < all->size(); ++i) {
      EXPECT_EQ((*all)[i].tag, (*big)[i].tag);
      EXPECT_EQ((*all)[i].count, (*big)[i].count);
    }
    // Exactly the tags with a nonzero count, each with its count.
    std::map<std::string, uint64_t> got;
    for (const TagCount& t : *all) got[std::string(t.tag)] = t.count;
    std::map<std::string, uint64_t> want;
    for (const std::string tag : {"a", "b", "c", "d", "e", "never"}) {
      Result<uint64_t> n = engine.Count("(" + expr + ") & " + tag);
      TC_ASSERT_OK(n);
      if (*n > 0) want[tag] = *n;
    }
    EXPECT_EQ(got, want);
    Result<std::vector<TagCount>> two = engine.TopTags(expr, 2);
    TC_ASSERT_OK(two);
    ASSERT_EQ(two->size(), std::min<size_t>(2, all->size()));
  }
}

// ---- Shard digests ---------------------------------------------------------------

TEST(EngineClusterTest, ShardDigestDependsOnlyOnTheShardsWrites) {
  Events events = RandomEvents(11, 2000);
  Events shuffled = events;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(5));
  Engine a(TestOptions(kBits)), b(TestOptions(kBits));
  TC_ASSERT_OK(a.ApplyEvents(events));
  TC_ASSERT_OK(a.ApplyFullSnapshot("c", 100, Users{U(0, 1), U(3, 3)}));
  TC_ASSERT_OK(b.ApplyFullSnapshot("c", 100, Users{U(3, 3), U(0, 1)}));
  for (size_t i = 0; i < shuffled.size(); i += 100) {
    size_t end = std::min(shuffled.size(), i + 100);
    TC_ASSERT_OK(b.ApplyEvents(Events(shuffled.begin() + i, shuffled.begin() + end)));
  }
  ASSERT_EQ(a.StateDigest(), b.StateDigest());
  std::vector<std::pair<uint64_t, uint64_t>> digests = a.ShardDigests();
  ASSERT_EQ(digests.size(), kShards);
  EXPECT_EQ(digests, b.ShardDigests());
  std::set<uint64_t> distinct;
  for (const auto& [shard, digest] : digests) {
    EXPECT_EQ(a.ShardDigest(shard), digest);
    EXPECT_NE(digest, 0u);
    distinct.insert(digest);
  }
  EXPECT_EQ(distinct.size(), kShards) << "shards with different states digest differently";

  // One differing event changes its shard's digest and no other.
  TC_ASSERT_OK(b.ApplyEvents(Events{SetEv(U(4, 200), "a", 300)}));
  for (const auto& [shard, digest] : digests) {
    if (shard == 4) {
      EXPECT_NE(b.ShardDigest(shard), digest);
    } else {
      EXPECT_EQ(b.ShardDigest(shard), digest) << "shard " << shard;
    }
  }
  // So does an event that only loses (a known user, no membership change)...
  Engine c(TestOptions(kBits)), d(TestOptions(kBits));
  TC_ASSERT_OK(c.ApplyFullSnapshot("t", 100, Users{U(1, 1)}));
  TC_ASSERT_OK(d.ApplyFullSnapshot("t", 100, Users{U(1, 1)}));
  TC_ASSERT_OK(d.ApplyEvents(Events{SetEv(U(1, 2), "t", 50)}));
  EXPECT_NE(c.ShardDigest(1), d.ShardDigest(1));
  // ...and a clear of a non-member (an override, no membership change).
  Engine e(TestOptions(kBits));
  TC_ASSERT_OK(e.ApplyFullSnapshot("t", 100, Users{U(1, 1)}));
  TC_ASSERT_OK(e.ApplyEvents(Events{ClearEv(U(1, 7), "t", 150)}));
  EXPECT_NE(c.ShardDigest(1), e.ShardDigest(1));

  // The filter picks shards, the digests stay the same.
  std::vector<std::pair<uint64_t, uint64_t>> even = a.ShardDigests(kEven);
  std::vector<std::pair<uint64_t, uint64_t>> want;
  for (const auto& p : digests) {
    if (p.first % 2 == 0) want.push_back(p);
  }
  EXPECT_EQ(even, want);
}

TEST(EngineClusterTest, ShardWithoutStateDigestsToZero) {
  Engine engine(TestOptions(kBits));
  EXPECT_EQ(engine.ShardDigest(0), 0u);
  EXPECT_TRUE(engine.ShardDigests().empty());
  // A clear at ts 0 loses to "no base" (rule 1) and names no member: the
  // shard holds only the merge's identity.
  TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(U(3, 1), "a", 0)}));
  EXPECT_EQ(engine.ShardDigest(3), 0u);
  EXPECT_TRUE(engine.ShardDigests().empty());
  Engine other(TestOptions(kBits));
  TC_ASSERT_OK(other.MergeTags(engine.ExportTags()));
  EXPECT_EQ(engine.StateDigest(), other.StateDigest());
  // Any real state digests to something else.
  TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(U(3, 1), "a", 1)}));
  EXPECT_NE(engine.ShardDigest(3), 0u);
}

TEST(EngineClusterTest, ShardDigestAgreesAfterRepairByMerge) {
  Engine full(TestOptions(kBits)), partial(TestOptions(kBits));
  Events events = RandomEvents(3, 1500);
  TC_ASSERT_OK(full.ApplyEvents(events));
  TC_ASSERT_OK(partial.ApplyEvents(Events(events.begin(), events.begin() + 700)));
  std::vector<uint64_t> differing;
  std::map<uint64_t, uint64_t> theirs;
  for (const auto& [shard, digest] : partial.ShardDigests()) theirs[shard] = digest;
  for (const auto& [shard, digest] : full.ShardDigests()) {
    if (theirs[shard] != digest) differing.push_back(shard);
  }
  ASSERT_FALSE(differing.empty());
  TC_ASSERT_OK(partial.MergeTags(full.ExportTags()));
  for (uint64_t shard : differing) TC_ASSERT_OK(partial.MergeShard(full.ExportShard(shard)));
  EXPECT_EQ(partial.ShardDigests(), full.ShardDigests());
  EXPECT_EQ(partial.StateDigest(), full.StateDigest());
}

// ---- DropShard -------------------------------------------------------------------

TEST(EngineClusterTest, DropShardRemovesItsStateAndMergeRestoresIt) {
  Engine engine(TestOptions(kBits));
  BuildState(engine);
  const uint64_t digest_before = engine.StateDigest();
  const std::vector<std::pair<uint64_t, uint64_t>> digests_before = engine.ShardDigests();
  const std::vector<TagState> tags = engine.ExportTags();
  const ShardState exported = engine.ExportShard(3);
  ASSERT_FALSE(exported.columns.empty());
  const Users in_3 = [&] {
    Users out;
    for (UserId u : AllAudience(engine, "a | b | c | d | e")) {
      if (u >> kBits == 3) out.push_back(u);
    }
    return out;
  }();
  ASSERT_FALSE(in_3.empty());
  std::map<std::string, uint64_t> counts_before;
  for (const std::string& expr : kExprs) {
    counts_before[expr] = *engine.Count(expr);
  }
  const uint64_t known_3 = exported.known.cardinality();
  const EngineStats stats_before = engine.Stats();

  engine.DropShard(3);
  EXPECT_EQ(engine.ShardDigest(3), 0u);
  std::vector<uint64_t> ids = engine.ShardIds();
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 3u), 0);
  for (UserId u : in_3) {
    EXPECT_TRUE(engine.GetTags(u).empty()) << u;
    std::vector<std::string_view> names{"a", "b", "c", "d"};
    Result<std::vector<bool>> has = engine.HasTags(u, names);
    TC_ASSERT_OK(has);
    EXPECT_EQ(std::count(has->begin(), has->end(), true), 0);
  }
  for (const std::string& expr : kExprs) {
    Result<uint64_t> all = engine.Count(expr);
    Result<uint64_t> not3 = engine.Count(expr, [](uint64_t s) { return s != 3; });
    TC_ASSERT_OK(all);
    EXPECT_EQ(*all, *not3) << expr;
    EXPECT_LE(*all, counts_before[expr]) << expr;
  }
  EXPECT_EQ(*engine.Count("!a & !b & !c & !d & !e", [](uint64_t s) { return s == 3; }), 0u);
  for (const auto& [shard, digest] : digests_before) {
    if (shard != 3) {
      EXPECT_EQ(engine.ShardDigest(shard), digest) << "shard " << shard;
    }
  }
  const EngineStats stats = engine.Stats();
  EXPECT_EQ(stats.shards, stats_before.shards - 1);
  EXPECT_EQ(stats.known_users, stats_before.known_users - known_3);
  EXPECT_LT(stats.memory.total(), stats_before.memory.total());
  // Tags stay: they are per tag, not per shard.
  EXPECT_EQ(engine.ExportTags().size(), tags.size());

  // Dropping it again, or a shard that never existed, changes nothing.
  const uint64_t dropped_digest = engine.StateDigest();
  engine.DropShard(3);
  engine.DropShard(999);
  EXPECT_EQ(engine.StateDigest(), dropped_digest);

  // The shard moves back: its exported state restores it exactly.
  TC_ASSERT_OK(engine.MergeTags(tags));
  TC_ASSERT_OK(engine.MergeShard(exported));
  EXPECT_EQ(engine.ShardDigests(), digests_before);
  EXPECT_EQ(engine.StateDigest(), digest_before);
  for (const std::string& expr : kExprs) EXPECT_EQ(*engine.Count(expr), counts_before[expr]);
  for (UserId u : in_3) EXPECT_FALSE(engine.GetTags(u).empty()) << u;
}

TEST(EngineClusterTest, WritesAfterDropStartTheShardAnew) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 100, Users{U(1, 1), U(1, 2), U(2, 1)}));
  engine.DropShard(1);
  // The base as of 100 went with the shard: an older event wins now.
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(1, 3), "a", 50)}));
  EXPECT_EQ(TagsOf(engine, U(1, 3)), (TagMap{{"a", 50}}));
  EXPECT_TRUE(engine.GetTags(U(1, 1)).empty());
  EXPECT_EQ(TagsOf(engine, U(2, 1)), (TagMap{{"a", 100}}));
  TC_ASSERT_OK(engine.ApplySnapshot("a", 200, 1, OffsetsOf({9})));
  EXPECT_EQ(AllAudience(engine, "a"), (Users{U(1, 9), U(2, 1)}));
  EXPECT_EQ(*engine.Count("!a"), 1u);  // U(1, 3): known, cleared by the newer base
}

// Readers, writers and drops at once: nothing crashes or deadlocks, and
// once the writers stop, a last drop leaves nothing of the shard.
TEST(EngineClusterTest, DropShardIsSafeAgainstConcurrentReadersAndWriters) {
  EngineOptions options = TestOptions(kBits, 2);
  options.index_rebuild_min_changes = 0;  // bulk writes drop indexes: the rebuild thread runs too
  options.index_rebuild_delay = std::chrono::milliseconds(1);
  Engine engine(options);
  // Every tag the readers name exists from the start (else UNKNOWN_TAG).
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(9, 0), "a", 1), SetEv(U(9, 0), "b", 1),
                                         SetEv(U(9, 0), "c", 1), SetEv(U(9, 0), "d", 1)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("s", 1, Users{U(9, 0)}));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    std::mt19937 rng(1);
    while (!stop) {
      Events batch;
      for (int i = 0; i < 50; ++i) {
        batch.push_back(SetEv(U(rng() % 4, rng() % 256), kTags[rng() % 4], 1 + rng() % 1000));
      }
      ASSERT_TRUE(engine.ApplyEvents(batch).ok());
      Roaring part;
      for (int i = 0; i < 20; ++i) part.add(rng() % 256);
      // Stale parts are refused: fine, they race with newer ones on purpose.
      Result<SnapshotOutcome> r = engine.ApplySnapshot("s", 1 + rng() % 1000, rng() % 4, part);
      (void)r;
    }
  });
  threads.emplace_back([&] {
    while (!stop) {
      ASSERT_TRUE(engine.Count("a | !b").ok());
      ASSERT_TRUE(engine.TopTags("a", 0).ok());
      for (UserId u = 0; u < U(4, 0); u += 37) engine.GetTags(u, true);
      engine.ShardDigests();
      engine.StateDigest();
      engine.Stats(true);
    }
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
    engine.DropShard(i % 4);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  stop = true;
  for (std::thread& t : threads) t.join();
  for (uint64_t shard : {0, 1, 2, 3, 9}) engine.DropShard(shard);
  EXPECT_TRUE(engine.ShardDigests().empty());
  EXPECT_TRUE(engine.ShardIds().empty());
  EXPECT_EQ(*engine.Count("a | b | c | d | s | !a"), 0u);
}

}  // namespace
}  // namespace tagcache::test
