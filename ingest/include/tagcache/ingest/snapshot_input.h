// Reading bulk snapshot inputs into a SnapshotSet: CSV/TSV pairs
// (`user_id,tag`), per-tag id lists (one user id per line), and portable
// Roaring files, 32-bit and 64-bit (CRoaring's Roaring64Map portable
// layout: u64 bucket count, then per bucket a u32 high key and a 32-bit
// portable bitmap), as the Java, Go and C Roaring libraries write them.
// Any of these may be gzip-compressed (detected by the magic bytes, not the
// name; concatenated gzip members read as one stream). A directory is read
// recursively (hidden entries and Spark's _SUCCESS / *.crc markers skipped).
// Text inputs stream in 1 MiB chunks; a Roaring file is read whole.
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
  kAuto,       // from the name without ".gz": *.csv, *.tsv, *.roaring / *.bin / *.rb (32 or
               // 64-bit), *.roaring64 / *.r64, anything else an id list
  kCsv,        // user_id,tag  (an optional header: line 1 when its first field does not
               // start with a digit; fields may be double-quoted, spaces around them)
  kTsv,        // user_id<TAB>tag
  kIdList,     // one user id per line; the tag is the file stem or --tag; blank lines and
               // lines starting with '#' skipped
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
// and sorted by path, skipping entries whose name starts with '.', Spark's
// `_SUCCESS` marker and `*.crc` checksum files (symlinks to files are
// followed, to directories not). IO_ERROR naming a path that does not exist
// or cannot be listed; BAD_REQUEST naming a path that is neither a file nor
// a directory, or a directory with no files.
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
  // When set, advanced while reading by the pairs accepted so far (every
  // 65,536 pairs and at the end), for a live pairs/s. Display only: the
  // result's `pairs` is the truth (a refused file's pairs count there as 0).
  std::atomic<uint64_t>* pairs_progress = nullptr;
};

// Reads one file into `out` (same shard_bits as the load). `bytes_done` is
// advanced as input bytes are consumed (on-disk bytes), for a progress bar;
// when the call returns, the file's whole size has been counted, even if it
// was refused before its end. May be null.
FileReadResult ReadSnapshotFile(const std::string& path, const InputOptions& options,
                                SnapshotSet* out, std::atomic<uint64_t>* bytes_done = nullptr,
                                ReadLimits limits = {});

}  // namespace tagcache::ingest
