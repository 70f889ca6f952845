// Roaring bitmaps on the wire: the portable serialization (as the Java, Go
// and C libraries write it), read with CRoaring's bounds-checked reader and
// then checked structurally by us, because CRoaring 0.2.66 validates nothing
// beyond bounds (unsorted keys or array values, wrong cardinalities and
// overlapping runs would all be accepted and break later operations).
#pragma once

#include <roaring/roaring.hh>

#include <cstddef>
#include <cstdint>
#include <string>

#include "tagcache/common/status.h"

namespace tagcache::protocol {

// Deserializes and validates a portable bitmap of `size` bytes whose values
// must all be < `value_limit` (e.g. 2^shard_bits). BAD_REQUEST, naming the
// problem (truncated, trailing bytes, unsorted keys, container invariant,
// value out of range), for anything else. Never prints, never aborts.
Result<Roaring> ReadPortableBitmap(const void* data, size_t size, uint64_t value_limit);

// The portable serialization of `bitmap` (run-optimised copy not required).
std::string WritePortableBitmap(const Roaring& bitmap);

}  // namespace tagcache::protocol
