// Payload codecs of the WAL's write records (docs/WAL.md, "Write records").
// All integers little-endian. The decoders read untrusted bytes: every count
// is checked against the bytes that remain before anything is reserved, so a
// lying count costs an error, not an allocation.
#include "tagcache/storage/wal_records.h"

#include <string>
#include <unordered_map>
#include <unordered_set>

#include "byte_codec.h"

namespace tagcache::storage {
namespace {

using internal::kMaxTagBytes;
using internal::PutTag;
using internal::PutU32;
using internal::PutU64;
using internal::PutU8;

constexpr size_t kEventBytes = 8 + 8 + 4;  // user, ts, tag index << 1 | op
// A cursor over an untrusted payload. Every getter fails rather than read
// past the end; `kind` names the record in messages.
class Reader : public internal::ByteReader {
 public:
  Reader(std::string_view data, const char* kind) : ByteReader(data), kind_(kind) {}

  Status Bad(const std::string& what) const {
    return Status::IoError(std::string("bad ") + kind_ + " record: " + what);
  }
  Status Truncated(const char* field) const {
    return Bad(std::string("truncated in ") + field + " at byte " + std::to_string(pos()) + " of " +
               std::to_string(size()));
  }

  // u8 length + name, checked to be a valid tag name, with a message.
  Status Tag(const char* field, std::string_view* tag) {
    uint8_t len = 0;
    if (!U8(&len)) return Truncated(field);
    if (len == 0 || len > kMaxTagBytes) {
      return Bad(std::string(field) + " length " + std::to_string(len) + " is outside 1..128");
    }
    if (!Bytes(len, tag)) return Truncated(field);
    if (!IsValidTagName(*tag)) {
      return Bad(std::string(field) + " is not a valid tag name (1-128 bytes of [A-Za-z0-9_.:-])");
    }
    return Status::Ok();
  }

  Status ExpectEnd() const {
    if (remaining() != 0) {
      return Bad(std::to_string(remaining()) + " trailing bytes after byte " + std::to_string(pos()));
    }
    return Status::Ok();
  }

 private:
  const char* kind_;
};

}  // namespace

std::string EncodeEvents(std::span<const Event> events) {
  // A batch usually repeats a few tags many times; naming each once keeps a
  // record near 20 bytes an event.
  std::unordered_map<std::string_view, uint32_t> index;
  std::vector<std::string_view> tags;
  for (const Event& e : events) {
    if (index.emplace(e.tag, static_cast<uint32_t>(tags.size())).second) tags.push_back(e.tag);
  }
  std::string out;
  size_t tag_bytes = 0;
  for (std::string_view t : tags) tag_bytes += 1 + t.size();
  out.reserve(12 + tag_bytes + kEventBytes * events.size());
  PutU32(out, 0);  // format/flags: none defined yet
  PutU32(out, static_cast<uint32_t>(tags.size()));
  for (std::string_view t : tags) PutTag(out, t);
  PutU32(out, static_cast<uint32_t>(events.size()));
  for (const Event& e : events) {
    PutU64(out, e.user);
    PutU64(out, e.ts);
    PutU32(out, index.at(e.tag) << 1 | static_cast<uint32_t>(e.op));
  }
  return out;
}

Result<std::vector<Event>> DecodeEvents(std::string_view payload) {
  Reader r(payload, "events");
  uint32_t flags = 0;
  if (!r.U32(&flags)) return r.Truncated("flags");
  if (flags != 0) return r.Bad("unknown flags " + std::to_string(flags));
  uint32_t tag_count = 0;
  if (!r.U32(&tag_count)) return r.Truncated("tag count");
  // Each tag takes at least 2 bytes; checked before reserving.
  if (tag_count > r.remaining() / 2) {
    return r.Bad("tag count " + std::to_string(tag_count) + " cannot fit in the " +
                 std::to_string(r.remaining()) + " bytes that remain");
  }
  std::vector<std::string_view> tags;
  tags.reserve(tag_count);
  std::unordered_set<std::string_view> seen;
  for (uint32_t i = 0; i < tag_count; ++i) {
    std::string_view tag;
    if (Status s = r.Tag("tag name", &tag); !s.ok()) return s;
    if (!seen.insert(tag).second) {
      return r.Bad("tag " + std::to_string(i) + " repeats an earlier tag's name");
    }
    tags.push_back(tag);
  }
  uint32_t count = 0;
  if (!r.U32(&count)) return r.Truncated("event count");
  if (count > r.remaining() / kEventBytes) {
    return r.Bad("event count " + std::to_string(count) + " needs " +
                 std::to_string(uint64_t{count} * kEventBytes) + " bytes, " +
                 std::to_string(r.remaining()) + " remain");
  }
  std::vector<Event> events;
  events.reserve(count);
  std::vector<bool> used(tags.size(), false);
  for (uint32_t i = 0; i < count; ++i) {
    Event e;
    uint32_t tag_op = 0;
    // The count check above guarantees these reads succeed.
    (void)r.U64(&e.user);
    (void)r.U64(&e.ts);
    (void)r.U32(&tag_op);
    const uint32_t tag = tag_op >> 1;
    if (tag >= tags.size()) {
      return r.Bad("event " + std::to_string(i) + " names tag index " + std::to_string(tag) +
                   ", the record has " + std::to_string(tags.size()) + " tags");
    }
    used[tag] = true;
    e.tag = std::string(tags[tag]);
    e.op = (tag_op & 1) != 0 ? TagOp::kClear : TagOp::kSet;
    events.push_back(std::move(e));
  }
  if (Status s = r.ExpectEnd(); !s.ok()) return s;
  // The encoder names only tags some event uses; anything else is a
  // different writer or damage.
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i]) return r.Bad("tag " + std::to_string(i) + " is named but no event uses it");
  }
  return events;
}

std::string EncodeSnapshotPart(std::string_view tag, Timestamp ts, uint64_t shard,
                               std::string_view portable_bitmap) {
  std::string out;
  out.reserve(1 + tag.size() + 8 + 8 + 4 + portable_bitmap.size());
  PutTag(out, tag);
  PutU64(out, ts);
  PutU64(out, shard);
  PutU32(out, static_cast<uint32_t>(portable_bitmap.size()));
  out.append(portable_bitmap);
  return out;
}

Result<SnapshotPartRecord> DecodeSnapshotPart(std::string_view payload) {
  Reader r(payload, "snapshot part");
  SnapshotPartRecord rec;
  std::string_view tag;
  if (Status s = r.Tag("tag name", &tag); !s.ok()) return s;
  if (!r.U64(&rec.ts)) return r.Truncated("ts");
  if (!r.U64(&rec.shard)) return r.Truncated("shard");
  uint32_t len = 0;
  if (!r.U32(&len)) return r.Truncated("bitmap length");
  if (len > r.remaining()) {
    return r.Bad("bitmap length " + std::to_string(len) + " exceeds the " +
                 std::to_string(r.remaining()) + " bytes that remain");
  }
  (void)r.Bytes(len, &rec.bitmap);
  if (Status s = r.ExpectEnd(); !s.ok()) return s;
  rec.tag = std::string(tag);
  return rec;
}

std::string EncodeSnapshotCommit(std::string_view tag, Timestamp ts,
                                 std::span<const uint64_t> shards) {
  std::string out;
  out.reserve(1 + tag.size() + 8 + 4 + 8 * shards.size());
  PutTag(out, tag);
  PutU64(out, ts);
  PutU32(out, static_cast<uint32_t>(shards.size()));
  for (uint64_t s : shards) PutU64(out, s);
  return out;
}

Result<SnapshotCommitRecord> DecodeSnapshotCommit(std::string_view payload) {
  Reader r(payload, "snapshot commit");
  SnapshotCommitRecord rec;
  std::string_view tag;
  if (Status s = r.Tag("tag name", &tag); !s.ok()) return s;
  if (!r.U64(&rec.ts)) return r.Truncated("ts");
  uint32_t count = 0;
  if (!r.U32(&count)) return r.Truncated("shard count");
  if (count > r.remaining() / 8) {
    return r.Bad("shard count " + std::to_string(count) + " needs " +
                 std::to_string(uint64_t{count} * 8) + " bytes, " +
                 std::to_string(r.remaining()) + " remain");
  }
  rec.shards.resize(count);
  for (uint64_t& s : rec.shards) (void)r.U64(&s);
  if (Status s = r.ExpectEnd(); !s.ok()) return s;
  rec.tag = std::string(tag);
  return rec;
}

}  // namespace tagcache::storage
