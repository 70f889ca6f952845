// Kernels over 65,536-bit bitset containers (1,024 64-bit words), the shape
// CRoaring uses for dense containers. Debian's libroaring is compiled for
// baseline x86-64 (no popcnt instruction), so the hot audience paths use
// these instead, compiled per CPU level and chosen once at runtime.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tagcache::internal {

inline constexpr size_t kBitsetWords = 1024;  // 65,536 bits

// Function table for one CPU level. REQUIRES for every kernel: each pointer
// addresses kBitsetWords words; `out` may alias an input.
struct BitsetKernels {
  uint64_t (*count)(const uint64_t* a);
  uint64_t (*and_count)(const uint64_t* a, const uint64_t* b);
  uint64_t (*and_not_count)(const uint64_t* a, const uint64_t* b);  // |a & ~b|
  uint64_t (*and_and_not_count)(const uint64_t* a, const uint64_t* b, const uint64_t* c);
  void (*and_into)(uint64_t* out, const uint64_t* a, const uint64_t* b);
  void (*and_not_into)(uint64_t* out, const uint64_t* a, const uint64_t* b);
  void (*or_into)(uint64_t* out, const uint64_t* a, const uint64_t* b);
  std::string_view level;  // "avx512-vpopcnt", "avx2", "popcnt" or "baseline"
};

// The best table this CPU supports (checked with cpuid once per call; cheap).
BitsetKernels SelectBitsetKernels();
// The portable table, for differential tests of the others.
BitsetKernels BaselineBitsetKernels();

}  // namespace tagcache::internal
