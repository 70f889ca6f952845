#include "query.h"
#include "roaring_access.h"

#include <roaring/roaring.h>
#include <roaring/containers/containers.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>

namespace tagcache::internal {
namespace {

constexpr uint32_t kMaxArray = 4096;  // CRoaring's array/bitset threshold

class Compiler {
 public:
  Compiler(const Expr& expr,
           const std::function<std::optional<uint32_t>(std::string_view)>& resolve)
      : expr_(expr), resolve_(resolve) {}

  Result<Plan> Run() {
    plan_.root = Compile(expr_.root);
    if (!unknown_.empty()) {
      std::string msg = unknown_.size() == 1 ? "unknown tag: " : "unknown tags: ";
      bool first = true;
      for (const std::string& name : unknown_) {
        if (!first) msg += ", ";
        msg += name;
        first = false;
      }
      return Status::UnknownTag(msg);
    }
    plan_.depth = Height(plan_.root) + 1;
    return std::move(plan_);
  }

 private:
  int32_t Add(PlanNode node) {
    plan_.nodes.push_back(std::move(node));
    return static_cast<int32_t>(plan_.nodes.size() - 1);
  }
  const PlanNode& At(int32_t i) const { return plan_.nodes[i]; }

  int32_t Known() {
    PlanNode n;
    n.kind = PlanNode::Kind::kKnown;
    return Add(std::move(n));
  }

  // Folds `child` into the AND node `and_node` as a positive operand,
  // flattening nested ANDs.
  void AbsorbPositive(PlanNode& and_node, int32_t child) {
    if (At(child).kind == PlanNode::Kind::kAnd) {
      PlanNode c = At(child);  // copy: push_back below may reallocate
      and_node.pos.insert(and_node.pos.end(), c.pos.begin(), c.pos.end());
      and_node.neg.insert(and_node.neg.end(), c.neg.begin(), c.neg.end());
    } else {
      and_node.pos.push_back(child);
    }
  }
  // a - (b | c) == a - b - c: negated ORs become several negated operands.
  void AbsorbNegative(PlanNode& and_node, int32_t child) {
    if (At(child).kind == PlanNode::Kind::kOr) {
      PlanNode c = At(child);
      and_node.neg.insert(and_node.neg.end(), c.children.begin(), c.children.end());
    } else {
      and_node.neg.push_back(child);
    }
  }
  int32_t FinishAnd(PlanNode node) {
    // Every tag member is a known user, so "known" adds nothing to an AND
    // that has any other positive operand.
    bool has_other = std::any_of(node.pos.begin(), node.pos.end(), [&](int32_t i) {
      return At(i).kind != PlanNode::Kind::kKnown;
    });
    if (has_other) {
      std::erase_if(node.pos, [&](int32_t i) { return At(i).kind == PlanNode::Kind::kKnown; });
    } else if (node.pos.size() > 1) {
      node.pos.resize(1);
    }
    if (node.neg.empty() && node.pos.size() == 1) return node.pos[0];
    return Add(std::move(node));
  }

  int32_t Compile(int32_t e) {
    const Expr::Node& node = expr_.nodes[e];
    switch (node.kind) {
      case Expr::Kind::kTag: {
        PlanNode leaf;
        leaf.kind = PlanNode::Kind::kLeaf;
        std::optional<uint32_t> id = resolve_(node.tag);
        if (id) {
          leaf.tag = *id;
        } else {
          unknown_.insert(node.tag);
        }
        return Add(std::move(leaf));
      }
      case Expr::Kind::kNot: {
        int32_t operand = Compile(node.lhs);
        PlanNode n;
        n.kind = PlanNode::Kind::kAnd;
        n.pos.push_back(Known());
        AbsorbNegative(n, operand);
        return FinishAnd(std::move(n));
      }
      case Expr::Kind::kAnd:
      case Expr::Kind::kAndNot: {
        int32_t lhs = Compile(node.lhs);
        int32_t rhs = Compile(node.rhs);
        PlanNode n;
        n.kind = PlanNode::Kind::kAnd;
        AbsorbPositive(n, lhs);
        if (node.kind == Expr::Kind::kAnd) {
          AbsorbPositive(n, rhs);
        } else {
          AbsorbNegative(n, rhs);
        }
        return FinishAnd(std::move(n));
      }
      case Expr::Kind::kOr: {
        int32_t lhs = Compile(node.lhs);
        int32_t rhs = Compile(node.rhs);
        PlanNode n;
        n.kind = PlanNode::Kind::kOr;
        for (int32_t c : {lhs, rhs}) {
          if (At(c).kind == PlanNode::Kind::kOr) {
            PlanNode copy = At(c);
            n.children.insert(n.children.end(), copy.children.begin(), copy.children.end());
          } else {
            n.children.push_back(c);
          }
        }
        return Add(std::move(n));
      }
    }
    return -1;
  }

  int Height(int32_t i) const {
    const PlanNode& n = At(i);
    int h = 0;
    for (const auto* list : {&n.pos, &n.neg, &n.children}) {
      for (int32_t c : *list) h = std::max(h, Height(c));
    }
    return h + 1;
  }

  const Expr& expr_;
  const std::function<std::optional<uint32_t>(std::string_view)>& resolve_;
  Plan plan_;
  std::set<std::string> unknown_;
};

inline bool TestBit(const uint64_t* words, uint16_t v) { return (words[v >> 6] >> (v & 63)) & 1; }
inline void SetBit(uint64_t* words, uint16_t v) { words[v >> 6] |= uint64_t{1} << (v & 63); }
inline void ClearBit(uint64_t* words, uint16_t v) { words[v >> 6] &= ~(uint64_t{1} << (v & 63)); }

// Walks two sorted arrays in step and calls emit(value) for each common one.
template <typename Emit>
void ForEachCommon(const uint16_t* a, uint32_t na, const uint16_t* b, uint32_t nb, Emit&& emit) {
  uint32_t i = 0, j = 0;
  while (i < na && j < nb) {
    if (a[i] < b[j]) {
      ++i;
    } else if (a[i] > b[j]) {
      ++j;
    } else {
      emit(a[i]);
      ++i;
      ++j;
    }
  }
}

// Sorted-array intersection into `out` (may alias `a`); returns the size.
uint32_t IntersectArrays(const uint16_t* a, uint32_t na, const uint16_t* b, uint32_t nb,
                         uint16_t* out) {
  uint32_t n = 0;
  ForEachCommon(a, na, b, nb, [&](uint16_t v) { out[n++] = v; });
  return n;
}

uint32_t DifferenceArrays(const uint16_t* a, uint32_t na, const uint16_t* b, uint32_t nb,
                          uint16_t* out) {
  uint32_t i = 0, j = 0, n = 0;
  while (i < na) {
    while (j < nb && b[j] < a[i]) ++j;
    if (j == nb || b[j] != a[i]) out[n++] = a[i];
    ++i;
  }
  return n;
}

uint32_t UnionArrays(const uint16_t* a, uint32_t na, const uint16_t* b, uint32_t nb,
                     uint16_t* out) {
  uint32_t i = 0, j = 0, n = 0;
  while (i < na || j < nb) {
    if (j == nb || (i < na && a[i] < b[j])) {
      out[n++] = a[i++];
    } else if (i == na || b[j] < a[i]) {
      out[n++] = b[j++];
    } else {
      out[n++] = a[i++];
      ++j;
    }
  }
  return n;
}

// How many of values[0, n) are set in `words`.
uint64_t CountInBitset(const uint16_t* values, uint32_t n, const uint64_t* words) {
  uint64_t c = 0;
  for (uint32_t i = 0; i < n; ++i) c += TestBit(words, values[i]);
  return c;
}

// |a ∩ b| of sorted arrays. When one is much smaller, each of its values is
// found in the other by galloping, instead of walking both.
uint64_t ArrayIntersectCount(const uint16_t* a, uint32_t na, const uint16_t* b, uint32_t nb) {
  if (na > nb) return ArrayIntersectCount(b, nb, a, na);
  uint64_t c = 0;
  if (na * 32 < nb) {
    uint32_t lo = 0;
    for (uint32_t i = 0; i < na && lo < nb; ++i) {
      const uint16_t x = a[i];
      uint32_t reach = 1;  // b[lo + reach / 2] < x once reach > 1
      while (lo + reach < nb && b[lo + reach] < x) reach *= 2;
      const uint16_t* from = b + lo + reach / 2;
      const uint16_t* to = b + std::min(lo + reach + 1, nb);
      lo = static_cast<uint32_t>(std::lower_bound(from, to, x) - b);
      if (lo < nb && b[lo] == x) {
        ++c;
        ++lo;
      }
    }
    return c;
  }
  ForEachCommon(a, na, b, nb, [&](uint16_t) { ++c; });
  return c;
}

Operand Empty() { return Operand{}; }
Operand CountOnly(uint64_t c) {
  Operand op;
  op.kind = Operand::Kind::kCount;
  op.count = c;
  return op;
}
Operand BitsetOp(const uint64_t* words, bool scratch) {
  Operand op;
  op.kind = Operand::Kind::kBitset;
  op.words = words;
  op.scratch = scratch;
  return op;
}
Operand ArrayOp(const uint16_t* values, uint32_t n, bool scratch) {
  if (n == 0) return Empty();
  Operand op;
  op.kind = Operand::Kind::kArray;
  op.values = values;
  op.n = n;
  op.scratch = scratch;
  return op;
}

}  // namespace

Result<Plan> CompilePlan(const Expr& expr,
                         const std::function<std::optional<uint32_t>(std::string_view)>& resolve) {
  return Compiler(expr, resolve).Run();
}

size_t BitmapMemoryBytes(const Roaring& bitmap) {
  const roaring_array_t& ra = bitmap.roaring.high_low_container;
  size_t bytes = size_t(ra.allocation_size) * (sizeof(void*) + sizeof(uint16_t) + sizeof(uint8_t));
  for (int32_t i = 0; i < ra.size; ++i) {
    const void* c = ra.containers[i];
    uint8_t t = ra.typecodes[i];
    if (t == SHARED_CONTAINER_TYPE_CODE) {
      c = static_cast<const shared_container_t*>(c)->container;
      t = static_cast<const shared_container_t*>(ra.containers[i])->typecode;
    }
    switch (t) {
      case BITSET_CONTAINER_TYPE_CODE:
        bytes += sizeof(bitset_container_t) + kBitsetWords * sizeof(uint64_t);
        break;
      case ARRAY_CONTAINER_TYPE_CODE:
        bytes += sizeof(array_container_t) +
                 size_t(static_cast<const array_container_t*>(c)->capacity) * sizeof(uint16_t);
        break;
      case RUN_CONTAINER_TYPE_CODE:
        bytes += sizeof(run_container_t) +
                 size_t(static_cast<const run_container_t*>(c)->capacity) * sizeof(rle16_t);
        break;
      default:
        break;
    }
  }
  return bytes;
}

Evaluator::Evaluator(const Plan& plan, const BitsetKernels& kernels)
    : plan_(plan),
      k_(kernels),
      words_(size_t(plan.depth + 1) * kBitsetWords),
      values_(size_t(plan.depth + 1) * 2 * 4096) {}

Operand Evaluator::Container(const Roaring& bitmap, uint16_t key, int depth) {
  uint8_t type = 0;
  const void* c = FindContainer(bitmap, key, &type);
  if (c == nullptr) return Empty();
  switch (type) {
    case BITSET_CONTAINER_TYPE_CODE:
      return BitsetOp(static_cast<const bitset_container_t*>(c)->array, false);
    case ARRAY_CONTAINER_TYPE_CODE: {
      const auto* a = static_cast<const array_container_t*>(c);
      return ArrayOp(a->array, static_cast<uint32_t>(a->cardinality), false);
    }
    case RUN_CONTAINER_TYPE_CODE: {
      // Runs are rare in tag data; expanding one into this level's scratch
      // keeps every kernel down to two shapes.
      const auto* r = static_cast<const run_container_t*>(c);
      uint64_t* w = Words(depth);
      std::memset(w, 0, kBitsetWords * sizeof(uint64_t));
      for (int32_t i = 0; i < r->n_runs; ++i) {
        uint32_t start = r->runs[i].value;
        uint32_t end = start + r->runs[i].length;  // inclusive
        for (uint32_t v = start; v <= end;) {
          if ((v & 63) == 0 && v + 63 <= end) {
            w[v >> 6] = ~uint64_t{0};
            v += 64;
          } else {
            SetBit(w, static_cast<uint16_t>(v));
            ++v;
          }
        }
      }
      return BitsetOp(w, true);
    }
    default:
      return Empty();
  }
}

uint64_t Evaluator::CountOf(const Operand& op) const {
  switch (op.kind) {
    case Operand::Kind::kEmpty: return 0;
    case Operand::Kind::kBitset: return k_.count(op.words);
    case Operand::Kind::kArray: return op.n;
    case Operand::Kind::kCount: return op.count;
  }
  return 0;
}

Operand Evaluator::Eval(const Shard& shard, int32_t index, uint16_t key, int depth,
                        bool count_only) {
  const PlanNode& node = plan_.nodes[index];
  switch (node.kind) {
    case PlanNode::Kind::kLeaf: {
      const TagColumn* col = shard.Column(node.tag);
      return col ? Container(col->bitmap, key, depth) : Empty();
    }
    case PlanNode::Kind::kKnown:
      return Container(shard.known, key, depth);
    case PlanNode::Kind::kAnd:
      return EvalAnd(shard, node, key, depth, count_only);
    case PlanNode::Kind::kOr:
      return EvalOr(shard, node, key, depth, count_only);
  }
  return Empty();
}

Operand Evaluator::EvalAnd(const Shard& shard, const PlanNode& node, uint16_t key, int depth,
                           bool count_only) {
  const int child_depth = depth + 1;
  // Fast path for the shapes audience counts are made of: two or three
  // leaf bitsets, counted in one fused pass with no intermediate at all.
  if (count_only && node.pos.size() == 2 && node.neg.size() <= 1) {
    Operand ops[3];
    size_t n = 0;
    bool all_leaf_bitsets = true;
    for (const auto* list : {&node.pos, &node.neg}) {
      for (int32_t c : *list) {
        PlanNode::Kind kind = plan_.nodes[c].kind;
        if (kind != PlanNode::Kind::kLeaf && kind != PlanNode::Kind::kKnown) {
          all_leaf_bitsets = false;
          break;
        }
        // Distinct depths keep run expansions from overwriting each other.
        ops[n] = Eval(shard, c, key, child_depth + static_cast<int>(n), false);
        if (n < 2 && ops[n].kind == Operand::Kind::kEmpty) return CountOnly(0);
        // |a & b & ~c| for a small array c: |a & b| minus the c values in both.
        if (n == 2 && all_leaf_bitsets && ops[2].kind == Operand::Kind::kArray &&
            ops[2].n > 64) {
          // A larger array: spread it into this level's (unused) bitset and
          // count in one vectorised three-way pass, cheaper than ~2 random
          // bit tests per value.
          uint64_t* mask = Words(depth);
          std::memset(mask, 0, kBitsetWords * sizeof(uint64_t));
          for (uint32_t i = 0; i < ops[2].n; ++i) SetBit(mask, ops[2].values[i]);
          return CountOnly(k_.and_and_not_count(ops[0].words, ops[1].words, mask));
        }
        if (n == 2 && all_leaf_bitsets && ops[2].kind != Operand::Kind::kBitset) {
          uint64_t both = k_.and_count(ops[0].words, ops[1].words);
          for (uint32_t i = 0; i < ops[2].n; ++i) {
            both -= TestBit(ops[0].words, ops[2].values[i]) & TestBit(ops[1].words, ops[2].values[i]);
          }
          return CountOnly(both);
        }
        if (ops[n].kind != Operand::Kind::kBitset || ops[n].scratch) all_leaf_bitsets = false;
        ++n;
      }
      if (!all_leaf_bitsets) break;
    }
    if (all_leaf_bitsets) {
      if (n == 2) return CountOnly(k_.and_count(ops[0].words, ops[1].words));
      return CountOnly(k_.and_and_not_count(ops[0].words, ops[1].words, ops[2].words));
    }
  }

  uint64_t* acc_words = Words(depth);
  uint16_t* acc_values = Values(depth, 0);
  Operand acc;  // kEmpty here means "no operand folded yet"
  bool started = false;

  // Positive operands: evaluate arrays (smallest first would be ideal; leaf
  // order is good enough since any array collapses the accumulator to an array).
  const size_t total = node.pos.size() + node.neg.size();
  size_t done = 0;
  for (int32_t c : node.pos) {
    Operand op = Eval(shard, c, key, child_depth, false);
    ++done;
    if (op.kind == Operand::Kind::kEmpty) return count_only ? CountOnly(0) : Empty();
    if (!started) {
      started = true;
      if (op.scratch) {  // the next sibling would overwrite it: keep a copy
        if (op.kind == Operand::Kind::kBitset) {
          std::memcpy(acc_words, op.words, kBitsetWords * sizeof(uint64_t));
          op.words = acc_words;
        } else {
          std::memcpy(acc_values, op.values, op.n * sizeof(uint16_t));
          op.values = acc_values;
        }
        op.scratch = true;
      }
      acc = op;
      continue;
    }
    const bool last = count_only && done == total;
    if (acc.kind == Operand::Kind::kBitset && op.kind == Operand::Kind::kBitset) {
      if (last) return CountOnly(k_.and_count(acc.words, op.words));
      k_.and_into(acc_words, acc.words, op.words);
      acc = BitsetOp(acc_words, true);
    } else if (acc.kind != op.kind) {  // one bitset, one array: test the array's bits
      const Operand& bits = acc.kind == Operand::Kind::kBitset ? acc : op;
      const Operand& arr = acc.kind == Operand::Kind::kBitset ? op : acc;
      if (last) return CountOnly(CountInBitset(arr.values, arr.n, bits.words));
      uint32_t n = 0;
      for (uint32_t i = 0; i < arr.n; ++i) {
        acc_values[n] = arr.values[i];
        n += TestBit(bits.words, arr.values[i]);  // branch-free: half of these are coin flips
      }
      acc = ArrayOp(acc_values, n, true);
    } else {
      if (last) return CountOnly(ArrayIntersectCount(acc.values, acc.n, op.values, op.n));
      uint32_t n = IntersectArrays(acc.values, acc.n, op.values, op.n, acc_values);
      acc = ArrayOp(acc_values, n, true);
    }
    if (acc.kind == Operand::Kind::kEmpty) return count_only ? CountOnly(0) : Empty();
  }
  for (int32_t c : node.neg) {
    Operand op = Eval(shard, c, key, child_depth, false);
    ++done;
    if (op.kind == Operand::Kind::kEmpty) continue;
    const bool last = count_only && done == total;
    if (acc.kind == Operand::Kind::kBitset && op.kind == Operand::Kind::kBitset) {
      if (last) return CountOnly(k_.and_not_count(acc.words, op.words));
      k_.and_not_into(acc_words, acc.words, op.words);
      acc = BitsetOp(acc_words, true);
    } else if (acc.kind == Operand::Kind::kBitset) {  // op is an array
      if (last) {  // |acc - op| = |acc| - |acc ∩ op|, with no 8 KiB copy
        return CountOnly(k_.count(acc.words) - CountInBitset(op.values, op.n, acc.words));
      }
      if (acc.words != acc_words) {
        std::memcpy(acc_words, acc.words, kBitsetWords * sizeof(uint64_t));
        acc = BitsetOp(acc_words, true);
      }
      for (uint32_t i = 0; i < op.n; ++i) ClearBit(acc_words, op.values[i]);
    } else if (op.kind == Operand::Kind::kBitset) {  // acc is an array
      if (last) return CountOnly(acc.n - CountInBitset(acc.values, acc.n, op.words));
      uint32_t n = 0;
      for (uint32_t i = 0; i < acc.n; ++i) {
        acc_values[n] = acc.values[i];
        n += !TestBit(op.words, acc.values[i]);
      }
      acc = ArrayOp(acc_values, n, true);
    } else {
      if (last) return CountOnly(acc.n - ArrayIntersectCount(acc.values, acc.n, op.values, op.n));
      uint32_t n = DifferenceArrays(acc.values, acc.n, op.values, op.n, acc_values);
      acc = ArrayOp(acc_values, n, true);
    }
    if (acc.kind == Operand::Kind::kEmpty) return count_only ? CountOnly(0) : Empty();
  }
  if (count_only) return CountOnly(CountOf(acc));
  return acc;
}

Operand Evaluator::EvalOr(const Shard& shard, const PlanNode& node, uint16_t key, int depth,
                          bool count_only) {
  const int child_depth = depth + 1;
  uint64_t* acc_words = Words(depth);
  Operand acc;
  int which = 0;  // arrays ping-pong between the level's two value buffers
  for (int32_t c : node.children) {
    Operand op = Eval(shard, c, key, child_depth, false);
    if (op.kind == Operand::Kind::kEmpty) continue;
    if (acc.kind == Operand::Kind::kEmpty) {
      if (op.scratch) {
        if (op.kind == Operand::Kind::kBitset) {
          std::memcpy(acc_words, op.words, kBitsetWords * sizeof(uint64_t));
          op.words = acc_words;
        } else {
          std::memcpy(Values(depth, which), op.values, op.n * sizeof(uint16_t));
          op.values = Values(depth, which);
        }
      }
      acc = op;
      continue;
    }
    if (acc.kind == Operand::Kind::kArray && op.kind == Operand::Kind::kArray &&
        acc.n + op.n <= kMaxArray) {
      uint16_t* out = Values(depth, 1 - which);
      uint32_t n = UnionArrays(acc.values, acc.n, op.values, op.n, out);
      which = 1 - which;
      acc = ArrayOp(out, n, true);
      continue;
    }
    // Any other mix ends up as a bitset in this level's buffer.
    if (acc.kind == Operand::Kind::kArray) {
      const Operand arr = acc;
      if (op.kind == Operand::Kind::kBitset) {
        std::memcpy(acc_words, op.words, kBitsetWords * sizeof(uint64_t));
      } else {
        std::memset(acc_words, 0, kBitsetWords * sizeof(uint64_t));
        for (uint32_t i = 0; i < op.n; ++i) SetBit(acc_words, op.values[i]);
      }
      for (uint32_t i = 0; i < arr.n; ++i) SetBit(acc_words, arr.values[i]);
    } else if (op.kind == Operand::Kind::kBitset) {
      k_.or_into(acc_words, acc.words, op.words);
    } else {
      if (acc.words != acc_words) {
        std::memcpy(acc_words, acc.words, kBitsetWords * sizeof(uint64_t));
      }
      for (uint32_t i = 0; i < op.n; ++i) SetBit(acc_words, op.values[i]);
    }
    acc = BitsetOp(acc_words, true);
  }
  if (count_only) return CountOnly(CountOf(acc));
  return acc;
}

uint64_t Evaluator::Count(const Shard& shard) {
  uint64_t total = 0;
  const roaring_array_t& ra = shard.known.roaring.high_low_container;
  for (int32_t i = 0; i < ra.size; ++i) {
    total += CountOf(Eval(shard, plan_.root, ra.keys[i], 0, true));
  }
  return total;
}

void Evaluator::ForEachContainer(const Shard& shard,
                                 const std::function<void(uint16_t, const Operand&)>& fn) {
  const roaring_array_t& ra = shard.known.roaring.high_low_container;
  for (int32_t i = 0; i < ra.size; ++i) {
    Operand op = Eval(shard, plan_.root, ra.keys[i], 0, false);
    if (op.kind != Operand::Kind::kEmpty) fn(ra.keys[i], op);
  }
}

uint64_t Evaluator::IntersectCount(const Operand& a, const Roaring& bitmap, uint16_t key) {
  // Depth plan_.depth is never used by Eval, so it is free for expanding
  // the other side's run container while `a` lives in lower levels.
  Operand b = Container(bitmap, key, plan_.depth);
  if (a.kind == Operand::Kind::kEmpty || b.kind == Operand::Kind::kEmpty) return 0;
  if (a.kind == Operand::Kind::kBitset && b.kind == Operand::Kind::kBitset) {
    return k_.and_count(a.words, b.words);
  }
  if (a.kind == Operand::Kind::kArray && b.kind == Operand::Kind::kArray) {
    return ArrayIntersectCount(a.values, a.n, b.values, b.n);
  }
  const Operand& arr = a.kind == Operand::Kind::kArray ? a : b;
  const Operand& bits = a.kind == Operand::Kind::kArray ? b : a;
  return CountInBitset(arr.values, arr.n, bits.words);
}

}  // namespace tagcache::internal
