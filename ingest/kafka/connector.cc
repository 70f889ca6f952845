#include "connector.h"

#include <librdkafka/rdkafkacpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "message_decoder.h"
#include "offset_tracker.h"

namespace tagcache::kafka {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Refused outcomes logged per stats period; the rest are only counted, so a
// stream of bad events cannot flood the log from the I/O thread's buffer.
constexpr size_t kMaxOutcomeLogs = 1000;
// Events waiting this long without any outcome get a warning (repeated at
// this interval): the EventSender retries quietly while the cluster is down.
constexpr std::chrono::seconds kStallWarning(10);

// The cluster refused the event itself: resending cannot help, so it is
// logged like a poison message and counts as done. Any other error is one
// the EventSender gave up retrying: the event is not done.
bool IsRefusal(const Status& status) { return ingest::IsEventRejection(status); }

// Owns a librdkafka partition list (the C++ API hands out raw pointers).
struct PartitionList {
  std::vector<RdKafka::TopicPartition*> list;
  PartitionList() = default;
  PartitionList(const PartitionList&) = delete;
  PartitionList& operator=(const PartitionList&) = delete;
  ~PartitionList() { RdKafka::TopicPartition::destroy(list); }
  void Add(const TopicPartition& tp, int64_t offset) {
    list.push_back(RdKafka::TopicPartition::create(tp.topic, tp.partition, offset));
  }
};

TopicPartition Of(const RdKafka::TopicPartition& p) { return {p.topic(), p.partition()}; }

std::string Join(const std::vector<RdKafka::TopicPartition*>& parts) {
  std::string out;
  for (const RdKafka::TopicPartition* p : parts) {
    if (!out.empty()) out += ", ";
    out += ToString(Of(*p));
  }
  return out.empty() ? "(none)" : out;
}

}  // namespace

ingest::EventSenderOptions ConnectorSenderDefaults() {
  ingest::EventSenderOptions o;
  o.retry_for = std::chrono::hours(24 * 365 * 10);
  return o;
}

// Backpressure. When the cluster is slow or down, EventSender::Add blocks.
// Were Add called on the consume thread, the loop would stop calling
// consume(): after max.poll.interval.ms (5 min) librdkafka leaves the group,
// and rebalances of the whole group would wait on us in the meantime. So
// Add runs on a sender thread fed through a bounded queue, and the consume
// thread never blocks: when the queue is full it pauses the assigned
// partitions and keeps calling consume() (which then only serves callbacks:
// rebalances, commits, errors), and resumes them once half of the queue
// drained. Raising max.poll.interval.ms instead would hide a really stuck
// consumer and stall every rebalance for as long as the outage lasts.
class Connector::Impl : public RdKafka::RebalanceCb,
                        public RdKafka::EventCb,
                        public RdKafka::OffsetCommitCb {
 public:
  explicit Impl(ConnectorOptions options) : options_(std::move(options)) {
    if (options_.max_queued_events == 0) {
      // librdkafka's fetcher sleeps up to 1 s after its partitions are
      // resumed, so a pause must be rare and the half-full queue must last:
      // room for twice what the sender keeps in flight.
      options_.max_queued_events = std::max<size_t>(
          1, 2 * options_.sender.batch_events * options_.sender.max_in_flight_batches);
    }
  }

  ~Impl() override {
    // Run() joins the sender thread unless the shutdown timed out, in which
    // case the owner must _Exit instead of destroying us (Drained()).
    if (sender_thread_.joinable()) sender_thread_.join();
  }

  Status Init();
  Status Run(const std::atomic<bool>& stop);
  bool drained() const { return drained_; }

  // librdkafka callbacks. rebalance_cb and offset_commit_cb run on the
  // consume thread (inside consume(), commitSync() or close()); event_cb
  // runs there for errors and on librdkafka's threads for log lines.
  void rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& partitions) override;
  void event_cb(RdKafka::Event& event) override;
  void offset_commit_cb(RdKafka::ErrorCode err,
                        std::vector<RdKafka::TopicPartition*>& offsets) override;

 private:
  // A decoded message on its way to the sender thread.
  struct Work {
    std::vector<client::Event> events;
    uint64_t token = 0;
  };
  // A refused or failed event, logged later by the consume thread.
  struct OutcomeLog {
    MessageRef where;
    Status status;
    bool refused = false;
  };

  void HandleMessage(const RdKafka::Message& message);
  void Enqueue(Work work);
  void UpdateBackpressure();
  void SetPaused(bool paused);
  // Commits the tracker's candidates; sync waits and records the result.
  void Commit(bool sync, const char* why);
  void CommitList(const std::vector<std::pair<TopicPartition, int64_t>>& offsets, bool sync,
                  const char* why);
  void FlushOutcomeLogs();
  void WarnIfStalled(Clock::time_point now);
  void LogStats(const char* prefix);
  Status Shutdown(Status status);

  // Sender thread.
  void SenderMain();
  bool ConnectClient();
  void OnOutcomes(std::vector<ingest::EventOutcome> outcomes);  // client I/O thread

  ConnectorOptions options_;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;

  // Shared with the client's I/O thread.
  mutable std::mutex mu_;
  OffsetTracker tracker_;
  uint64_t acked_events_ = 0;
  uint64_t refused_events_ = 0;
  uint64_t failed_events_ = 0;
  std::vector<OutcomeLog> outcome_logs_;
  uint64_t outcome_logs_dropped_ = 0;
  std::atomic<bool> event_failed_{false};
  Clock::time_point last_outcome_ = Clock::now();

  // Set from event_cb on any thread.
  std::atomic<uint64_t> kafka_errors_{0};
  std::atomic<bool> kafka_fatal_{false};

  // Consume thread only.
  uint64_t messages_ = 0;
  uint64_t events_decoded_ = 0;
  uint64_t poison_ = 0;
  uint64_t commits_ = 0;
  uint64_t commit_errors_ = 0;
  bool paused_ = false;
  uint64_t pauses_ = 0;
  Clock::time_point last_stall_warning_{};
  Clock::time_point next_stall_check_{};
  Clock::time_point stats_since_ = Clock::now();
  uint64_t stats_acked_base_ = 0;

  // The handoff queue between the consume and the sender thread.
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;  // work queued, or stop
  std::condition_variable done_cv_;   // sender_done_
  std::deque<Work> queue_;
  size_t queued_events_ = 0;
  bool stop_sender_ = false;
  bool sender_done_ = false;
  std::atomic<bool> connected_{false};
  std::thread sender_thread_;
  bool drained_ = true;

  // Sender thread only, until it is joined.
  std::unique_ptr<client::Client> client_;
  std::unique_ptr<ingest::EventSender> sender_;
};

Status Connector::Impl::Init() {
  if (options_.brokers.empty()) return Status::BadRequest("no Kafka brokers given (--brokers)");
  if (options_.group.empty()) return Status::BadRequest("no consumer group given (--group)");
  if (options_.topics.empty()) return Status::BadRequest("no topic given (--topic)");
  for (const std::string& t : options_.topics) {
    if (t.empty()) return Status::BadRequest("empty topic name");
  }
  if (options_.offset_reset != "earliest" && options_.offset_reset != "latest") {
    return Status::BadRequest("offset reset must be earliest or latest, got '" +
                              options_.offset_reset + "'");
  }
  if (options_.commit_interval.count() <= 0) {
    return Status::BadRequest("the commit interval must be positive");
  }

  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  auto set = [&](const std::string& key, const std::string& value) -> Status {
    if (conf->set(key, value, err) != RdKafka::Conf::CONF_OK) {
      return Status::BadRequest("librdkafka property " + key + "=" + value + ": " + err);
    }
    return Status::Ok();
  };
  const std::pair<const char*, std::string> own[] = {
      {"bootstrap.servers", options_.brokers},
      {"group.id", options_.group},
      {"client.id", "tagcache-kafka"},
      // Offsets are committed explicitly, only up to acknowledged events.
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", options_.offset_reset},
      {"enable.partition.eof", "false"},
  };
  for (const auto& [key, value] : own) {
    if (Status s = set(key, value); !s.ok()) return s;
  }
  for (const auto& [key, value] : options_.kafka_properties) {
    if (Status s = set(key, value); !s.ok()) return s;
  }
  std::string auto_commit;
  if (conf->get("enable.auto.commit", auto_commit) == RdKafka::Conf::CONF_OK &&
      auto_commit != "false") {
    return Status::BadRequest(
        "enable.auto.commit must stay false: the connector commits only acknowledged offsets");
  }
  if (conf->set("rebalance_cb", static_cast<RdKafka::RebalanceCb*>(this), err) !=
          RdKafka::Conf::CONF_OK ||
      conf->set("event_cb", static_cast<RdKafka::EventCb*>(this), err) != RdKafka::Conf::CONF_OK ||
      conf->set("offset_commit_cb", static_cast<RdKafka::OffsetCommitCb*>(this), err) !=
          RdKafka::Conf::CONF_OK) {
    return Status::Internal("librdkafka callbacks: " + err);
  }
  consumer_.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer_) return Status::BadRequest("cannot create the Kafka consumer: " + err);
  return Status::Ok();
}

Status Connector::Impl::Run(const std::atomic<bool>& stop) {
  if (RdKafka::ErrorCode e = consumer_->subscribe(options_.topics); e != RdKafka::ERR_NO_ERROR) {
    consumer_->close();
    return Status::BadRequest("subscribe: " + RdKafka::err2str(e));
  }
  std::string topics;
  for (const std::string& t : options_.topics) topics += (topics.empty() ? "" : ",") + t;
  spdlog::info("consuming topics {} as group {} from {}; writing to {}", topics, options_.group,
               options_.brokers, fmt::join(options_.client.seeds, ","));

  sender_thread_ = std::thread([this] { SenderMain(); });

  Clock::time_point next_commit = Clock::now() + options_.commit_interval;
  Clock::time_point next_stats = Clock::now() + options_.stats_interval;
  stats_since_ = Clock::now();
  Status status;
  while (!stop.load(std::memory_order_relaxed)) {
    if (event_failed_.load()) {
      status = Status::IoError("an event failed for good (logged above); stopping");
      break;
    }
    if (kafka_fatal_.load()) {
      std::string reason;
      consumer_->fatal_error(reason);
      status = Status::Internal("fatal Kafka error: " + reason);
      break;
    }
    std::unique_ptr<RdKafka::Message> message(
        consumer_->consume(static_cast<int>(options_.poll_timeout.count())));
    if (message) HandleMessage(*message);

    FlushOutcomeLogs();
    UpdateBackpressure();
    const Clock::time_point now = Clock::now();
    WarnIfStalled(now);
    if (now >= next_commit) {
      Commit(/*sync=*/false, "periodic");
      next_commit = now + options_.commit_interval;
    }
    if (options_.stats_interval.count() > 0 && now >= next_stats) {
      LogStats("stats");
      next_stats = now + options_.stats_interval;
    }
  }
  return Shutdown(std::move(status));
}

void Connector::Impl::HandleMessage(const RdKafka::Message& message) {
  switch (message.err()) {
    case RdKafka::ERR_NO_ERROR:
      break;
    case RdKafka::ERR__TIMED_OUT:
    case RdKafka::ERR__PARTITION_EOF:
      return;
    default:
      ++kafka_errors_;
      spdlog::warn("Kafka consumer error: {}", message.errstr());
      return;
  }
  ++messages_;
  const TopicPartition tp{message.topic_name(), message.partition()};
  const int64_t offset = message.offset();
  const std::string_view value(static_cast<const char*>(message.payload()), message.len());
  DecodedMessage decoded = DecodeMessage(value);
  for (const std::string& error : decoded.errors) {
    ++poison_;
    spdlog::error("poison message topic={} partition={} offset={}: {}", tp.topic, tp.partition,
                  offset, error);
  }
  events_decoded_ += decoded.events.size();

  std::optional<uint64_t> token;
  std::optional<int64_t> next;
  {
    std::lock_guard lock(mu_);
    next = tracker_.NextOffset(tp);
    token = tracker_.Consumed(tp, offset, static_cast<uint32_t>(decoded.events.size()));
  }
  if (token && next && offset < *next) {
    spdlog::warn("{} went back from offset {} to {}: its tracking restarts there", ToString(tp),
                 *next, offset);
  }
  if (!token) {
    // Only after a revocation raced with a fetched message: the new owner
    // consumes it again.
    spdlog::debug("message {} offset {} of an unassigned partition: ignored", ToString(tp), offset);
    return;
  }
  if (!decoded.events.empty()) Enqueue(Work{std::move(decoded.events), *token});
}

void Connector::Impl::Enqueue(Work work) {
  bool was_empty;
  {
    std::lock_guard lock(queue_mu_);
    was_empty = queue_.empty();
    queued_events_ += work.events.size();
    queue_.push_back(std::move(work));
  }
  // The sender thread only waits when the queue is empty.
  if (was_empty) queue_cv_.notify_one();
}

void Connector::Impl::UpdateBackpressure() {
  size_t queued;
  {
    std::lock_guard lock(queue_mu_);
    queued = queued_events_;
  }
  if (!paused_ && queued >= options_.max_queued_events) {
    SetPaused(true);
  } else if (paused_ && queued <= options_.max_queued_events / 2) {
    SetPaused(false);
  }
}

void Connector::Impl::SetPaused(bool paused) {
  std::vector<RdKafka::TopicPartition*> parts;
  if (consumer_->assignment(parts) != RdKafka::ERR_NO_ERROR) {
    RdKafka::TopicPartition::destroy(parts);
    return;
  }
  const RdKafka::ErrorCode e = paused ? consumer_->pause(parts) : consumer_->resume(parts);
  RdKafka::TopicPartition::destroy(parts);
  if (e != RdKafka::ERR_NO_ERROR) {
    spdlog::warn("cannot {} partitions: {}", paused ? "pause" : "resume", RdKafka::err2str(e));
    return;
  }
  paused_ = paused;
  if (paused) ++pauses_;
  // Debug only: under a sustained load this toggles often; the stats line
  // shows the state and the count.
  spdlog::debug("{} consumption", paused ? "paused" : "resumed");
}

void Connector::Impl::Commit(bool sync, const char* why) {
  std::vector<std::pair<TopicPartition, int64_t>> candidates;
  {
    std::lock_guard lock(mu_);
    candidates = tracker_.CommitCandidates();
  }
  CommitList(candidates, sync, why);
}

void Connector::Impl::CommitList(const std::vector<std::pair<TopicPartition, int64_t>>& offsets,
                                 bool sync, const char* why) {
  if (offsets.empty()) return;
  PartitionList parts;
  for (const auto& [tp, offset] : offsets) parts.Add(tp, offset);
  if (!sync) {
    // The outcome arrives through offset_commit_cb.
    if (RdKafka::ErrorCode e = consumer_->commitAsync(parts.list); e != RdKafka::ERR_NO_ERROR) {
      ++commit_errors_;
      spdlog::warn("{} commit failed: {}", why, RdKafka::err2str(e));
    }
    return;
  }
  const RdKafka::ErrorCode e = consumer_->commitSync(parts.list);
  if (e != RdKafka::ERR_NO_ERROR) {
    ++commit_errors_;
    spdlog::warn("{} commit failed: {}", why, RdKafka::err2str(e));
    return;
  }
  std::string done;
  for (const RdKafka::TopicPartition* p : parts.list) {
    if (p->err() != RdKafka::ERR_NO_ERROR) {
      ++commit_errors_;
      spdlog::warn("{} commit of {} offset {} failed: {}", why, ToString(Of(*p)), p->offset(),
                   RdKafka::err2str(p->err()));
      continue;
    }
    ++commits_;
    {
      std::lock_guard lock(mu_);
      tracker_.MarkCommitted(Of(*p), p->offset());
    }
    done += fmt::format("{}{}={}", done.empty() ? "" : " ", ToString(Of(*p)), p->offset());
  }
  if (!done.empty()) spdlog::info("{} commit: {}", why, done);
}

void Connector::Impl::offset_commit_cb(RdKafka::ErrorCode err,
                                       std::vector<RdKafka::TopicPartition*>& offsets) {
  if (err == RdKafka::ERR__NO_OFFSET) return;  // nothing to commit: not an error
  for (const RdKafka::TopicPartition* p : offsets) {
    const RdKafka::ErrorCode e = p->err() != RdKafka::ERR_NO_ERROR ? p->err() : err;
    if (e != RdKafka::ERR_NO_ERROR) {
      ++commit_errors_;
      spdlog::warn("commit of {} offset {} failed: {}", ToString(Of(*p)), p->offset(),
                   RdKafka::err2str(e));
      continue;
    }
    ++commits_;
    {
      std::lock_guard lock(mu_);
      tracker_.MarkCommitted(Of(*p), p->offset());
    }
    spdlog::debug("committed {} offset {}", ToString(Of(*p)), p->offset());
  }
}

void Connector::Impl::rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                                   std::vector<RdKafka::TopicPartition*>& partitions) {
  const bool cooperative = consumer->rebalance_protocol() == "COOPERATIVE";
  if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
    {
      std::lock_guard lock(mu_);
      for (const RdKafka::TopicPartition* p : partitions) tracker_.Assign(Of(*p));
    }
    if (cooperative) {
      std::unique_ptr<RdKafka::Error> error(consumer->incremental_assign(partitions));
      if (error) spdlog::error("incremental assign failed: {}", error->str());
    } else if (RdKafka::ErrorCode e = consumer->assign(partitions); e != RdKafka::ERR_NO_ERROR) {
      spdlog::error("assign failed: {}", RdKafka::err2str(e));
    }
    // A partition is assigned unpaused; keep backpressure in force.
    if (paused_) consumer->pause(partitions);
    spdlog::info("assigned partitions: {}", Join(partitions));
    return;
  }

  // Revoked (or a rebalance error, after which nothing is assigned): commit
  // what is done for the partitions leaving us, then forget them. Events of
  // theirs still in flight complete unseen; the next owner consumes them
  // again from the committed offset, which is harmless.
  const bool lost = consumer->assignment_lost();
  if (err == RdKafka::ERR__REVOKE_PARTITIONS && !lost) {
    std::vector<std::pair<TopicPartition, int64_t>> candidates;
    {
      std::lock_guard lock(mu_);
      for (auto& [tp, offset] : tracker_.CommitCandidates()) {
        for (const RdKafka::TopicPartition* p : partitions) {
          if (Of(*p) == tp) candidates.emplace_back(tp, offset);
        }
      }
    }
    CommitList(candidates, /*sync=*/true, "revocation");
  } else if (err != RdKafka::ERR__REVOKE_PARTITIONS) {
    spdlog::error("rebalance error: {}", RdKafka::err2str(err));
  }
  {
    std::lock_guard lock(mu_);
    if (err == RdKafka::ERR__REVOKE_PARTITIONS && cooperative) {
      for (const RdKafka::TopicPartition* p : partitions) tracker_.Revoke(Of(*p));
    } else {
      tracker_.RevokeAll();
    }
  }
  if (cooperative && err == RdKafka::ERR__REVOKE_PARTITIONS) {
    std::unique_ptr<RdKafka::Error> error(consumer->incremental_unassign(partitions));
    if (error) spdlog::error("incremental unassign failed: {}", error->str());
  } else {
    consumer->unassign();
  }
  spdlog::info("{} partitions: {}", lost ? "lost" : "revoked", Join(partitions));
}

void Connector::Impl::event_cb(RdKafka::Event& event) {
  switch (event.type()) {
    case RdKafka::Event::EVENT_ERROR:
      if (event.fatal()) {
        kafka_fatal_ = true;
        spdlog::error("fatal Kafka error: {}: {}", RdKafka::err2str(event.err()), event.str());
      } else {
        ++kafka_errors_;
        spdlog::warn("Kafka error: {}: {}", RdKafka::err2str(event.err()), event.str());
      }
      break;
    case RdKafka::Event::EVENT_LOG: {
      const int severity = event.severity();
      const spdlog::level::level_enum level =
          severity <= RdKafka::Event::EVENT_SEVERITY_ERROR     ? spdlog::level::err
          : severity == RdKafka::Event::EVENT_SEVERITY_WARNING ? spdlog::level::warn
          : severity == RdKafka::Event::EVENT_SEVERITY_DEBUG   ? spdlog::level::debug
                                                               : spdlog::level::info;
      spdlog::log(level, "librdkafka {}: {}", event.fac(), event.str());
      break;
    }
    default:
      break;
  }
}

void Connector::Impl::FlushOutcomeLogs() {
  std::vector<OutcomeLog> logs;
  uint64_t dropped = 0;
  {
    std::lock_guard lock(mu_);
    if (outcome_logs_.empty() && outcome_logs_dropped_ == 0) return;
    logs.swap(outcome_logs_);
    dropped = std::exchange(outcome_logs_dropped_, 0);
  }
  for (const OutcomeLog& log : logs) {
    if (log.refused) {
      spdlog::error("refused event topic={} partition={} offset={}: {}", log.where.tp.topic,
                    log.where.tp.partition, log.where.offset, log.status.ToString());
    } else {
      spdlog::error(
          "event topic={} partition={} offset={} failed after retries: {}; it stays "
          "uncommitted",
          log.where.tp.topic, log.where.tp.partition, log.where.offset, log.status.ToString());
    }
  }
  if (dropped > 0) spdlog::error("{} more refused or failed events (not logged)", dropped);
}

void Connector::Impl::WarnIfStalled(Clock::time_point now) {
  if (now < next_stall_check_) return;
  next_stall_check_ = now + std::chrono::seconds(1);
  if (now - last_stall_warning_ < kStallWarning) return;
  size_t pending;
  Clock::time_point last;
  {
    std::lock_guard lock(mu_);
    pending = tracker_.pending_messages();
    last = last_outcome_;
    // Idle is not stalled: the clock starts when there is work.
    if (pending == 0) last_outcome_ = now;
  }
  if (pending == 0 || now - last < kStallWarning) return;
  last_stall_warning_ = now;
  spdlog::warn(
      "no acknowledgement from the tagcache cluster for {} s; {} messages wait (retrying; their "
      "offsets are not committed)",
      std::chrono::duration_cast<std::chrono::seconds>(now - last).count(), pending);
}

void Connector::Impl::LogStats(const char* prefix) {
  const Clock::time_point now = Clock::now();
  std::vector<PartitionStatus> partitions;
  uint64_t acked, refused, failed;
  {
    std::lock_guard lock(mu_);
    partitions = tracker_.Status();
    acked = acked_events_;
    refused = refused_events_;
    failed = failed_events_;
  }
  size_t queued;
  {
    std::lock_guard lock(queue_mu_);
    queued = queued_events_;
  }
  const double seconds = std::chrono::duration<double>(now - stats_since_).count();
  const double rate = seconds > 0 ? static_cast<double>(acked - stats_acked_base_) / seconds : 0;
  stats_since_ = now;
  stats_acked_base_ = acked;

  std::string parts;
  for (const PartitionStatus& p : partitions) {
    int64_t low = RdKafka::Topic::OFFSET_INVALID, high = RdKafka::Topic::OFFSET_INVALID;
    consumer_->get_watermark_offsets(p.tp.topic, p.tp.partition, &low, &high);
    auto num = [](int64_t v) { return v < 0 ? std::string("-") : std::to_string(v); };
    // Lag: messages not yet acknowledged, whether consumed or not.
    const std::string lag = high >= 0 && p.committable >= 0
                                ? std::to_string(std::max<int64_t>(0, high - p.committable))
                                : "-";
    parts +=
        fmt::format(" | {} committed={} committable={} end={} lag={} pending={}", ToString(p.tp),
                    num(p.committed), num(p.committable), num(high), lag, p.pending_events);
  }
  spdlog::info(
      "{}: consumed={} events={} acked={} events/s={:.1f} poison={} refused={} failed={} "
      "queued={} paused={} pauses={} connected={} commits={} commit_errors={} kafka_errors={}{}",
      prefix, messages_, events_decoded_, acked, rate, poison_, refused, failed, queued,
      paused_ ? "yes" : "no", pauses_, connected_.load() ? "yes" : "no", commits_, commit_errors_,
      kafka_errors_.load(), parts.empty() ? " | no partitions" : parts);
}

Status Connector::Impl::Shutdown(Status status) {
  spdlog::info("stopping: waiting up to {} ms for in-flight events",
               options_.shutdown_timeout.count());
  // The sender thread sends what is queued, flushes, and exits; it may block
  // on a cluster that is down, hence the bounded wait.
  {
    std::unique_lock lock(queue_mu_);
    stop_sender_ = true;
    queue_cv_.notify_all();
    drained_ = done_cv_.wait_for(lock, options_.shutdown_timeout, [&] { return sender_done_; });
  }
  if (drained_) {
    sender_thread_.join();
  } else {
    std::lock_guard lock(mu_);
    uint64_t pending = 0;
    for (const PartitionStatus& p : tracker_.Status()) pending += p.pending_events;
    spdlog::error(
        "shutdown timeout: {} events still unacknowledged; their offsets are not committed and "
        "they will be redelivered",
        pending);
    // The thread still uses the client and the sender; Drained() tells the
    // owner not to destroy anything.
    sender_thread_.detach();
  }
  FlushOutcomeLogs();
  Commit(/*sync=*/true, "shutdown");
  LogStats("final");
  // close() revokes the assignment through rebalance_cb (which finds
  // nothing new to commit) and leaves the group.
  if (RdKafka::ErrorCode e = consumer_->close(); e != RdKafka::ERR_NO_ERROR) {
    spdlog::warn("closing the consumer: {}", RdKafka::err2str(e));
  }
  if (drained_) {
    sender_.reset();
    client_.reset();
  }
  return status;
}

// ---- Sender thread

bool Connector::Impl::ConnectClient() {
  milliseconds backoff(200);
  for (;;) {
    Result<std::unique_ptr<client::Client>> client = client::Client::Connect(options_.client);
    if (client.ok()) {
      client_ = std::move(client).value();
      connected_ = true;
      spdlog::info("connected to the tagcache cluster ({} nodes)", client_->nodes().size());
      return true;
    }
    spdlog::warn("cannot connect to the tagcache cluster: {}; retrying in {} ms",
                 client.status().ToString(), backoff.count());
    std::unique_lock lock(queue_mu_);
    if (queue_cv_.wait_for(lock, backoff, [&] { return stop_sender_; })) return false;
    backoff = std::min(backoff * 2, milliseconds(2000));
  }
}

void Connector::Impl::SenderMain() {
  if (ConnectClient()) {
    sender_ = std::make_unique<ingest::EventSender>(
        client_.get(), options_.sender,
        [this](std::vector<ingest::EventOutcome> outcomes) { OnOutcomes(std::move(outcomes)); });
    // Poll() often enough to honour the linger time of a partial batch.
    const milliseconds tick =
        std::clamp(options_.sender.linger / 2, milliseconds(1), milliseconds(50));
    for (;;) {
      std::deque<Work> work;
      {
        std::unique_lock lock(queue_mu_);
        queue_cv_.wait_for(lock, tick, [&] { return !queue_.empty() || stop_sender_; });
        if (queue_.empty() && stop_sender_) break;
        work.swap(queue_);
        queued_events_ = 0;
      }
      for (Work& w : work) {
        for (client::Event& e : w.events) sender_->Add(std::move(e), w.token);
      }
      sender_->Poll();
    }
    sender_->Flush();
  }
  // Not connected (stopped first): whatever was queued stays uncommitted.
  std::lock_guard lock(queue_mu_);
  sender_done_ = true;
  done_cv_.notify_all();
}

void Connector::Impl::OnOutcomes(std::vector<ingest::EventOutcome> outcomes) {
  // Runs on the client's I/O thread: bookkeeping only, logging is left to
  // the consume thread.
  std::lock_guard lock(mu_);
  last_outcome_ = Clock::now();
  for (const ingest::EventOutcome& o : outcomes) {
    if (o.status.ok()) {
      ++acked_events_;
      tracker_.Done(o.token);
      continue;
    }
    const bool refused = IsRefusal(o.status);
    std::optional<MessageRef> where;
    if (refused) {
      ++refused_events_;
      where = tracker_.Done(o.token);
    } else {
      // Not done: the partition's commits stop before this message, and the
      // connector stops so that a restart delivers it again.
      ++failed_events_;
      where = tracker_.Find(o.token);
      event_failed_ = true;
    }
    if (!where) continue;  // its partition was revoked meanwhile
    if (outcome_logs_.size() < kMaxOutcomeLogs) {
      outcome_logs_.push_back({*where, o.status, refused});
    } else {
      ++outcome_logs_dropped_;
    }
  }
}

// ---- Connector

Result<std::unique_ptr<Connector>> Connector::Create(ConnectorOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<Connector>(new Connector(std::move(impl)));
}

Connector::Connector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connector::~Connector() = default;

Status Connector::Run(const std::atomic<bool>& stop) { return impl_->Run(stop); }

bool Connector::Drained() const { return impl_->drained(); }

}  // namespace tagcache::kafka
