// UserIndex: for one shard, each user's tag ids, so GetTags costs
// O(tags of the user) instead of one bitmap probe per tag in the shard.
//
// Each user's sorted tag ids are varint delta-coded into one block from a
// size-class slab (4-byte steps up to 64 bytes, then ~1.5x); a 32-bit slot
// per user names its block. Freed blocks are reused, and the slab is repacked
// when they pile up. With ~18 tags a user this costs ~1.6 bytes per
// (user, tag), against 24+ for a std::vector per user.
// Not thread-safe: the owning shard's lock guards it.
#pragma once

#include <cstdint>
#include <memory>
#include <roaring/roaring.hh>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tagcache/common/status.h"

namespace tagcache::internal {

class UserIndex {
 public:
  // Lists longer than `max_block_bytes` encoded leave the slab for a
  // per-user vector. Default: the largest slab class (8 KiB, ~4,000+ tags).
  explicit UserIndex(size_t max_block_bytes = 8192);
  UserIndex(const UserIndex&) = delete;
  UserIndex& operator=(const UserIndex&) = delete;

  // Adds `tag` to the user's list. Returns false if it was already there.
  bool Add(uint32_t offset, uint32_t tag);
  // Removes `tag` from the user's list. Returns false if it was not there.
  bool Remove(uint32_t offset, uint32_t tag);

  // Fills an empty index from whole columns at once: `by_tag[t]` holds the
  // offsets of tag t's members (null: none). Same result as one Add per
  // (user, tag), but each user's list is encoded once, in its final block,
  // instead of being respliced and moved up the size classes tag by tag.
  // REQUIRES: the index is empty.
  void BuildFrom(std::span<const Roaring* const> by_tag);

  // The index as a flat image, so a restore can install it with a few
  // memcpys instead of rebuilding it from the bitmaps. Compacted: each
  // user's slot is stored as its class alone (a loader hands out blocks in
  // user order), and free blocks are left out. Appended to `out`.
  void AppendImage(std::string& out) const;
  // Makes this index a deep copy of `other` at memcpy speed, so a caller can
  // hold the owner's lock for the copy only and build the (slower) image
  // from the copy afterwards.
  void CopyFrom(const UserIndex& other);
  // Installs an image from AppendImage into this empty index if it is the
  // index of `by_tag` (as for BuildFrom) as far as an O(image) check can
  // tell: the layout is consistent, every list is strictly ascending with
  // ids < by_tag.size() (the maximum tag id, exclusive), and every tag has
  // as many users in each 65,536-user chunk as its column. Any error leaves
  // the index empty, for BuildFrom.
  // REQUIRES: Empty(), and the same max_block_bytes as the exporter's.
  Status LoadImage(std::string_view image, std::span<const Roaring* const> by_tag);

  // Exchanges the contents of two indexes built with the same max_block_bytes
  // (a rebuilt index replaces a stale one under the shard's lock in O(1)).
  void Swap(UserIndex& other) noexcept;
  // Frees everything: the index of no user.
  void Clear();

  // True when no user has ever been given a tag (nothing allocated).
  bool Empty() const { return chunks_.empty() && huge_.empty(); }

  // Calls fn(tag_id) for each of the user's tags, ascending.
  template <typename Fn>
  void ForEachTag(uint32_t offset, Fn&& fn) const {
    uint32_t slot = SlotOf(offset);
    if (slot == 0) return;
    const uint8_t* p;
    size_t n;
    BlockOf(slot, offset, &p, &n);
    uint32_t prev = 0;
    bool first = true;
    for (size_t i = 0; i < n;) {
      if (p[i] == 0) break;  // terminator: the list is shorter than its block
      uint32_t v = 0;
      for (int shift = 0; i < n; shift += 7) {
        uint8_t b = p[i++];
        v |= static_cast<uint32_t>(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
      }
      prev = first ? v - 1 : prev + v;
      first = false;
      fn(prev);
    }
  }

  // Hints for batched writers, which know upcoming users ahead of time: the
  // two cache misses of an update are the user's slot and then its block.
  void PrefetchSlot(uint32_t offset) const {
    size_t chunk = offset >> kChunkBits;
    if (chunk < chunks_.size() && chunks_[chunk]) {
      __builtin_prefetch(&chunks_[chunk][offset & ((1u << kChunkBits) - 1)]);
    }
  }
  // REQUIRES: best issued a while after PrefetchSlot for the same user.
  void PrefetchBlock(uint32_t offset) const {
    uint32_t slot = SlotOf(offset);
    if (slot == 0 || (slot >> kSlotIndexBits) - 1 == kHugeClass) return;
    const uint8_t* data;
    size_t size;
    BlockOf(slot, offset, &data, &size);
    __builtin_prefetch(data);
  }

  // Bytes held: slot directory, slab pages and oversized lists.
  size_t MemoryBytes() const { return memory_bytes_; }

 private:
  static constexpr int kChunkBits = 16;
  static constexpr int kSlotIndexBits =
      27;  // slot = (class + 1) << 27 | block index  // slots are allocated 65,536 users at a time
  // Slot = (class + 1) << 27 | block: 5 bits hold classes 0..30, and 30 marks
  // an oversized list, so the slab has 30 classes.
  static constexpr uint32_t kHugeClass = 30;

  uint32_t SlotOf(uint32_t offset) const {
    size_t chunk = offset >> kChunkBits;
    if (chunk >= chunks_.size() || !chunks_[chunk]) return 0;
    return chunks_[chunk][offset & ((1u << kChunkBits) - 1)];
  }
  uint32_t& MutableSlot(uint32_t offset);
  void BlockOf(uint32_t slot, uint32_t offset, const uint8_t** data, size_t* size) const;
  uint32_t Allocate(uint32_t cls);
  void Free(uint32_t slot, uint32_t offset);
  // Makes `bytes` (an encoded list; empty: no tags) the user's list, moving
  // it to another block when it outgrows or underuses its own.
  void Place(uint32_t offset, const uint8_t* bytes, size_t need);
  // Repacks the slab when freed blocks outweigh a quarter of the live ones.
  void MaybeCompact();
  void Compact();

  struct SizeClass {
    std::vector<std::unique_ptr<uint8_t[]>> pages;
    std::vector<uint32_t> free;
    uint32_t allocated = 0;  // blocks ever handed out (free ones included)
  };
  std::vector<std::unique_ptr<uint32_t[]>> chunks_;
  SizeClass classes_[kHugeClass];
  std::unordered_map<uint32_t, std::vector<uint8_t>> huge_;  // lists beyond the largest class
  uint32_t class_count_;                                     // slab classes in use, <= kHugeClass
  size_t memory_bytes_ = 0;
  size_t free_bytes_ = 0;  // bytes of blocks on the free lists
  std::vector<uint8_t> scratch_bytes_;
};

}  // namespace tagcache::internal
