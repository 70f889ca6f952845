// Fuzz target: WAL recovery, the reader a node runs on its own log at start
// (durability::Durability::Open: segment listing, record framing, torn-tail
// and corruption handling, the record decoders and replay into the engine),
// with one segment in an in-memory file system. Only the data directory's
// lock file is real (in a per-process temp dir).
// First byte: bit 0 clear, the rest is the segment file as is; set, a real
// segment header followed by the rest read as chunks that become
// checksummed records (fuzz_support.h). Bit 1 picks the recovery mode
// (strict or keep-valid-prefix).
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "memory_file_system.h"
#include "tagcache/durability/durability.h"
#include "tagcache/server/engine.h"
#include "tagcache/storage/wal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  fuzz::SilenceLogsUnlessVerbose();
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string dir = fuzz::ProcessTempDir();
  fuzz::MemoryFileSystem fs;
  if (!fs.CreateDirs(dir).ok()) std::abort();
  if (data[0] & 1) {
    Result<std::unique_ptr<storage::WalSegmentWriter>> writer =
        storage::WalSegmentWriter::Create(fs, dir, 1);
    if (!writer.ok()) std::abort();
    std::string records;
    fuzz::AppendChunksAsRecords(rest, records);
    if (!(*writer)->Append(records).ok() || !(*writer)->Close().ok()) std::abort();
  } else {
    fs.Put(storage::WalSegmentPath(dir, 1), rest);
  }
  durability::DurabilityOptions options;
  options.data_dir = dir;
  options.fsync = durability::FsyncPolicy::kNone;
  options.checkpoint_wal_bytes = 0;
  options.checkpoint_interval = std::chrono::seconds(0);
  options.recovery_mode = (data[0] & 2) ? storage::WalRecoveryMode::kKeepValidPrefix
                                        : storage::WalRecoveryMode::kStrict;
  options.recovery_threads = 1;
  Engine engine(fuzz::SmallEngineOptions());
  Result<std::unique_ptr<durability::Durability>> opened = durability::Durability::Open(
      options, engine, fs, [](std::function<void()> fn) { fn(); });
  if (opened.ok()) (*opened)->Stop();
  return 0;
}
