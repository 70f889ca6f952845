// What one tagctl run was asked to do, as parsed from the command line by
// main.cc (the only file that sees CLI11). Plain data, no behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tagcache::tagctl {

enum class Command {
  kGet,
  kHas,
  kSet,
  kClear,
  kCount,
  kAudience,
  kTopTags,
  kStats,
  kCheckpoint,
  kPing,
};

enum class AudienceFormat { kIds, kRoaring };

struct Invocation {
  // Global options (accepted before or after the command).
  std::vector<std::string> seeds = {"127.0.0.1:7379"};
  bool json = false;
  std::chrono::milliseconds timeout{5000};

  Command command = Command::kPing;
  uint64_t user = 0;              // get, has, set, clear
  std::vector<std::string> tags;  // has
  std::string tag;                // set, clear
  std::optional<uint64_t> ts;     // set, clear; default: now in ms
  bool with_ts = false;           // get
  std::string expr;               // count, audience, top-tags
  std::optional<uint32_t> limit;  // audience: page size
  uint64_t cursor = 0;            // audience
  std::string out_file;           // audience: write the whole audience here
  AudienceFormat format = AudienceFormat::kIds;
  uint32_t k = 10;  // top-tags
};

}  // namespace tagcache::tagctl
