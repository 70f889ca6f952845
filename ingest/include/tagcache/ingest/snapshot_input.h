// Reading bulk snapshot inputs into a SnapshotSet: CSV/TSV pairs
// (`user_id,tag`), per-tag id lists (one user id per line), and portable
// Roaring files, 32-bit and 64-bit (CRoaring's Roaring64Map portable
// layout: u64 bucket count, then per bucket a u32 high key and a 32-bit
// portable bitmap), as the Java, Go and C Roaring libraries write them.
// Any of these may be gzip-compressed (detected by the magic bytes, not the
// name). A directory is read recursively (hidden files skipped).
//
// Error model: a bad line (text formats) is an InputError with its file and
// 1-based line number; the line is skipped and reading goes on. A broken
// file (unreadable, corrupt gzip, truncated or structurally invalid Roaring,
// bad tag name taken from the file name) is one InputError with line 0, and
// the file contributes nothing: ReadSnapshotFile fills `out` only on a
// complete read. The caller decides from the error count (--max-errors)
// whether anything is applied.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/ingest/snapshot_set.h"

namespace tagcache::ingest {

enum class InputFormat {
  kAuto,       // from the name: *.csv, *.tsv, *.roaring / *.roaring64 / *.bin, else id list
  kCsv,        // user_id,tag  (an optional header line; fields may be double-quoted)
  kTsv,        // user_id<TAB>tag
  kIdList,     // one user id per line; the tag is the file stem or --tag
  kRoaring,    // portable Roaring, 32- or 64-bit (told apart by content)
  kRoaring32,  // portable 32-bit Roaring only
  kRoaring64,  // Roaring64Map portable layout only
};

// "auto", "csv", "tsv", "ids", "roaring", "roaring32", "roaring64".
const char* InputFormatName(InputFormat format);
// BAD_REQUEST naming the accepted names.
Result<InputFormat> ParseInputFormat(std::string_view name);

struct InputOptions {
  InputFormat format = InputFormat::kAuto;
  // Tag of id-list and Roaring files. Empty: the file's stem (name without
  // directory, ".gz" and the last extension: "apple_fan.ids.gz" -> "apple_fan").
  std::string tag;
};

struct InputError {
  std::string file;
  uint64_t line = 0;  // 1-based; 0 when the whole file is refused
  std::string message;

  // "file:line: message" (or "file: message" for line 0).
  std::string ToString() const;
};

struct InputFile {
  std::string path;
  uint64_t bytes = 0;  // on disk (compressed size for gzip)
};

// The files `paths` name: files as given, directories expanded recursively
// in name order (hidden entries skipped). IO_ERROR / BAD_REQUEST naming a
// path that does not exist or is neither a file nor a directory, or a
// directory with no files.
Result<std::vector<InputFile>> ExpandInputs(const std::vector<std::string>& paths);

struct FileReadResult {
  uint64_t error_count = 0;        // bad lines, or 1 for a file-level error
  std::vector<InputError> errors;  // the first ReadLimits::max_errors_kept of them
  uint64_t lines = 0;              // text formats: lines read
  uint64_t pairs = 0;              // (user, tag) pairs accepted
  bool file_refused = false;       // a file-level error: nothing was added to `out`
};

struct ReadLimits {
  size_t max_errors_kept = 100;
};

// Reads one file into `out` (same shard_bits as the load). `bytes_done` is
// advanced as input bytes are consumed (on-disk bytes), for a progress bar;
// may be null.
FileReadResult ReadSnapshotFile(const std::string& path, const InputOptions& options,
                                SnapshotSet* out, std::atomic<uint64_t>* bytes_done = nullptr,
                                ReadLimits limits = {});

}  // namespace tagcache::ingest
