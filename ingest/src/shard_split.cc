#include "shard_split.h"

#include <roaring/roaring.h>
#include <roaring/roaring_array.h>

#include <cassert>

namespace tagcache::ingest::internal {
namespace {

// Shards narrower than a container (shard_bits < 16), or a copy-on-write
// source whose shared containers we would rather not copy by hand.
// REQUIRES: shard_bits < 32.
void SplitByValue(const Roaring& low, uint64_t shard_base, int shard_bits,
                  const std::function<void(uint64_t, const Roaring&)>& part) {
  const uint32_t mask = (1u << shard_bits) - 1;
  constexpr uint32_t kBatch = 4096;
  uint32_t values[kBatch];
  roaring_uint32_iterator_t it;
  roaring_init_iterator(&low.roaring, &it);
  Roaring piece;
  uint64_t piece_shard = 0;
  bool open = false;
  for (;;) {
    const uint32_t n = roaring_read_uint32_iterator(&it, values, kBatch);
    if (n == 0) break;
    // Values come ascending, so each shard is one run of the batch.
    for (uint32_t i = 0; i < n;) {
      const uint32_t local = values[i] >> shard_bits;
      uint32_t j = i;
      while (j < n && values[j] >> shard_bits == local) {
        values[j] &= mask;
        ++j;
      }
      const uint64_t shard = shard_base + local;
      if (open && shard != piece_shard) {
        part(piece_shard, piece);
        piece = Roaring();
      }
      piece.addMany(j - i, values + i);
      piece_shard = shard;
      open = true;
      i = j;
    }
  }
  if (open) part(piece_shard, piece);
}

}  // namespace

void SplitByShard(const Roaring& low, uint32_t high, int shard_bits,
                  const std::function<void(uint64_t shard, const Roaring& offsets)>& part) {
  assert(shard_bits >= 8 && shard_bits <= 32);
  if (low.isEmpty()) return;
  const uint64_t shard_base = uint64_t{high} << (32 - shard_bits);
  if (shard_bits == 32) {
    part(shard_base, low);
    return;
  }
  const roaring_array_t& src = low.roaring.high_low_container;
  if (shard_bits < 16 || roaring_bitmap_get_copy_on_write(&low.roaring)) {
    SplitByValue(low, shard_base, shard_bits, part);
    return;
  }
  // A shard is 2^(shard_bits - 16) whole containers: copy each container
  // into its shard's bitmap under the key it has within the shard. Keys stay
  // ascending within a shard because they do in `low`.
  const int key_shift = shard_bits - 16;
  const uint16_t key_mask = static_cast<uint16_t>((1u << key_shift) - 1);
  Roaring piece;
  uint64_t piece_shard = 0;
  for (int32_t i = 0; i < src.size; ++i) {
    const uint16_t key = src.keys[i];
    const uint64_t shard = shard_base + (key >> key_shift);
    if (i > 0 && shard != piece_shard) {
      part(piece_shard, piece);
      piece = Roaring();
    }
    piece_shard = shard;
    roaring_array_t* dst = &piece.roaring.high_low_container;
    ra_append_copy(dst, &src, static_cast<uint16_t>(i), /*copy_on_write=*/false);
    dst->keys[dst->size - 1] = key & key_mask;
  }
  part(piece_shard, piece);
}

}  // namespace tagcache::ingest::internal
