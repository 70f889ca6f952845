// The ring and the cluster map: placement is deterministic and pinned,
// balanced, moves the minimum when a node joins, and bad maps are refused.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "tagcache/cluster/cluster_map.h"
#include "tagcache/cluster/map_codec.h"

namespace tagcache::cluster {
namespace {

ClusterMap MapOf(int nodes, int replicas, int vnodes = 128) {
  ClusterMap map;
  map.epoch = 1;
  map.replicas = replicas;
  map.vnodes = vnodes;
  for (int i = 0; i < nodes; ++i) {
    map.nodes.push_back(
        NodeInfo{"n" + std::to_string(i + 1), "127.0.0.1:" + std::to_string(7400 + i)});
  }
  return map;
}

std::shared_ptr<const Placement> Place(const ClusterMap& map) {
  auto p = Placement::Build(map);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

std::vector<std::string> OwnerIds(const Placement& p, uint64_t shard) {
  std::vector<std::string> ids;
  for (uint32_t n : p.ReadOwners(shard)) ids.push_back(p.members()[n].id);
  return ids;
}

// Every process, client and node must compute the same placement: these
// values pin the hash, the seed and the ring walk. If this test fails,
// placement changed and running clusters would disagree with new binaries.
TEST(RingTest, PlacementIsPinned) {
  EXPECT_EQ(ShardHash(0), 8939095215071408568ULL);
  auto p = Place(MapOf(3, 2));
  std::string got;
  for (uint64_t shard = 0; shard < 6; ++shard) {
    for (const std::string& id : OwnerIds(*p, shard)) got += id + ",";
    got += ";";
  }
  EXPECT_EQ(got, "n1,n2,;n3,n1,;n3,n1,;n1,n3,;n1,n3,;n2,n1,;");
}

TEST(RingTest, SameMapSamePlacementAndNodeOrderDoesNotMatter) {
  ClusterMap a = MapOf(5, 2);
  ClusterMap b = a;
  std::reverse(b.nodes.begin(), b.nodes.end());
  auto pa = Place(a), pb = Place(b);
  for (uint64_t shard = 0; shard < 2000; ++shard) {
    ASSERT_EQ(OwnerIds(*pa, shard), OwnerIds(*pb, shard)) << shard;
  }
}

TEST(RingTest, ReplicasAreDistinctNodes) {
  auto p = Place(MapOf(4, 3));
  for (uint64_t shard = 0; shard < 1000; ++shard) {
    std::vector<uint32_t> owners = p->ReadOwners(shard);
    ASSERT_EQ(owners.size(), 3u);
    ASSERT_EQ(std::set<uint32_t>(owners.begin(), owners.end()).size(), 3u);
  }
}

TEST(RingTest, FiveNodesBalanceWithinAQuarterOfTheMean) {
  for (int replicas : {1, 2}) {
    auto p = Place(MapOf(5, replicas));
    std::map<uint32_t, int> per_node;
    const int shards = 1000;
    for (uint64_t shard = 0; shard < shards; ++shard) {
      for (uint32_t n : p->ReadOwners(shard)) ++per_node[n];
    }
    ASSERT_EQ(per_node.size(), 5u);
    const double mean = shards * replicas / 5.0;
    for (auto [node, count] : per_node) {
      EXPECT_GE(count, mean * 0.75) << "replicas " << replicas << " node " << node;
      EXPECT_LE(count, mean * 1.25) << "replicas " << replicas << " node " << node;
    }
  }
}

TEST(RingTest, AddingASixthNodeMovesAboutASixthAndNothingBetweenOldNodes) {
  ClusterMap five = MapOf(5, 1);
  ClusterMap six = MapOf(6, 1);
  auto p5 = Place(five), p6 = Place(six);
  const int shards = 1000;
  int moved = 0;
  for (uint64_t shard = 0; shard < shards; ++shard) {
    const std::string before = OwnerIds(*p5, shard).front();
    const std::string after = OwnerIds(*p6, shard).front();
    if (before == after) continue;
    ++moved;
    EXPECT_EQ(after, "n6") << "shard " << shard << " moved from " << before << " to " << after;
  }
  EXPECT_GE(moved, shards / 6 * 0.6);
  EXPECT_LE(moved, shards / 6 * 1.4);
}

TEST(RingTest, MovingMapWritesToBothRingsReadsFromTheOld) {
  ClusterMap map = MapOf(4, 1);
  map.moving = true;
  map.from_nodes = MapOf(3, 1).nodes;
  auto p = Place(map);
  auto old_ring = Place(MapOf(3, 1));
  auto new_ring = Place(MapOf(4, 1));
  int differing = 0;
  for (uint64_t shard = 0; shard < 500; ++shard) {
    EXPECT_EQ(OwnerIds(*p, shard), OwnerIds(*old_ring, shard));
    std::vector<std::string> writes;
    for (uint32_t n : p->WriteOwners(shard)) writes.push_back(p->members()[n].id);
    const std::string from = OwnerIds(*old_ring, shard).front();
    const std::string to = OwnerIds(*new_ring, shard).front();
    if (from != to) {
      ++differing;
      EXPECT_EQ(writes, (std::vector<std::string>{from, to}));
    } else {
      EXPECT_EQ(writes, (std::vector<std::string>{from}));
    }
    EXPECT_EQ(p->members()[p->FinalOwners(shard).front()].id, to);
  }
  EXPECT_GT(differing, 0);
}

TEST(RingTest, BadMapsAreRefusedWithAReason) {
  struct Case {
    const char* what;
    std::function<void(ClusterMap&)> edit;
    const char* expect;
  };
  std::vector<Case> cases = {
      {"no nodes", [](ClusterMap& m) { m.nodes.clear(); }, "no nodes"},
      {"dup id", [](ClusterMap& m) { m.nodes[1].id = m.nodes[0].id; }, "appears twice"},
      {"dup address", [](ClusterMap& m) { m.nodes[1].address = m.nodes[0].address; },
       "appears twice"},
      {"bad id", [](ClusterMap& m) { m.nodes[0].id = "a b"; }, "bad node id"},
      {"bad address", [](ClusterMap& m) { m.nodes[0].address = "nohost"; }, "bad address"},
      // Found by fuzz/map_codec: a NUL passed, and the map's encoding then
      // cut the address at it (regressions/map_codec/address-with-nul).
      {"NUL in address", [](ClusterMap& m) { m.nodes[0].address = std::string("\0[::1]:7", 8); },
       "bad address '?[::1]:7'"},
      {"space in address", [](ClusterMap& m) { m.nodes[0].address = "host name:1"; },
       "bad address"},
      {"long address",
       [](ClusterMap& m) { m.nodes[0].address = std::string(kMaxAddressBytes - 1, 'h') + ":1"; },
       "at most 261 bytes"},
      {"replicas > nodes", [](ClusterMap& m) { m.replicas = 4; }, "replicas"},
      {"replicas 0", [](ClusterMap& m) { m.replicas = 0; }, "replicas"},
      {"vnodes 0", [](ClusterMap& m) { m.vnodes = 0; }, "vnodes"},
      {"shard bits", [](ClusterMap& m) { m.shard_bits = 40; }, "shard_bits"},
      {"moving without from", [](ClusterMap& m) { m.moving = true; }, "from_nodes"},
  };
  for (const Case& c : cases) {
    ClusterMap map = MapOf(3, 2);
    c.edit(map);
    Status s = ValidateMap(map);
    EXPECT_TRUE(s.IsBadRequest()) << c.what;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << c.what << ": " << s.message();
  }
}

TEST(RingTest, LongestAddressIsAccepted) {
  ClusterMap map = MapOf(3, 2);
  map.nodes[0].address = std::string(kMaxAddressBytes - 2, 'h') + ":1";
  EXPECT_TRUE(ValidateMap(map).ok());
}

TEST(MapCodecTest, FileWithABadOwnNodeIdIsRefused) {
  ClusterMap map = MapOf(3, 2);
  map.epoch = 2;
  for (std::string id : {std::string("a b"), std::string("n1\0x", 4), std::string(65, 'n')}) {
    Result<MapFile> back = DecodeMapFile(EncodeMapFile(MapFile{map, id}));
    ASSERT_FALSE(back.ok()) << id;
    EXPECT_TRUE(back.status().IsBadRequest());
    EXPECT_NE(back.status().message().find("not a valid node id"), std::string::npos);
  }
}

TEST(MapCodecTest, FileRoundTripAndDamageIsDetected) {
  ClusterMap map = MapOf(3, 2);
  map.epoch = 7;
  map.moving = true;
  map.from_nodes = MapOf(2, 2).nodes;
  std::string bytes = EncodeMapFile(MapFile{map, "n2"});
  Result<MapFile> back = DecodeMapFile(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->node_id, "n2");
  EXPECT_EQ(back->map.epoch, 7u);
  EXPECT_EQ(back->map.replicas, 2);
  EXPECT_EQ(back->map.nodes.size(), 3u);
  EXPECT_TRUE(back->map.moving);
  EXPECT_EQ(back->map.from_nodes.size(), 2u);
  EXPECT_EQ(back->map.nodes[2].address, "127.0.0.1:7402");

  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    EXPECT_FALSE(DecodeMapFile(bytes.substr(0, cut)).ok()) << cut;
  }
  for (size_t at = 0; at < bytes.size(); ++at) {
    std::string bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x20);
    EXPECT_FALSE(DecodeMapFile(bad).ok()) << at;
  }
}

}  // namespace
}  // namespace tagcache::cluster
