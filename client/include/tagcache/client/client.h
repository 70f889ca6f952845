// The tagcache client library: what online services link to talk to a
// tagcache cluster. A Client holds the cluster map, a small pool of
// pipelined TCP connections per node, and one internal I/O thread; every
// call has a sync form (blocks the caller) and an async form (a callback run
// on the I/O thread). Errors are tagcache::Status values, never exceptions.
//
// Thread-safety: every method of Client may be called from any thread,
// concurrently. Usage: docs/CLI.md (tagctl) and client/examples/.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tagcache/cluster/cluster_map.h"
#include "tagcache/common/status.h"

namespace tagcache::client {

using UserId = uint64_t;
using Timestamp = uint64_t;  // producer-chosen, normally ms since the Unix epoch

// How many replicas of a shard must acknowledge a write before it succeeds
// (docs/CLUSTER.md). During a move, every new owner must acknowledge too.
enum class WriteConcern : uint8_t {
  kOne,     // one replica
  kQuorum,  // half the replicas, rounded up: ceil(R / 2) (R = 2 survives one dead node)
  kAll,     // every replica
};

struct ClientOptions {
  // "host:port" (or "[v6]:port") of cluster nodes. Connect() uses the first
  // seed that answers the hello (the one-node cluster map). Default: local node.
  std::vector<std::string> seeds = {"127.0.0.1:7379"};
  // Bound on one TCP connect plus the hello exchange. Default: 2 s.
  std::chrono::milliseconds connect_timeout{2000};
  // Deadline of a request unless CallOptions overrides it; covers queueing,
  // sending and waiting for the answer. Default: 5 s.
  std::chrono::milliseconds request_timeout{5000};
  // TCP connections kept open to every node; requests are spread over them
  // round-robin. REQUIRES: >= 1. Default: 2.
  int connections_per_node = 2;
  // Requests sent and not yet answered, per connection. Further requests
  // wait in a per-connection queue. REQUIRES: >= 1. Default: 1024.
  size_t max_in_flight = 1024;
  // Requests waiting behind max_in_flight, per connection. Beyond it a call
  // fails at once with OVERLOADED. Default: 65,536.
  size_t max_queued = 65536;
  // Reconnection after a connection is lost: the first retry waits
  // reconnect_backoff_min, each failure doubles it up to reconnect_backoff_max
  // (with +-20% jitter). Default: 50 ms and 2 s.
  std::chrono::milliseconds reconnect_backoff_min{50};
  std::chrono::milliseconds reconnect_backoff_max{2000};
  // Largest response body accepted; a larger frame closes the connection
  // (IO_ERROR for the requests on it). Nodes never send more than their own
  // frame limit (64 MiB by default). Default: 64 MiB.
  uint32_t max_response_bytes = 64u << 20;
  // Sent in the hello; nodes put it in their logs. Default: "tagcache-client".
  std::string client_name = "tagcache-client";
  // Replicas that must acknowledge each write. Default: quorum.
  WriteConcern write_concern = WriteConcern::kQuorum;
  // A node whose connection failed is tried last (reads) and left out of
  // audience fan-outs (its shards are evaluated by their next replica) for
  // this long. Default: 2 s.
  std::chrono::milliseconds down_grace{2000};

  // Credentials sent in every hello: a token listed in the nodes' auth
  // files (docs/SECURITY.md). Empty: none, for nodes without --auth-file.
  // Tools read it with ResolveToken (tagcache/client/credentials.h).
  // Default: empty.
  std::string token;

  // TLS (1.2 or newer) to every node. Each node's certificate must chain to
  // ca_file and name the host of the address the client uses for it (a DNS
  // name, or an IP address in the subjectAltName). Default: off.
  struct Tls {
    bool enabled = false;
    std::string ca_file;    // PEM; REQUIRED when enabled
    std::string cert_file;  // client certificate, for nodes that require one (PEM)
    std::string key_file;   // its private key; REQUIRED with cert_file
  } tls;
};

// Per-call settings. Default: the ClientOptions values.
struct CallOptions {
  // Deadline of this call, from the moment it is made; 0 means
  // ClientOptions::request_timeout.
  std::chrono::milliseconds timeout{0};
};

enum class TagOp : uint8_t { kSet = 0, kClear = 1 };

struct Event {
  UserId user = 0;
  std::string tag;
  TagOp op = TagOp::kSet;
  Timestamp ts = 0;
};

struct TagHit {
  std::string tag;
  Timestamp ts = 0;  // the winning write's ts; 0 unless requested (with_ts)
};

struct UserTags {
  UserId user = 0;
  std::vector<TagHit> tags;
};

struct AudiencePage {
  std::vector<UserId> users;          // ascending
  std::optional<UserId> next_cursor;  // pass back to get the next page; empty when done
};

struct ShardBitmap {
  uint64_t shard = 0;
  uint64_t cardinality = 0;
  // Roaring portable serialization of the shard's offsets:
  // user = shard << shard_bits | offset.
  std::string portable;
};

struct TagCount {
  std::string tag;
  uint64_t count = 0;
};

struct ApplyEventsResult {
  uint64_t applied = 0;  // events that won and are now the user's state for the tag
  uint64_t ignored = 0;  // events older than the snapshot base or a held newer write
};

enum class SnapshotOutcome : uint8_t {
  kApplied,    // the shard's base is now this snapshot
  kDuplicate,  // same ts, same members as the base: a no-op
  kTieWon,     // same ts, different members, this one won the tie-break (operator error)
  kTieLost,    // same ts, different members, this one lost the tie-break (operator error)
};

struct CommitOutcome {
  uint64_t shards_emptied = 0;  // shards that became "empty as of ts"
  // Named shards whose part never arrived (ascending); empty on full success.
  std::vector<uint64_t> missing_shards;
};

struct KindStats {
  std::string kind;  // request kind, e.g. "getTags"
  uint64_t count = 0;
  uint64_t errors = 0;
  uint64_t p50_micros = 0;
  uint64_t p99_micros = 0;
};

// One node's StatsReply.
// One protective limit of a node (docs/OPERATIONS.md "Limits").
struct LimitStats {
  std::string limit;   // e.g. "output_bytes", "idle_timeout"
  uint64_t value = 0;  // the configured limit (bytes, ms or a count; 0: off)
  uint64_t count = 0;  // refusals, closes, clamps or pauses since start
};

struct NodeStats {
  std::string node;  // the address the client uses for it ("host:port")
  uint64_t shards = 0;
  uint64_t tags = 0;
  uint64_t known_users = 0;
  uint64_t assignments = 0;
  uint64_t bitmap_bytes = 0;
  uint64_t override_bytes = 0;
  uint64_t index_bytes = 0;
  uint64_t known_bytes = 0;
  std::vector<KindStats> requests;
  uint64_t connections = 0;
  uint64_t events_applied = 0;
  uint64_t events_ignored = 0;
  uint64_t writes_refused_future = 0;
  uint64_t snapshots_applied = 0;
  uint64_t snapshots_stale = 0;
  uint64_t snapshot_ties = 0;

  // Durability: zero / empty on a node without a data directory.
  std::string fsync_policy;  // "always", "batch" or "none"; empty: the node has no WAL
  uint64_t wal_segment = 0;  // the segment being appended to
  uint64_t wal_bytes = 0;    // appended since start
  uint64_t wal_bytes_since_checkpoint = 0;  // what a restart would replay
  uint64_t wal_records = 0;
  uint64_t wal_groups = 0;  // group commits: one write and at most one fsync each
  uint64_t fsyncs = 0;
  uint64_t fsync_micros_total = 0;  // divided by fsyncs: the mean
  uint64_t fsync_micros_max = 0;
  uint64_t writes_refused_io = 0;  // writes that could not be logged (disk full, I/O error)
  uint64_t checkpoints = 0;
  uint64_t checkpoint_failures = 0;
  uint64_t last_checkpoint_unix_ms = 0;  // 0: none since start
  uint64_t last_checkpoint_bytes = 0;
  uint64_t torn_tails_dropped = 0;  // at the last start
  uint64_t recovery_micros = 0;     // how long the last start took to recover the state

  // Memory limit.
  uint64_t memory_bytes = 0;      // resident set size of the node's process
  uint64_t max_memory_bytes = 0;  // 0: no limit
  uint64_t writes_refused_memory = 0;
  std::vector<LimitStats> limits;  // empty from a node that predates them
};

// A node's cluster map and its own id in it (map.epoch 0: a standalone node).
struct NodeMap {
  cluster::ClusterMap map;
  std::string node_id;
};

struct ShardDigest {
  uint64_t shard = 0;
  uint64_t digest = 0;  // 0: no state
};

// One node's CheckpointReply.
struct NodeCheckpoint {
  std::string node;  // the address the client uses for it ("host:port")
  std::string path;  // the checkpoint file, on the node's disk
  // WAL segments from this one on are replayed after the checkpoint at a start.
  uint64_t wal_segment = 0;
  uint64_t bytes = 0;
  uint64_t micros = 0;            // how long writing it took on the node
  uint64_t segments_removed = 0;  // WAL segments the checkpoint made obsolete and deleted
};

// Completion of an async call. Runs on the client's internal I/O thread:
// it must not block and must not throw; it may start other async calls but
// must not make sync calls (they fail with INTERNAL there). Called exactly
// once, also when the Client is destroyed first (IO_ERROR "client closed").
template <typename T>
using Callback = std::function<void(Result<T>)>;

// Errors, as tagcache::Status:
// - a node's answer keeps its status code and message (BAD_REQUEST for a
//   parse error, UNKNOWN_TAG, STALE_SNAPSHOT, FUTURE_TIMESTAMP, ...);
// - transport failures are IO_ERROR: "deadline exceeded ..." when the
//   deadline passed, "connection ... lost ..." or "node ... unavailable ..."
//   otherwise (IsDeadlineExceeded() tells the first kind apart);
// - a call beyond max_queued is OVERLOADED.
//
// Routing (docs/CLUSTER.md): the client holds the cluster map it fetched
// from a seed. Keyed reads go to the first live replica of the user's shard
// and fail over to the next on a transport error; writes go to every
// replica in parallel and succeed per ClientOptions::write_concern;
// audience queries go to every live node, each evaluating the shards it is
// the first live replica of. A WRONG_NODE answer (or a response from a
// newer epoch) refreshes the map and retries the call, backing off while a
// new map is being published node by node (about 2.5 s at most, within the
// call's deadline).
//
// Retries: a read (every call except ApplyEvents, LoadSnapshot,
// CommitSnapshot and Checkpoint) whose connection is lost after it was sent is re-sent
// once on another connection of the node if its deadline allows. Writes are
// never re-sent automatically after a transport error. After WRONG_NODE a
// write is re-planned and re-sent to every replica of the new plan, although
// replicas that accepted it the first time already applied it: re-sending a
// write is always harmless (the merge is idempotent), so a caller may retry
// writes itself too.
class Client {
 public:
  // Connects to the first seed that accepts a connection and answers the
  // hello, within options.connect_timeout per seed, and opens its
  // connection pool. BAD_REQUEST for invalid options or a malformed seed;
  // IO_ERROR naming every seed tried when none answered; the node's status
  // if it refused the hello (e.g. UNSUPPORTED_VERSION).
  static Result<std::unique_ptr<Client>> Connect(ClientOptions options);

  // Closes every connection; calls still pending complete with IO_ERROR
  // "client closed" (on the I/O thread) before the destructor returns.
  // REQUIRES: no call is made concurrently with or after destruction, and
  // it is not called from a callback.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // log2 of the users per shard, as the cluster reported it in the hello.
  int shard_bits() const;
  // The node addresses of the cluster map ("host:port"), in map order.
  std::vector<std::string> nodes() const;
  // The map the client routes with (epoch 0: one standalone node).
  cluster::ClusterMap cluster_map() const;
  // Fetches the map from every known node and the seeds and keeps the
  // newest. IO_ERROR when no node answered.
  Status RefreshMap();

  // ---- Sync calls: block the calling thread until the answer or deadline.

  // Round trip to every node; returns the slowest round-trip time.
  Result<std::chrono::microseconds> Ping(const CallOptions& call = {});
  // The user's tags (unknown user: empty), in no particular order; with
  // `with_ts`, each tag's ts.
  Result<std::vector<TagHit>> GetTags(UserId user, bool with_ts = false,
                                      const CallOptions& call = {});
  // For each of `tags`, whether the user has it. UNKNOWN_TAG names tags no
  // write ever created.
  Result<std::vector<bool>> HasTags(UserId user, const std::vector<std::string>& tags,
                                    const CallOptions& call = {});
  // GetTags for many users, in the order given.
  Result<std::vector<UserTags>> GetTagsBatch(const std::vector<UserId>& users, bool with_ts = false,
                                             const CallOptions& call = {});
  // Number of users matching the expression (grammar: docs/CLI.md).
  Result<uint64_t> Count(const std::string& expr, const CallOptions& call = {});
  // Matching users >= cursor, ascending, at most `limit` (>= 1).
  Result<AudiencePage> Audience(const std::string& expr, UserId cursor, uint32_t limit,
                                const CallOptions& call = {});
  // The audience as one portable Roaring bitmap per non-empty shard,
  // ascending by shard.
  Result<std::vector<ShardBitmap>> AudienceBitmaps(const std::string& expr,
                                                   const CallOptions& call = {});
  // The k most common tags among the audience, by count descending then
  // name ascending.
  Result<std::vector<TagCount>> TopTags(const std::string& expr, uint32_t k,
                                        const CallOptions& call = {});
  // Applies events by the merge rules; the batch is applied only if every
  // event is valid (BAD_REQUEST / FUTURE_TIMESTAMP name the event's index).
  Result<ApplyEventsResult> ApplyEvents(const std::vector<Event>& events,
                                        const CallOptions& call = {});
  // One shard's part of the snapshot of `tag` as of `ts`: `portable_bitmap`
  // is the Roaring portable serialization of the members' offsets in `shard`.
  Result<SnapshotOutcome> LoadSnapshot(const std::string& tag, Timestamp ts, uint64_t shard,
                                       const std::string& portable_bitmap,
                                       const CallOptions& call = {});
  // Completes the snapshot of `tag` as of `ts`; `shards` are those the load
  // sent members for. Every other shard becomes empty as of ts. Named shards
  // whose part the node never received are not an error here: the node
  // answers INCOMPLETE and this returns OK with them in missing_shards
  // (resend those parts, then commit again).
  Result<CommitOutcome> CommitSnapshot(const std::string& tag, Timestamp ts,
                                       const std::vector<uint64_t>& shards,
                                       const CallOptions& call = {});
  // One entry per node of the cluster map.
  Result<std::vector<NodeStats>> Stats(const CallOptions& call = {});
  // Admin: every node of the map writes a checkpoint of its state now (and
  // drops the WAL segments it covers); one entry per node, in map order.
  // Any node's failure fails the call with that node's status, e.g.
  // BAD_REQUEST from a node without a data directory. A checkpoint of a
  // large node can take minutes: pass a CallOptions::timeout to match.
  // Not re-sent after a lost connection (see Retries): the node may still
  // be writing the first one.
  Result<std::vector<NodeCheckpoint>> Checkpoint(const CallOptions& call = {});

  // ---- Admin calls to one node, by address (it need not be in the map).

  Result<NodeMap> GetNodeMap(const std::string& address, const CallOptions& call = {});
  // Installs `map` on the node, telling it its own id. WRONG_NODE when the
  // node already has a newer map.
  Status SetNodeMap(const std::string& address, const cluster::ClusterMap& map,
                    const std::string& node_id, const CallOptions& call = {});
  Result<std::vector<ShardDigest>> NodeShardDigests(const std::string& address,
                                                    const CallOptions& call = {});
  // The shards the node holds any state for, ascending (cheap: no digests).
  Result<std::vector<uint64_t>> NodeShards(const std::string& address,
                                           const CallOptions& call = {});
  // One shard's state (with every tag's rule-4 record) as an opaque,
  // self-checking byte string, for MergeShard on another node.
  Result<std::string> ExportShard(const std::string& address, uint64_t shard,
                                  const CallOptions& call = {});
  // Merges an ExportShard result into the node (logged there before it is
  // applied). WRONG_NODE when the node does not own the shard for writes.
  Status MergeShard(const std::string& address, const std::string& state,
                    const CallOptions& call = {});
  Result<NodeStats> NodeStatsOf(const std::string& address, const CallOptions& call = {});

  // ---- Async calls: return at once; `done` runs later on the I/O thread
  // (see Callback). Arguments are copied before the call returns.

  void PingAsync(Callback<std::chrono::microseconds> done, const CallOptions& call = {});
  void GetTagsAsync(UserId user, bool with_ts, Callback<std::vector<TagHit>> done,
                    const CallOptions& call = {});
  void HasTagsAsync(UserId user, const std::vector<std::string>& tags,
                    Callback<std::vector<bool>> done, const CallOptions& call = {});
  void GetTagsBatchAsync(const std::vector<UserId>& users, bool with_ts,
                         Callback<std::vector<UserTags>> done, const CallOptions& call = {});
  void CountAsync(const std::string& expr, Callback<uint64_t> done, const CallOptions& call = {});
  void AudienceAsync(const std::string& expr, UserId cursor, uint32_t limit,
                     Callback<AudiencePage> done, const CallOptions& call = {});
  void AudienceBitmapsAsync(const std::string& expr, Callback<std::vector<ShardBitmap>> done,
                            const CallOptions& call = {});
  void TopTagsAsync(const std::string& expr, uint32_t k, Callback<std::vector<TagCount>> done,
                    const CallOptions& call = {});
  void ApplyEventsAsync(const std::vector<Event>& events, Callback<ApplyEventsResult> done,
                        const CallOptions& call = {});
  void LoadSnapshotAsync(const std::string& tag, Timestamp ts, uint64_t shard,
                         const std::string& portable_bitmap, Callback<SnapshotOutcome> done,
                         const CallOptions& call = {});
  void CommitSnapshotAsync(const std::string& tag, Timestamp ts,
                           const std::vector<uint64_t>& shards, Callback<CommitOutcome> done,
                           const CallOptions& call = {});
  void StatsAsync(Callback<std::vector<NodeStats>> done, const CallOptions& call = {});
  void CheckpointAsync(Callback<std::vector<NodeCheckpoint>> done, const CallOptions& call = {});

  class Impl;  // private; public only so the implementation's helpers can name it

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when `status` is the IO_ERROR of a call whose deadline passed.
// TODO(api): becomes a StatusCode (kTimeout) once common/ has one.
bool IsDeadlineExceeded(const Status& status);

// Stable lower-case name of an outcome: "applied", "duplicate", "tie_won", "tie_lost".
const char* SnapshotOutcomeName(SnapshotOutcome outcome);

}  // namespace tagcache::client

namespace tagcache {
using client::Client;
using client::ClientOptions;
}  // namespace tagcache
