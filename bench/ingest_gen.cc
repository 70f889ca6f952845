// ingest_gen: deterministic test data for the ingestion benchmarks
// (bench/ingest_compare.sh). One pass over the users draws each user's tags
// from power-law tag popularity (tag t of T has density max_density * t^-s),
// and writes any of:
//   --csv FILE        user_id,tag pairs, user-major (a user's tags together,
//                     tags interleaved across lines: the parser's harder case)
//   --roaring DIR     one portable 32-bit Roaring file per tag (DIR/<tag>.roaring)
//   --redis FILE      the same pairs in Redis' mass-insert protocol: one
//                     SADD user:<id> <tags...> per user and one SETBIT
//                     tag:<name> <id> 1 per pair (per-user sets for get_tags,
//                     per-tag bitmaps for audiences)
//   --ndjson FILE --events N   N random events for `tagctl stream`, ts in
//                     [--ts-min, --ts-max]
//   --redis-events FILE  the same events as Redis commands: SADD/SREM on the
//                     user's set plus SETBIT 1/0 on the tag's bitmap (Redis
//                     applies them in arrival order: it has no merge rules)
// Prints the pair count and per-tag densities' range on stderr.
#include <roaring/roaring.hh>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "random_data.h"

namespace {

using tagcache::bench::SplitMix64;

struct Args {
  uint64_t users = 10'000'000;
  int tags = 200;
  double zipf_s = 0.6;
  double max_density = 0.5;
  uint64_t seed = 42;
  std::string csv, roaring_dir, redis, ndjson, redis_events;
  uint64_t events = 0;
  uint64_t ts_min = 1'700'000'000'000, ts_max = 1'700'000'100'000;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "ingest_gen: %s\nusage: ingest_gen [--users N] [--tags T] [--zipf-s S] "
               "[--max-density D] [--seed X] [--csv FILE] [--roaring DIR] [--redis FILE] "
               "[--ndjson FILE] [--redis-events FILE] [--events N [--ts-min A --ts-max B]]\n",
               why);
  std::exit(2);
}

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) Usage(("missing value for " + k).c_str());
    const char* v = argv[++i];
    if (k == "--users") {
      a.users = std::strtoull(v, nullptr, 10);
    } else if (k == "--tags") {
      a.tags = std::atoi(v);
    } else if (k == "--zipf-s") {
      a.zipf_s = std::atof(v);
    } else if (k == "--max-density") {
      a.max_density = std::atof(v);
    } else if (k == "--seed") {
      a.seed = std::strtoull(v, nullptr, 10);
    } else if (k == "--csv") {
      a.csv = v;
    } else if (k == "--roaring") {
      a.roaring_dir = v;
    } else if (k == "--redis") {
      a.redis = v;
    } else if (k == "--ndjson") {
      a.ndjson = v;
    } else if (k == "--redis-events") {
      a.redis_events = v;
    } else if (k == "--events") {
      a.events = std::strtoull(v, nullptr, 10);
    } else if (k == "--ts-min") {
      a.ts_min = std::strtoull(v, nullptr, 10);
    } else if (k == "--ts-max") {
      a.ts_max = std::strtoull(v, nullptr, 10);
    } else {
      Usage(("unknown option " + k).c_str());
    }
  }
  if (a.tags < 1 || a.users < 1 || a.users > (uint64_t{1} << 32)) Usage("bad --users/--tags");
  if (a.ts_max < a.ts_min || a.ts_min == 0) Usage("bad --ts-min/--ts-max");
  return a;
}

std::string TagName(int t) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "tag%03d", t);
  return buf;
}

// A buffered writer; bench data is written once, so errors just abort.
class Out {
 public:
  explicit Out(const std::string& path) : f_(path.empty() ? nullptr : std::fopen(path.c_str(), "wb")) {
    if (!path.empty() && f_ == nullptr) Usage(("cannot write " + path).c_str());
    if (f_) std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  }
  ~Out() {
    if (f_) std::fclose(f_);
  }
  explicit operator bool() const { return f_ != nullptr; }
  void Put(const char* s, size_t n) { std::fwrite(s, 1, n, f_); }
  void Put(const std::string& s) { Put(s.data(), s.size()); }
  void PutNum(uint64_t v) {
    char buf[24];
    const int n = std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
    Put(buf, static_cast<size_t>(n));
  }
  // A RESP bulk string.
  void Bulk(const char* s, size_t n) {
    char buf[32];
    const int h = std::snprintf(buf, sizeof(buf), "$%zu\r\n", n);
    Put(buf, static_cast<size_t>(h));
    Put(s, n);
    Put("\r\n", 2);
  }
  void Bulk(const std::string& s) { Bulk(s.data(), s.size()); }

 private:
  FILE* f_;
};

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  std::vector<std::string> names;
  std::vector<uint64_t> threshold;  // P(tag) as a 64-bit threshold
  for (int t = 0; t < a.tags; ++t) {
    names.push_back(TagName(t));
    const double p = std::min(1.0, a.max_density * std::pow(t + 1, -a.zipf_s));
    threshold.push_back(static_cast<uint64_t>(p * 18446744073709551615.0));
  }

  Out csv(a.csv), redis(a.redis);
  const bool want_roaring = !a.roaring_dir.empty();
  std::vector<Roaring> bitmaps(want_roaring ? a.tags : 0);
  SplitMix64 rng(a.seed);
  uint64_t pairs = 0;
  std::vector<int> mine;
  std::string user_key;
  for (uint64_t u = 0; u < a.users; ++u) {
    mine.clear();
    for (int t = 0; t < a.tags; ++t) {
      if (rng.Next() < threshold[t]) mine.push_back(t);
    }
    if (mine.empty()) continue;
    pairs += mine.size();
    if (csv) {
      for (int t : mine) {
        csv.PutNum(u);
        csv.Put(",", 1);
        csv.Put(names[t]);
        csv.Put("\n", 1);
      }
    }
    if (redis) {
      user_key = "user:" + std::to_string(u);
      char head[32];
      int n = std::snprintf(head, sizeof(head), "*%zu\r\n", mine.size() + 2);
      redis.Put(head, static_cast<size_t>(n));
      redis.Bulk("SADD", 4);
      redis.Bulk(user_key);
      for (int t : mine) redis.Bulk(names[t]);
      const std::string id = std::to_string(u);
      for (int t : mine) {
        redis.Put("*4\r\n", 4);
        redis.Bulk("SETBIT", 6);
        redis.Bulk("tag:" + names[t]);
        redis.Bulk(id);
        redis.Bulk("1", 1);
      }
    }
    if (want_roaring) {
      for (int t : mine) bitmaps[t].add(static_cast<uint32_t>(u));
    }
  }
  if (want_roaring) {
    std::filesystem::create_directories(a.roaring_dir);
    uint64_t bytes = 0;
    for (int t = 0; t < a.tags; ++t) {
      bitmaps[t].runOptimize();
      std::string buf(bitmaps[t].getSizeInBytes(true), '\0');
      bitmaps[t].write(buf.data(), true);
      Out f(a.roaring_dir + "/" + names[t] + ".roaring");
      f.Put(buf);
      bytes += buf.size();
    }
    std::fprintf(stderr, "roaring: %d files, %llu bytes\n", a.tags,
                 static_cast<unsigned long long>(bytes));
  }
  if (!a.ndjson.empty() || !a.redis_events.empty()) {
    Out nd(a.ndjson), re(a.redis_events);
    SplitMix64 erng(a.seed + 1);
    const uint64_t span = a.ts_max - a.ts_min + 1;
    for (uint64_t i = 0; i < a.events; ++i) {
      const uint64_t u = erng.Below(a.users);
      const int t = static_cast<int>(erng.Below(static_cast<uint64_t>(a.tags)));
      const bool set = erng.Below(4) != 0;
      const uint64_t ts = a.ts_min + erng.Below(span);
      if (nd) {
        nd.Put("{\"user\":");
        nd.PutNum(u);
        nd.Put(",\"tag\":\"");
        nd.Put(names[t]);
        nd.Put(set ? "\",\"op\":\"set\",\"ts\":" : "\",\"op\":\"clear\",\"ts\":");
        nd.PutNum(ts);
        nd.Put("}\n");
      }
      if (re) {
        const std::string id = std::to_string(u);
        re.Put("*3\r\n", 4);
        re.Bulk(set ? "SADD" : "SREM", 4);
        re.Bulk("user:" + id);
        re.Bulk(names[t]);
        re.Put("*4\r\n", 4);
        re.Bulk("SETBIT", 6);
        re.Bulk("tag:" + names[t]);
        re.Bulk(id);
        re.Bulk(set ? "1" : "0", 1);
      }
    }
  }
  std::fprintf(stderr, "pairs: %llu over %llu users and %d tags (densities %.4f .. %.6f)\n",
               static_cast<unsigned long long>(pairs), static_cast<unsigned long long>(a.users),
               a.tags, a.max_density, a.max_density * std::pow(a.tags, -a.zipf_s));
  std::printf("%llu\n", static_cast<unsigned long long>(pairs));
  return 0;
}
