#include "tagbench/workload.h"

#include <chrono>
#include <cmath>

namespace tagcache::tagbench {
namespace {

std::vector<int> ExistingTags(const Manifest& m) {
  std::vector<int> out;
  for (size_t i = 0; i < m.tags.size(); ++i) {
    if (m.tags[i].exists) out.push_back(static_cast<int>(i));
  }
  return out;
}

std::vector<double> Weights(const Manifest& m, const std::vector<int>& ranks) {
  std::vector<double> w;
  for (int r : ranks)
    w.push_back(static_cast<double>(m.tags[static_cast<size_t>(r)].final_members) + 1.0);
  if (w.empty()) w.push_back(1.0);
  return w;
}

}  // namespace

Status ValidateWorkload(const WorkloadOptions& o) {
  if (o.batch_size < 1 || o.batch_size > 100'000)
    return Status::BadRequest("batch size must be in [1, 100000]");
  if (o.has_tags < 1 || o.has_tags > 1000)
    return Status::BadRequest("has_tags count must be in [1, 1000]");
  if (o.top_k < 1 || o.top_k > 100'000) return Status::BadRequest("top-k must be in [1, 100000]");
  if (o.min_terms < 1 || o.max_terms > 6 || o.min_terms > o.max_terms) {
    return Status::BadRequest("expression terms must be MIN-MAX with 1 <= MIN <= MAX <= 6");
  }
  if (!(o.audience_share >= 0 && o.audience_share <= 1))
    return Status::BadRequest("audience share must be in [0, 1]");
  return Status::Ok();
}

OpGenerator::OpGenerator(const Manifest& manifest, const OpMix& mix, const WorkloadOptions& options,
                         uint64_t seed)
    : manifest_(manifest),
      mix_(mix),
      options_(options),
      rng_(seed),
      users_(manifest.spec.users),
      existing_(ExistingTags(manifest)),
      by_popularity_(Weights(manifest, existing_)) {
  if (options_.audience_share > 0) {
    const double want = options_.audience_share * static_cast<double>(users_);
    double best = INFINITY;
    for (int r : existing_) {
      const double d = std::fabs(
          static_cast<double>(manifest_.tags[static_cast<size_t>(r)].final_members) - want);
      if (d < best) best = d, audience_tag_ = r;
    }
  }
}

uint64_t OpGenerator::HotUser() {
  // Zipf s = 1 by inversion of the continuous law: rank = (N+1)^U - 1 is
  // log-uniform. The rank is scattered over ids by an odd multiplier so hot
  // users do not all sit in one shard.
  const double rank =
      std::floor(std::pow(static_cast<double>(users_) + 1.0, rng_.NextUnit()) - 1.0);
  const uint64_t r = std::min<uint64_t>(static_cast<uint64_t>(std::max(rank, 0.0)), users_ - 1);
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * 0x9E3779B97F4A7C15ULL) %
                               users_);
}

const std::string& OpGenerator::PopularTag() {
  const int r = existing_[by_popularity_.Draw(rng_)];
  return manifest_.tags[static_cast<size_t>(r)].name;
}

Expr OpGenerator::MakeExpr() {
  Expr e;
  if (audience_tag_ >= 0) {
    e.groups = {{ExprTerm{manifest_.tags[static_cast<size_t>(audience_tag_)].name, false}}};
    e.text = RenderExpr(e.groups);
    return e;
  }
  const int terms = options_.min_terms + static_cast<int>(rng_.Below(static_cast<uint64_t>(
                                             options_.max_terms - options_.min_terms + 1)));
  const int max_groups = std::min(terms, 3);
  const int groups =
      rng_.Below(2) == 0 ? 1 : 1 + static_cast<int>(rng_.Below(static_cast<uint64_t>(max_groups)));
  e.groups.resize(static_cast<size_t>(groups));
  for (int i = 0; i < terms; ++i) {
    auto& g = e.groups[static_cast<size_t>(i % groups)];
    ExprTerm t;
    if (g.empty()) {
      t.tag = manifest_.tags[static_cast<size_t>(existing_[rng_.Below(existing_.size())])].name;
      t.negated = rng_.Below(20) == 0;
    } else {
      t.tag = PopularTag();
      t.negated = rng_.Below(4) == 0;
    }
    g.push_back(std::move(t));
  }
  e.text = RenderExpr(e.groups);
  return e;
}

Op OpGenerator::Make(OpKind kind) {
  Op op;
  op.kind = kind;
  switch (kind) {
    case OpKind::kGetTags:
      op.users = {UniformUser()};
      break;
    case OpKind::kGetTagsHot:
      op.users = {HotUser()};
      break;
    case OpKind::kGetTagsBatch:
      for (uint32_t i = 0; i < options_.batch_size; ++i) op.users.push_back(UniformUser());
      break;
    case OpKind::kHasTags:
      op.users = {UniformUser()};
      for (uint32_t i = 0; i < options_.has_tags; ++i) op.tags.push_back(PopularTag());
      break;
    case OpKind::kCount:
      op.expr = MakeExpr();
      break;
    case OpKind::kTopTags:
      op.expr = MakeExpr();
      op.k = options_.top_k;
      break;
    case OpKind::kUpdate: {
      op.users = {UniformUser()};
      op.tags = {PopularTag()};
      op.set = rng_.Below(4) != 0;
      // Newer than the snapshot and than any generated event, never ahead of
      // the node's clock: the wall clock in ms.
      const auto now = std::chrono::system_clock::now().time_since_epoch();
      op.ts = std::max<uint64_t>(
          manifest_.spec.snapshot_ts + 86'400'000ULL,
          static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::milliseconds>(now).count()));
      break;
    }
  }
  return op;
}

Op OpGenerator::Next() {
  return Make(mix_.Pick(static_cast<double>(rng_.Next() >> 11) * 0x1.0p-53));
}

}  // namespace tagcache::tagbench
