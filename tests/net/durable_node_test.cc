// The node with a data directory, driven in process through the client
// library over 127.0.0.1: acknowledged writes survive a restart, a full disk
// or a failing fsync refuses writes while reads keep working (and writes
// resume without a restart), checkpoints trim the log without stopping
// writers, --max-memory refuses writes but never reads or commits, and a
// log damaged in the middle stops the start unless told to keep its prefix.
// Faults come from storage::FaultInjectionFileSystem, never from the real
// disk. Every wait is bounded; no assertion depends on timing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "net/running_node.h"
#include "tagcache/client/client.h"
#include "tagcache/net/node.h"
#include "tagcache/protocol/bitmap.h"
#include "tagcache/storage/file_system.h"

namespace tagcache::net {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

constexpr int kShardBits = 16;

// ---- Helpers --------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "durable_node_test.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed: " << std::strerror(errno);
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

NodeOptions BaseOptions() {
  NodeOptions o;
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  o.io_threads = 2;
  o.workers = 2;
  o.engine.query_threads = 1;
  o.engine.shard_bits = kShardBits;
  o.shutdown_grace = milliseconds(3000);
  // Recovery threads default to every core; two keep the tests polite.
  o.durability.recovery_threads = 2;
  return o;
}

NodeOptions DurableOptions(const std::string& data_dir) {
  NodeOptions o = BaseOptions();
  o.data_dir = data_dir;
  return o;
}

std::vector<client::Event> SetEvents(uint64_t first_user, uint64_t count, const std::string& tag,
                                     uint64_t ts) {
  std::vector<client::Event> events;
  events.reserve(count);
  for (uint64_t u = first_user; u < first_user + count; ++u) {
    events.push_back({u, tag, client::TagOp::kSet, ts});
  }
  return events;
}

std::string Portable(std::initializer_list<uint32_t> offsets) {
  Roaring r;
  for (uint32_t v : offsets) r.add(v);
  return protocol::WritePortableBitmap(r);
}

uint64_t User(uint64_t shard, uint64_t offset) { return shard << kShardBits | offset; }

// What a node answers to a fixed set of reads; two nodes holding the same
// state answer alike. Errors are part of the answer (an unknown tag stays
// unknown).
struct Answers {
  std::map<uint64_t, std::vector<std::string>> tags;  // sorted per user
  std::map<std::string, std::string> counts;          // expr -> count or status code
  uint64_t assignments = 0;
  uint64_t known_users = 0;
  uint64_t tags_total = 0;

  bool operator==(const Answers&) const = default;
};

std::string Describe(const Answers& a) {
  std::string out;
  for (const auto& [user, tags] : a.tags) {
    out += "user " + std::to_string(user) + ":";
    for (const auto& t : tags) out += " " + t;
    out += "\n";
  }
  for (const auto& [expr, count] : a.counts) out += "count(" + expr + ") = " + count + "\n";
  out += "assignments " + std::to_string(a.assignments) + ", known users " +
         std::to_string(a.known_users) + ", tags " + std::to_string(a.tags_total) + "\n";
  return out;
}

// gtest prints Answers this way in failure messages.
void PrintTo(const Answers& a, std::ostream* os) { *os << "\n" << Describe(a); }

Answers Read(client::Client& c, const std::vector<uint64_t>& users,
             const std::vector<std::string>& exprs) {
  Answers a;
  for (uint64_t u : users) {
    auto hits = c.GetTags(u);
    EXPECT_TRUE(hits.ok()) << hits.status().ToString();
    if (!hits.ok()) continue;
    std::vector<std::string> names;
    for (const auto& h : *hits) names.push_back(h.tag);
    std::sort(names.begin(), names.end());
    a.tags[u] = names;
  }
  for (const auto& e : exprs) {
    auto n = c.Count(e);
    a.counts[e] = n.ok() ? std::to_string(*n) : std::string(StatusCodeName(n.status().code()));
  }
  auto stats = c.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status().ToString();
  if (stats.ok() && !stats->empty()) {
    a.assignments = (*stats)[0].assignments;
    a.known_users = (*stats)[0].known_users;
    a.tags_total = (*stats)[0].tags;
  }
  return a;
}

client::NodeStats StatsOf(client::Client& c) {
  auto stats = c.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status().ToString();
  if (!stats.ok() || stats->size() != 1) {
    ADD_FAILURE() << "expected the stats of one node";
    return {};
  }
  return (*stats)[0];
}

bool HasTag(client::Client& c, uint64_t user, const std::string& tag) {
  auto hits = c.GetTags(user);
  EXPECT_TRUE(hits.ok()) << hits.status().ToString();
  if (!hits.ok()) return false;
  return std::any_of(hits->begin(), hits->end(), [&](const auto& h) { return h.tag == tag; });
}

std::vector<std::string> WalSegments(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("wal-", 0) == 0 && name.size() > 8 &&
        name.compare(name.size() - 4, 4, ".log") == 0) {
      out.push_back(entry.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot rewrite " << path;
}

// Offsets of the records of a WAL segment (docs/WAL.md: a 16-byte header
// whose bytes 8..12 are the payload length, then the payload).
std::vector<std::pair<uint64_t, uint32_t>> RecordsOf(const std::string& bytes) {
  std::vector<std::pair<uint64_t, uint32_t>> records;
  uint64_t at = 0;
  while (at + 16 <= bytes.size()) {
    uint32_t length;
    std::memcpy(&length, bytes.data() + at + 8, 4);
    if (at + 16 + length > bytes.size()) break;
    records.emplace_back(at, length);
    at += 16 + length;
  }
  return records;
}

const client::CallOptions kCheckpointCall{milliseconds(60000)};

// ---- Restart ----------------------------------------------------------------------

TEST(DurableNodeTest, AcknowledgedWritesAreThereAfterARestart) {
  TempDir dir;
  const std::vector<uint64_t> users = {1, 5, 6, 11, 55, User(1, 3), 999};
  const std::vector<std::string> exprs = {"fan", "buyer", "segment", "fan & !buyer",
                                          "segment | buyer", "never_written"};
  Answers before;
  {
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->ApplyEvents(SetEvents(1, 100, "fan", 10)).ok());
    std::vector<client::Event> clears;
    for (uint64_t u = 1; u <= 10; ++u) clears.push_back({u, "fan", client::TagOp::kClear, 20});
    auto cleared = c->ApplyEvents(clears);
    ASSERT_TRUE(cleared.ok()) << cleared.status().ToString();
    EXPECT_EQ(cleared->applied, 10u);
    ASSERT_TRUE(c->ApplyEvents(SetEvents(50, 11, "buyer", 30)).ok());
    auto part0 = c->LoadSnapshot("segment", 100, 0, Portable({5, 6, 7}));
    ASSERT_TRUE(part0.ok()) << part0.status().ToString();
    EXPECT_EQ(*part0, client::SnapshotOutcome::kApplied);
    ASSERT_TRUE(c->LoadSnapshot("segment", 100, 1, Portable({3})).ok());
    auto commit = c->CommitSnapshot("segment", 100, {0, 1});
    ASSERT_TRUE(commit.ok()) << commit.status().ToString();
    EXPECT_TRUE(commit->missing_shards.empty());

    before = Read(*c, users, exprs);
    EXPECT_EQ(before.counts["fan"], "90");
    EXPECT_EQ(before.counts["segment"], "4");
    EXPECT_EQ(before.counts["never_written"], "UNKNOWN_TAG");

    const client::NodeStats stats = StatsOf(*c);
    EXPECT_EQ(stats.fsync_policy, "batch");
    EXPECT_GE(stats.wal_records, 6u);  // three event batches, two parts, a commit
    EXPECT_GT(stats.wal_bytes, 0u);
    EXPECT_GE(stats.fsyncs, 1u);
    EXPECT_EQ(stats.writes_refused_io, 0u);
  }

  auto node = MustStart(DurableOptions(dir.path()));
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  const Answers after = Read(*c, users, exprs);
  EXPECT_EQ(after, before);
  const client::NodeStats stats = StatsOf(*c);
  EXPECT_GT(stats.recovery_micros, 0u);
  EXPECT_EQ(stats.torn_tails_dropped, 0u);
  // The restarted node logs to a segment of its own, after the replayed ones.
  EXPECT_GE(stats.wal_segment, 2u);
}

TEST(DurableNodeTest, ASecondNodeOnTheSameDataDirectoryIsRefused) {
  TempDir dir;
  auto first = MustStart(DurableOptions(dir.path()));
  ASSERT_NE(first, nullptr);
  auto second = RunningNode::Start(DurableOptions(dir.path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos)
      << second.status().ToString();
}

// ---- Disk full and failing fsync ---------------------------------------------------

TEST(DurableNodeTest, FullDiskRefusesWritesKeepsReadsAndRecoversWithoutRestart) {
  TempDir dir;
  std::unique_ptr<storage::FileSystem> posix = storage::NewPosixFileSystem();
  storage::FaultInjectionFileSystem faults(*posix);
  NodeOptions options = DurableOptions(dir.path());
  options.file_system = &faults;
  {
    auto node = MustStart(options);
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->ApplyEvents(SetEvents(1, 10, "before", 10)).ok());

    // Room for part of a record: the short write must be cut off again.
    faults.SetSpaceLimit(16);
    auto refused = c->ApplyEvents(SetEvents(1, 10, "refused", 20));
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kIoError);
    EXPECT_NE(refused.status().message().find("could not be logged"), std::string::npos)
        << refused.status().ToString();
    EXPECT_NE(refused.status().message().find("No space left"), std::string::npos)
        << refused.status().ToString();
    auto part = c->LoadSnapshot("refused_snapshot", 20, 0, Portable({1, 2}));
    ASSERT_FALSE(part.ok());
    EXPECT_EQ(part.status().code(), StatusCode::kIoError) << part.status().ToString();

    // Reads keep working and never show what was refused.
    auto hits = c->GetTags(1);
    ASSERT_TRUE(hits.ok()) << hits.status().ToString();
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].tag, "before");
    auto count = c->Count("before");
    ASSERT_TRUE(count.ok()) << count.status().ToString();
    EXPECT_EQ(*count, 10u);
    EXPECT_EQ(c->Count("refused").status().code(), StatusCode::kUnknownTag);
    EXPECT_EQ(c->Count("refused_snapshot").status().code(), StatusCode::kUnknownTag);
    EXPECT_GE(StatsOf(*c).writes_refused_io, 2u);

    // Space is back: the very next write goes through, no restart needed.
    faults.SetSpaceLimit(std::nullopt);
    auto after = c->ApplyEvents(SetEvents(1, 10, "after", 30));
    ASSERT_TRUE(after.ok()) << after.status().ToString();
    EXPECT_EQ(after->applied, 10u);
    EXPECT_TRUE(HasTag(*c, 1, "after"));
  }

  auto node = MustStart(options);
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(HasTag(*c, 1, "before"));
  EXPECT_TRUE(HasTag(*c, 10, "after"));
  auto count = c->Count("before | after");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 10u);
  // The short write was cut back to a record boundary, so the log reads clean.
  EXPECT_EQ(StatsOf(*c).torn_tails_dropped, 0u);
}

TEST(DurableNodeTest, FailedFsyncRefusesWritesUntilSyncsWorkAgain) {
  TempDir dir;
  std::unique_ptr<storage::FileSystem> posix = storage::NewPosixFileSystem();
  storage::FaultInjectionFileSystem faults(*posix);
  NodeOptions options = DurableOptions(dir.path());
  options.file_system = &faults;
  {
    auto node = MustStart(options);
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->ApplyEvents(SetEvents(1, 5, "before", 10)).ok());

    faults.SetSyncFailure(true);
    // The first failure retires the segment; the second meets the failing
    // creation of the next one. Both must be refused.
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto refused = c->ApplyEvents(SetEvents(1, 5, "unsynced", 20 + attempt));
      ASSERT_FALSE(refused.ok()) << "attempt " << attempt;
      EXPECT_EQ(refused.status().code(), StatusCode::kIoError);
      EXPECT_NE(refused.status().message().find("could not be logged"), std::string::npos)
          << refused.status().ToString();
      EXPECT_NE(refused.status().message().find("fsync"), std::string::npos)
          << refused.status().ToString();
    }
    auto count = c->Count("before");
    ASSERT_TRUE(count.ok()) << count.status().ToString();
    EXPECT_EQ(*count, 5u);
    EXPECT_FALSE(HasTag(*c, 1, "unsynced"));
    EXPECT_GE(StatsOf(*c).writes_refused_io, 2u);

    faults.SetSyncFailure(false);
    auto after = c->ApplyEvents(SetEvents(1, 5, "after", 30));
    ASSERT_TRUE(after.ok()) << after.status().ToString();
    EXPECT_TRUE(HasTag(*c, 5, "after"));
  }

  // A refused write may reappear after a restart (its bytes may have reached
  // the disk); only the acknowledged ones are promised.
  auto node = MustStart(options);
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(HasTag(*c, 1, "before"));
  EXPECT_TRUE(HasTag(*c, 1, "after"));
  auto count = c->Count("after");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 5u);
}

// ---- Checkpoints -------------------------------------------------------------------

TEST(DurableNodeTest, CheckpointWritesAFileTrimsTheLogAndRestartsToTheSameState) {
  TempDir dir;
  const std::vector<uint64_t> users = {1, 2, 150, 250, User(2, 7), 4000};
  const std::vector<std::string> exprs = {"round0", "round1", "round2", "round3",
                                          "round0 & !round1", "seg", "seg | round3"};
  Answers before;
  {
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);

    std::vector<client::NodeCheckpoint> taken;
    for (int round = 0; round < 3; ++round) {
      const std::string tag = "round" + std::to_string(round);
      ASSERT_TRUE(c->ApplyEvents(SetEvents(100 * round, 200, tag, 10 + round)).ok());
      auto ckpt = c->Checkpoint(kCheckpointCall);
      ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
      ASSERT_EQ(ckpt->size(), 1u);
      const client::NodeCheckpoint& cp = (*ckpt)[0];
      EXPECT_EQ(cp.node, node->address());
      ASSERT_TRUE(fs::exists(cp.path)) << cp.path;
      std::error_code ec;
      EXPECT_TRUE(fs::equivalent(fs::path(cp.path).parent_path(), dir.path(), ec)) << cp.path;
      EXPECT_GT(cp.bytes, 0u);
      EXPECT_EQ(fs::file_size(cp.path, ec), cp.bytes) << cp.path;
      if (!taken.empty()) {
        EXPECT_GT(cp.wal_segment, taken.back().wal_segment);
        // The first one's log before it is now covered twice over.
        EXPECT_GE(cp.segments_removed, 1u) << "checkpoint " << round;
      }
      taken.push_back(cp);
    }
    // Two checkpoints are kept so a damaged newest one has a way back.
    EXPECT_FALSE(fs::exists(taken[0].path)) << taken[0].path;
    EXPECT_TRUE(fs::exists(taken[1].path)) << taken[1].path;
    EXPECT_TRUE(fs::exists(taken[2].path)) << taken[2].path;
    for (const std::string& seg : WalSegments(dir.path())) {
      const uint64_t number = std::stoull(fs::path(seg).filename().string().substr(4, 20));
      EXPECT_GE(number, taken[1].wal_segment) << seg << " should have been removed";
    }

    // Writes after the last checkpoint come back from the log.
    ASSERT_TRUE(c->ApplyEvents(SetEvents(200, 100, "round3", 40)).ok());
    ASSERT_TRUE(c->LoadSnapshot("seg", 50, 2, Portable({7, 8})).ok());
    ASSERT_TRUE(c->CommitSnapshot("seg", 50, {2}).ok());

    const client::NodeStats stats = StatsOf(*c);
    EXPECT_EQ(stats.checkpoints, 3u);
    EXPECT_EQ(stats.checkpoint_failures, 0u);
    EXPECT_GT(stats.last_checkpoint_unix_ms, 0u);
    EXPECT_EQ(stats.last_checkpoint_bytes, taken[2].bytes);
    EXPECT_GT(stats.wal_bytes_since_checkpoint, 0u);
    before = Read(*c, users, exprs);
    EXPECT_EQ(before.counts["round0"], "200");
    EXPECT_EQ(before.counts["seg"], "2");
  }

  auto node = MustStart(DurableOptions(dir.path()));
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  const Answers after = Read(*c, users, exprs);
  EXPECT_EQ(after, before);
}

TEST(DurableNodeTest, CheckpointWithoutADataDirectoryIsABadRequest) {
  auto node = MustStart(BaseOptions());
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  auto ckpt = c->Checkpoint(kCheckpointCall);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), StatusCode::kBadRequest);
  EXPECT_NE(ckpt.status().message().find("no data directory"), std::string::npos)
      << ckpt.status().ToString();
  // Nothing is logged on such a node: its stats say so.
  const client::NodeStats stats = StatsOf(*c);
  EXPECT_TRUE(stats.fsync_policy.empty()) << stats.fsync_policy;
  EXPECT_EQ(stats.wal_records, 0u);
}

TEST(DurableNodeTest, WritesKeepFlowingDuringCheckpoints) {
  TempDir dir;
  constexpr uint64_t kBatch = 50;
  constexpr int kMaxBatches = 20000;  // bounds the writer if the main thread stalls
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0};
  std::mutex error_mu;
  std::string first_error;
  uint64_t max_latency_micros = 0;  // writer thread only until it is joined

  {
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto writer_client = node->Connect("durable_node_test");
    auto admin = node->Connect("durable_node_test");
    ASSERT_NE(writer_client, nullptr);
    ASSERT_NE(admin, nullptr);

    std::thread writer([&] {
      for (int i = 0; i < kMaxBatches && !stop.load(); ++i) {
        const Steady::time_point t0 = Steady::now();
        auto r = writer_client->ApplyEvents(SetEvents(i * kBatch, kBatch, "flow", 10));
        const auto micros = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Steady::now() - t0).count());
        max_latency_micros = std::max(max_latency_micros, micros);
        if (!r.ok()) {
          std::lock_guard lock(error_mu);
          first_error = "batch " + std::to_string(i) + ": " + r.status().ToString();
          return;
        }
        acked.fetch_add(1);
      }
    });

    // Each checkpoint starts while the writer is busy: wait (bounded) for a
    // few more acknowledged batches before each one.
    auto wait_for_progress = [&](int at_least) {
      for (int poll = 0; poll < 2000 && acked.load() < at_least; ++poll) {
        {
          std::lock_guard lock(error_mu);
          if (!first_error.empty()) return;
        }
        std::this_thread::sleep_for(milliseconds(5));
      }
    };
    int checkpoints_ok = 0;
    for (int round = 0; round < 5; ++round) {
      wait_for_progress(acked.load() + 10);
      auto ckpt = admin->Checkpoint(kCheckpointCall);
      EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
      if (ckpt.ok()) ++checkpoints_ok;
    }
    wait_for_progress(acked.load() + 10);
    stop.store(true);
    writer.join();

    {
      std::lock_guard lock(error_mu);
      EXPECT_TRUE(first_error.empty()) << first_error;
    }
    EXPECT_EQ(checkpoints_ok, 5);
    EXPECT_GE(acked.load(), 60);
    std::printf("[ info ] %d batches acknowledged around 5 checkpoints; slowest ApplyEvents %llu us\n",
                acked.load(), static_cast<unsigned long long>(max_latency_micros));
    auto count = admin->Count("flow");
    ASSERT_TRUE(count.ok()) << count.status().ToString();
    EXPECT_EQ(*count, static_cast<uint64_t>(acked.load()) * kBatch);
  }

  auto node = MustStart(DurableOptions(dir.path()));
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  auto count = c->Count("flow");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, static_cast<uint64_t>(acked.load()) * kBatch);
  EXPECT_TRUE(HasTag(*c, static_cast<uint64_t>(acked.load()) * kBatch - 1, "flow"));
}

// ---- Memory limit ------------------------------------------------------------------

TEST(DurableNodeTest, OverTheMemoryLimitWritesAreRefusedButReadsAndCommitsWork) {
  TempDir dir;
  // A part loaded before the limit applies, so the commit below has
  // something to complete.
  {
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->ApplyEvents(SetEvents(1, 5, "fan", 10)).ok());
    ASSERT_TRUE(c->LoadSnapshot("seg", 100, 0, Portable({1, 2, 3})).ok());
  }

  NodeOptions options = DurableOptions(dir.path());
  options.max_memory_bytes = 1;  // any process is over one byte
  auto node = MustStart(options);
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);

  auto events = c->ApplyEvents(SetEvents(1, 5, "more", 20));
  ASSERT_FALSE(events.ok());
  EXPECT_EQ(events.status().code(), StatusCode::kOverloaded);
  EXPECT_NE(events.status().message().find("--max-memory"), std::string::npos)
      << events.status().ToString();
  auto part = c->LoadSnapshot("seg2", 100, 0, Portable({4}));
  ASSERT_FALSE(part.ok());
  EXPECT_EQ(part.status().code(), StatusCode::kOverloaded);
  EXPECT_NE(part.status().message().find("--max-memory"), std::string::npos)
      << part.status().ToString();

  // Reads are never refused.
  auto count = c->Count("fan");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 5u);
  EXPECT_FALSE(HasTag(*c, 1, "more"));
  EXPECT_EQ(c->Count("seg2").status().code(), StatusCode::kUnknownTag);

  // A commit only frees memory, so it is admitted.
  auto commit = c->CommitSnapshot("seg", 100, {0});
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  EXPECT_TRUE(commit->missing_shards.empty());
  count = c->Count("seg");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 3u);

  const client::NodeStats stats = StatsOf(*c);
  EXPECT_GE(stats.writes_refused_memory, 2u);
  EXPECT_EQ(stats.max_memory_bytes, 1u);
  EXPECT_GT(stats.memory_bytes, 0u);
  // Refused for memory before logging: the log never saw them.
  EXPECT_EQ(stats.writes_refused_io, 0u);
  EXPECT_EQ(stats.wal_records, 1u);  // the commit
}

TEST(DurableNodeTest, MemoryLimitAlsoGuardsANodeWithoutADataDirectory) {
  NodeOptions options = BaseOptions();
  options.max_memory_bytes = 1;
  auto node = MustStart(options);
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  auto events = c->ApplyEvents(SetEvents(1, 5, "fan", 10));
  ASSERT_FALSE(events.ok());
  EXPECT_EQ(events.status().code(), StatusCode::kOverloaded);
  EXPECT_NE(events.status().message().find("--max-memory"), std::string::npos)
      << events.status().ToString();
  auto part = c->LoadSnapshot("seg", 100, 0, Portable({1}));
  EXPECT_EQ(part.status().code(), StatusCode::kOverloaded) << part.status().ToString();
  // Dropping a tag (a commit without parts) frees memory: admitted.
  auto commit = c->CommitSnapshot("gone", 100, {});
  EXPECT_TRUE(commit.ok()) << commit.status().ToString();
  auto hits = c->GetTags(1);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  EXPECT_TRUE(hits->empty());
  const client::NodeStats stats = StatsOf(*c);
  EXPECT_GE(stats.writes_refused_memory, 2u);
  EXPECT_EQ(stats.max_memory_bytes, 1u);
  EXPECT_GT(stats.memory_bytes, 0u);
}

TEST(DurableNodeTest, GenerousMemoryLimitAdmitsWrites) {
  TempDir dir;
  NodeOptions options = DurableOptions(dir.path());
  options.max_memory_bytes = uint64_t{64} << 30;
  auto node = MustStart(options);
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  auto events = c->ApplyEvents(SetEvents(1, 100, "fan", 10));
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  EXPECT_EQ(events->applied, 100u);
  auto part = c->LoadSnapshot("seg", 100, 0, Portable({1, 2}));
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  ASSERT_TRUE(c->CommitSnapshot("seg", 100, {0}).ok());
  const client::NodeStats stats = StatsOf(*c);
  EXPECT_EQ(stats.writes_refused_memory, 0u);
  EXPECT_EQ(stats.max_memory_bytes, uint64_t{64} << 30);
  EXPECT_GT(stats.memory_bytes, 0u);
}

// ---- Damaged logs ------------------------------------------------------------------

TEST(DurableNodeTest, CorruptionInTheMiddleOfTheLogStopsTheStartUnlessThePrefixIsKept) {
  TempDir dir;
  constexpr int kBatches = 6;
  {
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    for (int b = 0; b < kBatches; ++b) {
      ASSERT_TRUE(c->ApplyEvents(SetEvents(100 * b, 20, "b" + std::to_string(b), 10)).ok());
    }
  }

  std::vector<std::string> segments = WalSegments(dir.path());
  ASSERT_FALSE(segments.empty());
  const std::string largest = *std::max_element(
      segments.begin(), segments.end(),
      [](const std::string& a, const std::string& b) { return fs::file_size(a) < fs::file_size(b); });
  std::string bytes = ReadAll(largest);
  const auto records = RecordsOf(bytes);
  // The segment header, then one record per batch.
  ASSERT_EQ(records.size(), static_cast<size_t>(kBatches + 1)) << largest;
  // Damage a payload byte of batch 2: later records follow it, so this is
  // corruption, not a torn tail.
  constexpr int kDamaged = 2;
  const auto [offset, length] = records[1 + kDamaged];
  ASSERT_GT(length, 0u);
  bytes[offset + 16 + length / 2] ^= 0x5a;
  WriteAll(largest, bytes);

  auto strict = RunningNode::Start(DurableOptions(dir.path()));
  ASSERT_FALSE(strict.ok()) << "started on a log damaged in the middle";
  EXPECT_EQ(strict.status().code(), StatusCode::kIoError);
  const std::string& message = strict.status().message();
  EXPECT_NE(message.find(fs::path(largest).filename().string()), std::string::npos) << message;
  EXPECT_NE(message.find("offset " + std::to_string(offset)), std::string::npos) << message;
  EXPECT_NE(message.find("keep-valid-prefix"), std::string::npos) << message;
  // Refusing must not have repaired anything behind the operator's back.
  EXPECT_EQ(ReadAll(largest), bytes);

  NodeOptions keep = DurableOptions(dir.path());
  keep.durability.recovery_mode = storage::WalRecoveryMode::kKeepValidPrefix;
  auto node = MustStart(keep);
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  for (int b = 0; b < kBatches; ++b) {
    const std::string tag = "b" + std::to_string(b);
    auto count = c->Count(tag);
    if (b < kDamaged) {
      ASSERT_TRUE(count.ok()) << tag << ": " << count.status().ToString();
      EXPECT_EQ(*count, 20u) << tag;
    } else {
      // Everything from the damage on is dropped, as documented.
      EXPECT_EQ(count.status().code(), StatusCode::kUnknownTag) << tag;
    }
  }
  // The kept prefix is a clean log: the node takes writes again.
  EXPECT_TRUE(c->ApplyEvents(SetEvents(1, 1, "again", 20)).ok());
}

// OPERATIONS.md: keep-valid-prefix "drops the rest of the log" and the
// writes after the damage "are lost on this node". A later ordinary restart
// must therefore serve the state the recovery chose, not bring back the
// segments it skipped.
// DISABLED: fails today. ReplayWal leaves the segments after the damaged one
// "in place" and truncates the damaged one, so the next start finds a clean,
// gapless log and replays them. Enable once recovery retires them.
TEST(DurableNodeTest, StateChosenByKeepValidPrefixSurvivesTheNextRestart) {
  TempDir dir;
  const std::vector<uint64_t> users = {1, 101, 201, 301, 1001, 1101, 2001};
  const std::vector<std::string> exprs = {"a0", "a1", "a2", "a3", "later0", "later1", "fresh"};
  {
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    for (int b = 0; b < 4; ++b) {
      ASSERT_TRUE(c->ApplyEvents(SetEvents(1 + 100 * b, 20, "a" + std::to_string(b), 10)).ok());
    }
  }
  {
    // A second lifetime writes into a second segment.
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    for (int b = 0; b < 2; ++b) {
      ASSERT_TRUE(
          c->ApplyEvents(SetEvents(1001 + 100 * b, 20, "later" + std::to_string(b), 10)).ok());
    }
  }
  std::vector<std::string> segments = WalSegments(dir.path());
  ASSERT_GE(segments.size(), 2u);
  std::string bytes = ReadAll(segments[0]);
  const auto records = RecordsOf(bytes);
  ASSERT_EQ(records.size(), 5u) << segments[0];
  const auto [offset, length] = records[2];  // batch a1, followed by a2 and a3
  bytes[offset + 16 + length / 2] ^= 0x5a;
  WriteAll(segments[0], bytes);

  Answers recovered;
  {
    NodeOptions keep = DurableOptions(dir.path());
    keep.durability.recovery_mode = storage::WalRecoveryMode::kKeepValidPrefix;
    auto node = MustStart(keep);
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->ApplyEvents(SetEvents(2001, 20, "fresh", 10)).ok());
    recovered = Read(*c, users, exprs);
    EXPECT_EQ(recovered.counts["a0"], "20");
    EXPECT_EQ(recovered.counts["a1"], "UNKNOWN_TAG");
    EXPECT_EQ(recovered.counts["later0"], "UNKNOWN_TAG");
    EXPECT_EQ(recovered.counts["fresh"], "20");
  }

  auto node = MustStart(DurableOptions(dir.path()));
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  const Answers again = Read(*c, users, exprs);
  EXPECT_EQ(again, recovered) << "again: after the next restart; recovered: after keep-valid-prefix";
}

TEST(DurableNodeTest, TornTailIsDroppedAndCounted) {
  TempDir dir;
  {
    auto node = MustStart(DurableOptions(dir.path()));
    ASSERT_NE(node, nullptr);
    auto c = node->Connect("durable_node_test");
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->ApplyEvents(SetEvents(1, 20, "kept", 10)).ok());
    ASSERT_TRUE(c->ApplyEvents(SetEvents(1, 20, "torn", 10)).ok());
  }
  std::vector<std::string> segments = WalSegments(dir.path());
  ASSERT_FALSE(segments.empty());
  const std::string last = segments.back();
  std::string bytes = ReadAll(last);
  const auto records = RecordsOf(bytes);
  ASSERT_EQ(records.size(), 3u) << last;
  // What a crash in the middle of the last write leaves behind.
  bytes.resize(records.back().first + 16 + records.back().second / 2);
  WriteAll(last, bytes);

  auto node = MustStart(DurableOptions(dir.path()));
  ASSERT_NE(node, nullptr);
  auto c = node->Connect("durable_node_test");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(HasTag(*c, 1, "kept"));
  EXPECT_FALSE(HasTag(*c, 1, "torn"));
  EXPECT_EQ(StatsOf(*c).torn_tails_dropped, 1u);
  EXPECT_EQ(fs::file_size(last), records.back().first) << "the torn record is cut off the file";
}

}  // namespace
}  // namespace tagcache::net
