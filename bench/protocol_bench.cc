// Protocol codec microbenchmarks (issue target: encode + decode of a GetTags
// request/response pair <= 300 ns). One iteration does what a client and a
// node do between them for one lookup, minus the socket: build the request,
// AppendFrame, DecodeFrameHeader, copy the body into an aligned FrameBody,
// BodyReader, read every field; then the same for a response of 20 TagHits.
// Buffers are reused across iterations the way a connection would reuse
// them; the FrameBody is allocated per message, as a connection does.
// Release builds only (bench/CMakeLists.txt enforces it).

#include <span>
#include <benchmark/benchmark.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "tagcache/protocol/bitmap.h"
#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/tag_hits.h"
#include "tagcache/protocol/frame.h"

namespace tagcache::protocol {
namespace {

// Tag names of the persona workload's shape: statistics, rule and model tags.
const std::array<std::string, 20> kTagNames = {
    "visited_last_week", "frequent_buyer",   "apple_fan",         "likely_luxury_bag_buyer",
    "churn_risk_high",   "push_opt_in",      "city:shanghai",     "age_25_34",
    "gender.f",          "vip_level_3",      "bought_last_30d",   "cart_abandoner",
    "coupon_sensitive",  "night_owl",        "android_user",      "app_version:7.12",
    "interest.travel",   "interest.fitness", "high_ltv_model_v3", "blocked_product_184467"};

constexpr size_t kScratchWords = 512;  // 4 KiB: both messages fit one first segment

// Request and response scratch segments, zeroed once: MallocMessageBuilder
// zeroes what it used when it is destroyed, so they stay reusable.
struct Scratch {
  alignas(8) std::array<capnp::word, kScratchWords> request{};
  alignas(8) std::array<capnp::word, kScratchWords> response{};
};

FrameBody ReadFrameBody(const std::vector<uint8_t>& wire) {
  Result<FrameHeader> header = DecodeFrameHeader(wire.data(), kDefaultMaxFrameBytes);
  if (!header.ok()) std::abort();  // cannot happen: we just wrote it
  FrameBody body(header->body_bytes);
  std::memcpy(body.data(), wire.data() + kFrameHeaderBytes, header->body_bytes);
  return body;
}

void EncodeRequest(Scratch& scratch, uint64_t id, uint64_t user, std::vector<uint8_t>& wire) {
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.request.data(), kScratchWords));
  auto request = message.initRoot<wire::Request>();
  request.setId(id);
  auto get_tags = request.initGetTags();
  get_tags.setUser(user);
  get_tags.setWithTs(false);
  AppendFrame(message, wire);
}

void FillResponse(wire::Response::Builder response, uint64_t id, unsigned tags) {
  response.setId(id);
  response.setStatus(wire::Status::OK);
  WriteTagHits(response.initGetTags(), std::span(kTagNames.data(), tags), /*with_ts=*/false,
               [](const auto& name) { return std::string_view(name); },
               [](const auto&) { return uint64_t{0}; });
}

void EncodeResponse(Scratch& scratch, uint64_t id, unsigned tags, std::vector<uint8_t>& wire) {
  capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.response.data(), kScratchWords));
  FillResponse(message.initRoot<wire::Response>(), id, tags);
  AppendFrame(message, wire);
}

// Decodes and reads every field; returns a value that depends on all of them.
uint64_t DecodeRequest(const std::vector<uint8_t>& wire, bool parse) {
  FrameBody body = ReadFrameBody(wire);
  BodyReader reader(body);
  wire::Request::Reader request;
  if (parse) {
    Result<wire::Request::Reader> parsed = ParseRequest(reader);
    if (!parsed.ok()) std::abort();
    request = *parsed;
  } else {
    request = reader.message().getRoot<wire::Request>();
  }
  if (request.which() != wire::Request::GET_TAGS) std::abort();
  auto get_tags = request.getGetTags();
  return request.getId() ^ get_tags.getUser() ^ static_cast<uint64_t>(get_tags.getWithTs());
}

uint64_t ReadResponse(wire::Response::Reader response) {
  uint64_t sink = response.getId() ^ static_cast<uint64_t>(response.getStatus());
  if (response.which() != wire::Response::GET_TAGS) std::abort();
  ForEachTagHit(response.getGetTags(), [&](std::string_view tag, uint64_t ts) {
    sink += tag.size() + static_cast<uint8_t>(tag[0]) + ts;
  });
  return sink;
}

uint64_t DecodeResponse(const std::vector<uint8_t>& wire, bool parse) {
  FrameBody body = ReadFrameBody(wire);
  BodyReader reader(body);
  if (!parse) return ReadResponse(reader.message().getRoot<wire::Response>());
  Result<wire::Response::Reader> parsed = ParseResponse(reader);
  if (!parsed.ok()) std::abort();
  return ReadResponse(*parsed);
}

void EncodeDecodePair(benchmark::State& state, bool parse, unsigned tags) {
  Scratch scratch;
  std::vector<uint8_t> wire;
  wire.reserve(4096);
  uint64_t id = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    ++id;
    wire.clear();
    EncodeRequest(scratch, id, 42 + (id & 1023), wire);
    sink += DecodeRequest(wire, parse);
    wire.clear();
    EncodeResponse(scratch, id, tags, wire);
    sink += DecodeResponse(wire, parse);
    benchmark::DoNotOptimize(sink);
  }
  state.counters["response_bytes"] = static_cast<double>(wire.size());
}

// The target: <= 300 ns for the pair (response of 20 tags).
void BM_EncodeDecode_GetTagsPair(benchmark::State& state) {
  EncodeDecodePair(state, false, kTagNames.size());
}
BENCHMARK(BM_EncodeDecode_GetTagsPair);

// The same with ParseRequest/ParseResponse (the up-front whole-tree check).
void BM_EncodeDecode_GetTagsPairParsed(benchmark::State& state) {
  EncodeDecodePair(state, true, kTagNames.size());
}
BENCHMARK(BM_EncodeDecode_GetTagsPairParsed);

// Fixed cost and cost per tag: the pair with 0, 5, 10 and 20 tags.
void BM_EncodeDecode_GetTagsPairByTags(benchmark::State& state) {
  EncodeDecodePair(state, false, static_cast<unsigned>(state.range(0)));
}
BENCHMARK(BM_EncodeDecode_GetTagsPairByTags)->Arg(0)->Arg(5)->Arg(10)->Arg(20);

// Cap'n Proto alone, for scale: the same two messages built and read in
// place (no frame, no copy, no aligned body); the difference to
// BM_EncodeDecode_GetTagsPair is what the frame layer costs.
void BM_CapnpOnly_GetTagsPair(benchmark::State& state) {
  Scratch scratch;
  uint64_t id = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    ++id;
    {
      capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.request.data(), kScratchWords));
      auto request = message.initRoot<wire::Request>();
      request.setId(id);
      auto get_tags = request.initGetTags();
      get_tags.setUser(42 + (id & 1023));
      get_tags.setWithTs(false);
      capnp::SegmentArrayMessageReader reader(message.getSegmentsForOutput(), ReaderOptionsFor(64));
      auto r = reader.getRoot<wire::Request>();
      sink +=
          r.getId() ^ r.getGetTags().getUser() ^ static_cast<uint64_t>(r.getGetTags().getWithTs());
    }
    {
      capnp::MallocMessageBuilder message(kj::arrayPtr(scratch.response.data(), kScratchWords));
      FillResponse(message.initRoot<wire::Response>(), id, kTagNames.size());
      capnp::SegmentArrayMessageReader reader(message.getSegmentsForOutput(),
                                              ReaderOptionsFor(1024));
      sink += ReadResponse(reader.getRoot<wire::Response>());
    }
    benchmark::DoNotOptimize(sink);
  }
}
BENCHMARK(BM_CapnpOnly_GetTagsPair);

// The halves, to see where the time goes.
void BM_EncodeDecode_GetTagsRequest(benchmark::State& state) {
  Scratch scratch;
  std::vector<uint8_t> wire;
  wire.reserve(4096);
  uint64_t id = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    wire.clear();
    EncodeRequest(scratch, ++id, 42, wire);
    sink += DecodeRequest(wire, false);
    benchmark::DoNotOptimize(sink);
  }
}
BENCHMARK(BM_EncodeDecode_GetTagsRequest);

void BM_EncodeDecode_GetTagsResponse20(benchmark::State& state) {
  Scratch scratch;
  std::vector<uint8_t> wire;
  wire.reserve(4096);
  uint64_t id = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    wire.clear();
    EncodeResponse(scratch, ++id, kTagNames.size(), wire);
    sink += DecodeResponse(wire, false);
    benchmark::DoNotOptimize(sink);
  }
}
BENCHMARK(BM_EncodeDecode_GetTagsResponse20);

// ReadPortableBitmap (layout check + CRoaring read + structural walk) for a
// shard bitmap of 2^20 offsets at a given density in percent.
void BM_ReadPortableBitmap_Shard(benchmark::State& state) {
  const uint32_t step = static_cast<uint32_t>(100 / state.range(0));
  Roaring bitmap;
  for (uint32_t v = 0; v < (1u << 20); v += step) bitmap.add(v);
  bitmap.runOptimize();
  const std::string bytes = WritePortableBitmap(bitmap);
  for (auto _ : state) {
    Result<Roaring> r = ReadPortableBitmap(bytes.data(), bytes.size(), 1u << 20);
    if (!r.ok()) std::abort();
    benchmark::DoNotOptimize(r->cardinality());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_ReadPortableBitmap_Shard)->Arg(1)->Arg(10)->Arg(50);

}  // namespace
}  // namespace tagcache::protocol
