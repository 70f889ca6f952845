// WAL segments: naming, the header, appends cut back to a record boundary
// on failure, and replay: ordering, torn tails, corruption in both recovery
// modes, repair, and old readers meeting new record kinds.
#include "tagcache/storage/wal.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/temp_dir.h"

namespace tagcache::storage {
namespace {

// One temp dir per test, removed afterwards.
class TempDir : public tagcache::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("tagcache-wal") {}
};

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteWholeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

uint64_t SizeOf(const std::string& path) { return std::filesystem::file_size(path); }

std::string Framed(RecordType type, std::string_view payload) {
  std::string out;
  AppendRecord(type, payload, out);
  return out;
}

std::string Framed(uint8_t type, std::string_view payload) {
  std::string out;
  AppendRecord(type, payload, out);
  return out;
}

struct Replayed {
  Result<WalReplayReport> report = Status::Internal("not run");
  std::vector<std::string> payloads;
  std::vector<uint8_t> types;
};

Replayed Replay(FileSystem& fs, const std::string& dir, uint64_t from = 0,
                WalRecoveryMode mode = WalRecoveryMode::kStrict, bool repair = false) {
  Replayed out;
  out.report = ReplayWal(fs, dir, from, mode, repair, [&](const Record& r) {
    out.payloads.emplace_back(r.payload);
    out.types.push_back(r.type);
    return Status::Ok();
  });
  return out;
}

class WalTest : public ::testing::Test {
 protected:
  // A segment holding one kEvents record per payload.
  void WriteSegment(uint64_t number, const std::vector<std::string>& payloads) {
    auto w = WalSegmentWriter::Create(*fs_, dir_.path(), number);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    for (const std::string& p : payloads) {
      ASSERT_TRUE((*w)->Append(Framed(RecordType::kEvents, p)).ok());
    }
    ASSERT_TRUE((*w)->Sync().ok());
    ASSERT_TRUE((*w)->Close().ok());
  }
  std::string Path(uint64_t number) const { return WalSegmentPath(dir_.path(), number); }

  TempDir dir_;
  std::unique_ptr<FileSystem> fs_ = NewPosixFileSystem();
};

// Offset of the first write record in a segment (after the header record).
constexpr uint64_t kFirstRecord = kRecordHeaderBytes + 12;

// ---- Files --------------------------------------------------------------------

TEST(WalNamesTest, SegmentPathHasATwentyDigitNumber) {
  EXPECT_EQ(WalSegmentPath("/data", 7), "/data/wal-00000000000000000007.log");
  EXPECT_EQ(WalSegmentPath("/data/", 18446744073709551615u),
            "/data/wal-18446744073709551615.log");
}

TEST_F(WalTest, ListWalSegmentsSortsByNumberAndIgnoresOtherFiles) {
  WriteSegment(10, {"a"});
  WriteSegment(2, {});
  WriteSegment(9, {"bb", "cc"});
  WriteWholeFile(dir_.path() + "/wal-1.log", "x");
  WriteWholeFile(dir_.path() + "/wal-0000000000000000000x.log", "x");
  WriteWholeFile(dir_.path() + "/wal-00000000000000000003.log.tmp", "x");
  WriteWholeFile(dir_.path() + "/checkpoint", "x");
  Result<std::vector<WalSegmentInfo>> list = ListWalSegments(*fs_, dir_.path());
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].number, 2u);
  EXPECT_EQ((*list)[1].number, 9u);
  EXPECT_EQ((*list)[2].number, 10u);
  EXPECT_EQ((*list)[0].path, Path(2));
  EXPECT_EQ((*list)[0].bytes, kFirstRecord);
  EXPECT_EQ((*list)[2].bytes, kFirstRecord + kRecordHeaderBytes + 1);
}

TEST_F(WalTest, RemoveWalSegmentsBelowDeletesOnlyOlderSegments) {
  for (uint64_t n : {1, 2, 3, 5}) WriteSegment(n, {"x"});
  Result<uint64_t> removed = RemoveWalSegmentsBelow(*fs_, dir_.path(), 3);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 2u);
  Result<std::vector<WalSegmentInfo>> list = ListWalSegments(*fs_, dir_.path());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].number, 3u);
  EXPECT_EQ((*list)[1].number, 5u);
  removed = RemoveWalSegmentsBelow(*fs_, dir_.path(), 3);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 0u);
}

// ---- Writing ------------------------------------------------------------------

TEST_F(WalTest, CreateWritesAHeaderNamingTheSegment) {
  auto w = WalSegmentWriter::Create(*fs_, dir_.path(), 42);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->number(), 42u);
  EXPECT_EQ((*w)->path(), Path(42));
  EXPECT_EQ((*w)->size(), kFirstRecord);
  EXPECT_FALSE((*w)->broken());
  ASSERT_TRUE((*w)->Close().ok());
  std::string expected;
  AppendRecord(RecordType::kSegmentHeader,
               std::string("\x01\x00\x00\x00\x2a\x00\x00\x00\x00\x00\x00\x00", 12), expected);
  EXPECT_EQ(ReadWholeFile(Path(42)), expected);
}

class WalFaultTest : public WalTest {
 protected:
  FaultInjectionFileSystem faulty_{*fs_};
};

TEST_F(WalFaultTest, CreatedSegmentSurvivesPowerLoss) {
  auto w = WalSegmentWriter::Create(faulty_, dir_.path(), 1);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Framed(RecordType::kEvents, "unsynced")).ok());
  ASSERT_TRUE(faulty_.DropUnsyncedData().ok());
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
  EXPECT_EQ(r.report->segments, 1u);
  EXPECT_EQ(r.report->records, 0u);
  EXPECT_TRUE(r.report->torn_tails.empty());
}

TEST_F(WalFaultTest, PowerLossKeepsExactlyTheSyncedRecords) {
  auto w = WalSegmentWriter::Create(faulty_, dir_.path(), 1);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Framed(RecordType::kEvents, "a") + Framed(RecordType::kEvents, "b"))
                  .ok());
  ASSERT_TRUE((*w)->Sync().ok());
  ASSERT_TRUE((*w)->Append(Framed(RecordType::kEvents, "c")).ok());
  ASSERT_TRUE(faulty_.DropUnsyncedData().ok());
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok());
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.report->torn_tails.empty());
}

TEST_F(WalFaultTest, CreateFailureLeavesNoSegmentBehind) {
  faulty_.SetSyncFailure(true);
  auto w = WalSegmentWriter::Create(faulty_, dir_.path(), 1);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("injected fsync failure"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(Path(1)));
}

TEST_F(WalFaultTest, EnospcMidRecordCutsTheSegmentBackToARecordBoundary) {
  auto created = WalSegmentWriter::Create(faulty_, dir_.path(), 1);
  ASSERT_TRUE(created.ok());
  WalSegmentWriter& w = **created;
  ASSERT_TRUE(w.Append(Framed(RecordType::kEvents, "before")).ok());
  const uint64_t boundary = w.size();

  // Room for one record and a half of the next batch.
  const std::string batch = Framed(RecordType::kEvents, std::string(100, 'x')) +
                            Framed(RecordType::kEvents, std::string(100, 'y'));
  faulty_.SetSpaceLimit(150);
  Status s = w.Append(batch);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("No space left on device"), std::string::npos) << s.message();
  EXPECT_FALSE(w.broken());
  EXPECT_EQ(w.size(), boundary);
  EXPECT_EQ(SizeOf(Path(1)), boundary);

  faulty_.SetSpaceLimit(std::nullopt);
  ASSERT_TRUE(w.Append(Framed(RecordType::kEvents, "after")).ok());
  ASSERT_TRUE(w.Sync().ok());
  ASSERT_TRUE(w.Close().ok());
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"before", "after"}));
  EXPECT_TRUE(r.report->torn_tails.empty());
}

TEST_F(WalFaultTest, FailedAppendsAreCutBackAndTheSegmentStaysUsable) {
  auto created = WalSegmentWriter::Create(faulty_, dir_.path(), 1);
  ASSERT_TRUE(created.ok());
  WalSegmentWriter& w = **created;
  faulty_.FailNextAppends(2);
  EXPECT_FALSE(w.Append(Framed(RecordType::kEvents, "lost 1")).ok());
  EXPECT_FALSE(w.Append(Framed(RecordType::kEvents, "lost 2")).ok());
  ASSERT_TRUE(w.Append(Framed(RecordType::kEvents, "kept")).ok());
  ASSERT_TRUE(w.Sync().ok());
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok());
  EXPECT_EQ(r.payloads, std::vector<std::string>{"kept"});
  EXPECT_TRUE(r.report->torn_tails.empty());
}

TEST_F(WalFaultTest, SyncFailureIsReportedAndRetiresTheSegment) {
  auto created = WalSegmentWriter::Create(faulty_, dir_.path(), 1);
  ASSERT_TRUE(created.ok());
  WalSegmentWriter& w = **created;
  ASSERT_TRUE(w.Append(Framed(RecordType::kEvents, "a")).ok());
  faulty_.SetSyncFailure(true);
  Status s = w.Sync();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("injected fsync failure"), std::string::npos);
  EXPECT_TRUE(w.broken());
  faulty_.SetSyncFailure(false);
  EXPECT_FALSE(w.Sync().ok()) << "a later fsync could succeed without the lost pages";
  EXPECT_FALSE(w.Append(Framed(RecordType::kEvents, "b")).ok());
}

// A file system whose files fail every append after writing a few bytes and
// cannot be truncated: the segment cannot be repaired in place.
class UncuttableFileSystem : public FaultInjectionFileSystem {
 public:
  using FaultInjectionFileSystem::FaultInjectionFileSystem;
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    auto base = FaultInjectionFileSystem::NewWritableFile(path);
    if (!base.ok()) return base;
    return std::unique_ptr<WritableFile>(new File(std::move(*base), &break_files));
  }
  bool break_files = false;

 private:
  class File : public WritableFile {
   public:
    File(std::unique_ptr<WritableFile> base, bool* broken) : base_(std::move(base)), broken_(broken) {}
    Status Append(std::string_view data) override {
      if (!*broken_) return base_->Append(data);
      (void)base_->Append(data.substr(0, 3));
      return Status::IoError("append failed");
    }
    Status Sync() override { return base_->Sync(); }
    Status Truncate(uint64_t size) override {
      if (*broken_) return Status::IoError("truncate failed");
      return base_->Truncate(size);
    }
    uint64_t size() const override { return base_->size(); }
    Status Close() override { return base_->Close(); }

   private:
    std::unique_ptr<WritableFile> base_;
    bool* broken_;
  };
};

TEST_F(WalTest, AppendThatCannotBeCutBackBreaksTheWriter) {
  UncuttableFileSystem fs(*fs_);
  auto created = WalSegmentWriter::Create(fs, dir_.path(), 1);
  ASSERT_TRUE(created.ok());
  WalSegmentWriter& w = **created;
  fs.break_files = true;
  Status s = w.Append(Framed(RecordType::kEvents, "partial"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("truncate failed"), std::string::npos) << s.message();
  EXPECT_TRUE(w.broken());
  fs.break_files = false;
  EXPECT_FALSE(w.Append(Framed(RecordType::kEvents, "more")).ok());

  // What it left is a torn tail, dropped at the next start.
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok());
  EXPECT_EQ(r.report->torn_tails.size(), 1u);
}

// ---- Replay -------------------------------------------------------------------

TEST_F(WalTest, ReplayVisitsSegmentsInNumberOrder) {
  WriteSegment(3, {"c1"});
  WriteSegment(1, {"a1", "a2"});
  WriteSegment(2, {});
  WriteSegment(12, {"d1"});
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"a1", "a2", "c1", "d1"}));
  EXPECT_EQ(r.report->segments, 4u);
  EXPECT_EQ(r.report->records, 4u);
  EXPECT_EQ(r.report->bytes, 4 * kRecordHeaderBytes + 8);
  EXPECT_TRUE(r.report->torn_tails.empty());
  EXPECT_FALSE(r.report->corruption.has_value());
}

TEST_F(WalTest, ReplayStartsAtFromSegment) {
  WriteSegment(1, {"a"});
  WriteSegment(2, {"b"});
  WriteSegment(3, {"c"});
  Replayed r = Replay(*fs_, dir_.path(), 2);
  ASSERT_TRUE(r.report.ok());
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(r.report->segments, 2u);
  r = Replay(*fs_, dir_.path(), 4);
  ASSERT_TRUE(r.report.ok());
  EXPECT_EQ(r.report->segments, 0u);
}

TEST_F(WalTest, ReplayPassesEveryWriteRecordKind) {
  auto w = WalSegmentWriter::Create(*fs_, dir_.path(), 1);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Framed(RecordType::kEvents, "e") +
                           Framed(RecordType::kSnapshotPart, "p") +
                           Framed(RecordType::kSnapshotCommit, "c"))
                  .ok());
  ASSERT_TRUE((*w)->Close().ok());
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok());
  EXPECT_EQ(r.types, (std::vector<uint8_t>{2, 3, 4}));
}

TEST_F(WalTest, OldReaderSkipsAnUnknownKindMarkedSkippable) {
  auto w = WalSegmentWriter::Create(*fs_, dir_.path(), 1);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Framed(RecordType::kEvents, "a") +
                           Framed(static_cast<uint8_t>(kSkippableBit | 0x50), "from the future") +
                           Framed(RecordType::kEvents, "b"))
                  .ok());
  ASSERT_TRUE((*w)->Close().ok());
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.report->skipped_unknown, 1u);
  EXPECT_EQ(r.report->records, 2u);
}

TEST_F(WalTest, OldReaderRefusesAnUnknownKindNotMarkedSkippable) {
  auto w = WalSegmentWriter::Create(*fs_, dir_.path(), 1);
  ASSERT_TRUE(w.ok());
  const uint64_t at = kFirstRecord + kRecordHeaderBytes + 1;
  ASSERT_TRUE((*w)->Append(Framed(RecordType::kEvents, "a") + Framed(uint8_t{0x50}, "unknown") +
                           Framed(RecordType::kEvents, "b"))
                  .ok());
  ASSERT_TRUE((*w)->Close().ok());

  Replayed strict = Replay(*fs_, dir_.path());
  ASSERT_FALSE(strict.report.ok());
  EXPECT_EQ(strict.report.status().code(), StatusCode::kIoError);
  const std::string& msg = strict.report.status().message();
  EXPECT_NE(msg.find(Path(1)), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(at)), std::string::npos) << msg;
  EXPECT_NE(msg.find("0x50"), std::string::npos) << msg;

  Replayed keep = Replay(*fs_, dir_.path(), 0, WalRecoveryMode::kKeepValidPrefix);
  ASSERT_TRUE(keep.report.ok());
  EXPECT_EQ(keep.payloads, std::vector<std::string>{"a"});
  ASSERT_TRUE(keep.report->corruption.has_value());
  EXPECT_EQ(keep.report->corruption->offset, at);
}

TEST_F(WalTest, SegmentHeaderInsideASegmentIsCorruption) {
  auto w = WalSegmentWriter::Create(*fs_, dir_.path(), 1);
  ASSERT_TRUE(w.ok());
  std::string header;
  AppendRecord(RecordType::kSegmentHeader, std::string(12, '\0'), header);
  ASSERT_TRUE((*w)->Append(header).ok());
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_FALSE(Replay(*fs_, dir_.path()).report.ok());
}

TEST_F(WalTest, TornTailIsDroppedReportedAndRepaired) {
  WriteSegment(1, {"a", "b"});
  const uint64_t valid = SizeOf(Path(1));
  const std::string torn = Framed(RecordType::kEvents, "never acknowledged");
  WriteWholeFile(Path(1), ReadWholeFile(Path(1)) + torn.substr(0, torn.size() - 3));
  WriteSegment(2, {"c"});

  for (bool repair : {false, true}) {
    Replayed r = Replay(*fs_, dir_.path(), 0, WalRecoveryMode::kStrict, repair);
    ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
    EXPECT_EQ(r.payloads, (std::vector<std::string>{"a", "b", "c"}));
    ASSERT_EQ(r.report->torn_tails.size(), 1u);
    const WalDamage& d = r.report->torn_tails[0];
    EXPECT_EQ(d.path, Path(1));
    EXPECT_EQ(d.offset, valid);
    EXPECT_EQ(d.dropped_bytes, torn.size() - 3);
    EXPECT_FALSE(d.reason.empty());
    EXPECT_EQ(SizeOf(Path(1)), repair ? valid : valid + torn.size() - 3);
  }
  Replayed again = Replay(*fs_, dir_.path());
  ASSERT_TRUE(again.report.ok());
  EXPECT_TRUE(again.report->torn_tails.empty());
  EXPECT_EQ(again.payloads.size(), 3u);
}

TEST_F(WalTest, TornTailAtEveryLengthOfTheLastRecordKeepsTheRecordsBeforeIt) {
  WriteSegment(1, {"first", std::string(40, 'm'), "last record of the segment"});
  const std::string whole = ReadWholeFile(Path(1));
  const uint64_t last = whole.size() - kRecordHeaderBytes - 26;
  for (uint64_t len = last + 1; len < whole.size(); ++len) {
    WriteWholeFile(Path(1), whole.substr(0, len));
    Replayed r = Replay(*fs_, dir_.path());
    ASSERT_TRUE(r.report.ok()) << len << ": " << r.report.status().ToString();
    EXPECT_EQ(r.payloads, (std::vector<std::string>{"first", std::string(40, 'm')})) << len;
    ASSERT_EQ(r.report->torn_tails.size(), 1u) << len;
    EXPECT_EQ(r.report->torn_tails[0].offset, last);
  }
}

TEST_F(WalTest, EmptySegmentIsATornTailWithNoRecords) {
  WriteWholeFile(Path(1), "");
  WriteSegment(2, {"b"});
  Replayed r = Replay(*fs_, dir_.path(), 0, WalRecoveryMode::kStrict, true);
  ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
  EXPECT_EQ(r.payloads, std::vector<std::string>{"b"});
  ASSERT_EQ(r.report->torn_tails.size(), 1u);
  EXPECT_EQ(r.report->torn_tails[0].path, Path(1));
  EXPECT_EQ(r.report->torn_tails[0].offset, 0u);
  EXPECT_EQ(r.report->torn_tails[0].dropped_bytes, 0u);
  EXPECT_TRUE(std::filesystem::exists(Path(1))) << "the numbering keeps no gaps";
}

TEST_F(WalTest, TornSegmentHeaderIsATornTailAndRepairEmptiesTheFile) {
  WriteSegment(1, {});
  WriteWholeFile(Path(1), ReadWholeFile(Path(1)).substr(0, 10));
  Replayed r = Replay(*fs_, dir_.path(), 0, WalRecoveryMode::kStrict, true);
  ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
  ASSERT_EQ(r.report->torn_tails.size(), 1u);
  EXPECT_EQ(r.report->torn_tails[0].dropped_bytes, 10u);
  EXPECT_EQ(SizeOf(Path(1)), 0u);
}

TEST_F(WalTest, SegmentNotStartingWithAHeaderIsCorruption) {
  WriteWholeFile(Path(1), Framed(RecordType::kEvents, "no header"));
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_FALSE(r.report.ok());
  EXPECT_NE(r.report.status().message().find("not a segment header"), std::string::npos);
}

TEST_F(WalTest, HeaderNamingAnotherSegmentIsCorruption) {
  WriteSegment(1, {"a"});
  std::filesystem::rename(Path(1), Path(5));
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_FALSE(r.report.ok());
  EXPECT_NE(r.report.status().message().find("the header says segment 1"), std::string::npos)
      << r.report.status().message();
}

TEST_F(WalTest, NewerFormatVersionIsRefusedInEveryModeAndNeverCut) {
  // A version 2 header of the same size, and one that grew.
  for (size_t extra : {0, 8}) {
    std::string bytes;
    std::string header("\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00", 12);
    AppendRecord(RecordType::kSegmentHeader, header + std::string(extra, 'x'), bytes);
    AppendRecord(RecordType::kEvents, "v2 payload", bytes);
    WriteWholeFile(Path(1), bytes);
    for (WalRecoveryMode mode : {WalRecoveryMode::kStrict, WalRecoveryMode::kKeepValidPrefix}) {
      Replayed r = Replay(*fs_, dir_.path(), 0, mode, true);
      ASSERT_FALSE(r.report.ok());
      EXPECT_EQ(r.report.status().code(), StatusCode::kUnsupportedVersion);
      EXPECT_NE(r.report.status().message().find("WAL format version 2"), std::string::npos);
      EXPECT_EQ(SizeOf(Path(1)), bytes.size());
    }
  }
}

class WalCorruptionTest : public WalTest {
 protected:
  // Segment 1: a, b, c with a byte of b flipped; segment 2: d.
  void SetUp() override {
    WriteSegment(1, {"a", "bbbbbbbb", "c"});
    WriteSegment(2, {"d"});
    bad_offset_ = kFirstRecord + kRecordHeaderBytes + 1;
    std::string bytes = ReadWholeFile(Path(1));
    size_ = bytes.size();
    bytes[bad_offset_ + kRecordHeaderBytes + 3] ^= 0x20;
    WriteWholeFile(Path(1), bytes);
  }
  uint64_t bad_offset_ = 0;
  uint64_t size_ = 0;
};

TEST_F(WalCorruptionTest, StrictModeRefusesNamingFileOffsetAndTheWayOut) {
  Replayed r = Replay(*fs_, dir_.path());
  ASSERT_FALSE(r.report.ok());
  EXPECT_EQ(r.report.status().code(), StatusCode::kIoError);
  EXPECT_EQ(r.report.status().message(),
            "WAL corruption in " + Path(1) + " at offset " + std::to_string(bad_offset_) +
                ": checksum mismatch (record of 8 bytes); start with "
                "--wal-recovery=keep-valid-prefix to keep the records before it");
  EXPECT_EQ(SizeOf(Path(1)), size_) << "strict mode never cuts";
}

TEST_F(WalCorruptionTest, KeepValidPrefixStopsAtTheCorruptionAndReportsIt) {
  Replayed r = Replay(*fs_, dir_.path(), 0, WalRecoveryMode::kKeepValidPrefix, false);
  ASSERT_TRUE(r.report.ok()) << r.report.status().ToString();
  EXPECT_EQ(r.payloads, std::vector<std::string>{"a"}) << "segment 2 is not replayed either";
  ASSERT_TRUE(r.report->corruption.has_value());
  const WalDamage& c = *r.report->corruption;
  EXPECT_EQ(c.path, Path(1));
  EXPECT_EQ(c.offset, bad_offset_);
  EXPECT_EQ(c.dropped_bytes, size_ - bad_offset_);
  EXPECT_NE(c.reason.find("checksum mismatch"), std::string::npos) << c.reason;
  EXPECT_NE(c.reason.find("1 later segment(s), 2 to 2"), std::string::npos) << c.reason;
  EXPECT_EQ(SizeOf(Path(1)), size_);
}

TEST_F(WalCorruptionTest, RepairCutsTheDamagedSegmentAndSetsLaterOnesAside) {
  Replayed r = Replay(*fs_, dir_.path(), 0, WalRecoveryMode::kKeepValidPrefix, true);
  ASSERT_TRUE(r.report.ok());
  ASSERT_TRUE(r.report->corruption.has_value());
  EXPECT_EQ(SizeOf(Path(1)), bad_offset_);
  EXPECT_FALSE(std::filesystem::exists(Path(2)));
  EXPECT_TRUE(std::filesystem::exists(Path(2) + ".dropped"));
  EXPECT_NE(r.report->corruption->reason.find("set aside"), std::string::npos);

  // The next start sees only the kept prefix: what was dropped stays dropped.
  Replayed again = Replay(*fs_, dir_.path());
  ASSERT_TRUE(again.report.ok()) << again.report.status().ToString();
  EXPECT_EQ(again.payloads, (std::vector<std::string>{"a"}));
  EXPECT_FALSE(again.report->corruption.has_value());
  EXPECT_TRUE(again.report->torn_tails.empty());
}

TEST_F(WalTest, CallbackErrorStopsTheReplayAndIsReturned) {
  WriteSegment(1, {"a", "b", "c"});
  int calls = 0;
  Result<WalReplayReport> r =
      ReplayWal(*fs_, dir_.path(), 0, WalRecoveryMode::kStrict, false, [&](const Record& rec) {
        ++calls;
        return rec.payload == "b" ? Status::BadRequest("cannot decode b") : Status::Ok();
      });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "cannot decode b");
  EXPECT_EQ(calls, 2);
}

TEST_F(WalTest, MissingDirectoryIsAnIoError) {
  Replayed r = Replay(*fs_, dir_.path() + "/missing");
  ASSERT_FALSE(r.report.ok());
  EXPECT_EQ(r.report.status().code(), StatusCode::kIoError);
}

}  // namespace
}  // namespace tagcache::storage
