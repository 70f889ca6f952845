#include "tagcache/durability/durability.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "tagcache/protocol/bitmap.h"
#include "tagcache/storage/checkpoint.h"
#include "tagcache/storage/state_transfer.h"
#include "tagcache/storage/wal_records.h"

namespace tagcache::durability {

std::string_view FsyncPolicyName(FsyncPolicy policy) {
  switch (policy) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kBatch:
      return "batch";
    case FsyncPolicy::kNone:
      return "none";
  }
  return "?";
}

Result<FsyncPolicy> ParseFsyncPolicy(std::string_view text) {
  if (text == "always") return FsyncPolicy::kAlways;
  if (text == "batch") return FsyncPolicy::kBatch;
  if (text == "none") return FsyncPolicy::kNone;
  return Status::BadRequest("unknown fsync policy '" + std::string(text) +
                            "': expected always, batch or none");
}

namespace {

using Clock = std::chrono::steady_clock;

uint64_t MicrosSince(Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
}

uint64_t UnixMillis() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// An exclusive flock on <data_dir>/LOCK: two nodes appending to one log
// would interleave records and corrupt it. Released when the fd closes
// (including when the process dies), so a kill -9 never leaves it stale.
class DirLock {
 public:
  static Result<std::unique_ptr<DirLock>> Acquire(const std::string& dir) {
    const std::string path = dir + "/LOCK";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IoError("cannot open " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return Status::IoError("data directory " + dir +
                               " is in use by another tagcache-server (" + path + " is locked)");
      }
      return Status::IoError("cannot lock " + path + ": " + std::strerror(err));
    }
    return std::unique_ptr<DirLock>(new DirLock(fd));
  }
  ~DirLock() { ::close(fd_); }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace

class Durability::Impl {
 public:
  Impl(DurabilityOptions options, Engine& engine, storage::FileSystem& fs, Executor executor)
      : opts_(std::move(options)), engine_(engine), fs_(fs), executor_(std::move(executor)) {}

  ~Impl() { Stop(); }

  Status Open() {
    Status s = fs_.CreateDirs(opts_.data_dir);
    if (!s.ok()) return s;
    Result<std::unique_ptr<DirLock>> lock = DirLock::Acquire(opts_.data_dir);
    if (!lock.ok()) return lock.status();
    dir_lock_ = std::move(*lock);
    s = Recover();
    if (!s.ok()) return s;
    // Surface a full or read-only disk at start; writes retry anyway.
    Status seg = EnsureSegment();
    if (!seg.ok()) spdlog::warn("cannot start a WAL segment yet: {}", seg.message());
    log_thread_ = std::thread([this] { LogLoop(); });
    checkpoint_thread_ = std::thread([this] { CheckpointLoop(); });
    return Status::Ok();
  }

  // ---- Recovery ---------------------------------------------------------------

  Status Recover() {
    const Clock::time_point start = Clock::now();
    Result<std::vector<storage::CheckpointFileInfo>> checkpoints =
        storage::ListCheckpoints(fs_, opts_.data_dir);
    if (!checkpoints.ok()) return checkpoints.status();
    Result<std::vector<storage::WalSegmentInfo>> segments =
        storage::ListWalSegments(fs_, opts_.data_dir);
    if (!segments.ok()) return segments.status();

    const int threads = opts_.recovery_threads > 0
                            ? opts_.recovery_threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    uint64_t replay_from = 0;
    bool loaded = false;
    // Newest first; a corrupt one falls back to the one before and its WAL.
    // What a bad checkpoint merged before its damage stays: every record of
    // it is a genuine part of a state that the older checkpoint plus the log
    // after it also produce, and merging states is idempotent.
    for (auto it = checkpoints->rbegin(); it != checkpoints->rend(); ++it) {
      const Clock::time_point t0 = Clock::now();
      Result<storage::CheckpointLoadReport> r =
          storage::LoadCheckpoint(fs_, it->path, engine_, threads);
      if (!r.ok()) {
        spdlog::error("checkpoint {} is unusable, falling back to an older one: {}", it->path,
                      r.status().message());
        recovery_.checkpoints_skipped.push_back(it->path + ": " + r.status().message());
        continue;
      }
      recovery_.checkpoint = it->path;
      recovery_.checkpoint_bytes = r->bytes;
      recovery_.checkpoint_micros = MicrosSince(t0);
      replay_from = it->wal_segment;
      loaded = true;
      break;
    }

    // The log must reach back, without gaps, to where the checkpoint ends:
    // a missing segment is lost writes, never something to skip silently.
    uint64_t expected = replay_from;
    bool first = true;
    for (const storage::WalSegmentInfo& seg : *segments) {
      if (seg.number < replay_from) continue;
      if (first) {
        const bool reaches_back = loaded ? seg.number <= std::max<uint64_t>(replay_from, 1)
                                         : seg.number <= 1;
        if (!reaches_back) {
          return Status::IoError(
              "cannot recover " + opts_.data_dir + ": the WAL starts at segment " +
              std::to_string(seg.number) + " but " +
              (loaded ? "checkpoint " + recovery_.checkpoint + " ends at segment " +
                            std::to_string(replay_from)
                      : std::string("no valid checkpoint covers the segments before it")) +
              (recovery_.checkpoints_skipped.empty()
                   ? std::string()
                   : " (skipped: " + recovery_.checkpoints_skipped.front() + ")"));
        }
        first = false;
      } else if (seg.number != expected) {
        return Status::IoError("cannot recover " + opts_.data_dir + ": WAL segment " +
                               std::to_string(expected) + " is missing (found " +
                               std::to_string(seg.number) + " after it)");
      }
      expected = seg.number + 1;
    }
    if (!loaded && !checkpoints->empty() && segments->empty()) {
      return Status::IoError("cannot recover " + opts_.data_dir +
                             ": every checkpoint is unusable and there is no WAL to rebuild from (" +
                             recovery_.checkpoints_skipped.front() + ")");
    }

    // Writes accepted back then replay even if the clock has moved since.
    engine_.SetFutureCheck(false);
    const Clock::time_point t1 = Clock::now();
    Result<storage::WalReplayReport> replay = storage::ReplayWal(
        fs_, opts_.data_dir, replay_from, opts_.recovery_mode, /*repair=*/true,
        [this](const storage::Record& record) { return Replay(record); });
    engine_.SetFutureCheck(true);
    if (!replay.ok()) return replay.status();
    recovery_.wal = std::move(*replay);
    recovery_.replay_micros = MicrosSince(t1);
    recovery_.total_micros = MicrosSince(start);
    for (const storage::WalDamage& torn : recovery_.wal.torn_tails) {
      spdlog::warn("WAL: dropped a torn tail of {} bytes at offset {} of {} ({}): a write that was "
                   "never acknowledged",
                   torn.dropped_bytes, torn.offset, torn.path, torn.reason);
    }
    if (recovery_.wal.corruption) {
      const storage::WalDamage& c = *recovery_.wal.corruption;
      spdlog::error("WAL: kept the valid prefix; dropped {} bytes from offset {} of {} and every "
                    "later segment's records ({})",
                    c.dropped_bytes, c.offset, c.path, c.reason);
    }
    // Listed again: keeping a valid prefix sets later segments aside, and the
    // next segment must follow the last one kept, or the log would have a gap.
    Result<std::vector<storage::WalSegmentInfo>> kept =
        storage::ListWalSegments(fs_, opts_.data_dir);
    if (!kept.ok()) return kept.status();
    uint64_t next = std::max<uint64_t>(replay_from, 1);
    if (!kept->empty()) next = std::max(next, kept->back().number + 1);
    next_segment_ = next;
    return Status::Ok();
  }

  Status Replay(const storage::Record& record) {
    switch (static_cast<storage::RecordType>(record.type & ~storage::kSkippableBit)) {
      case storage::RecordType::kEvents: {
        Result<std::vector<Event>> events = storage::DecodeEvents(record.payload);
        if (!events.ok()) return events.status();
        if (!engine_.ApplyEvents(*events).ok()) ++recovery_.records_refused;
        return Status::Ok();
      }
      case storage::RecordType::kSnapshotPart: {
        Result<storage::SnapshotPartRecord> part = storage::DecodeSnapshotPart(record.payload);
        if (!part.ok()) return part.status();
        Result<Roaring> members = protocol::ReadPortableBitmap(
            part->bitmap.data(), part->bitmap.size(), uint64_t{1} << engine_.shard_bits());
        if (!members.ok()) {
          return Status::IoError("snapshot record at offset " + std::to_string(record.offset) +
                                 ": " + members.status().message());
        }
        // A stale part was refused live too (and answered so); still logged
        // because staleness depends on the state, not on the request.
        if (!engine_.ApplySnapshot(part->tag, part->ts, part->shard, *members).ok()) {
          ++recovery_.records_refused;
        }
        return Status::Ok();
      }
      case storage::RecordType::kSnapshotCommit: {
        Result<storage::SnapshotCommitRecord> commit =
            storage::DecodeSnapshotCommit(record.payload);
        if (!commit.ok()) return commit.status();
        Result<CommitOutcome> outcome =
            engine_.CommitSnapshot(commit->tag, commit->ts, commit->shards);
        if (!outcome.ok() || !outcome->missing_shards.empty()) ++recovery_.records_refused;
        return Status::Ok();
      }
      case storage::RecordType::kMergeShard: {
        Result<storage::ShardTransfer> transfer =
            storage::DecodeShardTransfer(record.payload, engine_.shard_bits());
        if (!transfer.ok()) {
          return Status::IoError("merge record at offset " + std::to_string(record.offset) +
                                 ": " + transfer.status().message());
        }
        // Decoded states always merge; a refusal would mean an engine bug,
        // counted like the other records' refusals rather than stopping recovery.
        if (!engine_.MergeTags(transfer->tags).ok() || !engine_.MergeShard(transfer->state).ok()) {
          ++recovery_.records_refused;
        }
        return Status::Ok();
      }
      default:
        return Status::IoError("unexpected WAL record type " + std::to_string(record.type) +
                               " at offset " + std::to_string(record.offset));
    }
  }

  // ---- Logging ----------------------------------------------------------------

  void Submit(storage::RecordType type, std::string payload,
              std::function<void(Status)> on_logged) {
    {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        storage::AppendRecord(type, payload, buffer_);
        callbacks_.push_back(std::move(on_logged));
        work_cv_.notify_one();
        return;
      }
    }
    on_logged(Status::Overloaded("the node is shutting down: the write was not logged"));
  }

  // REQUIRES: called on the log thread (or before it starts).
  Status EnsureSegment() {
    if (segment_ && !segment_->broken() && segment_->size() < opts_.segment_bytes) {
      return Status::Ok();
    }
    return StartSegment();
  }

  Status StartSegment() {
    if (segment_) {
      // Under kNone nothing was synced yet; a closed segment is never written again.
      if (!segment_->broken()) {
        if (opts_.fsync == FsyncPolicy::kNone) (void)segment_->Sync();  // best effort: kNone promises nothing
      }
      (void)segment_->Close();  // the records that matter were synced (or refused)
      segment_.reset();
    }
    Result<std::unique_ptr<storage::WalSegmentWriter>> created =
        storage::WalSegmentWriter::Create(fs_, opts_.data_dir, next_segment_.load());
    if (!created.ok()) return created.status();
    segment_ = std::move(*created);
    ++next_segment_;
    return Status::Ok();
  }

  Status WriteGroup(const std::string& framed) {
    Status s = EnsureSegment();
    if (!s.ok()) return LogFailure(s);
    s = segment_->Append(framed);
    if (!s.ok()) {
      // Append cut the segment back to a record boundary, so the next group
      // may use it; a segment it could not cut is abandoned.
      if (segment_->broken()) {
        (void)segment_->Close();  // already failed; the next group starts a new segment
        segment_.reset();
      }
      return LogFailure(s);
    }
    if (opts_.fsync != FsyncPolicy::kNone) {
      const Clock::time_point t0 = Clock::now();
      s = segment_->Sync();
      const uint64_t micros = MicrosSince(t0);
      {
        std::lock_guard lock(stats_mu_);
        ++stats_.fsyncs;
        stats_.fsync_micros_total += micros;
        stats_.fsync_micros_max = std::max(stats_.fsync_micros_max, micros);
        const auto bucket = std::lower_bound(kFsyncBucketMicros.begin(),
                                             kFsyncBucketMicros.end(), micros);
        ++stats_.fsync_buckets[static_cast<size_t>(bucket - kFsyncBucketMicros.begin())];
      }
      if (!s.ok()) {
        // After a failed fsync the kernel may have dropped the dirty pages
        // (PostgreSQL's "fsyncgate"): nothing in this segment past its last
        // good sync can be trusted, so the next group starts a new one.
        (void)segment_->Close();  // the sync already failed
        segment_.reset();
        return LogFailure(s);
      }
    }
    std::lock_guard lock(stats_mu_);
    stats_.wal_bytes += framed.size();
    stats_.wal_bytes_since_checkpoint += framed.size();
    ++stats_.groups;
    return Status::Ok();
  }

  static Status LogFailure(const Status& cause) {
    return Status::IoError("the write could not be logged, so it was not applied: " +
                           cause.message() +
                           " (reads keep working; writes succeed again once the log can be written)");
  }

  void LogLoop() {
    std::unique_lock lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stopping_ || roll_requested_ || !callbacks_.empty(); });
      if (opts_.fsync == FsyncPolicy::kBatch && !callbacks_.empty() && !stopping_ &&
          !roll_requested_) {
        // At most one fsync per batch_interval: writers arriving meanwhile
        // share it. A write to an idle log is synced at once, so the delay
        // a write sees is bounded by the interval plus one fsync.
        work_cv_.wait_until(lock, last_group_start_ + opts_.batch_interval,
                            [&] { return stopping_ || roll_requested_; });
      }
      last_group_start_ = Clock::now();
      std::string framed;
      framed.swap(buffer_);
      std::vector<std::function<void(Status)>> callbacks;
      callbacks.swap(callbacks_);
      const bool roll = roll_requested_;
      lock.unlock();

      Status status;
      uint64_t segment = 0;
      if (!callbacks.empty()) {
        status = WriteGroup(framed);
        segment = segment_ ? segment_->number() : 0;
      }
      Status roll_status;
      uint64_t rolled_to = 0;
      if (roll) {
        roll_status = StartSegment();
        if (roll_status.ok()) rolled_to = segment_->number();
        // Bytes from here on are in segments the coming checkpoint does not cover.
        std::lock_guard stats_lock(stats_mu_);
        bytes_at_checkpoint_start_ = stats_.wal_bytes;
      }

      lock.lock();
      if (!callbacks.empty()) {
        outstanding_[segment] += callbacks.size();
        records_total_ += callbacks.size();
        if (!status.ok()) refused_total_ += callbacks.size();
      }
      if (roll) {
        roll_requested_ = false;
        roll_status_ = roll_status;
        rolled_to_ = rolled_to;
        ++roll_generation_;
        done_cv_.notify_all();
      }
      lock.unlock();
      if (!status.ok()) spdlog::error("WAL: {}", status.message());
      for (auto& callback : callbacks) {
        executor_([this, callback = std::move(callback), status, segment] {
          callback(status);
          FinishContinuation(segment);
        });
      }
      lock.lock();
      if (stopping_ && callbacks_.empty() && !roll_requested_) break;
    }
    log_stopped_ = true;
    done_cv_.notify_all();
  }

  void FinishContinuation(uint64_t segment) {
    std::lock_guard lock(mu_);
    auto it = outstanding_.find(segment);
    if (it != outstanding_.end() && --it->second == 0) outstanding_.erase(it);
    done_cv_.notify_all();
  }

  // ---- Checkpoints ------------------------------------------------------------

  Result<CheckpointResult> Checkpoint() {
    std::lock_guard checkpoint_lock(checkpoint_mu_);
    const Clock::time_point start = Clock::now();
    uint64_t cover;  // the checkpoint covers every record in segments < cover
    {
      std::unique_lock lock(mu_);
      if (stopping_) return Status::Overloaded("the node is shutting down");
      const uint64_t generation = roll_generation_;
      roll_requested_ = true;
      work_cv_.notify_one();
      done_cv_.wait(lock, [&] { return roll_generation_ != generation || log_stopped_; });
      if (roll_generation_ == generation) return Status::Overloaded("the node is shutting down");
      if (!roll_status_.ok()) return CheckpointFailed(roll_status_);
      cover = rolled_to_;
      // Records logged before the roll must be in the engine before it is read.
      done_cv_.wait(lock, [&] {
        return outstanding_.empty() || outstanding_.begin()->first >= cover;
      });
    }
    Result<storage::CheckpointWriteReport> written =
        storage::WriteCheckpoint(fs_, opts_.data_dir, cover, engine_);
    if (!written.ok()) return CheckpointFailed(written.status());

    CheckpointResult result;
    result.path = written->path;
    result.wal_segment = cover;
    result.bytes = written->bytes;
    // Keep this checkpoint and the one before it, with the WAL from the one
    // before: if this one turns out unreadable, recovery still has a path.
    Result<std::vector<storage::CheckpointFileInfo>> all =
        storage::ListCheckpoints(fs_, opts_.data_dir);
    if (all.ok() && all->size() >= 2) {
      const uint64_t keep_from = (*all)[all->size() - 2].wal_segment;
      for (size_t i = 0; i + 2 < all->size(); ++i) {
        Status removed = fs_.Remove((*all)[i].path);
        if (!removed.ok()) spdlog::warn("cannot remove old checkpoint: {}", removed.message());
      }
      Result<uint64_t> n = storage::RemoveWalSegmentsBelow(fs_, opts_.data_dir, keep_from);
      if (n.ok()) {
        result.segments_removed = *n;
      } else {
        spdlog::warn("cannot remove covered WAL segments: {}", n.status().message());
      }
    }
    result.micros = MicrosSince(start);
    {
      std::lock_guard lock(stats_mu_);
      ++stats_.checkpoints;
      stats_.wal_bytes_since_checkpoint = stats_.wal_bytes - bytes_at_checkpoint_start_;
      stats_.last_checkpoint_unix_ms = UnixMillis();
      stats_.last_checkpoint_bytes = result.bytes;
      stats_.last_checkpoint_micros = result.micros;
      last_checkpoint_time_ = Clock::now();
    }
    spdlog::info("checkpoint {} written: {} bytes in {} ms, {} WAL segment(s) removed",
                 result.path, result.bytes, result.micros / 1000, result.segments_removed);
    return result;
  }

  Status CheckpointFailed(const Status& cause) {
    {
      std::lock_guard lock(stats_mu_);
      ++stats_.checkpoint_failures;
    }
    return Status::IoError("checkpoint failed: " + cause.message());
  }

  void CheckpointAsync(std::function<void(Result<CheckpointResult>)> done) {
    {
      std::lock_guard lock(checkpoint_loop_mu_);
      if (!checkpoint_loop_stop_) {
        checkpoint_requests_.push_back(std::move(done));
        checkpoint_loop_cv_.notify_all();
        return;
      }
    }
    done(Status::Overloaded("the node is shutting down"));
  }

  // Runs requested and periodic checkpoints. Requests come here rather than
  // running on a worker because a checkpoint waits for continuations that
  // need the workers.
  void CheckpointLoop() {
    std::unique_lock lock(checkpoint_loop_mu_);
    Clock::time_point retry_after = Clock::now();
    while (!checkpoint_loop_stop_) {
      checkpoint_loop_cv_.wait_for(lock, std::chrono::milliseconds(200));
      if (checkpoint_loop_stop_) break;
      if (!checkpoint_requests_.empty()) {
        std::vector<std::function<void(Result<CheckpointResult>)>> requests;
        requests.swap(checkpoint_requests_);
        lock.unlock();
        // One checkpoint answers every request that was waiting for it.
        Result<CheckpointResult> r = Checkpoint();
        for (auto& done : requests) done(r);
        lock.lock();
        continue;
      }
      if (Clock::now() < retry_after) continue;
      bool due = false;
      {
        std::lock_guard stats_lock(stats_mu_);
        const uint64_t pending = stats_.wal_bytes_since_checkpoint;
        if (opts_.checkpoint_wal_bytes > 0 && pending >= opts_.checkpoint_wal_bytes) due = true;
        if (opts_.checkpoint_interval.count() > 0 && pending > 0 &&
            Clock::now() - last_checkpoint_time_ >= opts_.checkpoint_interval) {
          due = true;
        }
      }
      if (!due) continue;
      lock.unlock();
      Result<CheckpointResult> r = Checkpoint();
      lock.lock();
      if (!r.ok()) {
        spdlog::error("periodic {}; retrying in 10 s", r.status().message());
        retry_after = Clock::now() + std::chrono::seconds(10);
      }
    }
  }

  // ---- Stats and shutdown -----------------------------------------------------

  DurabilityStats Stats() const {
    DurabilityStats out;
    {
      std::lock_guard lock(stats_mu_);
      out = stats_;
    }
    {
      std::lock_guard lock(mu_);
      out.records = records_total_;
      out.writes_refused_io = refused_total_;
      const uint64_t next = next_segment_.load(std::memory_order_relaxed);
      out.wal_segment = next > 0 ? next - 1 : 0;
    }
    out.fsync = opts_.fsync;
    out.torn_tails_dropped = recovery_.wal.torn_tails.size();
    out.recovery = recovery_;
    return out;
  }

  void Stop() {
    {
      std::lock_guard lock(checkpoint_loop_mu_);
      checkpoint_loop_stop_ = true;
      checkpoint_loop_cv_.notify_all();
    }
    if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
    for (auto& done : checkpoint_requests_) done(Status::Overloaded("the node is shutting down"));
    checkpoint_requests_.clear();
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      work_cv_.notify_all();
    }
    if (log_thread_.joinable()) log_thread_.join();
    {
      // Continuations touch the engine and this object: wait for them.
      std::unique_lock lock(mu_);
      done_cv_.wait(lock, [&] { return outstanding_.empty(); });
    }
    if (segment_) {
      if (opts_.fsync == FsyncPolicy::kNone) (void)segment_->Sync();  // best effort on a clean stop
      (void)segment_->Close();  // every acknowledged record was already synced per policy
      segment_.reset();
    }
  }

  const RecoveryReport& recovery() const { return recovery_; }

 private:
  const DurabilityOptions opts_;
  Engine& engine_;
  storage::FileSystem& fs_;
  const Executor executor_;
  std::unique_ptr<DirLock> dir_lock_;
  RecoveryReport recovery_;

  // Submitters, the log thread and checkpoints meet here.
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the log thread waits for work
  std::condition_variable done_cv_;  // rolls done, continuations finished, log stopped
  std::string buffer_;               // framed records not yet written
  std::vector<std::function<void(Status)>> callbacks_;  // one per record in buffer_
  Clock::time_point last_group_start_;  // log thread only
  bool stopping_ = false;
  bool log_stopped_ = false;
  bool roll_requested_ = false;
  uint64_t roll_generation_ = 0;
  Status roll_status_;
  uint64_t rolled_to_ = 0;
  std::map<uint64_t, uint64_t> outstanding_;  // segment -> continuations not finished
  uint64_t records_total_ = 0;
  uint64_t refused_total_ = 0;
  // Written by the log thread (and Open before it starts); Stats() reads it.
  std::atomic<uint64_t> next_segment_{1};

  // Owned by the log thread once it runs.
  std::unique_ptr<storage::WalSegmentWriter> segment_;
  std::thread log_thread_;

  std::mutex checkpoint_mu_;  // one checkpoint at a time
  std::mutex checkpoint_loop_mu_;
  std::condition_variable checkpoint_loop_cv_;
  bool checkpoint_loop_stop_ = false;
  std::vector<std::function<void(Result<CheckpointResult>)>> checkpoint_requests_;
  std::thread checkpoint_thread_;

  mutable std::mutex stats_mu_;
  DurabilityStats stats_;
  uint64_t bytes_at_checkpoint_start_ = 0;
  Clock::time_point last_checkpoint_time_ = Clock::now();
};

Result<std::unique_ptr<Durability>> Durability::Open(DurabilityOptions options, Engine& engine,
                                                     storage::FileSystem& fs, Executor executor) {
  auto impl = std::make_unique<Impl>(std::move(options), engine, fs, std::move(executor));
  Status s = impl->Open();
  if (!s.ok()) return s;
  return std::unique_ptr<Durability>(new Durability(std::move(impl)));
}

Durability::Durability(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Durability::~Durability() = default;

void Durability::Submit(storage::RecordType type, std::string payload,
                        std::function<void(Status)> on_logged) {
  impl_->Submit(type, std::move(payload), std::move(on_logged));
}

Result<CheckpointResult> Durability::Checkpoint() { return impl_->Checkpoint(); }
void Durability::CheckpointAsync(std::function<void(Result<CheckpointResult>)> done) {
  impl_->CheckpointAsync(std::move(done));
}
DurabilityStats Durability::Stats() const { return impl_->Stats(); }
const RecoveryReport& Durability::recovery() const { return impl_->recovery(); }
void Durability::Stop() { impl_->Stop(); }

}  // namespace tagcache::durability
