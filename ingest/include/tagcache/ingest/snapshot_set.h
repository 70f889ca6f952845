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
  // offsets of `shard`.
  void AddUsers32(std::string_view tag, const Roaring& users);
  void AddShardOffsets(std::string_view tag, uint64_t shard, const Roaring& offsets);

  // Union: every tag and member of `other` joins this set. REQUIRES: same
  // shard_bits.
  void MergeFrom(SnapshotSet&& other);

  // Folds buffered members into the bitmaps (the accessors below do it).
  void Flush();

  // Tag names, ascending.
  std::vector<std::string> Tags();
  size_t tag_count() const { return tags_.size(); }
  // Per shard (ascending) the tag's members as offsets; shards without
  // members are absent. Empty map for an unknown tag or a tag without members.
  const std::map<uint64_t, Roaring>& Parts(const std::string& tag);
  // Frees a tag once it is loaded.
  void Erase(const std::string& tag);

  // (tag, user) pairs held, duplicates counted once.
  uint64_t Assignments();
  // Distinct users over all tags.
  uint64_t DistinctUsers();
  // Distinct shards over all tags.
  uint64_t DistinctShards();
  // Serialized size of the bitmaps plus the unflushed buffers.
  uint64_t MemoryBytes();

 private:
  struct TagMembers;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  TagMembers& Find(std::string_view tag);
  void FlushTag(TagMembers& members);

  int shard_bits_;
  std::unordered_map<std::string, std::unique_ptr<TagMembers>, StringHash, std::equal_to<>> tags_;
};

}  // namespace tagcache::ingest
