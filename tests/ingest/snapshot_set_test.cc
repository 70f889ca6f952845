// SnapshotSet against a plain reference model (tag -> std::set of users):
// adds in every form, merges, erasures and the accessors, with random data
// from a fixed seed, plus the shard arithmetic at shard boundaries.
#include "tagcache/ingest/snapshot_set.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace tagcache::ingest {
namespace {

using Model = std::map<std::string, std::set<uint64_t>>;

// The set's contents through its public accessors, checking the shape of
// every part on the way (no empty bitmaps, offsets below 2^shard_bits).
Model Dump(SnapshotSet& set) {
  Model model;
  const uint64_t limit = uint64_t{1} << set.shard_bits();
  for (const std::string& tag : set.Tags()) {
    std::set<uint64_t>& users = model[tag];
    for (const auto& [shard, offsets] : set.Parts(tag)) {
      EXPECT_FALSE(offsets.isEmpty()) << tag << " shard " << shard;
      for (uint32_t offset : offsets) {
        EXPECT_LT(offset, limit) << tag << " shard " << shard;
        users.insert(users.end(), shard << set.shard_bits() | offset);  // ascending
      }
    }
  }
  return model;
}

void ExpectMatches(SnapshotSet& set, const Model& model) {
  EXPECT_EQ(Dump(set), model);
  EXPECT_EQ(set.tag_count(), model.size());
  uint64_t assignments = 0;
  std::vector<uint64_t> users;
  std::vector<uint64_t> shards;
  for (const auto& [tag, members] : model) {
    assignments += members.size();
    for (uint64_t user : members) {
      users.push_back(user);
      shards.push_back(user >> set.shard_bits());
    }
  }
  for (std::vector<uint64_t>* v : {&users, &shards}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
  EXPECT_EQ(set.Assignments(), assignments);
  EXPECT_EQ(set.DistinctUsers(), users.size());
  EXPECT_EQ(set.DistinctShards(), shards.size());
  std::vector<std::string> names;
  for (const auto& [tag, members] : model) names.push_back(tag);
  EXPECT_EQ(set.Tags(), names);
}

// Users drawn so that they cluster (dense containers, runs), scatter, and
// reach the top of the 64-bit range.
uint64_t RandomUser(std::mt19937_64& rng) {
  switch (rng() % 4) {
    case 0:
      return rng() % 5000;  // one dense range
    case 1:
      return (uint64_t{3} << 20) + rng() % 300000;  // across shard boundaries
    case 2:
      return rng() % (uint64_t{1} << 34);  // sparse, above 2^32
    default:
      return ~uint64_t{0} - rng() % 1000;  // the top
  }
}

TEST(SnapshotSetTest, AddSplitsUsersAtShardBoundaries) {
  for (int bits : {8, 16, 20, 32}) {
    SnapshotSet set(bits);
    Model model;
    for (uint64_t s : {uint64_t{1}, uint64_t{2}, uint64_t{7}, uint64_t{1} << 20}) {
      for (uint64_t user : {(s << bits) - 1, s << bits}) {
        set.Add("t", user);
        model["t"].insert(user);
      }
    }
    set.Add("t", 0);
    set.Add("t", ~uint64_t{0});
    model["t"].insert({0, ~uint64_t{0}});
    ExpectMatches(set, model);

    // (s << bits) - 1 is the last offset of shard s - 1; s << bits the first of s.
    const auto& parts = set.Parts("t");
    const uint64_t last_offset = (uint64_t{1} << bits) - 1;
    ASSERT_TRUE(parts.count(1)) << bits;
    EXPECT_TRUE(parts.at(1).contains(0)) << bits;
    ASSERT_TRUE(parts.count(0)) << bits;
    EXPECT_TRUE(parts.at(0).contains(static_cast<uint32_t>(last_offset))) << bits;
    EXPECT_TRUE(parts.at(0).contains(0)) << bits;
    const uint64_t top_shard = ~uint64_t{0} >> bits;
    ASSERT_TRUE(parts.count(top_shard)) << bits;
    EXPECT_TRUE(parts.at(top_shard).contains(static_cast<uint32_t>(last_offset))) << bits;
  }
}

TEST(SnapshotSetTest, DuplicatesCountOnce) {
  SnapshotSet set(16);
  for (int i = 0; i < 3; ++i) {
    set.Add("a", 42);
    set.Add("b", 42);
  }
  set.Add("a", 43);
  EXPECT_EQ(set.Assignments(), 3u);
  EXPECT_EQ(set.DistinctUsers(), 2u);
  EXPECT_EQ(set.DistinctShards(), 1u);
}

TEST(SnapshotSetTest, AddTagWithNoMembersIsPresentAndEmpty) {
  SnapshotSet set(20);
  set.AddTag("empty");
  set.AddUsers32("also_empty", Roaring());
  set.AddShardOffsets("still_empty", 3, Roaring());
  EXPECT_EQ(set.tag_count(), 3u);
  EXPECT_EQ(set.Tags(), (std::vector<std::string>{"also_empty", "empty", "still_empty"}));
  EXPECT_TRUE(set.Parts("empty").empty());
  EXPECT_TRUE(set.Parts("still_empty").empty());
  EXPECT_TRUE(set.Parts("unknown").empty());
  EXPECT_EQ(set.tag_count(), 3u) << "Parts of an unknown tag must not create it";
  EXPECT_EQ(set.Assignments(), 0u);
  EXPECT_EQ(set.DistinctUsers(), 0u);
  EXPECT_EQ(set.DistinctShards(), 0u);

  set.Add("empty", 5);  // a tag present without members can gain some
  ExpectMatches(set, Model{{"also_empty", {}}, {"empty", {5}}, {"still_empty", {}}});
}

TEST(SnapshotSetTest, AddUsers32MatchesAddOnEveryShardWidth) {
  std::mt19937_64 rng(7);
  Roaring users;
  users.addRange(0, 70000);                     // a run across two containers
  users.addRange(1u << 20, (1u << 20) + 5000);  // a bitset container
  for (int i = 0; i < 3000; ++i) users.add(static_cast<uint32_t>(rng()));  // arrays
  users.add(~0u);
  users.runOptimize();
  for (int bits : {8, 12, 15, 16, 17, 20, 24, 31, 32}) {
    SnapshotSet set(bits);
    Model model;
    set.AddUsers32("t", users);
    for (uint32_t user : users) model["t"].insert(user);
    ExpectMatches(set, model);
    if (bits < 32) {
      EXPECT_GE(set.DistinctShards(), 2u) << "32-bit users land in several shards";
    }
  }
}

TEST(SnapshotSetTest, AddShardOffsetsUnitesWithAddedUsers) {
  SnapshotSet set(16);
  set.Add("t", (uint64_t{5} << 16) | 1);
  Roaring offsets;
  offsets.add(1);
  offsets.add(2);
  offsets.add(65535);
  set.AddShardOffsets("t", 5, offsets);
  set.AddShardOffsets("t", 9, offsets);
  Model model;
  for (uint64_t shard : {5, 9}) {
    for (uint64_t offset : {1, 2, 65535}) model["t"].insert(shard << 16 | offset);
  }
  ExpectMatches(set, model);
}

TEST(SnapshotSetTest, RandomOperationsMatchReferenceModel) {
  std::mt19937_64 rng(20240611);
  const std::vector<std::string> names = {"a", "b", "c_d", "tag:x", "e.f", "g-h"};
  for (int bits : {8, 20, 32}) {
    SnapshotSet set(bits);
    Model model;
    for (int round = 0; round < 40; ++round) {
      const int op = static_cast<int>(rng() % 10);
      const std::string& tag = names[rng() % names.size()];
      if (op < 5) {  // interleaved single adds, many tags
        const int n = static_cast<int>(rng() % 3000);
        for (int i = 0; i < n; ++i) {
          const std::string& t = names[rng() % 3 == 0 ? rng() % names.size() : 0];
          const uint64_t user = RandomUser(rng);
          set.Add(t, user);
          model[t].insert(user);
        }
      } else if (op == 5) {
        Roaring users;
        for (int i = 0; i < 500; ++i) users.add(static_cast<uint32_t>(RandomUser(rng)));
        set.AddUsers32(tag, users);
        for (uint32_t u : users) model[tag].insert(u);
      } else if (op == 6) {  // another reader's set, sharing some tags
        SnapshotSet other(bits);
        const int n = static_cast<int>(rng() % 2000);
        for (int i = 0; i < n; ++i) {
          const std::string& t = names[rng() % names.size()];
          const uint64_t user = RandomUser(rng);
          other.Add(t, user);
          model[t].insert(user);
        }
        other.AddTag("merged_empty");
        model["merged_empty"];
        set.MergeFrom(std::move(other));
        EXPECT_EQ(other.tag_count(), 0u);
      } else if (op == 7) {
        set.Erase(tag);
        model.erase(tag);
      } else if (op == 8) {
        set.AddTag(tag);
        model[tag];
      } else {
        ExpectMatches(set, model);
      }
    }
    ExpectMatches(set, model);
    EXPECT_GT(set.Assignments(), 1000u);
  }
}

// More members than one fold takes (2^21 pending), for a few interleaved
// tags: the log folds on its own while adding.
TEST(SnapshotSetTest, LargeInterleavedInputFoldsCorrectly) {
  SnapshotSet set(16);
  std::mt19937_64 rng(99);
  std::map<std::string, std::vector<uint64_t>> added;  // a std::set per add is slow
  const char* names[] = {"x", "y", "z"};
  for (int i = 0; i < (1 << 21) + (1 << 19); ++i) {
    const char* tag = names[rng() % 3];
    const uint64_t user = rng() % 3000000;
    set.Add(tag, user);
    added[tag].push_back(user);
  }
  Model model;
  for (auto& [tag, users] : added) {
    std::sort(users.begin(), users.end());
    model[tag] = std::set<uint64_t>(users.begin(), users.end());
  }
  ExpectMatches(set, model);
}

TEST(SnapshotSetTest, MergeFromUnitesAndEmptiesTheOther) {
  SnapshotSet a(16);
  SnapshotSet b(16);
  a.Add("shared", 1);
  a.Add("only_a", 2);
  b.Add("shared", 1);
  b.Add("shared", uint64_t{1} << 40);
  b.Add("only_b", 3);
  b.AddTag("empty_b");
  a.MergeFrom(std::move(b));
  ExpectMatches(
      a,
      Model{{"empty_b", {}}, {"only_a", {2}}, {"only_b", {3}}, {"shared", {1, uint64_t{1} << 40}}});
  EXPECT_EQ(b.tag_count(), 0u);
  // Both remain usable, the moved tags included.
  b.Add("only_b", 9);
  a.Add("only_b", 4);
  ExpectMatches(b, Model{{"only_b", {9}}});
  ExpectMatches(a, Model{{"empty_b", {}},
                         {"only_a", {2}},
                         {"only_b", {3, 4}},
                         {"shared", {1, uint64_t{1} << 40}}});
}

TEST(SnapshotSetTest, EraseForgetsTagAndItsPendingMembers) {
  SnapshotSet set(16);
  set.Add("a", 1);
  set.Add("b", 2);
  set.Erase("a");  // with "a" still pending
  set.Erase("unknown");
  ExpectMatches(set, Model{{"b", {2}}});
  set.Add("a", 7);  // a new tag of the same name
  set.Add("b", 3);
  ExpectMatches(set, Model{{"a", {7}}, {"b", {2, 3}}});
}

TEST(SnapshotSetTest, MovedSetKeepsWorking) {
  SnapshotSet set(16);
  set.Add("a", 1);
  SnapshotSet moved(std::move(set));
  moved.Add("a", 2);  // the last-tag cache must follow the move
  moved.Add("b", 3);
  SnapshotSet assigned(8);
  assigned = std::move(moved);
  assigned.Add("a", 4);
  EXPECT_EQ(assigned.shard_bits(), 16);
  ExpectMatches(assigned, Model{{"a", {1, 2, 4}}, {"b", {3}}});
}

TEST(SnapshotSetTest, MemoryBytesCountsBuffersAndBitmaps) {
  SnapshotSet set(20);
  EXPECT_EQ(set.MemoryBytes(), 0u);
  for (uint64_t user = 0; user < 100000; ++user) set.Add("t", user * 3);
  const uint64_t buffered = set.MemoryBytes();
  EXPECT_GT(buffered, 100000u * 8) << "pending members are counted";
  set.Flush();
  const uint64_t flushed = set.MemoryBytes();
  EXPECT_GT(flushed, 0u);
  EXPECT_LT(flushed, buffered);
  uint64_t serialized = 0;
  for (const auto& [shard, offsets] : set.Parts("t")) serialized += offsets.getSizeInBytes(true);
  EXPECT_EQ(set.MemoryBytes(), serialized);
}

TEST(SnapshotSetTest, PartsAreRunOptimised) {
  SnapshotSet set(20);
  for (uint64_t user = 0; user < 1000000; ++user) set.Add("dense", user);
  const auto& parts = set.Parts("dense");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts.begin()->second.cardinality(), 1000000u);
  // 16 containers of one run each: about 230 bytes, against 128 KiB of bitsets.
  EXPECT_LT(parts.begin()->second.getSizeInBytes(true), 1000u);
}

}  // namespace
}  // namespace tagcache::ingest
