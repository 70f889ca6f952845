// FileSystem: the only way tagcache touches files. The WAL, checkpoints and
// the cluster map go through it so tests can inject faults (short writes,
// ENOSPC, failing fsyncs, power loss that drops unsynced data) the way
// LevelDB's fault_injection_test does. Errors are values: IO_ERROR naming
// the path and the OS reason ("wal/00000007.log: No space left on device").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/common/status.h"

namespace tagcache::storage {

// A file being written from its start. Not thread-safe: one owner.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Appends all of `data`. On error a prefix of it may have reached the file
  // (a short write): the caller truncates back to size() before the call.
  virtual Status Append(std::string_view data) = 0;
  // Makes everything appended so far durable (fdatasync).
  virtual Status Sync() = 0;
  // Cuts the file to `size` bytes (<= size()); used to drop a partly written
  // record after a failed Append.
  virtual Status Truncate(uint64_t size) = 0;
  // Bytes appended successfully so far (after a failed Append: what the file
  // now holds, as far as the implementation knows).
  virtual uint64_t size() const = 0;
  virtual Status Close() = 0;
};

// A file read from its start.
class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Reads up to `n` bytes into `buf`; returns the count, 0 at the end.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Creates `path` (truncating an existing file) for writing.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  virtual Result<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) = 0;
  // Entry names (not paths) in `dir`, without "." and "..", in no order.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // mkdir -p.
  virtual Status CreateDirs(const std::string& dir) = 0;
  // Atomically replaces `to` with `from` (rename(2)).
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Remove(const std::string& path) = 0;
  // fsyncs the directory, so renames and creations in it are durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  // Cuts an existing file to `size` bytes and syncs it.
  virtual Status TruncateFile(const std::string& path, uint64_t size) = 0;
};

// The real file system (POSIX calls). Stateless; any number may exist.
std::unique_ptr<FileSystem> NewPosixFileSystem();

// Wraps another FileSystem and injects faults on command. Thread-safe.
// It remembers, per file, how many bytes were last synced, so that
// DropUnsyncedData() can simulate a power cut.
class FaultInjectionFileSystem : public FileSystem {
 public:
  explicit FaultInjectionFileSystem(FileSystem& base);
  ~FaultInjectionFileSystem() override;

  // Every later Sync()/SyncDir() fails with IO_ERROR ("injected fsync failure").
  void SetSyncFailure(bool fail);
  // Appends beyond `bytes` in total (counted from this call, over all files)
  // fail with ENOSPC after writing what still fits (a short write).
  // nullopt: unlimited again.
  void SetSpaceLimit(std::optional<uint64_t> bytes);
  // The next `count` Append calls write half their data, then fail (EIO).
  void FailNextAppends(int count);
  // Simulated power loss: every file written through this object is cut to
  // the size it had at its last successful Sync() (files never synced: 0 bytes;
  // files created but whose directory was never synced are removed).
  Status DropUnsyncedData();
  // Counters for assertions.
  uint64_t syncs() const;
  uint64_t appended_bytes() const;

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  Result<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Status CreateDirs(const std::string& dir) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& path) override;
  Status SyncDir(const std::string& dir) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Status TruncateFile(const std::string& path, uint64_t size) override;

 private:
  class State;
  std::shared_ptr<State> state_;
  FileSystem& base_;
};

}  // namespace tagcache::storage
