// tagbench against real processes on 127.0.0.1: a tagcache-server loaded
// with `tagctl load` + `tagctl stream` and a redis-server loaded with
// `redis-cli --pipe`, both from one `tagbench gen` dataset. Both targets must
// give the same answers (a cross-check of tagcache and of the Redis
// mapping), and every workload must run on both without errors.
// Skipped when redis-server is not installed (tagcache.sh installs it; the
// bench-smoke test fails instead of skipping).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "common/temp_dir.h"
#include "integration/server_fixture.h"
#include "tagbench/dataset.h"
#include "tagbench/driver.h"
#include "tagbench/redis_target.h"
#include "tagbench/tagcache_target.h"
#include "tagbench/verify.h"

namespace tagcache::tagbench {
namespace {

using namespace std::chrono_literals;
using tagcache::testing::ChildProcess;
using tagcache::testing::RunProgram;
using tagcache::testing::RunResult;
using tagcache::testing::ScopedTempDir;
using tagcache::testing::ServerProcess;

std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = dirs.find(':', start);
    const std::string dir =
        dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return "";
}

class TagbenchCrossTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_server_ = FindInPath("redis-server");
    redis_cli_ = FindInPath("redis-cli");
    if (redis_server_.empty() || redis_cli_.empty()) {
      GTEST_SKIP() << "redis-server/redis-cli not installed (./tagcache.sh installs redis-server "
                      "and redis-tools)";
    }
    DatasetSpec spec;
    spec.users = 3000;
    spec.tags = 12;
    spec.min_density = 3e-3;
    spec.events = 1500;
    spec.older_share = 0.3;
    spec.redis = true;
    spec.seed = 11;
    Result<Manifest> m = GenerateDataset(spec, dir_ / "data");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    manifest_ = *m;

    // tagcache: load the snapshot as of its ts, then stream the events.
    std::filesystem::create_directories(dir_ / "node");
    server_ = ServerProcess::Start(TAGCACHE_SERVER_BIN, dir_ / "node");
    ASSERT_NE(server_, nullptr);
    RunResult load = RunProgram(TAGCTL_BIN,
                                {"--seeds", server_->address(), "load", dir_ / "data/snapshot.csv",
                                 "--ts", std::to_string(spec.snapshot_ts)},
                                60s);
    ASSERT_EQ(load.exit_code, 0) << load.err;
    RunResult stream = RunProgram(
        TAGCTL_BIN, {"--seeds", server_->address(), "stream", dir_ / "data/events.ndjson"}, 60s);
    ASSERT_EQ(stream.exit_code, 0) << stream.err;

    // Redis on a free port, RAM only; mass insert of the merged state.
    redis_port_ = tagcache::testing::UnusedPort();
    redis_ = ChildProcess::Start(redis_server_,
                                 {"--port", std::to_string(redis_port_), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", dir_.path()},
                                 dir_.path());
    ASSERT_NE(redis_, nullptr);
    std::vector<std::string> tags;
    for (const TagInfo& t : manifest_.tags) {
      if (t.exists) tags.push_back(t.name);
    }
    for (int i = 0; i < 200 && !redis_target_; ++i) {
      Result<std::unique_ptr<Target>> r = ConnectRedis({"127.0.0.1", redis_port_}, tags, 2000ms);
      if (r.ok()) {
        redis_target_ = std::move(r).value();
      } else {
        std::this_thread::sleep_for(50ms);
      }
    }
    ASSERT_NE(redis_target_, nullptr) << "redis-server did not answer: " << redis_->Err();
    RunResult pipe = RunProgram(redis_cli_, {"-p", std::to_string(redis_port_), "--pipe"}, 60s,
                                dir_ / "data/redis.resp");
    ASSERT_EQ(pipe.exit_code, 0) << pipe.out << pipe.err;
    ASSERT_NE(pipe.out.find("errors: 0"), std::string::npos) << pipe.out;

    TagcacheTargetOptions o;
    o.seeds = server_->address();
    o.connections = 2;
    o.depth = 4;
    Result<std::unique_ptr<Target>> t = ConnectTagcache(o);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tagcache_target_ = std::move(t).value();
  }

  void TearDown() override {
    tagcache_target_.reset();
    redis_target_.reset();
    if (redis_) {
      EXPECT_EQ(redis_->Terminate(), 0) << redis_->Err();
    }
    if (server_) {
      EXPECT_EQ(server_->Terminate(), 0) << server_->Log();
    }
  }

  ScopedTempDir dir_{"tagbench-cross"};
  std::string redis_server_, redis_cli_;
  Manifest manifest_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<ChildProcess> redis_;
  int redis_port_ = 0;
  std::unique_ptr<Target> tagcache_target_, redis_target_;
};

TEST_F(TagbenchCrossTest, BothTargetsGiveTheSameAnswers) {
  Result<VerifyResult> v = CrossCheck(*tagcache_target_, *redis_target_, manifest_, {}, 60, 3);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->compared, 6u * 60u);
  EXPECT_EQ(v->mismatches, 0u) << v->first_mismatch;
  // Narrow and wide audiences: 2-3 terms, and one tag of ~10 % for top_tags.
  Result<VerifyResult> narrow = CrossCheck(*tagcache_target_, *redis_target_, manifest_,
                                           {.min_terms = 2, .max_terms = 3}, 40, 4);
  ASSERT_TRUE(narrow.ok()) << narrow.status().ToString();
  EXPECT_EQ(narrow->mismatches, 0u) << narrow->first_mismatch;
  Result<VerifyResult> share =
      CrossCheck(*tagcache_target_, *redis_target_, manifest_, {.audience_share = 0.1}, 10, 5);
  ASSERT_TRUE(share.ok()) << share.status().ToString();
  EXPECT_EQ(share->mismatches, 0u) << share->first_mismatch;
}

TEST_F(TagbenchCrossTest, ADivergedTargetIsCaught) {
  // Clear the most popular tag of every user in Redis only.
  Result<std::unique_ptr<Session>> s = redis_target_->OpenSession({});
  ASSERT_TRUE(s.ok());
  for (uint64_t u = 0; u < manifest_.spec.users; ++u) {
    Op op;
    op.kind = OpKind::kUpdate;
    op.users = {u};
    op.tags = {"tag0000"};
    op.set = false;
    (*s)->Send(op, u);
    std::optional<Completion> c = (*s)->Next(Clock::now() + 10s);
    ASSERT_TRUE(c.has_value());
    ASSERT_TRUE(c->outcome.error.empty()) << c->outcome.message;
  }
  Result<VerifyResult> v = CrossCheck(*tagcache_target_, *redis_target_, manifest_, {}, 30, 3);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_GT(v->mismatches, 0u);
  EXPECT_NE(v->first_mismatch.find("tagcache"), std::string::npos) << v->first_mismatch;
  EXPECT_NE(v->first_mismatch.find("redis"), std::string::npos) << v->first_mismatch;
}

TEST_F(TagbenchCrossTest, EveryWorkloadRunsOnBothWithoutErrors) {
  for (Target* target : {tagcache_target_.get(), redis_target_.get()}) {
    RunOptions o;
    o.mix = *ResolveMix("mixed");
    o.connections = 2;
    o.depth = 4;
    o.warmup_s = 0.2;
    o.duration_s = 1.0;
    Result<Report> r = RunWorkload(*target, manifest_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(CheckReport(*r).ok()) << CheckReport(*r).ToString() << "\n" << FormatReport(*r);
    EXPECT_EQ(r->ops.size(), static_cast<size_t>(kOpKinds));
    EXPECT_EQ(r->mode, "closed");
    Result<MemoryReport> mem = target->Memory();
    ASSERT_TRUE(mem.ok()) << mem.status().ToString();
    EXPECT_GT(mem->data_bytes, 0u);
    EXPECT_GT(mem->rss_bytes, 0u);
  }
}

TEST_F(TagbenchCrossTest, OpenLoopSendsAtTheTargetRate) {
  for (Target* target : {tagcache_target_.get(), redis_target_.get()}) {
    RunOptions o;
    o.mix = *ResolveMix("lookup");
    o.connections = 2;
    o.depth = 8;
    o.rate = 400;
    o.warmup_s = 0.2;
    o.duration_s = 1.5;
    Result<Report> r = RunWorkload(*target, manifest_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->ops.size(), 1u);
    EXPECT_EQ(r->mode, "open");
    EXPECT_EQ(r->ops[0].errors, 0u);
    // 600 scheduled in the window; a loaded 2-core machine may lose a few at the edges.
    EXPECT_GT(r->ops[0].ops, 450u) << target->Describe();
    EXPECT_LE(r->ops[0].ops, 601u) << target->Describe();
  }
}

TEST_F(TagbenchCrossTest, ALostServerIsCountedAsErrorsAndTheRunGoesOn) {
  RunOptions o;
  o.mix = *ResolveMix("lookup");
  o.connections = 1;
  o.depth = 2;
  o.warmup_s = 0;
  o.duration_s = 1.5;
  o.drain = 2000ms;
  std::thread stopper([&] {
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(redis_->Terminate(), 0);
  });
  Result<Report> r = RunWorkload(*redis_target_, manifest_, o);
  stopper.join();
  redis_.reset();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->ops.size(), 1u);
  EXPECT_GT(r->ops[0].ops - r->ops[0].errors, 0u);  // answered before the stop
  EXPECT_GT(r->ops[0].errors_by_status["IO_ERROR"], 0u) << FormatReport(*r);
  EXPECT_FALSE(CheckReport(*r).ok());
  // A target that cannot be reached at all is named when a session opens.
  Result<Report> none = RunWorkload(*redis_target_, manifest_, o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("opening a session"), std::string::npos)
      << none.status().ToString();
}

}  // namespace
}  // namespace tagcache::tagbench
