#include "tagbench/redis_plan.h"

#include <algorithm>

namespace tagcache::tagbench {
namespace {

// Appends the commands that leave the audience of `expr` in `dest` (a key
// name) and returns it; a lone positive tag needs no command: its key is
// returned as is.
std::string PlanAudience(const Expr& expr, const std::string& prefix, RedisPlan& plan) {
  if (expr.groups.size() == 1 && expr.groups[0].size() == 1 && !expr.groups[0][0].negated) {
    return RedisTagKey(expr.groups[0][0].tag);
  }
  const std::string neg = prefix + "n";
  std::vector<std::string> group_keys;
  for (size_t g = 0; g < expr.groups.size(); ++g) {
    const std::string key = prefix + "g" + std::to_string(g);
    std::vector<std::string> positives;
    std::vector<std::string> negatives;
    for (const ExprTerm& t : expr.groups[g])
      (t.negated ? negatives : positives).push_back(RedisTagKey(t.tag));
    std::vector<std::string> cmd = {"BITOP", "AND", key};
    if (positives.empty()) {
      cmd.push_back("known");  // '!t' alone: the known users without t
    } else {
      cmd.insert(cmd.end(), positives.begin(), positives.end());
    }
    plan.commands.push_back(std::move(cmd));
    for (const std::string& n : negatives) {
      plan.commands.push_back({"BITOP", "NOT", neg, n});
      plan.commands.push_back({"BITOP", "AND", key, key, neg});
    }
    group_keys.push_back(key);
  }
  if (group_keys.size() == 1) return group_keys[0];
  const std::string dest = prefix + "a";
  std::vector<std::string> cmd = {"BITOP", "OR", dest};
  cmd.insert(cmd.end(), group_keys.begin(), group_keys.end());
  plan.commands.push_back(std::move(cmd));
  return dest;
}

}  // namespace

std::string RedisUserKey(uint64_t user) { return "user:" + std::to_string(user); }
std::string RedisTagKey(const std::string& tag) { return "tag:" + tag; }

RedisPlan PlanRedis(const Op& op, const std::vector<std::string>& all_tags, int session) {
  RedisPlan plan;
  const std::string prefix = "tmp:" + std::to_string(session) + ":";
  switch (op.kind) {
    case OpKind::kGetTags:
    case OpKind::kGetTagsHot:
    case OpKind::kGetTagsBatch:
      for (uint64_t u : op.users) {
        plan.answer_replies.push_back(plan.commands.size());
        plan.commands.push_back({"SMEMBERS", RedisUserKey(u)});
      }
      break;
    case OpKind::kHasTags: {
      std::vector<std::string> cmd = {"SMISMEMBER", RedisUserKey(op.users[0])};
      cmd.insert(cmd.end(), op.tags.begin(), op.tags.end());
      plan.answer_replies.push_back(0);
      plan.commands.push_back(std::move(cmd));
      break;
    }
    case OpKind::kCount: {
      const std::string key = PlanAudience(op.expr, prefix, plan);
      plan.answer_replies.push_back(plan.commands.size());
      plan.commands.push_back({"BITCOUNT", key});
      break;
    }
    case OpKind::kTopTags: {
      const std::string audience = PlanAudience(op.expr, prefix, plan);
      const std::string x = prefix + "x";
      for (const std::string& t : all_tags) {
        plan.commands.push_back({"BITOP", "AND", x, audience, RedisTagKey(t)});
        plan.answer_replies.push_back(plan.commands.size());
        plan.commands.push_back({"BITCOUNT", x});
        plan.top_tags.push_back(t);
      }
      break;
    }
    case OpKind::kUpdate: {
      const std::string id = std::to_string(op.users[0]);
      plan.commands.push_back({op.set ? "SADD" : "SREM", RedisUserKey(op.users[0]), op.tags[0]});
      plan.commands.push_back({"SETBIT", RedisTagKey(op.tags[0]), id, op.set ? "1" : "0"});
      if (op.set) plan.commands.push_back({"SETBIT", "known", id, "1"});
      break;
    }
  }
  return plan;
}

std::vector<std::pair<std::string, uint64_t>> RankTopTags(
    std::vector<std::pair<std::string, uint64_t>> counts, uint32_t k) {
  std::erase_if(counts, [](const auto& c) { return c.second == 0; });
  std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (counts.size() > k) counts.resize(k);
  return counts;
}

}  // namespace tagcache::tagbench
