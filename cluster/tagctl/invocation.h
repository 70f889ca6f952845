// What one tagctl run was asked to do, as parsed from the command line by
// main.cc (the only file that sees CLI11). Plain data, no behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tagcache/client/client.h"

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
  kLoad,           // bulk snapshot load (load_command.cc)
  kStream,         // NDJSON events from stdin (stream_command.cc)
  kCluster,        // cluster map life cycle (cluster_command.cc)
  kAuthHashToken,  // the SHA-256 hex of a token read from stdin (main.cc)
};

enum class AudienceFormat { kIds, kRoaring };

struct Invocation {
  // Global options (accepted before or after the command).
  std::vector<std::string> seeds = {"127.0.0.1:7379"};
  bool json = false;
  std::chrono::milliseconds timeout{5000};
  // Credentials (--token/--token-file/TAGCACHE_TOKEN, --tls...), resolved by
  // main.cc; every client tagctl makes carries them.
  std::string token;
  client::ClientOptions::Tls tls;

  Command command = Command::kPing;
  uint64_t user = 0;              // get, has, set, clear
  std::vector<std::string> tags;  // has
  std::string tag;                // set, clear
  std::optional<uint64_t> ts;     // set, clear (default: now in ms); load (required)
  bool with_ts = false;           // get
  std::string expr;               // count, audience, top-tags
  std::optional<uint32_t> limit;  // audience: page size
  uint64_t cursor = 0;            // audience
  std::string out_file;           // audience: write the whole audience here
  AudienceFormat format = AudienceFormat::kIds;
  uint32_t k = 10;  // top-tags

  // load
  std::vector<std::string> inputs;  // files and directories
  std::string input_format = "auto";
  std::string load_tag;  // --tag: tag of id-list / Roaring inputs
  uint64_t max_errors = 0;
  int parse_threads = 2;
  bool dry_run = false;  // read and validate, send nothing
  uint64_t max_in_flight_mb = 64;

  // stream
  std::string stream_input;  // empty or "-": stdin
  size_t batch_events = 2000;
  int64_t linger_ms = 20;
  size_t in_flight_batches = 8;
  int64_t retry_for_s = 60;
  bool strict = false;
  double report_interval_s = 5;  // throughput line on stderr; 0: none

  // cluster
  std::string cluster_action;  // init, show, add-node, remove-node, rebalance, repair
  std::vector<std::string> cluster_nodes;  // init: ID=HOST:PORT
  std::string node_spec;       // add-node: ID=HOST:PORT; remove-node: ID
  int replicas = 1;
  int shard_bits = 0;  // 0: the nodes' own
  int vnodes = 128;
};

}  // namespace tagcache::tagctl
