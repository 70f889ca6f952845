// Little-endian field encoding shared by the WAL payloads and the checkpoint
// records (docs/WAL.md): writers append to a std::string; ByteReader is a
// cursor over untrusted bytes whose getters fail instead of reading past
// the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tagcache/server/engine.h"

namespace tagcache::storage::internal {

inline constexpr size_t kMaxTagBytes = 128;

inline void PutU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
inline void PutU32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 4);
}
inline void PutU64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}
// u8 length + bytes. REQUIRES: IsValidTagName(tag): every name written comes
// from the engine or an accepted write, so the length fits the u8.
inline void PutTag(std::string& out, std::string_view tag) {
  PutU8(out, static_cast<uint8_t>(tag.size()));
  out.append(tag);
}

class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t pos() const { return pos_; }
  size_t size() const { return data_.size(); }

  bool U8(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  bool U32(uint32_t* v) {
    if (remaining() < 4) return false;
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) r |= uint32_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
    pos_ += 4;
    *v = r;
    return true;
  }
  bool U64(uint64_t* v) {
    if (remaining() < 8) return false;
    uint64_t r = 0;
    for (int i = 0; i < 8; ++i) r |= uint64_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
    pos_ += 8;
    *v = r;
    return true;
  }
  bool Bytes(size_t n, std::string_view* v) {
    if (remaining() < n) return false;
    *v = data_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // u8 length + a valid tag name.
  bool Tag(std::string_view* tag) {
    uint8_t len = 0;
    return U8(&len) && len >= 1 && len <= kMaxTagBytes && Bytes(len, tag) &&
           IsValidTagName(*tag);
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace tagcache::storage::internal
