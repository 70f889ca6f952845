#include "tagbench/report.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tagcache::tagbench {
namespace {

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

std::string Ratio(double num, double den) {
  return den > 0 && num > 0 ? Fmt("%.2fx", num / den) : "-";
}

const OpReport* Find(const Report& r, const std::string& op) {
  for (const OpReport& o : r.ops) {
    if (o.op == op) return &o;
  }
  return nullptr;
}

}  // namespace

void FillLatency(const Histogram& h, OpReport& out) {
  out.mean_us = h.mean() / 1000.0;
  out.p50_us = static_cast<double>(h.Percentile(0.50)) / 1000.0;
  out.p90_us = static_cast<double>(h.Percentile(0.90)) / 1000.0;
  out.p99_us = static_cast<double>(h.Percentile(0.99)) / 1000.0;
  out.p999_us = static_cast<double>(h.Percentile(0.999)) / 1000.0;
  out.max_us = static_cast<double>(h.max()) / 1000.0;
}

std::string ReportToJson(const Report& r) {
  nlohmann::json j = {{"target", r.target},
                      {"target_kind", r.target_kind},
                      {"workload", r.workload},
                      {"mode", r.mode},
                      {"connections", r.connections},
                      {"depth", r.depth},
                      {"rate", r.rate},
                      {"warmup_s", r.warmup_s},
                      {"duration_s", r.duration_s},
                      {"seed", r.seed},
                      {"users", r.users},
                      {"tags", r.tags},
                      {"assignments", r.assignments},
                      {"memory_data_bytes", r.memory_data_bytes},
                      {"memory_rss_bytes", r.memory_rss_bytes},
                      {"total_ops", r.total_ops},
                      {"total_throughput", r.total_throughput}};
  nlohmann::json ops = nlohmann::json::array();
  for (const OpReport& o : r.ops) {
    ops.push_back({{"op", o.op},
                   {"ops", o.ops},
                   {"errors", o.errors},
                   {"errors_by_status", o.errors_by_status},
                   {"throughput", o.throughput},
                   {"mean_us", o.mean_us},
                   {"p50_us", o.p50_us},
                   {"p90_us", o.p90_us},
                   {"p99_us", o.p99_us},
                   {"p999_us", o.p999_us},
                   {"max_us", o.max_us}});
  }
  j["ops"] = std::move(ops);
  return j.dump(1) + "\n";
}

Result<Report> ReportFromJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::BadRequest("report is not valid JSON");
  Report r;
  try {
    r.target = j.at("target").get<std::string>();
    r.target_kind = j.at("target_kind").get<std::string>();
    r.workload = j.at("workload").get<std::string>();
    r.mode = j.at("mode").get<std::string>();
    r.connections = j.at("connections").get<int>();
    r.depth = j.at("depth").get<int>();
    r.rate = j.at("rate").get<double>();
    r.warmup_s = j.at("warmup_s").get<double>();
    r.duration_s = j.at("duration_s").get<double>();
    r.seed = j.at("seed").get<uint64_t>();
    r.users = j.at("users").get<uint64_t>();
    r.tags = j.at("tags").get<int>();
    r.assignments = j.at("assignments").get<uint64_t>();
    r.memory_data_bytes = j.at("memory_data_bytes").get<uint64_t>();
    r.memory_rss_bytes = j.at("memory_rss_bytes").get<uint64_t>();
    r.total_ops = j.at("total_ops").get<uint64_t>();
    r.total_throughput = j.at("total_throughput").get<double>();
    for (const auto& o : j.at("ops")) {
      OpReport op;
      op.op = o.at("op").get<std::string>();
      op.ops = o.at("ops").get<uint64_t>();
      op.errors = o.at("errors").get<uint64_t>();
      op.errors_by_status = o.at("errors_by_status").get<std::map<std::string, uint64_t>>();
      op.throughput = o.at("throughput").get<double>();
      op.mean_us = o.at("mean_us").get<double>();
      op.p50_us = o.at("p50_us").get<double>();
      op.p90_us = o.at("p90_us").get<double>();
      op.p99_us = o.at("p99_us").get<double>();
      op.p999_us = o.at("p999_us").get<double>();
      op.max_us = o.at("max_us").get<double>();
      r.ops.push_back(std::move(op));
    }
  } catch (const nlohmann::json::exception& e) {
    // Missing or mistyped fields surface as exceptions from the JSON library;
    // this boundary turns them into an error value.
    return Status::BadRequest(std::string("report: ") + e.what());
  }
  return r;
}

Result<Report> ReadReportFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IoError("cannot read report " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  Result<Report> r = ReportFromJson(ss.str());
  if (!r.ok()) return Status::BadRequest(path + ": " + r.status().message());
  return r;
}

std::string FormatReport(const Report& r) {
  std::string out;
  out += r.target + "  workload " + r.workload + "  " + r.mode + " loop, " +
         std::to_string(r.connections) + " connections x depth " + std::to_string(r.depth);
  if (r.mode == "open") out += Fmt(", target %.0f ops/s", r.rate);
  out += Fmt(", %.1f s measured\n", r.duration_s);
  char line[256];
  std::snprintf(line, sizeof(line), "%-15s %12s %12s %9s %9s %9s %9s %9s %9s\n", "op", "ops",
                "ops/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "errors");
  out += line;
  for (const OpReport& o : r.ops) {
    std::snprintf(line, sizeof(line), "%-15s %12llu %12.0f %9.1f %9.1f %9.1f %9.1f %9.1f %9llu\n",
                  o.op.c_str(), static_cast<unsigned long long>(o.ops), o.throughput, o.p50_us,
                  o.p90_us, o.p99_us, o.p999_us, o.max_us,
                  static_cast<unsigned long long>(o.errors));
    out += line;
    for (const auto& [status, n] : o.errors_by_status) {
      out += "    " + status + ": " + std::to_string(n) + "\n";
    }
  }
  std::snprintf(line, sizeof(line), "%-15s %12llu %12.0f\n", "total",
                static_cast<unsigned long long>(r.total_ops), r.total_throughput);
  out += line;
  if (r.memory_data_bytes || r.memory_rss_bytes) {
    out += Fmt("memory: data %.1f MB", static_cast<double>(r.memory_data_bytes) / 1e6) +
           Fmt(", rss %.1f MB", static_cast<double>(r.memory_rss_bytes) / 1e6);
    if (r.assignments) {
      out += Fmt(" (%.2f",
                 static_cast<double>(r.memory_data_bytes) / static_cast<double>(r.assignments)) +
             Fmt(" / %.2f bytes per assignment)",
                 static_cast<double>(r.memory_rss_bytes) / static_cast<double>(r.assignments));
    }
    out += "\n";
  }
  return out;
}

std::string FormatCompare(const Report& a, const Report& b, bool markdown) {
  std::vector<std::string> ops;
  for (const OpReport& o : a.ops) ops.push_back(o.op);
  for (const OpReport& o : b.ops) {
    if (!Find(a, o.op)) ops.push_back(o.op);
  }
  std::string out;
  char line[512];
  if (markdown) {
    out += "| workload | op | " + a.target_kind + " ops/s | " + b.target_kind + " ops/s | ops/s " +
           a.target_kind + "/" + b.target_kind + " | " + a.target_kind + " p50 us | " +
           b.target_kind + " p50 us | " + a.target_kind + " p99 us | " + b.target_kind +
           " p99 us | p99 " + b.target_kind + "/" + a.target_kind + " |\n";
    out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  } else {
    out += "A: " + a.target + " (" + a.workload + ")\nB: " + b.target + " (" + b.workload + ")\n";
    std::snprintf(line, sizeof(line), "%-15s %11s %11s %8s %9s %9s %8s %9s %9s %8s\n", "op",
                  "A ops/s", "B ops/s", "A/B", "A p50", "B p50", "B/A", "A p99", "B p99", "B/A");
    out += line;
  }
  for (const std::string& op : ops) {
    const OpReport* x = Find(a, op);
    const OpReport* y = Find(b, op);
    const OpReport empty;
    const OpReport& p = x ? *x : empty;
    const OpReport& q = y ? *y : empty;
    if (markdown) {
      std::snprintf(line, sizeof(line),
                    "| %s | %s | %.0f | %.0f | %s | %.1f | %.1f | %.1f | %.1f | %s |\n",
                    a.workload.c_str(), op.c_str(), p.throughput, q.throughput,
                    Ratio(p.throughput, q.throughput).c_str(), p.p50_us, q.p50_us, p.p99_us,
                    q.p99_us, Ratio(q.p99_us, p.p99_us).c_str());
    } else {
      std::snprintf(line, sizeof(line), "%-15s %11.0f %11.0f %8s %9.1f %9.1f %8s %9.1f %9.1f %8s\n",
                    op.c_str(), p.throughput, q.throughput,
                    Ratio(p.throughput, q.throughput).c_str(), p.p50_us, q.p50_us,
                    Ratio(q.p50_us, p.p50_us).c_str(), p.p99_us, q.p99_us,
                    Ratio(q.p99_us, p.p99_us).c_str());
    }
    out += line;
  }
  return out;
}

Status CheckReport(const Report& r) {
  std::string problems;
  if (r.ops.empty()) problems = "no op ran";
  for (const OpReport& o : r.ops) {
    if (o.ops == 0 || o.throughput <= 0)
      problems += (problems.empty() ? "" : "; ") + o.op + ": no completed ops";
    if (o.errors > 0) {
      problems +=
          (problems.empty() ? "" : "; ") + o.op + ": " + std::to_string(o.errors) + " errors";
      for (const auto& [s, n] : o.errors_by_status) problems += " " + s + "=" + std::to_string(n);
    }
  }
  if (!problems.empty()) return Status::BadRequest(r.target + " " + r.workload + ": " + problems);
  return Status::Ok();
}

}  // namespace tagcache::tagbench
