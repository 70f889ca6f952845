// Frame header codec: 12 bytes, fixed layout (see frame.h and
// docs/PROTOCOL.md "Framing"). Multi-byte fields are assembled byte by byte,
// so the code is independent of host byte order and alignment.
#include "tagcache/protocol/frame.h"

#include <string>

namespace tagcache::protocol {
namespace {

constexpr uint8_t kMagic[4] = {'T', 'A', 'G', 'C'};
constexpr char kHex[] = "0123456789abcdef";

std::string HexByte(uint8_t c) { return {kHex[c >> 4], kHex[c & 0xf]}; }

// Printable form of the 4 magic bytes a peer sent, for the error message:
// "GET " from an HTTP client should read as such, anything else as hex.
std::string DescribeMagic(const uint8_t* in) {
  std::string text = "\"";
  for (int i = 0; i < 4; ++i) {
    const uint8_t c = in[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      text.push_back(static_cast<char>(c));
    } else {
      text += "\\x" + HexByte(c);
    }
  }
  return text + "\"";
}

}  // namespace

void EncodeFrameHeader(const FrameHeader& header, uint8_t* out) {
  out[0] = kMagic[0];
  out[1] = kMagic[1];
  out[2] = kMagic[2];
  out[3] = kMagic[3];
  out[4] = header.version;
  out[5] = header.flags;
  out[6] = 0;
  out[7] = 0;
  out[8] = static_cast<uint8_t>(header.body_bytes);
  out[9] = static_cast<uint8_t>(header.body_bytes >> 8);
  out[10] = static_cast<uint8_t>(header.body_bytes >> 16);
  out[11] = static_cast<uint8_t>(header.body_bytes >> 24);
}

Result<FrameHeader> DecodeFrameHeader(const uint8_t* in, uint32_t max_body_bytes) {
  if (in[0] != kMagic[0] || in[1] != kMagic[1] || in[2] != kMagic[2] || in[3] != kMagic[3]) {
    return Status::BadRequest("bad frame magic " + DescribeMagic(in) +
                              " (expected \"TAGC\"): not a tagcache peer");
  }
  FrameHeader header;
  header.version = in[4];
  header.flags = in[5];
  // The version is checked before anything else the version could change.
  if (header.version != kProtocolVersion) {
    return Status(StatusCode::kUnsupportedVersion,
                  "frame version " + std::to_string(header.version) +
                      " is not supported (this build speaks version " +
                      std::to_string(kProtocolVersion) + ")");
  }
  if (header.flags != 0) {
    return Status::BadRequest("unknown frame flags 0x" + HexByte(header.flags) +
                              " (version 1 defines no flags; the byte must be 0)");
  }
  if (in[6] != 0 || in[7] != 0) {
    return Status::BadRequest("reserved frame header bytes 6-7 are " + std::to_string(in[6]) + "," +
                              std::to_string(in[7]) + " (must be 0)");
  }
  header.body_bytes = static_cast<uint32_t>(in[8]) | static_cast<uint32_t>(in[9]) << 8 |
                      static_cast<uint32_t>(in[10]) << 16 | static_cast<uint32_t>(in[11]) << 24;
  if (header.body_bytes == 0) {
    return Status::BadRequest("frame body length is 0 (a body holds at least one 8-byte word)");
  }
  if (header.body_bytes % 8 != 0) {
    return Status::BadRequest("frame body length " + std::to_string(header.body_bytes) +
                              " is not a multiple of 8 (Cap'n Proto bodies are whole words)");
  }
  if (header.body_bytes > max_body_bytes) {
    return Status::BadRequest("frame body length " + std::to_string(header.body_bytes) +
                              " exceeds the limit of " + std::to_string(max_body_bytes) +
                              " bytes on this connection");
  }
  return header;
}

}  // namespace tagcache::protocol
