// Encoding and decoding frame bodies: Cap'n Proto messages built with the
// generated tagcache::wire types (tagcache/protocol/tagcache.capnp.h), read
// back with limits derived from the frame size, from 8-byte-aligned memory.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/protocol/frame.h"
#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::protocol {

// Reader limits for a body of `body_bytes`: the traversal limit is a small
// multiple of the body (bounding amplification by repeated pointers), and
// nesting is capped at 32. Default Cap'n Proto limits are far larger.
// Exactly: traversalLimitInWords = max(ceil(body_bytes / 8) *
// kTraversalWordsPerBodyWord, kMinTraversalWords), nestingLimit = kNestingLimit.
// Every pointer followed is charged again, so read each list or struct field
// once and keep its reader rather than re-fetching it inside a loop.
capnp::ReaderOptions ReaderOptionsFor(size_t body_bytes);
inline constexpr uint64_t kTraversalWordsPerBodyWord = 4;
inline constexpr uint64_t kMinTraversalWords = 8192;  // 64 KiB: room for tiny bodies
inline constexpr int kNestingLimit = 32;

// Appends one whole frame (header + body) holding `message` to `out`
// (version kProtocolVersion, no flags). `out` keeps its earlier contents, so
// several frames can be batched into one write. The body is the standard
// (unpacked) Cap'n Proto stream encoding of the message's segments.
// REQUIRES: a root was initialised in `message`. Throws kj::Exception if the
// body would not fit the 32-bit length field; the caller checks the peer's
// frame limit (the appended size is the growth of `out`).
void AppendFrame(capnp::MessageBuilder& message, std::vector<uint8_t>& out);

// An 8-byte-aligned frame body, as Cap'n Proto requires (0.9 rejects
// unaligned buffers). Movable, not copyable.
class FrameBody {
 public:
  FrameBody() = default;
  // REQUIRES: body_bytes is a multiple of 8 (DecodeFrameHeader checks it).
  explicit FrameBody(uint32_t body_bytes) : words_(kj::heapArray<capnp::word>(body_bytes / 8)) {}
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.begin()); }
  size_t size() const { return words_.size() * sizeof(capnp::word); }
  kj::ArrayPtr<const capnp::word> words() const { return words_.asPtr(); }

 private:
  kj::Array<capnp::word> words_;
};

// Reads a body with ReaderOptionsFor(body.size()). The reader points into
// `body`, which must outlive it. Throws kj::Exception on malformed input:
// call it only where exceptions are turned into BAD_REQUEST (the frame
// decoder / connection top level), or use ParseRequest/ParseResponse.
// The constructor itself throws for a malformed segment table, a body
// shorter than its segment table says, or words left over after the message.
// Neither copyable nor movable: Cap'n Proto's reader keeps pointers into
// itself, and its implicit move would leave them dangling.
class BodyReader {
 public:
  explicit BodyReader(const FrameBody& body);
  BodyReader(const BodyReader&) = delete;
  BodyReader& operator=(const BodyReader&) = delete;
  capnp::MessageReader& message() { return reader_; }

 private:
  capnp::FlatArrayMessageReader reader_;
};

// The root Request (Response) of `body`, after checking the whole message
// tree once: every pointer in bounds and of a valid kind, nesting within
// kNestingLimit, and no amplification (the tree, counted as Cap'n Proto
// traverses it, is no larger than the body; a message produced by a
// MessageBuilder always passes). BAD_REQUEST naming the problem otherwise.
// Never throws for malformed input (only std::bad_alloc can escape).
// Does not judge the union: a kind this build does not know is returned
// as is (which() beyond the known values) for the dispatcher to answer.
// A few content errors are still only detected when the field is read (a
// Text without its NUL terminator, a list of zero-sized structs claiming
// more elements than the traversal limit allows), so reading the returned
// reader stays inside the connection's kj::Exception boundary. The reader
// points into `body`, which must outlive it.
// Cost: about one more read of the message (the whole pair in
// bench/protocol_bench.cc goes from ~0.5 to ~0.65 us). The traversal limit
// alone already bounds what a hostile body costs; this buys early, clean
// BAD_REQUEST answers and refuses shared pointers outright.
Result<wire::Request::Reader> ParseRequest(BodyReader& body);
Result<wire::Response::Reader> ParseResponse(BodyReader& body);

// Maps engine status codes to wire codes and back (they share numbers).
// A value the other side does not know (a newer peer's code) maps to
// INTERNAL / kInternal.
wire::Status ToWire(StatusCode code);
StatusCode FromWire(wire::Status status);

}  // namespace tagcache::protocol
