// Status and Result<T>: how every tagcache module reports errors, as values.
//
// A Status is cheap when OK (no allocation) and carries a domain code plus a
// human-readable message otherwise. The codes map one-to-one onto the wire
// protocol's status enum, so their numbers are part of the protocol: never
// renumber, only append.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tagcache {

enum class StatusCode : uint8_t {
  kOk = 0,
  kBadRequest = 1,          // malformed input: bad tag name, parse error, invalid bitmap...
  kUnknownTag = 2,          // a query names a tag no write ever created
  kStaleSnapshot = 3,       // snapshot older than the base already applied
  kWrongNode = 4,           // (cluster) the node does not own the shard
  kOverloaded = 5,          // a limit (memory, in-flight) refuses the request
  kUnauthorized = 6,
  kUnsupportedVersion = 7,
  kInternal = 8,
  kIncomplete = 9,          // a snapshot commit named shards whose members never arrived
  kIoError = 10,
  kFutureTimestamp = 11,    // a write stamped too far ahead of the node's clock
};

// Stable upper-case name of a code, as the protocol documents it.
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status BadRequest(std::string msg) { return {StatusCode::kBadRequest, std::move(msg)}; }
  static Status UnknownTag(std::string msg) { return {StatusCode::kUnknownTag, std::move(msg)}; }
  static Status StaleSnapshot(std::string msg) {
    return {StatusCode::kStaleSnapshot, std::move(msg)};
  }
  static Status Overloaded(std::string msg) { return {StatusCode::kOverloaded, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }
  static Status Unauthorized(std::string msg) {
    return {StatusCode::kUnauthorized, std::move(msg)};
  }
  static Status Incomplete(std::string msg) { return {StatusCode::kIncomplete, std::move(msg)}; }
  static Status IoError(std::string msg) { return {StatusCode::kIoError, std::move(msg)}; }
  static Status FutureTimestamp(std::string msg) {
    return {StatusCode::kFutureTimestamp, std::move(msg)};
  }

  Status(StatusCode code, std::string msg)
      : rep_(code == StatusCode::kOk ? nullptr
                                     : std::make_shared<const Rep>(Rep{code, std::move(msg)})) {}

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // Empty for OK.
  const std::string& message() const {
    static const std::string kEmpty;
    return rep_ ? rep_->message : kEmpty;
  }
  bool IsBadRequest() const { return code() == StatusCode::kBadRequest; }
  bool IsUnknownTag() const { return code() == StatusCode::kUnknownTag; }
  bool IsStaleSnapshot() const { return code() == StatusCode::kStaleSnapshot; }
  bool IsUnauthorized() const { return code() == StatusCode::kUnauthorized; }
  bool IsIncomplete() const { return code() == StatusCode::kIncomplete; }
  bool IsFutureTimestamp() const { return code() == StatusCode::kFutureTimestamp; }

  // "OK" or "STALE_SNAPSHOT: snapshot of tag x as of 5 is older than ...".
  std::string ToString() const {
    if (ok()) return "OK";
    return std::string(StatusCodeName(code())) + ": " + message();
  }

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;  // null means OK: copying an OK status is free
};

inline std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kBadRequest: return "BAD_REQUEST";
    case StatusCode::kUnknownTag: return "UNKNOWN_TAG";
    case StatusCode::kStaleSnapshot: return "STALE_SNAPSHOT";
    case StatusCode::kWrongNode: return "WRONG_NODE";
    case StatusCode::kOverloaded: return "OVERLOADED";
    case StatusCode::kUnauthorized: return "UNAUTHORIZED";
    case StatusCode::kUnsupportedVersion: return "UNSUPPORTED_VERSION";
    case StatusCode::kInternal: return "INTERNAL";
    case StatusCode::kIncomplete: return "INCOMPLETE";
    case StatusCode::kIoError: return "IO_ERROR";
    case StatusCode::kFutureTimestamp: return "FUTURE_TIMESTAMP";
  }
  return "UNKNOWN_STATUS";
}

// Either a value or a non-OK Status. REQUIRES: constructed from a non-OK
// status when it holds no value.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  // OK when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tagcache
