// One write of any kind the engine takes, as the randomized tests generate
// them, and a readable description for failure messages.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "tagcache/server/engine.h"

namespace tagcache::test {

struct Write {
  enum class Kind { kEvent, kFullSnapshot, kPart, kCommit };
  Kind kind = Kind::kEvent;
  Event event;                    // kEvent
  std::string tag;                // snapshots and commits
  Timestamp ts = 0;               // snapshots and commits
  std::vector<UserId> users;      // kFullSnapshot
  uint64_t shard = 0;             // kPart
  std::vector<uint32_t> offsets;  // kPart
  std::vector<uint64_t> shards;   // kCommit: the shards the load sent parts for
};

inline std::string Describe(const Write& w) {
  std::ostringstream out;
  switch (w.kind) {
    case Write::Kind::kEvent:
      out << (w.event.op == TagOp::kSet ? "set" : "clear") << "(" << w.event.user << ", "
          << w.event.tag << ", " << w.event.ts << ")";
      break;
    case Write::Kind::kFullSnapshot:
      out << "full(" << w.tag << ", " << w.ts << ", {";
      for (UserId u : w.users) out << " " << u;
      out << " })";
      break;
    case Write::Kind::kPart:
      out << "part(" << w.tag << ", " << w.ts << ", shard " << w.shard << ", {";
      for (uint32_t o : w.offsets) out << " " << o;
      out << " })";
      break;
    case Write::Kind::kCommit:
      out << "commit(" << w.tag << ", " << w.ts << ", shards {";
      for (uint64_t s : w.shards) out << " " << s;
      out << " })";
      break;
  }
  return out.str();
}

}  // namespace tagcache::test
