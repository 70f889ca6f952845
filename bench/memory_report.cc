// memory_report: loads a power-law dataset into one Engine and prints what it
// holds in memory, by kind, per (user, tag) assignment (issue 3 target: at
// most 4 bytes per assignment in total).
//
// Dataset: --users users (default 10^7) and --tags tags (default 1,000). Tag
// r (1-based rank) holds each user independently with probability
// top * r^-s, top = 50 %; s is found by bisection so that the mean tags per
// user is --mean (default 18), which gives s ~ 0.6 for the defaults. Loaded
// as a bulk load does: ApplySnapshot per shard, then CommitSnapshot.
//
// Usage: memory_report [--users N] [--tags T] [--mean M] [--seed S]

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bench_data.h"
#include "tagcache/server/engine.h"

namespace tagcache::bench {
namespace {

struct Flags {
  uint64_t users = 10'000'000;
  int tags = 1000;
  double mean = 18;
  uint64_t seed = 0x7A6CAC4E;
};

[[noreturn]] void Usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--users N] [--tags T] [--mean M] [--seed S]\n", argv0);
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") Usage(argv[0]);
    if (i + 1 >= argc) Usage(argv[0]);
    const char* value = argv[++i];
    char* end = nullptr;
    if (flag == "--users") {
      flags.users = std::strtoull(value, &end, 10);
    } else if (flag == "--tags") {
      flags.tags = static_cast<int>(std::strtol(value, &end, 10));
    } else if (flag == "--mean") {
      flags.mean = std::strtod(value, &end);
    } else if (flag == "--seed") {
      flags.seed = std::strtoull(value, &end, 0);
    } else {
      Usage(argv[0]);
    }
    if (end == value || *end != '\0') Usage(argv[0]);
  }
  if (flags.users == 0 || flags.users > (uint64_t{1} << 32) || flags.tags <= 0 ||
      flags.tags > 100'000 || flags.mean <= 0) {
    Usage(argv[0]);
  }
  return flags;
}

// VmRSS / VmHWM of this process in bytes, from /proc (0 if unavailable).
uint64_t ProcStatusBytes(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + std::strlen(key), nullptr, 10) * 1024;
  }
  return 0;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int Run(const Flags& flags) {
  constexpr int kShardBits = 20;
  const PowerLaw law = PowerLawDensities(flags.tags, 0.5, flags.mean);
  std::printf("dataset: %llu users, %d tags, power law p_r = 0.5 * r^-%.4f (mean %.2f tags/user)\n",
              static_cast<unsigned long long>(flags.users), flags.tags, law.exponent, flags.mean);
  std::printf("densities: rank 1 %.2f %%, rank 10 %.2f %%, rank 100 %.3f %%, rank %d %.4f %%\n",
              100 * law.density[0], 100 * law.density[std::min(9, flags.tags - 1)],
              100 * law.density[std::min(99, flags.tags - 1)], flags.tags,
              100 * law.density.back());

  EngineOptions options;
  options.shard_bits = kShardBits;
  options.query_threads = 1;
  options.max_future_ms = 0;
  Engine engine(options);

  // One tag at a time, so only one tag's members are ever materialised.
  std::chrono::steady_clock::duration generate{}, load{};
  uint64_t assignments = 0;
  for (int r = 0; r < flags.tags; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<uint32_t> users =
        RandomPositions(flags.users, law.density[r], MixSeed(flags.seed, r));
    const std::vector<ShardPart> parts = SplitByShard(users, kShardBits);
    const auto t1 = std::chrono::steady_clock::now();
    char name[32];
    std::snprintf(name, sizeof name, "tag:%04d", r);
    LoadTag(engine, name, 1000, parts);
    load += std::chrono::steady_clock::now() - t1;
    generate += t1 - t0;
    assignments += users.size();
  }
  std::printf("generated %llu assignments (%.2f per user) in %.2f s; loaded in %.2f s "
              "(%.1f M assignments/s)\n",
              static_cast<unsigned long long>(assignments),
              static_cast<double>(assignments) / static_cast<double>(flags.users),
              Seconds(generate), Seconds(load),
              static_cast<double>(assignments) / 1e6 / Seconds(load));

  const auto t0 = std::chrono::steady_clock::now();
  const EngineStats stats = engine.Stats();
  const double stats_s = Seconds(std::chrono::steady_clock::now() - t0);
  std::printf("engine: %llu shards, %llu tags, %llu known users, %llu assignments%s "
              "(Stats() took %.3f s)\n",
              static_cast<unsigned long long>(stats.shards),
              static_cast<unsigned long long>(stats.tags),
              static_cast<unsigned long long>(stats.known_users),
              static_cast<unsigned long long>(stats.assignments),
              stats.assignments == assignments ? "" : "  <-- MISMATCH with the generated count",
              stats_s);

  const double n = static_cast<double>(assignments);
  auto row = [n](const char* kind, uint64_t bytes) {
    std::printf("  %-10s %14llu bytes  %10.1f MB  %7.3f bytes/assignment\n", kind,
                static_cast<unsigned long long>(bytes), static_cast<double>(bytes) / 1e6,
                static_cast<double>(bytes) / n);
  };
  std::printf("memory by kind (Engine::Stats):\n");
  row("bitmaps", stats.memory.bitmap_bytes);
  row("index", stats.memory.index_bytes);
  row("overrides", stats.memory.override_bytes);
  row("known", stats.memory.known_bytes);
  row("total", stats.memory.total());
  std::printf("process: VmRSS %.1f MB, VmHWM %.1f MB (includes generation buffers and the allocator)\n",
              static_cast<double>(ProcStatusBytes("VmRSS:")) / 1e6,
              static_cast<double>(ProcStatusBytes("VmHWM:")) / 1e6);
  std::printf("target: <= 4 bytes/assignment in total: %s (%.3f)\n",
              static_cast<double>(stats.memory.total()) / n <= 4.0 ? "MET" : "MISSED",
              static_cast<double>(stats.memory.total()) / n);
  return 0;
}

}  // namespace
}  // namespace tagcache::bench

int main(int argc, char** argv) {
  return tagcache::bench::Run(tagcache::bench::ParseFlags(argc, argv));
}
