// The request layer of the node: turns one parsed wire::Request into Engine
// calls and fills the wire::Response. It knows nothing of sockets or event
// loops (parse, act, reply: the connection parses, this acts and replies).
// Also holds the node-wide shared state that every loop reads: limits,
// per-loop request statistics and the connection count. Thread-safe.
#pragma once

#include <capnp/message.h>
#include <kj/array.h>
#include <kj/exception.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "access.h"
#include "cluster_state.h"
#include "limit_stats.h"
#include "memory_guard.h"
#include "request_stats.h"
#include "tagcache/common/status.h"
#include "tagcache/durability/durability.h"
#include "tagcache/protocol/tagcache.capnp.h"
#include "tagcache/server/engine.h"

namespace tagcache::net {

// The node's limits as the connections and the request layer apply them
// (NodeOptions documents each; node.cc fills these in, clamped).
struct ServiceLimits {
  uint32_t max_frame_bytes = 0;
  uint32_t max_inflight = 0;
  size_t max_output_bytes = 0;       // reading pauses above it
  size_t max_output_hard_bytes = 0;  // the connection is closed above it
  uint32_t max_connections = 0;
  std::chrono::milliseconds hello_timeout{0};
  std::chrono::milliseconds write_timeout{0};
  std::chrono::milliseconds idle_timeout{0};  // 0: never
  uint32_t max_audience_page = 0;
};

// Default of the largest page an Audience request gets, whatever limit it
// asks for (the page says hasMore, so a client simply continues).
inline constexpr uint32_t kMaxAudiencePage = 1'000'000;
// Largest k a TopTags request gets.
inline constexpr uint32_t kMaxTopTags = 100'000;
// Batches up to these sizes run inline on the IO thread; larger go to workers.
inline constexpr size_t kInlineBatchUsers = 64;
inline constexpr size_t kInlineHasTags = 256;
// Error messages longer than this are cut (they may quote client input).
inline constexpr size_t kMaxMessageBytes = 1024;

// Result of a request executed off the IO thread.
struct FrameResult {
  std::vector<uint8_t> frame;  // one whole response frame (header + body)
  size_t kind = kKindMalformed;
  bool ok = false;
  StatusCode code = StatusCode::kBadRequest;  // as answered (malformed: BAD_REQUEST)
  bool malformed = false;  // the request could not be read: close the connection
};

// A write request decoded and checked, ready to be logged and applied.
struct PreparedWrite {
  enum Kind : uint8_t { kEvents, kSnapshotPart, kSnapshotCommit, kMerge } kind = kEvents;
  std::vector<Event> events;  // kEvents
  std::string tag;            // kSnapshotPart, kSnapshotCommit
  Timestamp ts = 0;
  uint64_t shard = 0;          // kSnapshotPart
  Roaring members;             // kSnapshotPart
  std::string bitmap_bytes;    // kSnapshotPart: the portable bytes as received, for the log
  std::vector<uint64_t> shards;  // kSnapshotCommit
  std::vector<TagState> merge_tags;  // kMerge: a peer's tags and one shard's state
  ShardState merge_state;
  std::string state_bytes;           // kMerge: as received, for the log
  // Holds the cluster's write gate from the ownership check until the write
  // is applied or refused, so that a map change waits for it.
  std::shared_ptr<void> gate;
};

class Service {
 public:
  // `engine` must outlive the Service. `loops` RequestStats are created, one
  // per event loop.
  // `cluster` must outlive the Service too.
  Service(Engine& engine, ClusterState& cluster, ServiceLimits limits, std::string node_name,
          size_t loops);
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  Engine& engine() { return engine_; }
  ClusterState& cluster() { return cluster_; }
  // Drops the state of every shard this node does not own under the current
  // (settled) map: after a move, and at start. Returns how many were dropped.
  size_t DropUnownedShards();
  const ServiceLimits& limits() const { return limits_; }
  // The accepted tokens (disabled without an auth file).
  Authenticator& auth() { return auth_; }
  RequestStats& loop_stats(size_t loop) { return *stats_[loop]; }
  size_t loop_count() const { return stats_.size(); }
  // Counts a limit's refusals. Thread-safe.
  void CountLimit(Limit limit) const { limit_counts_.Count(limit); }
  // How often `limit` refused, closed, clamped or throttled since start
  // (kExpression from the engine's counter, kMemory from the memory guard).
  // Thread-safe; kExpression walks no shards but reads the engine's counters.
  uint64_t LimitCount(Limit limit) const;
  // The configured value of `limit`, as Stats and the metrics report it
  // (bytes, milliseconds or a count; 0: off).
  uint64_t LimitValue(Limit limit) const;
  // Connections admitted since start. Thread-safe.
  uint64_t connections_accepted() const { return accepted_.load(std::memory_order_relaxed); }
  // The log and the memory guard, or null. For the metrics.
  durability::Durability* durability() const { return durability_; }
  MemoryGuard* memory_guard() const { return memory_; }
  void set_node_name(std::string name) { node_name_ = std::move(name); }

  // Connection admission: false (and nothing counted) when max_connections
  // are already served. Every true must be paired with one RemoveConnection().
  bool TryAddConnection();
  void RemoveConnection();
  uint64_t connections() const { return connections_.load(std::memory_order_relaxed); }

  // The counted kind of a request (kKindUnknown for a union member this
  // node does not know).
  static size_t KindOf(wire::Request::Reader req);

  // True when `req` is cheap enough (microseconds) to run on an IO thread.
  // May throw kj::Exception on a malformed message.
  static bool RunsInline(wire::Request::Reader req);

  // Fills `resp` (whose id the caller set) with the answer to `req` and
  // returns its status. Engine errors become error statuses; an exception
  // other than kj::Exception becomes INTERNAL. Throws kj::Exception when the
  // message is malformed (the caller answers BAD_REQUEST and closes).
  // Hello is the connection's business: here it is a duplicate (BAD_REQUEST).
  StatusCode Execute(wire::Request::Reader req, wire::Response::Builder resp);

  // Fills the HelloReply of a successful hello.
  void FillHello(wire::Response::Builder resp) const;

  // Parses `body` (the request frame's body) and executes it into one
  // response frame, or answers UNAUTHORIZED when `granted` (the
  // connection's effective roles) lacks the role its kind needs. Never
  // throws. Called on worker threads.
  FrameResult ExecuteFrame(kj::ArrayPtr<const capnp::word> body, security::RoleSet granted);

  // ExecuteFrame that may finish later: on a durable node a write is logged
  // first and `done` runs (on a worker) once it is durable and applied; a
  // checkpoint runs on the durability's thread. Other requests call `done`
  // before returning. `body` need not outlive the call. Never throws.
  // Access is checked as in ExecuteFrame, before anything is logged.
  void ExecuteFrameAsync(kj::ArrayPtr<const capnp::word> body, security::RoleSet granted,
                         std::function<void(FrameResult)> done);

  // Makes writes go through `durability` (logged before they are applied
  // and acknowledged) and enables Checkpoint. Call before serving.
  void set_durability(durability::Durability* durability) { durability_ = durability; }
  // Refuses writes with OVERLOADED while the node is over its memory limit.
  void set_memory_guard(MemoryGuard* guard) { memory_ = guard; }

  // Appends an error response frame with `id` and `status` to `out`.
  static void AppendErrorFrame(uint64_t id, const Status& status, std::vector<uint8_t>& out);

  // Appends the response in `message` (whose id is `id`) to `out`, or, when
  // its body would exceed max_frame_bytes (the limit announced in the
  // hello), an OVERLOADED error naming the size instead; false then.
  // Throws kj::Exception when the message does not fit any frame at all.
  bool AppendResponse(capnp::MessageBuilder& message, uint64_t id, std::vector<uint8_t>& out) const;

  // Sets the error status and (truncated) message of `resp`, and no result.
  static void SetError(wire::Response::Builder resp, const Status& status);

 private:
  StatusCode DoExecute(wire::Request::Reader req, wire::Response::Builder resp);
  Result<PreparedWrite> DecodeWrite(wire::Request::Reader req) const;
  StatusCode ApplyWrite(const PreparedWrite& write, wire::Response::Builder resp);
  // Memory admission: OVERLOADED while the node is over --max-memory.
  Status AdmitWrite(const PreparedWrite& write);
  static FrameResult MalformedResult(const kj::Exception& e);
  // Turns a filled-in response into a FrameResult.
  FrameResult Finish(capnp::MallocMessageBuilder& mb, uint64_t id, size_t kind, StatusCode code);
  // The frame answering request `id` of `kind` with `status` (not OK).
  FrameResult ErrorResult(uint64_t id, size_t kind, const Status& status);
  void FillStats(wire::Response::StatsReply::Builder out);

  StatusCode ExecuteClusterRequest(wire::Request::Reader req, wire::Response::Builder resp);

  Engine& engine_;
  ClusterState& cluster_;
  const ServiceLimits limits_;
  std::string node_name_;
  std::vector<std::unique_ptr<RequestStats>> stats_;
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> accepted_{0};
  mutable LimitCounters limit_counts_;
  Authenticator auth_;
  durability::Durability* durability_ = nullptr;
  MemoryGuard* memory_ = nullptr;
};

}  // namespace tagcache::net
