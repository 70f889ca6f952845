#include "request_reader.h"

#include <kj/debug.h>
#include <kj/exception.h>

#include <string>

#include "tagcache/protocol/codec.h"

namespace tagcache::net {

RequestReader::RequestReader(kj::ArrayPtr<const capnp::word> body)
    : body_(body), reader_(body, protocol::ReaderOptionsFor(body.size() * sizeof(capnp::word))) {
  KJ_REQUIRE(reader_.getEnd() == body.end(),
             "frame body has words left over after the Cap'n Proto message",
             body.end() - reader_.getEnd());
}

Result<wire::Request::Reader> RequestReader::Parse() {
  try {
    wire::Request::Reader root = reader_.getRoot<wire::Request>();
    const capnp::MessageSize size = root.totalSize();
    if (size.wordCount > body_.size()) {
      return Status::BadRequest("request body of " + std::to_string(body_.size()) +
                                " words reads as " + std::to_string(size.wordCount) +
                                " words: shared pointers (amplification) are not allowed");
    }
    if (size.capCount != 0) {
      return Status::BadRequest("request carries capabilities, which tagcache never uses");
    }
    return root;
  } catch (const kj::Exception& e) {
    std::string text(e.getDescription().cStr());
    if (text.size() > 200) text.resize(200);
    return Status::BadRequest("malformed request: " + text);
  }
}

}  // namespace tagcache::net
