// Checksummed records: the framing shared by WAL segments and checkpoint
// files (docs/WAL.md is normative). In LevelDB's spirit, each record is
//
//   u64 checksum   XXH3-64 of bytes [8, 16 + length): the rest of the header and the payload
//   u32 length     payload bytes, <= kMaxRecordPayload
//   u8  type       low 7 bits: the kind; bit 7 (kSkippableBit): a reader that
//                  does not know the kind may skip the record
//   u8  reserved[3] = 0
//   payload
//
// all little-endian. A reader tells a torn tail (the file ends inside a
// record, or everything from the bad record on is zero bytes: never
// acknowledged, dropped and reported) from corruption (a bad record followed
// by more data: the log cannot be trusted past it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tagcache/common/status.h"
#include "tagcache/storage/file_system.h"

namespace tagcache::storage {

inline constexpr size_t kRecordHeaderBytes = 16;
inline constexpr uint32_t kMaxRecordPayload = 1u << 30;
inline constexpr uint8_t kSkippableBit = 0x80;

// Record kinds. Numbers are part of the on-disk format: never renumber.
enum class RecordType : uint8_t {
  // WAL
  kSegmentHeader = 1,   // first record of every segment (wal.h)
  kEvents = 2,          // one accepted ApplyEvents batch (wal_records.h)
  kSnapshotPart = 3,    // one accepted LoadSnapshot
  kSnapshotCommit = 4,  // one accepted CommitSnapshot
  kMergeShard = 5,      // one accepted MergeShard (state_transfer.h payload)
  // Checkpoint files
  kCheckpointHeader = 16,
  kCheckpointTags = 17,
  kCheckpointShard = 18,
  kCheckpointColumn = 19,
  kCheckpointEnd = 20,
  kCheckpointShardIndex = 21,  // written with kSkippableBit: an optional extra
};

// Appends the framed record (header + payload) to `out`.
void AppendRecord(uint8_t type, std::string_view payload, std::string& out);
inline void AppendRecord(RecordType type, std::string_view payload, std::string& out) {
  AppendRecord(static_cast<uint8_t>(type), payload, out);
}

struct Record {
  uint8_t type = 0;          // as stored, skippable bit included
  std::string_view payload;  // valid until the next Next() call
  uint64_t offset = 0;       // of the record's header in the file
};

enum class ReadOutcome : uint8_t {
  kRecord,    // *record is filled in
  kEnd,       // clean end of file
  kTornTail,  // the file ends inside a record (or in zeros) at *bad_offset
  kCorrupt,   // a bad record at *bad_offset, followed by more data
};

// Reads records from a file in order, with a bounded buffer (records are
// assembled one at a time; memory is O(largest record)).
class RecordReader {
 public:
  // `name` is used in messages (normally the file's path).
  RecordReader(std::unique_ptr<SequentialFile> file, std::string name);
  ~RecordReader();

  // The next record. On kTornTail / kCorrupt, *bad_offset is where the bad
  // record starts and *error says what was wrong, naming the file and the
  // offset ("wal/00000003.log: offset 4096: checksum mismatch").
  ReadOutcome Next(Record* record, uint64_t* bad_offset, Status* error);

  // Bytes of good records consumed so far (the offset after the last one).
  uint64_t valid_bytes() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagcache::storage
