// Which Kafka offsets the connector may commit. Messages of a partition are
// consumed in offset order but acknowledged by the cluster in any order; the
// committable offset of a partition is Kafka's "next offset to consume": the
// smallest consumed offset not yet done, or one past the last consumed
// offset when every message is done. Committing it never skips a message
// whose events the cluster has not acknowledged (docs/KAFKA.md).
//
// No Kafka types here: the tracker is plain bookkeeping, unit-tested alone.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tagcache::kafka {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;

  auto operator<=>(const TopicPartition&) const = default;
};

// "topic/partition", as the logs and the stats line print it.
std::string ToString(const TopicPartition& tp);

// A consumed message: where it came from.
struct MessageRef {
  TopicPartition tp;
  int64_t offset = 0;
};

struct PartitionStatus {
  TopicPartition tp;
  int64_t next_offset = -1;     // one past the last consumed offset; -1: none consumed yet
  int64_t committable = -1;     // Committable(); -1: none
  int64_t committed = -1;       // the last MarkCommitted() offset; -1: none
  size_t pending_messages = 0;  // consumed, not done
  uint64_t pending_events = 0;  // their events not acknowledged yet
};

// Thread-compatible: the connector guards it with its own mutex (messages
// are recorded on the consume thread, outcomes arrive on the client's I/O
// thread).
class OffsetTracker {
 public:
  OffsetTracker() = default;
  OffsetTracker(const OffsetTracker&) = delete;
  OffsetTracker& operator=(const OffsetTracker&) = delete;

  // Starts tracking `tp` (the partition was assigned) with nothing consumed.
  // Replaces any state `tp` had: the tokens of its earlier messages become
  // unknown.
  void Assign(const TopicPartition& tp);
  // Stops tracking `tp` (revoked); its tokens become unknown. No-op when
  // `tp` is not tracked.
  void Revoke(const TopicPartition& tp);
  void RevokeAll();
  bool IsAssigned(const TopicPartition& tp) const;
  std::vector<TopicPartition> Assigned() const;

  // Records message `offset` of `tp` holding `events` events, each to be
  // reported with Done() (0: the message is done at once — blank, or every
  // line undecodable). Returns the message's token, unique for the
  // tracker's lifetime; nullopt when `tp` is not tracked (the message is
  // ignored). An offset not greater than the previous one means the
  // consumer went back (seek, offset reset): the partition restarts from
  // there and forgets the messages it held (their tokens become unknown), so
  // nothing beyond the rewind point can be committed by mistake.
  std::optional<uint64_t> Consumed(const TopicPartition& tp, int64_t offset, uint32_t events);

  // One event of the message `token` is done (acknowledged or refused by the
  // cluster). Returns the message; nullopt for an unknown token (its
  // partition was revoked or restarted since), which changes nothing.
  // Calls beyond the message's event count are ignored.
  std::optional<MessageRef> Done(uint64_t token);
  // The message of a live token, changing nothing.
  std::optional<MessageRef> Find(uint64_t token) const;

  // One past the last offset consumed from `tp`; nullopt when nothing was
  // consumed since Assign() or when `tp` is not tracked.
  std::optional<int64_t> NextOffset(const TopicPartition& tp) const;
  // The offset that may be committed for `tp`: the smallest pending offset,
  // else one past the last consumed. nullopt when nothing was consumed since
  // Assign() or when `tp` is not tracked.
  std::optional<int64_t> Committable(const TopicPartition& tp) const;

  // (partition, committable offset) for every tracked partition whose
  // committable offset moved past the first offset consumed since Assign()
  // (before that, committing would only repeat where the group already
  // stands) and differs from the last one passed to MarkCommitted().
  std::vector<std::pair<TopicPartition, int64_t>> CommitCandidates() const;
  // The broker stored `offset` for `tp`. Ignored when `tp` is not tracked.
  void MarkCommitted(const TopicPartition& tp, int64_t offset);

  // One entry per tracked partition, ordered by topic then partition.
  std::vector<PartitionStatus> Status() const;
  // Messages consumed and not done, over all partitions.
  size_t pending_messages() const { return tokens_.size(); }

 private:
  struct Partition {
    int64_t first_offset = -1;  // the first consumed since Assign() or a rewind
    int64_t next_offset = -1;
    int64_t committed = -1;
    std::map<int64_t, uint64_t> pending;  // offset -> token, of messages not done
  };
  struct Pending {
    TopicPartition tp;
    int64_t offset = 0;
    uint32_t remaining = 0;  // events not done yet; > 0 while in tokens_
  };

  // Forgets the tokens of `p`'s pending messages.
  void DropPending(Partition& p);

  std::map<TopicPartition, Partition> partitions_;
  std::unordered_map<uint64_t, Pending> tokens_;  // only messages with events left
  uint64_t next_token_ = 1;
};

}  // namespace tagcache::kafka
