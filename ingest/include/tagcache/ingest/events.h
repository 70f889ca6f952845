// Real-time tag events as JSON, one object per line (NDJSON), the format of
// `tagctl stream` and of the Kafka connector:
//   {"user": 42, "tag": "apple_fan", "op": "set", "ts": 1732400000000}
// `op` is "set" (the default when absent) or "clear"; `user` is an unsigned
// 64-bit integer; `ts` an integer >= 1 (ms since the epoch by convention).
// Keys may come in any order; unknown keys (any JSON value) are ignored;
// a duplicated known key is an error. Strings may use every JSON escape.
#pragma once

#include <string_view>

#include "tagcache/client/client.h"
#include "tagcache/common/status.h"

namespace tagcache::ingest {

// Decodes one line (surrounding whitespace and a trailing '\r' allowed).
// BAD_REQUEST with a message naming the problem and, where it helps, the
// byte column ("column 17: expected ':'", "missing \"ts\"", "invalid tag
// name 'a b'", "user must be an unsigned 64-bit integer", ...). Never
// throws; never reads past `line`.
Result<client::Event> DecodeEventJson(std::string_view line);

// True for a line with nothing but whitespace (skipped, not an error).
bool IsBlankLine(std::string_view line);

}  // namespace tagcache::ingest
