// Microbenchmarks of the tag engine (issue 3, "Microbenchmarks"), next to the
// raw-CRoaring anchors they are judged against, measured in the same run.
//
// Data is synthetic and fixed-seed, generated once per process on first use
// and loaded the way a bulk load does (ApplySnapshot per shard + commit):
//  - 10^8 users, uniform tags at 50 %, 10 %, 1 %, 0.01 % (Count, raw anchors);
//  - one 2^20-user shard with 1,000 power-law tags, ~20 per user (GetTags,
//    the contains-loop anchor, ApplyEvents);
//  - 10^7 users with 200 power-law tags and a 10 % audience tag (TopTags).
// Densities in arguments are basis points: 5000 = 50 %, 1 = 0.01 %.
// Every query result is checked once against raw CRoaring before timing.
// Release builds only (bench/CMakeLists.txt).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <roaring/roaring.hh>

#include "bench_data.h"
#include "tagcache/server/engine.h"

namespace tagcache::bench {
namespace {

constexpr int kShardBits = 20;
constexpr uint64_t kShardUsers = uint64_t{1} << kShardBits;
constexpr uint64_t kBigUsers = 100'000'000;
// The 2-thread raw anchor splits the bitmaps here: a shard boundary near 10^8 / 2.
constexpr uint32_t kHalfSplit = 48u << kShardBits;
constexpr Timestamp kLoadTs = 1'000;  // every bulk load is "as of" this; events come later
constexpr uint64_t kSeed = 0x7A6CAC4E;

EngineOptions BenchOptions(int query_threads) {
  EngineOptions options;
  options.shard_bits = kShardBits;
  options.query_threads = query_threads;
  options.max_future_ms = 0;  // synthetic timestamps: no clock involved
  return options;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::string RankName(std::string_view prefix, size_t rank) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04zu", rank);
  return std::string(prefix) + buf;
}

// Tags as per-shard parts, and engines holding all of them (one per
// query_threads value, loaded on first use; a tag added later is loaded into
// every engine that exists).
class TagSet {
 public:
  void Add(std::string name, std::vector<ShardPart> parts) {
    for (auto& [threads, engine] : engines_) LoadTag(*engine, name, kLoadTs, parts);
    tags_.emplace_back(std::move(name), std::move(parts));
  }
  std::unique_ptr<Engine> NewEngine(int query_threads) const {
    const auto start = std::chrono::steady_clock::now();
    auto engine = std::make_unique<Engine>(BenchOptions(query_threads));
    for (const auto& [name, parts] : tags_) LoadTag(*engine, name, kLoadTs, parts);
    std::fprintf(stderr, "[setup] loaded %zu tags into an engine (query_threads=%d) in %.2f s\n",
                 tags_.size(), query_threads, Seconds(start));
    return engine;
  }
  Engine& EngineFor(int query_threads) {
    std::unique_ptr<Engine>& slot = engines_[query_threads];
    if (!slot) slot = NewEngine(query_threads);
    return *slot;
  }

 private:
  std::vector<std::pair<std::string, std::vector<ShardPart>>> tags_;
  std::map<int, std::unique_ptr<Engine>> engines_;
};

// ---- 10^8 users, uniform densities -----------------------------------------

struct UniformTag {
  std::string name;
  Roaring whole;      // the raw anchor: 32-bit user ids, runOptimize'd
  Roaring halves[2];  // users below / from kHalfSplit, for the 2-thread anchor
};

class BigDataset {
 public:
  static BigDataset& Get() {
    static BigDataset dataset;
    return dataset;
  }
  // The tag of density `bp` (basis points) and copy `replica`: distinct
  // replicas are independent tags, so a & b at equal densities is meaningful.
  const UniformTag& Tag(int64_t bp, int replica) {
    std::unique_ptr<UniformTag>& slot = tags_[{bp, replica}];
    if (!slot) slot = Generate(bp, replica);
    return *slot;
  }
  Engine& EngineFor(int query_threads) { return engines_.EngineFor(query_threads); }

 private:
  std::unique_ptr<UniformTag> Generate(int64_t bp, int replica) {
    const auto start = std::chrono::steady_clock::now();
    auto tag = std::make_unique<UniformTag>();
    tag->name = "d" + std::to_string(bp) + "bp_r" + std::to_string(replica);
    const std::vector<uint32_t> users = RandomPositions(
        kBigUsers, static_cast<double>(bp) / 10'000, MixSeed(kSeed, uint64_t(bp) * 16 + replica));
    const size_t half = static_cast<size_t>(
        std::lower_bound(users.begin(), users.end(), kHalfSplit) - users.begin());
    tag->whole.addMany(users.size(), users.data());
    tag->halves[0].addMany(half, users.data());
    tag->halves[1].addMany(users.size() - half, users.data() + half);
    tag->whole.runOptimize();
    tag->halves[0].runOptimize();
    tag->halves[1].runOptimize();
    engines_.Add(tag->name, SplitByShard(users, kShardBits));
    std::fprintf(stderr, "[setup] tag %s: %zu of 10^8 users, generated and loaded in %.2f s\n",
                 tag->name.c_str(), users.size(), Seconds(start));
    return tag;
  }

  std::map<std::pair<int64_t, int>, std::unique_ptr<UniformTag>> tags_;
  TagSet engines_;
};

// Runs `fn(bitmaps...)` over the whole bitmaps on this thread, or over the two
// halves on this thread and one std::thread (started per call, as simple
// code would; its start-up cost, tens of microseconds, is included).
template <typename Fn>
uint64_t RawSplit(int threads, Fn fn) {
  if (threads <= 1) return fn(0, true);
  uint64_t high = 0;
  std::thread worker([&high, &fn] { high = fn(1, false); });
  const uint64_t low = fn(0, false);
  worker.join();
  return low + high;
}

const Roaring& Part(const UniformTag& tag, int half, bool whole) {
  return whole ? tag.whole : tag.halves[half];
}

void RunCount(benchmark::State& state, Engine& engine, const std::string& expr,
              uint64_t expected) {
  Result<uint64_t> first = engine.Count(expr);
  if (!first.ok()) {
    state.SkipWithError(("Count: " + first.status().ToString()).c_str());
    return;
  }
  if (*first != expected) {
    state.SkipWithError(("Count(" + expr + ") = " + std::to_string(*first) + " but raw CRoaring says " +
                         std::to_string(expected)).c_str());
    return;
  }
  for (auto _ : state) {
    Result<uint64_t> count = engine.Count(expr);
    uint64_t value = count.ok() ? *count : 0;
    benchmark::DoNotOptimize(value);
  }
  state.counters["count"] = static_cast<double>(expected);
}

void BM_Count_AandB(benchmark::State& state) {
  BigDataset& data = BigDataset::Get();
  const UniformTag& a = data.Tag(state.range(0), 0);
  const UniformTag& b = data.Tag(state.range(1), 1);
  Engine& engine = data.EngineFor(static_cast<int>(state.range(2)));
  RunCount(state, engine, a.name + " & " + b.name, a.whole.and_cardinality(b.whole));
}

void BM_RawCRoaring_AndCardinality(benchmark::State& state) {
  BigDataset& data = BigDataset::Get();
  const UniformTag& a = data.Tag(state.range(0), 0);
  const UniformTag& b = data.Tag(state.range(1), 1);
  const int threads = static_cast<int>(state.range(2));
  uint64_t count = 0;
  for (auto _ : state) {
    count = RawSplit(threads, [&a, &b](int h, bool whole) {
      return Part(a, h, whole).and_cardinality(Part(b, h, whole));
    });
    benchmark::DoNotOptimize(count);
  }
  state.counters["count"] = static_cast<double>(count);
}

void BM_Count_AandBandNotC(benchmark::State& state) {
  BigDataset& data = BigDataset::Get();
  const UniformTag& a = data.Tag(state.range(0), 0);
  const UniformTag& b = data.Tag(state.range(1), 1);
  const UniformTag& c = data.Tag(state.range(2), 2);
  Engine& engine = data.EngineFor(static_cast<int>(state.range(3)));
  RunCount(state, engine, a.name + " & " + b.name + " & !" + c.name,
           (a.whole & b.whole).andnot_cardinality(c.whole));
}

// The natural raw-CRoaring way: materialise a & b, then andnot-cardinality with c.
void BM_RawCRoaring_AndAndNotCardinality(benchmark::State& state) {
  BigDataset& data = BigDataset::Get();
  const UniformTag& a = data.Tag(state.range(0), 0);
  const UniformTag& b = data.Tag(state.range(1), 1);
  const UniformTag& c = data.Tag(state.range(2), 2);
  const int threads = static_cast<int>(state.range(3));
  uint64_t count = 0;
  for (auto _ : state) {
    count = RawSplit(threads, [&a, &b, &c](int h, bool whole) {
      return (Part(a, h, whole) & Part(b, h, whole)).andnot_cardinality(Part(c, h, whole));
    });
    benchmark::DoNotOptimize(count);
  }
  state.counters["count"] = static_cast<double>(count);
}

// a, b (and c) densities in basis points; at least 50 % x 10 % (issue 3).
void AandBArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"a_bp", "b_bp", "qthreads"});
  for (const auto& [x, y] : {std::pair<int64_t, int64_t>{5000, 1000}, {1000, 100}, {100, 1},
                             {5000, 5000}}) {
    for (int64_t threads : {1, 2}) b->Args({x, y, threads});
  }
}

void AandBandNotCArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"a_bp", "b_bp", "c_bp", "qthreads"});
  for (const auto& abc : {std::vector<int64_t>{5000, 1000, 100}, {1000, 100, 1},
                          {5000, 1000, 5000}}) {
    for (int64_t threads : {1, 2}) b->Args({abc[0], abc[1], abc[2], threads});
  }
}

BENCHMARK(BM_Count_AandB)->Apply(AandBArgs)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RawCRoaring_AndCardinality)
    ->Apply(AandBArgs)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Count_AandBandNotC)
    ->Apply(AandBandNotCArgs)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RawCRoaring_AndAndNotCardinality)
    ->Apply(AandBandNotCArgs)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- One 2^20-user shard with 1,000 power-law tags ---------------------------

constexpr int kShardTags = 1000;
constexpr double kShardMeanTags = 20;

struct ShardDataset {
  static ShardDataset& Get() {
    static ShardDataset dataset;
    return dataset;
  }
  std::vector<std::string> names;  // by rank = creation order
  std::vector<Roaring> members;    // by rank; offsets = user ids (shard 0)
  PowerLaw law;
  uint64_t assignments = 0;
  TagSet tags;

 private:
  ShardDataset() {
    const auto start = std::chrono::steady_clock::now();
    law = PowerLawDensities(kShardTags, 0.5, kShardMeanTags);
    for (int r = 0; r < kShardTags; ++r) {
      std::vector<uint32_t> users =
          RandomPositions(kShardUsers, law.density[r], MixSeed(kSeed ^ 0x5A, r));
      assignments += users.size();
      names.push_back(RankName("interest:", r));
      std::vector<ShardPart> parts = SplitByShard(users, kShardBits);
      members.push_back(parts.empty() ? Roaring() : parts[0].offsets);
      members.back().runOptimize();
      tags.Add(names.back(), std::move(parts));
    }
    std::fprintf(stderr,
                 "[setup] shard dataset: %d tags, exponent %.3f, %.1f tags/user, generated in %.2f s\n",
                 kShardTags, law.exponent, double(assignments) / kShardUsers, Seconds(start));
  }
};

std::vector<UserId> RandomShardUsers(size_t n, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<UserId> users(n);
  for (UserId& u : users) u = rng.Below(kShardUsers);
  return users;
}

std::vector<std::string_view> ContainsLoop(const ShardDataset& data, UserId user) {
  std::vector<std::string_view> tags;
  for (size_t t = 0; t < data.members.size(); ++t) {
    if (data.members[t].contains(static_cast<uint32_t>(user))) tags.push_back(data.names[t]);
  }
  return tags;
}

void BM_GetTags_1000TagsShard(benchmark::State& state) {
  ShardDataset& data = ShardDataset::Get();
  static const std::unique_ptr<Engine> engine = data.tags.NewEngine(1);
  const std::vector<UserId> users = RandomShardUsers(1 << 16, kSeed + 1);
  // Check: the engine agrees with the bitmaps, in tag-creation order.
  for (size_t i = 0; i < 2000; ++i) {
    const std::vector<TagHit> hits = engine->GetTags(users[i]);
    const std::vector<std::string_view> want = ContainsLoop(data, users[i]);
    bool same = hits.size() == want.size();
    for (size_t j = 0; same && j < hits.size(); ++j) same = hits[j].tag == want[j];
    if (!same) {
      state.SkipWithError(("GetTags(" + std::to_string(users[i]) + ") returned " +
                           std::to_string(hits.size()) + " tags, bitmaps say " +
                           std::to_string(want.size()) + " (or a different order)")
                              .c_str());
      return;
    }
  }
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    std::vector<TagHit> tags = engine->GetTags(users[i++ & 0xFFFF]);
    hits += tags.size();
    benchmark::DoNotOptimize(tags.data());
  }
  state.counters["tags_per_user"] = static_cast<double>(hits) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_GetTags_1000TagsShard)->Unit(benchmark::kNanosecond);

// The anchor GetTags must beat: ask each of the 1,000 tag bitmaps whether it
// holds the user.
void BM_ContainsLoop_1000Tags(benchmark::State& state) {
  ShardDataset& data = ShardDataset::Get();
  const std::vector<UserId> users = RandomShardUsers(1 << 16, kSeed + 1);
  size_t i = 0;
  uint64_t hits = 0;
  for (auto _ : state) {
    std::vector<std::string_view> tags = ContainsLoop(data, users[i++ & 0xFFFF]);
    hits += tags.size();
    benchmark::DoNotOptimize(tags.data());
  }
  state.counters["tags_per_user"] = static_cast<double>(hits) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_ContainsLoop_1000Tags)->Unit(benchmark::kMicrosecond);

// ---- Writes --------------------------------------------------------------------

constexpr size_t kEventBatch = 1000;

// An engine loaded with the shard dataset that the write benchmarks mutate
// (GetTags keeps its own, untouched).
Engine& WriteEngine() {
  static const std::unique_ptr<Engine> engine = ShardDataset::Get().tags.NewEngine(1);
  return *engine;
}

// Events for existing tags (power-law popularity) of uniform users of the
// shard, half sets and half clears, with increasing timestamps, so every event
// is newer than the base and wins. Each batch is drawn fresh (outside the
// timing), so overrides accumulate as they would between two snapshots.
void BM_ApplyEvents_ExistingTags(benchmark::State& state) {
  ShardDataset& data = ShardDataset::Get();
  Engine& engine = WriteEngine();
  static Timestamp next_ts = kLoadTs + 1;
  static SplitMix64 rng(kSeed + 2);
  static const RankSampler sampler(data.law.density);
  std::vector<Event> batch(kEventBatch);
  uint64_t applied = 0;
  uint64_t ignored = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (Event& e : batch) {
      e.user = rng.Below(kShardUsers);
      e.tag = data.names[sampler.Draw(rng)];
      e.op = (rng.Next() & 1) ? TagOp::kSet : TagOp::kClear;
      e.ts = next_ts++;
    }
    state.ResumeTiming();
    Result<ApplyEventsResult> result = engine.ApplyEvents(batch);
    if (!result.ok()) {
      state.SkipWithError(("ApplyEvents: " + result.status().ToString()).c_str());
      break;
    }
    applied += result->applied;
    ignored += result->ignored;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kEventBatch));
  state.counters["applied_frac"] =
      static_cast<double>(applied) / static_cast<double>(std::max<uint64_t>(1, applied + ignored));
  // The engine's state after the run: events accumulate as overrides.
  const EngineStats stats = engine.Stats(/*detailed=*/true);
  uint64_t overrides = 0;
  for (const TagStats& tag : stats.per_tag) overrides += tag.overrides;
  state.counters["overrides_M"] = static_cast<double>(overrides) / 1e6;
  state.counters["override_MB"] = static_cast<double>(stats.memory.override_bytes) / 1e6;
}
BENCHMARK(BM_ApplyEvents_ExistingTags)->Unit(benchmark::kMicrosecond);

// One shard's snapshot of a tag, alternating between two different member
// sets so each apply really changes the shard; each is newer than the last
// and is committed, as a loader would. loaded=0: a fresh engine; loaded=1:
// the 1,000-tag shard after the event benchmark (index and overrides present).
void BM_ApplySnapshot_OneShard(benchmark::State& state) {
  const int64_t bp = state.range(0);
  static std::map<int64_t, std::vector<Roaring>> inputs;
  std::vector<Roaring>& snapshots = inputs[bp];
  if (snapshots.empty()) {
    for (uint64_t v = 0; v < 2; ++v) {
      const std::vector<uint32_t> users =
          RandomPositions(kShardUsers, static_cast<double>(bp) / 10'000, MixSeed(kSeed + 3, v));
      snapshots.emplace_back().addMany(users.size(), users.data());
    }
  }
  std::unique_ptr<Engine> fresh;
  Engine* engine = nullptr;
  if (state.range(1) != 0) {
    engine = &WriteEngine();
  } else {
    fresh = std::make_unique<Engine>(BenchOptions(1));
    engine = fresh.get();
  }
  const std::string tag = "snapshot_d" + std::to_string(bp) + "bp";
  static Timestamp ts = kLoadTs;  // shared by all runs: every snapshot is newer than the last
  const uint64_t shard0[] = {0};
  size_t i = 0;
  uint64_t members = 0;
  for (auto _ : state) {
    const Roaring& offsets = snapshots[i++ & 1];
    ++ts;
    Result<SnapshotOutcome> applied = engine->ApplySnapshot(tag, ts, 0, offsets);
    Result<CommitOutcome> committed = engine->CommitSnapshot(tag, ts, shard0);
    if (!applied.ok() || *applied != SnapshotOutcome::kApplied || !committed.ok()) {
      state.SkipWithError(("ApplySnapshot/CommitSnapshot: " + applied.status().ToString() + " / " +
                           committed.status().ToString())
                              .c_str());
      break;
    }
    members += offsets.cardinality();
  }
  state.SetItemsProcessed(static_cast<int64_t>(members));
  state.counters["members"] = static_cast<double>(snapshots[0].cardinality());
}
BENCHMARK(BM_ApplySnapshot_OneShard)
    ->ArgNames({"density_bp", "loaded"})
    ->ArgsProduct({{1000, 5000}, {0, 1}})
    ->Unit(benchmark::kMillisecond);

// ---- TopTags: 10^7 users, 200 power-law tags, a 10 % audience --------------

constexpr uint64_t kTopUsers = 10'000'000;
constexpr int kTopTagCount = 200;
constexpr double kTopMeanTags = 10;
constexpr size_t kTopK = 10;
const char kAudienceTag[] = "audience_10pct";

struct TopTagsDataset {
  static TopTagsDataset& Get() {
    static TopTagsDataset dataset;
    return dataset;
  }
  TagSet tags;
  std::vector<std::pair<std::string, uint64_t>> expected;  // top k by the raw bitmaps

 private:
  TopTagsDataset() {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<uint32_t> audience_users =
        RandomPositions(kTopUsers, 0.10, MixSeed(kSeed + 4, 0));
    Roaring audience;
    audience.addMany(audience_users.size(), audience_users.data());
    const PowerLaw law = PowerLawDensities(kTopTagCount, 0.5, kTopMeanTags);
    std::vector<std::pair<std::string, uint64_t>> counts;
    for (int r = 0; r < kTopTagCount; ++r) {
      const std::vector<uint32_t> users =
          RandomPositions(kTopUsers, law.density[r], MixSeed(kSeed + 5, r));
      Roaring members;
      members.addMany(users.size(), users.data());
      counts.emplace_back(RankName("segment:", r), members.and_cardinality(audience));
      tags.Add(counts.back().first, SplitByShard(users, kShardBits));
    }
    tags.Add(kAudienceTag, SplitByShard(audience_users, kShardBits));
    std::sort(counts.begin(), counts.end(), [](const auto& x, const auto& y) {
      return x.second != y.second ? x.second > y.second : x.first < y.first;
    });
    counts.resize(kTopK);
    expected = std::move(counts);
    std::fprintf(stderr, "[setup] TopTags dataset: %d tags (exponent %.3f) + a 10%% audience "
                 "over 10^7 users, generated in %.2f s\n",
                 kTopTagCount, law.exponent, Seconds(start));
  }
};

void BM_TopTags_10pctAudience_200Tags(benchmark::State& state) {
  TopTagsDataset& data = TopTagsDataset::Get();
  Engine& engine = data.tags.EngineFor(static_cast<int>(state.range(0)));
  Result<std::vector<TagCount>> first = engine.TopTags(kAudienceTag, kTopK);
  if (!first.ok()) {
    state.SkipWithError(("TopTags: " + first.status().ToString()).c_str());
    return;
  }
  // The audience tag itself is among the tags counted: drop it before comparing.
  std::vector<std::pair<std::string, uint64_t>> got;
  for (const TagCount& tc : *first) {
    if (tc.tag != kAudienceTag) got.emplace_back(std::string(tc.tag), tc.count);
  }
  for (size_t j = 0; j < got.size(); ++j) {
    if (got[j] != data.expected[j]) {
      state.SkipWithError(("TopTags #" + std::to_string(j) + " = " + got[j].first + ":" +
                           std::to_string(got[j].second) + ", raw CRoaring says " +
                           data.expected[j].first + ":" + std::to_string(data.expected[j].second))
                              .c_str());
      return;
    }
  }
  for (auto _ : state) {
    Result<std::vector<TagCount>> top = engine.TopTags(kAudienceTag, kTopK);
    size_t n = top.ok() ? top->size() : 0;
    benchmark::DoNotOptimize(n);
  }
}
BENCHMARK(BM_TopTags_10pctAudience_200Tags)
    ->ArgName("qthreads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace tagcache::bench
