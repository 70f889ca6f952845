// Queries over the real Roaring datasets (shared/datasets/real-roaring): skewed
// tag sizes and clustered ids that synthetic data does not give. Each file of
// a zip is one tag (its stem) loaded as a full snapshot, into an engine with
// the default 2^20 users a shard and one with 2^16; Count and Audience of
// hand-written and random expressions must equal the set-algebra reference.
// The directory comes from TAGCACHE_DATASETS (set by ctest).

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "server/set_reference.h"
#include "server/test_util.h"
#include "tagcache/server/engine.h"

namespace tagcache::test {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "tagcache-real-data-XXXXXX").string();
    if (mkdtemp(templ.data()) != nullptr) path_ = templ;
  }
  ~TempDir() {
    std::error_code ignored;  // best effort: a leftover temp dir must not fail the test
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Tag names allow [A-Za-z0-9_.:-] only; anything else in a file stem becomes '_'.
std::string SanitizeTagName(std::string name) {
  for (char& ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == ':' || ch == '-';
    if (!ok) ch = '_';
  }
  if (name.size() > 128) name.resize(128);
  return name;
}

struct Dataset {
  std::map<std::string, UserSet> tags;
  UserSet universe;  // every loaded user: the known users, the universe of '!'
};

// Unzips `zip_name` from $TAGCACHE_DATASETS and parses every .txt file in it.
void LoadDataset(const std::string& zip_name, Dataset* out) {
  const char* dir = std::getenv("TAGCACHE_DATASETS");
  ASSERT_NE(dir, nullptr) << "TAGCACHE_DATASETS is not set: it must name the directory holding "
                             "the real-roaring zips (ctest sets it to ../shared/datasets/"
                             "real-roaring beside the source tree)";
  const fs::path zip = fs::path(dir) / zip_name;
  ASSERT_TRUE(fs::is_regular_file(zip))
      << "dataset missing: " << zip << " (TAGCACHE_DATASETS=" << dir << ")";
  TempDir tmp;
  ASSERT_FALSE(tmp.path().empty()) << "cannot create a temporary directory";
  const std::string cmd = "unzip -q -o '" + zip.string() + "' -d '" + tmp.path().string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "failed: " << cmd;

  std::vector<UserId> all;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(tmp.path())) {
    if (!entry.is_regular_file() || entry.path().extension() != ".txt") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    const std::string text = buf.str();
    std::vector<UserId> users;
    const char* p = text.data();
    const char* end = p + text.size();
    while (p < end) {
      if (*p < '0' || *p > '9') {  // separators: ',', blanks, line ends
        ++p;
        continue;
      }
      UserId v = 0;
      auto [next, ec] = std::from_chars(p, end, v);
      ASSERT_EQ(ec, std::errc()) << entry.path();
      users.push_back(v);
      p = next;
    }
    const std::string tag = SanitizeTagName(entry.path().stem().string());
    ASSERT_TRUE(IsValidTagName(tag)) << tag;
    ASSERT_TRUE(out->tags.emplace(tag, MakeSet(users)).second) << "duplicate tag " << tag;
    all.insert(all.end(), users.begin(), users.end());
  }
  ASSERT_FALSE(out->tags.empty()) << "no .txt files in " << zip;
  out->universe = MakeSet(std::move(all));
}

// Hand-written shapes over the largest tags, plus random expressions over a
// mix of large and random tags, so results are neither all-empty nor trivial.
std::vector<RefExprPtr> Expressions(const Dataset& d, uint64_t seed) {
  std::vector<std::string> by_size;
  for (const auto& [name, members] : d.tags) by_size.push_back(name);
  std::stable_sort(by_size.begin(), by_size.end(), [&](const auto& a, const auto& b) {
    return d.tags.at(a).size() > d.tags.at(b).size();
  });
  std::vector<RefExprPtr> out;
  RefExprPtr t0 = Tag(by_size[0]), t1 = Tag(by_size[1 % by_size.size()]);
  RefExprPtr t2 = Tag(by_size[2 % by_size.size()]), t3 = Tag(by_size[3 % by_size.size()]);
  out.push_back(And(t0, t1));
  out.push_back(Or(t0, AndNot(t1, t2)));
  out.push_back(Not(t0));
  out.push_back(And(Not(Or(t0, t1)), Or(t2, t3)));
  out.push_back(AndNot(Or(Or(t0, t1), t2), And(t0, t3)));
  out.push_back(And(And(t0, t1), Not(t2)));

  std::mt19937_64 rng(seed);
  std::vector<std::string> pool(by_size.begin(),
                                by_size.begin() + std::min<size_t>(12, by_size.size()));
  for (int i = 0; i < 12; ++i) pool.push_back(by_size[rng() % by_size.size()]);
  for (int i = 0; i < 30; ++i) out.push_back(RandomExpr(rng, pool, 3));
  return out;
}

void CheckDataset(const std::string& zip_name, uint64_t seed) {
  Dataset d;
  ASSERT_NO_FATAL_FAILURE(LoadDataset(zip_name, &d));
  // Each zip holds 200 bitmaps (the datasets' README): fewer means a bad unzip or parse.
  ASSERT_EQ(d.tags.size(), 200u) << zip_name;
  const std::vector<RefExprPtr> exprs = Expressions(d, seed);
  ASSERT_GE(exprs.size(), 20u);
  // Guard against a degenerate test where nearly every reference answer is empty.
  size_t non_empty = 0;
  for (const RefExprPtr& e : exprs) non_empty += !Evaluate(*e, d.tags, d.universe).empty();
  EXPECT_GE(non_empty, exprs.size() / 2) << zip_name;

  for (int shard_bits : {20, 16}) {
    SCOPED_TRACE(zip_name + " with shard_bits " + std::to_string(shard_bits));
    Engine engine(TestOptions(shard_bits));
    for (const auto& [tag, users] : d.tags) {
      ASSERT_TRUE(engine.ApplyFullSnapshot(tag, 100, users).ok()) << tag;
    }
    for (const auto& [tag, users] : d.tags) {
      Result<uint64_t> n = engine.Count(tag);
      ASSERT_TRUE(n.ok()) << tag << " -> " << n.status().ToString();
      EXPECT_EQ(*n, users.size()) << tag;
    }
    for (size_t i = 0; i < exprs.size(); ++i) {
      const std::string text = Render(*exprs[i]);
      const UserSet want = Evaluate(*exprs[i], d.tags, d.universe);
      Result<uint64_t> n = engine.Count(text);
      ASSERT_TRUE(n.ok()) << text << " -> " << n.status().ToString();
      EXPECT_EQ(*n, want.size()) << text;
      if (i < 6 || i % 8 == 0) {
        EXPECT_EQ(AllAudience(engine, text), want) << text;
      }
    }
  }
}

TEST(RealDataTest, Census1881QueriesMatchReference) { CheckDataset("census1881.zip", 1881); }

TEST(RealDataTest, WikileaksNoquotesQueriesMatchReference) {
  CheckDataset("wikileaks-noquotes.zip", 2010);
}

// Ids up to 3.7e7 spread over hundreds of 2^16 shards, most of them sparse.
TEST(RealDataTest, UsCensus2000QueriesMatchReference) { CheckDataset("uscensus2000.zip", 2000); }

}  // namespace
}  // namespace tagcache::test
