// Client: routing through the cluster map, fan-out and merge, and the sync
// wrappers. Requests are encoded on the caller's thread; everything after
// that (pools, connections, completions) runs on the one I/O thread.
#include "tagcache/client/client.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "address.h"
#include "call.h"
#include "cluster_map.h"
#include "node_pool.h"
#include "wire_codec.h"

namespace tagcache::client {

namespace asio = boost::asio;

namespace {

// Encodes one request for a node, given the request id. Runs synchronously
// inside Scatter (on the caller's thread), so it may borrow the arguments.
using Encoder = std::function<std::vector<uint8_t>(uint64_t id)>;

struct Target {
  size_t node = 0;
  Encoder encode;
};

template <typename Part>
using PartDecoder = std::function<Result<Part>(const wire::Response::Reader&)>;

template <typename Part, typename Out>
using Merger = std::function<Result<Out>(std::vector<Part> parts)>;

template <typename T>
Result<T> FirstPart(std::vector<T> parts) {
  return std::move(parts.front());
}

}  // namespace

class Client::Impl {
 public:
  explicit Impl(ClientOptions options)
      : options_(std::move(options)), work_(asio::make_work_guard(io_)) {
    thread_ = std::thread([this] { Run(); });
  }

  ~Impl() {
    asio::post(io_, [this] {
      for (auto& pool : pools_) pool->Close(Status::IoError("client closed"));
      for (auto& pool : retired_pools_) pool->Close(Status::IoError("client closed"));
    });
    work_.reset();
    thread_.join();
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Connects to the first seed that answers; see Client::Connect.
  Status Start() {
    std::vector<HostPort> seeds;
    for (const std::string& seed : options_.seeds) {
      Result<HostPort> parsed = ParseHostPort(seed);
      if (!parsed.ok()) return parsed.status();
      seeds.push_back(std::move(parsed).value());
    }
    ConnectionOptions connection_options;
    connection_options.connect_timeout = options_.connect_timeout;
    connection_options.max_in_flight = options_.max_in_flight;
    connection_options.max_queued = options_.max_queued;
    connection_options.backoff_min = options_.reconnect_backoff_min;
    connection_options.backoff_max = options_.reconnect_backoff_max;
    connection_options.max_response_bytes = options_.max_response_bytes;
    connection_options.client_name = options_.client_name;

    std::vector<Status> failures;
    for (size_t i = 0; i < seeds.size(); ++i) {
      const std::string& address = options_.seeds[i];
      asio::ip::tcp::resolver resolver(io_);
      boost::system::error_code ec;
      auto endpoints = resolver.resolve(seeds[i].host, std::to_string(seeds[i].port), ec);
      if (ec) {
        failures.push_back(Status::IoError("cannot resolve " + address + ": " + ec.message()));
        continue;
      }
      auto pool =
          std::make_unique<NodePool>(io_, endpoints, address, connection_options,
                                     options_.connections_per_node, [this] { return NextId(); });
      auto promise = std::make_shared<std::promise<Result<HelloInfo>>>();
      auto future = promise->get_future();
      NodePool* raw = pool.get();
      asio::post(io_, [raw, promise] {
        raw->Start([promise](Result<HelloInfo> hello) { promise->set_value(std::move(hello)); });
      });
      // Every connection's first attempt is bounded by connect_timeout; the
      // margin only guards against a stuck I/O thread.
      Result<HelloInfo> hello =
          future.wait_for(options_.connect_timeout + std::chrono::seconds(2)) ==
                  std::future_status::ready
              ? future.get()
              : Result<HelloInfo>(Status::IoError("connecting to " + address + " timed out"));
      if (hello.ok()) {
        {
          std::lock_guard lock(map_mu_);
          map_ = std::make_shared<OneNodeMap>(address, hello->shard_bits);
        }
        pools_.push_back(std::move(pool));
        return Status::Ok();
      }
      failures.push_back(hello.status());
      // Handlers may still reference the pool: close it on the I/O thread
      // and keep it until the thread is gone.
      asio::post(io_, [raw, status = hello.status()] { raw->Close(status); });
      retired_pools_.push_back(std::move(pool));
    }
    if (failures.size() == 1) return failures.front();
    std::string message = "no seed answered:";
    for (const Status& failure : failures) message += " [" + failure.ToString() + "]";
    return Status::IoError(std::move(message));
  }

  std::shared_ptr<const ClusterMap> map() const {
    std::lock_guard lock(map_mu_);
    return map_;
  }

  std::chrono::milliseconds TimeoutFor(const CallOptions& call) const {
    return call.timeout.count() > 0 ? call.timeout : options_.request_timeout;
  }

  // Sends one request per target, decodes each answer into a Part and, once
  // all have answered, merges them (the first error wins instead).
  template <typename Part, typename Out>
  void Scatter(const char* kind, bool idempotent, const CallOptions& options,
               std::vector<Target> targets, PartDecoder<Part> decode, Merger<Part, Out> merge,
               Callback<Out> done) {
    struct State {
      std::vector<std::optional<Part>> parts;
      size_t remaining = 0;
      Status error;
      Merger<Part, Out> merge;
      Callback<Out> done;
    };
    if (targets.empty()) {  // cannot happen with a valid map; never leave `done` uncalled
      asio::post(io_, [done = std::move(done)] { done(Status::Internal("no node to ask")); });
      return;
    }
    auto state = std::make_shared<State>();
    state->parts.resize(targets.size());
    state->remaining = targets.size();
    state->merge = std::move(merge);
    state->done = std::move(done);

    const std::chrono::milliseconds timeout = TimeoutFor(options);
    const Clock::time_point deadline = Clock::now() + timeout;
    std::vector<std::pair<size_t, CallPtr>> calls;
    calls.reserve(targets.size());
    for (size_t i = 0; i < targets.size(); ++i) {
      auto call = std::make_unique<Call>();
      call->id = NextId();
      call->frame = targets[i].encode(call->id);
      call->kind = kind;
      call->idempotent = idempotent;
      call->resends_left = idempotent ? 1 : 0;
      call->deadline = deadline;
      call->timeout = timeout;
      call->done = [state, i, decode](const Status& transport,
                                      const wire::Response::Reader* response) {
        Result<Part> part = transport.ok() ? decode(*response) : Result<Part>(transport);
        if (part.ok()) {
          state->parts[i] = std::move(part).value();
        } else if (state->error.ok()) {
          state->error = part.status();
        }
        if (--state->remaining > 0) return;
        if (!state->error.ok()) {
          state->done(state->error);
          return;
        }
        std::vector<Part> parts;
        parts.reserve(state->parts.size());
        for (auto& p : state->parts) parts.push_back(std::move(*p));
        state->done(state->merge(std::move(parts)));
      };
      calls.emplace_back(targets[i].node, std::move(call));
    }
    asio::post(io_, [this, calls = std::move(calls)]() mutable {
      for (auto& [node, call] : calls) {
        if (node >= pools_.size()) {
          FailCall(*call, Status::Internal("no connection pool for node " + std::to_string(node)));
          continue;
        }
        pools_[node]->Dispatch(std::move(call));
      }
    });
  }

  // One request to one node, no merge.
  template <typename T>
  void Single(const char* kind, bool idempotent, const CallOptions& options, size_t node,
              Encoder encode, PartDecoder<T> decode, Callback<T> done) {
    std::vector<Target> targets;
    targets.push_back(Target{node, std::move(encode)});
    Scatter<T, T>(kind, idempotent, options, std::move(targets), std::move(decode), &FirstPart<T>,
                  std::move(done));
  }

  // The same request to every node of the map.
  static std::vector<Target> AllNodes(const ClusterMap& map, const Encoder& encode) {
    std::vector<Target> targets;
    for (size_t node = 0; node < map.node_count(); ++node) targets.push_back({node, encode});
    return targets;
  }

  // Runs an async call and blocks until its callback. Refused on the I/O
  // thread, where it would wait for itself.
  template <typename T, typename StartFn>
  Result<T> Wait(StartFn start) {
    if (std::this_thread::get_id() == thread_.get_id()) {
      return Status::Internal(
          "sync tagcache client call from a callback (the I/O thread): use the Async form");
    }
    auto promise = std::make_shared<std::promise<Result<T>>>();
    auto future = promise->get_future();
    start([promise](Result<T> result) { promise->set_value(std::move(result)); });
    return future.get();
  }

 private:
  uint64_t NextId() { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  void Run() {
    // A callback that throws breaks its contract; report it and keep the
    // other requests going rather than leave the client without a thread.
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "tagcache client: exception escaped a callback: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "tagcache client: exception escaped a callback\n");
      }
    }
  }

  const ClientOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::atomic<uint64_t> next_id_{1};  // 0 is the node's "could not read the request"

  mutable std::mutex map_mu_;
  std::shared_ptr<const ClusterMap> map_;  // guarded by map_mu_; immutable once built

  // Indexed like the map's nodes. Built by Start() before the Client is
  // handed out; afterwards touched only on the I/O thread.
  std::vector<std::unique_ptr<NodePool>> pools_;
  std::vector<std::unique_ptr<NodePool>> retired_pools_;  // seeds that did not answer
};

// ---- Client -----------------------------------------------------------------

Result<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  if (options.seeds.empty()) return Status::BadRequest("no seed addresses given");
  if (options.connections_per_node < 1) {
    return Status::BadRequest("connections_per_node must be at least 1");
  }
  if (options.max_in_flight < 1) return Status::BadRequest("max_in_flight must be at least 1");
  if (options.request_timeout.count() <= 0 || options.connect_timeout.count() <= 0) {
    return Status::BadRequest("timeouts must be positive");
  }
  if (options.reconnect_backoff_min.count() <= 0 ||
      options.reconnect_backoff_max < options.reconnect_backoff_min) {
    return Status::BadRequest("reconnect backoff must satisfy 0 < min <= max");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  Status status = impl->Start();
  if (!status.ok()) return status;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() = default;

int Client::shard_bits() const { return impl_->map()->shard_bits(); }

std::vector<std::string> Client::nodes() const {
  auto map = impl_->map();
  std::vector<std::string> out;
  for (size_t node = 0; node < map->node_count(); ++node) out.push_back(map->node_address(node));
  return out;
}

// ---- Async calls ------------------------------------------------------------

void Client::PingAsync(Callback<std::chrono::microseconds> done, const CallOptions& call) {
  auto map = impl_->map();
  const Clock::time_point start = Clock::now();
  PartDecoder<std::chrono::microseconds> decode =
      [start](const wire::Response::Reader& r) -> Result<std::chrono::microseconds> {
    Status status = DecodePing(r);
    if (!status.ok()) return status;
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  };
  Merger<std::chrono::microseconds, std::chrono::microseconds> slowest =
      [](std::vector<std::chrono::microseconds> parts) -> Result<std::chrono::microseconds> {
    return *std::max_element(parts.begin(), parts.end());
  };
  impl_->Scatter<std::chrono::microseconds, std::chrono::microseconds>(
      "ping", true, call, Impl::AllNodes(*map, &EncodePing), decode, slowest, std::move(done));
}

void Client::GetTagsAsync(UserId user, bool with_ts, Callback<std::vector<TagHit>> done,
                          const CallOptions& call) {
  auto map = impl_->map();
  impl_->Single<std::vector<TagHit>>(
      "getTags", true, call, map->NodeForUser(user),
      [user, with_ts](uint64_t id) { return EncodeGetTags(id, user, with_ts); }, &DecodeGetTags,
      std::move(done));
}

void Client::HasTagsAsync(UserId user, const std::vector<std::string>& tags,
                          Callback<std::vector<bool>> done, const CallOptions& call) {
  auto map = impl_->map();
  impl_->Single<std::vector<bool>>(
      "hasTags", true, call, map->NodeForUser(user),
      [user, &tags](uint64_t id) { return EncodeHasTags(id, user, tags); }, &DecodeHasTags,
      std::move(done));
}

void Client::GetTagsBatchAsync(const std::vector<UserId>& users, bool with_ts,
                               Callback<std::vector<UserTags>> done, const CallOptions& call) {
  auto map = impl_->map();
  // Split by node, remembering where each user goes back in the answer.
  std::map<size_t, std::vector<size_t>> by_node;
  for (size_t i = 0; i < users.size(); ++i) by_node[map->NodeForUser(users[i])].push_back(i);
  if (by_node.empty()) by_node[0];  // an empty batch still gets an answer from a node
  std::vector<Target> targets;
  auto positions = std::make_shared<std::vector<std::vector<size_t>>>();
  for (auto& [node, indexes] : by_node) {
    std::vector<UserId> subset;
    subset.reserve(indexes.size());
    for (size_t i : indexes) subset.push_back(users[i]);
    targets.push_back(Target{node, [subset = std::move(subset), with_ts](uint64_t id) {
                               return EncodeGetTagsBatch(id, subset, with_ts);
                             }});
    positions->push_back(indexes);
  }
  const size_t total = users.size();
  Merger<std::vector<UserTags>, std::vector<UserTags>> reassemble =
      [positions,
       total](std::vector<std::vector<UserTags>> parts) -> Result<std::vector<UserTags>> {
    std::vector<UserTags> out(total);
    for (size_t p = 0; p < parts.size(); ++p) {
      const auto& where = (*positions)[p];
      if (parts[p].size() != where.size()) {
        return Status::Internal("getTagsBatch: the node answered " +
                                std::to_string(parts[p].size()) + " users for " +
                                std::to_string(where.size()) + " asked");
      }
      for (size_t j = 0; j < where.size(); ++j) out[where[j]] = std::move(parts[p][j]);
    }
    return out;
  };
  impl_->Scatter<std::vector<UserTags>, std::vector<UserTags>>(
      "getTagsBatch", true, call, std::move(targets), &DecodeGetTagsBatch, reassemble,
      std::move(done));
}

void Client::CountAsync(const std::string& expr, Callback<uint64_t> done, const CallOptions& call) {
  auto map = impl_->map();
  // Nodes own disjoint shards, so their counts add up.
  Merger<uint64_t, uint64_t> sum = [](std::vector<uint64_t> parts) -> Result<uint64_t> {
    uint64_t total = 0;
    for (uint64_t part : parts) total += part;
    return total;
  };
  impl_->Scatter<uint64_t, uint64_t>(
      "count", true, call,
      Impl::AllNodes(*map, [expr](uint64_t id) { return EncodeCount(id, expr); }), &DecodeCount,
      sum, std::move(done));
}

void Client::AudienceAsync(const std::string& expr, UserId cursor, uint32_t limit,
                           Callback<AudiencePage> done, const CallOptions& call) {
  auto map = impl_->map();
  // Every node pages from the same cursor; the merged page keeps the
  // smallest `limit` ids and continues after the last one it kept.
  Merger<AudiencePage, AudiencePage> merge =
      [limit](std::vector<AudiencePage> parts) -> Result<AudiencePage> {
    if (parts.size() == 1) return std::move(parts.front());
    AudiencePage out;
    bool more = false;
    for (auto& part : parts) {
      out.users.insert(out.users.end(), part.users.begin(), part.users.end());
      more = more || part.next_cursor.has_value();
    }
    std::sort(out.users.begin(), out.users.end());
    if (out.users.size() > limit) {
      out.users.resize(limit);
      more = true;
    }
    if (more && !out.users.empty()) out.next_cursor = out.users.back() + 1;
    return out;
  };
  impl_->Scatter<AudiencePage, AudiencePage>(
      "audience", true, call,
      Impl::AllNodes(*map, [expr, cursor, limit](
                               uint64_t id) { return EncodeAudience(id, expr, cursor, limit); }),
      &DecodeAudience, merge, std::move(done));
}

void Client::AudienceBitmapsAsync(const std::string& expr, Callback<std::vector<ShardBitmap>> done,
                                  const CallOptions& call) {
  auto map = impl_->map();
  Merger<std::vector<ShardBitmap>, std::vector<ShardBitmap>> concat =
      [](std::vector<std::vector<ShardBitmap>> parts) -> Result<std::vector<ShardBitmap>> {
    if (parts.size() == 1) return std::move(parts.front());
    std::vector<ShardBitmap> out;
    for (auto& part : parts) {
      for (auto& shard : part) out.push_back(std::move(shard));
    }
    std::sort(out.begin(), out.end(),
              [](const ShardBitmap& a, const ShardBitmap& b) { return a.shard < b.shard; });
    return out;
  };
  impl_->Scatter<std::vector<ShardBitmap>, std::vector<ShardBitmap>>(
      "audienceBitmaps", true, call,
      Impl::AllNodes(*map, [expr](uint64_t id) { return EncodeAudienceBitmaps(id, expr); }),
      &DecodeAudienceBitmaps, concat, std::move(done));
}

void Client::TopTagsAsync(const std::string& expr, uint32_t k, Callback<std::vector<TagCount>> done,
                          const CallOptions& call) {
  auto map = impl_->map();
  // TODO(cluster): with several nodes, summing each node's top k is exact
  // only for tags in every node's top k; the ring issue should ask nodes
  // for more than k (or all counts) and re-rank.
  Merger<std::vector<TagCount>, std::vector<TagCount>> merge =
      [k](std::vector<std::vector<TagCount>> parts) -> Result<std::vector<TagCount>> {
    if (parts.size() == 1) return std::move(parts.front());
    std::map<std::string, uint64_t> sums;
    for (auto& part : parts) {
      for (auto& tc : part) sums[tc.tag] += tc.count;
    }
    std::vector<TagCount> out;
    for (auto& [tag, count] : sums) out.push_back(TagCount{tag, count});
    std::sort(out.begin(), out.end(), [](const TagCount& a, const TagCount& b) {
      return a.count != b.count ? a.count > b.count : a.tag < b.tag;
    });
    if (out.size() > k) out.resize(k);
    return out;
  };
  impl_->Scatter<std::vector<TagCount>, std::vector<TagCount>>(
      "topTags", true, call,
      Impl::AllNodes(*map, [expr, k](uint64_t id) { return EncodeTopTags(id, expr, k); }),
      &DecodeTopTags, merge, std::move(done));
}

void Client::ApplyEventsAsync(const std::vector<Event>& events, Callback<ApplyEventsResult> done,
                              const CallOptions& call) {
  auto map = impl_->map();
  std::map<size_t, std::vector<Event>> by_node;
  for (const Event& event : events) by_node[map->NodeForUser(event.user)].push_back(event);
  if (by_node.empty()) by_node[0];
  std::vector<Target> targets;
  for (auto& [node, subset] : by_node) {
    targets.push_back(Target{
        node, [subset = std::move(subset)](uint64_t id) { return EncodeApplyEvents(id, subset); }});
  }
  Merger<ApplyEventsResult, ApplyEventsResult> sum =
      [](std::vector<ApplyEventsResult> parts) -> Result<ApplyEventsResult> {
    ApplyEventsResult total;
    for (const auto& part : parts) {
      total.applied += part.applied;
      total.ignored += part.ignored;
    }
    return total;
  };
  impl_->Scatter<ApplyEventsResult, ApplyEventsResult>(
      "applyEvents", false, call, std::move(targets), &DecodeApplyEvents, sum, std::move(done));
}

void Client::LoadSnapshotAsync(const std::string& tag, Timestamp ts, uint64_t shard,
                               const std::string& portable_bitmap, Callback<SnapshotOutcome> done,
                               const CallOptions& call) {
  auto map = impl_->map();
  // Encoders run synchronously inside Scatter, on the caller's thread, so
  // they may borrow the arguments: the bitmap is copied once, into the frame.
  impl_->Single<SnapshotOutcome>(
      "loadSnapshot", false, call, map->NodeForShard(shard),
      [&tag, ts, shard, &portable_bitmap](uint64_t id) {
        return EncodeLoadSnapshot(id, tag, ts, shard, portable_bitmap);
      },
      &DecodeLoadSnapshot, std::move(done));
}

void Client::CommitSnapshotAsync(const std::string& tag, Timestamp ts,
                                 const std::vector<uint64_t>& shards, Callback<CommitOutcome> done,
                                 const CallOptions& call) {
  auto map = impl_->map();
  // TODO(cluster): each node should be told only about the shards it owns.
  Merger<CommitOutcome, CommitOutcome> merge =
      [](std::vector<CommitOutcome> parts) -> Result<CommitOutcome> {
    if (parts.size() == 1) return std::move(parts.front());
    CommitOutcome out;
    for (auto& part : parts) {
      out.shards_emptied += part.shards_emptied;
      out.missing_shards.insert(out.missing_shards.end(), part.missing_shards.begin(),
                                part.missing_shards.end());
    }
    std::sort(out.missing_shards.begin(), out.missing_shards.end());
    out.missing_shards.erase(std::unique(out.missing_shards.begin(), out.missing_shards.end()),
                             out.missing_shards.end());
    return out;
  };
  impl_->Scatter<CommitOutcome, CommitOutcome>(
      "commitSnapshot", false, call,
      Impl::AllNodes(*map, [&tag, ts, &shards](
                               uint64_t id) { return EncodeCommitSnapshot(id, tag, ts, shards); }),
      &DecodeCommitSnapshot, merge, std::move(done));
}

void Client::StatsAsync(Callback<std::vector<NodeStats>> done, const CallOptions& call) {
  auto map = impl_->map();
  Merger<NodeStats, std::vector<NodeStats>> name =
      [map](std::vector<NodeStats> parts) -> Result<std::vector<NodeStats>> {
    for (size_t node = 0; node < parts.size(); ++node) parts[node].node = map->node_address(node);
    return parts;
  };
  impl_->Scatter<NodeStats, std::vector<NodeStats>>(
      "stats", true, call, Impl::AllNodes(*map, &EncodeStats), &DecodeStats, name, std::move(done));
}

void Client::CheckpointAsync(Callback<std::vector<NodeCheckpoint>> done, const CallOptions& call) {
  auto map = impl_->map();
  Merger<NodeCheckpoint, std::vector<NodeCheckpoint>> name =
      [map](std::vector<NodeCheckpoint> parts) -> Result<std::vector<NodeCheckpoint>> {
    for (size_t node = 0; node < parts.size(); ++node) parts[node].node = map->node_address(node);
    return parts;
  };
  // Not idempotent for the retry logic: a re-send after a lost connection
  // would start a second checkpoint while the node may still write the first.
  impl_->Scatter<NodeCheckpoint, std::vector<NodeCheckpoint>>(
      "checkpoint", false, call, Impl::AllNodes(*map, &EncodeCheckpoint), &DecodeCheckpoint, name,
      std::move(done));
}

// ---- Sync calls -------------------------------------------------------------

Result<std::chrono::microseconds> Client::Ping(const CallOptions& call) {
  return impl_->Wait<std::chrono::microseconds>(
      [&](Callback<std::chrono::microseconds> done) { PingAsync(std::move(done), call); });
}

Result<std::vector<TagHit>> Client::GetTags(UserId user, bool with_ts, const CallOptions& call) {
  return impl_->Wait<std::vector<TagHit>>([&](Callback<std::vector<TagHit>> done) {
    GetTagsAsync(user, with_ts, std::move(done), call);
  });
}

Result<std::vector<bool>> Client::HasTags(UserId user, const std::vector<std::string>& tags,
                                          const CallOptions& call) {
  return impl_->Wait<std::vector<bool>>(
      [&](Callback<std::vector<bool>> done) { HasTagsAsync(user, tags, std::move(done), call); });
}

Result<std::vector<UserTags>> Client::GetTagsBatch(const std::vector<UserId>& users, bool with_ts,
                                                   const CallOptions& call) {
  return impl_->Wait<std::vector<UserTags>>([&](Callback<std::vector<UserTags>> done) {
    GetTagsBatchAsync(users, with_ts, std::move(done), call);
  });
}

Result<uint64_t> Client::Count(const std::string& expr, const CallOptions& call) {
  return impl_->Wait<uint64_t>(
      [&](Callback<uint64_t> done) { CountAsync(expr, std::move(done), call); });
}

Result<AudiencePage> Client::Audience(const std::string& expr, UserId cursor, uint32_t limit,
                                      const CallOptions& call) {
  return impl_->Wait<AudiencePage>([&](Callback<AudiencePage> done) {
    AudienceAsync(expr, cursor, limit, std::move(done), call);
  });
}

Result<std::vector<ShardBitmap>> Client::AudienceBitmaps(const std::string& expr,
                                                         const CallOptions& call) {
  return impl_->Wait<std::vector<ShardBitmap>>([&](Callback<std::vector<ShardBitmap>> done) {
    AudienceBitmapsAsync(expr, std::move(done), call);
  });
}

Result<std::vector<TagCount>> Client::TopTags(const std::string& expr, uint32_t k,
                                              const CallOptions& call) {
  return impl_->Wait<std::vector<TagCount>>(
      [&](Callback<std::vector<TagCount>> done) { TopTagsAsync(expr, k, std::move(done), call); });
}

Result<ApplyEventsResult> Client::ApplyEvents(const std::vector<Event>& events,
                                              const CallOptions& call) {
  return impl_->Wait<ApplyEventsResult>(
      [&](Callback<ApplyEventsResult> done) { ApplyEventsAsync(events, std::move(done), call); });
}

Result<SnapshotOutcome> Client::LoadSnapshot(const std::string& tag, Timestamp ts, uint64_t shard,
                                             const std::string& portable_bitmap,
                                             const CallOptions& call) {
  return impl_->Wait<SnapshotOutcome>([&](Callback<SnapshotOutcome> done) {
    LoadSnapshotAsync(tag, ts, shard, portable_bitmap, std::move(done), call);
  });
}

Result<CommitOutcome> Client::CommitSnapshot(const std::string& tag, Timestamp ts,
                                             const std::vector<uint64_t>& shards,
                                             const CallOptions& call) {
  return impl_->Wait<CommitOutcome>([&](Callback<CommitOutcome> done) {
    CommitSnapshotAsync(tag, ts, shards, std::move(done), call);
  });
}

Result<std::vector<NodeStats>> Client::Stats(const CallOptions& call) {
  return impl_->Wait<std::vector<NodeStats>>(
      [&](Callback<std::vector<NodeStats>> done) { StatsAsync(std::move(done), call); });
}

Result<std::vector<NodeCheckpoint>> Client::Checkpoint(const CallOptions& call) {
  return impl_->Wait<std::vector<NodeCheckpoint>>(
      [&](Callback<std::vector<NodeCheckpoint>> done) { CheckpointAsync(std::move(done), call); });
}

// ---- Free functions ---------------------------------------------------------

bool IsDeadlineExceeded(const Status& status) {
  return status.code() == StatusCode::kIoError &&
         status.message().rfind("deadline exceeded", 0) == 0;
}

const char* SnapshotOutcomeName(SnapshotOutcome outcome) {
  switch (outcome) {
    case SnapshotOutcome::kApplied:
      return "applied";
    case SnapshotOutcome::kDuplicate:
      return "duplicate";
    case SnapshotOutcome::kTieWon:
      return "tie_won";
    case SnapshotOutcome::kTieLost:
      return "tie_lost";
  }
  return "unknown";
}

}  // namespace tagcache::client
