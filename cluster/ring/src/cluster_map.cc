#include "tagcache/cluster/cluster_map.h"

#include <xxhash.h>

#include <algorithm>
#include <set>

#include "tagcache/common/tag_name.h"

namespace tagcache::cluster {
namespace {

constexpr size_t kMaxNodeIdBytes = 64;

bool IsPrintable(char c) { return c > ' ' && c < 0x7f; }

// `text` for an error message: at most 80 bytes, other bytes than printable
// ASCII shown as '?' (it came from a client or a file).
std::string Quoted(std::string_view text) {
  std::string out = "'";
  for (char c : text.substr(0, 80)) out.push_back(IsPrintable(c) ? c : '?');
  if (text.size() > 80) out += "...";
  return out + "'";
}

Status CheckNodes(const std::vector<NodeInfo>& nodes, const char* which) {
  std::set<std::string_view> ids, addresses;
  for (const NodeInfo& n : nodes) {
    if (!IsValidNodeId(n.id)) {
      return Status::BadRequest(std::string(which) + ": bad node id " + Quoted(n.id) +
                                " (1-64 bytes of [A-Za-z0-9_.:-])");
    }
    // Addresses go into logs, files and resolvers: a NUL or control byte
    // would also not survive the map's own encoding.
    if (!IsValidNodeAddress(n.address)) {
      return Status::BadRequest(std::string(which) + ": node " + n.id + " has a bad address " +
                                Quoted(n.address) + " (expected host:port, at most " +
                                std::to_string(kMaxAddressBytes) +
                                " bytes of printable ASCII without spaces)");
    }
    if (!ids.insert(n.id).second) {
      return Status::BadRequest(std::string(which) + ": node id " + n.id + " appears twice");
    }
    if (!addresses.insert(n.address).second) {
      return Status::BadRequest(std::string(which) + ": address " + n.address + " appears twice");
    }
  }
  return Status::Ok();
}

}  // namespace

bool IsValidNodeId(std::string_view id) {
  return id.size() <= kMaxNodeIdBytes && IsValidTagName(id);
}

bool IsValidNodeAddress(std::string_view address) {
  return !address.empty() && address.size() <= kMaxAddressBytes &&
         address.find(':') != std::string_view::npos &&
         std::all_of(address.begin(), address.end(), IsPrintable);
}

uint64_t ShardHash(uint64_t shard) {
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(shard >> (8 * i));
  return XXH3_64bits_withSeed(bytes, sizeof bytes, kRingSeed);
}

Status ValidateMap(const ClusterMap& map) {
  if (map.nodes.empty()) return Status::BadRequest("the cluster map has no nodes");
  if (map.nodes.size() > kMaxNodes || map.from_nodes.size() > kMaxNodes) {
    return Status::BadRequest("the cluster map has more than " + std::to_string(kMaxNodes) +
                              " nodes");
  }
  if (map.shard_bits < 8 || map.shard_bits > 26) {
    return Status::BadRequest("shard_bits " + std::to_string(map.shard_bits) +
                              " is outside [8, 26]");
  }
  if (map.vnodes < 1 || map.vnodes > kMaxVnodes) {
    return Status::BadRequest("vnodes " + std::to_string(map.vnodes) + " is outside [1, " +
                              std::to_string(kMaxVnodes) + "]");
  }
  if (map.moving && map.from_nodes.empty()) {
    return Status::BadRequest("a moving map needs from_nodes");
  }
  const size_t smallest =
      map.moving ? std::min(map.nodes.size(), map.from_nodes.size()) : map.nodes.size();
  if (map.replicas < 1 || map.replicas > kMaxReplicas ||
      static_cast<size_t>(map.replicas) > smallest) {
    return Status::BadRequest("replicas " + std::to_string(map.replicas) + " is outside [1, " +
                              std::to_string(std::min<size_t>(smallest, kMaxReplicas)) +
                              "] for " + std::to_string(smallest) + " node(s)");
  }
  if (Status s = CheckNodes(map.nodes, "nodes"); !s.ok()) return s;
  if (!map.moving) {
    if (!map.from_nodes.empty()) {
      return Status::BadRequest("the map lists from_nodes but no move is in progress");
    }
    return Status::Ok();
  }
  if (map.from_nodes.empty()) return Status::BadRequest("a moving map needs from_nodes");
  if (Status s = CheckNodes(map.from_nodes, "from_nodes"); !s.ok()) return s;
  for (const NodeInfo& old : map.from_nodes) {
    for (const NodeInfo& n : map.nodes) {
      if ((n.id == old.id) != (n.address == old.address)) {
        return Status::BadRequest("node " + (n.id == old.id ? n.id : old.id + "/" + n.id) +
                                  ": an id and an address must stay paired across a move");
      }
    }
  }
  return Status::Ok();
}

Result<std::shared_ptr<const Placement>> Placement::Build(ClusterMap map) {
  if (Status s = ValidateMap(map); !s.ok()) return s;
  std::shared_ptr<Placement> p(new Placement());
  p->members_ = map.nodes;
  for (const NodeInfo& old : map.from_nodes) {
    if (p->IndexOf(old.id) < 0) p->members_.push_back(old);
  }
  p->ring_ = BuildRing(map.nodes, p->members_, map.vnodes);
  if (map.moving) p->from_ring_ = BuildRing(map.from_nodes, p->members_, map.vnodes);
  p->map_ = std::move(map);
  return std::shared_ptr<const Placement>(std::move(p));
}

int Placement::IndexOf(std::string_view id) const {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].id == id) return static_cast<int>(i);
  }
  return -1;
}

std::vector<Placement::Point> Placement::BuildRing(const std::vector<NodeInfo>& nodes,
                                                   const std::vector<NodeInfo>& members,
                                                   int vnodes) {
  std::vector<Point> ring;
  ring.reserve(nodes.size() * static_cast<size_t>(vnodes));
  for (const NodeInfo& n : nodes) {
    uint32_t index = 0;
    while (members[index].id != n.id) ++index;
    // A point depends only on the node's id and its number: adding or
    // removing a node moves no point of another node.
    for (int v = 0; v < vnodes; ++v) {
      std::string key = n.id + "#" + std::to_string(v);
      ring.push_back(Point{XXH3_64bits_withSeed(key.data(), key.size(), kRingSeed), index});
    }
  }
  // Equal hashes (astronomically rare) are ordered by node id so every
  // process builds the same ring.
  std::sort(ring.begin(), ring.end(), [&](const Point& a, const Point& b) {
    return a.hash != b.hash ? a.hash < b.hash : members[a.node].id < members[b.node].id;
  });
  return ring;
}

std::vector<uint32_t> Placement::Walk(const std::vector<Point>& ring, uint64_t shard) const {
  std::vector<uint32_t> owners;
  const size_t want = static_cast<size_t>(map_.replicas);
  owners.reserve(want);
  const uint64_t h = ShardHash(shard);
  auto it = std::lower_bound(ring.begin(), ring.end(), h,
                             [](const Point& p, uint64_t v) { return p.hash < v; });
  size_t at = static_cast<size_t>(it - ring.begin());
  for (size_t step = 0; step < ring.size() && owners.size() < want; ++step) {
    const uint32_t node = ring[(at + step) % ring.size()].node;
    if (std::find(owners.begin(), owners.end(), node) == owners.end()) owners.push_back(node);
  }
  return owners;
}

std::vector<uint32_t> Placement::ReadOwners(uint64_t shard) const {
  return Walk(map_.moving ? from_ring_ : ring_, shard);
}

std::vector<uint32_t> Placement::FinalOwners(uint64_t shard) const { return Walk(ring_, shard); }

std::vector<uint32_t> Placement::WriteOwners(uint64_t shard) const {
  std::vector<uint32_t> owners = ReadOwners(shard);
  if (!map_.moving) return owners;
  for (uint32_t node : Walk(ring_, shard)) {
    if (std::find(owners.begin(), owners.end(), node) == owners.end()) owners.push_back(node);
  }
  return owners;
}

bool Placement::IsReadOwner(uint32_t node, uint64_t shard) const {
  std::vector<uint32_t> owners = ReadOwners(shard);
  return std::find(owners.begin(), owners.end(), node) != owners.end();
}

bool Placement::IsWriteOwner(uint32_t node, uint64_t shard) const {
  std::vector<uint32_t> owners = WriteOwners(shard);
  return std::find(owners.begin(), owners.end(), node) != owners.end();
}

bool Placement::IsFinalOwner(uint32_t node, uint64_t shard) const {
  std::vector<uint32_t> owners = FinalOwners(shard);
  return std::find(owners.begin(), owners.end(), node) != owners.end();
}

}  // namespace tagcache::cluster
