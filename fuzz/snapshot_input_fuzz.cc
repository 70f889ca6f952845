// Fuzz target: the bulk snapshot input readers (ingest/snapshot_input.h):
// CSV, TSV, id lists and portable Roaring files (32- and 64-bit), each
// possibly gzip-compressed, as `tagctl load` reads them from files it was
// handed. The first byte picks the format; the rest is written to a file in
// a per-process temp dir (the reader takes a path) and read into a
// SnapshotSet. A refused file must contribute nothing and carry an error.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "tagcache/ingest/snapshot_input.h"
#include "tagcache/ingest/snapshot_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  if (size == 0) return 0;
  static constexpr ingest::InputFormat kFormats[] = {
      ingest::InputFormat::kCsv,       ingest::InputFormat::kTsv,
      ingest::InputFormat::kIdList,    ingest::InputFormat::kRoaring,
      ingest::InputFormat::kRoaring32, ingest::InputFormat::kRoaring64,
      ingest::InputFormat::kAuto};
  const ingest::InputFormat format = kFormats[data[0] % std::size(kFormats)];
  const std::string path = fuzz::ProcessTempDir() + "/input.csv";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  const bool written = std::fwrite(data + 1, 1, size - 1, f) == size - 1;
  if (std::fclose(f) != 0 || !written) std::abort();

  ingest::InputOptions options;
  options.format = format;
  options.tag = "fuzz_tag";
  ingest::SnapshotSet set(8);
  ingest::FileReadResult result = ingest::ReadSnapshotFile(path, options, &set);
  if (result.file_refused && (result.error_count == 0 || result.pairs != 0)) std::abort();
  if (result.error_count > 0 && result.errors.empty()) std::abort();
  return 0;
}
