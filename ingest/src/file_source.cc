#include "file_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tagcache::ingest::internal {

Result<std::unique_ptr<FileSource>> FileSource::Open(const std::string& path,
                                                     std::atomic<uint64_t>* bytes_done) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(std::string("cannot open the file: ") + std::strerror(errno));
  std::unique_ptr<FileSource> source(new FileSource(fd, bytes_done));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) source->file_size_ = st.st_size;
  if (Status s = source->Fill(); !s.ok()) {
    return Status::IoError("cannot read the file: " + s.message());
  }
  // gzip by content: a ".gz" name without the magic is read as it is.
  if (source->in_len_ >= 2 && source->in_[0] == 0x1f && source->in_[1] == 0x8b) {
    source->gzip_ = true;
    // 16 + MAX_WBITS: gzip wrapper only, with its CRC-32 and length checked.
    if (inflateInit2(&source->zs_, 16 + MAX_WBITS) != Z_OK) {
      return Status::Internal("zlib inflateInit2 failed");
    }
    source->zs_ready_ = true;
    source->in_member_ = true;
  }
  return source;
}

FileSource::FileSource(int fd, std::atomic<uint64_t>* bytes_done)
    : fd_(fd),
      bytes_done_(bytes_done),
      in_(std::make_unique_for_overwrite<unsigned char[]>(kChunkBytes)) {}

FileSource::~FileSource() {
  if (zs_ready_) inflateEnd(&zs_);
  ::close(fd_);
}

Status FileSource::Fill() {
  in_pos_ = 0;
  in_len_ = 0;
  while (!file_eof_ && in_len_ < kChunkBytes) {
    const ssize_t got = ::read(fd_, in_.get() + in_len_, kChunkBytes - in_len_);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::strerror(errno));
    }
    if (got == 0) {
      file_eof_ = true;
      break;
    }
    in_len_ += static_cast<size_t>(got);
    disk_read_ += static_cast<uint64_t>(got);
    if (bytes_done_ != nullptr) bytes_done_->fetch_add(got, std::memory_order_relaxed);
  }
  return Status::Ok();
}

Result<size_t> FileSource::Read(char* dst, size_t n) {
  if (!failed_.ok()) return failed_;
  Result<size_t> got = gzip_ ? Inflate(dst, n) : [&]() -> Result<size_t> {
    if (in_pos_ == in_len_ && !file_eof_) {
      if (Status s = Fill(); !s.ok()) return Status::IoError("read failed: " + s.message());
    }
    const size_t take = std::min(n, in_len_ - in_pos_);
    std::memcpy(dst, in_.get() + in_pos_, take);
    in_pos_ += take;
    return take;
  }();
  if (!got.ok()) failed_ = got.status();
  return got;
}

Result<size_t> FileSource::Inflate(char* dst, size_t n) {
  zs_.next_out = reinterpret_cast<Bytef*>(dst);
  zs_.avail_out = static_cast<uInt>(std::min<size_t>(n, UINT32_MAX));
  const size_t want = zs_.avail_out;
  while (zs_.avail_out > 0) {
    if (in_pos_ == in_len_ && !file_eof_) {
      if (Status s = Fill(); !s.ok()) return Status::IoError("read failed: " + s.message());
    }
    if (in_pos_ == in_len_) {  // end of the file
      if (in_member_) {
        return Status::BadRequest(
            "truncated gzip stream: the file ends at byte " + std::to_string(disk_read_) +
            " inside the gzip member starting at byte " + std::to_string(member_start_));
      }
      break;
    }
    const uint64_t consumed_before = disk_read_ - (in_len_ - in_pos_);
    if (!in_member_) {
      // More bytes after a member's end: the next member of a concatenation.
      if (inflateReset(&zs_) != Z_OK) return Status::Internal("zlib inflateReset failed");
      in_member_ = true;
      member_start_ = consumed_before;
    }
    zs_.next_in = in_.get() + in_pos_;
    zs_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
    const int rc = inflate(&zs_, Z_NO_FLUSH);
    in_pos_ = in_len_ - zs_.avail_in;
    if (rc == Z_STREAM_END) {
      in_member_ = false;
      continue;
    }
    // Z_BUF_ERROR: no progress without more input (the loop reads it).
    if (rc == Z_OK || (rc == Z_BUF_ERROR && in_pos_ == in_len_)) continue;
    const uint64_t at = disk_read_ - (in_len_ - in_pos_);
    std::string why = zs_.msg != nullptr ? zs_.msg : "zlib error " + std::to_string(rc);
    if (member_start_ > 0 && zs_.total_in <= 10 && rc == Z_DATA_ERROR) {
      return Status::BadRequest("bytes after the gzip stream's end at byte " +
                                std::to_string(member_start_) + " are not a gzip member (" + why +
                                ")");
    }
    return Status::BadRequest("corrupt gzip stream near byte " + std::to_string(at) + ": " + why);
  }
  return want - zs_.avail_out;
}

}  // namespace tagcache::ingest::internal
