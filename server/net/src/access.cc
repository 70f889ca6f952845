#include "access.h"

#include <string>

#include "request_stats.h"

namespace tagcache::net {

using security::Role;
using wire::Request;

std::optional<Role> RequiredRole(Request::Which which) {
  switch (which) {
    case Request::HELLO:
    case Request::PING:
    case Request::GET_CLUSTER_MAP:
      return std::nullopt;
    case Request::GET_TAGS:
    case Request::HAS_TAGS:
    case Request::GET_TAGS_BATCH:
    case Request::COUNT:
    case Request::TOP_TAGS:
    case Request::STATS:
      return Role::kRead;
    // Who is in an audience is the privacy-sensitive answer; a shard export
    // is every membership of a shard.
    case Request::AUDIENCE:
    case Request::AUDIENCE_BITMAPS:
    case Request::EXPORT_SHARD:
      return Role::kExport;
    // A merged state is a batch of writes.
    case Request::APPLY_EVENTS:
    case Request::LOAD_SNAPSHOT:
    case Request::COMMIT_SNAPSHOT:
    case Request::MERGE_SHARD:
      return Role::kWrite;
    case Request::CHECKPOINT:
    case Request::SET_CLUSTER_MAP:
    case Request::SHARD_DIGESTS:
    case Request::LIST_SHARDS:
      return Role::kAdmin;
  }
  return std::nullopt;
}

Status CheckAccess(Request::Which which, security::RoleSet granted) {
  const std::optional<Role> needed = RequiredRole(which);
  if (!needed || granted.Has(*needed)) return Status::Ok();
  return Status::Unauthorized(std::string(KindName(static_cast<size_t>(which))) +
                              " requires the '" + std::string(security::RoleName(*needed)) +
                              "' role; this connection's token has " +
                              security::DescribeRoles(granted));
}

void Authenticator::Install(security::AuthTable table) {
  auto shared = std::make_shared<const security::AuthTable>(std::move(table));
  {
    std::lock_guard lock(mu_);
    table_ = std::move(shared);
  }
  enabled_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

security::RoleSet Authenticator::Lookup(const security::TokenHash& hash) const {
  std::shared_ptr<const security::AuthTable> table;
  {
    std::lock_guard lock(mu_);
    table = table_;
  }
  if (!table) return {};
  return table->LookupHash(hash).Effective();
}

}  // namespace tagcache::net
