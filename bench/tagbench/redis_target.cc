#include "tagbench/redis_target.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <algorithm>
#include <deque>
#include <thread>

#include "tagbench/redis_plan.h"

namespace tagcache::tagbench {
namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

Result<ContextPtr> Connect(const RedisAddress& a, std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ContextPtr c(redisConnectWithTimeout(a.host.c_str(), a.port, tv));
  if (!c) return Status::IoError("redis: cannot allocate a context");
  if (c->err)
    return Status::IoError("redis " + a.host + ":" + std::to_string(a.port) + ": " + c->errstr);
  // Reads block only after poll() said the socket is readable; the timeout
  // bounds a stuck write or a server that stopped answering.
  redisSetTimeout(c.get(), tv);
  return c;
}

std::string FirstWord(const char* s, size_t n) {
  std::string w(s, n);
  const size_t sp = w.find(' ');
  return sp == std::string::npos ? w : w.substr(0, sp);
}

struct Pending {
  uint64_t token;
  Op op;  // kept for interpreting the replies
  RedisPlan plan;
  std::vector<ReplyPtr> replies;
};

OpOutcome Interpret(const Pending& p, bool keep) {
  OpOutcome out;
  for (const ReplyPtr& r : p.replies) {
    if (r->type == REDIS_REPLY_ERROR) {
      out.error = FirstWord(r->str, r->len);
      out.message = std::string(r->str, r->len);
      return out;
    }
  }
  auto bad_reply = [&](const char* what) {
    out.error = "BAD_REPLY";
    out.message = std::string("unexpected reply type to ") + what;
    return out;
  };
  OpAnswer& a = out.answer;
  switch (p.op.kind) {
    case OpKind::kGetTags:
    case OpKind::kGetTagsHot:
    case OpKind::kGetTagsBatch:
      for (size_t i : p.plan.answer_replies) {
        const redisReply* r = p.replies[i].get();
        if (r->type != REDIS_REPLY_ARRAY) return bad_reply("SMEMBERS");
        a.count += r->elements;
        if (keep) {
          std::vector<std::string> names;
          for (size_t e = 0; e < r->elements; ++e)
            names.emplace_back(r->element[e]->str, r->element[e]->len);
          std::sort(names.begin(), names.end());
          a.tags.push_back(std::move(names));
        }
      }
      break;
    case OpKind::kHasTags: {
      const redisReply* r = p.replies[p.plan.answer_replies[0]].get();
      if (r->type != REDIS_REPLY_ARRAY) return bad_reply("SMISMEMBER");
      for (size_t e = 0; e < r->elements; ++e) {
        const bool has = r->element[e]->type == REDIS_REPLY_INTEGER && r->element[e]->integer == 1;
        a.has.push_back(has);
        a.count += has ? 1 : 0;
      }
      break;
    }
    case OpKind::kCount: {
      const redisReply* r = p.replies[p.plan.answer_replies[0]].get();
      if (r->type != REDIS_REPLY_INTEGER) return bad_reply("BITCOUNT");
      a.count = static_cast<uint64_t>(r->integer);
      break;
    }
    case OpKind::kTopTags: {
      std::vector<std::pair<std::string, uint64_t>> counts;
      for (size_t i = 0; i < p.plan.answer_replies.size(); ++i) {
        const redisReply* r = p.replies[p.plan.answer_replies[i]].get();
        if (r->type != REDIS_REPLY_INTEGER) return bad_reply("BITCOUNT");
        counts.emplace_back(p.plan.top_tags[i], static_cast<uint64_t>(r->integer));
      }
      a.top = RankTopTags(std::move(counts), p.op.k);
      a.count = a.top.size();
      break;
    }
    case OpKind::kUpdate: {
      const redisReply* r = p.replies[0].get();
      if (r->type != REDIS_REPLY_INTEGER) return bad_reply("SADD/SREM");
      a.count = static_cast<uint64_t>(r->integer);
      break;
    }
  }
  return out;
}

class RedisSession : public Session {
 public:
  RedisSession(ContextPtr c, const std::vector<std::string>* tags, int index, bool keep)
      : c_(std::move(c)), tags_(tags), index_(index), keep_(keep) {}

  void Send(const Op& op, uint64_t token) override {
    Pending p{token, op, PlanRedis(op, *tags_, index_), {}};
    if (broken_.empty()) {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const auto& cmd : p.plan.commands) {
        argv.clear();
        lens.clear();
        for (const auto& s : cmd) {
          argv.push_back(s.data());
          lens.push_back(s.size());
        }
        if (redisAppendCommandArgv(c_.get(), static_cast<int>(argv.size()), argv.data(),
                                   lens.data()) != REDIS_OK) {
          Break(std::string("append failed: ") + c_->errstr);
          break;
        }
      }
    }
    pending_.push_back(std::move(p));
  }

  std::optional<Completion> Next(Clock::time_point deadline) override {
    while (true) {
      if (pending_.empty()) {
        std::this_thread::sleep_until(deadline);
        return std::nullopt;
      }
      if (!broken_.empty()) return Fail(broken_);
      // Replies already read and buffered first.
      Pending& front = pending_.front();
      while (front.replies.size() < front.plan.commands.size()) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(c_.get(), &raw) != REDIS_OK) {
          Break(std::string("protocol error: ") + c_->errstr);
          return Fail(broken_);
        }
        if (raw == nullptr) break;
        front.replies.emplace_back(static_cast<redisReply*>(raw));
      }
      if (front.replies.size() == front.plan.commands.size()) {
        Completion c{front.token, Interpret(front, keep_)};
        pending_.pop_front();
        return c;
      }
      int done = 0;
      while (!done) {
        if (redisBufferWrite(c_.get(), &done) != REDIS_OK) {
          Break(std::string("write failed: ") + c_->errstr);
          return Fail(broken_);
        }
      }
      // ppoll: a nanosecond timeout, so an open-loop schedule between two
      // sends sleeps instead of spinning on a rounded-down 0 ms poll.
      const int64_t wait_ns = std::clamp<int64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()).count(), 0,
          1'000'000'000);
      const timespec ts{static_cast<time_t>(wait_ns / 1'000'000'000),
                        static_cast<long>(wait_ns % 1'000'000'000)};
      pollfd pfd{c_->fd, POLLIN, 0};
      const int ready = ::ppoll(&pfd, 1, &ts, nullptr);
      if (ready == 0) {
        if (Clock::now() >= deadline) return std::nullopt;
        continue;
      }
      if (ready < 0) continue;  // EINTR
      if (redisBufferRead(c_.get()) != REDIS_OK) {
        Break(std::string("read failed: ") + c_->errstr);
        return Fail(broken_);
      }
    }
  }

 private:
  void Break(std::string why) { broken_ = std::move(why); }
  // A broken connection completes every op with IO_ERROR; the run goes on.
  std::optional<Completion> Fail(const std::string& why) {
    Completion c{pending_.front().token, {"IO_ERROR", why, {}}};
    pending_.pop_front();
    return c;
  }

  ContextPtr c_;
  const std::vector<std::string>* tags_;
  int index_;
  bool keep_;
  std::deque<Pending> pending_;
  std::string broken_;
};

class RedisTarget : public Target {
 public:
  RedisTarget(RedisAddress a, std::vector<std::string> tags, std::chrono::milliseconds timeout)
      : a_(std::move(a)), tags_(std::move(tags)), timeout_(timeout) {}
  std::string Describe() const override {
    return "redis " + a_.host + ":" + std::to_string(a_.port);
  }
  std::string Kind() const override { return "redis"; }

  Result<std::unique_ptr<Session>> OpenSession(const SessionOptions& options) override {
    Result<ContextPtr> c = Connect(a_, timeout_);
    if (!c.ok()) return c.status();
    return std::unique_ptr<Session>(std::make_unique<RedisSession>(
        std::move(c).value(), &tags_, options.index, options.keep_answers));
  }

  Result<MemoryReport> Memory() override {
    Result<ContextPtr> c = Connect(a_, timeout_);
    if (!c.ok()) return c.status();
    ReplyPtr r(static_cast<redisReply*>(redisCommand(c->get(), "INFO memory")));
    if (!r) return Status::IoError(std::string("redis INFO: ") + (*c)->errstr);
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) {
      return Status::IoError("redis INFO: unexpected reply");
    }
    const std::string info(r->str, r->len);
    return MemoryReport{InfoField(info, "used_memory"), InfoField(info, "used_memory_rss")};
  }

 private:
  RedisAddress a_;
  std::vector<std::string> tags_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

Result<RedisAddress> ParseRedisUrl(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0)
    return Status::BadRequest("redis target must look like redis://HOST:PORT, got '" + url + "'");
  std::string rest = url.substr(scheme.size());
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  RedisAddress a;
  const size_t colon = rest.rfind(':');
  a.host = colon == std::string::npos ? rest : rest.substr(0, colon);
  if (a.host.empty()) return Status::BadRequest("redis target '" + url + "' has no host");
  if (colon != std::string::npos) {
    const std::string port = rest.substr(colon + 1);
    char* end = nullptr;
    const long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p < 1 || p > 65535) {
      return Status::BadRequest("redis target '" + url + "': port must be in [1, 65535]");
    }
    a.port = static_cast<int>(p);
  }
  return a;
}

uint64_t InfoField(const std::string& info, const std::string& name) {
  const std::string key = name + ":";
  size_t pos = 0;
  while ((pos = info.find(key, pos)) != std::string::npos) {
    if (pos == 0 || info[pos - 1] == '\n')
      return std::strtoull(info.c_str() + pos + key.size(), nullptr, 10);
    pos += key.size();
  }
  return 0;
}

Result<std::unique_ptr<Target>> ConnectRedis(const RedisAddress& address,
                                             std::vector<std::string> tags,
                                             std::chrono::milliseconds timeout) {
  Result<ContextPtr> c = Connect(address, timeout);
  if (!c.ok()) return c.status();
  ReplyPtr r(static_cast<redisReply*>(redisCommand(c->get(), "PING")));
  if (!r) return Status::IoError("redis PING: " + std::string((*c)->errstr));
  if (r->type == REDIS_REPLY_ERROR)
    return Status::IoError("redis PING: " + std::string(r->str, r->len));
  return std::unique_ptr<Target>(std::make_unique<RedisTarget>(address, std::move(tags), timeout));
}

}  // namespace tagcache::tagbench
