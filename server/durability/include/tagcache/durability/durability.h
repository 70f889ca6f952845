// Durability of a node's writes: the write-ahead log with its fsync policy
// and group commit, checkpoints, and recovery at start (docs/WAL.md for the
// formats, docs/OPERATIONS.md for the flags and what each policy promises).
//
// Writes flow: the caller validates a write, encodes its WAL payload and
// Submit()s it; one log thread appends the records of every writer waiting
// at that moment with one write(2) and, per policy, one fsync, then hands
// each record's continuation to the executor, which applies the write to
// the engine and answers the client. So a write is acknowledged only after
// its record is as durable as the policy promises, and concurrent writers
// share one fsync.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/server/engine.h"
#include "tagcache/storage/file_system.h"
#include "tagcache/storage/record_io.h"
#include "tagcache/storage/wal.h"

namespace tagcache::durability {

enum class FsyncPolicy : uint8_t {
  kAlways,  // fsync before every acknowledgement (writers waiting together share one)
  kBatch,   // at most one fsync per batch_interval; acknowledge after the fsync covering the write
  kNone,    // acknowledge once write(2) returned: a power loss loses recent writes
};
std::string_view FsyncPolicyName(FsyncPolicy policy);
Result<FsyncPolicy> ParseFsyncPolicy(std::string_view text);

struct DurabilityOptions {
  // Directory holding the WAL segments and checkpoints. Created if missing.
  std::string data_dir;
  FsyncPolicy fsync = FsyncPolicy::kBatch;
  // kBatch: the shortest time between two group fsyncs, hence the longest a
  // write waits before its group's fsync starts. Default: 10 ms.
  std::chrono::milliseconds batch_interval{10};
  // A segment is closed and a new one started beyond this size. Default: 64 MiB.
  uint64_t segment_bytes = uint64_t{64} << 20;
  // Checkpoint when this many WAL bytes were written since the last one.
  // 0: never by size. Default: 1 GiB.
  uint64_t checkpoint_wal_bytes = uint64_t{1} << 30;
  // Checkpoint at least this often while writes arrive. 0: never by time.
  // Default: 1 hour.
  std::chrono::seconds checkpoint_interval{3600};
  // What to do with corruption before the end of the log (not a torn tail).
  storage::WalRecoveryMode recovery_mode = storage::WalRecoveryMode::kStrict;
  // Threads decoding a checkpoint at start. 0: hardware_concurrency(). Default: 0.
  int recovery_threads = 0;
};

// Runs a continuation on some thread other than the log thread.
using Executor = std::function<void(std::function<void()>)>;

struct RecoveryReport {
  std::string checkpoint;  // path of the checkpoint loaded; empty if none
  uint64_t checkpoint_bytes = 0;
  uint64_t checkpoint_micros = 0;
  std::vector<std::string> checkpoints_skipped;  // "path: why", newest first
  storage::WalReplayReport wal;
  uint64_t replay_micros = 0;
  uint64_t records_refused = 0;  // replayed records the engine refused (e.g. stale snapshots)
  uint64_t total_micros = 0;
};

// Upper bounds, in microseconds, of the fsync latency histogram's buckets
// (DurabilityStats::fsync_buckets); one more bucket counts slower fsyncs.
inline constexpr std::array<uint64_t, 14> kFsyncBucketMicros = {
    50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000, 500'000,
    1'000'000};

struct DurabilityStats {
  FsyncPolicy fsync = FsyncPolicy::kBatch;
  uint64_t wal_segment = 0;             // segment being written
  uint64_t wal_bytes = 0;               // bytes appended since start
  uint64_t wal_bytes_since_checkpoint = 0;
  uint64_t records = 0;                 // records logged since start
  uint64_t groups = 0;                  // write(2) calls (group commits)
  uint64_t fsyncs = 0;
  uint64_t fsync_micros_total = 0;
  uint64_t fsync_micros_max = 0;
  // fsync_buckets[i]: fsyncs that took at most kFsyncBucketMicros[i] and
  // more than the bound before it (not cumulative); the last: the rest.
  std::array<uint64_t, kFsyncBucketMicros.size() + 1> fsync_buckets{};
  uint64_t writes_refused_io = 0;       // records that could not be logged
  uint64_t checkpoints = 0;             // written since start
  uint64_t checkpoint_failures = 0;
  uint64_t last_checkpoint_unix_ms = 0;  // 0: none yet
  uint64_t last_checkpoint_bytes = 0;
  uint64_t last_checkpoint_micros = 0;
  uint64_t torn_tails_dropped = 0;      // at the last recovery
  RecoveryReport recovery;
};

struct CheckpointResult {
  std::string path;
  uint64_t wal_segment = 0;
  uint64_t bytes = 0;
  uint64_t micros = 0;
  uint64_t segments_removed = 0;
};

class Durability {
 public:
  // Takes the data directory's lock, recovers `engine` (which must hold no
  // state) from the newest valid checkpoint and the WAL after it, starts a
  // new segment and the log and checkpoint threads. IO_ERROR naming file and
  // offset when the log is corrupt (see DurabilityOptions::recovery_mode)
  // or no valid checkpoint remains and the WAL does not reach back far enough.
  // `fs`, `engine` and the executor's threads must outlive the Durability.
  static Result<std::unique_ptr<Durability>> Open(DurabilityOptions options, Engine& engine,
                                                  storage::FileSystem& fs, Executor executor);
  // Stops the threads after logging and syncing what was submitted.
  ~Durability();
  Durability(const Durability&) = delete;
  Durability& operator=(const Durability&) = delete;

  // Logs one write record. Once it is durable per the policy (or could not
  // be logged), `on_logged` runs on the executor with OK or the IO_ERROR
  // saying why; on OK it applies the write and acknowledges it. Thread-safe.
  // After Stop(): on_logged gets an error at once.
  void Submit(storage::RecordType type, std::string payload,
              std::function<void(Status)> on_logged);

  // Writes a checkpoint now and removes the WAL segments the previous one
  // covers (two checkpoints are kept, so a corrupt newest one falls back to
  // the one before and its WAL). Blocks; writes keep flowing meanwhile.
  // Only one runs at a time.
  // REQUIRES: not called on an executor thread (it waits for continuations
  // that run there); network handlers use CheckpointAsync.
  Result<CheckpointResult> Checkpoint();
  // Runs a checkpoint on the durability's own thread and calls `done` there.
  void CheckpointAsync(std::function<void(Result<CheckpointResult>)> done);

  DurabilityStats Stats() const;
  const RecoveryReport& recovery() const;

  // Logs and syncs what was submitted, then stops the threads. Idempotent.
  void Stop();

 private:
  class Impl;
  explicit Durability(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagcache::durability
