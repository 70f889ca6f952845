// One shard's state as one self-checking byte string, for repair and shard
// moves: a node exports it (Engine::ExportTags + ExportShard), another
// decodes it and merges it (MergeTags, then MergeShard), and a durable node
// logs it as a kMergeShard WAL record so the merge survives a restart.
// Layout (docs/WAL.md, "State transfers"), all little-endian:
//
//   u64 checksum   XXH3-64 (seed 0) of every byte after it
//   u32 magic      "TCST"
//   u32 version    1
//   u32 length + tags payload    as a kCheckpointTags record's payload
//   u32 length + shard record    as a kCheckpointShard record's payload
//   C x (u32 length + column)    as kCheckpointColumn (format 2) payloads
//
// The record bodies are the checkpoint's own encodings (one codec serves
// both). No index image is carried: the receiver builds its own index.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/server/engine.h"

namespace tagcache::storage {

struct ShardTransfer {
  std::vector<TagState> tags;
  ShardState state;  // index_image always empty
};

// Encodes the tags (with their rule-4 floor records) and one shard's state
// as one self-checking byte string. Encodes what it is given: a state
// MergeShard would refuse (overrides not ascending, duplicate columns,
// offsets beyond the receiver's shard) is refused by the decoder.
// REQUIRES: valid tag names (every name from an engine is).
std::string EncodeShardTransfer(std::span<const TagState> tags, const ShardState& state);

// Decodes and validates everything before returning: checksum, magic,
// bounds of every field, bitmaps (as strictly as a checkpoint's), rule 4
// exceptions ascending and below their tag's floor, overrides ascending by
// offset with a known op, no tag or column twice, the announced column
// count, and against `shard_bits`: the shard in range and every offset
// < 2^shard_bits. IO_ERROR "state transfer: <what>" when the bytes are
// damaged or malformed (truncation, checksum, layout); BAD_REQUEST
// "state transfer: <what>" when they are intact but not acceptable here
// (unsupported version, shard or offset out of range, a bad floor record).
// The result always merges (MergeTags, then MergeShard) without error.
Result<ShardTransfer> DecodeShardTransfer(std::string_view bytes, int shard_bits);

}  // namespace tagcache::storage
