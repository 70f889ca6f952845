// An in-memory storage::FileSystem for the fuzz targets: the WAL and
// checkpoint readers run on bytes the fuzzer made up, without touching the
// disk (fast, and nothing can escape into real files). Paths are plain
// strings; a directory exists once created or once a file is put under it.
// Not thread-safe beyond one mutex around every call (the durability layer
// calls it from its log thread as well as the caller's).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/storage/file_system.h"

namespace tagcache::fuzz {

class MemoryFileSystem final : public storage::FileSystem {
 public:
  MemoryFileSystem() = default;
  MemoryFileSystem(const MemoryFileSystem&) = delete;
  MemoryFileSystem& operator=(const MemoryFileSystem&) = delete;

  // Creates or replaces `path` with `contents` (and its parent directories).
  void Put(const std::string& path, std::string_view contents);

  Result<std::unique_ptr<storage::WritableFile>> NewWritableFile(const std::string& path) override;
  Result<std::unique_ptr<storage::SequentialFile>> NewSequentialFile(
      const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Status CreateDirs(const std::string& dir) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& path) override;
  Status SyncDir(const std::string& dir) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Status TruncateFile(const std::string& path, uint64_t size) override;

 private:
  using Contents = std::shared_ptr<std::string>;
  void AddParentsLocked(const std::string& path);

  std::mutex mu_;
  std::map<std::string, Contents> files_;  // guarded by mu_
  std::set<std::string> dirs_;             // guarded by mu_
};

}  // namespace tagcache::fuzz
