#include "cluster_state.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "tagcache/cluster/map_codec.h"

namespace tagcache::net {
namespace {

constexpr const char* kMapFile = "cluster.map";
// A write admitted under the previous map normally finishes in milliseconds;
// a map change does not wait for a stuck one forever.
constexpr auto kDrainTimeout = std::chrono::seconds(10);

bool SameNodes(const std::vector<cluster::NodeInfo>& a, const std::vector<cluster::NodeInfo>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].id != b[i].id || a[i].address != b[i].address) return false;
  }
  return true;
}

bool SameMap(const cluster::ClusterMap& a, const cluster::ClusterMap& b) {
  return a.epoch == b.epoch && a.shard_bits == b.shard_bits && a.replicas == b.replicas &&
         a.vnodes == b.vnodes && a.moving == b.moving && SameNodes(a.nodes, b.nodes) &&
         SameNodes(a.from_nodes, b.from_nodes);
}

}  // namespace

std::string DescribeNode(const ClusterState::View& view) {
  if (!view.clustered()) return "this standalone node";
  return "node " + view.id + (view.member ? "" : ", removed from the cluster,") + " (epoch " +
         std::to_string(view.epoch()) + ")";
}

ClusterState::ClusterState(storage::FileSystem* fs, std::string data_dir, int shard_bits)
    : fs_(fs), data_dir_(std::move(data_dir)), shard_bits_(shard_bits) {}

Status ClusterState::Load() {
  if (!fs_ || data_dir_.empty()) return Status::Ok();
  const std::string path = data_dir_ + "/" + kMapFile;
  Result<std::unique_ptr<storage::SequentialFile>> file = fs_->NewSequentialFile(path);
  if (!file.ok()) return Status::Ok();  // no map yet: standalone until one is pushed
  std::string bytes;
  char buf[64 << 10];
  for (;;) {
    Result<size_t> n = (*file)->Read(buf, sizeof buf);
    if (!n.ok()) return Status::IoError("reading " + path + ": " + n.status().message());
    if (*n == 0) break;
    bytes.append(buf, *n);
  }
  Result<cluster::MapFile> decoded = cluster::DecodeMapFile(bytes);
  if (!decoded.ok()) return Status::IoError(path + ": " + decoded.status().message());
  if (decoded->map.shard_bits != shard_bits_) {
    return Status::IoError(path + ": the map has shard_bits " +
                           std::to_string(decoded->map.shard_bits) + " but the node runs with " +
                           std::to_string(shard_bits_));
  }
  Result<std::shared_ptr<const cluster::Placement>> placement =
      cluster::Placement::Build(decoded->map);
  if (!placement.ok()) return Status::IoError(path + ": " + placement.status().message());
  const int self = (*placement)->IndexOf(decoded->node_id);
  std::lock_guard lock(mu_);
  // Not in the map: the map that removed this node (it stays retired).
  view_ = View{std::move(*placement), static_cast<uint32_t>(std::max(self, 0)), self >= 0,
               decoded->node_id};
  node_id_ = decoded->node_id;
  spdlog::info("cluster map epoch {} loaded: this is node {}", view_.epoch(), node_id_);
  return Status::Ok();
}

ClusterState::View ClusterState::Current() const {
  std::lock_guard lock(mu_);
  return view_;
}

uint64_t ClusterState::epoch() const {
  std::lock_guard lock(mu_);
  return view_.epoch();
}

std::string ClusterState::node_id() const {
  std::lock_guard lock(mu_);
  return node_id_;
}

Status ClusterState::Install(const cluster::ClusterMap& map, const std::string& node_id) {
  std::lock_guard install(install_mu_);
  if (map.epoch == 0) return Status::BadRequest("a cluster map needs an epoch >= 1");
  if (map.shard_bits != shard_bits_) {
    return Status::BadRequest("the map has shard_bits " + std::to_string(map.shard_bits) +
                              " but this node runs with --shard-bits " +
                              std::to_string(shard_bits_));
  }
  Result<std::shared_ptr<const cluster::Placement>> placement = cluster::Placement::Build(map);
  if (!placement.ok()) return placement.status();
  const int self = (*placement)->IndexOf(node_id);
  {
    std::lock_guard lock(mu_);
    // A node may be handed a map without itself only as the map that
    // removes it: it must be a member now, under the same id.
    if (self < 0 && !(view_.clustered() && view_.member && node_id == node_id_)) {
      return Status::BadRequest("node id " + node_id + " is not in the map");
    }
    if (view_.clustered()) {
      const cluster::ClusterMap& current = view_.placement->map();
      if (map.epoch < current.epoch || (map.epoch == current.epoch && !SameMap(map, current))) {
        return Status(StatusCode::kWrongNode, "cluster map epoch " + std::to_string(map.epoch) +
                                     " is not newer than this node's epoch " +
                                     std::to_string(current.epoch));
      }
      if (map.epoch == current.epoch && node_id == node_id_) return Status::Ok();  // a retry
    }
  }
  if (Status s = Persist(map, node_id); !s.ok()) return s;
  uint64_t previous = 0;
  {
    std::lock_guard lock(mu_);
    view_ = View{std::move(*placement), static_cast<uint32_t>(std::max(self, 0)), self >= 0, node_id};
    node_id_ = node_id;
    previous = generation_++;
  }
  DrainWritesBefore(previous + 1);
  spdlog::info("cluster map epoch {} installed{}: this is node {}{}", map.epoch,
               map.moving ? " (a move is in progress)" : "", node_id,
               self < 0 ? ", removed from the cluster: it serves nothing any more" : "");
  return Status::Ok();
}

Status ClusterState::Persist(const cluster::ClusterMap& map, const std::string& node_id) {
  if (!fs_ || data_dir_.empty()) return Status::Ok();
  const std::string path = data_dir_ + "/" + kMapFile;
  const std::string tmp = path + ".tmp";
  const std::string bytes = cluster::EncodeMapFile(cluster::MapFile{map, node_id});
  Result<std::unique_ptr<storage::WritableFile>> file = fs_->NewWritableFile(tmp);
  if (!file.ok()) return file.status();
  Status s = (*file)->Append(bytes);
  if (s.ok()) s = (*file)->Sync();
  Status closed = (*file)->Close();
  if (s.ok()) s = closed;
  if (s.ok()) s = fs_->Rename(tmp, path);
  if (s.ok()) s = fs_->SyncDir(data_dir_);
  if (!s.ok()) return Status::IoError("cannot persist the cluster map to " + path + ": " + s.message());
  return Status::Ok();
}

uint64_t ClusterState::EnterWrite() {
  std::lock_guard lock(mu_);
  ++writes_by_gen_[generation_];
  return generation_;
}

void ClusterState::ExitWrite(uint64_t ticket) {
  std::lock_guard lock(mu_);
  auto it = writes_by_gen_.find(ticket);
  if (it == writes_by_gen_.end()) return;
  if (--it->second == 0) {
    writes_by_gen_.erase(it);
    drained_.notify_all();
  }
}

void ClusterState::DrainWritesBefore(uint64_t generation) {
  std::unique_lock lock(mu_);
  const bool drained = drained_.wait_for(lock, kDrainTimeout, [&] {
    return writes_by_gen_.empty() || writes_by_gen_.begin()->first >= generation;
  });
  if (!drained) spdlog::warn("writes admitted under the previous cluster map are still running");
}

}  // namespace tagcache::net
