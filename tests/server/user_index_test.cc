// UserIndex against a plain reference: random adds and removes over many
// users, including lists long enough to walk through every size class and
// into the oversized-list path.
#include "user_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "server/test_util.h"

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

// A copy (what a checkpoint takes under the shard's lock) answers exactly
// like the original, stays independent of it, and gives the same image.
TEST(UserIndexTest, CopyIsDeepAndEqual) {
  UserIndex index;
  std::map<uint32_t, std::set<uint32_t>> ref;
  std::mt19937 rng(2);
  for (int i = 0; i < 100'000; ++i) {
    uint32_t u = rng() % 700 * 211;
    uint32_t t = rng() % 5000;  // some lists outgrow the slab
    if (rng() % 3 == 0) {
      index.Remove(u, t);
      ref[u].erase(t);
    } else {
      index.Add(u, t);
      ref[u].insert(t);
    }
  }
  UserIndex copy;
  copy.CopyFrom(index);
  EXPECT_EQ(copy.MemoryBytes(), index.MemoryBytes());
  std::string a, b;
  index.AppendImage(a);
  copy.AppendImage(b);
  EXPECT_EQ(a, b);
  for (const auto& [u, tags] : ref) {
    ASSERT_EQ(TagsOf(copy, u), std::vector<uint32_t>(tags.begin(), tags.end())) << "user " << u;
  }
  // Independent: editing the original leaves the copy as it was.
  auto it = ref.begin();
  while (it != ref.end() && it->second.empty()) ++it;
  ASSERT_NE(it, ref.end());
  const uint32_t user = it->first;
  index.Add(user, 4999);
  index.Remove(user, *it->second.begin());
  EXPECT_EQ(TagsOf(copy, user), std::vector<uint32_t>(it->second.begin(), it->second.end()));
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

namespace tagcache::internal {
namespace {

// ---- Images: AppendImage / LoadImage ------------------------------------------

using Reference = std::map<uint32_t, std::set<uint32_t>>;  // user -> tags

// The columns (by tag id) that hold exactly the reference's pairs.
std::vector<Roaring> ColumnsOf(const Reference& ref, uint32_t tags) {
  std::vector<Roaring> columns(tags);
  for (const auto& [user, list] : ref) {
    for (uint32_t t : list) columns[t].add(user);
  }
  for (Roaring& c : columns) c.runOptimize();
  return columns;
}
std::vector<const Roaring*> PointersTo(const std::vector<Roaring>& columns) {
  std::vector<const Roaring*> out;
  for (const Roaring& c : columns) out.push_back(c.isEmpty() ? nullptr : &c);
  return out;
}

std::string ImageOf(const UserIndex& index) {
  std::string image;
  index.AppendImage(image);
  return image;
}

void ExpectSameLists(const UserIndex& a, const UserIndex& b, const Reference& ref) {
  for (const auto& [user, tags] : ref) {
    ASSERT_EQ(TagsOf(a, user), std::vector<uint32_t>(tags.begin(), tags.end())) << "user " << user;
    ASSERT_EQ(TagsOf(b, user), TagsOf(a, user)) << "user " << user;
  }
  for (uint32_t user : {1u << 20, 3u, 65'536u * 40 + 1}) {
    if (!ref.contains(user)) {
      EXPECT_TRUE(TagsOf(b, user).empty()) << "user " << user;
    }
  }
}

// Several chunks, lists from 1 to ~400 tags (some past a small largest
// class), tag ids with multi-byte deltas, and users without tags.
Reference ReferenceState(std::mt19937& rng, uint32_t tags) {
  Reference ref;
  for (uint32_t i = 0; i < 30'000; ++i) {
    const uint32_t user = rng() % (5u << 16);
    const uint32_t n = rng() % 50 == 0 ? 100 + rng() % 300 : 1 + rng() % 25;
    for (uint32_t j = 0; j < n; ++j) ref[user].insert(rng() % 7 == 0 ? rng() % tags : rng() % 40);
  }
  return ref;
}

TEST(UserIndexImageTest, BuiltIndexRoundTripsExactly) {
  std::mt19937 rng(11);
  const uint32_t kTags = 1000;
  const Reference ref = ReferenceState(rng, kTags);
  const std::vector<Roaring> columns = ColumnsOf(ref, kTags);
  for (size_t max_block : {size_t{8192}, size_t{64}}) {
    SCOPED_TRACE("max_block_bytes " + std::to_string(max_block));
    UserIndex built(max_block);
    built.BuildFrom(PointersTo(columns));
    const std::string image = ImageOf(built);
    UserIndex loaded(max_block);
    TC_ASSERT_OK(loaded.LoadImage(image, PointersTo(columns)));
    ExpectSameLists(built, loaded, ref);
    // A built index is already compact: the load holds the same memory and
    // exports the same image.
    EXPECT_EQ(loaded.MemoryBytes(), built.MemoryBytes());
    EXPECT_EQ(ImageOf(loaded), image);
    // And it keeps working like any other.
    const uint32_t user = ref.begin()->first;
    EXPECT_TRUE(loaded.Add(user, kTags + 5));
    EXPECT_TRUE(loaded.Remove(user, *ref.begin()->second.begin()));
    std::vector<uint32_t> want(std::next(ref.begin()->second.begin()), ref.begin()->second.end());
    want.push_back(kTags + 5);
    EXPECT_EQ(TagsOf(loaded, user), want);
  }
}

TEST(UserIndexImageTest, ChurnedIndexRoundTripsCompacted) {
  std::mt19937 rng(12);
  const uint32_t kTags = 500;
  UserIndex index(/*max_block_bytes=*/256);  // some lists go oversized and back
  Reference ref;
  auto churn = [&](UserIndex& idx, Reference& r, int steps, uint32_t seed) {
    std::mt19937 local(seed);
    for (int i = 0; i < steps; ++i) {
      const uint32_t user = local() % 3 == 0 ? local() % 40 : local() % (3u << 16);
      const uint32_t tag = local() % 8 == 0 ? local() % kTags : local() % 60;
      if (local() % 3 == 0) {
        ASSERT_EQ(idx.Remove(user, tag), r[user].erase(tag) == 1);
      } else {
        ASSERT_EQ(idx.Add(user, tag), r[user].insert(tag).second);
      }
    }
    std::erase_if(r, [](const auto& kv) { return kv.second.empty(); });
  };
  churn(index, ref, 400'000, 1);
  // Users moved between classes: free blocks, classes out of user order.
  const std::string image = ImageOf(index);
  const std::vector<Roaring> columns = ColumnsOf(ref, kTags);
  UserIndex loaded(256);
  TC_ASSERT_OK(loaded.LoadImage(image, PointersTo(columns)));
  ExpectSameLists(index, loaded, ref);
  EXPECT_LT(loaded.MemoryBytes(), index.MemoryBytes()) << "free blocks are left out";
  EXPECT_EQ(ImageOf(loaded), image);  // compaction is a fixed point

  // Both go on the same way.
  Reference ref2 = ref;
  churn(index, ref, 50'000, 2);
  churn(loaded, ref2, 50'000, 2);
  ASSERT_EQ(ref, ref2);
  ExpectSameLists(index, loaded, ref);
}

TEST(UserIndexImageTest, EmptyIndexRoundTrips) {
  UserIndex empty;
  UserIndex loaded;
  TC_ASSERT_OK(loaded.LoadImage(ImageOf(empty), {}));
  EXPECT_TRUE(loaded.Empty());
  EXPECT_EQ(loaded.MemoryBytes(), 0u);
  // An index whose users all lost their tags: its slots come along, the
  // page of the freed block does not.
  UserIndex emptied;
  emptied.Add(70'000, 3);
  emptied.Remove(70'000, 3);
  UserIndex reloaded;
  TC_ASSERT_OK(reloaded.LoadImage(ImageOf(emptied), {}));
  EXPECT_EQ(reloaded.MemoryBytes(), sizeof(uint32_t) << 16);
  EXPECT_LT(reloaded.MemoryBytes(), emptied.MemoryBytes());
  EXPECT_TRUE(TagsOf(reloaded, 70'000).empty());
  EXPECT_TRUE(reloaded.Add(70'000, 4));
  EXPECT_EQ(TagsOf(reloaded, 70'000), std::vector<uint32_t>{4});
}

// Sets up a churned index of a few chunks with oversized lists, its columns
// and its image, for the tests that damage it.
struct Damage {
  Reference ref;
  std::vector<Roaring> columns;
  std::string image;
  static constexpr size_t kMaxBlock = 128;
  Damage() {
    std::mt19937 rng(13);
    UserIndex index(kMaxBlock);
    for (int i = 0; i < 60'000; ++i) {
      const uint32_t user = rng() % 16 == 0 ? rng() % 8 : rng() % (3u << 16);
      const uint32_t tag = rng() % 10 == 0 ? rng() % 300 : rng() % 30;
      if (rng() % 4 == 0) {
        index.Remove(user, tag);
        ref[user].erase(tag);
      } else {
        index.Add(user, tag);
        ref[user].insert(tag);
      }
    }
    std::erase_if(ref, [](const auto& kv) { return kv.second.empty(); });
    columns = ColumnsOf(ref, 300);
    index.AppendImage(image);
  }
  // Loads `bytes`; on failure the index must be left empty.
  Status Load(std::string_view bytes) const {
    UserIndex index(kMaxBlock);
    Status s = index.LoadImage(bytes, PointersTo(columns));
    if (!s.ok()) {
      EXPECT_TRUE(index.Empty());
      EXPECT_EQ(index.MemoryBytes(), 0u);
      EXPECT_TRUE(TagsOf(index, ref.begin()->first).empty());
    }
    return s;
  }
};

TEST(UserIndexImageTest, AnyFlippedByteIsRejected) {
  const Damage d;
  TC_ASSERT_OK(d.Load(d.image));
  // The header and chunk table byte by byte, then samples over the slot
  // classes, the blocks and the oversized lists. Every byte means
  // something (blocks carry zeros past their lists), and a changed list
  // changes its chunk's pair count or id sum.
  std::vector<size_t> positions;
  for (size_t i = 0; i < 200; ++i) positions.push_back(i);  // header, tables, first classes
  for (size_t i = 0; i < 64; ++i) positions.push_back(d.image.size() - 1 - i);
  std::mt19937 rng(14);
  while (positions.size() < 1500) positions.push_back(rng() % d.image.size());
  for (size_t pos : positions) {
    std::string copy = d.image;
    copy[pos] = static_cast<char>(copy[pos] ^ (1 << rng() % 8));
    Status s = d.Load(copy);
    EXPECT_FALSE(s.ok()) << "byte " << pos << " of " << d.image.size() << " flipped";
    EXPECT_TRUE(s.IsBadRequest()) << s.ToString();
  }
}

TEST(UserIndexImageTest, RandomlyOverwrittenBytesAreRejected) {
  const Damage d;
  std::mt19937 rng(16);
  for (int round = 0; round < 400; ++round) {
    std::string copy = d.image;
    const size_t at = rng() % copy.size();
    const size_t n = 1 + rng() % 16;
    bool changed = false;
    for (size_t i = at; i < std::min(copy.size(), at + n); ++i) {
      const char before = copy[i];
      copy[i] = static_cast<char>(rng());
      changed |= copy[i] != before;
    }
    if (!changed) continue;
    EXPECT_FALSE(d.Load(copy).ok()) << n << " bytes from " << at << " overwritten";
  }
}

TEST(UserIndexImageTest, TruncatedOrExtendedImageIsRejected) {
  const Damage d;
  std::mt19937 rng(15);
  std::vector<size_t> lengths = {0, 1, 4, 15, 16, 17, d.image.size() - 1, d.image.size() - 4};
  while (lengths.size() < 200) lengths.push_back(rng() % d.image.size());
  for (size_t len : lengths) {
    EXPECT_FALSE(d.Load(std::string_view(d.image).substr(0, len)).ok()) << "cut to " << len;
  }
  EXPECT_FALSE(d.Load(d.image + std::string(1, '\0')).ok());
  EXPECT_FALSE(d.Load(d.image + d.image).ok());
}

TEST(UserIndexImageTest, ImageOfOtherColumnsIsRejected) {
  const Damage d;
  std::vector<const Roaring*> by_tag = PointersTo(d.columns);
  {  // a tag id beyond the columns
    std::vector<const Roaring*> fewer(by_tag.begin(), by_tag.begin() + 100);
    UserIndex index(Damage::kMaxBlock);
    EXPECT_FALSE(index.LoadImage(d.image, fewer).ok());
    EXPECT_TRUE(index.Empty());
  }
  {  // one member fewer in one column
    Roaring changed = d.columns[5];
    changed.remove(changed.maximum());
    by_tag[5] = &changed;
    UserIndex index(Damage::kMaxBlock);
    Status s = index.LoadImage(d.image, by_tag);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("pairs"), std::string::npos) << s.ToString();
  }
  {  // a member moved to another chunk
    by_tag = PointersTo(d.columns);
    Roaring moved = d.columns[7];
    const uint32_t user = moved.minimum();
    moved.remove(user);
    moved.add(user + (5u << 16));
    by_tag[7] = &moved;
    UserIndex index(Damage::kMaxBlock);
    EXPECT_FALSE(index.LoadImage(d.image, by_tag).ok());
  }
  {  // another largest class
    UserIndex index(8192);
    Status s = index.LoadImage(d.image, PointersTo(d.columns));
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("slab classes"), std::string::npos) << s.ToString();
  }
  {  // into an index in use
    UserIndex index(Damage::kMaxBlock);
    index.Add(1, 1);
    EXPECT_FALSE(index.LoadImage(d.image, PointersTo(d.columns)).ok());
    EXPECT_EQ(TagsOf(index, 1), std::vector<uint32_t>{1});
  }
}

}  // namespace
}  // namespace tagcache::internal
