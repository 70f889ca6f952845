// How the connector reads a Kafka message: its value holds one event as JSON
// or several, one per line (NDJSON, the format of ingest/events.h). Blank
// lines are skipped; an undecodable line is reported, never fatal, so one
// bad line costs only itself (docs/KAFKA.md "Poison messages").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tagcache/client/client.h"

namespace tagcache::kafka {

struct DecodedMessage {
  std::vector<client::Event> events;  // the decodable lines, in order
  // One per undecodable line: the decoder's message, prefixed with
  // "line N: " (1-based) when the value holds more than one non-blank line.
  std::vector<std::string> errors;
};

// Splits `value` at '\n' and decodes every non-blank line. An empty value
// (or a tombstone) yields neither events nor errors. Never throws.
DecodedMessage DecodeMessage(std::string_view value);

}  // namespace tagcache::kafka
