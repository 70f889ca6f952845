// Fuzz target: the byte stream a client sends to a node. The input is cut
// into frames and handled the way server/net/src/connection.cc does
// (ProcessBuffer, HandleFrame, HandleHello): frame header with the pre-hello
// limit, then the hello, then each request through Service::Execute (inline
// kinds) or Service::ExecuteFrame (the worker path), against a real, small
// engine with no data directory and no sockets. Reaching a request kind
// needs a valid hello first: the seed corpus starts every stream with one.
//
// Oracle besides the sanitizers: every response the node produces must be a
// well-formed frame whose body parses as a Response within the node's frame
// limit; a malformed request must close the stream, as the connection does.
#include <capnp/message.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "cluster_state.h"
#include "fuzz_support.h"
#include "request_reader.h"
#include "service.h"
#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/frame.h"
#include "tagcache/security/auth.h"

namespace tagcache::fuzz {
namespace {

// Frames handled per input at most (each may be a heavy query).
constexpr int kMaxFrames = 64;
// The node's frame limit after the hello: small, so that the fuzzer also
// meets the "response too large" path.
constexpr uint32_t kMaxFrameBytes = 1u << 20;

// Checks that `out` holds whole, parseable response frames.
// With TAGCACHE_FUZZ_VERBOSE set, prints each response (to see how far a
// seed or a crash input gets).
void CheckResponses(const std::vector<uint8_t>& out, bool verbose) {
  size_t pos = 0;
  while (pos < out.size()) {
    if (out.size() - pos < protocol::kFrameHeaderBytes) std::abort();
    Result<protocol::FrameHeader> header =
        protocol::DecodeFrameHeader(out.data() + pos, kMaxFrameBytes);
    if (!header.ok()) std::abort();
    pos += protocol::kFrameHeaderBytes;
    if (out.size() - pos < header->body_bytes) std::abort();
    protocol::FrameBody body(header->body_bytes);
    std::memcpy(body.data(), out.data() + pos, header->body_bytes);
    pos += header->body_bytes;
    protocol::BodyReader reader(body);
    Result<wire::Response::Reader> resp = protocol::ParseResponse(reader);
    if (!resp.ok()) std::abort();
    if (verbose) {
      const std::string message = resp->getMessage();
      std::fprintf(stderr, "response id=%llu status=%u which=%u %s\n",
                   static_cast<unsigned long long>(resp->getId()),
                   static_cast<unsigned>(resp->getStatus()), static_cast<unsigned>(resp->which()),
                   message.c_str());
    }
  }
}

// The node: a fresh engine per input, so that every input replays alone.
// An engine starts a thread, which costs milliseconds under ASan: it is made
// only once a frame header is valid (most mutations fail before).
struct FuzzNode {
  FuzzNode()
      : engine(SmallEngineOptions()),
        cluster(nullptr, "", engine.shard_bits()),
        service(engine, cluster, Limits(), "fuzz-node", 1) {}
  static net::ServiceLimits Limits() {
    net::ServiceLimits limits;
    limits.max_frame_bytes = kMaxFrameBytes;
    limits.max_inflight = 1;
    limits.max_output_bytes = size_t{1} << 20;
    limits.max_connections = 1;
    return limits;
  }
  Engine engine;
  net::ClusterState cluster;
  net::Service service;
};

class StreamDriver {
 public:
  StreamDriver() = default;

  // Handles the frames in `data`; stops where the connection would close
  // (a malformed frame, a refused hello) or wait for more bytes.
  void Run(const uint8_t* data, size_t size) {
    for (int frames = 0; frames < kMaxFrames && size >= protocol::kFrameHeaderBytes; ++frames) {
      Result<protocol::FrameHeader> header = protocol::DecodeFrameHeader(data, max_frame_bytes_);
      if (!header.ok()) return;  // RejectMalformed: the connection closes
      const size_t body_bytes = header->body_bytes;
      if (size - protocol::kFrameHeaderBytes < body_bytes) return;  // waits for the rest
      if (!node_) node_ = std::make_unique<FuzzNode>();
      // Aligned, as Cap'n Proto requires (the connection copies too).
      body_ = protocol::FrameBody(static_cast<uint32_t>(body_bytes));
      std::memcpy(body_.data(), data + protocol::kFrameHeaderBytes, body_bytes);
      data += protocol::kFrameHeaderBytes + body_bytes;
      size -= protocol::kFrameHeaderBytes + body_bytes;
      if (!HandleFrame()) return;
    }
  }

  const std::vector<uint8_t>& output() const { return out_; }

 private:
  // False when the connection would close.
  bool HandleFrame() {
    kj::ArrayPtr<const capnp::word> words = body_.words();
    try {
      net::RequestReader reader(words);
      Result<wire::Request::Reader> parsed = reader.Parse();
      if (!parsed.ok()) return false;
      wire::Request::Reader req = *parsed;
      if (!hello_done_) return HandleHello(req);
      if (net::Service::RunsInline(req)) {
        capnp::MallocMessageBuilder mb;
        auto resp = mb.initRoot<wire::Response>();
        resp.setId(req.getId());
        (void)node_->service.Execute(req, resp);
        (void)node_->service.AppendResponse(mb, req.getId(), out_);
        return true;
      }
      // No auth file: the connection grants every role (access is tested in
      // tests/net/auth_node_test.cc).
      net::FrameResult result = node_->service.ExecuteFrame(words, security::RoleSet::All());
      out_.insert(out_.end(), result.frame.begin(), result.frame.end());
      return !result.malformed;
    } catch (const kj::Exception&) {
      return false;  // BAD_REQUEST and close
    } catch (const std::bad_alloc&) {
      return false;  // the connection closes; not a finding by itself
    }
  }

  bool HandleHello(wire::Request::Reader req) {
    if (req.which() != wire::Request::HELLO) return false;
    if (req.getHello().getVersion() != protocol::kProtocolVersion) return false;
    hello_done_ = true;
    max_frame_bytes_ = node_->service.limits().max_frame_bytes;
    capnp::MallocMessageBuilder mb;
    auto resp = mb.initRoot<wire::Response>();
    resp.setId(req.getId());
    node_->service.FillHello(resp);
    protocol::AppendFrame(mb, out_);
    return true;
  }

  std::unique_ptr<FuzzNode> node_;
  bool hello_done_ = false;
  uint32_t max_frame_bytes_ = protocol::kPreHelloMaxFrameBytes;
  protocol::FrameBody body_;
  std::vector<uint8_t> out_;
};

}  // namespace
}  // namespace tagcache::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  fuzz::SilenceLogsUnlessVerbose();
  fuzz::StreamDriver driver;
  driver.Run(data, size);
  static const bool verbose = std::getenv("TAGCACHE_FUZZ_VERBOSE") != nullptr;
  fuzz::CheckResponses(driver.output(), verbose);
  return 0;
}
