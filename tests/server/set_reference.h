// The reference model for audience queries: user sets as sorted vectors, the
// expression grammar's algebra on them, and a random expression generator that
// emits query text together with the tree that text must parse to. It shares
// no code with the engine, so the engine can disagree with it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tagcache/server/engine.h"

namespace tagcache::test {

// A set of users: sorted ascending, no duplicates. Sorted vectors with the
// std::set_* algorithms have std::set's semantics and are fast enough for
// the 10^5-10^6 element sets of the dense and real-data tests.
using UserSet = std::vector<UserId>;

inline UserSet MakeSet(std::vector<UserId> users) {
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  return users;
}

inline UserSet Union(const UserSet& a, const UserSet& b) {
  UserSet out;
  out.reserve(a.size() + b.size());
  std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

inline UserSet Intersect(const UserSet& a, const UserSet& b) {
  UserSet out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

inline UserSet Difference(const UserSet& a, const UserSet& b) {
  UserSet out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

// An expression tree of the reference model.
struct RefExpr {
  enum class Op { kTag, kAnd, kOr, kAndNot, kNot };
  Op op = Op::kTag;
  std::string tag;                     // kTag only
  std::shared_ptr<const RefExpr> lhs;  // operand of kNot, left operand otherwise
  std::shared_ptr<const RefExpr> rhs;
};
using RefExprPtr = std::shared_ptr<const RefExpr>;

inline RefExprPtr Tag(std::string name) {
  return std::make_shared<const RefExpr>(RefExpr{RefExpr::Op::kTag, std::move(name), {}, {}});
}
inline RefExprPtr Binary(RefExpr::Op op, RefExprPtr a, RefExprPtr b) {
  return std::make_shared<const RefExpr>(RefExpr{op, {}, std::move(a), std::move(b)});
}
inline RefExprPtr And(RefExprPtr a, RefExprPtr b) {
  return Binary(RefExpr::Op::kAnd, std::move(a), std::move(b));
}
inline RefExprPtr Or(RefExprPtr a, RefExprPtr b) {
  return Binary(RefExpr::Op::kOr, std::move(a), std::move(b));
}
inline RefExprPtr AndNot(RefExprPtr a, RefExprPtr b) {
  return Binary(RefExpr::Op::kAndNot, std::move(a), std::move(b));
}
inline RefExprPtr Not(RefExprPtr a) {
  return std::make_shared<const RefExpr>(RefExpr{RefExpr::Op::kNot, {}, std::move(a), {}});
}

inline const char* OpText(RefExpr::Op op) {
  switch (op) {
    case RefExpr::Op::kAnd:
      return "&";
    case RefExpr::Op::kOr:
      return "|";
    case RefExpr::Op::kAndNot:
      return "-";
    default:
      return "?";
  }
}

// Binding strength per the grammar: '|' < '&' == '-' < '!' < tag.
inline int Precedence(RefExpr::Op op) {
  switch (op) {
    case RefExpr::Op::kOr:
      return 1;
    case RefExpr::Op::kAnd:
    case RefExpr::Op::kAndNot:
      return 2;
    case RefExpr::Op::kNot:
      return 3;
    case RefExpr::Op::kTag:
      return 4;
  }
  return 0;
}

// The canonical form Expr::ToString documents: binary nodes fully
// parenthesised with single spaces, e.g. "((a & b) - !c)".
inline std::string Canonical(const RefExpr& e) {
  switch (e.op) {
    case RefExpr::Op::kTag:
      return e.tag;
    case RefExpr::Op::kNot:
      return "!" + Canonical(*e.lhs);
    default:
      return "(" + Canonical(*e.lhs) + " " + OpText(e.op) + " " + Canonical(*e.rhs) + ")";
  }
}

// Query text for `e` using only the parentheses precedence and left
// associativity require, so parsing it exercises precedence. With `rng`, adds
// redundant parentheses and varies whitespace (spaces and tabs); '-' always
// keeps a blank on both sides, since `a-b` is the tag "a-b".
inline std::string Render(const RefExpr& e, std::mt19937_64* rng = nullptr) {
  auto coin = [&](int one_in) { return rng != nullptr && (*rng)() % one_in == 0; };
  auto blank = [&](bool required) -> std::string {
    if (rng == nullptr) return " ";
    switch ((*rng)() % 4) {
      case 0:
        return required ? " " : "";
      case 1:
        return "\t";
      case 2:
        return "  ";
      default:
        return " ";
    }
  };
  // Each blank() is its own statement so a seed always renders the same text.
  auto wrap = [&](const std::string& inner) {
    std::string open = "(" + blank(false);
    return open + inner + blank(false) + ")";
  };
  std::string s;
  switch (e.op) {
    case RefExpr::Op::kTag:
      s = e.tag;
      break;
    case RefExpr::Op::kNot: {
      std::string child = Render(*e.lhs, rng);
      if (Precedence(e.lhs->op) < Precedence(RefExpr::Op::kNot)) child = wrap(child);
      s = "!" + blank(false) + child;
      break;
    }
    default: {
      const int p = Precedence(e.op);
      std::string l = Render(*e.lhs, rng);
      std::string r = Render(*e.rhs, rng);
      if (Precedence(e.lhs->op) < p) l = wrap(l);
      if (Precedence(e.rhs->op) <= p) r = wrap(r);  // left-associative
      const bool dash = e.op == RefExpr::Op::kAndNot;
      std::string before = blank(dash);
      std::string after = blank(dash);
      s = l + before + OpText(e.op) + after + r;
      break;
    }
  }
  if (coin(6)) s = wrap(s);
  return s;
}

// Evaluates `e`: tags name sets in `tags` (absent = empty), '!' is relative to `known`.
inline UserSet Evaluate(const RefExpr& e, const std::map<std::string, UserSet>& tags,
                        const UserSet& known) {
  switch (e.op) {
    case RefExpr::Op::kTag: {
      auto it = tags.find(e.tag);
      return it == tags.end() ? UserSet{} : it->second;
    }
    case RefExpr::Op::kNot:
      return Difference(known, Evaluate(*e.lhs, tags, known));
    case RefExpr::Op::kAnd:
      return Intersect(Evaluate(*e.lhs, tags, known), Evaluate(*e.rhs, tags, known));
    case RefExpr::Op::kOr:
      return Union(Evaluate(*e.lhs, tags, known), Evaluate(*e.rhs, tags, known));
    case RefExpr::Op::kAndNot:
      return Difference(Evaluate(*e.lhs, tags, known), Evaluate(*e.rhs, tags, known));
  }
  return {};
}

// A random expression over `tag_names`, at most `depth` binary levels deep.
inline RefExprPtr RandomExpr(std::mt19937_64& rng, const std::vector<std::string>& tag_names,
                             int depth) {
  if (depth <= 0 || rng() % 4 == 0) {
    RefExprPtr leaf = Tag(tag_names[rng() % tag_names.size()]);
    return rng() % 5 == 0 ? Not(leaf) : leaf;
  }
  switch (rng() % 7) {
    case 0:
    case 1: {
      RefExprPtr a = RandomExpr(rng, tag_names, depth - 1);
      return And(a, RandomExpr(rng, tag_names, depth - 1));
    }
    case 2:
    case 3: {
      RefExprPtr a = RandomExpr(rng, tag_names, depth - 1);
      return Or(a, RandomExpr(rng, tag_names, depth - 1));
    }
    case 4:
    case 5: {
      RefExprPtr a = RandomExpr(rng, tag_names, depth - 1);
      return AndNot(a, RandomExpr(rng, tag_names, depth - 1));
    }
    default:
      return Not(RandomExpr(rng, tag_names, depth - 1));
  }
}

// TopTags by the reference: every tag's overlap with `audience`, zeros left
// out, count descending then name ascending, the first k.
inline std::vector<std::pair<std::string, uint64_t>> ReferenceTopTags(
    const std::map<std::string, UserSet>& tags, const UserSet& audience, size_t k) {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [name, members] : tags) {
    uint64_t n = Intersect(members, audience).size();
    if (n > 0) out.emplace_back(name, n);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (out.size() > k) out.resize(k);
  return out;
}

}  // namespace tagcache::test
