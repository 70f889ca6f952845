// Cross-check of two targets loaded with the same dataset: the same
// read-only ops (get_tags, get_tags_batch, has_tags, count, top_tags over
// every expression shape) sent to both, their answers compared. Catches a
// wrong Redis mapping as much as a wrong tagcache answer, so the side by
// side figures compare equal work.
#pragma once

#include <cstdint>
#include <string>

#include "tagbench/dataset.h"
#include "tagbench/target.h"
#include "tagbench/workload.h"

namespace tagcache::tagbench {

struct VerifyResult {
  uint64_t compared = 0;  // ops answered by both and compared
  uint64_t mismatches = 0;
  std::string first_mismatch;  // the op and both answers, empty when none
};

// Sends `ops_per_kind` ops of each read kind, one at a time, to both
// targets; with `audience_only`, only count and top_tags (a Redis loaded
// without per-user sets). Fails when a session cannot be opened or a
// target answers with an error (named, with the op).
Result<VerifyResult> CrossCheck(Target& a, Target& b, const Manifest& manifest,
                                const WorkloadOptions& workload, uint64_t ops_per_kind,
                                uint64_t seed, bool audience_only = false);

// "get_tags user 42" / "count a & b - c": an op for messages.
std::string DescribeOp(const Op& op);

}  // namespace tagcache::tagbench
