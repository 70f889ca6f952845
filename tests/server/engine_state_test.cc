// State transfer (checkpoints, repair, shard moves): exporting an engine's
// state and merging it into another. Merging is the brief's merge of two
// states, so the key property is the merge contract lifted to states: for
// any split of a set of writes between two engines, merging either engine's
// state into the other gives exactly the engine that received every write
// (StateDigest equal, and the same answers to every later write and query).

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <roaring/roaring.hh>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/random_writes.h"
#include "server/test_util.h"
#include "tagcache/server/engine.h"

namespace tagcache::test {
namespace {

// Shards of 256 users, so commits have shards to empty.
constexpr int kBits = 8;
constexpr UserId U(uint64_t shard, uint64_t offset) { return UserAt(shard, offset, kBits); }

using Users = std::vector<UserId>;
using Events = std::vector<Event>;
using Shards = std::vector<uint64_t>;

// Merges everything `from` holds into `to`, the way a restore or a repair does.
void MergeAll(const Engine& from, Engine& to) {
  TC_ASSERT_OK(to.MergeTags(from.ExportTags()));
  for (uint64_t shard : from.ShardIds()) TC_ASSERT_OK(to.MergeShard(from.ExportShard(shard)));
}

// An exported state, held apart from its engine.
struct Exported {
  std::vector<TagState> tags;
  std::vector<ShardState> shards;
};
Exported ExportAll(const Engine& engine) {
  Exported out;
  out.tags = engine.ExportTags();
  for (uint64_t shard : engine.ShardIds()) out.shards.push_back(engine.ExportShard(shard));
  return out;
}
void MergeAll(const Exported& from, Engine& to) {
  TC_ASSERT_OK(to.MergeTags(from.tags));
  for (const ShardState& shard : from.shards) TC_ASSERT_OK(to.MergeShard(shard));
}

uint64_t CountOf(const Engine& engine, std::string_view expr) {
  Result<uint64_t> n = engine.Count(expr);
  EXPECT_TRUE(n.ok()) << "Count(" << expr << ") -> " << n.status().ToString();
  return n.ok() ? *n : ~uint64_t{0};
}

// GetTags in the order reported, names and winning ts.
std::vector<std::pair<std::string, Timestamp>> OrderedTagsOf(const Engine& engine, UserId user) {
  std::vector<std::pair<std::string, Timestamp>> out;
  for (const TagHit& hit : engine.GetTags(user, /*with_ts=*/true)) {
    out.emplace_back(std::string(hit.tag), hit.ts);
  }
  return out;
}

// ---- Restore: export, then merge into an empty engine -------------------------

// A state with everything the merge must carry: bases from full snapshots
// and from parts, overrides newer than the base, a commit that emptied a
// shard, a commit that named a shard whose part never came (rule 4's
// exception), a dropped tag, users known only through ignored writes, and
// tags created in non-alphabetical order.
void BuildRichState(Engine& engine) {
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(0, 9), "zeta", 5)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("alpha", 100, Users{U(0, 1), U(0, 2), U(1, 1), U(7, 3)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{
      ClearEv(U(0, 1), "alpha", 120), SetEv(U(1, 5), "alpha", 130), SetEv(U(0, 3), "alpha", 90),
      SetEv(U(0, 9), "mid", 40), SetEv(U(1, 9), "mid", 41), ClearEv(U(7, 3), "zeta", 6)}));
  // "mid" as of 50: shard 0's part arrives, shard 3's does not; shard 1 is
  // emptied as of 50, and so is every shard without state for "mid".
  TC_ASSERT_OK(engine.ApplySnapshot("mid", 50, 0, OffsetsOf({9, 10})));
  Result<CommitOutcome> commit = engine.CommitSnapshot("mid", 50, Shards{0, 3});
  TC_ASSERT_OK(commit);
  ASSERT_EQ(commit->missing_shards, Shards{3});
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(2, 2), "mid", 55)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("gone", 30, Users{U(4, 4)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("gone", 60, Users{}));
  // Ignored (ts <= base) yet known.
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(5, 5), "gone", 20)}));
}

const std::vector<std::string> kRichExprs{"alpha",       "mid",         "zeta",
                                          "gone",        "!alpha",      "!mid & !zeta",
                                          "alpha | mid", "alpha - mid", "!(alpha & mid) | zeta"};

std::vector<UserId> RichProbeUsers() {
  std::vector<UserId> users;
  for (uint64_t shard : {0u, 1u, 2u, 3u, 4u, 5u, 7u, 9u}) {
    for (uint64_t offset : {1u, 2u, 3u, 4u, 5u, 9u, 10u}) users.push_back(U(shard, offset));
  }
  return users;
}

TEST(EngineStateTest, RestoreIntoEmptyEngineReproducesTheState) {
  Engine original(TestOptions(kBits));
  BuildRichState(original);
  Engine restored(TestOptions(kBits));
  MergeAll(original, restored);

  EXPECT_EQ(restored.StateDigest(), original.StateDigest());
  EXPECT_EQ(restored.ShardIds(), original.ShardIds());
  for (UserId u : RichProbeUsers()) {
    // Same tags in the same (creation) order, with the same winning ts.
    EXPECT_EQ(OrderedTagsOf(restored, u), OrderedTagsOf(original, u)) << "user " << u;
  }
  for (const std::string& expr : kRichExprs) {
    EXPECT_EQ(CountOf(restored, expr), CountOf(original, expr)) << expr;
  }
  EXPECT_EQ(AllAudience(restored, "alpha | !alpha"), AllAudience(original, "alpha | !alpha"));
  EXPECT_EQ(restored.Stats().assignments, original.Stats().assignments);
}

TEST(EngineStateTest, RestoredEngineTreatsLaterWritesLikeTheOriginal) {
  Engine original(TestOptions(kBits));
  BuildRichState(original);
  Engine restored(TestOptions(kBits));
  MergeAll(original, restored);

  const Events later{
      SetEv(U(0, 5), "alpha", 100),    // rule 1: at the restored base
      SetEv(U(0, 6), "alpha", 101),    // just above it
      ClearEv(U(1, 5), "alpha", 129),  // loses to the held override (rule 2)
      ClearEv(U(1, 5), "alpha", 130),  // wins the tie against it
      SetEv(U(9, 1), "mid", 50),       // rule 4: a shard without state, at the floor
      SetEv(U(9, 2), "mid", 51),
      SetEv(U(3, 1), "mid", 20),   // the missing shard keeps no floor
      SetEv(U(6, 6), "gone", 60),  // the drop's floor reaches fresh shards too
      SetEv(U(6, 7), "gone", 61),
  };
  for (Engine* engine : {&original, &restored}) {
    Result<ApplyEventsResult> r = engine->ApplyEvents(later);
    TC_ASSERT_OK(r);
    EXPECT_EQ(r->applied, 5u);
    EXPECT_EQ(r->ignored, 4u);
  }
  EXPECT_TRUE(TagsOf(restored, U(9, 1)).empty());
  EXPECT_EQ(TagsOf(restored, U(9, 2)), (TagMap{{"mid", 51}}));
  EXPECT_EQ(TagsOf(restored, U(3, 1)), (TagMap{{"mid", 20}}));
  EXPECT_TRUE(TagsOf(restored, U(6, 6)).empty());

  // A late part for the missing shard and a newer commit land the same way too.
  for (Engine* engine : {&original, &restored}) {
    TC_ASSERT_OK(engine->ApplySnapshot("mid", 50, 3, OffsetsOf({7})));
    TC_ASSERT_OK(engine->ApplyFullSnapshot("zeta", 70, Users{U(8, 8)}));
  }
  EXPECT_EQ(restored.StateDigest(), original.StateDigest());
  for (UserId u : RichProbeUsers()) {
    EXPECT_EQ(OrderedTagsOf(restored, u), OrderedTagsOf(original, u)) << "user " << u;
  }
  for (const std::string& expr : kRichExprs) {
    EXPECT_EQ(CountOf(restored, expr), CountOf(original, expr)) << expr;
  }
}

TEST(EngineStateTest, MergingTheSameStateTwiceChangesNothing) {
  Engine original(TestOptions(kBits));
  BuildRichState(original);
  const Exported state = ExportAll(original);
  Engine target(TestOptions(kBits));
  TC_ASSERT_OK(target.ApplyFullSnapshot("alpha", 110, Users{U(0, 4)}));
  TC_ASSERT_OK(target.ApplyEvents(Events{SetEv(U(2, 2), "other", 7)}));
  MergeAll(state, target);
  const uint64_t once = target.StateDigest();
  MergeAll(state, target);
  EXPECT_EQ(target.StateDigest(), once);
  // And merging an engine into itself is the identity.
  MergeAll(ExportAll(target), target);
  EXPECT_EQ(target.StateDigest(), once);
  const uint64_t original_digest = original.StateDigest();
  MergeAll(original, original);
  EXPECT_EQ(original.StateDigest(), original_digest);
}

TEST(EngineStateTest, ExportListsTagsInCreationOrderAndOverridesByOffset) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(2, 200), "z", 10), SetEv(U(2, 3), "z", 11),
                                         ClearEv(U(2, 90), "z", 12), SetEv(U(2, 1), "a", 10)}));
  TC_ASSERT_OK(engine.CommitSnapshot("m", 5, Shards{4, 2}));
  std::vector<TagState> tags = engine.ExportTags();
  ASSERT_EQ(tags.size(), 3u);
  EXPECT_EQ(tags[0].name, "z");
  EXPECT_EQ(tags[1].name, "a");
  EXPECT_EQ(tags[2].name, "m");
  EXPECT_TRUE(tags[2].has_floor);
  EXPECT_EQ(tags[2].floor_ts, 5u);
  // Named shards keep the floor they had: none.
  EXPECT_EQ(tags[2].missing, (std::vector<std::pair<uint64_t, std::optional<Timestamp>>>{
                                 {2, std::nullopt}, {4, std::nullopt}}));

  EXPECT_EQ(engine.ShardIds(), Shards{2});
  ShardState shard = engine.ExportShard(2);
  EXPECT_EQ(shard.shard, 2u);
  EXPECT_EQ(shard.known, OffsetsOf({1, 3, 200}));
  ASSERT_EQ(shard.columns.size(), 2u);
  EXPECT_EQ(shard.columns[0].tag, "z");
  EXPECT_EQ(shard.columns[1].tag, "a");
  const ColumnState& z = shard.columns[0];
  EXPECT_EQ(z.bitmap, OffsetsOf({3, 200}));
  EXPECT_FALSE(z.has_base);
  ASSERT_EQ(z.overrides.size(), 3u);
  EXPECT_EQ(z.overrides[0].offset, 3u);
  EXPECT_EQ(z.overrides[1].offset, 90u);
  EXPECT_EQ(z.overrides[1].op, TagOp::kClear);
  EXPECT_EQ(z.overrides[1].ts, 12u);
  EXPECT_EQ(z.overrides[2].offset, 200u);

  ShardState none = engine.ExportShard(77);
  EXPECT_EQ(none.shard, 77u);
  EXPECT_TRUE(none.known.isEmpty());
  EXPECT_TRUE(none.columns.empty());
}

// ---- Merging two states: the brief's rules, one at a time -------------------------

TEST(EngineStateTest, HigherBaseWinsAndOverridesAreFilteredByIt) {
  Engine older(TestOptions(kBits));
  TC_ASSERT_OK(older.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(0, 2)}));
  TC_ASSERT_OK(older.ApplyEvents(Events{ClearEv(U(0, 1), "t", 15), SetEv(U(0, 3), "t", 25)}));
  Engine newer(TestOptions(kBits));
  TC_ASSERT_OK(newer.ApplyFullSnapshot("t", 20, Users{U(0, 1), U(0, 4)}));
  TC_ASSERT_OK(newer.ApplyEvents(Events{ClearEv(U(0, 4), "t", 22)}));

  for (bool older_into_newer : {false, true}) {
    Engine into(TestOptions(kBits));
    MergeAll(older_into_newer ? newer : older, into);
    MergeAll(older_into_newer ? older : newer, into);
    EXPECT_EQ(TagsOf(into, U(0, 1)), (TagMap{{"t", 20}})) << "the clear at 15 is below the base";
    EXPECT_TRUE(TagsOf(into, U(0, 2)).empty());
    EXPECT_EQ(TagsOf(into, U(0, 3)), (TagMap{{"t", 25}}));
    EXPECT_TRUE(TagsOf(into, U(0, 4)).empty());
    EXPECT_EQ(CountOf(into, "t"), 2u);
    EXPECT_EQ(CountOf(into, "!t"), 2u);
  }
}

TEST(EngineStateTest, TiedBasesPickTheLargerDigestInBothDirections) {
  Engine a(TestOptions(kBits));
  TC_ASSERT_OK(a.ApplySnapshot("t", 10, 0, OffsetsOf({1, 2})));
  TC_ASSERT_OK(a.ApplyEvents(Events{SetEv(U(0, 9), "t", 11)}));
  Engine b(TestOptions(kBits));
  TC_ASSERT_OK(b.ApplySnapshot("t", 10, 0, OffsetsOf({3})));
  Engine all(TestOptions(kBits));
  TC_ASSERT_OK(all.ApplySnapshot("t", 10, 0, OffsetsOf({1, 2})));
  TC_ASSERT_OK(all.ApplyEvents(Events{SetEv(U(0, 9), "t", 11)}));
  TC_ASSERT_OK(all.ApplySnapshot("t", 10, 0, OffsetsOf({3})));

  const Exported sa = ExportAll(a), sb = ExportAll(b);
  MergeAll(sb, a);
  MergeAll(sa, b);
  EXPECT_EQ(a.StateDigest(), all.StateDigest());
  EXPECT_EQ(b.StateDigest(), all.StateDigest());
  EXPECT_EQ(TagsOf(b, U(0, 9)), (TagMap{{"t", 11}}));
}

TEST(EngineStateTest, OverridesMergeByRuleTwo) {
  Engine a(TestOptions(kBits));
  TC_ASSERT_OK(a.ApplyEvents(
      Events{SetEv(U(0, 1), "t", 10), SetEv(U(0, 2), "t", 10), SetEv(U(0, 3), "t", 12)}));
  Engine b(TestOptions(kBits));
  TC_ASSERT_OK(b.ApplyEvents(
      Events{ClearEv(U(0, 1), "t", 11), ClearEv(U(0, 2), "t", 10), ClearEv(U(0, 3), "t", 11)}));
  MergeAll(b, a);
  EXPECT_TRUE(TagsOf(a, U(0, 1)).empty()) << "newer wins";
  EXPECT_TRUE(TagsOf(a, U(0, 2)).empty()) << "a clear wins the tie";
  EXPECT_EQ(TagsOf(a, U(0, 3)), (TagMap{{"t", 12}})) << "an older clear loses";
  EXPECT_EQ(CountOf(a, "!t"), 2u) << "cleared users stay known";
}

// A commit one side received empties, as of its ts, the other side's column
// for a shard it did not name, but never a shard it named.
TEST(EngineStateTest, RaisedFloorEmptiesExistingColumnsOfUnnamedShardsOnly) {
  Engine a(TestOptions(kBits));
  TC_ASSERT_OK(a.ApplyEvents(
      Events{SetEv(U(1, 1), "t", 5), SetEv(U(1, 2), "t", 30), SetEv(U(2, 1), "t", 5)}));
  Engine b(TestOptions(kBits));
  TC_ASSERT_OK(b.CommitSnapshot("t", 20, Shards{2}));  // shard 2 named, its part lost
  Engine all(TestOptions(kBits));
  TC_ASSERT_OK(all.ApplyEvents(
      Events{SetEv(U(1, 1), "t", 5), SetEv(U(1, 2), "t", 30), SetEv(U(2, 1), "t", 5)}));
  TC_ASSERT_OK(all.CommitSnapshot("t", 20, Shards{2}));

  MergeAll(b, a);
  EXPECT_TRUE(TagsOf(a, U(1, 1)).empty());
  EXPECT_EQ(TagsOf(a, U(1, 2)), (TagMap{{"t", 30}}));
  EXPECT_EQ(TagsOf(a, U(2, 1)), (TagMap{{"t", 5}})) << "a named shard is never emptied";
  EXPECT_EQ(a.StateDigest(), all.StateDigest());
}

// Two reruns of one load at the same ts naming different shards: a shard
// either one left out is empty as of ts, whichever commit came first. (The
// engine used to ignore a commit at its tag's floor ts altogether.)
TEST(EngineStateTest, CommitsAtTheSameTsFloorEveryShardEitherLeftOut) {
  for (bool first_names_shard_zero : {true, false}) {
    SCOPED_TRACE(first_names_shard_zero ? "{0,1} first" : "{1,2} first");
    Engine engine(TestOptions(kBits));
    std::vector<Shards> commits{Shards{0, 1}, Shards{1, 2}};
    if (!first_names_shard_zero) std::swap(commits[0], commits[1]);
    for (const Shards& named : commits) TC_ASSERT_OK(engine.CommitSnapshot("t", 100, named));
    Result<ApplyEventsResult> r = engine.ApplyEvents(
        Events{SetEv(U(0, 1), "t", 100), SetEv(U(2, 1), "t", 100), SetEv(U(1, 1), "t", 100)});
    TC_ASSERT_OK(r);
    EXPECT_EQ(r->ignored, 2u);
    EXPECT_EQ(AllAudience(engine, "t"), (Users{U(1, 1)})) << "only shard 1 was named by both";
  }
}

// ---- The key property: merge(A, B) equals the engine that got every write -----------


// Random writes over a few users in a few shards, a few tags and a small ts
// range, so equal timestamps, stale parts, ties between different contents
// at one ts (reruns), lost parts, lost commits, commits naming shards that
// never got a part, and drops are all common.
struct Case {
  std::vector<UserId> users;
  std::vector<Write> writes;
};

Case Generate(std::mt19937_64& rng) {
  auto pick = [&](uint64_t n) { return rng() % n; };
  const std::vector<uint64_t> shard_pool{0, 1, 2, 5, uint64_t{1} << 30};
  const std::vector<uint64_t> offset_pool{0, 1, 77, 255};
  const std::vector<std::string> tags{"t0", "t.1", "t-2:x"};
  Case c;
  std::set<UserId> users;
  for (uint64_t n = 3 + pick(5); n > 0; --n) {
    const uint64_t shard = shard_pool[pick(shard_pool.size())];
    users.insert(U(shard, offset_pool[pick(offset_pool.size())]));
  }
  c.users.assign(users.begin(), users.end());
  auto random_ts = [&] { return 1 + pick(8); };
  auto random_tag = [&] { return tags[pick(tags.size())]; };

  for (uint64_t n = 3 + pick(20); n > 0; --n) {
    Write w;
    w.event = Event{c.users[pick(c.users.size())], random_tag(),
                    pick(5) < 3 ? TagOp::kSet : TagOp::kClear, random_ts()};
    c.writes.push_back(w);
  }
  for (uint64_t n = pick(5); n > 0; --n) {
    const std::string tag = random_tag();
    const Timestamp ts = random_ts();
    std::map<uint64_t, std::vector<uint32_t>> parts;
    std::vector<UserId> members;
    if (pick(8) != 0) {  // otherwise a drop
      for (UserId u : c.users) {
        if (pick(2) == 0) {
          members.push_back(u);
          parts[u >> kBits].push_back(static_cast<uint32_t>(u & 0xff));
        }
      }
    }
    if (pick(3) == 0) {
      Write w;
      w.kind = Write::Kind::kFullSnapshot;
      w.tag = tag;
      w.ts = ts;
      w.users = members;
      c.writes.push_back(w);
      continue;
    }
    // Sometimes an explicit empty part, or a named shard whose part is lost.
    if (pick(4) == 0) parts.try_emplace(shard_pool[pick(shard_pool.size())]);
    Write commit;
    commit.kind = Write::Kind::kCommit;
    commit.tag = tag;
    commit.ts = ts;
    const uint64_t lost = pick(4) == 0 ? pick(parts.size() + 1) : parts.size();
    uint64_t i = 0;
    for (const auto& [shard, offsets] : parts) {
      commit.shards.push_back(shard);
      if (i++ == lost) continue;
      Write part;
      part.kind = Write::Kind::kPart;
      part.tag = tag;
      part.ts = ts;
      part.shard = shard;
      part.offsets = offsets;
      c.writes.push_back(part);
    }
    if (pick(6) != 0) c.writes.push_back(commit);
  }
  return c;
}

// Applies the writes in a random order, some twice; fails on any status the
// contract does not allow.
void Apply(Engine& engine, std::vector<const Write*> writes, std::mt19937_64& rng) {
  const size_t n = writes.size();
  for (size_t i = 0; i < n; ++i) {
    if (rng() % 5 == 0) writes.push_back(writes[i]);
  }
  std::shuffle(writes.begin(), writes.end(), rng);
  for (const Write* w : writes) {
    Status s;
    switch (w->kind) {
      case Write::Kind::kEvent:
        s = StatusOf(engine.ApplyEvents(Events{w->event}));
        break;
      case Write::Kind::kFullSnapshot:
        s = engine.ApplyFullSnapshot(w->tag, w->ts, w->users);
        break;
      case Write::Kind::kPart: {
        Roaring offsets;
        for (uint32_t o : w->offsets) offsets.add(o);
        s = StatusOf(engine.ApplySnapshot(w->tag, w->ts, w->shard, offsets));
        break;
      }
      case Write::Kind::kCommit:
        s = StatusOf(engine.CommitSnapshot(w->tag, w->ts, w->shards));
        break;
    }
    EXPECT_TRUE(s.ok() || s.IsStaleSnapshot()) << Describe(*w) << " -> " << s.ToString();
  }
}

// Everything a client sees for the case's users, tag order aside (tag ids
// legitimately differ between engines that created tags in other orders).
std::string Observe(const Engine& engine, const Case& c) {
  std::ostringstream out;
  for (UserId u : c.users) {
    out << u << ":";
    for (const auto& [tag, ts] : TagsOf(engine, u)) out << " " << tag << "@" << ts;
    out << "\n";
  }
  for (const char* expr : {"t0", "t.1 | t-2:x", "!t0", "!t.1 & t-2:x", "t0 | !t0"}) {
    Result<uint64_t> n = engine.Count(expr);
    out << expr << " = " << (n.ok() ? std::to_string(*n) : n.status().ToString()) << "\n";
  }
  return out.str();
}

TEST(EngineStateTest, MergeOfTwoPartialEnginesEqualsTheEngineThatGotEveryWrite) {
  constexpr int kCases = 400;
  int failures = 0;
  for (int seed = 0; seed < kCases && failures < 3; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed) * 7919 + 1);
    const Case c = Generate(rng);
    // Each write reaches A, B or both; C gets them all.
    std::vector<const Write*> to_a, to_b, to_c;
    for (const Write& w : c.writes) {
      const uint64_t where = rng() % 3;
      if (where != 1) to_a.push_back(&w);
      if (where != 0) to_b.push_back(&w);
      to_c.push_back(&w);
    }
    Engine a(TestOptions(kBits, 1)), b(TestOptions(kBits, 1)), all(TestOptions(kBits, 1));
    Apply(a, to_a, rng);
    Apply(b, to_b, rng);
    Apply(all, to_c, rng);
    const uint64_t expected = all.StateDigest();
    const Exported sa = ExportAll(a), sb = ExportAll(b);

    // The precondition: C's state does not depend on the order it got them in.
    Engine all_again(TestOptions(kBits, 1));
    Apply(all_again, to_c, rng);

    Engine empty(TestOptions(kBits, 1));
    MergeAll(sa, empty);
    MergeAll(sb, empty);
    MergeAll(sb, a);
    MergeAll(sa, b);
    const uint64_t a_once = a.StateDigest();
    MergeAll(sb, a);  // idempotent

    std::vector<std::string> problems;
    if (all_again.StateDigest() != expected) problems.push_back("C differs by write order");
    if (a_once != expected) problems.push_back("B's state merged into A differs from C");
    if (b.StateDigest() != expected) problems.push_back("A's state merged into B differs from C");
    if (empty.StateDigest() != expected) problems.push_back("A then B into empty differs from C");
    if (a.StateDigest() != a_once) problems.push_back("merging B twice changed A");
    if (Observe(a, c) != Observe(all, c)) problems.push_back("A+B answers differently from C");
    if (Observe(b, c) != Observe(all, c)) problems.push_back("B+A answers differently from C");

    // Later writes, including to shards and users no write touched yet, must
    // land the same way on the merged engines as on C.
    std::mt19937_64 probe_rng(static_cast<uint64_t>(seed));
    Case probe = Generate(probe_rng);
    std::vector<const Write*> probe_writes;
    for (const Write& w : probe.writes) probe_writes.push_back(&w);
    for (Engine* e : {&a, &b, &all}) {
      std::mt19937_64 order_rng(static_cast<uint64_t>(seed) + 17);
      Apply(*e, probe_writes, order_rng);
    }
    if (a.StateDigest() != all.StateDigest() || b.StateDigest() != all.StateDigest()) {
      problems.push_back("later writes land differently on the merged engines");
    }
    if (problems.empty()) continue;
    ++failures;
    std::ostringstream report;
    report << "seed " << seed << ":";
    for (const std::string& p : problems) report << " [" << p << "]";
    report << "\nwrites (A, B, both):\n";
    for (const Write& w : c.writes) {
      const bool in_a = std::count(to_a.begin(), to_a.end(), &w) > 0;
      const bool in_b = std::count(to_b.begin(), to_b.end(), &w) > 0;
      report << "  " << (in_a && in_b ? "AB" : in_a ? "A " : "B ") << " " << Describe(w) << "\n";
    }
    report << "C:\n" << Observe(all, c) << "A+B:\n" << Observe(a, c);
    ADD_FAILURE() << report.str();
  }
}

// ---- StateDigest ------------------------------------------------------------------

// A shard's state with one column, to vary one field at a time.
ShardState BaseShardState() {
  ShardState s;
  s.shard = 3;
  s.known = OffsetsOf({1, 2, 5, 9});
  ColumnState c;
  c.tag = "t";
  c.bitmap = OffsetsOf({1, 2, 9});
  c.base_ts = 10;
  c.base_digest = 1234;
  c.has_base = true;
  c.overrides = {OverrideState{5, 12, TagOp::kClear}, OverrideState{9, 11, TagOp::kSet}};
  s.columns.push_back(c);
  return s;
}

uint64_t DigestOf(const ShardState& shard, const std::vector<TagState>& tags = {}) {
  Engine engine(TestOptions(kBits));
  EXPECT_TRUE(engine.MergeTags(tags).ok());
  EXPECT_TRUE(engine.MergeShard(shard).ok());
  return engine.StateDigest();
}

TEST(EngineStateTest, StateDigestChangesWithAnyOneField) {
  const uint64_t base = DigestOf(BaseShardState());
  EXPECT_EQ(DigestOf(BaseShardState()), base) << "deterministic";

  std::map<std::string, ShardState> variants;
  variants["one member bit"] = BaseShardState();
  variants["one member bit"].columns[0].bitmap.add(7);
  variants["one known bit"] = BaseShardState();
  variants["one known bit"].known.add(100);
  variants["base_ts"] = BaseShardState();
  variants["base_ts"].columns[0].base_ts = 11;
  variants["base_digest"] = BaseShardState();
  variants["base_digest"].columns[0].base_digest = 1235;
  variants["has_base"] = BaseShardState();
  variants["has_base"].columns[0].has_base = false;
  variants["has_base"].columns[0].base_ts = 0;
  variants["override ts"] = BaseShardState();
  variants["override ts"].columns[0].overrides[0].ts = 13;
  variants["override op"] = BaseShardState();
  variants["override op"].columns[0].overrides[1].op = TagOp::kClear;
  variants["override offset"] = BaseShardState();
  variants["override offset"].columns[0].overrides[0].offset = 6;
  variants["one more override"] = BaseShardState();
  variants["one more override"].columns[0].overrides.push_back(
      OverrideState{30, 20, TagOp::kClear});
  variants["tag name"] = BaseShardState();
  variants["tag name"].columns[0].tag = "u";
  variants["shard id"] = BaseShardState();
  variants["shard id"].shard = 4;
  for (const auto& [what, state] : variants) {
    EXPECT_NE(DigestOf(state), base) << what;
  }

  const std::vector<TagState> floor{TagState{"t", true, 5, {}}};
  const uint64_t with_floor = DigestOf(BaseShardState(), floor);
  EXPECT_NE(with_floor, base) << "a floor";
  EXPECT_NE(DigestOf(BaseShardState(), {TagState{"t", true, 6, {}}}), with_floor) << "floor_ts";
  EXPECT_NE(DigestOf(BaseShardState(), {TagState{"t", true, 5, {{7, std::nullopt}}}}), with_floor)
      << "an exception";
  EXPECT_NE(DigestOf(BaseShardState(), {TagState{"t", true, 5, {{7, 4}}}}),
            DigestOf(BaseShardState(), {TagState{"t", true, 5, {{7, 3}}}}))
      << "an exception's floor";
  EXPECT_NE(DigestOf(BaseShardState(), {TagState{"other", false, 0, {}}}), base) << "a tag";
}

TEST(EngineStateTest, StateDigestIgnoresTagCreationOrder) {
  Engine ab(TestOptions(kBits)), ba(TestOptions(kBits));
  TC_ASSERT_OK(ab.ApplyEvents(Events{SetEv(1, "a", 10), SetEv(1, "b", 10)}));
  TC_ASSERT_OK(ba.ApplyEvents(Events{SetEv(1, "b", 10), SetEv(1, "a", 10)}));
  EXPECT_EQ(ab.StateDigest(), ba.StateDigest());
  EXPECT_NE(ab.StateDigest(), Engine(TestOptions(kBits)).StateDigest());
}

// ---- Bad input: refused whole, nothing applied ------------------------------------------

TEST(EngineStateTest, BadStateIsBadRequestAndChangesNothing) {
  Engine engine(TestOptions(kBits));
  BuildRichState(engine);
  const uint64_t before = engine.StateDigest();
  const size_t tags_before = engine.ExportTags().size();

  auto expect_bad = [&](const Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), StatusCode::kBadRequest) << what << ": " << s.ToString();
    EXPECT_FALSE(s.message().empty()) << what;
    EXPECT_EQ(engine.StateDigest(), before) << what;
    EXPECT_EQ(engine.ExportTags().size(), tags_before) << what << " created a tag";
  };

  // A valid tag ahead of the bad one must not be created either.
  expect_bad(engine.MergeTags(std::vector<TagState>{TagState{"fresh", true, 99, {}},
                                                    TagState{"bad name", false, 0, {}}}),
             "bad tag name");
  expect_bad(engine.MergeTags(std::vector<TagState>{TagState{"fresh", false, 0, {{1, 5}}}}),
             "an exception without a floor");
  expect_bad(engine.MergeTags(std::vector<TagState>{TagState{"fresh", true, 5, {{1, 5}}}}),
             "an exception not below the floor");

  auto with = [](auto edit) {
    ShardState s = BaseShardState();
    s.columns.push_back(ColumnState{"fresh", OffsetsOf({1}), 50, 1, true, {}});
    edit(s);
    return s;
  };
  expect_bad(engine.MergeShard(with([](ShardState& s) { s.columns[1].tag = "a/b"; })),
             "bad column name");
  expect_bad(engine.MergeShard(with([](ShardState& s) { s.columns[1].tag = ""; })),
             "empty column name");
  expect_bad(engine.MergeShard(with([](ShardState& s) { s.columns[1].bitmap.add(256); })),
             "member beyond the shard");
  expect_bad(engine.MergeShard(with([](ShardState& s) { s.known.add(1u << 20); })),
             "known user beyond the shard");
  expect_bad(engine.MergeShard(with([](ShardState& s) {
    s.columns[1].overrides.push_back(OverrideState{256, 60, TagOp::kSet});
  })),
             "override beyond the shard");
  expect_bad(engine.MergeShard(with([](ShardState& s) {
    s.columns[1].overrides.push_back(OverrideState{3, 60, static_cast<TagOp>(7)});
  })),
             "override with an unknown op");
  expect_bad(engine.MergeShard(with([](ShardState& s) { s.shard = uint64_t{1} << 56; })),
             "shard out of range");
  // The same states, made valid, do apply.
  TC_EXPECT_OK(engine.MergeShard(with([](ShardState&) {})));
  EXPECT_NE(engine.StateDigest(), before);
  TC_EXPECT_OK(engine.MergeShard(with([](ShardState& s) { s.shard = (uint64_t{1} << 56) - 1; })));
}

// ---- Index images: a restore installs the exporter's per-user index -------------

// The rich state plus many users with many tags, so lists span several
// slab classes and some tag ids need two-byte deltas.
void BuildIndexedState(Engine& engine) {
  BuildRichState(engine);
  std::mt19937_64 rng(21);
  Events events;
  for (int i = 0; i < 20'000; ++i) {
    const UserId user = U(rng() % 12, rng() % 256);
    const std::string tag = "t" + std::to_string(rng() % 4 == 0 ? rng() % 300 : rng() % 20);
    events.push_back(rng() % 5 == 0 ? ClearEv(user, tag, 1000 + rng() % 100)
                                    : SetEv(user, tag, 1000 + rng() % 100));
  }
  TC_ASSERT_OK(engine.ApplyEvents(events));
}

Exported ExportAllWithIndex(const Engine& engine) {
  Exported out;
  out.tags = engine.ExportTags();
  for (uint64_t shard : engine.ShardIds()) {
    out.shards.push_back(engine.ExportShard(shard, /*with_index=*/true));
  }
  return out;
}

uint64_t ImagesInstalled(const Engine& engine) {
  return engine.Stats().counters.index_images_installed;
}

std::vector<UserId> IndexProbeUsers() {
  std::vector<UserId> users;
  for (uint64_t shard = 0; shard < 13; ++shard) {
    for (uint64_t offset = 0; offset < 256; ++offset) users.push_back(U(shard, offset));
  }
  return users;
}

void ExpectSameLookups(const Engine& want, const Engine& got) {
  EXPECT_EQ(got.StateDigest(), want.StateDigest());
  for (UserId u : IndexProbeUsers()) {
    ASSERT_EQ(OrderedTagsOf(got, u), OrderedTagsOf(want, u)) << "user " << u;
  }
}

TEST(EngineStateTest, RestoreInstallsTheExportedIndexImages) {
  Engine original(TestOptions(kBits));
  BuildIndexedState(original);
  const Exported state = ExportAllWithIndex(original);
  uint64_t images = 0;
  for (const ShardState& shard : state.shards) {
    images += !shard.index_image.empty();
    EXPECT_TRUE(original.ExportShard(shard.shard).index_image.empty()) << "only on request";
  }
  ASSERT_GT(images, 10u);

  Engine restored(TestOptions(kBits));
  MergeAll(state, restored);
  EXPECT_EQ(ImagesInstalled(restored), images);
  ExpectSameLookups(original, restored);

  // The installed index goes on like a built one.
  Events later;
  std::mt19937_64 rng(22);
  for (int i = 0; i < 3000; ++i) {
    const UserId user = U(rng() % 13, rng() % 256);
    const std::string tag = "t" + std::to_string(rng() % 350);
    later.push_back(rng() % 3 == 0 ? ClearEv(user, tag, 2000 + i) : SetEv(user, tag, 2000 + i));
  }
  TC_ASSERT_OK(original.ApplyEvents(later));
  TC_ASSERT_OK(restored.ApplyEvents(later));
  ExpectSameLookups(original, restored);

  // Into shards that already hold columns, an image is never used.
  MergeAll(state, restored);
  EXPECT_EQ(ImagesInstalled(restored), images);
  ExpectSameLookups(original, restored);
}

// Merging without images gives the reference each fallback must reproduce.
void ExpectFallback(const Exported& with_images, const Exported& without,
                    const std::function<void(Engine&)>& prepare, uint64_t want_images) {
  Engine reference(TestOptions(kBits));
  prepare(reference);
  MergeAll(without, reference);
  Engine merged(TestOptions(kBits));
  prepare(merged);
  MergeAll(with_images, merged);
  EXPECT_EQ(ImagesInstalled(merged), want_images);
  ExpectSameLookups(reference, merged);
}

TEST(EngineStateTest, IndexImageIsIgnoredUnlessItFitsTheMergedColumns) {
  Engine original(TestOptions(kBits));
  BuildIndexedState(original);
  const Exported with_images = ExportAllWithIndex(original);
  const Exported without = ExportAll(original);
  uint64_t images = 0;
  for (const ShardState& shard : with_images.shards) images += !shard.index_image.empty();

  {
    SCOPED_TRACE("tags created here first: every id differs");
    ExpectFallback(
        with_images, without,
        [](Engine& e) {
          TC_ASSERT_OK(
              e.ApplyEvents(Events{SetEv(U(200, 1), "other1", 5), SetEv(U(200, 1), "other2", 5)}));
        },
        0);
  }
  {
    SCOPED_TRACE("the same tags here, in the same order: ids agree");
    ExpectFallback(
        with_images, without, [&](Engine& e) { TC_ASSERT_OK(e.MergeTags(without.tags)); }, images);
  }
  {
    SCOPED_TRACE("a floor held here empties a column in the merge");
    std::vector<TagState> tags = without.tags;
    for (TagState& t : tags) {
      if (t.name == "t3") t = TagState{"t3", true, 5000, {}};
    }
    ExpectFallback(
        with_images, without, [&](Engine& e) { TC_ASSERT_OK(e.MergeTags(tags)); },
        images - 12);  // shards 0..11 hold t3
  }
  {
    SCOPED_TRACE("a damaged image, a wrong exporter id");
    Exported damaged = with_images;
    std::string& image = damaged.shards[3].index_image;
    ASSERT_FALSE(image.empty());
    image[image.size() / 2] = static_cast<char>(image[image.size() / 2] ^ 0x10);
    ASSERT_GT(damaged.shards[4].columns.size(), 1u);
    std::swap(damaged.shards[4].columns[0].tag_id, damaged.shards[4].columns[1].tag_id);
    ExpectFallback(
        damaged, without, [](Engine&) {}, images - 2);
  }
}

// ---- Future-timestamp switch ----------------------------------------------------------------

TEST(EngineStateTest, FutureCheckCanBeTurnedOffForReplayAndBackOn) {
  EngineOptions options = TestOptions(kBits);
  options.max_future_ms = 1000;
  Engine engine(options);
  const Timestamp far = kNow + 1'000'000;
  EXPECT_TRUE(StatusOf(engine.ApplyEvents(Events{SetEv(1, "t", far)})).IsFutureTimestamp());

  engine.SetFutureCheck(false);
  TC_EXPECT_OK(engine.ApplyEvents(Events{SetEv(1, "t", far)}));
  TC_EXPECT_OK(engine.ApplySnapshot("u", far, 0, OffsetsOf({2})));
  TC_EXPECT_OK(engine.CommitSnapshot("u", far, Shards{0}));
  EXPECT_EQ(TagsOf(engine, 1), (TagMap{{"t", far}}));
  EXPECT_EQ(TagsOf(engine, 2), (TagMap{{"u", far}}));

  engine.SetFutureCheck(true);
  EXPECT_TRUE(StatusOf(engine.ApplyEvents(Events{SetEv(3, "t", far)})).IsFutureTimestamp());
  EXPECT_TRUE(StatusOf(engine.ApplySnapshot("u", far + 1, 0, OffsetsOf({3}))).IsFutureTimestamp());
  EXPECT_TRUE(StatusOf(engine.CommitSnapshot("u", far + 1, Shards{0})).IsFutureTimestamp());
  EXPECT_TRUE(engine.ApplyFullSnapshot("v", far, Users{4}).IsFutureTimestamp());
  EXPECT_TRUE(TagsOf(engine, 3).empty());
  EXPECT_TRUE(TagsOf(engine, 4).empty());
}


// ---- The per-user index dropped by bulk writes and rebuilt in the background --------

// Waits (bounded) until the engine's index thread has no shard left to rebuild.
bool WaitForIndexRebuilds(const Engine& engine) {
  for (int i = 0; i < 2000; ++i) {
    if (engine.Stats(false).counters.shards_rebuilding_index == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(EngineStateTest, DroppedIndexesAnswerLikeKeptOnesBeforeAndAfterTheRebuild) {
  // One engine drops a shard's index on every bulk change (GetTags then
  // probes the bitmaps until the rebuild), the other always patches it.
  for (int seed = 0; seed < 80; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed) * 104729 + 3);
    const Case c = Generate(rng);
    std::vector<const Write*> writes;
    for (const Write& w : c.writes) writes.push_back(&w);
    EngineOptions dropping = TestOptions(kBits, 1);
    dropping.index_rebuild_min_changes = 0;
    // Long enough that the first Observe sees the dropped indexes.
    dropping.index_rebuild_delay = std::chrono::milliseconds(30);
    EngineOptions patching = TestOptions(kBits, 1);
    patching.index_rebuild_min_changes = UINT64_MAX;
    Engine a(dropping), b(patching);
    std::mt19937_64 order_a(static_cast<uint64_t>(seed)), order_b(static_cast<uint64_t>(seed));
    Apply(a, writes, order_a);
    Apply(b, writes, order_b);
    ASSERT_EQ(Observe(a, c), Observe(b, c)) << "seed " << seed << ", before the rebuild";
    ASSERT_TRUE(WaitForIndexRebuilds(a)) << "seed " << seed;
    ASSERT_EQ(Observe(a, c), Observe(b, c)) << "seed " << seed << ", after the rebuild";
    EXPECT_EQ(b.Stats(false).counters.index_rebuilds, 0u);
  }
}

TEST(EngineStateTest, ABulkSnapshotDropsTheIndexAndTheIndexThreadRebuildsIt) {
  EngineOptions options = TestOptions(kBits, 1);
  options.index_rebuild_min_changes = 100;
  options.index_rebuild_delay = std::chrono::milliseconds(1);
  Engine engine(options);
  std::vector<UserId> users;
  for (uint32_t o = 0; o < 200; ++o) users.push_back(U(3, o));
  // 200 new memberships against an empty index: dropped, rebuilt later.
  ASSERT_TRUE(engine.ApplyFullSnapshot("bulk", 10, users).ok());
  // An event while the index may still be stale is answered all the same.
  ASSERT_TRUE(engine.ApplyEvents(Events{{U(3, 7), "small", TagOp::kSet, 11}}).ok());
  EXPECT_EQ(TagsOf(engine, U(3, 7)), (TagMap{{"bulk", 10}, {"small", 11}}));
  ASSERT_TRUE(WaitForIndexRebuilds(engine));
  EngineStats stats = engine.Stats(false);
  EXPECT_EQ(stats.counters.index_rebuilds, 1u);
  EXPECT_GT(stats.memory.index_bytes, 0u) << "the rebuilt index holds the users again";
  EXPECT_EQ(TagsOf(engine, U(3, 7)), (TagMap{{"bulk", 10}, {"small", 11}}));
  EXPECT_EQ(TagsOf(engine, U(3, 199)), (TagMap{{"bulk", 10}}));

  // 199 removals are few against the index's size (its slot directory
  // alone is 256 KiB): patched, no second rebuild.
  const std::vector<UserId> one{U(3, 1)};
  ASSERT_TRUE(engine.ApplyFullSnapshot("bulk", 12, one).ok());
  EXPECT_EQ(engine.Stats(false).counters.shards_rebuilding_index, 0u);
  EXPECT_EQ(engine.Stats(false).counters.index_rebuilds, 1u);
  EXPECT_EQ(TagsOf(engine, U(3, 1)), (TagMap{{"bulk", 12}}));
  EXPECT_EQ(TagsOf(engine, U(3, 7)), (TagMap{{"small", 11}}));
  EXPECT_TRUE(TagsOf(engine, U(3, 199)).empty());
}

TEST(EngineStateTest, BaseDigestIsXxh3OfTheSortedMembersAsLittleEndianU32) {
  // Array, bitset and run containers, and values in several containers.
  std::vector<uint32_t> offsets;
  for (uint32_t o = 0; o < 300; o += 7) offsets.push_back(o);          // array
  for (uint32_t o = 65536; o < 65536 + 9000; o += 2) offsets.push_back(o);  // bitset
  for (uint32_t o = 200000; o < 230000; ++o) offsets.push_back(o);     // run
  Engine engine(TestOptions(18, 1));
  Roaring members;
  for (uint32_t o : offsets) members.add(o);
  members.runOptimize();
  ASSERT_TRUE(engine.ApplySnapshot("t", 5, 0, members).ok());
  const ShardState state = engine.ExportShard(0);
  ASSERT_EQ(state.columns.size(), 1u);
  // The definition, computed independently (x86-64 is little-endian).
  EXPECT_EQ(state.columns[0].base_digest,
            XXH3_64bits(offsets.data(), offsets.size() * sizeof(uint32_t)));
}

}  // namespace
}  // namespace tagcache::test
