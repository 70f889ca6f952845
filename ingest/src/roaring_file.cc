#include "roaring_file.h"

#include <roaring/roaring.h>

#include <string>

#include "shard_split.h"
#include "tagcache/protocol/bitmap.h"

namespace tagcache::ingest::internal {
namespace {

constexpr uint64_t kLowLimit = uint64_t{1} << 32;
constexpr uint32_t kCookieNoRuns = 12346;
constexpr uint32_t kCookieRuns = 12347;  // in the low 16 bits

uint32_t LoadU32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}
uint64_t LoadU64(const char* p) { return LoadU32(p) | uint64_t{LoadU32(p + 4)} << 32; }

std::string N(uint64_t v) { return std::to_string(v); }

bool HasCookie32(std::string_view data) {
  if (data.size() < 4) return false;
  const uint32_t cookie = LoadU32(data.data());
  return cookie == kCookieNoRuns || (cookie & 0xFFFF) == kCookieRuns;
}

// Nothing is added unless the whole of `data` is one valid bitmap.
Result<uint64_t> Read32(std::string_view data, std::string_view tag, SnapshotSet* out) {
  Result<Roaring> users = protocol::ReadPortableBitmap(data.data(), data.size(), kLowLimit);
  if (!users.ok()) return users.status();
  out->AddUsers32(tag, *users);
  return users->cardinality();
}

Result<uint64_t> Read64(std::string_view data, std::string_view tag, SnapshotSet* out) {
  const char* base = data.data();
  const size_t size = data.size();
  if (size < 8) {
    return Status::BadRequest("truncated: " + N(size) +
                              " bytes, shorter than the 8-byte bucket count");
  }
  const uint64_t buckets = LoadU64(base);
  out->AddTag(tag);
  uint64_t users = 0;
  size_t pos = 8;
  uint32_t previous_key = 0;
  // Every bucket takes at least 12 bytes, so a huge count fails as truncated.
  for (uint64_t b = 0; b < buckets; ++b) {
    const std::string bucket = "bucket " + N(b) + " of " + N(buckets);
    if (size - pos < 4) {
      return Status::BadRequest("truncated: the file ends at byte " + N(size) + ", before " +
                                bucket);
    }
    const uint32_t key = LoadU32(base + pos);
    if (b > 0 && key <= previous_key) {
      return Status::BadRequest("bucket keys are not strictly ascending: " + bucket + " at byte " +
                                N(pos) + " has key " + N(key) + " after key " + N(previous_key));
    }
    pos += 4;
    const std::string where = bucket + " (key " + N(key) + ") at byte " + N(pos);
    // The bitmap's extent, from its header; CRoaring says 0 when it cannot
    // tell (bad cookie, truncated). ReadPortableBitmap then checks exactly
    // that span, so a wrong extent fails there too.
    const size_t length = roaring_bitmap_portable_deserialize_size(base + pos, size - pos);
    if (length == 0 || length > size - pos) {
      Result<Roaring> why = protocol::ReadPortableBitmap(base + pos, size - pos, kLowLimit);
      return Status::BadRequest(where + ": " +
                                (why.ok() ? std::string("the bitmap's size cannot be determined")
                                          : why.status().message()));
    }
    Result<Roaring> low = protocol::ReadPortableBitmap(base + pos, length, kLowLimit);
    if (!low.ok()) return Status::BadRequest(where + ": " + low.status().message());
    SplitByShard(*low, key, out->shard_bits(), [&](uint64_t shard, const Roaring& offsets) {
      out->AddShardOffsets(tag, shard, offsets);
    });
    users += low->cardinality();
    pos += length;
    previous_key = key;
  }
  if (pos != size) {
    return Status::BadRequest(N(size - pos) + " trailing bytes after the " + N(buckets) +
                              " buckets, at byte " + N(pos));
  }
  return users;
}

}  // namespace

Result<uint64_t> ReadRoaring(std::string_view data, InputFormat format, std::string_view tag,
                             SnapshotSet* out) {
  if (format == InputFormat::kRoaring32) {
    Result<uint64_t> users = Read32(data, tag, out);
    if (users.ok()) return users;
    return Status::BadRequest("not a valid 32-bit portable Roaring bitmap: " +
                              users.status().message());
  }
  if (format == InputFormat::kRoaring64) {
    Result<uint64_t> users = Read64(data, tag, out);
    if (users.ok()) return users;
    return Status::BadRequest("not a valid 64-bit portable Roaring bitmap (Roaring64Map): " +
                              users.status().message());
  }
  // kRoaring. A 64-bit file whose bucket count happens to look like a cookie
  // still fails the 32-bit read, which must consume exactly the whole file.
  if (HasCookie32(data)) {
    Result<uint64_t> users = Read32(data, tag, out);
    if (users.ok()) return users;
    Result<uint64_t> users64 = Read64(data, tag, out);
    if (users64.ok()) return users64;
    return Status::BadRequest(
        "not a valid portable Roaring bitmap: as 32-bit: " + users.status().message() +
        "; as 64-bit (Roaring64Map): " + users64.status().message());
  }
  Result<uint64_t> users = Read64(data, tag, out);
  if (users.ok()) return users;
  return Status::BadRequest(
      "not a valid portable Roaring bitmap: no 32-bit cookie (12346, or 12347 in the low 16 "
      "bits), and as 64-bit (Roaring64Map): " +
      users.status().message());
}

}  // namespace tagcache::ingest::internal
