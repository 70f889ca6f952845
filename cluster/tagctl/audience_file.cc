#include "audience_file.h"

#include <cerrno>
#include <cstring>

namespace tagcache::tagctl {
namespace {

void PutLe(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

Status IoError(const std::string& path, const char* what) {
  return Status::IoError(std::string(what) + " " + path + ": " + std::strerror(errno));
}

}  // namespace

Status WriteAudienceBitmaps(const std::string& path, int shard_bits,
                            const std::vector<client::ShardBitmap>& shards) {
  std::string header(kAudienceFileMagic, sizeof(kAudienceFileMagic));
  PutLe(header, static_cast<uint32_t>(shard_bits), 4);
  PutLe(header, 0, 4);
  PutLe(header, shards.size(), 8);
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return IoError(path, "cannot open");
  bool ok = std::fwrite(header.data(), 1, header.size(), file) == header.size();
  for (const client::ShardBitmap& shard : shards) {
    if (!ok) break;
    std::string record;
    PutLe(record, shard.shard, 8);
    PutLe(record, shard.cardinality, 8);
    PutLe(record, shard.portable.size(), 4);
    ok =
        std::fwrite(record.data(), 1, record.size(), file) == record.size() &&
        std::fwrite(shard.portable.data(), 1, shard.portable.size(), file) == shard.portable.size();
  }
  if (!ok) {
    Status status = IoError(path, "cannot write");
    std::fclose(file);
    return status;
  }
  if (std::fclose(file) != 0) return IoError(path, "cannot write");
  return Status::Ok();
}

IdFileWriter::IdFileWriter(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "w");
  if (file_ == nullptr) status_ = IoError(path, "cannot open");
}

IdFileWriter::~IdFileWriter() {
  if (file_ != nullptr) std::fclose(file_);  // an unclosed writer's errors are moot
}

void IdFileWriter::Append(const std::vector<uint64_t>& ids) {
  if (!status_.ok()) return;
  for (uint64_t id : ids) {
    if (std::fprintf(file_, "%llu\n", static_cast<unsigned long long>(id)) < 0) {
      status_ = IoError(path_, "cannot write");
      return;
    }
  }
}

Status IdFileWriter::Close() {
  if (file_ == nullptr) return status_;
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0 && status_.ok()) status_ = IoError(path_, "cannot write");
  return status_;
}

}  // namespace tagcache::tagctl
