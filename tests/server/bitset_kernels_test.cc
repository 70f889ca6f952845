// The CPU-specific bitset kernels must agree with the portable ones and with
// CRoaring's own answers on the same data, at every density.
#include "bitset_kernels.h"

#include <gtest/gtest.h>
#include <roaring/roaring.hh>

#include <random>
#include <vector>

namespace tagcache::internal {
namespace {

std::vector<uint64_t> RandomBitset(std::mt19937_64& rng, double density) {
  std::vector<uint64_t> words(kBitsetWords, 0);
  std::bernoulli_distribution bit(density);
  for (uint32_t v = 0; v < 65536; ++v) {
    if (bit(rng)) words[v >> 6] |= uint64_t{1} << (v & 63);
  }
  return words;
}

Roaring ToRoaring(const std::vector<uint64_t>& words) {
  Roaring r;
  for (uint32_t v = 0; v < 65536; ++v) {
    if ((words[v >> 6] >> (v & 63)) & 1) r.add(v);
  }
  return r;
}

TEST(BitsetKernelsTest, SelectedLevelAgreesWithBaselineAndCRoaring) {
  const BitsetKernels best = SelectBitsetKernels();
  const BitsetKernels base = BaselineBitsetKernels();
  std::mt19937_64 rng(42);
  const double densities[] = {0.0, 0.0001, 0.01, 0.1, 0.5, 0.9, 1.0};
  std::vector<uint64_t> out(kBitsetWords), out_base(kBitsetWords);
  for (double da : densities) {
    for (double db : densities) {
      auto a = RandomBitset(rng, da);
      auto b = RandomBitset(rng, db);
      auto c = RandomBitset(rng, 0.3);
      Roaring ra = ToRoaring(a), rb = ToRoaring(b), rc = ToRoaring(c);
      SCOPED_TRACE("level " + std::string(best.level) + " densities " + std::to_string(da) +
                   " x " + std::to_string(db));
      EXPECT_EQ(best.count(a.data()), ra.cardinality());
      EXPECT_EQ(base.count(a.data()), ra.cardinality());
      EXPECT_EQ(best.and_count(a.data(), b.data()), ra.and_cardinality(rb));
      EXPECT_EQ(base.and_count(a.data(), b.data()), ra.and_cardinality(rb));
      EXPECT_EQ(best.and_not_count(a.data(), b.data()), (ra - rb).cardinality());
      EXPECT_EQ(best.and_and_not_count(a.data(), b.data(), c.data()),
                ((ra & rb) - rc).cardinality());
      best.and_into(out.data(), a.data(), b.data());
      base.and_into(out_base.data(), a.data(), b.data());
      EXPECT_EQ(out, out_base);
      EXPECT_EQ(ToRoaring(out), ra & rb);
      best.and_not_into(out.data(), a.data(), b.data());
      EXPECT_EQ(ToRoaring(out), ra - rb);
      best.or_into(out.data(), a.data(), b.data());
      EXPECT_EQ(ToRoaring(out), ra | rb);
    }
  }
}

TEST(BitsetKernelsTest, OutputMayAliasAnInput) {
  const BitsetKernels best = SelectBitsetKernels();
  std::mt19937_64 rng(7);
  auto a = RandomBitset(rng, 0.5);
  auto b = RandomBitset(rng, 0.5);
  Roaring expected = ToRoaring(a) & ToRoaring(b);
  best.and_into(a.data(), a.data(), b.data());
  EXPECT_EQ(ToRoaring(a), expected);
}

}  // namespace
}  // namespace tagcache::internal
