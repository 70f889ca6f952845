// Fuzz target: portable Roaring deserialization and validation
// (protocol/include/tagcache/protocol/bitmap.h), which reads bitmaps from
// clients (LoadSnapshot), peers (state transfers) and files (WAL,
// checkpoints). The first byte picks the value limit (2^8 .. 2^32); the rest
// is the bitmap. An accepted bitmap must hold only values below the limit
// and survive a write/read round trip unchanged.
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "tagcache/protocol/bitmap.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  if (size == 0) return 0;
  const int bits = 8 + data[0] % 25;  // [8, 32]
  const uint64_t limit = uint64_t{1} << bits;
  Result<Roaring> bitmap = protocol::ReadPortableBitmap(data + 1, size - 1, limit);
  if (!bitmap.ok()) return 0;
  if (!bitmap->isEmpty() && bitmap->maximum() >= limit) std::abort();
  const std::string bytes = protocol::WritePortableBitmap(*bitmap);
  Result<Roaring> again = protocol::ReadPortableBitmap(bytes.data(), bytes.size(), limit);
  if (!again.ok() || !(*again == *bitmap)) std::abort();
  return 0;
}
