#include "offset_tracker.h"

namespace tagcache::kafka {

std::string ToString(const TopicPartition& tp) {
  return tp.topic + "/" + std::to_string(tp.partition);
}

void OffsetTracker::Assign(const TopicPartition& tp) {
  auto it = partitions_.find(tp);
  if (it != partitions_.end()) {
    DropPending(it->second);
    it->second = Partition{};
  } else {
    partitions_.emplace(tp, Partition{});
  }
}

void OffsetTracker::Revoke(const TopicPartition& tp) {
  auto it = partitions_.find(tp);
  if (it == partitions_.end()) return;
  DropPending(it->second);
  partitions_.erase(it);
}

void OffsetTracker::RevokeAll() {
  partitions_.clear();
  tokens_.clear();
}

bool OffsetTracker::IsAssigned(const TopicPartition& tp) const {
  return partitions_.count(tp) != 0;
}

std::vector<TopicPartition> OffsetTracker::Assigned() const {
  std::vector<TopicPartition> out;
  out.reserve(partitions_.size());
  for (const auto& [tp, p] : partitions_) out.push_back(tp);
  return out;
}

void OffsetTracker::DropPending(Partition& p) {
  for (const auto& [offset, token] : p.pending) tokens_.erase(token);
  p.pending.clear();
}

std::optional<uint64_t> OffsetTracker::Consumed(const TopicPartition& tp, int64_t offset,
                                                uint32_t events) {
  auto it = partitions_.find(tp);
  if (it == partitions_.end()) return std::nullopt;
  Partition& p = it->second;
  if (p.next_offset >= 0 && offset < p.next_offset) {
    // The consumer went back. Pending offsets at or beyond `offset` will be
    // consumed again, and those before it were consumed before the rewind:
    // restarting from `offset` alone keeps the committable offset at or
    // below every message that is not done.
    DropPending(p);
    p.first_offset = offset;
  }
  if (p.first_offset < 0) p.first_offset = offset;
  p.next_offset = offset + 1;
  const uint64_t token = next_token_++;
  if (events > 0) {
    p.pending.emplace(offset, token);
    tokens_.emplace(token, Pending{tp, offset, events});
  }
  return token;
}

std::optional<MessageRef> OffsetTracker::Done(uint64_t token) {
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return std::nullopt;
  Pending& pending = it->second;
  MessageRef ref{pending.tp, pending.offset};
  if (--pending.remaining == 0) {
    // tokens_ holds only tokens of tracked partitions (DropPending keeps
    // the two maps in step), so the partition exists.
    partitions_.at(pending.tp).pending.erase(pending.offset);
    tokens_.erase(it);
  }
  return ref;
}

std::optional<MessageRef> OffsetTracker::Find(uint64_t token) const {
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return std::nullopt;
  return MessageRef{it->second.tp, it->second.offset};
}

std::optional<int64_t> OffsetTracker::NextOffset(const TopicPartition& tp) const {
  auto it = partitions_.find(tp);
  if (it == partitions_.end() || it->second.next_offset < 0) return std::nullopt;
  return it->second.next_offset;
}

std::optional<int64_t> OffsetTracker::Committable(const TopicPartition& tp) const {
  auto it = partitions_.find(tp);
  if (it == partitions_.end() || it->second.next_offset < 0) return std::nullopt;
  const Partition& p = it->second;
  return p.pending.empty() ? p.next_offset : p.pending.begin()->first;
}

std::vector<std::pair<TopicPartition, int64_t>> OffsetTracker::CommitCandidates() const {
  std::vector<std::pair<TopicPartition, int64_t>> out;
  for (const auto& [tp, p] : partitions_) {
    std::optional<int64_t> offset = Committable(tp);
    if (offset && *offset > p.first_offset && *offset != p.committed) {
      out.emplace_back(tp, *offset);
    }
  }
  return out;
}

void OffsetTracker::MarkCommitted(const TopicPartition& tp, int64_t offset) {
  auto it = partitions_.find(tp);
  if (it != partitions_.end()) it->second.committed = offset;
}

std::vector<PartitionStatus> OffsetTracker::Status() const {
  std::vector<PartitionStatus> out;
  out.reserve(partitions_.size());
  for (const auto& [tp, p] : partitions_) {
    PartitionStatus s;
    s.tp = tp;
    s.next_offset = p.next_offset;
    s.committable = Committable(tp).value_or(-1);
    s.committed = p.committed;
    s.pending_messages = p.pending.size();
    for (const auto& [offset, token] : p.pending) s.pending_events += tokens_.at(token).remaining;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace tagcache::kafka
