// UserIndex against a plain reference: random adds and removes over many
// users, including lists long enough to walk through every size class and
// into the oversized-list path.
#include "user_index.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace tagcache::internal {
namespace {

std::vector<uint32_t> TagsOf(const UserIndex& index, uint32_t user) {
  std::vector<uint32_t> out;
  index.ForEachTag(user, [&](uint32_t t) { out.push_back(t); });
  return out;
}

TEST(UserIndexTest, RandomAddsAndRemovesMatchReference) {
  UserIndex index;
  std::map<uint32_t, std::set<uint32_t>> ref;
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> user(0, 200'000);  // spans several slot chunks
  std::uniform_int_distribution<uint32_t> tag(0, 3000);
  for (int i = 0; i < 200'000; ++i) {
    uint32_t u = user(rng) % 500 * 397;  // few users, so lists get long
    uint32_t t = tag(rng);
    if (rng() % 3 == 0) {
      EXPECT_EQ(index.Remove(u, t), ref[u].erase(t) == 1);
    } else {
      EXPECT_EQ(index.Add(u, t), ref[u].insert(t).second);
    }
  }
  for (const auto& [u, tags] : ref) {
    ASSERT_EQ(TagsOf(index, u), std::vector<uint32_t>(tags.begin(), tags.end())) << "user " << u;
  }
  EXPECT_TRUE(TagsOf(index, 1).empty());
  EXPECT_GT(index.MemoryBytes(), 0u);
}

TEST(UserIndexTest, OversizedListsAndLargeTagIds) {
  UserIndex index(/*max_block_bytes=*/1024);
  std::set<uint32_t> ref;
  // Far-apart ids need 3-byte varints: 3,000 of them outgrow a 1 KiB
  // largest class and must move to the oversized path and back.
  for (uint32_t i = 0; i < 3'000; ++i) {
    uint32_t t = i * 1'400'001u;
    index.Add(7, t);
    ref.insert(t);
  }
  EXPECT_EQ(TagsOf(index, 7), std::vector<uint32_t>(ref.begin(), ref.end()));
  for (uint32_t i = 0; i < 3'000; i += 2) {
    ASSERT_TRUE(index.Remove(7, i * 1'400'001u));
    ref.erase(i * 1'400'001u);
  }
  EXPECT_EQ(TagsOf(index, 7), std::vector<uint32_t>(ref.begin(), ref.end()));
  for (uint32_t t : std::vector<uint32_t>(ref.begin(), ref.end())) ASSERT_TRUE(index.Remove(7, t));
  EXPECT_TRUE(TagsOf(index, 7).empty());
  EXPECT_FALSE(index.Remove(7, 0));
}

TEST(UserIndexTest, FreedBlocksAreReused) {
  UserIndex index;
  for (uint32_t u = 0; u < 1000; ++u) index.Add(u, 5);
  size_t bytes = index.MemoryBytes();
  for (uint32_t round = 0; round < 10; ++round) {
    for (uint32_t u = 0; u < 1000; ++u) index.Remove(u, 5);
    for (uint32_t u = 0; u < 1000; ++u) index.Add(u, 5);
  }
  EXPECT_EQ(index.MemoryBytes(), bytes);
}

}  // namespace
}  // namespace tagcache::internal

namespace tagcache::internal {
namespace {

// A bulk load adds one tag to every user, then the next: each user walks
// through every size class. The outgrown blocks must not stay allocated.
TEST(UserIndexTest, GrowingEveryUserTogetherDoesNotKeepOutgrownBlocks) {
  UserIndex index;
  constexpr uint32_t kUsers = 100'000;
  constexpr uint32_t kTags = 20;
  for (uint32_t t = 0; t < kTags; ++t) {
    for (uint32_t u = 0; u < kUsers; ++u) ASSERT_TRUE(index.Add(u, t * 3));
  }
  for (uint32_t u = 0; u < kUsers; u += 997) {
    std::vector<uint32_t> expected;
    for (uint32_t t = 0; t < kTags; ++t) expected.push_back(t * 3);
    ASSERT_EQ(TagsOf(index, u), expected);
  }
  // 20 one-byte varints fit a 20-byte block; slots cost 4 bytes for each of
  // the 131,072 users of two chunks; free blocks may reach a quarter of the
  // live ones before a repack. Without repacking this is over 60.
  const double per_user = double(index.MemoryBytes()) / kUsers;
  EXPECT_LT(per_user, 20 + 4 * 1.32 + 20 / 4.0 + 1.0) << "bytes per user";
}

}  // namespace
}  // namespace tagcache::internal

namespace tagcache::internal {
namespace {

// BuildFrom must give exactly the index one Add per (user, tag) gives: every
// container kind (array, bitset, run), users in several chunks, tag ids
// with multi-byte deltas, and lists long enough for the oversized path.
TEST(UserIndexTest, BulkBuildEqualsIncrementalAdds) {
  std::mt19937 rng(7);
  std::vector<Roaring> columns(300);
  for (size_t t = 0; t < columns.size(); t += 1 + rng() % 40) {
    Roaring& col = columns[t];
    switch (rng() % 4) {
      case 0:  // sparse: array containers, several chunks
        for (int i = 0; i < 2000; ++i) col.add(rng() % (1u << 20));
        break;
      case 1:  // dense: bitset containers
        for (uint32_t u = 65536; u < 2 * 65536; ++u) {
          if (rng() % 3 == 0) col.add(u);
        }
        break;
      case 2:  // runs
        col.addRange(1000, 50'000);
        col.addRange(200'000, 200'100);
        col.runOptimize();
        break;
      default:  // the same few users in every such tag: long lists
        for (uint32_t u = 0; u < 50; ++u) col.add(u * 3);
        break;
    }
  }
  // Tag 299 for every user of the first chunk: the last container key in
  // use, and a large delta from the previous tag.
  for (uint32_t u = 0; u < 65536; u += 7) columns[299].add(u);

  std::vector<const Roaring*> by_tag(columns.size(), nullptr);
  for (size_t t = 0; t < columns.size(); ++t) {
    if (!columns[t].isEmpty()) by_tag[t] = &columns[t];
  }
  for (size_t max_block : {size_t{8192}, size_t{16}}) {
    SCOPED_TRACE("max_block_bytes " + std::to_string(max_block));
    UserIndex bulk(max_block), incremental(max_block);
    bulk.BuildFrom(by_tag);
    Roaring users;
    for (size_t t = 0; t < columns.size(); ++t) {
      for (uint32_t u : columns[t]) incremental.Add(u, static_cast<uint32_t>(t));
      users |= columns[t];
    }
    users.add(1u << 19);  // a user without tags, in a chunk without users
    for (uint32_t u : users) ASSERT_EQ(TagsOf(bulk, u), TagsOf(incremental, u)) << "user " << u;
    EXPECT_LE(bulk.MemoryBytes(), incremental.MemoryBytes());
    // The built index keeps working like any other.
    EXPECT_TRUE(bulk.Add(0, 1000));
    EXPECT_TRUE(bulk.Remove(0, 299));
    EXPECT_FALSE(bulk.Add(0, 1000));
    std::vector<uint32_t> expected = TagsOf(incremental, 0);
    ASSERT_EQ(expected.back(), 299u);
    expected.back() = 1000;
    EXPECT_EQ(TagsOf(bulk, 0), expected);
  }
}

TEST(UserIndexTest, BulkBuildOfNoColumnsIsEmpty) {
  UserIndex index;
  Roaring empty;
  std::vector<const Roaring*> by_tag{nullptr, &empty};
  index.BuildFrom(by_tag);
  index.BuildFrom({});
  EXPECT_TRUE(TagsOf(index, 0).empty());
  EXPECT_EQ(index.MemoryBytes(), 0u);
}

}  // namespace
}  // namespace tagcache::internal
