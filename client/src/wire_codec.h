// Client side of the wire protocol: builds request frames (header + Cap'n
// Proto body) and turns a node's Response into the public result types.
// Pure functions, no I/O. Decoders check the status first (a non-OK status
// becomes a Status with the node's code and message), then the union member;
// a response of another kind is INTERNAL. Decoders never throw: malformed
// content that Cap'n Proto refuses becomes IO_ERROR.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"
#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::client {

// The routing context every request carries: the epoch of the map it was
// routed with (0: none) and, for audience queries, the node ids the client
// treats as down (the node then evaluates the shards they would have).
struct Envelope {
  uint64_t epoch = 0;
  std::vector<std::string> down;
};

// What a node said about itself in its hello reply.
struct HelloInfo {
  uint16_t version = 0;
  std::string node;
  int shard_bits = 0;
  uint32_t max_frame_bytes = 0;
};

std::vector<uint8_t> EncodeHello(uint64_t id, const std::string& client_name,
                                 const std::string& token = "");
std::vector<uint8_t> EncodePing(uint64_t id, const Envelope& env);
std::vector<uint8_t> EncodeGetTags(uint64_t id, const Envelope& env, UserId user, bool with_ts);
std::vector<uint8_t> EncodeHasTags(uint64_t id, const Envelope& env, UserId user, const std::vector<std::string>& tags);
std::vector<uint8_t> EncodeGetTagsBatch(uint64_t id, const Envelope& env, const std::vector<UserId>& users,
                                        bool with_ts);
std::vector<uint8_t> EncodeCount(uint64_t id, const Envelope& env, const std::string& expr);
std::vector<uint8_t> EncodeAudience(uint64_t id, const Envelope& env, const std::string& expr, UserId cursor,
                                    uint32_t limit);
std::vector<uint8_t> EncodeAudienceBitmaps(uint64_t id, const Envelope& env, const std::string& expr);
// `all`: every tag with a non-zero count (a client merging several nodes).
std::vector<uint8_t> EncodeTopTags(uint64_t id, const Envelope& env, const std::string& expr,
                                   uint32_t k, bool all);
std::vector<uint8_t> EncodeApplyEvents(uint64_t id, const Envelope& env, const std::vector<Event>& events);
std::vector<uint8_t> EncodeLoadSnapshot(uint64_t id, const Envelope& env, const std::string& tag, Timestamp ts,
                                        uint64_t shard, const std::string& portable_bitmap);
std::vector<uint8_t> EncodeCommitSnapshot(uint64_t id, const Envelope& env, const std::string& tag, Timestamp ts,
                                          const std::vector<uint64_t>& shards);
std::vector<uint8_t> EncodeStats(uint64_t id, const Envelope& env);
std::vector<uint8_t> EncodeCheckpoint(uint64_t id, const Envelope& env);
std::vector<uint8_t> EncodeGetClusterMap(uint64_t id, const Envelope& env);
std::vector<uint8_t> EncodeSetClusterMap(uint64_t id, const Envelope& env,
                                         const cluster::ClusterMap& map,
                                         const std::string& node_id);
std::vector<uint8_t> EncodeShardDigests(uint64_t id, const Envelope& env);
std::vector<uint8_t> EncodeListShards(uint64_t id, const Envelope& env);
std::vector<uint8_t> EncodeExportShard(uint64_t id, const Envelope& env, uint64_t shard);
std::vector<uint8_t> EncodeMergeShard(uint64_t id, const Envelope& env, const std::string& state);

// The node's map epoch as the response reports it (0: none or an old node).
uint64_t ResponseEpoch(const wire::Response::Reader& response);

// The node's status and message as a Status (OK when the status is ok).
Status ResponseStatus(const wire::Response::Reader& response);

Result<HelloInfo> DecodeHello(const wire::Response::Reader& response);
Status DecodePing(const wire::Response::Reader& response);
Result<std::vector<TagHit>> DecodeGetTags(const wire::Response::Reader& response);
Result<std::vector<bool>> DecodeHasTags(const wire::Response::Reader& response);
Result<std::vector<UserTags>> DecodeGetTagsBatch(const wire::Response::Reader& response);
Result<uint64_t> DecodeCount(const wire::Response::Reader& response);
Result<AudiencePage> DecodeAudience(const wire::Response::Reader& response);
Result<std::vector<ShardBitmap>> DecodeAudienceBitmaps(const wire::Response::Reader& response);
Result<std::vector<TagCount>> DecodeTopTags(const wire::Response::Reader& response);
Result<ApplyEventsResult> DecodeApplyEvents(const wire::Response::Reader& response);
Result<SnapshotOutcome> DecodeLoadSnapshot(const wire::Response::Reader& response);
// INCOMPLETE with the reply present is OK with missing_shards filled in.
Result<CommitOutcome> DecodeCommitSnapshot(const wire::Response::Reader& response);
Result<NodeStats> DecodeStats(const wire::Response::Reader& response);
Result<NodeCheckpoint> DecodeCheckpoint(const wire::Response::Reader& response);
Result<NodeMap> DecodeClusterMap(const wire::Response::Reader& response);
Result<std::vector<ShardDigest>> DecodeShardDigests(const wire::Response::Reader& response);
Result<std::string> DecodeExportShard(const wire::Response::Reader& response);
Result<std::vector<uint64_t>> DecodeListShards(const wire::Response::Reader& response);
Status DecodeMergeShard(const wire::Response::Reader& response);
Status DecodeSetClusterMap(const wire::Response::Reader& response);

}  // namespace tagcache::client
