// Frame bodies: Cap'n Proto's standard stream encoding written straight into
// the caller's output buffer, and read back from 8-byte-aligned memory with
// limits derived from the body size (docs/PROTOCOL.md "Limits").
#include "tagcache/protocol/codec.h"

#include <kj/debug.h>
#include <kj/exception.h>

#include <algorithm>
#include <limits>
#include <string>

namespace tagcache::protocol {
namespace {

// The wire enum and StatusCode share their numbers (memcached-style explicit
// codes); a mismatch here is a protocol break, caught at compile time.
#define TAGCACHE_SAME_NUMBER(code, wire_code)                                                    \
  static_assert(                                                                                 \
      static_cast<uint16_t>(StatusCode::code) == static_cast<uint16_t>(wire::Status::wire_code), \
      "StatusCode::" #code " and wire::Status::" #wire_code " must have the same number")
TAGCACHE_SAME_NUMBER(kOk, OK);
TAGCACHE_SAME_NUMBER(kBadRequest, BAD_REQUEST);
TAGCACHE_SAME_NUMBER(kUnknownTag, UNKNOWN_TAG);
TAGCACHE_SAME_NUMBER(kStaleSnapshot, STALE_SNAPSHOT);
TAGCACHE_SAME_NUMBER(kWrongNode, WRONG_NODE);
TAGCACHE_SAME_NUMBER(kOverloaded, OVERLOADED);
TAGCACHE_SAME_NUMBER(kUnauthorized, UNAUTHORIZED);
TAGCACHE_SAME_NUMBER(kUnsupportedVersion, UNSUPPORTED_VERSION);
TAGCACHE_SAME_NUMBER(kInternal, INTERNAL);
TAGCACHE_SAME_NUMBER(kIncomplete, INCOMPLETE);
TAGCACHE_SAME_NUMBER(kIoError, IO_ERROR);
TAGCACHE_SAME_NUMBER(kFutureTimestamp, FUTURE_TIMESTAMP);
#undef TAGCACHE_SAME_NUMBER

// The highest code both enums know; anything above is a newer peer's.
constexpr uint16_t kLastKnownCode = static_cast<uint16_t>(StatusCode::kFutureTimestamp);

inline void PutU32(uint8_t* out, uint32_t v) {
  out[0] = static_cast<uint8_t>(v);
  out[1] = static_cast<uint8_t>(v >> 8);
  out[2] = static_cast<uint8_t>(v >> 16);
  out[3] = static_cast<uint8_t>(v >> 24);
}

// Walks the whole tree under `root` once (bounds, pointer kinds, nesting,
// traversal limit) and refuses trees larger than the body that holds them:
// only pointers shared between several parents can make them so.
template <typename Reader>
Status CheckTree(Reader root, const char* what, size_t segment_words) {
  const capnp::MessageSize size = root.totalSize();
  if (size.wordCount > segment_words) {
    return Status::BadRequest(std::string(what) + " of " + std::to_string(segment_words) +
                              " words reads as " + std::to_string(size.wordCount) +
                              " words: shared pointers (amplification) are not allowed");
  }
  if (size.capCount != 0) {
    return Status::BadRequest(std::string(what) +
                              " carries capabilities, which tagcache never uses");
  }
  return Status::Ok();
}

template <typename T>
Result<typename T::Reader> ParseRoot(BodyReader& body, const char* what) {
  try {
    capnp::MessageReader& message = body.message();
    // The segments' total size. (Not MessageReader::sizeInWords(): 0.9.2
    // counts segment 0 twice.) FlatArrayMessageReader::getSegment is a plain
    // lookup, so calling it here besides the arena is harmless.
    size_t segment_words = 0;
    for (uint i = 0;; ++i) {
      const kj::ArrayPtr<const capnp::word> segment = message.getSegment(i);
      if (segment == nullptr) break;
      segment_words += segment.size();
    }
    typename T::Reader root = message.getRoot<T>();
    Status status = CheckTree(root, what, segment_words);
    if (!status.ok()) return status;
    return root;
  } catch (const kj::Exception& e) {
    return Status::BadRequest(std::string("malformed ") + what + ": " +
                              std::string(e.getDescription().cStr()));
  }
}

}  // namespace

capnp::ReaderOptions ReaderOptionsFor(size_t body_bytes) {
  const uint64_t body_words = (static_cast<uint64_t>(body_bytes) + 7) / 8;
  capnp::ReaderOptions options;
  options.traversalLimitInWords =
      std::max(body_words * kTraversalWordsPerBodyWord, kMinTraversalWords);
  options.nestingLimit = kNestingLimit;
  return options;
}

void AppendFrame(capnp::MessageBuilder& message, std::vector<uint8_t>& out) {
  const kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments =
      message.getSegmentsForOutput();
  KJ_REQUIRE(segments.size() > 0, "AppendFrame: the message has no root");
  // Segment table: u32 (segment count - 1), then one u32 size per segment,
  // zero-padded to a whole word. Then the segments, back to back.
  const size_t table_words = (segments.size() + 2) / 2;
  size_t body_words = table_words;
  for (const auto& segment : segments) body_words += segment.size();
  const size_t body_bytes = body_words * sizeof(capnp::word);
  KJ_REQUIRE(body_bytes <= std::numeric_limits<uint32_t>::max() - 7,
             "AppendFrame: the message does not fit a frame", body_bytes);

  const size_t start = out.size();
  const size_t end = start + kFrameHeaderBytes + body_bytes;
  if (end > out.capacity())
    out.reserve(std::max(end, 2 * out.capacity()));  // keep growth geometric
  // Header and segment table through resize() (which zero-fills, giving the
  // table's padding); the segments are appended with insert(), so the bulk
  // of the body is written once, not zero-filled first.
  out.resize(start + kFrameHeaderBytes + table_words * sizeof(capnp::word));
  uint8_t* p = out.data() + start;
  EncodeFrameHeader(FrameHeader{kProtocolVersion, 0, static_cast<uint32_t>(body_bytes)}, p);
  p += kFrameHeaderBytes;
  PutU32(p, static_cast<uint32_t>(segments.size() - 1));
  for (size_t i = 0; i < segments.size(); ++i) {
    PutU32(p + 4 * (i + 1), static_cast<uint32_t>(segments[i].size()));
  }
  for (const auto& segment : segments) {
    const kj::ArrayPtr<const kj::byte> bytes = segment.asBytes();
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
}

BodyReader::BodyReader(const FrameBody& body)
    : reader_(body.words(), ReaderOptionsFor(body.size())) {
  // FlatArrayMessageReader accepts extra words after the message (for
  // streams of messages); a frame holds exactly one.
  KJ_REQUIRE(reader_.getEnd() == body.words().end(),
             "frame body has words left over after the Cap'n Proto message",
             body.words().end() - reader_.getEnd());
}

Result<wire::Request::Reader> ParseRequest(BodyReader& body) {
  return ParseRoot<wire::Request>(body, "request");
}

Result<wire::Response::Reader> ParseResponse(BodyReader& body) {
  return ParseRoot<wire::Response>(body, "response");
}

wire::Status ToWire(StatusCode code) {
  const auto n = static_cast<uint16_t>(code);
  return n <= kLastKnownCode ? static_cast<wire::Status>(n) : wire::Status::INTERNAL;
}

StatusCode FromWire(wire::Status status) {
  const auto n = static_cast<uint16_t>(status);
  return n <= kLastKnownCode ? static_cast<StatusCode>(n) : StatusCode::kInternal;
}

}  // namespace tagcache::protocol
