// Checkpoint files: the engine's full state (tags with their rule 4 floors;
// per shard the known users and every column's bitmap, base_ts, digest and
// overrides) in record_io framing, so every part carries its own checksum
// (docs/WAL.md, "Checkpoints"). A checkpoint named N covers every write in
// WAL segments < N: recovery loads it, then replays segments >= N.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/server/engine.h"
#include "tagcache/storage/file_system.h"

namespace tagcache::storage {

// Written by this build; it reads versions 1 (no exporter tag ids in column
// records, so shard index images go unused) and 2.
inline constexpr uint32_t kCheckpointFormatVersion = 2;

// "<dir>/checkpoint-<20-digit wal segment>.ckpt"
std::string CheckpointPath(const std::string& dir, uint64_t wal_segment);

struct CheckpointFileInfo {
  uint64_t wal_segment = 0;  // replay WAL segments >= this after loading it
  std::string path;
  uint64_t bytes = 0;
};

// Checkpoint files in `dir`, ascending by wal_segment. Temp files and other
// names are ignored.
Result<std::vector<CheckpointFileInfo>> ListCheckpoints(FileSystem& fs, const std::string& dir);

struct CheckpointWriteReport {
  std::string path;
  uint64_t bytes = 0;
  uint64_t shards = 0;
  uint64_t columns = 0;
  uint64_t micros = 0;
};

// Writes `engine`'s state as checkpoint `wal_segment` atomically: a temp
// file, fsync, rename, fsync of the directory. Copies one shard at a time
// (Engine::ExportShard), so writes keep flowing and memory stays O(shard).
// Each shard's per-user index goes along as an image, so a restore need not
// rebuild it.
Result<CheckpointWriteReport> WriteCheckpoint(FileSystem& fs, const std::string& dir,
                                              uint64_t wal_segment, const Engine& engine);

struct CheckpointLoadReport {
  uint64_t bytes = 0;
  uint64_t shards = 0;
  uint64_t columns = 0;
  uint64_t micros = 0;
};

// Reads a checkpoint and merges it into `engine` (Engine::MergeTags /
// MergeShard), decoding shards on up to `threads` threads. Any bad record, a
// missing end record or a shard_bits different from the engine's is an
// IO_ERROR naming the file and offset; what was merged before it stays,
// which is sound because every record is a genuine part of a state and
// merging states is idempotent and order-independent.
Result<CheckpointLoadReport> LoadCheckpoint(FileSystem& fs, const std::string& path,
                                            Engine& engine, int threads);

}  // namespace tagcache::storage
