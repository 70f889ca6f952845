// The bytes of one input file, gunzipped on the fly when the file is gzip
// (told by the magic bytes 1f 8b, whatever the name). Concatenated gzip
// members (`cat a.gz b.gz`) read as the concatenation of their contents.
// The file is read in 1 MiB chunks; every chunk read from disk is counted
// in the caller's progress counter as it is read.
#pragma once

#include <zlib.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tagcache/common/status.h"

namespace tagcache::ingest::internal {

class FileSource {
 public:
  static constexpr size_t kChunkBytes = size_t{1} << 20;

  // Opens `path` and reads its first chunk. IO_ERROR when it cannot be
  // opened or read (the message leaves the path to the caller).
  // `bytes_done` (may be null) must outlive the FileSource.
  static Result<std::unique_ptr<FileSource>> Open(const std::string& path,
                                                  std::atomic<uint64_t>* bytes_done);
  ~FileSource();
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  // Reads up to `n` (> 0) bytes of content into `dst`: the count, 0 once
  // the content is over. IO_ERROR when the file cannot be read; BAD_REQUEST
  // for a corrupt or truncated gzip stream, naming the compressed offset.
  // After an error every further call fails the same way.
  Result<size_t> Read(char* dst, size_t n);

  bool gzip() const { return gzip_; }
  // On-disk bytes read so far, and the file's size when it was opened.
  uint64_t disk_bytes_read() const { return disk_read_; }
  uint64_t file_size() const { return file_size_; }

 private:
  FileSource(int fd, std::atomic<uint64_t>* bytes_done);
  // Reads the next chunk of the file into in_ (when it is used up). Sets
  // file_eof_ at the end of the file.
  Status Fill();
  Result<size_t> Inflate(char* dst, size_t n);

  int fd_;
  std::atomic<uint64_t>* bytes_done_;
  uint64_t disk_read_ = 0;
  uint64_t file_size_ = 0;
  bool file_eof_ = false;
  std::unique_ptr<unsigned char[]> in_;  // kChunkBytes of file data
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  Status failed_;

  bool gzip_ = false;
  z_stream zs_{};
  bool zs_ready_ = false;
  bool in_member_ = false;     // inside a gzip member (its end not yet seen)
  uint64_t member_start_ = 0;  // compressed offset of the current member
};

}  // namespace tagcache::ingest::internal
