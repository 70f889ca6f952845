// TaskPool: a fixed set of threads that help callers run ParallelFor over
// shards. The calling thread always works on its own job too, so a pool of
// N threads gives N+1-way parallelism and a busy pool never deadlocks a
// caller. Thread-safe; many callers may run jobs at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tagcache::internal {

class TaskPool {
 public:
  // Starts `helpers` threads (0: every job runs on its caller alone).
  explicit TaskPool(int helpers);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Threads that may run one job's items at once, the caller included.
  int parallelism() const { return static_cast<int>(threads_.size()) + 1; }

  // Runs fn(item, lane) for every item in [0, n) and returns when all are
  // done. `lane` in [0, parallelism()) is unique among concurrent calls of
  // this job, so fn may index per-lane scratch with it.
  void ParallelFor(size_t n, const std::function<void(size_t item, int lane)>& fn);

 private:
  struct Job {
    const std::function<void(size_t, int)>* fn = nullptr;
    size_t n = 0;
    std::atomic<size_t> next{0};
    std::atomic<size_t> finished{0};
    std::atomic<int> lanes{1};  // lane 0 is the caller's
    std::mutex mu;
    std::condition_variable done;
  };
  // Claims and runs items of `job` until none are left.
  static void Work(Job& job, int lane);
  void HelperLoop();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tagcache::internal
