// WAL segments as files (wal.h, docs/WAL.md): naming, the segment header,
// appending with cut-back on failure, and replay with torn-tail and
// corruption handling.
#include "tagcache/storage/wal.h"

#include <algorithm>
#include <filesystem>
#include <cinttypes>
#include <cstdio>
#include <optional>
#include <span>
#include <utility>

namespace tagcache::storage {
namespace {

constexpr std::string_view kPrefix = "wal-";
constexpr std::string_view kSuffix = ".log";
constexpr size_t kNumberDigits = 20;
constexpr size_t kHeaderPayloadBytes = 12;  // u32 version, u64 segment number

std::optional<uint64_t> ParseSegmentName(std::string_view name) {
  if (name.size() != kPrefix.size() + kNumberDigits + kSuffix.size() ||
      !name.starts_with(kPrefix) || !name.ends_with(kSuffix)) {
    return std::nullopt;
  }
  uint64_t n = 0;
  for (char c : name.substr(kPrefix.size(), kNumberDigits)) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - digit) / 10) return std::nullopt;
    n = n * 10 + digit;
  }
  return n;
}

std::string HeaderPayload(uint64_t number) {
  std::string p(kHeaderPayloadBytes, '\0');
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((kWalFormatVersion >> (8 * i)) & 0xff);
  for (int i = 0; i < 8; ++i) p[4 + i] = static_cast<char>((number >> (8 * i)) & 0xff);
  return p;
}

uint64_t GetLE(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= uint64_t{static_cast<unsigned char>(in[at + static_cast<size_t>(i)])} << (8 * i);
  }
  return v;
}

// Write-record kinds this build replays (kind = the type's low 7 bits).
bool IsKnownWriteRecord(uint8_t type) {
  switch (static_cast<RecordType>(type & ~kSkippableBit)) {
    case RecordType::kEvents:
    case RecordType::kSnapshotPart:
    case RecordType::kSnapshotCommit:
    case RecordType::kMergeShard:
      return true;
    default:
      return false;
  }
}

std::string At(const std::string& path, uint64_t offset) {
  return path + ": offset " + std::to_string(offset) + ": ";
}

// The reader's message without its "<path>: offset <n>: " prefix, which
// WalDamage carries in fields of its own.
std::string Bare(const Status& error, const std::string& path, uint64_t offset) {
  const std::string prefix = At(path, offset);
  std::string_view msg = error.message();
  if (msg.starts_with(prefix)) msg.remove_prefix(prefix.size());
  return std::string(msg);
}

std::string Hex(uint8_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v);
  return buf;
}

}  // namespace

std::string WalSegmentPath(const std::string& dir, uint64_t number) {
  char digits[kNumberDigits + 1];
  std::snprintf(digits, sizeof digits, "%020" PRIu64, number);
  std::string path = dir;
  if (!path.empty() && path.back() != '/') path.push_back('/');
  path.append(kPrefix);
  path.append(digits);
  path.append(kSuffix);
  return path;
}

Result<std::vector<WalSegmentInfo>> ListWalSegments(FileSystem& fs, const std::string& dir) {
  Result<std::vector<std::string>> names = fs.ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<WalSegmentInfo> segments;
  for (const std::string& name : *names) {
    std::optional<uint64_t> number = ParseSegmentName(name);
    if (!number) continue;
    WalSegmentInfo info;
    info.number = *number;
    info.path = WalSegmentPath(dir, *number);
    Result<uint64_t> bytes = fs.FileSize(info.path);
    if (!bytes.ok()) return bytes.status();
    info.bytes = *bytes;
    segments.push_back(std::move(info));
  }
  std::sort(segments.begin(), segments.end(),
            [](const WalSegmentInfo& a, const WalSegmentInfo& b) { return a.number < b.number; });
  return segments;
}

// ---- Writing ------------------------------------------------------------------

Result<std::unique_ptr<WalSegmentWriter>> WalSegmentWriter::Create(FileSystem& fs,
                                                                   const std::string& dir,
                                                                   uint64_t number) {
  std::unique_ptr<WalSegmentWriter> w(new WalSegmentWriter());
  w->path_ = WalSegmentPath(dir, number);
  w->number_ = number;
  Result<std::unique_ptr<WritableFile>> file = fs.NewWritableFile(w->path_);
  if (!file.ok()) return file.status();
  w->file_ = std::move(*file);
  std::string header;
  AppendRecord(RecordType::kSegmentHeader, HeaderPayload(number), header);
  Status st = w->file_->Append(header);
  if (st.ok()) st = w->file_->Sync();
  // The segment's name must survive a crash before any record in it counts.
  if (st.ok()) st = fs.SyncDir(dir.empty() ? "." : dir);
  if (!st.ok()) {
    // Leave nothing behind: a half-made segment would only be reported as a
    // torn tail at the next start. Best effort, the creation failed anyway.
    (void)w->file_->Close();
    (void)fs.Remove(w->path_);
    return st;
  }
  return w;
}

WalSegmentWriter::~WalSegmentWriter() = default;

uint64_t WalSegmentWriter::number() const { return number_; }

const std::string& WalSegmentWriter::path() const { return path_; }

uint64_t WalSegmentWriter::size() const { return file_ ? file_->size() : 0; }

Status WalSegmentWriter::Append(std::string_view framed) {
  if (broken_) {
    return Status::IoError("WAL segment " + path_ + " is unusable after an earlier failure");
  }
  const uint64_t before = file_->size();
  Status st = file_->Append(framed);
  if (st.ok()) return st;
  // A record cut in the middle would read as corruption once later records
  // follow it: cut back to the boundary before this call.
  Status cut = file_->Truncate(before);
  if (!cut.ok()) {
    broken_ = true;
    return Status::IoError(st.message() + "; then cannot cut " + path_ +
                           " back to its last record: " + cut.message());
  }
  return st;
}

Status WalSegmentWriter::Sync() {
  if (broken_) {
    return Status::IoError("WAL segment " + path_ + " is unusable after an earlier failure");
  }
  Status st = file_->Sync();
  // After a failed fsync the kernel may have dropped the dirty pages and
  // marked them clean (PostgreSQL's "fsyncgate"): a retry could succeed
  // without the data being on disk, so the segment is never trusted again.
  if (!st.ok()) broken_ = true;
  return st;
}

bool WalSegmentWriter::broken() const { return broken_; }

Status WalSegmentWriter::Close() { return file_ ? file_->Close() : Status::Ok(); }

// ---- Replay -------------------------------------------------------------------

namespace {

struct SegmentOutcome {
  bool stop = false;  // corruption under kKeepValidPrefix: replay nothing more
};

class Replayer {
 public:
  Replayer(FileSystem& fs, WalRecoveryMode mode, bool repair,
           const std::function<Status(const Record&)>& fn)
      : fs_(fs), mode_(mode), repair_(repair), fn_(fn) {}

  // Replays one segment; `later` are the segments after it (for messages).
  Result<SegmentOutcome> Segment(const WalSegmentInfo& seg,
                                 std::span<const WalSegmentInfo> later) {
    ++report_.segments;
    Result<std::unique_ptr<SequentialFile>> file = fs_.NewSequentialFile(seg.path);
    if (!file.ok()) return file.status();
    RecordReader reader(std::move(*file), seg.path);
    Record rec;
    uint64_t bad_offset = 0;
    Status error;

    // The header. An empty file or a torn header is a segment whose creation
    // a crash interrupted: nothing in it was ever acknowledged.
    ReadOutcome outcome = reader.Next(&rec, &bad_offset, &error);
    switch (outcome) {
      case ReadOutcome::kEnd:
        return Torn(seg, 0, "empty segment (no header)");
      case ReadOutcome::kTornTail:
        return Torn(seg, bad_offset, Bare(error, seg.path, bad_offset));
      case ReadOutcome::kCorrupt:
        return Corrupt(seg, bad_offset, Bare(error, seg.path, bad_offset), later);
      case ReadOutcome::kRecord:
        break;
    }
    if (rec.type != static_cast<uint8_t>(RecordType::kSegmentHeader)) {
      return Corrupt(seg, rec.offset, "the first record is not a segment header", later);
    }
    // The version comes first so a newer build's header, whatever its
    // size, is refused as a version rather than cut as damage.
    if (rec.payload.size() < 4) {
      return Corrupt(seg, rec.offset,
                     "segment header of " + std::to_string(rec.payload.size()) + " bytes", later);
    }
    const uint32_t version = static_cast<uint32_t>(GetLE(rec.payload, 0, 4));
    if (version != kWalFormatVersion) {
      return Status(StatusCode::kUnsupportedVersion,
                    At(seg.path, rec.offset) + "WAL format version " + std::to_string(version) +
                        " is not supported (this build reads " +
                        std::to_string(kWalFormatVersion) + ")");
    }
    if (rec.payload.size() != kHeaderPayloadBytes) {
      return Corrupt(seg, rec.offset,
                     "segment header of " + std::to_string(rec.payload.size()) + " bytes", later);
    }
    const uint64_t number = GetLE(rec.payload, 4, 8);
    if (number != seg.number) {
      return Corrupt(seg, rec.offset, "the header says segment " + std::to_string(number), later);
    }

    for (;;) {
      outcome = reader.Next(&rec, &bad_offset, &error);
      switch (outcome) {
        case ReadOutcome::kEnd:
          return SegmentOutcome{};
        case ReadOutcome::kTornTail:
          return Torn(seg, bad_offset, Bare(error, seg.path, bad_offset));
        case ReadOutcome::kCorrupt:
          return Corrupt(seg, bad_offset, Bare(error, seg.path, bad_offset), later);
        case ReadOutcome::kRecord:
          break;
      }
      if (IsKnownWriteRecord(rec.type)) {
        Status st = fn_(rec);
        if (!st.ok()) return st;
        ++report_.records;
        report_.bytes += kRecordHeaderBytes + rec.payload.size();
      } else if ((rec.type & kSkippableBit) != 0) {
        ++report_.skipped_unknown;
      } else {
        return Corrupt(seg, rec.offset,
                       "record type " + Hex(rec.type) + " is unknown and not marked skippable",
                       later);
      }
    }
  }

  WalReplayReport& report() { return report_; }

 private:
  // What is dropped from `seg` at `offset`; with repair, cut off the file too.
  Result<WalDamage> Drop(const WalSegmentInfo& seg, uint64_t offset, std::string reason) {
    WalDamage damage;
    damage.path = seg.path;
    damage.offset = offset;
    damage.dropped_bytes = seg.bytes > offset ? seg.bytes - offset : 0;
    damage.reason = std::move(reason);
    if (repair_ && damage.dropped_bytes > 0) {
      Status st = fs_.TruncateFile(seg.path, offset);
      if (!st.ok()) return st;
    }
    return damage;
  }

  Result<SegmentOutcome> Torn(const WalSegmentInfo& seg, uint64_t offset, std::string reason) {
    Result<WalDamage> damage = Drop(seg, offset, std::move(reason));
    if (!damage.ok()) return damage.status();
    report_.torn_tails.push_back(std::move(*damage));
    return SegmentOutcome{};
  }

  Result<SegmentOutcome> Corrupt(const WalSegmentInfo& seg, uint64_t offset, std::string reason,
                                 std::span<const WalSegmentInfo> later) {
    if (mode_ == WalRecoveryMode::kStrict) {
      return Status::IoError("WAL corruption in " + seg.path + " at offset " +
                             std::to_string(offset) + ": " + reason +
                             "; start with --wal-recovery=keep-valid-prefix to keep the records "
                             "before it");
    }
    if (!later.empty()) {
      uint64_t bytes = 0;
      for (const WalSegmentInfo& s : later) bytes += s.bytes;
      reason += "; not replayed: " + std::to_string(later.size()) + " later segment(s), " +
                std::to_string(later.front().number) + " to " +
                std::to_string(later.back().number) + " (" + std::to_string(bytes) + " bytes), " +
                (repair_ ? "set aside as *.log.dropped" : "left in place");
      // Keeping the prefix means dropping the rest for good: left in place,
      // the later segments would replay on the next ordinary start and
      // bring back writes this start chose to lose. Renamed, not deleted,
      // so an operator can still inspect them; the listing ignores them.
      if (repair_) {
        for (const WalSegmentInfo& s : later) {
          Status st = fs_.Rename(s.path, s.path + ".dropped");
          if (!st.ok()) return st;
        }
        Status st = fs_.SyncDir(std::filesystem::path(seg.path).parent_path().string());
        if (!st.ok()) return st;
      }
    }
    Result<WalDamage> damage = Drop(seg, offset, std::move(reason));
    if (!damage.ok()) return damage.status();
    report_.corruption = std::move(*damage);
    return SegmentOutcome{.stop = true};
  }

  FileSystem& fs_;
  WalRecoveryMode mode_;
  bool repair_;
  const std::function<Status(const Record&)>& fn_;
  WalReplayReport report_;
};

}  // namespace

Result<WalReplayReport> ReplayWal(FileSystem& fs, const std::string& dir, uint64_t from_segment,
                                  WalRecoveryMode mode, bool repair,
                                  const std::function<Status(const Record&)>& fn) {
  Result<std::vector<WalSegmentInfo>> all = ListWalSegments(fs, dir);
  if (!all.ok()) return all.status();
  std::vector<WalSegmentInfo> segments;
  for (WalSegmentInfo& s : *all) {
    if (s.number >= from_segment) segments.push_back(std::move(s));
  }
  Replayer replayer(fs, mode, repair, fn);
  for (size_t i = 0; i < segments.size(); ++i) {
    Result<SegmentOutcome> r =
        replayer.Segment(segments[i], std::span<const WalSegmentInfo>(segments).subspan(i + 1));
    if (!r.ok()) return r.status();
    if (r->stop) break;
  }
  return std::move(replayer.report());
}

Result<uint64_t> RemoveWalSegmentsBelow(FileSystem& fs, const std::string& dir, uint64_t below) {
  Result<std::vector<WalSegmentInfo>> segments = ListWalSegments(fs, dir);
  if (!segments.ok()) return segments.status();
  uint64_t removed = 0;
  for (const WalSegmentInfo& s : *segments) {
    if (s.number >= below) break;
    Status st = fs.Remove(s.path);
    if (!st.ok()) return st;
    ++removed;
  }
  return removed;
}

}  // namespace tagcache::storage
