// The one rule for what a tag name may be, shared by the engine (which
// refuses bad names) and by the ingestion parsers (which report them with a
// file and line before anything is sent).
#pragma once

#include <string_view>

namespace tagcache {

inline constexpr size_t kMaxTagNameBytes = 128;

// True when `name` is a valid tag name: 1-128 bytes of [A-Za-z0-9_.:-].
inline bool IsValidTagName(std::string_view name) {
  if (name.empty() || name.size() > kMaxTagNameBytes) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace tagcache
