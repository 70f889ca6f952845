// The WAL's write-record payloads: round trips, and every way an untrusted
// payload can lie (truncation, counts, lengths, names, trailing bytes) ends
// in an IO_ERROR rather than a crash or a huge allocation.
#include "tagcache/storage/wal_records.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace tagcache::storage {
namespace {

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

void ExpectSameEvents(const std::vector<Event>& want, const std::vector<Event>& got) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(want[i].user, got[i].user) << i;
    EXPECT_EQ(want[i].tag, got[i].tag) << i;
    EXPECT_EQ(want[i].op, got[i].op) << i;
    EXPECT_EQ(want[i].ts, got[i].ts) << i;
  }
}

template <typename T>
void ExpectBadRecord(const Result<T>& result, const std::string& kind, const std::string& what = "") {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kIoError) << result.status().ToString();
  EXPECT_EQ(result.status().message().rfind("bad " + kind + " record: ", 0), 0u)
      << result.status().ToString();
  if (!what.empty()) {
    EXPECT_NE(result.status().message().find(what), std::string::npos)
        << result.status().ToString();
  }
}

std::vector<Event> ManyTagEvents() {
  std::mt19937_64 rng(7);
  std::vector<Event> events;
  for (int i = 0; i < 3000; ++i) {
    Event e;
    e.user = rng();
    e.tag = "tag_" + std::to_string(rng() % 300);
    e.op = rng() % 3 == 0 ? TagOp::kClear : TagOp::kSet;
    e.ts = rng();
    events.push_back(std::move(e));
  }
  return events;
}

TEST(WalRecordsTest, EmptyEventBatchRoundTrips) {
  const std::string payload = EncodeEvents({});
  EXPECT_EQ(payload.size(), 12u);  // flags, tag count, event count
  Result<std::vector<Event>> decoded = DecodeEvents(payload);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_TRUE(decoded->empty());
}

TEST(WalRecordsTest, OneEventRoundTrips) {
  const std::vector<Event> events = {{42, "sports", TagOp::kClear, 1'700'000'000'123}};
  const std::string payload = EncodeEvents(events);
  EXPECT_EQ(payload.size(), 12u + 1 + 6 + 20);
  Result<std::vector<Event>> decoded = DecodeEvents(payload);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ExpectSameEvents(events, *decoded);
}

TEST(WalRecordsTest, ManyTagsRoundTripAndEachTagIsStoredOnce) {
  const std::vector<Event> events = ManyTagEvents();
  const std::string payload = EncodeEvents(events);
  // 300 distinct names of at most 7 bytes, then 20 bytes an event.
  EXPECT_LE(payload.size(), 12u + 300 * 8 + 20 * events.size());
  Result<std::vector<Event>> decoded = DecodeEvents(payload);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ExpectSameEvents(events, *decoded);
}

TEST(WalRecordsTest, ExtremeValuesRoundTrip) {
  const std::vector<Event> events = {{0, "a", TagOp::kSet, 0},
                                     {UINT64_MAX, "a", TagOp::kClear, UINT64_MAX}};
  Result<std::vector<Event>> decoded = DecodeEvents(EncodeEvents(events));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ExpectSameEvents(events, *decoded);
}

TEST(WalRecordsTest, MaxLengthTagNameRoundTripsInEveryRecord) {
  const std::string tag(128, 'x');
  const std::vector<Event> events = {{1, tag, TagOp::kSet, 5}};
  Result<std::vector<Event>> decoded = DecodeEvents(EncodeEvents(events));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ExpectSameEvents(events, *decoded);

  Result<SnapshotPartRecord> part = DecodeSnapshotPart(EncodeSnapshotPart(tag, 9, 3, "bits"));
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_EQ(part->tag, tag);

  const std::vector<uint64_t> shards = {1};
  Result<SnapshotCommitRecord> commit = DecodeSnapshotCommit(EncodeSnapshotCommit(tag, 9, shards));
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  EXPECT_EQ(commit->tag, tag);
}

TEST(WalRecordsTest, SnapshotPartRoundTripsWithBitmapAsAViewIntoThePayload) {
  std::string bitmap = "\x3a\x30\x00\x00 not really roaring, the codec does not look";
  bitmap.push_back('\0');
  const std::string payload = EncodeSnapshotPart("country:fr", 1234, 0xABCDEF, bitmap);
  Result<SnapshotPartRecord> part = DecodeSnapshotPart(payload);
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_EQ(part->tag, "country:fr");
  EXPECT_EQ(part->ts, 1234u);
  EXPECT_EQ(part->shard, 0xABCDEFu);
  EXPECT_EQ(part->bitmap, bitmap);
  EXPECT_GE(part->bitmap.data(), payload.data());
  EXPECT_LE(part->bitmap.data() + part->bitmap.size(), payload.data() + payload.size());
}

TEST(WalRecordsTest, EmptySnapshotPartBitmapRoundTrips) {
  Result<SnapshotPartRecord> part = DecodeSnapshotPart(EncodeSnapshotPart("t", 1, 0, ""));
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_TRUE(part->bitmap.empty());
}

TEST(WalRecordsTest, SnapshotCommitRoundTrips) {
  for (const std::vector<uint64_t>& shards :
       {std::vector<uint64_t>{}, std::vector<uint64_t>{0}, std::vector<uint64_t>{3, 1, UINT64_MAX}}) {
    Result<SnapshotCommitRecord> commit =
        DecodeSnapshotCommit(EncodeSnapshotCommit("segment.x-1", 77, shards));
    ASSERT_TRUE(commit.ok()) << commit.status().ToString();
    EXPECT_EQ(commit->tag, "segment.x-1");
    EXPECT_EQ(commit->ts, 77u);
    EXPECT_EQ(commit->shards, shards);
  }
}

TEST(WalRecordsTest, EveryTruncationOfEveryRecordFailsCleanly) {
  const std::vector<Event> events = {{1, "a", TagOp::kSet, 5}, {2, "bb", TagOp::kClear, 6}};
  const std::string ev = EncodeEvents(events);
  for (size_t n = 0; n < ev.size(); ++n) {
    ExpectBadRecord(DecodeEvents(ev.substr(0, n)), "events");
  }
  const std::string part = EncodeSnapshotPart("tag", 3, 4, "bitmap");
  for (size_t n = 0; n < part.size(); ++n) {
    ExpectBadRecord(DecodeSnapshotPart(part.substr(0, n)), "snapshot part");
  }
  const std::vector<uint64_t> shards = {5, 6};
  const std::string commit = EncodeSnapshotCommit("tag", 3, shards);
  for (size_t n = 0; n < commit.size(); ++n) {
    ExpectBadRecord(DecodeSnapshotCommit(commit.substr(0, n)), "snapshot commit");
  }
}

TEST(WalRecordsTest, LyingEventCountIsRejectedBeforeAllocating) {
  std::string payload;
  PutU32(payload, 0);           // flags
  PutU32(payload, 0);           // no tags
  PutU32(payload, 0xFFFFFFFF);  // 4 billion events...
  PutU64(payload, 0);           // ...in 8 bytes: 20 in all
  ASSERT_EQ(payload.size(), 20u);
  ExpectBadRecord(DecodeEvents(payload), "events", "event count 4294967295");
}

TEST(WalRecordsTest, LyingTagCountIsRejectedBeforeAllocating) {
  std::string payload;
  PutU32(payload, 0);
  PutU32(payload, 0xFFFFFFFF);
  PutU64(payload, 0);
  ExpectBadRecord(DecodeEvents(payload), "events", "tag count 4294967295");
}

TEST(WalRecordsTest, LyingShardCountAndBitmapLengthAreRejected) {
  std::string commit = EncodeSnapshotCommit("t", 1, {});
  commit.resize(commit.size() - 4);
  PutU32(commit, 0xFFFFFFFF);
  PutU64(commit, 1);
  ExpectBadRecord(DecodeSnapshotCommit(commit), "snapshot commit", "shard count 4294967295");

  std::string part = EncodeSnapshotPart("t", 1, 2, "");
  part.resize(part.size() - 4);
  PutU32(part, 0xFFFFFFFF);
  part += "abc";
  ExpectBadRecord(DecodeSnapshotPart(part), "snapshot part", "bitmap length 4294967295");
}

TEST(WalRecordsTest, InvalidTagNamesAreRejected) {
  // Same length as the valid name "ab", so only the name is wrong.
  std::string events = EncodeEvents(std::vector<Event>{{1, "ab", TagOp::kSet, 1}});
  events[9] = ' ';
  ExpectBadRecord(DecodeEvents(events), "events", "not a valid tag name");

  std::string part = EncodeSnapshotPart("ab", 1, 1, "");
  part[1] = '/';
  ExpectBadRecord(DecodeSnapshotPart(part), "snapshot part", "not a valid tag name");

  std::string commit = EncodeSnapshotCommit("ab", 1, {});
  commit[2] = '\0';
  ExpectBadRecord(DecodeSnapshotCommit(commit), "snapshot commit", "not a valid tag name");

  for (uint8_t len : {uint8_t{0}, uint8_t{129}, uint8_t{255}}) {
    std::string bad(1, static_cast<char>(len));
    bad += std::string(len, 'a');
    PutU64(bad, 1);
    PutU32(bad, 0);
    ExpectBadRecord(DecodeSnapshotCommit(bad), "snapshot commit", "outside 1..128");
  }
}

TEST(WalRecordsTest, TagIndexBeyondTheTagTableIsRejected) {
  // The op is a single bit, so every op value decodes; what can lie is the
  // tag index sharing its word.
  std::string payload = EncodeEvents(std::vector<Event>{{1, "a", TagOp::kClear, 1}});
  const size_t word = payload.size() - 4;
  payload[word] = static_cast<char>(1 << 1 | 1);  // tag 1 of a 1-tag table
  ExpectBadRecord(DecodeEvents(payload), "events", "tag index 1");
}

TEST(WalRecordsTest, UnknownFlagsAreRejected) {
  std::string payload = EncodeEvents({});
  payload[0] = 1;
  ExpectBadRecord(DecodeEvents(payload), "events", "unknown flags 1");
}

TEST(WalRecordsTest, RepeatedOrUnusedTagTableEntriesAreRejected) {
  std::string repeated;
  PutU32(repeated, 0);
  PutU32(repeated, 2);
  repeated += "\x01" "a" "\x01" "a";
  PutU32(repeated, 0);
  ExpectBadRecord(DecodeEvents(repeated), "events", "repeats");

  std::string unused;
  PutU32(unused, 0);
  PutU32(unused, 1);
  unused += "\x01" "a";
  PutU32(unused, 0);
  ExpectBadRecord(DecodeEvents(unused), "events", "no event uses it");
}

TEST(WalRecordsTest, TrailingBytesAreRejected) {
  ExpectBadRecord(DecodeEvents(EncodeEvents(std::vector<Event>{{1, "a", TagOp::kSet, 1}}) + "x"),
                  "events", "1 trailing bytes");
  ExpectBadRecord(DecodeSnapshotPart(EncodeSnapshotPart("a", 1, 1, "bm") + "xy"), "snapshot part",
                  "2 trailing bytes");
  ExpectBadRecord(DecodeSnapshotCommit(EncodeSnapshotCommit("a", 1, {}) + std::string(8, '\0')),
                  "snapshot commit", "trailing bytes");
}

TEST(WalRecordsTest, RandomBytesNeverCrashTheDecoders) {
  std::mt19937_64 rng(11);
  const std::string valid = EncodeEvents(std::vector<Event>{{1, "a", TagOp::kSet, 1},
                                                            {2, "b", TagOp::kClear, 2}});
  for (int i = 0; i < 20000; ++i) {
    std::string p = valid;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) p[rng() % p.size()] = static_cast<char>(rng());
    (void)DecodeEvents(p);
    (void)DecodeSnapshotPart(p);
    (void)DecodeSnapshotCommit(p);
  }
}

}  // namespace
}  // namespace tagcache::storage
