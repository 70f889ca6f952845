#include "tagcache/server/engine.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "bitset_kernels.h"
#include "query.h"
#include "roaring_access.h"
#include "shard.h"
#include "task_pool.h"

namespace tagcache {

bool IsValidTagName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {

using internal::Operand;
using internal::Override;
using internal::Shard;
using internal::TagColumn;

std::string Quoted(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 140)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 140) out += "...";
  return out + "'";
}

Status BadTagName(std::string_view name) {
  return Status::BadRequest("invalid tag name " + Quoted(name) +
                            ": a tag is 1-128 bytes of [A-Za-z0-9_.:-]");
}

// XXH3-64 of the sorted members as little-endian u32: the content digest
// that breaks ties between different snapshots with the same ts.
uint64_t DigestOf(const Roaring& members) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  struct Ctx {
    XXH3_state_t* state;
    uint32_t buf[1024];
    size_t n;
  } ctx{state, {}, 0};
  roaring_iterate(
      &members.roaring,
      [](uint32_t v, void* p) {
        auto* c = static_cast<Ctx*>(p);
        c->buf[c->n++] = v;  // x86-64 is little-endian, as the digest is defined
        if (c->n == 1024) {
          XXH3_64bits_update(c->state, c->buf, sizeof(c->buf));
          c->n = 0;
        }
        return true;
      },
      &ctx);
  if (ctx.n > 0) XXH3_64bits_update(state, ctx.buf, ctx.n * sizeof(uint32_t));
  uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

// Per-tag state that is not per shard: the name and rule 4's "empty as of
// S" for shards without state.
struct TagInfo {
  std::string name;
  bool has_floor = false;
  Timestamp floor_ts = 0;  // newest commit: shards without state are empty as of it...
  // ...except named shards whose part was missing at that commit; they keep
  // the floor they had (nullopt: none) until state for them appears.
  std::unordered_map<uint64_t, std::optional<Timestamp>> missing;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

class Engine::Impl {
 public:
  explicit Impl(EngineOptions options)
      : opts_(std::move(options)),
        shard_bits_(std::clamp(opts_.shard_bits, 8, 26)),
        kernels_(internal::SelectBitsetKernels()),
        pool_(std::max(0, (opts_.query_threads > 0
                               ? opts_.query_threads
                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) -
                              1)) {}

  int shard_bits() const { return shard_bits_; }

  Timestamp Now() const {
    if (opts_.clock) return opts_.clock();
    return static_cast<Timestamp>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
  }

  // The largest ts a write may carry now (max_future_ms ahead of the clock).
  Timestamp NewestAllowedTs() const {
    if (opts_.max_future_ms == 0) return std::numeric_limits<Timestamp>::max();
    Timestamp now = Now();
    return now > std::numeric_limits<Timestamp>::max() - opts_.max_future_ms
               ? std::numeric_limits<Timestamp>::max()
               : now + opts_.max_future_ms;
  }

  Status CheckFuture(Timestamp ts, std::string_view what) {
    if (opts_.max_future_ms == 0) return Status::Ok();
    Timestamp now = Now();
    if (ts > now && ts - now > opts_.max_future_ms) {
      counters_.writes_refused_future.fetch_add(1, std::memory_order_relaxed);
      return Status::FutureTimestamp(std::string(what) + ": ts " + std::to_string(ts) + " is " +
                                     std::to_string(ts - now) +
                                     " ms ahead of the node clock (" + std::to_string(now) +
                                     "); the bound is " + std::to_string(opts_.max_future_ms) +
                                     " ms");
    }
    return Status::Ok();
  }

  // ---- Tag registry (tags_mu_ is always the innermost lock) ---------------

  std::optional<uint32_t> FindTag(std::string_view name) const {
    std::shared_lock lock(tags_mu_);
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return std::nullopt;
    return it->second;
  }

  uint32_t GetOrCreateTag(std::string_view name) {
    if (auto id = FindTag(name)) return *id;
    std::unique_lock lock(tags_mu_);
    auto it = by_name_.find(name);
    if (it != by_name_.end()) return it->second;
    uint32_t id = static_cast<uint32_t>(tags_.size());
    tags_.emplace_back();
    tags_.back().name.assign(name);
    by_name_.emplace(tags_.back().name, id);
    return id;
  }

  // Tag ids for a batch's events: one shared lock for the lookups, one
  // exclusive lock only if the batch creates tags. REQUIRES: valid names.
  std::vector<uint32_t> ResolveTags(std::span<const Event> events) {
    std::vector<uint32_t> ids(events.size(), UINT32_MAX);
    bool any_new = false;
    {
      std::shared_lock lock(tags_mu_);
      for (size_t i = 0; i < events.size(); ++i) {
        if (i > 0 && events[i].tag == events[i - 1].tag) {
          ids[i] = ids[i - 1];
          continue;
        }
        auto it = by_name_.find(std::string_view(events[i].tag));
        if (it != by_name_.end()) {
          ids[i] = it->second;
        } else {
          any_new = true;
        }
      }
    }
    if (any_new) {
      for (size_t i = 0; i < events.size(); ++i) {
        if (ids[i] == UINT32_MAX) ids[i] = GetOrCreateTag(events[i].tag);
      }
    }
    return ids;
  }

  std::string_view TagName(uint32_t id) const {
    std::shared_lock lock(tags_mu_);
    return tags_[id].name;  // deque elements never move: the view stays valid
  }

  // ---- Shards ----------------------------------------------------------------

  Shard* FindShard(uint64_t id) const {
    std::shared_lock lock(shards_mu_);
    auto it = shards_.find(id);
    return it == shards_.end() ? nullptr : it->second.get();
  }

  Shard& GetOrCreateShard(uint64_t id) {
    if (Shard* s = FindShard(id)) return *s;
    std::unique_lock lock(shards_mu_);
    auto& slot = shards_[id];
    if (!slot) slot = std::make_unique<Shard>(id);
    return *slot;
  }

  std::vector<Shard*> AllShards() const {
    std::shared_lock lock(shards_mu_);
    std::vector<Shard*> out;
    out.reserve(shards_.size());
    for (const auto& [id, shard] : shards_) out.push_back(shard.get());
    return out;
  }

  // REQUIRES: shard.mu held exclusively.
  TagColumn& GetOrCreateColumn(Shard& shard, uint32_t tag) {
    if (tag >= shard.columns.size()) shard.columns.resize(tag + 1);
    std::unique_ptr<TagColumn>& col = shard.columns[tag];
    if (!col) {
      col = std::make_unique<TagColumn>();
      std::shared_lock lock(tags_mu_);
      const TagInfo& info = tags_[tag];
      std::optional<Timestamp> floor;
      if (auto it = info.missing.find(shard.id); it != info.missing.end()) {
        floor = it->second;
      } else if (info.has_floor) {
        floor = info.floor_ts;
      }
      if (floor) {  // rule 4: this shard is empty as of the tag's last commit
        col->has_base = true;
        col->base_ts = *floor;
      }
    }
    return *col;
  }

  // ---- Writes ----------------------------------------------------------------

  Result<ApplyEventsResult> ApplyEvents(std::span<const Event> events) {
    // Validate the whole batch first; messages are built only on failure.
    const Timestamp newest_allowed = NewestAllowedTs();
    for (size_t i = 0; i < events.size(); ++i) {
      if (!IsValidTagName(events[i].tag)) {
        Status s = BadTagName(events[i].tag);
        return Status::BadRequest("event " + std::to_string(i) + ": " + s.message());
      }
      if (events[i].ts > newest_allowed) {
        return CheckFuture(events[i].ts, "event " + std::to_string(i));
      }
    }
    // Group by shard so each shard's lock is taken once per batch.
    struct Item {
      uint64_t shard;
      uint32_t tag;
      uint32_t index;
    };
    std::vector<Item> items(events.size());
    std::vector<uint32_t> tag_ids = ResolveTags(events);
    for (size_t i = 0; i < events.size(); ++i) {
      items[i] = {events[i].user >> shard_bits_, tag_ids[i], static_cast<uint32_t>(i)};
    }
    // Items are unique by index, so this order is total (and stable).
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.index < b.index;
    });
    const uint32_t mask = static_cast<uint32_t>((uint64_t{1} << shard_bits_) - 1);
    ApplyEventsResult result;
    for (size_t i = 0; i < items.size();) {
      Shard& shard = GetOrCreateShard(items[i].shard);
      std::unique_lock lock(shard.mu);
      size_t end = i;
      while (end < items.size() && items[end].shard == shard.id) ++end;
      // Random users make every write a chain of dependent cache misses: the
      // tag's column, its container directory, the container, the array
      // search, the override slot, the index slot and block. A staged
      // pipeline issues each a few events ahead, once the line it depends on
      // has arrived (1.2 M -> 1.6+ M events/s on the benchmark).
      constexpr size_t kStage0 = 32, kStageDir = 24, kStage1 = 16, kStage2 = 8, kStage3 = 3;
      auto offset_of = [&](size_t j) {
        return static_cast<uint32_t>(events[items[j].index].user) & mask;
      };
      auto column_of = [&](size_t j) { return shard.Column(items[j].tag); };
      for (; i < end; ++i) {
        if (i + kStage0 < end) {
          if (const TagColumn* c = column_of(i + kStage0)) {
            __builtin_prefetch(c);
            __builtin_prefetch(reinterpret_cast<const char*>(c) + 64);
          }
        }
        if (i + kStageDir < end) {
          if (const TagColumn* c = column_of(i + kStageDir)) internal::PrefetchDirectory(c->bitmap);
        }
        if (i + kStage1 < end) {
          uint32_t ahead = offset_of(i + kStage1);
          shard.index.PrefetchSlot(ahead);
          if (const TagColumn* c = column_of(i + kStage1)) {
            internal::PrefetchContainer(c->bitmap, ahead);
          }
        }
        if (i + kStage2 < end) {
          uint32_t ahead = offset_of(i + kStage2);
          shard.index.PrefetchBlock(ahead);
          if (const TagColumn* c = column_of(i + kStage2)) {
            c->overrides.Prefetch(ahead);
            internal::PrefetchMembership(c->bitmap, ahead);
          }
        }
        if (i + kStage3 < end) {
          if (const TagColumn* c = column_of(i + kStage3)) {
            internal::PrefetchMembershipFinal(c->bitmap, offset_of(i + kStage3));
          }
        }
        const Event& ev = events[items[i].index];
        uint32_t offset = static_cast<uint32_t>(ev.user) & mask;
        TagColumn& col = GetOrCreateColumn(shard, items[i].tag);
        // Known users ignore LWW: every set ever received counts, whatever
        // its fate, so '!' does not depend on arrival order.
        if (ev.op == TagOp::kSet) internal::SetMembership(shard.known, offset, true);
        if (ev.ts <= col.base_ts || !col.overrides.Merge(offset, Override{ev.ts, ev.op})) {
          ++result.ignored;  // rule 1 (the base already reflects it) or rule 2 (lost)
          continue;
        }
        ++result.applied;
        if (internal::SetMembership(col.bitmap, offset, ev.op == TagOp::kSet)) {
          if (ev.op == TagOp::kSet) {
            shard.index.Add(offset, items[i].tag);
          } else {
            shard.index.Remove(offset, items[i].tag);
          }
        }
      }
    }
    counters_.events_applied.fetch_add(result.applied, std::memory_order_relaxed);
    counters_.events_ignored.fetch_add(result.ignored, std::memory_order_relaxed);
    return result;
  }

  // Rule 3 for one (tag, shard). REQUIRES: shard.mu held exclusively.
  Result<SnapshotOutcome> ApplySnapshotLocked(Shard& shard, uint32_t tag, Timestamp ts,
                                              const Roaring& members, uint64_t digest) {
    TagColumn& col = GetOrCreateColumn(shard, tag);
    shard.known |= members;  // even if stale: see ApplyEvents on known users
    if (col.has_base) {
      if (ts < col.base_ts) {
        counters_.snapshots_stale.fetch_add(1, std::memory_order_relaxed);
        return Status::StaleSnapshot(
            "snapshot of tag " + Quoted(TagName(tag)) + " as of " + std::to_string(ts) +
            " for shard " + std::to_string(shard.id) + " is older than the snapshot as of " +
            std::to_string(col.base_ts) + " already applied");
      }
      if (ts == col.base_ts) {
        if (digest == col.base_digest) {
          counters_.snapshots_duplicate.fetch_add(1, std::memory_order_relaxed);
          return SnapshotOutcome::kDuplicate;
        }
        counters_.snapshot_ties.fetch_add(1, std::memory_order_relaxed);
        // Different content at the same ts: an operator error, but replicas
        // must agree, so the larger digest wins wherever it arrives first.
        if (digest < col.base_digest) return SnapshotOutcome::kTieLost;
      }
    }
    const bool tie = col.has_base && ts == col.base_ts;
    Roaring next = members;
    col.overrides.DropUpTo(ts);
    col.overrides.ForEach([&](uint32_t offset, const Override& ov) {
      if (ov.op == TagOp::kSet) {
        next.add(offset);
      } else {
        next.remove(offset);
      }
    });
    next.runOptimize();
    next.shrinkToFit();
    // Keep the per-user index in step: only users whose membership changed.
    Roaring added = next - col.bitmap;
    Roaring removed = col.bitmap - next;
    for (uint32_t offset : added) shard.index.Add(offset, tag);
    for (uint32_t offset : removed) shard.index.Remove(offset, tag);
    col.bitmap = std::move(next);
    col.base_ts = ts;
    col.base_digest = digest;
    col.has_base = true;
    counters_.snapshots_applied.fetch_add(1, std::memory_order_relaxed);
    return tie ? SnapshotOutcome::kTieWon : SnapshotOutcome::kApplied;
  }

  Result<SnapshotOutcome> ApplySnapshot(std::string_view tag, Timestamp ts, uint64_t shard_id,
                                        const Roaring& offsets) {
    if (!IsValidTagName(tag)) return BadTagName(tag);
    if (shard_bits_ < 32 && shard_id >= (uint64_t{1} << (64 - shard_bits_))) {
      return Status::BadRequest("shard " + std::to_string(shard_id) + " is out of range for " +
                                std::to_string(shard_bits_) + " shard bits");
    }
    if (!offsets.isEmpty() && offsets.maximum() >= (uint64_t{1} << shard_bits_)) {
      return Status::BadRequest("snapshot of tag " + Quoted(tag) + " for shard " +
                                std::to_string(shard_id) + " has offset " +
                                std::to_string(offsets.maximum()) + ", beyond the shard's " +
                                std::to_string(uint64_t{1} << shard_bits_) + " users");
    }
    Status s = CheckFuture(ts, "snapshot of tag " + Quoted(tag));
    if (!s.ok()) return s;
    uint32_t tag_id = GetOrCreateTag(tag);
    uint64_t digest = DigestOf(offsets);
    Shard& shard = GetOrCreateShard(shard_id);
    std::unique_lock lock(shard.mu);
    return ApplySnapshotLocked(shard, tag_id, ts, offsets, digest);
  }

  Result<CommitOutcome> CommitSnapshot(std::string_view tag, Timestamp ts,
                                       std::span<const uint64_t> named_span) {
    if (!IsValidTagName(tag)) return BadTagName(tag);
    Status s = CheckFuture(ts, "commit of tag " + Quoted(tag));
    if (!s.ok()) return s;
    uint32_t tag_id = GetOrCreateTag(tag);
    std::vector<uint64_t> named(named_span.begin(), named_span.end());
    std::sort(named.begin(), named.end());
    named.erase(std::unique(named.begin(), named.end()), named.end());

    CommitOutcome outcome;
    // A named shard counts as received once its base is at least this snapshot.
    for (uint64_t id : named) {
      Shard* shard = FindShard(id);
      bool received = false;
      if (shard) {
        std::shared_lock lock(shard->mu);
        const TagColumn* col = shard->Column(tag_id);
        received = col && col->has_base && col->base_ts >= ts;
      }
      if (!received) outcome.missing_shards.push_back(id);
    }
    // Record the floor before visiting shards, so a column created
    // concurrently already starts empty as of ts.
    {
      std::unique_lock lock(tags_mu_);
      TagInfo& info = tags_[tag_id];
      if (!info.has_floor || ts > info.floor_ts) {
        std::optional<Timestamp> previous;
        if (info.has_floor) previous = info.floor_ts;
        std::unordered_map<uint64_t, std::optional<Timestamp>> missing;
        for (uint64_t id : outcome.missing_shards) {
          auto it = info.missing.find(id);
          missing[id] = it != info.missing.end() ? it->second : previous;
        }
        info.missing = std::move(missing);
        info.has_floor = true;
        info.floor_ts = ts;
      } else if (ts < info.floor_ts) {
        // A late, older commit still raises the floor of shards it did not name.
        for (auto& [id, floor] : info.missing) {
          if (!std::binary_search(named.begin(), named.end(), id) && (!floor || *floor < ts)) {
            floor = ts;
          }
        }
      }
    }
    Roaring empty;
    for (Shard* shard : AllShards()) {
      if (std::binary_search(named.begin(), named.end(), shard->id)) continue;
      std::unique_lock lock(shard->mu);
      if (!shard->Column(tag_id)) continue;  // the floor covers it when state appears
      Result<SnapshotOutcome> r =
          ApplySnapshotLocked(*shard, tag_id, ts, empty, internal::kEmptyDigest);
      if (r.ok() && *r != SnapshotOutcome::kDuplicate && *r != SnapshotOutcome::kTieLost) {
        ++outcome.shards_emptied;
      }
      // A stale result means the shard already holds a newer snapshot: fine.
    }
    return outcome;
  }

  Status ApplyFullSnapshot(std::string_view tag, Timestamp ts, std::span<const UserId> users) {
    std::map<uint64_t, std::vector<uint32_t>> parts;
    const uint64_t mask = (uint64_t{1} << shard_bits_) - 1;
    for (UserId u : users) parts[u >> shard_bits_].push_back(static_cast<uint32_t>(u & mask));
    std::vector<uint64_t> named;
    // Rule 3 holds per (tag, shard): a part refused as stale in one shard
    // must not keep the others (or the commit) from applying.
    Status first_error;
    for (auto& [shard, offsets] : parts) {
      Roaring bitmap;
      bitmap.addMany(offsets.size(), offsets.data());
      Result<SnapshotOutcome> r = ApplySnapshot(tag, ts, shard, bitmap);
      named.push_back(shard);
      if (r.ok()) continue;
      if (!r.status().IsStaleSnapshot()) return r.status();
      if (first_error.ok()) first_error = r.status();
    }
    Result<CommitOutcome> c = CommitSnapshot(tag, ts, named);
    if (!c.ok()) return c.status();
    if (!first_error.ok()) return first_error;
    if (!c->missing_shards.empty()) {
      return Status::Incomplete("commit of tag " + Quoted(tag) + " found " +
                                std::to_string(c->missing_shards.size()) +
                                " named shards without their members");
    }
    return Status::Ok();
  }

  // ---- Lookups -----------------------------------------------------------------

  // REQUIRES: shard.mu held (shared is enough).
  Timestamp WinningTs(const Shard& shard, uint32_t tag, uint32_t offset) const {
    const TagColumn* col = shard.Column(tag);
    if (!col) return 0;
    if (std::optional<Override> ov = col->overrides.Find(offset)) return ov->ts;
    return col->base_ts;
  }

  std::vector<TagHit> GetTags(UserId user, bool with_ts) const {
    std::vector<TagHit> hits;
    const Shard* shard = FindShard(user >> shard_bits_);
    if (!shard) return hits;
    uint32_t offset = static_cast<uint32_t>(user & ((uint64_t{1} << shard_bits_) - 1));
    std::shared_lock lock(shard->mu);
    std::shared_lock tags_lock(tags_mu_);
    shard->index.ForEachTag(offset, [&](uint32_t tag) {
      hits.push_back(TagHit{tags_[tag].name, with_ts ? WinningTs(*shard, tag, offset) : 0});
    });
    return hits;
  }

  Result<std::vector<bool>> HasTags(UserId user, std::span<const std::string_view> tags) const {
    std::vector<uint32_t> ids;
    std::string unknown;
    for (std::string_view t : tags) {
      auto id = FindTag(t);
      if (!id) {
        unknown += (unknown.empty() ? "" : ", ") + Quoted(t);
        continue;
      }
      ids.push_back(*id);
    }
    if (!unknown.empty()) return Status::UnknownTag("unknown tag(s): " + unknown);
    std::vector<bool> out(ids.size(), false);
    const Shard* shard = FindShard(user >> shard_bits_);
    if (!shard) return out;
    uint32_t offset = static_cast<uint32_t>(user & ((uint64_t{1} << shard_bits_) - 1));
    std::shared_lock lock(shard->mu);
    for (size_t i = 0; i < ids.size(); ++i) {
      const TagColumn* col = shard->Column(ids[i]);
      out[i] = col && col->bitmap.contains(offset);
    }
    return out;
  }

  // ---- Audience queries ------------------------------------------------------

  Result<internal::Plan> Compile(std::string_view text) const {
    Result<Expr> expr = ParseExpr(text);
    if (!expr.ok()) return expr.status();
    return internal::CompilePlan(*expr, [this](std::string_view name) { return FindTag(name); });
  }

  Result<uint64_t> Count(std::string_view text) const {
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    std::vector<Shard*> shards = AllShards();
    std::vector<std::unique_ptr<internal::Evaluator>> lanes(pool_.parallelism());
    std::vector<uint64_t> partial(shards.size(), 0);
    pool_.ParallelFor(shards.size(), [&](size_t i, int lane) {
      if (!lanes[lane]) lanes[lane] = std::make_unique<internal::Evaluator>(*plan, kernels_);
      std::shared_lock lock(shards[i]->mu);
      partial[i] = lanes[lane]->Count(*shards[i]);
    });
    uint64_t total = 0;
    for (uint64_t p : partial) total += p;
    return total;
  }

  Result<AudiencePage> Audience(std::string_view text, UserId cursor, size_t limit) const {
    if (limit == 0) return Status::BadRequest("audience page limit must be at least 1");
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    internal::Evaluator eval(*plan, kernels_);
    AudiencePage page;
    const uint64_t first_shard = cursor >> shard_bits_;
    // Collect one extra id to learn whether another page exists.
    for (Shard* shard : AllShards()) {
      if (shard->id < first_shard) continue;
      if (page.users.size() > limit) break;
      const UserId base = shard->id << shard_bits_;
      std::shared_lock lock(shard->mu);
      eval.ForEachContainer(*shard, [&](uint16_t key, const Operand& op) {
        const UserId key_base = base | (UserId{key} << 16);
        if (page.users.size() > limit || key_base + 0xffff < cursor) return;
        auto emit = [&](uint32_t low) {
          UserId u = key_base | low;
          if (u >= cursor && page.users.size() <= limit) page.users.push_back(u);
        };
        if (op.kind == Operand::Kind::kArray) {
          for (uint32_t i = 0; i < op.n; ++i) emit(op.values[i]);
        } else if (op.kind == Operand::Kind::kBitset) {
          for (uint32_t w = 0; w < internal::kBitsetWords && page.users.size() <= limit; ++w) {
            for (uint64_t bits = op.words[w]; bits; bits &= bits - 1) {
              emit(w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits)));
            }
          }
        }
      });
    }
    if (page.users.size() > limit) {
      page.users.resize(limit);
      page.next_cursor = page.users.back() + 1;
    }
    return page;
  }

  Result<std::vector<ShardBitmap>> AudienceBitmaps(std::string_view text) const {
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    std::vector<Shard*> shards = AllShards();
    std::vector<std::unique_ptr<internal::Evaluator>> lanes(pool_.parallelism());
    std::vector<ShardBitmap> out(shards.size());
    pool_.ParallelFor(shards.size(), [&](size_t i, int lane) {
      if (!lanes[lane]) lanes[lane] = std::make_unique<internal::Evaluator>(*plan, kernels_);
      Roaring bitmap;
      std::vector<uint32_t> values;
      {
        std::shared_lock lock(shards[i]->mu);
        lanes[lane]->ForEachContainer(*shards[i], [&](uint16_t key, const Operand& op) {
          const uint32_t high = uint32_t{key} << 16;
          values.clear();
          if (op.kind == Operand::Kind::kArray) {
            for (uint32_t j = 0; j < op.n; ++j) values.push_back(high | op.values[j]);
          } else {
            for (uint32_t w = 0; w < internal::kBitsetWords; ++w) {
              for (uint64_t bits = op.words[w]; bits; bits &= bits - 1) {
                values.push_back(high | (w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits))));
              }
            }
          }
          bitmap.addMany(values.size(), values.data());
        });
      }
      bitmap.runOptimize();
      out[i].shard = shards[i]->id;
      out[i].cardinality = bitmap.cardinality();
      out[i].portable.resize(bitmap.getSizeInBytes(true));
      bitmap.write(out[i].portable.data(), true);
    });
    std::erase_if(out, [](const ShardBitmap& b) { return b.cardinality == 0; });
    return out;
  }

  Result<std::vector<TagCount>> TopTags(std::string_view text, size_t k) const {
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    std::vector<Shard*> shards = AllShards();
    const int lanes_n = pool_.parallelism();
    std::vector<std::unique_ptr<internal::Evaluator>> lanes(lanes_n);
    std::vector<std::vector<uint64_t>> counts(lanes_n);
    pool_.ParallelFor(shards.size(), [&](size_t i, int lane) {
      if (!lanes[lane]) lanes[lane] = std::make_unique<internal::Evaluator>(*plan, kernels_);
      internal::Evaluator& eval = *lanes[lane];
      std::vector<uint64_t>& c = counts[lane];
      const Shard& shard = *shards[i];
      std::shared_lock lock(shard.mu);
      if (c.size() < shard.columns.size()) c.resize(shard.columns.size(), 0);
      eval.ForEachContainer(shard, [&](uint16_t key, const Operand& audience) {
        for (size_t t = 0; t < shard.columns.size(); ++t) {
          if (const TagColumn* col = shard.columns[t].get()) {
            c[t] += eval.IntersectCount(audience, col->bitmap, key);
          }
        }
      });
    });
    std::vector<uint64_t> total;
    for (const auto& c : counts) {
      if (total.size() < c.size()) total.resize(c.size(), 0);
      for (size_t t = 0; t < c.size(); ++t) total[t] += c[t];
    }
    std::vector<TagCount> out;
    {
      std::shared_lock lock(tags_mu_);
      for (size_t t = 0; t < total.size(); ++t) {
        if (total[t] > 0) out.push_back(TagCount{tags_[t].name, total[t]});
      }
    }
    auto by_rank = [](const TagCount& a, const TagCount& b) {
      return a.count != b.count ? a.count > b.count : a.tag < b.tag;
    };
    if (out.size() > k) {
      std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k), out.end(),
                        by_rank);
      out.resize(k);
    } else {
      std::sort(out.begin(), out.end(), by_rank);
    }
    return out;
  }

  // ---- Stats -----------------------------------------------------------------

  EngineStats Stats(bool detailed) const {
    EngineStats stats;
    std::vector<TagStats> per_tag;
    {
      std::shared_lock lock(tags_mu_);
      stats.tags = tags_.size();
      per_tag.resize(tags_.size());
      for (size_t t = 0; t < tags_.size(); ++t) per_tag[t].tag = tags_[t].name;
    }
    for (Shard* shard : AllShards()) {
      std::shared_lock lock(shard->mu);
      ShardStats ss;
      ss.shard = shard->id;
      ss.known_users = shard->known.cardinality();
      ss.memory.known_bytes = internal::BitmapMemoryBytes(shard->known);
      ss.memory.index_bytes = shard->index.MemoryBytes();
      for (size_t t = 0; t < shard->columns.size() && t < per_tag.size(); ++t) {
        const TagColumn* col = shard->columns[t].get();
        if (!col) continue;
        ++ss.tags;
        uint64_t bitmap_bytes = internal::BitmapMemoryBytes(col->bitmap);
        uint64_t override_bytes = col->overrides.MemoryBytes();
        uint64_t members = col->bitmap.cardinality();
        ss.memory.bitmap_bytes += bitmap_bytes;
        ss.memory.override_bytes += override_bytes;
        stats.assignments += members;
        TagStats& ts = per_tag[t];
        ts.members += members;
        ts.overrides += col->overrides.size();
        ts.newest_base_ts = std::max(ts.newest_base_ts, col->base_ts);
        ts.memory.bitmap_bytes += bitmap_bytes;
        ts.memory.override_bytes += override_bytes;
      }
      ++stats.shards;
      stats.known_users += ss.known_users;
      stats.memory.bitmap_bytes += ss.memory.bitmap_bytes;
      stats.memory.override_bytes += ss.memory.override_bytes;
      stats.memory.index_bytes += ss.memory.index_bytes;
      stats.memory.known_bytes += ss.memory.known_bytes;
      if (detailed) stats.per_shard.push_back(ss);
    }
    if (detailed) {
      std::sort(per_tag.begin(), per_tag.end(),
                [](const TagStats& a, const TagStats& b) { return a.tag < b.tag; });
      stats.per_tag = std::move(per_tag);
    }
    const auto& c = counters_;
    stats.counters.events_applied = c.events_applied.load();
    stats.counters.events_ignored = c.events_ignored.load();
    stats.counters.writes_refused_future = c.writes_refused_future.load();
    stats.counters.snapshots_applied = c.snapshots_applied.load();
    stats.counters.snapshots_duplicate = c.snapshots_duplicate.load();
    stats.counters.snapshots_stale = c.snapshots_stale.load();
    stats.counters.snapshot_ties = c.snapshot_ties.load();
    return stats;
  }

 private:
  struct Counters {
    std::atomic<uint64_t> events_applied{0}, events_ignored{0}, writes_refused_future{0},
        snapshots_applied{0}, snapshots_duplicate{0}, snapshots_stale{0}, snapshot_ties{0};
  };

  const EngineOptions opts_;
  const int shard_bits_;
  const internal::BitsetKernels kernels_;
  mutable internal::TaskPool pool_;

  // Lock order: a shard's mu, then shards_mu_ or tags_mu_ (never the reverse).
  mutable std::shared_mutex shards_mu_;
  std::map<uint64_t, std::unique_ptr<Shard>> shards_;  // ascending, so audiences come out sorted

  mutable std::shared_mutex tags_mu_;
  std::deque<TagInfo> tags_;  // by tag id; a deque so names never move
  std::unordered_map<std::string_view, uint32_t, StringHash, std::equal_to<>> by_name_;

  Counters counters_;
};

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Engine::~Engine() = default;
int Engine::shard_bits() const { return impl_->shard_bits(); }
Result<ApplyEventsResult> Engine::ApplyEvents(std::span<const Event> events) {
  return impl_->ApplyEvents(events);
}
Result<SnapshotOutcome> Engine::ApplySnapshot(std::string_view tag, Timestamp ts, uint64_t shard,
                                              const Roaring& offsets) {
  return impl_->ApplySnapshot(tag, ts, shard, offsets);
}
Result<CommitOutcome> Engine::CommitSnapshot(std::string_view tag, Timestamp ts,
                                             std::span<const uint64_t> shards_with_members) {
  return impl_->CommitSnapshot(tag, ts, shards_with_members);
}
Status Engine::ApplyFullSnapshot(std::string_view tag, Timestamp ts,
                                 std::span<const UserId> users) {
  return impl_->ApplyFullSnapshot(tag, ts, users);
}
std::vector<TagHit> Engine::GetTags(UserId user, bool with_ts) const {
  return impl_->GetTags(user, with_ts);
}
std::vector<std::vector<TagHit>> Engine::GetTagsBatch(std::span<const UserId> users,
                                                      bool with_ts) const {
  std::vector<std::vector<TagHit>> out;
  out.reserve(users.size());
  for (UserId u : users) out.push_back(impl_->GetTags(u, with_ts));
  return out;
}
Result<std::vector<bool>> Engine::HasTags(UserId user,
                                          std::span<const std::string_view> tags) const {
  return impl_->HasTags(user, tags);
}
Result<uint64_t> Engine::Count(std::string_view expr) const { return impl_->Count(expr); }
Result<AudiencePage> Engine::Audience(std::string_view expr, UserId cursor, size_t limit) const {
  return impl_->Audience(expr, cursor, limit);
}
Result<std::vector<ShardBitmap>> Engine::AudienceBitmaps(std::string_view expr) const {
  return impl_->AudienceBitmaps(expr);
}
Result<std::vector<TagCount>> Engine::TopTags(std::string_view expr, size_t k) const {
  return impl_->TopTags(expr, k);
}
EngineStats Engine::Stats(bool detailed) const { return impl_->Stats(detailed); }

}  // namespace tagcache
