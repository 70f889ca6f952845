// tagcache-kafka: the Kafka connector. Parses flags, sets up logging and the
// signal handlers, and runs a kafka::Connector until SIGINT or SIGTERM
// (docs/KAFKA.md). The only translation unit that includes CLI11.
//
// Exit codes: 0 after a stop by signal with every in-flight event settled,
// 1 a runtime failure (fatal Kafka error, an event failing for good, or the
// shutdown timing out with events unacknowledged), 2 usage error.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "connector.h"
#include "tagcache/client/credential_flags.h"
#include "tagcache/client/credentials.h"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Set by the signal handler, read by the consume loop: the only state a
// handler may touch (a lock-free atomic store is async-signal-safe).
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void OnSignal(int) { g_stop.store(true); }

void SplitCommaList(const std::vector<std::string>& in, std::vector<std::string>& out) {
  for (const std::string& item : in) {
    size_t start = 0;
    while (start <= item.size()) {
      const size_t comma = item.find(',', start);
      const size_t end = comma == std::string::npos ? item.size() : comma;
      if (end > start) out.push_back(item.substr(start, end - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  tagcache::kafka::ConnectorOptions options;
  std::vector<std::string> topics;
  std::vector<std::string> seeds = {"127.0.0.1:7379"};
  std::vector<std::string> properties;
  std::string log_level = "info";
  bool from_beginning = false;
  size_t batch = options.sender.batch_events;
  int64_t linger_ms = options.sender.linger.count();
  size_t in_flight = options.sender.max_in_flight_batches;
  int64_t commit_interval_ms = options.commit_interval.count();
  int64_t stats_interval_s = 0;
  int64_t shutdown_timeout_s = 30;

  CLI::App app{
      "tagcache-kafka: consumes tag events (JSON, one per line) from Kafka and writes them to\n"
      "a tagcache cluster. Offsets are committed only up to events the cluster acknowledged\n"
      "(at-least-once; redelivery is harmless). See docs/KAFKA.md."};
  app.option_defaults()->always_capture_default();
  app.add_option("--brokers", options.brokers, "Kafka bootstrap servers, host:port[,host:port]")
      ->required();
  app.add_option("--group", options.group, "Consumer group id")->required();
  app.add_option("--topic", topics, "Topic to consume; repeatable or a comma-separated list")
      ->required();
  app.add_option("--seeds", seeds, "tagcache node addresses (host:port); repeatable or comma list")
      ->delimiter(',');
  app.add_option("-X", properties,
                 "librdkafka property key=value, applied after the connector's own; repeatable "
                 "(enable.auto.commit must stay false)");
  app.add_option("--offset-reset", options.offset_reset,
                 "Where a partition without a committed offset starts: earliest or latest")
      ->check(CLI::IsMember({"earliest", "latest"}));
  app.add_flag("--from-beginning", from_beginning, "Same as --offset-reset earliest (the default)");
  app.add_option("--batch", batch, "Events per ApplyEvents request")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--linger-ms", linger_ms, "Longest wait to fill a batch")
      ->check(CLI::Range(int64_t{0}, int64_t{60'000}));
  app.add_option("--in-flight", in_flight, "Batches sent and not yet answered")
      ->check(CLI::Range(size_t{1}, size_t{4096}));
  app.add_option("--max-queued-events", options.max_queued_events,
                 "Decoded events waiting for the sender before consumption pauses (0: twice "
                 "--batch times --in-flight)");
  app.add_option("--commit-interval-ms", commit_interval_ms,
                 "How often acknowledged offsets are committed")
      ->check(CLI::Range(int64_t{1}, int64_t{86'400'000}));
  app.add_option("--stats-interval", stats_interval_s,
                 "Seconds between stats lines in the log (0: off)")
      ->check(CLI::Range(int64_t{0}, int64_t{86'400}));
  app.add_option("--shutdown-timeout-s", shutdown_timeout_s,
                 "On SIGINT/SIGTERM, how long in-flight events may take to be acknowledged")
      ->check(CLI::Range(int64_t{0}, int64_t{3'600}));
  tagcache::client::CredentialFlags credentials;
  tagcache::client::AddCredentialFlags(app, credentials);
  app.add_option("--log-level", log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" that exit 0; the rest is usage.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }

  // Logs go to stderr, one line each: time, level, message.
  auto logger = spdlog::stderr_color_mt("tagcache-kafka");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(log_level));

  SplitCommaList(topics, options.topics);
  options.client.seeds.clear();
  SplitCommaList(seeds, options.client.seeds);
  options.client.client_name = "tagcache-kafka";
  // The token needs the write role on every node.
  if (tagcache::Status s = tagcache::client::ApplyCredentials(credentials, options.client);
      !s.ok()) {
    spdlog::error("{}", s.message());
    return kExitUsage;
  }
  for (const std::string& p : properties) {
    const size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      spdlog::error("-X expects key=value, got '{}'", p);
      return kExitUsage;
    }
    options.kafka_properties.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  if (from_beginning) options.offset_reset = "earliest";
  options.sender.batch_events = batch;
  options.sender.linger = std::chrono::milliseconds(linger_ms);
  options.sender.max_in_flight_batches = in_flight;
  options.commit_interval = std::chrono::milliseconds(commit_interval_ms);
  options.stats_interval = std::chrono::seconds(stats_interval_s);
  options.shutdown_timeout = std::chrono::seconds(shutdown_timeout_s);

  // Handlers before any thread starts (librdkafka's included), so whichever
  // thread gets the signal only sets the flag.
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  auto connector = tagcache::kafka::Connector::Create(std::move(options));
  if (!connector.ok()) {
    spdlog::error("{}", connector.status().ToString());
    return kExitUsage;
  }
  const tagcache::Status status = (*connector)->Run(g_stop);
  if (!(*connector)->Drained()) {
    // The sender thread still waits on the cluster: destroying the connector
    // would pull the client from under it. Nothing more is owed to anyone.
    spdlog::default_logger()->flush();
    std::_Exit(kExitFailure);
  }
  connector->reset();
  if (!status.ok()) {
    spdlog::error("{}", status.ToString());
    return kExitFailure;
  }
  spdlog::info("stopped");
  return 0;
}
