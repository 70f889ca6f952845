// FaultInjectionFileSystem: LevelDB's fault_injection_test environment for
// tagcache. Every file written through it is tracked by name: how many bytes
// its last successful Sync() made durable, and whether its directory entry is
// durable yet (a SyncDir of its parent since it was created). A simulated
// power cut keeps exactly that and nothing more.
//
// The tracking lives in a State shared with the files handed out, so a file
// stays usable (and keeps reporting its syncs) whatever happens to the
// FileSystem object, and renames move a file's record to its new name
// without the open file noticing.
#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "tagcache/storage/file_system.h"

namespace tagcache::storage {
namespace {

// What survives a power cut of one file. Guarded by SharedState::mu.
struct TrackedFile {
  uint64_t synced_size = 0;
  bool entry_durable = false;  // its directory was synced after it was created
};

// "a/b/" -> "a/b", "" -> ".": the spelling SyncDir arguments and parents
// are compared in.
std::string NormalizeDir(std::string dir) {
  if (dir.empty()) return ".";
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return NormalizeDir(path.substr(0, slash));
}

// Everything the FileSystem object and its files share.
struct SharedState {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<TrackedFile>> files;
  bool sync_failure = false;
  std::optional<uint64_t> space_left;
  int failing_appends = 0;
  uint64_t syncs = 0;
  uint64_t appended_bytes = 0;
};

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(std::shared_ptr<SharedState> state,
                    std::shared_ptr<TrackedFile> tracked, std::unique_ptr<WritableFile> base,
                    std::string path)
      : state_(std::move(state)),
        tracked_(std::move(tracked)),
        base_(std::move(base)),
        path_(std::move(path)) {}

  Status Append(std::string_view data) override {
    size_t allowed = data.size();
    Status injected;
    {
      std::lock_guard lock(state_->mu);
      if (state_->failing_appends > 0) {
        --state_->failing_appends;
        allowed = data.size() / 2;
        injected = Status::IoError("cannot append to " + path_ + ": Input/output error (injected)");
      }
      if (state_->space_left && allowed > *state_->space_left) {
        allowed = static_cast<size_t>(*state_->space_left);
        injected =
            Status::IoError("cannot append to " + path_ + ": No space left on device (injected)");
      }
      // Reserved now so concurrent appends to other files cannot overrun it.
      if (state_->space_left) *state_->space_left -= allowed;
    }
    const uint64_t before = base_->size();
    Status st = base_->Append(data.substr(0, allowed));
    const uint64_t written = base_->size() - before;
    {
      std::lock_guard lock(state_->mu);
      state_->appended_bytes += written;
      if (state_->space_left) *state_->space_left += allowed - written;
    }
    if (!st.ok()) return st;
    return injected;
  }

  Status Sync() override {
    {
      std::lock_guard lock(state_->mu);
      if (state_->sync_failure) {
        return Status::IoError("cannot sync " + path_ + ": injected fsync failure");
      }
    }
    Status st = base_->Sync();
    if (!st.ok()) return st;
    std::lock_guard lock(state_->mu);
    tracked_->synced_size = base_->size();
    ++state_->syncs;
    return Status::Ok();
  }

  Status Truncate(uint64_t size) override {
    Status st = base_->Truncate(size);
    if (!st.ok()) return st;
    std::lock_guard lock(state_->mu);
    // A cut is not durable before the next sync, but what it removed cannot
    // come back either in this model: keep the smaller size.
    tracked_->synced_size = std::min(tracked_->synced_size, size);
    return Status::Ok();
  }

  uint64_t size() const override { return base_->size(); }

  Status Close() override { return base_->Close(); }

 private:
  std::shared_ptr<SharedState> state_;
  std::shared_ptr<TrackedFile> tracked_;
  std::unique_ptr<WritableFile> base_;
  std::string path_;
};

}  // namespace

// The header names State; the files only need its SharedState part.
class FaultInjectionFileSystem::State : public SharedState {};

FaultInjectionFileSystem::FaultInjectionFileSystem(FileSystem& base)
    : state_(std::make_shared<State>()), base_(base) {}

FaultInjectionFileSystem::~FaultInjectionFileSystem() = default;

void FaultInjectionFileSystem::SetSyncFailure(bool fail) {
  std::lock_guard lock(state_->mu);
  state_->sync_failure = fail;
}

void FaultInjectionFileSystem::SetSpaceLimit(std::optional<uint64_t> bytes) {
  std::lock_guard lock(state_->mu);
  state_->space_left = bytes;
}

void FaultInjectionFileSystem::FailNextAppends(int count) {
  std::lock_guard lock(state_->mu);
  state_->failing_appends = std::max(count, 0);
}

Status FaultInjectionFileSystem::DropUnsyncedData() {
  // Under the lock throughout, so no append or sync interleaves with the cut.
  std::lock_guard lock(state_->mu);
  for (auto it = state_->files.begin(); it != state_->files.end();) {
    const std::string& path = it->first;
    const TrackedFile& file = *it->second;
    if (!file.entry_durable) {
      Status st = base_.Remove(path);
      if (!st.ok()) return st;
      it = state_->files.erase(it);
      continue;
    }
    Result<uint64_t> size = base_.FileSize(path);
    if (!size.ok()) return size.status();
    if (*size > file.synced_size) {
      Status st = base_.TruncateFile(path, file.synced_size);
      if (!st.ok()) return st;
    }
    ++it;
  }
  return Status::Ok();
}

uint64_t FaultInjectionFileSystem::syncs() const {
  std::lock_guard lock(state_->mu);
  return state_->syncs;
}

uint64_t FaultInjectionFileSystem::appended_bytes() const {
  std::lock_guard lock(state_->mu);
  return state_->appended_bytes;
}

Result<std::unique_ptr<WritableFile>> FaultInjectionFileSystem::NewWritableFile(
    const std::string& path) {
  Result<std::unique_ptr<WritableFile>> base = base_.NewWritableFile(path);
  if (!base.ok()) return base.status();
  auto tracked = std::make_shared<TrackedFile>();
  {
    std::lock_guard lock(state_->mu);
    state_->files[path] = tracked;
  }
  return std::unique_ptr<WritableFile>(
      new FaultWritableFile(state_, std::move(tracked), std::move(*base), path));
}

Result<std::unique_ptr<SequentialFile>> FaultInjectionFileSystem::NewSequentialFile(
    const std::string& path) {
  return base_.NewSequentialFile(path);
}

Result<std::vector<std::string>> FaultInjectionFileSystem::ListDir(const std::string& dir) {
  return base_.ListDir(dir);
}

Status FaultInjectionFileSystem::CreateDirs(const std::string& dir) {
  return base_.CreateDirs(dir);
}

Status FaultInjectionFileSystem::Rename(const std::string& from, const std::string& to) {
  Status st = base_.Rename(from, to);
  if (!st.ok()) return st;
  std::lock_guard lock(state_->mu);
  auto it = state_->files.find(from);
  if (it == state_->files.end()) {
    // An untracked file (durable as far as we know) now holds the name.
    state_->files.erase(to);
    return Status::Ok();
  }
  std::shared_ptr<TrackedFile> tracked = std::move(it->second);
  state_->files.erase(it);
  state_->files[to] = std::move(tracked);
  return Status::Ok();
}

Status FaultInjectionFileSystem::Remove(const std::string& path) {
  Status st = base_.Remove(path);
  if (!st.ok()) return st;
  std::lock_guard lock(state_->mu);
  state_->files.erase(path);
  return Status::Ok();
}

Status FaultInjectionFileSystem::SyncDir(const std::string& dir) {
  {
    std::lock_guard lock(state_->mu);
    if (state_->sync_failure) {
      return Status::IoError("cannot sync directory " + dir + ": injected fsync failure");
    }
  }
  Status st = base_.SyncDir(dir);
  if (!st.ok()) return st;
  const std::string normalized = NormalizeDir(dir);
  std::lock_guard lock(state_->mu);
  for (auto& [path, file] : state_->files) {
    if (ParentDir(path) == normalized) file->entry_durable = true;
  }
  return Status::Ok();
}

Result<uint64_t> FaultInjectionFileSystem::FileSize(const std::string& path) {
  return base_.FileSize(path);
}

Status FaultInjectionFileSystem::TruncateFile(const std::string& path, uint64_t size) {
  {
    std::lock_guard lock(state_->mu);
    // TruncateFile syncs; an injected sync failure leaves the file untouched.
    if (state_->sync_failure) {
      return Status::IoError("cannot sync " + path + ": injected fsync failure");
    }
  }
  Status st = base_.TruncateFile(path, size);
  if (!st.ok()) return st;
  std::lock_guard lock(state_->mu);
  auto it = state_->files.find(path);
  if (it != state_->files.end()) it->second->synced_size = size;
  return Status::Ok();
}

}  // namespace tagcache::storage
