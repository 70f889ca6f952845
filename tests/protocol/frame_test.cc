// The 12-byte frame header (tagcache/protocol/frame.h): exact byte layout,
// round trips, and every way a header can be refused, with messages that
// name what was wrong and the limit.

#include "tagcache/protocol/frame.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>

namespace tagcache::protocol {
namespace {

using Header = std::array<uint8_t, kFrameHeaderBytes>;

Header Encode(uint32_t body_bytes, uint8_t version = kProtocolVersion, uint8_t flags = 0) {
  Header h{};
  EncodeFrameHeader(FrameHeader{version, flags, body_bytes}, h.data());
  return h;
}

// Expects `h` to be refused with `code` and a message containing `needle`.
void ExpectRefused(const Header& h, uint32_t max, StatusCode code, const std::string& needle) {
  Result<FrameHeader> r = DecodeFrameHeader(h.data(), max);
  ASSERT_FALSE(r.ok()) << "accepted a header that should fail with " << StatusCodeName(code);
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << "message '" << r.status().message() << "' lacks '" << needle << "'";
}

TEST(FrameHeaderTest, LayoutIsMagicVersionFlagsZeroLittleEndianLength) {
  const Header h = Encode(0x01020308u);
  const Header want = {'T', 'A', 'G', 'C', kProtocolVersion, 0, 0, 0, 0x08, 0x03, 0x02, 0x01};
  EXPECT_EQ(h, want);
}

TEST(FrameHeaderTest, RoundTrips) {
  for (uint32_t len : {8u, 16u, 4096u, kPreHelloMaxFrameBytes, kDefaultMaxFrameBytes}) {
    Result<FrameHeader> r = DecodeFrameHeader(Encode(len).data(), kDefaultMaxFrameBytes);
    ASSERT_TRUE(r.ok()) << len << ": " << r.status().ToString();
    EXPECT_EQ(r->body_bytes, len);
    EXPECT_EQ(r->version, kProtocolVersion);
    EXPECT_EQ(r->flags, 0);
  }
}

TEST(FrameHeaderTest, LengthEqualToTheLimitIsAccepted) {
  EXPECT_TRUE(
      DecodeFrameHeader(Encode(kPreHelloMaxFrameBytes).data(), kPreHelloMaxFrameBytes).ok());
  EXPECT_TRUE(DecodeFrameHeader(Encode(kDefaultMaxFrameBytes).data(), kDefaultMaxFrameBytes).ok());
}

TEST(FrameHeaderTest, WrongMagicIsBadRequest) {
  Header h = Encode(16);
  h[3] = 'X';
  ExpectRefused(h, kDefaultMaxFrameBytes, StatusCode::kBadRequest, "\"TAGX\"");
  // An HTTP client, and binary garbage, are both named legibly.
  Header http = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1'};
  ExpectRefused(http, kDefaultMaxFrameBytes, StatusCode::kBadRequest, "\"GET \"");
  Header zeros{};
  ExpectRefused(zeros, kDefaultMaxFrameBytes, StatusCode::kBadRequest, "\\x00\\x00\\x00\\x00");
}

TEST(FrameHeaderTest, OtherVersionIsUnsupportedVersion) {
  ExpectRefused(Encode(16, 2), kDefaultMaxFrameBytes, StatusCode::kUnsupportedVersion, "version 2");
  ExpectRefused(Encode(16, 0), kDefaultMaxFrameBytes, StatusCode::kUnsupportedVersion, "version 0");
}

TEST(FrameHeaderTest, UnknownFlagsAreBadRequest) {
  ExpectRefused(Encode(16, kProtocolVersion, 0x80), kDefaultMaxFrameBytes, StatusCode::kBadRequest,
                "flags 0x80");
  ExpectRefused(Encode(16, kProtocolVersion, 1), kDefaultMaxFrameBytes, StatusCode::kBadRequest,
                "flags 0x01");
}

TEST(FrameHeaderTest, NonZeroReservedBytesAreBadRequest) {
  Header h = Encode(16);
  h[6] = 1;
  ExpectRefused(h, kDefaultMaxFrameBytes, StatusCode::kBadRequest, "reserved");
  h = Encode(16);
  h[7] = 0xff;
  ExpectRefused(h, kDefaultMaxFrameBytes, StatusCode::kBadRequest, "reserved");
}

TEST(FrameHeaderTest, ZeroLengthIsBadRequest) {
  ExpectRefused(Encode(0), kDefaultMaxFrameBytes, StatusCode::kBadRequest, "length is 0");
}

TEST(FrameHeaderTest, LengthNotAMultipleOfEightIsBadRequest) {
  for (uint32_t len : {1u, 7u, 9u, 12u, 4095u}) {
    ExpectRefused(Encode(len), kDefaultMaxFrameBytes, StatusCode::kBadRequest,
                  std::to_string(len) + " is not a multiple of 8");
  }
}

TEST(FrameHeaderTest, HugeLengthIsRefusedBeforeAnythingIsAllocated) {
  // 0xFFFFFFFF is also not a multiple of 8; 0xFFFFFFF8 is, and must fail on
  // the limit alone. DecodeFrameHeader never allocates for the body: the
  // caller allocates only after it returned OK.
  ExpectRefused(Encode(0xFFFFFFFFu), kDefaultMaxFrameBytes, StatusCode::kBadRequest, "4294967295");
  ExpectRefused(Encode(0xFFFFFFF8u), kDefaultMaxFrameBytes, StatusCode::kBadRequest,
                "exceeds the limit of " + std::to_string(kDefaultMaxFrameBytes) + " bytes");
  ExpectRefused(Encode(kDefaultMaxFrameBytes + 8), kDefaultMaxFrameBytes, StatusCode::kBadRequest,
                "exceeds the limit");
}

TEST(FrameHeaderTest, PreHelloLimitIsMuchSmaller) {
  ExpectRefused(Encode(kPreHelloMaxFrameBytes + 8), kPreHelloMaxFrameBytes, StatusCode::kBadRequest,
                "exceeds the limit of 16384 bytes");
  ExpectRefused(Encode(1u << 20), kPreHelloMaxFrameBytes, StatusCode::kBadRequest,
                "frame body length 1048576");
  EXPECT_LT(kPreHelloMaxFrameBytes, kDefaultMaxFrameBytes / 1000);
}

TEST(FrameHeaderTest, ChecksAreOrderedMagicVersionFlagsLength) {
  // A header wrong in every field reports the first problem in wire order,
  // so a peer speaking another version is told so even if its flags differ.
  Header h = Encode(7, 9, 3);
  ExpectRefused(h, 8, StatusCode::kUnsupportedVersion, "version 9");
  h[0] = 'x';
  ExpectRefused(h, 8, StatusCode::kBadRequest, "magic");
  ExpectRefused(Encode(7, kProtocolVersion, 3), 8, StatusCode::kBadRequest, "flags");
}

TEST(FrameHeaderTest, EveryByteFlipIsAcceptedOnlyIfStillValid) {
  // Exhaustive over single-byte values at each position: the decoder never
  // accepts a header whose fields are out of spec.
  const Header base = Encode(64);
  for (size_t pos = 0; pos < kFrameHeaderBytes; ++pos) {
    for (int v = 0; v < 256; ++v) {
      Header h = base;
      h[pos] = static_cast<uint8_t>(v);
      Result<FrameHeader> r = DecodeFrameHeader(h.data(), kDefaultMaxFrameBytes);
      if (!r.ok()) continue;
      EXPECT_EQ(h[0], 'T');
      EXPECT_EQ(h[4], kProtocolVersion);
      EXPECT_EQ(h[5], 0);
      EXPECT_EQ(h[6] | h[7], 0);
      EXPECT_EQ(r->body_bytes % 8, 0u);
      EXPECT_GT(r->body_bytes, 0u);
      EXPECT_LE(r->body_bytes, kDefaultMaxFrameBytes);
    }
  }
}

}  // namespace
}  // namespace tagcache::protocol
