#include "tagcache/cluster/map_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <xxhash.h>

#include <cstring>
#include <vector>

namespace tagcache::cluster {
namespace {

constexpr std::string_view kMagic = "TCMAP1\n";
constexpr size_t kHeaderBytes = kMagic.size() + 8;
// A map of kMaxNodes nodes with long addresses stays far below this.
constexpr size_t kMaxFileBytes = size_t{4} << 20;

std::string_view View(capnp::Text::Reader t) { return {t.begin(), t.size()}; }
// Exactly `s`'s bytes (not up to a first NUL).
capnp::Text::Reader TextOf(const std::string& s) { return {s.data(), s.size()}; }

void WriteNodes(const std::vector<NodeInfo>& nodes,
                capnp::List<wire::ClusterNode>::Builder out) {
  for (unsigned i = 0; i < nodes.size(); ++i) {
    out[i].setId(TextOf(nodes[i].id));
    out[i].setAddress(TextOf(nodes[i].address));
  }
}

std::vector<NodeInfo> ReadNodes(capnp::List<wire::ClusterNode>::Reader in) {
  std::vector<NodeInfo> nodes;
  nodes.reserve(in.size());
  for (auto n : in) nodes.push_back(NodeInfo{std::string(View(n.getId())),
                                             std::string(View(n.getAddress()))});
  return nodes;
}

}  // namespace

void WriteMap(const ClusterMap& map, wire::ClusterMap::Builder out) {
  out.setEpoch(map.epoch);
  out.setShardBits(static_cast<uint8_t>(map.shard_bits));
  out.setReplicas(static_cast<uint8_t>(map.replicas));
  out.setVnodes(static_cast<uint16_t>(map.vnodes));
  WriteNodes(map.nodes, out.initNodes(static_cast<unsigned>(map.nodes.size())));
  out.setMoving(map.moving);
  WriteNodes(map.from_nodes, out.initFromNodes(static_cast<unsigned>(map.from_nodes.size())));
}

Result<ClusterMap> ReadMap(wire::ClusterMap::Reader in) {
  ClusterMap map;
  map.epoch = in.getEpoch();
  if (map.epoch == 0) return map;
  map.shard_bits = in.getShardBits();
  map.replicas = in.getReplicas();
  map.vnodes = in.getVnodes();
  if (in.getNodes().size() > kMaxNodes || in.getFromNodes().size() > kMaxNodes) {
    return Status::BadRequest("the cluster map has more than " + std::to_string(kMaxNodes) +
                              " nodes");
  }
  map.nodes = ReadNodes(in.getNodes());
  map.moving = in.getMoving();
  map.from_nodes = ReadNodes(in.getFromNodes());
  if (Status s = ValidateMap(map); !s.ok()) return s;
  return map;
}

std::string EncodeMapFile(const MapFile& file) {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<wire::Response::ClusterMapReply>();
  WriteMap(file.map, root.initMap());
  root.setNodeId(TextOf(file.node_id));
  kj::Array<capnp::word> words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  std::string out(kMagic);
  const uint64_t sum = XXH3_64bits(bytes.begin(), bytes.size());
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(sum >> (8 * i)));
  out.append(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  return out;
}

Result<MapFile> DecodeMapFile(std::string_view bytes) {
  if (bytes.size() < kHeaderBytes || bytes.substr(0, kMagic.size()) != kMagic) {
    return Status::IoError("cluster map file: bad magic or truncated header");
  }
  if (bytes.size() > kMaxFileBytes) return Status::IoError("cluster map file: too large");
  std::string_view body = bytes.substr(kHeaderBytes);
  uint64_t stored = 0;
  for (int i = 0; i < 8; ++i) {
    stored |= uint64_t{static_cast<uint8_t>(bytes[kMagic.size() + i])} << (8 * i);
  }
  if (XXH3_64bits(body.data(), body.size()) != stored) {
    return Status::IoError("cluster map file: checksum mismatch");
  }
  if (body.empty() || body.size() % sizeof(capnp::word) != 0) {
    return Status::IoError("cluster map file: body is not whole words");
  }
  // Cap'n Proto needs 8-aligned words: copy out of the string.
  std::vector<capnp::word> words(body.size() / sizeof(capnp::word));
  std::memcpy(words.data(), body.data(), body.size());
  try {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    auto root = reader.getRoot<wire::Response::ClusterMapReply>();
    Result<ClusterMap> map = ReadMap(root.getMap());
    if (!map.ok()) return map.status();
    std::string node_id(View(root.getNodeId()));
    if (!IsValidNodeId(node_id)) {
      return Status::BadRequest("cluster map file: the node's own id is not a valid node id");
    }
    return MapFile{std::move(*map), std::move(node_id)};
  } catch (const kj::Exception& e) {
    return Status::IoError(std::string("cluster map file: malformed: ") +
                           e.getDescription().cStr());
  }
}

}  // namespace tagcache::cluster
