// Human-readable output: short, one fact a line, easy to grep. Scripts
// should use --json, whose fields are stable; this layout is not.
#include <cstdio>
#include <iterator>
#include <ostream>
#include <string>
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

// "1.5 GiB": the exact byte count is printed next to it where it matters.
std::string Iec(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  if (unit == 0) {
    std::snprintf(text, sizeof(text), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(text, sizeof(text), "%.1f %s", value, kUnits[unit]);
  }
  return text;
}

std::string Millis(uint64_t micros) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f ms", static_cast<double>(micros) / 1000);
  return text;
}

// Age of a node's event by this host's clock; the raw time stays visible
// because the two clocks may disagree.
std::string Age(uint64_t then_unix_ms, uint64_t now_unix_ms) {
  const std::string raw = "unix ms " + std::to_string(then_unix_ms);
  if (then_unix_ms > now_unix_ms) return "ahead of this host's clock (" + raw + ")";
  const uint64_t ms = now_unix_ms - then_unix_ms;
  std::string age;
  if (ms < 10'000) {
    age = std::to_string(ms) + " ms";
  } else if (ms < 7'200'000) {
    age = std::to_string(ms / 1000) + " s";
  } else if (ms < 172'800'000) {
    age = std::to_string(ms / 3'600'000) + " h";
  } else {
    age = std::to_string(ms / 86'400'000) + " d";
  }
  return age + " ago (" + raw + ")";
}

// One "name value" line of a stats group, values aligned with the
// ungrouped lines above them.
template <typename Value>
void Field(std::ostream& out, const char* name, const Value& value) {
  constexpr size_t kWidth = 19;
  const size_t length = std::char_traits<char>::length(name);
  out << "    " << name << std::string(length < kWidth ? kWidth - length : 1, ' ') << value << '\n';
}

void PrintDurability(const client::NodeStats& n, uint64_t now_unix_ms, std::ostream& out) {
  if (n.fsync_policy.empty()) {
    out << "  durability: none (no data directory)\n";
    return;
  }
  out << "  durability\n";
  Field(out, "fsync policy", n.fsync_policy);
  Field(out, "wal segment", n.wal_segment);
  Field(out, "wal bytes", n.wal_bytes);
  Field(out, "wal bytes since checkpoint", n.wal_bytes_since_checkpoint);
  Field(out, "wal records", n.wal_records);
  Field(out, "wal groups", n.wal_groups);
  std::string fsyncs = std::to_string(n.fsyncs);
  if (n.fsyncs > 0) {
    fsyncs += " (mean " + std::to_string(n.fsync_micros_total / n.fsyncs) + " us, max " +
              std::to_string(n.fsync_micros_max) + " us)";
  }
  Field(out, "fsyncs", fsyncs);
  Field(out, "writes refused (io)", n.writes_refused_io);
  Field(out, "checkpoints", n.checkpoints);
  Field(out, "checkpoint failures", n.checkpoint_failures);
  Field(out, "last checkpoint",
        n.last_checkpoint_unix_ms == 0 ? std::string("never")
                                       : Age(n.last_checkpoint_unix_ms, now_unix_ms));
  Field(out, "last checkpoint bytes", n.last_checkpoint_bytes);
  Field(out, "torn tails dropped at start", n.torn_tails_dropped);
  Field(out, "recovery", Millis(n.recovery_micros));
}

void PrintMemory(const client::NodeStats& n, std::ostream& out) {
  out << "  memory\n";
  Field(out, "resident bytes", std::to_string(n.memory_bytes) + " (" + Iec(n.memory_bytes) + ")");
  Field(out, "max memory",
        n.max_memory_bytes == 0
            ? std::string("none")
            : std::to_string(n.max_memory_bytes) + " (" + Iec(n.max_memory_bytes) + ")");
  Field(out, "writes refused (memory)", n.writes_refused_memory);
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
    PrintDurability(n, r.now_unix_ms, out);
    PrintMemory(n, out);
    if (!n.requests.empty()) {
      out << "  requests (kind: count errors p50us p99us)\n";
      for (const auto& k : n.requests) {
        out << "    " << k.kind << ": " << k.count << ' ' << k.errors << ' ' << k.p50_micros << ' '
            << k.p99_micros << '\n';
      }
    }
    if (!n.limits.empty()) {
      out << "  limits (name: value count)\n";
      for (const auto& l : n.limits) {
        out << "    " << l.limit << ": " << l.value << ' ' << l.count << '\n';
      }
    }
  }
}

void Print(const CheckpointReport& r, std::ostream& out) {
  for (const auto& c : r.nodes) {
    out << "checkpoint of " << c.node << ": " << c.path << ", " << c.bytes << " bytes ("
        << Iec(c.bytes) << ") in " << Millis(c.micros) << "; WAL replays from segment "
        << c.wal_segment << ", " << c.segments_removed << " segments removed\n";
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
