// Writing and reading TagHits, the packed form of a user's tags on the wire:
// names '\n'-terminated in one Data blob, timestamps in a parallel list
// (docs/PROTOCOL.md, "getTags"). Header-only: both sides call these on their
// hot path.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "tagcache/protocol/tagcache.capnp.h"

namespace tagcache::protocol {

// Writes `hits` into `out`: name_of(hit) gives each name (REQUIRES: no '\n'
// in it), ts_of(hit) each winning ts, written only when `with_ts`.
template <typename Range, typename NameOf, typename TsOf>
void WriteTagHits(wire::TagHits::Builder out, const Range& hits, bool with_ts, NameOf name_of,
                  TsOf ts_of) {
  size_t bytes = 0;
  size_t count = 0;
  for (const auto& hit : hits) {
    bytes += std::string_view(name_of(hit)).size() + 1;
    ++count;
  }
  if (bytes > 0) {
    auto names = out.initNames(static_cast<unsigned>(bytes));
    uint8_t* p = names.begin();
    for (const auto& hit : hits) {
      // name_of may return a temporary (say a std::string by value): the
      // reference keeps it alive while the view is used.
      const auto& held = name_of(hit);
      const std::string_view name(held);
      std::memcpy(p, name.data(), name.size());
      p += name.size();
      *p++ = '\n';
    }
  }
  if (with_ts && count > 0) {
    auto ts = out.initTs(static_cast<unsigned>(count));
    unsigned i = 0;
    for (const auto& hit : hits) ts.set(i++, ts_of(hit));
  }
}

// Calls fn(std::string_view name, uint64_t ts) for each name in order and
// returns how many there were. Lenient by design: empty names are skipped, a
// missing final '\n' is tolerated, and the k-th name gets the k-th ts, or 0
// where the list is shorter (it is empty unless timestamps were asked for).
// The views point into the message.
template <typename Fn>
size_t ForEachTagHit(wire::TagHits::Reader in, Fn&& fn) {
  const capnp::Data::Reader names = in.getNames();
  const auto ts = in.getTs();
  const size_t ts_count = ts.size();
  size_t count = 0;
  for (const uint8_t* p = names.begin(); p < names.end();) {
    const uint8_t* end = static_cast<const uint8_t*>(std::memchr(p, '\n', names.end() - p));
    if (end == nullptr) end = names.end();
    if (end > p) {
      fn(std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(end - p)),
         count < ts_count ? ts[static_cast<unsigned>(count)] : uint64_t{0});
      ++count;
    }
    p = end + 1;
  }
  return count;
}

}  // namespace tagcache::protocol
