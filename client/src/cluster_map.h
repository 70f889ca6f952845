// The cluster map as the client sees it: which node serves a shard, and
// which nodes an audience query must fan out to. The client routes every
// keyed request through it. For now there is one implementation, OneNodeMap
// (the whole cluster is one node); the cluster issue adds the consistent-hash
// ring as a second one, with epochs and refresh on WRONG_NODE.
//
// A map is immutable once built; the client swaps in a new one to refresh.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace tagcache::client {

class ClusterMap {
 public:
  virtual ~ClusterMap() = default;

  // log2 of the users per shard: shard = user >> shard_bits.
  virtual int shard_bits() const = 0;
  // Nodes are numbered 0..node_count()-1. Always >= 1.
  virtual size_t node_count() const = 0;
  // "host:port" of a node. REQUIRES: node < node_count().
  virtual const std::string& node_address(size_t node) const = 0;
  // The node a request for `shard` goes to (the first replica, once there
  // are replicas).
  virtual size_t NodeForShard(uint64_t shard) const = 0;

  size_t NodeForUser(uint64_t user) const {
    return NodeForShard(user >> static_cast<unsigned>(shard_bits()));
  }
};

// Every shard on one node.
class OneNodeMap final : public ClusterMap {
 public:
  OneNodeMap(std::string address, int shard_bits)
      : address_(std::move(address)), shard_bits_(shard_bits) {}

  int shard_bits() const override { return shard_bits_; }
  size_t node_count() const override { return 1; }
  const std::string& node_address(size_t /*node*/) const override { return address_; }
  size_t NodeForShard(uint64_t /*shard*/) const override { return 0; }

 private:
  std::string address_;
  int shard_bits_;
};

}  // namespace tagcache::client
