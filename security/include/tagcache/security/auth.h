// Authentication: the roles a token may hold and the table of accepted
// tokens a node loads from its --auth-file (docs/SECURITY.md). The file keeps
// SHA-256 hashes, never tokens: whoever reads it cannot log in with it.
//
// Format, one entry a line: `ROLE:SHA256HEX` (64 hex digits, either case);
// `#` starts a comment line; blank lines and surrounding spaces are ignored.
// A token listed on several lines holds every role named.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tagcache/common/status.h"

namespace tagcache::security {

// One role. The values are bits of a RoleSet.
enum class Role : uint8_t {
  kRead = 1,    // lookups, counts, top tags, stats
  kExport = 2,  // audience id lists and bitmaps, shard exports (implies read)
  kWrite = 4,   // events, snapshot loads, shard merges
  kAdmin = 8,   // cluster map, checkpoint, digests (implies every other role)
};

// A set of roles, as held by a token or required by a request.
class RoleSet {
 public:
  constexpr RoleSet() = default;
  constexpr RoleSet(Role r)
      : bits_(static_cast<uint8_t>(r)) {}  // NOLINT(google-explicit-constructor)
  static constexpr RoleSet All() { return FromBits(0x0f); }
  static constexpr RoleSet FromBits(uint8_t bits) {
    RoleSet s;
    s.bits_ = bits & 0x0f;
    return s;
  }
  constexpr uint8_t bits() const { return bits_; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr bool Has(Role r) const { return (bits_ & static_cast<uint8_t>(r)) != 0; }
  constexpr RoleSet& Add(RoleSet other) {
    bits_ |= other.bits_;
    return *this;
  }
  // The roles held including those implied: admin implies all, export read.
  constexpr RoleSet Effective() const {
    if (Has(Role::kAdmin)) return All();
    RoleSet s = *this;
    if (Has(Role::kExport)) s.Add(Role::kRead);
    return s;
  }
  constexpr bool operator==(const RoleSet&) const = default;

 private:
  uint8_t bits_ = 0;
};

// "read", "export", "write", "admin".
std::string_view RoleName(Role role);
// The roles of `set` by name, comma-separated ("read,write"); "none" when empty.
std::string DescribeRoles(RoleSet set);
// BAD_REQUEST naming `name` when it is not one of the four role names.
Result<Role> ParseRole(std::string_view name);

using TokenHash = std::array<uint8_t, 32>;

// SHA-256 of `token`.
TokenHash HashToken(std::string_view token);
// Lower-case hex of HashToken(token): what an auth file line carries.
std::string HashTokenHex(std::string_view token);

// The tokens a node accepts and their roles. Immutable once built; safe to
// share between threads.
class AuthTable {
 public:
  // Parses auth file text. `source` names it in errors. BAD_REQUEST naming
  // `source:line` for an unknown role, a malformed hash or a line without
  // ':'; BAD_REQUEST when no entry at all is given (an empty file would lock
  // everyone out, which is never what the operator meant).
  static Result<AuthTable> Parse(std::string_view text, const std::string& source);
  // Reads and parses the file at `path`; IO_ERROR naming it when unreadable.
  static Result<AuthTable> Load(const std::string& path);

  // The roles of `token` (as written, before hashing); empty when unknown.
  // Compares the hash against every entry in constant time per entry, so
  // timing does not tell how much of a guess was right.
  RoleSet Lookup(std::string_view token) const { return LookupHash(HashToken(token)); }
  RoleSet LookupHash(const TokenHash& hash) const;

  size_t entries() const { return entries_.size(); }

 private:
  struct Entry {
    TokenHash hash;
    RoleSet roles;
  };
  std::vector<Entry> entries_;
};

}  // namespace tagcache::security
