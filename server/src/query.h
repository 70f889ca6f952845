// Query plans and their per-shard evaluation.
//
// A parsed Expr is compiled to a plan of n-ary AND (positive and negated
// operands) and OR nodes over tag ids, with '!' rewritten as and-not
// against the known users. Evaluation walks one 65,536-user container key at
// a time and keeps every intermediate in per-depth L1-sized scratch buffers,
// so it never materialises a whole intermediate bitmap, and borrows leaf
// containers without copying them.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "bitset_kernels.h"
#include "shard.h"
#include "tagcache/server/expr.h"

namespace tagcache::internal {

struct PlanNode {
  enum class Kind : uint8_t { kLeaf, kKnown, kAnd, kOr };
  Kind kind = Kind::kLeaf;
  uint32_t tag = 0;                  // kLeaf
  std::vector<int32_t> pos, neg;     // kAnd: AND of pos, minus each of neg
  std::vector<int32_t> children;     // kOr
};

struct Plan {
  std::vector<PlanNode> nodes;
  int32_t root = -1;
  int depth = 1;  // levels of scratch the evaluation needs
};

// Compiles `expr`, resolving tag names with `resolve` (nullopt: unknown).
// UNKNOWN_TAG names every unknown tag.
Result<Plan> CompilePlan(const Expr& expr,
                         const std::function<std::optional<uint32_t>(std::string_view)>& resolve);

// One container's worth of a result: nothing, a bitset, a sorted array of
// 16-bit values, or (count-only evaluation) just a cardinality.
struct Operand {
  enum class Kind : uint8_t { kEmpty, kBitset, kArray, kCount };
  Kind kind = Kind::kEmpty;
  bool scratch = false;  // lives in evaluator scratch (overwritten by the next sibling)
  const uint64_t* words = nullptr;
  const uint16_t* values = nullptr;
  uint32_t n = 0;
  uint64_t count = 0;
};

// Evaluates a plan over shards. One evaluator per thread; REQUIRES: the
// caller holds the shard's lock (shared is enough) while using its results.
class Evaluator {
 public:
  Evaluator(const Plan& plan, const BitsetKernels& kernels);

  // Cardinality of the plan's result in `shard`.
  uint64_t Count(const Shard& shard);
  // Calls fn(key, const Operand&) with the result for each non-empty
  // container key of `shard`, ascending. The operand is valid during the call.
  void ForEachContainer(const Shard& shard, const std::function<void(uint16_t, const Operand&)>& fn);

  // |a ∩ container of `bitmap` at `key`|, where `a` is a result operand.
  uint64_t IntersectCount(const Operand& a, const Roaring& bitmap, uint16_t key);
  uint64_t CountOf(const Operand& op) const;

 private:
  Operand Eval(const Shard& shard, int32_t node, uint16_t key, int depth, bool count_only);
  Operand EvalAnd(const Shard& shard, const PlanNode& node, uint16_t key, int depth,
                  bool count_only);
  Operand EvalOr(const Shard& shard, const PlanNode& node, uint16_t key, int depth,
                 bool count_only);
  Operand Container(const Roaring& bitmap, uint16_t key, int depth);

  uint64_t* Words(int depth) { return words_.data() + size_t(depth) * kBitsetWords; }
  uint16_t* Values(int depth, int which) {
    return values_.data() + (size_t(depth) * 2 + which) * 4096;
  }

  const Plan& plan_;
  const BitsetKernels& k_;
  std::vector<uint64_t> words_;   // one 65,536-bit buffer per depth
  std::vector<uint16_t> values_;  // two 4,096-value arrays per depth
};

}  // namespace tagcache::internal
