// Sends a SnapshotSet to the cluster as one snapshot per tag as of `ts`:
// for every tag, each shard's members go to the shard's owner as a
// LoadSnapshot part (parts of many shards and tags in flight at once,
// bounded in bytes), and once every part of the tag is acknowledged the tag
// is committed, naming the shards it sent, so every other shard is emptied
// as of ts (design.md rule 4). A commit that reports missing parts gets
// those parts resent and is committed again.
//
// Per tag: a stale ts (a newer snapshot is already held) refuses the tag
// with the node's message and nothing of it is committed; a re-run of the
// same load finds every part a duplicate and changes nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"
#include "tagcache/ingest/snapshot_set.h"

namespace tagcache::ingest {

struct SnapshotLoadOptions {
  client::Timestamp ts = 0;  // REQUIRES: >= 1
  // Serialized bytes of parts sent and not yet acknowledged.
  uint64_t max_in_flight_bytes = 64u << 20;
  // Parts larger than this are refused by nodes (their frame limit); the
  // loader reports such a shard rather than sending it.
  uint64_t max_part_bytes = (64u << 20) - 4096;
  // Commit attempts per tag when parts are reported missing.
  int commit_attempts = 3;
  // Deadline of one part or commit.
  std::chrono::milliseconds request_timeout{60000};
};

enum class TagLoadState {
  kApplied,    // committed; at least one part changed the shard's base
  kUnchanged,  // committed; every part was a duplicate (a re-run)
  kStale,      // refused: a newer snapshot of the tag is held
  kFailed,     // a part or the commit failed (message says which and why)
};
const char* TagLoadStateName(TagLoadState state);  // "applied", "unchanged", "stale", "failed"

struct TagLoadResult {
  std::string tag;
  TagLoadState state = TagLoadState::kFailed;
  uint64_t users = 0;          // members sent
  uint64_t shards_sent = 0;    // parts sent (shards with members)
  uint64_t shards_emptied = 0; // as the commit reported
  uint64_t ties = 0;           // parts with the same ts and different members (operator error)
  std::string message;         // why, for stale / failed; tie warnings
};

struct SnapshotLoadProgress {
  uint64_t tags_done = 0;
  uint64_t tags_total = 0;
  uint64_t bytes_sent = 0;     // acknowledged part bytes
  uint64_t bytes_total = 0;
};

// Loads every tag of `set` (erasing each once it is done, to free memory),
// in name order. `progress`, when given, is called from the calling thread
// at least every 200 ms. Returns one result per tag; the Status is an error
// only for a bad argument (ts 0).
Result<std::vector<TagLoadResult>> LoadSnapshotSet(
    client::Client* client, SnapshotSet* set, const SnapshotLoadOptions& options,
    const std::function<void(const SnapshotLoadProgress&)>& progress = {});

}  // namespace tagcache::ingest
