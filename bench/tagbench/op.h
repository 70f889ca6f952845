// The operations tagbench sends, independent of any target: a kind, its
// arguments (users, tags, an audience expression) and the answer a target
// gives back. Targets (target.h) map an Op onto their own protocol; the
// workload generator (workload.h) draws Ops; the driver only times them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tagcache/common/status.h"

namespace tagcache::tagbench {

enum class OpKind : uint8_t {
  kGetTags = 0,   // one uniformly random user's tags
  kGetTagsHot,    // one user drawn from a Zipf (s = 1) popularity over users
  kGetTagsBatch,  // the tags of a batch of uniformly random users
  kHasTags,       // whether one user has each of a few popular tags
  kCount,         // the size of an audience expression
  kTopTags,       // the k most common tags within an audience
  kUpdate,        // one set/clear event, ts = the wall clock
};
inline constexpr int kOpKinds = 7;

// Stable lower-case names: "get_tags", "get_tags_hot", "get_tags_batch",
// "has_tags", "count", "top_tags", "update".
const char* OpKindName(OpKind kind);
// BAD_REQUEST naming the unknown name and the accepted ones.
Result<OpKind> ParseOpKind(std::string_view name);

// One term of an audience expression: a tag, possibly negated ("- t" or "& !t").
struct ExprTerm {
  std::string tag;
  bool negated = false;
};

// An audience expression in disjunctive form: groups joined by '|', each the
// intersection of its positive terms minus its negated ones (a group of only
// negated terms starts from the known users). `text` is the same expression
// in tagcache's grammar (docs/CLI.md), which gives '&' and '-' precedence
// over '|', so no parentheses are needed.
struct Expr {
  std::vector<std::vector<ExprTerm>> groups;
  std::string text;
};
// Renders groups as tagcache grammar; negated non-leading terms alternate
// between "- t" and "& !t" (both mean and-not), a leading one is "!t".
std::string RenderExpr(const std::vector<std::vector<ExprTerm>>& groups);

struct Op {
  OpKind kind = OpKind::kGetTags;
  std::vector<uint64_t> users;    // get_tags*, has_tags, update: one; batch: several
  std::vector<std::string> tags;  // has_tags: the tags asked; update: the one tag
  Expr expr;                      // count, top_tags
  uint32_t k = 10;                // top_tags
  bool set = true;                // update: set (true) or clear
  uint64_t ts = 0;                // update: the event's timestamp
};

// A target's answer, in a target-neutral form so answers can be compared.
struct OpAnswer {
  uint64_t count = 0;                                 // count; tags returned for get_tags*
  std::vector<std::vector<std::string>> tags;         // get_tags*: per user, sorted (if kept)
  std::vector<bool> has;                              // has_tags
  std::vector<std::pair<std::string, uint64_t>> top;  // top_tags: count desc, name asc
};

// Every share in percent, by OpKind.
using Shares = std::array<double, kOpKinds>;

}  // namespace tagcache::tagbench
