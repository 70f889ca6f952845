# tagcache wire protocol: the body of every frame is one Cap'n Proto message
# whose root is a Request (client -> node) or a Response (node -> client).
# docs/PROTOCOL.md is the normative description; numbers here are part of
# the protocol: never renumber, only append.
@0xbf74ef5c88adea98;

$import "/capnp/c++.capnp".namespace("tagcache::wire");

enum Status {
  ok @0;
  badRequest @1;
  unknownTag @2;
  staleSnapshot @3;
  wrongNode @4;
  overloaded @5;
  unauthorized @6;
  unsupportedVersion @7;
  internal @8;
  incomplete @9;
  ioError @10;
  futureTimestamp @11;
}

enum TagOp {
  set @0;
  clear @1;
}

struct Event {
  user @0 :UInt64;
  tag @1 :Text;
  op @2 :TagOp;
  ts @3 :UInt64;
}

# A user's tags. The names travel packed in one blob, each followed by one
# '\n' (tag names are [A-Za-z0-9_.:-], so never contain it): twenty Text
# pointers cost twenty bounds-checked pointer reads and writes, one blob one.
struct TagHits {
  names @0 :Data;         # "apple_fan\nfrequent_buyer\n"
  ts @1 :List(UInt64);    # the winning ts of each name, in order; empty unless requested
}

struct UserTags {
  user @0 :UInt64;
  tags @1 :TagHits;
}

struct TagCount {
  tag @0 :Text;
  count @1 :UInt64;
}

struct ShardBitmap {
  shard @0 :UInt64;
  cardinality @1 :UInt64;
  bitmap @2 :Data;        # Roaring portable serialization of the shard's offsets
}

# One member of the cluster map: a stable id chosen by the operator and the
# address clients and peers reach it at.
struct ClusterNode {
  id @0 :Text;
  address @1 :Text;       # "host:port"
}

# The cluster map (docs/CLUSTER.md). Shards are placed on a consistent-hash
# ring of `nodes`, `vnodes` points each; a shard belongs to the first
# `replicas` distinct nodes clockwise from its hash. While a move is in
# progress `moving` is true and `fromNodes` is the ring shards move away
# from: writes go to the owners in either ring, reads to the owners in
# `fromNodes`. Epoch 0 means "no map": a standalone node owning every shard.
struct ClusterMap {
  epoch @0 :UInt64;
  shardBits @1 :UInt8;
  replicas @2 :UInt8;
  vnodes @3 :UInt16;
  nodes @4 :List(ClusterNode);
  moving @5 :Bool;
  fromNodes @6 :List(ClusterNode);
}

struct ShardDigest {
  shard @0 :UInt64;
  digest @1 :UInt64;      # XXH3-64 of the shard's logical state (Engine::ShardDigest)
}

struct Request {
  id @0 :UInt64;          # echoed in the response; chosen by the client
  union {
    hello @1 :Hello;
    ping @2 :Void;
    getTags @3 :GetTags;
    hasTags @4 :HasTags;
    getTagsBatch @5 :GetTagsBatch;
    count @6 :Count;
    audience @7 :Audience;
    audienceBitmaps @8 :AudienceBitmaps;
    topTags @9 :TopTags;
    applyEvents @10 :ApplyEvents;
    loadSnapshot @11 :LoadSnapshot;
    commitSnapshot @12 :CommitSnapshot;
    stats @13 :Void;
    checkpoint @14 :Void;   # admin: write a checkpoint now (a node with a data directory)
    getClusterMap @17 :Void;
    setClusterMap @18 :SetClusterMap;   # admin
    shardDigests @19 :Void;             # admin: every shard this node holds, with its digest
    exportShard @20 :ExportShard;       # admin: one shard's state, for repair and moves
    mergeShard @21 :MergeShard;         # admin: merge a state exported by a peer (logged)
    listShards @22 :Void;               # admin: the shards this node holds state for
  }
  # The epoch of the cluster map the client routed this request with; 0: a
  # client that does not route by a map. A node whose map is newer answers
  # keyed requests and audience queries with WRONG_NODE (and its epoch).
  epoch @15 :UInt64;
  # Audience queries only: node ids the client treats as down. A node
  # evaluates exactly the shards for which it is the first read owner not
  # in this list, so that every shard is counted once across the cluster.
  down @16 :List(Text);

  struct Hello {
    version @0 :UInt16;   # protocol version the client speaks
    client @1 :Text;      # free-form client name, for logs
    token @2 :Text;       # credentials, once auth exists
  }
  struct GetTags {
    user @0 :UInt64;
    withTs @1 :Bool;
  }
  struct HasTags {
    user @0 :UInt64;
    tags @1 :List(Text);
  }
  struct GetTagsBatch {
    users @0 :List(UInt64);
    withTs @1 :Bool;
  }
  struct Count {
    expr @0 :Text;
  }
  struct Audience {
    expr @0 :Text;
    cursor @1 :UInt64;
    limit @2 :UInt32;
  }
  struct AudienceBitmaps {
    expr @0 :Text;
  }
  struct TopTags {
    expr @0 :Text;
    k @1 :UInt32;
    all @2 :Bool;         # every tag with a non-zero count, ignoring k (a client merging nodes)
  }
  struct ApplyEvents {
    events @0 :List(Event);
  }
  struct LoadSnapshot {
    tag @0 :Text;
    ts @1 :UInt64;
    shard @2 :UInt64;
    bitmap @3 :Data;      # Roaring portable serialization of the members' offsets
  }
  struct CommitSnapshot {
    tag @0 :Text;
    ts @1 :UInt64;
    shards @2 :List(UInt64);  # the shards this snapshot carried members for
  }
  struct SetClusterMap {
    map @0 :ClusterMap;
    nodeId @1 :Text;      # the receiving node's id in the map
  }
  struct ExportShard {
    shard @0 :UInt64;
  }
  struct MergeShard {
    state @0 :Data;       # as exportShard returned it (storage/state_transfer.h)
  }
}

struct Response {
  id @0 :UInt64;          # the request's id (0 when the request could not be read)
  status @1 :Status;
  message @2 :Text;       # human-readable; empty when status is ok
  union {
    none @3 :Void;        # errors, and requests with nothing to return
    hello @4 :HelloReply;
    getTags @5 :TagHits;
    hasTags @6 :List(Bool);
    getTagsBatch @7 :List(UserTags);
    count @8 :UInt64;
    audience @9 :AudiencePage;
    audienceBitmaps @10 :List(ShardBitmap);
    topTags @11 :List(TagCount);
    applyEvents @12 :ApplyEventsReply;
    loadSnapshot @13 :LoadSnapshotReply;
    commitSnapshot @14 :CommitSnapshotReply;
    stats @15 :StatsReply;
    checkpoint @16 :CheckpointReply;
    clusterMap @18 :ClusterMapReply;
    shardDigests @19 :List(ShardDigest);
    exportShard @20 :Data;
    mergeShard @21 :Void;
    listShards @22 :List(UInt64);
  }
  # The node's map epoch (0: none). Set on every response; a client that
  # sees a newer epoch than its own refreshes its map.
  epoch @17 :UInt64;

  struct ClusterMapReply {
    map @0 :ClusterMap;   # epoch 0: the node has no map (standalone)
    nodeId @1 :Text;      # this node's id in the map; empty when standalone
  }

  struct HelloReply {
    version @0 :UInt16;
    node @1 :Text;
    shardBits @2 :UInt8;
    maxFrameBytes @3 :UInt32;
  }
  struct AudiencePage {
    users @0 :List(UInt64);
    hasMore @1 :Bool;
    nextCursor @2 :UInt64;  # meaningful when hasMore
  }
  struct ApplyEventsReply {
    applied @0 :UInt64;
    ignored @1 :UInt64;
  }
  struct LoadSnapshotReply {
    outcome @0 :Outcome;
    enum Outcome {
      applied @0;
      duplicate @1;
      tieWon @2;
      tieLost @3;
    }
  }
  struct CommitSnapshotReply {
    shardsEmptied @0 :UInt64;
    missingShards @1 :List(UInt64);
  }
  struct StatsReply {
    shards @0 :UInt64;
    tags @1 :UInt64;
    knownUsers @2 :UInt64;
    assignments @3 :UInt64;
    bitmapBytes @4 :UInt64;
    overrideBytes @5 :UInt64;
    indexBytes @6 :UInt64;
    knownBytes @7 :UInt64;
    requests @8 :List(KindStats);
    connections @9 :UInt64;
    eventsApplied @10 :UInt64;
    eventsIgnored @11 :UInt64;
    writesRefusedFuture @12 :UInt64;
    snapshotsApplied @13 :UInt64;
    snapshotsStale @14 :UInt64;
    snapshotTies @15 :UInt64;
    # Durability (zero / empty on a node without a data directory).
    fsyncPolicy @16 :Text;              # "always", "batch", "none"; empty: no WAL
    walSegment @17 :UInt64;
    walBytes @18 :UInt64;               # appended since start
    walBytesSinceCheckpoint @19 :UInt64;
    walRecords @20 :UInt64;
    walGroups @21 :UInt64;              # group commits (one write, at most one fsync each)
    fsyncs @22 :UInt64;
    fsyncMicrosTotal @23 :UInt64;
    fsyncMicrosMax @24 :UInt64;
    writesRefusedIo @25 :UInt64;        # writes that could not be logged (disk full, I/O error)
    checkpoints @26 :UInt64;
    checkpointFailures @27 :UInt64;
    lastCheckpointUnixMs @28 :UInt64;   # 0: none since start
    lastCheckpointBytes @29 :UInt64;
    tornTailsDropped @30 :UInt64;       # at the last start
    recoveryMicros @31 :UInt64;
    # Memory limit.
    memoryBytes @32 :UInt64;            # resident set size of the process
    maxMemoryBytes @33 :UInt64;         # 0: no limit
    writesRefusedMemory @34 :UInt64;
    # Protective limits (docs/OPERATIONS.md "Limits"): one entry per limit.
    limits @35 :List(LimitStats);
  }
  struct CheckpointReply {
    path @0 :Text;
    walSegment @1 :UInt64;  # WAL segments from this one on are replayed after it
    bytes @2 :UInt64;
    micros @3 :UInt64;
    segmentsRemoved @4 :UInt64;
  }
  struct KindStats {
    kind @0 :Text;        # e.g. "getTags"
    count @1 :UInt64;
    errors @2 :UInt64;
    p50Micros @3 :UInt64;
    p99Micros @4 :UInt64;
  }
  struct LimitStats {
    limit @0 :Text;       # e.g. "output_bytes", "idle_timeout"
    value @1 :UInt64;     # the configured limit (bytes, ms or a count; 0: off)
    count @2 :UInt64;     # refusals, closes, clamps or pauses it caused since start
  }
}
