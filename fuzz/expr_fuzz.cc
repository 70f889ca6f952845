// Fuzz target: the audience expression parser (server/include/tagcache/
// server/expr.h), which reads client text. Besides the sanitizers, checks
// that an accepted expression's canonical text parses again to the same
// canonical text (ToString is a fixed point).
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "tagcache/server/expr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Small limits too, so the fuzzer reaches every limit's error path.
  ExprLimits small;
  small.max_length = 256;
  small.max_depth = 8;
  small.max_terms = 16;
  (void)ParseExpr(text, small);

  Result<Expr> expr = ParseExpr(text);
  if (!expr.ok()) return 0;
  if (expr->root < 0 || static_cast<size_t>(expr->root) >= expr->nodes.size()) std::abort();
  const std::string canonical = expr->ToString();
  ExprLimits roomy;  // the canonical text adds parentheses and spaces
  roomy.max_length = canonical.size();
  roomy.max_depth = 1 << 20;
  Result<Expr> again = ParseExpr(canonical, roomy);
  if (!again.ok() || again->ToString() != canonical) std::abort();
  return 0;
}
