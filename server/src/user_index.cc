#include "user_index.h"

#include <algorithm>
#include <cstring>

#include "roaring_access.h"

namespace tagcache::internal {
namespace {

// Block sizes in bytes, ~1.5x apart. Slot = (class + 1) << 27 | block index,
// so 0 means "no tags" and class 30 marks an oversized list kept in huge_.
constexpr uint32_t kClassBytes[30] = {4,   8,   12,  16,   20,   24,   28,   32,   36,   40,
                                      44,  48,  52,  56,   60,   64,   96,   128,  192,  256,
                                      384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192};
// Steps of 4 bytes up to 64 because that is where typical lists (10-40 tags,
// ~1 byte a tag) fall: a coarser step there costs more than the slot itself.
constexpr uint32_t kIndexMask = (1u << 27) - 1;  // UserIndex::kSlotIndexBits
constexpr size_t kPageBytes = 64 * 1024;

size_t BlocksPerPage(uint32_t cls) { return std::max<size_t>(1, kPageBytes / kClassBytes[cls]); }

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
  uint32_t cls = (slot >> kSlotIndexBits) - 1;
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
    free_bytes_ -= kClassBytes[cls];
  } else {
    index = c.allocated++;
    size_t per_page = BlocksPerPage(cls);
    if (index / per_page >= c.pages.size()) {
      size_t bytes = per_page * kClassBytes[cls];
      c.pages.push_back(std::make_unique<uint8_t[]>(bytes));
      memory_bytes_ += bytes;
    }
  }
  return ((cls + 1) << kSlotIndexBits) | index;
}

void UserIndex::Free(uint32_t slot, uint32_t offset) {
  uint32_t cls = (slot >> kSlotIndexBits) - 1;
  if (cls == kHugeClass) {
    auto it = huge_.find(offset);
    memory_bytes_ -= it->second.capacity();
    huge_.erase(it);
    return;
  }
  classes_[cls].free.push_back(slot & kIndexMask);
  free_bytes_ += kClassBytes[cls];
}

namespace {

// One varint of the list at p[i]; advances i.
inline uint32_t ReadVarint(const uint8_t* p, size_t n, size_t& i) {
  uint32_t v = 0;
  for (int shift = 0; i < n; shift += 7) {
    uint8_t b = p[i++];
    v |= static_cast<uint32_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  return v;
}

// End of the encoded list that starts at p: its terminator or the block end.
inline size_t UsedBytes(const uint8_t* p, size_t n, size_t from) {
  while (from < n && p[from] != 0) ReadVarint(p, n, from);
  return from;
}

}  // namespace

void UserIndex::Place(uint32_t offset, const uint8_t* bytes, size_t need) {
  uint32_t& slot = MutableSlot(offset);
  if (need == 0) {
    if (slot != 0) Free(slot, offset);
    slot = 0;
    return;
  }
  uint32_t old_cls = slot == 0 ? UINT32_MAX : (slot >> kSlotIndexBits) - 1;
  // A list that still fits its block stays unless it shrank below half of
  // it: without that slack, users that gain and lose a tag now and then
  // would bounce between neighbouring classes and churn the free lists.
  bool keep = old_cls < class_count_ && need <= kClassBytes[old_cls] &&
              (old_cls == 0 || 2 * need > kClassBytes[old_cls]);
  if (!keep) {
    uint32_t cls = need <= 64 ? static_cast<uint32_t>((need + 3) / 4 - 1) : 16;
    while (cls < class_count_ && kClassBytes[cls] < need) ++cls;
    if (cls >= class_count_) {
      if (slot != 0 && old_cls != kHugeClass) Free(slot, offset);
      std::vector<uint8_t>& v = huge_[offset];
      memory_bytes_ -= v.capacity();
      v.assign(bytes, bytes + need);
      memory_bytes_ += v.capacity();
      slot = (kHugeClass + 1) << kSlotIndexBits;
      return;
    }
    if (slot != 0) Free(slot, offset);
    slot = Allocate(cls);
  }
  const uint8_t* block;
  size_t size;
  BlockOf(slot, offset, &block, &size);
  uint8_t* out = const_cast<uint8_t*>(block);
  std::memmove(out, bytes, need);
  if (need < size) out[need] = 0;  // terminator; a full block needs none
}

// Add and Remove splice the encoded bytes in one pass: the bytes before the
// change are kept, at most two varints are rewritten, the rest is copied.
bool UserIndex::Add(uint32_t offset, uint32_t tag) {
  const uint8_t* p = nullptr;
  size_t n = 0;
  if (uint32_t slot = SlotOf(offset); slot != 0) BlockOf(slot, offset, &p, &n);
  size_t i = 0;
  size_t at = 0;  // where the new tag's varint goes
  uint32_t prev = 0;
  bool first = true;
  bool has_next = false;
  uint32_t next = 0;
  while (i < n && p[i] != 0) {
    at = i;
    uint32_t v = ReadVarint(p, n, i);
    uint32_t cur = first ? v - 1 : prev + v;
    if (cur == tag) return false;
    if (cur > tag) {
      has_next = true;
      next = cur;
      break;
    }
    prev = cur;
    first = false;
    at = i;
  }
  scratch_bytes_.clear();
  scratch_bytes_.insert(scratch_bytes_.end(), p, p + at);
  PutVarint(scratch_bytes_, first ? tag + 1 : tag - prev);
  if (has_next) {
    PutVarint(scratch_bytes_, next - tag);
    scratch_bytes_.insert(scratch_bytes_.end(), p + i, p + UsedBytes(p, n, i));
  }
  Place(offset, scratch_bytes_.data(), scratch_bytes_.size());
  MaybeCompact();
  return true;
}

bool UserIndex::Remove(uint32_t offset, uint32_t tag) {
  uint32_t slot = SlotOf(offset);
  if (slot == 0) return false;
  const uint8_t* p;
  size_t n;
  BlockOf(slot, offset, &p, &n);
  size_t i = 0;
  uint32_t prev = 0;
  bool first = true;
  while (i < n && p[i] != 0) {
    size_t at = i;
    uint32_t v = ReadVarint(p, n, i);
    uint32_t cur = first ? v - 1 : prev + v;
    if (cur > tag) return false;
    if (cur == tag) {
      // The follower's varint absorbs the removed one: deltas add up, and a
      // removed first entry (stored as id + 1) hands on its +1 the same way.
      scratch_bytes_.clear();
      scratch_bytes_.insert(scratch_bytes_.end(), p, p + at);
      if (i < n && p[i] != 0) {
        uint32_t follower = ReadVarint(p, n, i);
        PutVarint(scratch_bytes_, v + follower);
        scratch_bytes_.insert(scratch_bytes_.end(), p + i, p + UsedBytes(p, n, i));
      }
      Place(offset, scratch_bytes_.data(), scratch_bytes_.size());
      return true;
    }
    prev = cur;
    first = false;
  }
  return false;
}

namespace {

// Appends the low 16 bits of a container's members, ascending.
void AppendLows(const void* c, uint8_t type, std::vector<uint16_t>& out) {
  switch (type) {
    case ARRAY_CONTAINER_TYPE_CODE: {
      const auto* a = static_cast<const array_container_t*>(c);
      out.insert(out.end(), a->array, a->array + a->cardinality);
      break;
    }
    case BITSET_CONTAINER_TYPE_CODE: {
      const auto* b = static_cast<const bitset_container_t*>(c);
      for (uint32_t w = 0; w < (1u << 16) / 64; ++w) {
        for (uint64_t bits = b->array[w]; bits; bits &= bits - 1) {
          out.push_back(static_cast<uint16_t>(w * 64 + __builtin_ctzll(bits)));
        }
      }
      break;
    }
    case RUN_CONTAINER_TYPE_CODE: {
      const auto* r = static_cast<const run_container_t*>(c);
      for (int32_t i = 0; i < r->n_runs; ++i) {
        for (uint32_t v = r->runs[i].value, end = v + r->runs[i].length; v <= end; ++v) {
          out.push_back(static_cast<uint16_t>(v));
        }
      }
      break;
    }
  }
}

}  // namespace

void UserIndex::BuildFrom(std::span<const Roaring* const> by_tag) {
  // One Roaring container holds the members of 2^16 users, as does one slot
  // chunk, so the build goes a container key at a time: decode every
  // column's container, count each user's tags, lay the lists out CSR-style
  // in tag-id order (so each list comes out sorted), then encode each list
  // once. The working set stays a few MB whatever the shard's size.
  static_assert(kChunkBits == 16);
  uint32_t last_key = 0;
  bool any = false;
  for (const Roaring* b : by_tag) {
    if (b == nullptr || b->isEmpty()) continue;
    any = true;
    last_key = std::max(last_key, b->maximum() >> 16);
  }
  if (!any) return;
  struct Run {
    uint32_t tag;
    size_t begin, end;  // into lows
  };
  std::vector<uint16_t> lows;
  std::vector<Run> runs;
  std::vector<uint32_t> next(size_t{1} << 16);  // per user: its next free place in `lists`
  std::vector<uint32_t> lists;
  std::vector<uint8_t> bytes;
  for (uint32_t key = 0; key <= last_key; ++key) {
    lows.clear();
    runs.clear();
    for (size_t t = 0; t < by_tag.size(); ++t) {
      if (by_tag[t] == nullptr) continue;
      uint8_t type = 0;
      const void* c = FindContainer(*by_tag[t], static_cast<uint16_t>(key), &type);
      if (c == nullptr) continue;
      size_t begin = lows.size();
      AppendLows(c, type, lows);
      runs.push_back(Run{static_cast<uint32_t>(t), begin, lows.size()});
    }
    if (lows.empty()) continue;
    std::fill(next.begin(), next.end(), 0);
    for (uint16_t v : lows) ++next[v];
    uint32_t total = 0;
    for (uint32_t& n : next) {
      uint32_t count = n;
      n = total;
      total += count;
    }
    lists.resize(total);
    for (const Run& run : runs) {
      for (size_t i = run.begin; i < run.end; ++i) lists[next[lows[i]]++] = run.tag;
    }
    // next[v] is now where v's list ends, and so where v + 1's begins.
    uint32_t begin = 0;
    for (uint32_t v = 0; v < (1u << 16); ++v) {
      const uint32_t end = next[v];
      if (end == begin) continue;
      if (bytes.size() < size_t{5} * (end - begin)) bytes.resize(size_t{5} * (end - begin));
      uint8_t* out = bytes.data();
      uint32_t prev = UINT32_MAX;  // the first id is stored + 1: 0 terminates a list
      for (uint32_t i = begin; i < end; ++i) {
        uint32_t delta = lists[i] - prev;
        prev = lists[i];
        for (; delta >= 0x80; delta >>= 7) *out++ = static_cast<uint8_t>(delta | 0x80);
        *out++ = static_cast<uint8_t>(delta);
      }
      Place((key << 16) | v, bytes.data(), static_cast<size_t>(out - bytes.data()));
      begin = end;
    }
  }
}

void UserIndex::MaybeCompact() {
  // A bulk load grows every user through every class in turn, leaving each
  // class's peak allocated; once outgrown blocks dominate, repack.
  constexpr size_t kMinFreeBytes = 256 << 10;
  size_t live = 0;
  if (free_bytes_ < kMinFreeBytes) return;
  for (uint32_t cls = 0; cls < class_count_; ++cls) {
    live += size_t(classes_[cls].allocated - classes_[cls].free.size()) * kClassBytes[cls];
  }
  if (free_bytes_ * 4 > live) Compact();
}

void UserIndex::Compact() {
  SizeClass fresh[kHugeClass];
  for (size_t chunk = 0; chunk < chunks_.size(); ++chunk) {
    if (!chunks_[chunk]) continue;
    uint32_t* slots = chunks_[chunk].get();
    for (size_t i = 0; i < (size_t{1} << kChunkBits); ++i) {
      uint32_t slot = slots[i];
      if (slot == 0) continue;
      uint32_t cls = (slot >> kSlotIndexBits) - 1;
      if (cls == kHugeClass) continue;
      const uint8_t* from;
      size_t size;
      BlockOf(slot, static_cast<uint32_t>((chunk << kChunkBits) | i), &from, &size);
      SizeClass& c = fresh[cls];
      uint32_t index = c.allocated++;
      size_t per_page = BlocksPerPage(cls);
      if (index / per_page >= c.pages.size()) {
        c.pages.push_back(std::make_unique<uint8_t[]>(per_page * kClassBytes[cls]));
      }
      std::memcpy(c.pages[index / per_page].get() + (index % per_page) * kClassBytes[cls], from,
                  size);
      slots[i] = ((cls + 1) << kSlotIndexBits) | index;
    }
  }
  size_t bytes = 0;
  for (const auto& chunk : chunks_) bytes += chunk ? sizeof(uint32_t) << kChunkBits : 0;
  for (const auto& [offset, list] : huge_) bytes += list.capacity();
  for (uint32_t cls = 0; cls < kHugeClass; ++cls) {
    classes_[cls] = std::move(fresh[cls]);
    bytes += classes_[cls].pages.size() * BlocksPerPage(cls) * kClassBytes[cls];
  }
  memory_bytes_ = bytes;
  free_bytes_ = 0;
}

}  // namespace tagcache::internal
