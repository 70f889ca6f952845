// `tagbench gen`: a deterministic synthetic persona dataset. N users, T tags
// whose popularity follows a power law (tag of rank r has density
// max_density * r^-s, s configurable or derived from min_density), optionally
// clustered by id range (newer, higher ids denser in the "recent" tags), and
// an event stream with timestamps both older and newer than the snapshot.
//
// Outputs, all from one pass over the users and one seed:
//   snapshot.csv     user_id,tag pairs as of snapshot_ts (`tagctl load --ts`)
//   roaring/T.roaring  optional, one portable Roaring bitmap per tag (`tagctl load`)
//   events.ndjson    the events (`tagctl stream`)
//   redis.resp       optional: the state after the events (resolved by the
//                    merge rules, as Redis has none) in Redis' mass-insert
//                    protocol: SADD user:<id> <tags> per user, the per-tag
//                    bitmaps tag:<name> and the known-users bitmap `known`
//                    as SETRANGE chunks (bit i = user i, MSB first)
//   dataset.json     the manifest `tagbench run` reads (sizes, tag names and
//                    member counts), see Manifest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tagcache/common/status.h"

namespace tagcache::tagbench {

struct DatasetSpec {
  uint64_t users = 1'000'000;  // ids 0 .. users-1. REQUIRES: 1 <= users <= 2^32
  int tags = 200;              // REQUIRES: 1 <= tags <= 100,000
  double max_density = 0.5;    // share of users with the most popular tag, (0, 1]
  double min_density = 1e-5;   // of the least popular tag; sets the exponent
  double zipf_s = 0;           // > 0: the exponent, overriding min_density
  bool cluster = false;        // id-range clustering of odd-ranked ("recent") tags
  uint64_t events = 100'000;   // events in events.ndjson
  double older_share = 0.2;    // share of events older than the snapshot, [0, 1]
  uint64_t snapshot_ts = 1'700'000'000'000;
  uint64_t seed = 42;
  bool roaring = false;  // also write roaring/<tag>.roaring
  bool redis = false;    // also write redis.resp
  // redis.resp without the per-user sets: only the per-tag (and known)
  // bitmaps that audience queries use. For count/top_tags runs at 10^8
  // users, where Redis' per-user sets would not fit in RAM.
  bool redis_audience_only = false;
};

// BAD_REQUEST naming the first invalid field.
Status ValidateSpec(const DatasetSpec& spec);

struct TagInfo {
  std::string name;
  double density = 0;  // the generator's probability
  uint64_t snapshot_members = 0;
  uint64_t final_members = 0;  // after the events
  bool exists = false;         // tagcache knows the tag: snapshot members or any event names it
};

// What `tagbench gen` wrote (dataset.json).
struct Manifest {
  DatasetSpec spec;
  double exponent = 0;
  std::vector<TagInfo> tags;  // by rank, most popular first
  uint64_t snapshot_assignments = 0;
  uint64_t final_assignments = 0;
  uint64_t known_users = 0;
  uint64_t events_older = 0;
  uint64_t events_newer = 0;
};

// Tag name of rank r (0-based): "tag0000".
std::string TagName(int rank);
// The power-law exponent of `spec` (zipf_s, or the one that goes from
// max_density to min_density over the tags).
double Exponent(const DatasetSpec& spec);

// Generates the dataset into `dir` (created if missing). IO_ERROR naming the
// file that could not be written; BAD_REQUEST for an invalid spec.
Result<Manifest> GenerateDataset(const DatasetSpec& spec, const std::string& dir);

// dataset.json <-> Manifest. ReadManifest: IO_ERROR when unreadable,
// BAD_REQUEST naming the missing or malformed field.
Status WriteManifest(const Manifest& m, const std::string& path);
Result<Manifest> ReadManifest(const std::string& path);

}  // namespace tagcache::tagbench
