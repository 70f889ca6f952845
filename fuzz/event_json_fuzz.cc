// Fuzz target: the NDJSON event decoder (ingest/include/tagcache/ingest/
// events.h) that `tagctl stream` and the Kafka connector run on every line
// they receive. An accepted event must carry a ts >= 1 and a tag the engine
// accepts (the decoder promises both).
#include <cstdlib>
#include <span>
#include <string_view>

#include "fuzz_support.h"
#include "tagcache/ingest/events.h"
#include "tagcache/server/engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tagcache;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  (void)ingest::IsBlankLine(line);
  Result<client::Event> event = ingest::DecodeEventJson(line);
  if (!event.ok()) return 0;
  if (event->ts < 1) std::abort();
  Engine engine(fuzz::SmallEngineOptions());
  Event e;
  e.user = event->user;
  e.tag = event->tag;
  e.op = event->op == client::TagOp::kClear ? TagOp::kClear : TagOp::kSet;
  e.ts = event->ts;
  Result<ApplyEventsResult> applied = engine.ApplyEvents(std::span<const Event>(&e, 1));
  // FUTURE_TIMESTAMP is a fair refusal; a bad tag name is not.
  if (!applied.ok() && applied.status().code() == StatusCode::kBadRequest) std::abort();
  return 0;
}
