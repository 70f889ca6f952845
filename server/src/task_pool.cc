#include "task_pool.h"

namespace tagcache::internal {

TaskPool::TaskPool(int helpers) {
  for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { HelperLoop(); });
}

TaskPool::~TaskPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void TaskPool::Work(Job& job, int lane) {
  size_t ran = 0;
  for (size_t i; (i = job.next.fetch_add(1, std::memory_order_relaxed)) < job.n;) {
    (*job.fn)(i, lane);
    ++ran;
  }
  if (ran > 0 && job.finished.fetch_add(ran, std::memory_order_acq_rel) + ran == job.n) {
    std::lock_guard<std::mutex> lock(job.mu);
    job.done.notify_all();
  }
}

void TaskPool::HelperLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    std::shared_ptr<Job> job = queue_.front();
    // Every helper that could join is joining now: later ones find the
    // items claimed anyway, so the job leaves the queue once it has enough.
    int lane = job->lanes.fetch_add(1);
    if (lane + 1 >= parallelism() || job->next.load() >= job->n) queue_.pop_front();
    lock.unlock();
    Work(*job, lane);
    lock.lock();
  }
}

void TaskPool::ParallelFor(size_t n, const std::function<void(size_t, int)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
  }
  wake_.notify_all();
  Work(*job, 0);
  {
    std::unique_lock<std::mutex> lock(job->mu);
    job->done.wait(lock, [&] { return job->finished.load(std::memory_order_acquire) == n; });
  }
  // The job may still sit in the queue if no helper woke for it; remove it
  // so no helper picks up a finished job whose `fn` is gone.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (*it == job) {
      queue_.erase(it);
      break;
    }
  }
}

}  // namespace tagcache::internal
