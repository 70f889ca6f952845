// tagctl, the admin CLI: argument parsing and exit codes. The only
// translation unit that includes CLI11 (docs/CLI.md has the reference).
//
// Exit codes: 0 success, 1 the request failed (one line on stderr:
// "tagctl: STATUS_NAME: message"), 2 usage error.
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <string>

#include "commands.h"
#include "invocation.h"
#include "report.h"
#include "tagcache/client/credential_flags.h"
#include "tagcache/client/credentials.h"
#include "tagcache/security/auth.h"

namespace {

using tagcache::tagctl::AudienceFormat;
using tagcache::tagctl::Command;
using tagcache::tagctl::Invocation;

constexpr int kExitRequestError = 1;
constexpr int kExitUsage = 2;

std::vector<std::string> SplitSeeds(const std::string& list) {
  std::vector<std::string> seeds;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const size_t end = comma == std::string::npos ? list.size() : comma;
    if (end > start) seeds.push_back(list.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return seeds;
}

}  // namespace

int main(int argc, char** argv) {
  Invocation inv;
  std::string seeds = "127.0.0.1:7379";
  int64_t timeout_ms = 5000;
  std::string format = "ids";

  CLI::App app{"tagctl: the tagcache admin CLI (docs/CLI.md)", "tagctl"};
  app.require_subcommand(1);
  // Global options may follow the command too: subcommands pass options
  // they do not know up to the app.
  app.fallthrough();
  app.add_option("--seeds", seeds, "Comma-separated node addresses (host:port)")
      ->capture_default_str();
  app.add_flag("--json", inv.json, "Print one JSON document");
  app.add_option("--timeout", timeout_ms, "Request timeout in ms")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  tagcache::client::CredentialFlags credentials;
  tagcache::client::AddCredentialFlags(app, credentials);

  auto* get = app.add_subcommand("get", "The user's tags");
  get->add_option("USER", inv.user, "User id")->required()->check(CLI::NonNegativeNumber);
  get->add_flag("--with-ts", inv.with_ts, "Also print each tag's winning timestamp");
  get->callback([&] { inv.command = Command::kGet; });

  auto* has = app.add_subcommand("has", "Whether the user has each tag");
  has->add_option("USER", inv.user, "User id")->required()->check(CLI::NonNegativeNumber);
  has->add_option("TAG", inv.tags, "Tag names")->required();
  has->callback([&] { inv.command = Command::kHas; });

  auto* set = app.add_subcommand("set", "Give the user a tag (an event)");
  auto* clear = app.add_subcommand("clear", "Take a tag from the user (an event)");
  for (auto* write : {set, clear}) {
    write->add_option("USER", inv.user, "User id")->required()->check(CLI::NonNegativeNumber);
    write->add_option("TAG", inv.tag, "Tag name")->required();
    write->add_option("--ts", inv.ts, "Event timestamp (default: now, in ms since the epoch)");
  }
  set->callback([&] { inv.command = Command::kSet; });
  clear->callback([&] { inv.command = Command::kClear; });

  auto* count = app.add_subcommand("count", "Number of users matching EXPR");
  count->add_option("EXPR", inv.expr, "Audience expression, e.g. 'a & b & !c'")->required();
  count->callback([&] { inv.command = Command::kCount; });

  auto* audience = app.add_subcommand("audience", "Users matching EXPR");
  audience->add_option("EXPR", inv.expr, "Audience expression")->required();
  audience
      ->add_option("--limit", inv.limit,
                   "Page size (default: 100; with --out ids: 65536 per request)")
      ->check(CLI::Range(1u, 0xffffffffu));
  audience->add_option("--cursor", inv.cursor, "Start at this user id (a page's next cursor)");
  auto* out = audience->add_option("--out", inv.out_file, "Write the whole audience to FILE");
  audience->add_option("--format", format, "File format with --out: ids or roaring")
      ->check(CLI::IsMember({"ids", "roaring"}))
      ->needs(out)
      ->capture_default_str();
  audience->callback([&] { inv.command = Command::kAudience; });

  auto* top = app.add_subcommand("top-tags", "The k most common tags among EXPR's users");
  top->add_option("EXPR", inv.expr, "Audience expression")->required();
  top->add_option("-k,--top", inv.k, "How many tags")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  top->callback([&] { inv.command = Command::kTopTags; });

  app.add_subcommand("stats", "Node statistics")->callback([&] { inv.command = Command::kStats; });
  app.add_subcommand("checkpoint", "Write a checkpoint on every node now; prints path, size, time")
      ->callback([&] { inv.command = Command::kCheckpoint; });
  app.add_subcommand("ping", "Round trip to every node")->callback([&] {
    inv.command = Command::kPing;
  });

  std::string load_ts;
  auto* load = app.add_subcommand(
      "load", "Bulk snapshot load as of --ts: CSV/TSV pairs, id lists, portable Roaring, gzip");
  load->add_option("PATH", inv.inputs, "Input files or directories")->required();
  load->add_option("--ts", load_ts,
                   "Snapshot time, ms since the epoch (required; 'now' must be explicit)")
      ->required();
  load->add_option("--format", inv.input_format,
                   "auto, csv, tsv, ids, roaring, roaring32 or roaring64")
      ->check(CLI::IsMember({"auto", "csv", "tsv", "ids", "roaring", "roaring32", "roaring64"}))
      ->capture_default_str();
  load->add_option("--tag", inv.load_tag, "Tag of id-list/Roaring inputs (default: file stem)");
  load->add_option("--max-errors", inv.max_errors,
                   "Bad lines/files tolerated (skipped); more abort before anything is applied")
      ->capture_default_str();
  load->add_option("--threads", inv.parse_threads, "Files parsed in parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  load->add_flag("--dry-run", inv.dry_run, "Read and validate the input; send nothing");
  load->add_option("--max-in-flight-mb", inv.max_in_flight_mb,
                   "Snapshot parts sent and not yet acknowledged, in MiB")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{4096}));
  load->callback([&] { inv.command = Command::kLoad; });

  auto* stream = app.add_subcommand(
      "stream", "Apply NDJSON events ({\"user\":42,\"tag\":\"t\",\"op\":\"set\",\"ts\":1}) from stdin");
  stream->add_option("FILE", inv.stream_input, "Read this file instead of stdin ('-': stdin)");
  stream->add_option("--batch", inv.batch_events, "Events per batch")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  stream->add_option("--linger-ms", inv.linger_ms, "Longest wait before a partial batch is sent")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{60000}));
  stream->add_option("--in-flight", inv.in_flight_batches, "Batches sent and not yet answered")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1024}));
  stream->add_option("--retry-for", inv.retry_for_s,
                     "Seconds a batch is retried on transient errors before the stream fails")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400}));
  stream->add_flag("--strict", inv.strict, "Abort on the first bad line or refused event");
  stream->add_option("--report-interval", inv.report_interval_s,
                     "Seconds between throughput lines on stderr (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  stream->callback([&] { inv.command = Command::kStream; });

  auto* cluster = app.add_subcommand("cluster", "The cluster map: init, show, add/remove nodes, repair");
  cluster->require_subcommand(1);
  auto* init = cluster->add_subcommand("init", "Make the listed nodes one cluster (epoch 1)");
  init->add_option("--nodes", inv.cluster_nodes, "ID=HOST:PORT,... every node")
      ->required()
      ->delimiter(',');
  init->add_option("--replicas", inv.replicas, "Copies of every shard")
      ->capture_default_str()
      ->check(CLI::Range(1, 8));
  init->add_option("--shard-bits", inv.shard_bits, "log2 users per shard (default: the nodes')")
      ->check(CLI::Range(8, 26));
  init->add_option("--vnodes", inv.vnodes, "Ring points per node")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  auto* add_node = cluster->add_subcommand("add-node", "Add a node and move its shards to it");
  add_node->add_option("NODE", inv.node_spec, "ID=HOST:PORT")->required();
  auto* remove_node =
      cluster->add_subcommand("remove-node", "Move a node's shards away and drop it from the map");
  remove_node->add_option("ID", inv.node_spec, "Node id")->required();
  auto* show_cmd = cluster->add_subcommand("show", "Map, nodes, health, shards and memory");
  auto* rebalance = cluster->add_subcommand("rebalance", "Finish an interrupted move");
  auto* repair = cluster->add_subcommand("repair", "Merge differing replicas of every shard");
  for (auto* sub : {init, add_node, remove_node, show_cmd, rebalance, repair}) {
    sub->callback([&inv, sub] {
      inv.command = Command::kCluster;
      inv.cluster_action = sub->get_name();
    });
  }

  auto* auth = app.add_subcommand("auth", "Tokens for --auth-file");
  auth->require_subcommand(1);
  auth->add_subcommand("hash-token",
                       "Print the SHA-256 hex of the token read from stdin (for an auth file "
                       "line ROLE:HASH)")
      ->callback([&] { inv.command = Command::kAuthHashToken; });

  try {
    app.parse(argc, argv);
    if (inv.command == Command::kLoad) {
      if (load_ts == "now") {
        inv.ts = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
      } else {
        size_t used = 0;
        uint64_t ts = 0;
        try {
          ts = std::stoull(load_ts, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != load_ts.size() || load_ts.empty() || load_ts[0] == '-' || ts == 0) {
          throw CLI::ValidationError("--ts", "'" + load_ts +
                                                 "' is not a timestamp: give ms since the epoch "
                                                 "(>= 1) or 'now'");
        }
        inv.ts = ts;
      }
    }
    inv.seeds = SplitSeeds(seeds);
    if (inv.seeds.empty()) throw CLI::ValidationError("--seeds", "no address given");
    inv.timeout = std::chrono::milliseconds(timeout_ms);
    inv.format = format == "roaring" ? AudienceFormat::kRoaring : AudienceFormat::kIds;
    if (inv.format == AudienceFormat::kRoaring && (inv.cursor != 0 || inv.limit)) {
      throw CLI::ValidationError("--format roaring",
                                 "takes the whole audience: no --cursor/--limit");
    }
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "tagctl: usage: " << e.what() << " (see tagctl --help)\n";
    return kExitUsage;
  }

  if (inv.command == Command::kAuthHashToken) {
    // The token comes from stdin so that it never appears in `ps` or a
    // shell history; trailing newlines are dropped, as in token files.
    auto token = tagcache::client::ReadTokenFile("/dev/stdin");
    if (!token.ok()) {
      std::cerr << "tagctl: " << token.status().ToString() << '\n';
      return kExitRequestError;
    }
    std::cout << tagcache::security::HashTokenHex(*token) << '\n';
    return std::cout ? 0 : kExitRequestError;
  }
  {
    tagcache::client::ClientOptions resolved;
    tagcache::Status s = tagcache::client::ApplyCredentials(credentials, resolved);
    if (!s.ok()) {
      std::cerr << "tagctl: usage: " << s.message() << " (see tagctl --help)\n";
      return kExitUsage;
    }
    inv.token = std::move(resolved.token);
    inv.tls = std::move(resolved.tls);
  }

  if (inv.command == Command::kLoad) return tagcache::tagctl::RunLoad(inv);
  if (inv.command == Command::kStream) return tagcache::tagctl::RunStream(inv);
  if (inv.command == Command::kCluster) return tagcache::tagctl::RunCluster(inv);

  auto report = tagcache::tagctl::Execute(inv);
  if (!report.ok()) {
    std::cerr << "tagctl: " << report.status().ToString() << '\n';
    return kExitRequestError;
  }
  if (inv.json) {
    tagcache::tagctl::PrintJson(*report, std::cout);
  } else {
    tagcache::tagctl::PrintHuman(*report, std::cout);
  }
  std::cout.flush();
  return std::cout ? 0 : kExitRequestError;
}
