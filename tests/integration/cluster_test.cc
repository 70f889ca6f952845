// The cluster against real processes: several tagcache-server nodes made one
// cluster by `tagctl cluster init`, driven through the client library (which
// routes by the cluster map) and through `tagctl cluster ...` run as a child
// process. Every node runs with --shard-bits 8, so that a few tens of
// thousands of users span hundreds of shards and every node owns some.
//
// - a 3-node R=2 cluster answers every query like one standalone node;
// - reads survive a killed replica, writes keep succeeding at quorum, and
//   `cluster repair` brings the restarted replica level with its peers;
// - add-node and remove-node move shards live under concurrent writes and
//   reads, losing no acknowledged write and failing no read;
// - a client holding an old map is redirected (WRONG_NODE) and catches up;
// - `cluster init` refuses bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <roaring/roaring.hh>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "process.h"
#include "server_fixture.h"
#include "tagcache/client/client.h"
#include "tagcache/cluster/cluster_map.h"

namespace tagcache::testing {
namespace {

namespace fs = std::filesystem;

using client::Client;
using client::Event;
using client::TagOp;
using client::UserId;
using Json = nlohmann::json;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

constexpr int kShardBits = 8;

double SecondsSince(Steady::time_point start) {
  return std::chrono::duration<double>(Steady::now() - start).count();
}

// ---- Data ------------------------------------------------------------------

// The base data of the fault and move tests: users 0..kBaseUsers-1 with
//   a: u % 3 == 0 (ts 1000), cleared again for u % 6 == 0 (ts 2000);
//   b: u % 5 == 0 (ts 1000); c: u % 7 == 0 (ts 1000).
constexpr UserId kBaseUsers = 20000;

std::vector<Event> BaseEvents() {
  std::vector<Event> events;
  for (UserId u = 0; u < kBaseUsers; ++u) {
    if (u % 3 == 0) events.push_back(Event{u, "a", TagOp::kSet, 1000});
    if (u % 5 == 0) events.push_back(Event{u, "b", TagOp::kSet, 1000});
    if (u % 7 == 0) events.push_back(Event{u, "c", TagOp::kSet, 1000});
    if (u % 6 == 0) events.push_back(Event{u, "a", TagOp::kClear, 2000});
  }
  return events;
}

std::vector<std::string> BaseTagsOf(UserId u) {
  std::vector<std::string> tags;
  if (u < kBaseUsers) {
    if (u % 3 == 0 && u % 6 != 0) tags.push_back("a");
    if (u % 5 == 0) tags.push_back("b");
    if (u % 7 == 0) tags.push_back("c");
  }
  return tags;
}

uint64_t BaseCount(const std::string& tag) {
  uint64_t n = 0;
  for (UserId u = 0; u < kBaseUsers; ++u) {
    const auto tags = BaseTagsOf(u);
    n += std::count(tags.begin(), tags.end(), tag);
  }
  return n;
}

std::vector<std::string> Names(const std::vector<client::TagHit>& hits) {
  std::vector<std::string> names;
  for (const auto& hit : hits) names.push_back(hit.tag);
  std::sort(names.begin(), names.end());
  return names;
}

// "tag@ts" sorted: a user's whole state, ts included.
std::vector<std::string> NamesWithTs(const std::vector<client::TagHit>& hits) {
  std::vector<std::string> names;
  for (const auto& hit : hits) names.push_back(hit.tag + "@" + std::to_string(hit.ts));
  std::sort(names.begin(), names.end());
  return names;
}

// Applies `events` in batches; every batch must succeed.
void ApplyAll(Client& c, const std::vector<Event>& events, size_t batch = 2000) {
  for (size_t i = 0; i < events.size(); i += batch) {
    std::vector<Event> part(events.begin() + i,
                            events.begin() + std::min(events.size(), i + batch));
    auto r = c.ApplyEvents(part);
    ASSERT_TRUE(r.ok()) << "batch at " << i << ": " << r.status().ToString();
  }
}

// ---- Processes ---------------------------------------------------------------

struct Node {
  std::string id;
  std::string data_dir;
  std::unique_ptr<ServerProcess> process;
  uint16_t port = 0;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  std::string spec() const { return id + "=" + address(); }
};

class ClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (auto& [id, node] : nodes_) {
      if (!node.process) continue;
      const std::string log = node.process->Log();
      EXPECT_EQ(node.process->Terminate(), 0) << id << " log:\n" << log;
      node.process.reset();
    }
  }

  // Starts a node on a free port (or `port`, to restart one) with its own
  // data directory.
  Node& StartNode(const std::string& id, uint16_t port = 0,
                  const std::vector<std::string>& extra_args = {}) {
    Node& node = nodes_[id];
    node.id = id;
    if (node.data_dir.empty()) node.data_dir = dir_.path() + "/" + id;
    std::vector<std::string> args = {"--shard-bits", std::to_string(kShardBits)};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    node.process = ServerProcess::Start(ServerBinary(), dir_.path(), port, args, node.data_dir);
    EXPECT_NE(node.process, nullptr) << "cannot start " << id;
    if (node.process) node.port = node.process->port();
    return node;
  }

  Node& node(const std::string& id) { return nodes_.at(id); }

  RunResult Tagctl(const std::string& seed, std::vector<std::string> args,
                   milliseconds limit = milliseconds(60000)) {
    args.insert(args.begin(), {"--seeds", seed});
    return RunProgram(TagctlBinary(), args, limit);
  }

  // Runs tagctl with --json; it must exit 0 and print one JSON document.
  Json TagctlJson(const std::string& seed, std::vector<std::string> args,
                  milliseconds limit = milliseconds(60000)) {
    args.push_back("--json");
    RunResult run = Tagctl(seed, args, limit);
    EXPECT_EQ(run.exit_code, 0) << "tagctl " << ::testing::PrintToString(args)
                                << "\nstdout: " << run.out << "\nstderr: " << run.err;
    Json doc = Json::parse(run.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(doc.is_discarded()) << "not JSON: " << run.out;
    return doc;
  }

  // Starts `ids` and makes them one cluster with `replicas` copies of every shard.
  void StartCluster(const std::vector<std::string>& ids, int replicas,
                    const std::vector<std::string>& extra_args = {}) {
    std::string specs;
    for (const std::string& id : ids) {
      Node& n = StartNode(id, 0, extra_args);
      ASSERT_NE(n.process, nullptr);
      specs += (specs.empty() ? "" : ",") + n.spec();
    }
    Json init = TagctlJson(node(ids[0]).address(), {"cluster", "init", "--nodes", specs,
                                                    "--replicas", std::to_string(replicas)});
    EXPECT_EQ(init["epoch"], 1) << init;
    EXPECT_EQ(init["nodes"], ids.size()) << init;
    EXPECT_EQ(init["replicas"], replicas) << init;
    EXPECT_EQ(init["shard_bits"], kShardBits) << init;
  }

  client::ClientOptions Options(std::vector<std::string> seeds) const {
    client::ClientOptions options;
    options.seeds = std::move(seeds);
    options.connect_timeout = milliseconds(2000);
    options.request_timeout = milliseconds(10000);
    options.reconnect_backoff_min = milliseconds(20);
    options.reconnect_backoff_max = milliseconds(500);
    options.client_name = "cluster-integration-test";
    return options;
  }

  std::unique_ptr<Client> Connect(std::vector<std::string> seeds) {
    auto c = Client::Connect(Options(std::move(seeds)));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // Every shard's replicas hold the same state: for each shard any node
  // holds, the digests of its read owners under `map` are equal (a missing
  // shard counts as digest 0). Returns the number of shards checked.
  size_t ExpectReplicasAgree(Client& c, const cluster::ClusterMap& map) {
    auto placement = cluster::Placement::Build(map);
    EXPECT_TRUE(placement.ok()) << placement.status().ToString();
    if (!placement.ok()) return 0;
    const auto& p = **placement;
    std::vector<std::map<uint64_t, uint64_t>> digests(p.members().size());
    std::set<uint64_t> shards;
    for (size_t i = 0; i < p.members().size(); ++i) {
      auto held = c.NodeShardDigests(p.members()[i].address);
      EXPECT_TRUE(held.ok()) << p.members()[i].id << ": " << held.status().ToString();
      if (!held.ok()) return 0;
      for (const auto& d : *held) {
        digests[i][d.shard] = d.digest;
        shards.insert(d.shard);
      }
    }
    size_t differing = 0;
    for (uint64_t shard : shards) {
      const std::vector<uint32_t> owners = p.ReadOwners(shard);
      EXPECT_EQ(owners.size(), static_cast<size_t>(map.replicas));
      std::set<uint64_t> seen;
      std::string detail;
      for (uint32_t o : owners) {
        auto it = digests[o].find(shard);
        const uint64_t d = it == digests[o].end() ? 0 : it->second;
        seen.insert(d);
        detail += " " + p.members()[o].id + "=" + std::to_string(d);
      }
      if (seen.size() != 1) {
        ++differing;
        if (differing <= 5) ADD_FAILURE() << "shard " << shard << " differs:" << detail;
      }
    }
    EXPECT_EQ(differing, 0u) << "of " << shards.size() << " shards";
    return shards.size();
  }

  // Test 3's body: moves under concurrent writes and reads (defined below).
  void MoveUnderLoad(bool strict);

  TempDir dir_;
  std::map<std::string, Node> nodes_;
};

// ---- 1. A cluster answers like one node ---------------------------------------

// Portable Roaring bytes of the offsets (within their shard) of `users`.
std::string PortableOffsets(const std::vector<UserId>& users) {
  Roaring r;
  for (UserId u : users) r.add(static_cast<uint32_t>(u & ((1u << kShardBits) - 1)));
  r.runOptimize();
  std::string bytes(r.getSizeInBytes(/*portable=*/true), '\0');
  r.write(bytes.data(), /*portable=*/true);
  return bytes;
}

// The richer data of the equivalence test, written identically to both.
void WriteEquivalenceData(Client& c) {
  constexpr UserId kUsers = 40000;
  std::vector<Event> events;
  for (UserId u = 0; u < kUsers; ++u) {
    if (u % 2 == 0) events.push_back(Event{u, "even", TagOp::kSet, 1000 + u % 97});
    if (u % 3 == 0) events.push_back(Event{u, "triple", TagOp::kSet, 1000});
    if (u % 11 == 0) events.push_back(Event{u, "rare", TagOp::kSet, 1500});
    // Clears: newer ones win, older ones lose.
    if (u % 4 == 0) events.push_back(Event{u, "even", TagOp::kClear, 2000});
    if (u % 9 == 0) events.push_back(Event{u, "triple", TagOp::kClear, 500});
    // A user known only through a clear.
    if (u % 1000 == 999) events.push_back(Event{u, "rare", TagOp::kClear, 1600});
  }
  ApplyAll(c, events);
  // Later writes that lose to what is there and some that win.
  events.clear();
  for (UserId u = 0; u < kUsers; u += 13) {
    events.push_back(Event{u, "even", TagOp::kSet, 1900});    // loses to the clear at 2000 if any
    events.push_back(Event{u, "triple", TagOp::kClear, 3000});  // wins
  }
  ApplyAll(c, events);

  // A snapshot of "snap" as of ts 5000: members u % 4 == 0 in shards 0..19,
  // every other shard empty as of 5000. Sets before it lose; after it win.
  std::vector<Event> before;
  for (UserId u = 0; u < kUsers; u += 5) before.push_back(Event{u, "snap", TagOp::kSet, 4000});
  ApplyAll(c, before);
  std::vector<uint64_t> shards;
  for (uint64_t shard = 0; shard < 20; ++shard) {
    std::vector<UserId> members;
    for (UserId u = shard << kShardBits; u < (shard + 1) << kShardBits; u += 4) members.push_back(u);
    auto outcome = c.LoadSnapshot("snap", 5000, shard, PortableOffsets(members));
    ASSERT_TRUE(outcome.ok()) << "shard " << shard << ": " << outcome.status().ToString();
    EXPECT_EQ(*outcome, client::SnapshotOutcome::kApplied);
    shards.push_back(shard);
  }
  auto commit = c.CommitSnapshot("snap", 5000, shards);
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  EXPECT_TRUE(commit->missing_shards.empty());
  std::vector<Event> after;
  for (UserId u = 1; u < kUsers; u += 7) {
    after.push_back(Event{u, "snap", TagOp::kSet, 6000});      // wins
    after.push_back(Event{u + 1, "snap", TagOp::kSet, 4500});  // older than the snapshot: ignored
  }
  ApplyAll(c, after);
}

std::vector<UserId> AllPages(Client& c, const std::string& expr, uint32_t limit) {
  std::vector<UserId> all;
  UserId cursor = 0;
  for (int page = 0; page < 100000; ++page) {
    auto r = c.Audience(expr, cursor, limit);
    EXPECT_TRUE(r.ok()) << expr << ": " << r.status().ToString();
    if (!r.ok()) break;
    EXPECT_LE(r->users.size(), limit);
    all.insert(all.end(), r->users.begin(), r->users.end());
    if (!r->next_cursor) break;
    cursor = *r->next_cursor;
  }
  return all;
}

// The audience as the users of the shard bitmaps, ascending.
std::vector<UserId> BitmapUsers(Client& c, const std::string& expr) {
  auto r = c.AudienceBitmaps(expr);
  EXPECT_TRUE(r.ok()) << expr << ": " << r.status().ToString();
  std::vector<UserId> users;
  if (!r.ok()) return users;
  std::set<uint64_t> shards;
  for (const auto& sb : *r) {
    EXPECT_TRUE(shards.insert(sb.shard).second) << expr << ": shard " << sb.shard << " twice";
    Roaring bm = Roaring::readSafe(sb.portable.data(), sb.portable.size());
    EXPECT_EQ(bm.cardinality(), sb.cardinality) << expr << " shard " << sb.shard;
    for (uint32_t off : bm) users.push_back((sb.shard << kShardBits) | off);
  }
  std::sort(users.begin(), users.end());
  return users;
}

TEST_F(ClusterTest, ThreeNodesAnswerLikeOneNode) {
  const auto start = Steady::now();
  Node& solo = StartNode("solo");
  ASSERT_NE(solo.process, nullptr);
  StartCluster({"n1", "n2", "n3"}, 2);
  if (HasFatalFailure()) return;

  auto one = Connect({solo.address()});
  auto three = Connect({node("n1").address(), node("n2").address()});
  ASSERT_NE(one, nullptr);
  ASSERT_NE(three, nullptr);
  EXPECT_EQ(one->cluster_map().epoch, 0u);
  EXPECT_EQ(three->cluster_map().epoch, 1u);
  EXPECT_EQ(three->nodes().size(), 3u);
  EXPECT_EQ(three->shard_bits(), kShardBits);

  WriteEquivalenceData(*one);
  if (HasFatalFailure()) return;
  WriteEquivalenceData(*three);
  if (HasFatalFailure()) return;

  const std::vector<std::string> exprs = {
      "even",         "triple",          "rare",           "snap",
      "even & triple", "even | rare",    "triple - even",  "!even",
      "!snap & rare", "(even | triple) - (rare | snap)", "!(even | triple | rare | snap)"};
  for (const std::string& expr : exprs) {
    auto a = one->Count(expr);
    auto b = three->Count(expr);
    ASSERT_TRUE(a.ok()) << expr << ": " << a.status().ToString();
    ASSERT_TRUE(b.ok()) << expr << ": " << b.status().ToString();
    EXPECT_EQ(*a, *b) << expr;
    EXPECT_GT(*a, 0u) << expr << ": the data should make every expression non-empty";

    const std::vector<UserId> pages_one = AllPages(*one, expr, 997);
    const std::vector<UserId> pages_three = AllPages(*three, expr, 997);
    EXPECT_EQ(pages_one.size(), *a) << expr;
    EXPECT_TRUE(pages_one == pages_three) << expr << ": " << pages_one.size() << " vs "
                                          << pages_three.size() << " users";
    EXPECT_TRUE(std::is_sorted(pages_three.begin(), pages_three.end())) << expr;
    EXPECT_TRUE(std::adjacent_find(pages_three.begin(), pages_three.end()) == pages_three.end())
        << expr << ": a user twice across pages";

    const std::vector<UserId> bitmaps_three = BitmapUsers(*three, expr);
    EXPECT_TRUE(bitmaps_three == pages_one) << expr << ": bitmaps " << bitmaps_three.size()
                                            << " users vs " << pages_one.size();

    auto top_one = one->TopTags(expr, 2);
    auto top_three = three->TopTags(expr, 2);
    ASSERT_TRUE(top_one.ok()) << top_one.status().ToString();
    ASSERT_TRUE(top_three.ok()) << top_three.status().ToString();
    ASSERT_EQ(top_one->size(), top_three->size()) << expr;
    for (size_t i = 0; i < top_one->size(); ++i) {
      EXPECT_EQ((*top_one)[i].tag, (*top_three)[i].tag) << expr << " #" << i;
      EXPECT_EQ((*top_one)[i].count, (*top_three)[i].count) << expr << " #" << i;
    }
  }

  // Point lookups, with ts, one by one and in one batch spanning every node.
  std::vector<UserId> sample;
  for (UserId u = 0; u < 41000; u += 173) sample.push_back(u);
  sample.push_back(999);
  sample.push_back(123456789);  // unknown
  for (UserId u : sample) {
    auto a = one->GetTags(u, true);
    auto b = three->GetTags(u, true);
    ASSERT_TRUE(a.ok() && b.ok()) << u;
    EXPECT_EQ(NamesWithTs(*a), NamesWithTs(*b)) << "user " << u;
  }
  auto batch_one = one->GetTagsBatch(sample, true);
  auto batch_three = three->GetTagsBatch(sample, true);
  ASSERT_TRUE(batch_one.ok()) << batch_one.status().ToString();
  ASSERT_TRUE(batch_three.ok()) << batch_three.status().ToString();
  ASSERT_EQ(batch_three->size(), sample.size());
  for (size_t i = 0; i < sample.size(); ++i) {
    EXPECT_EQ((*batch_three)[i].user, sample[i]);
    EXPECT_EQ(NamesWithTs((*batch_one)[i].tags), NamesWithTs((*batch_three)[i].tags))
        << "user " << sample[i];
  }
  auto has = three->HasTags(40, {"even", "triple", "snap"});
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_EQ(*has, *one->HasTags(40, {"even", "triple", "snap"}));

  // The data lives on every node, each shard on exactly 2 of them.
  auto map = three->cluster_map();
  EXPECT_GT(ExpectReplicasAgree(*three, map), 100u);
  auto stats = three->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 3u);
  for (const auto& s : *stats) EXPECT_GT(s.assignments, 0u) << s.node;
  std::printf("[ timing ] ThreeNodesAnswerLikeOneNode: %.2f s\n", SecondsSince(start));
}

// ---- 2. A killed replica ----------------------------------------------------

TEST_F(ClusterTest, ReadsSurviveAKilledReplica) {
  const auto start = Steady::now();
  StartCluster({"n1", "n2", "n3"}, 2);
  if (HasFatalFailure()) return;
  auto c = Connect({node("n1").address(), node("n2").address(), node("n3").address()});
  ASSERT_NE(c, nullptr);
  ApplyAll(*c, BaseEvents());
  if (HasFatalFailure()) return;
  const uint64_t count_a = BaseCount("a"), count_b = BaseCount("b");

  // n2 dies without a word.
  const uint16_t n2_port = node("n2").port;
  node("n2").process->Kill();
  node("n2").process.reset();

  int failed_reads = 0, wrong_reads = 0;
  std::string first_error;
  const auto reads_start = Steady::now();
  constexpr int kReads = 300;
  for (int i = 0; i < kReads; ++i) {
    const UserId u = (static_cast<UserId>(i) * 7919) % kBaseUsers;
    auto tags = c->GetTags(u);
    if (!tags.ok()) {
      ++failed_reads;
      if (first_error.empty()) first_error = "GetTags: " + tags.status().ToString();
    } else if (Names(*tags) != BaseTagsOf(u)) {
      ++wrong_reads;
    }
    auto n = c->Count(i % 2 ? "a" : "b");
    if (!n.ok()) {
      ++failed_reads;
      if (first_error.empty()) first_error = "Count: " + n.status().ToString();
    } else if (*n != (i % 2 ? count_a : count_b)) {
      ++wrong_reads;
      if (first_error.empty()) first_error = "Count = " + std::to_string(*n);
    }
  }
  const double reads_s = SecondsSince(reads_start);
  EXPECT_EQ(failed_reads, 0) << first_error;
  EXPECT_EQ(wrong_reads, 0) << first_error;
  std::printf("[ info   ] %d reads with n2 down in %.2f s: %d failed, %d wrong\n", 2 * kReads,
              reads_s, failed_reads, wrong_reads);

  // Writes at the default quorum (1 of 2) keep succeeding: new tag "d" on
  // users spread over every shard, and a clear of "b".
  std::vector<Event> while_down;
  for (UserId u = 1; u < kBaseUsers; u += 10) while_down.push_back(Event{u, "d", TagOp::kSet, 3000});
  for (UserId u = 0; u < kBaseUsers; u += 25) while_down.push_back(Event{u, "b", TagOp::kClear, 3000});
  int failed_writes = 0;
  for (size_t i = 0; i < while_down.size(); i += 50) {
    std::vector<Event> part(while_down.begin() + i,
                            while_down.begin() + std::min(while_down.size(), i + 50));
    auto r = c->ApplyEvents(part);
    if (!r.ok()) {
      ++failed_writes;
      ADD_FAILURE() << "write with n2 down: " << r.status().ToString();
    }
  }
  EXPECT_EQ(failed_writes, 0);
  const uint64_t count_d = (kBaseUsers - 1 + 9) / 10;
  uint64_t count_b_after = 0;
  for (UserId u = 0; u < kBaseUsers; u += 5) count_b_after += u % 25 != 0;
  auto d = c->Count("d");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, count_d);

  // n2 comes back on the same port and data directory, behind on every
  // shard it owns; repair merges the replicas.
  ASSERT_NE(StartNode("n2", n2_port).process, nullptr);
  const cluster::ClusterMap map = c->cluster_map();
  {
    // The client's connection to n2 reconnects with backoff: retry, bounded
    // (10 s, 500 tries), as ClientIntegrationTest.ReconnectsAfterServerRestart does.
    Result<client::NodeMap> back = Status::IoError("not asked");
    const auto end = Steady::now() + std::chrono::seconds(10);
    for (int i = 0; i < 500 && !back.ok() && Steady::now() < end; ++i) {
      back = c->GetNodeMap(node("n2").address(), client::CallOptions{milliseconds(1000)});
      if (!back.ok()) std::this_thread::sleep_for(milliseconds(20));
    }
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->map.epoch, map.epoch) << "the map survives a restart";
    EXPECT_EQ(back->node_id, "n2");
  }
  const auto repair_start = Steady::now();
  RunResult repair = Tagctl(node("n1").address(), {"cluster", "repair"});
  ASSERT_EQ(repair.exit_code, 0) << repair.err;
  EXPECT_NE(repair.out.find("repair: "), std::string::npos) << repair.out;
  EXPECT_EQ(repair.out.find(" 0 repaired"), std::string::npos)
      << "n2 missed writes, so some shards must differ: " << repair.out;
  std::printf("[ info   ] repair after restart: %.2f s: %s", SecondsSince(repair_start),
              repair.out.substr(repair.out.rfind("repair: ")).c_str());

  EXPECT_GE(ExpectReplicasAgree(*c, map), 70u);  // 20,000 users: 79 shards
  Json again = TagctlJson(node("n3").address(), {"cluster", "repair"});
  EXPECT_EQ(again["repaired"], 0) << again;
  EXPECT_GE(again["shards"].get<uint64_t>(), 70u) << again;

  // Every node answers with the whole state again: read each shard's
  // users from its first owner (n2 included, no longer marked down).
  auto fresh = Connect({node("n2").address()});
  ASSERT_NE(fresh, nullptr);
  auto counts = fresh->Count("d");
  ASSERT_TRUE(counts.ok()) << counts.status().ToString();
  EXPECT_EQ(*counts, count_d);
  auto b = fresh->Count("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, count_b_after);
  for (UserId u = 1; u < kBaseUsers; u += 97) {
    auto tags = fresh->GetTags(u);
    ASSERT_TRUE(tags.ok()) << tags.status().ToString();
    std::vector<std::string> want = BaseTagsOf(u);
    if (u % 10 == 1) want.push_back("d");
    if (u % 25 == 0) want.erase(std::remove(want.begin(), want.end(), "b"), want.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(Names(*tags), want) << "user " << u;
  }
  std::printf("[ timing ] ReadsSurviveAKilledReplica: %.2f s\n", SecondsSince(start));
}

// The nodes' own repair pass (--repair-interval-s) brings a replica that
// was down back in line with no operator action.
TEST_F(ClusterTest, BackgroundRepairPassConverges) {
  const auto start = Steady::now();
  const std::vector<std::string> repair_every_second = {"--repair-interval-s", "1"};
  StartCluster({"n1", "n2", "n3"}, 2, repair_every_second);
  if (HasFatalFailure()) return;
  auto c = Connect({node("n1").address(), node("n3").address()});
  ASSERT_NE(c, nullptr);
  ApplyAll(*c, BaseEvents());
  if (HasFatalFailure()) return;
  const uint16_t n2_port = node("n2").port;
  node("n2").process->Kill();
  std::vector<Event> while_down;
  for (UserId u = 3; u < kBaseUsers; u += 7) while_down.push_back(Event{u, "late", TagOp::kSet, 5000});
  ApplyAll(*c, while_down);
  if (HasFatalFailure()) return;
  ASSERT_NE(StartNode("n2", n2_port, repair_every_second).process, nullptr);

  const cluster::ClusterMap map = c->cluster_map();
  auto placement = cluster::Placement::Build(map);
  ASSERT_TRUE(placement.ok());
  const auto& p = **placement;
  // Polls every node's digests until every shard's replicas agree; bounded.
  auto differing = [&]() -> int {
    std::vector<std::map<uint64_t, uint64_t>> digests(p.members().size());
    std::set<uint64_t> shards;
    for (size_t i = 0; i < p.members().size(); ++i) {
      auto held = c->NodeShardDigests(p.members()[i].address, client::CallOptions{milliseconds(2000)});
      if (!held.ok()) return -1;
      for (const auto& d : *held) {
        digests[i][d.shard] = d.digest;
        shards.insert(d.shard);
      }
    }
    int n = 0;
    for (uint64_t shard : shards) {
      std::set<uint64_t> seen;
      for (uint32_t o : p.ReadOwners(shard)) {
        auto it = digests[o].find(shard);
        seen.insert(it == digests[o].end() ? 0 : it->second);
      }
      n += seen.size() > 1;
    }
    return n;
  };
  // n2 missed writes: shards differ until its first pass (not asserted: on
  // a slow machine the pass may already have run). The proof is below: n2
  // answers for its shards with the writes it missed.
  int left = differing();
  std::printf("[ info   ] %d shard(s) differ after the restart\n", left);
  const auto deadline = Steady::now() + std::chrono::seconds(20);
  for (int i = 0; i < 200 && left != 0 && Steady::now() < deadline; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    left = differing();
  }
  EXPECT_EQ(left, 0) << "replicas still differ after 20 s of background repair passes";
  ExpectReplicasAgree(*c, map);
  // n2 alone answers for its shards now: ask through it first.
  auto fresh = Connect({node("n2").address()});
  ASSERT_NE(fresh, nullptr);
  auto late = fresh->Count("late");
  ASSERT_TRUE(late.ok()) << late.status().ToString();
  EXPECT_EQ(*late, while_down.size());
  std::printf("[ timing ] BackgroundRepairPassConverges: %.2f s\n", SecondsSince(start));
}

// A node whose cluster.map is lost comes back standalone; `cluster
// rebalance` on the settled map hands it the map again, and a repair makes
// its replicas whole.
TEST_F(ClusterTest, ANodeThatLostItsMapGetsItBackFromRebalance) {
  StartCluster({"n1", "n2", "n3"}, 2);
  if (HasFatalFailure()) return;
  auto c = Connect({node("n1").address()});
  ASSERT_NE(c, nullptr);
  ApplyAll(*c, BaseEvents());
  if (HasFatalFailure()) return;
  const uint16_t n2_port = node("n2").port;
  ASSERT_EQ(node("n2").process->Terminate(), 0);
  ASSERT_TRUE(fs::remove(node("n2").data_dir + "/cluster.map"));
  ASSERT_NE(StartNode("n2", n2_port).process, nullptr);
  auto before = c->GetNodeMap(node("n2").address());
  for (int i = 0; i < 100 && !before.ok(); ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    before = c->GetNodeMap(node("n2").address());
  }
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_EQ(before->map.epoch, 0u) << "no map file: standalone";

  RunResult rebalance = Tagctl(node("n1").address(), {"cluster", "rebalance"});
  ASSERT_EQ(rebalance.exit_code, 0) << rebalance.err;
  auto after = c->GetNodeMap(node("n2").address());
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->map.epoch, 1u);
  EXPECT_EQ(after->node_id, "n2");
  Json repair = TagctlJson(node("n3").address(), {"cluster", "repair"});
  EXPECT_EQ(repair["repaired"], 0) << "n2 kept its data: nothing to repair " << repair;
  ExpectReplicasAgree(*c, c->cluster_map());
  for (UserId u = 0; u < kBaseUsers; u += 53) {
    auto tags = c->GetTags(u);
    ASSERT_TRUE(tags.ok()) << tags.status().ToString();
    EXPECT_EQ(Names(*tags), BaseTagsOf(u)) << "user " << u;
  }
}

// ---- 3. Moves under load -----------------------------------------------------

// Writes unique users to tag "live" (only ever set) until stopped; records
// every acknowledged user. Count("live") is monotone: at least what was
// acknowledged before a read began, at most what was sent when it ended.
struct LiveWriter {
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<int> failures{0};
  std::mutex mu;
  std::vector<UserId> acked_users;  // guarded by mu
  std::vector<UserId> failed_users;  // guarded by mu: unknown outcome
  std::string first_error;          // guarded by mu

  static UserId UserOf(uint64_t i) { return 100000 + (i * 7919) % 100000; }

  void Run(Client& c, const std::atomic<bool>& stop) {
    constexpr uint64_t kBatch = 8;
    for (uint64_t next = 0; !stop.load() && next + kBatch <= 100000; next += kBatch) {
      std::vector<Event> batch;
      for (uint64_t i = next; i < next + kBatch; ++i) {
        batch.push_back(Event{UserOf(i), "live", TagOp::kSet, 5000});
      }
      sent.fetch_add(kBatch);
      auto r = c.ApplyEvents(batch);
      std::lock_guard lock(mu);
      if (r.ok()) {
        for (const Event& e : batch) acked_users.push_back(e.user);
        acked.fetch_add(kBatch);
      } else {
        failures.fetch_add(1);
        for (const Event& e : batch) failed_users.push_back(e.user);
        if (first_error.empty()) first_error = r.status().ToString();
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
  }
};

struct Reader {
  std::atomic<int> reads{0};
  std::atomic<int> failures{0};
  std::atomic<int> violations{0};
  std::mutex mu;
  std::vector<std::string> problems;  // guarded by mu: the first few
  std::map<std::string, int> by_kind;  // guarded by mu: e.g. "Count(live) WRONG_NODE" -> 3

  void Note(const std::string& kind, std::string what) {
    std::lock_guard lock(mu);
    ++by_kind[kind];
    if (problems.size() < 8) problems.push_back(std::move(what));
  }
  static std::string Code(const Status& s) {
    const std::string text = s.ToString();
    return text.substr(0, text.find(':'));
  }
  std::string Summary() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& [kind, n] : by_kind) out += "\n    " + std::to_string(n) + " x " + kind;
    if (!problems.empty()) out += "\n  first ones:";
    for (const auto& p : problems) out += "\n    " + p;
    return out;
  }

  // Count("live") within bounds, Count("c") exact, an acknowledged user's
  // and a base user's tags.
  void Run(Client& c, LiveWriter& w, const std::atomic<bool>& stop, uint64_t count_c) {
    for (uint64_t i = 0; !stop.load(); ++i) {
      const uint64_t lo = w.acked.load();
      auto n = c.Count("live");
      const uint64_t hi = w.sent.load();
      reads.fetch_add(1);
      if (!n.ok()) {
        failures.fetch_add(1);
        Note("Count(live) " + Code(n.status()), "Count(live): " + n.status().ToString());
      } else if (*n < lo || *n > hi) {
        violations.fetch_add(1);
        Note(*n < lo ? "Count(live) too low" : "Count(live) too high",
             "Count(live) = " + std::to_string(*n) + " outside [" + std::to_string(lo) + ", " +
                 std::to_string(hi) + "]");
      }
      auto cc = c.Count("c");
      reads.fetch_add(1);
      if (!cc.ok()) {
        failures.fetch_add(1);
        Note("Count(c) " + Code(cc.status()), "Count(c): " + cc.status().ToString());
      } else if (*cc != count_c) {
        violations.fetch_add(1);
        Note(*cc < count_c ? "Count(c) too low" : "Count(c) too high",
             "Count(c) = " + std::to_string(*cc) + ", want " + std::to_string(count_c));
      }
      std::optional<UserId> probe;
      {
        std::lock_guard lock(w.mu);
        if (!w.acked_users.empty()) probe = w.acked_users[(i * 31) % w.acked_users.size()];
      }
      if (probe) {
        auto tags = c.GetTags(*probe);
        reads.fetch_add(1);
        if (!tags.ok()) {
          failures.fetch_add(1);
          Note("GetTags(live user) " + Code(tags.status()),
               "GetTags(" + std::to_string(*probe) + "): " + tags.status().ToString());
        } else if (Names(*tags) != std::vector<std::string>{"live"}) {
          violations.fetch_add(1);
          Note("GetTags(live user) wrong",
               "GetTags(" + std::to_string(*probe) + ") lacks an acknowledged write");
        }
      }
      const UserId base = (i * 7919) % kBaseUsers;
      auto tags = c.GetTags(base);
      reads.fetch_add(1);
      if (!tags.ok()) {
        failures.fetch_add(1);
        Note("GetTags(base user) " + Code(tags.status()),
             "GetTags(" + std::to_string(base) + "): " + tags.status().ToString());
      } else if (Names(*tags) != BaseTagsOf(base)) {
        violations.fetch_add(1);
        Note("GetTags(base user) wrong", "GetTags(" + std::to_string(base) + ") wrong");
      }
    }
  }
};

void ClusterTest::MoveUnderLoad(bool strict) {
  const auto start = Steady::now();
  StartCluster({"n1", "n2", "n3"}, 2);
  if (HasFatalFailure()) return;
  Node& n4 = StartNode("n4");
  ASSERT_NE(n4.process, nullptr);
  const std::vector<std::string> seeds = {node("n1").address(), node("n2").address(),
                                          node("n3").address()};
  auto writer_client = Connect(seeds);
  auto reader_client = Connect(seeds);
  ASSERT_NE(writer_client, nullptr);
  ASSERT_NE(reader_client, nullptr);
  ApplyAll(*writer_client, BaseEvents());
  if (HasFatalFailure()) return;
  // The tag exists before the reader starts counting it.
  constexpr UserId kFirstLive = 250000;  // outside the base data and the writer's users
  ASSERT_TRUE(writer_client->ApplyEvents({Event{kFirstLive, "live", TagOp::kSet, 5000}}).ok());
  const uint64_t count_c = BaseCount("c");

  LiveWriter writer;
  writer.sent = 1;
  writer.acked = 1;
  writer.acked_users.push_back(kFirstLive);
  Reader reader;
  std::atomic<bool> stop{false};
  std::thread write_thread([&] { writer.Run(*writer_client, stop); });
  std::thread read_thread([&] { reader.Run(*reader_client, writer, stop, count_c); });

  std::this_thread::sleep_for(milliseconds(300));
  const auto add_start = Steady::now();
  RunResult add = Tagctl(node("n1").address(), {"cluster", "add-node", n4.spec(), "--json"});
  const double add_s = SecondsSince(add_start);
  std::this_thread::sleep_for(milliseconds(200));
  const auto remove_start = Steady::now();
  RunResult remove = Tagctl(node("n2").address(), {"cluster", "remove-node", "n1", "--json"});
  const double remove_s = SecondsSince(remove_start);
  std::this_thread::sleep_for(milliseconds(300));
  stop = true;
  write_thread.join();
  read_thread.join();

  EXPECT_EQ(add.exit_code, 0) << add.out << add.err;
  EXPECT_EQ(remove.exit_code, 0) << remove.out << remove.err;
  Json add_doc = Json::parse(add.out, nullptr, false);
  Json remove_doc = Json::parse(remove.out, nullptr, false);
  ASSERT_FALSE(add_doc.is_discarded()) << add.out;
  ASSERT_FALSE(remove_doc.is_discarded()) << remove.out;
  EXPECT_EQ(add_doc["epoch"], 3) << add_doc;
  EXPECT_EQ(remove_doc["epoch"], 5) << remove_doc;
  EXPECT_GT(add_doc["copies"].get<uint64_t>(), 0u) << add_doc;
  EXPECT_GT(remove_doc["copies"].get<uint64_t>(), 0u) << remove_doc;

  const std::string problems = reader.Summary();
  std::printf(
      "[ info   ] add-node %.2f s (%s copies), remove-node %.2f s (%s copies); %llu events "
      "acknowledged, %d write batches failed%s%s; %d reads, %d failed, %d wrong%s\n",
      add_s, add_doc["copies"].dump().c_str(), remove_s, remove_doc["copies"].dump().c_str(),
      static_cast<unsigned long long>(writer.acked.load()), writer.failures.load(),
      writer.first_error.empty() ? "" : ", first: ", writer.first_error.c_str(),
      reader.reads.load(), reader.failures.load(), reader.violations.load(), problems.c_str());
  if (strict) {
    EXPECT_EQ(writer.failures.load(), 0) << writer.first_error;
    EXPECT_EQ(reader.failures.load(), 0) << problems;
    EXPECT_EQ(reader.violations.load(), 0) << problems;
  }
  EXPECT_GT(writer.acked.load(), 100u);
  EXPECT_GT(reader.reads.load(), 100);

  // Every acknowledged write is there, read through a client that knows
  // only the nodes still in the cluster.
  auto c = Connect({node("n2").address(), node("n4").address()});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->cluster_map().epoch, 5u);
  std::vector<UserId> acked;
  {
    std::lock_guard lock(writer.mu);
    acked = writer.acked_users;
  }
  auto live = c->Count("live");
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  // A failed batch may have reached some replicas: its users may or may not count.
  EXPECT_GE(*live, acked.size());
  EXPECT_LE(*live, acked.size() + writer.failed_users.size());
  if (strict) EXPECT_EQ(*live, acked.size());
  for (size_t i = 0; i < acked.size(); i += 500) {
    std::vector<UserId> part(acked.begin() + i, acked.begin() + std::min(acked.size(), i + 500));
    auto batch = c->GetTagsBatch(part);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    for (size_t j = 0; j < part.size(); ++j) {
      EXPECT_EQ(Names((*batch)[j].tags), std::vector<std::string>{"live"}) << "user " << part[j];
    }
  }
  for (const char* tag : {"a", "b", "c"}) {
    auto n = c->Count(tag);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(*n, BaseCount(tag)) << tag;
  }
  EXPECT_GT(ExpectReplicasAgree(*c, c->cluster_map()), 100u);  // base and live users

  Json show = TagctlJson(node("n3").address(), {"cluster", "show"});
  EXPECT_EQ(show["epoch"], 5) << show;
  EXPECT_EQ(show["moving"], false) << show;
  ASSERT_EQ(show["nodes"].size(), 3u) << show;
  std::set<std::string> ids;
  for (const Json& n : show["nodes"]) {
    ids.insert(n["id"].get<std::string>());
    EXPECT_EQ(n["health"], "up") << n;
    EXPECT_EQ(n["epoch"], 5) << n;
    EXPECT_GT(n["shards_held"].get<uint64_t>(), 0u) << n;
    // Shards a node no longer owns were dropped when the map settled.
    EXPECT_EQ(n["shards_held"], n["shards_owned"]) << n;
  }
  EXPECT_EQ(ids, (std::set<std::string>{"n2", "n3", "n4"}));
  std::printf("[ timing ] move under load: %.2f s\n", SecondsSince(start));
}


TEST_F(ClusterTest, AddAndRemoveNodeUnderLoad) {
  // What must hold however the moves interleave with the load: both moves
  // succeed, no acknowledged write is lost, replicas agree, the map settles.
  // Transient failures and wrong answers are counted and printed here; the
  // strict variant below asserts there are none.
  MoveUnderLoad(/*strict=*/false);
}

// While add-node / remove-node publish a map node by node, nodes hold
// different epochs for a few milliseconds. Nodes answer WRONG_NODE to any
// routed request whose epoch differs from theirs (older: refresh; newer:
// not received yet), and the client re-plans with backoff, so no call fails
// and no fan-out mixes two maps' ownership (a shard counted twice or not at
// all). Writes wait for every live replica, so a read after an acknowledged
// write sees it. Strict: zero failed writes, zero failed reads, every Count
// within the bounds of what was written.
TEST_F(ClusterTest, MapChangesFailNoCallAndMiscountNothing) {
  MoveUnderLoad(/*strict=*/true);
}

// ---- 4. A client with an old map -----------------------------------------------

TEST_F(ClusterTest, StaleClientIsRedirected) {
  const auto start = Steady::now();
  StartCluster({"n1", "n2", "n3"}, 2);
  if (HasFatalFailure()) return;
  Node& n4 = StartNode("n4");
  ASSERT_NE(n4.process, nullptr);
  auto stale = Connect({node("n1").address()});
  ASSERT_NE(stale, nullptr);
  ApplyAll(*stale, BaseEvents());
  if (HasFatalFailure()) return;
  ASSERT_EQ(stale->cluster_map().epoch, 1u);

  Json add = TagctlJson(node("n2").address(), {"cluster", "add-node", n4.spec()});
  EXPECT_EQ(add["epoch"], 3) << add;
  EXPECT_EQ(stale->cluster_map().epoch, 1u) << "nothing told the idle client yet";

  // Reads of every shard, through the old routing: all correct.
  for (UserId u = 0; u < kBaseUsers; u += 41) {
    auto tags = stale->GetTags(u);
    ASSERT_TRUE(tags.ok()) << "user " << u << ": " << tags.status().ToString();
    EXPECT_EQ(Names(*tags), BaseTagsOf(u)) << "user " << u;
  }
  EXPECT_EQ(stale->cluster_map().epoch, 3u);
  EXPECT_EQ(stale->nodes().size(), 4u);

  // Another client goes stale through remove-node of its only seed (n3);
  // its first call after the move is a write, the first client's a fan-out.
  auto writer = Connect({node("n3").address()});
  ASSERT_NE(writer, nullptr);
  ASSERT_EQ(writer->cluster_map().epoch, 3u);
  Json remove = TagctlJson(node("n2").address(), {"cluster", "remove-node", "n3"});
  EXPECT_EQ(remove["epoch"], 5) << remove;
  std::vector<Event> more;
  for (UserId u = 0; u < kBaseUsers; u += 19) more.push_back(Event{u, "e", TagOp::kSet, 3000});
  auto w = writer->ApplyEvents(more);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->applied, more.size());
  EXPECT_EQ(writer->cluster_map().epoch, 5u);
  auto n = stale->Count("e");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, more.size());
  EXPECT_EQ(stale->cluster_map().epoch, 5u);
  auto top = stale->TopTags("a | b | c | e", 1);
  ASSERT_TRUE(top.ok()) << top.status().ToString();
  ASSERT_EQ(top->size(), 1u);
  EXPECT_EQ((*top)[0].tag, "b");
  EXPECT_EQ((*top)[0].count, BaseCount("b"));
  std::printf("[ timing ] StaleClientIsRedirected: %.2f s\n", SecondsSince(start));
}

// A node removed with `tagctl cluster remove-node` is handed the settled map
// too: it retires (owns nothing, answers WRONG_NODE) and gives clients that
// still list it as a seed the new map, so nobody reads its stale copies.
TEST_F(ClusterTest, RemovedNodeStopsServingItsOldMap) {
  StartCluster({"n1", "n2", "n3"}, 2);
  if (HasFatalFailure()) return;
  {
    auto c = Connect({node("n1").address()});
    ASSERT_NE(c, nullptr);
    ApplyAll(*c, BaseEvents());
    if (HasFatalFailure()) return;
  }
  const cluster::ClusterMap before = [&] {
    auto c = Connect({node("n2").address()});
    return c ? c->cluster_map() : cluster::ClusterMap{};
  }();
  ASSERT_EQ(before.epoch, 1u);
  Json remove = TagctlJson(node("n2").address(), {"cluster", "remove-node", "n1"});
  ASSERT_EQ(remove["epoch"], 3) << remove;

  // Users of shards n1 was the first replica of: after the move their reads
  // go to n2 or n3; n1 (still running) no longer receives their writes.
  auto placement = cluster::Placement::Build(before);
  ASSERT_TRUE(placement.ok());
  const int n1 = (*placement)->IndexOf("n1");
  std::vector<UserId> users;
  for (UserId u = 0; u < kBaseUsers && users.size() < 50; u += 17) {
    if ((*placement)->ReadOwners(u >> kShardBits).front() == static_cast<uint32_t>(n1)) {
      users.push_back(u);
    }
  }
  ASSERT_FALSE(users.empty());
  {
    auto c = Connect({node("n2").address()});
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(c->cluster_map().epoch, 3u);
    std::vector<Event> after;
    for (UserId u : users) after.push_back(Event{u, "after", TagOp::kSet, 3000});
    auto w = c->ApplyEvents(after);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
  }

  // A client that lists n1 first among its seeds.
  auto c = Connect({node("n1").address(), node("n2").address()});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->cluster_map().epoch, 3u) << "the client took the removed node's map";
  EXPECT_FALSE(c->cluster_map().moving);
  int stale = 0;
  for (UserId u : users) {
    auto tags = c->GetTags(u);
    ASSERT_TRUE(tags.ok()) << tags.status().ToString();
    std::vector<std::string> want = BaseTagsOf(u);
    want.push_back("after");
    std::sort(want.begin(), want.end());
    if (Names(*tags) != want) ++stale;
  }
  EXPECT_EQ(stale, 0) << "of " << users.size()
                      << " users whose acknowledged write the read did not see";
  Json show = TagctlJson(node("n1").address(), {"cluster", "show"});
  EXPECT_EQ(show["epoch"], 3) << show;
  EXPECT_EQ(show["moving"], false) << show;
}

// ---- 5. Bad input ---------------------------------------------------------------

TEST_F(ClusterTest, InitRefusesBadInput) {
  const auto start = Steady::now();
  Node& n1 = StartNode("n1");
  Node& n2 = StartNode("n2");
  ASSERT_NE(n1.process, nullptr);
  ASSERT_NE(n2.process, nullptr);
  auto init = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"cluster", "init"};
    args.insert(args.end(), extra.begin(), extra.end());
    return Tagctl(n1.address(), args, milliseconds(20000));
  };

  RunResult dup = init({"--nodes", "n1=" + n1.address() + ",n1=" + n2.address()});
  EXPECT_NE(dup.exit_code, 0);
  EXPECT_NE(dup.err.find("appears twice"), std::string::npos) << dup.err;
  EXPECT_NE(dup.err.find("n1"), std::string::npos) << dup.err;

  RunResult dup_address = init({"--nodes", "n1=" + n1.address() + ",n2=" + n1.address()});
  EXPECT_NE(dup_address.exit_code, 0);
  EXPECT_NE(dup_address.err.find("appears twice"), std::string::npos) << dup_address.err;
  EXPECT_NE(dup_address.err.find(n1.address()), std::string::npos) << dup_address.err;

  RunResult too_many =
      init({"--nodes", n1.spec() + "," + n2.spec(), "--replicas", "3"});
  EXPECT_NE(too_many.exit_code, 0);
  EXPECT_NE(too_many.err.find("replicas"), std::string::npos) << too_many.err;

  for (const std::string& spec : {std::string("n1") + n1.address(), "=" + n1.address(),
                                  std::string("n1="), std::string("bad id!=") + n1.address()}) {
    RunResult malformed = init({"--nodes", spec + "," + n2.spec()});
    EXPECT_NE(malformed.exit_code, 0) << spec;
    EXPECT_FALSE(malformed.err.empty()) << spec;
    const bool names_it = malformed.err.find(spec) != std::string::npos ||
                          malformed.err.find("id") != std::string::npos;
    EXPECT_TRUE(names_it) << spec << ": " << malformed.err;
  }

  // Nothing above changed either node.
  auto c = Connect({n1.address()});
  ASSERT_NE(c, nullptr);
  for (const Node* n : {&n1, &n2}) {
    auto m = c->GetNodeMap(n->address());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->map.epoch, 0u) << n->id;
  }

  // A real init, then a second one over a node already in a cluster.
  RunResult ok = init({"--nodes", n1.spec() + "," + n2.spec(), "--replicas", "2"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("epoch 1"), std::string::npos) << ok.out;
  Node& n3 = StartNode("n3");
  ASSERT_NE(n3.process, nullptr);
  RunResult again = init({"--nodes", n3.spec() + "," + n2.spec()});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("already in a cluster"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("n2"), std::string::npos) << again.err;
  auto m3 = c->GetNodeMap(n3.address());
  ASSERT_TRUE(m3.ok());
  EXPECT_EQ(m3->map.epoch, 0u) << "a refused init installs nothing";

  // Other actions refuse what makes no sense.
  RunResult unknown_node = Tagctl(n1.address(), {"cluster", "remove-node", "nobody"});
  EXPECT_NE(unknown_node.exit_code, 0);
  EXPECT_NE(unknown_node.err.find("nobody"), std::string::npos) << unknown_node.err;
  RunResult standalone_repair = Tagctl(n3.address(), {"cluster", "repair"});
  EXPECT_NE(standalone_repair.exit_code, 0);
  EXPECT_NE(standalone_repair.err.find("no cluster map"), std::string::npos)
      << standalone_repair.err;
  std::printf("[ timing ] InitRefusesBadInput: %.2f s\n", SecondsSince(start));
}

}  // namespace
}  // namespace tagcache::testing
