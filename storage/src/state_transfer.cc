#include "tagcache/storage/state_transfer.h"

#include <xxhash.h>

#include <string>
#include <unordered_set>
#include <utility>

#include "byte_codec.h"
#include "state_codec.h"

namespace tagcache::storage {
namespace {

using internal::PutU32;
using internal::PutU64;

constexpr uint32_t kMagic = 0x54534354;  // "TCST" little-endian
constexpr uint32_t kVersion = 1;
constexpr size_t kChecksumBytes = 8;
// Column records carry the writer's tag ids (checkpoint format 2).
constexpr uint32_t kColumnFormat = 2;
// Bitmaps are first decoded against the widest shard so an offset beyond
// this node's shard is reported as such, not as damage.
constexpr uint64_t kAnyOffset = uint64_t{1} << 32;

std::string N(uint64_t v) { return std::to_string(v); }

Status Damaged(const std::string& what) { return Status::IoError("state transfer: " + what); }
Status Refused(const std::string& what) { return Status::BadRequest("state transfer: " + what); }

// Appends u32 length + what `encode` writes.
template <typename Encode>
void PutSection(std::string& out, Encode encode) {
  const size_t at = out.size();
  out.append(4, '\0');
  encode(out);
  const uint32_t len = static_cast<uint32_t>(out.size() - at - 4);
  for (int b = 0; b < 4; ++b) out[at + b] = static_cast<char>(len >> (8 * b));
}

// Everything the engine's merge would refuse about the floor records.
Status CheckTags(const std::vector<TagState>& tags) {
  std::unordered_set<std::string_view> names;
  for (const TagState& t : tags) {
    if (!names.insert(t.name).second) return Damaged("tag " + t.name + " appears twice");
    for (const auto& [shard, floor] : t.missing) {
      if (!t.has_floor || (floor && *floor >= t.floor_ts)) {
        return Refused("tag " + t.name + ": shard " + N(shard) +
                       "'s floor must be below the tag's floor");
      }
    }
  }
  return Status::Ok();
}

// Offsets against this node's shard size, and the shard against its range.
Status CheckRanges(const ShardState& state, int shard_bits) {
  if (state.shard > (~uint64_t{0} >> shard_bits)) {
    return Refused("shard " + N(state.shard) + " is out of range for " + N(shard_bits) +
                   " shard bits");
  }
  const uint64_t users = uint64_t{1} << shard_bits;
  auto beyond = [&](const std::string& what, uint64_t offset) {
    return Refused(what + " of shard " + N(state.shard) + " has offset " + N(offset) +
                   ", beyond the shard's " + N(users) + " users");
  };
  if (!state.known.isEmpty() && state.known.maximum() >= users) {
    return beyond("the known users", state.known.maximum());
  }
  for (const ColumnState& c : state.columns) {
    if (!c.bitmap.isEmpty() && c.bitmap.maximum() >= users) {
      return beyond("column " + c.tag, c.bitmap.maximum());
    }
    // Ascending: the last override has the largest offset.
    if (!c.overrides.empty() && c.overrides.back().offset >= users) {
      return beyond("an override of column " + c.tag, c.overrides.back().offset);
    }
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeShardTransfer(std::span<const TagState> tags, const ShardState& state) {
  std::string out(kChecksumBytes, '\0');
  PutU32(out, kMagic);
  PutU32(out, kVersion);
  PutSection(out, [&](std::string& o) {
    PutU32(o, static_cast<uint32_t>(tags.size()));
    for (const TagState& t : tags) internal::EncodeTagState(t, o);
  });
  PutSection(out, [&](std::string& o) {
    internal::EncodeShardRecord(state.shard, static_cast<uint32_t>(state.columns.size()),
                                state.known, o);
  });
  for (const ColumnState& c : state.columns) {
    PutSection(out, [&](std::string& o) { internal::EncodeColumn(state.shard, c, o); });
  }
  const uint64_t checksum = XXH3_64bits(out.data() + kChecksumBytes, out.size() - kChecksumBytes);
  for (size_t b = 0; b < kChecksumBytes; ++b) out[b] = static_cast<char>(checksum >> (8 * b));
  return out;
}

Result<ShardTransfer> DecodeShardTransfer(std::string_view bytes, int shard_bits) {
  if (shard_bits < 8 || shard_bits > 26) {
    return Refused("shard_bits " + N(static_cast<uint64_t>(shard_bits)) + " is not in [8, 26]");
  }
  if (bytes.size() < kChecksumBytes + 8) {
    return Damaged("truncated header (" + N(bytes.size()) + " bytes)");
  }
  internal::StateReader r(bytes);
  uint64_t checksum = 0;
  uint32_t magic = 0, version = 0;
  (void)(r.U64(&checksum) && r.U32(&magic) && r.U32(&version));  // fits: checked above
  if (XXH3_64bits(bytes.data() + kChecksumBytes, bytes.size() - kChecksumBytes) != checksum) {
    return Damaged("checksum mismatch over " + N(bytes.size()) + " bytes (damaged or truncated)");
  }
  if (magic != kMagic) return Damaged("bad magic " + N(magic));
  if (version != kVersion) {
    return Refused("format version " + N(version) + " is not supported (this build reads " +
                   N(kVersion) + ")");
  }

  ShardTransfer out;
  std::string_view section;
  if (!r.Blob(&section)) return Damaged("truncated tags section");
  Result<std::vector<TagState>> tags = internal::DecodeTags(section);
  if (!tags.ok()) return Damaged(tags.status().message());
  out.tags = std::move(*tags);
  if (Status s = CheckTags(out.tags); !s.ok()) return s;

  if (!r.Blob(&section)) return Damaged("truncated shard record");
  uint32_t columns = 0;
  if (Status s = internal::DecodeShardRecord(section, kAnyOffset, &out.state, &columns); !s.ok()) {
    return Damaged(s.message());
  }
  // Each column takes at least its u32 length: a count that cannot fit is
  // refused before anything is reserved.
  if (columns > r.remaining() / 4) {
    return Damaged("shard " + N(out.state.shard) + " announces " + N(columns) +
                   " columns that cannot fit");
  }
  out.state.columns.reserve(columns);
  std::unordered_set<std::string> names;
  for (uint32_t i = 0; i < columns; ++i) {
    if (!r.Blob(&section)) return Damaged("truncated column " + N(i));
    Result<ColumnState> column =
        internal::DecodeColumn(section, out.state.shard, kAnyOffset, kColumnFormat);
    if (!column.ok()) return Damaged(column.status().message());
    if (!names.insert(column->tag).second) {
      return Damaged("column " + column->tag + " of shard " + N(out.state.shard) +
                     " appears twice");
    }
    out.state.columns.push_back(std::move(*column));
  }
  if (r.remaining() != 0) return Damaged(N(r.remaining()) + " trailing bytes");
  if (Status s = CheckRanges(out.state, shard_bits); !s.ok()) return s;
  return out;
}

}  // namespace tagcache::storage
