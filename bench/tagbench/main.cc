// tagbench: the load-testing bench (docs/BENCH.md).
//   tagbench gen     --dir DIR [--users N --tags T ...]   dataset + manifest
//   tagbench run     --dataset DIR --target URL [--workload W ...] [--json F]
//   tagbench verify  --dataset DIR --target URL --target URL
//   tagbench compare A.json B.json [--markdown]
//   tagbench check   REPORT.json...
// main() only parses flags and wires the pieces; errors print as
// "tagbench: <what>" with exit code 1 (2 for bad flags).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "tagbench/dataset.h"
#include "tagbench/driver.h"
#include "tagbench/op_mix.h"
#include "tagbench/report.h"
#include "tagbench/targets.h"
#include "tagbench/verify.h"
#include "tagcache/client/credential_flags.h"

namespace tb = tagcache::tagbench;
namespace client = tagcache::client;

namespace {

int Fail(const tagcache::Status& s) {
  std::fprintf(stderr, "tagbench: %s\n", s.ToString().c_str());
  return 1;
}

tagcache::Status ParseTerms(const std::string& text, tb::WorkloadOptions& w) {
  int lo = 0, hi = 0;
  char dash = 0;
  char extra = 0;
  const int n = std::sscanf(text.c_str(), "%d%c%d%c", &lo, &dash, &hi, &extra);
  if (n == 1)
    hi = lo;
  else if (n != 3 || dash != '-')
    return tagcache::Status::BadRequest("--terms must be N or MIN-MAX, got '" + text + "'");
  w.min_terms = lo;
  w.max_terms = hi;
  return tagcache::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tagbench: synthetic persona workloads against tagcache and Redis (docs/BENCH.md)"};
  app.require_subcommand(1);

  // ---- gen
  tb::DatasetSpec spec;
  std::string gen_dir;
  auto* gen = app.add_subcommand(
      "gen",
      "generate a dataset: snapshot.csv, events.ndjson, dataset.json (+ redis.resp, roaring/)");
  gen->add_option("--dir", gen_dir, "output directory")->required();
  gen->add_option("--users", spec.users, "users (ids 0..N-1)")->capture_default_str();
  gen->add_option("--tags", spec.tags, "tags")->capture_default_str();
  gen->add_option("--max-density", spec.max_density, "share of users with the most popular tag")
      ->capture_default_str();
  gen->add_option("--min-density", spec.min_density,
                  "share with the least popular tag (sets the exponent)")
      ->capture_default_str();
  gen->add_option("--zipf-s", spec.zipf_s, "power-law exponent (overrides --min-density)");
  gen->add_flag("--cluster", spec.cluster,
                "id-range clustering: newer (higher) ids denser in odd-ranked tags");
  gen->add_option("--events", spec.events, "events in events.ndjson")->capture_default_str();
  gen->add_option("--older-share", spec.older_share, "share of events older than the snapshot")
      ->capture_default_str();
  gen->add_option("--snapshot-ts", spec.snapshot_ts, "ts of the snapshot (tagctl load --ts)")
      ->capture_default_str();
  gen->add_option("--seed", spec.seed, "seed")->capture_default_str();
  gen->add_flag("--roaring", spec.roaring, "also write roaring/<tag>.roaring");
  gen->add_flag("--redis-resp", spec.redis, "also write redis.resp (redis-cli --pipe)");
  gen->add_flag("--redis-audience-only", spec.redis_audience_only,
                "redis.resp without per-user sets (count/top_tags runs at 10^8 users)");

  // ---- run
  std::string dataset, target_url, workload = "lookup", json_path, terms = "1-6";
  bool progress_flag = false, quiet = false;
  tb::RunOptions run;
  auto* runc = app.add_subcommand("run", "run a workload against a target and report");
  runc->add_option("--dataset", dataset, "directory written by tagbench gen")->required();
  runc->add_option("--target", target_url, "redis://HOST:PORT or tagcache://HOST:PORT[,...]")
      ->required();
  runc->add_option("--workload,-w", workload,
                   "preset (lookup, lookup-hot, batch, has, count, top, update, mixed) or a mix "
                   "op=percent,...")
      ->capture_default_str();
  runc->add_option("--connections,-c", run.connections, "connections (one driver thread each)")
      ->capture_default_str();
  runc->add_option("--depth,-d", run.depth, "pipeline depth: ops in flight per connection")
      ->capture_default_str();
  runc->add_option("--rate", run.rate, "open loop: total ops/s (0: closed loop)")
      ->capture_default_str();
  runc->add_option("--warmup", run.warmup_s, "seconds not measured")->capture_default_str();
  runc->add_option("--duration", run.duration_s, "seconds measured")->capture_default_str();
  runc->add_option("--seed", run.seed, "seed of the op sequence")->capture_default_str();
  runc->add_option("--batch", run.workload.batch_size, "users per get_tags_batch")
      ->capture_default_str();
  runc->add_option("--has-tags", run.workload.has_tags, "tags per has_tags")->capture_default_str();
  runc->add_option("--top-k", run.workload.top_k, "k of top_tags")->capture_default_str();
  runc->add_option("--terms", terms, "terms per count/top_tags expression: N or MIN-MAX (1..6)")
      ->capture_default_str();
  runc->add_option("--audience-share", run.workload.audience_share,
                   "count/top_tags over the one tag nearest this share of users (e.g. 0.1)");
  runc->add_option("--json", json_path, "write the report as JSON to this file");
  runc->add_flag("--progress", progress_flag,
                 "live progress line on stderr (default: only on a terminal)");
  runc->add_flag("--quiet", quiet, "no table on stdout");
  int tagcache_clients = 1;
  runc->add_option("--tagcache-clients", tagcache_clients,
                   "tagcache targets: client instances (one I/O thread each) the connections "
                   "are split over")
      ->capture_default_str();
  client::CredentialFlags credentials;  // tagcache targets only
  client::AddCredentialFlags(*runc, credentials);

  // ---- verify
  std::vector<std::string> verify_targets;
  uint64_t verify_ops = 50;
  auto* verify =
      app.add_subcommand("verify", "send the same read ops to two targets and compare the answers");
  verify->add_option("--dataset", dataset, "directory written by tagbench gen")->required();
  verify->add_option("--target", verify_targets, "two target URLs")->required()->expected(2);
  verify->add_option("--ops", verify_ops, "ops per kind")->capture_default_str();
  bool verify_audience_only = false;
  verify->add_flag("--audience-only", verify_audience_only,
                   "only count and top_tags (Redis loaded with gen --redis-audience-only)");
  verify->add_option("--seed", run.seed, "seed")->capture_default_str();
  client::AddCredentialFlags(*verify, credentials);

  // ---- compare / check
  std::vector<std::string> files;
  bool markdown = false;
  auto* compare = app.add_subcommand("compare", "two reports side by side with ratios");
  compare->add_option("reports", files, "A.json B.json")->required()->expected(2);
  compare->add_flag("--markdown", markdown, "a markdown table");
  auto* check =
      app.add_subcommand("check", "exit 1 unless every op of every report ran without errors");
  check->add_option("reports", files, "report JSON files")->required();

  CLI11_PARSE(app, argc, argv);

  if (gen->parsed()) {
    tagcache::Result<tb::Manifest> m = tb::GenerateDataset(spec, gen_dir);
    if (!m.ok()) return Fail(m.status());
    uint64_t existing = 0;
    for (const auto& t : m->tags) existing += t.exists ? 1 : 0;
    std::printf(
        "dataset %s: %llu users, %d tags (%llu with members), exponent %.3f, densities %.6g .. "
        "%.6g\n"
        "snapshot: %llu assignments (%.2f per user) as of ts %llu; events: %llu older, %llu newer; "
        "after the events: %llu assignments, %llu known users\n",
        gen_dir.c_str(), static_cast<unsigned long long>(spec.users), spec.tags,
        static_cast<unsigned long long>(existing), m->exponent, m->tags.front().density,
        m->tags.back().density, static_cast<unsigned long long>(m->snapshot_assignments),
        static_cast<double>(m->snapshot_assignments) / static_cast<double>(spec.users),
        static_cast<unsigned long long>(spec.snapshot_ts),
        static_cast<unsigned long long>(m->events_older),
        static_cast<unsigned long long>(m->events_newer),
        static_cast<unsigned long long>(m->final_assignments),
        static_cast<unsigned long long>(m->known_users));
    return 0;
  }

  if (runc->parsed() || verify->parsed()) {
    if (tagcache::Status s = ParseTerms(terms, run.workload); !s.ok()) return Fail(s);
    tagcache::Result<tb::Manifest> m = tb::ReadManifest(dataset + "/dataset.json");
    if (!m.ok()) return Fail(m.status());
    if (verify->parsed()) {
      auto a = tb::OpenTarget(verify_targets[0], *m, 1, 1, credentials);
      if (!a.ok()) return Fail(a.status());
      auto b = tb::OpenTarget(verify_targets[1], *m, 1, 1, credentials);
      if (!b.ok()) return Fail(b.status());
      auto v = tb::CrossCheck(**a, **b, *m, run.workload, verify_ops, run.seed,
                              verify_audience_only);
      if (!v.ok()) return Fail(v.status());
      std::printf("verify: %llu ops compared, %llu mismatches\n",
                  static_cast<unsigned long long>(v->compared),
                  static_cast<unsigned long long>(v->mismatches));
      if (v->mismatches) {
        std::fprintf(stderr, "tagbench: first mismatch: %s\n", v->first_mismatch.c_str());
        return 1;
      }
      return 0;
    }
    tagcache::Result<tb::OpMix> mix = tb::ResolveMix(workload);
    if (!mix.ok()) return Fail(mix.status());
    run.mix = *mix;
    if (tagcache::Status s = tb::ValidateRun(run); !s.ok()) return Fail(s);
    auto target = tb::OpenTarget(target_url, *m, run.connections, run.depth, credentials,
                                 tagcache_clients);
    if (!target.ok()) return Fail(target.status());
    const bool show = progress_flag || ::isatty(STDERR_FILENO);
    const std::string who = (*target)->Kind();
    tb::ProgressFn progress;
    if (show) {
      progress = [&](double elapsed, double total, uint64_t ops, uint64_t errors) {
        static uint64_t last_ops = 0;  // progress runs on this thread only
        std::fprintf(stderr, "\r[%s %s] %5.1f/%.1f s  %llu ops  %llu ops/s  %llu errors   ",
                     who.c_str(), run.mix.name.c_str(), elapsed, total,
                     static_cast<unsigned long long>(ops),
                     static_cast<unsigned long long>(ops - last_ops),
                     static_cast<unsigned long long>(errors));
        last_ops = ops;
      };
    }
    tagcache::Result<tb::Report> report = tb::RunWorkload(**target, *m, run, progress);
    if (show) std::fprintf(stderr, "\n");
    if (!report.ok()) return Fail(report.status());
    if (auto mem = (*target)->Memory(); mem.ok()) {
      report->memory_data_bytes = mem->data_bytes;
      report->memory_rss_bytes = mem->rss_bytes;
    } else {
      std::fprintf(stderr, "tagbench: memory figures unavailable: %s\n",
                   mem.status().ToString().c_str());
    }
    if (!quiet) std::fputs(tb::FormatReport(*report).c_str(), stdout);
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << tb::ReportToJson(*report);
      out.close();
      if (!out) return Fail(tagcache::Status::IoError("cannot write " + json_path));
    }
    return 0;
  }

  if (compare->parsed()) {
    auto a = tb::ReadReportFile(files[0]);
    if (!a.ok()) return Fail(a.status());
    auto b = tb::ReadReportFile(files[1]);
    if (!b.ok()) return Fail(b.status());
    std::fputs(tb::FormatCompare(*a, *b, markdown).c_str(), stdout);
    return 0;
  }

  if (check->parsed()) {
    int rc = 0;
    for (const std::string& f : files) {
      auto r = tb::ReadReportFile(f);
      tagcache::Status s = r.ok() ? tb::CheckReport(*r) : r.status();
      if (!s.ok()) {
        Fail(s);
        rc = 1;
      } else {
        std::printf("%s: ok (%s, %s)\n", f.c_str(), r->target.c_str(), r->workload.c_str());
      }
    }
    return rc;
  }
  return 2;
}
