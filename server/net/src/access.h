// Access control of the node: the one table saying which role each request
// kind needs, and the node's current table of accepted tokens (reloaded on
// SIGHUP). docs/SECURITY.md describes the roles; this table is their
// normative definition.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include "tagcache/common/status.h"
#include "tagcache/protocol/tagcache.capnp.h"
#include "tagcache/security/auth.h"

namespace tagcache::net {

// The role a request kind needs; nullopt: any authenticated connection may
// send it (hello, ping, getClusterMap: a client must be able to route).
// An unknown kind needs nothing: it is answered BAD_REQUEST unexecuted.
std::optional<security::Role> RequiredRole(wire::Request::Which which);

// OK when `granted` (effective roles) may send `which`; otherwise
// UNAUTHORIZED naming the request kind, the missing role and what the
// connection's token holds. Cheap: a switch and a bit test.
Status CheckAccess(wire::Request::Which which, security::RoleSet granted);

// The node's accepted tokens. Disabled (no auth file): every connection gets
// every role. Thread-safe: lookups happen at hello time, and again on a
// connection's next request after a reload (the generation changed).
class Authenticator {
 public:
  Authenticator() = default;
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Enables authentication with `table`, or replaces the table (a reload);
  // bumps the generation so connections re-check their tokens.
  void Install(security::AuthTable table);

  bool enabled() const { return enabled_.load(std::memory_order_acquire); }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // The effective roles of a token hash; empty when unknown (or disabled).
  security::RoleSet Lookup(const security::TokenHash& hash) const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const security::AuthTable> table_;  // guarded by mu_
  std::atomic<bool> enabled_{false};
  std::atomic<uint64_t> generation_{0};
};

}  // namespace tagcache::net
