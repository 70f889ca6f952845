#include "wire_codec.h"

#include <capnp/message.h>
#include <kj/exception.h>

#include <utility>

#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/tag_hits.h"
#include "tagcache/cluster/map_codec.h"
#include "tagcache/protocol/frame.h"

namespace tagcache::client {
namespace {

capnp::Text::Reader AsText(const std::string& s) { return {s.data(), s.size()}; }

std::string ToString(capnp::Text::Reader text) { return {text.cStr(), text.size()}; }

std::vector<uint8_t> Finish(capnp::MessageBuilder& message) {
  std::vector<uint8_t> frame;
  protocol::AppendFrame(message, frame);
  return frame;
}

// Builds a request with `id` and lets `fill` set its union member.
template <typename Fill>
std::vector<uint8_t> Encode(uint64_t id, const Envelope& env, Fill fill,
                            uint32_t first_segment_words = 1024) {
  capnp::MallocMessageBuilder message(first_segment_words);
  auto request = message.initRoot<wire::Request>();
  request.setId(id);
  request.setEpoch(env.epoch);
  if (!env.down.empty()) {
    auto down = request.initDown(static_cast<unsigned>(env.down.size()));
    for (unsigned i = 0; i < env.down.size(); ++i) down.set(i, AsText(env.down[i]));
  }
  fill(request);
  return Finish(message);
}

// The common decoder shape: status, then union member, then `read`.
template <typename T, typename Read>
Result<T> Decode(const wire::Response::Reader& response, wire::Response::Which which,
                 const char* kind, Read read) {
  try {
    Status status = ResponseStatus(response);
    if (!status.ok()) return status;
    if (response.which() != which) {
      return Status::Internal(std::string("the node answered a ") + kind +
                              " request with another kind of response");
    }
    return read();
  } catch (const kj::Exception& e) {
    return Status::IoError(std::string("malformed ") + kind +
                           " response: " + e.getDescription().cStr());
  }
}

std::vector<TagHit> ReadHits(wire::TagHits::Reader hits) {
  std::vector<TagHit> out;
  out.reserve(32);
  protocol::ForEachTagHit(hits, [&](std::string_view name, uint64_t ts) {
    out.push_back(TagHit{std::string(name), ts});
  });
  return out;
}

}  // namespace

std::vector<uint8_t> EncodeHello(uint64_t id, const std::string& client_name,
                                 const std::string& token) {
  return Encode(id, Envelope{}, [&](wire::Request::Builder r) {
    auto hello = r.initHello();
    hello.setVersion(protocol::kProtocolVersion);
    hello.setClient(AsText(client_name));
    if (!token.empty()) hello.setToken(AsText(token));
  });
}

std::vector<uint8_t> EncodePing(uint64_t id, const Envelope& env) {
  return Encode(id, env, [](wire::Request::Builder r) { r.setPing(); });
}

std::vector<uint8_t> EncodeGetTags(uint64_t id, const Envelope& env, UserId user, bool with_ts) {
  return Encode(id, env, [&](wire::Request::Builder r) {
    auto get = r.initGetTags();
    get.setUser(user);
    get.setWithTs(with_ts);
  });
}

std::vector<uint8_t> EncodeHasTags(uint64_t id, const Envelope& env, UserId user, const std::vector<std::string>& tags) {
  return Encode(id, env, [&](wire::Request::Builder r) {
    auto has = r.initHasTags();
    has.setUser(user);
    auto list = has.initTags(static_cast<unsigned>(tags.size()));
    for (size_t i = 0; i < tags.size(); ++i) list.set(static_cast<unsigned>(i), AsText(tags[i]));
  });
}

std::vector<uint8_t> EncodeGetTagsBatch(uint64_t id, const Envelope& env, const std::vector<UserId>& users,
                                        bool with_ts) {
  const auto words = static_cast<uint32_t>(users.size() + 64);
  return Encode(
      id, env,
      [&](wire::Request::Builder r) {
        auto batch = r.initGetTagsBatch();
        batch.setWithTs(with_ts);
        auto list = batch.initUsers(static_cast<unsigned>(users.size()));
        for (size_t i = 0; i < users.size(); ++i) list.set(static_cast<unsigned>(i), users[i]);
      },
      words);
}

std::vector<uint8_t> EncodeCount(uint64_t id, const Envelope& env, const std::string& expr) {
  return Encode(id, env, [&](wire::Request::Builder r) { r.initCount().setExpr(AsText(expr)); });
}

std::vector<uint8_t> EncodeAudience(uint64_t id, const Envelope& env, const std::string& expr, UserId cursor,
                                    uint32_t limit) {
  return Encode(id, env, [&](wire::Request::Builder r) {
    auto audience = r.initAudience();
    audience.setExpr(AsText(expr));
    audience.setCursor(cursor);
    audience.setLimit(limit);
  });
}

std::vector<uint8_t> EncodeAudienceBitmaps(uint64_t id, const Envelope& env, const std::string& expr) {
  return Encode(id, env,
                [&](wire::Request::Builder r) { r.initAudienceBitmaps().setExpr(AsText(expr)); });
}

std::vector<uint8_t> EncodeTopTags(uint64_t id, const Envelope& env, const std::string& expr,
                                   uint32_t k, bool all) {
  return Encode(id, env, [&](wire::Request::Builder r) {
    auto top = r.initTopTags();
    top.setExpr(AsText(expr));
    top.setK(k);
    top.setAll(all);
  });
}

std::vector<uint8_t> EncodeApplyEvents(uint64_t id, const Envelope& env, const std::vector<Event>& events) {
  size_t text_words = 0;
  for (const Event& e : events) text_words += e.tag.size() / 8 + 2;
  const auto words = static_cast<uint32_t>(events.size() * 4 + text_words + 64);
  return Encode(
      id, env,
      [&](wire::Request::Builder r) {
        auto list = r.initApplyEvents().initEvents(static_cast<unsigned>(events.size()));
        for (size_t i = 0; i < events.size(); ++i) {
          auto e = list[static_cast<unsigned>(i)];
          e.setUser(events[i].user);
          e.setTag(AsText(events[i].tag));
          e.setOp(events[i].op == TagOp::kClear ? wire::TagOp::CLEAR : wire::TagOp::SET);
          e.setTs(events[i].ts);
        }
      },
      words);
}

std::vector<uint8_t> EncodeLoadSnapshot(uint64_t id, const Envelope& env, const std::string& tag, Timestamp ts,
                                        uint64_t shard, const std::string& portable_bitmap) {
  // One segment for the whole bitmap: no copy when the first segment overflows.
  const auto words = static_cast<uint32_t>(portable_bitmap.size() / 8 + tag.size() / 8 + 64);
  return Encode(
      id, env,
      [&](wire::Request::Builder r) {
        auto load = r.initLoadSnapshot();
        load.setTag(AsText(tag));
        load.setTs(ts);
        load.setShard(shard);
        load.setBitmap(capnp::Data::Reader(
            reinterpret_cast<const kj::byte*>(portable_bitmap.data()), portable_bitmap.size()));
      },
      words);
}

std::vector<uint8_t> EncodeCommitSnapshot(uint64_t id, const Envelope& env, const std::string& tag, Timestamp ts,
                                          const std::vector<uint64_t>& shards) {
  return Encode(
      id, env,
      [&](wire::Request::Builder r) {
        auto commit = r.initCommitSnapshot();
        commit.setTag(AsText(tag));
        commit.setTs(ts);
        auto list = commit.initShards(static_cast<unsigned>(shards.size()));
        for (size_t i = 0; i < shards.size(); ++i) list.set(static_cast<unsigned>(i), shards[i]);
      },
      static_cast<uint32_t>(shards.size() + 64));
}

std::vector<uint8_t> EncodeStats(uint64_t id, const Envelope& env) {
  return Encode(id, env, [](wire::Request::Builder r) { r.setStats(); });
}

std::vector<uint8_t> EncodeCheckpoint(uint64_t id, const Envelope& env) {
  return Encode(id, env, [](wire::Request::Builder r) { r.setCheckpoint(); });
}

std::vector<uint8_t> EncodeGetClusterMap(uint64_t id, const Envelope& env) {
  return Encode(id, env, [](wire::Request::Builder r) { r.setGetClusterMap(); });
}

std::vector<uint8_t> EncodeSetClusterMap(uint64_t id, const Envelope& env,
                                         const cluster::ClusterMap& map,
                                         const std::string& node_id) {
  return Encode(id, env, [&](wire::Request::Builder r) {
    auto set = r.initSetClusterMap();
    cluster::WriteMap(map, set.initMap());
    set.setNodeId(AsText(node_id));
  });
}

std::vector<uint8_t> EncodeShardDigests(uint64_t id, const Envelope& env) {
  return Encode(id, env, [](wire::Request::Builder r) { r.setShardDigests(); });
}

std::vector<uint8_t> EncodeListShards(uint64_t id, const Envelope& env) {
  return Encode(id, env, [](wire::Request::Builder r) { r.setListShards(); });
}

std::vector<uint8_t> EncodeExportShard(uint64_t id, const Envelope& env, uint64_t shard) {
  return Encode(id, env, [&](wire::Request::Builder r) { r.initExportShard().setShard(shard); });
}

std::vector<uint8_t> EncodeMergeShard(uint64_t id, const Envelope& env, const std::string& state) {
  return Encode(
      id, env,
      [&](wire::Request::Builder r) {
        r.initMergeShard().setState(capnp::Data::Reader(
            reinterpret_cast<const kj::byte*>(state.data()), state.size()));
      },
      static_cast<uint32_t>(state.size() / 8 + 64));
}

uint64_t ResponseEpoch(const wire::Response::Reader& response) {
  try {
    return response.getEpoch();
  } catch (const kj::Exception&) {
    return 0;
  }
}

Status ResponseStatus(const wire::Response::Reader& response) {
  const wire::Status status = response.getStatus();
  if (status == wire::Status::OK) return Status::Ok();
  std::string message = ToString(response.getMessage());
  if (message.empty()) message = "(no message)";
  return Status(protocol::FromWire(status), std::move(message));
}

Result<HelloInfo> DecodeHello(const wire::Response::Reader& response) {
  return Decode<HelloInfo>(response, wire::Response::HELLO, "hello", [&] {
    auto hello = response.getHello();
    HelloInfo info;
    info.version = hello.getVersion();
    info.node = ToString(hello.getNode());
    info.shard_bits = hello.getShardBits();
    info.max_frame_bytes = hello.getMaxFrameBytes();
    return info;
  });
}

Status DecodePing(const wire::Response::Reader& response) {
  try {
    return ResponseStatus(response);
  } catch (const kj::Exception& e) {
    return Status::IoError(std::string("malformed ping response: ") + e.getDescription().cStr());
  }
}

Result<std::vector<TagHit>> DecodeGetTags(const wire::Response::Reader& response) {
  return Decode<std::vector<TagHit>>(response, wire::Response::GET_TAGS, "getTags",
                                     [&] { return ReadHits(response.getGetTags()); });
}

Result<std::vector<bool>> DecodeHasTags(const wire::Response::Reader& response) {
  return Decode<std::vector<bool>>(response, wire::Response::HAS_TAGS, "hasTags", [&] {
    auto list = response.getHasTags();
    std::vector<bool> out;
    out.reserve(list.size());
    for (bool b : list) out.push_back(b);
    return out;
  });
}

Result<std::vector<UserTags>> DecodeGetTagsBatch(const wire::Response::Reader& response) {
  return Decode<std::vector<UserTags>>(
      response, wire::Response::GET_TAGS_BATCH, "getTagsBatch", [&] {
        auto list = response.getGetTagsBatch();
        std::vector<UserTags> out;
        out.reserve(list.size());
        for (auto user : list) out.push_back(UserTags{user.getUser(), ReadHits(user.getTags())});
        return out;
      });
}

Result<uint64_t> DecodeCount(const wire::Response::Reader& response) {
  return Decode<uint64_t>(response, wire::Response::COUNT, "count",
                          [&] { return response.getCount(); });
}

Result<AudiencePage> DecodeAudience(const wire::Response::Reader& response) {
  return Decode<AudiencePage>(response, wire::Response::AUDIENCE, "audience", [&] {
    auto page = response.getAudience();
    AudiencePage out;
    auto users = page.getUsers();
    out.users.reserve(users.size());
    for (uint64_t u : users) out.users.push_back(u);
    if (page.getHasMore()) out.next_cursor = page.getNextCursor();
    return out;
  });
}

Result<std::vector<ShardBitmap>> DecodeAudienceBitmaps(const wire::Response::Reader& response) {
  return Decode<std::vector<ShardBitmap>>(
      response, wire::Response::AUDIENCE_BITMAPS, "audienceBitmaps", [&] {
        auto list = response.getAudienceBitmaps();
        std::vector<ShardBitmap> out;
        out.reserve(list.size());
        for (auto shard : list) {
          auto data = shard.getBitmap();
          out.push_back(
              ShardBitmap{shard.getShard(), shard.getCardinality(),
                          std::string(reinterpret_cast<const char*>(data.begin()), data.size())});
        }
        return out;
      });
}

Result<std::vector<TagCount>> DecodeTopTags(const wire::Response::Reader& response) {
  return Decode<std::vector<TagCount>>(response, wire::Response::TOP_TAGS, "topTags", [&] {
    auto list = response.getTopTags();
    std::vector<TagCount> out;
    out.reserve(list.size());
    for (auto tc : list) out.push_back(TagCount{ToString(tc.getTag()), tc.getCount()});
    return out;
  });
}

Result<ApplyEventsResult> DecodeApplyEvents(const wire::Response::Reader& response) {
  return Decode<ApplyEventsResult>(response, wire::Response::APPLY_EVENTS, "applyEvents", [&] {
    auto reply = response.getApplyEvents();
    return ApplyEventsResult{reply.getApplied(), reply.getIgnored()};
  });
}

Result<SnapshotOutcome> DecodeLoadSnapshot(const wire::Response::Reader& response) {
  using Outcome = wire::Response::LoadSnapshotReply::Outcome;
  return Decode<SnapshotOutcome>(
      response, wire::Response::LOAD_SNAPSHOT, "loadSnapshot", [&]() -> Result<SnapshotOutcome> {
        switch (response.getLoadSnapshot().getOutcome()) {
          case Outcome::APPLIED:
            return SnapshotOutcome::kApplied;
          case Outcome::DUPLICATE:
            return SnapshotOutcome::kDuplicate;
          case Outcome::TIE_WON:
            return SnapshotOutcome::kTieWon;
          case Outcome::TIE_LOST:
            return SnapshotOutcome::kTieLost;
        }
        return Status::Internal("the node answered loadSnapshot with an unknown outcome");
      });
}

Result<CommitOutcome> DecodeCommitSnapshot(const wire::Response::Reader& response) {
  // INCOMPLETE comes with the reply filled in (docs/PROTOCOL.md §6): the
  // missing shards are the answer, not a failure of the call.
  auto read = [&] {
    auto reply = response.getCommitSnapshot();
    CommitOutcome out;
    out.shards_emptied = reply.getShardsEmptied();
    for (uint64_t shard : reply.getMissingShards()) out.missing_shards.push_back(shard);
    return out;
  };
  try {
    if (response.getStatus() == wire::Status::INCOMPLETE &&
        response.which() == wire::Response::COMMIT_SNAPSHOT) {
      return read();
    }
  } catch (const kj::Exception& e) {
    return Status::IoError(std::string("malformed commitSnapshot response: ") +
                           e.getDescription().cStr());
  }
  return Decode<CommitOutcome>(response, wire::Response::COMMIT_SNAPSHOT, "commitSnapshot", read);
}

Result<NodeStats> DecodeStats(const wire::Response::Reader& response) {
  return Decode<NodeStats>(response, wire::Response::STATS, "stats", [&] {
    auto s = response.getStats();
    NodeStats out;
    out.shards = s.getShards();
    out.tags = s.getTags();
    out.known_users = s.getKnownUsers();
    out.assignments = s.getAssignments();
    out.bitmap_bytes = s.getBitmapBytes();
    out.override_bytes = s.getOverrideBytes();
    out.index_bytes = s.getIndexBytes();
    out.known_bytes = s.getKnownBytes();
    for (auto k : s.getRequests()) {
      out.requests.push_back(KindStats{ToString(k.getKind()), k.getCount(), k.getErrors(),
                                       k.getP50Micros(), k.getP99Micros()});
    }
    out.connections = s.getConnections();
    out.events_applied = s.getEventsApplied();
    out.events_ignored = s.getEventsIgnored();
    out.writes_refused_future = s.getWritesRefusedFuture();
    out.snapshots_applied = s.getSnapshotsApplied();
    out.snapshots_stale = s.getSnapshotsStale();
    out.snapshot_ties = s.getSnapshotTies();
    out.fsync_policy = ToString(s.getFsyncPolicy());
    out.wal_segment = s.getWalSegment();
    out.wal_bytes = s.getWalBytes();
    out.wal_bytes_since_checkpoint = s.getWalBytesSinceCheckpoint();
    out.wal_records = s.getWalRecords();
    out.wal_groups = s.getWalGroups();
    out.fsyncs = s.getFsyncs();
    out.fsync_micros_total = s.getFsyncMicrosTotal();
    out.fsync_micros_max = s.getFsyncMicrosMax();
    out.writes_refused_io = s.getWritesRefusedIo();
    out.checkpoints = s.getCheckpoints();
    out.checkpoint_failures = s.getCheckpointFailures();
    out.last_checkpoint_unix_ms = s.getLastCheckpointUnixMs();
    out.last_checkpoint_bytes = s.getLastCheckpointBytes();
    out.torn_tails_dropped = s.getTornTailsDropped();
    out.recovery_micros = s.getRecoveryMicros();
    out.memory_bytes = s.getMemoryBytes();
    out.max_memory_bytes = s.getMaxMemoryBytes();
    out.writes_refused_memory = s.getWritesRefusedMemory();
    for (auto l : s.getLimits()) {
      out.limits.push_back(LimitStats{ToString(l.getLimit()), l.getValue(), l.getCount()});
    }
    return out;
  });
}

Result<NodeCheckpoint> DecodeCheckpoint(const wire::Response::Reader& response) {
  return Decode<NodeCheckpoint>(response, wire::Response::CHECKPOINT, "checkpoint", [&] {
    auto reply = response.getCheckpoint();
    NodeCheckpoint out;
    out.path = ToString(reply.getPath());
    out.wal_segment = reply.getWalSegment();
    out.bytes = reply.getBytes();
    out.micros = reply.getMicros();
    out.segments_removed = reply.getSegmentsRemoved();
    return out;
  });
}

Result<NodeMap> DecodeClusterMap(const wire::Response::Reader& response) {
  return Decode<NodeMap>(response, wire::Response::CLUSTER_MAP, "getClusterMap",
                         [&]() -> Result<NodeMap> {
                           auto reply = response.getClusterMap();
                           Result<cluster::ClusterMap> map = cluster::ReadMap(reply.getMap());
                           if (!map.ok()) {
                             return Status::IoError("the node sent an invalid cluster map: " +
                                                    map.status().message());
                           }
                           return NodeMap{std::move(*map), ToString(reply.getNodeId())};
                         });
}

Result<std::vector<ShardDigest>> DecodeShardDigests(const wire::Response::Reader& response) {
  return Decode<std::vector<ShardDigest>>(
      response, wire::Response::SHARD_DIGESTS, "shardDigests", [&] {
        std::vector<ShardDigest> out;
        auto list = response.getShardDigests();
        out.reserve(list.size());
        for (auto d : list) out.push_back(ShardDigest{d.getShard(), d.getDigest()});
        return out;
      });
}

Result<std::string> DecodeExportShard(const wire::Response::Reader& response) {
  return Decode<std::string>(response, wire::Response::EXPORT_SHARD, "exportShard", [&] {
    auto data = response.getExportShard();
    return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
  });
}

Result<std::vector<uint64_t>> DecodeListShards(const wire::Response::Reader& response) {
  return Decode<std::vector<uint64_t>>(response, wire::Response::LIST_SHARDS, "listShards", [&] {
    auto list = response.getListShards();
    std::vector<uint64_t> out;
    out.reserve(list.size());
    for (uint64_t shard : list) out.push_back(shard);
    return out;
  });
}

Status DecodeMergeShard(const wire::Response::Reader& response) {
  Result<bool> r = Decode<bool>(response, wire::Response::MERGE_SHARD, "mergeShard",
                                [] { return true; });
  return r.ok() ? Status::Ok() : r.status();
}

Status DecodeSetClusterMap(const wire::Response::Reader& response) {
  Result<bool> r = Decode<bool>(response, wire::Response::NONE, "setClusterMap",
                                [] { return true; });
  return r.ok() ? Status::Ok() : r.status();
}

}  // namespace tagcache::client
