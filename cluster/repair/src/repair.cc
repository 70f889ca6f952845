#include "tagcache/cluster/repair.h"

#include <map>
#include <set>
#include <vector>

namespace tagcache::cluster {

Result<RepairReport> RepairShards(client::Client& client, const std::optional<std::string>& only_node) {
  const ClusterMap map = client.cluster_map();
  if (map.epoch == 0) return Status::BadRequest("no cluster map: nothing to repair");
  if (map.moving) return Status::BadRequest("a move is in progress: finish it first (rebalance)");
  Result<std::shared_ptr<const Placement>> built = Placement::Build(map);
  if (!built.ok()) return built.status();
  const Placement& p = **built;
  int self = -1;
  if (only_node) {
    self = p.IndexOf(*only_node);
    if (self < 0) return Status::BadRequest("node " + *only_node + " is not in the map");
  }

  // Digests of every replica; a node that does not answer is skipped (its
  // shards are repaired once it is back), unless it is the node repaired.
  std::vector<std::optional<std::map<uint64_t, uint64_t>>> digests(p.members().size());
  std::set<uint64_t> shards;
  for (size_t i = 0; i < p.members().size(); ++i) {
    Result<std::vector<client::ShardDigest>> held = client.NodeShardDigests(p.members()[i].address);
    if (!held.ok()) {
      if (static_cast<int>(i) == self || !only_node) {
        return Status(held.status().code(), p.members()[i].id + ": " + held.status().message());
      }
      continue;
    }
    digests[i].emplace();
    for (const client::ShardDigest& d : *held) {
      (*digests[i])[d.shard] = d.digest;
      shards.insert(d.shard);
    }
  }

  RepairReport report;
  for (uint64_t shard : shards) {
    const std::vector<uint32_t> owners = p.ReadOwners(shard);
    if (self >= 0 &&
        std::find(owners.begin(), owners.end(), static_cast<uint32_t>(self)) == owners.end()) {
      continue;
    }
    ++report.shards_checked;
    auto digest_of = [&](uint32_t node) -> std::optional<uint64_t> {
      if (!digests[node]) return std::nullopt;
      auto it = digests[node]->find(shard);
      return it == digests[node]->end() ? 0 : it->second;
    };
    std::set<uint64_t> seen;
    for (uint32_t o : owners) {
      if (std::optional<uint64_t> d = digest_of(o)) seen.insert(*d);
    }
    if (seen.size() <= 1) continue;
    ++report.shards_repaired;
    // Sources: every answering replica with state that differs from the
    // target's; targets: all replicas, or just `self`.
    for (uint32_t from : owners) {
      std::optional<uint64_t> from_digest = digest_of(from);
      if (!from_digest || *from_digest == 0) continue;
      std::vector<uint32_t> into;
      for (uint32_t to : owners) {
        if (to == from || (self >= 0 && to != static_cast<uint32_t>(self))) continue;
        std::optional<uint64_t> to_digest = digest_of(to);
        if (!to_digest || *to_digest == *from_digest) continue;
        into.push_back(to);
      }
      if (into.empty()) continue;
      Result<std::string> state = client.ExportShard(p.members()[from].address, shard);
      if (!state.ok()) {
        return Status(state.status().code(), "exporting shard " + std::to_string(shard) + " from " +
                                                 p.members()[from].id + ": " +
                                                 state.status().message());
      }
      for (uint32_t to : into) {
        if (Status s = client.MergeShard(p.members()[to].address, *state); !s.ok()) {
          return Status(s.code(), "merging shard " + std::to_string(shard) + " into " +
                                      p.members()[to].id + ": " + s.message());
        }
        ++report.merges;
        report.bytes += state->size();
      }
    }
  }
  return report;
}

}  // namespace tagcache::cluster
