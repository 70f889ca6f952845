// tagcache-demo: loads the real Roaring datasets (each file one tag's
// audience) into an engine and prints a few audience counts with timings.
// Usage: tagcache-demo DIR...   (directories of comma-separated id files)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tagcache/server/engine.h"

namespace {

std::vector<tagcache::UserId> ReadIds(const std::filesystem::path& path, std::string* error) {
  std::ifstream in(path);
  std::vector<tagcache::UserId> ids;
  std::string token;
  size_t line = 1;
  while (std::getline(in, token, ',')) {
    size_t start = token.find_first_not_of(" \t\r\n");
    if (start == std::string::npos) continue;
    size_t end = token.find_last_not_of(" \t\r\n");
    std::string value = token.substr(start, end - start + 1);
    char* stop = nullptr;
    unsigned long long id = std::strtoull(value.c_str(), &stop, 10);
    if (value.empty() || *stop != '\0') {
      *error = path.string() + ":" + std::to_string(line) + ": not a user id: '" + value + "'";
      return {};
    }
    ids.push_back(id);
    line += static_cast<size_t>(std::count(token.begin(), token.end(), '\n'));
  }
  return ids;
}

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATASET_DIR...\n", argv[0]);
    return 2;
  }
  for (int a = 1; a < argc; ++a) {
    std::filesystem::path dir(argv[a]);
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".txt") files.push_back(entry.path());
    }
    if (ec || files.empty()) {
      std::fprintf(stderr, "%s: no .txt bitmap files (%s)\n", dir.c_str(), ec.message().c_str());
      return 1;
    }
    std::sort(files.begin(), files.end());
    tagcache::Engine engine;
    auto start = std::chrono::steady_clock::now();
    std::vector<std::string> tags;
    std::vector<size_t> sizes;
    uint64_t values = 0;
    for (const auto& file : files) {
      std::string error;
      std::vector<tagcache::UserId> ids = ReadIds(file, &error);
      if (!error.empty()) {
        std::fprintf(stderr, "%s\n", error.c_str());
        return 1;
      }
      std::string tag = file.stem().string();  // e.g. census1881.csv17
      tagcache::Status s = engine.ApplyFullSnapshot(tag, 1, ids);
      if (!s.ok()) {
        std::fprintf(stderr, "loading %s: %s\n", file.c_str(), s.ToString().c_str());
        return 1;
      }
      values += ids.size();
      tags.push_back(tag);
      sizes.push_back(ids.size());
    }
    // Query the largest audiences: the tiny ones make dull counts.
    std::vector<size_t> order(tags.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return sizes[x] > sizes[y]; });
    tagcache::EngineStats stats = engine.Stats();
    std::printf("== %s: %zu tags, %llu memberships, %llu users, loaded in %.1f ms, %llu bytes\n",
                dir.filename().c_str(), tags.size(), static_cast<unsigned long long>(values),
                static_cast<unsigned long long>(stats.known_users), MsSince(start),
                static_cast<unsigned long long>(stats.memory.total()));
    const std::string& t0 = tags[order[0]];
    const std::string& t1 = tags[order[1]];
    const std::string& t2 = tags[order[2]];
    const std::string& t3 = tags[order[3]];
    std::vector<std::string> queries = {
        t0 + " | " + t1, t0 + " & " + t1, "(" + t0 + " | " + t1 + ") - " + t2,
        "!" + t3, "(" + t1 + " | " + t2 + " | " + t3 + ") & !" + t0};
    for (const std::string& q : queries) {
      auto qs = std::chrono::steady_clock::now();
      tagcache::Result<uint64_t> n = engine.Count(q);
      double ms = MsSince(qs);
      if (!n.ok()) {
        std::fprintf(stderr, "count(%s): %s\n", q.c_str(), n.status().ToString().c_str());
        return 1;
      }
      std::printf("  count(%s) = %llu  [%.3f ms]\n", q.c_str(),
                  static_cast<unsigned long long>(*n), ms);
    }
    auto top = engine.TopTags(t0 + " | " + t1, 3);
    if (top.ok()) {
      std::printf("  top_tags(%s | %s, 3):", t0.c_str(), t1.c_str());
      for (const auto& tc : *top) {
        std::printf(" %.*s=%llu", static_cast<int>(tc.tag.size()), tc.tag.data(),
                    static_cast<unsigned long long>(tc.count));
      }
      std::printf("\n");
    }
  }
  return 0;
}
