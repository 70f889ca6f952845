// tagctl load against the real tagcache-server: formats mixed in a
// directory, gzip, --json summaries, bad lines and --max-errors, re-runs,
// stale timestamps, damaged Roaring files; and the race design.md warns
// about — a snapshot load as of T and a stream of events before and after T
// running concurrently, in several interleavings, must end in the state of
// the reference model.
#include <gtest/gtest.h>
#include <zlib.h>

#include <roaring/roaring.hh>
#include <roaring/roaring64map.hh>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "integration/server_fixture.h"

namespace tagcache::testing {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kTs = 1'700'000'000'000;

void WriteText(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

void WriteGzip(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

std::string Portable32(const std::vector<uint32_t>& values) {
  Roaring r;
  for (uint32_t v : values) r.add(v);
  std::string bytes(r.getSizeInBytes(true), '\0');
  r.write(bytes.data(), true);
  return bytes;
}

std::string Portable64(const std::vector<uint64_t>& values) {
  Roaring64Map r;
  for (uint64_t v : values) r.add(v);
  std::string bytes(r.getSizeInBytes(true), '\0');
  r.write(bytes.data(), true);
  return bytes;
}

class LoadCliTest : public ServerTest {
 protected:
  RunResult Tagctl(std::vector<std::string> args,
                   std::chrono::milliseconds limit = std::chrono::milliseconds(60000),
                   const std::string& stdin_path = "/dev/null") {
    args.insert(args.begin(), {"--seeds", server_->address()});
    return RunProgram(TagctlBinary(), args, limit, stdin_path);
  }
  Json LoadJson(std::vector<std::string> args, int expected_exit = 0) {
    args.insert(args.begin(), "load");
    args.push_back("--json");
    RunResult run = Tagctl(args);
    EXPECT_EQ(run.exit_code, expected_exit) << run.err << run.out;
    Json doc = Json::parse(run.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(doc.is_discarded()) << "not JSON: " << run.out << "\nstderr: " << run.err;
    return doc;
  }

  std::set<uint64_t> Members(client::Client& c, const std::string& tag) {
    std::set<uint64_t> out;
    uint64_t cursor = 0;
    for (int page = 0; page < 10000; ++page) {
      auto got = c.Audience(tag, cursor, 65536);
      if (!got.ok() && got.status().IsUnknownTag()) return out;
      EXPECT_TRUE(got.ok()) << got.status().ToString();
      if (!got.ok()) return out;
      out.insert(got->users.begin(), got->users.end());
      if (!got->next_cursor) break;
      cursor = *got->next_cursor;
    }
    return out;
  }

  std::string Path(const std::string& name) const { return dir_.path() + "/in/" + name; }
};

TEST_F(LoadCliTest, CsvLoadIsVisibleAndSummarized) {
  WriteText(Path("tags.csv"),
            "user_id,tag\n1,apple_fan\n2,apple_fan\n2,buyer\n3000000,buyer\n\"5\", buyer\r\n");
  Json doc = LoadJson({Path("tags.csv"), "--ts", std::to_string(kTs)});
  EXPECT_EQ(doc["tags"], 2);
  EXPECT_EQ(doc["applied"], 2);
  EXPECT_EQ(doc["pairs"], 5);
  EXPECT_EQ(doc["users"], 4);
  EXPECT_EQ(doc["assignments"], 5);
  EXPECT_EQ(doc["shards"], 2);  // 3,000,000 is in shard 2 with 20 shard bits
  EXPECT_EQ(doc["errors"], 0);
  EXPECT_EQ(doc["aborted"], false);

  RunResult get = Tagctl({"get", "2"});
  EXPECT_EQ(get.out, "apple_fan\nbuyer\n");
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Members(*c, "buyer"), (std::set<uint64_t>{2, 5, 3000000}));
}

TEST_F(LoadCliTest, ADirectoryMixesFormatsAndGzipAndUnionsATagAcrossFiles) {
  // Spark-style part files: one tag's pairs spread over two files.
  WriteText(Path("dir/part-00000.csv"), "10,shared\n11,only_csv\n");
  WriteGzip(Path("dir/part-00001.csv.gz"), "12,shared\n");
  WriteText(Path("dir/_SUCCESS"), "");
  WriteText(Path("dir/ids/listed.ids"), "# a comment\n100\n\n101\n");
  WriteGzip(Path("dir/ids/zipped.txt.gz"), "102\n");
  WriteText(Path("dir/bitmaps/r32.roaring"), Portable32({7, 1u << 21, (1u << 31) + 5}));
  WriteText(Path("dir/bitmaps/r64.roaring64"),
            Portable64({9, (uint64_t{3} << 32) + 1, (uint64_t{1} << 40) + 2}));
  Json doc = LoadJson({Path("dir"), "--ts", std::to_string(kTs)});
  EXPECT_EQ(doc["files"], 6) << doc.dump();
  EXPECT_EQ(doc["tags"], 6) << doc.dump();
  EXPECT_EQ(doc["applied"], 6) << doc.dump();

  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Members(*c, "shared"), (std::set<uint64_t>{10, 12}));
  EXPECT_EQ(Members(*c, "only_csv"), (std::set<uint64_t>{11}));
  EXPECT_EQ(Members(*c, "listed"), (std::set<uint64_t>{100, 101}));
  EXPECT_EQ(Members(*c, "zipped"), (std::set<uint64_t>{102}));
  EXPECT_EQ(Members(*c, "r32"), (std::set<uint64_t>{7, 1u << 21, (1u << 31) + 5}));
  EXPECT_EQ(Members(*c, "r64"),
            (std::set<uint64_t>{9, (uint64_t{3} << 32) + 1, (uint64_t{1} << 40) + 2}));
}

TEST_F(LoadCliTest, TsIsRequiredAndMustBeATimestamp) {
  WriteText(Path("t.csv"), "1,a\n");
  RunResult run = Tagctl({"load", Path("t.csv")});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("--ts"), std::string::npos) << run.err;
  run = Tagctl({"load", Path("t.csv"), "--ts", "yesterday"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("yesterday"), std::string::npos) << run.err;
  run = Tagctl({"load", Path("t.csv"), "--ts", "0"});
  EXPECT_EQ(run.exit_code, 2) << run.err;
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(Members(*c, "a").empty()) << "a refused command applies nothing";
}

TEST_F(LoadCliTest, BadLinesAbortTheLoadBeforeAnythingIsApplied) {
  WriteText(Path("good.csv"), "1,good_tag\n");
  WriteText(Path("bad.csv"), "1,t\nnot_a_number,t\n2,t\n3,bad tag\n4\n");
  RunResult run = Tagctl({"load", Path("good.csv"), Path("bad.csv"), "--ts", std::to_string(kTs)});
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_NE(run.err.find("bad.csv:2:"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("bad.csv:4:"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("bad.csv:5:"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("nothing was applied"), std::string::npos) << run.err;
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(Members(*c, "good_tag").empty());
  EXPECT_TRUE(Members(*c, "t").empty());

  // Within --max-errors the bad lines are skipped and the rest is applied.
  Json doc = LoadJson({Path("good.csv"), Path("bad.csv"), "--ts", std::to_string(kTs),
                       "--max-errors", "3"});
  EXPECT_EQ(doc["errors"], 3);
  EXPECT_EQ(doc["error_list"].size(), 3u);
  EXPECT_EQ(doc["error_list"][0]["line"], 2);
  EXPECT_EQ(doc["applied"], 2);
  EXPECT_EQ(Members(*c, "t"), (std::set<uint64_t>{1, 2}));
  EXPECT_EQ(Members(*c, "good_tag"), (std::set<uint64_t>{1}));
}

TEST_F(LoadCliTest, ARerunIsANoOpAndAStaleTsIsRefusedPerTag) {
  WriteText(Path("v1.csv"), "1,a\n2,b\n");
  Json doc = LoadJson({Path("v1.csv"), "--ts", std::to_string(kTs)});
  EXPECT_EQ(doc["applied"], 2);
  doc = LoadJson({Path("v1.csv"), "--ts", std::to_string(kTs)});
  EXPECT_EQ(doc["applied"], 0);
  EXPECT_EQ(doc["unchanged"], 2) << doc.dump();

  WriteText(Path("old.csv"), "7,a\n8,c\n");
  RunResult run = Tagctl({"load", Path("old.csv"), "--ts", std::to_string(kTs - 1)});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("tag a: stale"), std::string::npos) << run.err;
  EXPECT_NE(run.out.find("1 applied"), std::string::npos) << run.out;  // c
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Members(*c, "a"), (std::set<uint64_t>{1}));
  EXPECT_EQ(Members(*c, "c"), (std::set<uint64_t>{8}));
}

TEST_F(LoadCliTest, DamagedRoaringFilesAreRefusedAndNothingIsApplied) {
  const std::string good = Portable64({1, (uint64_t{2} << 32) + 3, (uint64_t{9} << 32)});
  WriteText(Path("truncated.roaring64"), good.substr(0, good.size() - 3));
  std::string unsorted = Portable32({1, 2, 3});
  // The array container's values start after cookie(4) + count(4) + key/card(4)
  // + offset(4) = 16 bytes; swapping the first two makes them unsorted.
  ASSERT_GT(unsorted.size(), 20u);
  std::swap(unsorted[16], unsorted[18]);
  WriteText(Path("unsorted.roaring"), unsorted);
  for (const char* name : {"truncated.roaring64", "unsorted.roaring"}) {
    RunResult run = Tagctl({"load", Path(name), "--ts", std::to_string(kTs)});
    EXPECT_EQ(run.exit_code, 1) << name << ": " << run.out;
    EXPECT_NE(run.err.find(name), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("nothing was applied"), std::string::npos) << run.err;
  }
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(Members(*c, "truncated").empty());
  EXPECT_TRUE(Members(*c, "unsorted").empty());
}

TEST_F(LoadCliTest, ADryRunReadsButSendsNothing) {
  WriteText(Path("t.tsv"), "1\tx\n2\tx\n");
  Json doc = LoadJson({Path("t.tsv"), "--ts", std::to_string(kTs), "--dry-run"});
  EXPECT_EQ(doc["dry_run"], true);
  EXPECT_EQ(doc["tags"], 1);
  EXPECT_EQ(doc["assignments"], 2);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(Members(*c, "x").empty());
}

// ---- The snapshot/stream race ---------------------------------------------

struct RaceEvent {
  uint64_t user;
  std::string tag;
  bool set;
  uint64_t ts;
};

// The reference model of design.md for one snapshot as of `t` and events:
// an event with ts <= t is superseded by the snapshot; among newer events
// the highest ts wins, and at equal ts a clear wins.
std::map<std::string, std::set<uint64_t>> Model(
    const std::map<std::string, std::set<uint64_t>>& snapshot, const std::vector<RaceEvent>& events,
    uint64_t t) {
  auto state = snapshot;
  std::map<std::pair<uint64_t, std::string>, std::pair<uint64_t, bool>> winner;  // ts, set
  for (const RaceEvent& e : events) {
    if (e.ts <= t) continue;
    auto key = std::make_pair(e.user, e.tag);
    auto it = winner.find(key);
    if (it == winner.end() || e.ts > it->second.first ||
        (e.ts == it->second.first && !e.set)) {
      winner[key] = {e.ts, e.set};
    }
  }
  for (const auto& [key, w] : winner) {
    if (w.second) {
      state[key.second].insert(key.first);
    } else {
      state[key.second].erase(key.first);
    }
  }
  return state;
}

TEST_F(LoadCliTest, SnapshotAndEventStreamRaceEndsInTheReferenceState) {
  const std::vector<std::string> tags = {"apple_fan", "buyer", "churned"};
  // Users over 6 shards (20 shard bits); the snapshot leaves some out.
  const uint64_t kUsers = 6u << 20;
  const uint64_t t = kTs;

  enum class Order { kEventsFirst, kSnapshotFirst, kConcurrent, kSplit };
  for (Order order : {Order::kEventsFirst, Order::kSnapshotFirst, Order::kConcurrent,
                      Order::kSplit}) {
    SCOPED_TRACE(static_cast<int>(order));
    std::mt19937_64 rng(100 + static_cast<int>(order));
    // Each interleaving gets its own tags so the runs do not see each other.
    const std::string suffix = "_" + std::to_string(static_cast<int>(order));
    std::map<std::string, std::set<uint64_t>> snapshot;
    std::string csv;
    std::vector<uint64_t> pool;
    for (int i = 0; i < 300; ++i) pool.push_back(rng() % kUsers);
    for (const std::string& base : tags) {
      const std::string tag = base + suffix;
      snapshot[tag];
      for (uint64_t u : pool) {
        // Shard 4 never appears in the snapshot: rule 4 must empty it.
        if ((u >> 20) == 4 || rng() % 3 != 0) continue;
        snapshot[tag].insert(u);
        csv += std::to_string(u) + "," + tag + "\n";
      }
    }
    std::vector<RaceEvent> events;
    std::string ndjson;
    for (int i = 0; i < 3000; ++i) {
      RaceEvent e{pool[rng() % pool.size()], tags[rng() % tags.size()] + suffix, rng() % 2 == 0,
                  t - 500 + rng() % 1000};  // before, at and after T; ties happen
      events.push_back(e);
      ndjson += "{\"user\":" + std::to_string(e.user) + ",\"tag\":\"" + e.tag + "\",\"op\":\"" +
                (e.set ? "set" : "clear") + "\",\"ts\":" + std::to_string(e.ts) + "}\n";
    }
    const std::string csv_path = Path("race" + suffix + ".csv");
    WriteText(csv_path, csv);
    // The split order streams the events in two halves around the load.
    size_t half = ndjson.size() / 2;
    while (ndjson[half - 1] != '\n') ++half;
    const std::string all_path = Path("events" + suffix + ".ndjson");
    const std::string first_path = Path("first" + suffix + ".ndjson");
    const std::string second_path = Path("second" + suffix + ".ndjson");
    WriteText(all_path, ndjson);
    WriteText(first_path, ndjson.substr(0, half));
    WriteText(second_path, ndjson.substr(half));

    auto load = [&] {
      RunResult run = Tagctl({"load", csv_path, "--ts", std::to_string(t)});
      EXPECT_EQ(run.exit_code, 0) << run.err;
    };
    auto stream = [&](const std::string& path) {
      RunResult run = Tagctl({"stream", "--batch", "50"}, std::chrono::milliseconds(60000), path);
      EXPECT_EQ(run.exit_code, 0) << run.err;
    };
    switch (order) {
      case Order::kEventsFirst:
        stream(all_path);
        load();
        break;
      case Order::kSnapshotFirst:
        load();
        stream(all_path);
        break;
      case Order::kConcurrent: {
        std::thread events_thread([&] { stream(all_path); });
        load();
        events_thread.join();
        break;
      }
      case Order::kSplit:
        stream(first_path);
        load();
        stream(second_path);
        break;
    }

    const auto expected = Model(snapshot, events, t);
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    for (const auto& [tag, members] : expected) {
      EXPECT_EQ(Members(*c, tag), members) << tag;
    }
  }
}

}  // namespace
}  // namespace tagcache::testing
