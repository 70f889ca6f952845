// A small HDR-style latency histogram for tagbench: log-bucketed with 128
// sub-buckets per power of two, so any recorded value is reported within
// 1/128 (< 0.8 %) of itself, over the whole uint64 range, in a fixed ~60 KB.
// Each driver thread records into its own Histogram; Merge() combines them
// afterwards, so recording needs no lock and no allocation.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace tagcache::tagbench {

class Histogram {
 public:
  static constexpr int kSubBits = 7;  // 128 sub-buckets: relative error <= 2^-7
  static constexpr int kBuckets = (1 << kSubBits) + (64 - kSubBits) * (1 << kSubBits);

  Histogram() : counts_(kBuckets, 0) {}

  // Records one value (any unit; tagbench uses nanoseconds). Not thread-safe.
  void Record(uint64_t value);
  // Adds every value recorded in `other`.
  void Merge(const Histogram& other);

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }
  // The value at quantile q in [0, 1]: the midpoint of the bucket holding the
  // ceil(q * count)-th smallest value, clamped to [min, max]. 0 when empty.
  uint64_t Percentile(double q) const;

  // Bucket index of a value and the smallest value of a bucket (exposed for tests).
  static int BucketOf(uint64_t value);
  static uint64_t BucketLow(int bucket);
  static uint64_t BucketHigh(int bucket);  // largest value of the bucket

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  unsigned __int128 sum_ = 0;
};

}  // namespace tagcache::tagbench
