// Payloads of the WAL's write records (docs/WAL.md is normative). Each
// accepted write is logged as one record before it is acknowledged; replay
// decodes it and applies it to the engine again (merge is idempotent).
// Decoders treat the payload as untrusted: every length is checked and a bad
// payload is an IO_ERROR naming what was wrong, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/server/engine.h"

namespace tagcache::storage {

// kEvents: one ApplyEvents batch.
std::string EncodeEvents(std::span<const Event> events);
Result<std::vector<Event>> DecodeEvents(std::string_view payload);

// kSnapshotPart: one LoadSnapshot (tag, ts, shard, portable Roaring bitmap of offsets).
struct SnapshotPartRecord {
  std::string tag;
  Timestamp ts = 0;
  uint64_t shard = 0;
  std::string_view bitmap;  // portable Roaring bytes, a view into the payload
};
std::string EncodeSnapshotPart(std::string_view tag, Timestamp ts, uint64_t shard,
                               std::string_view portable_bitmap);
Result<SnapshotPartRecord> DecodeSnapshotPart(std::string_view payload);

// kSnapshotCommit: one CommitSnapshot.
struct SnapshotCommitRecord {
  std::string tag;
  Timestamp ts = 0;
  std::vector<uint64_t> shards;
};
std::string EncodeSnapshotCommit(std::string_view tag, Timestamp ts,
                                 std::span<const uint64_t> shards);
Result<SnapshotCommitRecord> DecodeSnapshotCommit(std::string_view payload);

}  // namespace tagcache::storage
