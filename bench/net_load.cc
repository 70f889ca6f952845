// net_load: a closed-loop load generator for GetTags through the client
// library against a live tagcache-server (issue 4's "small load loop",
// until tagbench exists). Loads N users with ~M of T tags each (power-law
// tag popularity, snapshot_load.h) through LoadSnapshot/CommitSnapshot, then keeps
// connections x depth GetTags of uniformly random users in flight for a
// fixed time and reports throughput and latency percentiles.
//
// Usage: net_load --server 127.0.0.1:7379 [--users 1000000] [--tags 1000]
//          [--mean 20] [--connections 32] [--depth 16] [--seconds 10]
//          [--no-load] [--seed 1]
//        net_load --redis-dump FILE [--users ...]   (the same data for Redis)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "snapshot_load.h"
#include "tagcache/client/client.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string server = "127.0.0.1:7379";
  uint64_t users = 1'000'000;
  int tags = 1000;
  double mean = 20;
  int connections = 32;
  int depth = 16;
  double seconds = 10;
  bool load = true;
  uint64_t seed = 1;
  std::string redis_dump;  // write the dataset as RESP SADD commands here and exit
};

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (k == "--no-load") {
      a->load = false;
      continue;
    }
    if (!(v = next())) return false;
    if (k == "--server") a->server = v;
    else if (k == "--redis-dump") a->redis_dump = v;
    else if (k == "--users") a->users = std::strtoull(v, nullptr, 10);
    else if (k == "--tags") a->tags = std::atoi(v);
    else if (k == "--mean") a->mean = std::atof(v);
    else if (k == "--connections") a->connections = std::atoi(v);
    else if (k == "--depth") a->depth = std::atoi(v);
    else if (k == "--seconds") a->seconds = std::atof(v);
    else if (k == "--seed") a->seed = std::strtoull(v, nullptr, 10);
    else return false;
  }
  return a->users > 0 && a->tags > 0 && a->connections > 0 && a->depth > 0 && a->seconds > 0;
}

tagcache::bench::DatasetSpec Spec(const Args& a) {
  return {a.users, a.tags, a.mean, a.seed};
}

// The same users and tags as Load() loads (ForEachDatasetMember, same seed), as one
// `SADD u:<12-digit user> tag...` per user in RESP, for `redis-cli --pipe`;
// the key format matches redis-benchmark's __rand_int__ (12 digits).
int DumpForRedis(const Args& a) {
  const tagcache::bench::DatasetSpec spec = Spec(a);
  const std::vector<double> density = tagcache::bench::DatasetDensities(spec);
  std::vector<std::vector<uint16_t>> per_user(a.users);
  for (int t = 0; t < a.tags; ++t) {
    tagcache::bench::ForEachDatasetMember(spec, t, density[static_cast<size_t>(t)],
                                          [&](uint64_t u) {
                                            per_user[u].push_back(static_cast<uint16_t>(t));
                                          });
  }
  std::FILE* out = std::fopen(a.redis_dump.c_str(), "wb");
  if (!out) {
    std::perror(a.redis_dump.c_str());
    return 1;
  }
  for (uint64_t u = 0; u < a.users; ++u) {
    if (per_user[u].empty()) continue;
    std::fprintf(out, "*%zu\r\n$4\r\nSADD\r\n$14\r\nu:%012llu\r\n", per_user[u].size() + 2,
                 static_cast<unsigned long long>(u));
    for (uint16_t t : per_user[u]) std::fprintf(out, "$7\r\ntag%04d\r\n", t);
  }
  return std::fclose(out) == 0 ? 0 : 1;
}

int Load(tagcache::client::Client& client, const Args& a) {
  const auto start = Clock::now();
  auto loaded = tagcache::bench::LoadDataset(client, Spec(a), tagcache::bench::DefaultLoadThreads());
  if (!loaded.ok()) {
    std::fprintf(stderr, "load: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  std::printf("loaded %llu users, %d tags, %llu assignments (%.1f per user) in %.1f s\n",
              static_cast<unsigned long long>(a.users), a.tags,
              static_cast<unsigned long long>(*loaded), double(*loaded) / double(a.users),
              std::chrono::duration<double>(Clock::now() - start).count());
  return 0;
}

// Closed loop: every completion records its latency and issues the next
// request on the same slot until the deadline; callbacks run on the
// client's I/O thread, so the recording needs no lock.
struct Run {
  tagcache::client::Client* client;
  uint64_t users;
  Clock::time_point deadline;
  std::mt19937_64 rng;
  std::vector<uint32_t> latency_us;
  uint64_t errors = 0;
  uint64_t tags_seen = 0;
  int outstanding = 0;
  std::mutex mu;
  std::condition_variable done;

  void Issue() {
    const auto sent = Clock::now();
    const uint64_t user = rng() % users;
    client->GetTagsAsync(user, false, [this, sent](tagcache::Result<std::vector<tagcache::client::TagHit>> r) {
      const auto now = Clock::now();
      latency_us.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - sent).count()));
      if (r.ok()) {
        tags_seen += r->size();
      } else {
        ++errors;
      }
      if (now < deadline) {
        Issue();
        return;
      }
      std::lock_guard<std::mutex> lock(mu);
      if (--outstanding == 0) done.notify_all();
    });
  }
};

double Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * double(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: %s --server HOST:PORT [--users N] [--tags T] [--mean M] "
                 "[--connections C] [--depth D] [--seconds S] [--no-load] [--seed X]\n",
                 argv[0]);
    return 2;
  }
  if (!a.redis_dump.empty()) return DumpForRedis(a);
  tagcache::client::ClientOptions options;
  options.seeds = {a.server};
  options.connections_per_node = a.connections;
  options.max_in_flight = static_cast<size_t>(a.depth) * 2;
  options.client_name = "net_load";
  auto connected = tagcache::client::Client::Connect(options);
  if (!connected.ok()) {
    std::fprintf(stderr, "connect %s: %s\n", a.server.c_str(),
                 connected.status().ToString().c_str());
    return 1;
  }
  tagcache::client::Client& client = **connected;
  if (a.load && Load(client, a) != 0) return 1;

  // Every Run's state is touched only on the client's I/O thread: the slots
  // are started from a Ping callback, which runs there, and completions too.
  const int slots = a.connections * a.depth;
  auto drive = [&](Run& run, double seconds) {
    run.client = &client;
    run.users = a.users;
    run.outstanding = slots;
    run.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
    client.PingAsync([&run, slots](tagcache::Result<std::chrono::microseconds>) {
      for (int i = 0; i < slots; ++i) run.Issue();
    });
    std::unique_lock<std::mutex> lock(run.mu);
    run.done.wait(lock, [&] { return run.outstanding == 0; });
  };
  {
    Run warm;  // one second, not recorded
    warm.rng.seed(a.seed + 2);
    drive(warm, 1.0);
  }
  Run run;
  run.rng.seed(a.seed + 1);
  run.latency_us.reserve(8'000'000);
  const auto start = Clock::now();
  drive(run, a.seconds);
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const size_t n = run.latency_us.size();
  std::printf(
      "GetTags: %d connections x depth %d: %.0f req/s (%zu requests in %.2f s, %llu errors, "
      "%.1f tags/reply), latency p50 %.0f us, p99 %.0f us, p99.9 %.0f us\n",
      a.connections, a.depth, double(n) / elapsed, n, elapsed,
      static_cast<unsigned long long>(run.errors), n ? double(run.tags_seen) / double(n) : 0.0,
      Percentile(run.latency_us, 0.50), Percentile(run.latency_us, 0.99),
      Percentile(run.latency_us, 0.999));
  return run.errors == 0 ? 0 : 1;
}
