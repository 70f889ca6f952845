// Audience queries (Count, Audience, AudienceBitmaps, TopTags) checked against
// the set-algebra reference of set_reference.h: a small multi-shard dataset
// with overrides, and a large one whose bitmaps mix Roaring's bitset, run and
// array containers, so every container pairing meets in one expression.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <roaring/roaring.hh>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "server/set_reference.h"
#include "server/test_util.h"
#include "tagcache/server/engine.h"

namespace tagcache::test {
namespace {

// Reference state built alongside the engine: std::set per tag, and the known
// users (everyone a write ever set a tag for).
struct Reference {
  std::map<std::string, std::set<UserId>> tags;
  std::set<UserId> known;

  std::map<std::string, UserSet> AsSets() const {
    std::map<std::string, UserSet> out;
    for (const auto& [name, members] : tags) out[name] = UserSet(members.begin(), members.end());
    return out;
  }
  UserSet Known() const { return UserSet(known.begin(), known.end()); }
};

void ExpectCountMatches(const Engine& engine, const RefExpr& e,
                        const std::map<std::string, UserSet>& sets, const UserSet& known,
                        const std::string& text) {
  const UserSet want = Evaluate(e, sets, known);
  Result<uint64_t> n = engine.Count(text);
  ASSERT_TRUE(n.ok()) << text << " -> " << n.status().ToString();
  EXPECT_EQ(*n, want.size()) << text << "  (canonical " << Canonical(e) << ")";
}

// ---- A small dataset over several shards -------------------------------------------

class SmallDatasetTest : public ::testing::Test {
 protected:
  static constexpr int kBits = 8;
  static inline const std::vector<std::string> kTags{
      "apple_fan", "frequent_buyer", "churned", "vip:gold", "web-visitor", "x.y", "tie_a", "tie_b"};

  SmallDatasetTest() : engine_(TestOptions(kBits)) {
    std::mt19937_64 rng(7);
    const std::vector<uint64_t> shards{0, 1, 2, 3, 40, uint64_t{1} << 32};
    std::set<UserId> pool;
    for (int i = 0; pool.size() < 80; ++i) {
      pool.insert(UserAt(shards[i % shards.size()], rng() % 256, kBits));
    }
    users_.assign(pool.begin(), pool.end());

    // Snapshots at ts 100, with different densities. tie_a and tie_b have the
    // same members, so TopTags must order them by name.
    const std::map<std::string, int> one_in{{"apple_fan", 2}, {"frequent_buyer", 3}, {"churned", 5},
                                            {"vip:gold", 10}, {"web-visitor", 2},    {"x.y", 16},
                                            {"tie_a", 4}};
    for (const auto& [tag, n] : one_in) {
      std::vector<UserId> members;
      for (UserId u : users_) {
        if (rng() % n == 0) members.push_back(u);
      }
      Snapshot(tag, members);
      if (tag == "tie_a") Snapshot("tie_b", members);
    }
    // Events at distinct, increasing ts above the base: the last one for a
    // (user, tag) wins, so the reference can apply them in order.
    Timestamp ts = 200;
    for (int i = 0; i < 60; ++i) {
      const UserId u = users_[rng() % users_.size()];
      const std::string& tag = kTags[rng() % 6];
      Apply(rng() % 2 == 0 ? SetEv(u, tag, ts++) : ClearEv(u, tag, ts++));
    }
    // Users only ever cleared are not known; users only ever set by events are.
    Apply(ClearEv(ghost_, "apple_fan", ts++));
    Apply(ClearEv(ghost_ + 1, "churned", ts++));
    Apply(SetEv(newcomer_, "x.y", ts++));
    sets_ = ref_.AsSets();
    known_ = ref_.Known();
  }

  void Snapshot(const std::string& tag, const std::vector<UserId>& members) {
    EXPECT_TRUE(engine_.ApplyFullSnapshot(tag, 100, members).ok());
    ref_.tags[tag].insert(members.begin(), members.end());
    ref_.known.insert(members.begin(), members.end());
  }

  void Apply(const Event& e) {
    Result<ApplyEventsResult> r = engine_.ApplyEvents(std::vector<Event>{e});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (e.op == TagOp::kSet) {
      ref_.tags[e.tag].insert(e.user);
      ref_.known.insert(e.user);
    } else {
      ref_.tags[e.tag].erase(e.user);
    }
  }

  UserSet Eval(const RefExpr& e) const { return Evaluate(e, sets_, known_); }

  // Hand-written query texts with the trees the grammar says they denote.
  std::vector<std::pair<std::string, RefExprPtr>> HandWritten() const {
    RefExprPtr a = Tag("apple_fan"), f = Tag("frequent_buyer"), c = Tag("churned");
    RefExprPtr v = Tag("vip:gold"), w = Tag("web-visitor"), x = Tag("x.y");
    return {
        {"apple_fan", a},
        {"apple_fan & frequent_buyer & !churned", And(And(a, f), Not(c))},
        {"apple_fan | frequent_buyer & churned", Or(a, And(f, c))},
        {"apple_fan - frequent_buyer - churned", AndNot(AndNot(a, f), c)},
        {"!(apple_fan | web-visitor)", Not(Or(a, w))},
        {"!apple_fan & web-visitor", And(Not(a), w)},
        {"web-visitor & (x.y - vip:gold)", And(w, AndNot(x, v))},
        {"!!apple_fan", Not(Not(a))},
        {"apple_fan & web-visitor - vip:gold | x.y", Or(AndNot(And(a, w), v), x)},
        {"( apple_fan )\t|\t!x.y", Or(a, Not(x))},
        {"apple_fan | !apple_fan", Or(a, Not(a))},
        {"churned - churned", AndNot(c, c)},
    };
  }

  Engine engine_;
  std::vector<UserId> users_;
  const UserId ghost_ = UserAt(77, 5, kBits);
  const UserId newcomer_ = UserAt(78, 6, kBits);
  Reference ref_;
  std::map<std::string, UserSet> sets_;
  UserSet known_;
};

TEST_F(SmallDatasetTest, CountMatchesReferenceForHandWrittenExpressions) {
  for (const auto& [text, tree] : HandWritten()) {
    ExpectCountMatches(engine_, *tree, sets_, known_, text);
  }
}

TEST_F(SmallDatasetTest, CountAndAudienceMatchReferenceForRandomExpressions) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 300; ++i) {
    RefExprPtr e = RandomExpr(rng, kTags, 3);
    const std::string text = Render(*e, &rng);
    ExpectCountMatches(engine_, *e, sets_, known_, text);
    EXPECT_EQ(AllAudience(engine_, text), Eval(*e)) << text;
  }
}

TEST_F(SmallDatasetTest, NotMeansKnownUsersWithoutTheTag) {
  const UserSet not_apple = AllAudience(engine_, "!apple_fan");
  EXPECT_EQ(not_apple, Difference(known_, sets_.at("apple_fan")));
  EXPECT_FALSE(std::binary_search(not_apple.begin(), not_apple.end(), ghost_))
      << "a user only ever cleared is not known";
  EXPECT_TRUE(std::binary_search(not_apple.begin(), not_apple.end(), newcomer_))
      << "a user set by an event only is known";
  EXPECT_EQ(AllAudience(engine_, "apple_fan | !apple_fan"), known_);
}

TEST_F(SmallDatasetTest, AudiencePagesCoverEveryUserOnceInAscendingOrder) {
  const std::vector<std::pair<std::string, RefExprPtr>> cases{
      {"apple_fan | !apple_fan", Or(Tag("apple_fan"), Not(Tag("apple_fan")))},
      {"apple_fan", Tag("apple_fan")},
      {"!churned - x.y", AndNot(Not(Tag("churned")), Tag("x.y"))}};
  for (const auto& [text, tree] : cases) {
    const UserSet want = Eval(*tree);
    ASSERT_FALSE(want.empty()) << text;
    for (size_t limit : {size_t{1}, size_t{7}, size_t{1000}}) {
      SCOPED_TRACE(text + " limit " + std::to_string(limit));
      std::vector<UserId> got;
      UserId cursor = 0;
      size_t pages = 0;
      while (true) {
        ASSERT_LE(++pages, want.size() + 2) << "paging does not end";
        Result<AudiencePage> page = engine_.Audience(text, cursor, limit);
        ASSERT_TRUE(page.ok()) << page.status().ToString();
        EXPECT_LE(page->users.size(), limit);
        EXPECT_TRUE(std::is_sorted(page->users.begin(), page->users.end()));
        for (UserId u : page->users) EXPECT_GE(u, cursor);
        got.insert(got.end(), page->users.begin(), page->users.end());
        if (!page->next_cursor) break;
        ASSERT_FALSE(page->users.empty()) << "a page with a next cursor must make progress";
        EXPECT_GT(*page->next_cursor, page->users.back());
        cursor = *page->next_cursor;
      }
      EXPECT_EQ(got, want);
      EXPECT_GE(pages, (want.size() + limit - 1) / limit);
    }
  }
}

TEST_F(SmallDatasetTest, AudienceStartsAtTheCursor) {
  const UserSet& all = known_;
  for (size_t i = 0; i < all.size(); i += 9) {
    for (UserId cursor : {all[i], all[i] + 1}) {
      Result<AudiencePage> page = engine_.Audience("apple_fan | !apple_fan", cursor, 5);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      std::vector<UserId> want;
      for (UserId u : all) {
        if (u >= cursor && want.size() < 5) want.push_back(u);
      }
      EXPECT_EQ(page->users, want) << "cursor " << cursor;
    }
  }
}

TEST_F(SmallDatasetTest, AudienceBitmapsRoundTripToTheReferenceSet) {
  std::vector<std::pair<std::string, RefExprPtr>> cases = HandWritten();
  std::mt19937_64 rng(13);
  for (int i = 0; i < 40; ++i) {
    RefExprPtr e = RandomExpr(rng, kTags, 3);
    cases.emplace_back(Render(*e), e);
  }
  for (const auto& [text, tree] : cases) {
    Result<std::vector<ShardBitmap>> bitmaps = engine_.AudienceBitmaps(text);
    ASSERT_TRUE(bitmaps.ok()) << text << " -> " << bitmaps.status().ToString();
    std::set<uint64_t> shards_seen;
    UserSet got;
    for (const ShardBitmap& sb : *bitmaps) {
      EXPECT_TRUE(shards_seen.insert(sb.shard).second)
          << text << ": shard " << sb.shard << " twice";
      Roaring r = Roaring::readSafe(sb.portable.data(), sb.portable.size());
      EXPECT_EQ(r.cardinality(), sb.cardinality) << text << ": shard " << sb.shard;
      EXPECT_GT(sb.cardinality, 0u) << text << ": empty shards are left out";
      for (uint32_t offset : r) {
        EXPECT_LT(offset, 1u << kBits);
        got.push_back(UserAt(sb.shard, offset, kBits));
      }
    }
    EXPECT_EQ(MakeSet(got), Eval(*tree)) << text;
  }
}

TEST_F(SmallDatasetTest, TopTagsHaveExactCountsInCountThenNameOrder) {
  std::vector<std::pair<std::string, RefExprPtr>> cases = HandWritten();
  std::mt19937_64 rng(17);
  for (int i = 0; i < 30; ++i) {
    RefExprPtr e = RandomExpr(rng, kTags, 2);
    cases.emplace_back(Render(*e), e);
  }
  for (const auto& [text, tree] : cases) {
    for (size_t k : {size_t{1}, size_t{2}, size_t{3}, size_t{8}, size_t{100}}) {
      Result<std::vector<TagCount>> top = engine_.TopTags(text, k);
      ASSERT_TRUE(top.ok()) << text << " -> " << top.status().ToString();
      std::vector<std::pair<std::string, uint64_t>> got;
      for (const TagCount& tc : *top) got.emplace_back(std::string(tc.tag), tc.count);
      EXPECT_EQ(got, ReferenceTopTags(sets_, Eval(*tree), k)) << text << " k=" << k;
    }
  }
}

TEST_F(SmallDatasetTest, TopTagsBreaksCountTiesByName) {
  // tie_a and tie_b have identical members, hence identical counts everywhere.
  Result<std::vector<TagCount>> top = engine_.TopTags("tie_b", 100);
  ASSERT_TRUE(top.ok()) << top.status().ToString();
  ASSERT_GE(top->size(), 2u);
  EXPECT_EQ((*top)[0].tag, "tie_a");
  EXPECT_EQ((*top)[1].tag, "tie_b");
  EXPECT_EQ((*top)[0].count, (*top)[1].count);
}

TEST_F(SmallDatasetTest, TopTagsOmitsTagsWithZeroCount) {
  Result<std::vector<TagCount>> top = engine_.TopTags("x.y - apple_fan", 100);
  ASSERT_TRUE(top.ok()) << top.status().ToString();
  for (const TagCount& tc : *top) {
    EXPECT_NE(tc.tag, "apple_fan");
    EXPECT_GT(tc.count, 0u) << tc.tag;
  }
}

TEST_F(SmallDatasetTest, EmptyAudienceGivesEmptyResults) {
  const std::string text = "churned - churned";
  Result<uint64_t> n = engine_.Count(text);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 0u);
  Result<AudiencePage> page = engine_.Audience(text, 0, 10);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_TRUE(page->users.empty());
  EXPECT_FALSE(page->next_cursor.has_value());
  Result<std::vector<ShardBitmap>> bitmaps = engine_.AudienceBitmaps(text);
  ASSERT_TRUE(bitmaps.ok()) << bitmaps.status().ToString();
  EXPECT_TRUE(bitmaps->empty());
  Result<std::vector<TagCount>> top = engine_.TopTags(text, 5);
  ASSERT_TRUE(top.ok()) << top.status().ToString();
  EXPECT_TRUE(top->empty());
}

TEST_F(SmallDatasetTest, UnknownTagsAreAllNamedInTheError) {
  const std::string text = "apple_fan & nope_1 | (nope-2 - churned) | !nope_1";
  auto check = [&](const Status& s, const char* api) {
    EXPECT_EQ(s.code(), StatusCode::kUnknownTag) << api << ": " << s.ToString();
    EXPECT_NE(s.message().find("nope_1"), std::string::npos) << api << ": " << s.ToString();
    EXPECT_NE(s.message().find("nope-2"), std::string::npos) << api << ": " << s.ToString();
    EXPECT_EQ(s.message().find("apple_fan"), std::string::npos)
        << api << " names a known tag: " << s.ToString();
  };
  check(StatusOf(engine_.Count(text)), "Count");
  check(StatusOf(engine_.Audience(text, 0, 10)), "Audience");
  check(StatusOf(engine_.AudienceBitmaps(text)), "AudienceBitmaps");
  check(StatusOf(engine_.TopTags(text, 3)), "TopTags");
}

TEST_F(SmallDatasetTest, ParseErrorIsBadRequestWithPosition) {
  for (const auto& [text, pos] : std::vector<std::pair<std::string, int>>{
           {"apple_fan &", 11}, {"apple_fan churned", 10}, {"(apple_fan", 10}, {"a + b", 2}}) {
    Result<uint64_t> n = engine_.Count(text);
    EXPECT_EQ(n.status().code(), StatusCode::kBadRequest) << text << ": " << n.status().ToString();
    EXPECT_NE(n.status().message().find(std::to_string(pos)), std::string::npos)
        << text << ": " << n.status().ToString();
    EXPECT_TRUE(StatusOf(engine_.Audience(text, 0, 1)).IsBadRequest()) << text;
    EXPECT_TRUE(StatusOf(engine_.AudienceBitmaps(text)).IsBadRequest()) << text;
    EXPECT_TRUE(StatusOf(engine_.TopTags(text, 1)).IsBadRequest()) << text;
  }
}

// Long operator chains parse into deep left-leaning trees; evaluating them must not
// depend on recursion depth the parser limits for nesting.
TEST_F(SmallDatasetTest, LongFlatChainsEvaluate) {
  std::string and_chain = "apple_fan";
  std::string or_chain = "x.y";
  for (int i = 0; i < 2000; ++i) {
    and_chain += " & apple_fan";
    or_chain += i % 2 ? " | x.y" : " | churned";
  }
  Result<uint64_t> n = engine_.Count(and_chain);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, sets_.at("apple_fan").size());
  n = engine_.Count(or_chain);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, Union(sets_.at("x.y"), sets_.at("churned")).size());
}

// Readers must never see a half-applied snapshot of a (tag, shard): while one
// thread alternates two snapshots of a shard, counts are always one of the two.
TEST(EngineConcurrencyTest, ReadersNeverSeeHalfAppliedSnapshot) {
  Engine engine(TestOptions(8));
  Roaring small;
  Roaring large;
  for (uint32_t o = 0; o < 256; ++o) {
    if (o % 5 == 0) small.add(o);
    if (o % 3 != 0) large.add(o);
  }
  ASSERT_TRUE(engine.ApplySnapshot("t", 1, 4, small).ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (Timestamp ts = 2; ts < 3000; ++ts) {
      EXPECT_TRUE(engine.ApplySnapshot("t", ts, 4, ts % 2 ? large : small).ok());
    }
    done = true;
  });
  std::vector<uint64_t> bad;
  uint64_t reads = 0;
  while (!done) {
    Result<uint64_t> n = engine.Count("t");
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    if (*n != small.cardinality() && *n != large.cardinality()) bad.push_back(*n);
    ++reads;
  }
  writer.join();
  EXPECT_TRUE(bad.empty()) << bad.size() << " of " << reads
                           << " reads saw a partial snapshot, e.g. " << bad.front();
}

// ---- Edge of the id space ---------------------------------------------------------------

TEST(EngineQueryEdgeTest, AudiencePagingReachesTheLargestUserId) {
  constexpr UserId kMax = std::numeric_limits<UserId>::max();
  const std::vector<UserId> users{0, 5, uint64_t{1} << 40, kMax - 1, kMax};
  Engine engine(TestOptions());
  ASSERT_TRUE(engine.ApplyFullSnapshot("edge", 10, users).ok());
  for (size_t limit : {size_t{1}, size_t{2}, size_t{10}}) {
    EXPECT_EQ(AllAudience(engine, "edge", limit), users) << "limit " << limit;
  }
  Result<AudiencePage> last = engine.Audience("edge", kMax, 10);
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(last->users, (std::vector<UserId>{kMax}));
  EXPECT_FALSE(last->next_cursor.has_value());
  EXPECT_EQ(TagsOf(engine, kMax), (TagMap{{"edge", 10}}));
  Result<uint64_t> n = engine.Count("!edge");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 0u);
}

// ---- Dense, run and sparse containers in one expression -----------------------------

class MixedContainersTest : public ::testing::Test {
 protected:
  static inline const std::vector<std::string> kTags{"dense_run", "dense_bits", "runs",
                                                     "sparse_a",  "sparse_b",   "mixed"};
  static constexpr uint64_t kShard = uint64_t{1} << 20;  // default shard_bits

  MixedContainersTest() : engine_(TestOptions()) {
    std::mt19937_64 rng(23);
    auto full = [&](const std::string& tag, const std::vector<UserId>& users) {
      EXPECT_TRUE(engine_.ApplyFullSnapshot(tag, 100, users).ok()) << tag;
      ref_.tags[tag].insert(users.begin(), users.end());
      ref_.known.insert(users.begin(), users.end());
    };

    // 70,000 consecutive users in one shard: full containers.
    std::vector<UserId> users;
    for (UserId u = 1000; u < 71000; ++u) users.push_back(u);
    full("dense_run", users);

    // Half of [0, 150000) at random: bitset containers.
    users.clear();
    for (UserId u = 0; u < 150000; ++u) {
      if (rng() % 2 == 0) users.push_back(u);
    }
    full("dense_bits", users);

    // Ranges, run-optimised before they reach the engine: run containers.
    std::map<uint64_t, std::vector<std::pair<uint32_t, uint32_t>>> ranges{
        {0, {{5000, 9000}, {60000, 131000}, {200000, 200100}}},
        {1, {{0, 50000}, {1048000, 1048576}}}};
    std::vector<uint64_t> shards;
    for (const auto& [shard, spans] : ranges) {
      Roaring offsets;
      for (const auto& [lo, hi] : spans) {
        offsets.addRange(lo, hi);
        for (uint32_t o = lo; o < hi; ++o) {
          ref_.tags["runs"].insert(shard * kShard + o);
          ref_.known.insert(shard * kShard + o);
        }
      }
      offsets.runOptimize();
      Result<SnapshotOutcome> r = engine_.ApplySnapshot("runs", 100, shard, offsets);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      shards.push_back(shard);
    }
    EXPECT_TRUE(engine_.CommitSnapshot("runs", 100, shards).ok());

    // Sparse: array containers, some in shards no other tag touches.
    users.clear();
    for (int i = 0; i < 500; ++i) users.push_back(rng() % (4 * kShard));
    full("sparse_a", users);
    users.clear();
    for (int i = 0; i < 300; ++i) users.push_back(rng() % 200000);
    for (int i = 0; i < 20; ++i) users.push_back(7 * kShard + rng() % kShard);
    full("sparse_b", users);

    // One tag with all three kinds of container.
    users.clear();
    for (UserId u = 131072; u < 196608; ++u) {
      if (rng() % 5 != 0) users.push_back(u);
    }
    for (UserId u = 300000; u < 310000; ++u) users.push_back(u);
    for (int i = 0; i < 100; ++i) users.push_back(2 * kShard + rng() % kShard);
    full("mixed", users);

    // Events on top, at distinct increasing ts, so overrides exist everywhere.
    std::vector<Event> events;
    Timestamp ts = 200;
    for (int i = 0; i < 400; ++i) {
      const std::string& tag = kTags[rng() % kTags.size()];
      const UserId u = rng() % 3 == 0 ? rng() % (3 * kShard) : rng() % 200000;
      events.push_back(rng() % 2 == 0 ? SetEv(u, tag, ts++) : ClearEv(u, tag, ts++));
      if (events.back().op == TagOp::kSet) {
        ref_.tags[tag].insert(u);
        ref_.known.insert(u);
      } else {
        ref_.tags[tag].erase(u);
      }
    }
    EXPECT_TRUE(StatusOf(engine_.ApplyEvents(events)).ok());
    sets_ = ref_.AsSets();
    known_ = ref_.Known();
  }

  Engine engine_;
  Reference ref_;
  std::map<std::string, UserSet> sets_;
  UserSet known_;
};

TEST_F(MixedContainersTest, SingleTagsMatchReference) {
  for (const std::string& tag : kTags) {
    ExpectCountMatches(engine_, *Tag(tag), sets_, known_, tag);
    ExpectCountMatches(engine_, *Not(Tag(tag)), sets_, known_, "!" + tag);
  }
}

TEST_F(MixedContainersTest, RandomExpressionsMatchReference) {
  std::mt19937_64 rng(29);
  for (int i = 0; i < 200; ++i) {
    RefExprPtr e = RandomExpr(rng, kTags, 4);
    const std::string text = Render(*e, &rng);
    ExpectCountMatches(engine_, *e, sets_, known_, text);
    if (i % 10 != 0) continue;
    // Now and then the full audience too, both as ids and as bitmaps.
    const UserSet want = Evaluate(*e, sets_, known_);
    EXPECT_EQ(AllAudience(engine_, text, 50000), want) << text;
    Result<std::vector<ShardBitmap>> bitmaps = engine_.AudienceBitmaps(text);
    ASSERT_TRUE(bitmaps.ok()) << text << " -> " << bitmaps.status().ToString();
    UserSet got;
    for (const ShardBitmap& sb : *bitmaps) {
      Roaring r = Roaring::readSafe(sb.portable.data(), sb.portable.size());
      for (uint32_t offset : r) got.push_back(sb.shard * kShard + offset);
    }
    EXPECT_EQ(MakeSet(got), want) << text;
  }
}

TEST_F(MixedContainersTest, TopTagsMatchReference) {
  std::mt19937_64 rng(31);
  for (int i = 0; i < 20; ++i) {
    RefExprPtr e = RandomExpr(rng, kTags, 3);
    const std::string text = Render(*e);
    Result<std::vector<TagCount>> top = engine_.TopTags(text, 4);
    ASSERT_TRUE(top.ok()) << text << " -> " << top.status().ToString();
    std::vector<std::pair<std::string, uint64_t>> got;
    for (const TagCount& tc : *top) got.emplace_back(std::string(tc.tag), tc.count);
    EXPECT_EQ(got, ReferenceTopTags(sets_, Evaluate(*e, sets_, known_), 4)) << text;
  }
}

// Within one container, a tiny array against a large one takes the galloping
// intersection; a bitset against an array the bit-test path; each count must
// match the sets, for and, and-not and top-tags alike.
TEST(EngineSkewedContainersTest, CountsOfSkewedArraysAndBitsetsMatchSets) {
  Engine engine(TestOptions(20));
  std::mt19937 rng(11);
  std::set<UserId> tiny, large, dense;
  for (int i = 0; i < 12; ++i) tiny.insert(rng() % 65536);
  for (int i = 0; i < 3000; ++i) large.insert(rng() % 65536);
  for (int i = 0; i < 30000; ++i) dense.insert(rng() % 65536);
  for (UserId u : tiny) {  // about half of the tiny tag is in the large one
    if (rng() % 2) {
      large.insert(u);
    } else {
      large.erase(u);
    }
  }
  std::vector<UserId> t(tiny.begin(), tiny.end()), l(large.begin(), large.end()),
      d(dense.begin(), dense.end());
  ASSERT_TRUE(engine.ApplyFullSnapshot("tiny", 1, t).ok());
  ASSERT_TRUE(engine.ApplyFullSnapshot("large", 1, l).ok());
  ASSERT_TRUE(engine.ApplyFullSnapshot("dense", 1, d).ok());
  auto inter = [](const std::set<UserId>& a, const std::set<UserId>& b) {
    uint64_t n = 0;
    for (UserId u : a) n += b.count(u);
    return n;
  };
  EXPECT_EQ(*engine.Count("tiny & large"), inter(tiny, large));
  EXPECT_EQ(*engine.Count("large & tiny"), inter(tiny, large));
  EXPECT_EQ(*engine.Count("tiny - large"), tiny.size() - inter(tiny, large));
  EXPECT_EQ(*engine.Count("large & dense"), inter(large, dense));
  EXPECT_EQ(*engine.Count("dense - large"), dense.size() - inter(large, dense));
  EXPECT_EQ(*engine.Count("large - dense"), large.size() - inter(large, dense));
  auto top = engine.TopTags("tiny", 3);
  ASSERT_TRUE(top.ok());
  for (const TagCount& tc : *top) {
    const std::set<UserId>& other = tc.tag == "large" ? large : tc.tag == "dense" ? dense : tiny;
    EXPECT_EQ(tc.count, inter(tiny, other)) << tc.tag;
  }
}

}  // namespace
}  // namespace tagcache::test
