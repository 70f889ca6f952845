// The Redis Target: the ops mapped as redis_plan.h describes, over hiredis,
// one blocking connection per session with the session's commands
// pipelined (appended, flushed, and the replies read as they arrive).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tagbench/target.h"

namespace tagcache::tagbench {

struct RedisAddress {
  std::string host;
  int port = 6379;
};
// "redis://HOST:PORT" (or "redis://HOST", port 6379). BAD_REQUEST naming the
// problem otherwise.
Result<RedisAddress> ParseRedisUrl(const std::string& url);

// Checks the server answers PING within `timeout`. `tags`: the tags top_tags
// ranks (the dataset's existing tags, by rank).
Result<std::unique_ptr<Target>> ConnectRedis(
    const RedisAddress& address, std::vector<std::string> tags,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// Parses "name:value" lines of an INFO reply; 0 when absent.
uint64_t InfoField(const std::string& info, const std::string& name);

}  // namespace tagcache::tagbench
