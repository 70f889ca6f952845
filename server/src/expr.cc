#include "tagcache/server/expr.h"

#include <string>

namespace tagcache {
namespace {

bool IsTagChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '-';
}

// Recursive descent with an explicit depth bound: every recursion passes
// through ParseUnary, which counts '(' and '!' nesting, so a hostile
// 10,000-deep input fails at max_depth instead of overflowing the stack.
class Parser {
 public:
  Parser(std::string_view text, const ExprLimits& limits) : text_(text), limits_(limits) {}

  Result<Expr> Run() {
    if (text_.size() > limits_.max_length) {
      return Status::BadRequest(std::string(kExprLimitPrefix) + "it is " +
                                std::to_string(text_.size()) + " bytes, longer than the limit of " +
                                std::to_string(limits_.max_length) + " bytes");
    }
    SkipSpace();
    if (pos_ == text_.size()) {
      return Status::BadRequest("at position " + std::to_string(pos_) +
                                ": empty expression, expected a tag name, '(' or '!'");
    }
    int32_t root = ParseOr(0);
    if (!error_.ok()) return error_;
    SkipSpace();
    if (pos_ != text_.size()) {
      Fail(text_[pos_] == ')' ? "unbalanced ')'" : "expected an operator ('&', '|', '-') or end of input");
      return error_;
    }
    expr_.root = root;
    return std::move(expr_);
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  std::string Describe() const {
    if (pos_ >= text_.size()) return "end of input";
    char c = text_[pos_];
    if (c >= 0x21 && c <= 0x7e) return std::string("'") + c + "'";
    return "byte 0x" + std::string(1, "0123456789abcdef"[(c >> 4) & 0xf]) +
           std::string(1, "0123456789abcdef"[c & 0xf]);
  }

  // Records the first error only: later ones are consequences of it.
  void Fail(std::string_view what) {
    if (error_.ok()) {
      error_ = Status::BadRequest("at position " + std::to_string(pos_) + ": " + std::string(what) +
                                  ", found " + Describe());
    }
  }
  // A limit, not the syntax, stops the parse: marked so that nodes can count it.
  void FailLimit(const std::string& what) {
    if (error_.ok()) {
      error_ = Status::BadRequest(std::string(kExprLimitPrefix) + what + " (at position " +
                                  std::to_string(pos_) + ")");
    }
  }

  int32_t Add(Expr::Kind kind, int32_t lhs, int32_t rhs, size_t pos) {
    Expr::Node node;
    node.kind = kind;
    node.lhs = lhs;
    node.rhs = rhs;
    node.pos = static_cast<uint32_t>(pos);
    expr_.nodes.push_back(std::move(node));
    return static_cast<int32_t>(expr_.nodes.size() - 1);
  }

  int32_t ParseOr(int depth) {
    int32_t lhs = ParseAnd(depth);
    while (error_.ok()) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '|') break;
      size_t op_pos = pos_++;
      int32_t rhs = ParseAnd(depth);
      lhs = Add(Expr::Kind::kOr, lhs, rhs, op_pos);
    }
    return lhs;
  }

  int32_t ParseAnd(int depth) {
    int32_t lhs = ParseUnary(depth);
    while (error_.ok()) {
      SkipSpace();
      if (pos_ >= text_.size() || (text_[pos_] != '&' && text_[pos_] != '-')) break;
      Expr::Kind kind = text_[pos_] == '&' ? Expr::Kind::kAnd : Expr::Kind::kAndNot;
      size_t op_pos = pos_++;
      int32_t rhs = ParseUnary(depth);
      lhs = Add(kind, lhs, rhs, op_pos);
    }
    return lhs;
  }

  int32_t ParseUnary(int depth) {
    if (!error_.ok()) return -1;
    SkipSpace();
    if (pos_ >= text_.size()) {
      Fail("expected a tag name, '(' or '!'");
      return -1;
    }
    char c = text_[pos_];
    if (c == '!' || c == '(') {
      if (depth + 1 > limits_.max_depth) {
        FailLimit("nested deeper than the limit of " + std::to_string(limits_.max_depth));
        return -1;
      }
      size_t start = pos_++;
      if (c == '!') {
        int32_t operand = ParseUnary(depth + 1);
        return Add(Expr::Kind::kNot, operand, -1, start);
      }
      int32_t inner = ParseOr(depth + 1);
      if (!error_.ok()) return -1;
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ')') {
        Fail("expected ')' to close the '(' at position " + std::to_string(start));
        return -1;
      }
      ++pos_;
      return inner;
    }
    if (!IsTagChar(c)) {
      Fail("expected a tag name, '(' or '!'");
      return -1;
    }
    size_t start = pos_;
    while (pos_ < text_.size() && IsTagChar(text_[pos_])) ++pos_;
    if (pos_ - start > 128) {
      pos_ = start;
      Fail("tag name longer than 128 bytes");
      return -1;
    }
    if (++terms_ > limits_.max_terms) {
      pos_ = start;
      FailLimit("more than the limit of " + std::to_string(limits_.max_terms) +
                " tag references");
      return -1;
    }
    int32_t node = Add(Expr::Kind::kTag, -1, -1, start);
    expr_.nodes[node].tag.assign(text_.substr(start, pos_ - start));
    return node;
  }

  std::string_view text_;
  const ExprLimits& limits_;
  size_t pos_ = 0;
  size_t terms_ = 0;
  Expr expr_;
  Status error_;
};

void AppendNode(const Expr& expr, int32_t index, std::string& out) {
  const Expr::Node& node = expr.nodes[index];
  switch (node.kind) {
    case Expr::Kind::kTag:
      out += node.tag;
      return;
    case Expr::Kind::kNot:
      out += '!';
      AppendNode(expr, node.lhs, out);
      return;
    default:
      break;
  }
  out += '(';
  AppendNode(expr, node.lhs, out);
  out += node.kind == Expr::Kind::kAnd ? " & " : node.kind == Expr::Kind::kOr ? " | " : " - ";
  AppendNode(expr, node.rhs, out);
  out += ')';
}

}  // namespace

Result<Expr> ParseExpr(std::string_view text, const ExprLimits& limits) {
  return Parser(text, limits).Run();
}

bool IsExprLimitError(const Status& status) {
  return status.IsBadRequest() && status.message().starts_with(kExprLimitPrefix);
}

std::string Expr::ToString() const {
  std::string out;
  if (root >= 0) AppendNode(*this, root, out);
  return out;
}

}  // namespace tagcache
