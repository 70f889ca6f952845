// tagctl, the admin CLI: argument parsing and exit codes. The only
// translation unit that includes CLI11 (docs/CLI.md has the reference).
//
// Exit codes: 0 success, 1 the request failed (one line on stderr:
// "tagctl: STATUS_NAME: message"), 2 usage error.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "commands.h"
#include "invocation.h"
#include "report.h"

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

  try {
    app.parse(argc, argv);
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
