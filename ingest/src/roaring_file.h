// A whole portable Roaring input as one tag's members: a 32-bit portable
// bitmap, or CRoaring's Roaring64Map portable layout (u64 LE bucket count,
// then per bucket a u32 LE high key, strictly ascending, and a 32-bit
// portable bitmap of the low halves). Every bitmap is validated
// structurally (protocol::ReadPortableBitmap), not only for bounds.
#pragma once

#include <cstdint>
#include <string_view>

#include "tagcache/common/status.h"
#include "tagcache/ingest/snapshot_input.h"
#include "tagcache/ingest/snapshot_set.h"

namespace tagcache::ingest::internal {

// Adds the users of `data` to `out` as members of `tag` (marking the tag
// present even for an empty bitmap): kRoaring32 and kRoaring64 read that
// layout only, kRoaring tells them apart by content (a 32-bit cookie and a
// 32-bit read that consumes exactly `data`, else the 64-bit layout). The
// user count on success; BAD_REQUEST naming the problem and its byte offset
// otherwise, and then `out` may hold part of the file (the caller reads
// into a set of its own and drops it). REQUIRES: `format` is one of those
// three; `tag` is a valid tag name.
Result<uint64_t> ReadRoaring(std::string_view data, InputFormat format, std::string_view tag,
                             SnapshotSet* out);

}  // namespace tagcache::ingest::internal
