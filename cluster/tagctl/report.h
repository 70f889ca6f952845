// What a tagctl command found out, before it is printed: one struct per
// command, rendered by PrintHuman (human_output.cc) or PrintJson
// (json_output.cc, the only file that sees nlohmann-json). The JSON field
// names are documented in docs/CLI.md and are stable.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <variant>
#include <vector>

#include "tagcache/client/client.h"

namespace tagcache::tagctl {

struct GetReport {
  uint64_t user = 0;
  bool with_ts = false;
  std::vector<client::TagHit> tags;
};

struct HasReport {
  uint64_t user = 0;
  std::vector<std::string> tags;
  std::vector<bool> has;  // parallel to tags
};

struct WriteReport {  // set, clear
  uint64_t user = 0;
  std::string tag;
  client::TagOp op = client::TagOp::kSet;
  uint64_t ts = 0;
  client::ApplyEventsResult result;
};

struct CountReport {
  uint64_t count = 0;
};

struct AudienceReport {
  client::AudiencePage page;
};

struct AudienceFileReport {
  std::string file;
  std::string format;   // "ids" or "roaring"
  uint64_t count = 0;   // users written
  uint64_t shards = 0;  // roaring: shard bitmaps written; ids: 0
};

struct TopTagsReport {
  std::vector<client::TagCount> tags;
};

struct StatsReport {
  std::vector<client::NodeStats> nodes;
  // This host's clock when the answer came: the human output shows the
  // last checkpoint's age from it.
  uint64_t now_unix_ms = 0;
};

struct CheckpointReport {
  std::vector<client::NodeCheckpoint> nodes;
};

struct PingReport {
  std::vector<std::string> nodes;
  uint64_t rtt_micros = 0;
  int shard_bits = 0;
};

using Report =
    std::variant<GetReport, HasReport, WriteReport, CountReport, AudienceReport, AudienceFileReport,
                 TopTagsReport, StatsReport, CheckpointReport, PingReport>;

// Human-readable output (one fact a line; see docs/CLI.md).
void PrintHuman(const Report& report, std::ostream& out);
// Exactly one JSON document followed by a newline.
void PrintJson(const Report& report, std::ostream& out);

}  // namespace tagcache::tagctl
