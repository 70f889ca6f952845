// Runs a workload against a Target: one thread per connection, each with
// its own Session and OpGenerator (seeded from the run's seed and its
// index), recording per-op latency into thread-local Histograms that are
// merged at the end.
//
// Closed loop: every session keeps `depth` ops in flight; a completion sends
// the next. Open loop (rate > 0): each session sends at its share of the
// rate on a fixed schedule, at most `depth` in flight, and latency runs from
// the op's *intended* send time, so a server that falls behind shows its
// queueing in the percentiles instead of silently slowing the sender
// (coordinated omission).
//
// Only ops sent after the warm-up and completed before the end of the
// window are recorded; the ops still in flight at the end are drained (up to
// `drain`) and dropped. Errors are counted by status; they never stop a run.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>

#include "tagbench/dataset.h"
#include "tagbench/op_mix.h"
#include "tagbench/report.h"
#include "tagbench/target.h"
#include "tagbench/workload.h"

namespace tagcache::tagbench {

struct RunOptions {
  int connections = 32;  // sessions (threads). REQUIRES: >= 1
  int depth = 16;        // ops in flight per session. REQUIRES: >= 1
  double rate = 0;       // > 0: open loop at this many ops/s in total
  double warmup_s = 2;
  double duration_s = 10;
  uint64_t seed = 1;
  std::chrono::milliseconds drain{10000};
  OpMix mix;
  WorkloadOptions workload;
};

// BAD_REQUEST naming the invalid option.
Status ValidateRun(const RunOptions& options);

// Live progress, called about once a second from the calling thread:
// seconds elapsed, total, ops completed so far (warm-up included), errors.
using ProgressFn =
    std::function<void(double elapsed_s, double total_s, uint64_t ops, uint64_t errors)>;

// Runs the workload and fills a Report (without memory figures). Fails only
// when the options are invalid or a session cannot be opened.
Result<Report> RunWorkload(Target& target, const Manifest& manifest, const RunOptions& options,
                           const ProgressFn& progress = nullptr);

}  // namespace tagcache::tagbench
