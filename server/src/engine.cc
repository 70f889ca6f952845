#include "tagcache/server/engine.h"

#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <set>
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

// Feeds the sorted members to `state` as little-endian u32.
void HashMembers(XXH3_state_t* state, const Roaring& members) {
  // The bulk iterator decodes whole containers at a time; a callback per
  // value (roaring_iterate) made the digest a quarter of a snapshot load.
  uint32_t buf[4096];
  roaring_uint32_iterator_t* it = roaring_create_iterator(&members.roaring);
  for (;;) {
    const uint32_t n = roaring_read_uint32_iterator(it, buf, 4096);
    if (n == 0) break;
    // x86-64 is little-endian, as the digest is defined.
    XXH3_64bits_update(state, buf, n * sizeof(uint32_t));
  }
  roaring_free_uint32_iterator(it);
}

// XXH3-64 of the sorted members as little-endian u32: the content digest
// that breaks ties between different snapshots with the same ts.
uint64_t DigestOf(const Roaring& members) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  HashMembers(state, members);
  uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

// The state digests' stream: fixed-width integers, length-prefixed strings
// and bitmaps.
class Hasher {
 public:
  Hasher() : state_(XXH3_createState()) { XXH3_64bits_reset(state_); }
  ~Hasher() { XXH3_freeState(state_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void U64(uint64_t v) { XXH3_64bits_update(state_, &v, sizeof(v)); }
  void Str(std::string_view s) {
    U64(s.size());
    XXH3_64bits_update(state_, s.data(), s.size());
  }
  void Members(const Roaring& r) {
    U64(r.cardinality());
    HashMembers(state_, r);
  }
  uint64_t Digest() const { return XXH3_64bits_digest(state_); }

 private:
  XXH3_state_t* state_;
};

// Rule 4 for one tag: the shard's floor is the newest commit that did not
// name it, and a shard's column starts "empty as of" its floor. Stored as
// the newest commit's ts plus the exceptions: the shards every commit at
// that ts named, each with the newest commit that did not name it (nullopt:
// none). Every named shard is recorded, received or not, so the record
// depends only on the set of commits, never on what had arrived when each
// came: two records can then be merged, and compared by digest.
struct TagFloor {
  bool has_floor = false;
  Timestamp floor_ts = 0;
  std::unordered_map<uint64_t, std::optional<Timestamp>> missing;

  bool operator==(const TagFloor&) const = default;

  std::optional<Timestamp> For(uint64_t shard) const {
    if (auto it = missing.find(shard); it != missing.end()) return it->second;
    if (has_floor) return floor_ts;
    return std::nullopt;
  }

  // Every shard's floor becomes the larger of the two records' (nullopt is
  // the lowest). That is exactly the record of the union of the two sets of
  // commits, since a floor is a maximum over commits, so the merge is
  // commutative, associative and idempotent. Spelled out: a newer incoming
  // floor_ts adopts the incoming exceptions, each raised to this record's
  // floor for the shard; at equal floor_ts only shards that are exceptions
  // in both stay so (a commit at floor_ts that did not name a shard empties
  // it as of floor_ts), with the larger floor; an older incoming floor_ts
  // raises this record's exceptions like a late, older commit does. A shard
  // is never emptied beyond what some commit received by either side says.
  void Join(const TagFloor& other) {
    if (!other.has_floor) return;
    TagFloor out;
    out.has_floor = true;
    out.floor_ts = has_floor ? std::max(floor_ts, other.floor_ts) : other.floor_ts;
    auto keep = [&](uint64_t shard) {
      std::optional<Timestamp> floor = std::max(For(shard), other.For(shard));
      if (floor < out.floor_ts) out.missing[shard] = floor;
    };
    for (const auto& [shard, floor] : missing) keep(shard);
    for (const auto& [shard, floor] : other.missing) keep(shard);
    *this = std::move(out);
  }
};

// Per-tag state that is not per shard.
struct TagInfo {
  std::string name;
  TagFloor floor;
};

// How a base (a snapshot, or rule 4's "empty as of S") met a column's base.
enum class BaseJoin : uint8_t { kStale, kDuplicate, kTieLost, kTieWon, kApplied };

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
                              1)) {
    rebuild_thread_ = std::thread([this] { RebuildLoop(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(rebuild_mu_);
      stop_rebuilds_ = true;
    }
    rebuild_cv_.notify_all();
    rebuild_thread_.join();
  }

  int shard_bits() const { return shard_bits_; }

  Timestamp Now() const {
    if (opts_.clock) return opts_.clock();
    return static_cast<Timestamp>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
  }

  void SetFutureCheck(bool enabled) { future_check_.store(enabled, std::memory_order_relaxed); }
  void SetUnknownTagsEmpty(bool empty) { unknown_empty_.store(empty, std::memory_order_relaxed); }

  // A tag id no shard has a column for: evaluates as the empty set.
  static constexpr uint32_t kAbsentTag = UINT32_MAX;

  std::optional<uint32_t> ResolveTag(std::string_view name) const {
    std::optional<uint32_t> id = FindTag(name);
    if (!id && unknown_empty_.load(std::memory_order_relaxed)) return kAbsentTag;
    return id;
  }

  // The largest ts a write may carry now (max_future_ms ahead of the clock).
  Timestamp NewestAllowedTs() const {
    if (opts_.max_future_ms == 0 || !future_check_.load(std::memory_order_relaxed)) {
      return std::numeric_limits<Timestamp>::max();
    }
    Timestamp now = Now();
    return now > std::numeric_limits<Timestamp>::max() - opts_.max_future_ms
               ? std::numeric_limits<Timestamp>::max()
               : now + opts_.max_future_ms;
  }

  Status CheckFuture(Timestamp ts, std::string_view what) const {
    return ts > NewestAllowedTs() ? RefuseFuture(ts, what) : Status::Ok();
  }

  // REQUIRES: ts > NewestAllowedTs() (the caller read the check's switch once).
  Status RefuseFuture(Timestamp ts, std::string_view what) const {
    counters_.writes_refused_future.fetch_add(1, std::memory_order_relaxed);
    Timestamp now = Now();
    return Status::FutureTimestamp(
        std::string(what) + ": ts " + std::to_string(ts) + " is " +
        std::to_string(ts > now ? ts - now : 0) + " ms ahead of the node clock (" +
        std::to_string(now) + "); the bound is " + std::to_string(opts_.max_future_ms) + " ms");
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

  // Shards are shared: DropShard unlinks one while readers and writers may
  // still hold it, and it lives until the last of them lets go.
  std::shared_ptr<Shard> FindShard(uint64_t id) const {
    std::shared_lock lock(shards_mu_);
    auto it = shards_.find(id);
    return it == shards_.end() ? nullptr : it->second;
  }

  std::shared_ptr<Shard> GetOrCreateShard(uint64_t id) {
    if (std::shared_ptr<Shard> s = FindShard(id)) return s;
    std::unique_lock lock(shards_mu_);
    auto& slot = shards_[id];
    if (!slot) slot = std::make_shared<Shard>(id);
    return slot;
  }

  // The shard to write to, locked exclusively into `lock`. A shard dropped
  // between the lookup and the lock is empty and unlinked: the write goes to
  // the shard's new incarnation instead of vanishing with the old one.
  std::shared_ptr<Shard> LockShardForWrite(uint64_t id, std::unique_lock<std::shared_mutex>& lock) {
    for (;;) {
      std::shared_ptr<Shard> shard = GetOrCreateShard(id);
      lock = std::unique_lock(shard->mu);
      if (FindShard(id) == shard) return shard;  // shard mu, then shards_mu_: the lock order
      lock.unlock();
    }
  }

  std::vector<std::shared_ptr<Shard>> AllShards() const {
    std::shared_lock lock(shards_mu_);
    std::vector<std::shared_ptr<Shard>> out;
    out.reserve(shards_.size());
    for (const auto& [id, shard] : shards_) out.push_back(shard);
    return out;
  }

  // The shards an audience query evaluates, ascending. The filter is called
  // outside shards_mu_ (it is the caller's code) and not at all when empty.
  std::vector<std::shared_ptr<Shard>> SelectShards(const ShardFilter& filter) const {
    std::vector<std::shared_ptr<Shard>> shards = AllShards();
    if (filter) std::erase_if(shards, [&](const auto& s) { return !filter(s->id); });
    return shards;
  }

  // REQUIRES: shard.mu held exclusively.
  TagColumn& GetOrCreateColumn(Shard& shard, uint32_t tag) {
    if (tag >= shard.columns.size()) shard.columns.resize(tag + 1);
    std::unique_ptr<TagColumn>& col = shard.columns[tag];
    if (!col) {
      col = std::make_unique<TagColumn>();
      std::shared_lock lock(tags_mu_);
      std::optional<Timestamp> floor = tags_[tag].floor.For(shard.id);
      if (floor) {  // rule 4: this shard is empty as of the tag's last commit
        col->has_base = true;
        col->base_ts = *floor;
      }
    }
    return *col;
  }

  // ---- Writes ----------------------------------------------------------------

  // ---- Write checks (before a write is logged, and again when applied) ------

  Status CheckEvents(std::span<const Event> events) const {
    // Messages are built only on failure.
    const Timestamp newest_allowed = NewestAllowedTs();
    for (size_t i = 0; i < events.size(); ++i) {
      if (!IsValidTagName(events[i].tag)) {
        Status s = BadTagName(events[i].tag);
        return Status::BadRequest("event " + std::to_string(i) + ": " + s.message());
      }
      if (events[i].ts > newest_allowed) {
        return RefuseFuture(events[i].ts, "event " + std::to_string(i));
      }
    }
    return Status::Ok();
  }

  Status CheckSnapshot(std::string_view tag, Timestamp ts, uint64_t shard_id,
                       const Roaring& offsets) const {
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
    return CheckFuture(ts, "snapshot of tag " + Quoted(tag));
  }

  Status CheckCommit(std::string_view tag, Timestamp ts) const {
    if (!IsValidTagName(tag)) return BadTagName(tag);
    return CheckFuture(ts, "commit of tag " + Quoted(tag));
  }

  Result<ApplyEventsResult> ApplyEvents(std::span<const Event> events) {
    // Validate the whole batch first: it is applied whole or not at all.
    Status checked = CheckEvents(events);
    if (!checked.ok()) return checked;
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
      std::unique_lock<std::shared_mutex> lock;
      std::shared_ptr<Shard> shard_ref = LockShardForWrite(items[i].shard, lock);
      Shard& shard = *shard_ref;
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
          IndexChanged(shard, offset, items[i].tag, ev.op == TagOp::kSet);
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
    const Timestamp held_ts = col.base_ts;
    switch (JoinBaseLocked(shard, tag, col, ts, members, digest)) {
      case BaseJoin::kStale:
        counters_.snapshots_stale.fetch_add(1, std::memory_order_relaxed);
        return Status::StaleSnapshot("snapshot of tag " + Quoted(TagName(tag)) + " as of " +
                                     std::to_string(ts) + " for shard " + std::to_string(shard.id) +
                                     " is older than the snapshot as of " +
                                     std::to_string(held_ts) + " already applied");
      case BaseJoin::kDuplicate:
        counters_.snapshots_duplicate.fetch_add(1, std::memory_order_relaxed);
        return SnapshotOutcome::kDuplicate;
      case BaseJoin::kTieLost:
        counters_.snapshot_ties.fetch_add(1, std::memory_order_relaxed);
        return SnapshotOutcome::kTieLost;
      case BaseJoin::kTieWon:
        counters_.snapshot_ties.fetch_add(1, std::memory_order_relaxed);
        counters_.snapshots_applied.fetch_add(1, std::memory_order_relaxed);
        return SnapshotOutcome::kTieWon;
      case BaseJoin::kApplied:
        break;
    }
    counters_.snapshots_applied.fetch_add(1, std::memory_order_relaxed);
    return SnapshotOutcome::kApplied;
  }

  // Rule 3's join of a base into a column, uncounted: the newer base wins,
  // at equal ts the larger digest (so replicas agree whatever the order);
  // overrides at or below the winner are dropped and the rest re-applied on
  // top. REQUIRES: shard.mu held exclusively.
  BaseJoin JoinBaseLocked(Shard& shard, uint32_t tag, TagColumn& col, Timestamp ts,
                          const Roaring& members, uint64_t digest) {
    if (col.has_base) {
      if (ts < col.base_ts) return BaseJoin::kStale;
      if (ts == col.base_ts) {
        if (digest == col.base_digest) return BaseJoin::kDuplicate;
        // Different content at the same ts: an operator error, but replicas
        // must agree, so the larger digest wins wherever it arrives first.
        if (digest < col.base_digest) return BaseJoin::kTieLost;
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
    IndexChangedBulk(shard, tag, next - col.bitmap, col.bitmap - next);
    col.bitmap = std::move(next);
    col.base_ts = ts;
    col.base_digest = digest;
    col.has_base = true;
    return tie ? BaseJoin::kTieWon : BaseJoin::kApplied;
  }

  Result<SnapshotOutcome> ApplySnapshot(std::string_view tag, Timestamp ts, uint64_t shard_id,
                                        const Roaring& offsets) {
    Status s = CheckSnapshot(tag, ts, shard_id, offsets);
    if (!s.ok()) return s;
    uint32_t tag_id = GetOrCreateTag(tag);
    uint64_t digest = DigestOf(offsets);
    std::unique_lock<std::shared_mutex> lock;
    std::shared_ptr<Shard> shard = LockShardForWrite(shard_id, lock);
    return ApplySnapshotLocked(*shard, tag_id, ts, offsets, digest);
  }

  Result<CommitOutcome> CommitSnapshot(std::string_view tag, Timestamp ts,
                                       std::span<const uint64_t> named_span) {
    Status s = CheckCommit(tag, ts);
    if (!s.ok()) return s;
    uint32_t tag_id = GetOrCreateTag(tag);
    std::vector<uint64_t> named(named_span.begin(), named_span.end());
    std::sort(named.begin(), named.end());
    named.erase(std::unique(named.begin(), named.end()), named.end());

    CommitOutcome outcome;
    // A named shard counts as received once its base is at least this snapshot.
    for (uint64_t id : named) {
      std::shared_ptr<Shard> shard = FindShard(id);
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
      TagFloor& floor = tags_[tag_id].floor;
      if (!floor.has_floor || ts > floor.floor_ts) {
        // Named shards keep the floor they had, received or not: see TagFloor.
        std::unordered_map<uint64_t, std::optional<Timestamp>> missing;
        for (uint64_t id : named) missing[id] = floor.For(id);
        floor.missing = std::move(missing);
        floor.has_floor = true;
        floor.floor_ts = ts;
      } else {
        // A late, older (or equal) commit still raises the floor of the
        // shards it did not name; raised to floor_ts, a shard is no longer
        // an exception.
        for (auto it = floor.missing.begin(); it != floor.missing.end();) {
          auto& [id, shard_floor] = *it;
          if (!std::binary_search(named.begin(), named.end(), id) &&
              (!shard_floor || *shard_floor < ts)) {
            shard_floor = ts;
          }
          it = shard_floor && *shard_floor >= floor.floor_ts ? floor.missing.erase(it)
                                                             : std::next(it);
        }
      }
    }
    Roaring empty;
    for (const std::shared_ptr<Shard>& shard : AllShards()) {
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
    std::shared_ptr<const Shard> shard = FindShard(user >> shard_bits_);
    if (!shard) return hits;
    uint32_t offset = static_cast<uint32_t>(user & ((uint64_t{1} << shard_bits_) - 1));
    std::shared_lock lock(shard->mu);
    std::shared_lock tags_lock(tags_mu_);
    auto hit = [&](uint32_t tag) {
      hits.push_back(TagHit{tags_[tag].name, with_ts ? WinningTs(*shard, tag, offset) : 0});
    };
    if (shard->index_stale) {
      // The index is being rebuilt after a bulk write: one probe per column.
      for (uint32_t tag = 0; tag < shard->columns.size(); ++tag) {
        const TagColumn* col = shard->columns[tag].get();
        if (col && col->bitmap.contains(offset)) hit(tag);
      }
    } else {
      shard->index.ForEachTag(offset, hit);
    }
    return hits;
  }

  Result<std::vector<bool>> HasTags(UserId user, std::span<const std::string_view> tags) const {
    std::vector<uint32_t> ids;
    std::string unknown;
    for (std::string_view t : tags) {
      auto id = ResolveTag(t);
      if (!id) {
        unknown += (unknown.empty() ? "" : ", ") + Quoted(t);
        continue;
      }
      ids.push_back(*id);
    }
    if (!unknown.empty()) return Status::UnknownTag("unknown tag(s): " + unknown);
    std::vector<bool> out(ids.size(), false);
    std::shared_ptr<const Shard> shard = FindShard(user >> shard_bits_);
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
    Result<Expr> expr = ParseExpr(text, opts_.expr_limits);
    if (!expr.ok()) {
      if (IsExprLimitError(expr.status())) {
        counters_.expr_limit_refusals.fetch_add(1, std::memory_order_relaxed);
      }
      return expr.status();
    }
    return internal::CompilePlan(*expr, [this](std::string_view name) { return ResolveTag(name); });
  }

  Result<uint64_t> Count(std::string_view text, const ShardFilter& filter) const {
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    std::vector<std::shared_ptr<Shard>> shards = SelectShards(filter);
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

  Result<AudiencePage> Audience(std::string_view text, UserId cursor, size_t limit,
                                const ShardFilter& filter) const {
    if (limit == 0) return Status::BadRequest("audience page limit must be at least 1");
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    internal::Evaluator eval(*plan, kernels_);
    AudiencePage page;
    const uint64_t first_shard = cursor >> shard_bits_;
    // Collect one extra id to learn whether another page exists.
    for (const std::shared_ptr<Shard>& shard : SelectShards(filter)) {
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

  Result<std::vector<ShardBitmap>> AudienceBitmaps(std::string_view text,
                                                   const ShardFilter& filter) const {
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    std::vector<std::shared_ptr<Shard>> shards = SelectShards(filter);
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

  Result<std::vector<TagCount>> TopTags(std::string_view text, size_t k,
                                        const ShardFilter& filter) const {
    Result<internal::Plan> plan = Compile(text);
    if (!plan.ok()) return plan.status();
    std::vector<std::shared_ptr<Shard>> shards = SelectShards(filter);
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
    if (k != 0 && out.size() > k) {  // k == 0: every tag with a nonzero count
      std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k), out.end(),
                        by_rank);
      out.resize(k);
    } else {
      std::sort(out.begin(), out.end(), by_rank);
    }
    return out;
  }

  // ---- State transfer ----------------------------------------------------------

  std::vector<TagState> ExportTags() const {
    std::shared_lock lock(tags_mu_);
    std::vector<TagState> out(tags_.size());
    for (size_t t = 0; t < tags_.size(); ++t) {
      const TagFloor& floor = tags_[t].floor;
      out[t].name = tags_[t].name;
      out[t].has_floor = floor.has_floor;
      out[t].floor_ts = floor.floor_ts;
      out[t].missing.assign(floor.missing.begin(), floor.missing.end());
      std::sort(out[t].missing.begin(), out[t].missing.end());
    }
    return out;
  }

  std::vector<uint64_t> ShardIds() const {
    std::shared_lock lock(shards_mu_);
    std::vector<uint64_t> out;
    out.reserve(shards_.size());
    for (const auto& [id, shard] : shards_) out.push_back(id);
    return out;
  }

  ShardState ExportShard(uint64_t id, bool with_index) const {
    ShardState out;
    out.shard = id;
    std::shared_ptr<const Shard> shard = FindShard(id);
    if (!shard) return out;
    std::vector<uint32_t> tag_ids;
    internal::UserIndex index_copy;
    {
      std::shared_lock lock(shard->mu);
      out.known = shard->known;
      for (uint32_t t = 0; t < shard->columns.size(); ++t) {
        const TagColumn* col = shard->columns[t].get();
        if (!col) continue;
        tag_ids.push_back(t);
        ColumnState& c = out.columns.emplace_back();
        c.tag_id = t;
        c.bitmap = col->bitmap;
        c.base_ts = col->base_ts;
        c.base_digest = col->base_digest;
        c.has_base = col->has_base;
        c.overrides.reserve(col->overrides.size());
        col->overrides.ForEach([&](uint32_t offset, const Override& ov) {
          c.overrides.push_back(OverrideState{offset, ov.ts, ov.op});
        });
      }
      // Copied under the same lock as the columns, so the image matches them
      // exactly; the image itself is built after the lock is released, since
      // building it walks every user and writes to this shard would wait.
      if (with_index && !shard->index_stale && !shard->index.Empty()) {
        index_copy.CopyFrom(shard->index);
      }
    }
    if (with_index && !index_copy.Empty()) index_copy.AppendImage(out.index_image);
    for (ColumnState& c : out.columns) {
      std::sort(c.overrides.begin(), c.overrides.end(),
                [](const OverrideState& a, const OverrideState& b) { return a.offset < b.offset; });
    }
    // Names once the shard's lock is released: tag creation need not wait for the copy.
    std::shared_lock lock(tags_mu_);
    for (size_t i = 0; i < out.columns.size(); ++i) out.columns[i].tag = tags_[tag_ids[i]].name;
    return out;
  }

  Status MergeTags(std::span<const TagState> tags) {
    for (const TagState& t : tags) {
      if (!IsValidTagName(t.name)) return BadTagName(t.name);
      for (const auto& [shard, floor] : t.missing) {
        // An exception is a floor below the tag's: anything else has no meaning.
        if (!t.has_floor || (floor && *floor >= t.floor_ts)) {
          return Status::BadRequest("tag " + Quoted(t.name) + ": shard " + std::to_string(shard) +
                                    "'s floor must be below the tag's floor");
        }
      }
    }
    // Created in the order given, so a restore reproduces the creation order
    // GetTags reports.
    std::vector<uint32_t> ids;
    ids.reserve(tags.size());
    for (const TagState& t : tags) ids.push_back(GetOrCreateTag(t.name));
    for (size_t i = 0; i < tags.size(); ++i) {
      if (!tags[i].has_floor) continue;
      TagFloor incoming;
      incoming.has_floor = true;
      incoming.floor_ts = tags[i].floor_ts;
      for (const auto& [shard, floor] : tags[i].missing) {
        auto [it, inserted] = incoming.missing.emplace(shard, floor);
        if (!inserted) it->second = std::max(it->second, floor);
      }
      TagFloor before, after;
      {
        std::unique_lock lock(tags_mu_);
        TagFloor& floor = tags_[ids[i]].floor;
        before = floor;
        floor.Join(incoming);
        after = floor;
      }
      if (after != before) RaiseColumnFloors(ids[i], before, after);
    }
    return Status::Ok();
  }

  // A raised floor empties the tag's existing columns as of it, as the
  // commit behind it did where it arrived: columns created from now on start
  // from the new floor anyway.
  void RaiseColumnFloors(uint32_t tag, const TagFloor& before, const TagFloor& after) {
    static const Roaring kEmpty;
    for (const std::shared_ptr<Shard>& shard : AllShards()) {
      std::optional<Timestamp> floor = after.For(shard->id);
      if (!floor || floor <= before.For(shard->id)) continue;
      std::unique_lock lock(shard->mu);
      if (tag >= shard->columns.size() || !shard->columns[tag]) continue;
      JoinBaseLocked(*shard, tag, *shard->columns[tag], *floor, kEmpty, internal::kEmptyDigest);
    }
  }

  Status MergeShard(const ShardState& state) {
    if (Status s = CheckShardState(state); !s.ok()) return s;
    if (state.columns.empty() && state.known.isEmpty()) return Status::Ok();
    std::vector<uint32_t> ids;
    ids.reserve(state.columns.size());
    for (const ColumnState& c : state.columns) ids.push_back(GetOrCreateTag(c.tag));
    std::unique_lock<std::shared_mutex> lock;
    std::shared_ptr<Shard> shard_ref = LockShardForWrite(state.shard, lock);
    Shard& shard = *shard_ref;
    // Into a shard without columns (a restore, a moved shard) the per-user
    // index is built once at the end instead of one Add per assignment.
    const bool bulk = std::none_of(shard.columns.begin(), shard.columns.end(),
                                   [](const auto& col) { return col != nullptr; });
    // The exporter's index image is its index of exactly the bitmaps it
    // sent, in its tag ids: it is ours too only if the ids agree and every
    // column here ended up with the bitmap sent (a tag floor held here can
    // change a column's members in the merge).
    bool image_fits = bulk && !shard.index_stale && shard.index.Empty() &&
                      !state.index_image.empty();
    for (size_t i = 0; image_fits && i < state.columns.size(); ++i) {
      image_fits = state.columns[i].tag_id == ids[i];
    }
    shard.known |= state.known;
    for (size_t i = 0; i < state.columns.size(); ++i) {
      const ColumnState& in = state.columns[i];
      const bool existed = shard.Column(ids[i]) != nullptr;
      TagColumn& col = GetOrCreateColumn(shard, ids[i]);
      if (!existed && !col.has_base) {
        InstallColumnLocked(shard, ids[i], col, in, /*update_index=*/!bulk);
      } else {
        MergeColumnLocked(shard, ids[i], col, in, /*update_index=*/!bulk);
        image_fits = image_fits && col.bitmap == in.bitmap;
      }
    }
    if (bulk) {
      std::vector<const Roaring*> by_tag(shard.columns.size(), nullptr);
      for (size_t t = 0; t < shard.columns.size(); ++t) {
        if (shard.columns[t]) by_tag[t] = &shard.columns[t]->bitmap;
      }
      // The image is checked although its records were checksummed: a
      // wrong index would answer GetTags wrongly for as long as it lives.
      if (image_fits && shard.index.LoadImage(state.index_image, by_tag).ok()) {
        counters_.index_images_installed.fetch_add(1, std::memory_order_relaxed);
      } else {
        shard.index.Clear();
        shard.index.BuildFrom(by_tag);
      }
      // Whatever dropped it, the index is whole again; a queued rebuild
      // finds nothing to do.
      shard.index_stale = false;
    }
    return Status::Ok();
  }

  // Everything MergeShard refuses, checked before anything is applied.
  Status CheckShardState(const ShardState& state) const {
    if (shard_bits_ < 32 && state.shard >= (uint64_t{1} << (64 - shard_bits_))) {
      return Status::BadRequest("shard " + std::to_string(state.shard) + " is out of range for " +
                                std::to_string(shard_bits_) + " shard bits");
    }
    const uint64_t users = uint64_t{1} << shard_bits_;
    auto beyond = [&](std::string what, uint64_t offset) {
      return Status::BadRequest(what + " of shard " + std::to_string(state.shard) + " has offset " +
                                std::to_string(offset) + ", beyond the shard's " +
                                std::to_string(users) + " users");
    };
    if (!state.known.isEmpty() && state.known.maximum() >= users) {
      return beyond("the known users", state.known.maximum());
    }
    for (const ColumnState& c : state.columns) {
      if (!IsValidTagName(c.tag)) return BadTagName(c.tag);
      if (!c.bitmap.isEmpty() && c.bitmap.maximum() >= users) {
        return beyond("column " + Quoted(c.tag), c.bitmap.maximum());
      }
      for (const OverrideState& ov : c.overrides) {
        if (ov.offset >= users) return beyond("an override of column " + Quoted(c.tag), ov.offset);
        if (ov.op != TagOp::kSet && ov.op != TagOp::kClear) {
          return Status::BadRequest("an override of column " + Quoted(c.tag) + " in shard " +
                                    std::to_string(state.shard) + " has an unknown op " +
                                    std::to_string(static_cast<int>(ov.op)));
        }
      }
    }
    return Status::Ok();
  }

  // The fast path: a column just created with no base takes the incoming
  // state as it is. REQUIRES: shard.mu held exclusively; `col` fresh.
  void InstallColumnLocked(Shard& shard, uint32_t tag, TagColumn& col, const ColumnState& in,
                           bool update_index) {
    col.bitmap = in.bitmap;
    col.has_base = in.has_base;
    col.base_ts = in.has_base ? in.base_ts : 0;
    col.base_digest = in.has_base ? in.base_digest : internal::kEmptyDigest;
    for (const OverrideState& ov : in.overrides) {
      // Rule 1 even here: a state holding overrides its base covers stays valid.
      if (ov.ts > col.base_ts) col.overrides.Merge(ov.offset, Override{ov.ts, ov.op});
    }
    if (update_index) IndexChangedBulk(shard, tag, col.bitmap, Roaring());
  }

  // The brief's merge of two states of one (tag, shard): the higher base
  // wins (rule 3's order, no base lowest); overrides merge by rule 2 and
  // are filtered by rule 1 against the winning base. The members are the
  // winner's effective members with every merged override applied on top:
  // exact, because the winner's own overrides are all newer than its base
  // and so stay in the merged set. REQUIRES: shard.mu held exclusively.
  void MergeColumnLocked(Shard& shard, uint32_t tag, TagColumn& col, const ColumnState& in,
                         bool update_index) {
    const bool incoming_wins =
        in.has_base && (!col.has_base || in.base_ts > col.base_ts ||
                        (in.base_ts == col.base_ts && in.base_digest > col.base_digest));
    if (!incoming_wins) {
      // Only incoming overrides newer than the held base and winning rule 2
      // change anything, and each of them changes just its own user.
      for (const OverrideState& ov : in.overrides) {
        if (ov.ts <= col.base_ts || !col.overrides.Merge(ov.offset, Override{ov.ts, ov.op})) {
          continue;
        }
        if (internal::SetMembership(col.bitmap, ov.offset, ov.op == TagOp::kSet) && update_index) {
          IndexChanged(shard, ov.offset, tag, ov.op == TagOp::kSet);
        }
      }
      return;
    }
    col.overrides.DropUpTo(in.base_ts);
    for (const OverrideState& ov : in.overrides) {
      if (ov.ts > in.base_ts) col.overrides.Merge(ov.offset, Override{ov.ts, ov.op});
    }
    Roaring next = in.bitmap;
    col.overrides.ForEach([&](uint32_t offset, const Override& ov) {
      if (ov.op == TagOp::kSet) {
        next.add(offset);
      } else {
        next.remove(offset);
      }
    });
    next.runOptimize();
    next.shrinkToFit();
    if (update_index) IndexChangedBulk(shard, tag, next - col.bitmap, col.bitmap - next);
    col.bitmap = std::move(next);
    col.base_ts = in.base_ts;
    col.base_digest = in.base_digest;
    col.has_base = true;
  }

  uint64_t StateDigest() const {
    Hasher h;
    // Sorted by name, and per shard by tag name, so neither creation order
    // (tag ids) nor memory layout shows; lengths delimit every list.
    {
      std::shared_lock lock(tags_mu_);
      std::vector<uint32_t> order(tags_.size());
      for (uint32_t t = 0; t < order.size(); ++t) order[t] = t;
      std::sort(order.begin(), order.end(),
                [&](uint32_t a, uint32_t b) { return tags_[a].name < tags_[b].name; });
      h.U64(order.size());
      for (uint32_t t : order) {
        const TagFloor& floor = tags_[t].floor;
        h.Str(tags_[t].name);
        h.U64(floor.has_floor);
        h.U64(floor.floor_ts);
        std::vector<std::pair<uint64_t, std::optional<Timestamp>>> missing(floor.missing.begin(),
                                                                           floor.missing.end());
        std::sort(missing.begin(), missing.end());
        h.U64(missing.size());
        for (const auto& [shard, shard_floor] : missing) {
          h.U64(shard);
          h.U64(shard_floor.has_value());
          h.U64(shard_floor.value_or(0));
        }
      }
    }
    for (const std::shared_ptr<Shard>& shard : AllShards()) {
      std::shared_lock lock(shard->mu);
      HashShardLocked(h, *shard);
    }
    return h.Digest();
  }

  uint64_t ShardDigest(uint64_t id) const {
    std::shared_ptr<const Shard> shard = FindShard(id);
    if (!shard) return 0;
    Hasher h;
    std::shared_lock lock(shard->mu);
    return HashShardLocked(h, *shard) ? h.Digest() : 0;
  }

  std::vector<std::pair<uint64_t, uint64_t>> ShardDigests(const ShardFilter& filter) const {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (const std::shared_ptr<Shard>& shard : SelectShards(filter)) {
      Hasher h;
      std::shared_lock lock(shard->mu);
      if (HashShardLocked(h, *shard)) out.emplace_back(shard->id, h.Digest());
    }
    return out;
  }

  // Feeds one shard's logical state to `h`: its id, known users, and per
  // column in tag-name order the name, members, base and overrides. A
  // column with no base and no overrides is the merge's identity (it has
  // no members either), so it is left out like a column that does not
  // exist; a shard with nothing else feeds nothing and returns false: a
  // shard without state need not exist on both sides.
  // REQUIRES: shard.mu held (shared is enough).
  bool HashShardLocked(Hasher& h, const Shard& shard) const {
    std::vector<std::pair<std::string_view, const TagColumn*>> columns;
    {
      std::shared_lock tags_lock(tags_mu_);
      for (size_t t = 0; t < shard.columns.size(); ++t) {
        const TagColumn* col = shard.columns[t].get();
        if (!col || (!col->has_base && col->overrides.size() == 0 && col->bitmap.isEmpty())) {
          continue;
        }
        columns.emplace_back(tags_[t].name, col);
      }
    }
    if (columns.empty() && shard.known.isEmpty()) return false;
    std::sort(columns.begin(), columns.end());
    h.U64(shard.id);
    h.Members(shard.known);
    h.U64(columns.size());
    for (const auto& [name, col] : columns) {
      h.Str(name);
      h.Members(col->bitmap);
      h.U64(col->base_ts);
      h.U64(col->base_digest);
      h.U64(col->has_base);
      std::vector<std::pair<uint32_t, Override>> overrides;
      overrides.reserve(col->overrides.size());
      col->overrides.ForEach(
          [&](uint32_t offset, const Override& ov) { overrides.emplace_back(offset, ov); });
      std::sort(overrides.begin(), overrides.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      h.U64(overrides.size());
      for (const auto& [offset, ov] : overrides) {
        h.U64(offset);
        h.U64(ov.ts);
        h.U64(static_cast<uint64_t>(ov.op));
      }
    }
    return true;
  }

  // ---- Shard moves -------------------------------------------------------------

  void DropShard(uint64_t id) {
    std::shared_ptr<Shard> shard = FindShard(id);
    if (!shard) return;
    // Moved out under the lock, freed after it: writers to other shards
    // never wait for a large shard's bitmaps to be freed.
    std::vector<std::unique_ptr<TagColumn>> columns;
    Roaring known;
    internal::UserIndex index;
    {
      std::unique_lock lock(shard->mu);
      {
        std::unique_lock shards_lock(shards_mu_);
        auto it = shards_.find(id);
        if (it == shards_.end() || it->second != shard) return;  // a concurrent drop won
        shards_.erase(it);
      }
      // Readers and writers that found the shard before it was unlinked see
      // it empty from now on; writers then retry (LockShardForWrite).
      columns.swap(shard->columns);
      known.swap(shard->known);
      index.Swap(shard->index);
      shard->index_stale = false;
      std::lock_guard<std::mutex> rebuild_lock(rebuild_mu_);
      rebuild_queue_.erase(id);
    }
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
    for (const std::shared_ptr<Shard>& shard : AllShards()) {
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
    stats.counters = CountersNow();
    return stats;
  }

  EngineCounters CountersNow() const {
    EngineCounters out;
    const auto& c = counters_;
    out.events_applied = c.events_applied.load();
    out.events_ignored = c.events_ignored.load();
    out.writes_refused_future = c.writes_refused_future.load();
    out.snapshots_applied = c.snapshots_applied.load();
    out.snapshots_duplicate = c.snapshots_duplicate.load();
    out.snapshots_stale = c.snapshots_stale.load();
    out.snapshot_ties = c.snapshot_ties.load();
    out.index_images_installed = c.index_images_installed.load();
    out.index_rebuilds = c.index_rebuilds.load();
    out.expr_limit_refusals = c.expr_limit_refusals.load();
    {
      std::lock_guard<std::mutex> lock(rebuild_mu_);
      out.shards_rebuilding_index = rebuild_queue_.size();
    }
    return out;
  }

  const ExprLimits& expr_limits() const { return opts_.expr_limits; }

 private:
  struct Counters {
    std::atomic<uint64_t> events_applied{0}, events_ignored{0}, writes_refused_future{0},
        snapshots_applied{0}, snapshots_duplicate{0}, snapshots_stale{0}, snapshot_ties{0},
        index_images_installed{0}, index_rebuilds{0}, expr_limit_refusals{0};
  };

  // ---- The per-user index: patched, or dropped and rebuilt ------------------

  // `offset`'s membership of `tag` changed. REQUIRES: shard.mu held exclusively.
  void IndexChanged(Shard& shard, uint32_t offset, uint32_t tag, bool member) {
    if (shard.index_stale) {
      ++shard.index_skipped_writes;
    } else if (member) {
      shard.index.Add(offset, tag);
    } else {
      shard.index.Remove(offset, tag);
    }
  }

  // Many memberships of `tag` changed at once. Patching costs ~70 ns a
  // change, building the whole index from the bitmaps ~4 ns a membership,
  // so a change of a tenth of the index (by its ~1.6 bytes a membership)
  // drops it for a rebuild. REQUIRES: shard.mu held exclusively.
  void IndexChangedBulk(Shard& shard, uint32_t tag, const Roaring& added,
                        const Roaring& removed) {
    const uint64_t changes = added.cardinality() + removed.cardinality();
    if (changes == 0) return;
    const uint64_t min_changes = opts_.index_rebuild_min_changes;
    if (!shard.index_stale &&
        (min_changes == 0 ||
         (changes >= min_changes && changes * 16 >= shard.index.MemoryBytes()))) {
      shard.index.Clear();
      shard.index_stale = true;
      shard.index_rebuild_contended = false;
      {
        std::lock_guard<std::mutex> lock(rebuild_mu_);
        rebuild_queue_.insert(shard.id);
      }
      rebuild_cv_.notify_one();
    }
    if (shard.index_stale) {
      ++shard.index_skipped_writes;
      shard.last_bulk_index_skip = std::chrono::steady_clock::now();
      return;
    }
    for (uint32_t offset : added) shard.index.Add(offset, tag);
    for (uint32_t offset : removed) shard.index.Remove(offset, tag);
  }

  // The index thread: rebuilds dropped indexes once bulk writes pause.
  void RebuildLoop() {
    std::unique_lock<std::mutex> lock(rebuild_mu_);
    while (!stop_rebuilds_) {
      if (rebuild_queue_.empty()) {
        rebuild_cv_.wait(lock);
        continue;
      }
      rebuild_cv_.wait_for(lock, opts_.index_rebuild_delay);
      if (stop_rebuilds_) break;
      std::vector<uint64_t> ids(rebuild_queue_.begin(), rebuild_queue_.end());
      lock.unlock();
      for (uint64_t id : ids) RebuildIndex(id);
      lock.lock();
    }
  }

  // Builds the shard's index from its columns if it is stale and bulk
  // writes have paused; takes it off the queue once the index is whole.
  // Under a shared lock first (GetTags keeps answering from the bitmaps;
  // writes wait), kept only if no write slipped in before the swap;
  // after such a miss, under the exclusive lock.
  void RebuildIndex(uint64_t id) {
    std::shared_ptr<Shard> shard = FindShard(id);
    auto forget = [&] {
      // A shard dropped meanwhile leaves the id's queue entry to its successor.
      if (shard && FindShard(id) != shard) return;
      std::lock_guard<std::mutex> lock(rebuild_mu_);
      rebuild_queue_.erase(id);
    };
    if (!shard) return forget();
    auto build = [&](internal::UserIndex& out) {
      std::vector<const Roaring*> by_tag(shard->columns.size(), nullptr);
      for (size_t t = 0; t < shard->columns.size(); ++t) {
        if (shard->columns[t]) by_tag[t] = &shard->columns[t]->bitmap;
      }
      out.BuildFrom(by_tag);
    };
    auto install = [&](internal::UserIndex& fresh) {  // REQUIRES: shard->mu held exclusively
      shard->index.Swap(fresh);
      shard->index_stale = false;
      counters_.index_rebuilds.fetch_add(1, std::memory_order_relaxed);
      forget();
    };
    const auto now = std::chrono::steady_clock::now();
    internal::UserIndex fresh;
    uint64_t seen = 0;
    {
      std::shared_lock lock(shard->mu);
      if (!shard->index_stale) return forget();
      if (now - shard->last_bulk_index_skip < opts_.index_rebuild_delay) return;  // later
      if (!shard->index_rebuild_contended) {
        seen = shard->index_skipped_writes;
        build(fresh);
      }
    }
    std::unique_lock lock(shard->mu);
    if (!shard->index_stale) return forget();
    if (shard->index_rebuild_contended) {
      fresh.Clear();
      build(fresh);
      return install(fresh);
    }
    if (shard->index_skipped_writes != seen) {
      shard->index_rebuild_contended = true;  // the next attempt holds the lock throughout
      return;
    }
    install(fresh);
  }

  const EngineOptions opts_;
  const int shard_bits_;
  const internal::BitsetKernels kernels_;
  mutable internal::TaskPool pool_;

  // Lock order: a shard's mu, then shards_mu_ or tags_mu_ (never the reverse).
  mutable std::shared_mutex shards_mu_;
  std::map<uint64_t, std::shared_ptr<Shard>> shards_;  // ascending, so audiences come out sorted

  mutable std::shared_mutex tags_mu_;
  std::deque<TagInfo> tags_;  // by tag id; a deque so names never move
  std::unordered_map<std::string_view, uint32_t, StringHash, std::equal_to<>> by_name_;

  mutable Counters counters_;  // atomics: const checks count refusals too
  std::atomic<bool> future_check_{true};
  std::atomic<bool> unknown_empty_{false};

  // Shards whose index was dropped, for the index thread. Lock order: a
  // shard's mu, then rebuild_mu_.
  mutable std::mutex rebuild_mu_;
  std::condition_variable rebuild_cv_;
  std::set<uint64_t> rebuild_queue_;
  bool stop_rebuilds_ = false;
  std::thread rebuild_thread_;  // last: started once every other member exists
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
Result<uint64_t> Engine::Count(std::string_view expr, const ShardFilter& filter) const {
  return impl_->Count(expr, filter);
}
Result<AudiencePage> Engine::Audience(std::string_view expr, UserId cursor, size_t limit,
                                      const ShardFilter& filter) const {
  return impl_->Audience(expr, cursor, limit, filter);
}
Result<std::vector<ShardBitmap>> Engine::AudienceBitmaps(std::string_view expr,
                                                         const ShardFilter& filter) const {
  return impl_->AudienceBitmaps(expr, filter);
}
Result<std::vector<TagCount>> Engine::TopTags(std::string_view expr, size_t k,
                                              const ShardFilter& filter) const {
  return impl_->TopTags(expr, k, filter);
}
std::vector<TagState> Engine::ExportTags() const { return impl_->ExportTags(); }
std::vector<uint64_t> Engine::ShardIds() const { return impl_->ShardIds(); }
ShardState Engine::ExportShard(uint64_t shard, bool with_index) const {
  return impl_->ExportShard(shard, with_index);
}
Status Engine::MergeTags(std::span<const TagState> tags) { return impl_->MergeTags(tags); }
Status Engine::MergeShard(const ShardState& state) { return impl_->MergeShard(state); }
uint64_t Engine::StateDigest() const { return impl_->StateDigest(); }
uint64_t Engine::ShardDigest(uint64_t shard) const { return impl_->ShardDigest(shard); }
std::vector<std::pair<uint64_t, uint64_t>> Engine::ShardDigests(const ShardFilter& filter) const {
  return impl_->ShardDigests(filter);
}
void Engine::DropShard(uint64_t shard) { impl_->DropShard(shard); }
Status Engine::CheckEvents(std::span<const Event> events) const {
  return impl_->CheckEvents(events);
}
Status Engine::CheckSnapshot(std::string_view tag, Timestamp ts, uint64_t shard,
                             const Roaring& offsets) const {
  return impl_->CheckSnapshot(tag, ts, shard, offsets);
}
Status Engine::CheckCommit(std::string_view tag, Timestamp ts) const {
  return impl_->CheckCommit(tag, ts);
}
void Engine::SetFutureCheck(bool enabled) { impl_->SetFutureCheck(enabled); }
void Engine::SetUnknownTagsEmpty(bool empty) { impl_->SetUnknownTagsEmpty(empty); }
EngineStats Engine::Stats(bool detailed) const { return impl_->Stats(detailed); }
EngineCounters Engine::Counters() const { return impl_->CountersNow(); }
const ExprLimits& Engine::expr_limits() const { return impl_->expr_limits(); }

}  // namespace tagcache
