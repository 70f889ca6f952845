// Reads a request frame body that lives in memory the connection owns (its
// read buffer, or a buffer grown while a large frame arrived), with exactly
// the checks of protocol::BodyReader + protocol::ParseRequest, which only
// accept a protocol::FrameBody (a per-request heap copy on the hot path).
// TODO(perf): drop this once protocol offers BodyReader over an ArrayPtr.
#pragma once

#include <capnp/common.h>
#include <capnp/serialize.h>
#include <kj/array.h>

#include "tagcache/common/status.h"
#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::net {

class RequestReader {
 public:
  // `body` must be 8-byte aligned and outlive the reader. Throws
  // kj::Exception for a malformed segment table, a body shorter than the
  // table says, or words left over after the message.
  explicit RequestReader(kj::ArrayPtr<const capnp::word> body);
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // The root Request after one walk of the whole tree (bounds, nesting,
  // traversal, no amplification, no capabilities). BAD_REQUEST naming the
  // problem otherwise; never throws for malformed input. Reading fields of
  // the result may still throw kj::Exception (e.g. a Text without its NUL).
  Result<wire::Request::Reader> Parse();

 private:
  kj::ArrayPtr<const capnp::word> body_;
  capnp::FlatArrayMessageReader reader_;
};

}  // namespace tagcache::net
