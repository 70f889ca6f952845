// tagctl stream: NDJSON events from stdin (or a file) to the cluster
// (docs/CLI.md, "stream"). Lines are decoded and handed to an EventSender;
// the input is read with poll() so that a slow pipe (kcat on a quiet topic)
// still gets its partial batches sent after --linger-ms.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "commands.h"
#include "tagcache/client/client.h"
#include "tagcache/ingest/event_sender.h"
#include "tagcache/ingest/events.h"

namespace tagcache::tagctl {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kExitFailed = 1;
// A longer line is reported as bad and skipped, so one runaway producer
// cannot make the reader buffer without bound.
constexpr size_t kMaxLineBytes = size_t{1} << 20;
constexpr size_t kReadChunk = size_t{256} << 10;
// Longest sleep in poll() while nothing is pending, so that progress lines
// and outcome reports still come out on a quiet input.
constexpr milliseconds kMaxIdleWait{200};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Lines of a file descriptor through one buffer; a line is a view into it,
// valid until the next call. Never blocks longer than the wait it is given.
class LineReader {
 public:
  enum class Next {
    kLine,     // *line is the next line (without its '\n')
    kTooLong,  // a line longer than kMaxLineBytes: skipped to its end
    kIdle,     // nothing arrived within the wait
    kEof,
    kError,  // error() says what
  };

  explicit LineReader(int fd) : fd_(fd), buf_(kMaxLineBytes + kReadChunk) {}

  Next Read(milliseconds wait, std::string_view* line) {
    refilled_ = false;
    while (true) {
      // A complete line already buffered?
      if (const char* nl = FindNewline()) {
        const size_t len = static_cast<size_t>(nl - (buf_.data() + start_));
        const size_t begin = start_;
        start_ += len + 1;
        scanned_ = start_;
        if (discarding_) {
          discarding_ = false;
          continue;  // the rest of a line already reported too long
        }
        if (len > kMaxLineBytes) return Next::kTooLong;  // whole, '\n' included: no skipping
        *line = std::string_view(buf_.data() + begin, len);
        return Next::kLine;
      }
      const size_t pending = end_ - start_;
      if (pending > kMaxLineBytes) {
        // Drop what is held; the reader skips to the next '\n'.
        start_ = scanned_ = end_;
        if (!discarding_) return TooLong();
      }
      if (eof_) {
        if (pending == 0 || discarding_) {
          start_ = scanned_ = end_;
          return Next::kEof;
        }
        *line = std::string_view(buf_.data() + start_, pending);  // last line, no '\n'
        start_ = scanned_ = end_;
        return Next::kLine;
      }
      refilled_ = true;
      switch (Fill(wait)) {
        case Next::kIdle:
          return Next::kIdle;
        case Next::kError:
          return Next::kError;
        default:
          break;
      }
      wait = milliseconds(0);  // data came: only what is already there from now on
    }
  }

  const std::string& error() const { return error_; }
  // Whether the last Read() had to read (or wait for) more input.
  bool refilled() const { return refilled_; }

 private:
  Next TooLong() {
    discarding_ = true;
    return Next::kTooLong;
  }

  const char* FindNewline() {
    if (scanned_ >= end_) return nullptr;
    const void* nl = std::memchr(buf_.data() + scanned_, '\n', end_ - scanned_);
    if (nl == nullptr) {
      scanned_ = end_;
      return nullptr;
    }
    return static_cast<const char*>(nl);
  }

  // Reads once, after waiting up to `wait` for input.
  Next Fill(milliseconds wait) {
    if (start_ > 0) {
      // Keep the partial line at the front, so room is always there.
      std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
      end_ -= start_;
      scanned_ -= start_;
      start_ = 0;
    }
    pollfd pfd{fd_, POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&pfd, 1, static_cast<int>(wait.count()));
    } while (ready < 0 && errno == EINTR);
    if (ready < 0) {
      error_ = std::string("poll: ") + std::strerror(errno);
      return Next::kError;
    }
    if (ready == 0) return Next::kIdle;
    ssize_t n;
    do {
      n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Next::kIdle;
      error_ = std::string("read: ") + std::strerror(errno);
      return Next::kError;
    }
    if (n == 0) eof_ = true;
    end_ += static_cast<size_t>(n);
    return Next::kLine;
  }

  int fd_;
  std::vector<char> buf_;
  size_t start_ = 0;    // first byte not yet returned
  size_t scanned_ = 0;  // [start_, scanned_) holds no '\n'
  size_t end_ = 0;
  bool eof_ = false;
  bool discarding_ = false;
  bool refilled_ = false;
  std::string error_;
};

// A refused event's status. The sender isolates it in a request of its
// own, so the node's "event 0: " prefix (its index there) says nothing.
std::string Describe(const Status& status) {
  std::string_view msg = status.message();
  if (msg.substr(0, 6) == "event ") {
    size_t i = 6;
    while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9') ++i;
    if (i > 6 && msg.substr(i, 2) == ": ") msg.remove_prefix(i + 2);
  }
  return std::string(StatusCodeName(status.code())) + ": " + std::string(msg);
}

// What the sender's callbacks (on the client's I/O thread) hand to the
// reading thread: they must not block, so they only queue and count.
class OutcomeSink {
 public:
  struct Problem {
    std::string text;
    bool rejected;  // else failed
  };

  ingest::OutcomeCallback Callback() {
    return [this](std::vector<ingest::EventOutcome> outcomes) { Take(std::move(outcomes)); };
  }

  // Problems reported since the last call.
  std::vector<Problem> Drain() {
    std::vector<Problem> out;
    if (!has_problems_.load(std::memory_order_acquire)) return out;
    std::lock_guard<std::mutex> lock(mu_);
    out.swap(problems_);
    has_problems_.store(false, std::memory_order_relaxed);
    return out;
  }
  bool any_rejected() const { return any_rejected_.load(std::memory_order_acquire); }

 private:
  void Take(std::vector<ingest::EventOutcome> outcomes) {
    std::vector<Problem> found;
    // A batch's transient failure fails all of it: one line per batch, not
    // per event, or a lost cluster would print millions of lines.
    uint64_t failed = 0, first_failed = 0, last_failed = 0;
    Status failure;
    for (const ingest::EventOutcome& o : outcomes) {
      if (o.status.ok()) continue;
      if (!ingest::IsEventRejection(o.status)) {
        if (failed++ == 0) {
          first_failed = o.token;
          failure = o.status;
        }
        last_failed = o.token;
      } else {
        found.push_back({"line " + std::to_string(o.token) + ": " + Describe(o.status), true});
      }
    }
    if (failed > 0) {
      std::string where = failed == 1 ? "line " + std::to_string(first_failed)
                                      : std::to_string(failed) + " events of lines " +
                                            std::to_string(first_failed) + "-" +
                                            std::to_string(last_failed);
      found.push_back({where + ": failed: " + failure.ToString(), false});
    }
    if (found.empty()) return;
    std::lock_guard<std::mutex> lock(mu_);
    for (Problem& p : found) {
      if (p.rejected) any_rejected_.store(true, std::memory_order_release);
      problems_.push_back(std::move(p));
    }
    has_problems_.store(true, std::memory_order_release);
  }

  std::mutex mu_;
  std::vector<Problem> problems_;
  std::atomic<bool> has_problems_{false};
  std::atomic<bool> any_rejected_{false};
};

struct Summary {
  uint64_t lines = 0;
  uint64_t events = 0;
  uint64_t bad_lines = 0;
  ingest::EventSenderStats sent;
  double seconds = 0;
  bool aborted = false;    // --strict stopped the reading
  std::string read_error;  // the input could not be read to its end
};

void PrintSummary(const Summary& s, bool json) {
  const double rate = s.seconds > 0 ? static_cast<double>(s.events) / s.seconds : 0;
  if (json) {
    nlohmann::json j;
    j["lines"] = s.lines;
    j["events"] = s.events;
    j["accepted"] = s.sent.accepted;
    j["applied"] = s.sent.applied;
    j["ignored"] = s.sent.ignored;
    j["bad_lines"] = s.bad_lines;
    j["rejected"] = s.sent.rejected;
    j["failed"] = s.sent.failed;
    j["batches"] = s.sent.batches_sent;
    j["seconds"] = s.seconds;
    j["events_per_second"] = rate;
    std::cout << j.dump() << '\n';
    return;
  }
  char timing[96];
  std::snprintf(timing, sizeof(timing), "in %.3f s (%.0f events/s)", s.seconds, rate);
  std::cout << (s.aborted ? "stream aborted: " : "stream: ") << s.lines << " line(s), " << s.events
            << " event(s) " << timing << '\n'
            << "accepted " << s.sent.accepted << " (applied " << s.sent.applied << ", ignored "
            << s.sent.ignored << "), rejected " << s.sent.rejected << ", failed " << s.sent.failed
            << ", bad lines " << s.bad_lines << '\n'
            << "batches " << s.sent.batches_sent << ", retries " << s.sent.retries << '\n';
}

}  // namespace

int RunStream(const Invocation& inv) {
  const auto start = Clock::now();
  auto complain = [](const std::string& what) { std::cerr << "tagctl: stream: " << what << '\n'; };

  int fd = STDIN_FILENO;
  struct FdCloser {
    int fd = -1;
    ~FdCloser() {
      if (fd >= 0) ::close(fd);
    }
  } owned;
  const bool from_file = !inv.stream_input.empty() && inv.stream_input != "-";
  // A missing or unreadable input is reported before anything else; the
  // file itself is opened once the cluster is reached (opening a FIFO
  // blocks until its writer comes, which may wait for us to be connected).
  if (from_file && ::access(inv.stream_input.c_str(), R_OK) != 0) {
    complain(inv.stream_input + ": " + std::strerror(errno));
    return kExitFailed;
  }

  client::ClientOptions copts;
  copts.seeds = inv.seeds;
  copts.request_timeout = inv.timeout;
  copts.client_name = "tagctl-stream";
  copts.connections_per_node = 2;
  copts.token = inv.token;
  copts.tls = inv.tls;
  auto connected = Client::Connect(copts);
  if (!connected.ok()) {
    complain(connected.status().ToString());
    return kExitFailed;
  }
  std::unique_ptr<Client> client = std::move(*connected);
  if (from_file) {
    fd = ::open(inv.stream_input.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      complain(inv.stream_input + ": " + std::strerror(errno));
      return kExitFailed;
    }
    owned.fd = fd;
  }

  ingest::EventSenderOptions sopts;
  sopts.batch_events = std::max<size_t>(inv.batch_events, 1);
  sopts.linger = milliseconds(std::max<int64_t>(inv.linger_ms, 0));
  sopts.max_in_flight_batches = std::max<size_t>(inv.in_flight_batches, 1);
  sopts.retry_for = milliseconds(std::max<int64_t>(inv.retry_for_s, 0) * 1000);

  OutcomeSink sink;
  Summary summary;
  // Destroyed (flushed) before the client and the sink, which it uses.
  auto sender = std::make_unique<ingest::EventSender>(client.get(), sopts, sink.Callback());

  auto report_problems = [&] {
    for (const OutcomeSink::Problem& p : sink.Drain()) complain(p.text);
  };

  const bool progress = inv.report_interval_s > 0;
  const auto report_every = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(progress ? inv.report_interval_s : 1.0));
  auto next_report = start + report_every;
  auto last_report = start;
  uint64_t events_at_last_report = 0;
  auto report_progress = [&](Clock::time_point now) {
    const ingest::EventSenderStats st = sender->stats();
    const uint64_t done = st.accepted + st.rejected + st.failed;
    const double rate = static_cast<double>(summary.events - events_at_last_report) /
                        std::max(Seconds(now - last_report), 1e-9);
    char line[256];
    std::snprintf(
        line, sizeof(line),
        "%llu line(s), %llu event(s) read, %llu acknowledged, %llu in flight, "
        "%.0f events/s, %llu bad line(s), %llu rejected, %llu failed",
        static_cast<unsigned long long>(summary.lines),
        static_cast<unsigned long long>(summary.events), static_cast<unsigned long long>(done),
        static_cast<unsigned long long>(summary.events - done), rate,
        static_cast<unsigned long long>(summary.bad_lines),
        static_cast<unsigned long long>(st.rejected), static_cast<unsigned long long>(st.failed));
    complain(line);
    last_report = now;
    events_at_last_report = summary.events;
  };

  // Whether the sender may hold a partial batch that waits for its linger:
  // set by Add, cleared once a Poll ran a linger after the input went idle
  // (every Add came before that, so the batch has been sent). Only then may
  // an idle wait be long.
  bool maybe_open = false;
  std::optional<Clock::time_point> idle_since;
  LineReader reader(fd);
  std::string_view line;
  bool stop = false;
  while (!stop) {
    milliseconds wait = kMaxIdleWait;
    if (maybe_open) wait = std::clamp(sopts.linger / 4, milliseconds(1), kMaxIdleWait);
    const LineReader::Next next = reader.Read(wait, &line);
    if (next == LineReader::Next::kEof) break;
    if (next == LineReader::Next::kError) {
      summary.read_error = reader.error();
      complain("input: " + reader.error());
      break;
    }
    if (next == LineReader::Next::kLine || next == LineReader::Next::kTooLong) {
      const uint64_t line_no = ++summary.lines;
      if (next == LineReader::Next::kTooLong) {
        ++summary.bad_lines;
        complain("line " + std::to_string(line_no) + ": longer than " +
                 std::to_string(kMaxLineBytes) + " bytes");
        if (inv.strict) stop = true;
      } else if (!ingest::IsBlankLine(line)) {
        Result<client::Event> event = ingest::DecodeEventJson(line);
        if (event.ok()) {
          ++summary.events;
          sender->Add(std::move(*event), line_no);
          maybe_open = true;
          idle_since.reset();
        } else {
          ++summary.bad_lines;
          complain("line " + std::to_string(line_no) + ": " + event.status().message());
          if (inv.strict) stop = true;
        }
      }
      // While the input comes faster than it is read, look at the clock and
      // the outcomes only now and then, not per line; a read that had to
      // wait means the input is slow enough for it.
      if (!stop && !reader.refilled() && (summary.lines & 1023) != 0) continue;
    }
    const auto now = Clock::now();
    if (maybe_open) {
      sender->Poll();
      if (next == LineReader::Next::kIdle) {
        if (!idle_since) {
          idle_since = now;
        } else if (now - *idle_since >= sopts.linger) {
          maybe_open = false;
        }
      }
    }
    report_problems();
    if (inv.strict && sink.any_rejected()) stop = true;
    if (progress && now >= next_report) {
      report_progress(now);
      next_report = now + report_every;
    }
  }
  summary.aborted = stop;

  sender->Flush();
  summary.sent = sender->stats();
  sender.reset();
  report_problems();
  summary.seconds = Seconds(Clock::now() - start);
  if (inv.strict && summary.sent.rejected > 0) summary.aborted = true;

  PrintSummary(summary, inv.json);
  std::cout.flush();
  const bool all_accepted = summary.sent.accepted == summary.events;
  const bool ok = all_accepted && !summary.aborted && summary.read_error.empty();
  return ok && std::cout ? 0 : kExitFailed;
}

}  // namespace tagcache::tagctl
