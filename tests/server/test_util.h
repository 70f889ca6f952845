// Small helpers shared by the engine tests: status assertions, event builders,
// an engine with a fixed clock, and a point-lookup view that is easy to compare.
// Nothing here computes an expected result: references live in the tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <roaring/roaring.hh>
#include <string>
#include <vector>

#include "tagcache/common/status.h"
#include "tagcache/server/engine.h"

namespace tagcache::test {

// A fixed "now" far above every small test timestamp, so the future-timestamp
// guard never interferes unless a test means it to.
inline constexpr Timestamp kNow = 1'700'000'000'000;

inline Status StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}

#define TC_ASSERT_OK(expr)                                                    \
  do {                                                                        \
    const ::tagcache::Status tc_status_ = ::tagcache::test::StatusOf(expr);   \
    ASSERT_TRUE(tc_status_.ok()) << #expr << " -> " << tc_status_.ToString(); \
  } while (0)

#define TC_EXPECT_OK(expr)                                                    \
  do {                                                                        \
    const ::tagcache::Status tc_status_ = ::tagcache::test::StatusOf(expr);   \
    EXPECT_TRUE(tc_status_.ok()) << #expr << " -> " << tc_status_.ToString(); \
  } while (0)

// Engine options for tests: a fixed clock so FUTURE_TIMESTAMP is deterministic.
inline EngineOptions TestOptions(int shard_bits = 20, int query_threads = 0) {
  EngineOptions options;
  options.shard_bits = shard_bits;
  options.query_threads = query_threads;
  options.clock = [] { return kNow; };
  return options;
}

inline Event SetEv(UserId user, std::string tag, Timestamp ts) {
  return Event{user, std::move(tag), TagOp::kSet, ts};
}
inline Event ClearEv(UserId user, std::string tag, Timestamp ts) {
  return Event{user, std::move(tag), TagOp::kClear, ts};
}

// The user id at `offset` of `shard` for an engine with `shard_bits`.
constexpr UserId UserAt(uint64_t shard, uint64_t offset, int shard_bits) {
  return shard << shard_bits | offset;
}

inline Roaring OffsetsOf(std::initializer_list<uint32_t> offsets) {
  Roaring r;
  for (uint32_t o : offsets) r.add(o);
  return r;
}

// tag -> winning ts, for comparing point lookups regardless of tag order.
using TagMap = std::map<std::string, Timestamp>;

// GetTags(user, with_ts) as a map; flags duplicate tags, which no order could justify.
inline TagMap TagsOf(const Engine& engine, UserId user) {
  TagMap out;
  for (const TagHit& hit : engine.GetTags(user, /*with_ts=*/true)) {
    bool inserted = out.emplace(std::string(hit.tag), hit.ts).second;
    EXPECT_TRUE(inserted) << "user " << user << " lists tag " << hit.tag << " twice";
  }
  return out;
}

// All users matching `expr`, by paging Audience; an error becomes a test failure and {}.
inline std::vector<UserId> AllAudience(const Engine& engine, const std::string& expr,
                                       size_t limit = 100'000) {
  std::vector<UserId> out;
  UserId cursor = 0;
  for (int pages = 0; pages < 1'000'000; ++pages) {
    Result<AudiencePage> page = engine.Audience(expr, cursor, limit);
    if (!page.ok()) {
      ADD_FAILURE() << "Audience(" << expr << ") -> " << page.status().ToString();
      return {};
    }
    out.insert(out.end(), page->users.begin(), page->users.end());
    if (!page->next_cursor) return out;
    cursor = *page->next_cursor;
  }
  ADD_FAILURE() << "Audience(" << expr << ") never finished paging";
  return out;
}

}  // namespace tagcache::test
