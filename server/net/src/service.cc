#include "service.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string_view>
#include <utility>

#include "request_reader.h"
#include "tagcache/protocol/bitmap.h"
#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/tag_hits.h"
#include "tagcache/protocol/frame.h"
#include "tagcache/cluster/map_codec.h"
#include "tagcache/storage/state_transfer.h"
#include "tagcache/storage/wal_records.h"

namespace tagcache::net {
namespace {

std::string_view HitName(const TagHit& hit) { return hit.tag; }
uint64_t HitTs(const TagHit& hit) { return hit.ts; }


using wire::Request;
using wire::Response;

std::string_view ToView(capnp::Text::Reader text) { return {text.begin(), text.size()}; }

// Copies `s` into a Text field through its init function (no NUL-terminated
// source needed, unlike Text::Reader's constructor).
template <typename Init>
void CopyText(std::string_view s, Init&& init) {
  auto text = init(static_cast<unsigned>(s.size()));
  if (!s.empty()) std::memcpy(text.begin(), s.data(), s.size());
}

enum class Access : uint8_t { kRead, kWrite };

Status WrongNode(std::string msg) { return Status(StatusCode::kWrongNode, std::move(msg)); }

// WRONG_NODE unless the client routed with this node's map. An older
// client map must be refreshed (during a move, writes must reach the new
// owners too); a newer one means this node has not been given it yet (a
// map is published node by node) and the client retries shortly. Judging a
// request by another map than its sender's would count shards twice or
// not at all.
Status CheckEpoch(const ClusterState::View& view, uint64_t request_epoch) {
  if (request_epoch == 0 || request_epoch == view.epoch()) {
    if (!view.clustered() || view.member) return Status::Ok();
    return WrongNode(DescribeNode(view) + " owns no shard");
  }
  if (request_epoch < view.epoch()) {
    return WrongNode("the request was routed with cluster map epoch " +
                     std::to_string(request_epoch) + " but " + DescribeNode(view) +
                     " has a newer map: refresh it");
  }
  return WrongNode("the request was routed with cluster map epoch " +
                   std::to_string(request_epoch) + " but " + DescribeNode(view) +
                   " has not received that map yet: retry shortly");
}

std::string OwnerList(const cluster::Placement& p, const std::vector<uint32_t>& owners) {
  std::string out;
  for (uint32_t n : owners) out += (out.empty() ? "" : ", ") + p.members()[n].id;
  return out;
}

// WRONG_NODE unless this node serves `shard` for `access`. A standalone node
// serves every shard.
Status CheckShard(const ClusterState::View& view, uint64_t shard, Access access) {
  if (!view.clustered()) return Status::Ok();
  if (!view.member) return WrongNode(DescribeNode(view) + " owns no shard");
  const cluster::Placement& p = *view.placement;
  std::vector<uint32_t> owners = access == Access::kRead ? p.ReadOwners(shard) : p.WriteOwners(shard);
  if (std::find(owners.begin(), owners.end(), view.self) != owners.end()) return Status::Ok();
  return WrongNode(DescribeNode(view) + " does not own shard " + std::to_string(shard) + " for " +
                   (access == Access::kRead ? "reads" : "writes") + "; its owners are " +
                   OwnerList(p, owners));
}

// The shards an audience query evaluates here: those for which this node is
// the first read owner that the client does not treat as down, so every
// shard is counted exactly once across the cluster.
ShardFilter AudienceFilter(const ClusterState::View& view,
                           capnp::List<capnp::Text>::Reader down_in) {
  if (!view.clustered()) return {};
  if (!view.member) return [](uint64_t) { return false; };
  std::vector<std::string> down;
  for (auto d : down_in) down.emplace_back(d.begin(), d.size());
  return [placement = view.placement, self = view.self, down = std::move(down)](uint64_t shard) {
    for (uint32_t owner : placement->ReadOwners(shard)) {
      const std::string& id = placement->members()[owner].id;
      if (std::find(down.begin(), down.end(), id) != down.end()) continue;
      return owner == self;
    }
    return false;
  };
}

bool IsRouted(Request::Which which) {
  switch (which) {
    case Request::GET_TAGS:
    case Request::HAS_TAGS:
    case Request::GET_TAGS_BATCH:
    case Request::COUNT:
    case Request::AUDIENCE:
    case Request::AUDIENCE_BITMAPS:
    case Request::TOP_TAGS:
    case Request::APPLY_EVENTS:
    case Request::LOAD_SNAPSHOT:
    case Request::COMMIT_SNAPSHOT:
    case Request::MERGE_SHARD:
      return true;
    default:
      return false;
  }
}

std::string DescribeKjException(const kj::Exception& e) {
  auto description = e.getDescription();
  std::string text(description.begin(), description.size());
  if (text.size() > 200) text.resize(200);
  return text;
}

}  // namespace

Service::Service(Engine& engine, ClusterState& cluster, ServiceLimits limits,
                 std::string node_name, size_t loops)
    : engine_(engine), cluster_(cluster), limits_(limits), node_name_(std::move(node_name)) {
  stats_.reserve(loops);
  for (size_t i = 0; i < loops; ++i) stats_.push_back(std::make_unique<RequestStats>());
}

bool Service::TryAddConnection() {
  uint64_t n = connections_.fetch_add(1, std::memory_order_relaxed);
  if (n >= limits_.max_connections) {
    connections_.fetch_sub(1, std::memory_order_relaxed);
    CountLimit(Limit::kConnections);
    return false;
  }
  accepted_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

uint64_t Service::LimitCount(Limit limit) const {
  switch (limit) {
    case Limit::kExpression:
      return engine_.Counters().expr_limit_refusals;
    case Limit::kMemory:
      return memory_ ? memory_->refused() : 0;
    default:
      return limit_counts_.Get(limit);
  }
}

uint64_t Service::LimitValue(Limit limit) const {
  const ExprLimits& expr = engine_.expr_limits();
  switch (limit) {
    case Limit::kConnections: return limits_.max_connections;
    case Limit::kPreHelloFrame: return protocol::kPreHelloMaxFrameBytes;
    case Limit::kFrameBytes: return limits_.max_frame_bytes;
    case Limit::kHelloTimeout: return static_cast<uint64_t>(limits_.hello_timeout.count());
    case Limit::kIdleTimeout: return static_cast<uint64_t>(limits_.idle_timeout.count());
    case Limit::kWriteTimeout: return static_cast<uint64_t>(limits_.write_timeout.count());
    case Limit::kInflight: return limits_.max_inflight;
    case Limit::kOutputBytes: return limits_.max_output_hard_bytes;
    case Limit::kResponseBytes: return limits_.max_frame_bytes;
    case Limit::kExpression: return expr.max_length;
    case Limit::kAudiencePage: return limits_.max_audience_page;
    case Limit::kMemory: return memory_ ? memory_->limit_bytes() : 0;
  }
  return 0;
}

void Service::RemoveConnection() { connections_.fetch_sub(1, std::memory_order_relaxed); }

size_t Service::KindOf(Request::Reader req) {
  const auto which = static_cast<uint16_t>(req.which());
  return which <= static_cast<uint16_t>(Request::LIST_SHARDS) ? which : kKindUnknown;
}

bool Service::RunsInline(Request::Reader req) {
  switch (req.which()) {
    case Request::HELLO:
    case Request::PING:
    case Request::GET_TAGS:
      return true;
    case Request::HAS_TAGS:
      return req.getHasTags().getTags().size() <= kInlineHasTags;
    case Request::GET_TAGS_BATCH:
      return req.getGetTagsBatch().getUsers().size() <= kInlineBatchUsers;
    // Engine::Stats walks every shard's columns: milliseconds on a big node.
    case Request::STATS:
    case Request::COUNT:
    case Request::AUDIENCE:
    case Request::AUDIENCE_BITMAPS:
    case Request::TOP_TAGS:
    case Request::APPLY_EVENTS:
    case Request::LOAD_SNAPSHOT:
    case Request::COMMIT_SNAPSHOT:
    case Request::CHECKPOINT:
    // A map change waits for earlier writes and may drop shards; the state
    // transfers walk whole shards.
    case Request::SET_CLUSTER_MAP:
    case Request::SHARD_DIGESTS:
    case Request::EXPORT_SHARD:
    case Request::MERGE_SHARD:
      return false;
    case Request::GET_CLUSTER_MAP:
    case Request::LIST_SHARDS:
      return true;
  }
  return true;  // an unknown kind is answered at once with BAD_REQUEST
}

void Service::SetError(Response::Builder resp, const Status& status) {
  resp.setStatus(protocol::ToWire(status.code()));
  std::string_view msg = status.message();
  if (msg.size() > kMaxMessageBytes) msg = msg.substr(0, kMaxMessageBytes);
  CopyText(msg, [&](unsigned n) { return resp.initMessage(n); });
  resp.setNone();
}

void Service::AppendErrorFrame(uint64_t id, const Status& status, std::vector<uint8_t>& out) {
  capnp::MallocMessageBuilder mb(256);
  auto resp = mb.initRoot<Response>();
  resp.setId(id);
  SetError(resp, status);
  protocol::AppendFrame(mb, out);
}

bool Service::AppendResponse(capnp::MessageBuilder& message, uint64_t id,
                             std::vector<uint8_t>& out) const {
  const size_t before = out.size();
  protocol::AppendFrame(message, out);
  const size_t body_bytes = out.size() - before - protocol::kFrameHeaderBytes;
  if (body_bytes <= limits_.max_frame_bytes) return true;
  CountLimit(Limit::kResponseBytes);
  out.resize(before);
  AppendErrorFrame(id,
                   Status::Overloaded("the response of " + std::to_string(body_bytes) +
                                      " bytes exceeds the frame limit of " +
                                      std::to_string(limits_.max_frame_bytes) + " bytes"),
                   out);
  return false;
}

void Service::FillHello(Response::Builder resp) const {
  resp.setStatus(wire::Status::OK);
  auto hello = resp.initHello();
  hello.setVersion(protocol::kProtocolVersion);
  CopyText(node_name_, [&](unsigned n) { return hello.initNode(n); });
  hello.setShardBits(static_cast<uint8_t>(engine_.shard_bits()));
  hello.setMaxFrameBytes(limits_.max_frame_bytes);
}

StatusCode Service::Execute(Request::Reader req, Response::Builder resp) {
  try {
    return DoExecute(req, resp);
  } catch (const kj::Exception&) {
    throw;  // malformed message: the connection's business
  } catch (const std::bad_alloc&) {
    SetError(resp, Status::Overloaded("out of memory while executing the request"));
    return StatusCode::kOverloaded;
  } catch (const std::exception& e) {
    SetError(resp, Status::Internal(std::string("unexpected error: ") + e.what()));
    return StatusCode::kInternal;
  }
}

StatusCode Service::DoExecute(Request::Reader req, Response::Builder resp) {
  auto fail = [&](const Status& s) {
    SetError(resp, s);
    return s.code();
  };
  resp.setStatus(wire::Status::OK);
  const ClusterState::View view = cluster_.Current();
  resp.setEpoch(view.epoch());
  if (IsRouted(req.which())) {
    if (Status s = CheckEpoch(view, req.getEpoch()); !s.ok()) return fail(s);
  }
  const int bits = engine_.shard_bits();
  switch (req.which()) {
    case Request::HELLO:
      return fail(Status::BadRequest("duplicate hello: the connection is already established"));

    case Request::PING:
      resp.setNone();
      return StatusCode::kOk;

    case Request::GET_TAGS: {
      auto r = req.getGetTags();
      const bool with_ts = r.getWithTs();
      if (Status s = CheckShard(view, r.getUser() >> bits, Access::kRead); !s.ok()) return fail(s);
      std::vector<TagHit> hits = engine_.GetTags(r.getUser(), with_ts);
      protocol::WriteTagHits(resp.initGetTags(), hits, with_ts, HitName, HitTs);
      return StatusCode::kOk;
    }

    case Request::HAS_TAGS: {
      auto r = req.getHasTags();
      if (Status s = CheckShard(view, r.getUser() >> bits, Access::kRead); !s.ok()) return fail(s);
      auto tags = r.getTags();
      std::vector<std::string_view> names;
      names.reserve(tags.size());
      for (auto t : tags) names.push_back(ToView(t));
      Result<std::vector<bool>> has = engine_.HasTags(r.getUser(), names);
      if (!has.ok()) return fail(has.status());
      auto list = resp.initHasTags(static_cast<unsigned>(has->size()));
      for (unsigned i = 0; i < has->size(); ++i) list.set(i, (*has)[i]);
      return StatusCode::kOk;
    }

    case Request::GET_TAGS_BATCH: {
      auto r = req.getGetTagsBatch();
      auto users_in = r.getUsers();
      const bool with_ts = r.getWithTs();
      std::vector<UserId> users;
      users.reserve(users_in.size());
      for (uint64_t u : users_in) {
        if (Status s = CheckShard(view, u >> bits, Access::kRead); !s.ok()) return fail(s);
        users.push_back(u);
      }
      std::vector<std::vector<TagHit>> all = engine_.GetTagsBatch(users, with_ts);
      auto list = resp.initGetTagsBatch(static_cast<unsigned>(all.size()));
      for (unsigned u = 0; u < all.size(); ++u) {
        auto ut = list[u];
        ut.setUser(users[u]);
        protocol::WriteTagHits(ut.initTags(), all[u], with_ts, HitName, HitTs);
      }
      return StatusCode::kOk;
    }

    case Request::COUNT: {
      Result<uint64_t> n =
          engine_.Count(ToView(req.getCount().getExpr()), AudienceFilter(view, req.getDown()));
      if (!n.ok()) return fail(n.status());
      resp.setCount(*n);
      return StatusCode::kOk;
    }

    case Request::AUDIENCE: {
      auto r = req.getAudience();
      uint32_t limit = r.getLimit();
      if (limit == 0) return fail(Status::BadRequest("audience limit must be at least 1"));
      // A page must fit the frame limit: 8 bytes an id, plus slack for the rest.
      const size_t usable = limits_.max_frame_bytes > 4096 ? limits_.max_frame_bytes - 4096 : 8;
      const auto fits =
          static_cast<uint32_t>(std::min<size_t>(usable / 8, limits_.max_audience_page));
      if (limit > fits) {
        // Clamped, not refused: the page says hasMore and the client continues.
        CountLimit(Limit::kAudiencePage);
        limit = fits;
      }
      Result<AudiencePage> page = engine_.Audience(ToView(r.getExpr()), r.getCursor(), limit,
                                                   AudienceFilter(view, req.getDown()));
      if (!page.ok()) return fail(page.status());
      auto out = resp.initAudience();
      auto users = out.initUsers(static_cast<unsigned>(page->users.size()));
      for (unsigned i = 0; i < page->users.size(); ++i) users.set(i, page->users[i]);
      out.setHasMore(page->next_cursor.has_value());
      if (page->next_cursor) out.setNextCursor(*page->next_cursor);
      return StatusCode::kOk;
    }

    case Request::AUDIENCE_BITMAPS: {
      Result<std::vector<ShardBitmap>> maps = engine_.AudienceBitmaps(
          ToView(req.getAudienceBitmaps().getExpr()), AudienceFilter(view, req.getDown()));
      if (!maps.ok()) return fail(maps.status());
      auto list = resp.initAudienceBitmaps(static_cast<unsigned>(maps->size()));
      for (unsigned i = 0; i < maps->size(); ++i) {
        const ShardBitmap& m = (*maps)[i];
        auto out = list[i];
        out.setShard(m.shard);
        out.setCardinality(m.cardinality);
        auto data = out.initBitmap(static_cast<unsigned>(m.portable.size()));
        if (!m.portable.empty()) std::memcpy(data.begin(), m.portable.data(), m.portable.size());
      }
      return StatusCode::kOk;
    }

    case Request::TOP_TAGS: {
      auto r = req.getTopTags();
      uint32_t k = r.getK();
      // `all` asks for every non-zero count (Engine::TopTags with k = 0), so
      // that a client merging nodes can re-rank exactly.
      if (!r.getAll()) {
        if (k == 0) return fail(Status::BadRequest("topTags k must be at least 1"));
        k = std::min(k, kMaxTopTags);
      } else {
        k = 0;
      }
      Result<std::vector<TagCount>> top =
          engine_.TopTags(ToView(r.getExpr()), k, AudienceFilter(view, req.getDown()));
      if (!top.ok()) return fail(top.status());
      auto list = resp.initTopTags(static_cast<unsigned>(top->size()));
      for (unsigned i = 0; i < top->size(); ++i) {
        auto out = list[i];
        CopyText((*top)[i].tag, [&](unsigned n) { return out.initTag(n); });
        out.setCount((*top)[i].count);
      }
      return StatusCode::kOk;
    }

    case Request::APPLY_EVENTS:
    case Request::LOAD_SNAPSHOT:
    case Request::COMMIT_SNAPSHOT:
    case Request::MERGE_SHARD: {
      Result<PreparedWrite> write = DecodeWrite(req);
      if (!write.ok()) return fail(write.status());
      Status admitted = AdmitWrite(*write);
      if (!admitted.ok()) return fail(admitted);
      return ApplyWrite(*write, resp);
    }

    case Request::CHECKPOINT:
      return fail(Status::BadRequest(
          "this node has no data directory: there is nothing to checkpoint"));

    case Request::STATS:
      FillStats(resp.initStats());
      return StatusCode::kOk;

    case Request::GET_CLUSTER_MAP:
    case Request::SET_CLUSTER_MAP:
    case Request::SHARD_DIGESTS:
    case Request::EXPORT_SHARD:
    case Request::LIST_SHARDS:
      return ExecuteClusterRequest(req, resp);
  }
  return fail(Status::BadRequest("unknown request kind " +
                                 std::to_string(static_cast<unsigned>(req.which()))));
}

Result<PreparedWrite> Service::DecodeWrite(Request::Reader req) const {
  PreparedWrite write;
  // Enter the gate before reading the map: a map installed after this point
  // waits until this write is applied or refused.
  const uint64_t ticket = cluster_.EnterWrite();
  write.gate = std::shared_ptr<void>(nullptr, [cluster = &cluster_, ticket](void*) {
    cluster->ExitWrite(ticket);
  });
  const ClusterState::View view = cluster_.Current();
  if (Status s = CheckEpoch(view, req.getEpoch()); !s.ok()) return s;
  const int bits = engine_.shard_bits();
  switch (req.which()) {
    case Request::APPLY_EVENTS: {
      write.kind = PreparedWrite::kEvents;
      auto in = req.getApplyEvents().getEvents();
      write.events.reserve(in.size());
      for (unsigned i = 0; i < in.size(); ++i) {
        auto e = in[i];
        Event ev;
        ev.user = e.getUser();
        ev.tag = std::string(ToView(e.getTag()));
        switch (e.getOp()) {
          case wire::TagOp::SET:
            ev.op = TagOp::kSet;
            break;
          case wire::TagOp::CLEAR:
            ev.op = TagOp::kClear;
            break;
          default:
            return Status::BadRequest("event " + std::to_string(i) + ": unknown op " +
                                      std::to_string(static_cast<unsigned>(e.getOp())));
        }
        ev.ts = e.getTs();
        write.events.push_back(std::move(ev));
      }
      if (view.clustered()) {
        // Batches are usually sorted or clustered by user: check each shard once in a row.
        std::optional<uint64_t> checked;
        for (size_t i = 0; i < write.events.size(); ++i) {
          const uint64_t shard = write.events[i].user >> bits;
          if (checked == shard) continue;
          if (Status s = CheckShard(view, shard, Access::kWrite); !s.ok()) {
            return WrongNode("event " + std::to_string(i) + ": " + s.message());
          }
          checked = shard;
        }
      }
      Status s = engine_.CheckEvents(write.events);
      if (!s.ok()) return s;
      return write;
    }
    case Request::LOAD_SNAPSHOT: {
      write.kind = PreparedWrite::kSnapshotPart;
      auto r = req.getLoadSnapshot();
      auto data = r.getBitmap();
      Result<Roaring> members = protocol::ReadPortableBitmap(
          data.begin(), data.size(), uint64_t{1} << engine_.shard_bits());
      if (!members.ok()) return members.status();
      write.tag = std::string(ToView(r.getTag()));
      write.ts = r.getTs();
      write.shard = r.getShard();
      if (Status s = CheckShard(view, write.shard, Access::kWrite); !s.ok()) return s;
      write.members = std::move(*members);
      Status s = engine_.CheckSnapshot(write.tag, write.ts, write.shard, write.members);
      if (!s.ok()) return s;
      // The log keeps the client's bytes: they were just validated.
      write.bitmap_bytes.assign(reinterpret_cast<const char*>(data.begin()), data.size());
      return write;
    }
    case Request::COMMIT_SNAPSHOT: {
      write.kind = PreparedWrite::kSnapshotCommit;
      auto r = req.getCommitSnapshot();
      write.tag = std::string(ToView(r.getTag()));
      write.ts = r.getTs();
      auto shards_in = r.getShards();
      write.shards.reserve(shards_in.size());
      for (uint64_t shard : shards_in) write.shards.push_back(shard);
      Status s = engine_.CheckCommit(write.tag, write.ts);
      if (!s.ok()) return s;
      return write;
    }
    case Request::MERGE_SHARD: {
      write.kind = PreparedWrite::kMerge;
      auto data = req.getMergeShard().getState();
      std::string_view bytes(reinterpret_cast<const char*>(data.begin()), data.size());
      Result<storage::ShardTransfer> transfer = storage::DecodeShardTransfer(bytes, bits);
      if (!transfer.ok()) {
        return Status::BadRequest("mergeShard: " + transfer.status().message());
      }
      if (Status s = CheckShard(view, transfer->state.shard, Access::kWrite); !s.ok()) return s;
      write.merge_tags = std::move(transfer->tags);
      write.merge_state = std::move(transfer->state);
      write.state_bytes.assign(bytes);
      return write;
    }
    default:
      return Status::Internal("not a write request");
  }
}

StatusCode Service::ApplyWrite(const PreparedWrite& write, Response::Builder resp) {
  auto fail = [&](const Status& s) {
    SetError(resp, s);
    return s.code();
  };
  switch (write.kind) {
    case PreparedWrite::kEvents: {
      Result<ApplyEventsResult> applied = engine_.ApplyEvents(write.events);
      if (!applied.ok()) return fail(applied.status());
      auto out = resp.initApplyEvents();
      out.setApplied(applied->applied);
      out.setIgnored(applied->ignored);
      return StatusCode::kOk;
    }
    case PreparedWrite::kSnapshotPart: {
      Result<SnapshotOutcome> outcome =
          engine_.ApplySnapshot(write.tag, write.ts, write.shard, write.members);
      if (!outcome.ok()) return fail(outcome.status());
      using Outcome = Response::LoadSnapshotReply::Outcome;
      Outcome wire_outcome = Outcome::APPLIED;
      switch (*outcome) {
        case SnapshotOutcome::kApplied:
          wire_outcome = Outcome::APPLIED;
          break;
        case SnapshotOutcome::kDuplicate:
          wire_outcome = Outcome::DUPLICATE;
          break;
        case SnapshotOutcome::kTieWon:
          wire_outcome = Outcome::TIE_WON;
          break;
        case SnapshotOutcome::kTieLost:
          wire_outcome = Outcome::TIE_LOST;
          break;
      }
      resp.initLoadSnapshot().setOutcome(wire_outcome);
      return StatusCode::kOk;
    }
    case PreparedWrite::kSnapshotCommit: {
      Result<CommitOutcome> outcome = engine_.CommitSnapshot(write.tag, write.ts, write.shards);
      if (!outcome.ok()) return fail(outcome.status());
      // Every node gets the commit with every shard the load sent; only
      // the parts this node owns are its to report missing.
      const ClusterState::View view = cluster_.Current();
      if (view.clustered()) {
        std::erase_if(outcome->missing_shards, [&](uint64_t shard) {
          return !view.member || !view.placement->IsWriteOwner(view.self, shard);
        });
      }
      auto out = resp.initCommitSnapshot();
      out.setShardsEmptied(outcome->shards_emptied);
      auto missing = out.initMissingShards(static_cast<unsigned>(outcome->missing_shards.size()));
      for (unsigned i = 0; i < outcome->missing_shards.size(); ++i) {
        missing.set(i, outcome->missing_shards[i]);
      }
      if (outcome->missing_shards.empty()) return StatusCode::kOk;
      // The reply stays filled in: INCOMPLETE tells the loader which parts to resend.
      std::string msg = std::to_string(outcome->missing_shards.size()) +
                        " named shard(s) never received members for this snapshot, first: " +
                        std::to_string(outcome->missing_shards.front());
      resp.setStatus(protocol::ToWire(StatusCode::kIncomplete));
      CopyText(msg, [&](unsigned n) { return resp.initMessage(n); });
      return StatusCode::kIncomplete;
    }
    case PreparedWrite::kMerge: {
      if (Status s = engine_.MergeTags(write.merge_tags); !s.ok()) return fail(s);
      if (Status s = engine_.MergeShard(write.merge_state); !s.ok()) return fail(s);
      resp.setMergeShard();
      return StatusCode::kOk;
    }
  }
  return fail(Status::Internal("unknown write kind"));
}

StatusCode Service::ExecuteClusterRequest(Request::Reader req, Response::Builder resp) {
  auto fail = [&](const Status& s) {
    SetError(resp, s);
    return s.code();
  };
  switch (req.which()) {
    case Request::GET_CLUSTER_MAP: {
      const ClusterState::View view = cluster_.Current();
      auto out = resp.initClusterMap();
      if (view.clustered()) {
        cluster::WriteMap(view.placement->map(), out.initMap());
        out.setNodeId(view.id);
      } else {
        out.initMap().setEpoch(0);
      }
      return StatusCode::kOk;
    }
    case Request::SET_CLUSTER_MAP: {
      auto r = req.getSetClusterMap();
      Result<cluster::ClusterMap> map = cluster::ReadMap(r.getMap());
      if (!map.ok()) return fail(map.status());
      if (Status s = cluster_.Install(*map, std::string(ToView(r.getNodeId()))); !s.ok()) {
        return fail(s);
      }
      resp.setEpoch(map->epoch);
      engine_.SetUnknownTagsEmpty(true);
      if (!map->moving) DropUnownedShards();
      resp.setNone();
      return StatusCode::kOk;
    }
    case Request::SHARD_DIGESTS: {
      std::vector<std::pair<uint64_t, uint64_t>> digests = engine_.ShardDigests();
      auto list = resp.initShardDigests(static_cast<unsigned>(digests.size()));
      for (unsigned i = 0; i < digests.size(); ++i) {
        list[i].setShard(digests[i].first);
        list[i].setDigest(digests[i].second);
      }
      return StatusCode::kOk;
    }
    case Request::LIST_SHARDS: {
      // What a move needs to plan: no digest (hashing every member of every
      // shard cost a sixth of a move's CPU).
      std::vector<uint64_t> shards = engine_.ShardIds();
      auto list = resp.initListShards(static_cast<unsigned>(shards.size()));
      for (unsigned i = 0; i < shards.size(); ++i) list.set(i, shards[i]);
      return StatusCode::kOk;
    }
    case Request::EXPORT_SHARD: {
      const uint64_t shard = req.getExportShard().getShard();
      if (shard > (~uint64_t{0} >> engine_.shard_bits())) {
        return fail(Status::BadRequest("shard " + std::to_string(shard) + " is out of range"));
      }
      // Tags first: a tag created after the shard's copy then still has its record.
      std::vector<TagState> tags = engine_.ExportTags();
      ShardState state = engine_.ExportShard(shard);
      std::string bytes = storage::EncodeShardTransfer(tags, state);
      auto data = resp.initExportShard(static_cast<unsigned>(bytes.size()));
      if (!bytes.empty()) std::memcpy(data.begin(), bytes.data(), bytes.size());
      return StatusCode::kOk;
    }
    default:
      return fail(Status::Internal("not a cluster request"));
  }
}

size_t Service::DropUnownedShards() {
  const ClusterState::View view = cluster_.Current();
  if (view.clustered()) engine_.SetUnknownTagsEmpty(true);
  // A removed node keeps its data until it is stopped: dropping everything
  // on a mistaken remove-node would leave nothing to recover from.
  if (!view.clustered() || !view.member || view.placement->map().moving) return 0;
  size_t dropped = 0;
  for (uint64_t shard : engine_.ShardIds()) {
    if (view.placement->IsWriteOwner(view.self, shard)) continue;
    engine_.DropShard(shard);
    ++dropped;
  }
  return dropped;
}

Status Service::AdmitWrite(const PreparedWrite& write) {
  if (!memory_) return Status::Ok();
  // What the write may add: per event an override slot, index bytes and
  // container growth; per snapshot the new bitmap (the old one is freed
  // only after) and its users' index entries.
  uint64_t estimate = 0;
  switch (write.kind) {
    case PreparedWrite::kEvents:
      estimate = write.events.size() * 48;
      break;
    case PreparedWrite::kSnapshotPart:
      estimate = write.members.getSizeInBytes(false) * 2 + write.members.cardinality() * 2;
      break;
    case PreparedWrite::kSnapshotCommit:
      estimate = 0;  // a commit only empties shards: it frees memory, so it is always admitted
      break;
    case PreparedWrite::kMerge:
      estimate = write.state_bytes.size() * 2;
      break;
  }
  if (estimate == 0) return Status::Ok();
  return memory_->Admit(estimate);
}

// A request whose message could not be read: answered BAD_REQUEST with id 0,
// and the connection is closed.
FrameResult Service::MalformedResult(const kj::Exception& e) {
  FrameResult result;
  result.malformed = true;
  AppendErrorFrame(0, Status::BadRequest("malformed request: " + DescribeKjException(e)),
                   result.frame);
  return result;
}

FrameResult Service::ErrorResult(uint64_t id, size_t kind, const Status& status) {
  capnp::MallocMessageBuilder mb(256);
  auto resp = mb.initRoot<Response>();
  resp.setId(id);
  resp.setEpoch(cluster_.epoch());
  SetError(resp, status);
  return Finish(mb, id, kind, status.code());
}

// Serializing the answer can fail (too large for a frame, out of memory):
// that is ours, so the client gets an error frame instead.
FrameResult Service::Finish(capnp::MallocMessageBuilder& mb, uint64_t id, size_t kind,
                            StatusCode code) {
  FrameResult result;
  result.kind = kind;
  result.ok = code == StatusCode::kOk;
  result.code = code;
  try {
    if (!AppendResponse(mb, id, result.frame)) {
      result.ok = false;
      result.code = StatusCode::kOverloaded;
    }
  } catch (const kj::Exception& e) {
    result.frame.clear();
    result.ok = false;
    result.code = StatusCode::kInternal;
    AppendErrorFrame(id, Status::Internal("cannot send the response: " + DescribeKjException(e)),
                     result.frame);
  } catch (const std::exception& e) {
    result.frame.clear();
    result.ok = false;
    result.code = StatusCode::kInternal;
    AppendErrorFrame(id, Status::Internal(std::string("cannot send the response: ") + e.what()),
                     result.frame);
  }
  return result;
}

void Service::ExecuteFrameAsync(kj::ArrayPtr<const capnp::word> body, security::RoleSet granted,
                                std::function<void(FrameResult)> done) {
  if (!durability_) {
    done(ExecuteFrame(body, granted));
    return;
  }
  uint64_t id = 0;
  size_t kind = kKindMalformed;
  std::shared_ptr<PreparedWrite> write;
  bool checkpoint = false;
  try {
    RequestReader reader(body);
    Result<Request::Reader> parsed = reader.Parse();
    if (!parsed.ok()) {
      FrameResult result;
      result.malformed = true;
      AppendErrorFrame(0, parsed.status(), result.frame);
      done(std::move(result));
      return;
    }
    Request::Reader req = *parsed;
    if (Status access = CheckAccess(req.which(), granted); !access.ok()) {
      done(ErrorResult(req.getId(), KindOf(req), access));
      return;
    }
    switch (req.which()) {
      case Request::APPLY_EVENTS:
      case Request::LOAD_SNAPSHOT:
      case Request::COMMIT_SNAPSHOT:
      case Request::MERGE_SHARD: {
        id = req.getId();
        kind = KindOf(req);
        Result<PreparedWrite> decoded = DecodeWrite(req);
        Status s = decoded.ok() ? AdmitWrite(*decoded) : decoded.status();
        if (!s.ok()) {
          done(ErrorResult(id, kind, s));
          return;
        }
        write = std::make_shared<PreparedWrite>(std::move(*decoded));
        break;
      }
      case Request::CHECKPOINT:
        id = req.getId();
        kind = KindOf(req);
        checkpoint = true;
        break;
      default: {
        // Not a write: answered now, from the request already parsed.
        id = req.getId();
        kind = KindOf(req);
        capnp::MallocMessageBuilder mb;
        auto resp = mb.initRoot<Response>();
        resp.setId(id);
        const StatusCode code = Execute(req, resp);
        done(Finish(mb, id, kind, code));
        return;
      }
    }
  } catch (const kj::Exception& e) {
    done(MalformedResult(e));
    return;
  } catch (const std::exception& e) {
    FrameResult result;
    result.kind = kind;
    result.code = StatusCode::kInternal;
    AppendErrorFrame(id, Status::Internal(std::string("unexpected error: ") + e.what()),
                     result.frame);
    done(std::move(result));
    return;
  }

  if (checkpoint) {
    durability_->CheckpointAsync(
        [this, id, kind, done = std::move(done)](Result<durability::CheckpointResult> r) {
          capnp::MallocMessageBuilder mb(256);
          auto resp = mb.initRoot<Response>();
          resp.setId(id);
          resp.setStatus(wire::Status::OK);
          if (!r.ok()) {
            SetError(resp, r.status());
            done(Finish(mb, id, kind, r.status().code()));
            return;
          }
          auto out = resp.initCheckpoint();
          CopyText(r->path, [&](unsigned n) { return out.initPath(n); });
          out.setWalSegment(r->wal_segment);
          out.setBytes(r->bytes);
          out.setMicros(r->micros);
          out.setSegmentsRemoved(r->segments_removed);
          done(Finish(mb, id, kind, StatusCode::kOk));
        });
    return;
  }

  std::string payload;
  storage::RecordType type = storage::RecordType::kEvents;
  switch (write->kind) {
    case PreparedWrite::kEvents:
      payload = storage::EncodeEvents(write->events);
      break;
    case PreparedWrite::kSnapshotPart:
      type = storage::RecordType::kSnapshotPart;
      payload = storage::EncodeSnapshotPart(write->tag, write->ts, write->shard, write->bitmap_bytes);
      write->bitmap_bytes = {};  // logged: no longer needed
      break;
    case PreparedWrite::kSnapshotCommit:
      type = storage::RecordType::kSnapshotCommit;
      payload = storage::EncodeSnapshotCommit(write->tag, write->ts, write->shards);
      break;
    case PreparedWrite::kMerge:
      type = storage::RecordType::kMergeShard;
      payload = std::move(write->state_bytes);
      write->state_bytes = {};
      break;
  }
  durability_->Submit(type, std::move(payload),
                      [this, id, kind, write = std::move(write), done = std::move(done)](Status s) {
                        capnp::MallocMessageBuilder mb;
                        auto resp = mb.initRoot<Response>();
                        resp.setId(id);
                        resp.setStatus(wire::Status::OK);
                        resp.setEpoch(cluster_.epoch());
                        StatusCode code;
                        if (!s.ok()) {
                          SetError(resp, s);
                          code = s.code();
                        } else {
                          try {
                            code = ApplyWrite(*write, resp);
                          } catch (const std::exception& e) {
                            // Logged but not applied here: replay applies it after a restart.
                            Status err = Status::Internal(std::string("logged, then failed to apply: ") + e.what());
                            SetError(resp, err);
                            code = err.code();
                          }
                        }
                        done(Finish(mb, id, kind, code));
                      });
}

void Service::FillStats(Response::StatsReply::Builder out) {
  EngineStats s = engine_.Stats(/*detailed=*/false);
  out.setShards(s.shards);
  out.setTags(s.tags);
  out.setKnownUsers(s.known_users);
  out.setAssignments(s.assignments);
  out.setBitmapBytes(s.memory.bitmap_bytes);
  out.setOverrideBytes(s.memory.override_bytes);
  out.setIndexBytes(s.memory.index_bytes);
  out.setKnownBytes(s.memory.known_bytes);
  out.setConnections(connections());
  out.setEventsApplied(s.counters.events_applied);
  out.setEventsIgnored(s.counters.events_ignored);
  out.setWritesRefusedFuture(s.counters.writes_refused_future);
  out.setSnapshotsApplied(s.counters.snapshots_applied);
  out.setSnapshotsStale(s.counters.snapshots_stale);
  out.setSnapshotTies(s.counters.snapshot_ties);
  if (durability_) {
    durability::DurabilityStats d = durability_->Stats();
    CopyText(durability::FsyncPolicyName(d.fsync), [&](unsigned n) { return out.initFsyncPolicy(n); });
    out.setWalSegment(d.wal_segment);
    out.setWalBytes(d.wal_bytes);
    out.setWalBytesSinceCheckpoint(d.wal_bytes_since_checkpoint);
    out.setWalRecords(d.records);
    out.setWalGroups(d.groups);
    out.setFsyncs(d.fsyncs);
    out.setFsyncMicrosTotal(d.fsync_micros_total);
    out.setFsyncMicrosMax(d.fsync_micros_max);
    out.setWritesRefusedIo(d.writes_refused_io);
    out.setCheckpoints(d.checkpoints);
    out.setCheckpointFailures(d.checkpoint_failures);
    out.setLastCheckpointUnixMs(d.last_checkpoint_unix_ms);
    out.setLastCheckpointBytes(d.last_checkpoint_bytes);
    out.setTornTailsDropped(d.torn_tails_dropped);
    out.setRecoveryMicros(d.recovery.total_micros);
  }
  if (memory_) {
    out.setMemoryBytes(memory_->ResidentBytes());
    out.setMaxMemoryBytes(memory_->limit_bytes());
    out.setWritesRefusedMemory(memory_->refused());
  }

  auto kinds = out.initRequests(kNumKinds);
  for (size_t k = 0; k < kNumKinds; ++k) {
    KindSummary sum;
    for (const auto& loop : stats_) loop->AddTo(k, sum);
    auto ks = kinds[static_cast<unsigned>(k)];
    CopyText(KindName(k), [&](unsigned n) { return ks.initKind(n); });
    ks.setCount(sum.count);
    ks.setErrors(sum.errors);
    ks.setP50Micros(LatencyHistogram::Percentile(sum.latency, 0.50));
    ks.setP99Micros(LatencyHistogram::Percentile(sum.latency, 0.99));
  }
  auto limits = out.initLimits(kNumLimits);
  for (size_t i = 0; i < kNumLimits; ++i) {
    const auto limit = static_cast<Limit>(i);
    auto ls = limits[static_cast<unsigned>(i)];
    CopyText(LimitName(limit), [&](unsigned n) { return ls.initLimit(n); });
    ls.setValue(LimitValue(limit));
    ls.setCount(LimitCount(limit));
  }
}

FrameResult Service::ExecuteFrame(kj::ArrayPtr<const capnp::word> body, security::RoleSet granted) {
  FrameResult result;
  uint64_t id = 0;
  StatusCode code = StatusCode::kInternal;
  capnp::MallocMessageBuilder mb;
  try {
    RequestReader reader(body);
    Result<Request::Reader> parsed = reader.Parse();
    if (!parsed.ok()) {
      result.malformed = true;
      AppendErrorFrame(0, parsed.status(), result.frame);
      return result;
    }
    Request::Reader req = *parsed;
    id = req.getId();
    result.kind = KindOf(req);
    auto resp = mb.initRoot<Response>();
    resp.setId(id);
    if (Status access = CheckAccess(req.which(), granted); !access.ok()) {
      resp.setEpoch(cluster_.epoch());
      SetError(resp, access);
      code = access.code();
    } else {
      code = Execute(req, resp);
    }
  } catch (const kj::Exception& e) {
    return MalformedResult(e);
  } catch (const std::exception& e) {  // e.g. bad_alloc outside Execute()
    result.ok = false;
    result.code = StatusCode::kInternal;
    AppendErrorFrame(id, Status::Internal(std::string("unexpected error: ") + e.what()),
                     result.frame);
    return result;
  }
  // The request was fine; failing to serialize the answer (too large for a
  // frame, out of memory) is ours: Finish answers an error and the client
  // keeps its connection.
  return Finish(mb, id, result.kind, code);
}

}  // namespace tagcache::net
