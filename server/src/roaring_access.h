// Direct, read-only access to CRoaring 0.2.66's containers: the container at
// a 16-bit key, and a membership test compiled into our code (Debian's
// library is built for baseline x86-64 and with asserts, and each call into
// it costs more than the test itself on the write path).
#pragma once

#include <roaring/containers/containers.h>
#include <roaring/roaring.hh>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace tagcache::internal {

// The container of `bitmap` at `key` with its type code (shared containers
// unwrapped), or nullptr.
inline const void* FindContainer(const Roaring& bitmap, uint16_t key, uint8_t* type) {
  const roaring_array_t& ra = bitmap.roaring.high_low_container;
  int32_t lo = 0, hi = ra.size - 1;
  while (lo <= hi) {
    int32_t mid = (lo + hi) >> 1;
    uint16_t k = ra.keys[mid];
    if (k < key) {
      lo = mid + 1;
    } else if (k > key) {
      hi = mid - 1;
    } else {
      const void* c = ra.containers[mid];
      uint8_t t = ra.typecodes[mid];
      if (t == SHARED_CONTAINER_TYPE_CODE) {
        const auto* shared = static_cast<const shared_container_t*>(c);
        c = shared->container;
        t = shared->typecode;
      }
      *type = t;
      return c;
    }
  }
  return nullptr;
}

// Index of the first element >= v in a[0, n).
inline int32_t LowerBound(const uint16_t* a, int32_t n, uint16_t v) {
  const uint16_t* base = a;
  int32_t len = n;
  while (len > 1) {
    int32_t half = len / 2;
    // GCC compiles this to a branch, and that is better here: an arithmetic
    // (cmov) form measured 1.05 M events/s against 1.55 M, because on random
    // users these loads miss and only speculation overlaps them.
    base = base[half - 1] < v ? base + half : base;
    len -= half;
  }
  return static_cast<int32_t>(base - a) + (len == 1 && *base < v);
}

// Makes `value` a member of `bitmap` (present) or not, and returns whether
// that changed anything. Array and bitset containers are edited in place
// when no container conversion or reallocation is involved; everything else
// (growth, a bitset falling to 4,096 members, runs, an emptied container)
// goes through CRoaring, which keeps its invariants.
inline bool SetMembership(Roaring& bitmap, uint32_t value, bool present) {
  uint8_t type = 0;
  void* c = const_cast<void*>(FindContainer(bitmap, static_cast<uint16_t>(value >> 16), &type));
  const uint16_t low = static_cast<uint16_t>(value);
  if (c != nullptr && type == ARRAY_CONTAINER_TYPE_CODE) {
    auto* a = static_cast<array_container_t*>(c);
    const int32_t n = a->cardinality;
    const int32_t at = LowerBound(a->array, n, low);
    const bool member = at < n && a->array[at] == low;
    if (member == present) return false;
    if (present && n < a->capacity && n < DEFAULT_MAX_SIZE) {
      std::memmove(a->array + at + 1, a->array + at, size_t(n - at) * sizeof(uint16_t));
      a->array[at] = low;
      a->cardinality = n + 1;
      return true;
    }
    if (!present && n > 1) {
      std::memmove(a->array + at, a->array + at + 1, size_t(n - at - 1) * sizeof(uint16_t));
      a->cardinality = n - 1;
      return true;
    }
  } else if (c != nullptr && type == BITSET_CONTAINER_TYPE_CODE) {
    auto* b = static_cast<bitset_container_t*>(c);
    uint64_t& word = b->array[low >> 6];
    const uint64_t bit = uint64_t{1} << (low & 63);
    const bool member = word & bit;
    if (member == present) return false;
    if (b->cardinality >= 0 && (present || b->cardinality - 1 > DEFAULT_MAX_SIZE)) {
      word ^= bit;
      b->cardinality += present ? 1 : -1;
      return true;
    }
  } else if (c == nullptr && !present) {
    return false;
  }
  return present ? bitmap.addChecked(value) : bitmap.removeChecked(value);
}

// Same answer as bitmap.contains(value).
inline bool FastContains(const Roaring& bitmap, uint32_t value) {
  uint8_t type = 0;
  const void* c = FindContainer(bitmap, static_cast<uint16_t>(value >> 16), &type);
  if (c == nullptr) return false;
  const uint16_t low = static_cast<uint16_t>(value);
  switch (type) {
    case BITSET_CONTAINER_TYPE_CODE:
      return (static_cast<const bitset_container_t*>(c)->array[low >> 6] >> (low & 63)) & 1;
    case ARRAY_CONTAINER_TYPE_CODE: {
      const auto* a = static_cast<const array_container_t*>(c);
      const int32_t at = LowerBound(a->array, a->cardinality, low);
      return at < a->cardinality && a->array[at] == low;
    }
    case RUN_CONTAINER_TYPE_CODE: {
      const auto* r = static_cast<const run_container_t*>(c);
      const rle16_t* end = r->runs + r->n_runs;
      const rle16_t* begin = r->runs;
      const rle16_t* it = std::upper_bound(begin, end, low, [](uint16_t v, const rle16_t& run) {
        return v < run.value;
      });
      if (it == begin) return false;
      --it;
      return low - it->value <= it->length;
    }
    default:
      return bitmap.contains(value);
  }
}

// Prefetch hints for batched writers that know upcoming values ahead of
// time. Stage one pulls in the container's header; stage two, issued a few
// values later when that header is cached, pulls in what FastContains and an
// insert will read: the bitset word, or the first levels of the array's
// binary search; stage three (PrefetchMembershipFinal) the rest of it.
// Stage zero-and-a-half: the directory (keys, container pointers, type
// codes are three separate allocations) that FindContainer walks.
inline void PrefetchDirectory(const Roaring& bitmap) {
  const roaring_array_t& ra = bitmap.roaring.high_low_container;
  __builtin_prefetch(ra.keys);
  __builtin_prefetch(ra.containers);
  __builtin_prefetch(ra.typecodes);
}

inline void PrefetchContainer(const Roaring& bitmap, uint32_t value) {
  const roaring_array_t& ra = bitmap.roaring.high_low_container;
  const uint16_t key = static_cast<uint16_t>(value >> 16);
  const uint16_t* k = std::lower_bound(ra.keys, ra.keys + ra.size, key);
  if (k != ra.keys + ra.size && *k == key) __builtin_prefetch(ra.containers[k - ra.keys]);
}

inline void PrefetchMembership(const Roaring& bitmap, uint32_t value) {
  uint8_t type = 0;
  const void* c = FindContainer(bitmap, static_cast<uint16_t>(value >> 16), &type);
  if (c == nullptr) return;
  const uint16_t low = static_cast<uint16_t>(value);
  if (type == BITSET_CONTAINER_TYPE_CODE) {
    __builtin_prefetch(&static_cast<const bitset_container_t*>(c)->array[low >> 6]);
  } else if (type == ARRAY_CONTAINER_TYPE_CODE) {
    const auto* a = static_cast<const array_container_t*>(c);
    const int32_t n = a->cardinality;
    if (n > 64) {
      for (int32_t i = 1; i < 8; ++i) __builtin_prefetch(a->array + n * i / 8);
    } else {
      __builtin_prefetch(a->array);
      __builtin_prefetch(a->array + n - 1);
    }
  }
}

// Stage three, once PrefetchMembership's lines are cached: narrows the
// search to one sixteenth of the array by reading them, and pulls that in.
inline void PrefetchMembershipFinal(const Roaring& bitmap, uint32_t value) {
  uint8_t type = 0;
  const void* c = FindContainer(bitmap, static_cast<uint16_t>(value >> 16), &type);
  if (c == nullptr || type != ARRAY_CONTAINER_TYPE_CODE) return;
  const auto* a = static_cast<const array_container_t*>(c);
  const int32_t n = a->cardinality;
  if (n <= 64) return;
  const uint16_t low = static_cast<uint16_t>(value);
  int32_t part = 0;
  while (part < 7 && a->array[n * (part + 1) / 8] <= low) ++part;
  const uint16_t* from = a->array + n * part / 8;
  const uint16_t* to = a->array + n * (part + 1) / 8;
  for (const uint16_t* p = from; p < to + 32; p += 32) __builtin_prefetch(p);
}

}  // namespace tagcache::internal
