// In-process tests of the network node: a Node listens on 127.0.0.1:0 in a
// thread and the tests speak raw frames to it over plain POSIX sockets,
// including the malformed inputs it must survive. After each bad input a
// second, healthy connection checks that the node still serves.
#include "tagcache/net/node.h"

#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tagcache/protocol/bitmap.h"
#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/tag_hits.h"
#include "tagcache/protocol/frame.h"

#include "common/temp_dir.h"
#include "net/raw_client.h"

namespace tagcache::net {
namespace {

using std::chrono::milliseconds;

// ---- Frames -------------------------------------------------------------------

std::vector<uint8_t> HelloFrame(uint64_t id = 1, uint16_t version = protocol::kProtocolVersion) {
  return RequestFrame(id, [&](wire::Request::Builder r) {
    auto h = r.initHello();
    h.setVersion(version);
    h.setClient("net_test");
  });
}

std::vector<uint8_t> PingFrame(uint64_t id) {
  return RequestFrame(id, [](wire::Request::Builder r) { r.setPing(); });
}

std::vector<uint8_t> GetTagsFrame(uint64_t id, uint64_t user) {
  return RequestFrame(id, [&](wire::Request::Builder r) { r.initGetTags().setUser(user); });
}

std::vector<uint8_t> CountFrame(uint64_t id, const std::string& expr) {
  return RequestFrame(id, [&](wire::Request::Builder r) { r.initCount().setExpr(expr); });
}

std::vector<uint8_t> LoadSnapshotFrame(uint64_t id, const std::string& tag, uint64_t ts,
                                       uint64_t shard, const std::string& bitmap) {
  return RequestFrame(id, [&](wire::Request::Builder r) {
    auto l = r.initLoadSnapshot();
    l.setTag(tag);
    l.setTs(ts);
    l.setShard(shard);
    l.setBitmap(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bitmap.data()), bitmap.size()));
  });
}

std::vector<uint8_t> CommitFrame(uint64_t id, const std::string& tag, uint64_t ts,
                                 std::vector<uint64_t> shards) {
  return RequestFrame(id, [&](wire::Request::Builder r) {
    auto c = r.initCommitSnapshot();
    c.setTag(tag);
    c.setTs(ts);
    auto list = c.initShards(static_cast<unsigned>(shards.size()));
    for (unsigned i = 0; i < shards.size(); ++i) list.set(i, shards[i]);
  });
}

std::string Portable(std::initializer_list<uint32_t> values) {
  Roaring r;
  for (uint32_t v : values) r.add(v);
  return protocol::WritePortableBitmap(r);
}

// A frame around hand-written message words (segment table included here).
std::vector<uint8_t> RawMessageFrame(const std::vector<uint64_t>& words) {
  std::vector<uint8_t> body(8 + words.size() * 8);
  const uint32_t segment_words = static_cast<uint32_t>(words.size());
  std::memset(body.data(), 0, 4);  // one segment
  std::memcpy(body.data() + 4, &segment_words, 4);
  std::memcpy(body.data() + 8, words.data(), words.size() * 8);
  std::vector<uint8_t> out(protocol::kFrameHeaderBytes);
  protocol::EncodeFrameHeader({protocol::kProtocolVersion, 0, static_cast<uint32_t>(body.size())},
                              out.data());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

uint64_t StructPointer(int32_t offset, uint16_t data_words, uint16_t pointers) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2)) |
         (static_cast<uint64_t>(data_words) << 32) | (static_cast<uint64_t>(pointers) << 48);
}

// elem: 2 = byte, 6 = pointer.
uint64_t ListPointer(int32_t offset, uint8_t elem, uint32_t count) {
  return 1 | (static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2)) |
         (static_cast<uint64_t>(elem) << 32) | (static_cast<uint64_t>(count) << 35);
}

// HasTags whose `count` list elements all point at one text of `text_bytes`
// (NUL included): a small body that reads as count * text_bytes.
std::vector<uint64_t> AmplifiedHasTags(uint32_t count, uint32_t text_bytes) {
  std::vector<uint64_t> w;
  w.push_back(StructPointer(0, 2, 1));    // w0: root -> Request at w1
  w.push_back(42);                        // w1: id
  w.push_back(wire::Request::HAS_TAGS);   // w2: union discriminant
  w.push_back(StructPointer(0, 1, 1));    // w3: -> HasTags at w4
  w.push_back(7);                         // w4: user
  w.push_back(ListPointer(0, 6, count));  // w5: tags -> pointers at w6
  const size_t blob = 6 + count;
  for (uint32_t i = 0; i < count; ++i) {
    // Element i sits at word 6 + i; offsets count from the next word.
    w.push_back(ListPointer(static_cast<int32_t>(blob - (6 + i + 1)), 2, text_bytes));
  }
  std::vector<uint8_t> text((text_bytes + 7) / 8 * 8, 0);
  std::fill(text.begin(), text.begin() + (text_bytes - 1), 'a');  // then the NUL
  const size_t at = w.size();
  w.resize(at + text.size() / 8);
  std::memcpy(w.data() + at, text.data(), text.size());
  return w;
}

// A GetTags request whose struct carries an extra pointer leading into a
// chain of `depth` nested structs (a newer schema's field, as far as the
// node can tell).
std::vector<uint64_t> DeeplyNestedGetTags(uint32_t depth) {
  std::vector<uint64_t> w;
  w.push_back(StructPointer(0, 2, 1));   // root -> Request at w1
  w.push_back(43);                       // id
  w.push_back(wire::Request::GET_TAGS);  // discriminant
  w.push_back(StructPointer(0, 2, 1));   // -> GetTags at w4 (2 data words, 1 extra pointer)
  w.push_back(5);                        // user
  w.push_back(0);                        // withTs
  for (uint32_t i = 0; i < depth; ++i) w.push_back(StructPointer(0, 0, 1));  // -> next word
  w.push_back(0);                                                            // null
  return w;
}

// ---- Fixture -------------------------------------------------------------------

// Every test runs twice: on a node that keeps its state in RAM, and on one
// with a data directory, where writes and checkpoints take the logged path.
class NodeTest : public ::testing::TestWithParam<bool> {
 protected:
  NodeOptions DefaultOptions() const {
    NodeOptions o;
    if (GetParam()) o.data_dir = data_dir_.path();
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    o.io_threads = 2;
    o.workers = 2;
    o.engine.query_threads = 1;
    o.engine.shard_bits = 16;
    o.shutdown_grace = milliseconds(3000);
    return o;
  }

  void StartNode() { StartNode(DefaultOptions()); }
  void StartNode(NodeOptions options) {
    node_ = std::make_unique<Node>(std::move(options));
    Status s = node_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    port_ = node_->port();
    thread_ = std::thread([this] { node_->Run(); });
  }

  void StopNode() {
    if (!node_) return;
    node_->Stop();
    thread_.join();
    node_.reset();
  }

  void TearDown() override { StopNode(); }

  testing::ScopedTempDir data_dir_{"tagcache-node"};

  std::unique_ptr<RawClient> Connect() {
    auto c = std::make_unique<RawClient>(port_);
    EXPECT_TRUE(c->connected());
    return c;
  }

  // A connection past its hello.
  std::unique_ptr<RawClient> Established() {
    auto c = Connect();
    EXPECT_TRUE(c->Send(HelloFrame(1)));
    auto reply = c->Read();
    EXPECT_TRUE(reply.has_value());
    if (reply) {
      EXPECT_EQ(reply->get().getStatus(), wire::Status::OK);
    }
    return c;
  }

  // Sends one request and returns its response (which must carry `id`).
  static std::optional<Reply> Call(RawClient& c, const std::vector<uint8_t>& frame, uint64_t id) {
    if (!c.Send(frame)) return std::nullopt;
    auto reply = c.Read();
    if (reply) {
      EXPECT_EQ(reply->get().getId(), id);
    }
    return reply;
  }

  // Connections the node serves, not counting the one that asks; polls
  // until it equals `expected` (closes are noticed asynchronously).
  bool WaitForConnections(uint64_t expected) {
    uint64_t seen = ~uint64_t{0};
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto c = Established();
      auto r = Call(*c, RequestFrame(3, [](wire::Request::Builder b) { b.setStats(); }), 3);
      if (!r) return false;
      seen = r->get().getStats().getConnections() - 1;
      if (seen == expected) return true;
      c.reset();
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "the node serves " << seen << " connections, expected " << expected;
    return false;
  }

  // A fresh connection still gets served.
  void ExpectHealthy() {
    auto c = Established();
    auto reply = Call(*c, PingFrame(77), 77);
    ASSERT_TRUE(reply.has_value()) << "the node stopped serving";
    EXPECT_EQ(reply->get().getStatus(), wire::Status::OK);
  }

  // A connection that sent `bytes` gets an error (id 0) and is closed; the
  // node serves others.
  void ExpectErrorAndClose(RawClient& c, wire::Status expected) {
    auto reply = c.Read();
    ASSERT_TRUE(reply.has_value()) << "no error response before the close";
    EXPECT_EQ(reply->get().getStatus(), expected) << reply->get().getMessage().cStr();
    EXPECT_EQ(reply->get().getId(), 0u);
    EXPECT_TRUE(c.WaitClosed(milliseconds(3000)));
    ExpectHealthy();
  }

  std::unique_ptr<Node> node_;
  std::thread thread_;
  uint16_t port_ = 0;
};

// ---- Handshake -----------------------------------------------------------------

TEST_P(NodeTest, HelloRepliesWithNodeParameters) {
  StartNode();
  auto c = Connect();
  auto reply = Call(*c, HelloFrame(9), 9);
  ASSERT_TRUE(reply.has_value());
  auto r = reply->get();
  EXPECT_EQ(r.getStatus(), wire::Status::OK);
  ASSERT_TRUE(r.isHello());
  EXPECT_EQ(r.getHello().getVersion(), protocol::kProtocolVersion);
  EXPECT_EQ(r.getHello().getShardBits(), 16);
  EXPECT_EQ(r.getHello().getMaxFrameBytes(), protocol::kDefaultMaxFrameBytes);
  EXPECT_EQ(std::string(r.getHello().getNode().cStr()), "127.0.0.1:" + std::to_string(port_));
  auto ping = Call(*c, PingFrame(10), 10);
  ASSERT_TRUE(ping.has_value());
  EXPECT_EQ(ping->get().getStatus(), wire::Status::OK);
}

TEST_P(NodeTest, FirstFrameMustBeHello) {
  StartNode();
  auto c = Connect();
  auto reply = Call(*c, PingFrame(5), 5);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->get().getStatus(), wire::Status::BAD_REQUEST);
  EXPECT_TRUE(c->WaitClosed(milliseconds(3000)));
  ExpectHealthy();
}

TEST_P(NodeTest, OtherProtocolVersionIsRefused) {
  StartNode();
  auto c = Connect();
  auto reply = Call(*c, HelloFrame(3, 2), 3);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->get().getStatus(), wire::Status::UNSUPPORTED_VERSION);
  EXPECT_TRUE(c->WaitClosed(milliseconds(3000)));
  ExpectHealthy();
}

TEST_P(NodeTest, ConnectionWithoutHelloTimesOut) {
  NodeOptions o = DefaultOptions();
  o.hello_timeout = milliseconds(200);
  StartNode(o);
  auto c = Connect();
  EXPECT_TRUE(c->WaitClosed(milliseconds(3000)));
  ExpectHealthy();
}

// ---- Requests ------------------------------------------------------------------

TEST_P(NodeTest, WritesAndQueriesRoundTrip) {
  StartNode();
  auto c = Established();
  // Users 1..3 are apple fans, 2..4 buyers, all in shard 0.
  auto r = Call(*c, LoadSnapshotFrame(2, "apple_fan", 1000, 0, Portable({1, 2, 3})), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK) << r->get().getMessage().cStr();
  EXPECT_EQ(r->get().getLoadSnapshot().getOutcome(),
            wire::Response::LoadSnapshotReply::Outcome::APPLIED);
  r = Call(*c, LoadSnapshotFrame(3, "buyer", 1000, 0, Portable({2, 3, 4})), 3);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
  r = Call(*c, CommitFrame(4, "apple_fan", 1000, {0}), 4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
  EXPECT_EQ(r->get().getCommitSnapshot().getMissingShards().size(), 0u);
  // A commit naming a shard whose part never came: INCOMPLETE, with the shard.
  r = Call(*c, CommitFrame(5, "buyer", 1000, {0, 3}), 5);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::INCOMPLETE);
  ASSERT_EQ(r->get().getCommitSnapshot().getMissingShards().size(), 1u);
  EXPECT_EQ(r->get().getCommitSnapshot().getMissingShards()[0], 3u);

  r = Call(*c, GetTagsFrame(6, 2), 6);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->get().isGetTags());
  std::set<std::string> tags;
  protocol::ForEachTagHit(r->get().getGetTags(),
                          [&](std::string_view tag, uint64_t) { tags.insert(std::string(tag)); });
  EXPECT_EQ(tags, (std::set<std::string>{"apple_fan", "buyer"}));

  r = Call(*c,
           RequestFrame(7,
                        [](wire::Request::Builder b) {
                          auto h = b.initHasTags();
                          h.setUser(1);
                          auto t = h.initTags(2);
                          t.set(0, "apple_fan");
                          t.set(1, "buyer");
                        }),
           7);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->get().isHasTags());
  ASSERT_EQ(r->get().getHasTags().size(), 2u);
  EXPECT_TRUE(r->get().getHasTags()[0]);
  EXPECT_FALSE(r->get().getHasTags()[1]);

  r = Call(*c, CountFrame(8, "apple_fan & buyer"), 8);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
  EXPECT_EQ(r->get().getCount(), 2u);

  r = Call(*c, CountFrame(9, "apple_fan & nope"), 9);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::UNKNOWN_TAG);

  r = Call(*c,
           RequestFrame(10,
                        [](wire::Request::Builder b) {
                          auto a = b.initAudience();
                          a.setExpr("apple_fan | buyer");
                          a.setLimit(3);
                        }),
           10);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->get().isAudience());
  auto page = r->get().getAudience();
  ASSERT_EQ(page.getUsers().size(), 3u);
  EXPECT_EQ(page.getUsers()[0], 1u);
  EXPECT_TRUE(page.getHasMore());
  EXPECT_EQ(page.getNextCursor(), 4u);

  r = Call(*c,
           RequestFrame(11,
                        [](wire::Request::Builder b) {
                          auto t = b.initTopTags();
                          t.setExpr("buyer");
                          t.setK(5);
                        }),
           11);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->get().isTopTags());
  ASSERT_EQ(r->get().getTopTags().size(), 2u);
  EXPECT_EQ(std::string(r->get().getTopTags()[0].getTag().cStr()), "buyer");
  EXPECT_EQ(r->get().getTopTags()[0].getCount(), 3u);

  r = Call(*c,
           RequestFrame(
               12, [](wire::Request::Builder b) { b.initAudienceBitmaps().setExpr("apple_fan"); }),
           12);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->get().isAudienceBitmaps());
  ASSERT_EQ(r->get().getAudienceBitmaps().size(), 1u);
  EXPECT_EQ(r->get().getAudienceBitmaps()[0].getCardinality(), 3u);

  r = Call(*c,
           RequestFrame(13,
                        [](wire::Request::Builder b) {
                          auto events = b.initApplyEvents().initEvents(2);
                          events[0].setUser(5);
                          events[0].setTag("buyer");
                          events[0].setOp(wire::TagOp::SET);
                          events[0].setTs(2000);
                          events[1].setUser(2);
                          events[1].setTag("buyer");
                          events[1].setOp(wire::TagOp::CLEAR);
                          events[1].setTs(500);  // older than the snapshot: ignored
                        }),
           13);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
  EXPECT_EQ(r->get().getApplyEvents().getApplied(), 1u);
  EXPECT_EQ(r->get().getApplyEvents().getIgnored(), 1u);

  r = Call(*c,
           RequestFrame(14,
                        [](wire::Request::Builder b) {
                          auto batch = b.initGetTagsBatch();
                          auto users = batch.initUsers(3);
                          users.set(0, 5);
                          users.set(1, 4);
                          users.set(2, 999);
                          batch.setWithTs(true);
                        }),
           14);
  ASSERT_TRUE(r);
  auto batch = r->get().getGetTagsBatch();
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].getUser(), 5u);
  std::vector<uint64_t> first_ts;
  protocol::ForEachTagHit(batch[0].getTags(),
                          [&](std::string_view, uint64_t ts) { first_ts.push_back(ts); });
  EXPECT_EQ(first_ts, std::vector<uint64_t>{2000u});
  EXPECT_EQ(protocol::ForEachTagHit(batch[2].getTags(), [](std::string_view, uint64_t) {}), 0u);

  r = Call(*c, RequestFrame(15, [](wire::Request::Builder b) { b.setStats(); }), 15);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->get().isStats());
  auto stats = r->get().getStats();
  EXPECT_EQ(stats.getTags(), 2u);
  EXPECT_GE(stats.getShards(), 1u);
  EXPECT_EQ(stats.getConnections(), 1u);
  EXPECT_EQ(stats.getEventsApplied(), 1u);
  EXPECT_GT(stats.getBitmapBytes(), 0u);
  bool saw_get_tags = false;
  for (auto k : stats.getRequests()) {
    if (std::string(k.getKind().cStr()) == "getTags") {
      saw_get_tags = true;
      EXPECT_EQ(k.getCount(), 1u);
      EXPECT_LE(k.getP50Micros(), k.getP99Micros());
    }
    if (std::string(k.getKind().cStr()) == "count") {
      EXPECT_EQ(k.getCount(), 2u);
      EXPECT_EQ(k.getErrors(), 1u);
    }
  }
  EXPECT_TRUE(saw_get_tags);
}

TEST_P(NodeTest, LargeFrameIsReceivedIntoItsOwnBuffer) {
  NodeOptions o = DefaultOptions();
  o.engine.shard_bits = 20;
  StartNode(o);
  auto c = Established();
  Roaring members;
  for (uint32_t v = 0; v < (1u << 20); v += 3) members.add(v);  // 16 bitset containers, 128 KiB
  const std::string bitmap = protocol::WritePortableBitmap(members);
  ASSERT_GT(bitmap.size(), size_t{16} << 10);
  auto r = Call(*c, LoadSnapshotFrame(2, "big", 1000, 1, bitmap), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK) << r->get().getMessage().cStr();
  r = Call(*c, CountFrame(3, "big"), 3);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getCount(), members.cardinality());
}

TEST_P(NodeTest, PipelinedLargeFramesAreAllAnswered) {
  NodeOptions o = DefaultOptions();
  o.engine.shard_bits = 20;
  o.max_frame_bytes = 256 << 10;  // in-flight request bodies are bounded by about this much
  StartNode(o);
  auto c = Established();
  Roaring members;
  for (uint32_t v = 0; v < (1u << 20); v += 5) members.add(v);
  const std::string bitmap = protocol::WritePortableBitmap(members);
  std::vector<uint8_t> all;
  const int n = 24;
  for (int i = 0; i < n; ++i) {
    auto f = LoadSnapshotFrame(100 + i, "wide", 1000, static_cast<uint64_t>(i), bitmap);
    all.insert(all.end(), f.begin(), f.end());
  }
  ASSERT_GT(all.size(), size_t{n} * (128 << 10));
  std::thread sender([&c, &all] { ASSERT_TRUE(c->Send(all)); });
  std::set<uint64_t> seen;
  for (int i = 0; i < n; ++i) {
    auto r = c->Read();
    ASSERT_TRUE(r) << "response " << i << " missing";
    EXPECT_EQ(r->get().getStatus(), wire::Status::OK) << r->get().getMessage().cStr();
    seen.insert(r->get().getId());
  }
  sender.join();
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));
  auto r = Call(*c, CountFrame(2, "wide"), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getCount(), members.cardinality() * n);
}

TEST_P(NodeTest, ResponsesNeverExceedTheAnnouncedFrameLimit) {
  NodeOptions o = DefaultOptions();
  o.max_frame_bytes = 16 << 10;
  StartNode(o);
  // User 7 has 600 tags of ~50-byte names: its getTags answer is about 30 KiB.
  for (int t = 0; t < 600; ++t) {
    std::vector<UserId> users = {7};
    ASSERT_TRUE(node_->engine()
                    .ApplyFullSnapshot("a_much_longer_tag_name_to_outgrow_the_frame_limit_" +
                                           std::to_string(t),
                                       1000, users)
                    .ok());
  }
  std::vector<UserId> many;
  for (UserId u = 0; u < 10'000; ++u) many.push_back(u);
  ASSERT_TRUE(node_->engine().ApplyFullSnapshot("many", 1000, many).ok());
  auto c = Established();
  auto r = Call(*c, GetTagsFrame(2, 7), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OVERLOADED) << r->get().getMessage().cStr();
  // An audience page is cut to fit instead, and says there is more.
  r = Call(*c,
           RequestFrame(3,
                        [](wire::Request::Builder b) {
                          auto a = b.initAudience();
                          a.setExpr("many");
                          a.setLimit(100'000);
                        }),
           3);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->get().getStatus(), wire::Status::OK) << r->get().getMessage().cStr();
  EXPECT_GT(r->get().getAudience().getUsers().size(), 0u);
  EXPECT_LT(r->get().getAudience().getUsers().size(), 10'000u);
  EXPECT_TRUE(r->get().getAudience().getHasMore());
  // The connection is fine.
  r = Call(*c, PingFrame(4), 4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
}

// ---- Bad input -----------------------------------------------------------------

TEST_P(NodeTest, InvalidBitmapInLoadSnapshotIsRefusedAndConnectionStays) {
  NodeOptions o = DefaultOptions();
  o.engine.shard_bits = 20;
  StartNode(o);
  auto c = Established();
  // Not a bitmap at all.
  auto r = Call(*c, LoadSnapshotFrame(2, "t", 1000, 0, "garbage!"), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::BAD_REQUEST);
  // Structurally invalid: two containers with descending keys (5 then 3).
  std::string unsorted;
  auto put16 = [&](uint16_t v) { unsorted.append(reinterpret_cast<const char*>(&v), 2); };
  auto put32 = [&](uint32_t v) { unsorted.append(reinterpret_cast<const char*>(&v), 4); };
  put32(12346);
  put32(2);
  put16(5), put16(0), put16(3), put16(0);  // key, cardinality - 1
  put32(24), put32(26);                    // offsets
  put16(1), put16(2);                      // the array containers
  r = Call(*c, LoadSnapshotFrame(3, "t", 1000, 0, unsorted), 3);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::BAD_REQUEST);
  EXPECT_NE(std::string(r->get().getMessage().cStr()).find("key"), std::string::npos)
      << r->get().getMessage().cStr();
  // A value outside the shard (shard_bits 20).
  r = Call(*c, LoadSnapshotFrame(4, "t", 1000, 0, Portable({1u << 20})), 4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::BAD_REQUEST);
  // Truncated.
  std::string good = Portable({1, 2, 3});
  r = Call(*c, LoadSnapshotFrame(5, "t", 1000, 0, good.substr(0, good.size() - 1)), 5);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::BAD_REQUEST);
  // The connection still works.
  r = Call(*c, PingFrame(6), 6);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
  EXPECT_EQ(node_->engine().Stats().tags, 0u);
}

TEST_P(NodeTest, UnknownRequestKindKeepsTheConnection) {
  StartNode();
  auto c = Established();
  std::vector<uint8_t> frame =
      RequestFrame(0x1122334455667788ull, [](wire::Request::Builder b) { b.setStats(); });
  // Body: segment table (8), root pointer (8), id (8), then the discriminant.
  const size_t at = protocol::kFrameHeaderBytes + 24;
  uint16_t which = 0;
  std::memcpy(&which, frame.data() + at, 2);
  ASSERT_EQ(which, wire::Request::STATS);
  which = 200;
  std::memcpy(frame.data() + at, &which, 2);
  auto r = Call(*c, frame, 0x1122334455667788ull);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::BAD_REQUEST);
  EXPECT_NE(std::string(r->get().getMessage().cStr()).find("unknown request kind 200"),
            std::string::npos);
  r = Call(*c, PingFrame(2), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
}

TEST_P(NodeTest, GarbageBytesGetAnErrorAndClose) {
  StartNode();
  auto c = Connect();
  std::string garbage = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  ASSERT_TRUE(c->Send(garbage.data(), garbage.size()));
  ExpectErrorAndClose(*c, wire::Status::BAD_REQUEST);
}

TEST_P(NodeTest, GarbageAfterHelloGetsAnErrorAndClose) {
  StartNode();
  auto c = Established();
  std::vector<uint8_t> garbage(4096);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(i * 131 + 7);
  ASSERT_TRUE(c->Send(garbage));
  ExpectErrorAndClose(*c, wire::Status::BAD_REQUEST);
}

TEST_P(NodeTest, HugeLengthIsRefusedWithoutAllocating) {
  StartNode();
  for (bool after_hello : {false, true}) {
    auto c = after_hello ? Established() : Connect();
    uint8_t header[12] = {'T',  'A',  'G',  'C', protocol::kProtocolVersion, 0, 0, 0,
                          0xF8, 0xFF, 0xFF, 0xFF};
    ASSERT_TRUE(c->Send(header, sizeof(header)));
    ExpectErrorAndClose(*c, wire::Status::BAD_REQUEST);
    // 0xFFFFFFFF (not a multiple of 8) too.
    auto d = after_hello ? Established() : Connect();
    header[8] = 0xFF;
    ASSERT_TRUE(d->Send(header, sizeof(header)));
    ExpectErrorAndClose(*d, wire::Status::BAD_REQUEST);
  }
}

TEST_P(NodeTest, FrameCutOffMidBodyThenClosed) {
  StartNode();
  {
    auto c = Established();
    std::vector<uint8_t> frame = CountFrame(2, "a & b");
    ASSERT_TRUE(c->Send(frame.data(), frame.size() - 8));
  }  // closed mid-body
  {
    // The same for a frame larger than the read buffer, claimed at 32 MiB.
    auto c = Established();
    std::vector<uint8_t> partial(12 + 100'000, 0);
    protocol::EncodeFrameHeader({protocol::kProtocolVersion, 0, 32u << 20}, partial.data());
    ASSERT_TRUE(c->Send(partial));
  }
  ExpectHealthy();
  EXPECT_TRUE(WaitForConnections(0));  // the cut ones are gone
}

TEST_P(NodeTest, AmplifiedMessageIsRefused) {
  StartNode();
  {
    auto c = Established();  // small: parsed on the IO thread
    ASSERT_TRUE(c->Send(RawMessageFrame(AmplifiedHasTags(500, 2000))));
    ExpectErrorAndClose(*c, wire::Status::BAD_REQUEST);
  }
  {
    auto c = Established();  // larger than the read buffer: parsed by a worker
    ASSERT_TRUE(c->Send(RawMessageFrame(AmplifiedHasTags(4000, 8000))));
    ExpectErrorAndClose(*c, wire::Status::BAD_REQUEST);
  }
}

TEST_P(NodeTest, DeeplyNestedMessageIsRefused) {
  StartNode();
  auto c = Established();
  ASSERT_TRUE(c->Send(RawMessageFrame(DeeplyNestedGetTags(200))));
  ExpectErrorAndClose(*c, wire::Status::BAD_REQUEST);
}

TEST_P(NodeTest, ClientThatNeverReadsIsBoundedThenDisconnected) {
  NodeOptions o = DefaultOptions();
  o.max_output_bytes = 64 << 10;
  o.write_timeout = milliseconds(500);
  StartNode(o);
  // A user with many tags makes every response a few KiB.
  for (int t = 0; t < 100; ++t) {
    std::vector<UserId> users = {7};
    ASSERT_TRUE(node_->engine()
                    .ApplyFullSnapshot("tag_with_a_longish_name_" + std::to_string(t), 1000, users)
                    .ok());
  }
  auto c = Established();
  std::vector<uint8_t> batch;
  for (int i = 0; i < 100; ++i) {
    auto f = GetTagsFrame(1000 + i, 7);
    batch.insert(batch.end(), f.begin(), f.end());
  }
  ::fcntl(c->fd(), F_SETFL, ::fcntl(c->fd(), F_GETFL) | O_NONBLOCK);
  size_t sent = 0;
  auto last_progress = std::chrono::steady_clock::now();
  size_t off = 0;
  while (std::chrono::steady_clock::now() - last_progress < milliseconds(300)) {
    ssize_t k = ::send(c->fd(), batch.data() + off, batch.size() - off, MSG_NOSIGNAL);
    if (k > 0) {
      sent += static_cast<size_t>(k);
      off = (off + static_cast<size_t>(k)) % batch.size();
      last_progress = std::chrono::steady_clock::now();
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      std::this_thread::sleep_for(milliseconds(5));
    } else {
      break;  // closed by the node already
    }
    ASSERT_LT(sent, size_t{256} << 20) << "the node keeps reading from a client that never reads";
  }
  // The node stopped reading (the kernel buffers filled up), then gave up on
  // the client after the write timeout. (Reading here would let it go on.)
  EXPECT_TRUE(WaitForConnections(0));
  ExpectHealthy();
}

TEST_P(NodeTest, ExcessConnectionIsAnsweredOverloaded) {
  NodeOptions o = DefaultOptions();
  o.max_connections = 2;
  StartNode(o);
  auto a = Established();
  auto b = Established();
  auto c = Connect();
  auto r = c->Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get().getStatus(), wire::Status::OVERLOADED);
  EXPECT_TRUE(c->WaitClosed(milliseconds(3000)));
  a.reset();
  // The freed slot is given back once the node notices the close.
  std::unique_ptr<RawClient> d;
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::this_thread::sleep_for(milliseconds(20));
    d = Connect();
    ASSERT_TRUE(d->Send(HelloFrame(1)));
    auto reply = d->Read();
    ASSERT_TRUE(reply);
    if (reply->get().getStatus() == wire::Status::OK) break;
    d.reset();
  }
  ASSERT_TRUE(d);
  auto ping = Call(*d, PingFrame(2), 2);
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->get().getStatus(), wire::Status::OK);
}

// ---- Pipelining and shutdown -----------------------------------------------------

void LoadSmallDataset(Engine& engine) {
  std::vector<UserId> even, thirds;
  for (UserId u = 0; u < 1000; ++u) {
    if (u % 2 == 0) even.push_back(u);
    if (u % 3 == 0) thirds.push_back(u);
  }
  ASSERT_TRUE(engine.ApplyFullSnapshot("even", 1000, even).ok());
  ASSERT_TRUE(engine.ApplyFullSnapshot("third", 1000, thirds).ok());
}

void PipelineOn(RawClient& c, uint64_t first_id, int n) {
  // Ids first_id.. ; every 10th a count (worker pool, may finish out of
  // order), every 10th + 1 a ping, the rest getTags.
  std::vector<uint8_t> all;
  for (int i = 0; i < n; ++i) {
    const uint64_t id = first_id + static_cast<uint64_t>(i);
    std::vector<uint8_t> f = i % 10 == 0   ? CountFrame(id, "even & third")
                             : i % 10 == 1 ? PingFrame(id)
                                           : GetTagsFrame(id, static_cast<uint64_t>(i % 1000));
    all.insert(all.end(), f.begin(), f.end());
  }
  std::thread sender([&c, &all] {
    for (size_t off = 0; off < all.size(); off += 4096) {
      ASSERT_TRUE(c.Send(all.data() + off, std::min<size_t>(4096, all.size() - off)));
    }
  });
  std::set<uint64_t> seen;
  for (int i = 0; i < n; ++i) {
    auto r = c.Read();
    ASSERT_TRUE(r) << "response " << i << " of " << n << " missing";
    auto resp = r->get();
    const uint64_t id = resp.getId();
    ASSERT_GE(id, first_id);
    ASSERT_LT(id, first_id + static_cast<uint64_t>(n));
    EXPECT_TRUE(seen.insert(id).second) << "duplicate response " << id;
    EXPECT_EQ(resp.getStatus(), wire::Status::OK);
    const int k = static_cast<int>(id - first_id);
    if (k % 10 == 0) {
      EXPECT_EQ(resp.getCount(), 167u);  // multiples of 6 below 1000
    } else if (k % 10 != 1) {
      const uint64_t user = static_cast<uint64_t>(k % 1000);
      const size_t expected = (user % 2 == 0) + (user % 3 == 0);
      EXPECT_EQ(protocol::ForEachTagHit(resp.getGetTags(), [](std::string_view, uint64_t) {}),
                expected)
          << "user " << user;
    }
  }
  sender.join();
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));
}

TEST_P(NodeTest, PipelinedRequestsOverFourConnectionsAreAllAnsweredById) {
  StartNode();
  LoadSmallDataset(node_->engine());
  std::vector<std::thread> clients;
  for (int k = 0; k < 4; ++k) {
    clients.emplace_back([this, k] {
      auto c = Established();
      PipelineOn(*c, 1'000'000ull * (k + 1), 2500);
    });
  }
  for (auto& t : clients) t.join();
}

TEST_P(NodeTest, SmallInflightCapStillAnswersEverything) {
  NodeOptions o = DefaultOptions();
  o.max_inflight = 2;
  StartNode(o);
  LoadSmallDataset(node_->engine());
  auto c = Established();
  PipelineOn(*c, 1, 2000);
}

TEST_P(NodeTest, StopFinishesInFlightRequestsThenCloses) {
  StartNode();
  LoadSmallDataset(node_->engine());
  auto c = Established();
  std::vector<uint8_t> all;
  const int n = 100;
  for (int i = 0; i < n; ++i) {
    auto f = CountFrame(100 + i, "even | third");
    all.insert(all.end(), f.begin(), f.end());
  }
  ASSERT_LT(all.size(), size_t{16} << 10);  // one read: all dispatched together
  ASSERT_TRUE(c->Send(all));
  auto first = c->Read();
  ASSERT_TRUE(first);
  node_->Stop();  // while most of the counts are still queued on the workers
  int answered = 1;
  while (auto r = c->Read()) {
    EXPECT_EQ(r->get().getStatus(), wire::Status::OK);
    ++answered;
  }
  EXPECT_EQ(answered, n);
  thread_.join();
  node_.reset();
  RawClient late(port_);
  EXPECT_FALSE(late.connected());
}

INSTANTIATE_TEST_SUITE_P(InRamAndDurable, NodeTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "WithDataDir" : "InRam";
                         });

}  // namespace
}  // namespace tagcache::net

// ---- Limits --------------------------------------------------------------------
// Every protective limit refuses (or closes, clamps) with a reason naming it
// and moves its counter in Stats. Run once, on a node without a data directory.

namespace tagcache::net {
namespace {

class LimitsTest : public NodeTest {
 protected:
  struct LimitEntry {
    uint64_t value = 0;
    uint64_t count = 0;
  };

  // The Stats reply's limits, by name, asked on a fresh connection.
  std::map<std::string, LimitEntry> Limits() {
    auto c = Established();
    auto r = Call(*c, RequestFrame(3, [](wire::Request::Builder b) { b.setStats(); }), 3);
    std::map<std::string, LimitEntry> out;
    EXPECT_TRUE(r.has_value());
    if (!r) return out;
    for (auto l : r->get().getStats().getLimits()) {
      out[l.getLimit().cStr()] = LimitEntry{l.getValue(), l.getCount()};
    }
    return out;
  }

  uint64_t LimitCount(const std::string& name) {
    auto limits = Limits();
    EXPECT_TRUE(limits.count(name)) << "no limit named " << name << " in Stats";
    return limits[name].count;
  }

  // Resident memory of this process (the node runs in it), from Stats.
  uint64_t NodeResidentBytes() {
    auto c = Established();
    auto r = Call(*c, RequestFrame(4, [](wire::Request::Builder b) { b.setStats(); }), 4);
    EXPECT_TRUE(r.has_value());
    return r ? r->get().getStats().getMemoryBytes() : 0;
  }
};

std::vector<uint8_t> AudienceFrame(uint64_t id, const std::string& expr, uint32_t limit,
                                   uint64_t cursor = 0) {
  return RequestFrame(id, [&](wire::Request::Builder r) {
    auto a = r.initAudience();
    a.setExpr(expr);
    a.setLimit(limit);
    a.setCursor(cursor);
  });
}

TEST_P(LimitsTest, StatsReportEveryLimitWithItsValue) {
  NodeOptions o = DefaultOptions();
  o.idle_timeout = milliseconds(12'345);
  o.max_audience_page = 777;
  o.max_connections = 99;
  o.engine.expr_limits.max_length = 4321;
  StartNode(o);
  auto limits = Limits();
  for (const char* name :
       {"connections", "pre_hello_frame_bytes", "frame_bytes", "hello_timeout", "idle_timeout",
        "write_timeout", "inflight", "output_bytes", "response_bytes", "expression",
        "audience_page", "memory"}) {
    ASSERT_TRUE(limits.count(name)) << name;
    EXPECT_EQ(limits[name].count, 0u) << name;
  }
  EXPECT_EQ(limits["idle_timeout"].value, 12'345u);
  EXPECT_EQ(limits["audience_page"].value, 777u);
  EXPECT_EQ(limits["connections"].value, 99u);
  EXPECT_EQ(limits["expression"].value, 4321u);
  EXPECT_EQ(limits["pre_hello_frame_bytes"].value, 16u << 10);
  // The hard output cap is never below the pause threshold plus one largest response.
  EXPECT_EQ(limits["output_bytes"].value,
            o.max_output_bytes + protocol::kFrameHeaderBytes + o.max_frame_bytes);
}

TEST_P(LimitsTest, OversizedFrameBeforeHelloIsRefusedNamingTheLimitAndCounted) {
  StartNode();
  auto c = Connect();
  uint8_t header[protocol::kFrameHeaderBytes];
  protocol::EncodeFrameHeader({protocol::kProtocolVersion, 0, (16u << 10) + 8}, header);
  ASSERT_TRUE(c->Send(header, sizeof(header)));
  auto reply = c->Read();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->get().getStatus(), wire::Status::BAD_REQUEST);
  EXPECT_NE(std::string(reply->get().getMessage().cStr()).find("exceeds the limit of 16384"),
            std::string::npos)
      << reply->get().getMessage().cStr();
  EXPECT_TRUE(c->WaitClosed(milliseconds(3000)));
  EXPECT_EQ(LimitCount("pre_hello_frame_bytes"), 1u);
  EXPECT_EQ(LimitCount("frame_bytes"), 0u);
}

TEST_P(LimitsTest, SlowlorisHelloIsClosedAtTheHelloTimeout) {
  NodeOptions o = DefaultOptions();
  o.hello_timeout = milliseconds(300);
  StartNode(o);
  auto c = Connect();
  const std::vector<uint8_t> hello = HelloFrame(1);
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  // One byte every 50 ms: the whole hello would take seconds. Bounded by the
  // hello's size and by the 5 s below.
  for (size_t i = 0; i < hello.size() && !closed; ++i) {
    if (!c->Send(&hello[i], 1)) {
      closed = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(50));
    uint8_t byte;
    const ssize_t k = ::recv(c->fd(), &byte, 1, MSG_DONTWAIT);
    closed = k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  }
  if (!closed) closed = c->WaitClosed(milliseconds(3000));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(closed) << "a hello trickled in byte by byte kept the connection open";
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, milliseconds(3000));
  EXPECT_EQ(LimitCount("hello_timeout"), 1u);
  ExpectHealthy();
}

TEST_P(LimitsTest, IdleConnectionIsClosedAndABusyOneIsNot) {
  NodeOptions o = DefaultOptions();
  o.idle_timeout = milliseconds(300);
  StartNode(o);
  auto idle = Established();
  auto busy = Established();
  const auto start = std::chrono::steady_clock::now();
  uint64_t id = 100;
  // The busy connection sends a request every 50 ms for 1 s: never idle.
  while (std::chrono::steady_clock::now() - start < milliseconds(1000)) {
    auto r = Call(*busy, PingFrame(id), id);
    ASSERT_TRUE(r.has_value()) << "a busy connection was closed";
    ++id;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(idle->WaitClosed(milliseconds(3000)));
  auto r = Call(*busy, RequestFrame(7, [](wire::Request::Builder b) { b.setStats(); }), 7);
  ASSERT_TRUE(r.has_value());
  uint64_t idle_closes = 0;
  for (auto l : r->get().getStats().getLimits()) {
    if (std::string(l.getLimit().cStr()) == "idle_timeout") {
      idle_closes = l.getCount();
      EXPECT_EQ(l.getValue(), 300u);
    }
  }
  EXPECT_EQ(idle_closes, 1u);
}

TEST_P(LimitsTest, IdleTimeoutZeroNeverCloses) {
  NodeOptions o = DefaultOptions();
  o.idle_timeout = milliseconds(0);
  StartNode(o);
  auto c = Established();
  std::this_thread::sleep_for(milliseconds(500));
  auto r = Call(*c, PingFrame(5), 5);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(LimitCount("idle_timeout"), 0u);
}

TEST_P(LimitsTest, ExpressionOverTheLimitsIsRefusedWithAClearError) {
  NodeOptions o = DefaultOptions();
  o.engine.expr_limits.max_depth = 8;
  o.engine.expr_limits.max_length = 256;
  o.engine.expr_limits.max_terms = 16;
  StartNode(o);
  LoadSmallDataset(node_->engine());
  auto c = Established();
  struct Case {
    std::string expr;
    std::string says;
  };
  std::string many_terms = "even";
  for (int i = 0; i < 20; ++i) many_terms += " | third";
  const std::vector<Case> cases = {
      {std::string(10, '(') + "even" + std::string(10, ')'), "nested deeper than the limit of 8"},
      {"even | " + std::string(300, 'x'), "longer than the limit of 256 bytes"},
      {many_terms, "more than the limit of 16 tag references"},
  };
  uint64_t id = 10;
  for (const Case& k : cases) {
    auto r = Call(*c, CountFrame(id, k.expr), id);
    ++id;
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->get().getStatus(), wire::Status::BAD_REQUEST);
    const std::string msg = r->get().getMessage().cStr();
    EXPECT_NE(msg.find("expression over a limit"), std::string::npos) << msg;
    EXPECT_NE(msg.find(k.says), std::string::npos) << msg;
  }
  // Within the limits: served. A syntax error is refused but not counted.
  auto ok = Call(*c, CountFrame(id, "((even)) & !third"), id);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->get().getStatus(), wire::Status::OK);
  EXPECT_EQ(ok->get().getCount(), 333u);  // even and not a multiple of 3, below 1000
  auto bad = Call(*c, CountFrame(id + 1, "even &"), id + 1);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->get().getStatus(), wire::Status::BAD_REQUEST);
  EXPECT_EQ(LimitCount("expression"), 3u);
}

TEST_P(LimitsTest, AudiencePageIsClampedToTheLimitAndCounted) {
  NodeOptions o = DefaultOptions();
  o.max_audience_page = 100;
  StartNode(o);
  LoadSmallDataset(node_->engine());
  auto c = Established();
  auto r = Call(*c, AudienceFrame(5, "even", 500), 5);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->get().getStatus(), wire::Status::OK) << r->get().getMessage().cStr();
  auto page = r->get().getAudience();
  ASSERT_EQ(page.getUsers().size(), 100u);
  EXPECT_EQ(page.getUsers()[99], 198u);
  EXPECT_TRUE(page.getHasMore());
  // The client continues from the cursor and gets the rest, page by page.
  uint64_t total = page.getUsers().size();
  uint64_t cursor = page.getNextCursor();
  for (int pages = 0; pages < 20 && cursor != 0; ++pages) {
    auto next = Call(*c, AudienceFrame(6 + pages, "even", 500, cursor), 6 + pages);
    ASSERT_TRUE(next.has_value());
    total += next->get().getAudience().getUsers().size();
    cursor = next->get().getAudience().getHasMore() ? next->get().getAudience().getNextCursor() : 0;
  }
  EXPECT_EQ(total, 500u);
  const uint64_t clamped = LimitCount("audience_page");
  EXPECT_GE(clamped, 5u);  // every request asked for 500
  auto small = Call(*c, AudienceFrame(50, "even", 50), 50);
  ASSERT_TRUE(small.has_value());
  EXPECT_EQ(small->get().getAudience().getUsers().size(), 50u);
  EXPECT_EQ(LimitCount("audience_page"), clamped);  // within the limit: not counted
}

TEST_P(LimitsTest, SlowReaderIsDisconnectedAtTheOutputCapWithMemoryBounded) {
  NodeOptions o = DefaultOptions();
  o.max_frame_bytes = 64 << 10;
  o.max_output_bytes = 64 << 10;  // the hard cap is then 128 KiB + 12
  o.write_timeout = milliseconds(60'000);  // the cap, not the write timeout, must act
  StartNode(o);
  std::vector<UserId> users;
  for (UserId u = 0; u < 7000; ++u) users.push_back(u);
  ASSERT_TRUE(node_->engine().ApplyFullSnapshot("all", 1000, users).ok());
  const uint64_t rss_before = NodeResidentBytes();
  auto c = Established();
  // Every response is 7,000 ids (56 KB); the client never reads any.
  std::vector<uint8_t> batch;
  for (int i = 0; i < 200; ++i) {
    auto f = AudienceFrame(1000 + i, "all", 7000);
    batch.insert(batch.end(), f.begin(), f.end());
  }
  ::fcntl(c->fd(), F_SETFL, ::fcntl(c->fd(), F_GETFL) | O_NONBLOCK);
  size_t requests_sent_bytes = 0;
  auto last_progress = std::chrono::steady_clock::now();
  size_t off = 0;
  bool refused = false;
  // Bounded: stops once the node stops reading (no progress for 500 ms),
  // closes the connection, or after 4,000 requests' worth of bytes.
  while (std::chrono::steady_clock::now() - last_progress < milliseconds(500) &&
         requests_sent_bytes < batch.size() * 20) {
    ssize_t k = ::send(c->fd(), batch.data() + off, batch.size() - off, MSG_NOSIGNAL);
    if (k > 0) {
      requests_sent_bytes += static_cast<size_t>(k);
      off = (off + static_cast<size_t>(k)) % batch.size();
      last_progress = std::chrono::steady_clock::now();
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      std::this_thread::sleep_for(milliseconds(5));
    } else {
      refused = true;  // closed by the node already
      break;
    }
  }
  (void)refused;
  ::fcntl(c->fd(), F_SETFL, ::fcntl(c->fd(), F_GETFL) & ~O_NONBLOCK);
  // The node closed it (well before the 60 s write timeout).
  EXPECT_TRUE(c->WaitClosed(milliseconds(10'000)));
  EXPECT_EQ(LimitCount("output_bytes"), 1u);
  EXPECT_EQ(LimitCount("write_timeout"), 0u);
  // What the client asked for would be 4,000 * 56 KB = 224 MB of responses;
  // the node held at most about the cap, plus in-flight results.
  const uint64_t rss_after = NodeResidentBytes();
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps freed blocks in a quarantine (256 MB by
  // default), so resident memory says nothing about what the node holds;
  // the plain build checks the bound.
  (void)rss_before;
  (void)rss_after;
#else
  EXPECT_LT(rss_after, rss_before + (uint64_t{64} << 20))
      << "resident memory grew from " << rss_before << " to " << rss_after;
#endif
  ExpectHealthy();
}

// Also labelled `fault` (tests/net/CMakeLists.txt): it measures latency
// under a connection flood. Robust by design: many samples, an absolute
// floor, and up to three attempts.
TEST_P(LimitsTest, ConnectionFloodBeyondTheCapIsRefusedAndAHealthyClientStaysServed) {
  NodeOptions o = DefaultOptions();
  o.max_connections = 40;
  StartNode(o);
  LoadSmallDataset(node_->engine());
  auto healthy = Established();
  std::vector<std::unique_ptr<RawClient>> held;
  for (int i = 0; i < 39; ++i) held.push_back(Established());  // the cap is now reached

  uint64_t next_id = 1000;
  auto p99 = [&](int samples) {
    std::vector<int64_t> micros;
    micros.reserve(static_cast<size_t>(samples));
    for (int i = 0; i < samples; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = Call(*healthy, GetTagsFrame(next_id, static_cast<uint64_t>(i % 1000)), next_id);
      ++next_id;
      if (!r || r->get().getStatus() != wire::Status::OK) {
        ADD_FAILURE() << "the healthy client was not served";
        return int64_t{1} << 40;
      }
      micros.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - t0)
                           .count());
    }
    std::sort(micros.begin(), micros.end());
    return micros[micros.size() * 99 / 100];
  };

  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> bad_reason{0};
  bool within = false;
  for (int attempt = 0; attempt < 3 && !within; ++attempt) {
    const int64_t unloaded = p99(2000);
    std::atomic<bool> stop{false};
    std::vector<std::thread> flooders;
    // One flooder: on two cores, more would measure CPU starvation of the
    // client itself rather than the node's isolation of healthy connections.
    for (int t = 0; t < 1; ++t) {
      flooders.emplace_back([&] {
        // Each connection beyond the cap gets OVERLOADED naming the cap; bounded
        // by `stop` and by 20,000 connections.
        for (int n = 0; n < 20'000 && !stop.load(); ++n) {
          RawClient c(port_);
          if (!c.connected()) continue;
          auto r = c.Read();
          if (!r) continue;
          const std::string msg = r->get().getMessage().cStr();
          if (r->get().getStatus() == wire::Status::OVERLOADED &&
              msg.find("at most 40") != std::string::npos) {
            refused.fetch_add(1);
          } else {
            bad_reason.fetch_add(1);
          }
        }
      });
    }
    std::this_thread::sleep_for(milliseconds(100));  // the flood is under way
    const int64_t loaded = p99(2000);
    stop = true;
    for (auto& t : flooders) t.join();
    const int64_t allowed = std::max(2 * unloaded, unloaded + 2000);
    within = loaded <= allowed;
    std::cerr << "flood: " << refused.load() << " connections refused so far; healthy p99 "
              << unloaded << " us unloaded, " << loaded << " us under the flood\n";
    if (!within) {
      std::cerr << "attempt " << attempt + 1 << ": p99 " << loaded << " us under the flood, "
                << unloaded << " us unloaded (allowed " << allowed << " us)\n";
    }
  }
  EXPECT_TRUE(within) << "the healthy client's p99 under the flood exceeded max(2x, +2 ms)";
  EXPECT_GT(refused.load(), 0u);
  EXPECT_EQ(bad_reason.load(), 0u) << "a refused connection got no OVERLOADED naming the cap";
  // The counter saw every refusal (the stats connection needs a free slot).
  held.clear();
  ASSERT_TRUE(WaitForConnections(1));
  EXPECT_GE(LimitCount("connections"), refused.load());
  auto ping = Call(*healthy, PingFrame(9), 9);
  ASSERT_TRUE(ping.has_value());
  EXPECT_EQ(ping->get().getStatus(), wire::Status::OK);
}

INSTANTIATE_TEST_SUITE_P(InRam, LimitsTest, ::testing::Values(false),
                         [](const ::testing::TestParamInfo<bool>&) { return "InRam"; });

}  // namespace
}  // namespace tagcache::net
