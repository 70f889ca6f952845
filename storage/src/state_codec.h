// The byte encodings of an engine's exported state (TagState, ShardState)
// shared by checkpoint files (checkpoint.cc) and state transfers
// (state_transfer.cc), so the two cannot drift apart. Layouts are those of
// docs/WAL.md "Checkpoints": changing one changes the checkpoint format.
//
// Decoders take untrusted bytes (their caller has checked a checksum, but a
// writer bug or a collision is still possible) and return IO_ERROR saying
// what is malformed; nothing is read past the end, and counts are checked
// against the bytes left before anything is reserved.
#pragma once

#include <cstdint>
#include <roaring/roaring.hh>
#include <string>
#include <string_view>
#include <vector>

#include "byte_codec.h"
#include "tagcache/common/status.h"
#include "tagcache/server/engine.h"

namespace tagcache::storage::internal {

// A ByteReader with the state records' compound fields.
class StateReader : public ByteReader {
 public:
  using ByteReader::ByteReader;

  // One byte, 0 or 1.
  bool Flag(bool* v) {
    uint8_t b = 0;
    if (!U8(&b) || b > 1) return false;
    *v = b == 1;
    return true;
  }
  // u32 length + bytes.
  bool Blob(std::string_view* v) {
    uint32_t len = 0;
    return U32(&len) && Bytes(len, v);
  }
};

// ---- Encoding ------------------------------------------------------------------

// u32 length + the bitmap's portable serialization.
void PutBitmap(std::string& out, const Roaring& bitmap);

// One tag: name, floor flag, floor_ts, u32 count + (u64 shard, u8 has_floor,
// u64 floor) per rule 4 exception.
void EncodeTagState(const TagState& tag, std::string& out);

// A shard record: u64 shard, u32 column count, known users (PutBitmap).
void EncodeShardRecord(uint64_t shard, uint32_t columns, const Roaring& known, std::string& out);

// A column record of `shard` (format version 2: with the tag id).
void EncodeColumn(uint64_t shard, const ColumnState& column, std::string& out);

// ---- Decoding ------------------------------------------------------------------

// Reads a portable bitmap that must be exactly `bytes`, well formed (the
// container invariants Roaring operations rely on, which CRoaring's safe
// reader does not check) and hold only values < `limit`.
Result<Roaring> ReadBitmap(std::string_view bytes, uint64_t limit);

// A tags payload: u32 count + that many EncodeTagState records, nothing
// after. Rule 4 exceptions must be ascending by shard.
Result<std::vector<TagState>> DecodeTags(std::string_view payload);

// A shard record into state->shard and state->known (offsets < `limit`),
// and the column count it announces into *columns.
Status DecodeShardRecord(std::string_view payload, uint64_t limit, ShardState* state,
                         uint32_t* columns);

// One column record of checkpoint format `version` (1: without the tag id)
// that must belong to shard `shard`. Offsets must be < `limit`, overrides
// ascending by offset with a known op.
Result<ColumnState> DecodeColumn(std::string_view payload, uint64_t shard, uint64_t limit,
                                 uint32_t version);

}  // namespace tagcache::storage::internal
