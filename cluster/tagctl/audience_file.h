// The files `tagctl audience --out FILE` writes (layout: docs/CLI.md).
//
// ids:     one decimal user id per line, ascending.
// roaring: little-endian; header "TCAUDRB1" (8 bytes), u32 shard_bits,
//          u32 reserved (0), u64 shard count; then per shard, ascending:
//          u64 shard, u64 cardinality, u32 byte length, that many bytes of
//          the Roaring portable serialization of the shard's offsets
//          (user = shard << shard_bits | offset).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"

namespace tagcache::tagctl {

inline constexpr char kAudienceFileMagic[8] = {'T', 'C', 'A', 'U', 'D', 'R', 'B', '1'};

// Writes the roaring layout above to `path` (replacing it). IO_ERROR naming
// the path when it cannot be written.
Status WriteAudienceBitmaps(const std::string& path, int shard_bits,
                            const std::vector<client::ShardBitmap>& shards);

// Appends ids, one per line, to an open file; see IdFileWriter.
class IdFileWriter {
 public:
  // Opens (truncates) `path`. Check status() before use.
  explicit IdFileWriter(const std::string& path);
  ~IdFileWriter();
  IdFileWriter(const IdFileWriter&) = delete;
  IdFileWriter& operator=(const IdFileWriter&) = delete;

  Status status() const { return status_; }
  void Append(const std::vector<uint64_t>& ids);
  // Flushes and closes; the first error met, if any.
  Status Close();

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  Status status_;
};

}  // namespace tagcache::tagctl
