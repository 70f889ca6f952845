// Record framing (record_io.h, docs/WAL.md): writing is one header plus the
// payload; reading assembles one record at a time in a buffer that grows to
// the largest record, and on a bad record reads the rest of the file to tell
// a torn tail from corruption.
#include "tagcache/storage/record_io.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

namespace tagcache::storage {
namespace {

// Reads are issued in chunks this large; the buffer only grows past it for
// a larger record.
constexpr size_t kReadChunk = size_t{1} << 20;
// After a bad record, the rest of the file is searched for a valid record
// (one that would be lost if the damage were called a torn tail). Candidates
// longer than this are not checked, to keep that search's memory bounded.
constexpr size_t kScanWindow = size_t{8} << 20;

void PutLE(uint64_t v, int bytes, char* out) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t GetLE(const char* in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}

struct Header {
  uint64_t checksum;
  uint32_t length;
  uint8_t type;
  bool reserved_zero;
};

Header ParseHeader(const char* h) {
  return Header{GetLE(h, 8), static_cast<uint32_t>(GetLE(h + 8, 4)),
                static_cast<uint8_t>(h[12]), h[13] == 0 && h[14] == 0 && h[15] == 0};
}

// The checksum covers the header after the checksum field, then the payload.
uint64_t RecordChecksum(const char* record, uint32_t length) {
  return XXH3_64bits(record + 8, kRecordHeaderBytes - 8 + length);
}

}  // namespace

void AppendRecord(uint8_t type, std::string_view payload, std::string& out) {
  // A longer payload would make a record every reader rejects: a caller bug
  // that must not reach the disk as silent damage.
  if (payload.size() > kMaxRecordPayload) std::abort();
  const size_t start = out.size();
  out.resize(start + kRecordHeaderBytes);
  char* h = out.data() + start;
  PutLE(static_cast<uint32_t>(payload.size()), 4, h + 8);
  h[12] = static_cast<char>(type);
  h[13] = h[14] = h[15] = 0;
  out.append(payload);
  PutLE(RecordChecksum(out.data() + start, static_cast<uint32_t>(payload.size())), 8,
        out.data() + start);
}

class RecordReader::Impl {
 public:
  Impl(std::unique_ptr<SequentialFile> file, std::string name)
      : file_(std::move(file)), name_(std::move(name)) {}

  ReadOutcome Next(Record* record, uint64_t* bad_offset, Status* error) {
    if (final_) return Final(bad_offset, error);
    if (!Fill(kRecordHeaderBytes)) return ReadFailed(bad_offset, error);
    if (avail() == 0) return Finish(ReadOutcome::kEnd, Status::Ok(), bad_offset, error);
    if (avail() < kRecordHeaderBytes) {
      return Damaged(UINT64_MAX,
                     "the file ends inside a record header (" + std::to_string(avail()) +
                         " of 16 bytes)",
                     bad_offset, error);
    }
    const Header h = ParseHeader(buf_.get() + begin_);
    const uint64_t claimed_end = pos_ + kRecordHeaderBytes + h.length;
    if (h.length > kMaxRecordPayload) {
      return Damaged(claimed_end,
                     "record length " + std::to_string(h.length) + " exceeds the limit of " +
                         std::to_string(kMaxRecordPayload),
                     bad_offset, error);
    }
    if (!h.reserved_zero) {
      return Damaged(claimed_end, "nonzero reserved header bytes", bad_offset, error);
    }
    const size_t total = kRecordHeaderBytes + h.length;
    if (!Fill(total)) return ReadFailed(bad_offset, error);
    if (avail() < total) {
      return Damaged(claimed_end,
                     "the file ends inside a record of " + std::to_string(h.length) +
                         " bytes (" + std::to_string(avail()) + " of " + std::to_string(total) +
                         " bytes present)",
                     bad_offset, error);
    }
    const char* rec = buf_.get() + begin_;
    if (RecordChecksum(rec, h.length) != h.checksum) {
      return Damaged(claimed_end,
                     "checksum mismatch (record of " + std::to_string(h.length) + " bytes)",
                     bad_offset, error);
    }
    record->type = h.type;
    record->payload = std::string_view(rec + kRecordHeaderBytes, h.length);
    record->offset = pos_;
    begin_ += total;
    pos_ += total;
    return ReadOutcome::kRecord;
  }

  uint64_t valid_bytes() const { return pos_; }

 private:
  size_t avail() const { return end_ - begin_; }

  // Makes `need` bytes from pos_ on available unless the file ends first.
  // False on a read error (read_error_ says which). The buffer grows with
  // the data that arrives, never to a length a damaged header claims.
  bool Fill(size_t need) {
    while (avail() < need && !eof_) {
      if (end_ == cap_ && begin_ > 0) {
        std::memmove(buf_.get(), buf_.get() + begin_, avail());
        end_ = avail();
        begin_ = 0;
      }
      if (end_ == cap_) {
        // Doubling keeps assembling a large record linear.
        const size_t cap = std::max(kReadChunk, std::min(need, 2 * cap_));
        auto grown = std::make_unique_for_overwrite<char[]>(cap);
        if (end_ > 0) std::memcpy(grown.get(), buf_.get(), end_);
        buf_ = std::move(grown);
        cap_ = cap;
      }
      Result<size_t> got = file_->Read(buf_.get() + end_, cap_ - end_);
      if (!got.ok()) {
        read_error_ = got.status();
        return false;
      }
      if (*got == 0) {
        eof_ = true;
      } else {
        end_ += *got;
      }
    }
    return true;
  }

  std::string At(uint64_t offset) const {
    return name_ + ": offset " + std::to_string(offset) + ": ";
  }

  ReadOutcome ReadFailed(uint64_t* bad_offset, Status* error) {
    // Nothing is known past pos_; calling it corruption keeps every caller on
    // its careful path (strict recovery refuses to go on).
    return Finish(ReadOutcome::kCorrupt,
                  Status::IoError(At(pos_) + "read failed: " + read_error_.message()), bad_offset,
                  error);
  }

  // The record at pos_ is bad. Corruption is a bad record followed by more
  // data: a non-zero byte at or past its claimed end, or a valid record
  // anywhere after its start (which catches a damaged length field claiming
  // to run past the end of the file). Anything else is a torn tail: the file
  // ends inside the record, perhaps followed by zeros (pages a crash left
  // unwritten), or is all zeros from it on.
  ReadOutcome Damaged(uint64_t claimed_end, std::string reason, uint64_t* bad_offset,
                      Status* error) {
    std::optional<bool> corrupt = ScanTail(claimed_end);
    if (!corrupt) return ReadFailed(bad_offset, error);
    if (!*corrupt && all_zero_) reason = "only zero bytes from here to the end of the file";
    return Finish(*corrupt ? ReadOutcome::kCorrupt : ReadOutcome::kTornTail,
                  Status::IoError(At(pos_) + reason), bad_offset, error);
  }

  // Reads the rest of the file after a bad record at pos_ (which starts at
  // buf_[begin_]) and says whether it is corrupt; nullopt on a read error.
  std::optional<bool> ScanTail(uint64_t claimed_end) {
    // Offsets below are relative to pos_.
    uint64_t window_start = 0;  // buf_[begin_] is pos_ + window_start
    uint64_t zero_checked = 0;  // [0, zero_checked) is all zeros
    // [claimed_end, tail_checked) is all zeros.
    uint64_t tail_checked = claimed_end - pos_;
    bool data_after_end = false;
    uint64_t candidate = 1;  // the next offset to try as a record start
    for (;;) {
      const uint64_t window_end = window_start + avail();
      const char* base = buf_.get() + begin_;
      for (; all_zero_ && zero_checked < window_end; ++zero_checked) {
        if (base[zero_checked - window_start] != 0) all_zero_ = false;
      }
      for (; !data_after_end && tail_checked < window_end; ++tail_checked) {
        if (base[tail_checked - window_start] != 0) data_after_end = true;
      }
      if (data_after_end) return true;
      while (candidate + kRecordHeaderBytes <= window_end) {
        const char* rec = base + (candidate - window_start);
        const Header h = ParseHeader(rec);
        const uint64_t size = kRecordHeaderBytes + uint64_t{h.length};
        if (!h.reserved_zero || h.length > kMaxRecordPayload || size > kScanWindow) {
          ++candidate;
          continue;
        }
        if (candidate + size > window_end) {
          if (!eof_) break;  // read on, then try it again
          ++candidate;       // runs past the end: not a record
          continue;
        }
        if (RecordChecksum(rec, h.length) == h.checksum) return true;
        ++candidate;
      }
      if (eof_) return false;
      // Bytes before the first untried candidate are no longer needed (the
      // zero checks are past them); read on.
      begin_ += static_cast<size_t>(candidate - window_start);
      window_start = candidate;
      if (!Fill(avail() + kReadChunk)) return std::nullopt;
    }
  }

  ReadOutcome Finish(ReadOutcome outcome, Status status, uint64_t* bad_offset, Status* error) {
    final_ = outcome;
    final_error_ = std::move(status);
    return Final(bad_offset, error);
  }

  ReadOutcome Final(uint64_t* bad_offset, Status* error) const {
    if (*final_ != ReadOutcome::kEnd) {
      if (bad_offset != nullptr) *bad_offset = pos_;
      if (error != nullptr) *error = final_error_;
    }
    return *final_;
  }

  std::unique_ptr<SequentialFile> file_;
  std::string name_;
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  size_t begin_ = 0;  // buf_[begin_] is the file's byte at pos_
  size_t end_ = 0;
  uint64_t pos_ = 0;  // the end of the last good record
  bool eof_ = false;
  Status read_error_;
  bool all_zero_ = true;  // after damage: the rest of the file is zeros
  // Once the end or damage is reached, every later Next() repeats it.
  std::optional<ReadOutcome> final_;
  Status final_error_;
};

RecordReader::RecordReader(std::unique_ptr<SequentialFile> file, std::string name)
    : impl_(std::make_unique<Impl>(std::move(file), std::move(name))) {}

RecordReader::~RecordReader() = default;

ReadOutcome RecordReader::Next(Record* record, uint64_t* bad_offset, Status* error) {
  return impl_->Next(record, bad_offset, error);
}

uint64_t RecordReader::valid_bytes() const { return impl_->valid_bytes(); }

}  // namespace tagcache::storage
