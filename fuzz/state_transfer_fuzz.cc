// Fuzz target: the shard state-transfer decoder (storage/state_transfer.h),
// which a node runs on MergeShard requests from peers and on WAL merge
// records. First byte even: the rest as is; odd: the rest with a correct
// checksum in front (the layout starts with the XXH3-64 of what follows).
// The decoder promises that an accepted transfer always merges without
// error: checked against a real engine with the same shard_bits.
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "tagcache/server/engine.h"
#include "tagcache/storage/state_transfer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string bytes = data[0] % 2 == 0 ? std::string(rest) : fuzz::WithChecksum("", rest);
  Result<storage::ShardTransfer> transfer =
      storage::DecodeShardTransfer(bytes, fuzz::SmallEngineOptions().shard_bits);
  if (!transfer.ok()) return 0;
  Engine engine(fuzz::SmallEngineOptions());
  if (!engine.MergeTags(transfer->tags).ok()) std::abort();
  if (!engine.MergeShard(transfer->state).ok()) std::abort();
  return 0;
}
