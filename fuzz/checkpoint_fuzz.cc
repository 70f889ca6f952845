// Fuzz target: the checkpoint reader (storage/checkpoint.h LoadCheckpoint)
// on a file in an in-memory file system, merging into a real small engine
// as a node does at start. First byte even: the rest is the file as is;
// odd: the rest is read as chunks that become checksummed records
// (fuzz_support.h), so mutations reach the record decoders. A load that
// fails must say why (IO_ERROR naming the file).
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "memory_file_system.h"
#include "tagcache/server/engine.h"
#include "tagcache/storage/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string file;
  if (data[0] % 2 == 0) {
    file.assign(rest);
  } else {
    fuzz::AppendChunksAsRecords(rest, file);
  }
  fuzz::MemoryFileSystem fs;
  const std::string path = storage::CheckpointPath("/data", 1);
  fs.Put(path, file);
  static fuzz::ReusableEngine engines;
  Result<storage::CheckpointLoadReport> report =
      storage::LoadCheckpoint(fs, path, engines.Get(), 1);
  engines.Done();
  if (!report.ok() && report.status().message().find(path) == std::string::npos) std::abort();
  return 0;
}
