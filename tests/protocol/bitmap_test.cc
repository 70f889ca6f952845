// Portable Roaring bitmaps from the wire (tagcache/protocol/bitmap.h):
// everything CRoaring writes round-trips; every class of corruption the
// format allows (layout, keys, each container type's invariants, value
// range) is refused with BAD_REQUEST naming the problem; and a randomized
// corruption loop never crashes, never prints, and accepts only bitmaps that
// are valid and re-serialize to the very bytes received.

#include "tagcache/protocol/bitmap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace tagcache::protocol {
namespace {

constexpr uint64_t kNoLimit = uint64_t{1} << 32;

// ---- an independent writer of the portable format, able to write it wrong ----

struct TestContainer {
  enum Type { kArray, kBitset, kRun };
  uint16_t key = 0;
  Type type = kArray;
  std::vector<uint16_t> values;                     // kArray
  std::vector<uint64_t> words;                      // kBitset: 1024 words
  std::vector<std::pair<uint16_t, uint16_t>> runs;  // kRun: (start, length - 1)
  int64_t header_cardinality = -1;                  // -1: the true cardinality

  uint64_t Cardinality() const {
    if (header_cardinality >= 0) return static_cast<uint64_t>(header_cardinality);
    uint64_t n = 0;
    switch (type) {
      case kArray:
        return values.size();
      case kBitset:
        for (uint64_t w : words) n += static_cast<uint64_t>(__builtin_popcountll(w));
        return n;
      case kRun:
        for (auto [start, len] : runs) n += uint64_t{len} + 1;
        return n;
    }
    return n;
  }
};

TestContainer Array(uint16_t key, std::vector<uint16_t> values) {
  TestContainer c;
  c.key = key;
  c.type = TestContainer::kArray;
  c.values = std::move(values);
  return c;
}
TestContainer Bitset(uint16_t key, uint32_t first, uint32_t count, uint32_t step = 1) {
  TestContainer c;
  c.key = key;
  c.type = TestContainer::kBitset;
  c.words.assign(1024, 0);
  for (uint32_t i = 0, v = first; i < count; ++i, v += step) c.words[v / 64] |= 1ull << (v % 64);
  return c;
}
TestContainer Runs(uint16_t key, std::vector<std::pair<uint16_t, uint16_t>> runs) {
  TestContainer c;
  c.key = key;
  c.type = TestContainer::kRun;
  c.runs = std::move(runs);
  return c;
}

void Put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>(v >> 8));
}
void Put32(std::string& out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v));
  Put16(out, static_cast<uint16_t>(v >> 16));
}

struct WriteOptions {
  int cookie = 0;      // 0: the right one
  int64_t count = -1;  // container count written (12346 form); -1: the true one
  bool corrupt_offset = false;
  bool all_runs_unflagged = false;  // cookie 12347 with every run flag cleared
  uint8_t extra_run_flags = 0;      // ORed into the last run-flag byte
};

std::string Write(const std::vector<TestContainer>& cs, const WriteOptions& opt = {}) {
  const uint32_t n = static_cast<uint32_t>(cs.size());
  bool has_runs = opt.all_runs_unflagged;
  for (const auto& c : cs) has_runs |= c.type == TestContainer::kRun;
  std::string out;
  if (has_runs) {
    Put32(out, opt.cookie ? static_cast<uint32_t>(opt.cookie) : 12347u | (n - 1) << 16);
    std::string flags((n + 7) / 8, '\0');
    for (uint32_t k = 0; k < n; ++k) {
      if (cs[k].type == TestContainer::kRun && !opt.all_runs_unflagged) {
        flags[k / 8] = static_cast<char>(flags[k / 8] | 1 << (k % 8));
      }
    }
    flags.back() = static_cast<char>(flags.back() | opt.extra_run_flags);
    out += flags;
  } else {
    Put32(out, opt.cookie ? static_cast<uint32_t>(opt.cookie) : 12346u);
    Put32(out, opt.count >= 0 ? static_cast<uint32_t>(opt.count) : n);
  }
  for (const auto& c : cs) {
    Put16(out, c.key);
    Put16(out, static_cast<uint16_t>(c.Cardinality() - 1));
  }
  std::string body;
  std::vector<uint32_t> offsets;
  const size_t header = out.size() + ((!has_runs || n >= 4) ? 4 * size_t{n} : 0);
  for (const auto& c : cs) {
    offsets.push_back(static_cast<uint32_t>(header + body.size()));
    switch (c.type) {
      case TestContainer::kArray:
        for (uint16_t v : c.values) Put16(body, v);
        break;
      case TestContainer::kBitset:
        for (uint64_t w : c.words) {
          Put32(body, static_cast<uint32_t>(w));
          Put32(body, static_cast<uint32_t>(w >> 32));
        }
        break;
      case TestContainer::kRun:
        Put16(body, static_cast<uint16_t>(c.runs.size()));
        for (auto [start, len] : c.runs) {
          Put16(body, start);
          Put16(body, len);
        }
        break;
    }
  }
  if (!has_runs || n >= 4) {
    if (opt.corrupt_offset && !offsets.empty()) offsets.back() += 2;
    for (uint32_t o : offsets) Put32(out, o);
  }
  return out + body;
}

std::string Serialize(const Roaring& r) { return WritePortableBitmap(r); }

Result<Roaring> Read(const std::string& bytes, uint64_t limit = kNoLimit) {
  return ReadPortableBitmap(bytes.data(), bytes.size(), limit);
}

// Expects `bytes` to be refused with BAD_REQUEST mentioning `needle`.
void ExpectInvalid(const std::string& bytes, const std::string& needle, uint64_t limit = kNoLimit) {
  testing::internal::CaptureStderr();
  Result<Roaring> r = Read(bytes, limit);
  const std::string printed = testing::internal::GetCapturedStderr();
  EXPECT_EQ(printed, "") << "the reader printed";
  ASSERT_FALSE(r.ok()) << "accepted an invalid bitmap; wanted '" << needle << "'";
  EXPECT_EQ(r.status().code(), StatusCode::kBadRequest) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "message '" << r.status().message() << "' lacks '" << needle << "'";
}

// Expects a round trip: read back equal, and re-serialized to the same bytes.
void ExpectRoundTrip(const Roaring& original, uint64_t limit = kNoLimit) {
  const std::string bytes = Serialize(original);
  testing::internal::CaptureStderr();
  Result<Roaring> r = Read(bytes, limit);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(*r == original);
  EXPECT_EQ(r->cardinality(), original.cardinality());
  EXPECT_EQ(Serialize(*r), bytes);
}

// ---- valid bitmaps ------------------------------------------------------------------

TEST(BitmapTest, EmptyBitmapRoundTrips) {
  Roaring empty;
  EXPECT_EQ(Serialize(empty).size(), 8u);
  ExpectRoundTrip(empty);
  ExpectRoundTrip(empty, /*limit=*/0);  // no value, so any limit holds
}

TEST(BitmapTest, ArrayContainersRoundTrip) {
  Roaring r;
  r.add(0);
  ExpectRoundTrip(r);
  for (uint32_t v = 3; v < 4096 * 3; v += 3) r.add(v);  // with 0: exactly 4096 in key 0
  for (uint32_t v = 1u << 16; v < (1u << 16) + 100; ++v) r.add(v);
  r.add(0x1FFFF);
  ExpectRoundTrip(r);
}

TEST(BitmapTest, BitsetContainersRoundTrip) {
  Roaring r;
  for (uint32_t v = 0; v < 65536; v += 2) r.add(v);                  // 32768 values: a bitset
  for (uint32_t v = 3u << 16; v < (3u << 16) + 4097; ++v) r.add(v);  // 4097: the smallest
  ExpectRoundTrip(r);
}

TEST(BitmapTest, RunContainersRoundTripWithAndWithoutOffsets) {
  Roaring few;  // 2 containers with runs: no offset table
  few.addRange(10, 5000);
  few.addRange(1u << 16, (1u << 16) + 65536);  // a full container: one run 0..65535
  few.runOptimize();
  ASSERT_LT(few.getSizeInBytes(), few.cardinality());
  ExpectRoundTrip(few);

  Roaring many;  // 6 containers, mixed types, with runs: offsets present
  for (uint32_t key = 0; key < 6; ++key) {
    const uint32_t base = key << 16;
    if (key % 3 == 0) many.addRange(base + 100, base + 30000);
    if (key % 3 == 1) many.add(base + key);
    if (key % 3 == 2) {
      for (uint32_t v = 0; v < 65536; v += 3) many.add(base + v);
    }
  }
  many.runOptimize();
  ExpectRoundTrip(many);
}

TEST(BitmapTest, MaximumValuesRoundTrip) {
  Roaring top;
  top.add(0xFFFFFFFFu);
  top.add(0xFFFF0000u);
  ExpectRoundTrip(top);
  Roaring last_run;
  last_run.addRange(0xFFFFFF00u, 0x100000000ull);
  last_run.runOptimize();
  ExpectRoundTrip(last_run);

  // With a shard of 2^20 users, 2^20 - 1 is the largest offset allowed.
  Roaring shard;
  shard.add((1u << 20) - 1);
  ExpectRoundTrip(shard, 1u << 20);
}

TEST(BitmapTest, ManyContainersRoundTrip) {
  Roaring r;
  for (uint32_t key = 0; key < 5000; ++key) r.add(key << 16 | (key & 0xFFFF));
  ExpectRoundTrip(r);
}

TEST(BitmapTest, TestWriterMatchesCRoaring) {
  // The hand writer below produces exactly what CRoaring writes, so the
  // corruptions built with it differ from valid input only where intended.
  Roaring r;
  r.add(1);
  r.add(7);
  for (uint32_t v = 0; v < 5000; ++v) r.add((2u << 16) + 2 * v);
  r.addRange((5u << 16) + 10, (5u << 16) + 20);
  r.runOptimize();
  std::vector<TestContainer> cs = {Array(0, {1, 7}), Bitset(2, 0, 5000, 2), Runs(5, {{10, 9}})};
  EXPECT_EQ(Write(cs), Serialize(r));
  cs.pop_back();
  Roaring no_runs;
  no_runs.add(1);
  no_runs.add(7);
  for (uint32_t v = 0; v < 5000; ++v) no_runs.add((2u << 16) + 2 * v);
  EXPECT_EQ(Write(cs), Serialize(no_runs));
  std::vector<TestContainer> four = {Array(0, {1}), Runs(1, {{0, 0}}), Array(2, {3}),
                                     Runs(9, {{4, 5}, {100, 0}})};
  Roaring r4;
  r4.add(1);
  r4.add((2u << 16) + 3);
  r4.add(1u << 16);
  r4.addRange((9u << 16) + 4, (9u << 16) + 10);
  r4.add((9u << 16) + 100);
  r4.runOptimize();
  ASSERT_TRUE(Read(Write(four)).ok()) << Read(Write(four)).status().ToString();
  EXPECT_TRUE(*Read(Write(four)) == r4);
}

TEST(BitmapTest, HandWrittenValidBitmapsAreAccepted) {
  EXPECT_TRUE(Read(Write({Array(0, {0, 65535})})).ok());
  EXPECT_TRUE(Read(Write({Runs(0, {{0, 65535}})})).ok());                  // full container
  EXPECT_TRUE(Read(Write({Runs(0, {{0, 0}, {2, 0}, {65535, 0}})})).ok());  // gaps of one
  EXPECT_TRUE(Read(Write({Bitset(7, 0, 4097)})).ok());
}

// ---- layout corruption ------------------------------------------------------------

TEST(BitmapTest, TruncatedInputIsRefused) {
  ExpectInvalid("", "truncated");
  ExpectInvalid(std::string("\x3a\x30", 2), "truncated");
  ExpectInvalid(std::string("\x3a\x30\x00\x00", 4), "truncated");  // 12346 needs a count
  ExpectInvalid(std::string("\x3a\x30\x00\x00\x01\x00", 6), "truncated");
  // Every proper prefix of a valid bitmap of each kind is refused.
  Roaring r;
  for (uint32_t v = 0; v < 3; ++v) r.add(v * 70000);
  for (uint32_t v = 0; v < 5000; ++v) r.add((9u << 16) + v * 2);
  r.addRange(20u << 16, (20u << 16) + 300);
  r.runOptimize();
  const std::string bytes = Serialize(r);
  for (size_t len = 0; len < bytes.size(); ++len) {
    SCOPED_TRACE(len);
    ExpectInvalid(bytes.substr(0, len), "truncated");
  }
}

TEST(BitmapTest, NullBufferIsRefused) {
  EXPECT_FALSE(ReadPortableBitmap(nullptr, 8, kNoLimit).ok());
  EXPECT_FALSE(ReadPortableBitmap(nullptr, 0, kNoLimit).ok());  // not even a cookie
}

TEST(BitmapTest, TrailingBytesAreRefused) {
  Roaring r;
  r.add(42);
  ExpectInvalid(Serialize(r) + '\0', "1 trailing bytes");
  ExpectInvalid(Serialize(Roaring()) + "garbage!", "8 trailing bytes");
}

TEST(BitmapTest, UnknownCookieIsRefused) {
  ExpectInvalid(Write({Array(0, {1})}, {.cookie = 12345}), "unknown cookie 12345");
  ExpectInvalid(std::string("\x3a\x30\x01\x00\x00\x00\x00\x00", 8), "unknown cookie");
  ExpectInvalid(std::string(16, '\xff'), "unknown cookie");
}

TEST(BitmapTest, ContainerCountBeyondTheKeySpaceIsRefused) {
  ExpectInvalid(Write({}, {.count = 65537}), "container count 65537 exceeds 65536");
  ExpectInvalid(Write({}, {.count = 0xFFFFFFFF}), "exceeds 65536");  // -1 as int32
  ExpectInvalid(Write({}, {.count = 0x80000000}), "exceeds 65536");
  ExpectInvalid(Write({Array(0, {1})}, {.count = 5}), "truncated");
  ExpectInvalid(Write({Array(0, {1}), Array(1, {1})}, {.count = 1}), "invalid Roaring bitmap");
}

TEST(BitmapTest, WrongOffsetsAreRefused) {
  ExpectInvalid(Write({Array(0, {1}), Array(1, {2, 3})}, {.corrupt_offset = true}),
                "offset of container 1");
  ExpectInvalid(Write({Array(0, {1}), Runs(1, {{0, 1}}), Array(2, {3}), Array(3, {4})},
                      {.corrupt_offset = true}),
                "offset of container 3");
}

TEST(BitmapTest, RunFlagsMustMatchTheContainers) {
  ExpectInvalid(Write({Array(0, {1}), Runs(1, {{5, 2}})}, {.extra_run_flags = 0x80}),
                "run-container flags set beyond");
  ExpectInvalid(Write({Array(0, {1}), Array(1, {2})}, {.all_runs_unflagged = true}),
                "none is flagged");
}

// ---- container corruption ---------------------------------------------------------

TEST(BitmapTest, UnsortedOrDuplicateKeysAreRefused) {
  ExpectInvalid(Write({Array(2, {1}), Array(1, {1})}), "keys are not strictly ascending");
  ExpectInvalid(Write({Array(1, {1}), Array(1, {2})}), "keys are not strictly ascending");
  ExpectInvalid(Write({Array(0, {1}), Bitset(9, 0, 5000), Runs(9, {{0, 3}})}),
                "key 9 at container 2 follows key 9");
}

TEST(BitmapTest, ArrayContainerInvariantsAreChecked) {
  ExpectInvalid(Write({Array(0, {5, 3})}), "array container 0 (key 0) is not strictly ascending");
  ExpectInvalid(Write({Array(0, {1, 2, 2, 3})}), "not strictly ascending at position 2");
  ExpectInvalid(Write({Array(0, {1}), Array(4, {9, 8})}), "array container 1 (key 4)");
}

TEST(BitmapTest, BitsetCardinalityMustEqualThePopcount) {
  TestContainer wrong = Bitset(0, 0, 6000);
  wrong.header_cardinality = 5000;
  ExpectInvalid(Write({wrong}), "6000 bits set, its header says 5000");
  TestContainer under = Bitset(3, 0, 100);  // header says bitset, holds 100
  under.header_cardinality = 4097;
  ExpectInvalid(Write({under}), "100 bits set, its header says 4097");
  TestContainer over = Bitset(3, 0, 65536);
  over.header_cardinality = 65535;
  ExpectInvalid(Write({over}), "65536 bits set");
}

TEST(BitmapTest, RunContainerInvariantsAreChecked) {
  TestContainer none = Runs(0, {});
  none.header_cardinality = 1;
  ExpectInvalid(Write({none}), "has no runs");
  ExpectInvalid(Write({Runs(0, {{65530, 10}})}), "runs past 65535");
  ExpectInvalid(Write({Runs(0, {{100, 5}, {50, 5}})}), "unsorted, overlapping or adjacent");
  ExpectInvalid(Write({Runs(0, {{100, 5}, {103, 5}})}), "starts at 103");  // overlap
  ExpectInvalid(Write({Runs(0, {{100, 5}, {106, 0}})}), "starts at 106");  // adjacent
  ExpectInvalid(Write({Runs(0, {{100, 5}, {100, 5}})}), "starts at 100");  // duplicate
  TestContainer card = Runs(2, {{0, 9}});
  card.header_cardinality = 11;
  ExpectInvalid(Write({card}), "run container 0 (key 2) holds 10 values, its header says 11");
}

TEST(BitmapTest, ValuesAtOrAboveTheLimitAreRefused) {
  const uint64_t limit = 1u << 20;
  Roaring r;
  r.add(limit - 1);
  EXPECT_TRUE(Read(Serialize(r), limit).ok());
  r.add(limit);
  ExpectInvalid(Serialize(r), "value 1048576 (container 1) is out of range", limit);
  ExpectInvalid(Write({Runs(15, {{0, 65535}})}), "value 1048575", (15u << 16) + 65535);
  ExpectInvalid(Write({Bitset(0, 60000, 5000)}), "out of range", 64000);
  Roaring one;
  one.add(0);
  ExpectInvalid(Serialize(one), "must be below 0", 0);
}

// ---- randomized corruption ---------------------------------------------------------

// True if `r` satisfies every invariant, checked through the public API only.
void ExpectValidBitmap(const Roaring& r, uint64_t limit) {
  std::vector<uint32_t> values(r.cardinality());
  r.toUint32Array(values.data());
  for (size_t i = 1; i < values.size(); ++i) ASSERT_LT(values[i - 1], values[i]);
  if (!values.empty()) {
    ASSERT_LT(values.back(), limit);
  }
  Roaring rebuilt(values.size(), values.data());
  ASSERT_TRUE(rebuilt == r);
  ASSERT_EQ((rebuilt & r).cardinality(), values.size());
  ASSERT_EQ((rebuilt | r).cardinality(), values.size());
}

TEST(BitmapTest, RandomCorruptionNeverCrashesAndAcceptsOnlyCanonicalValidBitmaps) {
  // TAGCACHE_FUZZ_SEED / TAGCACHE_FUZZ_ITERATIONS run it longer or elsewhere.
  const char* seed_env = std::getenv("TAGCACHE_FUZZ_SEED");
  const char* iterations_env = std::getenv("TAGCACHE_FUZZ_ITERATIONS");
  const uint64_t rng_seed = seed_env != nullptr ? std::strtoull(seed_env, nullptr, 10) : 20241124;
  const long iterations = iterations_env != nullptr ? std::atol(iterations_env) : 20000;
  std::mt19937_64 rng(rng_seed);
  std::vector<std::string> seeds;
  {
    Roaring r;
    for (uint32_t v = 0; v < 50; ++v) r.add(v * 37);
    seeds.push_back(Serialize(r));  // one array container
    for (uint32_t v = 0; v < 6000; ++v) r.add((1u << 16) + v * 3);
    r.addRange(3u << 16, (3u << 16) + 500);
    r.addRange((4u << 16) + 7, (4u << 16) + 9);
    r.add(5u << 16);
    r.runOptimize();
    seeds.push_back(Serialize(r));  // arrays, a bitset, runs, offsets
    Roaring s;
    s.addRange(0, 100);
    s.addRange(200, 300);
    s.runOptimize();
    seeds.push_back(Serialize(s));  // runs without offsets
    seeds.push_back(Serialize(Roaring()));
  }
  const uint64_t limit = 6u << 16;
  int accepted = 0;
  int accepted_changed = 0;
  testing::internal::CaptureStderr();
  for (long iter = 0; iter < iterations; ++iter) {
    const std::string& seed = seeds[rng() % seeds.size()];
    std::string bytes = seed;
    switch (rng() % 4) {
      case 0:  // a few byte flips
      case 1: {
        const int flips = 1 + static_cast<int>(rng() % 3);
        for (int f = 0; f < flips && !bytes.empty(); ++f) {
          bytes[rng() % bytes.size()] = static_cast<char>(rng());
        }
        break;
      }
      case 2:  // a flip in the header, where it hurts most
        if (!bytes.empty()) {
          bytes[rng() % std::min<size_t>(bytes.size(), 32)] ^= static_cast<char>(1 << (rng() % 8));
        }
        break;
      case 3:  // truncation or extension
        if (rng() % 2 == 0) {
          bytes.resize(rng() % (bytes.size() + 1));
        } else {
          bytes.append(1 + rng() % 16, static_cast<char>(rng()));
        }
        break;
    }
    Result<Roaring> r = Read(bytes, limit);
    if (!r.ok()) {
      ASSERT_EQ(r.status().code(), StatusCode::kBadRequest) << r.status().ToString();
      continue;
    }
    ++accepted;
    accepted_changed += bytes != seed;
    ASSERT_EQ(Serialize(*r), bytes) << "accepted a non-canonical serialization";
    ExpectValidBitmap(*r, limit);
    if (testing::Test::HasFatalFailure()) break;
  }
  const std::string printed = testing::internal::GetCapturedStderr();
  EXPECT_EQ(printed.substr(0, 200), "") << "the reader printed to stderr";
  EXPECT_GT(accepted, 0);
  EXPECT_GT(accepted_changed, 0) << "no mutation was ever valid: the loop tests too little";
  RecordProperty("accepted", accepted);
  RecordProperty("accepted_changed", accepted_changed);
}

}  // namespace
}  // namespace tagcache::protocol
