// A synthetic dataset loaded into a live node through the client library,
// the way a bulk load does: for every tag, one LoadSnapshot per shard with
// members, then a CommitSnapshot naming those shards. Users [0, users) x
// tags "tag0000", "tag0001", ... with power-law densities (random_data.h,
// the top tag at 50 %) summing to `mean` tags per user. Members are drawn
// per block of 2^16 users from seeds derived from (seed, tag, block), so the
// data depend neither on the node's shard_bits nor on the number of loader
// threads. Header-only; shared by net_load and write_load.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <roaring/roaring.hh>

#include "random_data.h"
#include "tagcache/client/client.h"

namespace tagcache::bench {

struct DatasetSpec {
  uint64_t users = 1'000'000;
  int tags = 1000;
  double mean = 20;  // tags per user, on average
  uint64_t seed = 1;
};

// Every tag's snapshot is loaded as of this ts; events stamped later win.
inline constexpr client::Timestamp kDatasetSnapshotTs = 1;

inline std::string DatasetTagName(int tag) {
  char name[32];
  std::snprintf(name, sizeof name, "tag%04d", tag);
  return name;
}

// Density of tag t (0-based rank): 0.5 * (t + 1)^-s, s such that the sum is `mean`.
inline std::vector<double> DatasetDensities(const DatasetSpec& spec) {
  return PowerLawDensities(spec.tags, 0.5, spec.mean).density;
}

// Calls fn(user) for every member of tag `tag` (of density `density`), ascending.
template <typename Fn>
void ForEachDatasetMember(const DatasetSpec& spec, int tag, double density, Fn&& fn) {
  constexpr int kBlockBits = 16;
  constexpr uint64_t kBlock = uint64_t{1} << kBlockBits;
  const uint64_t tag_seed = MixSeed(spec.seed, static_cast<uint64_t>(tag));
  for (uint64_t base = 0; base < spec.users; base += kBlock) {
    const std::vector<uint32_t> positions = RandomPositions(
        std::min(kBlock, spec.users - base), density, MixSeed(tag_seed, base >> kBlockBits));
    for (uint32_t p : positions) fn(base + p);
  }
}

// Loader threads: each mostly waits for its LoadSnapshot answers (the node
// logs every part before acknowledging it), so more than the cores.
inline int DefaultLoadThreads() {
  return static_cast<int>(std::max(4u, 2 * std::thread::hardware_concurrency()));
}

// Loads the dataset with `threads` threads (each takes whole tags; the
// Client is shared) and returns the number of assignments loaded. Prints a
// progress line to stderr every 10 % of the tags once it has taken over 2 s.
// Stops at the first error.
inline Result<uint64_t> LoadDataset(client::Client& client, const DatasetSpec& spec,
                                    int threads) {
  const int shard_bits = client.shard_bits();
  const uint64_t offset_mask = (uint64_t{1} << shard_bits) - 1;
  const std::vector<double> density = DatasetDensities(spec);
  client::CallOptions call;
  call.timeout = std::chrono::minutes(1);  // a big shard part behind others' fsyncs

  const auto start = std::chrono::steady_clock::now();
  std::atomic<int> next_tag{0};
  std::atomic<int> tags_done{0};
  std::atomic<uint64_t> assignments{0};
  std::mutex mu;
  Status first_error;  // guarded by mu
  std::atomic<bool> failed{false};
  auto fail = [&](Status status) {
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.ok()) first_error = std::move(status);
    failed = true;
  };

  auto load_tag = [&](int t) {
    const std::string name = DatasetTagName(t);
    std::vector<uint64_t> shards;
    std::vector<uint32_t> offsets;
    std::string bytes;
    uint64_t shard = UINT64_MAX;
    uint64_t members = 0;
    auto flush = [&] {
      if (offsets.empty() || failed) return;
      Roaring bitmap;
      bitmap.addMany(offsets.size(), offsets.data());
      bitmap.runOptimize();
      bytes.assign(bitmap.getSizeInBytes(true), '\0');
      bitmap.write(bytes.data(), true);
      auto loaded = client.LoadSnapshot(name, kDatasetSnapshotTs, shard, bytes, call);
      if (!loaded.ok()) {
        fail(Status(loaded.status().code(),
                    "LoadSnapshot " + name + " shard " + std::to_string(shard) + ": " +
                        loaded.status().message()));
        return;
      }
      shards.push_back(shard);
      members += offsets.size();
      offsets.clear();
    };
    ForEachDatasetMember(spec, t, density[static_cast<size_t>(t)], [&](uint64_t user) {
      if ((user >> shard_bits) != shard) {
        flush();
        shard = user >> shard_bits;
      }
      offsets.push_back(static_cast<uint32_t>(user & offset_mask));
    });
    flush();
    if (failed) return;
    auto committed = client.CommitSnapshot(name, kDatasetSnapshotTs, shards, call);
    if (!committed.ok()) {
      fail(Status(committed.status().code(),
                  "CommitSnapshot " + name + ": " + committed.status().message()));
      return;
    }
    if (!committed->missing_shards.empty()) {
      fail(Status::Internal("CommitSnapshot " + name + ": " +
                            std::to_string(committed->missing_shards.size()) + " shards missing"));
      return;
    }
    assignments += members;
    const int done = ++tags_done;
    if (spec.tags >= 10 && done % (spec.tags / 10) == 0 &&
        std::chrono::steady_clock::now() - start > std::chrono::seconds(2)) {
      std::fprintf(stderr, "  loaded %d/%d tags, %llu assignments\n", done, spec.tags,
                   static_cast<unsigned long long>(assignments.load()));
    }
  };

  std::vector<std::thread> workers;
  for (int i = 0; i < std::max(1, threads); ++i) {
    workers.emplace_back([&] {
      for (int t; !failed && (t = next_tag++) < spec.tags;) load_tag(t);
    });
  }
  for (auto& w : workers) w.join();
  if (failed) return first_error;
  return assignments.load();
}

}  // namespace tagcache::bench
