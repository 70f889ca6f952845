// Synthetic data for the engine benchmarks: the generators of random_data.h
// (uniform random bitmaps at a given density, power-law tag popularity, from
// fixed seeds so every run measures the same bits), plus helpers that load a
// tag into an Engine the way a bulk load does (ApplySnapshot per shard, then
// commit).
// Header-only; shared by engine_bench and memory_report.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <roaring/roaring.hh>

#include "random_data.h"
#include "tagcache/server/engine.h"

namespace tagcache::bench {

// One tag's members split by shard, as ApplySnapshot takes them.
struct ShardPart {
  uint64_t shard = 0;
  Roaring offsets;
};

// Splits sorted user ids into per-shard bitmaps of offsets (non-empty shards only).
inline std::vector<ShardPart> SplitByShard(std::span<const uint32_t> users, int shard_bits) {
  std::vector<ShardPart> parts;
  std::vector<uint32_t> offsets;
  const uint64_t mask = (uint64_t{1} << shard_bits) - 1;
  size_t i = 0;
  while (i < users.size()) {
    const uint64_t shard = uint64_t{users[i]} >> shard_bits;
    offsets.clear();
    for (; i < users.size() && (uint64_t{users[i]} >> shard_bits) == shard; ++i) {
      offsets.push_back(static_cast<uint32_t>(users[i] & mask));
    }
    ShardPart part;
    part.shard = shard;
    part.offsets.addMany(offsets.size(), offsets.data());
    parts.push_back(std::move(part));
  }
  return parts;
}

[[noreturn]] inline void Die(std::string_view what, const Status& status) {
  std::fprintf(stderr, "FATAL: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
               status.ToString().c_str());
  std::abort();
}

// Loads a whole tag as of `ts` the way a bulk load does: one ApplySnapshot
// per shard with members, then a commit naming those shards. Aborts on error:
// a benchmark on a half-loaded engine would measure nothing useful.
inline void LoadTag(Engine& engine, std::string_view tag, Timestamp ts,
                    std::span<const ShardPart> parts) {
  std::vector<uint64_t> shards;
  shards.reserve(parts.size());
  for (const ShardPart& part : parts) {
    Result<SnapshotOutcome> applied = engine.ApplySnapshot(tag, ts, part.shard, part.offsets);
    if (!applied.ok()) Die("ApplySnapshot " + std::string(tag), applied.status());
    shards.push_back(part.shard);
  }
  Result<CommitOutcome> committed = engine.CommitSnapshot(tag, ts, shards);
  if (!committed.ok()) Die("CommitSnapshot " + std::string(tag), committed.status());
  if (!committed->missing_shards.empty()) {
    Die("CommitSnapshot " + std::string(tag),
        Status::Internal(std::to_string(committed->missing_shards.size()) + " shards missing"));
  }
}

}  // namespace tagcache::bench
