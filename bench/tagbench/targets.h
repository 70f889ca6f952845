// Opens the target a `--target` URL names: "redis://HOST:PORT" for Redis,
// "tagcache://HOST:PORT[,HOST:PORT...]" or a plain "HOST:PORT" list for a
// tagcache node or cluster.
#pragma once

#include <memory>
#include <string>

#include "tagbench/dataset.h"
#include "tagcache/client/credentials.h"
#include "tagbench/target.h"

namespace tagcache::tagbench {

// `credentials` (token, TLS) and `tagcache_clients` (client instances,
// TagcacheTargetOptions::clients) apply to tagcache targets. BAD_REQUEST for a
// malformed URL or bad credentials; the connection's error otherwise.
Result<std::unique_ptr<Target>> OpenTarget(const std::string& url, const Manifest& manifest,
                                           int connections, int depth,
                                           const client::CredentialFlags& credentials = {},
                                           int tagcache_clients = 1);

}  // namespace tagcache::tagbench
