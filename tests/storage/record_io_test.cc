// Record framing: round trips, and the reader's line between a torn tail
// (the file ends inside a record, or in zeros: dropped, never fatal) and
// corruption (a bad record with more data after it).
#include "tagcache/storage/record_io.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
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
  TempDir() : ScopedTempDir("tagcache-rec") {}
};

void WriteWholeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

struct ReadBack {
  std::vector<uint8_t> types;
  std::vector<std::string> payloads;
  std::vector<uint64_t> offsets;
  ReadOutcome outcome = ReadOutcome::kEnd;
  uint64_t bad_offset = 0;
  Status error;
  uint64_t valid_bytes = 0;
};

ReadBack ReadRecords(std::unique_ptr<SequentialFile> file, const std::string& name) {
  RecordReader reader(std::move(file), name);
  ReadBack out;
  for (;;) {
    Record rec;
    ReadOutcome o = reader.Next(&rec, &out.bad_offset, &out.error);
    if (o != ReadOutcome::kRecord) {
      out.outcome = o;
      break;
    }
    out.types.push_back(rec.type);
    out.payloads.emplace_back(rec.payload);
    out.offsets.push_back(rec.offset);
  }
  out.valid_bytes = reader.valid_bytes();
  return out;
}

ReadBack ReadFile(FileSystem& fs, const std::string& path) {
  Result<std::unique_ptr<SequentialFile>> file = fs.NewSequentialFile(path);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return ReadRecords(std::move(*file), path);
}

// Serves bytes from memory, `max_read` at a time, failing once `fail_at`
// bytes have been served.
class MemoryFile : public SequentialFile {
 public:
  MemoryFile(std::string data, size_t max_read, size_t fail_at = SIZE_MAX)
      : data_(std::move(data)), max_read_(max_read), fail_at_(fail_at) {}
  Result<size_t> Read(char* buf, size_t n) override {
    if (pos_ >= fail_at_) return Status::IoError("mem: Input/output error");
    n = std::min({n, max_read_, data_.size() - pos_, fail_at_ - pos_});
    std::memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string data_;
  size_t max_read_;
  size_t fail_at_;
  size_t pos_ = 0;
};

ReadBack ReadMemory(std::string data, size_t max_read = SIZE_MAX) {
  return ReadRecords(std::make_unique<MemoryFile>(std::move(data), max_read), "mem");
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A small log: records of a few sizes, with their offsets.
struct Log {
  std::string bytes;
  std::vector<uint64_t> offsets;
  std::vector<std::string> payloads;
};

Log MakeLog(std::mt19937_64& rng, const std::vector<size_t>& sizes) {
  Log log;
  for (size_t n : sizes) {
    log.offsets.push_back(log.bytes.size());
    log.payloads.push_back(RandomBytes(rng, n));
    AppendRecord(RecordType::kEvents, log.payloads.back(), log.bytes);
  }
  return log;
}

void ExpectPrefix(const ReadBack& got, const Log& log, size_t n) {
  ASSERT_EQ(got.payloads.size(), n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(got.payloads[i], log.payloads[i]) << "record " << i;
    EXPECT_EQ(got.offsets[i], log.offsets[i]) << "record " << i;
  }
  EXPECT_EQ(got.valid_bytes, n < log.offsets.size() ? log.offsets[n] : log.bytes.size());
}

TEST(RecordFormatTest, HeaderIsChecksumLengthTypeAndZeroReservedBytesLittleEndian) {
  std::string out = "prefix";
  AppendRecord(static_cast<uint8_t>(kSkippableBit | 0x21), "abc", out);
  ASSERT_EQ(out.size(), 6 + kRecordHeaderBytes + 3);
  const char* h = out.data() + 6;
  uint64_t checksum = 0;
  for (int i = 7; i >= 0; --i) checksum = (checksum << 8) | static_cast<unsigned char>(h[i]);
  EXPECT_EQ(checksum, XXH3_64bits(h + 8, 8 + 3));
  EXPECT_EQ(std::string(h + 8, 8), std::string("\x03\x00\x00\x00\xa1\x00\x00\x00", 8));
  EXPECT_EQ(std::string(h + 16, 3), "abc");
}

TEST(RecordReaderTest, RoundTripsRecordsOfRandomSizesAndTypes) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  std::mt19937_64 rng(7);
  std::vector<std::string> payloads;
  std::vector<uint8_t> types;
  std::vector<size_t> sizes = {0, 1, 15, 16, 17, 1 << 20, (1 << 20) - 16, 0};
  std::uniform_int_distribution<size_t> small(0, 4096);
  std::uniform_int_distribution<size_t> large(0, 1 << 20);
  for (int i = 0; i < 300; ++i) sizes.push_back(i % 20 == 0 ? large(rng) : small(rng));
  std::string framed;
  for (size_t i = 0; i < sizes.size(); ++i) {
    payloads.push_back(RandomBytes(rng, sizes[i]));
    uint8_t type = static_cast<uint8_t>(rng() % 128);
    if (i % 3 == 0) type |= kSkippableBit;
    types.push_back(type);
    AppendRecord(type, payloads.back(), framed);
  }
  auto file = fs->NewWritableFile(dir / "log");
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append(framed).ok());
  ASSERT_TRUE((*file)->Close().ok());

  ReadBack got = ReadFile(*fs, dir / "log");
  EXPECT_EQ(got.outcome, ReadOutcome::kEnd) << got.error.ToString();
  ASSERT_EQ(got.payloads.size(), payloads.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < payloads.size(); ++i) {
    ASSERT_EQ(got.payloads[i], payloads[i]) << "record " << i;
    EXPECT_EQ(got.types[i], types[i]);
    EXPECT_EQ(got.offsets[i], offset);
    offset += kRecordHeaderBytes + payloads[i].size();
  }
  EXPECT_EQ(got.valid_bytes, framed.size());
}

TEST(RecordReaderTest, AssemblesRecordsFromShortReads) {
  std::mt19937_64 rng(1);
  Log log = MakeLog(rng, {0, 5, 100, 3000, 1});
  for (size_t max_read : {1, 3, 16, 17, 4096}) {
    ReadBack got = ReadMemory(log.bytes, max_read);
    EXPECT_EQ(got.outcome, ReadOutcome::kEnd);
    ExpectPrefix(got, log, 5);
  }
}

TEST(RecordReaderTest, EmptyFileEndsCleanlyAndTheEndRepeats) {
  RecordReader reader(std::make_unique<MemoryFile>("", 100), "mem");
  Record rec;
  uint64_t bad = 0;
  Status error;
  EXPECT_EQ(reader.Next(&rec, &bad, &error), ReadOutcome::kEnd);
  EXPECT_EQ(reader.Next(&rec, &bad, &error), ReadOutcome::kEnd);
  EXPECT_EQ(reader.valid_bytes(), 0u);
}

TEST(RecordReaderTest, TruncatedTailIsTornNotCorruptAtEveryLength) {
  std::mt19937_64 rng(2);
  Log log = MakeLog(rng, {10, 0, 200, 33, 300});
  const uint64_t last = log.offsets.back();
  for (uint64_t len = last; len < log.bytes.size(); ++len) {
    SCOPED_TRACE("file cut to " + std::to_string(len) + " bytes");
    ReadBack got = ReadMemory(log.bytes.substr(0, len), 64);
    ExpectPrefix(got, log, 4);
    if (len == last) {
      EXPECT_EQ(got.outcome, ReadOutcome::kEnd);
      continue;
    }
    ASSERT_EQ(got.outcome, ReadOutcome::kTornTail) << got.error.ToString();
    EXPECT_EQ(got.bad_offset, last);
    EXPECT_EQ(got.error.code(), StatusCode::kIoError);
    EXPECT_NE(got.error.message().find("mem: offset " + std::to_string(last) + ": "),
              std::string::npos)
        << got.error.message();
  }
}

TEST(RecordReaderTest, TruncatedLargeRecordSpanningReadChunksIsTorn) {
  std::mt19937_64 rng(3);
  Log log = MakeLog(rng, {100, 3 << 20});
  const uint64_t last = log.offsets.back();
  for (uint64_t len : {last + 1, last + 15, last + 16, last + 17, last + (1 << 20),
                       last + (2 << 20) + 5, uint64_t{log.bytes.size() - 1}}) {
    ReadBack got = ReadMemory(log.bytes.substr(0, len));
    ExpectPrefix(got, log, 1);
    EXPECT_EQ(got.outcome, ReadOutcome::kTornTail) << len;
    EXPECT_EQ(got.bad_offset, last);
  }
}

TEST(RecordReaderTest, FlippedByteInAMidLogRecordIsCorruptionAtThatRecord) {
  std::mt19937_64 rng(4);
  Log log = MakeLog(rng, {50, 120, 200, 80, 10});
  const size_t target = 2;
  const uint64_t start = log.offsets[target];
  const uint64_t end = log.offsets[target + 1];
  for (uint64_t pos = start; pos < end; ++pos) {  // header and payload
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      SCOPED_TRACE("byte " + std::to_string(pos) + " ^ " + std::to_string(mask));
      std::string damaged = log.bytes;
      damaged[pos] = static_cast<char>(damaged[pos] ^ mask);
      ReadBack got = ReadMemory(damaged, 100);
      ExpectPrefix(got, log, target);
      ASSERT_EQ(got.outcome, ReadOutcome::kCorrupt) << got.error.ToString();
      EXPECT_EQ(got.bad_offset, start);
      EXPECT_NE(got.error.message().find("mem: offset " + std::to_string(start) + ": "),
                std::string::npos)
          << got.error.message();
    }
  }
}

TEST(RecordReaderTest, CorruptionInAFileIsReportedWithItsPath) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  std::mt19937_64 rng(4);
  Log log = MakeLog(rng, {50, 120, 80});
  log.bytes[log.offsets[1] + 3] ^= 0x10;
  const std::string path = dir / "log";
  WriteWholeFile(path, log.bytes);
  ReadBack got = ReadFile(*fs, path);
  ExpectPrefix(got, log, 1);
  ASSERT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_EQ(got.error.message(), path + ": offset " + std::to_string(log.offsets[1]) +
                                     ": checksum mismatch (record of 120 bytes)");
}

TEST(RecordReaderTest, ChecksumMismatchMessageNamesFileOffsetAndLength) {
  std::mt19937_64 rng(5);
  Log log = MakeLog(rng, {10, 120, 10});
  log.bytes[log.offsets[1] + 20] ^= 1;
  ReadBack got = ReadMemory(log.bytes);
  ASSERT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_EQ(got.error.message(), "mem: offset " + std::to_string(log.offsets[1]) +
                                     ": checksum mismatch (record of 120 bytes)");
}

TEST(RecordReaderTest, DamagedLengthClaimingPastTheEndIsCorruptWhenRecordsFollow) {
  std::mt19937_64 rng(6);
  Log log = MakeLog(rng, {10, 40, 10, 10});
  // Record 1 now claims to run well past the end of the file.
  log.bytes[log.offsets[1] + 9] = 0x10;
  ReadBack got = ReadMemory(log.bytes);
  ExpectPrefix(got, log, 1);
  EXPECT_EQ(got.outcome, ReadOutcome::kCorrupt) << got.error.ToString();
  EXPECT_EQ(got.bad_offset, log.offsets[1]);
}

TEST(RecordReaderTest, DamagedLengthOfTheLastRecordIsTorn) {
  std::mt19937_64 rng(6);
  Log log = MakeLog(rng, {10, 40, 10, 60});
  log.bytes[log.offsets[3] + 9] = 0x10;
  ReadBack got = ReadMemory(log.bytes);
  ExpectPrefix(got, log, 3);
  EXPECT_EQ(got.outcome, ReadOutcome::kTornTail) << got.error.ToString();
}

TEST(RecordReaderTest, LengthAboveTheLimitIsDamage) {
  std::mt19937_64 rng(8);
  Log log = MakeLog(rng, {10, 10, 10});
  log.bytes[log.offsets[1] + 11] = 0x7f;  // length >= 2^30 + ...
  ReadBack got = ReadMemory(log.bytes);
  ExpectPrefix(got, log, 1);
  EXPECT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_NE(got.error.message().find("exceeds the limit"), std::string::npos)
      << got.error.message();
}

TEST(RecordReaderTest, NonzeroReservedByteIsDamage) {
  std::mt19937_64 rng(9);
  Log log = MakeLog(rng, {10, 10, 10});
  log.bytes[log.offsets[1] + 14] = 1;
  ReadBack got = ReadMemory(log.bytes);
  ExpectPrefix(got, log, 1);
  EXPECT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_NE(got.error.message().find("reserved"), std::string::npos);
}

TEST(RecordReaderTest, ZeroFilledTailIsTorn) {
  std::mt19937_64 rng(10);
  Log log = MakeLog(rng, {10, 300, 7});
  ReadBack got = ReadMemory(log.bytes + std::string(4096, '\0'));
  ExpectPrefix(got, log, 3);
  ASSERT_EQ(got.outcome, ReadOutcome::kTornTail);
  EXPECT_EQ(got.bad_offset, log.bytes.size());
  EXPECT_NE(got.error.message().find("only zero bytes"), std::string::npos)
      << got.error.message();
}

TEST(RecordReaderTest, ZerosOverwritingTheLastRecordAreTorn) {
  std::mt19937_64 rng(11);
  Log log = MakeLog(rng, {10, 300, 700});
  std::string damaged = log.bytes;
  std::fill(damaged.begin() + static_cast<std::ptrdiff_t>(log.offsets[2]), damaged.end(), '\0');
  for (const std::string& bytes : {damaged, damaged + std::string(4096, '\0')}) {
    ReadBack got = ReadMemory(bytes);
    ExpectPrefix(got, log, 2);
    EXPECT_EQ(got.outcome, ReadOutcome::kTornTail);
    EXPECT_EQ(got.bad_offset, log.offsets[2]);
  }
}

TEST(RecordReaderTest, UnwrittenPagesInsideTheLastRecordAreTorn) {
  // The header made it to disk, part of the payload did not (zeros), and the
  // file was extended with zeros past the record's end.
  std::mt19937_64 rng(12);
  Log log = MakeLog(rng, {10, 5000});
  std::string damaged = log.bytes;
  std::fill(damaged.begin() + static_cast<std::ptrdiff_t>(log.offsets[1] + 100), damaged.end(),
            '\0');
  damaged += std::string(3000, '\0');
  ReadBack got = ReadMemory(damaged);
  ExpectPrefix(got, log, 1);
  EXPECT_EQ(got.outcome, ReadOutcome::kTornTail) << got.error.ToString();
}

TEST(RecordReaderTest, ZerosFollowedByMoreRecordsAreCorruption) {
  std::mt19937_64 rng(13);
  Log log = MakeLog(rng, {10, 20});
  std::string bytes = log.bytes + std::string(4096, '\0');
  AppendRecord(RecordType::kEvents, "after the hole", bytes);
  ReadBack got = ReadMemory(bytes);
  ExpectPrefix(got, log, 2);
  EXPECT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_EQ(got.bad_offset, log.bytes.size());
}

TEST(RecordReaderTest, NonzeroBytesPastADamagedRecordAreCorruption) {
  std::mt19937_64 rng(14);
  Log log = MakeLog(rng, {10, 20, 30});
  log.bytes[log.offsets[2] + 20] ^= 1;
  ReadBack got = ReadMemory(log.bytes + RandomBytes(rng, 16));
  ExpectPrefix(got, log, 2);
  EXPECT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_EQ(got.bad_offset, log.offsets[2]);
}

TEST(RecordReaderTest, GarbageWhoseHeaderClaimsMoreThanTheFileHoldsIsTorn) {
  // Indistinguishable from a record cut short, and nothing valid follows.
  std::mt19937_64 rng(14);
  Log log = MakeLog(rng, {10, 20});
  std::string garbage = RandomBytes(rng, 100);
  garbage[11] = 0x20;  // a length of about 512 MiB
  ReadBack got = ReadMemory(log.bytes + garbage);
  ExpectPrefix(got, log, 2);
  EXPECT_EQ(got.outcome, ReadOutcome::kTornTail);
}

TEST(RecordReaderTest, CorruptionFollowedByMegabytesOfRecordsIsFoundWithBoundedReads) {
  std::mt19937_64 rng(15);
  std::vector<size_t> sizes(40, 100 << 10);
  Log log = MakeLog(rng, sizes);
  log.bytes[log.offsets[0] + 11] ^= 0x3f;  // a huge length in the first record
  ReadBack got = ReadMemory(log.bytes, 4096);
  EXPECT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_EQ(got.bad_offset, 0u);
}

TEST(RecordReaderTest, RandomDamageYieldsAPrefixOfTheRecordsAndNeverAForgedOne) {
  std::mt19937_64 rng(18);
  std::uniform_int_distribution<size_t> size(0, 300);
  std::vector<size_t> sizes;
  for (int i = 0; i < 30; ++i) sizes.push_back(size(rng));
  const Log log = MakeLog(rng, sizes);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes = log.bytes;
    const size_t at = rng() % bytes.size();
    switch (trial % 4) {
      case 0:
        bytes[at] = static_cast<char>(bytes[at] ^ (1 + rng() % 255));
        break;
      case 1:
        bytes.resize(at);
        break;
      case 2:
        std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                  bytes.begin() + static_cast<std::ptrdiff_t>(std::min(bytes.size(), at + 64)),
                  '\0');
        break;
      case 3:
        bytes.insert(at, RandomBytes(rng, 1 + rng() % 40));
        break;
    }
    SCOPED_TRACE("trial " + std::to_string(trial));
    ReadBack got = ReadMemory(bytes, 1 + rng() % 200);
    ASSERT_LE(got.payloads.size(), log.payloads.size());
    for (size_t i = 0; i < got.payloads.size(); ++i) {
      ASSERT_EQ(got.payloads[i], log.payloads[i]) << "record " << i;
      ASSERT_EQ(got.offsets[i], log.offsets[i]) << "record " << i;
    }
    const uint64_t intact_before = static_cast<uint64_t>(
        std::upper_bound(log.offsets.begin(), log.offsets.end(), at) - log.offsets.begin());
    // Every record that ends before the damage is read back.
    ASSERT_GE(got.payloads.size() + 1, intact_before);
    if (got.outcome != ReadOutcome::kEnd) {
      EXPECT_EQ(got.bad_offset, got.valid_bytes);
    }
  }
}

TEST(RecordReaderTest, DamageRepeatsOnLaterCalls) {
  std::mt19937_64 rng(16);
  Log log = MakeLog(rng, {10, 20});
  RecordReader reader(std::make_unique<MemoryFile>(log.bytes.substr(0, log.bytes.size() - 1), 8),
                      "mem");
  Record rec;
  uint64_t bad = 0;
  Status error;
  ASSERT_EQ(reader.Next(&rec, &bad, &error), ReadOutcome::kRecord);
  ASSERT_EQ(reader.Next(&rec, &bad, &error), ReadOutcome::kTornTail);
  bad = 0;
  error = Status::Ok();
  EXPECT_EQ(reader.Next(&rec, &bad, &error), ReadOutcome::kTornTail);
  EXPECT_EQ(bad, log.offsets[1]);
  EXPECT_FALSE(error.ok());
  EXPECT_EQ(reader.valid_bytes(), log.offsets[1]);
}

TEST(RecordReaderTest, ReadErrorStopsAsCorruptionNamingTheCause) {
  std::mt19937_64 rng(17);
  Log log = MakeLog(rng, {10, 2000, 10});
  ReadBack got = ReadRecords(std::make_unique<MemoryFile>(log.bytes, 100, log.offsets[1] + 50),
                             "mem");
  ExpectPrefix(got, log, 1);
  EXPECT_EQ(got.outcome, ReadOutcome::kCorrupt);
  EXPECT_EQ(got.bad_offset, log.offsets[1]);
  EXPECT_NE(got.error.message().find("read failed: mem: Input/output error"), std::string::npos)
      << got.error.message();
}

}  // namespace
}  // namespace tagcache::storage
