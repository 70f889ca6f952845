// PosixFileSystem: FileSystem over plain POSIX calls. Every error names the
// path and the OS reason, with the operation when the errno alone would be
// ambiguous ("cannot append to <path>: No space left on device").
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "tagcache/storage/file_system.h"

namespace tagcache::storage {
namespace {

Status ErrnoError(std::string_view what, const std::string& path, int err) {
  std::string msg;
  if (!what.empty()) {
    msg.append(what);
    msg.push_back(' ');
  }
  msg.append(path);
  msg.append(": ");
  msg.append(std::strerror(err));
  return Status::IoError(std::move(msg));
}

// close(2) may report a deferred write error (NFS); EINTR must not be retried
// on Linux, where the descriptor is already gone.
int CloseFd(int fd) {
  int rc = ::close(fd);
  if (rc != 0 && errno == EINTR) return 0;
  return rc;
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) CloseFd(fd_);
  }

  Status Append(std::string_view data) override {
    if (fd_ < 0) return Status::IoError("cannot append to " + path_ + ": file is closed");
    while (!data.empty()) {
      // pwrite at our own size keeps appends on the record boundary even
      // after Truncate moved the end back (the fd's offset would not follow).
      ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(size_));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("cannot append to", path_, errno);
      }
      if (n == 0) return Status::IoError("cannot append to " + path_ + ": write returned 0");
      size_ += static_cast<uint64_t>(n);
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (fd_ < 0) return Status::IoError("cannot sync " + path_ + ": file is closed");
    int rc;
    do {
      rc = ::fdatasync(fd_);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) return ErrnoError("cannot sync", path_, errno);
    return Status::Ok();
  }

  Status Truncate(uint64_t size) override {
    if (fd_ < 0) return Status::IoError("cannot truncate " + path_ + ": file is closed");
    int rc;
    do {
      rc = ::ftruncate(fd_, static_cast<off_t>(size));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) return ErrnoError("cannot truncate", path_, errno);
    size_ = size;
    return Status::Ok();
  }

  uint64_t size() const override { return size_; }

  Status Close() override {
    if (fd_ < 0) return Status::Ok();
    int fd = std::exchange(fd_, -1);
    if (CloseFd(fd) != 0) return ErrnoError("cannot close", path_, errno);
    return Status::Ok();
  }

 private:
  int fd_;
  std::string path_;
  uint64_t size_ = 0;
};

class PosixSequentialFile final : public SequentialFile {
 public:
  PosixSequentialFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixSequentialFile() override { CloseFd(fd_); }

  Result<size_t> Read(char* buf, size_t n) override {
    for (;;) {
      ssize_t got = ::read(fd_, buf, n);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) return ErrnoError("cannot read", path_, errno);
    }
  }

 private:
  int fd_;
  std::string path_;
};

int OpenRetry(const char* path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

class PosixFileSystem final : public FileSystem {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    int fd = OpenRetry(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError("cannot create", path, errno);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path));
  }

  Result<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override {
    int fd = OpenRetry(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("cannot open", path, errno);
    return std::unique_ptr<SequentialFile>(new PosixSequentialFile(fd, path));
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoError("cannot list", dir, errno);
    std::vector<std::string> names;
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(d);
      if (e == nullptr) {
        int err = errno;
        ::closedir(d);
        if (err != 0) return ErrnoError("cannot list", dir, err);
        break;
      }
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    return names;
  }

  Status CreateDirs(const std::string& dir) override {
    if (dir.empty()) return Status::IoError("cannot create a directory with an empty name");
    // Each prefix ending before a '/' (and the whole path) in turn.
    for (size_t pos = 1; pos <= dir.size(); ++pos) {
      if (pos < dir.size() && dir[pos] != '/') continue;
      if (dir[pos - 1] == '/') continue;  // "a//b": the prefix "a/" was done
      std::string prefix = dir.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0755) == 0) continue;
      int err = errno;
      if (err == EEXIST) {
        struct stat st {};
        if (::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
        return Status::IoError("cannot create directory " + prefix + ": not a directory");
      }
      return ErrnoError("cannot create directory", prefix, err);
    }
    return Status::Ok();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoError("cannot rename", from + " to " + to, errno);
    }
    return Status::Ok();
  }

  Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoError("cannot remove", path, errno);
    return Status::Ok();
  }

  Status SyncDir(const std::string& dir) override {
    int fd = OpenRetry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("cannot open directory", dir, errno);
    int rc;
    do {
      rc = ::fsync(fd);
    } while (rc != 0 && errno == EINTR);
    int err = errno;
    CloseFd(fd);
    if (rc != 0) return ErrnoError("cannot sync directory", dir, err);
    return Status::Ok();
  }

  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return ErrnoError("cannot stat", path, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Status TruncateFile(const std::string& path, uint64_t size) override {
    int fd = OpenRetry(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("cannot open", path, errno);
    int rc;
    do {
      rc = ::ftruncate(fd, static_cast<off_t>(size));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      int err = errno;
      CloseFd(fd);
      return ErrnoError("cannot truncate", path, err);
    }
    // fdatasync covers the size change: st_size is needed to read the data.
    do {
      rc = ::fdatasync(fd);
    } while (rc != 0 && errno == EINTR);
    int err = errno;
    CloseFd(fd);
    if (rc != 0) return ErrnoError("cannot sync", path, err);
    return Status::Ok();
  }
};

}  // namespace

std::unique_ptr<FileSystem> NewPosixFileSystem() { return std::make_unique<PosixFileSystem>(); }

}  // namespace tagcache::storage
