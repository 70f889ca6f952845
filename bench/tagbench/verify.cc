#include "tagbench/verify.h"

#include <span>

#include "tagbench/op_mix.h"

namespace tagcache::tagbench {
namespace {

std::string Describe(const OpAnswer& a) {
  std::string s = "count=" + std::to_string(a.count);
  for (const auto& user : a.tags) {
    s += " [";
    for (size_t i = 0; i < user.size(); ++i) s += (i ? "," : "") + user[i];
    s += "]";
  }
  if (!a.has.empty()) {
    s += " has=";
    for (bool h : a.has) s += h ? '1' : '0';
  }
  for (const auto& [t, c] : a.top) s += " " + t + ":" + std::to_string(c);
  return s;
}

Result<OpAnswer> Ask(Session& s, const Op& op, const std::string& who) {
  s.Send(op, 1);
  std::optional<Completion> c = s.Next(Clock::now() + std::chrono::seconds(30));
  if (!c) return Status::IoError(who + ": no answer within 30 s to " + DescribeOp(op));
  if (!c->outcome.error.empty()) {
    return Status::Internal(who + ": " + c->outcome.error + " " + c->outcome.message + " for " +
                            DescribeOp(op));
  }
  return c->outcome.answer;
}

}  // namespace

std::string DescribeOp(const Op& op) {
  std::string s = OpKindName(op.kind);
  if (!op.users.empty()) {
    s += " user";
    for (uint64_t u : op.users) s += " " + std::to_string(u);
  }
  for (const std::string& t : op.tags) s += " " + t;
  if (!op.expr.text.empty()) s += " '" + op.expr.text + "'";
  return s;
}

Result<VerifyResult> CrossCheck(Target& a, Target& b, const Manifest& manifest,
                                const WorkloadOptions& workload, uint64_t ops_per_kind,
                                uint64_t seed, bool audience_only) {
  SessionOptions so;
  so.keep_answers = true;
  so.index = 9999;  // temp keys apart from any running workload's
  Result<std::unique_ptr<Session>> sa = a.OpenSession(so);
  if (!sa.ok()) return sa.status();
  Result<std::unique_ptr<Session>> sb = b.OpenSession(so);
  if (!sb.ok()) return sb.status();
  Result<OpMix> mix = ResolveMix("lookup");
  OpGenerator gen(manifest, *mix, workload, seed);
  VerifyResult result;
  static constexpr OpKind kAllKinds[] = {OpKind::kGetTags, OpKind::kGetTagsHot,
                                         OpKind::kGetTagsBatch, OpKind::kHasTags,
                                         OpKind::kCount,   OpKind::kTopTags};
  static constexpr OpKind kAudienceKinds[] = {OpKind::kCount, OpKind::kTopTags};
  const std::span<const OpKind> kinds =
      audience_only ? std::span<const OpKind>(kAudienceKinds) : std::span<const OpKind>(kAllKinds);
  for (OpKind kind : kinds) {
    for (uint64_t i = 0; i < ops_per_kind; ++i) {
      const Op op = gen.Make(kind);
      Result<OpAnswer> x = Ask(**sa, op, a.Describe());
      if (!x.ok()) return x.status();
      Result<OpAnswer> y = Ask(**sb, op, b.Describe());
      if (!y.ok()) return y.status();
      ++result.compared;
      const bool same =
          x->count == y->count && x->tags == y->tags && x->has == y->has && x->top == y->top;
      if (!same) {
        if (result.mismatches++ == 0) {
          result.first_mismatch = DescribeOp(op) + ": " + a.Kind() + " " + Describe(*x) + " vs " +
                                  b.Kind() + " " + Describe(*y);
        }
      }
    }
  }
  return result;
}

}  // namespace tagcache::tagbench
