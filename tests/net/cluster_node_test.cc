// The node's side of the cluster, in process through the client library
// over 127.0.0.1: a pushed map is validated, persisted and survives a
// restart; a damaged map file stops the start; a node refuses what it does
// not own and tells a client routing with no map where to go; state
// transfers round-trip and garbage is refused without hurting the node.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/temp_dir.h"
#include "tagcache/client/client.h"
#include "tagcache/cluster/cluster_map.h"
#include "net/running_node.h"
#include "tagcache/net/node.h"

namespace tagcache::net {
namespace {

namespace fs = std::filesystem;
using TempDir = tagcache::testing::ScopedTempDir;
using std::chrono::milliseconds;

constexpr int kShardBits = 10;

NodeOptions Options(const std::string& data_dir) {
  NodeOptions o;
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  o.io_threads = 1;
  o.workers = 2;
  o.engine.query_threads = 1;
  o.engine.shard_bits = kShardBits;
  o.shutdown_grace = milliseconds(2000);
  o.data_dir = data_dir;
  o.durability.recovery_threads = 1;
  return o;
}

std::unique_ptr<Client> Connect(const std::string& address) {
  client::ClientOptions options;
  options.seeds = {address};
  options.connect_timeout = milliseconds(2000);
  options.request_timeout = milliseconds(5000);
  options.client_name = "cluster_node_test";
  auto c = Client::Connect(options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

cluster::ClusterMap MapOf(uint64_t epoch, std::vector<cluster::NodeInfo> nodes, int replicas = 1) {
  cluster::ClusterMap map;
  map.epoch = epoch;
  map.shard_bits = kShardBits;
  map.replicas = replicas;
  map.vnodes = 16;
  map.nodes = std::move(nodes);
  return map;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(ClusterNodeTest, PushedMapIsValidatedPersistedAndSurvivesARestart) {
  TempDir dir;
  auto node = MustStart(Options(dir.path()));
  ASSERT_NE(node, nullptr);
  auto c = Connect(node->address());
  ASSERT_NE(c, nullptr);
  const std::vector<cluster::NodeInfo> one = {{"a", node->address()}};

  cluster::ClusterMap wrong_bits = MapOf(2, one);
  wrong_bits.shard_bits = kShardBits + 1;
  Status s = c->SetNodeMap(node->address(), wrong_bits, "a");
  EXPECT_TRUE(s.IsBadRequest()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "shard_bits")) << s.message();

  s = c->SetNodeMap(node->address(), MapOf(2, one), "zz");
  EXPECT_TRUE(s.IsBadRequest()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "not in the map")) << s.message();

  cluster::ClusterMap too_many = MapOf(2, one, /*replicas=*/2);
  s = c->SetNodeMap(node->address(), too_many, "a");
  EXPECT_TRUE(s.IsBadRequest()) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "replicas")) << s.message();

  ASSERT_TRUE(c->SetNodeMap(node->address(), MapOf(2, one), "a").ok());
  EXPECT_TRUE(c->SetNodeMap(node->address(), MapOf(2, one), "a").ok()) << "a retry is accepted";
  s = c->SetNodeMap(node->address(), MapOf(1, one), "a");
  EXPECT_EQ(s.code(), StatusCode::kWrongNode) << s.ToString();
  cluster::ClusterMap same_epoch_other = MapOf(2, one);
  same_epoch_other.vnodes = 32;
  s = c->SetNodeMap(node->address(), same_epoch_other, "a");
  EXPECT_EQ(s.code(), StatusCode::kWrongNode) << "the same epoch with other content: " << s.ToString();

  auto got = c->GetNodeMap(node->address());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->map.epoch, 2u);
  EXPECT_EQ(got->node_id, "a");

  // The node restarts on another port with the same directory: same map.
  c.reset();
  node.reset();
  node = MustStart(Options(dir.path()));
  ASSERT_NE(node, nullptr);
  c = Connect(node->address());
  ASSERT_NE(c, nullptr);
  got = c->GetNodeMap(node->address());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->map.epoch, 2u);
  EXPECT_EQ(got->node_id, "a");
}

TEST(ClusterNodeTest, DamagedMapFileStopsTheStartNamingIt) {
  TempDir dir;
  {
    auto node = MustStart(Options(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = Connect(node->address());
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->SetNodeMap(node->address(), MapOf(1, {{"a", node->address()}}), "a").ok());
  }
  const std::string path = dir.path() + "/cluster.map";
  ASSERT_TRUE(fs::exists(path));
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  }
  auto r = RunningNode::Start(Options(dir.path()));
  ASSERT_FALSE(r.ok()) << "a node must not guess which shards it owns";
  EXPECT_EQ(r.status().code(), StatusCode::kIoError) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), "cluster.map")) << r.status().message();
}

TEST(ClusterNodeTest, NonOwnersRefuseAndAClientWithoutAMapIsRedirected) {
  TempDir dir_a, dir_b;
  auto a = MustStart(Options(dir_a.path()));
  auto b = MustStart(Options(dir_b.path()));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  // Connected before the map exists: it routes everything to `a`, epoch 0.
  auto early = Connect(a->address());
  ASSERT_NE(early, nullptr);
  ASSERT_EQ(early->cluster_map().epoch, 0u);

  const cluster::ClusterMap map = MapOf(1, {{"a", a->address()}, {"b", b->address()}});
  auto admin = Connect(a->address());
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(admin->SetNodeMap(a->address(), map, "a").ok());
  ASSERT_TRUE(admin->SetNodeMap(b->address(), map, "b").ok());
  auto placement = cluster::Placement::Build(map);
  ASSERT_TRUE(placement.ok());
  uint64_t b_shard = 0;
  while ((*placement)->members()[(*placement)->ReadOwners(b_shard).front()].id != "b") ++b_shard;
  const UserId user = b_shard << kShardBits | 7;

  // The early client writes and reads a user of b's shard through a: a
  // answers WRONG_NODE, the client fetches the map and goes to b.
  auto w = early->ApplyEvents({client::Event{user, "t", client::TagOp::kSet, 100}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(early->cluster_map().epoch, 1u);
  auto tags = early->GetTags(user);
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  ASSERT_EQ(tags->size(), 1u);
  EXPECT_EQ((*tags)[0].tag, "t");
  auto count = early->Count("t");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 1u);

  // a itself holds nothing of b's shard and refuses a merge of it.
  auto held_a = admin->NodeShards(a->address());
  ASSERT_TRUE(held_a.ok());
  EXPECT_TRUE(held_a->empty());
  auto state = admin->ExportShard(b->address(), b_shard);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  Status s = admin->MergeShard(a->address(), *state);
  EXPECT_EQ(s.code(), StatusCode::kWrongNode) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "its owners are b")) << s.message();
}

TEST(ClusterNodeTest, StateTransferRoundTripsAndGarbageIsRefused) {
  TempDir dir_a, dir_b;
  auto a = MustStart(Options(dir_a.path()));
  auto b = MustStart(Options(dir_b.path()));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto ca = Connect(a->address());
  auto cb = Connect(b->address());
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  std::vector<client::Event> events;
  for (UserId u = 0; u < 600; u += 3) events.push_back({u, "x", client::TagOp::kSet, 10});
  for (UserId u = 0; u < 600; u += 9) events.push_back({u, "x", client::TagOp::kClear, 20});
  ASSERT_TRUE(ca->ApplyEvents(events).ok());

  auto state = ca->ExportShard(a->address(), 0);
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  ASSERT_TRUE(cb->MergeShard(b->address(), *state).ok());
  ASSERT_TRUE(cb->MergeShard(b->address(), *state).ok()) << "merging twice is harmless";
  auto da = ca->NodeShardDigests(a->address());
  auto db = cb->NodeShardDigests(b->address());
  ASSERT_TRUE(da.ok() && db.ok());
  ASSERT_EQ(da->size(), 1u);
  ASSERT_EQ(db->size(), 1u);
  EXPECT_EQ((*da)[0].digest, (*db)[0].digest);
  EXPECT_NE((*da)[0].digest, 0u);
  auto count = cb->Count("x");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 200u - 67u);

  for (const std::string& bad : {std::string("garbage"), std::string(),
                                 state->substr(0, state->size() / 2)}) {
    Status s = cb->MergeShard(b->address(), bad);
    EXPECT_TRUE(s.IsBadRequest()) << "size " << bad.size() << ": " << s.ToString();
  }
  std::string flipped = *state;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x10);
  EXPECT_TRUE(cb->MergeShard(b->address(), flipped).IsBadRequest());
  EXPECT_TRUE(cb->Ping().ok()) << "the node stays up";
  auto after = cb->NodeShardDigests(b->address());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)[0].digest, (*da)[0].digest) << "refused merges changed nothing";
}

}  // namespace
}  // namespace tagcache::net
