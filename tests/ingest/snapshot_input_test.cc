// The snapshot input readers on files generated here: every format, plain
// and gzip (zlib's own writer), directories, and broken inputs, which must
// be reported with their line, or refused whole without adding anything.
#include "tagcache/ingest/snapshot_input.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <roaring/roaring.hh>
#include <roaring/roaring64map.hh>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/temp_dir.h"

namespace tagcache::ingest {
namespace {

using Model = std::map<std::string, std::set<uint64_t>>;
using tagcache::testing::ScopedTempDir;

constexpr int kBits = 16;

Model Dump(SnapshotSet& set) {
  Model model;
  for (const std::string& tag : set.Tags()) {
    std::set<uint64_t>& users = model[tag];
    for (const auto& [shard, offsets] : set.Parts(tag)) {
      for (uint32_t offset : offsets) users.insert(shard << set.shard_bits() | offset);
    }
  }
  return model;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One gzip member, written by zlib's gz* writer.
std::string Gzip(const std::string& bytes) {
  ScopedTempDir dir("gz");
  const std::string path = dir / "x.gz";
  gzFile gz = gzopen(path.c_str(), "wb");
  EXPECT_NE(gz, nullptr);
  if (!bytes.empty()) {
    EXPECT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  EXPECT_EQ(gzclose(gz), Z_OK);
  return ReadFileBytes(path);
}

std::string Portable(const Roaring& bitmap) {
  std::string bytes(bitmap.getSizeInBytes(true), '\0');
  EXPECT_EQ(bitmap.write(bytes.data(), true), bytes.size());
  return bytes;
}

std::string Portable64(const Roaring64Map& bitmap) {
  std::string bytes(bitmap.getSizeInBytes(true), '\0');
  EXPECT_EQ(bitmap.write(bytes.data(), true), bytes.size());
  return bytes;
}

std::string U32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string U64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string U16(uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); }

std::vector<std::string> Messages(const FileReadResult& r) {
  std::vector<std::string> out;
  for (const InputError& e : r.errors) out.push_back(e.ToString());
  return out;
}

class SnapshotInputTest : public ::testing::Test {
 protected:
  // Reads `path` into a fresh set; the set's contents.
  Model Read(const std::string& path, const InputOptions& options = {}) {
    SnapshotSet set(kBits);
    last_ = ReadSnapshotFile(path, options, &set);
    return Dump(set);
  }

  // Reads `path` into a set holding a sentinel tag and expects it refused
  // with nothing added; the error message.
  std::string ExpectRefused(const std::string& path, const InputOptions& options = {}) {
    SnapshotSet set(kBits);
    set.Add("sentinel", 77);
    last_ = ReadSnapshotFile(path, options, &set);
    EXPECT_TRUE(last_.file_refused) << path;
    EXPECT_EQ(last_.error_count, 1u) << path;
    EXPECT_EQ(last_.pairs, 0u) << path;
    EXPECT_EQ(Dump(set), (Model{{"sentinel", {77}}})) << path << " added something";
    if (last_.errors.size() != 1) {
      ADD_FAILURE() << path << ": " << last_.errors.size() << " errors kept";
      return "";
    }
    EXPECT_EQ(last_.errors[0].line, 0u);
    EXPECT_EQ(last_.errors[0].file, path);
    return last_.errors[0].message;
  }

  ScopedTempDir dir_{"snapshot-input"};
  FileReadResult last_;
};

TEST_F(SnapshotInputTest, ParseInputFormatAcceptsEveryNameAndRefusesOthers) {
  for (InputFormat format :
       {InputFormat::kAuto, InputFormat::kCsv, InputFormat::kTsv, InputFormat::kIdList,
        InputFormat::kRoaring, InputFormat::kRoaring32, InputFormat::kRoaring64}) {
    Result<InputFormat> parsed = ParseInputFormat(InputFormatName(format));
    ASSERT_TRUE(parsed.ok()) << InputFormatName(format);
    EXPECT_EQ(*parsed, format);
  }
  Result<InputFormat> bad = ParseInputFormat("parquet");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsBadRequest());
  EXPECT_NE(bad.status().message().find("parquet"), std::string::npos);
  EXPECT_NE(bad.status().message().find("roaring64"), std::string::npos);
  EXPECT_FALSE(ParseInputFormat("CSV").ok());
  EXPECT_FALSE(ParseInputFormat("").ok());
}

TEST_F(SnapshotInputTest, InputErrorToString) {
  EXPECT_EQ((InputError{"a.csv", 3, "bad"}).ToString(), "a.csv:3: bad");
  EXPECT_EQ((InputError{"a.csv", 0, "broken"}).ToString(), "a.csv: broken");
}

TEST_F(SnapshotInputTest, CsvPairs) {
  const std::string path = dir_ / "pairs.csv";
  WriteFile(path, "1,a\n2,b\n18446744073709551615,a\n3,a");  // no final newline
  EXPECT_EQ(Read(path), (Model{{"a", {1, 3, 18446744073709551615u}}, {"b", {2}}}));
  EXPECT_EQ(last_.pairs, 4u);
  EXPECT_EQ(last_.lines, 4u);
  EXPECT_EQ(last_.error_count, 0u);
  EXPECT_FALSE(last_.file_refused);
}

TEST_F(SnapshotInputTest, CsvHeaderQuotesSpacesCrlfAndBlankLines) {
  const std::string path = dir_ / "spark.csv";
  WriteFile(path,
            "\xEF\xBB\xBF\"user_id\",\"tag\"\r\n"
            "\r\n"
            "\"10\",\"q\"\r\n"
            "  11 ,  q  \r\n"
            " \"12\" , \"r:1\" \r\n"
            "\n"
            "   \n"
            "13,r:1\r\n");
  EXPECT_EQ(Read(path), (Model{{"q", {10, 11}}, {"r:1", {12, 13}}}));
  EXPECT_EQ(last_.error_count, 0u) << ::testing::PrintToString(Messages(last_));
  EXPECT_EQ(last_.pairs, 4u);
  EXPECT_EQ(last_.lines, 8u);
}

TEST_F(SnapshotInputTest, CsvHeaderOnlyOnLineOne) {
  const std::string path = dir_ / "h.csv";
  WriteFile(path, "user_id,tag\n1,a\nuser_id,tag\n");
  EXPECT_EQ(Read(path), (Model{{"a", {1}}}));
  ASSERT_EQ(last_.errors.size(), 1u);
  EXPECT_EQ(last_.errors[0].ToString(), path + ":3: user id 'user_id' is not a decimal number");
}

TEST_F(SnapshotInputTest, CsvBadLinesAreReportedWithTheirLineNumbers) {
  const std::string path = dir_ / "bad.csv";
  WriteFile(path,
            "1,a\n"                     // 1
            "\n"                        // 2
            "2,a,extra\n"               // 3
            "\n"                        // 4
            "\n"                        // 5
            "3\n"                       // 6
            "x4,a\n"                    // 7
            "18446744073709551616,a\n"  // 8
            "5,bad tag\n"               // 9
            "6,\n"                      // 10
            "\"7,a\n"                   // 11
            "-8,a\n"                    // 12
            ",a\n"                      // 13
            "9,a\n");                   // 14
  EXPECT_EQ(Read(path), (Model{{"a", {1, 9}}}));
  EXPECT_FALSE(last_.file_refused);
  EXPECT_EQ(last_.pairs, 2u);
  EXPECT_EQ(last_.lines, 14u);
  EXPECT_EQ(last_.error_count, 9u);
  const std::vector<std::string> expected = {
      path + ":3: expected 2 fields (user_id,tag), got 3",
      path + ":6: expected 2 fields (user_id,tag), got 1",
      path + ":7: user id 'x4' is not a decimal number",
      path +
          ":8: user id 18446744073709551616 is out of range (the largest is "
          "18446744073709551615)",
      path + ":9: invalid tag name 'bad tag' (1-128 bytes of [A-Za-z0-9_.:-])",
      path + ":10: missing tag",
      path + ":11: field 1: unterminated quoted field",
      path + ":12: user id '-8' is not a decimal number",
      path + ":13: missing user id",
  };
  EXPECT_EQ(Messages(last_), expected);
}

TEST_F(SnapshotInputTest, ErrorsKeptAreLimitedButAllCounted) {
  const std::string path = dir_ / "many.csv";
  std::string text = "1,a\n";
  for (int i = 0; i < 50; ++i) text += "oops\n";
  WriteFile(path, text);
  SnapshotSet set(kBits);
  FileReadResult r = ReadSnapshotFile(path, {}, &set, nullptr, ReadLimits{5});
  EXPECT_EQ(r.error_count, 50u);
  ASSERT_EQ(r.errors.size(), 5u);
  EXPECT_EQ(r.errors[4].line, 6u);
  EXPECT_EQ(Dump(set), (Model{{"a", {1}}}));
}

TEST_F(SnapshotInputTest, TsvPairs) {
  const std::string path = dir_ / "pairs.tsv";
  WriteFile(path, "user_id\ttag\n1\ta\n \"2\" \tb\r\n3,c\n4\tb\n");
  EXPECT_EQ(Read(path), (Model{{"a", {1}}, {"b", {2, 4}}}));
  EXPECT_EQ(Messages(last_),
            (std::vector<std::string>{path + ":4: expected 2 fields (user_id<TAB>tag), got 1"}));
}

TEST_F(SnapshotInputTest, ExplicitFormatOverridesTheName) {
  const std::string path = dir_ / "data.txt";
  WriteFile(path, "1,a\n2,b\n");
  InputOptions options;
  options.format = InputFormat::kCsv;
  EXPECT_EQ(Read(path, options), (Model{{"a", {1}}, {"b", {2}}}));
}

TEST_F(SnapshotInputTest, IdListTakesTheTagFromTheStemOrOption) {
  const std::string path = dir_ / "apple_fan.ids";
  WriteFile(path, "# exported 2024-06-01\n1\n\n  2  \r\n\t3\n# 4\n18446744073709551615\n");
  EXPECT_EQ(Read(path), (Model{{"apple_fan", {1, 2, 3, 18446744073709551615u}}}));
  EXPECT_EQ(last_.error_count, 0u) << ::testing::PrintToString(Messages(last_));
  EXPECT_EQ(last_.pairs, 4u);

  InputOptions options;
  options.tag = "other:tag";
  EXPECT_EQ(Read(path, options), (Model{{"other:tag", {1, 2, 3, 18446744073709551615u}}}));

  for (const char* name : {"plain", "v1.2.txt", "x.ids.gz"}) {
    const std::string p = dir_ / name;
    WriteFile(p, "5\n");
    const std::string stem = std::string(name) == "plain"      ? "plain"
                             : std::string(name) == "v1.2.txt" ? "v1.2"
                                                               : "x";
    EXPECT_EQ(Read(p), (Model{{stem, {5}}})) << name;
  }
}

TEST_F(SnapshotInputTest, IdListBadLines) {
  const std::string path = dir_ / "t.ids";
  WriteFile(path, "1\n\nabc\n2 3\n99999999999999999999\n4\n");
  EXPECT_EQ(Read(path), (Model{{"t", {1, 4}}}));
  EXPECT_EQ(Messages(last_),
            (std::vector<std::string>{
                path + ":3: user id 'abc' is not a decimal number",
                path + ":4: user id '2 3' is not a decimal number",
                path + ":5: user id 99999999999999999999 is out of range (the largest is "
                       "18446744073709551615)",
            }));
}

TEST_F(SnapshotInputTest, EmptyIdListMakesTheTagPresentWithoutMembers) {
  const std::string path = dir_ / "dropped.ids";
  WriteFile(path, "");
  EXPECT_EQ(Read(path), (Model{{"dropped", {}}}));
  EXPECT_FALSE(last_.file_refused);
  WriteFile(path, "# nothing\n\n");
  EXPECT_EQ(Read(path), (Model{{"dropped", {}}}));
}

TEST_F(SnapshotInputTest, BadTagFromTheFileNameOrOptionRefusesTheFile) {
  const std::string path = dir_ / "bad name.ids";
  WriteFile(path, "1\n");
  std::string message = ExpectRefused(path);
  EXPECT_NE(message.find("'bad name'"), std::string::npos) << message;
  EXPECT_NE(message.find("file name"), std::string::npos) << message;

  const std::string good = dir_ / "good.ids";
  WriteFile(good, "1\n");
  InputOptions options;
  options.tag = "no/slash";
  message = ExpectRefused(good, options);
  EXPECT_NE(message.find("--tag"), std::string::npos) << message;

  const std::string roaring = dir_ / "bad name.roaring";
  Roaring users;
  users.add(1);
  WriteFile(roaring, Portable(users));
  ExpectRefused(roaring);
}

// 32-bit users land in 2^(32 - kBits) possible shards; these span several.
Roaring Users32() {
  Roaring users;
  users.addRange(100, 5000);
  users.addRange(65530, 65545);  // across a shard boundary
  for (uint32_t v : {1u << 20, 3u << 24, 0xFFFFFFFFu}) users.add(v);
  users.runOptimize();
  return users;
}

Roaring64Map Users64() {
  Roaring64Map users;
  for (uint64_t high : {0ull, 1ull, 7ull, 0xFFFFFFFFull}) {
    for (uint64_t low : {0ull, 65535ull, 65536ull, 1000000ull, 0xFFFFFFFFull}) {
      users.add(high << 32 | low);
    }
  }
  return users;
}

std::set<uint64_t> Values(const Roaring& r) {
  std::set<uint64_t> out;
  for (uint32_t v : r) out.insert(v);
  return out;
}

std::set<uint64_t> Values(const Roaring64Map& r) {
  std::set<uint64_t> out;
  for (uint64_t v : r) out.insert(v);
  return out;
}

TEST_F(SnapshotInputTest, Roaring32FileSpansShards) {
  const Roaring users = Users32();
  for (const char* name : {"seg.roaring", "seg.bin", "seg.rb"}) {
    const std::string path = dir_ / name;
    WriteFile(path, Portable(users));
    SnapshotSet set(kBits);
    last_ = ReadSnapshotFile(path, {}, &set);
    EXPECT_EQ(Dump(set), (Model{{"seg", Values(users)}})) << name;
    EXPECT_EQ(last_.pairs, users.cardinality());
    EXPECT_EQ(set.DistinctShards(), 5u) << name;
  }
  InputOptions options;
  options.format = InputFormat::kRoaring32;
  EXPECT_EQ(Read(dir_ / "seg.bin", options), (Model{{"seg", Values(users)}}));
}

TEST_F(SnapshotInputTest, EmptyRoaringFilesMakeTheTagPresent) {
  const std::string p32 = dir_ / "none.roaring";
  WriteFile(p32, Portable(Roaring()));
  EXPECT_EQ(Read(p32), (Model{{"none", {}}}));
  const std::string p64 = dir_ / "none64.roaring64";
  WriteFile(p64, Portable64(Roaring64Map()));
  EXPECT_EQ(Read(p64), (Model{{"none64", {}}}));
}

TEST_F(SnapshotInputTest, Roaring64FileSpansShardsAndHighKeys) {
  const Roaring64Map users = Users64();
  for (const char* name : {"big.roaring64", "big.r64", "big.roaring"}) {
    const std::string path = dir_ / name;
    WriteFile(path, Portable64(users));
    EXPECT_EQ(Read(path), (Model{{"big", Values(users)}})) << name;
    EXPECT_EQ(last_.pairs, users.cardinality());
  }
  InputOptions options;
  options.format = InputFormat::kRoaring32;
  EXPECT_NE(ExpectRefused(dir_ / "big.r64", options).find("32-bit"), std::string::npos);
  options.format = InputFormat::kRoaring64;
  WriteFile(dir_ / "small.roaring", Portable(Users32()));
  EXPECT_NE(ExpectRefused(dir_ / "small.roaring", options).find("64-bit"), std::string::npos);
}

TEST_F(SnapshotInputTest, Roaring64FileOnShardWidths) {
  const Roaring64Map users = Users64();
  const std::string path = dir_ / "w.roaring64";
  WriteFile(path, Portable64(users));
  for (int bits : {8, 12, 20, 32}) {
    SnapshotSet set(bits);
    FileReadResult r = ReadSnapshotFile(path, {}, &set);
    EXPECT_FALSE(r.file_refused) << bits;
    EXPECT_EQ(Dump(set), (Model{{"w", Values(users)}})) << bits;
  }
}

TEST_F(SnapshotInputTest, GzipOfEveryFormat) {
  const Roaring users32 = Users32();
  const Roaring64Map users64 = Users64();
  struct Case {
    std::string name;
    std::string bytes;
    Model expected;
  };
  const std::vector<Case> cases = {
      {"p.csv.gz", "user_id,tag\n1,a\n2,b\n", {{"a", {1}}, {"b", {2}}}},
      {"p.tsv.gz", "1\ta\n2\tb\n", {{"a", {1}}, {"b", {2}}}},
      {"fans.ids.gz", "1\n2\n", {{"fans", {1, 2}}}},
      {"s32.roaring.gz", Portable(users32), {{"s32", Values(users32)}}},
      {"s64.roaring64.gz", Portable64(users64), {{"s64", Values(users64)}}},
      {"s64b.roaring.gz", Portable64(users64), {{"s64b", Values(users64)}}},
      // gzip told by content: no ".gz" in the name.
      {"hidden.csv", "1,a\n", {{"a", {1}}}},
  };
  for (const Case& c : cases) {
    const std::string path = dir_ / c.name;
    WriteFile(path, Gzip(c.bytes));
    std::atomic<uint64_t> bytes_done{0};
    SnapshotSet set(kBits);
    last_ = ReadSnapshotFile(path, {}, &set, &bytes_done);
    EXPECT_FALSE(last_.file_refused) << c.name << ": " << ::testing::PrintToString(Messages(last_));
    EXPECT_EQ(Dump(set), c.expected) << c.name;
    EXPECT_EQ(bytes_done.load(), std::filesystem::file_size(path)) << c.name;
  }
  // A ".gz" name without the magic is read as it is.
  const std::string plain = dir_ / "notgz.csv.gz";
  WriteFile(plain, "5,z\n");
  EXPECT_EQ(Read(plain), (Model{{"z", {5}}}));
}

TEST_F(SnapshotInputTest, ConcatenatedGzipMembersReadAsOneStream) {
  const std::string path = dir_ / "cat.csv.gz";
  // The first member ends mid-line: members are one byte stream.
  WriteFile(path, Gzip("1,a\n2,") + Gzip("b\n3,c\n") + Gzip("") + Gzip("4,a\n"));
  EXPECT_EQ(Read(path), (Model{{"a", {1, 4}}, {"b", {2}}, {"c", {3}}}));
  EXPECT_EQ(last_.error_count, 0u) << ::testing::PrintToString(Messages(last_));

  const std::string ids = dir_ / "cat.ids.gz";
  WriteFile(ids, Gzip("7\n") + Gzip("8\n"));
  EXPECT_EQ(Read(ids), (Model{{"cat", {7, 8}}}));
}

std::string RandomCsv(int lines, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string text;
  for (int i = 0; i < lines; ++i) {
    text += std::to_string(rng() % 100000000) + ",tag_" + std::to_string(rng() % 50) + "\n";
  }
  return text;
}

TEST_F(SnapshotInputTest, CorruptGzipRefusesTheWholeFile) {
  std::string gz = Gzip(RandomCsv(100000, 5));
  ASSERT_GT(gz.size(), 100000u);
  const std::string path = dir_ / "corrupt.csv.gz";
  std::string flipped = gz;
  flipped[flipped.size() / 2] ^= 0x40;
  WriteFile(path, flipped);
  std::string message = ExpectRefused(path);
  EXPECT_NE(message.find("gzip"), std::string::npos) << message;

  // Truncated: the stream ends inside the member.
  WriteFile(path, gz.substr(0, gz.size() - 100));
  message = ExpectRefused(path);
  EXPECT_NE(message.find("truncated gzip"), std::string::npos) << message;
  // Without its 8-byte trailer (CRC and length) only.
  WriteFile(path, gz.substr(0, gz.size() - 8));
  ExpectRefused(path);
  // Bytes after the last member that are not a gzip member.
  WriteFile(path, gz + "garbage after the stream");
  message = ExpectRefused(path);
  EXPECT_NE(message.find("not a gzip member"), std::string::npos) << message;
  // A corrupt second member refuses the first one's lines too.
  std::string second = Gzip("1,a\n");
  second[second.size() - 5] ^= 1;  // its CRC
  WriteFile(path, Gzip("2,b\n") + second);
  ExpectRefused(path);
}

TEST_F(SnapshotInputTest, LargeTextStreamsAcrossChunks) {
  const std::string text = RandomCsv(300000, 11);  // ~5 MiB: several 1 MiB chunks
  ASSERT_GT(text.size(), size_t{3} << 20);
  Model expected;
  {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      const size_t comma = line.find(',');
      expected[line.substr(comma + 1)].insert(std::stoull(line.substr(0, comma)));
    }
  }
  const std::string plain = dir_ / "big.csv";
  const std::string gz = dir_ / "big.csv.gz";
  WriteFile(plain, text);
  WriteFile(gz, Gzip(text));
  for (const std::string& path : {plain, gz}) {
    std::atomic<uint64_t> bytes_done{0};
    SnapshotSet set(kBits);
    last_ = ReadSnapshotFile(path, {}, &set, &bytes_done);
    EXPECT_EQ(last_.error_count, 0u) << path;
    EXPECT_EQ(last_.pairs, 300000u) << path;
    EXPECT_EQ(last_.lines, 300000u) << path;
    EXPECT_EQ(Dump(set), expected) << path;
    EXPECT_EQ(bytes_done.load(), std::filesystem::file_size(path)) << path;
  }
}

TEST_F(SnapshotInputTest, OverlongLineRefusesTheFile) {
  const std::string path = dir_ / "long.csv";
  WriteFile(path, "1,a\n" + std::string(3 << 20, '7') + ",a\n");
  std::string message = ExpectRefused(path);
  EXPECT_NE(message.find("line 2"), std::string::npos) << message;
}

TEST_F(SnapshotInputTest, RefusedFileStillCountsItsBytes) {
  // Refused after its first chunk (the tag), and after reading it all.
  const std::string early = dir_ / "bad name.ids";
  WriteFile(early, std::string(3 << 20, '1'));
  const std::string late = dir_ / "broken.roaring";
  WriteFile(late, std::string(1000, 'x'));
  for (const std::string& path : {early, late}) {
    std::atomic<uint64_t> bytes_done{5};
    SnapshotSet set(kBits);
    FileReadResult r = ReadSnapshotFile(path, {}, &set, &bytes_done);
    EXPECT_TRUE(r.file_refused) << path;
    EXPECT_EQ(bytes_done.load(), 5 + std::filesystem::file_size(path)) << path;
  }
}

TEST_F(SnapshotInputTest, MissingFileIsRefused) {
  std::string message = ExpectRefused(dir_ / "nope.csv");
  EXPECT_NE(message.find("No such file"), std::string::npos) << message;
}

TEST_F(SnapshotInputTest, EveryTruncationOfARoaringFileIsRefused) {
  Roaring small;
  small.addRange(10, 20);
  small.add(70000);
  small.add(1u << 30);
  const std::string bytes32 = Portable(small);
  small.runOptimize();
  const std::string runs32 = Portable(small);
  Roaring64Map small64;
  small64.add(uint64_t{5});
  small64.add(uint64_t{3} << 32 | 9);
  small64.add(uint64_t{3} << 32 | 70000);
  const std::string bytes64 = Portable64(small64);

  struct Case {
    const char* name;
    const std::string* bytes;
  };
  for (const Case& c : {Case{"t32.roaring", &bytes32}, Case{"r32.roaring", &runs32},
                        Case{"t64.roaring", &bytes64}, Case{"t64b.roaring64", &bytes64}}) {
    const std::string path = dir_ / c.name;
    for (size_t length = 0; length < c.bytes->size(); ++length) {
      SCOPED_TRACE(std::string(c.name) + " cut to " + std::to_string(length));
      WriteFile(path, c.bytes->substr(0, length));
      ExpectRefused(path);
    }
    WriteFile(path, *c.bytes);  // and whole, it reads
    SnapshotSet set(kBits);
    EXPECT_FALSE(ReadSnapshotFile(path, {}, &set).file_refused) << c.name;
  }
}

TEST_F(SnapshotInputTest, StructurallyInvalidRoaringIsRefused) {
  // A 32-bit bitmap, one array container whose values are not ascending.
  const std::string unsorted =
      U32(12346) + U32(1) + U16(0) + U16(2) + U32(16) + U16(5) + U16(3) + U16(9);
  WriteFile(dir_ / "unsorted.roaring", unsorted);
  std::string message = ExpectRefused(dir_ / "unsorted.roaring");
  EXPECT_NE(message.find("array container"), std::string::npos) << message;
  // The same values ascending read: the crafted layout itself is right.
  WriteFile(dir_ / "sorted.roaring",
            U32(12346) + U32(1) + U16(0) + U16(2) + U32(16) + U16(3) + U16(5) + U16(9));
  EXPECT_EQ(Read(dir_ / "sorted.roaring"), (Model{{"sorted", {3, 5, 9}}}));

  Roaring one;
  one.add(1);
  const std::string bucket = Portable(one);
  // 64-bit buckets out of order, and twice the same key.
  WriteFile(dir_ / "keys.roaring64", U64(2) + U32(5) + bucket + U32(3) + bucket);
  message = ExpectRefused(dir_ / "keys.roaring64");
  EXPECT_NE(message.find("not strictly ascending"), std::string::npos) << message;
  EXPECT_NE(message.find("bucket 1 of 2 at byte 30 has key 3 after key 5"), std::string::npos)
      << message;
  WriteFile(dir_ / "dup.roaring64", U64(2) + U32(5) + bucket + U32(5) + bucket);
  ExpectRefused(dir_ / "dup.roaring64");
  // In range keys, but an invalid bucket bitmap.
  WriteFile(dir_ / "inner.roaring64", U64(2) + U32(1) + bucket + U32(3) + unsorted);
  message = ExpectRefused(dir_ / "inner.roaring64");
  EXPECT_NE(message.find("bucket 1 of 2 (key 3)"), std::string::npos) << message;
  // The well-formed version reads.
  WriteFile(dir_ / "good.roaring64", U64(2) + U32(1) + bucket + U32(3) + bucket);
  EXPECT_EQ(Read(dir_ / "good.roaring64"),
            (Model{{"good", {uint64_t{1} << 32 | 1, uint64_t{3} << 32 | 1}}}));

  // Trailing bytes after a complete bitmap, 32- and 64-bit.
  WriteFile(dir_ / "trail.roaring", Portable(Users32()) + "x");
  message = ExpectRefused(dir_ / "trail.roaring");
  WriteFile(dir_ / "trail.roaring64", Portable64(Users64()) + "xy");
  message = ExpectRefused(dir_ / "trail.roaring64");
  EXPECT_NE(message.find("2 trailing bytes"), std::string::npos) << message;

  // Not Roaring at all.
  WriteFile(dir_ / "text.roaring", "hello, world\n");
  message = ExpectRefused(dir_ / "text.roaring");
  EXPECT_NE(message.find("not a valid portable Roaring bitmap"), std::string::npos) << message;
}

TEST_F(SnapshotInputTest, FileErrorsDiscardEarlierLineErrors) {
  const std::string path = dir_ / "mixed.csv.gz";
  std::string gz = Gzip("bad line\n" + RandomCsv(50000, 3));
  gz[gz.size() / 2] ^= 0x10;
  WriteFile(path, gz);
  ExpectRefused(path);
}

TEST_F(SnapshotInputTest, ReadingUnitesWithWhatTheSetHolds) {
  const std::string a = dir_ / "a.csv";
  const std::string b = dir_ / "t.ids";
  WriteFile(a, "1,t\n2,u\n");
  WriteFile(b, "2\n3\n");
  SnapshotSet set(kBits);
  EXPECT_FALSE(ReadSnapshotFile(a, {}, &set).file_refused);
  EXPECT_FALSE(ReadSnapshotFile(b, {}, &set).file_refused);
  EXPECT_EQ(Dump(set), (Model{{"t", {1, 2, 3}}, {"u", {2}}}));
}

TEST_F(SnapshotInputTest, ExpandInputsWalksDirectoriesInOrder) {
  const std::string root = dir_ / "out";
  WriteFile(root + "/part-00001.csv", "1,a\n");
  WriteFile(root + "/part-00000.csv", "2,a\n");
  WriteFile(root + "/_SUCCESS", "");
  WriteFile(root + "/.part-00000.csv.crc", "crc");
  WriteFile(root + "/part-00000.csv.crc", "crc");
  WriteFile(root + "/.hidden/part-9.csv", "3,a\n");
  WriteFile(root + "/nested/deeper/part-2.csv", "4,a\n");
  WriteFile(root + "/nested/a.ids", "5\n");
  const std::string single = dir_ / "single.csv";
  WriteFile(single, "6,b\n");

  Result<std::vector<InputFile>> files = ExpandInputs({single, root});
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  std::vector<std::string> paths;
  for (const InputFile& f : *files) paths.push_back(f.path);
  EXPECT_EQ(paths, (std::vector<std::string>{single, root + "/nested/a.ids",
                                             root + "/nested/deeper/part-2.csv",
                                             root + "/part-00000.csv", root + "/part-00001.csv"}));
  EXPECT_EQ((*files)[0].bytes, 4u);

  SnapshotSet set(kBits);
  for (const InputFile& f : *files) EXPECT_FALSE(ReadSnapshotFile(f.path, {}, &set).file_refused);
  EXPECT_EQ(Dump(set), (Model{{"a", {1, 2, 4, 5}}, {"b", {6}}}));
  // A file named explicitly is read even when a directory walk would skip it.
  Result<std::vector<InputFile>> hidden = ExpandInputs({root + "/.hidden/part-9.csv"});
  ASSERT_TRUE(hidden.ok());
  EXPECT_EQ(hidden->size(), 1u);
}

TEST_F(SnapshotInputTest, ExpandInputsRefusesMissingAndEmptyInputs) {
  Result<std::vector<InputFile>> missing = ExpandInputs({dir_ / "nope"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
  EXPECT_NE(missing.status().message().find(dir_ / "nope"), std::string::npos);

  const std::string empty = dir_ / "empty";
  std::filesystem::create_directories(empty + "/sub");
  WriteFile(empty + "/_SUCCESS", "");
  WriteFile(empty + "/.x", "1\n");
  Result<std::vector<InputFile>> none = ExpandInputs({empty});
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(none.status().IsBadRequest());
  EXPECT_NE(none.status().message().find(empty), std::string::npos);
}

TEST_F(SnapshotInputTest, PairsProgressCountsAcceptedPairsOfEveryFormat) {
  // 70,000 pairs: one step of 65,536 while reading, the rest at the end.
  std::string csv, ids;
  for (int u = 0; u < 70000; ++u) {
    csv += std::to_string(u) + ",t\n";
    ids += std::to_string(u) + "\n";
  }
  csv += "bad line\n";
  const std::string csv_path = dir_ / "p.csv", ids_path = dir_ / "p.ids";
  WriteFile(csv_path, csv);
  WriteFile(ids_path, ids);
  std::atomic<uint64_t> progress{0};
  ReadLimits limits;
  limits.pairs_progress = &progress;
  SnapshotSet set(16);
  FileReadResult r = ReadSnapshotFile(csv_path, InputOptions{}, &set, nullptr, limits);
  EXPECT_EQ(r.pairs, 70000u);
  EXPECT_EQ(r.error_count, 1u);
  EXPECT_EQ(progress.load(), 70000u);
  r = ReadSnapshotFile(ids_path, InputOptions{}, &set, nullptr, limits);
  EXPECT_EQ(r.pairs, 70000u);
  EXPECT_EQ(progress.load(), 140000u);
}

}  // namespace
}  // namespace tagcache::ingest
