// Sends a stream of events to the cluster in batches: what `tagctl stream`
// and the Kafka connector share. Events are grouped into batches (a size
// bound and a time bound), several batches are in flight at once, and every
// event gets exactly one outcome:
//  - accepted: the cluster acknowledged it (applied, or ignored by the merge
//    rules as older than what it holds — both are "done");
//  - rejected: the cluster refused the event itself (BAD_REQUEST,
//    FUTURE_TIMESTAMP, UNKNOWN_TAG). A refused batch is split in halves and
//    resent until the refused events are isolated, so one bad event never
//    costs its neighbours. Any other refusal (UNAUTHORIZED, INTERNAL, ...)
//    is about the request: every event of the batch fails with it;
//  - failed: transient errors (IO_ERROR, OVERLOADED, deadline) are retried
//    with backoff until `retry_for` has passed since the batch's first
//    attempt, then the batch's events fail with the last status.
// Outcomes are reported per batch, on the client's I/O thread, in no
// particular order between batches.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"

namespace tagcache::ingest {

struct EventSenderOptions {
  // A batch is sent when it holds this many events...
  size_t batch_events = 2000;
  // ...or when its first event has waited this long (Poll() enforces it).
  std::chrono::milliseconds linger{20};
  // Batches sent and not yet answered; Add() blocks beyond it.
  size_t max_in_flight_batches = 8;
  // How long transient failures are retried (per batch). 0: no retry.
  std::chrono::milliseconds retry_for{60000};
  std::chrono::milliseconds retry_backoff_min{50};
  std::chrono::milliseconds retry_backoff_max{2000};
};

// The outcome of one event. `token` is the caller's (a line number, a
// Kafka offset, ...).
struct EventOutcome {
  uint64_t token = 0;
  Status status;  // OK: accepted; else rejected or failed with this status
};

// True for the codes a node gives one bad event of a batch (BAD_REQUEST,
// FUTURE_TIMESTAMP, UNKNOWN_TAG): the event is "rejected"; any other error
// outcome is "failed".
bool IsEventRejection(const Status& status);

// Called once per finished batch with every event's outcome, in the order
// the events were added. Runs on the client's I/O thread: must not block.
using OutcomeCallback = std::function<void(std::vector<EventOutcome>)>;

struct EventSenderStats {
  uint64_t events_added = 0;
  uint64_t accepted = 0;
  uint64_t applied = 0;
  uint64_t ignored = 0;   // accepted but not applied (older than held state)
  uint64_t rejected = 0;  // refused by the cluster: a bad event
  uint64_t failed = 0;    // transient errors past retry_for, refusals of a whole request
  uint64_t batches_sent = 0;
  uint64_t retries = 0;
};

class EventSender {
 public:
  // `client` must outlive the sender.
  EventSender(client::Client* client, EventSenderOptions options, OutcomeCallback on_outcome);
  // Flush() then destroy. REQUIRES: not called from a callback.
  ~EventSender();
  EventSender(const EventSender&) = delete;
  EventSender& operator=(const EventSender&) = delete;

  // Queues one event (sending the batch when full). Blocks while
  // max_in_flight_batches are outstanding. Thread-compatible: one producer
  // thread at a time.
  void Add(client::Event event, uint64_t token);
  // Sends the open batch if its linger time has passed. Call it regularly
  // when input is slow (e.g. every few ms from the reading loop).
  void Poll();
  // Sends the open batch now and waits until every batch has its outcome.
  void Flush();
  // Waits until every batch sent so far has its outcome, at most `limit`.
  // True when nothing is outstanding.
  bool WaitIdle(std::chrono::milliseconds limit);

  EventSenderStats stats() const;

 private:
  struct Batch;
  struct Shared;
  void SendOpenBatch();
  static void Send(const std::shared_ptr<Shared>& shared, std::shared_ptr<Batch> batch);

  client::Client* client_;
  EventSenderOptions options_;
  std::shared_ptr<Shared> shared_;  // outlives callbacks in flight
  std::shared_ptr<Batch> open_;     // the batch being filled (producer thread only)
};

}  // namespace tagcache::ingest
