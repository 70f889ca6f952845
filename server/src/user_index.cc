#include "user_index.h"

#include <algorithm>
#include <cstring>

namespace tagcache::internal {
namespace {

// Block sizes in bytes, ~1.5x apart. Slot = (class + 1) << 27 | block index,
// so 0 means "no tags" and class 30 marks an oversized list kept in huge_.
constexpr uint32_t kClassBytes[30] = {
    4,    8,     12,    16,    24,    32,    48,    64,    96,     128,    192,
    256,  384,   512,   768,   1024,  1536,  2048,  3072,  4096,   6144,   8192,
    12288, 16384, 24576, 32768, 49152, 65536, 98304, 131072};
constexpr int kIndexBits = 27;
constexpr uint32_t kIndexMask = (1u << kIndexBits) - 1;
constexpr size_t kPageBytes = 64 * 1024;

size_t BlocksPerPage(uint32_t cls) {
  return std::max<size_t>(1, kPageBytes / kClassBytes[cls]);
}

void PutVarint(std::vector<uint8_t>& out, uint32_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

}  // namespace

UserIndex::UserIndex(size_t max_block_bytes) : class_count_(0) {
  while (class_count_ < kHugeClass && kClassBytes[class_count_] <= max_block_bytes) ++class_count_;
}

uint32_t& UserIndex::MutableSlot(uint32_t offset) {
  size_t chunk = offset >> kChunkBits;
  if (chunk >= chunks_.size()) chunks_.resize(chunk + 1);
  if (!chunks_[chunk]) {
    chunks_[chunk] = std::make_unique<uint32_t[]>(size_t{1} << kChunkBits);  // zeroed
    memory_bytes_ += sizeof(uint32_t) << kChunkBits;
  }
  return chunks_[chunk][offset & ((1u << kChunkBits) - 1)];
}

void UserIndex::BlockOf(uint32_t slot, uint32_t offset, const uint8_t** data, size_t* size) const {
  uint32_t cls = (slot >> kIndexBits) - 1;
  if (cls == kHugeClass) {
    const std::vector<uint8_t>& v = huge_.at(offset);
    *data = v.data();
    *size = v.size();
    return;
  }
  uint32_t index = slot & kIndexMask;
  size_t per_page = BlocksPerPage(cls);
  *data = classes_[cls].pages[index / per_page].get() + (index % per_page) * kClassBytes[cls];
  *size = kClassBytes[cls];
}

uint32_t UserIndex::Allocate(uint32_t cls) {
  SizeClass& c = classes_[cls];
  uint32_t index;
  if (!c.free.empty()) {
    index = c.free.back();
    c.free.pop_back();
  } else {
    index = c.allocated++;
    size_t per_page = BlocksPerPage(cls);
    if (index / per_page >= c.pages.size()) {
      size_t bytes = per_page * kClassBytes[cls];
      c.pages.push_back(std::make_unique<uint8_t[]>(bytes));
      memory_bytes_ += bytes;
    }
  }
  return ((cls + 1) << kIndexBits) | index;
}

void UserIndex::Free(uint32_t slot, uint32_t offset) {
  uint32_t cls = (slot >> kIndexBits) - 1;
  if (cls == kHugeClass) {
    auto it = huge_.find(offset);
    memory_bytes_ -= it->second.capacity();
    huge_.erase(it);
    return;
  }
  classes_[cls].free.push_back(slot & kIndexMask);
}

void UserIndex::Decode(uint32_t offset) {
  scratch_ids_.clear();
  ForEachTag(offset, [this](uint32_t tag) { scratch_ids_.push_back(tag); });
}

void UserIndex::Store(uint32_t offset) {
  uint32_t& slot = MutableSlot(offset);
  if (scratch_ids_.empty()) {
    if (slot != 0) Free(slot, offset);
    slot = 0;
    return;
  }
  scratch_bytes_.clear();
  uint32_t prev = 0;
  for (size_t i = 0; i < scratch_ids_.size(); ++i) {
    PutVarint(scratch_bytes_, i == 0 ? scratch_ids_[0] + 1 : scratch_ids_[i] - prev);
    prev = scratch_ids_[i];
  }
  size_t need = scratch_bytes_.size();
  uint32_t cls = 0;
  while (cls < class_count_ && kClassBytes[cls] < need) ++cls;
  if (cls == class_count_) cls = kHugeClass;
  uint32_t old_cls = slot == 0 ? UINT32_MAX : (slot >> kIndexBits) - 1;
  if (cls == kHugeClass) {
    if (slot != 0 && old_cls != kHugeClass) Free(slot, offset);
    std::vector<uint8_t>& v = huge_[offset];
    memory_bytes_ -= v.capacity();
    v = scratch_bytes_;
    memory_bytes_ += v.capacity();
    slot = (kHugeClass + 1) << kIndexBits;
    return;
  }
  if (old_cls != cls) {
    if (slot != 0) Free(slot, offset);
    slot = Allocate(cls);
  }
  const uint8_t* block;
  size_t size;
  BlockOf(slot, offset, &block, &size);
  uint8_t* out = const_cast<uint8_t*>(block);
  std::memcpy(out, scratch_bytes_.data(), need);
  if (need < size) out[need] = 0;  // terminator; a full block needs none
}

bool UserIndex::Add(uint32_t offset, uint32_t tag) {
  Decode(offset);
  auto it = std::lower_bound(scratch_ids_.begin(), scratch_ids_.end(), tag);
  if (it != scratch_ids_.end() && *it == tag) return false;
  scratch_ids_.insert(it, tag);
  Store(offset);
  return true;
}

bool UserIndex::Remove(uint32_t offset, uint32_t tag) {
  if (SlotOf(offset) == 0) return false;
  Decode(offset);
  auto it = std::lower_bound(scratch_ids_.begin(), scratch_ids_.end(), tag);
  if (it == scratch_ids_.end() || *it != tag) return false;
  scratch_ids_.erase(it);
  Store(offset);
  return true;
}

}  // namespace tagcache::internal
