#include "user_index.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

void UserIndex::Swap(UserIndex& other) noexcept {
  using std::swap;
  swap(chunks_, other.chunks_);
  for (uint32_t c = 0; c < kHugeClass; ++c) swap(classes_[c], other.classes_[c]);
  swap(huge_, other.huge_);
  swap(class_count_, other.class_count_);
  swap(memory_bytes_, other.memory_bytes_);
  swap(free_bytes_, other.free_bytes_);
  swap(scratch_bytes_, other.scratch_bytes_);
}

void UserIndex::Clear() {
  UserIndex empty;
  empty.class_count_ = class_count_;
  Swap(empty);
}

void UserIndex::CopyFrom(const UserIndex& other) {
  chunks_.clear();
  chunks_.resize(other.chunks_.size());
  const size_t slots = size_t{1} << kChunkBits;
  for (size_t c = 0; c < other.chunks_.size(); ++c) {
    if (!other.chunks_[c]) continue;
    chunks_[c] = std::make_unique_for_overwrite<uint32_t[]>(slots);
    std::memcpy(chunks_[c].get(), other.chunks_[c].get(), slots * sizeof(uint32_t));
  }
  for (uint32_t cls = 0; cls < kHugeClass; ++cls) {
    const SizeClass& from = other.classes_[cls];
    SizeClass& to = classes_[cls];
    const size_t page_bytes = BlocksPerPage(cls) * kClassBytes[cls];
    to.pages.clear();
    to.pages.reserve(from.pages.size());
    for (const auto& page : from.pages) {
      to.pages.push_back(std::make_unique_for_overwrite<uint8_t[]>(page_bytes));
      std::memcpy(to.pages.back().get(), page.get(), page_bytes);
    }
    to.free = from.free;
    to.allocated = from.allocated;
  }
  huge_ = other.huge_;
  class_count_ = other.class_count_;
  memory_bytes_ = other.memory_bytes_;
  free_bytes_ = other.free_bytes_;
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
  // The terminator, and zeros past it rather than an older list's bytes:
  // an image of the index then has no byte that means nothing.
  if (need < size) std::memset(out + need, 0, size - need);
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

// ---- Images ----------------------------------------------------------------
//
// Layout, little-endian:
//   u32 magic, u32 version, u32 slab classes in use C, u32 chunk count P
//   C x u32: blocks of each class
//   P x u32: chunk numbers, ascending
//   P x 65,536 x u8: each user's slot class (class + 1; 0: no tags;
//                    kHugeClass + 1: an oversized list)
//   per class: its blocks, in the order of their users' offsets
//   u32 oversized list count H, H x { u32 offset, u32 length, bytes },
//                    ascending offset
// A byte a user instead of the 4-byte slot: a loader that hands out each
// class's blocks in user order recomputes every slot, and no two users can
// then share a block, whatever the image says. Blocks carry no stale bytes
// (Place zero-fills a block past its list), so every byte of an image is
// checked by something.

namespace {

constexpr uint32_t kImageMagic = 0x49554354;  // "TCUI"
constexpr uint32_t kImageVersion = 1;
constexpr size_t kChunkUsers = size_t{1} << 16;     // UserIndex::kChunkBits
constexpr uint32_t kMaxChunks = uint32_t{1} << 16;  // offsets are u32

void StoreU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t LoadU32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// What a set of lists holds: (user, tag) pairs and the sum of their tag
// ids, mod 2^64. Compared per chunk with the same sums over the columns,
// they catch any changed byte of a list (a changed delta moves every id
// from it on), at a fraction of the cost of counting users per tag.
struct PairSums {
  uint64_t pairs = 0;
  uint64_t ids = 0;
  bool operator==(const PairSums&) const = default;
};

// Whether p[0, n) holds a non-empty list of strictly ascending ids below
// `max`; adds it to `sums`. A slab block may end early at a 0 byte (its
// terminator), and must be all zeros after it; an oversized list fills its
// bytes exactly. Varints must be canonical and at most 5 bytes: the decoders
// shift by 7 per byte into a u32, so a longer one would be undefined
// behaviour, not merely a wrong id.
bool CheckList(const uint8_t* p, size_t n, bool terminated, uint32_t max, PairSums* sums) {
  size_t i = 0;
  uint64_t id = UINT64_MAX;  // the first entry is stored as id + 1, the others as deltas
  uint64_t count = 0, total = 0;
  for (;;) {
    // One-byte deltas (1-127) are nearly all of them: every delta is >= 1,
    // so the ids ascend, and the last one is the largest.
    while (i < n && static_cast<uint8_t>(p[i] - 1) < 0x7f) {
      id += p[i++];
      total += id;
      ++count;
    }
    if (i == n) break;
    if (p[i] == 0) {
      if (!terminated) return false;
      for (++i; i < n; ++i) {
        if (p[i] != 0) return false;
      }
      break;
    }
    uint64_t v = p[i++] & 0x7f;
    for (int shift = 7;; shift += 7) {
      if (i == n || shift > 28) return false;
      const uint8_t b = p[i++];
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) {
        if (b == 0) return false;  // a padded varint: no writer makes one
        break;
      }
    }
    id += v;
    if (id >= max) return false;  // also keeps the sums of a long bad list from overflowing
    total += id;
    ++count;
  }
  if (count == 0 || id >= max) return false;
  sums->pairs += count;
  sums->ids += total;
  return true;
}

#if defined(__SSE2__)
// The block's bytes in the low lanes of a register, zeros above. Loads of
// exactly the block's bytes: going through a buffer would stall on store
// forwarding, and a 16-byte load could read past a page's last block.
template <size_t Size>
__m128i LoadBlock(const uint8_t* p) {
  static_assert(Size == 4 || Size == 8 || Size == 12 || Size == 16);
  auto u32 = [](const uint8_t* q) {
    int32_t v;
    std::memcpy(&v, q, 4);
    return _mm_cvtsi32_si128(v);
  };
  auto u64 = [](const uint8_t* q) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)); };
  if constexpr (Size == 4) return u32(p);
  if constexpr (Size == 8) return u64(p);
  if constexpr (Size == 12) return _mm_unpacklo_epi64(u64(p), u32(p + 8));
  if constexpr (Size == 16) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
#endif

// CheckList for every block of a run of `count` blocks of `Size` bytes.
// Blocks of up to 16 bytes (4 to 16 one-byte deltas: most users) are
// checked whole in SSE2 registers, without a loop that ends at a
// data-dependent point: the list ends at the first zero byte, zeros must
// follow it, its pair count is that position n, its last id is the byte
// sum - 1, and since bytes past n are zero, its id sum, the sum over j < n
// of (d_0 + ... + d_j - 1) = sum of d_j * (n - j) - n, is a fixed weighted
// sum, sum of d_j * (16 - j), less (16 - n) * the byte sum, less n.
// Anything else (a multi-byte varint) goes through CheckList.
template <size_t Size>
bool CheckBlocks(const uint8_t* blocks, size_t count, uint32_t max, PairSums* sums) {
#if defined(__SSE2__)
  if constexpr (Size <= 16) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i weights_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
    const __m128i weights_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
    uint64_t pairs = 0, ids = 0;
    for (size_t b = 0; b < count; ++b) {
      const uint8_t* p = blocks + b * Size;
      const __m128i v = LoadBlock<Size>(p);
      const auto zeros = static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)));
      const uint32_t n = static_cast<uint32_t>(__builtin_ctz(zeros | 0x10000));
      // Some byte >= 0x80, or zeros before the list's last byte: the slow way.
      if (_mm_movemask_epi8(v) != 0 || n == 0 || (zeros | ((1u << n) - 1)) != 0xFFFF) {
        if (!CheckList(p, Size, /*terminated=*/true, max, sums)) return false;
        continue;
      }
      const __m128i sad = _mm_sad_epu8(v, zero);
      const uint64_t sum = static_cast<uint64_t>(_mm_cvtsi128_si32(sad)) +
                           static_cast<uint64_t>(_mm_extract_epi16(sad, 4));
      if (sum - 1 >= max) return false;
      __m128i w = _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi8(v, zero), weights_lo),
                                _mm_madd_epi16(_mm_unpackhi_epi8(v, zero), weights_hi));
      w = _mm_add_epi32(w, _mm_shuffle_epi32(w, _MM_SHUFFLE(1, 0, 3, 2)));
      w = _mm_add_epi32(w, _mm_shuffle_epi32(w, _MM_SHUFFLE(2, 3, 0, 1)));
      const auto weighted = static_cast<uint64_t>(_mm_cvtsi128_si32(w));
      pairs += n;
      ids += weighted - (16 - n) * sum - n;
    }
    sums->pairs += pairs;
    sums->ids += ids;
    return true;
  }
#endif
  for (size_t b = 0; b < count; ++b) {
    if (!CheckList(blocks + b * Size, Size, /*terminated=*/true, max, sums)) return false;
  }
  return true;
}

// CheckBlocks for a class's block size, known at run time.
template <size_t... Sizes>
bool CheckClassBlocks(std::index_sequence<Sizes...>, uint32_t cls, const uint8_t* blocks,
                      size_t count, uint32_t max, PairSums* sums) {
  bool ok = false;
  ((cls == Sizes ? (ok = CheckBlocks<kClassBytes[Sizes]>(blocks, count, max, sums), true)
                 : false) ||
   ...);
  return ok;
}

}  // namespace

void UserIndex::AppendImage(std::string& out) const {
  std::vector<uint32_t> present;
  for (uint32_t k = 0; k < chunks_.size(); ++k) {
    if (chunks_[k]) present.push_back(k);
  }
  const size_t head = 16 + 4 * size_t{class_count_} + 4 * present.size();
  const size_t base = out.size();
  out.resize(base + head + present.size() * kChunkUsers);

  // A built or loaded index holds each class's blocks in user order, and
  // in-place updates keep it so: such a class is copied a page at a time.
  // Only classes that users moved into out of order are gathered user by user.
  uint32_t blocks[kHugeClass] = {};
  bool in_order[kHugeClass];
  std::fill(std::begin(in_order), std::end(in_order), true);
  std::vector<uint32_t> huge_users;
  {
    uint8_t* classes_out = reinterpret_cast<uint8_t*>(out.data()) + base + head;
    for (uint32_t k : present) {
      const uint32_t* slots = chunks_[k].get();
      for (size_t i = 0; i < kChunkUsers; ++i) {
        const uint32_t slot = slots[i];
        const uint32_t b = slot >> kSlotIndexBits;
        *classes_out++ = static_cast<uint8_t>(b);
        if (b == 0) continue;
        if (b - 1 == kHugeClass) {
          huge_users.push_back(static_cast<uint32_t>(k << kChunkBits | i));
          continue;
        }
        in_order[b - 1] &= (slot & kIndexMask) == blocks[b - 1];
        ++blocks[b - 1];
      }
    }
  }
  size_t rest = 4;
  for (uint32_t cls = 0; cls < class_count_; ++cls) rest += size_t{blocks[cls]} * kClassBytes[cls];
  for (uint32_t user : huge_users) rest += 8 + huge_.at(user).size();
  const size_t at = out.size();
  out.resize(at + rest);

  uint8_t* o = reinterpret_cast<uint8_t*>(out.data()) + base;
  StoreU32(o, kImageMagic);
  StoreU32(o + 4, kImageVersion);
  StoreU32(o + 8, class_count_);
  StoreU32(o + 12, static_cast<uint32_t>(present.size()));
  for (uint32_t cls = 0; cls < class_count_; ++cls) StoreU32(o + 16 + 4 * cls, blocks[cls]);
  for (size_t k = 0; k < present.size(); ++k) {
    StoreU32(o + 16 + 4 * size_t{class_count_} + 4 * k, present[k]);
  }

  uint8_t* w = reinterpret_cast<uint8_t*>(out.data()) + at;
  uint8_t* section[kHugeClass] = {};
  bool gather = false;
  for (uint32_t cls = 0; cls < class_count_; ++cls) {
    const size_t size = kClassBytes[cls];
    section[cls] = w;
    if (in_order[cls]) {
      const size_t per_page = BlocksPerPage(cls);
      for (size_t first = 0; first < blocks[cls]; first += per_page) {
        const size_t n = std::min<size_t>(per_page, blocks[cls] - first);
        std::memcpy(w + first * size, classes_[cls].pages[first / per_page].get(), n * size);
      }
    } else {
      gather = true;
    }
    w += blocks[cls] * size;
  }
  if (gather) {
    for (uint32_t k : present) {
      const uint32_t* slots = chunks_[k].get();
      for (size_t i = 0; i < kChunkUsers; ++i) {
        const uint32_t b = slots[i] >> kSlotIndexBits;
        if (b == 0 || b - 1 == kHugeClass || in_order[b - 1]) continue;
        const uint8_t* data;
        size_t size;
        BlockOf(slots[i], static_cast<uint32_t>(k << kChunkBits | i), &data, &size);
        std::memcpy(section[b - 1], data, size);
        section[b - 1] += size;
      }
    }
  }
  StoreU32(w, static_cast<uint32_t>(huge_users.size()));
  w += 4;
  for (uint32_t user : huge_users) {
    const std::vector<uint8_t>& list = huge_.at(user);
    StoreU32(w, user);
    StoreU32(w + 4, static_cast<uint32_t>(list.size()));
    std::memcpy(w + 8, list.data(), list.size());
    w += 8 + list.size();
  }
}

Status UserIndex::LoadImage(std::string_view image, std::span<const Roaring* const> by_tag) {
  if (!Empty()) return Status::Internal("UserIndex::LoadImage into an index in use");
  auto bad = [](const std::string& what) { return Status::BadRequest("bad index image: " + what); };
  auto str = [](uint64_t v) { return std::to_string(v); };
  const auto max_tag = static_cast<uint32_t>(std::min<size_t>(by_tag.size(), UINT32_MAX));
  const auto* p = reinterpret_cast<const uint8_t*>(image.data());
  size_t pos = 0;
  auto left = [&] { return image.size() - pos; };
  auto u32 = [&](uint32_t* v) {
    if (left() < 4) return false;
    *v = LoadU32(p + pos);
    pos += 4;
    return true;
  };

  // The layout first, without touching the blocks.
  uint32_t magic = 0, version = 0, classes = 0, present = 0;
  if (!u32(&magic) || magic != kImageMagic) return bad("no image header");
  if (!u32(&version) || version != kImageVersion) {
    return bad("version " + str(version) + " (this build reads " + str(kImageVersion) + ")");
  }
  if (!u32(&classes) || classes != class_count_) {
    return bad(str(classes) + " slab classes, this index has " + str(class_count_));
  }
  if (!u32(&present) || present > kMaxChunks) return bad("chunk count " + str(present));
  uint32_t blocks[kHugeClass] = {};
  for (uint32_t cls = 0; cls < classes; ++cls) {
    if (!u32(&blocks[cls]) || blocks[cls] > kIndexMask + 1) {
      return bad("block count of class " + str(cls));
    }
  }
  if (left() / 4 < present) return bad("truncated chunk numbers");
  std::vector<uint32_t> chunk_ids(present);
  for (uint32_t k = 0; k < present; ++k) {
    (void)u32(&chunk_ids[k]);  // fits: checked above
    if (chunk_ids[k] >= kMaxChunks || (k > 0 && chunk_ids[k] <= chunk_ids[k - 1])) {
      return bad("chunk numbers are not ascending or out of range");
    }
  }
  if (left() / kChunkUsers < present) return bad("truncated slot classes");
  const uint8_t* slot_classes = p + pos;
  pos += size_t{present} * kChunkUsers;
  const uint8_t* section[kHugeClass] = {};
  for (uint32_t cls = 0; cls < classes; ++cls) {
    if (left() / kClassBytes[cls] < blocks[cls])
      return bad("truncated blocks of class " + str(cls));
    section[cls] = p + pos;
    pos += size_t{blocks[cls]} * kClassBytes[cls];
  }
  struct HugeList {
    uint32_t offset;
    const uint8_t* data;
    uint32_t size;
  };
  uint32_t huge_count = 0;
  if (!u32(&huge_count) || huge_count > left() / 8) return bad("oversized list count");
  std::vector<HugeList> huge_lists(huge_count);
  for (uint32_t h = 0; h < huge_count; ++h) {
    HugeList& l = huge_lists[h];
    if (!u32(&l.offset) || !u32(&l.size) || l.size == 0 || left() < l.size ||
        (h > 0 && l.offset <= huge_lists[h - 1].offset)) {
      return bad("oversized list " + str(h) + " is malformed");
    }
    l.data = p + pos;
    pos += l.size;
  }
  if (left() != 0) return bad(str(left()) + " trailing bytes");

  // What the columns say each chunk must hold, read off their containers
  // (a container covers the same 65,536 users as a chunk).
  std::vector<PairSums> expected(present == 0 ? 0 : chunk_ids.back() + 1);
  for (uint32_t t = 0; t < max_tag; ++t) {
    if (by_tag[t] == nullptr) continue;
    const roaring_array_t& ra = by_tag[t]->roaring.high_low_container;
    for (int32_t k = 0; k < ra.size; ++k) {
      const auto users =
          static_cast<uint64_t>(container_get_cardinality(ra.containers[k], ra.typecodes[k]));
      if (ra.keys[k] >= expected.size()) {
        return bad("chunk " + str(ra.keys[k]) + " holds column members but is not in the image");
      }
      expected[ra.keys[k]].pairs += users;
      expected[ra.keys[k]].ids += users * t;
    }
  }

  // Then chunk by chunk: slots from the classes, each class's blocks of the
  // chunk checked and copied into pages, and the chunk's sums compared with
  // the columns'. Everything is built aside and installed only once all of
  // it checks out.
  std::vector<std::unique_ptr<uint32_t[]>> chunks(present == 0 ? 0 : chunk_ids.back() + 1);
  SizeClass loaded[kHugeClass];
  std::unordered_map<uint32_t, std::vector<uint8_t>> huge;
  huge.reserve(huge_count);
  size_t memory = size_t{present} * (sizeof(uint32_t) << kChunkBits);
  size_t next_huge = 0;
  for (uint32_t k = 0; k < present; ++k) {
    const uint32_t chunk = chunk_ids[k];
    const std::string where = "chunk " + str(chunk) + ": ";
    auto slots = std::make_unique_for_overwrite<uint32_t[]>(kChunkUsers);
    uint32_t first[kHugeClass];  // the chunk's first block of each class
    // By class byte, any byte value: the next block of the class (0 and
    // beyond the slab classes: unused), so the common case is a branchless
    // pass and a bad byte is caught after it.
    uint32_t next[256] = {};
    for (uint32_t cls = 0; cls < classes; ++cls) first[cls] = next[cls + 1] = loaded[cls].allocated;
    const uint8_t* cls_of = slot_classes + size_t{k} * kChunkUsers;
    bool unusual = false;
    for (size_t i = 0; i < kChunkUsers; ++i) {
      const uint32_t b = cls_of[i];
      unusual |= b > classes;
      slots[i] = b << kSlotIndexBits | next[b];
      next[b] += b != 0;
    }
    const size_t huge_begin = next_huge;
    if (unusual) {
      for (size_t i = 0; i < kChunkUsers; ++i) {
        const uint32_t b = cls_of[i];
        if (b <= classes) continue;
        if (b != kHugeClass + 1) return bad(where + "slot class " + str(b));
        const uint32_t user = chunk << kChunkBits | static_cast<uint32_t>(i);
        if (next_huge == huge_count || huge_lists[next_huge++].offset != user) {
          return bad(where + "user " + str(user) + " has no oversized list");
        }
        slots[i] = b << kSlotIndexBits;
      }
    }
    for (uint32_t cls = 0; cls < classes; ++cls) {
      // Also keeps every block index below 2^27, in its bits.
      if (next[cls + 1] > blocks[cls]) {
        return bad(where + "more users in class " + str(cls) + " than its " + str(blocks[cls]) +
                   " blocks");
      }
      loaded[cls].allocated = next[cls + 1];
    }
    PairSums sums;
    for (uint32_t cls = 0; cls < classes; ++cls) {
      const size_t size = kClassBytes[cls];
      const size_t per_page = BlocksPerPage(cls);
      SizeClass& c = loaded[cls];
      for (size_t index = first[cls]; index < c.allocated;) {
        const size_t n = std::min<size_t>(c.allocated - index, per_page - index % per_page);
        if (index % per_page == 0) {
          c.pages.push_back(std::make_unique_for_overwrite<uint8_t[]>(per_page * size));
          memory += per_page * size;
          // Allocate hands out the tail of a last page as it finds it: zeros.
          const size_t used = std::min<size_t>(per_page, blocks[cls] - index) * size;
          std::memset(c.pages.back().get() + used, 0, per_page * size - used);
        }
        // Copied first, then checked in the page while it is in cache: the
        // image is read from memory once, by memcpy's streaming loads.
        uint8_t* to = c.pages.back().get() + (index % per_page) * size;
        std::memcpy(to, section[cls] + index * size, n * size);
        if (!CheckClassBlocks(std::make_index_sequence<kHugeClass>(), cls, to, n, max_tag, &sums)) {
          return bad(where + "a block of class " + str(cls) + " from block " + str(index) +
                     " on is not a list of ascending tag ids below " + str(max_tag));
        }
        index += n;
      }
    }
    for (size_t h = huge_begin; h < next_huge; ++h) {
      const HugeList& l = huge_lists[h];
      if (!CheckList(l.data, l.size, /*terminated=*/false, max_tag, &sums)) {
        return bad(where + "the oversized list of user " + str(l.offset) +
                   " is not a list of ascending tag ids below " + str(max_tag));
      }
      std::vector<uint8_t>& list = huge[l.offset];
      list.assign(l.data, l.data + l.size);
      memory += list.capacity();
    }
    if (sums != expected[chunk]) {
      return bad(where + str(sums.pairs) + " (user, tag) pairs with ids summing to " +
                 str(sums.ids) + ", the columns hold " + str(expected[chunk].pairs) + " and " +
                 str(expected[chunk].ids));
    }
    expected[chunk] = PairSums{};
    chunks[chunk] = std::move(slots);
  }
  for (uint32_t chunk = 0; chunk < expected.size(); ++chunk) {
    if (expected[chunk].pairs != 0) {
      return bad("chunk " + str(chunk) + " holds column members but is not in the image");
    }
  }
  for (uint32_t cls = 0; cls < classes; ++cls) {
    if (loaded[cls].allocated != blocks[cls]) {
      return bad("class " + str(cls) + " has " + str(blocks[cls]) + " blocks for " +
                 str(loaded[cls].allocated) + " users");
    }
  }
  if (next_huge != huge_count) return bad("oversized lists of users without one");

  chunks_ = std::move(chunks);
  for (uint32_t cls = 0; cls < kHugeClass; ++cls) classes_[cls] = std::move(loaded[cls]);
  huge_ = std::move(huge);
  memory_bytes_ = memory;
  free_bytes_ = 0;
  return Status::Ok();
}

}  // namespace tagcache::internal
