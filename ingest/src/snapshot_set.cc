// Members arrive one (tag, user) pair at a time, in any order, often
// interleaving many tags. Adding each to a Roaring bitmap directly costs a
// container search per pair, so pairs are logged, and a full log is grouped
// by tag (a counting sort), each tag's users sorted, and folded into the
// shards' bitmaps with one addMany per shard run. One log for all tags keeps
// the memory bounded and allocated once, however many tags interleave;
// per-tag buffers would either grow with the tag count or be freed and
// re-allocated all the time.
#include "tagcache/ingest/snapshot_set.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "shard_split.h"

namespace tagcache::ingest {
namespace {

// Folding costs about one cache miss per (tag, shard) it touches, however
// few members it adds there, so the log is large: 2 Mi pending members,
// 24 MiB of log and 16 MiB of scratch.
constexpr size_t kMaxPending = size_t{1} << 21;
constexpr size_t kMinPending = size_t{1} << 10;
constexpr size_t kOffsetsBatch = size_t{1} << 16;  // addMany calls take at most this many

template <typename T>
void Free(std::vector<T>& v) {
  std::vector<T>().swap(v);
}

}  // namespace

struct SnapshotSet::TagMembers {
  explicit TagMembers(uint32_t i) : id(i) {}
  uint32_t id;                        // index in by_id_
  std::map<uint64_t, Roaring> parts;  // shard -> offsets; never an empty bitmap
  bool optimized = true;              // parts are run-optimised since the last change
  size_t pending = 0;                 // FoldPending: members of this tag in the log
  size_t next = 0;                    // FoldPending: where its next one goes
};

SnapshotSet::SnapshotSet(int shard_bits) : shard_bits_(shard_bits) {
  assert(shard_bits >= 8 && shard_bits <= 32);
}
SnapshotSet::~SnapshotSet() = default;
SnapshotSet::SnapshotSet(SnapshotSet&&) noexcept = default;
SnapshotSet& SnapshotSet::operator=(SnapshotSet&&) noexcept = default;

SnapshotSet::TagMembers& SnapshotSet::Find(std::string_view tag) {
  if (last_ != nullptr && tag == last_name_) return *last_;
  auto it = tags_.find(tag);
  if (it == tags_.end()) {
    auto members = std::make_unique<TagMembers>(static_cast<uint32_t>(by_id_.size()));
    by_id_.push_back(members.get());
    it = tags_.emplace(std::string(tag), std::move(members)).first;
  }
  last_ = it->second.get();
  last_name_ = it->first;
  return *last_;
}

void SnapshotSet::AddTag(std::string_view tag) { Find(tag); }

void SnapshotSet::Add(std::string_view tag, uint64_t user) {
  const uint32_t id = Find(tag).id;
  if (pending_users_.size() == pending_users_.capacity()) [[unlikely]] {
    MakeRoom();
  }
  pending_users_.push_back(user);
  pending_tags_.push_back(id);
}

void SnapshotSet::MakeRoom() {
  const size_t capacity = pending_users_.capacity();
  if (capacity >= kMaxPending) {
    FoldPending();
  } else {
    // Both grow together, so a check of one covers the other.
    const size_t grown = std::clamp(capacity * 2, kMinPending, kMaxPending);
    pending_users_.reserve(grown);
    pending_tags_.reserve(pending_users_.capacity());
  }
}

void SnapshotSet::FoldPending() {
  const size_t n = pending_users_.size();
  if (n == 0) return;
  touched_.clear();
  for (uint32_t id : pending_tags_) {
    TagMembers* members = by_id_[id];
    if (members->pending++ == 0) touched_.push_back(members);
  }
  if (touched_.size() == 1) {  // one tag (grouped input): no need to group
    FoldUsers(*touched_[0], pending_users_.data(), n);
  } else {
    // Group by tag (a counting sort), keeping each tag's arrival order, so
    // sorted input stays sorted.
    size_t start = 0;
    for (TagMembers* members : touched_) {
      members->next = start;
      start += members->pending;
    }
    grouped_.resize(n);
    for (size_t i = 0; i < n; ++i) grouped_[by_id_[pending_tags_[i]]->next++] = pending_users_[i];
    for (TagMembers* members : touched_) {
      FoldUsers(*members, grouped_.data() + (members->next - members->pending), members->pending);
    }
  }
  for (TagMembers* members : touched_) members->pending = 0;
  pending_users_.clear();
  pending_tags_.clear();
}

void SnapshotSet::FoldUsers(TagMembers& members, uint64_t* users, size_t n) {
  // Inputs are often sorted already (Spark writes sorted partitions).
  if (!std::is_sorted(users, users + n)) std::sort(users, users + n);
  const uint64_t offset_mask = (uint64_t{1} << shard_bits_) - 1;
  offsets_.resize(std::min(n, kOffsetsBatch));
  auto hint = members.parts.end();
  for (size_t i = 0; i < n;) {
    const uint64_t shard = users[i] >> shard_bits_;
    // Shards come ascending: the new one goes right before the hint.
    hint = members.parts.try_emplace(hint, shard);
    Roaring& offsets = hint->second;
    ++hint;
    size_t count = 0;
    uint64_t previous = ~users[i];
    for (; i < n && users[i] >> shard_bits_ == shard; ++i) {
      if (users[i] == previous) continue;  // addMany would skip it, slower
      previous = users[i];
      offsets_[count++] = static_cast<uint32_t>(users[i] & offset_mask);
      if (count == offsets_.size()) {
        offsets.addMany(count, offsets_.data());
        count = 0;
      }
    }
    offsets.addMany(count, offsets_.data());
  }
  members.optimized = false;
}

void SnapshotSet::Flush() {
  FoldPending();
  Free(pending_users_);
  Free(pending_tags_);
  Free(grouped_);
  Free(offsets_);
  Free(touched_);
}

void SnapshotSet::AddShardOffsets(std::string_view tag, uint64_t shard, const Roaring& offsets) {
  TagMembers& members = Find(tag);
  if (offsets.isEmpty()) return;
  assert(shard_bits_ == 32 || offsets.maximum() >> shard_bits_ == 0);
  auto [it, inserted] = members.parts.try_emplace(shard, offsets);
  if (!inserted) it->second |= offsets;
  members.optimized = false;
}

void SnapshotSet::AddUsers32(std::string_view tag, const Roaring& users) {
  Find(tag);
  internal::SplitByShard(users, 0, shard_bits_, [&](uint64_t shard, const Roaring& offsets) {
    AddShardOffsets(tag, shard, offsets);
  });
}

void SnapshotSet::MergeFrom(SnapshotSet&& other) {
  assert(other.shard_bits_ == shard_bits_);
  if (&other == this) return;
  other.Flush();
  for (auto it = other.tags_.begin(); it != other.tags_.end();) {
    auto next = std::next(it);
    auto mine = tags_.find(it->first);
    if (mine == tags_.end()) {
      // The whole tag moves over, name and bitmaps, without a copy; nothing
      // of other's points at it any more after the flush.
      TagMembers* members = it->second.get();
      members->id = static_cast<uint32_t>(by_id_.size());
      by_id_.push_back(members);
      tags_.insert(other.tags_.extract(it));
    } else {
      TagMembers& into = *mine->second;
      for (auto& [shard, offsets] : it->second->parts) {
        auto [at, inserted] = into.parts.try_emplace(shard, std::move(offsets));
        if (!inserted) at->second |= offsets;
      }
      into.optimized = false;
    }
    it = next;
  }
  other.tags_.clear();
  other.by_id_.clear();
  other.last_ = nullptr;
  other.last_name_ = {};
}

std::vector<std::string> SnapshotSet::Tags() {
  std::vector<std::string> names;
  names.reserve(tags_.size());
  for (const auto& [name, members] : tags_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

const std::map<uint64_t, Roaring>& SnapshotSet::Parts(const std::string& tag) {
  static const std::map<uint64_t, Roaring> kNone;
  auto it = tags_.find(tag);
  if (it == tags_.end()) return kNone;
  // Reading parts means adding is over: fold everything and free the log.
  Flush();
  TagMembers& members = *it->second;
  // Once per tag, before it is serialized: dense id ranges shrink to runs.
  // Not on every fold, since adding to run containers is slower.
  if (!members.optimized) {
    for (auto& [shard, offsets] : members.parts) {
      offsets.runOptimize();
      offsets.shrinkToFit();
    }
    members.optimized = true;
  }
  return members.parts;
}

void SnapshotSet::Erase(const std::string& tag) {
  auto it = tags_.find(tag);
  if (it == tags_.end()) return;
  FoldPending();  // the log may name the tag
  if (last_ == it->second.get()) {
    last_ = nullptr;
    last_name_ = {};
  }
  by_id_[it->second->id] = nullptr;
  tags_.erase(it);
}

uint64_t SnapshotSet::Assignments() {
  Flush();
  uint64_t total = 0;
  for (const auto& [name, members] : tags_) {
    for (const auto& [shard, offsets] : members->parts) total += offsets.cardinality();
  }
  return total;
}

uint64_t SnapshotSet::DistinctUsers() {
  Flush();
  std::map<uint64_t, std::vector<const Roaring*>> by_shard;
  for (const auto& [name, members] : tags_) {
    for (const auto& [shard, offsets] : members->parts) by_shard[shard].push_back(&offsets);
  }
  uint64_t total = 0;
  for (auto& [shard, bitmaps] : by_shard) {
    if (bitmaps.size() == 1) {
      total += bitmaps[0]->cardinality();
    } else {
      total += Roaring::fastunion(bitmaps.size(), bitmaps.data()).cardinality();
    }
  }
  return total;
}

uint64_t SnapshotSet::DistinctShards() {
  Flush();
  std::vector<uint64_t> shards;
  for (const auto& [name, members] : tags_) {
    for (const auto& [shard, offsets] : members->parts) shards.push_back(shard);
  }
  std::sort(shards.begin(), shards.end());
  return static_cast<uint64_t>(std::unique(shards.begin(), shards.end()) - shards.begin());
}

uint64_t SnapshotSet::MemoryBytes() {
  uint64_t total = pending_users_.capacity() * sizeof(uint64_t) +
                   pending_tags_.capacity() * sizeof(uint32_t) +
                   grouped_.capacity() * sizeof(uint64_t) + offsets_.capacity() * sizeof(uint32_t);
  for (const auto& [name, members] : tags_) {
    for (const auto& [shard, offsets] : members->parts) total += offsets.getSizeInBytes(true);
  }
  return total;
}

}  // namespace tagcache::ingest
