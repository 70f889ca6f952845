// The audience-expression parser (tagcache/server/expr.h): precedence and
// associativity, the canonical ToString form, how tag names and '-' are told
// apart, error positions, and the limits that keep hostile input cheap.

#include "tagcache/server/expr.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "server/set_reference.h"
#include "tagcache/server/engine.h"

namespace tagcache::test {
namespace {

// The canonical text of a successful parse, or "ERROR: ..." for a failed one.
std::string Parsed(std::string_view text, const ExprLimits& limits = {}) {
  Result<Expr> e = ParseExpr(text, limits);
  if (!e.ok()) return "ERROR: " + e.status().ToString();
  return e->ToString();
}

void ExpectParseError(std::string_view text, size_t position, const ExprLimits& limits = {}) {
  Result<Expr> e = ParseExpr(text, limits);
  ASSERT_FALSE(e.ok()) << "'" << text << "' parsed as " << e->ToString();
  EXPECT_EQ(e.status().code(), StatusCode::kBadRequest) << e.status().ToString();
  EXPECT_NE(e.status().message().find("position " + std::to_string(position)), std::string::npos)
      << "'" << text << "': want position " << position << ", got " << e.status().ToString();
}

TEST(ExprParserTest, SingleTag) {
  EXPECT_EQ(Parsed("a"), "a");
  Result<Expr> e = ParseExpr("apple_fan");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_GE(e->root, 0);
  const Expr::Node& root = e->nodes[e->root];
  EXPECT_EQ(root.kind, Expr::Kind::kTag);
  EXPECT_EQ(root.tag, "apple_fan");
  EXPECT_EQ(root.pos, 0u);
}

TEST(ExprParserTest, AndBindsTighterThanOr) {
  EXPECT_EQ(Parsed("a | b & c"), "(a | (b & c))");
  EXPECT_EQ(Parsed("a & b | c"), "((a & b) | c)");
  EXPECT_EQ(Parsed("a | b - c"), "(a | (b - c))");
}

TEST(ExprParserTest, NotBindsTightest) {
  EXPECT_EQ(Parsed("!a & b"), "(!a & b)");
  EXPECT_EQ(Parsed("a | !b"), "(a | !b)");
  EXPECT_EQ(Parsed("!(a & b)"), "!(a & b)");
  EXPECT_EQ(Parsed("!!a"), "!!a");
}

TEST(ExprParserTest, AndAndAndNotAreLeftAssociativeAtOneLevel) {
  EXPECT_EQ(Parsed("a - b - c"), "((a - b) - c)");
  EXPECT_EQ(Parsed("a & b - c"), "((a & b) - c)");
  EXPECT_EQ(Parsed("a - b & c"), "((a - b) & c)");
  EXPECT_EQ(Parsed("a | b | c"), "((a | b) | c)");
  EXPECT_EQ(Parsed("a - (b - c)"), "(a - (b - c))");
}

TEST(ExprParserTest, RedundantParenthesesVanishFromCanonicalForm) {
  EXPECT_EQ(Parsed("(a)"), "a");
  EXPECT_EQ(Parsed("((a & b)) - !(c)"), "((a & b) - !c)");
}

TEST(ExprParserTest, TagNamesMayContainDashDotAndColon) {
  EXPECT_EQ(Parsed("a-b"), "a-b");
  EXPECT_EQ(Parsed("a - b"), "(a - b)");
  EXPECT_EQ(Parsed("a -b"), "(a - b)") << "after an operand, '-' is the operator";
  EXPECT_EQ(Parsed("x.y:z & a-b-c"), "(x.y:z & a-b-c)");
  EXPECT_EQ(Parsed("a-b - c-d"), "(a-b - c-d)");
  EXPECT_EQ(Parsed("vip:gold|web-visitor&A_1.2"), "(vip:gold | (web-visitor & A_1.2))");
  EXPECT_EQ(Parsed("-a"), "-a") << "where an operand is expected, '-' starts a tag";
}

TEST(ExprParserTest, SpacesAndTabsSeparateTokens) {
  EXPECT_EQ(Parsed("  a&b  "), "(a & b)");
  EXPECT_EQ(Parsed("\ta\t|\t!\tb "), "(a | !b)");
  EXPECT_EQ(Parsed("( a )&( b|c )"), "(a & (b | c))");
}

TEST(ExprParserTest, NodePositionsPointAtTokens) {
  Result<Expr> e = ParseExpr("ab & !cd");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  const Expr::Node& root = e->nodes[e->root];
  EXPECT_EQ(root.kind, Expr::Kind::kAnd);
  EXPECT_EQ(root.pos, 3u);
  const Expr::Node& lhs = e->nodes[root.lhs];
  EXPECT_EQ(lhs.kind, Expr::Kind::kTag);
  EXPECT_EQ(lhs.tag, "ab");
  EXPECT_EQ(lhs.pos, 0u);
  const Expr::Node& rhs = e->nodes[root.rhs];
  EXPECT_EQ(rhs.kind, Expr::Kind::kNot);
  EXPECT_EQ(rhs.pos, 5u);
  EXPECT_EQ(e->nodes[rhs.lhs].tag, "cd");
  EXPECT_EQ(e->nodes[rhs.lhs].pos, 6u);
}

TEST(ExprParserTest, RandomExpressionsParseToTheTreeTheyWereRenderedFrom) {
  std::mt19937_64 rng(3);
  const std::vector<std::string> tags{"a", "b-c", "d.e", "f:g", "H_9", "x"};
  for (int i = 0; i < 2000; ++i) {
    RefExprPtr tree = RandomExpr(rng, tags, 5);
    const std::string text = Render(*tree, &rng);
    const std::string canonical = Canonical(*tree);
    EXPECT_EQ(Parsed(text), canonical) << "text: " << text;
    EXPECT_EQ(Parsed(canonical), canonical) << "the canonical form must parse to itself";
  }
}

TEST(ExprParserTest, EmptyInputIsAnError) {
  ExpectParseError("", 0);
  ExpectParseError("   ", 3);
  ExpectParseError("\t", 1);
}

TEST(ExprParserTest, UnbalancedParenthesesAreErrors) {
  ExpectParseError("(a & b", 6);
  ExpectParseError("a & b)", 5);
  ExpectParseError("()", 1);
  ExpectParseError("((a)", 4);
}

TEST(ExprParserTest, MissingOperandsAreErrors) {
  ExpectParseError("a &", 3);
  ExpectParseError("& a", 0);
  ExpectParseError("a | | b", 4);
  ExpectParseError("a -", 3);
  ExpectParseError("!", 1);
  ExpectParseError("a & !", 5);
}

TEST(ExprParserTest, MissingOperatorIsAnError) {
  ExpectParseError("a b", 2);
  ExpectParseError("(a) (b)", 4);
  ExpectParseError("a !b", 2);
}

TEST(ExprParserTest, BadCharactersAreErrors) {
  ExpectParseError("a + b", 2);
  ExpectParseError("a$", 1);
  ExpectParseError("a & b/c", 5);
  ExpectParseError("caf\xc3\xa9", 3);
  ExpectParseError(std::string_view("a\0b", 3), 1);
}

TEST(ExprParserTest, LongestValidTagNameParses) {
  const std::string longest(128, 't');
  EXPECT_EQ(Parsed(longest + " & a"), "(" + longest + " & a)");
}

// Hostile nesting must be refused by the depth limit, not by a stack overflow.
TEST(ExprParserTest, DeepParenthesesFailCleanly) {
  const int n = 10000;
  const std::string text = std::string(n, '(') + "a" + std::string(n, ')');
  Result<Expr> e = ParseExpr(text);
  EXPECT_EQ(e.status().code(), StatusCode::kBadRequest) << e.status().ToString();
  // Unbalanced deep input too (under the length limit, so depth is what stops it).
  e = ParseExpr(std::string(60000, '('));
  EXPECT_EQ(e.status().code(), StatusCode::kBadRequest) << e.status().ToString();
}

TEST(ExprParserTest, DeepNotChainFailsCleanly) {
  Result<Expr> e = ParseExpr(std::string(10000, '!') + "a");
  EXPECT_EQ(e.status().code(), StatusCode::kBadRequest) << e.status().ToString();
  e = ParseExpr(std::string(30000, '!') + "(" + std::string(30000, '(') + "a");
  EXPECT_EQ(e.status().code(), StatusCode::kBadRequest) << e.status().ToString();
}

TEST(ExprParserTest, DepthLimitIsConfigurable) {
  ExprLimits limits;
  limits.max_depth = 10;
  auto nested = [](int depth) { return std::string(depth, '(') + "a" + std::string(depth, ')'); };
  EXPECT_EQ(Parsed(nested(5), limits), "a");
  EXPECT_EQ(Parsed(std::string(5, '!') + "a", limits), "!!!!!a");
  EXPECT_TRUE(ParseExpr(nested(20), limits).status().IsBadRequest());
  EXPECT_TRUE(ParseExpr(std::string(20, '!') + "a", limits).status().IsBadRequest());
  // The default admits ordinary nesting.
  EXPECT_EQ(Parsed(nested(60)), "a");
}

TEST(ExprParserTest, LengthLimitIsEnforced) {
  ExprLimits limits;
  limits.max_length = 9;
  EXPECT_EQ(Parsed("a & b | c", limits), "((a & b) | c)");  // exactly 9 bytes
  EXPECT_TRUE(ParseExpr("a & b | cd", limits).status().IsBadRequest());
  EXPECT_TRUE(ParseExpr(std::string(1 << 20, 'a')).status().IsBadRequest())
      << "1 MiB is over the 64 KiB default";
}

TEST(ExprParserTest, TermsLimitIsEnforced) {
  ExprLimits limits;
  limits.max_terms = 3;
  EXPECT_EQ(Parsed("a & b | !c", limits), "((a & b) | !c)");
  EXPECT_TRUE(ParseExpr("a & b | c - d", limits).status().IsBadRequest());
  // Default: 4096 tag references.
  std::string text = "t";
  for (int i = 1; i < 4096; ++i) text += "|t";
  EXPECT_TRUE(ParseExpr(text).ok()) << ParseExpr(text).status().ToString();
  EXPECT_TRUE(ParseExpr(text + "|t").status().IsBadRequest());
}

// A long flat chain is not nesting: the parser must loop, not recurse, over it.
TEST(ExprParserTest, LongFlatChainIsNotLimitedByDepth) {
  std::string text = "a";
  for (int i = 0; i < 3000; ++i) text += (i % 3 == 0) ? " & b" : (i % 3 == 1 ? " - c" : " | d");
  Result<Expr> e = ParseExpr(text);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->nodes[e->root].kind, Expr::Kind::kOr);
}

// Nodes count limit refusals apart from syntax errors: the two must be told
// apart, and a limit refusal names the limit and its value.
TEST(ExprParserTest, LimitErrorsAreMarkedAndNameTheLimit) {
  ExprLimits limits;
  limits.max_length = 20;
  limits.max_depth = 2;
  limits.max_terms = 3;
  struct Case {
    std::string text;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {std::string(21, 'a'), "21 bytes, longer than the limit of 20 bytes"},
           {"(((a)))", "nested deeper than the limit of 2"},
           {"!!!a", "nested deeper than the limit of 2"},
           {"a|b|c|d", "more than the limit of 3 tag references"}}) {
    Result<Expr> e = ParseExpr(c.text, limits);
    ASSERT_FALSE(e.ok()) << c.text;
    EXPECT_TRUE(IsExprLimitError(e.status())) << e.status().ToString();
    EXPECT_NE(e.status().message().find(c.says), std::string::npos) << e.status().ToString();
  }
  for (const char* syntax : {"a &", "(a", "a b", "", "&"}) {
    Result<Expr> e = ParseExpr(syntax, limits);
    ASSERT_FALSE(e.ok()) << syntax;
    EXPECT_FALSE(IsExprLimitError(e.status())) << e.status().ToString();
  }
  EXPECT_FALSE(IsExprLimitError(Status::Ok()));
  EXPECT_FALSE(IsExprLimitError(Status::Internal(std::string(kExprLimitPrefix))));
}

// The engine parses with EngineOptions::expr_limits and counts refusals.
TEST(ExprParserTest, EngineAppliesItsExpressionLimitsAndCountsRefusals) {
  EngineOptions options;
  options.query_threads = 1;
  options.expr_limits.max_depth = 3;
  Engine engine(options);
  ASSERT_TRUE(engine.ApplyFullSnapshot("a", 1000, std::vector<UserId>{1, 2, 3}).ok());
  EXPECT_EQ(engine.expr_limits().max_depth, 3);
  EXPECT_TRUE(engine.Count("((a))", {}).ok());
  Result<uint64_t> deep = engine.Count("((((a))))", {});
  ASSERT_FALSE(deep.ok());
  EXPECT_TRUE(IsExprLimitError(deep.status())) << deep.status().ToString();
  EXPECT_FALSE(engine.Audience("!!!!a", 0, 10, {}).ok());
  EXPECT_FALSE(engine.Count("a &", {}).ok());  // syntax: not counted
  EXPECT_EQ(engine.Counters().expr_limit_refusals, 2u);
  EXPECT_EQ(engine.Stats().counters.expr_limit_refusals, 2u);
}

}  // namespace
}  // namespace tagcache::test
