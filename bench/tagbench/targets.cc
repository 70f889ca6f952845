#include "tagbench/targets.h"

#include "tagbench/redis_target.h"
#include "tagbench/tagcache_target.h"

namespace tagcache::tagbench {

Result<std::unique_ptr<Target>> OpenTarget(const std::string& url, const Manifest& manifest,
                                           int connections, int depth,
                                           const client::CredentialFlags& credentials,
                                           int tagcache_clients) {
  if (url.rfind("redis://", 0) == 0) {
    Result<RedisAddress> a = ParseRedisUrl(url);
    if (!a.ok()) return a.status();
    std::vector<std::string> tags;
    for (const TagInfo& t : manifest.tags) {
      if (t.exists) tags.push_back(t.name);
    }
    return ConnectRedis(*a, std::move(tags));
  }
  std::string seeds = url;
  if (seeds.rfind("tagcache://", 0) == 0) seeds = seeds.substr(11);
  if (seeds.empty() || seeds.find("://") != std::string::npos) {
    return Status::BadRequest("target must be redis://HOST:PORT or tagcache://HOST:PORT, got '" +
                              url + "'");
  }
  TagcacheTargetOptions o;
  o.seeds = seeds;
  o.connections = connections;
  o.depth = depth;
  o.credentials = credentials;
  o.clients = tagcache_clients;
  return ConnectTagcache(o);
}

}  // namespace tagcache::tagbench
