// Audience expressions: the parser for the query grammar of the design brief.
//
//   expr   := term ('|' term)*
//   term   := unary (('&' | '-') unary)*       '-' is and-not
//   unary  := '!' unary | '(' expr ')' | TAG
//
// Precedence: '!' binds tightest, then '&' and '-' (left-associative), then
// '|'. A TAG is a maximal run of [A-Za-z0-9_.:-] where an operand is
// expected, so `a-b` is the tag "a-b" and `a - b` is a and-not b. Spaces and
// tabs separate tokens. `!x` means the known users without x.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/common/status.h"

namespace tagcache {

struct ExprLimits {
  // Longest accepted expression text, in bytes. Default: 64 KiB.
  size_t max_length = 64 * 1024;
  // Deepest nesting of parentheses and '!' accepted. Default: 128.
  int max_depth = 128;
  // Most tag references accepted in one expression. Default: 4096.
  size_t max_terms = 4096;
};

// A parsed expression as a binary tree stored in a flat vector; nodes refer
// to their operands by index. Value type: movable and copyable.
struct Expr {
  enum class Kind : uint8_t { kTag, kAnd, kOr, kAndNot, kNot };
  struct Node {
    Kind kind = Kind::kTag;
    int32_t lhs = -1;  // operand of kNot; left operand of binary nodes
    int32_t rhs = -1;  // right operand of binary nodes
    uint32_t pos = 0;  // byte offset of the node's token in the source text
    std::string tag;   // kTag only
  };
  std::vector<Node> nodes;
  int32_t root = -1;

  // Canonical, fully parenthesised text, e.g. "((a & b) - !c)": for tests and logs.
  std::string ToString() const;
};

// Parses `text`. On error: BAD_REQUEST whose message names the byte position
// and what was expected, e.g. "at position 4: expected a tag name, '(' or '!',
// found ')'". Never recurses deeper than limits.max_depth. A text over one
// of `limits` gets a message that starts with kExprLimitPrefix and names the
// limit and its value.
Result<Expr> ParseExpr(std::string_view text, const ExprLimits& limits = {});

inline constexpr std::string_view kExprLimitPrefix = "expression over a limit: ";

// True when `status` is a ParseExpr refusal for exceeding one of the
// ExprLimits (as opposed to a syntax error): nodes count those separately.
bool IsExprLimitError(const Status& status);

}  // namespace tagcache
