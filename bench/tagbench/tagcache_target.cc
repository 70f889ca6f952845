#include "tagbench/tagcache_target.h"

#include <algorithm>
#include <atomic>
#include <vector>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <sstream>

#include "tagcache/client/client.h"

namespace tagcache::tagbench {
namespace {

// Shared by a session and the callbacks of its ops in flight: a callback
// may run after the session is gone (drain timeout), so it holds a reference.
struct Queue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Completion> done;
  std::function<void(Completion)> handler;  // set before the first op; then read-only

  void Push(Completion c) {
    if (handler) {
      handler(std::move(c));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      done.push_back(std::move(c));
    }
    cv.notify_one();
  }
};

OpOutcome ErrorOutcome(const Status& s) {
  return {std::string(StatusCodeName(s.code())), s.message(), {}};
}

class TagcacheSession : public Session {
 public:
  TagcacheSession(client::Client* client, bool keep, std::chrono::milliseconds timeout)
      : client_(client), keep_(keep), queue_(std::make_shared<Queue>()) {
    call_.timeout = timeout;
  }

  void Send(const Op& op, uint64_t token) override {
    std::shared_ptr<Queue> q = queue_;
    const bool keep = keep_;
    switch (op.kind) {
      case OpKind::kGetTags:
      case OpKind::kGetTagsHot:
        client_->GetTagsAsync(
            op.users[0], false,
            [q, token, keep](Result<std::vector<client::TagHit>> r) {
              Completion c{token, {}};
              if (!r.ok()) {
                c.outcome = ErrorOutcome(r.status());
              } else {
                c.outcome.answer.count = r->size();
                if (keep) {
                  std::vector<std::string> names;
                  for (auto& h : *r) names.push_back(std::move(h.tag));
                  std::sort(names.begin(), names.end());
                  c.outcome.answer.tags.push_back(std::move(names));
                }
              }
              q->Push(std::move(c));
            },
            call_);
        break;
      case OpKind::kGetTagsBatch:
        client_->GetTagsBatchAsync(
            op.users, false,
            [q, token, keep](Result<std::vector<client::UserTags>> r) {
              Completion c{token, {}};
              if (!r.ok()) {
                c.outcome = ErrorOutcome(r.status());
              } else {
                for (auto& u : *r) {
                  c.outcome.answer.count += u.tags.size();
                  if (keep) {
                    std::vector<std::string> names;
                    for (auto& h : u.tags) names.push_back(std::move(h.tag));
                    std::sort(names.begin(), names.end());
                    c.outcome.answer.tags.push_back(std::move(names));
                  }
                }
              }
              q->Push(std::move(c));
            },
            call_);
        break;
      case OpKind::kHasTags:
        client_->HasTagsAsync(
            op.users[0], op.tags,
            [q, token](Result<std::vector<bool>> r) {
              Completion c{token, {}};
              if (!r.ok()) {
                c.outcome = ErrorOutcome(r.status());
              } else {
                c.outcome.answer.count =
                    static_cast<uint64_t>(std::count(r->begin(), r->end(), true));
                c.outcome.answer.has = std::move(*r);
              }
              q->Push(std::move(c));
            },
            call_);
        break;
      case OpKind::kCount:
        client_->CountAsync(
            op.expr.text,
            [q, token](Result<uint64_t> r) {
              Completion c{token, {}};
              if (!r.ok()) {
                c.outcome = ErrorOutcome(r.status());
              } else {
                c.outcome.answer.count = *r;
              }
              q->Push(std::move(c));
            },
            call_);
        break;
      case OpKind::kTopTags:
        client_->TopTagsAsync(
            op.expr.text, op.k,
            [q, token](Result<std::vector<client::TagCount>> r) {
              Completion c{token, {}};
              if (!r.ok()) {
                c.outcome = ErrorOutcome(r.status());
              } else {
                c.outcome.answer.count = r->size();
                for (auto& t : *r) c.outcome.answer.top.emplace_back(std::move(t.tag), t.count);
              }
              q->Push(std::move(c));
            },
            call_);
        break;
      case OpKind::kUpdate: {
        client::Event e;
        e.user = op.users[0];
        e.tag = op.tags[0];
        e.op = op.set ? client::TagOp::kSet : client::TagOp::kClear;
        e.ts = op.ts;
        client_->ApplyEventsAsync(
            {e},
            [q, token](Result<client::ApplyEventsResult> r) {
              Completion c{token, {}};
              if (!r.ok()) {
                c.outcome = ErrorOutcome(r.status());
              } else {
                c.outcome.answer.count = r->applied;
              }
              q->Push(std::move(c));
            },
            call_);
        break;
      }
    }
  }

  bool SetHandler(std::function<void(Completion)> handler) override {
    queue_->handler = std::move(handler);
    return true;
  }

  std::optional<Completion> Next(Clock::time_point deadline) override {
    std::unique_lock<std::mutex> lock(queue_->mu);
    if (!queue_->cv.wait_until(lock, deadline, [&] { return !queue_->done.empty(); }))
      return std::nullopt;
    Completion c = std::move(queue_->done.front());
    queue_->done.pop_front();
    return c;
  }

 private:
  client::Client* client_;
  bool keep_;
  client::CallOptions call_;
  std::shared_ptr<Queue> queue_;
};

class TagcacheTarget : public Target {
 public:
  TagcacheTarget(std::vector<std::unique_ptr<client::Client>> clients, std::string seeds,
                 std::chrono::milliseconds timeout)
      : clients_(std::move(clients)), seeds_(std::move(seeds)), timeout_(timeout) {}

  std::string Describe() const override { return "tagcache " + seeds_; }
  std::string Kind() const override { return "tagcache"; }

  Result<std::unique_ptr<Session>> OpenSession(const SessionOptions& options) override {
    // Sessions take the clients in turn, so each client's I/O thread
    // serves its share of the connections.
    client::Client* client = clients_[next_client_.fetch_add(1, std::memory_order_relaxed) % clients_.size()].get();
    return std::unique_ptr<Session>(
        std::make_unique<TagcacheSession>(client, options.keep_answers, timeout_));
  }

  Result<MemoryReport> Memory() override {
    Result<std::vector<client::NodeStats>> stats = clients_.front()->Stats();
    if (!stats.ok()) return stats.status();
    MemoryReport m;
    for (const auto& n : *stats) {
      m.data_bytes += n.bitmap_bytes + n.override_bytes + n.index_bytes + n.known_bytes;
      m.rss_bytes += n.memory_bytes;
    }
    return m;
  }

 private:
  std::vector<std::unique_ptr<client::Client>> clients_;  // at least one
  std::atomic<size_t> next_client_{0};  // sessions may open on several threads
  std::string seeds_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

Result<std::unique_ptr<Target>> ConnectTagcache(const TagcacheTargetOptions& options) {
  if (options.connections < 1 || options.depth < 1) {
    return Status::BadRequest("connections and depth must be >= 1");
  }
  if (options.clients < 1) return Status::BadRequest("tagcache clients must be >= 1");
  // Never more clients than connections: each client holds at least one.
  const int clients = std::min(options.clients, options.connections);
  client::ClientOptions co;
  co.seeds.clear();
  std::stringstream ss(options.seeds);
  for (std::string s; std::getline(ss, s, ',');) {
    if (!s.empty()) co.seeds.push_back(s);
  }
  if (co.seeds.empty()) return Status::BadRequest("no tagcache address given");
  // The driver keeps `depth` ops in flight per connection; leave headroom so
  // the client's queue, not a refusal, absorbs a burst.
  co.max_in_flight = static_cast<size_t>(options.depth) * 2;
  co.request_timeout = options.timeout;
  co.client_name = "tagbench";
  if (Status s = client::ApplyCredentials(options.credentials, co); !s.ok()) return s;
  std::vector<std::unique_ptr<client::Client>> opened;
  for (int i = 0; i < clients; ++i) {
    // The connections split as evenly as they go: 32 over 3 is 11, 11, 10.
    co.connections_per_node = options.connections / clients + (i < options.connections % clients);
    Result<std::unique_ptr<client::Client>> c = client::Client::Connect(co);
    if (!c.ok()) return c.status();
    opened.push_back(std::move(c).value());
  }
  return std::unique_ptr<Target>(
      std::make_unique<TagcacheTarget>(std::move(opened), options.seeds, options.timeout));
}

}  // namespace tagcache::tagbench
