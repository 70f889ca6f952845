// Helpers shared by the fuzz targets: a small engine, turning fuzz bytes
// into checksummed records (so mutations reach the decoders behind the
// checksums instead of dying at them), and a process-lifetime temp dir.
// Every target defines LLVMFuzzerTestOneInput; replay_main.cc or libFuzzer
// supplies main().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tagcache/server/engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace tagcache::fuzz {

// The clock every fuzzed engine sees (ms since the epoch), so that a crash
// input replays identically on another day.
inline constexpr uint64_t kFuzzNowMs = 1'750'000'000'000;

// Options for an engine small enough to build per input: the smallest shard
// (2^8 users), queries on the calling thread, a fixed clock.
EngineOptions SmallEngineOptions();

// An engine made with SmallEngineOptions() that is reused while it stays
// empty: an engine starts a thread, which costs milliseconds under ASan, and
// most mutated inputs are refused before anything reaches the engine. An
// empty engine behaves as a fresh one, so every input still replays alone.
class ReusableEngine {
 public:
  // The engine for one input (an empty one).
  Engine& Get();
  // Call after each input: drops the engine if the input left state in it.
  void Done();

 private:
  std::unique_ptr<Engine> engine_;
};

// Reads `bytes` as chunks [u8 type][u16 length, little-endian][payload] (a
// short last chunk takes what is left) and appends each as a framed,
// checksummed record (storage::AppendRecord) to `out`. Returns the count.
size_t AppendChunksAsRecords(std::string_view bytes, std::string& out);

// Returns "`prefix` + XXH3-64 of `rest` (8 bytes, little-endian) + `rest`":
// the layout of the cluster map file and of state transfers, so that the
// fuzzer's bytes get past the checksum to the decoder.
std::string WithChecksum(std::string_view prefix, std::string_view rest);

// Turns spdlog off for the process unless TAGCACHE_FUZZ_VERBOSE is set: the
// node logs map installs and dropped torn tails, noise at thousands of
// inputs a second. Cheap to call on every input.
void SilenceLogsUnlessVerbose();

// A directory made once per process under $TMPDIR (or /tmp) and removed at
// exit; for the few paths that must be real (a data directory's lock file,
// an input file). Aborts if it cannot be created: the target cannot run.
const std::string& ProcessTempDir();

}  // namespace tagcache::fuzz
