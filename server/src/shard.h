// Shard state: for one range of 2^shard_bits users, every tag's column
// (bitmap + LWW state), the known-users bitmap and the per-user tag index.
// One Shard owns all of it; its shared_mutex guards it (readers shared,
// writers exclusive), so a reader never sees a half-applied snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <vector>

#include <roaring/roaring.hh>

#include "override_table.h"
#include "tagcache/server/engine.h"
#include "user_index.h"

namespace tagcache::internal {

// XXH3-64 of no bytes: the digest of an empty snapshot.
inline constexpr uint64_t kEmptyDigest = 0x2D06800538D394C2ull;

struct TagColumn {
  Roaring bitmap;              // effective members: the base with the overrides applied
  Timestamp base_ts = 0;       // S of the snapshot the base is, 0 if none
  uint64_t base_digest = kEmptyDigest;  // XXH3-64 of the base's sorted members (u32 LE)
  bool has_base = false;       // false until a snapshot (or a commit's "empty as of S") lands
  OverrideTable overrides;     // events newer than base_ts
};

struct Shard {
  explicit Shard(uint64_t shard_id) : id(shard_id) {}
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  const uint64_t id;
  mutable std::shared_mutex mu;
  Roaring known;                                    // users any write ever named as members
  std::vector<std::unique_ptr<TagColumn>> columns;  // by tag id; null: no state for the tag
  UserIndex index;
  // True after a bulk write dropped `index` (EngineOptions::
  // index_rebuild_min_changes): writes leave it alone, GetTags probes the
  // columns, and the engine's index thread rebuilds it.
  bool index_stale = false;
  // Writes that changed members while the index was stale: an index built
  // from an older state is thrown away (and the next build holds the lock
  // exclusively, so a steady trickle of events cannot starve it).
  uint64_t index_skipped_writes = 0;
  bool index_rebuild_contended = false;
  // The last bulk write that skipped the index: a rebuild waits for bulk
  // writes to pause (a load sends a shard many parts in a row).
  std::chrono::steady_clock::time_point last_bulk_index_skip;

  const TagColumn* Column(uint32_t tag) const {
    return tag < columns.size() ? columns[tag].get() : nullptr;
  }
};

// Bytes a bitmap holds in memory: containers at their allocated capacity
// plus the key/container directory.
size_t BitmapMemoryBytes(const Roaring& bitmap);

}  // namespace tagcache::internal
