// tagctl cluster init|show|add-node|remove-node|rebalance|repair: the
// cluster map's life cycle, orchestrated from the CLI through the client's
// admin calls (docs/CLUSTER.md). Every step is idempotent, so an
// interrupted command is finished by running it (or `rebalance`) again.
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "commands.h"
#include "tagcache/client/client.h"
#include "tagcache/cluster/repair.h"

namespace tagcache::tagctl {
namespace {

using cluster::ClusterMap;
using cluster::NodeInfo;
using Json = nlohmann::json;

constexpr int kCopyThreads = 8;
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;

int Fail(const Status& s) {
  std::cerr << "tagctl: " << s.ToString() << '\n';
  return kExitFailed;
}

Result<std::vector<NodeInfo>> ParseNodes(const std::vector<std::string>& specs) {
  std::vector<NodeInfo> nodes;
  for (const std::string& spec : specs) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return Status::BadRequest("'" + spec + "' is not ID=HOST:PORT");
    }
    nodes.push_back(NodeInfo{spec.substr(0, eq), spec.substr(eq + 1)});
  }
  return nodes;
}

// Moves and repairs run through this client: its token (admin on every
// node) is what authorises exporting and merging shards.
Result<std::unique_ptr<Client>> ConnectTo(const std::vector<std::string>& seeds,
                                          const Invocation& inv) {
  client::ClientOptions options;
  options.seeds = seeds;
  options.request_timeout = inv.timeout;
  options.token = inv.token;
  options.tls = inv.tls;
  options.connections_per_node = 2;
  options.client_name = "tagctl";
  return Client::Connect(std::move(options));
}

// Installs `map` on every node in `nodes` (each told its own id).
Status Publish(Client& client, const ClusterMap& map, const std::vector<NodeInfo>& nodes) {
  for (const NodeInfo& n : nodes) {
    if (Status s = client.SetNodeMap(n.address, map, n.id); !s.ok()) {
      return Status(s.code(), "installing map epoch " + std::to_string(map.epoch) + " on " + n.id +
                                  " (" + n.address + "): " + s.message());
    }
  }
  return Status::Ok();
}

std::vector<NodeInfo> Union(const std::vector<NodeInfo>& a, const std::vector<NodeInfo>& b) {
  std::vector<NodeInfo> out = a;
  for (const NodeInfo& n : b) {
    bool seen = false;
    for (const NodeInfo& m : out) seen = seen || m.id == n.id;
    if (!seen) out.push_back(n);
  }
  return out;
}

struct MoveReport {
  uint64_t shards_total = 0;
  uint64_t shards_copied = 0;  // (shard, new owner) copies
  uint64_t bytes = 0;
  double seconds = 0;
  uint64_t epoch = 0;
};

// Copies every shard to its new owners under the moving map `moving`, then
// publishes the settled map (epoch + 1). Safe to repeat: copies are merges.
Result<MoveReport> CompleteMove(Client& client, const ClusterMap& moving, bool json) {
  auto placement = cluster::Placement::Build(moving);
  if (!placement.ok()) return placement.status();
  const auto& p = **placement;
  const auto start = std::chrono::steady_clock::now();
  MoveReport report;
  // Every shard some old owner holds state for.
  std::set<uint64_t> shards;
  for (const NodeInfo& n : moving.from_nodes) {
    Result<std::vector<uint64_t>> held = client.NodeShards(n.address);
    if (!held.ok()) return Status(held.status().code(), n.id + ": " + held.status().message());
    shards.insert(held->begin(), held->end());
  }
  report.shards_total = shards.size();
  // Shard copies run on kCopyThreads threads: each copy is two round trips
  // and a logged merge (a group-commit wait), so one at a time would leave
  // the nodes idle between copies.
  std::vector<uint64_t> work(shards.begin(), shards.end());
  std::mutex mu;
  size_t next = 0, done = 0;
  Status failure;
  auto worker = [&] {
    for (;;) {
      uint64_t shard = 0;
      {
        std::lock_guard lock(mu);
        if (next == work.size() || !failure.ok()) return;
        shard = work[next++];
      }
      std::vector<uint32_t> from = p.ReadOwners(shard);
      uint64_t bytes = 0, copies = 0;
      Status error;
      for (uint32_t to : p.FinalOwners(shard)) {
        if (std::find(from.begin(), from.end(), to) != from.end()) continue;
        // Pull from the first old owner that answers; writes already reach
        // the new owner, so the copy plus those writes is the whole shard.
        Status last;
        bool copied = false;
        for (uint32_t source : from) {
          Result<std::string> state = client.ExportShard(p.members()[source].address, shard);
          if (!state.ok()) {
            last = state.status();
            continue;
          }
          Status merged = client.MergeShard(p.members()[to].address, *state);
          if (!merged.ok()) {
            last = Status(merged.code(), "merging shard " + std::to_string(shard) + " into " +
                                             p.members()[to].id + ": " + merged.message());
            break;
          }
          bytes += state->size();
          ++copies;
          copied = true;
          break;
        }
        if (!copied) {
          error = Status(last.code(), "shard " + std::to_string(shard) + ": " + last.message());
          break;
        }
      }
      std::lock_guard lock(mu);
      if (!error.ok() && failure.ok()) failure = error;
      report.bytes += bytes;
      report.shards_copied += copies;
      ++done;
      if (!json && (done % 64 == 0 || done == work.size())) {
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::cerr << "\rmoving: " << done << "/" << work.size() << " shards, "
                  << report.bytes / 1e6 << " MB, " << (s > 0 ? report.bytes / 1e6 / s : 0)
                  << " MB/s   " << std::flush;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kCopyThreads; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  if (!failure.ok()) return failure;
  if (!json && !shards.empty()) std::cerr << '\n';
  ClusterMap settled = moving;
  settled.epoch = moving.epoch + 1;
  settled.moving = false;
  settled.from_nodes.clear();
  // The target nodes first: once they serve the settled map, removed nodes
  // learn it too, retire (own nothing, answer WRONG_NODE) and hand the new
  // map to clients that still list them as seeds.
  if (Status s = Publish(client, settled, settled.nodes); !s.ok()) return s;
  std::vector<NodeInfo> removed;
  for (const NodeInfo& old : moving.from_nodes) {
    bool kept = false;
    for (const NodeInfo& n : settled.nodes) kept = kept || n.id == old.id;
    if (!kept) removed.push_back(old);
  }
  if (Status s = Publish(client, settled, removed); !s.ok()) {
    std::cerr << "tagctl: warning: " << s.ToString()
              << " (the move is complete; stop the removed node)\n";
  }
  report.epoch = settled.epoch;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

int PrintMove(const Result<MoveReport>& r, const Invocation& inv, const char* what) {
  if (!r.ok()) return Fail(r.status());
  if (inv.json) {
    std::cout << Json{{"command", what},           {"epoch", r->epoch},
                      {"shards", r->shards_total}, {"copies", r->shards_copied},
                      {"bytes", r->bytes},         {"seconds", r->seconds}}
                     .dump()
              << '\n';
  } else {
    std::cout << what << ": epoch " << r->epoch << ", " << r->shards_copied << " shard copies of "
              << r->shards_total << " shards, " << r->bytes << " bytes in " << r->seconds
              << " s\n";
  }
  return kExitOk;
}

// Starts a move from the current settled map to `target` nodes and finishes it.
int Move(Client& client, const Invocation& inv, std::vector<NodeInfo> target, const char* what) {
  ClusterMap current = client.cluster_map();
  if (current.epoch == 0) return Fail(Status::BadRequest("no cluster map: run `tagctl cluster init` first"));
  if (current.moving) {
    return Fail(Status::BadRequest("a move to epoch " + std::to_string(current.epoch + 1) +
                                   " is in progress: run `tagctl cluster rebalance` to finish it"));
  }
  ClusterMap moving = current;
  moving.epoch = current.epoch + 1;
  moving.moving = true;
  moving.from_nodes = current.nodes;
  moving.nodes = std::move(target);
  if (Status s = cluster::ValidateMap(moving); !s.ok()) return Fail(s);
  // Every node, old and new, learns the moving map before any copy starts:
  // from then on writes reach the new owners too.
  if (Status s = Publish(client, moving, Union(moving.nodes, moving.from_nodes)); !s.ok()) {
    return Fail(s);
  }
  return PrintMove(CompleteMove(client, moving, inv.json), inv, what);
}

int Init(const Invocation& inv) {
  Result<std::vector<NodeInfo>> nodes = ParseNodes(inv.cluster_nodes);
  if (!nodes.ok()) return Fail(nodes.status());
  if (nodes->empty()) return Fail(Status::BadRequest("--nodes lists no node"));
  std::vector<std::string> seeds;
  for (const NodeInfo& n : *nodes) seeds.push_back(n.address);
  auto client = ConnectTo(seeds, inv);
  if (!client.ok()) return Fail(client.status());
  ClusterMap map;
  map.epoch = 1;
  map.shard_bits = inv.shard_bits > 0 ? inv.shard_bits : (*client)->shard_bits();
  map.replicas = inv.replicas;
  map.vnodes = inv.vnodes;
  map.nodes = *nodes;
  if (Status s = cluster::ValidateMap(map); !s.ok()) return Fail(s);
  for (const NodeInfo& n : map.nodes) {
    Result<client::NodeMap> has = (*client)->GetNodeMap(n.address);
    if (!has.ok()) return Fail(Status(has.status().code(), n.id + ": " + has.status().message()));
    if (has->map.epoch != 0) {
      return Fail(Status::BadRequest(n.id + " (" + n.address + ") is already in a cluster (epoch " +
                                     std::to_string(has->map.epoch) + ")"));
    }
  }
  if (Status s = Publish(**client, map, map.nodes); !s.ok()) return Fail(s);
  if (inv.json) {
    std::cout << Json{{"command", "init"}, {"epoch", map.epoch}, {"nodes", map.nodes.size()},
                      {"replicas", map.replicas}, {"shard_bits", map.shard_bits},
                      {"vnodes", map.vnodes}}
                     .dump()
              << '\n';
  } else {
    std::cout << "cluster of " << map.nodes.size() << " node(s) at epoch 1: replicas "
              << map.replicas << ", shard_bits " << map.shard_bits << ", vnodes " << map.vnodes
              << '\n';
  }
  return kExitOk;
}

int Show(Client& client, const Invocation& inv) {
  ClusterMap map = client.cluster_map();
  Json nodes = Json::array();
  std::vector<NodeInfo> members = map.epoch == 0 ? std::vector<NodeInfo>{{"", client.nodes()[0]}}
                                                 : Union(map.nodes, map.from_nodes);
  std::shared_ptr<const cluster::Placement> placement;
  if (map.epoch != 0) placement = *cluster::Placement::Build(map);
  for (const NodeInfo& n : members) {
    Json j{{"id", n.id}, {"address", n.address}};
    Result<client::NodeStats> stats = client.NodeStatsOf(n.address);
    Result<client::NodeMap> node_map = client.GetNodeMap(n.address);
    Result<std::vector<uint64_t>> held = client.NodeShards(n.address);
    j["health"] = stats.ok() ? "up" : "down: " + stats.status().ToString();
    if (node_map.ok()) j["epoch"] = node_map->map.epoch;
    if (stats.ok()) {
      j["memory_bytes"] = stats->memory_bytes;
      j["assignments"] = stats->assignments;
      j["tags"] = stats->tags;
    }
    if (held.ok()) {
      uint64_t owned = 0;
      const int index = placement ? placement->IndexOf(n.id) : -1;
      for (uint64_t shard : *held) {
        owned += !placement ||
                 (index >= 0 && placement->IsReadOwner(static_cast<uint32_t>(index), shard));
      }
      j["shards_held"] = held->size();
      j["shards_owned"] = owned;
    }
    nodes.push_back(std::move(j));
  }
  if (inv.json) {
    std::cout << Json{{"epoch", map.epoch},       {"replicas", map.replicas},
                      {"shard_bits", map.shard_bits}, {"vnodes", map.vnodes},
                      {"moving", map.moving},     {"nodes", nodes}}
                     .dump()
              << '\n';
    return kExitOk;
  }
  if (map.epoch == 0) {
    std::cout << "standalone node (no cluster map)\n";
  } else {
    std::cout << "epoch " << map.epoch << (map.moving ? " (move in progress)" : "") << ", replicas "
              << map.replicas << ", shard_bits " << map.shard_bits << ", vnodes " << map.vnodes
              << '\n';
  }
  for (const Json& j : nodes) {
    std::cout << j["id"].get<std::string>() << "\t" << j["address"].get<std::string>() << "\t"
              << j["health"].get<std::string>();
    if (j.contains("shards_held")) std::cout << "\tshards " << j["shards_held"];
    if (j.contains("assignments")) std::cout << "\tassignments " << j["assignments"];
    if (j.contains("memory_bytes")) std::cout << "\tmemory " << j["memory_bytes"] << " B";
    std::cout << '\n';
  }
  return kExitOk;
}

int Repair(Client& client, const Invocation& inv) {
  Result<cluster::RepairReport> r = cluster::RepairShards(client);
  if (!r.ok()) return Fail(r.status());
  if (inv.json) {
    std::cout << Json{{"command", "repair"}, {"shards", r->shards_checked},
                      {"repaired", r->shards_repaired}, {"merges", r->merges}, {"bytes", r->bytes}}
                     .dump()
              << '\n';
  } else {
    std::cout << "repair: " << r->shards_checked << " shard(s) checked, " << r->shards_repaired
              << " repaired with " << r->merges << " merge(s), " << r->bytes << " bytes\n";
  }
  return kExitOk;
}

}  // namespace

int RunCluster(const Invocation& inv) {
  if (inv.cluster_action == "init") return Init(inv);
  auto client = ConnectTo(inv.seeds, inv);
  if (!client.ok()) return Fail(client.status());
  Client& c = **client;
  if (inv.cluster_action == "show") return Show(c, inv);
  if (inv.cluster_action == "repair") return Repair(c, inv);
  if (inv.cluster_action == "rebalance") {
    ClusterMap current = c.cluster_map();
    if (current.epoch == 0) return Fail(Status::BadRequest("no cluster map"));
    if (!current.moving) {
      // Nothing to move; make sure every node holds the map (a node whose
      // map file was lost starts standalone and gets it back here).
      if (Status s = Publish(c, current, current.nodes); !s.ok()) return Fail(s);
      if (inv.json) {
        std::cout << Json{{"command", "rebalance"}, {"epoch", current.epoch}, {"moved", 0}}.dump()
                  << '\n';
      } else {
        std::cout << "nothing to move: epoch " << current.epoch << " is settled\n";
      }
      return kExitOk;
    }
    // Resume: make sure every node has the moving map, then finish the copy.
    if (Status s = Publish(c, current, Union(current.nodes, current.from_nodes)); !s.ok()) {
      return Fail(s);
    }
    return PrintMove(CompleteMove(c, current, inv.json), inv, "rebalance");
  }
  if (inv.cluster_action == "add-node") {
    Result<std::vector<NodeInfo>> added = ParseNodes({inv.node_spec});
    if (!added.ok()) return Fail(added.status());
    std::vector<NodeInfo> target = c.cluster_map().nodes;
    target.push_back(added->front());
    return Move(c, inv, std::move(target), "add-node");
  }
  if (inv.cluster_action == "remove-node") {
    std::vector<NodeInfo> target;
    bool found = false;
    for (const NodeInfo& n : c.cluster_map().nodes) {
      if (n.id == inv.node_spec) {
        found = true;
      } else {
        target.push_back(n);
      }
    }
    if (!found) return Fail(Status::BadRequest("no node " + inv.node_spec + " in the map"));
    return Move(c, inv, std::move(target), "remove-node");
  }
  return Fail(Status::BadRequest("unknown cluster action " + inv.cluster_action));
}

}  // namespace tagcache::tagctl
