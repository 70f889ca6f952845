// The cluster map on the wire (protocol/schema/tagcache.capnp ClusterMap)
// and on disk (the file a node keeps in its data directory so that it
// rejoins with the map it had). The file is "TCMAP1\n", the XXH3-64 of the
// rest (8 bytes little-endian), then the Cap'n Proto flat encoding of a
// ClusterMapReply (the map and the node's own id).
#pragma once

#include <string>
#include <string_view>

#include "tagcache/cluster/cluster_map.h"
#include "tagcache/common/status.h"
#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::cluster {

void WriteMap(const ClusterMap& map, wire::ClusterMap::Builder out);
// Epoch 0 gives an empty map (no nodes) without validation; any other is
// validated (ValidateMap). BAD_REQUEST names what is wrong.
Result<ClusterMap> ReadMap(wire::ClusterMap::Reader in);

struct MapFile {
  ClusterMap map;
  std::string node_id;  // the node's own id in the map
};

std::string EncodeMapFile(const MapFile& file);
// IO_ERROR for a truncated or damaged file, BAD_REQUEST for an invalid map.
Result<MapFile> DecodeMapFile(std::string_view bytes);

}  // namespace tagcache::cluster
