// How tagbench maps each Op onto Redis, the way a team without tagcache
// would build it: a SET of tag names per user (key user:<id>) for point
// lookups, a bitmap per tag (key tag:<name>, bit i = user i) plus a bitmap of
// known users (key `known`) for audiences.
//
//   get_tags         SMEMBERS user:<id>
//   get_tags_batch   one SMEMBERS per user, pipelined
//   has_tags         SMISMEMBER user:<id> <tags...>
//   count            per '|'-group: BITOP AND g <positive tags> (or a copy of
//                    `known` for a group of only negated terms), then per
//                    negated tag BITOP NOT n tag + BITOP AND g g n; BITOP OR of
//                    the groups; BITCOUNT. A lone tag is just BITCOUNT tag.
//   top_tags         the audience as above into a temp key, then for every
//                    tag BITOP AND x audience tag + BITCOUNT x; sorted here
//   update           SADD|SREM user:<id> tag; SETBIT tag:<t> id 1|0; on a set
//                    also SETBIT known id 1
// Temp keys are per session (tmp:<session>:...): a connection executes its
// pipelined commands in order, so its ops never see each other's temps.
// Pure functions, testable without a server.
#pragma once

#include <string>
#include <vector>

#include "tagbench/op.h"

namespace tagcache::tagbench {

struct RedisPlan {
  std::vector<std::vector<std::string>> commands;
  // Indices (into commands) of the replies that carry the answer: the
  // SMEMBERS, SMISMEMBER or final BITCOUNT replies; for top_tags one BITCOUNT
  // per tag, in the order of `top_tags`.
  std::vector<size_t> answer_replies;
  std::vector<std::string> top_tags;
};

std::string RedisUserKey(uint64_t user);
std::string RedisTagKey(const std::string& tag);

// REQUIRES: `op` well-formed (as OpGenerator makes them). `all_tags`: the
// tags top_tags ranks (the dataset's existing tags). `session`: temp key
// namespace.
RedisPlan PlanRedis(const Op& op, const std::vector<std::string>& all_tags, int session);

// top_tags: the k largest non-zero counts, by count descending then name
// ascending (tagcache's order).
std::vector<std::pair<std::string, uint64_t>> RankTopTags(
    std::vector<std::pair<std::string, uint64_t>> counts, uint32_t k);

}  // namespace tagcache::tagbench
