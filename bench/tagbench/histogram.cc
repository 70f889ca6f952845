#include "tagbench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace tagcache::tagbench {

int Histogram::BucketOf(uint64_t value) {
  constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  if (value < kSub) return static_cast<int>(value);     // exact below 128
  const int exp = 63 - std::countl_zero(value);         // >= kSubBits
  const uint64_t mantissa = value >> (exp - kSubBits);  // in [128, 256)
  return static_cast<int>(kSub + static_cast<uint64_t>(exp - kSubBits) * kSub + (mantissa - kSub));
}

uint64_t Histogram::BucketLow(int bucket) {
  constexpr int kSub = 1 << kSubBits;
  if (bucket < kSub) return static_cast<uint64_t>(bucket);
  const int exp = (bucket - kSub) / kSub + kSubBits;
  const uint64_t mantissa = static_cast<uint64_t>((bucket - kSub) % kSub + kSub);
  return mantissa << (exp - kSubBits);
}

uint64_t Histogram::BucketHigh(int bucket) {
  if (bucket + 1 >= kBuckets) return UINT64_MAX;
  return BucketLow(bucket + 1) - 1;
}

void Histogram::Record(uint64_t value) {
  ++counts_[static_cast<size_t>(BucketOf(value))];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const uint64_t rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts_[static_cast<size_t>(b)];
    if (seen >= rank) {
      const uint64_t low = BucketLow(b), high = BucketHigh(b);
      const uint64_t mid = low + (high - low) / 2;
      return std::clamp(mid, min(), max_);
    }
  }
  return max_;
}

}  // namespace tagcache::tagbench
