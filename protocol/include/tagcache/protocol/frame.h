// Frames: how Cap'n Proto messages travel on a TCP stream. Every frame is a
// 12-byte header followed by a body of `body_bytes` bytes:
//
//   offset 0  magic   4 bytes  "TAGC"
//   offset 4  version 1 byte   kProtocolVersion
//   offset 5  flags   1 byte   0 (reserved; a node rejects unknown flags)
//   offset 6  zero    2 bytes  reserved, must be 0
//   offset 8  length  4 bytes  body length, little-endian; a multiple of 8
//
// The body is one Cap'n Proto message in the standard (unpacked) stream
// encoding. docs/PROTOCOL.md is the normative spec.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tagcache/common/status.h"

namespace tagcache::protocol {

inline constexpr size_t kFrameHeaderBytes = 12;
inline constexpr uint8_t kProtocolVersion = 1;
// Largest body a node accepts once the hello succeeded. Default: 64 MiB.
inline constexpr uint32_t kDefaultMaxFrameBytes = 64u << 20;
// Largest body accepted before the hello succeeded (a stranger gets little).
inline constexpr uint32_t kPreHelloMaxFrameBytes = 16u << 10;

struct FrameHeader {
  uint8_t version = kProtocolVersion;
  uint8_t flags = 0;
  uint32_t body_bytes = 0;
};

// Writes the 12 header bytes to `out`.
void EncodeFrameHeader(const FrameHeader& header, uint8_t* out);

// Parses 12 header bytes. BAD_REQUEST for a wrong magic, non-zero flags or
// reserved bytes, a length that is not a multiple of 8 or is 0, or a length
// above `max_body_bytes` (the message names the limit); UNSUPPORTED_VERSION
// for another version. Never allocates.
Result<FrameHeader> DecodeFrameHeader(const uint8_t* in, uint32_t max_body_bytes);

}  // namespace tagcache::protocol
