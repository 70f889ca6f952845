// The Kafka connector: consumes tag events (ingest/events.h JSON, one or
// several lines per message) from Kafka topics as a consumer group member,
// writes them to the cluster through an ingest::EventSender, and commits a
// partition's offset only once the cluster acknowledged (or refused) every
// event before it: at-least-once, and redelivery is harmless because the
// merge is idempotent (docs/KAFKA.md). An undecodable line is logged with its
// topic/partition/offset and skipped; it never blocks its partition.
//
// Threads: the caller's thread runs the consume loop (librdkafka callbacks
// run there too); one sender thread connects to the cluster and feeds the
// EventSender; outcomes arrive on the client's I/O thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"
#include "tagcache/ingest/event_sender.h"

namespace tagcache::kafka {

// EventSender settings for the connector: transient errors are retried for
// ten years, that is until the cluster is back, so a node outage stalls the
// connector (and its commits) instead of skipping events.
ingest::EventSenderOptions ConnectorSenderDefaults();

struct ConnectorOptions {
  // bootstrap.servers, group.id and the topics subscribed to. REQUIRED:
  // non-empty.
  std::string brokers;
  std::string group;
  std::vector<std::string> topics;
  // librdkafka properties applied after the connector's own (so they win),
  // e.g. {"security.protocol", "ssl"}. enable.auto.commit=true is refused.
  std::vector<std::pair<std::string, std::string>> kafka_properties;
  // auto.offset.reset: where a partition starts when the group has no
  // committed offset for it, "earliest" or "latest". Default: earliest
  // (replaying retained events is harmless, skipping them is not).
  std::string offset_reset = "earliest";

  client::ClientOptions client;
  ingest::EventSenderOptions sender = ConnectorSenderDefaults();
  // Decoded events waiting for the sender thread; beyond it the assigned
  // partitions are paused until half of it drained. 0: twice what the
  // sender keeps in flight (2 * batch_events * max_in_flight_batches).
  size_t max_queued_events = 0;

  // How often acknowledged offsets are committed (asynchronously).
  // Default: 1 s.
  std::chrono::milliseconds commit_interval{1000};
  // How often a stats line is logged; 0: never (a summary is still logged
  // at shutdown). Default: 0.
  std::chrono::milliseconds stats_interval{0};
  // At shutdown, how long in-flight events may take to be acknowledged.
  // Default: 30 s.
  std::chrono::milliseconds shutdown_timeout{30000};
  // Longest wait in one consume() call: bounds how late a stop is noticed.
  // Default: 100 ms.
  std::chrono::milliseconds poll_timeout{100};
};

class Connector {
 public:
  // Validates `options` and creates the Kafka consumer (no network I/O
  // yet). BAD_REQUEST names the bad option or librdkafka property.
  static Result<std::unique_ptr<Connector>> Create(ConnectorOptions options);
  // REQUIRES: Drained() (see Run).
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Subscribes and runs until `stop` becomes true, then shuts down: stops
  // consuming, waits up to shutdown_timeout for the events handed to the
  // cluster, commits what was acknowledged (synchronously), leaves the group.
  // OK after a stop; an error when the connector had to stop by itself (a
  // fatal Kafka error, an event failing for good). `stop` is read, never
  // written; a signal handler may set it. Call at most once.
  Status Run(const std::atomic<bool>& stop);

  // False when Run's shutdown gave up waiting for in-flight events: the
  // sender thread still blocks on the cluster, so neither this Connector
  // nor anything it uses may be destroyed; end the process with std::_Exit.
  // Their offsets were not committed: the events are redelivered later.
  bool Drained() const;

  class Impl;

 private:
  explicit Connector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagcache::kafka
