// Human-readable output: short, one fact a line, easy to grep. Scripts
// should use --json, whose fields are stable; this layout is not.
#include <ostream>
#include <type_traits>

#include "report.h"

namespace tagcache::tagctl {
namespace {

const char* OpName(client::TagOp op) { return op == client::TagOp::kSet ? "set" : "clear"; }

void Print(const GetReport& r, std::ostream& out) {
  if (r.tags.empty()) {
    out << "user " << r.user << " has no tags\n";
    return;
  }
  for (const auto& hit : r.tags) {
    out << hit.tag;
    if (r.with_ts) out << '\t' << hit.ts;
    out << '\n';
  }
}

void Print(const HasReport& r, std::ostream& out) {
  for (size_t i = 0; i < r.tags.size(); ++i) {
    out << r.tags[i] << '\t' << (i < r.has.size() && r.has[i] ? "yes" : "no") << '\n';
  }
}

void Print(const WriteReport& r, std::ostream& out) {
  out << OpName(r.op) << ' ' << r.tag << " for user " << r.user << " at ts " << r.ts << ": "
      << (r.result.applied > 0 ? "applied"
                               : "ignored (a snapshot or a write at least as new is held)")
      << '\n';
}

void Print(const CountReport& r, std::ostream& out) { out << r.count << '\n'; }

void Print(const AudienceReport& r, std::ostream& out) {
  for (uint64_t user : r.page.users) out << user << '\n';
  if (r.page.next_cursor) out << "# more: --cursor " << *r.page.next_cursor << '\n';
}

void Print(const AudienceFileReport& r, std::ostream& out) {
  out << "wrote " << r.count << " users";
  if (r.format == "roaring") out << " in " << r.shards << " shard bitmaps";
  out << " to " << r.file << " (" << r.format << ")\n";
}

void Print(const TopTagsReport& r, std::ostream& out) {
  for (const auto& tc : r.tags) out << tc.count << '\t' << tc.tag << '\n';
}

void Print(const StatsReport& r, std::ostream& out) {
  for (const auto& n : r.nodes) {
    out << "node " << n.node << '\n'
        << "  shards               " << n.shards << '\n'
        << "  tags                 " << n.tags << '\n'
        << "  known users          " << n.known_users << '\n'
        << "  assignments          " << n.assignments << '\n'
        << "  bitmap bytes         " << n.bitmap_bytes << '\n'
        << "  override bytes       " << n.override_bytes << '\n'
        << "  index bytes          " << n.index_bytes << '\n'
        << "  known bytes          " << n.known_bytes << '\n'
        << "  connections          " << n.connections << '\n'
        << "  events applied       " << n.events_applied << '\n'
        << "  events ignored       " << n.events_ignored << '\n'
        << "  writes refused (future ts) " << n.writes_refused_future << '\n'
        << "  snapshots applied    " << n.snapshots_applied << '\n'
        << "  snapshots stale      " << n.snapshots_stale << '\n'
        << "  snapshot ties        " << n.snapshot_ties << '\n';
    if (!n.requests.empty()) {
      out << "  requests (kind: count errors p50us p99us)\n";
      for (const auto& k : n.requests) {
        out << "    " << k.kind << ": " << k.count << ' ' << k.errors << ' ' << k.p50_micros << ' '
            << k.p99_micros << '\n';
      }
    }
  }
}

void Print(const PingReport& r, std::ostream& out) {
  out << "PONG from";
  for (const auto& node : r.nodes) out << ' ' << node;
  out << " in " << r.rtt_micros << " us\n";
}

}  // namespace

void PrintHuman(const Report& report, std::ostream& out) {
  std::visit([&out](const auto& r) { Print(r, out); }, report);
}

}  // namespace tagcache::tagctl
