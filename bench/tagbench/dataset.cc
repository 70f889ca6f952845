#include "tagbench/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <queue>
#include <roaring/roaring.hh>
#include <sstream>

#include "random_data.h"

namespace tagcache::tagbench {
namespace {

using bench::MixSeed;
using bench::SplitMix64;

// Users per bitmap chunk of redis.resp: 128 KiB of bitmap per tag at a time,
// so the generator's memory stays bounded for 10^8 users and thousands of tags.
constexpr uint64_t kChunkUsers = uint64_t{1} << 20;
constexpr uint64_t kDayMs = 86'400'000;
constexpr uint64_t kHourMs = 3'600'000;

// Buffered file output; remembers the first error instead of aborting.
class Out {
 public:
  Out() = default;
  Status Open(const std::string& path) {
    path_ = path;
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) return Status::IoError("cannot write " + path);
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
    return Status::Ok();
  }
  ~Out() {
    if (f_) std::fclose(f_);
  }
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;
  explicit operator bool() const { return f_ != nullptr; }
  void Put(const char* s, size_t n) { std::fwrite(s, 1, n, f_); }
  void Put(std::string_view s) { Put(s.data(), s.size()); }
  void Num(uint64_t v) {
    char buf[24];
    const int n = std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(v));
    Put(buf, static_cast<size_t>(n));
  }
  void Bulk(std::string_view s) {
    char buf[32];
    const int n = std::snprintf(buf, sizeof(buf), "$%zu\r\n", s.size());
    Put(buf, static_cast<size_t>(n));
    Put(s);
    Put("\r\n", 2);
  }
  void ArrayHeader(size_t n) {
    char buf[32];
    const int h = std::snprintf(buf, sizeof(buf), "*%zu\r\n", n);
    Put(buf, static_cast<size_t>(h));
  }
  Status Close() {
    if (!f_) return Status::Ok();
    const bool bad = std::ferror(f_) != 0;
    const bool close_failed = std::fclose(f_) != 0;
    f_ = nullptr;
    if (bad || close_failed) return Status::IoError("write failed: " + path_);
    return Status::Ok();
  }

 private:
  std::string path_;
  FILE* f_ = nullptr;
};

struct GenEvent {
  uint64_t user;
  uint32_t tag;
  bool set;
  uint64_t ts;
};

}  // namespace

std::string TagName(int rank) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "tag%04d", rank);
  return buf;
}

double Exponent(const DatasetSpec& spec) {
  if (spec.zipf_s > 0) return spec.zipf_s;
  if (spec.tags <= 1) return 0;
  return std::log(spec.max_density / spec.min_density) / std::log(static_cast<double>(spec.tags));
}

Status ValidateSpec(const DatasetSpec& s) {
  if (s.users < 1 || s.users > (uint64_t{1} << 32))
    return Status::BadRequest("users must be in [1, 2^32]");
  if (s.tags < 1 || s.tags > 100'000) return Status::BadRequest("tags must be in [1, 100000]");
  if (!(s.max_density > 0 && s.max_density <= 1))
    return Status::BadRequest("max density must be in (0, 1]");
  if (!(s.min_density > 0 && s.min_density <= s.max_density)) {
    return Status::BadRequest("min density must be in (0, max density]");
  }
  if (!(s.zipf_s >= 0 && s.zipf_s <= 20))
    return Status::BadRequest("zipf exponent must be in [0, 20]");
  if (!(s.older_share >= 0 && s.older_share <= 1))
    return Status::BadRequest("older share must be in [0, 1]");
  if (s.snapshot_ts <= kDayMs)
    return Status::BadRequest("snapshot ts must be greater than one day in ms");
  return Status::Ok();
}

Result<Manifest> GenerateDataset(const DatasetSpec& spec, const std::string& dir) {
  if (Status v = ValidateSpec(spec); !v.ok()) return v;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError("cannot create " + dir + ": " + ec.message());

  Manifest m;
  m.spec = spec;
  m.exponent = Exponent(spec);
  const int T = spec.tags;
  const uint64_t N = spec.users;
  std::vector<double> density(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) {
    density[static_cast<size_t>(t)] =
        std::min(1.0, spec.max_density * std::pow(t + 1, -m.exponent));
    m.tags.push_back({TagName(t), density[static_cast<size_t>(t)], 0, 0, false});
  }

  // Events first (they are applied to each user during the user pass).
  // Older events only name tags sure to be in the snapshot (>= 50 expected
  // members): for a tag absent from the snapshot an old event would still
  // apply (no base), which the Redis image below would have to guess.
  std::vector<GenEvent> events;
  events.reserve(spec.events);
  {
    SplitMix64 rng(MixSeed(spec.seed, 1));
    const bench::RankSampler by_popularity(density);
    int old_tags = 0;
    while (old_tags < T && density[static_cast<size_t>(old_tags)] * static_cast<double>(N) >= 50)
      ++old_tags;
    for (uint64_t i = 0; i < spec.events; ++i) {
      GenEvent e;
      e.user = rng.Below(N);
      const bool older = old_tags > 0 && rng.NextUnit() <= spec.older_share;
      e.tag = static_cast<uint32_t>(older ? rng.Below(static_cast<uint64_t>(old_tags))
                                          : by_popularity.Draw(rng));
      e.set = rng.Below(4) != 0;
      e.ts = older ? spec.snapshot_ts - 1 - rng.Below(kDayMs)
                   : spec.snapshot_ts + 1 + rng.Below(kHourMs);
      events.push_back(e);
      ++(older ? m.events_older : m.events_newer);
    }
  }
  {
    Out nd;
    if (Status s = nd.Open(dir + "/events.ndjson"); !s.ok()) return s;
    for (const GenEvent& e : events) {
      nd.Put("{\"user\":");
      nd.Num(e.user);
      nd.Put(",\"tag\":\"");
      nd.Put(m.tags[e.tag].name);
      nd.Put(e.set ? "\",\"op\":\"set\",\"ts\":" : "\",\"op\":\"clear\",\"ts\":");
      nd.Num(e.ts);
      nd.Put("}\n");
      m.tags[e.tag].exists = true;
    }
    if (Status s = nd.Close(); !s.ok()) return s;
  }
  std::vector<uint32_t> order(events.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return events[a].user < events[b].user; });

  Out csv, resp;
  if (Status s = csv.Open(dir + "/snapshot.csv"); !s.ok()) return s;
  csv.Put("user_id,tag\n");
  if (spec.redis) {
    if (Status s = resp.Open(dir + "/redis.resp"); !s.ok()) return s;
  }
  std::vector<Roaring> bitmaps(spec.roaring ? static_cast<size_t>(T) : 0);
  // Redis bitmaps of the current chunk: one byte per 8 users, MSB first.
  const uint64_t chunk_bytes = kChunkUsers / 8;
  std::vector<std::vector<uint8_t>> chunk(spec.redis ? static_cast<size_t>(T) + 1 : 0);
  std::vector<bool> chunk_dirty(chunk.size(), false);
  auto flush_chunk = [&](uint64_t chunk_start, uint64_t chunk_end, bool last) {
    const uint64_t bytes = (chunk_end - chunk_start + 7) / 8;
    for (size_t k = 0; k < chunk.size(); ++k) {
      const bool is_known = k == static_cast<size_t>(T);
      // The last chunk goes out for every existing key so every bitmap spans
      // all users: BITOP NOT of a shorter string would miss the tail.
      if (!chunk_dirty[k] && !(last && (is_known || m.tags[k].exists))) continue;
      resp.ArrayHeader(4);
      resp.Bulk("SETRANGE");
      resp.Bulk(is_known ? std::string("known") : "tag:" + m.tags[k].name);
      resp.Bulk(std::to_string(chunk_start / 8));
      resp.Bulk(std::string_view(reinterpret_cast<const char*>(chunk[k].data()), bytes));
      std::fill(chunk[k].begin(), chunk[k].end(), 0);
      chunk_dirty[k] = false;
    }
  };
  for (auto& c : chunk) c.assign(chunk_bytes, 0);

  // Per-tag thresholds on a 64-bit draw; clustered tags get a per-user ramp
  // 2 * (u + 0.5) / N (same mean density, newer users denser).
  std::vector<double> p64(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t)
    p64[static_cast<size_t>(t)] = density[static_cast<size_t>(t)] * 18446744073709551615.0;
  std::vector<uint64_t> threshold(static_cast<size_t>(T));
  auto set_thresholds = [&](double ramp) {
    for (int t = 0; t < T; ++t) {
      const bool recent = spec.cluster && (t % 2 == 1);
      const double p = recent ? std::min(18446744073709551615.0, p64[static_cast<size_t>(t)] * ramp)
                              : p64[static_cast<size_t>(t)];
      threshold[static_cast<size_t>(t)] =
          p >= 18446744073709551615.0 ? UINT64_MAX : static_cast<uint64_t>(p);
    }
  };
  set_thresholds(1.0);

  // Dense tags (the popular prefix) get one draw per user; the long sparse
  // tail is drawn by geometric skips from a heap of each tag's next member,
  // so 10^8 users x thousands of tags costs about the dense draws plus one
  // step per member. Clustered sparse tags skip at their highest density
  // (2p) and keep a member with probability (u + 1/2) / N (thinning).
  const double cluster_factor = spec.cluster ? 2.0 : 1.0;
  int dense = 0;
  while (dense < T && density[static_cast<size_t>(dense)] * cluster_factor >= 1.0 / 64) ++dense;
  SplitMix64 sparse_rng(MixSeed(spec.seed, 3));
  using Next = std::pair<uint64_t, uint32_t>;  // (next member, tag)
  std::priority_queue<Next, std::vector<Next>, std::greater<Next>> sparse;
  std::vector<double> log_q(static_cast<size_t>(T), 0);
  auto skip = [&](uint32_t t, uint64_t from) {
    const double gap = std::floor(std::log(sparse_rng.NextUnit()) / log_q[t]);
    if (gap < static_cast<double>(N - from)) sparse.emplace(from + static_cast<uint64_t>(gap), t);
  };
  for (int t = dense; t < T; ++t) {
    const bool recent = spec.cluster && (t % 2 == 1);
    const double pmax =
        std::min(1.0 - 1e-12, density[static_cast<size_t>(t)] * (recent ? 2.0 : 1.0));
    log_q[static_cast<size_t>(t)] = std::log1p(-pmax);
    skip(static_cast<uint32_t>(t), 0);
  }

  SplitMix64 rng(MixSeed(spec.seed, 2));
  std::vector<uint32_t> snap, fin;
  std::map<uint32_t, std::pair<uint64_t, bool>>
      winners;  // tag -> (ts, set) of the newest newer event
  size_t ev = 0;
  std::string user_key, id;
  for (uint64_t u = 0; u < N; ++u) {
    if (spec.cluster && u % 1024 == 0)
      set_thresholds(2.0 * (static_cast<double>(u) + 512.0) / static_cast<double>(N));
    snap.clear();
    for (int t = 0; t < dense; ++t) {
      if (rng.Next() < threshold[static_cast<size_t>(t)]) snap.push_back(static_cast<uint32_t>(t));
    }
    const size_t dense_end = snap.size();
    while (!sparse.empty() && sparse.top().first == u) {
      const uint32_t t = sparse.top().second;
      sparse.pop();
      const bool recent = spec.cluster && (t % 2 == 1);
      if (!recent ||
          sparse_rng.NextUnit() <= (static_cast<double>(u) + 0.5) / static_cast<double>(N)) {
        snap.push_back(t);
      }
      skip(t, u + 1);
    }
    std::sort(snap.begin() + static_cast<std::ptrdiff_t>(dense_end), snap.end());
    id = std::to_string(u);
    for (uint32_t t : snap) {
      csv.Put(id);
      csv.Put(",", 1);
      csv.Put(m.tags[t].name);
      csv.Put("\n", 1);
      ++m.tags[t].snapshot_members;
      m.tags[t].exists = true;
      if (spec.roaring) bitmaps[t].add(static_cast<uint32_t>(u));
    }
    m.snapshot_assignments += snap.size();

    // The merge rules for this user's events: older than the snapshot are
    // ignored (rule 1; their tags are all in the snapshot), among newer ones
    // the greatest ts wins and a clear wins a tie (rule 2).
    winners.clear();
    bool any_set = false;
    for (; ev < order.size() && events[order[ev]].user == u; ++ev) {
      const GenEvent& e = events[order[ev]];
      any_set |= e.set;
      if (e.ts <= spec.snapshot_ts) continue;
      auto [it, inserted] = winners.try_emplace(e.tag, e.ts, e.set);
      if (!inserted && (e.ts > it->second.first || (e.ts == it->second.first && !e.set)))
        it->second = {e.ts, e.set};
    }
    fin = snap;
    for (const auto& [t, w] : winners) {
      auto pos = std::lower_bound(fin.begin(), fin.end(), t);
      const bool has = pos != fin.end() && *pos == t;
      if (w.second && !has) fin.insert(pos, t);
      if (!w.second && has) fin.erase(pos);
    }
    for (uint32_t t : fin) ++m.tags[t].final_members;
    m.final_assignments += fin.size();
    const bool known = !snap.empty() || any_set;
    m.known_users += known ? 1 : 0;

    if (spec.redis) {
      if (!fin.empty() && !spec.redis_audience_only) {
        user_key = "user:" + id;
        resp.ArrayHeader(fin.size() + 2);
        resp.Bulk("SADD");
        resp.Bulk(user_key);
        for (uint32_t t : fin) resp.Bulk(m.tags[t].name);
      }
      const uint64_t bit = u % kChunkUsers;
      const uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
      for (uint32_t t : fin) {
        chunk[t][bit / 8] |= mask;
        chunk_dirty[t] = true;
      }
      if (known) {
        chunk[static_cast<size_t>(T)][bit / 8] |= mask;
        chunk_dirty[static_cast<size_t>(T)] = true;
      }
      if (u + 1 == N || (u + 1) % kChunkUsers == 0) flush_chunk(u - bit, u + 1, u + 1 == N);
    }
  }
  if (Status s = csv.Close(); !s.ok()) return s;
  if (Status s = resp.Close(); !s.ok()) return s;
  for (const GenEvent& e : events) {
    if (e.ts <= spec.snapshot_ts && m.tags[e.tag].snapshot_members == 0) {
      return Status::Internal("older event names " + m.tags[e.tag].name +
                              ", absent from the snapshot");
    }
  }
  if (spec.roaring) {
    std::filesystem::create_directories(dir + "/roaring", ec);
    if (ec) return Status::IoError("cannot create " + dir + "/roaring: " + ec.message());
    for (int t = 0; t < T; ++t) {
      if (m.tags[static_cast<size_t>(t)].snapshot_members == 0)
        continue;  // an empty file would drop the tag
      Roaring& b = bitmaps[static_cast<size_t>(t)];
      b.runOptimize();
      std::string buf(b.getSizeInBytes(true), '\0');
      b.write(buf.data(), true);
      Out f;
      if (Status s = f.Open(dir + "/roaring/" + m.tags[static_cast<size_t>(t)].name + ".roaring");
          !s.ok())
        return s;
      f.Put(buf);
      if (Status s = f.Close(); !s.ok()) return s;
    }
  }
  if (Status s = WriteManifest(m, dir + "/dataset.json"); !s.ok()) return s;
  return m;
}

Status WriteManifest(const Manifest& m, const std::string& path) {
  nlohmann::json j;
  const DatasetSpec& s = m.spec;
  j["spec"] = {{"users", s.users},
               {"tags", s.tags},
               {"max_density", s.max_density},
               {"min_density", s.min_density},
               {"zipf_s", s.zipf_s},
               {"cluster", s.cluster},
               {"events", s.events},
               {"older_share", s.older_share},
               {"snapshot_ts", s.snapshot_ts},
               {"seed", s.seed}};
  j["exponent"] = m.exponent;
  j["snapshot_assignments"] = m.snapshot_assignments;
  j["final_assignments"] = m.final_assignments;
  j["known_users"] = m.known_users;
  j["events_older"] = m.events_older;
  j["events_newer"] = m.events_newer;
  nlohmann::json tags = nlohmann::json::array();
  for (const TagInfo& t : m.tags) {
    tags.push_back({{"name", t.name},
                    {"density", t.density},
                    {"snapshot_members", t.snapshot_members},
                    {"final_members", t.final_members},
                    {"exists", t.exists}});
  }
  j["tags"] = std::move(tags);
  std::ofstream out(path);
  out << j.dump(1) << "\n";
  out.close();
  if (!out) return Status::IoError("cannot write " + path);
  return Status::Ok();
}

Result<Manifest> ReadManifest(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IoError("cannot read dataset manifest " + path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::BadRequest(path + ": not valid JSON");
  Manifest m;
  try {
    const auto& s = j.at("spec");
    m.spec.users = s.at("users").get<uint64_t>();
    m.spec.tags = s.at("tags").get<int>();
    m.spec.max_density = s.at("max_density").get<double>();
    m.spec.min_density = s.at("min_density").get<double>();
    m.spec.zipf_s = s.at("zipf_s").get<double>();
    m.spec.cluster = s.at("cluster").get<bool>();
    m.spec.events = s.at("events").get<uint64_t>();
    m.spec.older_share = s.at("older_share").get<double>();
    m.spec.snapshot_ts = s.at("snapshot_ts").get<uint64_t>();
    m.spec.seed = s.at("seed").get<uint64_t>();
    m.exponent = j.at("exponent").get<double>();
    m.snapshot_assignments = j.at("snapshot_assignments").get<uint64_t>();
    m.final_assignments = j.at("final_assignments").get<uint64_t>();
    m.known_users = j.at("known_users").get<uint64_t>();
    m.events_older = j.at("events_older").get<uint64_t>();
    m.events_newer = j.at("events_newer").get<uint64_t>();
    for (const auto& t : j.at("tags")) {
      m.tags.push_back({t.at("name").get<std::string>(), t.at("density").get<double>(),
                        t.at("snapshot_members").get<uint64_t>(),
                        t.at("final_members").get<uint64_t>(), t.at("exists").get<bool>()});
    }
  } catch (const nlohmann::json::exception& e) {
    // The JSON library reports a missing or mistyped field by exception: the
    // boundary turns it into an error value naming it.
    return Status::BadRequest(path + ": " + e.what());
  }
  if (static_cast<int>(m.tags.size()) != m.spec.tags) {
    return Status::BadRequest(path + ": " + std::to_string(m.tags.size()) +
                              " tags listed, spec says " + std::to_string(m.spec.tags));
  }
  return m;
}

}  // namespace tagcache::tagbench
