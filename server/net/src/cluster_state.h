// What a node knows of its cluster: the map it was given (or none: a
// standalone node owning every shard), its own id in it, and the gate that
// lets a map change wait for writes admitted under the previous map. The
// map is persisted in the data directory (cluster.map) before it takes
// effect, so a restarted node rejoins with it.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/cluster/cluster_map.h"
#include "tagcache/common/status.h"
#include "tagcache/storage/file_system.h"

namespace tagcache::net {

class ClusterState {
 public:
  // A consistent pair: the placement (null for a standalone node) and this
  // node's index in its members().
  struct View {
    std::shared_ptr<const cluster::Placement> placement;
    uint32_t self = 0;
    // False for a node removed from the cluster: it keeps the map that
    // removed it (so clients asking it learn the new map) and owns nothing.
    bool member = true;
    std::string id;  // this node's id ("" when standalone)
    bool clustered() const { return placement != nullptr; }
    uint64_t epoch() const { return placement ? placement->epoch() : 0; }
  };

  // `fs` may be null together with an empty `data_dir` (nothing persisted).
  ClusterState(storage::FileSystem* fs, std::string data_dir, int shard_bits);
  ClusterState(const ClusterState&) = delete;
  ClusterState& operator=(const ClusterState&) = delete;

  // Reads data_dir/cluster.map if there is one. IO_ERROR naming the file
  // when it is damaged (the node must not guess its shards).
  Status Load();

  View Current() const;
  uint64_t epoch() const;
  std::string node_id() const;

  // Validates, persists (temp file, fsync, rename, fsync dir) and switches
  // to `map`, then waits (bounded) for writes admitted under the previous
  // map to finish. BAD_REQUEST for an invalid map, a node id not in it
  // (unless the node was a member of its current map: then it is retired),
  // a shard_bits other than the node's; WRONG_NODE for an epoch older than
  // the current one. The same epoch with the same content is accepted (a retry).
  Status Install(const cluster::ClusterMap& map, const std::string& node_id);

  // Write admission: Enter() before a write's ownership check, Exit() with
  // the returned ticket once it is applied (or refused).
  uint64_t EnterWrite();
  void ExitWrite(uint64_t ticket);

 private:
  Status Persist(const cluster::ClusterMap& map, const std::string& node_id);
  void DrainWritesBefore(uint64_t generation);

  storage::FileSystem* const fs_;
  const std::string data_dir_;
  const int shard_bits_;

  mutable std::mutex mu_;
  View view_;            // guarded by mu_
  std::string node_id_;  // guarded by mu_
  uint64_t generation_ = 0;                    // guarded by mu_; bumped by Install
  std::map<uint64_t, uint64_t> writes_by_gen_;  // guarded by mu_: writes in flight per generation
  std::condition_variable drained_;
  std::mutex install_mu_;  // one Install at a time
};

// "n2 (epoch 5)": how a node names itself in errors.
std::string DescribeNode(const ClusterState::View& view);

}  // namespace tagcache::net
