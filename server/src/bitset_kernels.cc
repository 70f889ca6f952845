#include "bitset_kernels.h"

namespace tagcache::internal {
namespace {

// One template body, instantiated under several target attributes: the
// compiler vectorises these loops differently per level (vpopcntq under
// AVX-512 VPOPCNTDQ, scalar popcnt otherwise).
#define TAGCACHE_DEFINE_KERNELS(NS, ATTR)                                                  \
  namespace NS {                                                                            \
  ATTR uint64_t Count(const uint64_t* a) {                                                  \
    uint64_t n = 0;                                                                         \
    for (size_t i = 0; i < kBitsetWords; ++i) n += __builtin_popcountll(a[i]);              \
    return n;                                                                               \
  }                                                                                         \
  ATTR uint64_t AndCount(const uint64_t* a, const uint64_t* b) {                            \
    uint64_t n = 0;                                                                         \
    for (size_t i = 0; i < kBitsetWords; ++i) n += __builtin_popcountll(a[i] & b[i]);       \
    return n;                                                                               \
  }                                                                                         \
  ATTR uint64_t AndNotCount(const uint64_t* a, const uint64_t* b) {                         \
    uint64_t n = 0;                                                                         \
    for (size_t i = 0; i < kBitsetWords; ++i) n += __builtin_popcountll(a[i] & ~b[i]);      \
    return n;                                                                               \
  }                                                                                         \
  ATTR uint64_t AndAndNotCount(const uint64_t* a, const uint64_t* b, const uint64_t* c) {   \
    uint64_t n = 0;                                                                         \
    for (size_t i = 0; i < kBitsetWords; ++i) n += __builtin_popcountll(a[i] & b[i] & ~c[i]); \
    return n;                                                                               \
  }                                                                                         \
  ATTR void AndInto(uint64_t* out, const uint64_t* a, const uint64_t* b) {                  \
    for (size_t i = 0; i < kBitsetWords; ++i) out[i] = a[i] & b[i];                         \
  }                                                                                         \
  ATTR void AndNotInto(uint64_t* out, const uint64_t* a, const uint64_t* b) {               \
    for (size_t i = 0; i < kBitsetWords; ++i) out[i] = a[i] & ~b[i];                        \
  }                                                                                         \
  ATTR void OrInto(uint64_t* out, const uint64_t* a, const uint64_t* b) {                   \
    for (size_t i = 0; i < kBitsetWords; ++i) out[i] = a[i] | b[i];                         \
  }                                                                                         \
  }

TAGCACHE_DEFINE_KERNELS(baseline, )
TAGCACHE_DEFINE_KERNELS(popcnt, __attribute__((target("popcnt"))))
TAGCACHE_DEFINE_KERNELS(avx2, __attribute__((target("avx2,popcnt,bmi2"))))
TAGCACHE_DEFINE_KERNELS(avx512,
                        __attribute__((target("avx512f,avx512vl,avx512bw,avx512vpopcntdq,popcnt"))))
#undef TAGCACHE_DEFINE_KERNELS

#define TAGCACHE_TABLE(NS, NAME)                                                       \
  BitsetKernels {                                                                      \
    NS::Count, NS::AndCount, NS::AndNotCount, NS::AndAndNotCount, NS::AndInto,         \
        NS::AndNotInto, NS::OrInto, NAME                                               \
  }

}  // namespace

BitsetKernels BaselineBitsetKernels() { return TAGCACHE_TABLE(baseline, "baseline"); }

BitsetKernels SelectBitsetKernels() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw")) {
    return TAGCACHE_TABLE(avx512, "avx512-vpopcnt");
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) {
    return TAGCACHE_TABLE(avx2, "avx2");
  }
  if (__builtin_cpu_supports("popcnt")) return TAGCACHE_TABLE(popcnt, "popcnt");
  return BaselineBitsetKernels();
}

}  // namespace tagcache::internal
