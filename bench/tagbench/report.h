// A run's results: per op kind, throughput and latency percentiles (from the
// merged Histograms), errors by status; plus what was run against what.
// Printed as a human table, written and read as JSON (`--json`), and two
// reports compared side by side with ratios (`tagbench compare`).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tagbench/histogram.h"
#include "tagcache/common/status.h"

namespace tagcache::tagbench {

struct OpReport {
  std::string op;    // OpKindName
  uint64_t ops = 0;  // completed in the measured window (errors included)
  uint64_t errors = 0;
  std::map<std::string, uint64_t> errors_by_status;
  double throughput = 0;  // ops per second over the measured window
  // Latency in microseconds; open loop: from the intended send time.
  double mean_us = 0, p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
};

struct Report {
  std::string target;       // Target::Describe()
  std::string target_kind;  // "tagcache" / "redis"
  std::string workload;     // the mix's name
  std::string mode;         // "closed" or "open"
  int connections = 0;
  int depth = 0;
  double rate = 0;  // open loop: target ops/s
  double warmup_s = 0;
  double duration_s = 0;  // the measured window as it ran
  uint64_t seed = 0;
  uint64_t users = 0;
  int tags = 0;
  uint64_t assignments = 0;
  uint64_t memory_data_bytes = 0;  // Target::Memory(), 0 when unavailable
  uint64_t memory_rss_bytes = 0;
  std::vector<OpReport> ops;  // OpKind order, kinds that ran
  uint64_t total_ops = 0;
  double total_throughput = 0;
};

// Fills an OpReport's latency fields from a histogram of nanoseconds.
void FillLatency(const Histogram& h, OpReport& out);

std::string ReportToJson(const Report& r);
// BAD_REQUEST naming the missing or malformed field.
Result<Report> ReportFromJson(const std::string& text);
// IO_ERROR when unreadable.
Result<Report> ReadReportFile(const std::string& path);

// The terminal table: one line per op, then the total.
std::string FormatReport(const Report& r);

// Side by side: for every op in either report, throughput and p50/p99 of A
// and B with the ratios A/B for throughput and B/A for latency, so a ratio
// above 1 always means A did better. `markdown`: a GitHub table instead of aligned text.
std::string FormatCompare(const Report& a, const Report& b, bool markdown);

// The smoke check: OK when every op ran (ops > 0, throughput > 0) without
// errors; otherwise BAD_REQUEST naming each failing op.
Status CheckReport(const Report& r);

}  // namespace tagcache::tagbench
