// Splitting a bitmap of user ids into the per-shard bitmaps of offsets a
// SnapshotSet holds (shard = user >> shard_bits, offset = the low
// shard_bits bits), container by container when shards are whole Roaring
// containers, value by value otherwise.
#pragma once

#include <cstdint>
#include <functional>
#include <roaring/roaring.hh>

namespace tagcache::ingest::internal {

// Calls `part(shard, offsets)` once for every shard holding members, in
// ascending shard order, where the users are (high << 32) | v for every v in
// `low`. `offsets` is valid only during the call. Nothing is called for an
// empty `low`. REQUIRES: 8 <= shard_bits <= 32.
void SplitByShard(const Roaring& low, uint32_t high, int shard_bits,
                  const std::function<void(uint64_t shard, const Roaring& offsets)>& part);

}  // namespace tagcache::ingest::internal
