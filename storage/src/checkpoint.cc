// Checkpoint files (docs/WAL.md, "Checkpoints"): the engine's state as
// record_io records, written to a temp file and renamed into place, and read
// back strictly (a checkpoint is either whole or refused; unlike a WAL tail,
// nothing in it was ever "not yet acknowledged").
//
// Loading is the restart path, so the expensive part (deserializing and
// validating bitmaps, merging) runs on worker threads while the calling
// thread reads records; a bounded queue keeps memory at a few shards.
#include "tagcache/storage/checkpoint.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "byte_codec.h"
#include "state_codec.h"
#include "tagcache/storage/record_io.h"

namespace tagcache::storage {
namespace {

using internal::DecodeColumn;
using internal::DecodeShardRecord;
using internal::DecodeTags;
using internal::EncodeColumn;
using internal::EncodeShardRecord;
using internal::EncodeTagState;
using internal::PutU32;
using internal::PutU64;
// Checkpoint records are checksummed, so a decoding failure means a writer
// bug or a checksum collision; still, nothing is trusted.
using Reader = internal::StateReader;

// The writer hands the file system a few large appends rather than one per
// record.
constexpr size_t kFlushBytes = size_t{4} << 20;
// Tags records are split near this size so no record needs a huge buffer.
constexpr size_t kTagsRecordBytes = size_t{16} << 20;
constexpr std::string_view kNamePrefix = "checkpoint-";
constexpr std::string_view kNameSuffix = ".ckpt";
constexpr size_t kNameDigits = 20;

constexpr size_t kHeaderBytes = 4 + 4 + 8 + 8;
constexpr size_t kEndBytes = 8 + 8 + 8;

std::string N(uint64_t v) { return std::to_string(v); }

uint64_t NowMicros(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}

// Frames records into a buffer and appends it to the file in large pieces.
// A checkpoint is synced every this many bytes while it is written.
constexpr uint64_t kSyncEveryBytes = uint64_t{32} << 20;

class BufferedRecordWriter {
 public:
  explicit BufferedRecordWriter(WritableFile& file) : file_(file) { buffer_.reserve(kFlushBytes); }

  Status Add(RecordType type, std::string_view payload) {
    return Add(static_cast<uint8_t>(type), payload);
  }
  Status Add(uint8_t type, std::string_view payload) {
    AppendRecord(type, payload, buffer_);
    return buffer_.size() >= kFlushBytes ? Flush() : Status::Ok();
  }
  Status Flush() {
    if (buffer_.empty()) return Status::Ok();
    Status s = file_.Append(buffer_);
    flushed_ += buffer_.size();
    buffer_.clear();
    if (!s.ok()) return s;
    // Sync as we go: left to one fsync at the end, gigabytes of dirty pages
    // reach the disk in one burst, and the WAL's fsyncs (which acknowledge
    // writes) queue behind it for a hundred milliseconds and more.
    if (flushed_ - synced_ >= kSyncEveryBytes) {
      s = file_.Sync();
      synced_ = flushed_;
    }
    return s;
  }
  // Framed bytes so far, flushed or not: the offset the next record gets.
  uint64_t bytes() const { return flushed_ + buffer_.size(); }

 private:
  WritableFile& file_;
  std::string buffer_;
  uint64_t flushed_ = 0;
  uint64_t synced_ = 0;
};

// ---- Loading -----------------------------------------------------------------

Status ErrorAt(const std::string& path, uint64_t offset, const std::string& what) {
  return Status::IoError("checkpoint " + path + ": offset " + N(offset) + ": " + what);
}

struct RawRecord {
  uint64_t offset = 0;
  std::string payload;
};

// A kCheckpointShard record and its columns, copied out of the reader.
struct ShardGroup {
  uint64_t shard = 0;
  uint32_t expected_columns = 0;
  RawRecord shard_record;
  std::vector<RawRecord> columns;
  std::string index_image;  // from a kCheckpointShardIndex record; empty: none
};

constexpr uint8_t kShardIndexType =
    static_cast<uint8_t>(RecordType::kCheckpointShardIndex) | kSkippableBit;

struct Failure {
  uint64_t offset = 0;
  Status status;
};

// Decodes one shard group of a checkpoint of format `version` into the
// state MergeShard takes, moving the index image out of the group. Errors
// carry the offset of the record at fault.
Result<ShardState> DecodeShardGroup(ShardGroup& group, int shard_bits, uint32_t version,
                                    uint64_t* bad_offset) {
  const uint64_t limit = uint64_t{1} << shard_bits;
  ShardState state;
  state.index_image = std::move(group.index_image);
  *bad_offset = group.shard_record.offset;
  uint32_t announced = 0;  // the reader has matched it against the columns
  if (Status s = DecodeShardRecord(group.shard_record.payload, limit, &state, &announced);
      !s.ok()) {
    return s;
  }
  state.shard = group.shard;
  state.columns.reserve(group.columns.size());
  std::unordered_set<std::string> tags;
  for (const RawRecord& raw : group.columns) {
    *bad_offset = raw.offset;
    Result<ColumnState> column = DecodeColumn(raw.payload, group.shard, limit, version);
    if (!column.ok()) return column.status();
    if (!tags.insert(column->tag).second) {
      return Status::IoError("column " + column->tag + " of shard " + N(group.shard) +
                             ": the tag appears twice");
    }
    state.columns.push_back(std::move(*column));
  }
  return state;
}

// Decodes and merges shard groups on worker threads. The queue holds at most
// `capacity` groups, so a fast reader cannot pull the whole file into memory.
class MergePool {
 public:
  MergePool(int threads, size_t capacity, std::function<void(ShardGroup&)> work)
      : capacity_(capacity), work_(std::move(work)) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Run(); });
  }
  ~MergePool() { Finish(); }

  void Submit(ShardGroup group) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return queue_.size() < capacity_; });
    queue_.push_back(std::move(group));
    not_empty_.notify_one();
  }

  // Waits for every submitted group to be merged.
  void Finish() {
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
    }
    not_empty_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

 private:
  void Run() {
    for (;;) {
      ShardGroup group;
      {
        std::unique_lock lock(mu_);
        not_empty_.wait(lock, [&] { return closed_ || !queue_.empty(); });
        if (queue_.empty()) return;
        group = std::move(queue_.front());
        queue_.pop_front();
      }
      not_full_.notify_one();
      work_(group);
    }
  }

  const size_t capacity_;
  std::function<void(ShardGroup&)> work_;
  std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<ShardGroup> queue_;
  bool closed_ = false;
  std::vector<std::thread> workers_;
};

// The wal segment a checkpoint file name carries, if it is one.
std::optional<uint64_t> ParseCheckpointName(std::string_view name) {
  if (name.size() != kNamePrefix.size() + kNameDigits + kNameSuffix.size() ||
      !name.starts_with(kNamePrefix) || !name.ends_with(kNameSuffix)) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (char ch : name.substr(kNamePrefix.size(), kNameDigits)) {
    if (ch < '0' || ch > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(ch - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

std::string_view BaseName(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string CheckpointPath(const std::string& dir, uint64_t wal_segment) {
  std::string digits = N(wal_segment);
  std::string name = std::string(kNamePrefix) + std::string(kNameDigits - digits.size(), '0') +
                     digits + std::string(kNameSuffix);
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

Result<std::vector<CheckpointFileInfo>> ListCheckpoints(FileSystem& fs, const std::string& dir) {
  Result<std::vector<std::string>> names = fs.ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<CheckpointFileInfo> out;
  for (const std::string& name : *names) {
    std::optional<uint64_t> segment = ParseCheckpointName(name);
    if (!segment) continue;
    CheckpointFileInfo info;
    info.wal_segment = *segment;
    info.path = CheckpointPath(dir, *segment);
    Result<uint64_t> size = fs.FileSize(info.path);
    if (!size.ok()) return size.status();
    info.bytes = *size;
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.wal_segment < b.wal_segment; });
  return out;
}

Result<CheckpointWriteReport> WriteCheckpoint(FileSystem& fs, const std::string& dir,
                                              uint64_t wal_segment, const Engine& engine) {
  const auto start = std::chrono::steady_clock::now();
  CheckpointWriteReport report;
  report.path = CheckpointPath(dir, wal_segment);
  const std::string tmp = report.path + ".tmp";
  auto failed = [&](const Status& s) {
    return Status::IoError("writing checkpoint " + report.path + ": " + s.message());
  };

  Result<std::unique_ptr<WritableFile>> opened = fs.NewWritableFile(tmp);
  if (!opened.ok()) {
    (void)fs.Remove(tmp);  // it may have been created before the failure
    return failed(opened.status());
  }
  std::unique_ptr<WritableFile> file = std::move(*opened);

  // Everything up to the rename; on failure the temp file is removed.
  auto write_all = [&]() -> Status {
    BufferedRecordWriter out(*file);
    std::string payload;
    const auto created_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    PutU32(payload, kCheckpointFormatVersion);
    PutU32(payload, static_cast<uint32_t>(engine.shard_bits()));
    PutU64(payload, wal_segment);
    PutU64(payload, created_ms);
    if (Status s = out.Add(RecordType::kCheckpointHeader, payload); !s.ok()) return s;

    // Tags first: the loader creates them (in creation order) before any
    // shard refers to them.
    const std::vector<TagState> tags = engine.ExportTags();
    size_t i = 0;
    while (i < tags.size()) {
      payload.assign(4, '\0');  // count, patched below
      uint32_t count = 0;
      // At least one tag a record, however big it is.
      while (i < tags.size() && (count == 0 || payload.size() < kTagsRecordBytes)) {
        EncodeTagState(tags[i++], payload);
        ++count;
      }
      for (int b = 0; b < 4; ++b) payload[b] = static_cast<char>(count >> (8 * b));
      if (Status s = out.Add(RecordType::kCheckpointTags, payload); !s.ok()) return s;
    }

    for (uint64_t shard : engine.ShardIds()) {
      // One shard's copy at a time: memory stays O(shard).
      const ShardState state = engine.ExportShard(shard, /*with_index=*/true);
      payload.clear();
      EncodeShardRecord(shard, static_cast<uint32_t>(state.columns.size()), state.known, payload);
      if (Status s = out.Add(RecordType::kCheckpointShard, payload); !s.ok()) return s;
      for (const ColumnState& column : state.columns) {
        payload.clear();
        EncodeColumn(shard, column, payload);
        if (Status s = out.Add(RecordType::kCheckpointColumn, payload); !s.ok()) return s;
      }
      // Only a speed-up for the loader, so an image too big for one record
      // is left out rather than split: the loader then rebuilds the index.
      if (!state.index_image.empty() && state.index_image.size() <= kMaxRecordPayload - 8) {
        payload.clear();
        PutU64(payload, shard);
        payload.append(state.index_image);
        if (Status s = out.Add(kShardIndexType, payload); !s.ok()) return s;
      }
      ++report.shards;
      report.columns += state.columns.size();
    }

    payload.clear();
    PutU64(payload, report.shards);
    PutU64(payload, report.columns);
    PutU64(payload, out.bytes());
    if (Status s = out.Add(RecordType::kCheckpointEnd, payload); !s.ok()) return s;
    if (Status s = out.Flush(); !s.ok()) return s;
    report.bytes = out.bytes();
    if (Status s = file->Sync(); !s.ok()) return s;
    return file->Close();
  };

  if (Status s = write_all(); !s.ok()) {
    file.reset();
    (void)fs.Remove(tmp);
    return failed(s);
  }
  file.reset();
  if (Status s = fs.Rename(tmp, report.path); !s.ok()) {
    (void)fs.Remove(tmp);
    return failed(s);
  }
  if (Status s = fs.SyncDir(dir.empty() ? "." : dir); !s.ok()) {
    // The rename may or may not survive a crash. Removing the file keeps the
    // rule simple: a failed WriteCheckpoint leaves no checkpoint, so the
    // caller keeps the WAL segments it covers.
    (void)fs.Remove(report.path);
    return failed(s);
  }
  report.micros = NowMicros(start);
  return report;
}

Result<CheckpointLoadReport> LoadCheckpoint(FileSystem& fs, const std::string& path,
                                            Engine& engine, int threads) {
  const auto start = std::chrono::steady_clock::now();
  const int shard_bits = engine.shard_bits();
  uint32_t version = 0;  // set from the header before any shard group exists
  Result<std::unique_ptr<SequentialFile>> opened = fs.NewSequentialFile(path);
  if (!opened.ok()) {
    return Status::IoError("checkpoint " + path + ": " + opened.status().message());
  }
  RecordReader reader(std::move(*opened), path);

  // The first failure by offset wins, whichever thread found it.
  std::mutex failure_mu;
  std::optional<Failure> failure;
  auto fail = [&](uint64_t offset, Status status) {
    std::lock_guard lock(failure_mu);
    if (!failure || offset < failure->offset) failure = Failure{offset, std::move(status)};
  };
  auto failed = [&] {
    std::lock_guard lock(failure_mu);
    return failure.has_value();
  };

  auto merge = [&](ShardGroup& group) {
    if (failed()) return;  // the load fails anyway; do not spend time on it
    uint64_t offset = group.shard_record.offset;
    try {
      Result<ShardState> state = DecodeShardGroup(group, shard_bits, version, &offset);
      if (!state.ok()) return fail(offset, ErrorAt(path, offset, state.status().message()));
      offset = group.shard_record.offset;
      if (Status s = engine.MergeShard(*state); !s.ok()) {
        return fail(offset, ErrorAt(path, offset,
                                    "merging shard " + N(group.shard) + ": " + s.ToString()));
      }
    } catch (const std::exception& e) {
      // Roaring reports allocation failures by throwing.
      fail(offset, ErrorAt(path, offset, std::string("decoding shard: ") + e.what()));
    }
  };
  std::optional<MergePool> pool;
  // Each worker decodes and merges whole shards; the engine locks per shard.
  if (threads > 1) pool.emplace(threads, 2 * static_cast<size_t>(threads), merge);
  auto dispatch = [&](ShardGroup&& group) {
    if (pool) {
      pool->Submit(std::move(group));
    } else {
      merge(group);
    }
  };

  enum class Phase { kHeader, kTags, kShards, kEnd } phase = Phase::kHeader;
  std::optional<ShardGroup> group;  // the shard group being read
  std::optional<uint64_t> last_shard;
  uint64_t shards = 0;
  uint64_t columns = 0;
  CheckpointLoadReport report;

  auto read_all = [&]() {
    for (;;) {
      Record rec;
      uint64_t bad_offset = 0;
      Status error;
      const ReadOutcome outcome = reader.Next(&rec, &bad_offset, &error);
      if (outcome == ReadOutcome::kTornTail || outcome == ReadOutcome::kCorrupt) {
        // A checkpoint was complete before it was renamed into place: a torn
        // tail is damage like any other.
        return fail(bad_offset, Status::IoError("checkpoint " + error.message()));
      }
      if (outcome == ReadOutcome::kEnd) {
        if (phase != Phase::kEnd) {
          fail(reader.valid_bytes(),
               ErrorAt(path, reader.valid_bytes(), "the file ends without an end record"));
        }
        return;
      }
      if (failed()) return;  // a worker found damage: stop reading
      auto bad = [&](const std::string& what) { fail(rec.offset, ErrorAt(path, rec.offset, what)); };
      if (phase == Phase::kEnd) return bad("a record follows the end record");
      const auto type = static_cast<RecordType>(rec.type);
      if (rec.type == kShardIndexType && version >= 2) {
        // It follows its shard's columns, and belongs to that group.
        if (!group || group->columns.size() != group->expected_columns ||
            !group->index_image.empty()) {
          return bad("an index record outside its shard's records");
        }
        Reader r(rec.payload);
        uint64_t shard = 0;
        if (!r.U64(&shard) || shard != group->shard || r.remaining() == 0) {
          return bad("a malformed or foreign index record inside shard " + N(group->shard));
        }
        group->index_image.assign(rec.payload.substr(8));
        continue;
      }
      if (rec.type < static_cast<uint8_t>(RecordType::kCheckpointHeader) ||
          rec.type > static_cast<uint8_t>(RecordType::kCheckpointEnd)) {
        if ((rec.type & kSkippableBit) != 0 && phase != Phase::kHeader) {
          continue;  // a later writer's optional extra
        }
        return bad("unknown record type " + N(rec.type));
      }
      if (phase == Phase::kHeader) {
        if (type != RecordType::kCheckpointHeader) return bad("the first record is not a header");
        Reader r(rec.payload);
        uint32_t bits = 0;
        uint64_t segment = 0, created_ms = 0;
        if (rec.payload.size() != kHeaderBytes || !r.U32(&version) || !r.U32(&bits) ||
            !r.U64(&segment) || !r.U64(&created_ms)) {
          return bad("bad header record");
        }
        if (version < 1 || version > kCheckpointFormatVersion) {
          return bad("format version " + N(version) + " is not supported (this build reads " +
                     N(kCheckpointFormatVersion) + ")");
        }
        if (bits != static_cast<uint32_t>(shard_bits)) {
          return fail(rec.offset, Status::IoError("checkpoint " + path +
                                                  " was written with shard_bits " + N(bits) +
                                                  ", the node runs with " + N(shard_bits)));
        }
        // A checkpoint renamed to a later number would make recovery skip
        // WAL segments it does not cover.
        if (std::optional<uint64_t> named = ParseCheckpointName(BaseName(path));
            named && *named != segment) {
          return bad("the header says WAL segment " + N(segment) + ", the file name " +
                     N(*named));
        }
        phase = Phase::kTags;
        continue;
      }
      if (type == RecordType::kCheckpointTags) {
        if (phase != Phase::kTags) return bad("a tags record after the first shard");
        Result<std::vector<TagState>> tags = DecodeTags(rec.payload);
        if (!tags.ok()) return bad(tags.status().message());
        if (Status s = engine.MergeTags(*tags); !s.ok()) return bad("merging tags: " + s.ToString());
        continue;
      }
      if (type == RecordType::kCheckpointColumn) {
        if (!group || group->columns.size() == group->expected_columns) {
          return bad("a column record outside its shard's announced columns");
        }
        Reader r(rec.payload);
        uint64_t shard = 0;
        if (!r.U64(&shard) || shard != group->shard) {
          return bad("a column record of another shard inside shard " + N(group->shard));
        }
        group->columns.push_back({rec.offset, std::string(rec.payload)});
        ++columns;
        continue;
      }
      // Anything else ends the shard group being read.
      if (group) {
        if (group->columns.size() != group->expected_columns) {
          return bad("shard " + N(group->shard) + " announced " + N(group->expected_columns) +
                     " columns, " + N(group->columns.size()) + " follow it");
        }
        dispatch(std::move(*group));
        group.reset();
      }
      if (type == RecordType::kCheckpointShard) {
        phase = Phase::kShards;
        Reader r(rec.payload);
        ShardGroup g;
        if (!r.U64(&g.shard) || !r.U32(&g.expected_columns)) return bad("bad shard record");
        if (last_shard && g.shard <= *last_shard) return bad("shards are not ascending");
        last_shard = g.shard;
        g.shard_record = {rec.offset, std::string(rec.payload)};
        g.columns.reserve(std::min<uint32_t>(g.expected_columns, 1024));
        group = std::move(g);
        ++shards;
        continue;
      }
      if (type == RecordType::kCheckpointEnd) {
        Reader r(rec.payload);
        uint64_t want_shards = 0, want_columns = 0, want_bytes = 0;
        if (rec.payload.size() != kEndBytes || !r.U64(&want_shards) || !r.U64(&want_columns) ||
            !r.U64(&want_bytes)) {
          return bad("bad end record");
        }
        if (want_shards != shards || want_columns != columns || want_bytes != rec.offset) {
          return bad("the end record counts " + N(want_shards) + " shards, " + N(want_columns) +
                     " columns and " + N(want_bytes) + " bytes; the file holds " + N(shards) +
                     ", " + N(columns) + " and " + N(rec.offset));
        }
        phase = Phase::kEnd;
        continue;
      }
      return bad("a header record after the first record");
    }
  };
  read_all();
  if (pool) pool->Finish();
  if (failure) return failure->status;
  report.bytes = reader.valid_bytes();
  report.shards = shards;
  report.columns = columns;
  report.micros = NowMicros(start);
  return report;
}

}  // namespace tagcache::storage
