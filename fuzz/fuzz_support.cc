#include "fuzz_support.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include "tagcache/storage/record_io.h"

namespace tagcache::fuzz {

EngineOptions SmallEngineOptions() {
  EngineOptions options;
  options.shard_bits = 8;
  options.query_threads = 1;
  options.clock = [] { return Timestamp{kFuzzNowMs}; };
  return options;
}

Engine& ReusableEngine::Get() {
  if (!engine_) engine_ = std::make_unique<Engine>(SmallEngineOptions());
  return *engine_;
}

void ReusableEngine::Done() {
  if (engine_ && (!engine_->ShardIds().empty() || !engine_->ExportTags().empty())) {
    engine_.reset();
  }
}

size_t AppendChunksAsRecords(std::string_view bytes, std::string& out) {
  size_t records = 0;
  while (bytes.size() >= 3) {
    const auto type = static_cast<uint8_t>(bytes[0]);
    const size_t length = static_cast<uint8_t>(bytes[1]) | size_t{static_cast<uint8_t>(bytes[2])} << 8;
    bytes.remove_prefix(3);
    const size_t take = std::min(length, bytes.size());
    storage::AppendRecord(type, bytes.substr(0, take), out);
    bytes.remove_prefix(take);
    ++records;
  }
  return records;
}

std::string WithChecksum(std::string_view prefix, std::string_view rest) {
  std::string out(prefix);
  const uint64_t checksum = XXH3_64bits(rest.data(), rest.size());
  for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>(checksum >> (8 * b)));
  out.append(rest);
  return out;
}

void SilenceLogsUnlessVerbose() {
  static const bool done = [] {
    if (std::getenv("TAGCACHE_FUZZ_VERBOSE") == nullptr) spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)done;
}

namespace {

// Owns the directory; the static below destroys it at exit.
struct TempDirHolder {
  TempDirHolder() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                        "/tagcache-fuzz-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::perror(("mkdtemp " + templ).c_str());
      std::abort();
    }
    path = templ;
  }
  ~TempDirHolder() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);  // best effort
  }
  std::string path;
};

}  // namespace

const std::string& ProcessTempDir() {
  static const TempDirHolder holder;
  return holder.path;
}

}  // namespace tagcache::fuzz
