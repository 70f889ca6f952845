// roaring.h before everything (this file's header too): it includes the
// container headers, which ReadBitmap's checks need, inside extern "C".
#include "state_codec.h"

#include <roaring/roaring.h>

#include <optional>
#include <string>
#include <utility>

namespace tagcache::storage::internal {
namespace {

constexpr size_t kOverrideBytes = 4 + 8 + 1;
constexpr size_t kMissingBytes = 8 + 1 + 8;
constexpr size_t kMinTagStateBytes = 1 + 1 + 1 + 8 + 4;

std::string N(uint64_t v) { return std::to_string(v); }

}  // namespace

// ---- Encoding ----------------------------------------------------------------

void PutBitmap(std::string& out, const Roaring& bitmap) {
  const size_t size = bitmap.getSizeInBytes(/*portable=*/true);
  PutU32(out, static_cast<uint32_t>(size));
  const size_t at = out.size();
  out.resize(at + size);
  const size_t written = bitmap.write(out.data() + at, /*portable=*/true);
  out.resize(at + written);  // equal to size; keeps the length honest if not
}

void EncodeTagState(const TagState& tag, std::string& out) {
  PutTag(out, tag.name);
  PutU8(out, tag.has_floor ? 1 : 0);
  PutU64(out, tag.floor_ts);
  PutU32(out, static_cast<uint32_t>(tag.missing.size()));
  for (const auto& [shard, floor] : tag.missing) {
    PutU64(out, shard);
    PutU8(out, floor.has_value() ? 1 : 0);
    PutU64(out, floor.value_or(0));
  }
}

void EncodeShardRecord(uint64_t shard, uint32_t columns, const Roaring& known, std::string& out) {
  PutU64(out, shard);
  PutU32(out, columns);
  PutBitmap(out, known);
}

void EncodeColumn(uint64_t shard, const ColumnState& column, std::string& out) {
  PutU64(out, shard);
  PutTag(out, column.tag);
  PutU32(out, column.tag_id);
  PutU64(out, column.base_ts);
  PutU64(out, column.base_digest);
  PutU8(out, column.has_base ? 1 : 0);
  PutU32(out, static_cast<uint32_t>(column.overrides.size()));
  for (const OverrideState& o : column.overrides) {
    PutU32(out, o.offset);
    PutU64(out, o.ts);
    PutU8(out, static_cast<uint8_t>(o.op));
  }
  PutBitmap(out, column.bitmap);
}

namespace {

// ---- Bitmaps -----------------------------------------------------------------
// CRoaring 0.2.66's safe reader checks bounds only (it trusts a negative
// container count and never looks at container contents), so a bitmap is
// first checked to be exactly one complete portable bitmap, then read, then
// its containers are checked for the invariants Roaring operations rely on.

constexpr uint32_t kCookieNoRuns = 12346;
constexpr uint32_t kCookieRuns = 12347;
constexpr uint32_t kMaxContainers = 1u << 16;
constexpr uint32_t kMaxArray = 4096;

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t LoadU32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

Status BadBitmap(const std::string& what) { return Status::IoError("bad bitmap: " + what); }

Status CheckBitmapLayout(const uint8_t* data, size_t size) {
  if (size < 4) return BadBitmap("truncated cookie");
  size_t pos = 4;
  const uint32_t cookie = LoadU32(data);
  bool runs = false;
  uint32_t n = 0;
  if ((cookie & 0xFFFF) == kCookieRuns) {
    runs = true;
    n = (cookie >> 16) + 1;
  } else if (cookie == kCookieNoRuns) {
    if (size < 8) return BadBitmap("truncated container count");
    n = LoadU32(data + 4);
    pos = 8;
    if (n > kMaxContainers) return BadBitmap("container count " + N(n));
  } else {
    return BadBitmap("unknown cookie " + N(cookie));
  }
  const uint8_t* run_flags = data + pos;
  if (runs) {
    if (size - pos < (n + 7) / 8) return BadBitmap("truncated run flags");
    pos += (n + 7) / 8;
  }
  if (size - pos < 4 * size_t{n}) return BadBitmap("truncated descriptive header");
  const uint8_t* descriptive = data + pos;
  pos += 4 * size_t{n};
  // CRoaring writes offsets except for small bitmaps with runs.
  if (!runs || n >= 4) {
    if (size - pos < 4 * size_t{n}) return BadBitmap("truncated offsets");
    pos += 4 * size_t{n};
  }
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t cardinality = LoadU16(descriptive + 4 * k + 2) + 1u;
    size_t bytes = 0;
    if (runs && (run_flags[k / 8] >> (k % 8) & 1) != 0) {
      if (size - pos < 2) return BadBitmap("truncated run container " + N(k));
      bytes = 2 + 4 * size_t{LoadU16(data + pos)};
    } else {
      bytes = cardinality > kMaxArray ? 8192 : 2 * size_t{cardinality};
    }
    if (size - pos < bytes) return BadBitmap("truncated container " + N(k));
    pos += bytes;
  }
  if (pos != size) return BadBitmap(N(size - pos) + " trailing bytes");
  return Status::Ok();
}

// The largest value of container k (whose key is `key`), or an error.
Result<uint32_t> CheckContainer(const roaring_array_t& ra, int32_t k) {
  const uint32_t base = uint32_t{ra.keys[k]} << 16;
  const void* c = ra.containers[k];
  switch (ra.typecodes[k]) {
    case ARRAY_CONTAINER_TYPE_CODE: {
      const auto* a = static_cast<const array_container_t*>(c);
      if (a->cardinality < 1 || a->cardinality > static_cast<int32_t>(kMaxArray)) {
        return BadBitmap("array container of " + N(static_cast<uint64_t>(a->cardinality)));
      }
      for (int32_t i = 1; i < a->cardinality; ++i) {
        if (a->array[i] <= a->array[i - 1]) return BadBitmap("unsorted array container");
      }
      return base | a->array[a->cardinality - 1];
    }
    case BITSET_CONTAINER_TYPE_CODE: {
      const auto* b = static_cast<const bitset_container_t*>(c);
      if (bitset_container_compute_cardinality(b) != b->cardinality ||
          b->cardinality <= static_cast<int32_t>(kMaxArray)) {
        return BadBitmap("bitset container with a wrong cardinality");
      }
      int word = BITSET_CONTAINER_SIZE_IN_WORDS - 1;
      while (b->array[word] == 0) --word;  // cardinality > 4096: some word is set
      return base | static_cast<uint32_t>(word * 64 + 63 - __builtin_clzll(b->array[word]));
    }
    case RUN_CONTAINER_TYPE_CODE: {
      const auto* r = static_cast<const run_container_t*>(c);
      if (r->n_runs < 1) return BadBitmap("empty run container");
      int64_t previous_last = -2;
      for (int32_t i = 0; i < r->n_runs; ++i) {
        const uint32_t start = r->runs[i].value;
        const uint32_t last = start + r->runs[i].length;
        // Sorted, disjoint and not touching: CRoaring writes nothing else.
        if (last > 0xFFFF || static_cast<int64_t>(start) <= previous_last + 1) {
          return BadBitmap("run container with unsorted, overlapping or overflowing runs");
        }
        previous_last = last;
      }
      return base | static_cast<uint32_t>(previous_last);
    }
    default:
      return BadBitmap("container type " + N(ra.typecodes[k]));
  }
}

}  // namespace

Result<Roaring> ReadBitmap(std::string_view bytes, uint64_t limit) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (Status s = CheckBitmapLayout(data, bytes.size()); !s.ok()) return s;
  roaring_bitmap_t* raw = roaring_bitmap_portable_deserialize_safe(bytes.data(), bytes.size());
  if (raw == nullptr) return BadBitmap("CRoaring could not read it");
  Roaring bitmap(raw);  // takes over the contents, frees `raw`
  const roaring_array_t& ra = bitmap.roaring.high_low_container;
  for (int32_t k = 0; k < ra.size; ++k) {
    if (k > 0 && ra.keys[k] <= ra.keys[k - 1]) return BadBitmap("unsorted container keys");
    Result<uint32_t> max = CheckContainer(ra, k);
    if (!max.ok()) return max.status();
    if (*max >= limit) {
      return BadBitmap("offset " + N(*max) + " is out of range (must be < " + N(limit) + ")");
    }
  }
  if (bitmap.getSizeInBytes(/*portable=*/true) != bytes.size()) {
    return BadBitmap("does not re-serialize to its " + N(bytes.size()) + " bytes");
  }
  return bitmap;
}

// ---- State records -----------------------------------------------------------

Result<std::vector<TagState>> DecodeTags(std::string_view payload) {
  StateReader r(payload);
  uint32_t count = 0;
  if (!r.U32(&count)) return Status::IoError("bad tags record: truncated count");
  if (count > r.remaining() / kMinTagStateBytes) {
    return Status::IoError("bad tags record: tag count " + N(count) + " cannot fit");
  }
  std::vector<TagState> tags;
  tags.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    TagState t;
    std::string_view name;
    uint32_t missing = 0;
    if (!r.Tag(&name) || !r.Flag(&t.has_floor) || !r.U64(&t.floor_ts) || !r.U32(&missing)) {
      return Status::IoError("bad tags record: tag " + N(i) + " is malformed");
    }
    t.name = std::string(name);
    if (missing > r.remaining() / kMissingBytes) {
      return Status::IoError("bad tags record: tag " + t.name + " has a missing-shard count " +
                             N(missing) + " that cannot fit");
    }
    t.missing.reserve(missing);
    for (uint32_t j = 0; j < missing; ++j) {
      uint64_t shard = 0;
      bool has_ts = false;
      uint64_t ts = 0;
      if (!r.U64(&shard) || !r.Flag(&has_ts) || !r.U64(&ts)) {
        return Status::IoError("bad tags record: tag " + t.name + " has a malformed missing shard");
      }
      if (!t.missing.empty() && shard <= t.missing.back().first) {
        return Status::IoError("bad tags record: tag " + t.name +
                               "'s missing shards are not ascending");
      }
      t.missing.emplace_back(shard, has_ts ? std::optional<Timestamp>(ts) : std::nullopt);
    }
    tags.push_back(std::move(t));
  }
  if (r.remaining() != 0) {
    return Status::IoError("bad tags record: " + N(r.remaining()) + " trailing bytes");
  }
  return tags;
}

Status DecodeShardRecord(std::string_view payload, uint64_t limit, ShardState* state,
                         uint32_t* columns) {
  StateReader r(payload);
  uint64_t shard = 0;
  std::string_view known;
  if (!r.U64(&shard) || !r.U32(columns) || !r.Blob(&known) || r.remaining() != 0) {
    return Status::IoError("bad shard record");
  }
  Result<Roaring> bitmap = ReadBitmap(known, limit);
  if (!bitmap.ok()) {
    return Status::IoError("shard " + N(shard) + " known users: " + bitmap.status().message());
  }
  state->shard = shard;
  state->known = std::move(*bitmap);
  return Status::Ok();
}

Result<ColumnState> DecodeColumn(std::string_view payload, uint64_t shard, uint64_t limit,
                                 uint32_t version) {
  StateReader r(payload);
  ColumnState c;
  uint64_t record_shard = 0;
  std::string_view tag;
  uint32_t overrides = 0;
  if (!r.U64(&record_shard) || !r.Tag(&tag) || (version >= 2 && !r.U32(&c.tag_id)) ||
      !r.U64(&c.base_ts) || !r.U64(&c.base_digest) || !r.Flag(&c.has_base) || !r.U32(&overrides)) {
    return Status::IoError("bad column record: malformed header");
  }
  c.tag = std::string(tag);
  const std::string what = "column " + c.tag + " of shard " + N(shard) + ": ";
  if (record_shard != shard)
    return Status::IoError(what + "the record names shard " + N(record_shard));
  if (overrides > r.remaining() / kOverrideBytes) {
    return Status::IoError(what + "override count " + N(overrides) + " cannot fit");
  }
  c.overrides.reserve(overrides);
  for (uint32_t i = 0; i < overrides; ++i) {
    OverrideState o;
    uint8_t op = 0;
    (void)(r.U32(&o.offset) && r.U64(&o.ts) && r.U8(&op));  // fits: checked above
    if (op > static_cast<uint8_t>(TagOp::kClear)) {
      return Status::IoError(what + "override " + N(i) + " has unknown op " + N(op));
    }
    o.op = static_cast<TagOp>(op);
    if (o.offset >= limit) {
      return Status::IoError(what + "override offset " + N(o.offset) + " is out of range");
    }
    if (!c.overrides.empty() && o.offset <= c.overrides.back().offset) {
      return Status::IoError(what + "overrides are not in ascending offset order");
    }
    c.overrides.push_back(o);
  }
  std::string_view bytes;
  if (!r.Blob(&bytes) || r.remaining() != 0) {
    return Status::IoError(what + "malformed bitmap length or trailing bytes");
  }
  Result<Roaring> bitmap = ReadBitmap(bytes, limit);
  if (!bitmap.ok()) return Status::IoError(what + bitmap.status().message());
  c.bitmap = std::move(*bitmap);
  return c;
}

}  // namespace tagcache::storage::internal
