// Named op mixes and the `--mix` parser: which share of the operations each
// OpKind gets. A mix is "kind=percent,kind=percent,..." summing to 100, or
// one of the presets (lookup, lookup-hot, batch, has, count, top, update,
// mixed).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tagbench/op.h"
#include "tagcache/common/status.h"

namespace tagcache::tagbench {

struct OpMix {
  std::string name;  // the preset's name, or the text parsed
  Shares shares{};   // percent by OpKind; sums to 100

  // The kind for a uniform draw u in [0, 1): shares laid out in OpKind order.
  OpKind Pick(double u) const;
};

// Parses "get_tags=80,count=15,top_tags=5" (spaces allowed around items).
// BAD_REQUEST naming what is wrong: an unknown op, a missing '=', a share
// that is not a number in [0, 100], an op given twice, or shares that do not
// sum to 100 (within 0.01).
Result<OpMix> ParseOpMix(std::string_view text);

// A preset by name, or, when `name` contains '=', ParseOpMix(name).
// BAD_REQUEST listing the presets for an unknown name.
Result<OpMix> ResolveMix(std::string_view name);

// The preset names, in a stable order.
std::vector<std::string> PresetMixNames();

}  // namespace tagcache::tagbench
