// tagbench's pieces without a server: the histogram, op mixes, the dataset
// generator (determinism, popularity, timestamps, files the ingest parsers
// accept, the Redis image equal to the merge rules' result), the workload
// generator, the Redis command mapping and the report.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/temp_dir.h"
#include "tagbench/dataset.h"
#include "tagbench/driver.h"
#include "tagbench/histogram.h"
#include "tagbench/op_mix.h"
#include "tagbench/redis_plan.h"
#include "tagbench/redis_target.h"
#include "tagbench/report.h"
#include "tagbench/workload.h"
#include "tagcache/ingest/events.h"
#include "tagcache/ingest/snapshot_input.h"
#include "tagcache/ingest/snapshot_set.h"

namespace tagcache::tagbench {
namespace {

using testing::ScopedTempDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- Histogram

TEST(HistogramTest, PercentilesOfAUniformDistributionWithinOnePercent) {
  Histogram h;
  for (uint64_t v = 1; v <= 100000; ++v) h.Record(v * 1000);  // 1 us .. 100 ms in ns
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.min(), 1000u);
  EXPECT_EQ(h.max(), 100000000u);
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double want = q * 100000 * 1000;
    EXPECT_NEAR(static_cast<double>(h.Percentile(q)), want, want * 0.01) << q;
  }
  EXPECT_NEAR(h.mean(), 50000.5 * 1000, 1);
}

TEST(HistogramTest, SmallValuesAreExactAndBucketsAreContiguous) {
  for (uint64_t v = 0; v < 128; ++v) EXPECT_EQ(Histogram::BucketOf(v), static_cast<int>(v));
  for (int b = 1; b < Histogram::kBuckets; ++b) {
    ASSERT_EQ(Histogram::BucketLow(b), Histogram::BucketHigh(b - 1) + 1) << b;
    ASSERT_EQ(Histogram::BucketOf(Histogram::BucketLow(b)), b);
    // Every bucket is narrower than 1/128 of its values.
    ASSERT_LE(Histogram::BucketHigh(b) - Histogram::BucketLow(b), Histogram::BucketLow(b) / 128)
        << b;
  }
  EXPECT_EQ(Histogram::BucketOf(UINT64_MAX), Histogram::kBuckets - 1);
}

TEST(HistogramTest, MergeEqualsRecordingEverythingInOne) {
  Histogram a, b, all;
  for (uint64_t v = 1; v < 5000; ++v) {
    const uint64_t x = v * v * 37 % 1000003;
    (v % 3 ? a : b).Record(x);
    all.Record(x);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  for (double q : {0.0, 0.25, 0.5, 0.9, 0.99, 1.0})
    EXPECT_EQ(a.Percentile(q), all.Percentile(q)) << q;
}

TEST(HistogramTest, EmptyAndSingleValue) {
  Histogram h;
  EXPECT_EQ(h.Percentile(0.5), 0u);
  h.Record(123456789);
  EXPECT_EQ(h.Percentile(0.5), 123456789u);  // clamped to [min, max]
  EXPECT_EQ(h.Percentile(0.999), 123456789u);
}

// ---- Op mixes

TEST(OpMixTest, ParsesSharesAndPicksByThem) {
  Result<OpMix> mix = ParseOpMix("get_tags=70, count = 20,top_tags=10");
  ASSERT_TRUE(mix.ok()) << mix.status().ToString();
  EXPECT_DOUBLE_EQ(mix->shares[static_cast<size_t>(OpKind::kGetTags)], 70);
  EXPECT_DOUBLE_EQ(mix->shares[static_cast<size_t>(OpKind::kCount)], 20);
  EXPECT_EQ(mix->Pick(0.0), OpKind::kGetTags);
  EXPECT_EQ(mix->Pick(0.69), OpKind::kGetTags);
  EXPECT_EQ(mix->Pick(0.71), OpKind::kCount);
  EXPECT_EQ(mix->Pick(0.95), OpKind::kTopTags);
  EXPECT_EQ(mix->Pick(0.9999999), OpKind::kTopTags);
}

TEST(OpMixTest, BadMixesNameTheProblem) {
  auto err = [](const char* text) {
    Result<OpMix> m = ParseOpMix(text);
    EXPECT_FALSE(m.ok()) << text;
    return m.ok() ? std::string() : m.status().ToString();
  };

  EXPECT_NE(err("get_tags=50,fetch=50").find("unknown op 'fetch'"), std::string::npos);
  EXPECT_NE(err("get_tags=50,count=40").find("sum to 100, they sum to 90"), std::string::npos);
  EXPECT_NE(err("get_tags").find("has no '='"), std::string::npos);
  EXPECT_NE(err("get_tags=abc").find("number in [0, 100], got 'abc'"), std::string::npos);
  EXPECT_NE(err("get_tags=-5,count=105").find("number in [0, 100]"), std::string::npos);
  EXPECT_NE(err("count=50,count=50").find("given twice"), std::string::npos);
  EXPECT_NE(err("").find("empty op mix"), std::string::npos);
  for (const std::string& s : {err("get_tags=50,fetch=50")})
    EXPECT_EQ(s.rfind("BAD_REQUEST", 0), 0u);
}

TEST(OpMixTest, PresetsResolveAndUnknownPresetsListThem) {
  for (const std::string& name : PresetMixNames()) {
    Result<OpMix> m = ResolveMix(name);
    ASSERT_TRUE(m.ok()) << name;
    EXPECT_EQ(m->name, name);
    double sum = 0;
    for (double s : m->shares) sum += s;
    EXPECT_NEAR(sum, 100, 1e-9);
  }
  Result<OpMix> bad = ResolveMix("lookups");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown workload 'lookups'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("mixed"), std::string::npos);
  EXPECT_TRUE(ResolveMix("update=100").ok());
}

TEST(RunOptionsTest, BadRateConnectionsAndTermsAreRefused) {
  RunOptions o;
  o.mix = *ResolveMix("lookup");
  EXPECT_TRUE(ValidateRun(o).ok());
  o.rate = -1;
  EXPECT_NE(ValidateRun(o).message().find("rate"), std::string::npos);
  o.rate = std::nan("");
  EXPECT_FALSE(ValidateRun(o).ok());
  o.rate = 0;
  o.connections = 0;
  EXPECT_NE(ValidateRun(o).message().find("connections"), std::string::npos);
  o.connections = 1;
  o.depth = 0;
  EXPECT_NE(ValidateRun(o).message().find("depth"), std::string::npos);
  o.depth = 1;
  o.duration_s = 0;
  EXPECT_NE(ValidateRun(o).message().find("duration"), std::string::npos);
  o.duration_s = 1;
  o.workload.min_terms = 4;
  o.workload.max_terms = 2;
  EXPECT_NE(ValidateRun(o).message().find("terms"), std::string::npos);
}

// ---- Dataset generator

DatasetSpec SmallSpec() {
  DatasetSpec s;
  s.users = 20000;
  s.tags = 30;
  s.min_density = 1e-3;
  s.events = 3000;
  s.older_share = 0.3;
  s.seed = 7;
  s.redis = true;
  s.roaring = true;
  return s;
}

TEST(DatasetTest, SameSeedSameFilesOtherSeedOtherFiles) {
  ScopedTempDir a("tagbench"), b("tagbench"), c("tagbench");
  DatasetSpec spec = SmallSpec();
  ASSERT_TRUE(GenerateDataset(spec, a.path()).ok());
  ASSERT_TRUE(GenerateDataset(spec, b.path()).ok());
  spec.seed = 8;
  ASSERT_TRUE(GenerateDataset(spec, c.path()).ok());
  for (const char* f :
       {"snapshot.csv", "events.ndjson", "redis.resp", "dataset.json", "roaring/tag0000.roaring"}) {
    const std::string x = Slurp(a / f);
    ASSERT_FALSE(x.empty()) << f;
    EXPECT_EQ(x, Slurp(b / f)) << f;
    EXPECT_NE(x, Slurp(c / f)) << f;
  }
}

TEST(DatasetTest, PopularityFollowsThePowerLaw) {
  ScopedTempDir dir("tagbench");
  DatasetSpec spec = SmallSpec();
  spec.users = 100000;
  spec.events = 0;
  Result<Manifest> m = GenerateDataset(spec, dir.path());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  // Exponent from 50 % down to 0.1 % over 30 tags.
  EXPECT_NEAR(m->exponent, std::log(0.5 / 1e-3) / std::log(30.0), 1e-9);
  EXPECT_NEAR(m->tags.front().density, 0.5, 1e-12);
  EXPECT_NEAR(m->tags.back().density, 1e-3, 1e-9);
  for (const TagInfo& t : m->tags) {
    const double expected = t.density * 100000;
    // Binomial: within 5 standard deviations.
    EXPECT_NEAR(static_cast<double>(t.snapshot_members), expected, 5 * std::sqrt(expected) + 1)
        << t.name;
  }
  uint64_t sum = 0;
  for (const TagInfo& t : m->tags) sum += t.snapshot_members;
  EXPECT_EQ(sum, m->snapshot_assignments);
}

TEST(DatasetTest, ClusteringMakesNewerUsersDenserInRecentTags) {
  ScopedTempDir dir("tagbench");
  DatasetSpec spec = SmallSpec();
  spec.cluster = true;
  spec.events = 0;
  spec.roaring = false;
  spec.redis = false;
  ASSERT_TRUE(GenerateDataset(spec, dir.path()).ok());
  ingest::SnapshotSet set(20);
  ingest::FileReadResult r = ingest::ReadSnapshotFile(dir / "snapshot.csv", {}, &set);
  ASSERT_EQ(r.error_count, 0u);
  // tag0001 (odd rank: "recent") lives mostly in the upper half of the ids;
  // tag0000 (even) is spread evenly.
  auto upper_share = [&](const std::string& tag) {
    uint64_t upper = 0, all = 0;
    for (const auto& [shard, offsets] : set.Parts(tag)) {
      for (uint32_t off : offsets) {
        const uint64_t user = (shard << 20) | off;
        upper += user >= spec.users / 2;
        ++all;
      }
    }
    return static_cast<double>(upper) / static_cast<double>(all);
  };
  EXPECT_GT(upper_share("tag0001"), 0.7);
  EXPECT_GT(upper_share("tag0007"), 0.65);  // a sparse tag (geometric skips + thinning)
  EXPECT_NEAR(upper_share("tag0000"), 0.5, 0.05);
}

TEST(DatasetTest, FilesAreWhatTagctlLoadAndStreamAccept) {
  ScopedTempDir dir("tagbench");
  const DatasetSpec spec = SmallSpec();
  Result<Manifest> m = GenerateDataset(spec, dir.path());
  ASSERT_TRUE(m.ok());
  // CSV through the ingest parser tagctl load uses.
  ingest::SnapshotSet csv(20);
  ingest::FileReadResult r = ingest::ReadSnapshotFile(dir / "snapshot.csv", {}, &csv);
  EXPECT_EQ(r.error_count, 0u) << (r.errors.empty() ? "" : r.errors[0].ToString());
  EXPECT_EQ(r.pairs, m->snapshot_assignments);
  EXPECT_EQ(csv.Assignments(), m->snapshot_assignments);
  // The Roaring files hold the same members.
  ingest::SnapshotSet roaring(20);
  Result<std::vector<ingest::InputFile>> files = ingest::ExpandInputs({dir / "roaring"});
  ASSERT_TRUE(files.ok());
  for (const auto& f : *files) {
    ingest::FileReadResult fr = ingest::ReadSnapshotFile(f.path, {}, &roaring);
    EXPECT_EQ(fr.error_count, 0u) << f.path;
  }
  EXPECT_EQ(roaring.Assignments(), m->snapshot_assignments);
  EXPECT_EQ(roaring.Tags(), csv.Tags());
  // Every event decodes; some are older than the snapshot, some newer.
  std::ifstream in(dir / "events.ndjson");
  uint64_t older = 0, newer = 0, lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    Result<client::Event> e = ingest::DecodeEventJson(line);
    ASSERT_TRUE(e.ok()) << line << ": " << e.status().ToString();
    (e->ts <= spec.snapshot_ts ? older : newer) += 1;
  }
  EXPECT_EQ(lines, spec.events);
  EXPECT_EQ(older, m->events_older);
  EXPECT_EQ(newer, m->events_newer);
  EXPECT_GT(older, spec.events / 5);
  EXPECT_GT(newer, spec.events / 2);
  // The manifest reads back as written.
  Result<Manifest> back = ReadManifest(dir / "dataset.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->final_assignments, m->final_assignments);
  EXPECT_EQ(back->known_users, m->known_users);
  ASSERT_EQ(back->tags.size(), m->tags.size());
  EXPECT_EQ(back->tags[3].final_members, m->tags[3].final_members);
}

// Replays snapshot.csv and events.ndjson through the merge rules with a
// plain model, and compares with what redis.resp builds.
TEST(DatasetTest, RedisImageIsTheMergedStateOfSnapshotAndEvents) {
  ScopedTempDir dir("tagbench");
  const DatasetSpec spec = SmallSpec();
  Result<Manifest> m = GenerateDataset(spec, dir.path());
  ASSERT_TRUE(m.ok());
  std::map<uint64_t, std::set<std::string>> model;
  std::set<uint64_t> known;
  {
    std::ifstream in(dir / "snapshot.csv");
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      const size_t comma = line.find(',');
      const uint64_t u = std::stoull(line.substr(0, comma));
      model[u].insert(line.substr(comma + 1));
      known.insert(u);
    }
  }
  std::map<std::pair<uint64_t, std::string>, std::pair<uint64_t, bool>> newest;
  {
    std::ifstream in(dir / "events.ndjson");
    for (std::string line; std::getline(in, line);) {
      client::Event e = *ingest::DecodeEventJson(line);
      if (e.op == client::TagOp::kSet) known.insert(e.user);
      if (e.ts <= spec.snapshot_ts) continue;
      const bool set = e.op == client::TagOp::kSet;
      auto [it, fresh] = newest.try_emplace({e.user, e.tag}, e.ts, set);
      if (!fresh && (e.ts > it->second.first || (e.ts == it->second.first && !set)))
        it->second = {e.ts, set};
    }
  }
  for (const auto& [key, win] : newest) {
    if (win.second)
      model[key.first].insert(key.second);
    else
      model[key.first].erase(key.second);
  }
  std::erase_if(model, [](const auto& kv) { return kv.second.empty(); });

  // Decode redis.resp with hiredis' reader.
  const std::string resp = Slurp(dir / "redis.resp");
  redisReader* reader = redisReaderCreate();
  ASSERT_EQ(redisReaderFeed(reader, resp.data(), resp.size()), REDIS_OK);
  std::map<uint64_t, std::set<std::string>> sets;
  std::map<std::string, std::string> bitmaps;
  void* raw = nullptr;
  while (redisReaderGetReply(reader, &raw) == REDIS_OK && raw != nullptr) {
    redisReply* r = static_cast<redisReply*>(raw);
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    const std::string cmd(r->element[0]->str, r->element[0]->len);
    const std::string key(r->element[1]->str, r->element[1]->len);
    if (cmd == "SADD") {
      const uint64_t u = std::stoull(key.substr(5));
      for (size_t i = 2; i < r->elements; ++i)
        sets[u].insert(std::string(r->element[i]->str, r->element[i]->len));
    } else {
      ASSERT_EQ(cmd, "SETRANGE");
      const size_t at = std::stoull(std::string(r->element[2]->str, r->element[2]->len));
      std::string& b = bitmaps[key];
      const std::string value(r->element[3]->str, r->element[3]->len);
      if (b.size() < at + value.size()) b.resize(at + value.size(), '\0');
      b.replace(at, value.size(), value);
    }
    freeReplyObject(r);
  }
  redisReaderFree(reader);
  EXPECT_EQ(sets, model);
  auto bit = [&](const std::string& key, uint64_t u) {
    const std::string& b = bitmaps[key];
    return u / 8 < b.size() && (static_cast<uint8_t>(b[u / 8]) & (0x80u >> (u % 8))) != 0;
  };
  uint64_t mismatches = 0;
  for (uint64_t u = 0; u < spec.users; ++u) {
    const auto it = model.find(u);
    for (const TagInfo& t : m->tags) {
      const bool want = it != model.end() && it->second.count(t.name) > 0;
      mismatches += bit("tag:" + t.name, u) != want;
    }
    mismatches += bit("known", u) != (known.count(u) > 0);
  }
  EXPECT_EQ(mismatches, 0u);
  // Every existing tag's bitmap spans all users (BITOP NOT needs it).
  for (const TagInfo& t : m->tags) {
    if (t.exists) {
      EXPECT_EQ(bitmaps["tag:" + t.name].size(), (spec.users + 7) / 8) << t.name;
    }
  }
  EXPECT_EQ(m->known_users, known.size());
}

// The audience-only image (for 10^8-user runs) is the full image minus
// the per-user sets: the same bitmap commands, in the same order.
TEST(DatasetTest, AudienceOnlyRedisImageKeepsTheBitmapsAndDropsTheSets) {
  auto commands = [](const std::string& resp, size_t* sadds) {
    std::vector<std::vector<std::string>> out;
    redisReader* reader = redisReaderCreate();
    EXPECT_EQ(redisReaderFeed(reader, resp.data(), resp.size()), REDIS_OK);
    void* raw = nullptr;
    while (redisReaderGetReply(reader, &raw) == REDIS_OK && raw != nullptr) {
      redisReply* r = static_cast<redisReply*>(raw);
      std::vector<std::string> cmd;
      for (size_t i = 0; i < r->elements; ++i)
        cmd.emplace_back(r->element[i]->str, r->element[i]->len);
      freeReplyObject(r);
      if (!cmd.empty() && cmd[0] == "SADD") {
        ++*sadds;
      } else {
        out.push_back(std::move(cmd));
      }
    }
    redisReaderFree(reader);
    return out;
  };
  ScopedTempDir full_dir("tagbench-full");
  ScopedTempDir audience_dir("tagbench-audience");
  DatasetSpec spec = SmallSpec();
  ASSERT_TRUE(GenerateDataset(spec, full_dir.path()).ok());
  spec.redis_audience_only = true;
  ASSERT_TRUE(GenerateDataset(spec, audience_dir.path()).ok());
  size_t full_sadds = 0, audience_sadds = 0;
  const auto full = commands(Slurp(full_dir / "redis.resp"), &full_sadds);
  const auto audience = commands(Slurp(audience_dir / "redis.resp"), &audience_sadds);
  EXPECT_GT(full_sadds, 0u);
  EXPECT_EQ(audience_sadds, 0u);
  EXPECT_FALSE(audience.empty());
  EXPECT_EQ(audience, full);
}

TEST(DatasetTest, BadSpecsAreRefusedByName) {
  ScopedTempDir dir("tagbench");
  DatasetSpec s = SmallSpec();
  s.users = 0;
  EXPECT_NE(GenerateDataset(s, dir.path()).status().message().find("users"), std::string::npos);
  s = SmallSpec();
  s.tags = 0;
  EXPECT_NE(ValidateSpec(s).message().find("tags"), std::string::npos);
  s = SmallSpec();
  s.min_density = 0.9;
  EXPECT_NE(ValidateSpec(s).message().find("min density"), std::string::npos);
  s = SmallSpec();
  s.older_share = 1.5;
  EXPECT_NE(ValidateSpec(s).message().find("older share"), std::string::npos);
  EXPECT_FALSE(ReadManifest(dir / "missing.json").ok());
  std::ofstream(dir / "bad.json") << "{\"spec\": {}}";
  Result<Manifest> bad = ReadManifest(dir / "bad.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsBadRequest());
}

// ---- Workload generator

class WorkloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DatasetSpec spec = SmallSpec();
    spec.redis = spec.roaring = false;
    Result<Manifest> m = GenerateDataset(spec, dir_.path());
    ASSERT_TRUE(m.ok());
    manifest_ = *m;
  }
  ScopedTempDir dir_{"tagbench"};
  Manifest manifest_;
};

TEST_F(WorkloadTest, SameSeedSameOps) {
  const OpMix mix = *ResolveMix("mixed");
  OpGenerator a(manifest_, mix, {}, 5), b(manifest_, mix, {}, 5), c(manifest_, mix, {}, 6);
  int differ = 0;
  for (int i = 0; i < 500; ++i) {
    const Op x = a.Next(), y = b.Next(), z = c.Next();
    ASSERT_EQ(x.kind, y.kind);
    ASSERT_EQ(x.users, y.users);
    ASSERT_EQ(x.tags, y.tags);
    ASSERT_EQ(x.expr.text, y.expr.text);
    differ += x.kind != z.kind || x.users != z.users;
  }
  EXPECT_GT(differ, 100);
}

TEST_F(WorkloadTest, ExpressionsHaveTheAskedShapesAndAudienceSizesSpreadWidely) {
  WorkloadOptions o;
  o.min_terms = 2;
  o.max_terms = 3;
  OpGenerator g(manifest_, *ResolveMix("count"), o, 9);
  std::set<std::string> ops_seen;
  for (int i = 0; i < 300; ++i) {
    const Expr e = g.MakeExpr();
    size_t terms = 0;
    for (const auto& grp : e.groups) terms += grp.size();
    ASSERT_GE(terms, 2u);
    ASSERT_LE(terms, 3u);
    EXPECT_EQ(e.text, RenderExpr(e.groups));
    for (const char* op : {" & ", " | ", " - ", "!"}) {
      if (e.text.find(op) != std::string::npos) ops_seen.insert(op);
    }
  }
  EXPECT_EQ(ops_seen.size(), 4u);  // and, or, and-not, not all occur
  // First terms are uniform over tags: the most and least popular both appear.
  OpGenerator one(manifest_, *ResolveMix("count"), {.min_terms = 1, .max_terms = 1}, 3);
  std::set<std::string> firsts;
  for (int i = 0; i < 2000; ++i) firsts.insert(one.MakeExpr().groups[0][0].tag);
  EXPECT_TRUE(firsts.count("tag0000"));
  EXPECT_TRUE(firsts.count("tag0029"));
}

TEST_F(WorkloadTest, AudienceShareAndOpArguments) {
  WorkloadOptions o;
  o.audience_share = 0.1;
  o.batch_size = 8;
  o.has_tags = 4;
  o.top_k = 5;
  OpGenerator g(manifest_, *ResolveMix("top"), o, 1);
  const Op top = g.Make(OpKind::kTopTags);
  ASSERT_EQ(top.expr.groups.size(), 1u);
  const std::string& tag = top.expr.groups[0][0].tag;
  // The tag nearest 10 % of the users.
  double best = 1e18;
  std::string want;
  for (const TagInfo& t : manifest_.tags) {
    const double d = std::fabs(static_cast<double>(t.final_members) - 0.1 * manifest_.spec.users);
    if (t.exists && d < best) best = d, want = t.name;
  }
  EXPECT_EQ(tag, want);
  EXPECT_EQ(top.k, 5u);
  EXPECT_EQ(g.Make(OpKind::kGetTagsBatch).users.size(), 8u);
  const Op has = g.Make(OpKind::kHasTags);
  EXPECT_EQ(has.tags.size(), 4u);
  const Op upd = g.Make(OpKind::kUpdate);
  EXPECT_GT(upd.ts, manifest_.spec.snapshot_ts);
  for (int i = 0; i < 1000; ++i) ASSERT_LT(g.HotUser(), manifest_.spec.users);
}

// ---- Redis mapping

TEST(RedisPlanTest, PointOps) {
  Op op;
  op.kind = OpKind::kGetTags;
  op.users = {42};
  RedisPlan p = PlanRedis(op, {}, 3);
  EXPECT_EQ(p.commands, (std::vector<std::vector<std::string>>{{"SMEMBERS", "user:42"}}));
  op.kind = OpKind::kGetTagsBatch;
  op.users = {1, 2};
  p = PlanRedis(op, {}, 3);
  EXPECT_EQ(p.commands, (std::vector<std::vector<std::string>>{{"SMEMBERS", "user:1"},
                                                               {"SMEMBERS", "user:2"}}));
  EXPECT_EQ(p.answer_replies, (std::vector<size_t>{0, 1}));
  op.kind = OpKind::kHasTags;
  op.users = {7};
  op.tags = {"a", "b"};
  p = PlanRedis(op, {}, 3);
  EXPECT_EQ(p.commands,
            (std::vector<std::vector<std::string>>{{"SMISMEMBER", "user:7", "a", "b"}}));
  op.kind = OpKind::kUpdate;
  op.tags = {"a"};
  op.set = true;
  p = PlanRedis(op, {}, 3);
  EXPECT_EQ(p.commands, (std::vector<std::vector<std::string>>{{"SADD", "user:7", "a"},
                                                               {"SETBIT", "tag:a", "7", "1"},
                                                               {"SETBIT", "known", "7", "1"}}));
  op.set = false;
  p = PlanRedis(op, {}, 3);
  EXPECT_EQ(p.commands, (std::vector<std::vector<std::string>>{{"SREM", "user:7", "a"},
                                                               {"SETBIT", "tag:a", "7", "0"}}));
}

TEST(RedisPlanTest, CountOfEachShape) {
  Op op;
  op.kind = OpKind::kCount;
  op.expr.groups = {{{"a", false}}};
  EXPECT_EQ(PlanRedis(op, {}, 1).commands,
            (std::vector<std::vector<std::string>>{{"BITCOUNT", "tag:a"}}));
  op.expr.groups = {{{"a", false}, {"b", false}, {"c", true}}};
  EXPECT_EQ(PlanRedis(op, {}, 1).commands, (std::vector<std::vector<std::string>>{
                                               {"BITOP", "AND", "tmp:1:g0", "tag:a", "tag:b"},
                                               {"BITOP", "NOT", "tmp:1:n", "tag:c"},
                                               {"BITOP", "AND", "tmp:1:g0", "tmp:1:g0", "tmp:1:n"},
                                               {"BITCOUNT", "tmp:1:g0"}}));
  op.expr.groups = {{{"a", true}}, {{"b", false}}};
  EXPECT_EQ(PlanRedis(op, {}, 1).commands, (std::vector<std::vector<std::string>>{
                                               {"BITOP", "AND", "tmp:1:g0", "known"},
                                               {"BITOP", "NOT", "tmp:1:n", "tag:a"},
                                               {"BITOP", "AND", "tmp:1:g0", "tmp:1:g0", "tmp:1:n"},
                                               {"BITOP", "AND", "tmp:1:g1", "tag:b"},
                                               {"BITOP", "OR", "tmp:1:a", "tmp:1:g0", "tmp:1:g1"},
                                               {"BITCOUNT", "tmp:1:a"}}));
  EXPECT_EQ(RenderExpr(op.expr.groups), "!a | b");
}

TEST(RedisPlanTest, TopTagsIsOneAndPlusCountPerTag) {
  Op op;
  op.kind = OpKind::kTopTags;
  op.expr.groups = {{{"a", false}}};
  RedisPlan p = PlanRedis(op, {"a", "b"}, 2);
  EXPECT_EQ(p.commands,
            (std::vector<std::vector<std::string>>{{"BITOP", "AND", "tmp:2:x", "tag:a", "tag:a"},
                                                   {"BITCOUNT", "tmp:2:x"},
                                                   {"BITOP", "AND", "tmp:2:x", "tag:a", "tag:b"},
                                                   {"BITCOUNT", "tmp:2:x"}}));
  EXPECT_EQ(p.answer_replies, (std::vector<size_t>{1, 3}));
  EXPECT_EQ(p.top_tags, (std::vector<std::string>{"a", "b"}));
  const auto ranked = RankTopTags({{"b", 5}, {"a", 5}, {"c", 9}, {"d", 0}, {"e", 1}}, 3);
  EXPECT_EQ(ranked, (std::vector<std::pair<std::string, uint64_t>>{{"c", 9}, {"a", 5}, {"b", 5}}));
}

TEST(RedisUrlTest, ParsesAndRefuses) {
  Result<RedisAddress> a = ParseRedisUrl("redis://127.0.0.1:6390");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 6390);
  EXPECT_EQ(ParseRedisUrl("redis://localhost")->port, 6379);
  EXPECT_FALSE(ParseRedisUrl("http://x:1").ok());
  EXPECT_NE(ParseRedisUrl("redis://h:99999").status().message().find("port"), std::string::npos);
  EXPECT_NE(ParseRedisUrl("redis://h:12x").status().message().find("port"), std::string::npos);
  EXPECT_FALSE(ParseRedisUrl("redis://:1").ok());
  EXPECT_EQ(InfoField("# Memory\r\nused_memory:12345\r\nused_memory_rss:999\r\n", "used_memory"),
            12345u);
  EXPECT_EQ(InfoField("used_memory_rss:999\r\n", "used_memory"), 0u);
}

// ---- Report

Report SampleReport(const std::string& kind, double ops_per_s, double p99) {
  Report r;
  r.target = kind + " 127.0.0.1:1";
  r.target_kind = kind;
  r.workload = "lookup";
  r.mode = "closed";
  r.connections = 4;
  r.depth = 2;
  r.duration_s = 2;
  r.users = 1000;
  r.tags = 10;
  r.assignments = 5000;
  r.memory_data_bytes = 10000;
  OpReport o;
  o.op = "get_tags";
  o.ops = static_cast<uint64_t>(ops_per_s * 2);
  o.throughput = ops_per_s;
  o.p50_us = p99 / 4;
  o.p99_us = p99;
  r.ops.push_back(o);
  r.total_ops = o.ops;
  r.total_throughput = ops_per_s;
  return r;
}

TEST(ReportTest, JsonRoundTrip) {
  Report r = SampleReport("tagcache", 1000, 80);
  r.ops[0].errors = 3;
  r.ops[0].errors_by_status = {{"IO_ERROR", 2}, {"UNKNOWN_TAG", 1}};
  Result<Report> back = ReportFromJson(ReportToJson(r));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(ReportToJson(*back), ReportToJson(r));
  EXPECT_EQ(back->ops[0].errors_by_status.at("IO_ERROR"), 2u);
  EXPECT_FALSE(ReportFromJson("{").ok());
  Result<Report> missing = ReportFromJson("{\"target\": \"x\"}");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsBadRequest());
}

TEST(ReportTest, CompareShowsRatiosBothWays) {
  const Report a = SampleReport("tagcache", 3000, 100), b = SampleReport("redis", 1000, 400);
  const std::string text = FormatCompare(a, b, false);
  EXPECT_NE(text.find("3.00x"), std::string::npos) << text;  // throughput A/B
  EXPECT_NE(text.find("4.00x"), std::string::npos) << text;  // p99 B/A
  const std::string md = FormatCompare(a, b, true);
  EXPECT_NE(md.find("| lookup | get_tags | 3000 | 1000 | 3.00x |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 4.00x |"), std::string::npos) << md;
}

TEST(ReportTest, CheckNamesOpsWithErrorsOrNoThroughput) {
  Report r = SampleReport("redis", 1000, 10);
  EXPECT_TRUE(CheckReport(r).ok());
  r.ops[0].errors = 2;
  r.ops[0].errors_by_status = {{"ERR", 2}};
  EXPECT_NE(CheckReport(r).message().find("get_tags: 2 errors ERR=2"), std::string::npos);
  r = SampleReport("redis", 0, 10);
  EXPECT_NE(CheckReport(r).message().find("no completed ops"), std::string::npos);
  const std::string table = FormatReport(SampleReport("tagcache", 1000, 80));
  EXPECT_NE(table.find("get_tags"), std::string::npos);
  EXPECT_NE(table.find("bytes per assignment"), std::string::npos);
}

}  // namespace
}  // namespace tagcache::tagbench
