// The write-ahead log as files: numbered segments in one directory
// ("<dir>/wal-<20-digit number>.log"), each starting with a kSegmentHeader
// record, then write records (record_io.h framing). This header knows files
// and framing only; when to sync and what the payloads mean belong to the
// node's durability layer (server/durability) and wal_records.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/storage/file_system.h"
#include "tagcache/storage/record_io.h"

namespace tagcache::storage {

inline constexpr uint32_t kWalFormatVersion = 1;

std::string WalSegmentPath(const std::string& dir, uint64_t number);

struct WalSegmentInfo {
  uint64_t number = 0;
  std::string path;
  uint64_t bytes = 0;
};

// The segments in `dir`, ascending by number. Files that are not segments
// are ignored.
Result<std::vector<WalSegmentInfo>> ListWalSegments(FileSystem& fs, const std::string& dir);

// One segment being appended to. Not thread-safe: the log writer owns it.
class WalSegmentWriter {
 public:
  // Creates segment `number` in `dir` (which must exist), writes and syncs
  // its header record, and syncs the directory.
  static Result<std::unique_ptr<WalSegmentWriter>> Create(FileSystem& fs, const std::string& dir,
                                                          uint64_t number);
  ~WalSegmentWriter();

  uint64_t number() const;
  const std::string& path() const;
  // Bytes in the segment so far (header included).
  uint64_t size() const;

  // Appends already framed records (AppendRecord output). On failure the
  // segment is cut back to its size before the call, so a later Append
  // starts on a record boundary; if even that fails, broken() turns true and
  // the writer must not be used again (start a new segment).
  Status Append(std::string_view framed);
  Status Sync();
  bool broken() const;
  Status Close();

 private:
  WalSegmentWriter() = default;
  std::unique_ptr<WritableFile> file_;
  std::string path_;
  uint64_t number_ = 0;
  bool broken_ = false;
};

enum class WalRecoveryMode : uint8_t {
  // Corruption before the end of the log stops recovery with an error naming
  // the file and offset. Default.
  kStrict,
  // Keep every record before the first corruption, drop the rest, report it.
  kKeepValidPrefix,
};

struct WalDamage {
  std::string path;
  uint64_t offset = 0;
  uint64_t dropped_bytes = 0;
  std::string reason;
};

struct WalReplayReport {
  uint64_t segments = 0;
  uint64_t records = 0;            // records handed to the callback
  uint64_t bytes = 0;              // bytes of those records, framing included
  uint64_t skipped_unknown = 0;    // skippable records of kinds this reader does not know
  std::vector<WalDamage> torn_tails;        // dropped tails (one per damaged segment)
  std::optional<WalDamage> corruption;      // with kKeepValidPrefix: where replay stopped
};

// Replays the records of every segment numbered >= `from_segment`, in order,
// calling fn for each write record (segment headers are checked, not passed).
// A torn tail at the end of a segment is dropped and reported (and, when
// `repair` is true, cut off the file so it is not reported again). Corruption
// with more data after it: kStrict returns IO_ERROR naming file and offset;
// kKeepValidPrefix stops there and reports it. An unknown record kind with
// the skippable bit is counted and skipped; without it, it is corruption.
// A non-OK status from fn stops the replay and is returned.
Result<WalReplayReport> ReplayWal(FileSystem& fs, const std::string& dir, uint64_t from_segment,
                                  WalRecoveryMode mode, bool repair,
                                  const std::function<Status(const Record&)>& fn);

// Deletes segments numbered < `below`. Returns how many were removed.
Result<uint64_t> RemoveWalSegmentsBelow(FileSystem& fs, const std::string& dir, uint64_t below);

}  // namespace tagcache::storage
