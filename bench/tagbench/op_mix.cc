#include "tagbench/op_mix.h"

#include <cmath>
#include <cstdlib>
#include <string>

namespace tagcache::tagbench {
namespace {

constexpr const char* kNames[kOpKinds] = {"get_tags", "get_tags_hot", "get_tags_batch", "has_tags",
                                          "count",    "top_tags",     "update"};

struct Preset {
  const char* name;
  const char* mix;
};
// `mixed` is a persona service's day: mostly lookups, some audience queries
// from marketing tools, and the real-time update stream.
constexpr Preset kPresets[] = {
    {"lookup", "get_tags=100"},
    {"lookup-hot", "get_tags_hot=100"},
    {"batch", "get_tags_batch=100"},
    {"has", "has_tags=100"},
    {"count", "count=100"},
    {"top", "top_tags=100"},
    {"update", "update=100"},
    {"mixed",
     "get_tags=60,get_tags_hot=10,get_tags_batch=5,has_tags=10,count=4,top_tags=1,update=10"},
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const char* OpKindName(OpKind kind) {
  const int i = static_cast<int>(kind);
  return i >= 0 && i < kOpKinds ? kNames[i] : "unknown";
}

Result<OpKind> ParseOpKind(std::string_view name) {
  for (int i = 0; i < kOpKinds; ++i) {
    if (name == kNames[i]) return static_cast<OpKind>(i);
  }
  std::string known;
  for (const char* n : kNames) known += std::string(known.empty() ? "" : ", ") + n;
  return Status::BadRequest("unknown op '" + std::string(name) + "' (known: " + known + ")");
}

OpKind OpMix::Pick(double u) const {
  double acc = 0;
  int last = 0;
  for (int i = 0; i < kOpKinds; ++i) {
    if (shares[static_cast<size_t>(i)] <= 0) continue;
    last = i;
    acc += shares[static_cast<size_t>(i)] / 100.0;
    if (u < acc) return static_cast<OpKind>(i);
  }
  return static_cast<OpKind>(last);  // rounding: u just below 1
}

Result<OpMix> ParseOpMix(std::string_view text) {
  OpMix mix;
  mix.name = std::string(text);
  std::array<bool, kOpKinds> seen{};
  double sum = 0;
  if (Trim(text).empty())
    return Status::BadRequest("empty op mix (expected e.g. get_tags=80,count=20)");
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = Trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Status::BadRequest("op mix item '" + std::string(item) +
                                "' has no '=' (expected op=percent)");
    }
    Result<OpKind> kind = ParseOpKind(Trim(item.substr(0, eq)));
    if (!kind.ok()) return kind.status();
    const std::string value(Trim(item.substr(eq + 1)));
    char* end = nullptr;
    const double share = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || !std::isfinite(share) ||
        share < 0 || share > 100) {
      return Status::BadRequest("share of " + std::string(OpKindName(*kind)) +
                                " must be a number in [0, 100], got '" + value + "'");
    }
    const size_t k = static_cast<size_t>(*kind);
    if (seen[k])
      return Status::BadRequest(std::string("op ") + OpKindName(*kind) + " given twice in the mix");
    seen[k] = true;
    mix.shares[k] = share;
    sum += share;
  }
  if (std::fabs(sum - 100.0) > 0.01) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%g", sum);
    return Status::BadRequest(std::string("op mix shares must sum to 100, they sum to ") + buf);
  }
  return mix;
}

Result<OpMix> ResolveMix(std::string_view name) {
  if (name.find('=') != std::string_view::npos) return ParseOpMix(name);
  for (const Preset& p : kPresets) {
    if (name == p.name) {
      Result<OpMix> mix = ParseOpMix(p.mix);
      if (mix.ok()) mix->name = p.name;
      return mix;
    }
  }
  std::string known;
  for (const Preset& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  return Status::BadRequest("unknown workload '" + std::string(name) + "' (presets: " + known +
                            "; or a mix such as get_tags=80,count=20)");
}

std::vector<std::string> PresetMixNames() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

std::string RenderExpr(const std::vector<std::vector<ExprTerm>>& groups) {
  std::string out;
  bool alternate = false;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (g) out += " | ";
    for (size_t i = 0; i < groups[g].size(); ++i) {
      const ExprTerm& t = groups[g][i];
      if (i == 0) {
        out += (t.negated ? "!" : "") + t.tag;
      } else if (!t.negated) {
        out += " & " + t.tag;
      } else {
        out += (alternate ? " & !" : " - ") + t.tag;
        alternate = !alternate;
      }
    }
  }
  return out;
}

}  // namespace tagcache::tagbench
