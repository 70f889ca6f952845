// OverrideTable: for one (tag, shard), the events newer than the snapshot
// base, keyed by user offset: offset -> (ts, op). Open addressing with linear
// probing, 16 bytes an entry, no deletion: a snapshot that drops overrides
// rebuilds the table from the survivors (Filter), which is the only time
// entries go away.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "tagcache/server/engine.h"

namespace tagcache::internal {

struct Override {
  Timestamp ts = 0;
  TagOp op = TagOp::kSet;
};

// Rule 2 of the merge contract: does `incoming` beat `held`? Newer wins; at
// equal ts an opt-out (clear) never loses to a set.
inline bool Beats(const Override& incoming, const Override& held) {
  if (incoming.ts != held.ts) return incoming.ts > held.ts;
  return incoming.op == TagOp::kClear && held.op == TagOp::kSet;
}

class OverrideTable {
 public:
  OverrideTable() = default;
  OverrideTable(OverrideTable&&) noexcept = default;
  OverrideTable& operator=(OverrideTable&&) noexcept = default;

  size_t size() const { return size_; }
  size_t MemoryBytes() const { return capacity_ * sizeof(Slot); }

  // The override held for `offset`, if any.
  std::optional<Override> Find(uint32_t offset) const {
    if (size_ == 0) return std::nullopt;
    for (size_t i = Hash(offset) & (capacity_ - 1);; i = (i + 1) & (capacity_ - 1)) {
      const Slot& s = slots_[i];
      if (!s.used) return std::nullopt;
      if (s.offset == offset) return s.value();
    }
  }

  // Hint for batched writers: pulls in the slot Merge(offset) probes first.
  void Prefetch(uint32_t offset) const {
    if (capacity_ != 0) __builtin_prefetch(&slots_[Hash(offset) & (capacity_ - 1)]);
  }

  // Stores `value` for `offset` if it beats the held override (or none is
  // held). Returns true when stored.
  bool Merge(uint32_t offset, const Override& value) {
    if ((size_ + 1) * 8 > capacity_ * 7) Grow();
    for (size_t i = Hash(offset) & (capacity_ - 1);; i = (i + 1) & (capacity_ - 1)) {
      Slot& s = slots_[i];
      if (!s.used) {
        s.used = true;
        s.offset = offset;
        s.Set(value);
        ++size_;
        return true;
      }
      if (s.offset == offset) {
        if (!Beats(value, s.value())) return false;
        s.Set(value);
        return true;
      }
    }
  }

  // Calls fn(offset, const Override&) for every entry, in no order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (size_t i = 0; i < capacity_; ++i) {
      if (slots_[i].used) fn(slots_[i].offset, slots_[i].value());
    }
  }

  // Keeps only the overrides newer than `ts` (rule 3: a snapshot as of ts
  // already reflects everything up to and including ts).
  void DropUpTo(Timestamp ts) {
    OverrideTable kept;
    ForEach([&](uint32_t offset, const Override& v) {
      if (v.ts > ts) kept.Merge(offset, v);
    });
    *this = std::move(kept);
  }

 private:
  // 16 bytes: a table is a cache miss per probe, so keep slots small.
  struct Slot {
    Timestamp ts = 0;
    uint32_t offset = 0;
    TagOp op = TagOp::kSet;
    bool used = false;
    Override value() const { return Override{ts, op}; }
    void Set(const Override& v) {
      ts = v.ts;
      op = v.op;
    }
  };
  static_assert(sizeof(Slot) == 16);
  static size_t Hash(uint32_t x) {
    // Fibonacci hashing spreads the dense, sequential offsets of a shard.
    return static_cast<size_t>((static_cast<uint64_t>(x) * 0x9E3779B97F4A7C15ull) >> 32);
  }
  void Grow() {
    size_t new_capacity = capacity_ == 0 ? 8 : capacity_ * 2;
    std::unique_ptr<Slot[]> old = std::move(slots_);
    size_t old_capacity = capacity_;
    slots_ = std::make_unique<Slot[]>(new_capacity);
    capacity_ = new_capacity;
    size_ = 0;
    for (size_t i = 0; i < old_capacity; ++i) {
      if (old[i].used) Merge(old[i].offset, old[i].value());
    }
  }

  std::unique_ptr<Slot[]> slots_;
  size_t capacity_ = 0;  // a power of two, or 0
  size_t size_ = 0;
};

}  // namespace tagcache::internal
