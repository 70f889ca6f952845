// The members of a bulk snapshot while it is being read: for every tag, the
// users that have it as of the load's ts, split by shard into Roaring
// bitmaps of shard offsets (the form LoadSnapshot sends). Memory is that of
// the compressed bitmaps, never of the input text: a 10^9-pair CSV costs
// what its bitmaps cost (typically well under 2 bytes a pair).
//
// A tag can be present with no members at all (an empty id-list file): its
// load empties the tag on every shard (design.md rule 4, "dropping a tag").
//
// Not thread-safe: each reader fills its own set; MergeFrom combines them.
#pragma once

#include <roaring/roaring.hh>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tagcache::ingest {

class SnapshotSet {
 public:
  // REQUIRES: 8 <= shard_bits <= 32.
  explicit SnapshotSet(int shard_bits);
  ~SnapshotSet();
  SnapshotSet(SnapshotSet&&) noexcept;
  SnapshotSet& operator=(SnapshotSet&&) noexcept;

  int shard_bits() const { return shard_bits_; }

  // Marks `tag` present (with or without members). REQUIRES: a valid tag name.
  void AddTag(std::string_view tag);
  // Adds one member; cheap (buffered, sorted and folded into the bitmaps in
  // bulk). REQUIRES: a valid tag name.
  void Add(std::string_view tag, uint64_t user);
  // Adds every value of `users` (32-bit user ids) / of `offsets` as the
  // offsets of `shard`. Both mark the tag present even when the bitmap is
  // empty. REQUIRES: a valid tag name; for AddShardOffsets, every offset
  // < 2^shard_bits.
  void AddUsers32(std::string_view tag, const Roaring& users);
  void AddShardOffsets(std::string_view tag, uint64_t shard, const Roaring& offsets);

  // Union: every tag and member of `other` joins this set. REQUIRES: same
  // shard_bits.
  void MergeFrom(SnapshotSet&& other);

  // Folds buffered members into the bitmaps and frees the buffers (the
  // accessors below do it, but for MemoryBytes).
  void Flush();

  // Tag names, ascending.
  std::vector<std::string> Tags();
  size_t tag_count() const { return tags_.size(); }
  // Per shard (ascending) the tag's members as offsets, run-optimised;
  // shards without members are absent. Empty map for an unknown tag or a tag
  // without members. Valid until the next call that changes the set.
  const std::map<uint64_t, Roaring>& Parts(const std::string& tag);
  // Frees a tag once it is loaded.
  void Erase(const std::string& tag);

  // (tag, user) pairs held, duplicates counted once.
  uint64_t Assignments();
  // Distinct users over all tags.
  uint64_t DistinctUsers();
  // Distinct shards over all tags.
  uint64_t DistinctShards();
  // Serialized size of the bitmaps plus the buffers' allocated bytes; does
  // not flush. The buffers are bounded: about 40 MiB per set.
  uint64_t MemoryBytes();

 private:
  struct TagMembers;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  TagMembers& Find(std::string_view tag);
  // Makes room for one more pending member: grows the log, or folds it
  // when it is at its bound.
  void MakeRoom();
  // Folds every pending member into the bitmaps; keeps the buffers.
  void FoldPending();
  // Folds `n` users of one tag (reordered in place) into its bitmaps.
  void FoldUsers(TagMembers& members, uint64_t* users, size_t n);

  int shard_bits_;
  std::unordered_map<std::string, std::unique_ptr<TagMembers>, StringHash, std::equal_to<>> tags_;
  // The tag Add saw last (Spark output is often grouped by tag); its name
  // views the key in tags_, which stays put until the tag is erased.
  TagMembers* last_ = nullptr;
  std::string_view last_name_;
  // Members added and not yet folded, of all tags in arrival order (user
  // and index in by_id_), and the scratch FoldPending groups them by tag in.
  std::vector<uint64_t> pending_users_;
  std::vector<uint32_t> pending_tags_;
  std::vector<uint64_t> grouped_;
  std::vector<uint32_t> offsets_;
  std::vector<TagMembers*> touched_;
  // Every tag by its index (pending_tags_ is half the size of pointers);
  // null once erased or moved to another set.
  std::vector<TagMembers*> by_id_;
};

}  // namespace tagcache::ingest
