// The client library against the real tagcache-server: writes and reads,
// queries and snapshots, 10,000 pipelined requests, reconnect after a
// restart, and the example program.
#include <roaring/roaring.hh>
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "server_fixture.h"
#include "tagcache/protocol/bitmap.h"

namespace tagcache::testing {
namespace {

using client::CallOptions;
using client::Event;
using client::TagOp;
using std::chrono::milliseconds;

// Sorted: the node's order is unspecified (docs/PROTOCOL.md §6).
std::vector<std::string> TagNames(const std::vector<client::TagHit>& hits) {
  std::vector<std::string> names;
  for (const auto& hit : hits) names.push_back(hit.tag);
  std::sort(names.begin(), names.end());
  return names;
}

using ClientIntegrationTest = ServerTest;

TEST_F(ClientIntegrationTest, SetClearGetHas) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->shard_bits(), 20);
  ASSERT_TRUE(client->Ping().ok());

  auto applied = client->ApplyEvents(
      {Event{42, "apple_fan", TagOp::kSet, 1000}, Event{42, "buyer", TagOp::kSet, 1000}});
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(applied->applied, 2u);

  auto tags = client->GetTags(42);
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  EXPECT_EQ(TagNames(*tags), (std::vector<std::string>{"apple_fan", "buyer"}));

  // A newer clear wins; an older set loses to it.
  applied = client->ApplyEvents({Event{42, "apple_fan", TagOp::kClear, 2000}});
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->applied, 1u);
  applied = client->ApplyEvents({Event{42, "apple_fan", TagOp::kSet, 1500}});
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->ignored, 1u);

  tags = client->GetTags(42, /*with_ts=*/true);
  ASSERT_TRUE(tags.ok());
  ASSERT_EQ(tags->size(), 1u);
  EXPECT_EQ((*tags)[0].tag, "buyer");
  EXPECT_EQ((*tags)[0].ts, 1000u);

  auto has = client->HasTags(42, {"apple_fan", "buyer"});
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_EQ(*has, (std::vector<bool>{false, true}));

  auto unknown = client->HasTags(42, {"never_written"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kUnknownTag);

  auto nobody = client->GetTags(7);
  ASSERT_TRUE(nobody.ok());
  EXPECT_TRUE(nobody->empty());

  auto batch = client->GetTagsBatch({7, 42});
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->size(), 2u);
  EXPECT_EQ((*batch)[0].user, 7u);
  EXPECT_TRUE((*batch)[0].tags.empty());
  EXPECT_EQ(TagNames((*batch)[1].tags), std::vector<std::string>{"buyer"});

  auto bad = client->ApplyEvents({Event{1, "bad tag!", TagOp::kSet, 1}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kBadRequest);
}

TEST_F(ClientIntegrationTest, QueriesAndSnapshots) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  // Users 0..999: all have "all"; even ones "even"; multiples of 3 "div3".
  std::vector<Event> events;
  for (uint64_t u = 0; u < 1000; ++u) {
    events.push_back({u, "all", TagOp::kSet, 100});
    if (u % 2 == 0) events.push_back({u, "even", TagOp::kSet, 100});
    if (u % 3 == 0) events.push_back({u, "div3", TagOp::kSet, 100});
  }
  auto applied = client->ApplyEvents(events);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(applied->applied, events.size());

  auto count = client->Count("even & div3");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 167u);
  count = client->Count("!even");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 500u);
  count = client->Count("all - (even | div3)");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 333u);

  // Audience in pages of 50 until the cursor runs out (bounded: 100 pages).
  std::vector<uint64_t> users;
  uint64_t cursor = 0;
  int pages = 0;
  for (; pages < 100; ++pages) {
    auto page = client->Audience("even & div3", cursor, 50);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_LE(page->users.size(), 50u);
    users.insert(users.end(), page->users.begin(), page->users.end());
    if (!page->next_cursor) break;
    cursor = *page->next_cursor;
  }
  EXPECT_EQ(pages + 1, 4);
  std::vector<uint64_t> expected;
  for (uint64_t u = 0; u < 1000; u += 6) expected.push_back(u);
  EXPECT_EQ(users, expected);

  auto top = client->TopTags("div3", 2);
  ASSERT_TRUE(top.ok()) << top.status().ToString();
  ASSERT_EQ(top->size(), 2u);
  EXPECT_EQ((*top)[0].tag, "all");
  EXPECT_EQ((*top)[0].count, 334u);
  EXPECT_EQ((*top)[1].tag, "div3");
  EXPECT_EQ((*top)[1].count, 334u);

  auto bitmaps = client->AudienceBitmaps("even");
  ASSERT_TRUE(bitmaps.ok()) << bitmaps.status().ToString();
  ASSERT_EQ(bitmaps->size(), 1u);
  EXPECT_EQ((*bitmaps)[0].shard, 0u);
  EXPECT_EQ((*bitmaps)[0].cardinality, 500u);
  auto members = protocol::ReadPortableBitmap((*bitmaps)[0].portable.data(),
                                              (*bitmaps)[0].portable.size(), 1u << 20);
  ASSERT_TRUE(members.ok()) << members.status().ToString();
  EXPECT_EQ(members->cardinality(), 500u);
  EXPECT_TRUE(members->contains(998));
  EXPECT_FALSE(members->contains(999));

  // Errors keep the node's code and message.
  auto parse_error = client->Count("even &");
  ASSERT_FALSE(parse_error.ok());
  EXPECT_EQ(parse_error.status().code(), StatusCode::kBadRequest);
  EXPECT_FALSE(parse_error.status().message().empty());
  auto unknown = client->Count("nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kUnknownTag);

  // A snapshot of "vip" as of 5000: users 1, 2, 3 in shard 0.
  Roaring vip;
  for (uint32_t u : {1u, 2u, 3u}) vip.add(u);
  const std::string portable = protocol::WritePortableBitmap(vip);
  auto outcome = client->LoadSnapshot("vip", 5000, 0, portable);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(*outcome, client::SnapshotOutcome::kApplied);
  outcome = client->LoadSnapshot("vip", 5000, 0, portable);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, client::SnapshotOutcome::kDuplicate);
  auto commit = client->CommitSnapshot("vip", 5000, {0});
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  EXPECT_TRUE(commit->missing_shards.empty());
  count = client->Count("vip & even");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1u);  // user 2

  auto stale = client->LoadSnapshot("vip", 4000, 0, portable);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), StatusCode::kStaleSnapshot);
  // Shard 7 was named but never loaded: reported, not emptied.
  commit = client->CommitSnapshot("vip", 6000, {0, 7});
  ASSERT_TRUE(commit.ok()) << commit.status().ToString();
  EXPECT_EQ(commit->missing_shards, std::vector<uint64_t>({0, 7}));

  // An event older than the snapshot is ignored (rule 1).
  applied = client->ApplyEvents({Event{2, "vip", TagOp::kClear, 4999}});
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->ignored, 1u);

  auto stats = client->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ((*stats)[0].node, server_->address());
  EXPECT_EQ((*stats)[0].known_users, 1000u);
  EXPECT_GE((*stats)[0].snapshots_applied, 1u);
}

TEST_F(ClientIntegrationTest, TenThousandPipelinedRequestsOverFourConnections) {
  constexpr uint64_t kUsers = 10000;
  auto options = Options();
  options.connections_per_node = 4;
  options.max_in_flight = kUsers;  // nothing waits in the client's queue
  options.request_timeout = milliseconds(30000);
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);

  // Each user's tags spell its id in decimal digits: d<ones> h<tens> k<hundreds> m<thousands>.
  auto tags_of = [](uint64_t u) {
    return std::set<std::string>{"d" + std::to_string(u % 10), "h" + std::to_string(u / 10 % 10),
                                 "k" + std::to_string(u / 100 % 10),
                                 "m" + std::to_string(u / 1000 % 10)};
  };
  std::vector<Event> events;
  for (uint64_t u = 0; u < kUsers; ++u) {
    for (const auto& tag : tags_of(u)) events.push_back({u, tag, TagOp::kSet, 10});
  }
  auto applied = client->ApplyEvents(events);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();

  std::mutex mu;
  std::condition_variable cv;
  uint64_t answered = 0, correct = 0;
  for (uint64_t u = 0; u < kUsers; ++u) {
    client->GetTagsAsync(u, false, [&, u](Result<std::vector<client::TagHit>> result) {
      bool ok = false;
      if (result.ok()) {
        std::set<std::string> got;
        for (const auto& hit : *result) got.insert(hit.tag);
        ok = got == tags_of(u);
      }
      std::lock_guard lock(mu);
      ++answered;
      if (ok) ++correct;
      if (answered == kUsers) cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return answered == kUsers; }));
  EXPECT_EQ(correct, kUsers);
}

// One response many times the client's 64 KiB read chunk (200,000 ids,
// ~1.6 MB) arrives over many reads and must come out whole.
TEST_F(ClientIntegrationTest, ResponseLargerThanTheReadBufferArrivesWhole) {
  auto client = Connect(Options());
  ASSERT_NE(client, nullptr);
  constexpr uint64_t kUsers = 200000;
  std::vector<uint32_t> offsets;
  for (uint32_t u = 0; u < kUsers; ++u) offsets.push_back(u * 3);
  Roaring members(offsets.size(), offsets.data());
  std::string bytes(members.getSizeInBytes(true), '\0');
  members.write(bytes.data(), true);
  ASSERT_TRUE(client->LoadSnapshot("big", 5, 0, bytes).ok());
  ASSERT_TRUE(client->CommitSnapshot("big", 5, {0}).ok());
  auto page = client->Audience("big", 0, kUsers);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->users.size(), kUsers);
  for (uint64_t i = 0; i < kUsers; ++i) ASSERT_EQ(page->users[i], i * 3) << i;
  EXPECT_FALSE(page->next_cursor.has_value());
}

TEST_F(ClientIntegrationTest, ReconnectsAfterServerRestart) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->ApplyEvents({Event{1, "before", TagOp::kSet, 10}}).ok());
  const uint16_t port = server_->port();

  server_->Kill();  // kill -9: the acknowledged write is in the WAL (default --fsync batch)
  auto down = client->Ping(CallOptions{milliseconds(1000)});
  EXPECT_FALSE(down.ok());
  server_ = ServerProcess::Start(ServerBinary(), dir_.path(), port);
  ASSERT_NE(server_, nullptr);

  // Bounded: 10 s, 500 tries.
  bool back = false;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int i = 0; i < 500 && !back && std::chrono::steady_clock::now() < end; ++i) {
    back = client->Ping(CallOptions{milliseconds(1000)}).ok();
    if (!back) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(back);
  ASSERT_TRUE(client->ApplyEvents({Event{1, "after", TagOp::kSet, 10}}).ok());
  auto tags = client->GetTags(1);
  ASSERT_TRUE(tags.ok()) << tags.status().ToString();
  // The write acknowledged before the kill was recovered from the data directory.
  EXPECT_EQ(TagNames(*tags), (std::vector<std::string>{"after", "before"}));
}

TEST_F(ClientIntegrationTest, ExampleProgramRuns) {
  RunResult run = RunProgram(ExampleBinary(), {server_->address()});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("ok"), std::string::npos) << run.out;
}

}  // namespace
}  // namespace tagcache::testing
