// The merge contract of shared/design.md ("Merge semantics"), one rule or tie
// per test: events against the base and against held overrides, snapshots
// (stale, duplicate, ties, overrides re-applied or dropped), commits that empty
// the shards a snapshot did not carry, known users, and write validation.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <random>
#include <roaring/roaring.hh>
#include <string>
#include <string_view>
#include <vector>

#include "server/test_util.h"
#include "tagcache/server/engine.h"

namespace tagcache::test {
namespace {

// Several shards of 256 users each, so commits have shards to empty.
constexpr int kBits = 8;
constexpr UserId U(uint64_t shard, uint64_t offset) { return UserAt(shard, offset, kBits); }

using Users = std::vector<UserId>;
using Events = std::vector<Event>;
using Shards = std::vector<uint64_t>;

uint64_t CountOf(const Engine& engine, std::string_view expr) {
  Result<uint64_t> n = engine.Count(expr);
  EXPECT_TRUE(n.ok()) << "Count(" << expr << ") -> " << n.status().ToString();
  return n.ok() ? *n : ~uint64_t{0};
}

// ---- Rule 1: events at or below the base are ignored ------------------------

TEST(EngineMergeTest, EventAtOrBelowBaseTsIsIgnored) {
  Engine engine(TestOptions());
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 100, Users{1}));
  Result<ApplyEventsResult> r = engine.ApplyEvents(
      Events{SetEv(2, "t", 100), SetEv(3, "t", 50), ClearEv(1, "t", 100), ClearEv(1, "t", 99)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 0u);
  EXPECT_EQ(r->ignored, 4u);
  EXPECT_EQ(TagsOf(engine, 1), (TagMap{{"t", 100}}));
  EXPECT_TRUE(TagsOf(engine, 2).empty());
  EXPECT_TRUE(TagsOf(engine, 3).empty());
}

TEST(EngineMergeTest, EventJustAboveBaseTsIsApplied) {
  Engine engine(TestOptions());
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 100, Users{1}));
  Result<ApplyEventsResult> r =
      engine.ApplyEvents(Events{SetEv(2, "t", 101), ClearEv(1, "t", 101)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 2u);
  EXPECT_EQ(r->ignored, 0u);
  EXPECT_TRUE(TagsOf(engine, 1).empty());
  EXPECT_EQ(TagsOf(engine, 2), (TagMap{{"t", 101}}));
}

// With no snapshot the base is 0, and rule 1 applies to it like to any base.
TEST(EngineMergeTest, EventAtTsZeroIsIgnoredWithoutSnapshot) {
  Engine engine(TestOptions());
  Result<ApplyEventsResult> r = engine.ApplyEvents(Events{SetEv(1, "t", 0), SetEv(2, "t", 1)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 1u);
  EXPECT_EQ(r->ignored, 1u);
  EXPECT_TRUE(TagsOf(engine, 1).empty());
  EXPECT_EQ(TagsOf(engine, 2), (TagMap{{"t", 1}}));
}

// ---- Rule 2: events against the held override --------------------------------

TEST(EngineMergeTest, NewerEventWinsOverHeldOverride) {
  Engine engine(TestOptions());
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(7, "t", 10)}));
  Result<ApplyEventsResult> r = engine.ApplyEvents(Events{ClearEv(7, "t", 20)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 1u);
  EXPECT_TRUE(TagsOf(engine, 7).empty());
  r = engine.ApplyEvents(Events{SetEv(7, "t", 30)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 1u);
  EXPECT_EQ(TagsOf(engine, 7), (TagMap{{"t", 30}}));
}

TEST(EngineMergeTest, OlderEventLosesToHeldOverride) {
  Engine engine(TestOptions());
  TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(7, "t", 20), SetEv(8, "t", 20)}));
  Result<ApplyEventsResult> r = engine.ApplyEvents(Events{SetEv(7, "t", 19), ClearEv(8, "t", 10)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 0u);
  EXPECT_EQ(r->ignored, 2u);
  EXPECT_TRUE(TagsOf(engine, 7).empty());
  EXPECT_EQ(TagsOf(engine, 8), (TagMap{{"t", 20}}));
}

TEST(EngineMergeTest, ClearWinsTieAgainstSet) {
  Engine engine(TestOptions());
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(7, "t", 20)}));
  Result<ApplyEventsResult> r = engine.ApplyEvents(Events{ClearEv(7, "t", 20)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 1u);
  EXPECT_TRUE(TagsOf(engine, 7).empty());
}

TEST(EngineMergeTest, ClearWinsTieWhenItArrivesBeforeSet) {
  Engine engine(TestOptions());
  TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(7, "t", 20)}));
  Result<ApplyEventsResult> r = engine.ApplyEvents(Events{SetEv(7, "t", 20)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 0u);
  EXPECT_EQ(r->ignored, 1u);
  EXPECT_TRUE(TagsOf(engine, 7).empty());
}

TEST(EngineMergeTest, ClearWinsTieInBothOrdersWithinOneBatch) {
  Engine a(TestOptions());
  Engine b(TestOptions());
  TC_ASSERT_OK(a.ApplyEvents(Events{SetEv(7, "t", 20), ClearEv(7, "t", 20)}));
  TC_ASSERT_OK(b.ApplyEvents(Events{ClearEv(7, "t", 20), SetEv(7, "t", 20)}));
  EXPECT_TRUE(TagsOf(a, 7).empty());
  EXPECT_TRUE(TagsOf(b, 7).empty());
}

// A tie between equal ops is not a win: redelivery of one event changes nothing.
TEST(EngineMergeTest, DuplicateEventIsIgnored) {
  Engine engine(TestOptions());
  const Events batch{SetEv(7, "t", 20), SetEv(7, "t", 20), ClearEv(8, "t", 20)};
  Result<ApplyEventsResult> r = engine.ApplyEvents(batch);
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 2u);
  EXPECT_EQ(r->ignored, 1u);
  r = engine.ApplyEvents(batch);
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 0u);
  EXPECT_EQ(r->ignored, 3u);
  EXPECT_EQ(TagsOf(engine, 7), (TagMap{{"t", 20}}));
  EXPECT_TRUE(TagsOf(engine, 8).empty());
  EXPECT_EQ(CountOf(engine, "t"), 1u);
}

// ---- Rule 3: snapshots ---------------------------------------------------------

TEST(EngineMergeTest, StaleSnapshotIsRejectedAndStateUnchanged) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 100, Users{U(0, 1), U(0, 2)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(0, 3), "t", 150)}));

  Result<SnapshotOutcome> part = engine.ApplySnapshot("t", 99, 0, OffsetsOf({4}));
  EXPECT_EQ(part.status().code(), StatusCode::kStaleSnapshot) << part.status().ToString();
  EXPECT_FALSE(part.status().message().empty());
  Status full = engine.ApplyFullSnapshot("t", 50, Users{U(0, 5)});
  EXPECT_EQ(full.code(), StatusCode::kStaleSnapshot) << full.ToString();

  EXPECT_EQ(TagsOf(engine, U(0, 1)), (TagMap{{"t", 100}}));
  EXPECT_EQ(TagsOf(engine, U(0, 2)), (TagMap{{"t", 100}}));
  EXPECT_EQ(TagsOf(engine, U(0, 3)), (TagMap{{"t", 150}}));
  EXPECT_TRUE(TagsOf(engine, U(0, 4)).empty());
  EXPECT_TRUE(TagsOf(engine, U(0, 5)).empty());
  EXPECT_EQ(CountOf(engine, "t"), 3u);
  EXPECT_GE(engine.Stats().counters.snapshots_stale, 1u);
}

TEST(EngineMergeTest, SameSnapshotTwiceIsDuplicateNoOp) {
  Engine engine(TestOptions(kBits));
  Result<SnapshotOutcome> first = engine.ApplySnapshot("t", 100, 0, OffsetsOf({1, 2, 200}));
  TC_ASSERT_OK(first);
  EXPECT_EQ(*first, SnapshotOutcome::kApplied);
  TC_ASSERT_OK(engine.CommitSnapshot("t", 100, Shards{0}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(U(0, 1), "t", 150), SetEv(U(0, 3), "t", 150)}));

  // The same members built differently (run-optimised) are the same snapshot.
  Roaring again = OffsetsOf({200, 2, 1});
  again.runOptimize();
  Result<SnapshotOutcome> second = engine.ApplySnapshot("t", 100, 0, again);
  TC_ASSERT_OK(second);
  EXPECT_EQ(*second, SnapshotOutcome::kDuplicate);
  TC_ASSERT_OK(engine.CommitSnapshot("t", 100, Shards{0}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 100, Users{U(0, 200), U(0, 1), U(0, 2), U(0, 1)}));

  // The overrides newer than the base survive the duplicates.
  EXPECT_TRUE(TagsOf(engine, U(0, 1)).empty());
  EXPECT_EQ(TagsOf(engine, U(0, 2)), (TagMap{{"t", 100}}));
  EXPECT_EQ(TagsOf(engine, U(0, 3)), (TagMap{{"t", 150}}));
  EXPECT_EQ(TagsOf(engine, U(0, 200)), (TagMap{{"t", 100}}));
  EXPECT_EQ(CountOf(engine, "t"), 3u);
  EXPECT_GE(engine.Stats().counters.snapshots_duplicate, 1u);
}

// Applies `parts` (one shard, same ts, different members) in the given order
// and returns the final members of shard 0 plus each application's outcome.
struct TieRun {
  std::vector<uint32_t> members;
  std::vector<SnapshotOutcome> outcomes;
};
TieRun ApplyInOrder(const std::vector<Roaring>& parts, const std::vector<size_t>& order) {
  Engine engine(TestOptions(kBits));
  TieRun run;
  for (size_t i : order) {
    Result<SnapshotOutcome> r = engine.ApplySnapshot("t", 100, 0, parts[i]);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    run.outcomes.push_back(r.ok() ? *r : SnapshotOutcome::kApplied);
  }
  for (uint32_t off = 0; off < 256; ++off) {
    if (!TagsOf(engine, U(0, off)).empty()) run.members.push_back(off);
  }
  return run;
}

std::vector<uint32_t> MembersOf(const Roaring& r) {
  std::vector<uint32_t> out(r.cardinality());
  r.toUint32Array(out.data());
  return out;
}

TEST(EngineMergeTest, DifferentSnapshotsAtSameTsPickSameWinnerInBothOrders) {
  std::mt19937_64 rng(20240611);
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<Roaring> parts(2);
    while (parts[0] == parts[1]) {
      for (Roaring& p : parts) {
        p = Roaring();
        for (uint32_t off = 0; off < 40; ++off) {
          if (rng() % 3 == 0) p.add(off);
        }
      }
    }
    TieRun ab = ApplyInOrder(parts, {0, 1});
    TieRun ba = ApplyInOrder(parts, {1, 0});
    SCOPED_TRACE("trial " + std::to_string(trial));
    EXPECT_EQ(ab.outcomes[0], SnapshotOutcome::kApplied);
    EXPECT_EQ(ba.outcomes[0], SnapshotOutcome::kApplied);
    ASSERT_TRUE(ab.outcomes[1] == SnapshotOutcome::kTieWon ||
                ab.outcomes[1] == SnapshotOutcome::kTieLost)
        << static_cast<int>(ab.outcomes[1]);
    // Whoever wins in one order must win in the other: the tie-break is on content.
    const bool b_wins = ab.outcomes[1] == SnapshotOutcome::kTieWon;
    EXPECT_EQ(ba.outcomes[1], b_wins ? SnapshotOutcome::kTieLost : SnapshotOutcome::kTieWon);
    EXPECT_EQ(ab.members, ba.members) << "replicas disagree";
    EXPECT_EQ(ab.members, MembersOf(parts[b_wins ? 1 : 0]));
    // Redelivering either snapshot afterwards changes nothing.
    TieRun aba = ApplyInOrder(parts, {0, 1, 0, 1});
    EXPECT_EQ(aba.members, ab.members);
    EXPECT_EQ(aba.outcomes[2], b_wins ? SnapshotOutcome::kTieLost : SnapshotOutcome::kDuplicate);
    EXPECT_EQ(aba.outcomes[3], b_wins ? SnapshotOutcome::kDuplicate : SnapshotOutcome::kTieLost);
  }
}

// The tie-break must be a total order, or three reruns could cycle.
TEST(EngineMergeTest, ThreeTiedSnapshotsAgreeInAllSixOrders) {
  std::vector<Roaring> parts{OffsetsOf({1, 2, 3}), OffsetsOf({4}), OffsetsOf({1, 5, 9, 250})};
  std::vector<size_t> order{0, 1, 2};
  const TieRun first = ApplyInOrder(parts, order);
  while (std::next_permutation(order.begin(), order.end())) {
    EXPECT_EQ(ApplyInOrder(parts, order).members, first.members)
        << "order " << order[0] << order[1] << order[2];
  }
}

TEST(EngineMergeTest, SnapshotTieKeepsNewerOverridesOnTop) {
  for (size_t first : {0u, 1u}) {
    Engine engine(TestOptions(kBits));
    std::vector<Roaring> parts{OffsetsOf({1, 2}), OffsetsOf({1, 3})};
    TC_ASSERT_OK(engine.ApplySnapshot("t", 100, 0, parts[first]));
    TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(U(0, 1), "t", 101), SetEv(U(0, 9), "t", 101)}));
    TC_ASSERT_OK(engine.ApplySnapshot("t", 100, 0, parts[1 - first]));
    EXPECT_TRUE(TagsOf(engine, U(0, 1)).empty());
    EXPECT_EQ(TagsOf(engine, U(0, 9)), (TagMap{{"t", 101}}));
  }
}

// Two reruns of a whole-tag load at one ts, touching different shards: every
// interleaving of their parts and commits must end in the same state.
TEST(EngineMergeTest, TiedMultiShardSnapshotsAgreeInEveryInterleaving) {
  struct Step {
    int snapshot;  // 0 = A, 1 = B
    int part;      // index into the snapshot's parts; -1 = commit
  };
  const std::vector<std::vector<std::pair<uint64_t, Roaring>>> parts{
      {{0, OffsetsOf({1})}, {1, OffsetsOf({1, 7})}},  // A: shards 0 and 1
      {{1, OffsetsOf({2, 7})}, {2, OffsetsOf({2})}},  // B: shards 1 and 2
  };
  std::vector<Step> steps{{0, 0}, {0, 1}, {0, -1}, {1, 0}, {1, 1}, {1, -1}};
  const Users probe{U(0, 1), U(1, 1), U(1, 2), U(1, 7), U(2, 2)};

  std::vector<TagMap> expected;
  bool have_expected = false;
  std::vector<size_t> perm(steps.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = i;
  int orders = 0;
  do {
    Engine engine(TestOptions(kBits, /*query_threads=*/1));
    for (size_t i : perm) {
      const Step& s = steps[i];
      if (s.part < 0) {
        Shards named;
        for (const auto& [shard, offsets] : parts[s.snapshot]) named.push_back(shard);
        TC_EXPECT_OK(engine.CommitSnapshot("t", 100, named));
      } else {
        const auto& [shard, offsets] = parts[s.snapshot][s.part];
        TC_EXPECT_OK(engine.ApplySnapshot("t", 100, shard, offsets));
      }
    }
    std::vector<TagMap> got;
    for (UserId u : probe) got.push_back(TagsOf(engine, u));
    if (!have_expected) {
      expected = got;
      have_expected = true;
    } else {
      ASSERT_EQ(got, expected) << "interleaving #" << orders << " disagrees with #0";
    }
    ++orders;
  } while (std::next_permutation(perm.begin(), perm.end()));
  EXPECT_EQ(orders, 720);
}

TEST(EngineMergeTest, NewerSnapshotReappliesNewerOverridesOnTop) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 10, Users{U(0, 1)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(U(0, 1), "t", 15), SetEv(U(1, 2), "t", 15)}));
  Result<SnapshotOutcome> r = engine.ApplySnapshot("t", 12, 0, OffsetsOf({1, 3}));
  TC_ASSERT_OK(r);
  EXPECT_EQ(*r, SnapshotOutcome::kApplied);
  TC_ASSERT_OK(engine.ApplySnapshot("t", 12, 1, OffsetsOf({4})));
  TC_ASSERT_OK(engine.CommitSnapshot("t", 12, Shards{0, 1}));

  EXPECT_TRUE(TagsOf(engine, U(0, 1)).empty()) << "the clear at 15 is newer than the base 12";
  EXPECT_EQ(TagsOf(engine, U(1, 2)), (TagMap{{"t", 15}}));
  EXPECT_EQ(TagsOf(engine, U(0, 3)), (TagMap{{"t", 12}}));
  EXPECT_EQ(TagsOf(engine, U(1, 4)), (TagMap{{"t", 12}}));
  EXPECT_EQ(CountOf(engine, "t"), 3u);
}

TEST(EngineMergeTest, NewerSnapshotDropsOverridesAtOrBelowItsTs) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(0, 2)}));
  TC_ASSERT_OK(engine.ApplyEvents(
      Events{ClearEv(U(0, 1), "t", 15), SetEv(U(0, 3), "t", 20), SetEv(U(0, 4), "t", 21)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 20, Users{U(0, 1)}));

  EXPECT_EQ(TagsOf(engine, U(0, 1)), (TagMap{{"t", 20}})) << "clear at 15 <= 20 is dropped";
  EXPECT_TRUE(TagsOf(engine, U(0, 2)).empty());
  EXPECT_TRUE(TagsOf(engine, U(0, 3)).empty()) << "set at 20 <= 20 is dropped";
  EXPECT_EQ(TagsOf(engine, U(0, 4)), (TagMap{{"t", 21}}));
  EXPECT_EQ(CountOf(engine, "t"), 2u);
  // A dropped override does not come back with a later, older snapshot either.
  EXPECT_TRUE(engine.ApplyFullSnapshot("t", 19, Users{U(0, 3)}).IsStaleSnapshot());
  EXPECT_TRUE(TagsOf(engine, U(0, 3)).empty());
}

// Rule 3 is per (tag, shard): a whole-tag snapshot that is stale in one shard
// (a newer load reached it, but has not committed yet) still applies to the
// shards where it is not stale, and still commits. Otherwise the result would
// depend on whether it arrived before or after the newer load's part.
TEST(EngineMergeTest, FullSnapshotStaleInOneShardStillAppliesToTheOthers) {
  for (bool newer_part_first : {false, true}) {
    SCOPED_TRACE(newer_part_first ? "newer part first" : "older full snapshot first");
    Engine engine(TestOptions(kBits));
    TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 5, Users{U(1, 1)}));
    auto newer_part = [&] { TC_ASSERT_OK(engine.ApplySnapshot("t", 20, 0, OffsetsOf({1}))); };
    if (newer_part_first) newer_part();
    Status s = engine.ApplyFullSnapshot("t", 10, Users{U(0, 2), U(2, 2)});
    EXPECT_TRUE(s.ok() || s.IsStaleSnapshot()) << s.ToString();
    if (!newer_part_first) newer_part();

    EXPECT_EQ(TagsOf(engine, U(0, 1)), (TagMap{{"t", 20}}));
    EXPECT_TRUE(TagsOf(engine, U(0, 2)).empty());
    EXPECT_TRUE(TagsOf(engine, U(1, 1)).empty()) << "the snapshot as of 10 empties shard 1";
    EXPECT_EQ(TagsOf(engine, U(2, 2)), (TagMap{{"t", 10}}));
    EXPECT_EQ(CountOf(engine, "t"), 2u);
  }
}

// ---- Rule 4: commits -------------------------------------------------------------

TEST(EngineMergeTest, CommitSnapshotEmptiesShardsItCarriedNoMembersFor) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(1, 1), U(2, 1)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(1, 2), "t", 25), SetEv(U(2, 2), "t", 15)}));
  TC_ASSERT_OK(engine.ApplySnapshot("t", 20, 0, OffsetsOf({1, 2})));
  Result<CommitOutcome> commit = engine.CommitSnapshot("t", 20, Shards{0});
  TC_ASSERT_OK(commit);
  EXPECT_EQ(commit->shards_emptied, 2u);
  EXPECT_TRUE(commit->missing_shards.empty());

  EXPECT_EQ(TagsOf(engine, U(0, 1)), (TagMap{{"t", 20}}));
  EXPECT_EQ(TagsOf(engine, U(0, 2)), (TagMap{{"t", 20}}));
  EXPECT_TRUE(TagsOf(engine, U(1, 1)).empty()) << "yesterday's member of an unnamed shard";
  EXPECT_EQ(TagsOf(engine, U(1, 2)), (TagMap{{"t", 25}})) << "override newer than S survives";
  EXPECT_TRUE(TagsOf(engine, U(2, 1)).empty());
  EXPECT_TRUE(TagsOf(engine, U(2, 2)).empty()) << "override at 15 <= S is dropped";
  EXPECT_EQ(CountOf(engine, "t"), 3u);
}

TEST(EngineMergeTest, CommitSnapshotTwiceIsHarmless) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(1, 1)}));
  TC_ASSERT_OK(engine.ApplySnapshot("t", 20, 0, OffsetsOf({3})));
  TC_ASSERT_OK(engine.CommitSnapshot("t", 20, Shards{0}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(1, 5), "t", 21)}));
  Result<CommitOutcome> again = engine.CommitSnapshot("t", 20, Shards{0});
  TC_ASSERT_OK(again);
  EXPECT_TRUE(again->missing_shards.empty());
  EXPECT_EQ(TagsOf(engine, U(0, 3)), (TagMap{{"t", 20}}));
  EXPECT_EQ(TagsOf(engine, U(1, 5)), (TagMap{{"t", 21}}));
  EXPECT_EQ(CountOf(engine, "t"), 2u);
}

// Rule 4's point: a shard with no state for the tag is "empty as of S" too,
// so an event at or below S gives the same result before or after the commit.
TEST(EngineMergeTest, CommitCoversShardWithoutStateSoOldEventsAreIgnoredThere) {
  const UserId far = U(uint64_t{1} << 40, 3);
  const Events events{SetEv(U(5, 1), "t", 20), SetEv(U(5, 2), "t", 19), SetEv(U(5, 3), "t", 21),
                      SetEv(far, "t", 20), ClearEv(U(0, 1), "t", 20)};
  for (bool events_first : {false, true}) {
    SCOPED_TRACE(events_first ? "events before the snapshot" : "events after the commit");
    Engine engine(TestOptions(kBits));
    if (events_first) TC_ASSERT_OK(engine.ApplyEvents(events));
    TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 20, Users{U(0, 1)}));
    if (!events_first) {
      Result<ApplyEventsResult> r = engine.ApplyEvents(events);
      TC_ASSERT_OK(r);
      EXPECT_EQ(r->applied, 1u);
      EXPECT_EQ(r->ignored, 4u);
    }
    EXPECT_EQ(TagsOf(engine, U(0, 1)), (TagMap{{"t", 20}}));
    EXPECT_TRUE(TagsOf(engine, U(5, 1)).empty());
    EXPECT_TRUE(TagsOf(engine, U(5, 2)).empty());
    EXPECT_EQ(TagsOf(engine, U(5, 3)), (TagMap{{"t", 21}}));
    EXPECT_TRUE(TagsOf(engine, far).empty());
    EXPECT_EQ(CountOf(engine, "t"), 2u);
  }
}

TEST(EngineMergeTest, CommitReportsMissingShardAndDoesNotEmptyIt) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(1, 1), U(3, 1)}));
  // The load for ts 20 sent shard 3's part, but shard 1's was lost.
  TC_ASSERT_OK(engine.ApplySnapshot("t", 20, 3, OffsetsOf({2})));
  Result<CommitOutcome> commit = engine.CommitSnapshot("t", 20, Shards{3, 1});
  TC_ASSERT_OK(commit);
  EXPECT_EQ(commit->missing_shards, (std::vector<uint64_t>{1}));
  EXPECT_EQ(commit->shards_emptied, 1u) << "only shard 0 had state and was not named";
  EXPECT_TRUE(TagsOf(engine, U(0, 1)).empty());
  EXPECT_EQ(TagsOf(engine, U(1, 1)), (TagMap{{"t", 10}})) << "a missing shard is never emptied";
  EXPECT_TRUE(TagsOf(engine, U(3, 1)).empty());
  EXPECT_EQ(TagsOf(engine, U(3, 2)), (TagMap{{"t", 20}}));

  // The late part still applies, and the commit then succeeds.
  Result<SnapshotOutcome> late = engine.ApplySnapshot("t", 20, 1, OffsetsOf({5}));
  TC_ASSERT_OK(late);
  EXPECT_EQ(*late, SnapshotOutcome::kApplied);
  EXPECT_TRUE(TagsOf(engine, U(1, 1)).empty());
  EXPECT_EQ(TagsOf(engine, U(1, 5)), (TagMap{{"t", 20}}));
  commit = engine.CommitSnapshot("t", 20, Shards{1, 3});
  TC_ASSERT_OK(commit);
  EXPECT_TRUE(commit->missing_shards.empty());
  EXPECT_EQ(CountOf(engine, "t"), 2u);
}

TEST(EngineMergeTest, MissingShardsAreSortedAscending) {
  Engine engine(TestOptions(kBits));
  Result<CommitOutcome> commit = engine.CommitSnapshot("t", 20, Shards{9, 2, 1u << 20, 4});
  TC_ASSERT_OK(commit);
  EXPECT_EQ(commit->missing_shards, (std::vector<uint64_t>{2, 4, 9, 1u << 20}));
}

TEST(EngineMergeTest, DroppingTagIsFullSnapshotWithNoMembers) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(1, 1), U(7, 1)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(2, 1), "t", 15), SetEv(U(3, 1), "t", 30)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("t", 20, Users{}));
  EXPECT_EQ(AllAudience(engine, "t"), (std::vector<UserId>{U(3, 1)}));
  // Dropped members stay known: '!t' still sees them.
  EXPECT_EQ(AllAudience(engine, "!t"), (std::vector<UserId>{U(0, 1), U(1, 1), U(2, 1), U(7, 1)}));
  // Events at or below the drop are ignored everywhere, even in fresh shards.
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(0, 1), "t", 20), SetEv(U(9, 9), "t", 5)}));
  EXPECT_EQ(AllAudience(engine, "t"), (std::vector<UserId>{U(3, 1)}));
}

// ---- Known users: the universe of '!' ----------------------------------------------

TEST(EngineMergeTest, UserBecomesKnownBySetAndStaysKnownAfterClear) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyEvents(
      Events{SetEv(U(0, 1), "a", 10), SetEv(U(1, 1), "b", 10), ClearEv(U(2, 1), "a", 10)}));
  // U(2,1) was only ever cleared: never set, so not known.
  EXPECT_EQ(AllAudience(engine, "!a"), (std::vector<UserId>{U(1, 1)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{ClearEv(U(0, 1), "a", 11), ClearEv(U(1, 1), "b", 11)}));
  EXPECT_EQ(AllAudience(engine, "!a"), (std::vector<UserId>{U(0, 1), U(1, 1)}));
  EXPECT_EQ(AllAudience(engine, "!b"), (std::vector<UserId>{U(0, 1), U(1, 1)}));
  EXPECT_EQ(CountOf(engine, "a | !a"), 2u);
}

TEST(EngineMergeTest, SnapshotMembersStayKnownAfterNewerSnapshotDropsThem) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 10, Users{U(0, 1), U(4, 4)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 20, Users{U(0, 1)}));
  EXPECT_EQ(AllAudience(engine, "!a"), (std::vector<UserId>{U(4, 4)}));
}

// Known is the union of every set membership received, so it cannot depend on
// whether a snapshot arrived before or after a newer one.
TEST(EngineMergeTest, MembersOfStaleSnapshotBecomeKnown) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 20, Users{U(0, 1)}));
  EXPECT_TRUE(engine.ApplyFullSnapshot("a", 10, Users{U(0, 1), U(2, 2)}).IsStaleSnapshot());
  EXPECT_EQ(AllAudience(engine, "!a"), (std::vector<UserId>{U(2, 2)}));
}

TEST(EngineMergeTest, IgnoredSetEventStillMakesUserKnown) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 20, Users{U(0, 1)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(3, 3), "a", 5)}));
  EXPECT_EQ(AllAudience(engine, "!a"), (std::vector<UserId>{U(3, 3)}));
}

TEST(EngineMergeTest, NotOfOneTagCoversUsersKnownThroughOthers) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 10, Users{U(0, 1), U(1, 1)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("b", 10, Users{U(1, 1), U(2, 1), U(9, 200)}));
  EXPECT_EQ(AllAudience(engine, "!a"), (std::vector<UserId>{U(2, 1), U(9, 200)}));
  EXPECT_EQ(AllAudience(engine, "!b"), (std::vector<UserId>{U(0, 1)}));
}

// ---- Write validation ---------------------------------------------------------------

class FutureTimestampTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kMaxFuture = 1000;
  FutureTimestampTest() : engine_(Options()) {}
  static EngineOptions Options() {
    EngineOptions options = TestOptions(kBits);
    options.max_future_ms = kMaxFuture;
    return options;
  }
  Engine engine_;
};

TEST_F(FutureTimestampTest, EventBatchWithOneFutureEventIsRefusedWhole) {
  TC_ASSERT_OK(engine_.ApplyEvents(Events{SetEv(U(0, 9), "other", kNow)}));
  Result<ApplyEventsResult> r = engine_.ApplyEvents(
      Events{SetEv(U(0, 1), "t", kNow), ClearEv(U(0, 9), "other", kNow + 1),
             SetEv(U(0, 2), "t", kNow + kMaxFuture + 1), SetEv(U(0, 3), "t", 5)});
  EXPECT_EQ(r.status().code(), StatusCode::kFutureTimestamp) << r.status().ToString();
  EXPECT_NE(r.status().message().find('2'), std::string::npos)
      << "should name the event's index 2: " << r.status().ToString();
  EXPECT_TRUE(TagsOf(engine_, U(0, 1)).empty());
  EXPECT_EQ(TagsOf(engine_, U(0, 9)), (TagMap{{"other", kNow}})) << "the clear was not applied";
  EXPECT_EQ(CountOf(engine_, "!other"), 0u) << "refused sets make nobody known";
  EXPECT_GE(engine_.Stats().counters.writes_refused_future, 1u);
}

TEST_F(FutureTimestampTest, WriteExactlyAtTheBoundIsAccepted) {
  Result<ApplyEventsResult> r = engine_.ApplyEvents(Events{SetEv(1, "t", kNow + kMaxFuture)});
  TC_ASSERT_OK(r);
  EXPECT_EQ(r->applied, 1u);
  TC_EXPECT_OK(engine_.ApplyFullSnapshot("u", kNow + kMaxFuture, Users{1}));
}

TEST_F(FutureTimestampTest, FutureSnapshotPartIsRefused) {
  TC_ASSERT_OK(engine_.ApplyFullSnapshot("t", 10, Users{U(0, 1)}));
  Result<SnapshotOutcome> r = engine_.ApplySnapshot("t", kNow + kMaxFuture + 1, 0, OffsetsOf({2}));
  EXPECT_EQ(r.status().code(), StatusCode::kFutureTimestamp) << r.status().ToString();
  EXPECT_EQ(AllAudience(engine_, "t"), (std::vector<UserId>{U(0, 1)}));
  EXPECT_EQ(CountOf(engine_, "!t"), 0u);
}

TEST_F(FutureTimestampTest, FutureFullSnapshotIsRefusedAndNothingApplied) {
  TC_ASSERT_OK(engine_.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(1, 1)}));
  Status s = engine_.ApplyFullSnapshot("t", kNow + 10 * kMaxFuture, Users{U(1, 2), U(2, 2)});
  EXPECT_EQ(s.code(), StatusCode::kFutureTimestamp) << s.ToString();
  EXPECT_EQ(AllAudience(engine_, "t"), (std::vector<UserId>{U(0, 1), U(1, 1)}));
  // Later snapshots still apply: nothing was stamped in the future.
  TC_ASSERT_OK(engine_.ApplyFullSnapshot("t", 11, Users{U(2, 3)}));
  EXPECT_EQ(AllAudience(engine_, "t"), (std::vector<UserId>{U(2, 3)}));
}

// An "empty as of 2100" commit would blank the tag's other shards for good.
TEST_F(FutureTimestampTest, FutureCommitIsRefused) {
  TC_ASSERT_OK(engine_.ApplyFullSnapshot("t", 10, Users{U(0, 1), U(1, 1)}));
  Result<CommitOutcome> r = engine_.CommitSnapshot("t", kNow + kMaxFuture + 1, Shards{0});
  EXPECT_EQ(r.status().code(), StatusCode::kFutureTimestamp) << r.status().ToString();
  EXPECT_EQ(AllAudience(engine_, "t"), (std::vector<UserId>{U(0, 1), U(1, 1)}));
  TC_ASSERT_OK(engine_.ApplyEvents(Events{SetEv(U(1, 2), "t", 11)}));
  EXPECT_EQ(CountOf(engine_, "t"), 3u);
}

TEST(EngineMergeTest, FutureTimestampFollowsTheInjectedClock) {
  auto now = std::make_shared<std::atomic<Timestamp>>(kNow);
  EngineOptions options = TestOptions(kBits);
  options.max_future_ms = 1000;
  options.clock = [now] { return now->load(); };
  Engine engine(options);
  EXPECT_TRUE(StatusOf(engine.ApplyEvents(Events{SetEv(1, "t", kNow + 5000)})).IsFutureTimestamp());
  now->store(kNow + 4500);
  TC_EXPECT_OK(engine.ApplyEvents(Events{SetEv(1, "t", kNow + 5000)}));
  EXPECT_EQ(TagsOf(engine, 1), (TagMap{{"t", kNow + 5000}}));
}

TEST(EngineMergeTest, ZeroMaxFutureDisablesTheCheck) {
  EngineOptions options = TestOptions(kBits);
  options.max_future_ms = 0;
  Engine engine(options);
  const Timestamp far = kNow * 1000;
  TC_EXPECT_OK(engine.ApplyEvents(Events{SetEv(1, "t", far)}));
  TC_EXPECT_OK(engine.ApplyFullSnapshot("u", far, Users{2}));
  EXPECT_EQ(TagsOf(engine, 1), (TagMap{{"t", far}}));
}

TEST(EngineMergeTest, IsValidTagNameAcceptsOnlyTheDocumentedAlphabetAndLength) {
  EXPECT_TRUE(IsValidTagName("a"));
  EXPECT_TRUE(IsValidTagName("AZaz09_.:-"));
  EXPECT_TRUE(IsValidTagName(std::string(128, 'x')));
  EXPECT_FALSE(IsValidTagName(""));
  EXPECT_FALSE(IsValidTagName(std::string(129, 'x')));
  for (std::string_view bad : {"a b", "a/b", "a\tb", "a+b", "a&b", "a|b", "!a", "(a)", "a$",
                               "caf\xc3\xa9", "a,b", "a\"", "a'"}) {
    EXPECT_FALSE(IsValidTagName(bad)) << bad;
  }
  EXPECT_FALSE(IsValidTagName(std::string_view("a\0b", 3)));
}

TEST(EngineMergeTest, BadTagNamesAreBadRequestForEveryWrite) {
  Engine engine(TestOptions(kBits));
  for (const std::string& bad :
       {std::string(), std::string(129, 'x'), std::string("a b"), std::string("a/b")}) {
    SCOPED_TRACE("tag '" + bad + "'");
    // The valid event in the same batch must not be applied either.
    Result<ApplyEventsResult> ev =
        engine.ApplyEvents(Events{SetEv(1, "ok", 10), SetEv(2, bad, 10)});
    EXPECT_EQ(ev.status().code(), StatusCode::kBadRequest) << ev.status().ToString();
    Result<SnapshotOutcome> part = engine.ApplySnapshot(bad, 10, 0, OffsetsOf({1}));
    EXPECT_EQ(part.status().code(), StatusCode::kBadRequest) << part.status().ToString();
    Result<CommitOutcome> commit = engine.CommitSnapshot(bad, 10, Shards{0});
    EXPECT_EQ(commit.status().code(), StatusCode::kBadRequest) << commit.status().ToString();
    Status full = engine.ApplyFullSnapshot(bad, 10, Users{1});
    EXPECT_EQ(full.code(), StatusCode::kBadRequest) << full.ToString();
  }
  EXPECT_TRUE(TagsOf(engine, 1).empty());
  EXPECT_TRUE(TagsOf(engine, 2).empty());
  EXPECT_EQ(engine.Stats().tags, 0u) << "no bad write may create a tag";
  // The longest valid name works.
  const std::string longest(128, 'x');
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(1, longest, 10)}));
  EXPECT_EQ(TagsOf(engine, 1), (TagMap{{longest, 10}}));
}

TEST(EngineMergeTest, SnapshotOffsetBeyondShardIsBadRequest) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplySnapshot("t", 10, 0, OffsetsOf({255})));
  for (uint32_t bad : {256u, 1u << 20, 0xFFFFFFFFu}) {
    Result<SnapshotOutcome> r = engine.ApplySnapshot("t", 20, 0, OffsetsOf({1, bad}));
    EXPECT_EQ(r.status().code(), StatusCode::kBadRequest) << bad << ": " << r.status().ToString();
  }
  EXPECT_EQ(AllAudience(engine, "t"), (std::vector<UserId>{U(0, 255)}));

  Engine wide(TestOptions(20));
  TC_EXPECT_OK(wide.ApplySnapshot("t", 10, 3, OffsetsOf({(1u << 20) - 1})));
  EXPECT_TRUE(StatusOf(wide.ApplySnapshot("t", 20, 3, OffsetsOf({1u << 20}))).IsBadRequest());
  EXPECT_EQ(AllAudience(wide, "t"), (std::vector<UserId>{(uint64_t{3} << 20) | ((1u << 20) - 1)}));
}

TEST(EngineMergeTest, ShardBitsAreClampedIntoRange) {
  EXPECT_EQ(Engine(TestOptions(20)).shard_bits(), 20);
  EXPECT_EQ(Engine(TestOptions(4)).shard_bits(), 8);
  EXPECT_EQ(Engine(TestOptions(40)).shard_bits(), 26) << "the documented range is [8, 26]";
}

// ---- Point lookups ---------------------------------------------------------------------

TEST(EngineMergeTest, GetTagsWithTsReturnsWinningWriteTs) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("snap", 100, Users{1, 2}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(1, "ev", 120), SetEv(2, "snap", 130)}));
  EXPECT_EQ(TagsOf(engine, 1), (TagMap{{"snap", 100}, {"ev", 120}}));
  EXPECT_EQ(TagsOf(engine, 2), (TagMap{{"snap", 130}})) << "a re-set member carries its override";
  for (const TagHit& hit : engine.GetTags(1, /*with_ts=*/false)) {
    EXPECT_EQ(hit.ts, 0u) << hit.tag << ": ts must be 0 unless requested";
  }
  EXPECT_TRUE(engine.GetTags(999).empty());
}

TEST(EngineMergeTest, GetTagsListsTagsInCreationOrder) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(1, "zeta", 10)}));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("alpha", 10, Users{1, 2}));
  TC_ASSERT_OK(
      engine.ApplyEvents(Events{SetEv(2, "mid", 10), SetEv(1, "mid", 10), SetEv(2, "zeta", 10)}));
  for (UserId u : {1u, 2u}) {
    std::vector<std::string> names;
    for (const TagHit& hit : engine.GetTags(u)) names.emplace_back(hit.tag);
    EXPECT_EQ(names, (std::vector<std::string>{"zeta", "alpha", "mid"})) << "user " << u;
  }
}

// A user with thousands of tags: the per-user tag list grows through many
// sizes and shrinks again, and must keep creation order throughout.
TEST(EngineMergeTest, GetTagsKeepsCreationOrderForUserWithManyTags) {
  Engine engine(TestOptions(kBits));
  std::vector<std::string> names;
  Events events;
  for (int i = 0; i < 3000; ++i) {
    names.push_back("tag" + std::to_string((i * 7919) % 3000));  // creation order != name order
    events.push_back(SetEv(5, names.back(), 10));
  }
  TC_ASSERT_OK(engine.ApplyEvents(events));
  auto listed = [&] {
    std::vector<std::string> out;
    for (const TagHit& hit : engine.GetTags(5)) out.emplace_back(hit.tag);
    return out;
  };
  EXPECT_EQ(listed(), names);
  events.clear();
  std::vector<std::string> kept;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i % 3 == 0) {
      events.push_back(ClearEv(5, names[i], 11));
    } else {
      kept.push_back(names[i]);
    }
  }
  TC_ASSERT_OK(engine.ApplyEvents(events));
  EXPECT_EQ(listed(), kept);
}

TEST(EngineMergeTest, GetTagsBatchMatchesGetTagsInGivenOrder) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 10, Users{U(0, 1), U(3, 1)}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(U(3, 1), "b", 20), SetEv(U(9, 9), "b", 30)}));
  const Users users{U(9, 9), U(0, 1), 12345, U(3, 1), U(0, 1)};
  for (bool with_ts : {false, true}) {
    std::vector<std::vector<TagHit>> batch = engine.GetTagsBatch(users, with_ts);
    ASSERT_EQ(batch.size(), users.size());
    for (size_t i = 0; i < users.size(); ++i) {
      std::vector<TagHit> single = engine.GetTags(users[i], with_ts);
      ASSERT_EQ(batch[i].size(), single.size()) << "user " << users[i];
      for (size_t j = 0; j < single.size(); ++j) {
        EXPECT_EQ(batch[i][j].tag, single[j].tag);
        EXPECT_EQ(batch[i][j].ts, single[j].ts);
      }
    }
  }
  std::vector<std::vector<TagHit>> batch = engine.GetTagsBatch(users, true);
  EXPECT_TRUE(batch[2].empty());
  ASSERT_EQ(batch[0].size(), 1u);
  EXPECT_EQ(batch[0][0].tag, "b");
  EXPECT_EQ(batch[0][0].ts, 30u);
  EXPECT_EQ(batch[3].size(), 2u);
  EXPECT_TRUE(engine.GetTagsBatch(Users{}).empty());
}

TEST(EngineMergeTest, HasTagsAnswersPerTag) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 10, Users{1}));
  TC_ASSERT_OK(engine.ApplyEvents(Events{SetEv(2, "b", 20), ClearEv(1, "c", 20)}));
  const std::vector<std::string_view> tags{"b", "a", "c", "a"};
  Result<std::vector<bool>> r = engine.HasTags(1, tags);
  TC_ASSERT_OK(r);
  EXPECT_EQ(*r, (std::vector<bool>{false, true, false, true}));
  r = engine.HasTags(2, tags);
  TC_ASSERT_OK(r);
  EXPECT_EQ(*r, (std::vector<bool>{true, false, false, false}));
  r = engine.HasTags(77, tags);
  TC_ASSERT_OK(r);
  EXPECT_EQ(*r, (std::vector<bool>(4, false)));
}

TEST(EngineMergeTest, HasTagsWithUnknownTagNamesEveryUnknownTag) {
  Engine engine(TestOptions(kBits));
  TC_ASSERT_OK(engine.ApplyFullSnapshot("a", 10, Users{1}));
  const std::vector<std::string_view> tags{"a", "never_written", "a", "also-missing"};
  Result<std::vector<bool>> r = engine.HasTags(1, tags);
  EXPECT_EQ(r.status().code(), StatusCode::kUnknownTag) << r.status().ToString();
  EXPECT_NE(r.status().message().find("never_written"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("also-missing"), std::string::npos) << r.status().ToString();
}

}  // namespace
}  // namespace tagcache::test
