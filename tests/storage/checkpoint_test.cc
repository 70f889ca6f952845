// Checkpoint files: a written checkpoint restores the engine exactly (on one
// or several threads); any damage to the file makes LoadCheckpoint fail,
// naming the file; a failed write leaves neither the checkpoint nor its
// temp file behind.
#include "tagcache/storage/checkpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "tagcache/storage/file_system.h"
#include "tagcache/storage/record_io.h"

namespace tagcache::storage {
namespace {

constexpr Timestamp kNow = 1'700'000'000'000;

EngineOptions Options(int shard_bits) {
  EngineOptions options;
  options.shard_bits = shard_bits;
  options.query_threads = 1;
  options.clock = [] { return kNow; };
  return options;
}

UserId UserAt(uint64_t shard, uint64_t offset, int shard_bits = 8) {
  return shard << shard_bits | offset;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

// An engine holding every kind of state a checkpoint carries: snapshots
// with overrides newer than their base, events without any snapshot, a
// commit that emptied shards (rule 4 floors) and one that named a shard
// whose part never came (TagState.missing).
void Populate(Engine& engine) {
  std::vector<UserId> sports;
  for (uint64_t shard = 0; shard < 40; ++shard) {
    for (uint64_t off = shard % 7; off < 256; off += 3 + shard % 5) sports.push_back(UserAt(shard, off));
  }
  ASSERT_TRUE(engine.ApplyFullSnapshot("sports", 100, sports).ok());
  ASSERT_TRUE(engine.ApplyFullSnapshot("dropped", 90, std::vector<UserId>{}).ok());

  Roaring part;
  for (uint32_t off = 0; off < 200; off += 2) part.add(off);
  ASSERT_TRUE(engine.ApplySnapshot("music", 200, 1, part).ok());
  const std::vector<uint64_t> named = {1, 77};  // shard 77's part never arrives
  Result<CommitOutcome> commit = engine.CommitSnapshot("music", 200, named);
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  ASSERT_EQ(commit->missing_shards, std::vector<uint64_t>{77});

  std::mt19937_64 rng(3);
  std::vector<Event> events;
  const char* tags[] = {"sports", "music", "news", "country:fr", "dropped"};
  for (int i = 0; i < 5000; ++i) {
    Event e;
    e.user = UserAt(rng() % 50, rng() % 256);
    e.tag = tags[rng() % 5];
    e.op = rng() % 4 == 0 ? TagOp::kClear : TagOp::kSet;
    e.ts = 50 + rng() % 300;  // some at or below the bases, most above
    events.push_back(std::move(e));
  }
  Result<ApplyEventsResult> applied = engine.ApplyEvents(events);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  ASSERT_GT(applied->applied, 0u);
  ASSERT_GT(applied->ignored, 0u);
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "checkpoint_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs_ = NewPosixFileSystem();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }

  // Writes `engine` as checkpoint 7 and returns its path.
  std::string Write(const Engine& engine) {
    Result<CheckpointWriteReport> report = WriteCheckpoint(*fs_, dir_, 7, engine);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? report->path : "";
  }

  // Loads `path` into a fresh engine; the status, and the engine's digest.
  Status LoadInto(const std::string& path, Engine& engine, int threads = 1) {
    return LoadCheckpoint(*fs_, path, engine, threads).status();
  }

  void ExpectLoadFails(const std::string& path, const std::string& why, int threads = 1) {
    Engine engine(Options(8));
    Status s = LoadInto(path, engine, threads);
    ASSERT_FALSE(s.ok()) << why;
    EXPECT_EQ(s.code(), StatusCode::kIoError) << why << ": " << s.ToString();
    EXPECT_NE(s.message().find(path), std::string::npos) << why << ": " << s.ToString();
  }

  std::string dir_;
  std::unique_ptr<FileSystem> fs_;
};

void ExpectSameQueries(const Engine& want, const Engine& got) {
  EXPECT_EQ(want.StateDigest(), got.StateDigest());
  for (const char* expr : {"sports", "music", "news & !sports", "!music", "country:fr | dropped",
                           "sports - music"}) {
    Result<uint64_t> a = want.Count(expr);
    Result<uint64_t> b = got.Count(expr);
    ASSERT_TRUE(a.ok()) << expr << ": " << a.status().ToString();
    ASSERT_TRUE(b.ok()) << expr << ": " << b.status().ToString();
    EXPECT_EQ(*a, *b) << expr;
  }
  for (UserId user : {UserAt(0, 0), UserAt(1, 2), UserAt(3, 17), UserAt(39, 255), UserAt(45, 9),
                      UserAt(77, 1), UserAt(1000, 1)}) {
    std::vector<TagHit> a = want.GetTags(user, /*with_ts=*/true);
    std::vector<TagHit> b = got.GetTags(user, /*with_ts=*/true);
    ASSERT_EQ(a.size(), b.size()) << user;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].tag, b[i].tag) << user;  // creation order survives too
      EXPECT_EQ(a[i].ts, b[i].ts) << user;
    }
  }
}

TEST_F(CheckpointTest, RoundTripRestoresTheStateOnOneAndOnThreeThreads) {
  Engine source(Options(8));
  Populate(source);
  Result<CheckpointWriteReport> written = WriteCheckpoint(*fs_, dir_, 7, source);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(written->path, dir_ + "/checkpoint-00000000000000000007.ckpt");
  EXPECT_EQ(written->shards, source.ShardIds().size());
  EXPECT_GT(written->columns, written->shards);
  EXPECT_EQ(written->bytes, std::filesystem::file_size(written->path));

  for (int threads : {1, 3}) {
    SCOPED_TRACE(threads);
    Engine restored(Options(8));
    Result<CheckpointLoadReport> loaded = LoadCheckpoint(*fs_, written->path, restored, threads);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ(loaded->bytes, written->bytes);
    EXPECT_EQ(loaded->shards, written->shards);
    EXPECT_EQ(loaded->columns, written->columns);
    ExpectSameQueries(source, restored);
    // The rule 4 records came back too: the missing shard is still reported.
    std::vector<TagState> tags = restored.ExportTags();
    bool saw_missing = false;
    for (const TagState& t : tags) saw_missing |= t.name == "music" && !t.missing.empty();
    EXPECT_TRUE(saw_missing);
  }
}

TEST_F(CheckpointTest, EmptyEngineRoundTrips) {
  Engine source(Options(8));
  const std::string path = Write(source);
  Engine restored(Options(8));
  ASSERT_TRUE(LoadInto(path, restored).ok());
  EXPECT_EQ(source.StateDigest(), restored.StateDigest());
}

TEST_F(CheckpointTest, LoadingTwiceOrIntoTheSameStateChangesNothing) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  const uint64_t digest = source.StateDigest();
  ASSERT_TRUE(LoadInto(path, source, 2).ok());
  EXPECT_EQ(source.StateDigest(), digest);

  Engine restored(Options(8));
  ASSERT_TRUE(LoadInto(path, restored).ok());
  ASSERT_TRUE(LoadInto(path, restored, 3).ok());
  EXPECT_EQ(restored.StateDigest(), digest);
}

TEST_F(CheckpointTest, DenseShardsWithBitsetAndRunContainersRoundTrip) {
  Engine source(Options(16));
  std::vector<UserId> dense;   // bitset containers
  std::vector<UserId> ranges;  // long runs
  std::mt19937_64 rng(5);
  for (uint64_t shard = 0; shard < 3; ++shard) {
    for (uint64_t off = 0; off < 65536; ++off) {
      if (rng() % 2 == 0) dense.push_back(shard << 16 | off);
      if (off >= 1000 && off < 30000) ranges.push_back(shard << 16 | off);
    }
  }
  ASSERT_TRUE(source.ApplyFullSnapshot("dense", 10, dense).ok());
  ASSERT_TRUE(source.ApplyFullSnapshot("ranges", 10, ranges).ok());
  Result<CheckpointWriteReport> written = WriteCheckpoint(*fs_, dir_, 1, source);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  Engine restored(Options(16));
  Status s = LoadCheckpoint(*fs_, written->path, restored, 2).status();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(source.StateDigest(), restored.StateDigest());
  EXPECT_EQ(*source.Count("dense & ranges"), *restored.Count("dense & ranges"));
}

TEST_F(CheckpointTest, AnyFlippedByteMakesTheLoadFail) {
  Engine source(Options(8));
  Populate(source);
  const std::string file = ReadFile(Write(source));
  ASSERT_GT(file.size(), 1000u);
  const std::string damaged = dir_ + "/damaged.ckpt";
  std::mt19937_64 rng(17);
  std::vector<size_t> positions;
  for (size_t i = 0; i < 64; ++i) positions.push_back(i);  // the header record, every byte
  for (size_t i = 0; i < 32; ++i) positions.push_back(file.size() - 1 - i);  // the end record
  while (positions.size() < 220) positions.push_back(rng() % file.size());
  for (size_t pos : positions) {
    std::string copy = file;
    copy[pos] = static_cast<char>(copy[pos] ^ (1 << (rng() % 8)));
    WriteFile(damaged, copy);
    ExpectLoadFails(damaged, "byte " + std::to_string(pos) + " flipped", pos % 2 == 0 ? 1 : 3);
  }
}

TEST_F(CheckpointTest, TruncatedFileMakesTheLoadFail) {
  Engine source(Options(8));
  Populate(source);
  const std::string file = ReadFile(Write(source));
  const std::string damaged = dir_ + "/truncated.ckpt";
  std::mt19937_64 rng(19);
  std::vector<size_t> lengths = {0, 1, 15, 16, 17, file.size() - 1, file.size() - 16,
                                 file.size() - 40, file.size() - 41};
  while (lengths.size() < 120) lengths.push_back(rng() % file.size());
  for (size_t len : lengths) {
    WriteFile(damaged, file.substr(0, len));
    ExpectLoadFails(damaged, "cut to " + std::to_string(len) + " bytes", len % 2 == 0 ? 1 : 3);
  }
}

TEST_F(CheckpointTest, ShardBitsMismatchIsRefusedWithBothValues) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  Engine other(Options(9));
  Status s = LoadCheckpoint(*fs_, path, other, 1).status();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("checkpoint " + path +
                             " was written with shard_bits 8, the node runs with 9"),
            std::string::npos)
      << s.ToString();
  EXPECT_EQ(other.StateDigest(), Engine(Options(9)).StateDigest());  // nothing merged
}

TEST_F(CheckpointTest, RenamedToAnotherSegmentIsRefused) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  const std::string later = CheckpointPath(dir_, 9);
  std::filesystem::copy_file(path, later);
  Engine restored(Options(8));
  Status s = LoadInto(later, restored);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("WAL segment 7"), std::string::npos) << s.ToString();
}

// Rewrites a checkpoint record by record with valid checksums, letting
// `edit` change payloads (or drop a record by returning false), to reach the
// checks behind the checksum.
template <typename Edit>
std::string Reframe(FileSystem& fs, const std::string& path, Edit edit) {
  Result<std::unique_ptr<SequentialFile>> file = fs.NewSequentialFile(path);
  EXPECT_TRUE(file.ok());
  RecordReader reader(std::move(*file), path);
  std::string out;
  for (;;) {
    Record rec;
    uint64_t bad = 0;
    Status error;
    ReadOutcome outcome = reader.Next(&rec, &bad, &error);
    if (outcome != ReadOutcome::kRecord) {
      EXPECT_EQ(outcome, ReadOutcome::kEnd) << error.ToString();
      return out;
    }
    std::string payload(rec.payload);
    if (edit(rec.type, payload)) AppendRecord(rec.type, payload, out);
  }
}

TEST_F(CheckpointTest, InvalidBitmapBehindAValidChecksumIsRejected) {
  Engine source(Options(8));
  // Gaps keep it an array container (no run-optimising into a run).
  ASSERT_TRUE(source.ApplyFullSnapshot("t", 10, std::vector<UserId>{1, 3, 5, 200}).ok());
  const std::string path = Write(source);
  const uint8_t column = static_cast<uint8_t>(RecordType::kCheckpointColumn);
  // The column's bitmap ends the payload: an array container whose last
  // value (200) is the final two bytes.
  struct Case {
    uint16_t last;
    const char* want;
  };
  for (const Case& c : {Case{5, "unsorted array"}, Case{256, "out of range"}}) {
    const std::string damaged = dir_ + "/bitmap.ckpt";
    WriteFile(damaged, Reframe(*fs_, path, [&](uint8_t type, std::string& payload) {
                if (type == column) {
                  payload[payload.size() - 2] = static_cast<char>(c.last & 0xFF);
                  payload[payload.size() - 1] = static_cast<char>(c.last >> 8);
                }
                return true;
              }));
    for (int threads : {1, 2}) {
      Engine restored(Options(8));
      Status s = LoadInto(damaged, restored, threads);
      ASSERT_FALSE(s.ok()) << c.want;
      EXPECT_NE(s.message().find(damaged + ": offset "), std::string::npos) << s.ToString();
      EXPECT_NE(s.message().find(c.want), std::string::npos) << s.ToString();
    }
  }
}

TEST_F(CheckpointTest, EndRecordCountsAreChecked) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  const uint8_t end = static_cast<uint8_t>(RecordType::kCheckpointEnd);
  const uint8_t column = static_cast<uint8_t>(RecordType::kCheckpointColumn);
  const std::string damaged = dir_ + "/counts.ckpt";

  WriteFile(damaged, Reframe(*fs_, path, [&](uint8_t type, std::string& payload) {
              if (type == end) {
                std::string p;
                PutU64(p, 1);
                payload.replace(0, 8, p);
              }
              return true;
            }));
  ExpectLoadFails(damaged, "end record with a wrong shard count");

  bool dropped = false;
  WriteFile(damaged, Reframe(*fs_, path, [&](uint8_t type, std::string&) {
              if (type == column && !dropped) {
                dropped = true;
                return false;
              }
              return true;
            }));
  ExpectLoadFails(damaged, "a column record left out");

  std::string twice = ReadFile(path);
  WriteFile(damaged, twice + twice.substr(twice.size() - 16 - 24));
  ExpectLoadFails(damaged, "a second end record");

  WriteFile(damaged, Reframe(*fs_, path, [&](uint8_t type, std::string&) { return type != end; }));
  ExpectLoadFails(damaged, "no end record");
}

TEST_F(CheckpointTest, ManyTagsAreSplitIntoSeveralTagsRecordsInCreationOrder) {
  Engine source(Options(8));
  std::vector<Event> events;
  const std::string pad(110, 'p');
  for (int i = 0; i < 140000; ++i) {  // ~18 MiB of tag states: more than one record
    events.push_back({static_cast<UserId>(i % 4096), pad + std::to_string(i), TagOp::kSet, 5});
  }
  ASSERT_TRUE(source.ApplyEvents(events).ok());
  const std::string path = Write(source);
  int tags_records = 0;
  (void)Reframe(*fs_, path, [&](uint8_t type, std::string&) {
    tags_records += type == static_cast<uint8_t>(RecordType::kCheckpointTags);
    return true;
  });
  EXPECT_EQ(tags_records, 2);
  Engine restored(Options(8));
  Status s = LoadInto(path, restored, 2);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(source.StateDigest(), restored.StateDigest());
  std::vector<TagState> a = source.ExportTags();
  std::vector<TagState> b = restored.ExportTags();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i].name, b[i].name) << i;
}

// ---- Shard index images ---------------------------------------------------------

// Shards whose per-user index a checkpoint of `engine` carries.
uint64_t IndexedShards(const Engine& engine) {
  uint64_t n = 0;
  for (uint64_t shard : engine.ShardIds()) {
    n += !engine.ExportShard(shard, /*with_index=*/true).index_image.empty();
  }
  return n;
}

uint64_t ImagesInstalled(const Engine& engine) {
  return engine.Stats().counters.index_images_installed;
}

constexpr uint8_t kIndexType =
    static_cast<uint8_t>(RecordType::kCheckpointShardIndex) | kSkippableBit;

TEST_F(CheckpointTest, RestoreInstallsEachShardsIndexImage) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  const uint64_t indexed = IndexedShards(source);
  ASSERT_GT(indexed, 30u);
  int index_records = 0;
  (void)Reframe(*fs_, path, [&](uint8_t type, std::string&) {
    index_records += type == kIndexType;  // skippable: an older reader passes over it
    return true;
  });
  EXPECT_EQ(index_records, static_cast<int>(indexed));
  for (int threads : {1, 3}) {
    SCOPED_TRACE(threads);
    Engine restored(Options(8));
    ASSERT_TRUE(LoadInto(path, restored, threads).ok());
    EXPECT_EQ(ImagesInstalled(restored), indexed);
    ExpectSameQueries(source, restored);
    for (UserId user = 0; user < (UserId{50} << 8); ++user) {
      std::vector<TagHit> a = source.GetTags(user, /*with_ts=*/true);
      std::vector<TagHit> b = restored.GetTags(user, /*with_ts=*/true);
      ASSERT_EQ(a.size(), b.size()) << user;
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].tag, b[i].tag) << user;
        ASSERT_EQ(a[i].ts, b[i].ts) << user;
      }
    }
  }
  // Into an engine that holds other tags first, ids differ: rebuilt instead.
  Engine other(Options(8));
  ASSERT_TRUE(
      other.ApplyEvents(std::vector<Event>{{UserAt(200, 1), "first", TagOp::kSet, 5}}).ok());
  ASSERT_TRUE(LoadInto(path, other, 2).ok());
  EXPECT_EQ(ImagesInstalled(other), 0u);
  for (UserId user = 0; user < (UserId{50} << 8); ++user) {
    std::vector<TagHit> a = source.GetTags(user);
    std::vector<TagHit> b = other.GetTags(user);
    ASSERT_EQ(a.size(), b.size()) << user;
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i].tag, b[i].tag) << user;
  }
}

TEST_F(CheckpointTest, BadImageBehindAValidChecksumFallsBackToARebuild) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  const std::string damaged = dir_ + "/image.ckpt";
  int seen = 0;
  WriteFile(damaged, Reframe(*fs_, path, [&](uint8_t type, std::string& payload) {
              if (type == kIndexType && seen++ % 2 == 0) {
                payload[payload.size() - 1] = static_cast<char>(payload.back() ^ 0x01);
              }
              return true;
            }));
  Engine restored(Options(8));
  Status s = LoadInto(damaged, restored, 2);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ImagesInstalled(restored), IndexedShards(source) - (seen + 1) / 2);
  ExpectSameQueries(source, restored);
}

TEST_F(CheckpointTest, MisplacedIndexRecordsAreRefused) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  const std::string damaged = dir_ + "/misplaced.ckpt";
  bool done = false;
  WriteFile(damaged, Reframe(*fs_, path, [&](uint8_t type, std::string& payload) {
              if (type == kIndexType && !done) {
                done = true;
                payload[0] = static_cast<char>(payload[0] + 1);  // another shard's
              }
              return true;
            }));
  ExpectLoadFails(damaged, "an index record naming another shard");

  // The same record twice in a row: append a copy right after the first.
  std::string file;
  done = false;
  {
    Result<std::unique_ptr<SequentialFile>> in = fs_->NewSequentialFile(path);
    ASSERT_TRUE(in.ok());
    RecordReader reader(std::move(*in), path);
    Record rec;
    uint64_t bad = 0;
    Status error;
    while (reader.Next(&rec, &bad, &error) == ReadOutcome::kRecord) {
      AppendRecord(rec.type, rec.payload, file);
      if (rec.type == kIndexType && !done) {
        done = true;
        AppendRecord(rec.type, rec.payload, file);
      }
    }
  }
  WriteFile(damaged, file);
  ExpectLoadFails(damaged, "an index record twice");
}

// A version 1 file as the previous build wrote it: no exporter tag ids in
// column records and no index records. `keep_index` leaves the index
// records in, to show a version 1 reading passes over them.
std::string AsVersion1(FileSystem& fs, const std::string& path, bool keep_index) {
  const uint8_t header = static_cast<uint8_t>(RecordType::kCheckpointHeader);
  const uint8_t column = static_cast<uint8_t>(RecordType::kCheckpointColumn);
  const uint8_t end = static_cast<uint8_t>(RecordType::kCheckpointEnd);
  std::string file = Reframe(fs, path, [&](uint8_t type, std::string& payload) {
    if (type == header) payload[0] = 1;
    // u64 shard, u8 name length, name, then the u32 tag id that v1 lacks.
    if (type == column) payload.erase(8 + 1 + static_cast<uint8_t>(payload[8]), 4);
    return type != kIndexType || keep_index;
  });
  // The end record counts the bytes before it, which are fewer now.
  const size_t end_offset = file.size() - kRecordHeaderBytes - 24;
  std::string payload = file.substr(end_offset + kRecordHeaderBytes, 16);
  PutU64(payload, end_offset);
  file.resize(end_offset);
  AppendRecord(end, payload, file);
  return file;
}

TEST_F(CheckpointTest, Version1FilesStillLoadAndRebuildTheIndex) {
  Engine source(Options(8));
  Populate(source);
  const std::string path = Write(source);
  for (bool keep_index : {false, true}) {
    SCOPED_TRACE(keep_index);
    const std::string v1_path = dir_ + "/v1.ckpt";
    WriteFile(v1_path, AsVersion1(*fs_, path, keep_index));
    for (int threads : {1, 2}) {
      Engine restored(Options(8));
      Status s = LoadInto(v1_path, restored, threads);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(ImagesInstalled(restored), 0u);
      ExpectSameQueries(source, restored);
    }
  }
}

TEST_F(CheckpointTest, RunningOutOfSpaceFailsAndLeavesNoFiles) {
  Engine source(Options(8));
  Populate(source);
  FaultInjectionFileSystem faulty(*fs_);
  faulty.SetSpaceLimit(1000);
  Result<CheckpointWriteReport> report = WriteCheckpoint(faulty, dir_, 3, source);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kIoError);
  EXPECT_NE(report.status().message().find(CheckpointPath(dir_, 3)), std::string::npos)
      << report.status().ToString();
  EXPECT_TRUE(Names().empty());
}

TEST_F(CheckpointTest, FailingFsyncFailsAndLeavesNoFiles) {
  Engine source(Options(8));
  Populate(source);
  FaultInjectionFileSystem faulty(*fs_);
  faulty.SetSyncFailure(true);
  Result<CheckpointWriteReport> report = WriteCheckpoint(faulty, dir_, 3, source);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kIoError);
  EXPECT_TRUE(Names().empty());

  faulty.SetSyncFailure(false);
  ASSERT_TRUE(WriteCheckpoint(faulty, dir_, 3, source).ok());
  EXPECT_EQ(Names(), std::vector<std::string>{"checkpoint-00000000000000000003.ckpt"});
}

TEST_F(CheckpointTest, SurvivesPowerLossOnceWritten) {
  Engine source(Options(8));
  Populate(source);
  FaultInjectionFileSystem faulty(*fs_);
  Result<CheckpointWriteReport> report = WriteCheckpoint(faulty, dir_, 4, source);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_TRUE(faulty.DropUnsyncedData().ok());
  Engine restored(Options(8));
  Status s = LoadInto(report->path, restored, 2);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(source.StateDigest(), restored.StateDigest());
}

TEST_F(CheckpointTest, MissingFileFailsNamingIt) {
  ExpectLoadFails(CheckpointPath(dir_, 1), "no such file");
}

TEST_F(CheckpointTest, ListCheckpointsIgnoresTempFilesAndForeignNames) {
  for (const char* name : {"checkpoint-00000000000000000003.ckpt",
                           "checkpoint-00000000000000000001.ckpt",
                           "checkpoint-00000000000000000002.ckpt.tmp",
                           "checkpoint-1.ckpt",
                           "checkpoint-0000000000000000000a.ckpt",
                           "checkpoint-99999999999999999999.ckpt",  // beyond u64
                           "xcheckpoint-00000000000000000004.ckpt",
                           "wal-00000000000000000001.log",
                           "notes.txt"}) {
    WriteFile(dir_ + "/" + name, name);
  }
  Result<std::vector<CheckpointFileInfo>> list = ListCheckpoints(*fs_, dir_);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].wal_segment, 1u);
  EXPECT_EQ((*list)[0].path, CheckpointPath(dir_, 1));
  EXPECT_EQ((*list)[0].bytes, 36u);
  EXPECT_EQ((*list)[1].wal_segment, 3u);
}

TEST(CheckpointPathTest, HasTwentyDigits) {
  EXPECT_EQ(CheckpointPath("/d", 42), "/d/checkpoint-00000000000000000042.ckpt");
  EXPECT_EQ(CheckpointPath("/d", UINT64_MAX), "/d/checkpoint-18446744073709551615.ckpt");
}

// Load throughput on a sizeable state; run with --gtest_also_run_disabled_tests.
TEST_F(CheckpointTest, DISABLED_LoadThroughput) {
  Engine source(Options(20));
  std::mt19937_64 rng(23);
  const uint64_t kShards = 16;
  for (int t = 0; t < 40; ++t) {
    std::vector<UserId> users;
    const uint64_t keep = 1 + rng() % 64;  // densities from 1/64 to all
    for (uint64_t u = 0; u < (kShards << 20); ++u) {
      if (rng() % keep == 0) users.push_back(u);
    }
    ASSERT_TRUE(source.ApplyFullSnapshot("tag" + std::to_string(t), 100, users).ok());
  }
  std::vector<Event> events;
  for (int i = 0; i < 200000; ++i) {
    events.push_back({rng() % (kShards << 20), "tag" + std::to_string(rng() % 40),
                      rng() % 2 ? TagOp::kSet : TagOp::kClear, 200 + rng() % 1000});
  }
  ASSERT_TRUE(source.ApplyEvents(events).ok());
  Result<CheckpointWriteReport> written = WriteCheckpoint(*fs_, dir_, 1, source);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  std::printf("write: %llu bytes, %llu columns, %llu assignments in %.3f s\n",
              static_cast<unsigned long long>(written->bytes),
              static_cast<unsigned long long>(written->columns),
              static_cast<unsigned long long>(source.Stats().assignments), written->micros / 1e6);
  for (int threads : {1, 2, 4}) {
    Engine restored(Options(20));
    Result<CheckpointLoadReport> loaded = LoadCheckpoint(*fs_, written->path, restored, threads);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    std::printf("load, %d threads: %.3f s, %.0f MB/s\n", threads, loaded->micros / 1e6,
                loaded->bytes / (loaded->micros + 1.0));
    EXPECT_EQ(source.StateDigest(), restored.StateDigest());
  }
}

}  // namespace
}  // namespace tagcache::storage
