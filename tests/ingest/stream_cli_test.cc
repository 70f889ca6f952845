// tagctl stream end to end: the real tagcache-server and tagctl processes on
// 127.0.0.1, NDJSON on tagctl's stdin (a file, or a FIFO kept open like a
// pipe from kcat), the state checked through the client library.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/process.h"
#include "tagcache/client/client.h"

namespace tagcache::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

uint64_t NowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class StreamCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServerProcess::Start(TAGCACHE_SERVER_BIN, dir_.path());
    ASSERT_NE(server_, nullptr);
    ClientOptions o;
    o.seeds = {server_->address()};
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
  }

  std::string WriteInput(const std::string& text) {
    const std::string path = dir_.path() + "/input." + std::to_string(++inputs_) + ".ndjson";
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  RunResult Stream(const std::string& input, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--seeds", server_->address(), "stream", "--report-interval",
                                     "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunProgram(TAGCTL_BIN, args, milliseconds(20000), input);
  }

  std::set<std::string> TagsOf(uint64_t user) {
    auto r = client_->GetTags(user);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::set<std::string> tags;
    if (r.ok()) {
      for (const auto& hit : *r) tags.insert(hit.tag);
    }
    return tags;
  }

  static nlohmann::json Json(const RunResult& run) {
    try {
      return nlohmann::json::parse(run.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not one JSON document: " << e.what() << "\n" << run.out;
      return nlohmann::json::object();
    }
  }

  TempDir dir_;
  int inputs_ = 0;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(StreamCliTest, AppliesAFileOfEventsFromStdin) {
  std::string text;
  for (int user = 0; user < 3000; ++user) {
    text += R"({"user":)" + std::to_string(user) + R"(,"tag":"t)" + std::to_string(user % 5) +
            R"(","ts":)" + std::to_string(100 + user) + "}\n";
  }
  text += R"({"user":7,"tag":"t2","op":"clear","ts":5000})"
          "\r\n";  // CRLF, clears t2 of user 7
  text += R"({"ts":5001,"op":"set","extra":{"k":[1,2]},"tag":"vip","user":7})";  // no final '\n'
  RunResult run = Stream(WriteInput(text), {"--batch", "256"});
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_TRUE(Contains(run.out, "3002 line(s), 3002 event(s)")) << run.out;
  EXPECT_TRUE(Contains(run.out, "accepted 3002 (applied 3002, ignored 0), rejected 0, failed 0"))
      << run.out;
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(TagsOf(0), std::set<std::string>{"t0"});
  EXPECT_EQ(TagsOf(2999), std::set<std::string>{"t4"});
  EXPECT_EQ(TagsOf(7), std::set<std::string>{"vip"});
  // The same file through the FILE argument: every event is now old news.
  RunResult again = RunProgram(TAGCTL_BIN, {"--seeds", server_->address(), "--json", "stream",
                                            dir_.path() + "/input.1.ndjson"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const nlohmann::json j = Json(again);
  EXPECT_EQ(j.value("accepted", -1), 3002);
  EXPECT_EQ(j.value("applied", -1), 0);
  EXPECT_EQ(j.value("ignored", -1), 3002);
}

TEST_F(StreamCliTest, BadLinesAreReportedWithTheirNumbersAndSkipped) {
  std::string text = R"({"user":1,"tag":"a","ts":10})"
                     "\n"
                     "\n"  // 2: blank, not bad
                     R"({"user":2,"tag":"bad tag","ts":10})"
                     "\n"  // 3
                     R"({"user":3,"tag":"c","ts":10)"
                     "\n"       // 4: truncated
                     "   \t\n"  // 5: blank
                     R"({"user":-4,"tag":"d","ts":10})"
                     "\n"                                // 6
                     + std::string(1100000, 'x') + "\n"  // 7: too long, within one read
                     + std::string(3000000, 'y') +
                     "\n"  // 8: too long, over several reads
                     R"({"user":5,"tag":"e","ts":10})"
                     "\n";  // 9
  // 10: exactly the longest line accepted, a valid event padded with blanks.
  const std::string big = R"({"user":9,"tag":"big","ts":10})";
  text += big + std::string((size_t{1} << 20) - big.size(), ' ') + "\n";
  RunResult run = Stream(WriteInput(text), {"--json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: line 3: column 17: invalid tag name 'bad tag'"))
      << run.err;
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: line 4: column ")) << run.err;
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: line 6: column 9: user must be an unsigned"))
      << run.err;
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: line 7: longer than 1048576 bytes")) << run.err;
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: line 8: longer than 1048576 bytes")) << run.err;
  EXPECT_FALSE(Contains(run.err, "line 2:"));
  EXPECT_FALSE(Contains(run.err, "line 9:"));
  EXPECT_FALSE(Contains(run.err, "line 10:"));
  const nlohmann::json j = Json(run);
  EXPECT_EQ(j.value("lines", -1), 10);
  EXPECT_EQ(j.value("events", -1), 3);
  EXPECT_EQ(j.value("accepted", -1), 3);
  EXPECT_EQ(j.value("applied", -1), 3);
  EXPECT_EQ(j.value("ignored", -1), 0);
  EXPECT_EQ(j.value("bad_lines", -1), 5);
  EXPECT_EQ(j.value("rejected", -1), 0);
  EXPECT_EQ(j.value("failed", -1), 0);
  EXPECT_EQ(j.value("batches", -1), 1);
  EXPECT_TRUE(j.contains("seconds"));
  EXPECT_TRUE(j.contains("events_per_second"));
  EXPECT_EQ(j.size(), 11u) << j.dump();
  EXPECT_EQ(TagsOf(1), std::set<std::string>{"a"});
  EXPECT_EQ(TagsOf(5), std::set<std::string>{"e"});
  EXPECT_EQ(TagsOf(9), std::set<std::string>{"big"});
  EXPECT_TRUE(TagsOf(3).empty());
}

TEST_F(StreamCliTest, StrictStopsAtTheFirstBadLine) {
  const std::string text = R"({"user":1,"tag":"a","ts":10})"
                           "\n"
                           R"({"user":2,"tag":"b","ts":1.5})"
                           "\n"
                           R"({"user":3,"tag":"c","ts":10})"
                           "\n";
  RunResult run = Stream(WriteInput(text), {"--strict", "--json"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_TRUE(Contains(run.err,
                       "line 2: column 26: ts must be an unsigned 64-bit integer without "
                       "fraction or exponent (1.5)"))
      << run.err;
  const nlohmann::json j = Json(run);
  EXPECT_EQ(j.value("lines", -1), 2);
  EXPECT_EQ(j.value("accepted", -1), 1);  // what was read before it is still sent
  EXPECT_EQ(TagsOf(1), std::set<std::string>{"a"});
  EXPECT_TRUE(TagsOf(3).empty());
}

TEST_F(StreamCliTest, ARefusedEventIsReportedWithItsLine) {
  const uint64_t future = NowMs() + 10ull * 24 * 3600 * 1000;
  std::string text;
  for (int i = 1; i <= 10; ++i) {
    text += R"({"user":)" + std::to_string(i) + R"(,"tag":"r","ts":)" +
            std::to_string(i == 6 ? future : 10) + "}\n";
  }
  RunResult run = Stream(WriteInput(text), {"--json"});
  EXPECT_EQ(run.exit_code, 1);  // a valid line was not accepted
  EXPECT_TRUE(
      Contains(run.err, "tagctl: stream: line 6: FUTURE_TIMESTAMP: ts " + std::to_string(future)))
      << run.err;
  const nlohmann::json j = Json(run);
  EXPECT_EQ(j.value("events", -1), 10);
  EXPECT_EQ(j.value("accepted", -1), 9);
  EXPECT_EQ(j.value("rejected", -1), 1);
  EXPECT_EQ(j.value("bad_lines", -1), 0);
  EXPECT_EQ(TagsOf(5), std::set<std::string>{"r"});
  EXPECT_TRUE(TagsOf(6).empty());
  EXPECT_EQ(TagsOf(7), std::set<std::string>{"r"});

  // --strict: the same input stops at the refusal, exit 1.
  RunResult strict = Stream(dir_.path() + "/input.1.ndjson", {"--strict"});
  EXPECT_EQ(strict.exit_code, 1);
  EXPECT_TRUE(Contains(strict.err, "line 6: FUTURE_TIMESTAMP")) << strict.err;
  EXPECT_TRUE(Contains(strict.out, "stream aborted")) << strict.out;
}

TEST_F(StreamCliTest, OlderEventsNeverOverrideNewerOnesWhateverTheLineOrder) {
  // For each user the winning write comes first, in the middle or last; the
  // small batches put the competitors in different requests.
  const std::string text = R"({"user":1,"tag":"x","op":"set","ts":300})"
                           "\n"
                           R"({"user":1,"tag":"x","op":"clear","ts":200})"
                           "\n"
                           R"({"user":1,"tag":"x","op":"clear","ts":100})"
                           "\n"
                           R"({"user":2,"tag":"x","op":"set","ts":100})"
                           "\n"
                           R"({"user":2,"tag":"x","op":"clear","ts":300})"
                           "\n"
                           R"({"user":2,"tag":"x","op":"set","ts":200})"
                           "\n"
                           R"({"user":3,"tag":"x","op":"clear","ts":100})"
                           "\n"
                           R"({"user":3,"tag":"x","op":"clear","ts":200})"
                           "\n"
                           R"({"user":3,"tag":"x","op":"set","ts":300})"
                           "\n"
                           R"({"user":4,"tag":"x","op":"set","ts":300})"
                           "\n"
                           R"({"user":4,"tag":"x","op":"clear","ts":300})"
                           "\n";  // a tie: the clear wins
  RunResult run = Stream(WriteInput(text), {"--json", "--batch", "2"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json j = Json(run);
  EXPECT_EQ(j.value("accepted", -1), 11);
  EXPECT_EQ(j.value("applied", 0) + j.value("ignored", 0), 11);
  EXPECT_EQ(TagsOf(1), std::set<std::string>{"x"});
  EXPECT_TRUE(TagsOf(2).empty());
  EXPECT_EQ(TagsOf(3), std::set<std::string>{"x"});
  EXPECT_TRUE(TagsOf(4).empty());
}

// stdin is a FIFO whose writer keeps it open, like `kcat ... | tagctl
// stream` on a quiet topic: the event must be applied after --linger-ms,
// without waiting for more input or for the end of it.
TEST_F(StreamCliTest, ASlowPipeGetsItsEventsAppliedAfterTheLinger) {
  const std::string fifo = dir_.path() + "/events.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::atomic<bool> seen_while_open{false};
  std::atomic<bool> second_seen{false};
  Client* client = client_.get();
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);  // waits for tagctl to open it
    if (fd < 0) return;
    const std::string first = R"({"user":42,"tag":"slow","ts":10})"
                              "\n";
    (void)!::write(fd, first.data(), first.size());
    const auto end = Clock::now() + milliseconds(3000);
    while (Clock::now() < end) {
      auto r = client->GetTags(42);
      if (r.ok() && !r->empty()) {
        seen_while_open = true;
        break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    const std::string second = R"({"user":43,"tag":"slow","ts":10})"
                               "\n";
    (void)!::write(fd, second.data(), second.size());
    ::close(fd);
  });
  RunResult run = Stream(fifo, {"--linger-ms", "50", "--json"});
  writer.join();
  EXPECT_TRUE(seen_while_open) << "the first event waited for more input";
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(Json(run).value("accepted", -1), 2);
  EXPECT_EQ(TagsOf(43), std::set<std::string>{"slow"});
  (void)second_seen;
}

TEST_F(StreamCliTest, ProgressLinesGoToStderr) {
  const std::string fifo = dir_.path() + "/progress.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    if (fd < 0) return;
    const std::string line = R"({"user":1,"tag":"p","ts":10})"
                             "\n";
    (void)!::write(fd, line.data(), line.size());
    std::this_thread::sleep_for(milliseconds(700));
    ::close(fd);
  });
  RunResult run =
      RunProgram(TAGCTL_BIN, {"--seeds", server_->address(), "stream", "--report-interval", "0.2"},
                 milliseconds(20000), fifo);
  writer.join();
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: 1 line(s), 1 event(s) read, 1 acknowledged"))
      << run.err;
  EXPECT_TRUE(Contains(run.out, "stream: 1 line(s), 1 event(s)")) << run.out;
}

TEST_F(StreamCliTest, AnUnreachableClusterFailsAtOnce) {
  RunResult run =
      RunProgram(TAGCTL_BIN, {"--seeds", "127.0.0.1:" + std::to_string(UnusedPort()), "stream"},
                 milliseconds(20000),
                 WriteInput(R"({"user":1,"tag":"a","ts":1})"
                            "\n"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: IO_ERROR")) << run.err;
}

TEST_F(StreamCliTest, EventsFailAfterRetryForWhenTheNodeGoesAway) {
  const std::string fifo = dir_.path() + "/gone.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ServerProcess* server = server_.get();
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    if (fd < 0) return;
    // tagctl is connected once it reads; then the node dies.
    std::this_thread::sleep_for(milliseconds(300));
    server->Kill();
    const std::string line = R"({"user":1,"tag":"lost","ts":10})"
                             "\n";
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
  });
  RunResult run = Stream(fifo, {"--retry-for", "1", "--json"});
  writer.join();
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_TRUE(Contains(run.err, "tagctl: stream: line 1: failed: IO_ERROR")) << run.err;
  EXPECT_EQ(Json(run).value("failed", -1), 1);
}

}  // namespace
}  // namespace tagcache::testing
