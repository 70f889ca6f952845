// The durability layer in process: what each fsync policy promises about
// acknowledged writes under simulated power loss, group commit, disk full
// and fsync failures, checkpoints, and recovery from damaged files.
#include "tagcache/durability/durability.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tagcache/storage/checkpoint.h"
#include "tagcache/storage/file_system.h"
#include "tagcache/storage/state_transfer.h"
#include "tagcache/storage/wal.h"
#include "tagcache/storage/wal_records.h"

#include "common/temp_dir.h"

namespace tagcache::durability {
namespace {

using storage::FaultInjectionFileSystem;
using storage::FileSystem;

// One temp dir per test, removed afterwards.
class TempDir : public tagcache::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("tc-durability") {}
};

EngineOptions SmallEngine() {
  EngineOptions o;
  o.shard_bits = 8;
  o.query_threads = 1;
  return o;
}

// Runs continuations on the log thread: enough for tests, and it makes
// "the callback ran" mean "the log thread is past this group".
Executor Inline() {
  return [](std::function<void()> fn) { fn(); };
}

// Logs `events` and applies them once logged, as the node does. Blocks.
Status Write(Durability& d, Engine& engine, const std::vector<Event>& events) {
  std::promise<Status> done;
  d.Submit(storage::RecordType::kEvents, storage::EncodeEvents(events), [&](Status s) {
    if (s.ok()) s = engine.ApplyEvents(events).status();
    done.set_value(s);
  });
  return done.get_future().get();
}

Event Set(UserId user, std::string tag, Timestamp ts) { return Event{user, std::move(tag), TagOp::kSet, ts}; }

struct Opened {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Durability> durability;
};

Result<Opened> Open(const std::string& dir, FileSystem& fs, DurabilityOptions options = {}) {
  options.data_dir = dir;
  Opened out;
  out.engine = std::make_unique<Engine>(SmallEngine());
  auto d = Durability::Open(options, *out.engine, fs, Inline());
  if (!d.ok()) return d.status();
  out.durability = std::move(*d);
  return out;
}

DurabilityOptions Policy(FsyncPolicy policy) {
  DurabilityOptions o;
  o.fsync = policy;
  o.batch_interval = std::chrono::milliseconds(5);
  o.checkpoint_interval = std::chrono::seconds(0);
  o.checkpoint_wal_bytes = 0;
  return o;
}

bool HasTag(const Engine& engine, UserId user, std::string_view tag) {
  for (const TagHit& hit : engine.GetTags(user)) {
    if (hit.tag == tag) return true;
  }
  return false;
}

TEST(DurabilityTest, AlwaysAcknowledgesOnlyAfterAnFsyncCoversTheWrite) {
  TempDir dir;
  auto posix = storage::NewPosixFileSystem();
  FaultInjectionFileSystem fs(*posix);
  auto opened = Open(dir.path(), fs, Policy(FsyncPolicy::kAlways));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const uint64_t syncs_before = fs.syncs();
  std::promise<uint64_t> syncs_at_ack;
  std::vector<Event> events = {Set(1, "a", 10)};
  opened->durability->Submit(storage::RecordType::kEvents, storage::EncodeEvents(events),
                             [&](Status s) {
                               EXPECT_TRUE(s.ok()) << s.ToString();
                               syncs_at_ack.set_value(fs.syncs());
                             });
  EXPECT_GT(syncs_at_ack.get_future().get(), syncs_before);
}

// Power loss with `always`: every acknowledged write from 8 concurrent
// writers survives DropUnsyncedData.
TEST(DurabilityTest, AlwaysKeepsEveryAcknowledgedWriteThroughPowerLoss) {
  TempDir dir;
  auto posix = storage::NewPosixFileSystem();
  FaultInjectionFileSystem fs(*posix);
  std::set<UserId> acked;
  {
    auto opened = Open(dir.path(), fs, Policy(FsyncPolicy::kAlways));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    std::mutex mu;
    std::vector<std::thread> writers;
    for (int w = 0; w < 8; ++w) {
      writers.emplace_back([&, w] {
        for (int i = 0; i < 50; ++i) {
          UserId user = static_cast<UserId>(w) * 1000 + i;
          if (Write(*opened->durability, *opened->engine, {Set(user, "t", 100)}).ok()) {
            std::lock_guard lock(mu);
            acked.insert(user);
          }
        }
      });
    }
    for (auto& t : writers) t.join();
    // Group commit: writers waiting together shared fsyncs.
    DurabilityStats stats = opened->durability->Stats();
    EXPECT_EQ(stats.records, 400u);
    EXPECT_LT(stats.fsyncs, stats.records);
    // Every fsync lands in exactly one latency bucket (the metrics' histogram).
    uint64_t bucketed = 0;
    for (uint64_t n : stats.fsync_buckets) bucketed += n;
    EXPECT_EQ(bucketed, stats.fsyncs);
    EXPECT_GE(stats.fsyncs, 1u);
    ASSERT_TRUE(fs.DropUnsyncedData().ok());
  }
  auto reopened = Open(dir.path(), fs, Policy(FsyncPolicy::kAlways));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(acked.size(), 400u);
  for (UserId u : acked) EXPECT_TRUE(HasTag(*reopened->engine, u, "t")) << "lost user " << u;
}

// `none` acknowledges before any fsync, as documented: power loss may lose
// acknowledged writes, but never invents any.
TEST(DurabilityTest, NoneAcknowledgesWithoutFsyncAndPowerLossMayLoseWrites) {
  TempDir dir;
  auto posix = storage::NewPosixFileSystem();
  FaultInjectionFileSystem fs(*posix);
  {
    auto opened = Open(dir.path(), fs, Policy(FsyncPolicy::kNone));
    ASSERT_TRUE(opened.ok());
    const uint64_t syncs = fs.syncs();
    for (UserId u = 0; u < 20; ++u) {
      ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(u, "t", 5)}).ok());
    }
    EXPECT_EQ(fs.syncs(), syncs);  // no fsync on the write path
    ASSERT_TRUE(fs.DropUnsyncedData().ok());
  }
  auto reopened = Open(dir.path(), fs, Policy(FsyncPolicy::kNone));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(reopened->engine->Stats().assignments, 0u);
}

TEST(DurabilityTest, BatchSharesOneFsyncAmongWritersOfAnInterval) {
  TempDir dir;
  auto posix = storage::NewPosixFileSystem();
  FaultInjectionFileSystem fs(*posix);
  DurabilityOptions options = Policy(FsyncPolicy::kBatch);
  options.batch_interval = std::chrono::milliseconds(50);
  auto opened = Open(dir.path(), fs, options);
  ASSERT_TRUE(opened.ok());
  std::vector<std::thread> writers;
  std::atomic<int> ok{0};
  for (int w = 0; w < 32; ++w) {
    writers.emplace_back([&, w] {
      if (Write(*opened->durability, *opened->engine, {Set(static_cast<UserId>(w), "t", 5)}).ok()) {
        ++ok;
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(ok.load(), 32);
  EXPECT_LE(opened->durability->Stats().fsyncs, 8u);
  EXPECT_GE(opened->durability->Stats().fsyncs, 1u);
}

TEST(DurabilityTest, FsyncFailureRefusesTheWriteAndLaterWritesSucceed) {
  TempDir dir;
  auto posix = storage::NewPosixFileSystem();
  FaultInjectionFileSystem fs(*posix);
  {
    auto opened = Open(dir.path(), fs, Policy(FsyncPolicy::kAlways));
    ASSERT_TRUE(opened.ok());
    fs.SetSyncFailure(true);
    Status refused = Write(*opened->durability, *opened->engine, {Set(1, "t", 5)});
    EXPECT_EQ(refused.code(), StatusCode::kIoError);
    EXPECT_NE(refused.message().find("could not be logged"), std::string::npos) << refused.message();
    EXPECT_FALSE(HasTag(*opened->engine, 1, "t"));  // refused: not applied
    fs.SetSyncFailure(false);
    EXPECT_TRUE(Write(*opened->durability, *opened->engine, {Set(2, "t", 5)}).ok());
    EXPECT_EQ(opened->durability->Stats().writes_refused_io, 1u);
  }
  auto reopened = Open(dir.path(), fs, Policy(FsyncPolicy::kAlways));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_TRUE(HasTag(*reopened->engine, 2, "t"));
}

TEST(DurabilityTest, DiskFullRefusesWritesKeepsReadsAndRecoversWhenSpaceReturns) {
  TempDir dir;
  auto posix = storage::NewPosixFileSystem();
  FaultInjectionFileSystem fs(*posix);
  {
    auto opened = Open(dir.path(), fs, Policy(FsyncPolicy::kAlways));
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(1, "t", 5)}).ok());
    fs.SetSpaceLimit(40);  // less than one record: ENOSPC mid-record
    std::vector<Event> big;
    for (UserId u = 100; u < 200; ++u) big.push_back(Set(u, "t", 6));
    Status full = Write(*opened->durability, *opened->engine, big);
    EXPECT_EQ(full.code(), StatusCode::kIoError);
    EXPECT_NE(full.message().find("No space left"), std::string::npos) << full.message();
    EXPECT_TRUE(HasTag(*opened->engine, 1, "t"));  // reads keep working
    EXPECT_FALSE(HasTag(*opened->engine, 150, "t"));
    fs.SetSpaceLimit(std::nullopt);
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, big).ok());
    ASSERT_TRUE(fs.DropUnsyncedData().ok());
  }
  // Strict recovery: the refused half-record was cut away, the log is clean.
  auto reopened = Open(dir.path(), fs, Policy(FsyncPolicy::kAlways));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_TRUE(HasTag(*reopened->engine, 1, "t"));
  EXPECT_TRUE(HasTag(*reopened->engine, 150, "t"));
  EXPECT_TRUE(reopened->durability->recovery().wal.torn_tails.empty());
}

// Writes of every kind, to be checkpointed and replayed.
void WriteMix(Durability& d, Engine& engine, Timestamp base) {
  ASSERT_TRUE(Write(d, engine, {Set(1, "a", base + 1), Set(300, "b", base + 1)}).ok());
  Roaring part;
  part.add(5);
  part.add(7);
  std::string bytes(part.getSizeInBytes(true), '\0');
  part.write(bytes.data(), true);
  std::promise<void> logged;
  d.Submit(storage::RecordType::kSnapshotPart, storage::EncodeSnapshotPart("s", base + 2, 2, bytes),
           [&](Status s) {
             EXPECT_TRUE(s.ok());
             (void)engine.ApplySnapshot("s", base + 2, 2, part);  // stale parts are fine here
             logged.set_value();
           });
  logged.get_future().get();
  std::vector<uint64_t> shards = {2, 9};  // 9 never received: reported, kept
  std::promise<void> committed;
  d.Submit(storage::RecordType::kSnapshotCommit, storage::EncodeSnapshotCommit("s", base + 2, shards),
           [&](Status s) {
             EXPECT_TRUE(s.ok());
             (void)engine.CommitSnapshot("s", base + 2, shards);
             committed.set_value();
           });
  committed.get_future().get();
  ASSERT_TRUE(Write(d, engine, {Event{1, "a", TagOp::kClear, base + 3}, Set(2 * 256 + 9, "s", base + 3)}).ok());
}

TEST(DurabilityTest, CheckpointPlusWalReplayRestoresTheExactState) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  uint64_t digest = 0;
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
    ASSERT_TRUE(opened.ok());
    WriteMix(*opened->durability, *opened->engine, 100);
    auto c1 = opened->durability->Checkpoint();
    ASSERT_TRUE(c1.ok()) << c1.status().ToString();
    WriteMix(*opened->durability, *opened->engine, 200);
    auto c2 = opened->durability->Checkpoint();
    ASSERT_TRUE(c2.ok()) << c2.status().ToString();
    WriteMix(*opened->durability, *opened->engine, 300);
    auto c3 = opened->durability->Checkpoint();
    ASSERT_TRUE(c3.ok()) << c3.status().ToString();
    EXPECT_GT(c3->segments_removed, 0u);  // segments before checkpoint 2 are gone
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(77, "late", 400)}).ok());
    digest = opened->engine->StateDigest();
  }
  auto checkpoints = storage::ListCheckpoints(*fs, dir.path());
  ASSERT_TRUE(checkpoints.ok());
  EXPECT_EQ(checkpoints->size(), 2u);  // the newest and the one before
  auto reopened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(reopened->engine->StateDigest(), digest);
  EXPECT_FALSE(reopened->durability->recovery().checkpoint.empty());
  EXPECT_TRUE(HasTag(*reopened->engine, 77, "late"));
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

TEST(DurabilityTest, CorruptNewestCheckpointFallsBackToThePreviousOneAndItsWal) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  uint64_t digest = 0;
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
    ASSERT_TRUE(opened.ok());
    WriteMix(*opened->durability, *opened->engine, 100);
    ASSERT_TRUE(opened->durability->Checkpoint().ok());
    WriteMix(*opened->durability, *opened->engine, 200);
    ASSERT_TRUE(opened->durability->Checkpoint().ok());
    WriteMix(*opened->durability, *opened->engine, 300);
    digest = opened->engine->StateDigest();
  }
  auto checkpoints = storage::ListCheckpoints(*fs, dir.path());
  ASSERT_TRUE(checkpoints.ok());
  ASSERT_EQ(checkpoints->size(), 2u);
  FlipByte(checkpoints->back().path, checkpoints->back().bytes / 2);
  auto reopened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(reopened->engine->StateDigest(), digest);
  ASSERT_EQ(reopened->durability->recovery().checkpoints_skipped.size(), 1u);
  EXPECT_EQ(reopened->durability->recovery().checkpoint, checkpoints->front().path);
}

std::string LastSegment(FileSystem& fs, const std::string& dir) {
  auto segments = storage::ListWalSegments(fs, dir);
  EXPECT_TRUE(segments.ok());
  // The newest segment may be an empty one started at the end; pick the
  // newest that holds records.
  for (auto it = segments->rbegin(); it != segments->rend(); ++it) {
    if (it->bytes > 64) return it->path;
  }
  return segments->back().path;
}

TEST(DurabilityTest, MidLogCorruptionStopsTheStartNamingFileAndOffset) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
    ASSERT_TRUE(opened.ok());
    for (UserId u = 0; u < 10; ++u) {
      ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(u, "t", 5)}).ok());
    }
  }
  const std::string segment = LastSegment(*fs, dir.path());
  auto size = fs->FileSize(segment);
  ASSERT_TRUE(size.ok());
  FlipByte(segment, *size / 2);
  auto strict = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.status().code(), StatusCode::kIoError);
  EXPECT_NE(strict.status().message().find(segment), std::string::npos) << strict.status().message();
  EXPECT_NE(strict.status().message().find("offset"), std::string::npos);

  DurabilityOptions keep = Policy(FsyncPolicy::kAlways);
  keep.recovery_mode = storage::WalRecoveryMode::kKeepValidPrefix;
  auto kept = Open(dir.path(), *fs, keep);
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_TRUE(kept->durability->recovery().wal.corruption.has_value());
  EXPECT_TRUE(HasTag(*kept->engine, 0, "t"));  // records before the damage are kept
  EXPECT_LT(kept->engine->Stats().assignments, 10u);
}

TEST(DurabilityTest, TornTailIsDroppedReportedAndCounted) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(1, "t", 5)}).ok());
  }
  const std::string segment = LastSegment(*fs, dir.path());
  {
    // Half of a record: the write a crash interrupted.
    std::string framed;
    storage::AppendRecord(storage::RecordType::kEvents, storage::EncodeEvents(std::vector<Event>{Set(2, "t", 6)}), framed);
    std::ofstream out(segment, std::ios::app | std::ios::binary);
    out.write(framed.data(), static_cast<std::streamsize>(framed.size() / 2));
  }
  auto reopened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(reopened->durability->Stats().torn_tails_dropped, 1u);
  EXPECT_TRUE(HasTag(*reopened->engine, 1, "t"));
  EXPECT_FALSE(HasTag(*reopened->engine, 2, "t"));
}

TEST(DurabilityTest, ReplayingTheLogTwiceIsHarmless) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  uint64_t digest = 0;
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
    ASSERT_TRUE(opened.ok());
    WriteMix(*opened->durability, *opened->engine, 100);
    WriteMix(*opened->durability, *opened->engine, 50);  // older writes after newer ones
    digest = opened->engine->StateDigest();
  }
  // Duplicate every segment's records into a new, later segment: the log
  // now holds each write twice.
  auto segments = storage::ListWalSegments(*fs, dir.path());
  ASSERT_TRUE(segments.ok());
  std::string copy;
  auto replay = storage::ReplayWal(*fs, dir.path(), 0, storage::WalRecoveryMode::kStrict, false,
                                   [&](const storage::Record& r) {
                                     storage::AppendRecord(r.type, r.payload, copy);
                                     return Status::Ok();
                                   });
  ASSERT_TRUE(replay.ok());
  ASSERT_GT(replay->records, 0u);
  auto writer = storage::WalSegmentWriter::Create(*fs, dir.path(), segments->back().number + 1);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(copy).ok());
  ASSERT_TRUE((*writer)->Sync().ok());
  ASSERT_TRUE((*writer)->Close().ok());
  auto reopened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(reopened->durability->recovery().wal.records, 2 * replay->records);
  EXPECT_EQ(reopened->engine->StateDigest(), digest);
}

// Logs one shard of `from` as a kMergeShard record and merges it once
// logged, as the node does for a repair or a shard moving in. Blocks.
Status LogMerge(Durability& d, Engine& engine, const Engine& from, uint64_t shard) {
  std::string bytes = storage::EncodeShardTransfer(from.ExportTags(), from.ExportShard(shard));
  Result<storage::ShardTransfer> transfer = storage::DecodeShardTransfer(bytes, engine.shard_bits());
  if (!transfer.ok()) return transfer.status();
  std::promise<Status> done;
  d.Submit(storage::RecordType::kMergeShard, std::move(bytes), [&](Status s) {
    if (s.ok()) s = engine.MergeTags(transfer->tags);
    if (s.ok()) s = engine.MergeShard(transfer->state);
    done.set_value(s);
  });
  return done.get_future().get();
}

TEST(DurabilityTest, MergedShardsSurviveARestart) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  // Another node's state: a shard this node also holds (2) and one it
  // does not (5), with a commit's floors and overrides on both.
  Engine other(SmallEngine());
  ASSERT_TRUE(other.ApplyFullSnapshot("m", 150, std::vector<UserId>{2 * 256 + 1, 5 * 256 + 3, 7 * 256 + 4}).ok());
  ASSERT_TRUE(other.ApplyEvents(std::vector<Event>{Set(2 * 256 + 9, "s", 500), Event{5 * 256 + 3, "m", TagOp::kClear, 160},
                                 Set(5 * 256 + 8, "x", 20)})
                  .ok());
  uint64_t digest = 0;
  uint64_t shard2 = 0;
  uint64_t shard5 = 0;
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
    ASSERT_TRUE(opened.ok());
    WriteMix(*opened->durability, *opened->engine, 100);
    ASSERT_TRUE(LogMerge(*opened->durability, *opened->engine, other, 2).ok());
    ASSERT_TRUE(LogMerge(*opened->durability, *opened->engine, other, 5).ok());
    // Later writes land on top of the merged state.
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(5 * 256 + 3, "m", 170)}).ok());
    digest = opened->engine->StateDigest();
    shard2 = opened->engine->ShardDigest(2);
    shard5 = opened->engine->ShardDigest(5);
    EXPECT_TRUE(HasTag(*opened->engine, 5 * 256 + 8, "x"));
  }
  auto reopened = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(reopened->engine->StateDigest(), digest);
  EXPECT_EQ(reopened->engine->ShardDigest(2), shard2);
  EXPECT_EQ(reopened->engine->ShardDigest(5), shard5);
  EXPECT_TRUE(HasTag(*reopened->engine, 5 * 256 + 8, "x"));
  EXPECT_TRUE(HasTag(*reopened->engine, 5 * 256 + 3, "m"));
  EXPECT_FALSE(HasTag(*reopened->engine, 7 * 256 + 4, "m"));  // shard 7 was not merged
  EXPECT_EQ(reopened->durability->recovery().records_refused, 1u);  // WriteMix's commit names shard 9

  // And through a checkpoint: the merged state is in it like any other.
  auto checkpoint = reopened->durability->Checkpoint();
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  reopened->durability.reset();  // closes the log and releases the data directory
  auto again = Open(dir.path(), *fs, Policy(FsyncPolicy::kBatch));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->engine->StateDigest(), digest);
}

TEST(DurabilityTest, AnUndecodableMergeRecordStopsTheStart) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  Engine other(SmallEngine());
  ASSERT_TRUE(other.ApplyEvents(std::vector<Event>{Set(3 * 256 + 1, "t", 5)}).ok());
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(1, "t", 5)}).ok());
  }
  const std::string segment = LastSegment(*fs, dir.path());
  {
    // A well-framed record whose transfer is damaged: a writer bug, not a
    // torn tail, so the start stops as for any undecodable record.
    std::string bytes = storage::EncodeShardTransfer(other.ExportTags(), other.ExportShard(3));
    bytes[bytes.size() / 2] ^= 0x10;
    std::string framed;
    storage::AppendRecord(storage::RecordType::kMergeShard, bytes, framed);
    std::ofstream out(segment, std::ios::app | std::ios::binary);
    out.write(framed.data(), static_cast<std::streamsize>(framed.size()));
  }
  auto reopened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), StatusCode::kIoError);
  EXPECT_NE(reopened.status().message().find("merge record"), std::string::npos)
      << reopened.status().message();
}

TEST(DurabilityTest, AMissingSegmentIsLostDataNotSomethingToSkip) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(1, "t", 5)}).ok());
  }
  {
    auto opened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));  // starts segment 2
    ASSERT_TRUE(opened.ok());
    ASSERT_TRUE(Write(*opened->durability, *opened->engine, {Set(2, "t", 5)}).ok());
  }
  ASSERT_TRUE(fs->Remove(storage::WalSegmentPath(dir.path(), 1)).ok());
  auto reopened = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.status().message().find("segment"), std::string::npos)
      << reopened.status().message();
}

TEST(DurabilityTest, ADataDirectoryServesOneNodeAtATime) {
  TempDir dir;
  auto fs = storage::NewPosixFileSystem();
  auto first = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
  ASSERT_TRUE(first.ok());
  auto second = Open(dir.path(), *fs, Policy(FsyncPolicy::kAlways));
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use"), std::string::npos)
      << second.status().message();
}

TEST(DurabilityTest, ParsesFsyncPolicies) {
  EXPECT_EQ(*ParseFsyncPolicy("always"), FsyncPolicy::kAlways);
  EXPECT_EQ(*ParseFsyncPolicy("batch"), FsyncPolicy::kBatch);
  EXPECT_EQ(*ParseFsyncPolicy("none"), FsyncPolicy::kNone);
  EXPECT_TRUE(ParseFsyncPolicy("sometimes").status().IsBadRequest());
}

}  // namespace
}  // namespace tagcache::durability
