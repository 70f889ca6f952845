// Draws the operations of a workload from a dataset's manifest, a mix and a
// seed: the same seed gives the same sequence of Ops on every target, so
// tagcache and Redis answer the same questions.
//
// Users: uniform, or Zipf-hot (s = 1 over ranks, ranks scattered over the
// id space). Tags of has_tags/update: drawn by popularity among the tags
// that exist. Expressions: 1..6 terms (configurable) in 1..3 '|'-groups;
// the first term of a group is uniform over existing tags, so with
// power-law popularity audiences range from a handful of users to half of
// them; later terms are drawn by popularity (intersections that are not
// all empty); a quarter of later terms are negated, and a group starts
// with '!' one time in twenty.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "random_data.h"
#include "tagbench/dataset.h"
#include "tagbench/op.h"
#include "tagbench/op_mix.h"

namespace tagcache::tagbench {

struct WorkloadOptions {
  uint32_t batch_size = 32;  // users per get_tags_batch. REQUIRES: >= 1
  uint32_t has_tags = 3;     // tags per has_tags. REQUIRES: >= 1
  uint32_t top_k = 10;       // k of top_tags. REQUIRES: >= 1
  int min_terms = 1;         // terms per expression. REQUIRES: 1 <= min <= max <= 6
  int max_terms = 6;
  // > 0: every count/top_tags expression is the single existing tag whose
  // final member count is nearest this share of the users (e.g. 0.1: "a 10 %
  // audience"), instead of random shapes. Default: 0.
  double audience_share = 0;
};

// BAD_REQUEST naming the invalid option.
Status ValidateWorkload(const WorkloadOptions& options);

// Not thread-safe: one per driver thread (each with its own seed).
class OpGenerator {
 public:
  // REQUIRES: ValidateWorkload(options).ok(), and at least one existing tag.
  OpGenerator(const Manifest& manifest, const OpMix& mix, const WorkloadOptions& options,
              uint64_t seed);

  // The next op of the mix.
  Op Next();
  // An op of the given kind (tests, and Next()).
  Op Make(OpKind kind);

  uint64_t UniformUser() { return rng_.Below(users_); }
  uint64_t HotUser();
  Expr MakeExpr();

 private:
  const std::string& PopularTag();

  const Manifest& manifest_;
  OpMix mix_;
  WorkloadOptions options_;
  bench::SplitMix64 rng_;
  uint64_t users_;
  std::vector<int> existing_;         // ranks of existing tags
  bench::RankSampler by_popularity_;  // over existing_, weighted by final members + 1
  int audience_tag_ = -1;             // audience_share's tag rank
};

}  // namespace tagcache::tagbench
