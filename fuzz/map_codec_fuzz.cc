// Fuzz target: the cluster map file decoder (cluster/ring map_codec.h), read
// from a node's data directory at start. The Cap'n Proto map inside is the
// same struct a SetClusterMap request carries. First byte even: the rest is
// the file as is; odd: the rest gets the file's magic and a correct checksum
// in front, so mutations reach the map decoder and validator. An accepted
// file must encode and decode to the same bytes again.
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "tagcache/cluster/map_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string file = data[0] % 2 == 0 ? std::string(rest) : fuzz::WithChecksum("TCMAP1\n", rest);
  Result<cluster::MapFile> decoded = cluster::DecodeMapFile(file);
  if (!decoded.ok()) return 0;
  const std::string encoded = cluster::EncodeMapFile(*decoded);
  Result<cluster::MapFile> again = cluster::DecodeMapFile(encoded);
  if (!again.ok() || cluster::EncodeMapFile(*again) != encoded) std::abort();
  return 0;
}
