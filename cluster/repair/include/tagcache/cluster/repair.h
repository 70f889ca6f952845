// Anti-entropy repair (docs/CLUSTER.md): compares each shard's digest
// across its replicas and merges differing copies, so a replica that missed
// writes (it was down, or a write met its concern without it) converges.
// Merges follow the LWW merge of two states: repeatable, order-free, and
// logged on the receiving node before they are applied.
//
// Used by `tagctl cluster repair` (every shard, both ways) and by a node's
// background pass (`tagcache-server --repair-interval-s`: the shards it
// owns, pulled from its peers). Thread-safety: the functions are reentrant;
// the Client is thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"

namespace tagcache::cluster {

struct RepairReport {
  uint64_t shards_checked = 0;
  uint64_t shards_repaired = 0;  // shards whose replicas disagreed
  uint64_t merges = 0;           // states merged into a replica
  uint64_t bytes = 0;            // state bytes moved
};

// Repairs every shard of `client`'s current (settled) map. With `only_node`
// set, repairs just the shards that node owns, by pulling each differing
// peer copy into it (each node running this converges its own shards);
// otherwise every differing copy is merged into every other replica.
// BAD_REQUEST without a map or during a move; the first node error
// otherwise, naming the node (shards handled before it stay repaired).
Result<RepairReport> RepairShards(client::Client& client,
                                  const std::optional<std::string>& only_node = std::nullopt);

}  // namespace tagcache::cluster
