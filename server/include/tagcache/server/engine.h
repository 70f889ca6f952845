// The tag engine: every tag's users as Roaring bitmaps in RAM, sharded by
// user-id range, merged last-writer-wins from snapshots and events, and
// queried by point lookups and audience expressions. No I/O, no sockets.
//
// Merge contract (docs/ARCHITECTURE.md, ../shared/design.md): the state
// depends only on the set of writes received, never on their order or on
// duplicates. All methods are thread-safe; readers never observe a
// half-applied snapshot of a (tag, shard).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <roaring/roaring.hh>

#include "tagcache/common/status.h"
#include "tagcache/common/tag_name.h"
#include "tagcache/server/expr.h"

namespace tagcache {

using UserId = uint64_t;
using Timestamp = uint64_t;  // producer-chosen, normally ms since the Unix epoch

enum class TagOp : uint8_t { kSet = 0, kClear = 1 };

struct Event {
  UserId user = 0;
  std::string tag;
  TagOp op = TagOp::kSet;
  Timestamp ts = 0;
};

struct EngineOptions {
  // log2 of the users per shard: shard = user >> shard_bits. Fixed for the
  // life of a cluster. Range [8, 26] (a value outside is clamped into it).
  // Default: 20 (1,048,576 users a shard).
  int shard_bits = 20;
  // Threads that evaluate one audience query over shards in parallel,
  // counting the calling thread. 0 means std::thread::hardware_concurrency().
  // Default: 0.
  int query_threads = 0;
  // A write stamped more than this many ms ahead of clock() is refused with
  // FUTURE_TIMESTAMP and counted. 0 disables the check. Default: one hour.
  uint64_t max_future_ms = 3'600'000;
  // Bounds on a query's expression text (length, nesting, tag references);
  // over one, the query is refused with BAD_REQUEST naming the limit and
  // counted in EngineCounters::expr_limit_refusals.
  ExprLimits expr_limits;
  // The node's clock, in ms since the Unix epoch. Default (empty): the
  // system clock. Tests inject a fixed clock.
  std::function<Timestamp()> clock;
  // The per-user index (what GetTags reads) is patched user by user on every
  // write, unless one write changes at least this many memberships of a
  // shard and about a tenth as many as the index holds (a bulk snapshot):
  // then patching would cost far more than building the index
  // anew from the bitmaps, so the shard's index is dropped, GetTags probes
  // the shard's bitmaps meanwhile, and a background thread rebuilds the
  // index once no such write has touched the shard for
  // `index_rebuild_delay`. 0 makes every change of a shard's members drop
  // its index (tests). Default: 4,096 and 500 ms (a loader sends a shard
  // one part per tag, tens of ms apart: the index stays dropped until the
  // load is over instead of being rebuilt between tags).
  uint64_t index_rebuild_min_changes = 4096;
  std::chrono::milliseconds index_rebuild_delay{500};
};

struct ApplyEventsResult {
  uint64_t applied = 0;  // events that won (rule 2) and are now the user's override
  uint64_t ignored = 0;  // events at or below the base (rule 1), or losing to a held override
};

enum class SnapshotOutcome : uint8_t {
  kApplied,    // S > base_ts, or the first snapshot: the shard's base is now this one
  kDuplicate,  // same S and same members as the base: a no-op
  kTieWon,     // same S, different members, larger digest: replaced (operator error, warned)
  kTieLost,    // same S, different members, smaller digest: ignored (operator error, warned)
};

struct CommitOutcome {
  // Shards of the tag that became "empty as of S" because the commit did not
  // name them (shards without state for the tag are covered too, lazily).
  uint64_t shards_emptied = 0;
  // Named shards whose members for (tag, S) this node never received: they
  // are reported, never emptied. Sorted ascending. Empty on full success.
  std::vector<uint64_t> missing_shards;
};

struct TagHit {
  std::string_view tag;  // valid for the Engine's lifetime (tag names are never freed)
  Timestamp ts = 0;      // the winning write's ts; 0 unless requested
};

struct TagCount {
  std::string_view tag;  // valid for the Engine's lifetime
  uint64_t count = 0;
};

struct AudiencePage {
  std::vector<UserId> users;          // ascending
  std::optional<UserId> next_cursor;  // pass back to continue; empty when done
};

struct ShardBitmap {
  uint64_t shard = 0;
  uint64_t cardinality = 0;
  std::string portable;  // Roaring portable serialization of the shard's offsets
};

struct MemoryUsage {
  uint64_t bitmap_bytes = 0;    // tag bitmaps (containers and their directories)
  uint64_t override_bytes = 0;  // per-user event overrides newer than the base
  uint64_t index_bytes = 0;     // per-user tag lists that make GetTags O(user's tags)
  uint64_t known_bytes = 0;     // known-users bitmaps (the universe of '!')
  uint64_t total() const { return bitmap_bytes + override_bytes + index_bytes + known_bytes; }
};

struct TagStats {
  std::string_view tag;
  uint64_t members = 0;
  uint64_t overrides = 0;
  Timestamp newest_base_ts = 0;
  MemoryUsage memory;  // bitmap_bytes and override_bytes only
};

struct ShardStats {
  uint64_t shard = 0;
  uint64_t known_users = 0;
  uint64_t tags = 0;  // tags with state in this shard
  MemoryUsage memory;
};

struct EngineCounters {
  uint64_t events_applied = 0;
  uint64_t events_ignored = 0;
  uint64_t writes_refused_future = 0;  // writes refused for FUTURE_TIMESTAMP
  uint64_t snapshots_applied = 0;
  uint64_t snapshots_duplicate = 0;
  uint64_t snapshots_stale = 0;
  uint64_t snapshot_ties = 0;  // different content at the same ts (operator error)
  // Queries refused for an expression over EngineOptions::expr_limits.
  uint64_t expr_limit_refusals = 0;
  // Shards whose per-user index a merge installed from ShardState.index_image
  // instead of rebuilding it from the bitmaps.
  uint64_t index_images_installed = 0;
  // Per-user indexes dropped by a bulk write and rebuilt in the background
  // (see EngineOptions::index_rebuild_min_changes), and shards whose index
  // is being rebuilt now (GetTags probes their bitmaps meanwhile).
  uint64_t index_rebuilds = 0;
  uint64_t shards_rebuilding_index = 0;
};

// Which shards an audience query evaluates; empty function = every shard.
using ShardFilter = std::function<bool(uint64_t shard)>;

struct EngineStats {
  uint64_t shards = 0;
  uint64_t tags = 0;
  uint64_t known_users = 0;
  uint64_t assignments = 0;  // (user, tag) memberships held
  MemoryUsage memory;
  EngineCounters counters;
  std::vector<ShardStats> per_shard;  // ascending shard
  std::vector<TagStats> per_tag;      // ascending tag name
};

// ---- State transfer: checkpoints, repair, shard moves ----------------------
// A node's state as plain values, by tag name (tag ids are internal). Merging
// a state into an engine follows the brief's merge of two states: for the
// same (tag, shard) the higher base_ts wins the base (at equal base_ts the
// larger base_digest), overrides merge by rule 2 and are then filtered by
// rule 1, known users and rule 4's floors merge by union and maximum. Merge
// is commutative and idempotent: merging a state into an empty engine
// restores it exactly, and merging it twice changes nothing.

struct OverrideState {
  uint32_t offset = 0;
  Timestamp ts = 0;
  TagOp op = TagOp::kSet;
};

struct ColumnState {
  std::string tag;
  Roaring bitmap;  // effective members (offsets): the base with the overrides applied
  Timestamp base_ts = 0;
  uint64_t base_digest = 0;
  bool has_base = false;
  std::vector<OverrideState> overrides;  // ascending offset
  // The exporting engine's id for the tag, which index_image is written in.
  // UINT32_MAX: unknown (then no image is used).
  uint32_t tag_id = UINT32_MAX;
};

struct ShardState {
  uint64_t shard = 0;
  Roaring known;                     // offsets of the shard's known users
  std::vector<ColumnState> columns;  // one per tag with state in the shard
  // Optional (empty: none): the exporter's per-user index of the shard as a
  // flat image in its own tag ids. A merge into a shard without state
  // installs it instead of rebuilding the index, but only when every
  // column's tag has the same id here (ColumnState::tag_id) and the image
  // checks out against the merged columns; otherwise it is ignored.
  std::string index_image;
};

// Rule 4's per-tag record of "empty as of S" for shards without state.
struct TagState {
  std::string name;
  bool has_floor = false;
  Timestamp floor_ts = 0;
  // The exceptions to floor_ts: shards every commit at floor_ts named
  // (whether their part arrived or not), each with the floor it keeps, the
  // newest commit that did not name it (nullopt: none; always < floor_ts).
  // Ascending shard.
  std::vector<std::pair<uint64_t, std::optional<Timestamp>>> missing;
};


class Engine {
 public:
  // options.shard_bits outside [8, 26] is clamped into that range.
  explicit Engine(EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  int shard_bits() const;

  // ---- Writes -------------------------------------------------------------

  // Applies a batch of events by the merge rules. The batch is validated
  // first and applied only if every event is valid: a bad tag name gives
  // BAD_REQUEST, a ts too far ahead FUTURE_TIMESTAMP, each naming the event's
  // index. Applying the same batch twice changes nothing.
  Result<ApplyEventsResult> ApplyEvents(std::span<const Event> events);

  // Applies one shard's part of the snapshot of `tag` as of `ts`: `offsets`
  // are the members' offsets within `shard` (user = shard << shard_bits | offset).
  // STALE_SNAPSHOT when ts is older than the shard's base; BAD_REQUEST for a
  // bad tag name or an offset >= 2^shard_bits. Atomic per shard.
  Result<SnapshotOutcome> ApplySnapshot(std::string_view tag, Timestamp ts, uint64_t shard,
                                        const Roaring& offsets);

  // Completes the snapshot of `tag` as of `ts`: every shard not in
  // `shards_with_members` is empty as of ts (including shards with no state
  // for the tag yet). Named shards whose part never arrived are reported in
  // the outcome and left alone. Committing twice is harmless.
  Result<CommitOutcome> CommitSnapshot(std::string_view tag, Timestamp ts,
                                       std::span<const uint64_t> shards_with_members);

  // Convenience for tests and tools: applies the whole snapshot of `tag` as
  // of `ts` (any order, duplicates allowed), split by shard, then commits it.
  // An empty `users` drops the tag as of ts. A part refused as stale does not
  // stop the others or the commit; its STALE_SNAPSHOT status is returned.
  Status ApplyFullSnapshot(std::string_view tag, Timestamp ts, std::span<const UserId> users);

  // The checks a write passes before it is applied, and on a durable node
  // before it is logged, so that the log holds only accepted writes: tag
  // names, shard and offset ranges, ts not too far ahead (counted as the
  // write itself would be). Same statuses and messages as the write.
  Status CheckEvents(std::span<const Event> events) const;
  Status CheckSnapshot(std::string_view tag, Timestamp ts, uint64_t shard,
                       const Roaring& offsets) const;
  Status CheckCommit(std::string_view tag, Timestamp ts) const;

  // ---- Point lookups ------------------------------------------------------

  // The user's tags, in tag-creation order; O(tags of the user). With
  // `with_ts`, each hit carries its winning write's ts. Unknown user: empty.
  std::vector<TagHit> GetTags(UserId user, bool with_ts = false) const;

  // GetTags for many users at once, in the order given.
  std::vector<std::vector<TagHit>> GetTagsBatch(std::span<const UserId> users,
                                                bool with_ts = false) const;

  // For each tag in `tags`, whether the user has it. UNKNOWN_TAG names every
  // tag no write ever created.
  Result<std::vector<bool>> HasTags(UserId user, std::span<const std::string_view> tags) const;

  // ---- Audience queries (expression grammar: tagcache/server/expr.h) ------
  //
  // Each evaluates only the shards holding state for which `filter` returns
  // true (empty: every shard), so a node can answer for the shards it owns
  // and partial answers over disjoint filters add up to the whole answer
  // ('!' included: its universe is per shard). The filter is called once
  // per shard holding state, from the calling thread, with no engine lock
  // held; an empty filter costs nothing.

  // Number of users matching `expr`. BAD_REQUEST for a parse error (with the
  // position), UNKNOWN_TAG naming unknown tags.
  Result<uint64_t> Count(std::string_view expr, const ShardFilter& filter = {}) const;

  // Matching user ids >= `cursor`, ascending, at most `limit` (>= 1) of them.
  Result<AudiencePage> Audience(std::string_view expr, UserId cursor, size_t limit,
                                const ShardFilter& filter = {}) const;

  // The audience as one portable Roaring bitmap of offsets per non-empty shard.
  Result<std::vector<ShardBitmap>> AudienceBitmaps(std::string_view expr,
                                                   const ShardFilter& filter = {}) const;

  // The k tags most common among the users matching `expr`, with exact counts,
  // by count descending then name ascending; tags with count 0 are left out.
  // k == 0 returns every tag with a nonzero count (in the same order), which
  // is what a coordinator merging per-node answers needs to stay exact.
  Result<std::vector<TagCount>> TopTags(std::string_view expr, size_t k,
                                        const ShardFilter& filter = {}) const;

  // ---- State transfer -----------------------------------------------------

  // Every tag, in creation order (the order GetTags reports), with its rule 4 record.
  std::vector<TagState> ExportTags() const;
  // Shards holding any state, ascending.
  std::vector<uint64_t> ShardIds() const;
  // A copy of one shard's state, taken under the shard's lock (a consistent
  // cut of that shard; writes to it wait only for the copy). A shard without
  // state gives an empty ShardState. `with_index` adds index_image (a copy
  // of about 1.2 bytes per assignment), which pays off where the state is
  // restored into an empty engine, as from a checkpoint.
  ShardState ExportShard(uint64_t shard, bool with_index = false) const;
  // Creates the tags that do not exist yet, in the order given, and merges
  // their rule 4 records (floors by maximum). BAD_REQUEST for a bad name.
  Status MergeTags(std::span<const TagState> tags);
  // Merges one shard's state (see above). BAD_REQUEST for a bad tag name,
  // an offset >= 2^shard_bits or a shard out of range; nothing is applied then.
  Status MergeShard(const ShardState& state);
  // XXH3-64 over the whole logical state (tags with their floors, and per
  // shard: known users, and per column: members, base_ts, base_digest,
  // has_base, overrides), independent of tag creation order and memory
  // layout. Two engines with equal digests hold the same state.
  uint64_t StateDigest() const;
  // XXH3-64 of one shard's part of StateDigest: the shard id, its known
  // users, and per column in tag-name order the tag name, members, base_ts,
  // base_digest, has_base and overrides. Tag floors are not included (they
  // are per tag: compare ExportTags). A column with no base and no
  // overrides is the merge's identity and is left out, as in StateDigest.
  // 0 for a shard without state (absent, dropped, or nothing but such
  // columns), so a replica that never saw the shard agrees with one whose
  // state is empty. Two engines that merged the same writes for the shard
  // (and the same tag floors) give equal digests.
  uint64_t ShardDigest(uint64_t shard) const;
  // (shard, ShardDigest(shard)) for every shard holding state that passes
  // `filter` (empty: all), ascending shard. Each shard is read under its own
  // lock: a cut per shard, not across shards.
  std::vector<std::pair<uint64_t, uint64_t>> ShardDigests(const ShardFilter& filter = {}) const;

  // Removes all of the shard's state (known users, columns, index), for a
  // node that no longer owns the shard after a move; its memory is freed
  // once no query still reads it. A no-op for a shard without state. Tag
  // records (names, rule 4 floors) stay: they are per tag, not per shard.
  // Writes racing with the drop either land before it (and are dropped) or
  // start the shard anew after it. Not logged: a durable node must keep the
  // shard's writes out of replay itself (e.g. by a checkpoint after it).
  void DropShard(uint64_t shard);

  // Turns the FUTURE_TIMESTAMP check off while a log is replayed (a write
  // accepted yesterday must replay even if the clock has moved back).
  // Thread-safe. Default: on (per EngineOptions::max_future_ms).
  void SetFutureCheck(bool enabled);
  // When true, queries treat a tag this engine never saw as an empty set
  // instead of failing with UNKNOWN_TAG (HasTags answers false for it): a
  // node of a cluster holds only some shards, so a tag written elsewhere
  // may not exist here yet. Thread-safe. Default: false.
  void SetUnknownTagsEmpty(bool empty);

  // ---- Introspection ------------------------------------------------------

  // With `detailed`, per_shard and per_tag are filled in too.
  EngineStats Stats(bool detailed = false) const;
  // The counters of Stats() alone: cheap (no shard is visited). Thread-safe.
  EngineCounters Counters() const;
  // The expression limits queries are parsed with (EngineOptions::expr_limits).
  const ExprLimits& expr_limits() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagcache
