#include "tagcache/ingest/event_sender.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>

namespace tagcache::ingest {

bool IsEventRejection(const Status& status) {
  return status.code() == StatusCode::kBadRequest ||
         status.code() == StatusCode::kFutureTimestamp ||
         status.code() == StatusCode::kUnknownTag;
}

namespace {

using Clock = std::chrono::steady_clock;

bool IsTransient(const Status& status) {
  return status.code() == StatusCode::kIoError || status.code() == StatusCode::kOverloaded;
}

// Anything but a rejection (UNAUTHORIZED, INTERNAL, WRONG_NODE...) is about
// the whole request: splitting the batch would only multiply it.
bool BlamesAnEvent(const Status& status) { return IsEventRejection(status); }

// What the producer filled and the cluster answers for. Its parts (the whole
// range at first, halves after a refusal) finish independently; the last
// one to finish reports the outcomes.
struct Root {
  std::vector<client::Event> events;
  std::vector<uint64_t> tokens;
  std::vector<EventOutcome> outcomes;  // slot i written only by the part covering i
  Clock::time_point first_added;
  std::atomic<size_t> parts_pending{1};
  std::atomic<uint64_t> applied{0};
  std::atomic<uint64_t> ignored{0};
};

}  // namespace

// One request's worth: the events [begin, end) of a root.
struct EventSender::Batch {
  std::shared_ptr<Root> root;
  size_t begin = 0;
  size_t end = 0;
  Clock::time_point first_attempt{};  // of this part; retry_for counts from it
  std::chrono::milliseconds backoff{0};
};

// State the I/O thread's callbacks and the retry timer share with the
// producer. Lock order: mu_ only; never held while calling the client (an
// async call may complete inline) or the user's callback.
struct EventSender::Shared {
  client::Client* client = nullptr;
  EventSenderOptions options;
  OutcomeCallback on_outcome;

  std::mutex mu;
  std::condition_variable idle_cv;  // in_flight decreased
  size_t in_flight = 0;             // roots sent whose outcomes are not yet reported
  EventSenderStats stats;           // all but events_added
  std::atomic<uint64_t> events_added{0};

  // Backoff timer: parts due for a resend. A thread of its own, because the
  // I/O thread must not sleep and the producer may be blocked in Add().
  std::condition_variable timer_cv;
  std::multimap<Clock::time_point, std::shared_ptr<Batch>> timers;
  bool stopping = false;
  std::thread timer_thread;
  std::minstd_rand rng{std::random_device{}()};

  void TimerLoop(const std::shared_ptr<Shared>& self) {
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      if (stopping && timers.empty()) return;
      if (timers.empty()) {
        timer_cv.wait(lock);
        continue;
      }
      const auto due = timers.begin()->first;
      if (Clock::now() < due) {
        timer_cv.wait_until(lock, due);
        continue;
      }
      std::shared_ptr<Batch> batch = std::move(timers.begin()->second);
      timers.erase(timers.begin());
      lock.unlock();
      EventSender::Send(self, std::move(batch));
      lock.lock();
    }
  }
};

EventSender::EventSender(client::Client* client, EventSenderOptions options,
                         OutcomeCallback on_outcome)
    : client_(client), options_(options), shared_(std::make_shared<Shared>()) {
  if (options_.batch_events == 0) options_.batch_events = 1;
  if (options_.max_in_flight_batches == 0) options_.max_in_flight_batches = 1;
  if (options_.retry_backoff_min.count() <= 0)
    options_.retry_backoff_min = std::chrono::milliseconds(1);
  options_.retry_backoff_max = std::max(options_.retry_backoff_max, options_.retry_backoff_min);
  shared_->client = client;
  shared_->options = options_;
  shared_->on_outcome = std::move(on_outcome);
  // The thread's reference ends with the thread, which the destructor joins.
  std::shared_ptr<Shared> self = shared_;
  shared_->timer_thread = std::thread([self] { self->TimerLoop(self); });
}

EventSender::~EventSender() {
  Flush();
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->stopping = true;
  }
  shared_->timer_cv.notify_all();
  shared_->timer_thread.join();
}

void EventSender::Add(client::Event event, uint64_t token) {
  if (!open_) {
    open_ = std::make_shared<Batch>();
    open_->root = std::make_shared<Root>();
    // Capped: a huge batch_events should cost memory only once filled.
    const size_t expected = std::min<size_t>(options_.batch_events, 4096);
    open_->root->events.reserve(expected);
    open_->root->tokens.reserve(expected);
    open_->root->first_added = Clock::now();
  }
  open_->root->events.push_back(std::move(event));
  open_->root->tokens.push_back(token);
  shared_->events_added.fetch_add(1, std::memory_order_relaxed);
  if (open_->root->events.size() >= options_.batch_events) SendOpenBatch();
}

void EventSender::Poll() {
  if (open_ && Clock::now() - open_->root->first_added >= options_.linger) SendOpenBatch();
}

void EventSender::Flush() {
  if (open_) SendOpenBatch();
  std::unique_lock<std::mutex> lock(shared_->mu);
  shared_->idle_cv.wait(lock, [&] { return shared_->in_flight == 0; });
}

bool EventSender::WaitIdle(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(shared_->mu);
  return shared_->idle_cv.wait_for(lock, limit, [&] { return shared_->in_flight == 0; });
}

EventSenderStats EventSender::stats() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  EventSenderStats s = shared_->stats;
  s.events_added = shared_->events_added.load(std::memory_order_relaxed);
  return s;
}

void EventSender::SendOpenBatch() {
  std::shared_ptr<Batch> batch = std::move(open_);
  open_.reset();
  Root& root = *batch->root;
  batch->begin = 0;
  batch->end = root.events.size();
  root.outcomes.resize(root.events.size());
  for (size_t i = 0; i < root.tokens.size(); ++i) root.outcomes[i].token = root.tokens[i];
  {
    std::unique_lock<std::mutex> lock(shared_->mu);
    shared_->idle_cv.wait(lock,
                          [&] { return shared_->in_flight < options_.max_in_flight_batches; });
    ++shared_->in_flight;
    ++shared_->stats.batches_sent;
  }
  batch->first_attempt = Clock::now();
  Send(shared_, std::move(batch));
}

namespace {

// Reports a finished root: the user's callback first, then the counters and
// the in-flight slot, so that Flush() returning means every callback ran.
template <typename SharedT>
void FinishRoot(const std::shared_ptr<SharedT>& shared, Root& root) {
  uint64_t accepted = 0, rejected = 0, failed = 0;
  for (const EventOutcome& o : root.outcomes) {
    if (o.status.ok()) {
      ++accepted;
    } else if (BlamesAnEvent(o.status)) {
      ++rejected;
    } else {
      ++failed;
    }
  }
  if (shared->on_outcome) {
    // A throwing callback would otherwise leave in_flight stuck and every
    // Flush() hanging; the contract forbids it, so the exception is dropped.
    try {
      shared->on_outcome(std::move(root.outcomes));
    } catch (...) {
    }
  }
  {
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->stats.accepted += accepted;
    shared->stats.applied += root.applied.load();
    shared->stats.ignored += root.ignored.load();
    shared->stats.rejected += rejected;
    shared->stats.failed += failed;
    --shared->in_flight;
  }
  shared->idle_cv.notify_all();
}

}  // namespace

void EventSender::Send(const std::shared_ptr<Shared>& shared, std::shared_ptr<Batch> batch) {
  const std::vector<client::Event>& all = batch->root->events;
  std::vector<client::Event> part_copy;
  const std::vector<client::Event>* events = &all;
  if (batch->begin != 0 || batch->end != all.size()) {
    part_copy.assign(all.begin() + static_cast<ptrdiff_t>(batch->begin),
                     all.begin() + static_cast<ptrdiff_t>(batch->end));
    events = &part_copy;
  }
  Shared* s = shared.get();
  auto done = [shared, batch](Result<client::ApplyEventsResult> result) mutable {
    Root& root = *batch->root;
    const EventSenderOptions& options = shared->options;
    if (result.ok()) {
      root.applied.fetch_add(result->applied, std::memory_order_relaxed);
      root.ignored.fetch_add(result->ignored, std::memory_order_relaxed);
      // Outcomes start OK; nothing to write.
    } else {
      Status status = result.status();
      if (IsTransient(status)) {
        const auto now = Clock::now();
        const auto deadline = batch->first_attempt + options.retry_for;
        if (now < deadline) {
          // Exponential backoff with +-20% jitter, never past the deadline:
          // the last attempt happens when retry_for runs out.
          batch->backoff = batch->backoff.count() == 0
                               ? options.retry_backoff_min
                               : std::min(batch->backoff * 2, options.retry_backoff_max);
          std::chrono::milliseconds delay;
          {
            std::lock_guard<std::mutex> lock(shared->mu);
            std::uniform_real_distribution<double> jitter(0.8, 1.2);
            delay = std::chrono::milliseconds(static_cast<int64_t>(
                static_cast<double>(batch->backoff.count()) * jitter(shared->rng)));
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
            delay = std::max(std::chrono::milliseconds(1), std::min(delay, left));
            ++shared->stats.retries;
            shared->timers.emplace(now + delay, std::move(batch));
          }
          shared->timer_cv.notify_one();
          return;
        }
        for (size_t i = batch->begin; i < batch->end; ++i) root.outcomes[i].status = status;
      } else if (!BlamesAnEvent(status)) {
        for (size_t i = batch->begin; i < batch->end; ++i) root.outcomes[i].status = status;
      } else if (batch->end - batch->begin > 1) {
        // A refusal fails the whole request; halve it until the refused
        // events stand alone, so their neighbours still get applied.
        const size_t mid = batch->begin + (batch->end - batch->begin) / 2;
        auto left = std::make_shared<Batch>();
        auto right = std::make_shared<Batch>();
        left->root = right->root = batch->root;
        left->begin = batch->begin;
        left->end = right->begin = mid;
        right->end = batch->end;
        left->first_attempt = right->first_attempt = Clock::now();
        root.parts_pending.fetch_add(1, std::memory_order_relaxed);
        EventSender::Send(shared, std::move(left));
        EventSender::Send(shared, std::move(right));
        return;
      } else {
        root.outcomes[batch->begin].status = status;
      }
    }
    if (root.parts_pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::shared_ptr<Root> keep = batch->root;
      batch.reset();
      FinishRoot(shared, *keep);
    }
  };
  s->client->ApplyEventsAsync(*events, std::move(done));
}

}  // namespace tagcache::ingest
