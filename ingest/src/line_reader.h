// Lines of a FileSource, read chunk by chunk: at most a chunk and one
// partial line are held, so a file of any size streams in bounded memory.
// A line is returned without its "\n" or "\r\n"; the last line may lack
// its newline.
#pragma once

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "file_source.h"

namespace tagcache::ingest::internal {

class LineReader {
 public:
  // Longer lines fail the file: no text input has them, so the input is
  // not text (or not split into lines).
  static constexpr size_t kMaxLineBytes = FileSource::kChunkBytes;

  // `source` must outlive the LineReader.
  explicit LineReader(FileSource* source)
      : source_(source), buf_(std::make_unique_for_overwrite<char[]>(kCapacity)) {}

  // The next line, valid until the next call; nullopt at the end of the
  // input or on an error (then status() says which).
  std::optional<std::string_view> Next() {
    for (;;) {
      const char* begin = buf_.get() + begin_;
      const size_t available = end_ - begin_;
      const void* newline = std::memchr(begin, '\n', available);
      if (newline != nullptr) {
        const size_t length = static_cast<const char*>(newline) - begin;
        begin_ += length + 1;
        return Line(begin, length);
      }
      if (eof_) {
        if (available == 0) return std::nullopt;
        begin_ = end_;
        return Line(begin, available);
      }
      if (available >= kMaxLineBytes) {
        status_ = Status::BadRequest("line " + std::to_string(line_ + 1) + " is longer than " +
                                     std::to_string(kMaxLineBytes) +
                                     " bytes: not a line-oriented text file?");
        return std::nullopt;
      }
      // Keep the partial line, then read a chunk after it.
      std::memmove(buf_.get(), begin, available);
      begin_ = 0;
      end_ = available;
      Result<size_t> got = source_->Read(buf_.get() + end_, kCapacity - end_);
      if (!got.ok()) {
        status_ = got.status();
        return std::nullopt;
      }
      if (*got == 0) eof_ = true;
      end_ += *got;
    }
  }

  // 1-based number of the line Next returned last.
  uint64_t line_number() const { return line_; }
  // OK at the end of the input; the error that stopped Next otherwise.
  const Status& status() const { return status_; }

 private:
  static constexpr size_t kCapacity = kMaxLineBytes + FileSource::kChunkBytes;

  std::string_view Line(const char* begin, size_t length) {
    ++line_;
    if (length > 0 && begin[length - 1] == '\r') --length;
    return {begin, length};
  }

  FileSource* source_;
  std::unique_ptr<char[]> buf_;
  size_t begin_ = 0;  // unread bytes are [begin_, end_)
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t line_ = 0;
  Status status_;
};

}  // namespace tagcache::ingest::internal
