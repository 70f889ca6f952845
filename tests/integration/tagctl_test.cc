// tagctl against the real tagcache-server: every command, human and --json
// output (parsed here with nlohmann-json), audience files, and exit codes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "server_fixture.h"
#include "tagcache/protocol/bitmap.h"

namespace tagcache::testing {
namespace {

using Json = nlohmann::json;

class TagctlTest : public ServerTest {
 protected:
  // Runs tagctl with --seeds pointing at the fixture's server.
  RunResult Tagctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--seeds", server_->address()});
    return RunProgram(TagctlBinary(), args);
  }
  // Runs it with --json after the command and parses stdout.
  Json TagctlJson(std::vector<std::string> args) {
    args.push_back("--json");
    RunResult run = Tagctl(args);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    Json doc = Json::parse(run.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(doc.is_discarded()) << "not JSON: " << run.out;
    return doc;
  }
};

TEST_F(TagctlTest, WritesAndPointLookups) {
  RunResult set = Tagctl({"set", "42", "apple_fan", "--ts", "1000"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_NE(set.out.find("applied"), std::string::npos) << set.out;
  // Global options after the command, default ts (now).
  Json doc = TagctlJson({"set", "42", "buyer"});
  EXPECT_EQ(doc["user"], 42);
  EXPECT_EQ(doc["tag"], "buyer");
  EXPECT_EQ(doc["op"], "set");
  EXPECT_EQ(doc["applied"], 1);
  EXPECT_GT(doc["ts"].get<uint64_t>(), 1'600'000'000'000u);  // now, in ms

  doc = TagctlJson({"get", "42"});
  EXPECT_EQ(doc, Json::parse(R"({"user": 42, "tags": ["apple_fan", "buyer"]})"));
  RunResult get = Tagctl({"get", "42"});
  ASSERT_EQ(get.exit_code, 0);
  EXPECT_EQ(get.out, "apple_fan\nbuyer\n");
  doc = TagctlJson({"get", "42", "--with-ts"});
  EXPECT_EQ(doc["ts"]["apple_fan"], 1000);

  doc = TagctlJson({"clear", "42", "apple_fan", "--ts", "2000"});
  EXPECT_EQ(doc["op"], "clear");
  EXPECT_EQ(doc["applied"], 1);
  doc = TagctlJson({"clear", "42", "apple_fan", "--ts", "1500"});  // older: loses
  EXPECT_EQ(doc["applied"], 0);
  EXPECT_EQ(doc["ignored"], 1);

  // --json before the command works too.
  RunResult has = RunProgram(
      TagctlBinary(), {"--json", "--seeds", server_->address(), "has", "42", "apple_fan", "buyer"});
  ASSERT_EQ(has.exit_code, 0) << has.err;
  EXPECT_EQ(Json::parse(has.out), Json::parse(R"({"user": 42, "has": {"apple_fan": false,
                                                  "buyer": true}})"));
  has = Tagctl({"has", "42", "apple_fan", "buyer"});
  EXPECT_EQ(has.out, "apple_fan\tno\nbuyer\tyes\n");
}

TEST_F(TagctlTest, AudienceQueries) {
  for (int u = 1; u <= 5; ++u) {
    ASSERT_EQ(Tagctl({"set", std::to_string(u), "fan", "--ts", "10"}).exit_code, 0);
  }
  ASSERT_EQ(Tagctl({"set", "2", "churned", "--ts", "10"}).exit_code, 0);

  EXPECT_EQ(TagctlJson({"count", "fan & !churned"}), Json::parse(R"({"count": 4})"));
  RunResult count = Tagctl({"count", "fan"});
  EXPECT_EQ(count.out, "5\n");

  Json page = TagctlJson({"audience", "fan", "--limit", "3"});
  EXPECT_EQ(page["users"], Json::parse("[1, 2, 3]"));
  ASSERT_TRUE(page["cursor"].is_number());
  page = TagctlJson({"audience", "fan", "--limit", "3", "--cursor",
                     std::to_string(page["cursor"].get<uint64_t>())});
  EXPECT_EQ(page["users"], Json::parse("[4, 5]"));
  EXPECT_TRUE(page["cursor"].is_null());
  RunResult human = Tagctl({"audience", "fan & !churned"});
  EXPECT_EQ(human.out, "1\n3\n4\n5\n");

  Json top = TagctlJson({"top-tags", "fan", "-k", "2"});
  EXPECT_EQ(top, Json::parse(R"({"tags": [{"tag": "fan", "count": 5},
                                          {"tag": "churned", "count": 1}]})"));

  // The whole audience to files.
  const std::string ids = dir_.path() + "/fans.txt";
  Json wrote = TagctlJson({"audience", "fan", "--out", ids, "--limit", "2"});
  EXPECT_EQ(wrote["count"], 5);
  EXPECT_EQ(wrote["format"], "ids");
  EXPECT_EQ(ReadFile(ids), "1\n2\n3\n4\n5\n");

  const std::string bitmap_file = dir_.path() + "/fans.roaring";
  wrote = TagctlJson({"audience", "fan & !churned", "--out", bitmap_file, "--format", "roaring"});
  EXPECT_EQ(wrote["count"], 4);
  EXPECT_EQ(wrote["shards"], 1);
  const std::string bytes = ReadFile(bitmap_file);
  ASSERT_GE(bytes.size(), 24u + 20u);
  EXPECT_EQ(bytes.substr(0, 8), "TCAUDRB1");
  auto u32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, bytes.data() + at, 4);
    return v;
  };
  auto u64 = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, bytes.data() + at, 8);
    return v;
  };
  EXPECT_EQ(u32(8), 20u);  // shard_bits
  EXPECT_EQ(u64(16), 1u);  // shards
  EXPECT_EQ(u64(24), 0u);  // shard 0
  EXPECT_EQ(u64(32), 4u);  // cardinality
  const uint32_t len = u32(40);
  ASSERT_EQ(bytes.size(), 44u + len);
  auto members = protocol::ReadPortableBitmap(bytes.data() + 44, len, 1u << 20);
  ASSERT_TRUE(members.ok()) << members.status().ToString();
  EXPECT_EQ(members->cardinality(), 4u);
  EXPECT_FALSE(members->contains(2));
}

TEST_F(TagctlTest, StatsAndPing) {
  ASSERT_EQ(Tagctl({"set", "9", "x", "--ts", "10"}).exit_code, 0);
  Json stats = TagctlJson({"stats"});
  ASSERT_EQ(stats["nodes"].size(), 1u);
  EXPECT_EQ(stats["nodes"][0]["node"], server_->address());
  EXPECT_EQ(stats["nodes"][0]["known_users"], 1);
  EXPECT_EQ(stats["nodes"][0]["tags"], 1);
  EXPECT_TRUE(stats["nodes"][0]["requests"].is_array());
  const Json& limits = stats["nodes"][0]["limits"];
  ASSERT_TRUE(limits.is_array());
  EXPECT_EQ(limits.size(), 12u);
  bool idle = false;
  for (const Json& l : limits) {
    if (l["limit"] == "idle_timeout") {
      idle = true;
      EXPECT_EQ(l["value"], 300'000);  // --idle-timeout-s default, in ms
      EXPECT_EQ(l["count"], 0);
    }
  }
  EXPECT_TRUE(idle) << limits.dump();
  RunResult human = Tagctl({"stats"});
  EXPECT_EQ(human.exit_code, 0);
  EXPECT_NE(human.out.find("known users"), std::string::npos);
  EXPECT_NE(human.out.find("    idle_timeout: 300000 0\n"), std::string::npos) << human.out;

  Json ping = TagctlJson({"ping"});
  EXPECT_EQ(ping["ok"], true);
  EXPECT_EQ(ping["shard_bits"], 20);
  EXPECT_TRUE(ping["rtt_micros"].is_number_unsigned());
  RunResult pong = Tagctl({"ping"});
  EXPECT_EQ(pong.out.rfind("PONG from " + server_->address(), 0), 0u) << pong.out;
}

TEST_F(TagctlTest, ExitCodes) {
  ASSERT_EQ(Tagctl({"set", "1", "fan", "--ts", "10"}).exit_code, 0);

  // A bad expression: the node's BAD_REQUEST, one line on stderr, exit 1.
  RunResult bad = Tagctl({"count", "fan & (", "--json"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.err.rfind("tagctl: BAD_REQUEST: ", 0), 0u) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_TRUE(bad.out.empty());

  RunResult unknown = Tagctl({"count", "nobody_has_this"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err.rfind("tagctl: UNKNOWN_TAG: ", 0), 0u) << unknown.err;

  // Nothing listens there: IO_ERROR, exit 1, quickly.
  RunResult unreachable =
      RunProgram(TagctlBinary(), {"--seeds", "127.0.0.1:" + std::to_string(UnusedPort()), "ping"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_EQ(unreachable.err.rfind("tagctl: IO_ERROR: ", 0), 0u) << unreachable.err;

  // Usage errors: exit 2.
  EXPECT_EQ(Tagctl({"get"}).exit_code, 2);
  EXPECT_EQ(Tagctl({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(Tagctl({"get", "not-a-number"}).exit_code, 2);
  EXPECT_EQ(Tagctl({"audience", "fan", "--format", "roaring"}).exit_code, 2);  // needs --out
  EXPECT_EQ(RunProgram(TagctlBinary(), {"--help"}).exit_code, 0);
}


TEST_F(TagctlTest, CheckpointPrintsTheFileItWrote) {
  ASSERT_EQ(Tagctl({"set", "7", "fan", "--ts", "10"}).exit_code, 0);
  RunResult ckpt = Tagctl({"checkpoint"});
  ASSERT_EQ(ckpt.exit_code, 0) << ckpt.err;
  const std::string prefix = "checkpoint of " + server_->address() + ": ";
  ASSERT_EQ(ckpt.out.rfind(prefix, 0), 0u) << ckpt.out;
  const size_t path_end = ckpt.out.find(", ", prefix.size());
  ASSERT_NE(path_end, std::string::npos) << ckpt.out;
  const std::filesystem::path path = ckpt.out.substr(prefix.size(), path_end - prefix.size());
  EXPECT_TRUE(std::filesystem::exists(path)) << path;
  // The fixture's server keeps its data under dir_/data.
  std::error_code ec;
  EXPECT_TRUE(std::filesystem::equivalent(path.parent_path(), dir_.path() + "/data", ec)) << path;
  EXPECT_EQ(path.filename().string().rfind("checkpoint-", 0), 0u) << path;
  EXPECT_NE(ckpt.out.find(" bytes ("), std::string::npos) << ckpt.out;
  EXPECT_NE(ckpt.out.find("segments removed"), std::string::npos) << ckpt.out;
}

TEST_F(TagctlTest, CheckpointJsonNamesTheFileAndItsSize) {
  ASSERT_EQ(Tagctl({"set", "7", "fan", "--ts", "10"}).exit_code, 0);
  Json first = TagctlJson({"checkpoint"});
  ASSERT_EQ(first["nodes"].size(), 1u) << first.dump();
  const Json& node = first["nodes"][0];
  EXPECT_EQ(node["node"], server_->address());
  ASSERT_TRUE(node["path"].is_string()) << first.dump();
  EXPECT_TRUE(std::filesystem::exists(node["path"].get<std::string>())) << first.dump();
  ASSERT_TRUE(node["bytes"].is_number_unsigned()) << first.dump();
  EXPECT_GT(node["bytes"].get<uint64_t>(), 0u);
  EXPECT_TRUE(node["wal_segment"].is_number_unsigned()) << first.dump();
  EXPECT_TRUE(node["micros"].is_number_unsigned()) << first.dump();
  EXPECT_TRUE(node["segments_removed"].is_number_unsigned()) << first.dump();

  // The second one makes the log before the first obsolete.
  ASSERT_EQ(Tagctl({"set", "8", "fan", "--ts", "10"}).exit_code, 0);
  Json second = TagctlJson({"checkpoint"});
  ASSERT_EQ(second["nodes"].size(), 1u) << second.dump();
  EXPECT_GT(second["nodes"][0]["wal_segment"].get<uint64_t>(), node["wal_segment"].get<uint64_t>());
  EXPECT_GE(second["nodes"][0]["segments_removed"].get<uint64_t>(), 1u) << second.dump();

  Json stats = TagctlJson({"stats"});
  EXPECT_EQ(stats["nodes"][0]["durability"]["checkpoints"], 2) << stats.dump();
  EXPECT_EQ(stats["nodes"][0]["durability"]["last_checkpoint_bytes"],
            second["nodes"][0]["bytes"]) << stats.dump();
}

TEST_F(TagctlTest, StatsShowTheFsyncPolicyAndMemory) {
  ASSERT_EQ(Tagctl({"set", "9", "x", "--ts", "10"}).exit_code, 0);
  RunResult human = Tagctl({"stats"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  const size_t policy = human.out.find("fsync policy");
  ASSERT_NE(policy, std::string::npos) << human.out;
  // The default policy, on the same line.
  const std::string line = human.out.substr(policy, human.out.find('\n', policy) - policy);
  EXPECT_NE(line.find("batch"), std::string::npos) << line;
  EXPECT_NE(human.out.find("writes refused (io)"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("resident bytes"), std::string::npos) << human.out;

  Json stats = TagctlJson({"stats"});
  const Json& durability = stats["nodes"][0]["durability"];
  ASSERT_TRUE(durability.is_object()) << stats.dump();
  EXPECT_EQ(durability["fsync_policy"], "batch");
  EXPECT_GE(durability["wal_records"].get<uint64_t>(), 1u);
  EXPECT_GE(durability["fsyncs"].get<uint64_t>(), 1u);
  EXPECT_EQ(durability["writes_refused_io"], 0);
  const Json& memory = stats["nodes"][0]["memory"];
  ASSERT_TRUE(memory.is_object()) << stats.dump();
  EXPECT_GT(memory["memory_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(memory["max_memory_bytes"], 0);  // the fixture sets no --max-memory
}

}  // namespace
}  // namespace tagcache::testing
