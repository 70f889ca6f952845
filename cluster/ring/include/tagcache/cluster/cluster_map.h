// The cluster map and shard placement (docs/CLUSTER.md). Shards are placed
// on a consistent-hash ring built with XXH3-64 (seed kRingSeed, pinned: it
// is part of the placement every node and client must agree on): every
// node has `vnodes` points, and a shard belongs to the first `replicas`
// distinct nodes clockwise from its hash. During a move the map carries two
// rings: writes go to the owners in either, reads to the owners in the old.
//
// Values only: no I/O. Thread-safety: a Placement is immutable once built,
// so it may be shared freely between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/common/status.h"

namespace tagcache::cluster {

// Seed of every ring hash ("tgcache1" in ASCII). Never change it: placement
// would change under a running cluster.
inline constexpr uint64_t kRingSeed = 0x7467636163686531ULL;

inline constexpr int kMaxReplicas = 8;
inline constexpr int kMaxVnodes = 4096;
inline constexpr size_t kMaxNodes = 1024;
// Longest node address: a 253-byte host name, or a bracketed IPv6 address,
// and ":65535".
inline constexpr size_t kMaxAddressBytes = 261;

struct NodeInfo {
  std::string id;       // stable, chosen by the operator: 1-64 bytes of [A-Za-z0-9_.:-]
  std::string address;  // "host:port" clients and peers reach it at
};

// 1-64 bytes of [A-Za-z0-9_.:-] (the tag-name alphabet: safe in file names,
// logs and CLI arguments).
bool IsValidNodeId(std::string_view id);
// "host:port": 1-kMaxAddressBytes bytes of printable ASCII without spaces
// (no control bytes, no NUL), with a ':' in it. The port is checked when the
// address is resolved.
bool IsValidNodeAddress(std::string_view address);

struct ClusterMap {
  uint64_t epoch = 0;  // bumped by every change; 0 = no map (a standalone node)
  int shard_bits = 20;
  int replicas = 1;
  int vnodes = 128;
  std::vector<NodeInfo> nodes;  // the ring shards live on (after a move: the target)
  // A move in progress: shards go from the ring of from_nodes to the ring
  // of nodes. Writes reach the owners in both, reads the owners in from_nodes.
  bool moving = false;
  std::vector<NodeInfo> from_nodes;
};

// OK, or BAD_REQUEST naming what is wrong: no nodes, a bad or duplicate id,
// a bad or duplicate address, replicas outside [1, min(nodes, kMaxReplicas)],
// vnodes outside [1, kMaxVnodes], shard_bits outside [8, 26], one id with two
// addresses across the two rings.
Status ValidateMap(const ClusterMap& map);

// Where every shard lives under one map. Nodes are numbered by their place
// in members(): the target ring's nodes first, in map order, then nodes
// only the old ring has.
class Placement {
 public:
  // BAD_REQUEST for an invalid map (ValidateMap).
  static Result<std::shared_ptr<const Placement>> Build(ClusterMap map);

  const ClusterMap& map() const { return map_; }
  uint64_t epoch() const { return map_.epoch; }
  int shard_bits() const { return map_.shard_bits; }
  const std::vector<NodeInfo>& members() const { return members_; }
  // Index of the node with this id in members(), or -1.
  int IndexOf(std::string_view id) const;

  // The first `replicas` distinct nodes clockwise from the shard's hash on
  // the ring shards are read from (the old ring during a move), in ring order.
  std::vector<uint32_t> ReadOwners(uint64_t shard) const;
  // The owners in the target ring (after the move completes).
  std::vector<uint32_t> FinalOwners(uint64_t shard) const;
  // The owners a write must reach: the read owners, then the final owners
  // that are not read owners.
  std::vector<uint32_t> WriteOwners(uint64_t shard) const;

  bool IsReadOwner(uint32_t node, uint64_t shard) const;
  bool IsWriteOwner(uint32_t node, uint64_t shard) const;
  bool IsFinalOwner(uint32_t node, uint64_t shard) const;

 private:
  struct Point {
    uint64_t hash;
    uint32_t node;  // index into members_
  };
  Placement() = default;
  static std::vector<Point> BuildRing(const std::vector<NodeInfo>& nodes,
                                      const std::vector<NodeInfo>& members, int vnodes);
  std::vector<uint32_t> Walk(const std::vector<Point>& ring, uint64_t shard) const;

  ClusterMap map_;
  std::vector<NodeInfo> members_;
  std::vector<Point> ring_;       // target ring
  std::vector<Point> from_ring_;  // old ring; empty unless moving
};

// Position of a shard on the ring: XXH3-64 of its id as 8 little-endian
// bytes, seeded with kRingSeed.
uint64_t ShardHash(uint64_t shard);

}  // namespace tagcache::cluster
