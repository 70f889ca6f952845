// Portable Roaring bitmaps from untrusted bytes, in three steps:
//
// 1. CheckLayout parses the portable format's header on its own (cookie,
//    container count, run flags, descriptive header, offsets) and walks the
//    container sizes, so that the input is known to be exactly one complete
//    bitmap before CRoaring sees it. CRoaring 0.2.66's "safe" reader checks
//    bounds only, trusts a negative container count, prints to stderr on
//    every failure and skips the offsets altogether.
// 2. CRoaring deserializes it (this cannot fail any more, short of memory).
// 3. CheckContainers walks the deserialized containers and checks the
//    invariants every Roaring operation relies on (sorted keys, per-type
//    container invariants, cardinalities) and the value limit.
//
// What is accepted re-serializes to the same bytes: the format leaves a few
// choices open (which cookie, offsets, padding bits) and only the ones every
// Roaring library writes are accepted (docs/PROTOCOL.md "Bitmaps").
#include "tagcache/protocol/bitmap.h"

#include <roaring/containers/containers.h>
#include <roaring/roaring.h>

#include <cstring>
#include <string>

namespace tagcache::protocol {
namespace {

constexpr uint32_t kCookieNoRuns = 12346;  // followed by a u32 container count
constexpr uint32_t kCookieRuns = 12347;    // low 16 bits; high 16 bits are count - 1
constexpr uint32_t kMaxContainers = 1u << 16;
constexpr uint32_t kNoOffsetThreshold = 4;  // with runs, offsets only from 4 containers
constexpr uint32_t kMaxArrayCardinality = 4096;
constexpr size_t kBitsetBytes = 8192;

inline uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
inline uint32_t LoadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

Status Bad(std::string what) { return Status::BadRequest("invalid Roaring bitmap: " + what); }

std::string N(uint64_t v) { return std::to_string(v); }

enum class Kind : uint8_t { kArray, kBitset, kRun };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kArray:
      return "array";
    case Kind::kBitset:
      return "bitset";
    case Kind::kRun:
      return "run";
  }
  return "?";
}

// The header of a portable bitmap whose byte layout has been checked.
struct Layout {
  bool has_runs = false;
  uint32_t containers = 0;
  const uint8_t* run_flags = nullptr;    // (containers + 7) / 8 bytes when has_runs
  const uint8_t* descriptive = nullptr;  // per container: u16 key, u16 cardinality - 1

  uint16_t Key(uint32_t k) const { return LoadU16(descriptive + 4 * k); }
  uint32_t Cardinality(uint32_t k) const { return LoadU16(descriptive + 4 * k + 2) + 1u; }
  // The container type as every reader derives it from the header.
  Kind KindOf(uint32_t k) const {
    if (has_runs && (run_flags[k / 8] >> (k % 8) & 1) != 0) return Kind::kRun;
    return Cardinality(k) > kMaxArrayCardinality ? Kind::kBitset : Kind::kArray;
  }
};

Result<Layout> CheckLayout(const uint8_t* data, size_t size) {
  if (size < 4) {
    return Bad("truncated: " + N(size) + " bytes, shorter than the 4-byte cookie");
  }
  Layout layout;
  size_t pos = 4;
  const uint32_t cookie = LoadU32(data);
  if ((cookie & 0xFFFF) == kCookieRuns) {
    layout.has_runs = true;
    layout.containers = (cookie >> 16) + 1;
  } else if (cookie == kCookieNoRuns) {
    if (size < 8) {
      return Bad("truncated: " + N(size) + " bytes, shorter than the 8-byte header");
    }
    layout.containers = LoadU32(data + 4);
    pos = 8;
    if (layout.containers > kMaxContainers) {
      return Bad("container count " + N(layout.containers) + " exceeds " + N(kMaxContainers));
    }
  } else {
    return Bad("unknown cookie " + N(cookie) + " (expected " + N(kCookieNoRuns) + ", or " +
               N(kCookieRuns) + " in the low 16 bits)");
  }
  const uint32_t n = layout.containers;

  if (layout.has_runs) {
    const size_t flag_bytes = (n + 7) / 8;
    if (size - pos < flag_bytes) {
      return Bad("truncated in the run-container flags (" + N(size) + " bytes)");
    }
    layout.run_flags = data + pos;
    pos += flag_bytes;
    if (n % 8 != 0 && (layout.run_flags[flag_bytes - 1] >> (n % 8)) != 0) {
      return Bad("run-container flags set beyond the " + N(n) + " containers");
    }
    bool any_run = false;
    for (size_t i = 0; i < flag_bytes; ++i) any_run |= layout.run_flags[i] != 0;
    if (!any_run) {
      return Bad("cookie " + N(kCookieRuns) + " announces run containers but none is flagged");
    }
  }

  if (size - pos < 4 * size_t{n}) {
    return Bad("truncated in the descriptive header (" + N(n) + " containers, " + N(size) +
               " bytes)");
  }
  layout.descriptive = data + pos;
  pos += 4 * size_t{n};

  const uint8_t* offsets = nullptr;
  if (!layout.has_runs || n >= kNoOffsetThreshold) {
    if (size - pos < 4 * size_t{n}) {
      return Bad("truncated in the container offsets (" + N(n) + " containers, " + N(size) +
                 " bytes)");
    }
    offsets = data + pos;
    pos += 4 * size_t{n};
  }

  for (uint32_t k = 0; k < n; ++k) {
    if (offsets != nullptr && LoadU32(offsets + 4 * k) != pos) {
      return Bad("offset of container " + N(k) + " is " + N(LoadU32(offsets + 4 * k)) +
                 ", but the container starts at byte " + N(pos));
    }
    const Kind kind = layout.KindOf(k);
    size_t bytes = 0;
    switch (kind) {
      case Kind::kArray:
        bytes = 2 * size_t{layout.Cardinality(k)};
        break;
      case Kind::kBitset:
        bytes = kBitsetBytes;
        break;
      case Kind::kRun:
        if (size - pos < 2) {
          return Bad("truncated: run container " + N(k) + " has no run count");
        }
        bytes = 2 + 4 * size_t{LoadU16(data + pos)};
        break;
    }
    if (size - pos < bytes) {
      return Bad("truncated: " + std::string(KindName(kind)) + " container " + N(k) + " needs " +
                 N(bytes) + " bytes at byte " + N(pos) + ", " + N(size - pos) + " remain");
    }
    pos += bytes;
  }
  if (pos != size) {
    return Bad(N(size - pos) + " trailing bytes after the " + N(pos) + "-byte bitmap");
  }
  return layout;
}

// Each Check<Type> returns the low 16 bits of the container's largest value.
Result<uint16_t> CheckArray(const array_container_t& c, uint32_t k, uint16_t key,
                            uint32_t cardinality) {
  if (c.cardinality < 1 || c.cardinality > static_cast<int32_t>(kMaxArrayCardinality) ||
      static_cast<uint32_t>(c.cardinality) != cardinality) {
    return Bad("array container " + N(k) + " (key " + N(key) + ") holds " + N(c.cardinality) +
               " values, its header says " + N(cardinality));
  }
  for (int32_t i = 1; i < c.cardinality; ++i) {
    if (c.array[i] <= c.array[i - 1]) {
      return Bad("array container " + N(k) + " (key " + N(key) +
                 ") is not strictly ascending at position " + N(static_cast<uint32_t>(i)) + " (" +
                 N(c.array[i - 1]) + " then " + N(c.array[i]) + ")");
    }
  }
  return c.array[c.cardinality - 1];
}

// Bits set in a bitset container's 1,024 words. The build targets baseline
// x86-64 (no POPCNT), where __builtin_popcountll is a bit-twiddling sequence;
// the POPCNT instruction, when the CPU has it, is several times faster.
__attribute__((target("popcnt"))) uint64_t PopcountWordsPopcnt(const uint64_t* words) {
  uint64_t n = 0;
  for (int i = 0; i < BITSET_CONTAINER_SIZE_IN_WORDS; ++i) {
    n += static_cast<uint64_t>(__builtin_popcountll(words[i]));
  }
  return n;
}
uint64_t PopcountWordsBaseline(const uint64_t* words) {
  uint64_t n = 0;
  for (int i = 0; i < BITSET_CONTAINER_SIZE_IN_WORDS; ++i) {
    n += static_cast<uint64_t>(__builtin_popcountll(words[i]));
  }
  return n;
}
uint64_t BitsetPopcount(const uint64_t* words) {
  static const bool has_popcnt = __builtin_cpu_supports("popcnt");
  return has_popcnt ? PopcountWordsPopcnt(words) : PopcountWordsBaseline(words);
}

Result<uint16_t> CheckBitset(const bitset_container_t& c, uint32_t k, uint16_t key,
                             uint32_t cardinality) {
  const uint64_t popcount = BitsetPopcount(c.array);
  int last_word = BITSET_CONTAINER_SIZE_IN_WORDS - 1;
  while (last_word >= 0 && c.array[last_word] == 0) --last_word;
  if (popcount != cardinality || c.cardinality < 0 ||
      static_cast<uint32_t>(c.cardinality) != cardinality) {
    return Bad("bitset container " + N(k) + " (key " + N(key) + ") has " + N(popcount) +
               " bits set, its header says " + N(cardinality));
  }
  if (popcount <= kMaxArrayCardinality) {  // unreachable: the header chose the type by it
    return Bad("bitset container " + N(k) + " (key " + N(key) + ") holds only " + N(popcount) +
               " values (a bitset holds more than 4096)");
  }
  return static_cast<uint16_t>(last_word * 64 + 63 - __builtin_clzll(c.array[last_word]));
}

Result<uint16_t> CheckRuns(const run_container_t& c, uint32_t k, uint16_t key,
                           uint32_t cardinality) {
  if (c.n_runs < 1) {
    return Bad("run container " + N(k) + " (key " + N(key) + ") has no runs");
  }
  uint64_t total = 0;
  int64_t previous_last = -2;  // so that a first run starting at 0 is fine
  for (int32_t i = 0; i < c.n_runs; ++i) {
    const uint32_t start = c.runs[i].value;
    const uint32_t last = start + c.runs[i].length;
    if (last > 0xFFFF) {
      return Bad("run " + N(static_cast<uint32_t>(i)) + " of run container " + N(k) + " (key " +
                 N(key) + ") runs past 65535 (start " + N(start) + ", length " +
                 N(c.runs[i].length + 1u) + ")");
    }
    // Runs must be sorted and disjoint, and never touch: adjacent runs are
    // one run, and CRoaring never writes them.
    if (static_cast<int64_t>(start) <= previous_last + 1) {
      return Bad("run " + N(static_cast<uint32_t>(i)) + " of run container " + N(k) + " (key " +
                 N(key) + ") starts at " + N(start) + ", not after the previous run's end " +
                 N(static_cast<uint64_t>(previous_last)) +
                 " + 1 (unsorted, overlapping or adjacent)");
    }
    previous_last = last;
    total += last - start + 1;
  }
  if (total != cardinality) {
    return Bad("run container " + N(k) + " (key " + N(key) + ") holds " + N(total) +
               " values, its header says " + N(cardinality));
  }
  return static_cast<uint16_t>(previous_last);
}

Status CheckContainers(const Roaring& bitmap, const Layout& layout, uint64_t value_limit) {
  const roaring_array_t& ra = bitmap.roaring.high_low_container;
  if (ra.size < 0 || static_cast<uint32_t>(ra.size) != layout.containers) {
    return Status::Internal("CRoaring read " + N(static_cast<uint64_t>(ra.size)) +
                            " containers from a bitmap with " + N(layout.containers));
  }
  for (uint32_t k = 0; k < layout.containers; ++k) {
    const uint16_t key = ra.keys[k];
    if (key != layout.Key(k)) {
      return Status::Internal("CRoaring read key " + N(key) + " for container " + N(k) +
                              ", the header says " + N(layout.Key(k)));
    }
    if (k > 0 && key <= ra.keys[k - 1]) {
      return Bad("container keys are not strictly ascending: key " + N(key) + " at container " +
                 N(k) + " follows key " + N(ra.keys[k - 1]));
    }
    const uint32_t cardinality = layout.Cardinality(k);
    const Kind kind = layout.KindOf(k);
    const uint8_t expected_type = kind == Kind::kArray    ? ARRAY_CONTAINER_TYPE_CODE
                                  : kind == Kind::kBitset ? BITSET_CONTAINER_TYPE_CODE
                                                          : RUN_CONTAINER_TYPE_CODE;
    if (ra.typecodes[k] != expected_type) {
      return Status::Internal("CRoaring read container " + N(k) + " as type " + N(ra.typecodes[k]) +
                              ", the header says " + KindName(kind));
    }
    const void* c = ra.containers[k];
    Result<uint16_t> max_low =
        kind == Kind::kArray
            ? CheckArray(*static_cast<const array_container_t*>(c), k, key, cardinality)
        : kind == Kind::kBitset
            ? CheckBitset(*static_cast<const bitset_container_t*>(c), k, key, cardinality)
            : CheckRuns(*static_cast<const run_container_t*>(c), k, key, cardinality);
    if (!max_low.ok()) return max_low.status();
    // Keys ascend and each container is sorted, so the last container holds
    // the largest value; checking every container costs nothing extra.
    const uint64_t max_value = uint64_t{key} << 16 | *max_low;
    if (max_value >= value_limit) {
      return Bad("value " + N(max_value) + " (container " + N(k) +
                 ") is out of range: values must be below " + N(value_limit));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Roaring> ReadPortableBitmap(const void* data, size_t size, uint64_t value_limit) {
  if (data == nullptr && size != 0) return Bad("null buffer");
  const auto* bytes = static_cast<const uint8_t*>(data);
  Result<Layout> layout = CheckLayout(bytes, size);
  if (!layout.ok()) return layout.status();

  // The layout is now known to be exactly one complete bitmap, so CRoaring's
  // reader takes the same path as ours and fails only without memory.
  roaring_bitmap_t* raw =
      roaring_bitmap_portable_deserialize_safe(reinterpret_cast<const char*>(bytes), size);
  if (raw == nullptr) {
    return Status::Internal("CRoaring could not read a " + N(size) +
                            "-byte bitmap whose layout was checked (out of memory?)");
  }
  Roaring bitmap(raw);  // takes over the contents and frees `raw`

  Status status = CheckContainers(bitmap, *layout, value_limit);
  if (!status.ok()) return status;
  // Belt and braces: CheckLayout accepted only the byte layout CRoaring
  // writes, so the bitmap must re-serialize to exactly `size` bytes.
  if (roaring_bitmap_portable_size_in_bytes(&bitmap.roaring) != size) {
    return Status::Internal("bitmap of " + N(size) + " bytes re-serializes to " +
                            N(roaring_bitmap_portable_size_in_bytes(&bitmap.roaring)) + " bytes");
  }
  return bitmap;
}

std::string WritePortableBitmap(const Roaring& bitmap) {
  std::string out(bitmap.getSizeInBytes(/*portable=*/true), '\0');
  const size_t written = bitmap.write(out.data(), /*portable=*/true);
  out.resize(written);
  return out;
}

}  // namespace tagcache::protocol
