// write_load: acknowledged-write throughput through the client library
// against a live tagcache-server. W writer threads each keep exactly one
// ApplyEvents batch of B events in flight (closed loop: W is the number of
// concurrent writers the node's group commit sees). Events: uniformly random
// users in [0, N), a uniformly random tag of "t0".."t<T-1>", 90 % set / 10 %
// clear, ts = now in ms. The first --warmup seconds are not measured; a
// batch counts when its answer arrives inside the measured window.
//
// Reports events/s acknowledged, batches/s, batch latency p50/p99/max (the
// ApplyEvents call, encoding included), errors by status, and the node's
// WAL counters over the window (fsyncs, group commits) when it has a WAL.
//
// Usage: write_load --server 127.0.0.1:7379 [--writers 8] [--batch 1000]
//          [--seconds 10] [--warmup 1] [--users 10000000] [--tags 200]
//          [--seed 1] [--json]
//        write_load --server 127.0.0.1:7379 --load-only [--users N] [--tags T]
//          [--mean 10] [--seed 1] [--load-threads K] [--json]
//          (loads net_load's power-law dataset, snapshot_load.h, and exits)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "random_data.h"
#include "snapshot_load.h"
#include "tagcache/client/client.h"

namespace {

using Clock = std::chrono::steady_clock;
using tagcache::bench::MixSeed;
using tagcache::bench::SplitMix64;
using tagcache::client::Client;
using tagcache::client::Event;
using tagcache::client::TagOp;

struct Args {
  std::string server = "127.0.0.1:7379";
  int writers = 8;
  int batch = 1000;
  double seconds = 10;
  double warmup = 1;
  uint64_t users = 10'000'000;
  int tags = 200;
  uint64_t seed = 1;
  bool json = false;
  // --load-only: load the dataset and exit.
  bool load_only = false;
  double mean = 10;
  int load_threads = 0;  // 0: DefaultLoadThreads()
};

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--json") {
      a->json = true;
      continue;
    }
    if (k == "--load-only") {
      a->load_only = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (k == "--server") a->server = v;
    else if (k == "--writers") a->writers = std::atoi(v);
    else if (k == "--batch") a->batch = std::atoi(v);
    else if (k == "--seconds") a->seconds = std::atof(v);
    else if (k == "--warmup") a->warmup = std::atof(v);
    else if (k == "--users") a->users = std::strtoull(v, nullptr, 10);
    else if (k == "--tags") a->tags = std::atoi(v);
    else if (k == "--seed") a->seed = std::strtoull(v, nullptr, 10);
    else if (k == "--mean") a->mean = std::atof(v);
    else if (k == "--load-threads") a->load_threads = std::atoi(v);
    else return false;
  }
  return a->writers > 0 && a->batch > 0 && a->seconds > 0 && a->warmup >= 0 && a->users > 0 &&
         a->tags > 0 && a->mean > 0 && a->load_threads >= 0;
}

double Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * double(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

int LoadOnly(Client& client, const Args& a) {
  const int threads =
      a.load_threads > 0 ? a.load_threads : tagcache::bench::DefaultLoadThreads();
  const auto start = Clock::now();
  auto loaded = tagcache::bench::LoadDataset(client, {a.users, a.tags, a.mean, a.seed}, threads);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (a.json) {
    std::printf("{\"users\":%llu,\"tags\":%d,\"assignments\":%llu,\"seconds\":%.3f}\n",
                static_cast<unsigned long long>(a.users), a.tags,
                static_cast<unsigned long long>(*loaded), secs);
  } else {
    std::printf("loaded %llu users, %d tags, %llu assignments (%.2f per user) in %.1f s\n",
                static_cast<unsigned long long>(a.users), a.tags,
                static_cast<unsigned long long>(*loaded), double(*loaded) / double(a.users), secs);
  }
  return 0;
}

// One writer's tally; touched by its own thread only until join.
struct Tally {
  uint64_t batches = 0;
  uint64_t events = 0;
  uint64_t applied = 0;
  uint64_t ignored = 0;
  std::vector<uint32_t> latency_us;  // ok batches in the window
  std::map<std::string, uint64_t> errors;  // by status name, whole run
};

void Writer(Client& client, const Args& a, int index, Clock::time_point window_start,
            Clock::time_point window_end, Tally& tally) {
  SplitMix64 rng(MixSeed(a.seed, static_cast<uint64_t>(index)));
  std::vector<std::string> names(static_cast<size_t>(a.tags));
  for (int t = 0; t < a.tags; ++t) {
    char name[24];
    std::snprintf(name, sizeof name, "t%d", t);
    names[static_cast<size_t>(t)] = name;
  }
  std::vector<Event> batch(static_cast<size_t>(a.batch));
  tagcache::client::CallOptions call;
  call.timeout = std::chrono::seconds(60);
  for (;;) {
    const uint64_t ts = NowMs();
    for (Event& e : batch) {
      e.user = rng.Below(a.users);
      e.tag = names[rng.Below(static_cast<uint64_t>(a.tags))];
      e.op = rng.Below(10) == 0 ? TagOp::kClear : TagOp::kSet;
      e.ts = ts;
    }
    const auto sent = Clock::now();
    if (sent >= window_end) return;
    auto result = client.ApplyEvents(batch, call);
    const auto now = Clock::now();
    const bool in_window = now >= window_start && now <= window_end;
    if (!result.ok()) {
      ++tally.errors[std::string(tagcache::StatusCodeName(result.status().code()))];
      // Not a hot loop against a node that refuses everything.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (!in_window) continue;
    ++tally.batches;
    tally.events += batch.size();
    tally.applied += result->applied;
    tally.ignored += result->ignored;
    tally.latency_us.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - sent).count()));
  }
}

// The node's WAL counters (zero without a WAL); summed over nodes.
struct WalCounters {
  bool has_wal = false;
  uint64_t fsyncs = 0, fsync_micros = 0, groups = 0, records = 0, bytes = 0;
};

WalCounters ReadWal(Client& client) {
  WalCounters w;
  auto stats = client.Stats();
  if (!stats.ok()) return w;
  for (const auto& n : *stats) {
    if (n.fsync_policy.empty()) continue;
    w.has_wal = true;
    w.fsyncs += n.fsyncs;
    w.fsync_micros += n.fsync_micros_total;
    w.groups += n.wal_groups;
    w.records += n.wal_records;
    w.bytes += n.wal_bytes;
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: %s --server HOST:PORT [--writers W] [--batch B] [--seconds S] "
                 "[--warmup S] [--users N] [--tags T] [--seed X] [--json]\n"
                 "       %s --server HOST:PORT --load-only [--users N] [--tags T] [--mean M] "
                 "[--seed X] [--load-threads K] [--json]\n",
                 argv[0], argv[0]);
    return 2;
  }
  tagcache::client::ClientOptions options;
  options.seeds = {a.server};
  options.connections_per_node = a.load_only ? 4 : std::min(a.writers, 64);
  options.max_queued = size_t{1} << 20;  // W requests at most are ever waiting
  options.request_timeout = std::chrono::seconds(60);
  options.client_name = "write_load";
  auto connected = Client::Connect(options);
  if (!connected.ok()) {
    std::fprintf(stderr, "connect %s: %s\n", a.server.c_str(),
                 connected.status().ToString().c_str());
    return 1;
  }
  Client& client = **connected;
  if (a.load_only) return LoadOnly(client, a);

  const auto start = Clock::now();
  const auto window_start =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.warmup));
  const auto window_end =
      window_start +
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.seconds));
  std::vector<Tally> tallies(static_cast<size_t>(a.writers));
  std::vector<std::thread> threads;
  for (int w = 0; w < a.writers; ++w) {
    threads.emplace_back(Writer, std::ref(client), std::cref(a), w, window_start, window_end,
                         std::ref(tallies[static_cast<size_t>(w)]));
  }
  std::this_thread::sleep_until(window_start);
  const WalCounters wal0 = ReadWal(client);
  std::this_thread::sleep_until(window_end);
  const WalCounters wal1 = ReadWal(client);
  for (auto& t : threads) t.join();

  Tally all;
  for (Tally& t : tallies) {
    all.batches += t.batches;
    all.events += t.events;
    all.applied += t.applied;
    all.ignored += t.ignored;
    all.latency_us.insert(all.latency_us.end(), t.latency_us.begin(), t.latency_us.end());
    for (const auto& [name, n] : t.errors) all.errors[name] += n;
  }
  uint64_t error_count = 0;
  std::string errors_text, errors_json;
  for (const auto& [name, n] : all.errors) {
    error_count += n;
    errors_text += (errors_text.empty() ? "" : ", ") + name + " " + std::to_string(n);
    errors_json += (errors_json.empty() ? "\"" : ",\"") + name + "\":" + std::to_string(n);
  }
  const double events_per_s = double(all.events) / a.seconds;
  const double batches_per_s = double(all.batches) / a.seconds;
  const double p50 = Percentile(all.latency_us, 0.50);
  const double p99 = Percentile(all.latency_us, 0.99);
  const double max =
      all.latency_us.empty() ? 0 : *std::max_element(all.latency_us.begin(), all.latency_us.end());
  const uint64_t fsyncs = wal1.fsyncs - wal0.fsyncs;
  const uint64_t groups = wal1.groups - wal0.groups;
  const uint64_t wal_bytes = wal1.bytes - wal0.bytes;
  const double fsync_mean_us = fsyncs ? double(wal1.fsync_micros - wal0.fsync_micros) / double(fsyncs) : 0;

  std::printf(
      "ApplyEvents: %d writers x batch %d: %.0f events/s acknowledged, %.1f batches/s "
      "(%llu batches in %.2f s), batch latency p50 %.0f us, p99 %.0f us, max %.0f us; "
      "errors: %s\n",
      a.writers, a.batch, events_per_s, batches_per_s,
      static_cast<unsigned long long>(all.batches), a.seconds, p50, p99, max,
      errors_text.empty() ? "none" : errors_text.c_str());
  if (wal1.has_wal) {
    std::printf("  node WAL in the window: %.0f group commits/s, %.1f MB/s, ",
                double(groups) / a.seconds, double(wal_bytes) / a.seconds / 1e6);
    if (fsyncs == 0) {
      std::printf("no fsyncs\n");
    } else {
      std::printf("%.0f fsyncs/s (mean %.0f us), %.0f events per fsync\n",
                  double(fsyncs) / a.seconds, fsync_mean_us, double(all.events) / double(fsyncs));
    }
  } else {
    std::printf("  node has no WAL (no --data-dir)\n");
  }
  if (a.json) {
    std::printf(
        "{\"writers\":%d,\"batch\":%d,\"seconds\":%.3f,\"events_per_s\":%.1f,"
        "\"batches_per_s\":%.1f,\"batches\":%llu,\"events\":%llu,\"applied\":%llu,"
        "\"ignored\":%llu,\"p50_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f,\"errors\":{%s},"
        "\"wal\":%s}\n",
        a.writers, a.batch, a.seconds, events_per_s, batches_per_s,
        static_cast<unsigned long long>(all.batches), static_cast<unsigned long long>(all.events),
        static_cast<unsigned long long>(all.applied), static_cast<unsigned long long>(all.ignored),
        p50, p99, max, errors_json.c_str(),
        wal1.has_wal
            ? ("{\"fsyncs\":" + std::to_string(fsyncs) + ",\"fsync_mean_us\":" +
               std::to_string(static_cast<uint64_t>(fsync_mean_us)) + ",\"groups\":" +
               std::to_string(groups) + ",\"bytes\":" + std::to_string(wal_bytes) + "}")
                  .c_str()
            : "null");
  }
  return error_count == 0 ? 0 : 1;
}
