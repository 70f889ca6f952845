#include "commands.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "audience_file.h"

namespace tagcache::tagctl {
namespace {

using client::Client;

// Page size when --out streams the whole audience and --limit is not given.
constexpr uint32_t kFilePageSize = 65536;
// Page size of a plain `audience` without --limit.
constexpr uint32_t kDefaultPageSize = 100;
// Least deadline of `checkpoint`: a node writes its whole state, which takes
// minutes on a large one, far beyond the --timeout meant for queries.
constexpr std::chrono::milliseconds kMinCheckpointTimeout = std::chrono::minutes(10);

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Result<Report> RunWrite(Client& client, const Invocation& inv, client::TagOp op) {
  WriteReport report{inv.user, inv.tag, op, inv.ts.value_or(NowMs()), {}};
  auto result = client.ApplyEvents({client::Event{report.user, report.tag, op, report.ts}});
  if (!result.ok()) return result.status();
  report.result = *result;
  return Report(std::move(report));
}

Result<Report> RunAudienceToFile(Client& client, const Invocation& inv) {
  AudienceFileReport report;
  report.file = inv.out_file;
  if (inv.format == AudienceFormat::kRoaring) {
    report.format = "roaring";
    auto shards = client.AudienceBitmaps(inv.expr);
    if (!shards.ok()) return shards.status();
    Status written = WriteAudienceBitmaps(inv.out_file, client.shard_bits(), *shards);
    if (!written.ok()) return written;
    report.shards = shards->size();
    for (const auto& shard : *shards) report.count += shard.cardinality;
    return Report(std::move(report));
  }
  report.format = "ids";
  IdFileWriter writer(inv.out_file);
  if (!writer.status().ok()) return writer.status();
  const uint32_t page_size = inv.limit.value_or(kFilePageSize);
  uint64_t cursor = inv.cursor;
  // Every page moves the cursor forward, so this ends; the check below
  // guards against a node that would not.
  for (;;) {
    auto page = client.Audience(inv.expr, cursor, page_size);
    if (!page.ok()) return page.status();
    writer.Append(page->users);
    report.count += page->users.size();
    if (!page->next_cursor) break;
    if (*page->next_cursor <= cursor) {
      return Status::Internal("the node returned a cursor that does not advance");
    }
    cursor = *page->next_cursor;
  }
  Status closed = writer.Close();
  if (!closed.ok()) return closed;
  return Report(std::move(report));
}

}  // namespace

Result<Report> Execute(const Invocation& inv) {
  client::ClientOptions options;
  options.seeds = inv.seeds;
  options.request_timeout = inv.timeout;
  options.connect_timeout = std::min(inv.timeout, options.connect_timeout);
  options.connections_per_node = 1;  // one request at a time
  options.client_name = "tagctl";
  options.token = inv.token;
  options.tls = inv.tls;
  auto connected = Client::Connect(std::move(options));
  if (!connected.ok()) return connected.status();
  Client& client = **connected;

  switch (inv.command) {
    case Command::kGet: {
      auto tags = client.GetTags(inv.user, inv.with_ts);
      if (!tags.ok()) return tags.status();
      // The node's order is unspecified; print a stable one.
      std::sort(tags->begin(), tags->end(),
                [](const client::TagHit& a, const client::TagHit& b) { return a.tag < b.tag; });
      return Report(GetReport{inv.user, inv.with_ts, std::move(tags).value()});
    }
    case Command::kHas: {
      auto has = client.HasTags(inv.user, inv.tags);
      if (!has.ok()) return has.status();
      return Report(HasReport{inv.user, inv.tags, std::move(has).value()});
    }
    case Command::kSet:
      return RunWrite(client, inv, client::TagOp::kSet);
    case Command::kClear:
      return RunWrite(client, inv, client::TagOp::kClear);
    case Command::kCount: {
      auto count = client.Count(inv.expr);
      if (!count.ok()) return count.status();
      return Report(CountReport{*count});
    }
    case Command::kAudience: {
      if (!inv.out_file.empty()) return RunAudienceToFile(client, inv);
      auto page = client.Audience(inv.expr, inv.cursor, inv.limit.value_or(kDefaultPageSize));
      if (!page.ok()) return page.status();
      return Report(AudienceReport{std::move(page).value()});
    }
    case Command::kTopTags: {
      auto tags = client.TopTags(inv.expr, inv.k);
      if (!tags.ok()) return tags.status();
      return Report(TopTagsReport{std::move(tags).value()});
    }
    case Command::kStats: {
      auto stats = client.Stats();
      if (!stats.ok()) return stats.status();
      return Report(StatsReport{std::move(stats).value(), NowMs()});
    }
    case Command::kCheckpoint: {
      client::CallOptions call;
      call.timeout = std::max(inv.timeout, kMinCheckpointTimeout);
      auto checkpoints = client.Checkpoint(call);
      if (!checkpoints.ok()) return checkpoints.status();
      return Report(CheckpointReport{std::move(checkpoints).value()});
    }
    case Command::kPing: {
      auto rtt = client.Ping();
      if (!rtt.ok()) return rtt.status();
      return Report(
          PingReport{client.nodes(), static_cast<uint64_t>(rtt->count()), client.shard_bits()});
    }
    case Command::kLoad:
    case Command::kStream:
    case Command::kCluster:
    case Command::kAuthHashToken:
      break;  // main.cc runs these itself (RunLoad, RunStream, RunCluster, hash-token)
  }
  return Status::Internal("unknown command");
}

}  // namespace tagcache::tagctl
