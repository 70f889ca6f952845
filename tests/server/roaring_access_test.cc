// SetMembership edits CRoaring containers in place; it must leave exactly the
// bitmap CRoaring's own add/remove would, through every container shape and
// conversion (array <-> bitset at 4,096 members, runs, emptied containers).
#include "roaring_access.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

namespace tagcache::internal {
namespace {

void ExpectSame(const Roaring& got, const Roaring& want, const std::set<uint32_t>& ref) {
  ASSERT_EQ(got.cardinality(), ref.size());
  ASSERT_TRUE(got == want);
  // The serialized form re-derives every container's cardinality and type.
  std::vector<char> buf(got.getSizeInBytes(true));
  got.write(buf.data(), true);
  Roaring back = Roaring::readSafe(buf.data(), buf.size());
  ASSERT_TRUE(back == want);
}

TEST(RoaringAccessTest, SetMembershipMatchesCRoaringThroughEveryContainerShape) {
  std::mt19937 rng(3);
  for (uint32_t span : {200u, 5'000u, 70'000u, 300'000u}) {
    Roaring mine, theirs;
    std::set<uint32_t> ref;
    std::uniform_int_distribution<uint32_t> value(0, span);
    // Phases with different add/remove ratios walk containers up past 4,096
    // members (array -> bitset) and back down (bitset -> array -> empty).
    for (double add_share : {0.9, 0.5, 0.1, 0.7, 0.02}) {
      std::bernoulli_distribution add(add_share);
      for (int i = 0; i < 40'000; ++i) {
        uint32_t v = value(rng);
        bool present = add(rng);
        bool changed = SetMembership(mine, v, present);
        bool expected = present ? theirs.addChecked(v) : theirs.removeChecked(v);
        ASSERT_EQ(changed, expected) << "value " << v;
        if (present) {
          ref.insert(v);
        } else {
          ref.erase(v);
        }
        ASSERT_EQ(FastContains(mine, v), present);
      }
      ExpectSame(mine, theirs, ref);
      if (add_share == 0.5) {
        mine.runOptimize();  // runs take the CRoaring path
        theirs.runOptimize();
      }
    }
  }
}

TEST(RoaringAccessTest, FastContainsAgreesWithContains) {
  Roaring r;
  r.addRange(100, 5000);  // becomes a run after runOptimize
  for (uint32_t v = 70'000; v < 80'000; v += 3) r.add(v);
  r.add(1u << 31);
  r.runOptimize();
  for (uint32_t v : {0u, 99u, 100u, 4999u, 5000u, 70'000u, 70'001u, 70'003u, 1u << 31, ~0u}) {
    EXPECT_EQ(FastContains(r, v), r.contains(v)) << v;
  }
}

}  // namespace
}  // namespace tagcache::internal
