// Client: routing through the cluster map (replicas, failover, write
// concern, refresh on WRONG_NODE), fan-out and merge, and the sync
// wrappers. Requests are encoded on the caller's thread; everything after
// that (pools, connections, completions) runs on the one I/O thread.
#include "tagcache/client/client.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "address.h"
#include "call.h"
#include "node_pool.h"
#include "tagcache/client/credentials.h"
#include "tagcache/security/tls.h"
#include "wire_codec.h"

namespace tagcache::client {

namespace asio = boost::asio;

namespace {

// Encodes one request for a node, given the request id and the routing
// envelope. Runs on the caller's thread for the first attempt; kept (with
// what it captured) for failover and retries, so it owns its arguments.
using Encoder = std::function<std::vector<uint8_t>(uint64_t id, const Envelope& env)>;

// The client's view of the cluster: immutable once built, swapped whole.
struct Route {
  cluster::ClusterMap map;  // epoch 0: standalone
  int shard_bits = 20;
  std::shared_ptr<const cluster::Placement> placement;  // null: standalone
  std::vector<std::string> addresses;                   // by member index
  std::vector<std::string> ids;

  uint64_t epoch() const { return map.epoch; }
  std::vector<uint32_t> ReadOwners(uint64_t shard) const {
    return placement ? placement->ReadOwners(shard) : std::vector<uint32_t>{0};
  }
  std::vector<uint32_t> WriteOwners(uint64_t shard) const {
    return placement ? placement->WriteOwners(shard) : std::vector<uint32_t>{0};
  }
  // Acknowledgements a write to `shard` needs: the concern over the read
  // owners, plus every new owner while a move is in progress (a copy taken
  // before the write would otherwise miss it for good).
  size_t Required(WriteConcern concern, uint64_t shard) const {
    if (!placement) return 1;
    const size_t r = placement->ReadOwners(shard).size();
    size_t need = concern == WriteConcern::kAll ? r : concern == WriteConcern::kOne ? 1 : (r + 1) / 2;
    if (map.moving) need += placement->WriteOwners(shard).size() - r;
    return need;
  }

  static std::shared_ptr<const Route> Standalone(std::string address, int shard_bits) {
    auto r = std::make_shared<Route>();
    r->shard_bits = shard_bits;
    r->addresses.push_back(std::move(address));
    r->ids.push_back("");
    return r;
  }
  static Result<std::shared_ptr<const Route>> Of(const cluster::ClusterMap& map) {
    Result<std::shared_ptr<const cluster::Placement>> p = cluster::Placement::Build(map);
    if (!p.ok()) return p.status();
    auto r = std::make_shared<Route>();
    r->map = map;
    r->shard_bits = map.shard_bits;
    r->placement = *p;
    for (const cluster::NodeInfo& n : (*p)->members()) {
      r->addresses.push_back(n.address);
      r->ids.push_back(n.id);
    }
    return std::shared_ptr<const Route>(std::move(r));
  }
};

// One unit of a scattered call. required == 0: the addresses are failover
// candidates, tried in order until one answers. required >= 1: the request
// goes to every address at once and the target succeeds when that many did.
struct Target {
  std::vector<std::string> addresses;
  size_t required = 0;
  Encoder encode;
  // Parallel only: settle as soon as `required` replicas succeeded, instead
  // of waiting for every answer (or the deadline). Off for writes: while
  // every replica is up, a write is acknowledged only once all of them
  // applied it, so a read that follows sees it whichever replica serves it
  // (a dead replica fails fast and only the concern counts).
  bool settle_early = false;
};

template <typename Part>
using PartDecoder = std::function<Result<Part>(const wire::Response::Reader&)>;

// Gets, per target, the successful parts (in address order).
template <typename Part, typename Out>
using Merger = std::function<Result<Out>(std::vector<std::vector<Part>> parts)>;

// Turns a call into targets on one map; may add down nodes to the envelope.
using Planner = std::function<std::vector<Target>(const Route& route, Envelope& env)>;

template <typename T>
Result<T> FirstPart(std::vector<std::vector<T>> parts) {
  T first(std::move(parts.front().front()));  // (a proxy for vector<bool>)
  return first;
}

bool IsTransport(const Status& s) { return s.code() == StatusCode::kIoError; }

// Re-plans after WRONG_NODE, backing off 5 ms, 10 ms, 20 ms...: about 2.5 s
// in all, more than a map publication takes.
constexpr int kMaxWrongNodeRetries = 10;

}  // namespace

class Client::Impl {
 public:
  Impl(ClientOptions options, std::shared_ptr<asio::ssl::context> tls)
      : options_(std::move(options)), work_(asio::make_work_guard(io_)) {
    connection_options_.tls = std::move(tls);
    connection_options_.connect_timeout = options_.connect_timeout;
    connection_options_.max_in_flight = options_.max_in_flight;
    connection_options_.max_queued = options_.max_queued;
    connection_options_.backoff_min = options_.reconnect_backoff_min;
    connection_options_.backoff_max = options_.reconnect_backoff_max;
    connection_options_.max_response_bytes = options_.max_response_bytes;
    connection_options_.client_name = options_.client_name;
    connection_options_.token = options_.token;
    thread_ = std::thread([this] { Run(); });
  }

  ~Impl() {
    asio::post(io_, [this] {
      closing_ = true;
      for (auto& [address, pool] : pools_) pool->Close(Status::IoError("client closed"));
      for (auto& pool : retired_pools_) pool->Close(Status::IoError("client closed"));
    });
    work_.reset();
    thread_.join();
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Connects to the first seed that answers, then fetches its cluster map;
  // see Client::Connect.
  Status Start() {
    std::vector<HostPort> seeds;
    for (const std::string& seed : options_.seeds) {
      Result<HostPort> parsed = ParseHostPort(seed);
      if (!parsed.ok()) return parsed.status();
      seeds.push_back(std::move(parsed).value());
    }
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
      auto pool = std::make_unique<NodePool>(io_, endpoints, address, connection_options_,
                                             options_.connections_per_node,
                                             [this] { return NextId(); });
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
          route_ = Route::Standalone(address, hello->shard_bits);
        }
        auto adopted = std::make_shared<std::promise<void>>();
        asio::post(io_, [this, address, adopted, pool = std::move(pool)]() mutable {
          pools_[address] = std::move(pool);
          adopted->set_value();
        });
        adopted->get_future().wait();
        // A node that is part of a cluster hands out its map; a standalone
        // one (epoch 0) is the whole cluster.
        Result<NodeMap> map = Wait<NodeMap>([&](Callback<NodeMap> done) {
          Direct<NodeMap>("getClusterMap", true, {}, address, &EncodeGetClusterMap,
                          &DecodeClusterMap, std::move(done));
        });
        if (!map.ok()) {
          // A node from before the cluster protocol answers BAD_REQUEST: standalone.
          if (map.status().code() == StatusCode::kBadRequest) return Status::Ok();
          return map.status();
        }
        if (map->map.epoch != 0) {
          Result<std::shared_ptr<const Route>> route = Route::Of(map->map);
          if (!route.ok()) return route.status();
          std::lock_guard lock(map_mu_);
          route_ = *route;
        }
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

  std::shared_ptr<const Route> route() const {
    std::lock_guard lock(map_mu_);
    return route_;
  }

  std::chrono::milliseconds TimeoutFor(const CallOptions& call) const {
    return call.timeout.count() > 0 ? call.timeout : options_.request_timeout;
  }

  // ---- Node health --------------------------------------------------------

  void MarkDown(const std::string& address) {
    std::lock_guard lock(down_mu_);
    down_until_[address] = Clock::now() + options_.down_grace;
  }
  void MarkUp(const std::string& address) {
    std::lock_guard lock(down_mu_);
    down_until_.erase(address);
  }
  bool IsDown(const std::string& address) const {
    std::lock_guard lock(down_mu_);
    auto it = down_until_.find(address);
    return it != down_until_.end() && Clock::now() < it->second;
  }

  // Owners as failover candidates: live ones first, in ring order.
  std::vector<std::string> Candidates(const Route& route, const std::vector<uint32_t>& owners) const {
    std::vector<std::string> live, down;
    for (uint32_t n : owners) {
      (IsDown(route.addresses[n]) ? down : live).push_back(route.addresses[n]);
    }
    live.insert(live.end(), down.begin(), down.end());
    return live;
  }

  std::vector<std::string> Addresses(const Route& route, const std::vector<uint32_t>& owners) const {
    std::vector<std::string> out;
    for (uint32_t n : owners) out.push_back(route.addresses[n]);
    return out;
  }

  // Audience fan-out: every live member, and the ids of the others (their
  // shards are evaluated by their next replica). With every node down, all
  // are asked anyway: the error then names them.
  std::pair<std::vector<std::string>, std::vector<std::string>> FanOut(const Route& route) const {
    std::vector<std::string> live, down_ids;
    for (size_t n = 0; n < route.addresses.size(); ++n) {
      if (route.placement && IsDown(route.addresses[n])) {
        down_ids.push_back(route.ids[n]);
      } else {
        live.push_back(route.addresses[n]);
      }
    }
    if (live.empty()) return {route.addresses, {}};
    return {live, down_ids};
  }

  // ---- Calls ----------------------------------------------------------------

  // Plans the call on the current map and scatters it; on WRONG_NODE (and,
  // for reads, on a lost node) refreshes the map and plans it once more.
  template <typename Part, typename Out>
  void Routed(const char* kind, bool idempotent, const CallOptions& options, Planner plan,
              PartDecoder<Part> decode, Merger<Part, Out> merge, Callback<Out> done) {
    const Clock::time_point deadline = Clock::now() + TimeoutFor(options);
    Attempt<Part, Out>(kind, idempotent, deadline, std::move(plan), std::move(decode),
                       std::move(merge), std::move(done), /*attempt=*/0);
  }

  // One request to one address, outside the map (admin calls, map fetches).
  template <typename T>
  void Direct(const char* kind, bool idempotent, const CallOptions& options, std::string address,
              std::function<std::vector<uint8_t>(uint64_t, const Envelope&)> encode,
              PartDecoder<T> decode, Callback<T> done) {
    const Clock::time_point deadline = Clock::now() + TimeoutFor(options);
    std::vector<Target> targets;
    targets.push_back(Target{{std::move(address)}, 0, std::move(encode)});
    // Epoch 0: an admin call is addressed, not routed, so no map check applies.
    Scatter<T, T>(kind, idempotent, deadline, Envelope{}, 0,
                  std::move(targets), std::move(decode), &FirstPart<T>, std::move(done));
  }

  // Asks every member of the map and every seed for its map and keeps the
  // newest; `done` runs on the I/O thread.
  void RefreshAsync(Clock::time_point deadline, std::function<void(Status)> done) {
    std::set<std::string> addresses(options_.seeds.begin(), options_.seeds.end());
    for (const std::string& a : route()->addresses) addresses.insert(a);
    struct State {
      size_t remaining = 0;
      bool any = false;
      Status last;
      std::optional<cluster::ClusterMap> best;
      std::function<void(Status)> done;
    };
    auto state = std::make_shared<State>();
    state->remaining = addresses.size();
    state->done = std::move(done);
    // A map fetch is small: it need not wait out a dead node's whole deadline.
    const Clock::time_point by =
        std::min(deadline, Clock::now() + std::max(options_.connect_timeout,
                                                   std::chrono::milliseconds(200)));
    for (const std::string& address : addresses) {
      std::vector<Target> targets;
      targets.push_back(Target{{address}, 0, &EncodeGetClusterMap});
      Scatter<NodeMap, NodeMap>(
          "getClusterMap", true, by, Envelope{}, 0, std::move(targets), &DecodeClusterMap,
          &FirstPart<NodeMap>, [this, state](Result<NodeMap> r) {
            if (r.ok()) {
              state->any = true;
              if (r->map.epoch > 0 && (!state->best || r->map.epoch > state->best->epoch)) {
                state->best = r->map;
              }
            } else {
              state->last = r.status();
            }
            if (--state->remaining > 0) return;
            if (state->best && state->best->epoch > route()->epoch()) {
              Result<std::shared_ptr<const Route>> next = Route::Of(*state->best);
              if (next.ok()) {
                std::lock_guard lock(map_mu_);
                if (!route_->placement || route_->epoch() < (*next)->epoch()) route_ = *next;
              }
            }
            state->done(state->any ? Status::Ok()
                                   : Status::IoError("no node answered for the cluster map: " +
                                                     state->last.ToString()));
          });
    }
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

  const ClientOptions& options() const { return options_; }

 private:
  template <typename Part, typename Out>
  void Attempt(const char* kind, bool idempotent, Clock::time_point deadline, Planner plan,
               PartDecoder<Part> decode, Merger<Part, Out> merge, Callback<Out> done, int attempt) {
    std::shared_ptr<const Route> r = route();
    Envelope env{r->epoch(), {}};
    std::vector<Target> targets = plan(*r, env);
    auto retry = [this, kind, idempotent, deadline, plan, decode, merge, done,
                  attempt](Result<Out> result) mutable {
      const Status& s = result.status();
      const bool wrong_node = s.code() == StatusCode::kWrongNode;
      const bool lost_node = idempotent && IsTransport(s) && !IsDeadlineExceeded(s);
      // A map is published node by node: for a few milliseconds nodes hold
      // different epochs and answer WRONG_NODE either way. Those retries
      // back off (5, 10, 20... ms); a lost node is routed around once.
      const int allowed = wrong_node ? kMaxWrongNodeRetries : 1;
      if (result.ok() || attempt >= allowed || !(wrong_node || lost_node) ||
          Clock::now() >= deadline) {
        done(std::move(result));
        return;
      }
      RefreshAsync(deadline, [this, kind, idempotent, deadline, plan = std::move(plan),
                              decode = std::move(decode), merge = std::move(merge),
                              done = std::move(done), attempt](Status) mutable {
        // The retry plans on the map as it is now, refreshed or not: a lost
        // node is marked down, so the plan routes around it.
        auto again = [this, kind, idempotent, deadline, plan = std::move(plan),
                      decode = std::move(decode), merge = std::move(merge),
                      done = std::move(done), attempt]() mutable {
          Attempt<Part, Out>(kind, idempotent, deadline, std::move(plan), std::move(decode),
                             std::move(merge), std::move(done), attempt + 1);
        };
        if (attempt == 0) {
          again();
          return;
        }
        auto timer = std::make_shared<asio::steady_timer>(io_);
        timer->expires_after(std::chrono::milliseconds(5) * (1 << std::min(attempt - 1, 8)));
        timer->async_wait([timer, again = std::move(again)](const boost::system::error_code&) mutable {
          again();
        });
      });
    };
    Scatter<Part, Out>(kind, idempotent, deadline, std::move(env), r->epoch(), std::move(targets),
                       std::move(decode), std::move(merge), std::move(retry));
  }

  // Sends every target's request (failover or parallel, see Target), decodes
  // each answer into a Part and, once every target is settled, merges them;
  // the first failed target's error wins instead (WRONG_NODE first, so that
  // the caller refreshes its map).
  template <typename Part, typename Out>
  void Scatter(const char* kind, bool idempotent, Clock::time_point deadline, Envelope env,
               uint64_t route_epoch, std::vector<Target> targets, PartDecoder<Part> decode,
               Merger<Part, Out> merge, Callback<Out> done) {
    struct TargetState {
      Target target;
      size_t next = 0;       // failover: the next candidate
      size_t answered = 0;   // parallel: answers so far
      std::vector<std::optional<Part>> parts;  // by address
      Status error;
      bool settled = false;
      bool ok = false;
    };
    struct State {
      std::vector<TargetState> targets;
      size_t unsettled = 0;
      Envelope env;
      PartDecoder<Part> decode;
      Merger<Part, Out> merge;
      Callback<Out> done;
    };
    if (targets.empty()) {  // cannot happen with a valid map; never leave `done` uncalled
      asio::post(io_, [done = std::move(done)] { done(Status::Internal("no node to ask")); });
      return;
    }
    auto state = std::make_shared<State>();
    state->unsettled = targets.size();
    state->env = std::move(env);
    state->decode = std::move(decode);
    state->merge = std::move(merge);
    state->done = std::move(done);
    for (Target& t : targets) {
      TargetState ts;
      ts.parts.resize(t.addresses.size());
      ts.target = std::move(t);
      state->targets.push_back(std::move(ts));
    }

    auto finish = [state]() {
      Status error;
      for (const TargetState& t : state->targets) {
        if (t.ok) continue;
        if (error.ok() || (t.error.code() == StatusCode::kWrongNode &&
                           error.code() != StatusCode::kWrongNode)) {
          error = t.error;
        }
      }
      if (!error.ok()) {
        state->done(error);
        return;
      }
      std::vector<std::vector<Part>> parts(state->targets.size());
      for (size_t i = 0; i < state->targets.size(); ++i) {
        for (auto& p : state->targets[i].parts) {
          if (p) parts[i].push_back(std::move(*p));
        }
      }
      state->done(state->merge(std::move(parts)));
    };

    // Sends target `ti`'s request to its address `ai`; runs on any thread
    // for the first send (encoding borrows nothing) and on the I/O thread after.
    auto send = std::make_shared<std::function<void(size_t, size_t)>>();
    std::weak_ptr<std::function<void(size_t, size_t)>> weak_send = send;
    *send = [this, state, kind, idempotent, deadline, route_epoch, finish, weak_send](size_t ti,
                                                                                      size_t ai) {
      TargetState& t = state->targets[ti];
      const std::string address = t.target.addresses[ai];
      auto call = std::make_unique<Call>();
      call->id = NextId();
      call->frame = t.target.encode(call->id, state->env);
      call->kind = kind;
      call->idempotent = idempotent;
      call->resends_left = idempotent ? 1 : 0;
      // A failover attempt gets its share of what is left, so that a node
      // that hangs leaves time for the next replica.
      const Clock::time_point now = Clock::now();
      Clock::time_point by = deadline;
      if (t.target.required == 0 && t.target.addresses.size() > ai + 1) {
        by = now + (deadline - now) / static_cast<int>(t.target.addresses.size() - ai);
      }
      call->deadline = by;
      call->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(by - now);
      auto keep_send = weak_send.lock();
      call->done = [this, state, ti, ai, address, route_epoch, deadline, finish, keep_send](
                       const Status& transport, const wire::Response::Reader* response) {
        TargetState& t = state->targets[ti];
        Result<Part> part = transport;
        if (transport.ok()) {
          MarkUp(address);
          if (route_epoch != 0 && ResponseEpoch(*response) > route_epoch) NoteNewerEpoch();
          part = state->decode(*response);
        } else {
          MarkDown(address);
        }
        if (t.target.required == 0) {
          if (part.ok()) {
            t.parts[ai] = std::move(part).value();
            t.ok = true;
          } else if (IsTransport(part.status()) && ai + 1 < t.target.addresses.size() &&
                     Clock::now() < deadline) {
            (*keep_send)(ti, ai + 1);  // fail over to the next replica
            return;
          } else {
            t.error = part.status();
          }
        } else {
          if (t.settled) return;  // settled early: a late replica's answer
          ++t.answered;
          if (part.ok()) {
            t.parts[ai] = std::move(part).value();
          } else if (t.error.ok() || part.status().code() == StatusCode::kWrongNode) {
            t.error = part.status();
          }
          size_t successes = 0;
          for (const auto& p : t.parts) successes += p.has_value() ? 1 : 0;
          const bool enough = t.target.settle_early && successes >= t.target.required &&
                              t.error.code() != StatusCode::kWrongNode;
          if (!enough && t.answered < t.target.addresses.size()) return;
          t.ok = successes >= t.target.required &&
                 !(t.error.code() == StatusCode::kWrongNode);
          if (!t.ok && t.error.ok()) t.error = Status::Internal("too few replicas answered");
          // One address: the node's own error, as is. Several: say how far replication got.
          if (!t.ok && t.error.code() != StatusCode::kWrongNode && t.target.addresses.size() > 1) {
            t.error = Status(t.error.code(), std::to_string(successes) + " of " +
                                                 std::to_string(t.target.addresses.size()) +
                                                 " replicas acknowledged, " +
                                                 std::to_string(t.target.required) +
                                                 " required: " + t.error.message());
          }
        }
        t.settled = true;
        if (--state->unsettled == 0) finish();
      };
      Dispatch(address, std::move(call));
    };
    // Requests are encoded and sent on the I/O thread; the targets own
    // their encoders' arguments.
    asio::post(io_, [state, send] {
      for (size_t ti = 0; ti < state->targets.size(); ++ti) {
        const Target& t = state->targets[ti].target;
        const size_t fan = t.required == 0 ? 1 : t.addresses.size();
        for (size_t ai = 0; ai < fan; ++ai) (*send)(ti, ai);
      }
    });
  }

  // On the I/O thread: the pool of `address`, created on first use.
  void Dispatch(const std::string& address, CallPtr call) {
    // A retry timer may fire while the client is being destroyed: no new
    // pool then (its reconnect loop would keep the I/O thread alive).
    if (closing_) {
      FailCall(*call, Status::IoError("client closed"));
      return;
    }
    auto it = pools_.find(address);
    if (it == pools_.end()) {
      Result<HostPort> hp = ParseHostPort(address);
      if (!hp.ok()) {
        FailCall(*call, hp.status());
        return;
      }
      asio::ip::tcp::resolver resolver(io_);
      boost::system::error_code ec;
      // TODO(perf): resolves on the I/O thread; instant for numeric addresses.
      auto endpoints = resolver.resolve(hp->host, std::to_string(hp->port), ec);
      if (ec) {
        FailCall(*call, Status::IoError("cannot resolve " + address + ": " + ec.message()));
        return;
      }
      auto pool = std::make_unique<NodePool>(io_, endpoints, address, connection_options_,
                                             options_.connections_per_node,
                                             [this] { return NextId(); });
      pool->Start([](Result<HelloInfo>) {});
      it = pools_.emplace(address, std::move(pool)).first;
    }
    it->second->Dispatch(std::move(call));
  }

  // A node answered from a newer map: refresh in the background, once at a time.
  void NoteNewerEpoch() {
    if (refreshing_.exchange(true)) return;
    RefreshAsync(Clock::now() + options_.request_timeout,
                 [this](Status) { refreshing_.store(false); });
  }

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
  ConnectionOptions connection_options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::atomic<uint64_t> next_id_{1};  // 0 is the node's "could not read the request"
  std::atomic<bool> refreshing_{false};

  mutable std::mutex map_mu_;
  std::shared_ptr<const Route> route_;  // guarded by map_mu_; immutable once built

  mutable std::mutex down_mu_;
  std::unordered_map<std::string, Clock::time_point> down_until_;  // guarded by down_mu_

  bool closing_ = false;  // I/O thread only: set when the destructor starts
  // By address; I/O thread only (Start() hands its first pool over there).
  std::map<std::string, std::unique_ptr<NodePool>> pools_;
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
  if (options.token.size() > kMaxTokenBytes) {
    return Status::BadRequest("the token has " + std::to_string(options.token.size()) +
                              " bytes; at most " + std::to_string(kMaxTokenBytes) + " are sent");
  }
  std::shared_ptr<asio::ssl::context> tls;
  if (options.tls.enabled) {
    auto ctx = security::MakeClientContext(
        {options.tls.ca_file, options.tls.cert_file, options.tls.key_file});
    if (!ctx.ok()) return ctx.status();
    tls = std::move(ctx).value();
  } else if (!options.tls.ca_file.empty() || !options.tls.cert_file.empty()) {
    return Status::BadRequest("TLS files are given but TLS is not enabled (tls.enabled)");
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(tls));
  Status status = impl->Start();
  if (!status.ok()) return status;
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() = default;

int Client::shard_bits() const { return impl_->route()->shard_bits; }

std::vector<std::string> Client::nodes() const { return impl_->route()->addresses; }

cluster::ClusterMap Client::cluster_map() const { return impl_->route()->map; }

Status Client::RefreshMap() {
  Result<bool> r = impl_->Wait<bool>([&](Callback<bool> done) {
    impl_->RefreshAsync(Clock::now() + impl_->options().request_timeout,
                        [done = std::move(done)](Status s) {
                          done(s.ok() ? Result<bool>(true) : Result<bool>(s));
                        });
  });
  return r.ok() ? Status::Ok() : r.status();
}

namespace {

// Every member once, in map order (admin fan-outs: stats, checkpoint, ping).
std::vector<Target> EveryNode(const Route& route, const Encoder& encode) {
  std::vector<Target> targets;
  for (const std::string& address : route.addresses) targets.push_back(Target{{address}, 1, encode});
  return targets;
}

template <typename T>
std::vector<T> Flatten(std::vector<std::vector<T>> parts) {
  std::vector<T> out;
  for (auto& p : parts) {
    for (auto& x : p) out.push_back(std::move(x));
  }
  return out;
}

}  // namespace

// ---- Async calls ------------------------------------------------------------

void Client::PingAsync(Callback<std::chrono::microseconds> done, const CallOptions& call) {
  const Clock::time_point start = Clock::now();
  PartDecoder<std::chrono::microseconds> decode =
      [start](const wire::Response::Reader& r) -> Result<std::chrono::microseconds> {
    Status status = DecodePing(r);
    if (!status.ok()) return status;
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  };
  Merger<std::chrono::microseconds, std::chrono::microseconds> slowest =
      [](std::vector<std::vector<std::chrono::microseconds>> parts)
      -> Result<std::chrono::microseconds> {
    std::vector<std::chrono::microseconds> all = Flatten(std::move(parts));
    return *std::max_element(all.begin(), all.end());
  };
  impl_->Routed<std::chrono::microseconds, std::chrono::microseconds>(
      "ping", true, call, [](const Route& r, Envelope&) { return EveryNode(r, &EncodePing); },
      decode, slowest, std::move(done));
}

namespace {

// A keyed read of one user: the read owners of its shard, live ones first.
Planner UserPlan(Client::Impl* impl, UserId user, Encoder encode) {
  return [impl, user, encode = std::move(encode)](const Route& r, Envelope&) {
    std::vector<Target> t;
    t.push_back(Target{impl->Candidates(r, r.ReadOwners(user >> r.shard_bits)), 0, encode});
    return t;
  };
}

}  // namespace

void Client::GetTagsAsync(UserId user, bool with_ts, Callback<std::vector<TagHit>> done,
                          const CallOptions& call) {
  impl_->Routed<std::vector<TagHit>, std::vector<TagHit>>(
      "getTags", true, call,
      UserPlan(impl_.get(), user,
               [user, with_ts](uint64_t id, const Envelope& env) {
                 return EncodeGetTags(id, env, user, with_ts);
               }),
      &DecodeGetTags, &FirstPart<std::vector<TagHit>>, std::move(done));
}

void Client::HasTagsAsync(UserId user, const std::vector<std::string>& tags,
                          Callback<std::vector<bool>> done, const CallOptions& call) {
  impl_->Routed<std::vector<bool>, std::vector<bool>>(
      "hasTags", true, call,
      UserPlan(impl_.get(), user,
               [user, tags](uint64_t id, const Envelope& env) {
                 return EncodeHasTags(id, env, user, tags);
               }),
      &DecodeHasTags, &FirstPart<std::vector<bool>>, std::move(done));
}

void Client::GetTagsBatchAsync(const std::vector<UserId>& users, bool with_ts,
                               Callback<std::vector<UserTags>> done, const CallOptions& call) {
  Impl* impl = impl_.get();
  // Where each target's users go back in the answer; rebuilt by every plan.
  auto positions = std::make_shared<std::vector<std::vector<size_t>>>();
  Planner plan = [impl, users, with_ts, positions](const Route& r, Envelope&) {
    // Split by replica set, remembering where each user goes back.
    std::map<std::vector<uint32_t>, std::vector<size_t>> by_owners;
    for (size_t i = 0; i < users.size(); ++i) {
      by_owners[r.ReadOwners(users[i] >> r.shard_bits)].push_back(i);
    }
    if (by_owners.empty()) by_owners[r.ReadOwners(0)];  // an empty batch still gets an answer
    positions->clear();
    std::vector<Target> targets;
    for (auto& [owners, indexes] : by_owners) {
      std::vector<UserId> subset;
      subset.reserve(indexes.size());
      for (size_t i : indexes) subset.push_back(users[i]);
      targets.push_back(Target{impl->Candidates(r, owners), 0,
                               [subset = std::move(subset), with_ts](uint64_t id,
                                                                     const Envelope& env) {
                                 return EncodeGetTagsBatch(id, env, subset, with_ts);
                               }});
      positions->push_back(indexes);
    }
    return targets;
  };
  const size_t total = users.size();
  Merger<std::vector<UserTags>, std::vector<UserTags>> reassemble =
      [positions, total](
          std::vector<std::vector<std::vector<UserTags>>> parts) -> Result<std::vector<UserTags>> {
    std::vector<UserTags> out(total);
    for (size_t p = 0; p < parts.size(); ++p) {
      const auto& where = (*positions)[p];
      auto& got = parts[p].front();
      if (got.size() != where.size()) {
        return Status::Internal("getTagsBatch: the node answered " + std::to_string(got.size()) +
                                " users for " + std::to_string(where.size()) + " asked");
      }
      for (size_t j = 0; j < where.size(); ++j) out[where[j]] = std::move(got[j]);
    }
    return out;
  };
  impl_->Routed<std::vector<UserTags>, std::vector<UserTags>>(
      "getTagsBatch", true, call, std::move(plan), &DecodeGetTagsBatch, reassemble,
      std::move(done));
}

namespace {

// An audience query's plan: every live node, each told which nodes are down
// (docs/CLUSTER.md: each shard is evaluated by its first live replica).
template <typename MakeEncoder>
Planner FanOutPlan(Client::Impl* impl, MakeEncoder make) {
  return [impl, make](const Route& r, Envelope& env) {
    auto [live, down] = impl->FanOut(r);
    env.down = std::move(down);
    std::vector<Target> targets;
    const bool several = live.size() > 1;
    for (const std::string& address : live) targets.push_back(Target{{address}, 0, make(several)});
    return targets;
  };
}

}  // namespace

void Client::CountAsync(const std::string& expr, Callback<uint64_t> done, const CallOptions& call) {
  // Every shard is evaluated by exactly one node, so the counts add up.
  Merger<uint64_t, uint64_t> sum = [](std::vector<std::vector<uint64_t>> parts) -> Result<uint64_t> {
    uint64_t total = 0;
    for (const auto& part : parts) total += part.front();
    return total;
  };
  impl_->Routed<uint64_t, uint64_t>(
      "count", true, call, FanOutPlan(impl_.get(), [expr](bool) -> Encoder {
        return [expr](uint64_t id, const Envelope& env) { return EncodeCount(id, env, expr); };
      }),
      &DecodeCount, sum, std::move(done));
}

void Client::AudienceAsync(const std::string& expr, UserId cursor, uint32_t limit,
                           Callback<AudiencePage> done, const CallOptions& call) {
  // Every node pages from the same cursor; the merged page keeps the
  // smallest `limit` ids and continues after the last one it kept.
  Merger<AudiencePage, AudiencePage> merge =
      [limit](std::vector<std::vector<AudiencePage>> nested) -> Result<AudiencePage> {
    std::vector<AudiencePage> parts = Flatten(std::move(nested));
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
  impl_->Routed<AudiencePage, AudiencePage>(
      "audience", true, call,
      FanOutPlan(impl_.get(),
                 [expr, cursor, limit](bool) -> Encoder {
                   return [expr, cursor, limit](uint64_t id, const Envelope& env) {
                     return EncodeAudience(id, env, expr, cursor, limit);
                   };
                 }),
      &DecodeAudience, merge, std::move(done));
}

void Client::AudienceBitmapsAsync(const std::string& expr, Callback<std::vector<ShardBitmap>> done,
                                  const CallOptions& call) {
  Merger<std::vector<ShardBitmap>, std::vector<ShardBitmap>> concat =
      [](std::vector<std::vector<std::vector<ShardBitmap>>> parts)
      -> Result<std::vector<ShardBitmap>> {
    std::vector<ShardBitmap> out;
    for (auto& target : parts) {
      for (auto& part : target) {
        for (auto& shard : part) out.push_back(std::move(shard));
      }
    }
    std::sort(out.begin(), out.end(),
              [](const ShardBitmap& a, const ShardBitmap& b) { return a.shard < b.shard; });
    return out;
  };
  impl_->Routed<std::vector<ShardBitmap>, std::vector<ShardBitmap>>(
      "audienceBitmaps", true, call, FanOutPlan(impl_.get(), [expr](bool) -> Encoder {
        return [expr](uint64_t id, const Envelope& env) {
          return EncodeAudienceBitmaps(id, env, expr);
        };
      }),
      &DecodeAudienceBitmaps, concat, std::move(done));
}

void Client::TopTagsAsync(const std::string& expr, uint32_t k, Callback<std::vector<TagCount>> done,
                          const CallOptions& call) {
  // With several nodes each sends every non-zero count (`all`): summing
  // per-node top-k lists would miss a tag that is k+1-th everywhere.
  Merger<std::vector<TagCount>, std::vector<TagCount>> merge =
      [k](std::vector<std::vector<std::vector<TagCount>>> nested)
      -> Result<std::vector<TagCount>> {
    std::vector<std::vector<TagCount>> parts = Flatten(std::move(nested));
    if (parts.size() == 1 && parts.front().size() <= k) return std::move(parts.front());
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
  impl_->Routed<std::vector<TagCount>, std::vector<TagCount>>(
      "topTags", true, call, FanOutPlan(impl_.get(), [expr, k](bool several) -> Encoder {
        return [expr, k, several](uint64_t id, const Envelope& env) {
          return EncodeTopTags(id, env, expr, k, several);
        };
      }),
      &DecodeTopTags, merge, std::move(done));
}

void Client::ApplyEventsAsync(const std::vector<Event>& events, Callback<ApplyEventsResult> done,
                              const CallOptions& call) {
  const WriteConcern concern = impl_->options().write_concern;
  auto shared = std::make_shared<const std::vector<Event>>(events);
  Planner plan = [shared, concern](const Route& r, Envelope&) {
    // One target per replica set: its events go to every replica of the set
    // and need the concern's acknowledgements there.
    std::map<std::vector<uint32_t>, std::pair<std::vector<Event>, size_t>> by_owners;
    std::unordered_map<uint64_t, std::vector<uint32_t>> owners_of;  // per shard, once
    for (const Event& event : *shared) {
      const uint64_t shard = event.user >> r.shard_bits;
      auto it = owners_of.find(shard);
      if (it == owners_of.end()) it = owners_of.emplace(shard, r.WriteOwners(shard)).first;
      auto& group = by_owners[it->second];
      group.first.push_back(event);
      group.second = std::max(group.second, r.Required(concern, shard));
    }
    if (by_owners.empty()) by_owners[r.WriteOwners(0)].second = 1;
    std::vector<Target> targets;
    for (auto& [owners, group] : by_owners) {
      std::vector<std::string> addresses;
      for (uint32_t n : owners) addresses.push_back(r.addresses[n]);
      auto subset = std::make_shared<const std::vector<Event>>(std::move(group.first));
      targets.push_back(Target{std::move(addresses), std::min(group.second, owners.size()),
                               [subset](uint64_t id, const Envelope& env) {
                                 return EncodeApplyEvents(id, env, *subset);
                               }});
    }
    return targets;
  };
  // Each replica set's events are counted once, from its first replica that answered.
  Merger<ApplyEventsResult, ApplyEventsResult> sum =
      [](std::vector<std::vector<ApplyEventsResult>> parts) -> Result<ApplyEventsResult> {
    ApplyEventsResult total;
    for (const auto& part : parts) {
      total.applied += part.front().applied;
      total.ignored += part.front().ignored;
    }
    return total;
  };
  impl_->Routed<ApplyEventsResult, ApplyEventsResult>("applyEvents", false, call, std::move(plan),
                                                      &DecodeApplyEvents, sum, std::move(done));
}

void Client::LoadSnapshotAsync(const std::string& tag, Timestamp ts, uint64_t shard,
                               const std::string& portable_bitmap, Callback<SnapshotOutcome> done,
                               const CallOptions& call) {
  const WriteConcern concern = impl_->options().write_concern;
  // One copy of the bitmap, shared by every replica's encoder.
  auto bitmap = std::make_shared<const std::string>(portable_bitmap);
  Planner plan = [tag, ts, shard, bitmap, concern](const Route& r, Envelope&) {
    std::vector<uint32_t> owners = r.WriteOwners(shard);
    std::vector<std::string> addresses;
    for (uint32_t n : owners) addresses.push_back(r.addresses[n]);
    std::vector<Target> targets;
    targets.push_back(Target{std::move(addresses), std::min(r.Required(concern, shard), owners.size()),
                             [tag, ts, shard, bitmap](uint64_t id, const Envelope& env) {
                               return EncodeLoadSnapshot(id, env, tag, ts, shard, *bitmap);
                             }});
    return targets;
  };
  impl_->Routed<SnapshotOutcome, SnapshotOutcome>("loadSnapshot", false, call, std::move(plan),
                                                  &DecodeLoadSnapshot, &FirstPart<SnapshotOutcome>,
                                                  std::move(done));
}

void Client::CommitSnapshotAsync(const std::string& tag, Timestamp ts,
                                 const std::vector<uint64_t>& shards, Callback<CommitOutcome> done,
                                 const CallOptions& call) {
  const WriteConcern concern = impl_->options().write_concern;
  auto named = std::make_shared<const std::vector<uint64_t>>(shards);
  // Every node learns the whole commit (rule 4 covers shards it holds no
  // state for, and shards that may move to it later); each reports the
  // missing parts it owns. A node that misses the commit gets it from a
  // replica's tag records at the next repair.
  Planner plan = [tag, ts, named, concern](const Route& r, Envelope&) {
    const size_t n = r.addresses.size();
    const size_t need = concern == WriteConcern::kAll ? n : concern == WriteConcern::kOne ? 1 : (n + 1) / 2;
    std::vector<Target> targets;
    targets.push_back(Target{r.addresses, std::min(need, n),
                             [tag, ts, named](uint64_t id, const Envelope& env) {
                               return EncodeCommitSnapshot(id, env, tag, ts, *named);
                             }});
    return targets;
  };
  Merger<CommitOutcome, CommitOutcome> merge =
      [](std::vector<std::vector<CommitOutcome>> nested) -> Result<CommitOutcome> {
    std::vector<CommitOutcome> parts = Flatten(std::move(nested));
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
  impl_->Routed<CommitOutcome, CommitOutcome>("commitSnapshot", false, call, std::move(plan),
                                              &DecodeCommitSnapshot, merge, std::move(done));
}

void Client::StatsAsync(Callback<std::vector<NodeStats>> done, const CallOptions& call) {
  auto route = impl_->route();
  Merger<NodeStats, std::vector<NodeStats>> name =
      [route](std::vector<std::vector<NodeStats>> parts) -> Result<std::vector<NodeStats>> {
    std::vector<NodeStats> out = Flatten(std::move(parts));
    for (size_t node = 0; node < out.size() && node < route->addresses.size(); ++node) {
      out[node].node = route->addresses[node];
    }
    return out;
  };
  impl_->Routed<NodeStats, std::vector<NodeStats>>(
      "stats", true, call, [route](const Route&, Envelope&) { return EveryNode(*route, &EncodeStats); },
      &DecodeStats, name, std::move(done));
}

void Client::CheckpointAsync(Callback<std::vector<NodeCheckpoint>> done, const CallOptions& call) {
  auto route = impl_->route();
  Merger<NodeCheckpoint, std::vector<NodeCheckpoint>> name =
      [route](std::vector<std::vector<NodeCheckpoint>> parts)
      -> Result<std::vector<NodeCheckpoint>> {
    std::vector<NodeCheckpoint> out = Flatten(std::move(parts));
    for (size_t node = 0; node < out.size() && node < route->addresses.size(); ++node) {
      out[node].node = route->addresses[node];
    }
    return out;
  };
  // Not idempotent for the retry logic: a re-send after a lost connection
  // would start a second checkpoint while the node may still write the first.
  impl_->Routed<NodeCheckpoint, std::vector<NodeCheckpoint>>(
      "checkpoint", false, call,
      [route](const Route&, Envelope&) { return EveryNode(*route, &EncodeCheckpoint); },
      &DecodeCheckpoint, name, std::move(done));
}

// ---- Admin calls to one node --------------------------------------------------

Result<NodeMap> Client::GetNodeMap(const std::string& address, const CallOptions& call) {
  return impl_->Wait<NodeMap>([&](Callback<NodeMap> done) {
    impl_->Direct<NodeMap>("getClusterMap", true, call, address, &EncodeGetClusterMap,
                           &DecodeClusterMap, std::move(done));
  });
}

Status Client::SetNodeMap(const std::string& address, const cluster::ClusterMap& map,
                          const std::string& node_id, const CallOptions& call) {
  Result<bool> r = impl_->Wait<bool>([&](Callback<bool> done) {
    impl_->Direct<bool>(
        "setClusterMap", false, call, address,
        [map, node_id](uint64_t id, const Envelope& env) {
          return EncodeSetClusterMap(id, env, map, node_id);
        },
        [](const wire::Response::Reader& resp) -> Result<bool> {
          Status s = DecodeSetClusterMap(resp);
          if (!s.ok()) return s;
          return true;
        },
        std::move(done));
  });
  return r.ok() ? Status::Ok() : r.status();
}

Result<std::vector<ShardDigest>> Client::NodeShardDigests(const std::string& address,
                                                          const CallOptions& call) {
  return impl_->Wait<std::vector<ShardDigest>>([&](Callback<std::vector<ShardDigest>> done) {
    impl_->Direct<std::vector<ShardDigest>>("shardDigests", true, call, address,
                                            &EncodeShardDigests, &DecodeShardDigests,
                                            std::move(done));
  });
}

Result<std::vector<uint64_t>> Client::NodeShards(const std::string& address,
                                                const CallOptions& call) {
  return impl_->Wait<std::vector<uint64_t>>([&](Callback<std::vector<uint64_t>> done) {
    impl_->Direct<std::vector<uint64_t>>("listShards", true, call, address, &EncodeListShards,
                                         &DecodeListShards, std::move(done));
  });
}

Result<std::string> Client::ExportShard(const std::string& address, uint64_t shard,
                                        const CallOptions& call) {
  return impl_->Wait<std::string>([&](Callback<std::string> done) {
    impl_->Direct<std::string>(
        "exportShard", true, call, address,
        [shard](uint64_t id, const Envelope& env) { return EncodeExportShard(id, env, shard); },
        &DecodeExportShard, std::move(done));
  });
}

Status Client::MergeShard(const std::string& address, const std::string& state,
                          const CallOptions& call) {
  auto bytes = std::make_shared<const std::string>(state);
  Result<bool> r = impl_->Wait<bool>([&](Callback<bool> done) {
    impl_->Direct<bool>(
        "mergeShard", false, call, address,
        [bytes](uint64_t id, const Envelope& env) { return EncodeMergeShard(id, env, *bytes); },
        [](const wire::Response::Reader& resp) -> Result<bool> {
          Status s = DecodeMergeShard(resp);
          if (!s.ok()) return s;
          return true;
        },
        std::move(done));
  });
  return r.ok() ? Status::Ok() : r.status();
}

Result<NodeStats> Client::NodeStatsOf(const std::string& address, const CallOptions& call) {
  Result<NodeStats> r = impl_->Wait<NodeStats>([&](Callback<NodeStats> done) {
    impl_->Direct<NodeStats>("stats", true, call, address, &EncodeStats, &DecodeStats,
                             std::move(done));
  });
  if (r.ok()) r->node = address;
  return r;
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
