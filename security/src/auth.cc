#include "tagcache/security/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>
#include <sstream>

namespace tagcache::security {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kRead:
      return "read";
    case Role::kExport:
      return "export";
    case Role::kWrite:
      return "write";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::string DescribeRoles(RoleSet set) {
  std::string out;
  for (Role r : {Role::kRead, Role::kExport, Role::kWrite, Role::kAdmin}) {
    if (!set.Has(r)) continue;
    if (!out.empty()) out += ',';
    out += RoleName(r);
  }
  return out.empty() ? "none" : out;
}

Result<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kRead, Role::kExport, Role::kWrite, Role::kAdmin}) {
    if (name == RoleName(r)) return r;
  }
  return Status::BadRequest("unknown role '" + std::string(name.substr(0, 64)) +
                            "' (roles: read, export, write, admin)");
}

TokenHash HashToken(std::string_view token) {
  TokenHash out{};
  unsigned int len = 0;
  // EVP_Digest cannot fail for SHA-256 on in-memory input short of memory
  // exhaustion; a failure leaves an all-zero hash, which no file entry can
  // match by accident (it would have to be listed).
  EVP_Digest(token.data(), token.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::string HashTokenHex(std::string_view token) {
  static constexpr char kHex[] = "0123456789abcdef";
  const TokenHash h = HashToken(token);
  std::string out;
  out.reserve(64);
  for (uint8_t b : h) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Result<AuthTable> AuthTable::Parse(std::string_view text, const std::string& source) {
  AuthTable table;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t nl = text.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = Trim(text.substr(pos, end - pos));
    ++line_no;
    pos = end + 1;
    if (line.empty() || line.front() == '#') {
      if (nl == std::string_view::npos) break;
      continue;
    }
    auto fail = [&](const std::string& why) {
      return Status::BadRequest(source + ":" + std::to_string(line_no) + ": " + why);
    };
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return fail("expected ROLE:SHA256HEX (e.g. read:<64 hex digits>)");
    }
    Result<Role> role = ParseRole(Trim(line.substr(0, colon)));
    if (!role.ok()) return fail(role.status().message());
    const std::string_view hex = Trim(line.substr(colon + 1));
    if (hex.size() != 64) {
      return fail("the token hash must be 64 hex digits (SHA-256), got " +
                  std::to_string(hex.size()) +
                  " characters; make one with `tagctl auth hash-token`");
    }
    Entry entry{};
    for (size_t i = 0; i < 32; ++i) {
      const int hi = HexValue(hex[2 * i]);
      const int lo = HexValue(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) return fail("the token hash has a character that is not a hex digit");
      entry.hash[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    entry.roles = *role;
    bool merged = false;
    for (Entry& e : table.entries_) {
      if (e.hash == entry.hash) {
        e.roles.Add(entry.roles);
        merged = true;
      }
    }
    if (!merged) table.entries_.push_back(entry);
    if (nl == std::string_view::npos) break;
  }
  if (table.entries_.empty()) {
    return Status::BadRequest(source + ": no ROLE:SHA256HEX entry: every client would be refused");
  }
  return table;
}

Result<AuthTable> AuthTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot read auth file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IoError("cannot read auth file " + path);
  return Parse(text.str(), path);
}

RoleSet AuthTable::LookupHash(const TokenHash& hash) const {
  // Every entry is compared, whatever matched before: the time taken
  // depends on the table's size only.
  uint8_t bits = 0;
  for (const Entry& e : entries_) {
    const uint8_t match = CRYPTO_memcmp(e.hash.data(), hash.data(), hash.size()) == 0 ? 0xff : 0;
    bits |= static_cast<uint8_t>(e.roles.bits() & match);
  }
  return RoleSet::FromBits(bits);
}

}  // namespace tagcache::security
