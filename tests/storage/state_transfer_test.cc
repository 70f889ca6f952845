// State transfers: a shard's state encoded by one engine and decoded by
// another merges into exactly the state sent (the same ShardDigest), and
// any damage or anything the receiver cannot hold is refused before a
// merge could see it.
#include "tagcache/storage/state_transfer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tagcache/server/engine.h"

namespace tagcache::storage {
namespace {

constexpr Timestamp kNow = 1'700'000'000'000;
constexpr int kBits = 8;

EngineOptions Options(int shard_bits = kBits) {
  EngineOptions options;
  options.shard_bits = shard_bits;
  options.query_threads = 1;
  options.clock = [] { return kNow; };
  return options;
}

UserId UserAt(uint64_t shard, uint64_t offset) { return shard << kBits | offset; }

// Snapshots with overrides newer than their base, events without a
// snapshot, a commit that emptied shards and one that named a shard whose
// part never came (rule 4 exceptions), and dense shards (bitset and run
// containers).
void Populate(Engine& engine) {
  std::vector<UserId> sports;
  for (uint64_t shard = 0; shard < 6; ++shard) {
    for (uint64_t off = shard % 7; off < 256; off += 1 + shard % 3)
      sports.push_back(UserAt(shard, off));
  }
  ASSERT_TRUE(engine.ApplyFullSnapshot("sports", 100, sports).ok());
  Roaring part;
  for (uint32_t off = 0; off < 200; off += 2) part.add(off);
  ASSERT_TRUE(engine.ApplySnapshot("music", 200, 1, part).ok());
  Result<CommitOutcome> commit = engine.CommitSnapshot("music", 200, std::vector<uint64_t>{1, 4});
  ASSERT_TRUE(commit.ok());
  std::mt19937_64 rng(3);
  std::vector<Event> events;
  const char* tags[] = {"sports", "music", "news", "country:fr"};
  for (int i = 0; i < 3000; ++i) {
    events.push_back(Event{UserAt(rng() % 6, rng() % 256), tags[rng() % 4],
                           rng() % 4 == 0 ? TagOp::kClear : TagOp::kSet, 50 + rng() % 300});
  }
  ASSERT_TRUE(engine.ApplyEvents(events).ok());
}

std::string Encode(const Engine& engine, uint64_t shard) {
  return EncodeShardTransfer(engine.ExportTags(), engine.ExportShard(shard));
}

Status Merge(const ShardTransfer& t, Engine& engine) {
  if (Status s = engine.MergeTags(t.tags); !s.ok()) return s;
  return engine.MergeShard(t.state);
}

TEST(StateTransferTest, RoundTripRestoresTheShardExactly) {
  Engine source(Options());
  Populate(source);
  for (uint64_t shard : source.ShardIds()) {
    SCOPED_TRACE(shard);
    const std::string bytes = Encode(source, shard);
    Result<ShardTransfer> t = DecodeShardTransfer(bytes, kBits);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_TRUE(t->state.index_image.empty());
    Engine target(Options());
    ASSERT_TRUE(Merge(*t, target).ok());
    EXPECT_EQ(target.ShardDigest(shard), source.ShardDigest(shard));
    EXPECT_NE(target.ShardDigest(shard), 0u);
    // Deterministic: the same state encodes to the same bytes.
    EXPECT_EQ(EncodeShardTransfer(t->tags, t->state), bytes);
    // Merging it twice changes nothing.
    ASSERT_TRUE(Merge(*t, target).ok());
    EXPECT_EQ(target.ShardDigest(shard), source.ShardDigest(shard));
  }
}

TEST(StateTransferTest, RoundTripOfASingleShardEngineGivesTheSameStateDigest) {
  Engine source(Options());
  Populate(source);
  // An engine that holds only shard 1, with every tag record.
  Engine one(Options());
  ASSERT_TRUE(one.MergeTags(source.ExportTags()).ok());
  ASSERT_TRUE(one.MergeShard(source.ExportShard(1)).ok());
  Result<ShardTransfer> t = DecodeShardTransfer(Encode(one, 1), kBits);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  Engine restored(Options());
  ASSERT_TRUE(Merge(*t, restored).ok());
  EXPECT_EQ(restored.StateDigest(), one.StateDigest());
  EXPECT_EQ(restored.ExportTags().size(), source.ExportTags().size());
}

TEST(StateTransferTest, EmptyShardAndNoTagsRoundTrip) {
  Engine empty(Options());
  const std::string bytes = EncodeShardTransfer({}, empty.ExportShard(3));
  Result<ShardTransfer> t = DecodeShardTransfer(bytes, kBits);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_TRUE(t->tags.empty());
  EXPECT_EQ(t->state.shard, 3u);
  EXPECT_TRUE(t->state.columns.empty());
  Engine target(Options());
  ASSERT_TRUE(Merge(*t, target).ok());
  EXPECT_EQ(target.StateDigest(), empty.StateDigest());
}

TEST(StateTransferTest, EveryTruncationIsRefused) {
  Engine source(Options());
  Populate(source);
  const std::string bytes = Encode(source, 1);
  for (size_t n = 0; n < bytes.size(); ++n) {
    Result<ShardTransfer> t = DecodeShardTransfer(std::string_view(bytes).substr(0, n), kBits);
    ASSERT_FALSE(t.ok()) << "a prefix of " << n << " bytes was accepted";
    EXPECT_EQ(t.status().code(), StatusCode::kIoError) << t.status().ToString();
  }
  std::string longer = bytes + '\0';
  EXPECT_FALSE(DecodeShardTransfer(longer, kBits).ok());
}

TEST(StateTransferTest, EveryFlippedByteIsRefused) {
  Engine source(Options());
  Populate(source);
  const std::string bytes = Encode(source, 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (i % 8)));
    Result<ShardTransfer> t = DecodeShardTransfer(bad, kBits);
    ASSERT_FALSE(t.ok()) << "byte " << i << " flipped was accepted";
    EXPECT_EQ(t.status().code(), StatusCode::kIoError) << t.status().ToString();
  }
}

TEST(StateTransferTest, OffsetsBeyondTheReceiversShardAreRefused) {
  // A sender with shards of 2^12 users: offsets up to 4095.
  Engine wide(Options(12));
  ASSERT_TRUE(wide.ApplyFullSnapshot("t", 100, std::vector<UserId>{1, 300, 4000}).ok());
  const std::string bytes = EncodeShardTransfer(wide.ExportTags(), wide.ExportShard(0));
  EXPECT_TRUE(DecodeShardTransfer(bytes, 12).ok());
  Result<ShardTransfer> t = DecodeShardTransfer(bytes, kBits);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.status().IsBadRequest()) << t.status().ToString();
  EXPECT_NE(t.status().message().find("offset 4000"), std::string::npos) << t.status().ToString();

  // An override alone beyond the shard.
  ShardState state;
  state.shard = 0;
  ColumnState c;
  c.tag = "t";
  c.overrides.push_back(OverrideState{300, 5, TagOp::kClear});
  state.columns.push_back(c);
  t = DecodeShardTransfer(EncodeShardTransfer({}, state), kBits);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.status().IsBadRequest()) << t.status().ToString();
  EXPECT_NE(t.status().message().find("override"), std::string::npos) << t.status().ToString();

  // Known users beyond the shard.
  ShardState known;
  known.known.add(256);
  t = DecodeShardTransfer(EncodeShardTransfer({}, known), kBits);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.status().IsBadRequest()) << t.status().ToString();

  // A shard beyond the id space.
  ShardState far;
  far.shard = uint64_t{1} << (64 - kBits);
  t = DecodeShardTransfer(EncodeShardTransfer({}, far), kBits);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.status().IsBadRequest()) << t.status().ToString();
  far.shard -= 1;
  EXPECT_TRUE(DecodeShardTransfer(EncodeShardTransfer({}, far), kBits).ok());
}

TEST(StateTransferTest, StatesTheMergeWouldRefuseAreRefused) {
  auto refused = [](const std::vector<TagState>& tags, const ShardState& state,
                    std::string_view what) {
    Result<ShardTransfer> t = DecodeShardTransfer(EncodeShardTransfer(tags, state), kBits);
    ASSERT_FALSE(t.ok()) << what;
    EXPECT_NE(t.status().message().find(what), std::string::npos) << t.status().ToString();
  };
  ShardState state;
  state.shard = 1;
  ColumnState c;
  c.tag = "t";
  c.overrides = {OverrideState{5, 10, TagOp::kSet}, OverrideState{3, 10, TagOp::kSet}};
  state.columns.push_back(c);
  refused({}, state, "ascending");

  state.columns[0].overrides = {OverrideState{5, 10, TagOp::kSet},
                                OverrideState{5, 11, TagOp::kSet}};
  refused({}, state, "ascending");

  state.columns[0].overrides.clear();
  state.columns.push_back(state.columns[0]);
  refused({}, state, "twice");

  state.columns.pop_back();
  refused({TagState{"t", false, 0, {}}, TagState{"t", false, 0, {}}}, state, "twice");
  refused({TagState{"t", true, 10, {{3, 10}}}}, state, "below");
  refused({TagState{"t", false, 0, {{3, std::nullopt}}}}, state, "below");
  refused({TagState{"t", true, 10, {{3, 4}, {2, 1}}}}, state, "ascending");
  const std::vector<TagState> fine{TagState{"t", true, 10, {{2, 1}, {3, 4}}}};
  EXPECT_TRUE(DecodeShardTransfer(EncodeShardTransfer(fine, state), kBits).ok());
}

TEST(StateTransferTest, BadShardBitsAreRefused) {
  Engine engine(Options());
  const std::string bytes = EncodeShardTransfer({}, engine.ExportShard(0));
  EXPECT_TRUE(DecodeShardTransfer(bytes, 7).status().IsBadRequest());
  EXPECT_TRUE(DecodeShardTransfer(bytes, 27).status().IsBadRequest());
}

}  // namespace
}  // namespace tagcache::storage
