// tagctl load: a bulk snapshot load as of --ts (docs/CLI.md, "load").
//
// Two phases, so that a bad input never half-applies: first every input is
// read (files in parallel) into per-tag, per-shard bitmaps — a tag's members
// are the union over all inputs, as a Spark job's part files need — and bad
// lines are counted; only when they are within --max-errors does the second
// phase send each tag's parts and commit it.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "tagcache/client/client.h"
#include "tagcache/common/tag_name.h"
#include "tagcache/ingest/snapshot_input.h"
#include "tagcache/ingest/snapshot_loader.h"
#include "tagcache/ingest/snapshot_set.h"

namespace tagcache::tagctl {
namespace {

using Clock = std::chrono::steady_clock;
using ingest::FileReadResult;
using ingest::InputError;
using ingest::InputFile;
using ingest::SnapshotSet;
using ingest::TagLoadResult;
using ingest::TagLoadState;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
// Bad lines printed one by one; the rest are counted.
constexpr size_t kMaxErrorsPrinted = 100;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string HumanBytes(double bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), unit == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[unit]);
  return buf;
}

std::string HumanCount(double n) {
  char buf[32];
  if (n >= 1e9) {
    std::snprintf(buf, sizeof(buf), "%.2fG", n / 1e9);
  } else if (n >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
  } else if (n >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", n / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f", n);
  }
  return buf;
}

std::string Eta(double done, double total, double elapsed_s) {
  if (done <= 0 || total <= done || elapsed_s <= 0) return "--";
  const double left = elapsed_s * (total - done) / done;
  char buf[32];
  if (left >= 3600) {
    std::snprintf(buf, sizeof(buf), "%dh%02dm", static_cast<int>(left / 3600),
                  static_cast<int>(std::fmod(left, 3600) / 60));
  } else if (left >= 60) {
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(left / 60),
                  static_cast<int>(std::fmod(left, 60)));
  } else {
    std::snprintf(buf, sizeof(buf), "%.0fs", std::ceil(left));
  }
  return buf;
}

// One line on a terminal's stderr, redrawn in place.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled) {}
  void Show(const std::string& phase, double done, double total, const std::string& detail) {
    if (!enabled_) return;
    constexpr int kWidth = 24;
    const double fraction = total > 0 ? std::min(1.0, done / total) : 1.0;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(kWidth - filled), '.');
    char pct[16];
    std::snprintf(pct, sizeof(pct), "%3.0f%%", fraction * 100);
    std::cerr << "\r\033[K" << phase << " [" << bar << "] " << pct << ' ' << detail << std::flush;
    shown_ = true;
  }
  void Clear() {
    if (enabled_ && shown_) std::cerr << "\r\033[K" << std::flush;
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
};

struct ReadPhase {
  std::vector<FileReadResult> results;  // per file, in input order
  uint64_t error_count = 0;
  uint64_t lines = 0;
  uint64_t pairs = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Reads every file into `set`, `threads` files at a time.
ReadPhase ReadInputs(const std::vector<InputFile>& files, const ingest::InputOptions& options,
                     int threads, SnapshotSet* set, ProgressLine* progress) {
  ReadPhase phase;
  phase.results.resize(files.size());
  uint64_t total_bytes = 0;
  for (const InputFile& f : files) total_bytes += f.bytes;

  const auto start = Clock::now();
  std::atomic<uint64_t> bytes_done{0};
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> pairs_done{0};
  const size_t workers = std::max<size_t>(1, std::min<size_t>(threads, files.size()));
  std::vector<SnapshotSet> sets;
  for (size_t i = 0; i < workers; ++i) sets.emplace_back(set->shard_bits());
  std::vector<std::thread> pool;
  std::atomic<size_t> running{workers};
  for (size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      ingest::ReadLimits limits;
      limits.pairs_progress = &pairs_done;
      for (size_t i = next++; i < files.size(); i = next++) {
        phase.results[i] =
            ingest::ReadSnapshotFile(files[i].path, options, &sets[w], &bytes_done, limits);
      }
      --running;
    });
  }
  // Polled every 10 ms so a short read ends promptly; redrawn every 200 ms.
  auto next_draw = Clock::now() + std::chrono::milliseconds(200);
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (Clock::now() < next_draw) continue;
    next_draw = Clock::now() + std::chrono::milliseconds(200);
    const double elapsed = Seconds(Clock::now() - start);
    const double done = static_cast<double>(bytes_done.load());
    progress->Show("read", done, static_cast<double>(total_bytes),
                   HumanBytes(done) + "/" + HumanBytes(static_cast<double>(total_bytes)) + "  " +
                       HumanBytes(done / std::max(elapsed, 1e-3)) + "/s  " +
                       HumanCount(static_cast<double>(pairs_done.load()) / std::max(elapsed, 1e-3)) +
                       " pairs/s  ETA " +
                       Eta(done, static_cast<double>(total_bytes), elapsed));
  }
  for (auto& t : pool) t.join();
  for (auto& s : sets) set->MergeFrom(std::move(s));
  set->Flush();
  progress->Clear();

  for (const FileReadResult& r : phase.results) {
    phase.error_count += r.error_count;
    phase.lines += r.lines;
    phase.pairs += r.pairs;
  }
  phase.bytes = total_bytes;
  phase.seconds = Seconds(Clock::now() - start);
  return phase;
}

struct Counts {
  uint64_t applied = 0, unchanged = 0, stale = 0, failed = 0, ties = 0;
};

Counts CountStates(const std::vector<TagLoadResult>& results) {
  Counts c;
  for (const TagLoadResult& r : results) {
    switch (r.state) {
      case TagLoadState::kApplied:
        ++c.applied;
        break;
      case TagLoadState::kUnchanged:
        ++c.unchanged;
        break;
      case TagLoadState::kStale:
        ++c.stale;
        break;
      case TagLoadState::kFailed:
        ++c.failed;
        break;
    }
    c.ties += r.ties;
  }
  return c;
}

struct Summary {
  uint64_t ts = 0;
  size_t files = 0;
  ReadPhase read;
  bool aborted = false;
  bool dry_run = false;
  uint64_t tags = 0, assignments = 0, users = 0, shards = 0;
  double send_seconds = 0;
  double seconds = 0;
  std::vector<TagLoadResult> tag_results;
};

void PrintJsonSummary(const Summary& s, uint64_t max_errors) {
  nlohmann::json j;
  j["ts"] = s.ts;
  j["files"] = s.files;
  j["bytes_read"] = s.read.bytes;
  j["lines"] = s.read.lines;
  j["pairs"] = s.read.pairs;
  j["errors"] = s.read.error_count;
  j["max_errors"] = max_errors;
  j["aborted"] = s.aborted;
  j["dry_run"] = s.dry_run;
  j["tags"] = s.tags;
  j["users"] = s.users;
  j["assignments"] = s.assignments;
  j["shards"] = s.shards;
  const Counts c = CountStates(s.tag_results);
  j["applied"] = c.applied;
  j["unchanged"] = c.unchanged;
  j["stale"] = c.stale;
  j["failed"] = c.failed;
  j["ties"] = c.ties;
  j["read_seconds"] = s.read.seconds;
  j["send_seconds"] = s.send_seconds;
  j["seconds"] = s.seconds;
  auto& errors = j["error_list"] = nlohmann::json::array();
  for (const FileReadResult& r : s.read.results) {
    for (const InputError& e : r.errors) {
      errors.push_back({{"file", e.file}, {"line", e.line}, {"message", e.message}});
    }
  }
  auto& tags = j["tag_results"] = nlohmann::json::array();
  for (const TagLoadResult& r : s.tag_results) {
    tags.push_back({{"tag", r.tag},
                    {"state", ingest::TagLoadStateName(r.state)},
                    {"users", r.users},
                    {"shards_sent", r.shards_sent},
                    {"shards_emptied", r.shards_emptied},
                    {"ties", r.ties},
                    {"message", r.message}});
  }
  std::cout << j.dump() << '\n';
}

void PrintHumanSummary(const Summary& s) {
  if (s.aborted) return;  // the error lines on stderr say it all
  const Counts c = CountStates(s.tag_results);
  std::cout << (s.dry_run ? "dry run: would load " : "loaded ") << s.tags
            << " tag(s) as of ts " << s.ts;
  if (!s.dry_run) {
    std::cout << ": " << c.applied << " applied, " << c.unchanged << " unchanged, " << c.stale
              << " stale, " << c.failed << " failed";
  }
  std::cout << '\n'
            << "users " << s.users << ", assignments " << s.assignments << ", shards " << s.shards
            << '\n'
            << "read " << s.files << " file(s), " << HumanBytes(static_cast<double>(s.read.bytes))
            << ", " << s.read.pairs << " pair(s), " << s.read.error_count << " bad line(s)/file(s) in "
            << s.read.seconds << " s";
  if (s.read.seconds > 0) {
    std::cout << " (" << HumanCount(static_cast<double>(s.read.pairs) / s.read.seconds)
              << " pairs/s)";
  }
  std::cout << '\n';
  if (!s.dry_run) {
    std::cout << "sent in " << s.send_seconds << " s; total " << s.seconds << " s\n";
  }
}

}  // namespace

int RunLoad(const Invocation& inv) {
  const auto start = Clock::now();
  const bool json = inv.json;
  ProgressLine progress(!json && ::isatty(STDERR_FILENO) == 1);
  auto fail = [](const std::string& what) {
    std::cerr << "tagctl: load: " << what << '\n';
    return kExitFailed;
  };

  if (!inv.ts || *inv.ts == 0) {
    std::cerr << "tagctl: usage: load needs --ts (ms since the epoch, >= 1, or 'now')\n";
    return kExitUsage;
  }
  auto format = ingest::ParseInputFormat(inv.input_format);
  if (!format.ok()) {
    std::cerr << "tagctl: usage: --format: " << format.status().message() << '\n';
    return kExitUsage;
  }
  if (!inv.load_tag.empty() && !IsValidTagName(inv.load_tag)) {
    std::cerr << "tagctl: usage: --tag '" << inv.load_tag
              << "' is not a tag name (1-128 bytes of [A-Za-z0-9_.:-])\n";
    return kExitUsage;
  }
  auto files = ingest::ExpandInputs(inv.inputs);
  if (!files.ok()) return fail(files.status().ToString());

  client::ClientOptions options;
  options.seeds = inv.seeds;
  options.request_timeout = inv.timeout;
  options.connect_timeout = std::min(inv.timeout, options.connect_timeout);
  options.connections_per_node = 2;
  options.client_name = "tagctl-load";
  options.token = inv.token;
  options.tls = inv.tls;
  auto connected = client::Client::Connect(std::move(options));
  if (!connected.ok()) return fail(connected.status().ToString());
  client::Client& client = **connected;

  Summary summary;
  summary.ts = *inv.ts;
  summary.files = files->size();
  summary.dry_run = inv.dry_run;

  // Phase 1: read and validate everything.
  SnapshotSet set(client.shard_bits());
  ingest::InputOptions input_options;
  input_options.format = *format;
  input_options.tag = inv.load_tag;
  summary.read = ReadInputs(*files, input_options, inv.parse_threads, &set, &progress);

  size_t printed = 0;
  for (const FileReadResult& r : summary.read.results) {
    for (const InputError& e : r.errors) {
      if (printed++ < kMaxErrorsPrinted) std::cerr << "tagctl: load: " << e.ToString() << '\n';
    }
  }
  if (summary.read.error_count > printed && printed >= kMaxErrorsPrinted) {
    std::cerr << "tagctl: load: ... and " << summary.read.error_count - kMaxErrorsPrinted
              << " more error(s)\n";
  }
  if (summary.read.error_count > inv.max_errors) {
    summary.aborted = true;
    summary.seconds = Seconds(Clock::now() - start);
    std::cerr << "tagctl: load: " << summary.read.error_count
              << " bad line(s)/file(s), more than --max-errors " << inv.max_errors
              << ": nothing was applied\n";
    if (json) PrintJsonSummary(summary, inv.max_errors);
    return kExitFailed;
  }

  summary.tags = set.tag_count();
  summary.assignments = set.Assignments();
  summary.users = set.DistinctUsers();
  summary.shards = set.DistinctShards();

  // Phase 2: send and commit, tag by tag.
  if (!inv.dry_run) {
    const auto send_start = Clock::now();
    ingest::SnapshotLoadOptions load_options;
    load_options.ts = *inv.ts;
    load_options.max_in_flight_bytes = inv.max_in_flight_mb << 20;
    load_options.request_timeout = std::max(inv.timeout, std::chrono::milliseconds(60000));
    auto results = ingest::LoadSnapshotSet(
        &client, &set, load_options, [&](const ingest::SnapshotLoadProgress& p) {
          const double elapsed = Seconds(Clock::now() - send_start);
          const double done = static_cast<double>(std::min(p.bytes_sent, p.bytes_total));
          progress.Show("send", done, static_cast<double>(p.bytes_total),
                        std::to_string(p.tags_done) + "/" + std::to_string(p.tags_total) +
                            " tags  " + HumanBytes(done) + "/" +
                            HumanBytes(static_cast<double>(p.bytes_total)) + "  ETA " +
                            Eta(done, static_cast<double>(p.bytes_total), elapsed));
        });
    progress.Clear();
    if (!results.ok()) return fail(results.status().ToString());
    summary.tag_results = std::move(results).value();
    summary.send_seconds = Seconds(Clock::now() - send_start);
  }
  summary.seconds = Seconds(Clock::now() - start);

  for (const TagLoadResult& r : summary.tag_results) {
    if (r.state == TagLoadState::kStale || r.state == TagLoadState::kFailed) {
      std::cerr << "tagctl: load: tag " << r.tag << ": " << ingest::TagLoadStateName(r.state)
                << ": " << r.message << '\n';
    } else if (r.ties > 0) {
      std::cerr << "tagctl: load: warning: tag " << r.tag << ": " << r.message << '\n';
    }
  }
  if (json) {
    PrintJsonSummary(summary, inv.max_errors);
  } else {
    PrintHumanSummary(summary);
  }
  const Counts c = CountStates(summary.tag_results);
  return c.stale + c.failed == 0 ? 0 : kExitFailed;
}

}  // namespace tagcache::tagctl
