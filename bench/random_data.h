// Synthetic random data shared by the benchmarks: a seedable generator,
// uniform random positions at a given density, and power-law (Zipf-like)
// tag popularity, all from fixed seeds so every run draws the same bits.
// Header-only and independent of the engine and the client: bench_data.h
// (engine benchmarks) and snapshot_load.h (loads over the network) use it.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tagcache::bench {

// splitmix64: fast, statistically fine for data generation, trivially seedable.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1].
  double NextUnit() { return static_cast<double>((Next() >> 11) + 1) * 0x1.0p-53; }
  // Uniform in [0, n).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }

 private:
  uint64_t state_;
};

inline uint64_t MixSeed(uint64_t a, uint64_t b) {
  return SplitMix64(a ^ (b * 0xD1B54A32D192ED03ULL)).Next();
}

// Sorted positions in [0, n), each present independently with probability p.
// Dense p: each output word combines up to 32 random words by the binary
// digits of p (AND for a 0 digit, OR for a 1, least significant first), so
// 50 % costs one random word per 64 positions. Sparse p: geometric skips.
inline std::vector<uint32_t> RandomPositions(uint64_t n, double p, uint64_t seed) {
  std::vector<uint32_t> out;
  if (n == 0 || p <= 0) return out;
  SplitMix64 rng(seed);
  out.reserve(static_cast<size_t>(static_cast<double>(n) * std::min(p, 1.0) * 1.01) + 64);
  if (p >= 1.0 / 32) {
    const double scaled = std::round(p * 4294967296.0);
    const uint32_t m = scaled >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(scaled);
    const int lowest = std::countr_zero(m);
    for (uint64_t base = 0; base < n; base += 64) {
      uint64_t x = 0;
      for (int i = lowest; i < 32; ++i) {
        const uint64_t r = rng.Next();
        x = ((m >> i) & 1u) ? (x | r) : (x & r);
      }
      if (n - base < 64) x &= (uint64_t{1} << (n - base)) - 1;
      while (x != 0) {
        out.push_back(static_cast<uint32_t>(base + static_cast<uint64_t>(std::countr_zero(x))));
        x &= x - 1;
      }
    }
  } else {
    const double log_q = std::log1p(-p);
    uint64_t pos = 0;
    while (pos < n) {
      const double gap = std::floor(std::log(rng.NextUnit()) / log_q);
      if (gap >= static_cast<double>(n - pos)) break;
      pos += static_cast<uint64_t>(gap);
      out.push_back(static_cast<uint32_t>(pos));
      ++pos;
    }
  }
  return out;
}

// Tag densities p_r = top * r^-s for ranks r = 1..tags, with the exponent s
// found by bisection so that sum(p_r), the mean tags per user, is `mean`.
struct PowerLaw {
  double exponent = 0;
  std::vector<double> density;  // by rank, descending
};

inline PowerLaw PowerLawDensities(int tags, double top, double mean) {
  auto sum_for = [&](double s) {
    double sum = 0;
    for (int r = 1; r <= tags; ++r) sum += top * std::pow(r, -s);
    return sum;
  };
  double lo = 0, hi = 16;  // sum_for decreases in s
  for (int i = 0; i < 100; ++i) {
    const double mid = (lo + hi) / 2;
    (sum_for(mid) > mean ? lo : hi) = mid;
  }
  PowerLaw law;
  law.exponent = (lo + hi) / 2;
  for (int r = 1; r <= tags; ++r) law.density.push_back(top * std::pow(r, -law.exponent));
  return law;
}

// Draws a rank from the power law's densities (proportionally), for events.
class RankSampler {
 public:
  explicit RankSampler(const std::vector<double>& weights) {
    double sum = 0;
    for (double w : weights) cdf_.push_back(sum += w);
  }
  size_t Draw(SplitMix64& rng) const {
    const double x = rng.NextUnit() * cdf_.back();
    return static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), x) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

}  // namespace tagcache::bench
