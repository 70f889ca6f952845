#include "tagbench/driver.h"

#include <array>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace tagcache::tagbench {
namespace {

struct KindStats {
  Histogram latency;
  uint64_t errors = 0;
  std::map<std::string, uint64_t> errors_by_status;
};

struct ThreadResult {
  std::array<KindStats, kOpKinds> kinds;
  Status status;
};

struct InFlight {
  OpKind kind;
  Clock::time_point start;  // intended send time (open loop) or actual (closed)
};

struct Shared {
  std::atomic<uint64_t> ops{0};
  std::atomic<uint64_t> errors{0};
};

// The closed loop in handler mode: completions arrive on the target's I/O
// thread, which records them and sends the next op itself. The driver
// thread only starts the loop and waits. Everything the handler touches is
// guarded by `mu` and `closed`: once Drive returns, a late completion finds
// `closed` (or the state gone: the handler holds it weakly) and does nothing.
struct HandlerLoop {
  std::mutex mu;
  std::condition_variable cv;  // the driver thread waits here for a free slot or the drain
  bool closed = false;
  std::shared_ptr<Session> session;  // kept alive for a handler mid-Send
  // Records a completion; returns the next op to send, if any. Under mu.
  std::function<std::optional<std::pair<Op, uint64_t>>(const Completion&)> step;

  void OnCompletion(const Completion& c) {
    std::optional<std::pair<Op, uint64_t>> next;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (closed) return;
      next = step(c);
    }
    if (!next) {
      cv.notify_all();  // no syscall unless the driver thread waits
      return;
    }
    // Outside the lock: a target may complete an op synchronously inside
    // Send, which would re-enter OnCompletion.
    session->Send(next->first, next->second);
  }
};

void Drive(Target& target, const Manifest& manifest, const RunOptions& o, int index,
           Clock::time_point begin, Clock::time_point measure_from, Clock::time_point end,
           Shared& shared, ThreadResult& out) {
  SessionOptions so;
  so.index = index;
  Result<std::unique_ptr<Session>> opened = target.OpenSession(so);
  if (!opened.ok()) {
    out.status = opened.status();
    return;
  }
  std::shared_ptr<Session> session = std::move(opened).value();
  OpGenerator gen(manifest, o.mix, o.workload,
                  bench::MixSeed(o.seed, static_cast<uint64_t>(index) + 100));
  std::unordered_map<uint64_t, InFlight> in_flight;
  uint64_t next_token = 0;
  const bool open_loop = o.rate > 0;
  const auto interval =
      open_loop ? std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(static_cast<double>(o.connections) / o.rate))
                : Clock::duration::zero();
  // Sessions start their schedules staggered over one interval.
  Clock::time_point next_send = begin + interval * index / std::max(1, o.connections);

  auto make = [&](Clock::time_point start) {
    std::pair<Op, uint64_t> op{gen.Next(), next_token++};
    in_flight.emplace(op.second, InFlight{op.first.kind, start});
    return op;
  };
  auto send = [&](Clock::time_point start) {
    auto [op, token] = make(start);
    session->Send(op, token);
  };
  auto record = [&](const Completion& c, Clock::time_point now) {
    auto it = in_flight.find(c.token);
    if (it == in_flight.end()) return;
    const InFlight f = it->second;
    in_flight.erase(it);
    shared.ops.fetch_add(1, std::memory_order_relaxed);
    if (!c.outcome.error.empty()) shared.errors.fetch_add(1, std::memory_order_relaxed);
    if (f.start < measure_from || now > end) return;
    KindStats& k = out.kinds[static_cast<size_t>(f.kind)];
    k.latency.Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - f.start).count()));
    if (!c.outcome.error.empty()) {
      ++k.errors;
      ++k.errors_by_status[c.outcome.error];
    }
  };

  // Handler mode (targets with their own I/O thread): in_flight and the
  // generator are shared with the handler, so they are touched under
  // loop->mu only.
  auto loop = std::make_shared<HandlerLoop>();
  loop->session = session;
  loop->step = [&](const Completion& c) -> std::optional<std::pair<Op, uint64_t>> {
    const auto now = Clock::now();
    record(c, now);
    if (open_loop || now >= end) return std::nullopt;
    return make(now);
  };
  std::weak_ptr<HandlerLoop> weak = loop;
  if (session->SetHandler([weak](Completion c) {
        if (std::shared_ptr<HandlerLoop> l = weak.lock()) l->OnCompletion(c);
      })) {
    std::unique_lock<std::mutex> lock(loop->mu);
    auto send_unlocked = [&](Clock::time_point start) {
      std::pair<Op, uint64_t> op = make(start);
      lock.unlock();
      session->Send(op.first, op.second);
      lock.lock();
    };
    if (!open_loop) {
      for (int i = 0; i < o.depth; ++i) send_unlocked(Clock::now());
      // Completions send the next op themselves until `end`.
      lock.unlock();
      std::this_thread::sleep_until(end);
      lock.lock();
    } else {
      while (Clock::now() < end) {
        const int n = static_cast<int>(in_flight.size());
        if (n < o.depth && Clock::now() >= next_send) {
          send_unlocked(next_send);  // latency counts from when it should have gone out
          next_send += interval;
        } else if (n < o.depth) {
          lock.unlock();
          std::this_thread::sleep_until(std::min(next_send, end));
          lock.lock();
        } else {
          loop->cv.wait_until(lock, end,
                              [&] { return static_cast<int>(in_flight.size()) < o.depth; });
        }
      }
    }
    // Past `end` nothing is sent again; wait (bounded) for the answers owed.
    loop->cv.wait_until(lock, Clock::now() + o.drain, [&] { return in_flight.empty(); });
    loop->closed = true;
    return;
  }

  if (!open_loop) {
    for (int i = 0; i < o.depth; ++i) send(Clock::now());
    while (Clock::now() < end) {
      std::optional<Completion> c = session->Next(end);
      if (!c) break;
      const auto now = Clock::now();
      record(*c, now);
      if (now < end) send(now);
    }
  } else {
    while (true) {
      const auto now = Clock::now();
      if (now >= end) break;
      if (static_cast<int>(in_flight.size()) < o.depth && now >= next_send) {
        send(next_send);  // latency counts from when it should have gone out
        next_send += interval;
        continue;
      }
      const auto wake =
          static_cast<int>(in_flight.size()) < o.depth ? std::min(next_send, end) : end;
      if (in_flight.empty()) {
        std::this_thread::sleep_until(wake);
        continue;
      }
      if (std::optional<Completion> c = session->Next(wake)) record(*c, Clock::now());
    }
  }
  // Drain: the answers still owed are read (a connection must not be left
  // mid-reply) but not recorded.
  const auto drain_until = Clock::now() + o.drain;
  while (!in_flight.empty() && Clock::now() < drain_until) {
    std::optional<Completion> c = session->Next(drain_until);
    if (!c) break;
    record(*c, Clock::now());
  }
}

}  // namespace

Status ValidateRun(const RunOptions& o) {
  if (o.connections < 1 || o.connections > 4096)
    return Status::BadRequest("connections must be in [1, 4096]");
  if (o.depth < 1 || o.depth > 65536)
    return Status::BadRequest("pipeline depth must be in [1, 65536]");
  if (!(o.rate >= 0) || o.rate > 1e9)
    return Status::BadRequest("rate must be >= 0 ops/s (0: closed loop)");
  if (!(o.warmup_s >= 0) || o.warmup_s > 86400)
    return Status::BadRequest("warm-up must be in [0, 86400] s");
  if (!(o.duration_s > 0) || o.duration_s > 86400)
    return Status::BadRequest("duration must be in (0, 86400] s");
  return ValidateWorkload(o.workload);
}

Result<Report> RunWorkload(Target& target, const Manifest& manifest, const RunOptions& o,
                           const ProgressFn& progress) {
  if (Status s = ValidateRun(o); !s.ok()) return s;
  bool any_tag = false;
  for (const TagInfo& t : manifest.tags) any_tag |= t.exists;
  if (!any_tag) return Status::BadRequest("the dataset has no tag with members: nothing to query");

  const int n = o.connections;
  std::vector<ThreadResult> results(static_cast<size_t>(n));
  Shared shared;
  const auto begin = Clock::now() + std::chrono::milliseconds(50);
  const auto measure_from = begin + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(o.warmup_s));
  const auto end = measure_from + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o.duration_s));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      std::this_thread::sleep_until(begin);
      Drive(target, manifest, o, i, begin, measure_from, end, shared,
            results[static_cast<size_t>(i)]);
    });
  }
  const double total_s = o.warmup_s + o.duration_s;
  if (progress) {
    while (Clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1000));
      const double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
      progress(std::min(elapsed, total_s), total_s, shared.ops.load(), shared.errors.load());
    }
  }
  for (auto& t : threads) t.join();
  for (const ThreadResult& r : results) {
    if (!r.status.ok()) return Status(r.status.code(), "opening a session: " + r.status.message());
  }

  Report report;
  report.target = target.Describe();
  report.target_kind = target.Kind();
  report.workload = o.mix.name;
  report.mode = o.rate > 0 ? "open" : "closed";
  report.connections = o.connections;
  report.depth = o.depth;
  report.rate = o.rate;
  report.warmup_s = o.warmup_s;
  report.duration_s = o.duration_s;
  report.seed = o.seed;
  report.users = manifest.spec.users;
  report.tags = manifest.spec.tags;
  report.assignments = manifest.final_assignments;
  for (int k = 0; k < kOpKinds; ++k) {
    KindStats merged;
    for (const ThreadResult& r : results) {
      const KindStats& s = r.kinds[static_cast<size_t>(k)];
      merged.latency.Merge(s.latency);
      merged.errors += s.errors;
      for (const auto& [name, c] : s.errors_by_status) merged.errors_by_status[name] += c;
    }
    if (merged.latency.count() == 0 && o.mix.shares[static_cast<size_t>(k)] <= 0) continue;
    OpReport op;
    op.op = OpKindName(static_cast<OpKind>(k));
    op.ops = merged.latency.count();
    op.errors = merged.errors;
    op.errors_by_status = std::move(merged.errors_by_status);
    op.throughput = static_cast<double>(op.ops) / o.duration_s;
    FillLatency(merged.latency, op);
    report.total_ops += op.ops;
    report.ops.push_back(std::move(op));
  }
  report.total_throughput = static_cast<double>(report.total_ops) / o.duration_s;
  return report;
}

}  // namespace tagcache::tagbench
