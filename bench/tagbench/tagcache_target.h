// The tagcache Target: every op through the client library's async calls,
// `connections` pooled connections (ClientOptions::connections_per_node,
// split over `clients` client instances)
// shared by the sessions, completions handed from the client's I/O thread
// to the session's thread through a small queue.
#pragma once

#include <memory>
#include <string>

#include "tagbench/target.h"
#include "tagcache/client/credentials.h"

namespace tagcache::tagbench {

struct TagcacheTargetOptions {
  std::string seeds = "127.0.0.1:7379";  // comma-separated host:port
  int connections = 32;                  // per node. REQUIRES: >= 1
  int depth = 16;                        // requests in flight per connection
  // Client instances, each with its own I/O thread (a client runs all its
  // connections on one thread); the connections are split among them and
  // sessions take them in turn. Capped at `connections`. REQUIRES: >= 1.
  int clients = 1;
  std::chrono::milliseconds timeout{10000};
  client::CredentialFlags credentials;   // token and TLS (docs/SECURITY.md)
};

// IO_ERROR / the node's status when no seed answers.
Result<std::unique_ptr<Target>> ConnectTagcache(const TagcacheTargetOptions& options);

}  // namespace tagcache::tagbench
