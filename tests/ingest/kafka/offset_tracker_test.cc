// OffsetTracker: which offset the connector may commit while the cluster
// acknowledges events out of order; and DecodeMessage, how a Kafka message
// value becomes events. Plain bookkeeping: no Kafka, no network.
#include "offset_tracker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "message_decoder.h"

namespace tagcache::kafka {
namespace {

const TopicPartition kP0{"tags", 0};
const TopicPartition kP1{"tags", 1};

TEST(OffsetTrackerTest, NothingCommittableBeforeTheFirstMessage) {
  OffsetTracker t;
  EXPECT_FALSE(t.Committable(kP0).has_value());
  t.Assign(kP0);
  EXPECT_FALSE(t.Committable(kP0).has_value());
  EXPECT_TRUE(t.CommitCandidates().empty());
}

TEST(OffsetTrackerTest, MessagesOfUnassignedPartitionsAreIgnored) {
  OffsetTracker t;
  t.Assign(kP0);
  EXPECT_FALSE(t.Consumed(kP1, 5, 1).has_value());
  EXPECT_FALSE(t.Committable(kP1).has_value());
}

TEST(OffsetTrackerTest, CommittableIsTheFirstOffsetNotDone) {
  OffsetTracker t;
  t.Assign(kP0);
  const uint64_t a = *t.Consumed(kP0, 10, 1);
  const uint64_t b = *t.Consumed(kP0, 11, 1);
  const uint64_t c = *t.Consumed(kP0, 12, 1);
  EXPECT_EQ(t.Committable(kP0), 10);
  EXPECT_EQ(t.NextOffset(kP0), 13);

  // Out of order: the last and the middle first; 10 still holds the line.
  ASSERT_TRUE(t.Done(c).has_value());
  EXPECT_EQ(t.Committable(kP0), 10);
  ASSERT_TRUE(t.Done(b).has_value());
  EXPECT_EQ(t.Committable(kP0), 10);
  const std::optional<MessageRef> ref = t.Done(a);
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->tp, kP0);
  EXPECT_EQ(ref->offset, 10);
  // Everything done: the next offset to consume.
  EXPECT_EQ(t.Committable(kP0), 13);
  EXPECT_EQ(t.pending_messages(), 0u);
}

TEST(OffsetTrackerTest, MessagesWithoutEventsAreDoneAtOnce) {
  // A poison or blank message never blocks its partition.
  OffsetTracker t;
  t.Assign(kP0);
  ASSERT_TRUE(t.Consumed(kP0, 0, 0).has_value());
  EXPECT_EQ(t.Committable(kP0), 1);
  const uint64_t a = *t.Consumed(kP0, 1, 1);
  ASSERT_TRUE(t.Consumed(kP0, 2, 0).has_value());  // done, but behind offset 1
  EXPECT_EQ(t.Committable(kP0), 1);
  ASSERT_TRUE(t.Done(a).has_value());
  EXPECT_EQ(t.Committable(kP0), 3);
}

TEST(OffsetTrackerTest, MultiEventMessageIsDoneWhenAllItsEventsAre) {
  OffsetTracker t;
  t.Assign(kP0);
  const uint64_t m = *t.Consumed(kP0, 7, 3);
  const uint64_t n = *t.Consumed(kP0, 8, 1);
  ASSERT_TRUE(t.Done(n).has_value());
  ASSERT_TRUE(t.Done(m).has_value());
  ASSERT_TRUE(t.Done(m).has_value());
  EXPECT_EQ(t.Committable(kP0), 7);
  ASSERT_EQ(t.Status().size(), 1u);
  EXPECT_EQ(t.Status()[0].pending_events, 1u);
  ASSERT_TRUE(t.Done(m).has_value());
  EXPECT_EQ(t.Committable(kP0), 9);
  // A fourth report for a 3-event message changes nothing.
  EXPECT_FALSE(t.Done(m).has_value());
  EXPECT_EQ(t.Committable(kP0), 9);
}

TEST(OffsetTrackerTest, GapsInOffsetsAreSkipped) {
  // Compacted topics and transaction markers leave holes: the committable
  // offset jumps over them.
  OffsetTracker t;
  t.Assign(kP0);
  const uint64_t a = *t.Consumed(kP0, 100, 1);
  const uint64_t b = *t.Consumed(kP0, 105, 1);
  const uint64_t c = *t.Consumed(kP0, 230, 1);
  ASSERT_TRUE(t.Done(a).has_value());
  EXPECT_EQ(t.Committable(kP0), 105);
  ASSERT_TRUE(t.Done(c).has_value());
  EXPECT_EQ(t.Committable(kP0), 105);
  ASSERT_TRUE(t.Done(b).has_value());
  EXPECT_EQ(t.Committable(kP0), 231);
}

TEST(OffsetTrackerTest, PartitionsAreIndependent) {
  OffsetTracker t;
  t.Assign(kP0);
  t.Assign(kP1);
  const uint64_t a = *t.Consumed(kP0, 0, 1);
  const uint64_t b = *t.Consumed(kP1, 0, 1);
  ASSERT_TRUE(t.Done(b).has_value());
  EXPECT_EQ(t.Committable(kP0), 0);
  EXPECT_EQ(t.Committable(kP1), 1);
  ASSERT_TRUE(t.Done(a).has_value());
  EXPECT_EQ(t.Committable(kP0), 1);
}

TEST(OffsetTrackerTest, RevocationForgetsThePartitionAndItsTokens) {
  OffsetTracker t;
  t.Assign(kP0);
  t.Assign(kP1);
  const uint64_t a = *t.Consumed(kP0, 0, 2);
  const uint64_t b = *t.Consumed(kP1, 0, 1);
  t.Revoke(kP0);
  EXPECT_FALSE(t.IsAssigned(kP0));
  EXPECT_FALSE(t.Committable(kP0).has_value());
  // A late outcome of a revoked partition is unknown and harmless.
  EXPECT_FALSE(t.Done(a).has_value());
  EXPECT_FALSE(t.Find(a).has_value());
  ASSERT_TRUE(t.Done(b).has_value());
  EXPECT_EQ(t.Committable(kP1), 1);
  EXPECT_EQ(t.pending_messages(), 0u);
}

TEST(OffsetTrackerTest, ReassignmentStartsFresh) {
  // Revoked and assigned again (or assigned twice): the earlier
  // generation's outcomes must not mark the new generation's messages done.
  OffsetTracker t;
  t.Assign(kP0);
  const uint64_t old_token = *t.Consumed(kP0, 5, 1);
  t.Revoke(kP0);
  t.Assign(kP0);
  const uint64_t new_token = *t.Consumed(kP0, 5, 1);
  EXPECT_NE(old_token, new_token);
  EXPECT_FALSE(t.Done(old_token).has_value());
  EXPECT_EQ(t.Committable(kP0), 5);
  t.Assign(kP0);  // assign without revoke: same effect
  EXPECT_FALSE(t.Done(new_token).has_value());
  EXPECT_FALSE(t.Committable(kP0).has_value());
}

TEST(OffsetTrackerTest, RevokeAllForgetsEverything) {
  OffsetTracker t;
  t.Assign(kP0);
  t.Assign(kP1);
  const uint64_t a = *t.Consumed(kP0, 0, 1);
  t.RevokeAll();
  EXPECT_TRUE(t.Assigned().empty());
  EXPECT_FALSE(t.Done(a).has_value());
  EXPECT_EQ(t.pending_messages(), 0u);
}

TEST(OffsetTrackerTest, GoingBackRestartsThePartition) {
  // A seek or an offset reset delivers lower offsets again: nothing beyond
  // the rewind point may become committable through older bookkeeping.
  OffsetTracker t;
  t.Assign(kP0);
  const uint64_t a = *t.Consumed(kP0, 10, 1);
  const uint64_t b = *t.Consumed(kP0, 11, 1);
  ASSERT_TRUE(t.Done(b).has_value());
  const uint64_t again = *t.Consumed(kP0, 4, 1);
  EXPECT_EQ(t.Committable(kP0), 4);
  EXPECT_FALSE(t.Done(a).has_value());  // forgotten: it will be consumed again
  ASSERT_TRUE(t.Done(again).has_value());
  EXPECT_EQ(t.Committable(kP0), 5);
}

TEST(OffsetTrackerTest, CommitCandidatesSkipWhatWasCommitted) {
  OffsetTracker t;
  t.Assign(kP0);
  t.Assign(kP1);
  const uint64_t a = *t.Consumed(kP0, 40, 1);
  ASSERT_TRUE(t.Consumed(kP1, 0, 0).has_value());
  // kP0 stands where it started (nothing done yet): nothing to commit.
  auto candidates = t.CommitCandidates();
  ASSERT_EQ(candidates.size(), 1u);
  EXPECT_EQ(candidates[0], std::make_pair(kP1, int64_t{1}));
  t.MarkCommitted(kP1, 1);
  EXPECT_TRUE(t.CommitCandidates().empty());
  ASSERT_TRUE(t.Done(a).has_value());
  candidates = t.CommitCandidates();
  ASSERT_EQ(candidates.size(), 1u);
  EXPECT_EQ(candidates[0], std::make_pair(kP0, int64_t{41}));
  t.MarkCommitted(kP0, 41);
  EXPECT_TRUE(t.CommitCandidates().empty());
  // Commits of untracked partitions are ignored.
  t.MarkCommitted({"other", 3}, 9);
  EXPECT_EQ(t.Status().size(), 2u);
  EXPECT_EQ(t.Status()[0].committed, 41);
}

TEST(OffsetTrackerTest, NothingToCommitUntilAMessageIsDone) {
  // The first consumed offset is where the group already stands (its
  // committed offset, or the reset position): committing it again is
  // pointless, and nothing beyond it is done.
  OffsetTracker t;
  t.Assign(kP0);
  const uint64_t a = *t.Consumed(kP0, 7, 1);
  ASSERT_TRUE(t.Consumed(kP0, 8, 0).has_value());
  EXPECT_EQ(t.Committable(kP0), 7);
  EXPECT_TRUE(t.CommitCandidates().empty());
  ASSERT_TRUE(t.Done(a).has_value());
  ASSERT_EQ(t.CommitCandidates().size(), 1u);
  EXPECT_EQ(t.CommitCandidates()[0].second, 9);
  // After a rewind the new starting point counts as the start again.
  ASSERT_TRUE(t.Consumed(kP0, 3, 1).has_value());
  EXPECT_TRUE(t.CommitCandidates().empty());
}

TEST(OffsetTrackerTest, RandomCompletionOrderNeverPassesAPendingMessage) {
  // Against a reference: the committable offset is always the smallest
  // offset not done (or one past the last) whatever the completion order.
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    OffsetTracker t;
    t.Assign(kP0);
    struct Msg {
      int64_t offset;
      uint64_t token;
      uint32_t events;
    };
    std::vector<Msg> messages;
    std::vector<uint64_t> reports;  // one entry per event outcome
    int64_t offset = 0;
    for (int i = 0; i < 200; ++i) {
      offset += 1 + static_cast<int64_t>(rng() % 3);             // with gaps
      const uint32_t events = static_cast<uint32_t>(rng() % 4);  // 0: poison/blank
      const uint64_t token = *t.Consumed(kP0, offset, events);
      messages.push_back({offset, token, events});
      for (uint32_t e = 0; e < events; ++e) reports.push_back(token);
    }
    std::shuffle(reports.begin(), reports.end(), rng);
    std::map<uint64_t, uint32_t> left;
    for (const Msg& m : messages) left[m.token] = m.events;
    for (uint64_t token : reports) {
      ASSERT_TRUE(t.Done(token).has_value());
      --left[token];
      int64_t expected = offset + 1;
      for (const Msg& m : messages) {
        if (left[m.token] > 0) {
          expected = m.offset;
          break;
        }
      }
      ASSERT_EQ(t.Committable(kP0), expected);
    }
    EXPECT_EQ(t.Committable(kP0), offset + 1);
    EXPECT_EQ(t.pending_messages(), 0u);
  }
}

TEST(DecodeMessageTest, OneEventPerMessage) {
  DecodedMessage m = DecodeMessage(R"({"user": 42, "tag": "apple_fan", "op": "set", "ts": 5})");
  ASSERT_EQ(m.events.size(), 1u);
  EXPECT_TRUE(m.errors.empty());
  EXPECT_EQ(m.events[0].user, 42u);
  EXPECT_EQ(m.events[0].tag, "apple_fan");
  EXPECT_EQ(m.events[0].ts, 5u);
}

TEST(DecodeMessageTest, SeveralLinesAndBlankLines) {
  DecodedMessage m = DecodeMessage(
      "{\"user\": 1, \"tag\": \"a\", \"ts\": 1}\n\n  \n"
      "{\"user\": 2, \"tag\": \"b\", \"op\": \"clear\", \"ts\": 2}\r\n");
  ASSERT_EQ(m.events.size(), 2u);
  EXPECT_TRUE(m.errors.empty());
  EXPECT_EQ(m.events[1].user, 2u);
  EXPECT_EQ(m.events[1].op, client::TagOp::kClear);
}

TEST(DecodeMessageTest, EmptyValueHasNothing) {
  DecodedMessage m = DecodeMessage("");
  EXPECT_TRUE(m.events.empty());
  EXPECT_TRUE(m.errors.empty());
  m = DecodeMessage(" \n\t\n");
  EXPECT_TRUE(m.events.empty());
  EXPECT_TRUE(m.errors.empty());
}

TEST(DecodeMessageTest, BadLineCostsOnlyItself) {
  DecodedMessage m = DecodeMessage(
      "{\"user\": 1, \"tag\": \"a\", \"ts\": 1}\n"
      "not json\n"
      "{\"user\": 3, \"tag\": \"c\", \"ts\": 3}");
  ASSERT_EQ(m.events.size(), 2u);
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0].rfind("line 2: ", 0), 0u) << m.errors[0];
  EXPECT_EQ(m.events[1].user, 3u);
}

TEST(DecodeMessageTest, SingleBadLineHasNoLinePrefix) {
  DecodedMessage m = DecodeMessage("{\"user\": 1, \"tag\": \"a\"}");
  EXPECT_TRUE(m.events.empty());
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0].find("line "), std::string::npos) << m.errors[0];
  EXPECT_NE(m.errors[0].find("ts"), std::string::npos) << m.errors[0];
}

TEST(DecodeMessageTest, BinaryGarbageIsAnErrorNotACrash) {
  const std::string garbage("\x00\xff{\"\x01\n\xfe", 7);
  DecodedMessage m = DecodeMessage(garbage);
  EXPECT_TRUE(m.events.empty());
  EXPECT_EQ(m.errors.size(), 2u);
}

}  // namespace
}  // namespace tagcache::kafka
