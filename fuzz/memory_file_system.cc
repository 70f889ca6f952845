#include "memory_file_system.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace tagcache::fuzz {
namespace {

std::string Trim(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status NotFound(const std::string& path) {
  return Status::IoError(path + ": No such file or directory");
}

// Writes share the file's contents with the file system, so a reader opened
// later sees them (as with a real file).
class MemoryWritableFile final : public storage::WritableFile {
 public:
  MemoryWritableFile(std::shared_ptr<std::string> contents, std::mutex& mu)
      : contents_(std::move(contents)), mu_(mu) {}
  Status Append(std::string_view data) override {
    std::lock_guard lock(mu_);
    contents_->append(data);
    return Status::Ok();
  }
  Status Sync() override { return Status::Ok(); }
  Status Truncate(uint64_t size) override {
    std::lock_guard lock(mu_);
    if (size < contents_->size()) contents_->resize(size);
    return Status::Ok();
  }
  uint64_t size() const override {
    std::lock_guard lock(mu_);
    return contents_->size();
  }
  Status Close() override { return Status::Ok(); }

 private:
  std::shared_ptr<std::string> contents_;
  std::mutex& mu_;
};

class MemorySequentialFile final : public storage::SequentialFile {
 public:
  explicit MemorySequentialFile(std::string contents) : contents_(std::move(contents)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    const size_t count = std::min(n, contents_.size() - offset_);
    if (count > 0) std::memcpy(buf, contents_.data() + offset_, count);
    offset_ += count;
    return count;
  }

 private:
  std::string contents_;  // a snapshot taken at open
  size_t offset_ = 0;
};

}  // namespace

void MemoryFileSystem::AddParentsLocked(const std::string& path) {
  for (std::string dir = Parent(path); dirs_.insert(dir).second && dir != "/" && dir != ".";
       dir = Parent(dir)) {
  }
}

void MemoryFileSystem::Put(const std::string& path, std::string_view contents) {
  std::lock_guard lock(mu_);
  files_[path] = std::make_shared<std::string>(contents);
  AddParentsLocked(path);
}

Result<std::unique_ptr<storage::WritableFile>> MemoryFileSystem::NewWritableFile(
    const std::string& path) {
  std::lock_guard lock(mu_);
  auto contents = std::make_shared<std::string>();
  files_[path] = contents;
  AddParentsLocked(path);
  return std::unique_ptr<storage::WritableFile>(new MemoryWritableFile(contents, mu_));
}

Result<std::unique_ptr<storage::SequentialFile>> MemoryFileSystem::NewSequentialFile(
    const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return NotFound(path);
  return std::unique_ptr<storage::SequentialFile>(new MemorySequentialFile(*it->second));
}

Result<std::vector<std::string>> MemoryFileSystem::ListDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  const std::string d = Trim(dir);
  if (!dirs_.contains(d)) return NotFound(d);
  std::vector<std::string> names;
  for (const auto& [path, contents] : files_) {
    if (Parent(path) == d) names.push_back(path.substr(path.rfind('/') + 1));
  }
  for (const std::string& sub : dirs_) {
    if (sub != d && Parent(sub) == d) names.push_back(sub.substr(sub.rfind('/') + 1));
  }
  return names;
}

Status MemoryFileSystem::CreateDirs(const std::string& dir) {
  std::lock_guard lock(mu_);
  const std::string d = Trim(dir);
  dirs_.insert(d);
  AddParentsLocked(d);
  return Status::Ok();
}

Status MemoryFileSystem::Rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  auto it = files_.find(from);
  if (it == files_.end()) return NotFound(from);
  Contents contents = it->second;
  files_.erase(it);
  files_[to] = std::move(contents);
  AddParentsLocked(to);
  return Status::Ok();
}

Status MemoryFileSystem::Remove(const std::string& path) {
  std::lock_guard lock(mu_);
  return files_.erase(path) > 0 ? Status::Ok() : NotFound(path);
}

Status MemoryFileSystem::SyncDir(const std::string& /*dir*/) { return Status::Ok(); }

Result<uint64_t> MemoryFileSystem::FileSize(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return NotFound(path);
  return static_cast<uint64_t>(it->second->size());
}

Status MemoryFileSystem::TruncateFile(const std::string& path, uint64_t size) {
  std::lock_guard lock(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return NotFound(path);
  if (size < it->second->size()) it->second->resize(size);
  return Status::Ok();
}

}  // namespace tagcache::fuzz
