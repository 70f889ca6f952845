// count_latency: sequential audience-query latency through the client
// library against a node or a cluster (bench/cluster_compare.sh runs it
// against one node and against three with the same data). Each expression
// is counted --warmup times, then --reps times; prints, per expression,
// the count and the median and p99 latency, plus the median Ping round
// trip (the cost of one more hop).
//
// Usage: count_latency --seeds HOST:PORT[,HOST:PORT...] [--reps 50] [--warmup 5]
//          EXPR [EXPR...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tagcache/client/client.h"

namespace {

using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "count_latency: %s\nusage: count_latency --seeds A[,B...] [--reps N] "
               "[--warmup N] EXPR...\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> seeds;
  int reps = 50, warmup = 5;
  std::vector<std::string> exprs;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value of " + k).c_str());
      return argv[++i];
    };
    if (k == "--seeds") {
      std::string list = value();
      for (size_t start = 0; start <= list.size();) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        if (comma > start) seeds.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    } else if (k == "--reps") {
      reps = std::atoi(value().c_str());
    } else if (k == "--warmup") {
      warmup = std::atoi(value().c_str());
    } else {
      exprs.push_back(k);
    }
  }
  if (seeds.empty() || exprs.empty() || reps < 1) Usage("need --seeds and at least one EXPR");
  tagcache::ClientOptions options;
  options.seeds = seeds;
  options.request_timeout = std::chrono::seconds(60);
  auto client = tagcache::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "count_latency: %s\n", client.status().ToString().c_str());
    return 1;
  }
  std::vector<double> rtt;
  for (int i = 0; i < reps + warmup; ++i) {
    auto r = (*client)->Ping();
    if (r.ok() && i >= warmup) rtt.push_back(static_cast<double>(r->count()) / 1000.0);
  }
  std::printf("nodes %zu  ping p50 %.3f ms\n", (*client)->nodes().size(),
              rtt.empty() ? 0.0 : Percentile(rtt, 0.5));
  for (const std::string& expr : exprs) {
    std::vector<double> ms;
    uint64_t count = 0;
    for (int i = 0; i < reps + warmup; ++i) {
      const auto start = Clock::now();
      auto r = (*client)->Count(expr);
      const double t = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (!r.ok()) {
        std::fprintf(stderr, "count_latency: %s: %s\n", expr.c_str(), r.status().ToString().c_str());
        return 1;
      }
      count = *r;
      if (i >= warmup) ms.push_back(t);
    }
    std::printf("%-40s count %12llu  p50 %8.3f ms  p99 %8.3f ms\n", expr.c_str(),
                static_cast<unsigned long long>(count), Percentile(ms, 0.5), Percentile(ms, 0.99));
  }
  return 0;
}
