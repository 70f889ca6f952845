// Writes the seed corpus (fuzz/corpus/<target>/) with the project's real
// writers, so that every seed is a valid input the fuzzer then mutates:
// request streams of every kind, WAL segments and checkpoints as the node
// writes them, portable bitmaps, cluster map files, state transfers, CSV,
// TSV, id lists, Roaring files and NDJSON events. Run by hand after a format
// change (fuzz/README.md) and commit the result; keep it small.
//
//   fuzz_seed_gen DIR     (DIR is usually fuzz/corpus)
#include <capnp/message.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <roaring/roaring64map.hh>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "memory_file_system.h"
#include "tagcache/cluster/map_codec.h"
#include "tagcache/protocol/bitmap.h"
#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/frame.h"
#include "tagcache/server/engine.h"
#include "tagcache/storage/checkpoint.h"
#include "tagcache/storage/record_io.h"
#include "tagcache/storage/state_transfer.h"
#include "tagcache/storage/wal.h"
#include "tagcache/storage/wal_records.h"

namespace tagcache::fuzz {
namespace {

namespace fs = std::filesystem;

class SeedWriter {
 public:
  explicit SeedWriter(fs::path root) : root_(std::move(root)) {}
  void Write(const std::string& target, const std::string& name, std::string_view bytes) {
    const fs::path dir = root_ / target;
    fs::create_directories(dir);
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
      std::exit(1);
    }
    ++count_;
  }
  int count() const { return count_; }

 private:
  fs::path root_;
  int count_ = 0;
};

std::string Bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

// ---- frame_dispatch -----------------------------------------------------------

using RequestFill = std::function<void(wire::Request::Builder)>;

void AppendRequest(uint64_t id, const RequestFill& fill, std::vector<uint8_t>& out) {
  capnp::MallocMessageBuilder mb;
  auto req = mb.initRoot<wire::Request>();
  req.setId(id);
  fill(req);
  protocol::AppendFrame(mb, out);
}

void AppendHello(std::vector<uint8_t>& out) {
  AppendRequest(1, [](wire::Request::Builder r) {
    auto hello = r.initHello();
    hello.setVersion(protocol::kProtocolVersion);
    hello.setClient("seed");
  }, out);
}

// Some state for the queries to find: events, one committed snapshot.
void AppendWrites(std::vector<uint8_t>& out) {
  AppendRequest(2, [](wire::Request::Builder r) {
    auto events = r.initApplyEvents().initEvents(4);
    const char* tags[] = {"apple_fan", "runner", "apple_fan", "in_debt"};
    for (unsigned i = 0; i < 4; ++i) {
      events[i].setUser(i * 300 + 7);
      events[i].setTag(tags[i]);
      events[i].setOp(i == 2 ? wire::TagOp::CLEAR : wire::TagOp::SET);
      events[i].setTs(1'700'000'000'000 + i);
    }
  }, out);
  Roaring members;
  for (uint32_t v : {1u, 5u, 9u, 200u}) members.add(v);
  const std::string bitmap = protocol::WritePortableBitmap(members);
  AppendRequest(3, [&](wire::Request::Builder r) {
    auto load = r.initLoadSnapshot();
    load.setTag("runner");
    load.setTs(1'700'000'000'500);
    load.setShard(1);
    load.setBitmap(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bitmap.data()), bitmap.size()));
  }, out);
  AppendRequest(4, [](wire::Request::Builder r) {
    auto commit = r.initCommitSnapshot();
    commit.setTag("runner");
    commit.setTs(1'700'000'000'500);
    commit.initShards(1).set(0, 1);
  }, out);
}

void FrameSeeds(SeedWriter& w) {
  const std::vector<std::pair<std::string, RequestFill>> kinds = {
      {"ping", [](wire::Request::Builder r) { r.setPing(); }},
      {"get_tags", [](wire::Request::Builder r) {
         auto g = r.initGetTags();
         g.setUser(7);
         g.setWithTs(true);
       }},
      {"has_tags", [](wire::Request::Builder r) {
         auto h = r.initHasTags();
         h.setUser(307);
         auto tags = h.initTags(2);
         tags.set(0, "runner");
         tags.set(1, "nope");
       }},
      {"get_tags_batch", [](wire::Request::Builder r) {
         auto b = r.initGetTagsBatch();
         auto users = b.initUsers(3);
         users.set(0, 7);
         users.set(1, 307);
         users.set(2, 1u << 20);
       }},
      {"count", [](wire::Request::Builder r) { r.initCount().setExpr("runner | (apple_fan & !in_debt)"); }},
      {"audience", [](wire::Request::Builder r) {
         auto a = r.initAudience();
         a.setExpr("runner - in_debt");
         a.setLimit(2);
       }},
      {"audience_bitmaps", [](wire::Request::Builder r) { r.initAudienceBitmaps().setExpr("runner"); }},
      {"top_tags", [](wire::Request::Builder r) {
         auto t = r.initTopTags();
         t.setExpr("runner | apple_fan");
         t.setK(3);
       }},
      {"stats", [](wire::Request::Builder r) { r.setStats(); }},
      {"checkpoint", [](wire::Request::Builder r) { r.setCheckpoint(); }},
      {"get_cluster_map", [](wire::Request::Builder r) { r.setGetClusterMap(); }},
      {"set_cluster_map", [](wire::Request::Builder r) {
         auto s = r.initSetClusterMap();
         cluster::ClusterMap map;
         map.epoch = 3;
         map.shard_bits = 8;
         map.replicas = 1;
         map.vnodes = 4;
         map.nodes = {{"fuzz-node", "127.0.0.1:1"}, {"b", "127.0.0.1:2"}};
         cluster::WriteMap(map, s.initMap());
         s.setNodeId("fuzz-node");
       }},
      {"shard_digests", [](wire::Request::Builder r) { r.setShardDigests(); }},
      {"export_shard", [](wire::Request::Builder r) { r.initExportShard().setShard(1); }},
      {"list_shards", [](wire::Request::Builder r) { r.setListShards(); }},
  };
  for (const auto& [name, fill] : kinds) {
    std::vector<uint8_t> out;
    AppendHello(out);
    AppendWrites(out);
    AppendRequest(10, fill, out);
    w.Write("frame_dispatch", name, Bytes(out));
  }
  // A merge of a real exported state.
  Engine engine(SmallEngineOptions());
  std::vector<Event> events = {{7, "runner", TagOp::kSet, 1'700'000'000'000},
                               {300, "apple_fan", TagOp::kSet, 1'700'000'000'001}};
  (void)engine.ApplyEvents(events);
  const std::string state = storage::EncodeShardTransfer(engine.ExportTags(), engine.ExportShard(1));
  std::vector<uint8_t> out;
  AppendHello(out);
  AppendRequest(10, [&](wire::Request::Builder r) {
    r.initMergeShard().setState(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(state.data()), state.size()));
  }, out);
  w.Write("frame_dispatch", "merge_shard", Bytes(out));
  out.clear();
  AppendHello(out);
  w.Write("frame_dispatch", "hello_only", Bytes(out));
}

// ---- files --------------------------------------------------------------------

// Re-expresses a file of records as the chunk input of AppendChunksAsRecords
// (records of 64 KiB and more cannot be expressed and are left out).
std::string AsChunks(MemoryFileSystem& mfs, const std::string& path, bool skip_first) {
  auto file = mfs.NewSequentialFile(path);
  storage::RecordReader reader(std::move(*file), path);
  std::string chunks;
  storage::Record record;
  uint64_t bad = 0;
  Status error;
  bool first = true;
  while (reader.Next(&record, &bad, &error) == storage::ReadOutcome::kRecord) {
    if (std::exchange(first, false) && skip_first) continue;
    if (record.payload.size() >= 65536) continue;
    chunks.push_back(static_cast<char>(record.type));
    chunks.push_back(static_cast<char>(record.payload.size() & 0xff));
    chunks.push_back(static_cast<char>(record.payload.size() >> 8));
    chunks.append(record.payload);
  }
  return chunks;
}

std::string ReadAll(MemoryFileSystem& mfs, const std::string& path) {
  auto file = mfs.NewSequentialFile(path);
  std::string out;
  char buf[4096];
  for (;;) {
    Result<size_t> n = (*file)->Read(buf, sizeof buf);
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

void StorageSeeds(SeedWriter& w) {
  Engine engine(SmallEngineOptions());
  std::vector<Event> events = {{7, "runner", TagOp::kSet, 1'700'000'000'000},
                               {300, "apple_fan", TagOp::kSet, 1'700'000'000'001},
                               {301, "apple_fan", TagOp::kClear, 1'700'000'000'002}};
  (void)engine.ApplyEvents(events);
  Roaring members;
  for (uint32_t v : {3u, 4u, 250u}) members.add(v);
  (void)engine.ApplySnapshot("runner", 1'700'000'000'100, 2, members);
  (void)engine.CommitSnapshot("runner", 1'700'000'000'100, std::vector<uint64_t>{2});

  // WAL segment with one record of each kind.
  MemoryFileSystem mfs;
  (void)mfs.CreateDirs("/d");
  auto writer = storage::WalSegmentWriter::Create(mfs, "/d", 1);
  std::string records;
  storage::AppendRecord(storage::RecordType::kEvents, storage::EncodeEvents(events), records);
  storage::AppendRecord(storage::RecordType::kSnapshotPart,
                        storage::EncodeSnapshotPart("runner", 1'700'000'000'100, 2,
                                                    protocol::WritePortableBitmap(members)),
                        records);
  storage::AppendRecord(storage::RecordType::kSnapshotCommit,
                        storage::EncodeSnapshotCommit("runner", 1'700'000'000'100,
                                                      std::vector<uint64_t>{2}),
                        records);
  const std::string state = storage::EncodeShardTransfer(engine.ExportTags(), engine.ExportShard(1));
  storage::AppendRecord(storage::RecordType::kMergeShard, state, records);
  (void)(*writer)->Append(records);
  (void)(*writer)->Close();
  const std::string wal_path = storage::WalSegmentPath("/d", 1);
  const std::string wal = ReadAll(mfs, wal_path);
  w.Write("wal_recovery", "segment_strict", std::string(1, '\0') + wal);
  w.Write("wal_recovery", "segment_prefix", std::string(1, '\2') + wal);
  w.Write("wal_recovery", "segment_torn", std::string(1, '\0') + wal.substr(0, wal.size() - 5));
  w.Write("wal_recovery", "chunks", std::string(1, '\1') + AsChunks(mfs, wal_path, true));

  // Checkpoint of the engine.
  auto report = storage::WriteCheckpoint(mfs, "/d", 1, engine);
  const std::string ckpt_path = report->path;
  // The raw seed leaves out the records of 64 KiB and more (the shards'
  // index images, optional) as the chunk form does: a large seed would make
  // libFuzzer mutate inputs of that size.
  const std::string ckpt_chunks = AsChunks(mfs, ckpt_path, false);
  std::string ckpt_small;
  AppendChunksAsRecords(ckpt_chunks, ckpt_small);
  w.Write("checkpoint", "engine", std::string(1, '\0') + ckpt_small);
  w.Write("checkpoint", "chunks", std::string(1, '\1') + ckpt_chunks);

  // State transfers: raw (checksum included) and for the fixing mode.
  w.Write("state_transfer", "shard1", std::string(1, '\0') + state);
  w.Write("state_transfer", "shard1_fix", std::string(1, '\1') + state.substr(8));
  const std::string state2 = storage::EncodeShardTransfer(engine.ExportTags(), engine.ExportShard(2));
  w.Write("state_transfer", "shard2_fix", std::string(1, '\1') + state2.substr(8));

  // Bitmaps: an array, a bitmap container, runs, two keys.
  Roaring array;
  for (uint32_t v : {1u, 2u, 3u, 1000u}) array.add(v);
  Roaring dense;
  for (uint32_t v = 0; v < 60000; v += 2) dense.add(v);
  Roaring runs;
  runs.addRange(100, 5000);
  runs.addRange(70000, 70100);
  runs.runOptimize();
  w.Write("bitmap", "array", std::string(1, '\x08') + protocol::WritePortableBitmap(array));
  w.Write("bitmap", "dense", std::string(1, '\x10') + protocol::WritePortableBitmap(dense));
  w.Write("bitmap", "runs", std::string(1, '\x18') + protocol::WritePortableBitmap(runs));
  w.Write("bitmap", "empty", std::string(1, '\0') + protocol::WritePortableBitmap(Roaring()));

  // Cluster map files.
  cluster::MapFile file;
  file.map.epoch = 5;
  file.map.shard_bits = 8;
  file.map.replicas = 2;
  file.map.vnodes = 8;
  file.map.nodes = {{"a", "127.0.0.1:7001"}, {"b", "127.0.0.1:7002"}, {"c", "[::1]:7003"}};
  file.map.moving = true;
  file.map.from_nodes = {{"a", "127.0.0.1:7001"}, {"b", "127.0.0.1:7002"}};
  file.node_id = "b";
  const std::string map_file = cluster::EncodeMapFile(file);
  w.Write("map_codec", "moving", std::string(1, '\0') + map_file);
  w.Write("map_codec", "moving_fix", std::string(1, '\1') + map_file.substr(15));
}

// ---- text inputs ------------------------------------------------------------

std::string Gzip(std::string_view text) {
  z_stream z{};
  deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void TextSeeds(SeedWriter& w) {
  // The first byte picks the format: 0 csv, 1 tsv, 2 ids, 3 roaring, 4 roaring32,
  // 5 roaring64, 6 auto (snapshot_input_fuzz.cc).
  const std::string csv = "user_id,tag\n1,apple_fan\n\"2\", \"runner\"\n300,in_debt\r\nbad,line\n";
  w.Write("snapshot_input", "csv", '\0' + csv);
  w.Write("snapshot_input", "csv_gz", '\0' + Gzip(csv));
  w.Write("snapshot_input", "tsv", "\1" "1\tapple_fan\n2\trunner\n");
  w.Write("snapshot_input", "ids", "\2" "# ids\n1\n2\n\n4294967296\n");
  Roaring r32;
  r32.addRange(10, 20);
  r32.add(1u << 20);
  w.Write("snapshot_input", "roaring32", '\3' + protocol::WritePortableBitmap(r32));
  Roaring64Map r64;
  r64.add(uint64_t{5});
  r64.add(uint64_t{1} << 33);
  std::string b64(r64.getSizeInBytes(true), '\0');
  r64.write(b64.data(), true);
  w.Write("snapshot_input", "roaring64", '\5' + b64);
  w.Write("snapshot_input", "auto", '\6' + protocol::WritePortableBitmap(r32));

  w.Write("event_json", "set", R"({"user": 42, "tag": "apple_fan", "op": "set", "ts": 1732400000000})");
  w.Write("event_json", "clear", R"({"ts":5,"op":"clear","tag":"a.b:c-d_e","user":18446744073709551615})");
  w.Write("event_json", "escapes", R"( {"user": 1, "tag": "r\u0075nner", "ts": 2, "extra": [1, {"x": null}, "\n"]} )");

  w.Write("expr", "simple", "runner");
  w.Write("expr", "ops", "(a & b) | !c - d");
  w.Write("expr", "nested", "!(!(a | (b & (c - d))))");
}

}  // namespace
}  // namespace tagcache::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  tagcache::fuzz::SeedWriter w(argv[1]);
  tagcache::fuzz::FrameSeeds(w);
  tagcache::fuzz::StorageSeeds(w);
  tagcache::fuzz::TextSeeds(w);
  std::printf("wrote %d seeds under %s\n", w.count(), argv[1]);
  return 0;
}

