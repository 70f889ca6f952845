// The node's metrics in the Prometheus text exposition format 0.0.4: what
// GET /metrics answers (metrics_server.h serves it). Every name, type and
// label is listed in docs/OPERATIONS.md "Metrics"; a rename breaks
// dashboards, so treat them like the wire protocol: add, never rename.
#pragma once

#include <string>

#include "service.h"

namespace tagcache::net {

// Collects and formats everything the service, its engine, its log and its
// memory guard report. Reads per-loop counters without locks; Engine::Stats
// walks the shards (milliseconds on a large node), which is why this runs
// on the metrics thread, never on an event loop. Thread-safe.
std::string RenderMetrics(Service& service);

}  // namespace tagcache::net
