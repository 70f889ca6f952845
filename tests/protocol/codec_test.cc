// Frame bodies (tagcache/protocol/codec.h): every request and response kind
// survives AppendFrame -> DecodeFrameHeader -> FrameBody -> BodyReader, the
// status enum maps one-to-one, and hostile bodies (bad segment tables,
// amplification through shared pointers, zero-sized huge lists, deep
// nesting) are refused with kj::Exception or BAD_REQUEST, never a crash.

#include "tagcache/protocol/codec.h"
#include "tagcache/protocol/tag_hits.h"

#include <capnp/schema.h>
#include <gtest/gtest.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace tagcache::protocol {
namespace {

// ---- helpers ---------------------------------------------------------------

// The single frame at the start of `frame`, through the header codec and an
// aligned body, as a connection would read it.
FrameBody FirstBody(const std::vector<uint8_t>& frame, size_t* frame_bytes = nullptr,
                    uint32_t max = kDefaultMaxFrameBytes) {
  EXPECT_GE(frame.size(), kFrameHeaderBytes);
  Result<FrameHeader> header = DecodeFrameHeader(frame.data(), max);
  EXPECT_TRUE(header.ok()) << header.status().ToString();
  if (!header.ok()) return FrameBody();
  EXPECT_LE(kFrameHeaderBytes + header->body_bytes, frame.size());
  FrameBody body(header->body_bytes);
  std::memcpy(body.data(), frame.data() + kFrameHeaderBytes, header->body_bytes);
  if (frame_bytes != nullptr) *frame_bytes = kFrameHeaderBytes + header->body_bytes;
  return body;
}

std::vector<uint8_t> Frame(capnp::MessageBuilder& message) {
  std::vector<uint8_t> out;
  AppendFrame(message, out);
  return out;
}

// A Cap'n Proto segment written word by word, for bodies no builder makes.
class RawSegment {
 public:
  size_t Alloc(size_t words) {
    const size_t at = words_.size();
    words_.resize(at + words, 0);
    return at;
  }
  static uint64_t StructPointer(int64_t offset, uint16_t data_words, uint16_t pointers) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(offset)) << 2 & 0xFFFFFFFFu) |
           static_cast<uint64_t>(data_words) << 32 | static_cast<uint64_t>(pointers) << 48;
  }
  // element_size: 0 void, 1 bit, 2 byte, 3 two bytes, 4 four, 5 eight,
  // 6 pointer, 7 composite (count is then the word count).
  static uint64_t ListPointer(int64_t offset, uint8_t element_size, uint32_t count) {
    return 1 | (static_cast<uint64_t>(static_cast<uint32_t>(offset)) << 2 & 0xFFFFFFFFu) |
           static_cast<uint64_t>(element_size) << 32 | static_cast<uint64_t>(count) << 35;
  }
  void PointStruct(size_t at, size_t target, uint16_t data_words, uint16_t pointers) {
    words_[at] = StructPointer(Offset(at, target), data_words, pointers);
  }
  void PointList(size_t at, size_t target, uint8_t element_size, uint32_t count) {
    words_[at] = ListPointer(Offset(at, target), element_size, count);
  }
  void SetU16(size_t word, uint32_t index16, uint16_t value) {
    words_[word + index16 / 4] |= static_cast<uint64_t>(value) << (16 * (index16 % 4));
  }
  uint64_t& operator[](size_t i) { return words_[i]; }
  size_t size() const { return words_.size(); }

  // A one-segment body: the segment table, then the words.
  FrameBody Body() const {
    FrameBody body(static_cast<uint32_t>((words_.size() + 1) * 8));
    const uint32_t table[2] = {0, static_cast<uint32_t>(words_.size())};
    std::memcpy(body.data(), table, 8);
    std::memcpy(body.data() + 8, words_.data(), words_.size() * 8);
    return body;
  }

 private:
  static int64_t Offset(size_t at, size_t target) {
    return static_cast<int64_t>(target) - static_cast<int64_t>(at) - 1;
  }
  std::vector<uint64_t> words_;
};

// Where the schema puts a struct's sections and a union member.
struct StructShape {
  uint16_t data_words;
  uint16_t pointers;
  uint32_t discriminant_offset;  // in 16-bit units
};
template <typename T>
StructShape ShapeOf() {
  auto node = capnp::Schema::from<T>().getProto().getStruct();
  return {node.getDataWordCount(), node.getPointerCount(), node.getDiscriminantOffset()};
}
template <typename T>
capnp::schema::Field::Reader FieldOf(const char* name) {
  return capnp::Schema::from<T>().getFieldByName(name).getProto();
}

// Lays out a root `Outer` (Request or Response) with id `id` whose union
// holds the pointer member `member`; returns the word index of that member's
// pointer slot.
template <typename Outer>
size_t RootWithMember(RawSegment& seg, const char* member, uint64_t id) {
  const StructShape shape = ShapeOf<Outer>();
  const auto field = FieldOf<Outer>(member);
  const size_t root_ptr = seg.Alloc(1);
  const size_t root = seg.Alloc(shape.data_words + shape.pointers);
  seg.PointStruct(root_ptr, root, shape.data_words, shape.pointers);
  seg[root] = id;  // id @0 :UInt64 is data word 0 in both roots
  seg.SetU16(root, shape.discriminant_offset, field.getDiscriminantValue());
  return root + shape.data_words + field.getSlot().getOffset();
}

// ---- round trips -------------------------------------------------------------

struct Kind {
  const char* name;
  std::function<void(wire::Request::Builder)> fill;
};

std::vector<Kind> RequestKinds() {
  return {
      {"hello",
       [](wire::Request::Builder r) {
         auto h = r.initHello();
         h.setVersion(kProtocolVersion);
         h.setClient("codec_test/1.0");
         h.setToken("");
       }},
      {"ping", [](wire::Request::Builder r) { r.setPing(); }},
      {"getTags",
       [](wire::Request::Builder r) {
         auto g = r.initGetTags();
         g.setUser(42);
         g.setWithTs(true);
       }},
      {"hasTags",
       [](wire::Request::Builder r) {
         auto h = r.initHasTags();
         h.setUser(UINT64_MAX);
         auto tags = h.initTags(3);
         tags.set(0, "apple_fan");
         tags.set(1, "frequent_buyer");
         tags.set(2, "churned");
       }},
      {"getTagsBatch",
       [](wire::Request::Builder r) {
         auto b = r.initGetTagsBatch();
         auto users = b.initUsers(1000);
         for (uint32_t i = 0; i < users.size(); ++i) users.set(i, uint64_t{i} * 7919);
         b.setWithTs(false);
       }},
      {"count", [](wire::Request::Builder r) { r.initCount().setExpr("apple_fan & !churned"); }},
      {"audience",
       [](wire::Request::Builder r) {
         auto a = r.initAudience();
         a.setExpr("a | b");
         a.setCursor(1u << 20);
         a.setLimit(10000);
       }},
      {"audienceBitmaps",
       [](wire::Request::Builder r) { r.initAudienceBitmaps().setExpr("(a - b) | c"); }},
      {"topTags",
       [](wire::Request::Builder r) {
         auto t = r.initTopTags();
         t.setExpr("likely_luxury_bag_buyer");
         t.setK(25);
       }},
      {"applyEvents",
       [](wire::Request::Builder r) {
         auto events = r.initApplyEvents().initEvents(3);
         for (uint32_t i = 0; i < events.size(); ++i) {
           events[i].setUser(1000 + i);
           events[i].setTag("visited_last_week");
           events[i].setOp(i % 2 == 0 ? wire::TagOp::SET : wire::TagOp::CLEAR);
           events[i].setTs(1700000000000 + i);
         }
       }},
      {"loadSnapshot",
       [](wire::Request::Builder r) {
         auto l = r.initLoadSnapshot();
         l.setTag("frequent_buyer");
         l.setTs(1700000000000);
         l.setShard(3);
         const uint8_t bytes[] = {0x3a, 0x30, 0, 0, 0, 0, 0, 0};  // empty portable bitmap
         l.setBitmap(kj::arrayPtr(bytes, sizeof(bytes)));
       }},
      {"commitSnapshot",
       [](wire::Request::Builder r) {
         auto c = r.initCommitSnapshot();
         c.setTag("frequent_buyer");
         c.setTs(1700000000000);
         auto shards = c.initShards(2);
         shards.set(0, 0);
         shards.set(1, 3);
       }},
      {"stats", [](wire::Request::Builder r) { r.setStats(); }},
  };
}

TEST(CodecTest, EveryRequestKindRoundTrips) {
  const auto kinds = RequestKinds();
  ASSERT_EQ(kinds.size(), 13u) << "one entry per Request union member";
  uint64_t id = 1;
  for (const Kind& kind : kinds) {
    SCOPED_TRACE(kind.name);
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<wire::Request>();
    request.setId(id);
    kind.fill(request);
    const std::vector<uint8_t> frame = Frame(message);
    size_t frame_bytes = 0;
    FrameBody body = FirstBody(frame, &frame_bytes);
    EXPECT_EQ(frame_bytes, frame.size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(body.data()) % 8, 0u);
    BodyReader reader(body);
    Result<wire::Request::Reader> parsed = ParseRequest(reader);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->getId(), id);
    EXPECT_EQ(parsed->which(), request.which());
    // The text form covers every field of every kind.
    EXPECT_EQ(std::string(kj::str(*parsed).cStr()),
              std::string(kj::str(request.asReader()).cStr()));
    ++id;
  }
}

TEST(CodecTest, RequestFieldsReadBack) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<wire::Request>();
  request.setId(0xDEADBEEFCAFEull);
  auto g = request.initGetTags();
  g.setUser(123456789012ull);
  g.setWithTs(true);
  const std::vector<uint8_t> frame = Frame(message);
  FrameBody body = FirstBody(frame);
  BodyReader reader(body);
  auto r = reader.message().getRoot<wire::Request>();
  EXPECT_EQ(r.getId(), 0xDEADBEEFCAFEull);
  ASSERT_EQ(r.which(), wire::Request::GET_TAGS);
  EXPECT_EQ(r.getGetTags().getUser(), 123456789012ull);
  EXPECT_TRUE(r.getGetTags().getWithTs());
}

std::vector<std::pair<const char*, std::function<void(wire::Response::Builder)>>> ResponseKinds() {
  return {
      {"none", [](wire::Response::Builder r) { r.setNone(); }},
      {"hello",
       [](wire::Response::Builder r) {
         auto h = r.initHello();
         h.setVersion(kProtocolVersion);
         h.setNode("node-1");
         h.setShardBits(20);
         h.setMaxFrameBytes(kDefaultMaxFrameBytes);
       }},
      {"getTags",
       [](wire::Response::Builder r) {
         const std::vector<std::pair<std::string, uint64_t>> hits = {{"apple_fan", 5},
                                                                      {"frequent_buyer", 0}};
         WriteTagHits(r.initGetTags(), hits, true, [](const auto& h) { return h.first; },
                      [](const auto& h) { return h.second; });
       }},
      {"hasTags",
       [](wire::Response::Builder r) {
         auto b = r.initHasTags(3);
         b.set(0, true);
         b.set(2, true);
       }},
      {"getTagsBatch",
       [](wire::Response::Builder r) {
         auto users = r.initGetTagsBatch(2);
         users[0].setUser(1);
         const std::vector<std::string> one = {"a"}, none;
         auto name = [](const std::string& n) { return std::string_view(n); };
         auto no_ts = [](const std::string&) { return uint64_t{0}; };
         WriteTagHits(users[0].initTags(), one, false, name, no_ts);
         users[1].setUser(2);
         WriteTagHits(users[1].initTags(), none, false, name, no_ts);
       }},
      {"count", [](wire::Response::Builder r) { r.setCount(123456789); }},
      {"audience",
       [](wire::Response::Builder r) {
         auto page = r.initAudience();
         auto users = page.initUsers(3);
         users.set(0, 1);
         users.set(1, 5);
         users.set(2, 1u << 21);
         page.setHasMore(true);
         page.setNextCursor((1u << 21) + 1);
       }},
      {"audienceBitmaps",
       [](wire::Response::Builder r) {
         auto maps = r.initAudienceBitmaps(1);
         maps[0].setShard(7);
         maps[0].setCardinality(0);
         const uint8_t bytes[] = {0x3a, 0x30, 0, 0, 0, 0, 0, 0};
         maps[0].setBitmap(kj::arrayPtr(bytes, sizeof(bytes)));
       }},
      {"topTags",
       [](wire::Response::Builder r) {
         auto top = r.initTopTags(2);
         top[0].setTag("a");
         top[0].setCount(10);
         top[1].setTag("b");
         top[1].setCount(3);
       }},
      {"applyEvents",
       [](wire::Response::Builder r) {
         auto a = r.initApplyEvents();
         a.setApplied(10);
         a.setIgnored(2);
       }},
      {"loadSnapshot",
       [](wire::Response::Builder r) {
         r.initLoadSnapshot().setOutcome(wire::Response::LoadSnapshotReply::Outcome::TIE_WON);
       }},
      {"commitSnapshot",
       [](wire::Response::Builder r) {
         auto c = r.initCommitSnapshot();
         c.setShardsEmptied(4);
         c.initMissingShards(1).set(0, 9);
       }},
      {"stats",
       [](wire::Response::Builder r) {
         auto s = r.initStats();
         s.setShards(16);
         s.setTags(300);
         s.setBitmapBytes(1u << 30);
         auto kinds = s.initRequests(1);
         kinds[0].setKind("getTags");
         kinds[0].setCount(1000);
         kinds[0].setP99Micros(40);
         s.setSnapshotTies(1);
       }},
  };
}

TEST(CodecTest, EveryResponseKindRoundTrips) {
  const auto kinds = ResponseKinds();
  ASSERT_EQ(kinds.size(), 13u) << "one entry per Response union member";
  uint64_t id = 100;
  for (const auto& [name, fill] : kinds) {
    SCOPED_TRACE(name);
    capnp::MallocMessageBuilder message;
    auto response = message.initRoot<wire::Response>();
    response.setId(id);
    response.setStatus(wire::Status::OK);
    fill(response);
    FrameBody body = FirstBody(Frame(message));
    BodyReader reader(body);
    Result<wire::Response::Reader> parsed = ParseResponse(reader);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->getId(), id);
    EXPECT_EQ(parsed->getStatus(), wire::Status::OK);
    EXPECT_EQ(parsed->which(), response.which());
    EXPECT_EQ(std::string(kj::str(*parsed).cStr()),
              std::string(kj::str(response.asReader()).cStr()));
    ++id;
  }
}

TEST(CodecTest, ErrorResponseCarriesIdStatusAndMessage) {
  capnp::MallocMessageBuilder message;
  auto response = message.initRoot<wire::Response>();
  response.setId(0);  // the request could not be read
  response.setStatus(ToWire(StatusCode::kBadRequest));
  response.setMessage("frame body length 17 is not a multiple of 8");
  response.setNone();
  FrameBody body = FirstBody(Frame(message));
  BodyReader reader(body);
  Result<wire::Response::Reader> parsed = ParseResponse(reader);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->getId(), 0u);
  EXPECT_EQ(FromWire(parsed->getStatus()), StatusCode::kBadRequest);
  EXPECT_EQ(std::string(parsed->getMessage().cStr()),
            "frame body length 17 is not a multiple of 8");
  EXPECT_EQ(parsed->which(), wire::Response::NONE);
}

TEST(CodecTest, FramesAppendBackToBackAndDecodeInOrder) {
  std::vector<uint8_t> stream;
  for (uint64_t id = 1; id <= 5; ++id) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<wire::Request>();
    request.setId(id);
    request.initCount().setExpr(std::string(id * 10, 'a'));
    AppendFrame(message, stream);
  }
  size_t at = 0;
  for (uint64_t id = 1; id <= 5; ++id) {
    std::vector<uint8_t> rest(stream.begin() + static_cast<ptrdiff_t>(at), stream.end());
    size_t used = 0;
    FrameBody body = FirstBody(rest, &used);
    BodyReader reader(body);
    auto r = reader.message().getRoot<wire::Request>();
    EXPECT_EQ(r.getId(), id);
    EXPECT_EQ(r.getCount().getExpr().size(), id * 10);
    at += used;
  }
  EXPECT_EQ(at, stream.size());
}

TEST(CodecTest, MultiSegmentMessagesRoundTrip) {
  // Tiny fixed-size segments force dozens of segments and far pointers.
  capnp::MallocMessageBuilder message(8, capnp::AllocationStrategy::FIXED_SIZE);
  auto request = message.initRoot<wire::Request>();
  request.setId(7);
  auto events = request.initApplyEvents().initEvents(50);
  for (uint32_t i = 0; i < events.size(); ++i) {
    events[i].setUser(i);
    events[i].setTag("tag_" + std::to_string(i));
    events[i].setTs(i + 1);
  }
  ASSERT_GT(message.getSegmentsForOutput().size(), 10u);
  const std::vector<uint8_t> frame = Frame(message);
  EXPECT_EQ(frame.size(), kFrameHeaderBytes + capnp::computeSerializedSizeInWords(message) * 8);
  FrameBody body = FirstBody(frame);
  BodyReader reader(body);
  Result<wire::Request::Reader> parsed = ParseRequest(reader);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  auto got = parsed->getApplyEvents().getEvents();
  ASSERT_EQ(got.size(), 50u);
  for (uint32_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].getUser(), i);
    EXPECT_EQ(std::string(got[i].getTag().cStr()), "tag_" + std::to_string(i));
  }
}

TEST(CodecTest, BodyIsTheStandardStreamEncoding) {
  // Interoperability: any Cap'n Proto implementation's writeMessage output is
  // a valid body, and ours is byte-identical to messageToFlatArray.
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Request>().initHasTags().initTags(2).set(1, "x");
  const std::vector<uint8_t> frame = Frame(message);
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  ASSERT_EQ(frame.size(), kFrameHeaderBytes + flat.asBytes().size());
  EXPECT_EQ(
      std::memcmp(frame.data() + kFrameHeaderBytes, flat.asBytes().begin(), flat.asBytes().size()),
      0);
}

TEST(CodecTest, HelloFitsThePreHelloLimit) {
  capnp::MallocMessageBuilder message;
  auto hello = message.initRoot<wire::Request>().initHello();
  hello.setVersion(kProtocolVersion);
  hello.setClient(std::string(200, 'c'));
  hello.setToken(std::string(1000, 't'));
  const std::vector<uint8_t> frame = Frame(message);
  EXPECT_TRUE(DecodeFrameHeader(frame.data(), kPreHelloMaxFrameBytes).ok());
}

TEST(CodecTest, AppendFrameWithoutRootIsRefused) {
  capnp::MallocMessageBuilder message;
  std::vector<uint8_t> out;
  EXPECT_THROW(AppendFrame(message, out), kj::Exception);
}

// ---- status mapping ------------------------------------------------------------

TEST(CodecTest, StatusCodesMapOneToOne) {
  for (uint16_t n = 0; n <= static_cast<uint16_t>(StatusCode::kFutureTimestamp); ++n) {
    const auto code = static_cast<StatusCode>(n);
    EXPECT_EQ(static_cast<uint16_t>(ToWire(code)), n) << StatusCodeName(code);
    EXPECT_EQ(FromWire(ToWire(code)), code) << StatusCodeName(code);
  }
  // Enumerants in the schema: exactly the codes StatusCode knows.
  EXPECT_EQ(capnp::Schema::from<wire::Status>().getEnumerants().size(),
            static_cast<size_t>(StatusCode::kFutureTimestamp) + 1);
}

TEST(CodecTest, UnknownWireStatusMapsToInternal) {
  EXPECT_EQ(FromWire(static_cast<wire::Status>(12)), StatusCode::kInternal);
  EXPECT_EQ(FromWire(static_cast<wire::Status>(0xFFFF)), StatusCode::kInternal);
  EXPECT_EQ(ToWire(static_cast<StatusCode>(200)), wire::Status::INTERNAL);
}

// ---- limits ------------------------------------------------------------------------

TEST(CodecTest, ReaderOptionsScaleWithTheBody) {
  capnp::ReaderOptions small = ReaderOptionsFor(64);
  EXPECT_EQ(small.traversalLimitInWords, kMinTraversalWords);
  EXPECT_EQ(small.nestingLimit, 32);
  capnp::ReaderOptions pre_hello = ReaderOptionsFor(kPreHelloMaxFrameBytes);
  EXPECT_EQ(pre_hello.traversalLimitInWords, kMinTraversalWords);  // 2048 words * 4
  capnp::ReaderOptions big = ReaderOptionsFor(kDefaultMaxFrameBytes);
  EXPECT_EQ(big.traversalLimitInWords, uint64_t{kDefaultMaxFrameBytes} / 8 * 4);
  EXPECT_EQ(big.nestingLimit, kNestingLimit);
  // Far below Cap'n Proto's defaults (8 Mi words, 64 levels) for small bodies.
  EXPECT_LT(small.traversalLimitInWords, capnp::ReaderOptions().traversalLimitInWords);
  EXPECT_LT(small.nestingLimit, capnp::ReaderOptions().nestingLimit);
}

static_assert(!std::is_copy_constructible_v<BodyReader> &&
                  !std::is_move_constructible_v<BodyReader>,
              "Cap'n Proto's reader points into itself: BodyReader must stay put");
static_assert(std::is_move_constructible_v<FrameBody> && !std::is_copy_constructible_v<FrameBody>);

TEST(CodecTest, FrameBodyIsWordAligned) {
  for (uint32_t bytes : {8u, 16u, 24u, 4096u, 65536u}) {
    FrameBody body(bytes);
    EXPECT_EQ(body.size(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(body.data()) % alignof(capnp::word), 0u);
    EXPECT_EQ(reinterpret_cast<const uint8_t*>(body.words().begin()), body.data());
  }
}

TEST(CodecTest, UnalignedMemoryIsRefusedByCapnProto) {
  // Why FrameBody exists: a body read at offset 12 of a byte buffer would be
  // misaligned, and Cap'n Proto 0.9 refuses it (so we never hand it one).
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Request>().setId(5);
  const std::vector<uint8_t> frame = Frame(message);
  std::vector<capnp::word> storage(frame.size() / 8 + 2);
  auto* bytes = reinterpret_cast<uint8_t*>(storage.data()) + 4;  // 4 mod 8
  std::memcpy(bytes, frame.data() + kFrameHeaderBytes, frame.size() - kFrameHeaderBytes);
  kj::ArrayPtr<const capnp::word> misaligned(reinterpret_cast<const capnp::word*>(bytes),
                                             (frame.size() - kFrameHeaderBytes) / 8);
  EXPECT_THROW(
      {
        capnp::FlatArrayMessageReader reader(misaligned, ReaderOptionsFor(misaligned.size() * 8));
        (void)reader.getRoot<wire::Request>().getId();
      },
      kj::Exception);
}

// ---- malformed bodies -------------------------------------------------------------

TEST(CodecTest, SegmentTableLongerThanTheBodyThrows) {
  FrameBody body(8);
  const uint32_t table[2] = {9, 0};  // ten segments: the table alone needs 48 bytes
  std::memcpy(body.data(), table, 8);
  EXPECT_THROW(BodyReader reader(body), kj::Exception);
}

TEST(CodecTest, SegmentLongerThanTheBodyThrows) {
  FrameBody body(16);
  const uint32_t table[2] = {0, 1000};
  std::memcpy(body.data(), table, 8);
  EXPECT_THROW(BodyReader reader(body), kj::Exception);
}

TEST(CodecTest, HugeSegmentCountThrowsWithoutAllocating) {
  FrameBody body(16);
  const uint32_t table[2] = {0xFFFFFFFEu, 1};
  std::memcpy(body.data(), table, 8);
  EXPECT_THROW(BodyReader reader(body), kj::Exception);
}

TEST(CodecTest, WordsAfterTheMessageThrow) {
  capnp::MallocMessageBuilder message;
  message.initRoot<wire::Request>().setPing();
  std::vector<uint8_t> frame = Frame(message);
  FrameBody good = FirstBody(frame);
  FrameBody longer(static_cast<uint32_t>(good.size() + 8));
  std::memcpy(longer.data(), good.data(), good.size());
  EXPECT_NO_THROW(BodyReader reader(good));
  EXPECT_THROW(BodyReader reader(longer), kj::Exception);
}

TEST(CodecTest, RootThatIsNotAStructIsBadRequest) {
  RawSegment seg;
  const size_t root = seg.Alloc(2);
  seg.PointList(root, root + 1, 5, 1);  // a List(UInt64) where the root struct should be
  FrameBody body = seg.Body();
  BodyReader reader(body);
  Result<wire::Request::Reader> parsed = ParseRequest(reader);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kBadRequest);
  EXPECT_NE(parsed.status().message().find("malformed request"), std::string::npos)
      << parsed.status().message();
}

TEST(CodecTest, OutOfBoundsPointerIsBadRequest) {
  RawSegment seg;
  const size_t member = RootWithMember<wire::Request>(seg, "getTagsBatch", 9);
  const size_t batch = seg.Alloc(2);
  seg.PointStruct(member, batch, 1, 1);
  // users: a List(UInt64) of 2^29 - 1 elements in a body of a few words.
  seg.PointList(batch + 1, batch + 2, 5, (1u << 29) - 1);
  FrameBody body = seg.Body();
  {
    BodyReader reader(body);
    auto r = reader.message().getRoot<wire::Request>();
    EXPECT_EQ(r.getId(), 9u);
    EXPECT_THROW((void)r.getGetTagsBatch().getUsers(), kj::Exception);
  }
  BodyReader reader(body);
  Result<wire::Request::Reader> parsed = ParseRequest(reader);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kBadRequest);
}

TEST(CodecTest, UnknownUnionMemberIsReturnedForTheDispatcher) {
  RawSegment seg;
  const StructShape shape = ShapeOf<wire::Request>();
  const size_t root_ptr = seg.Alloc(1);
  const size_t root = seg.Alloc(shape.data_words + shape.pointers);
  seg.PointStruct(root_ptr, root, shape.data_words, shape.pointers);
  seg[root] = 77;
  seg.SetU16(root, shape.discriminant_offset, 999);  // a kind from the future
  FrameBody body = seg.Body();
  BodyReader reader(body);
  Result<wire::Request::Reader> parsed = ParseRequest(reader);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->getId(), 77u);
  EXPECT_EQ(static_cast<uint16_t>(parsed->which()), 999);
}

// Many list elements pointing at one large Text: a small body that reads as
// N times its size (the classic Cap'n Proto amplification).
FrameBody AmplifiedHasTags(uint32_t pointers, uint32_t text_bytes) {
  RawSegment seg;
  const size_t member = RootWithMember<wire::Request>(seg, "hasTags", 11);
  const StructShape has = ShapeOf<wire::Request::HasTags>();
  const size_t has_tags = seg.Alloc(has.data_words + has.pointers);
  seg.PointStruct(member, has_tags, has.data_words, has.pointers);
  const size_t tags_slot =
      has_tags + has.data_words + FieldOf<wire::Request::HasTags>("tags").getSlot().getOffset();
  const size_t list = seg.Alloc(pointers);
  seg.PointList(tags_slot, list, 6, pointers);
  const size_t blob = seg.Alloc((text_bytes + 1 + 7) / 8);
  for (size_t w = blob; w < seg.size(); ++w) seg[w] = 0x6161616161616161ull;  // 'a'...
  seg[seg.size() - 1] &= ~(0xFFull << (8 * (text_bytes % 8)));                // NUL
  for (uint32_t i = 0; i < pointers; ++i) seg.PointList(list + i, blob, 2, text_bytes + 1);
  return seg.Body();
}

TEST(CodecTest, SharedPointerAmplificationTripsTheTraversalLimit) {
  // A legitimate-looking small version first: 3 pointers to one 16-byte text
  // reads fine field by field (only the up-front check refuses sharing).
  {
    FrameBody body = AmplifiedHasTags(3, 15);
    BodyReader reader(body);
    auto tags = reader.message().getRoot<wire::Request>().getHasTags().getTags();
    ASSERT_EQ(tags.size(), 3u);
    EXPECT_EQ(std::string(tags[2].cStr()), std::string(15, 'a'));
    BodyReader again(body);
    Result<wire::Request::Reader> parsed = ParseRequest(again);
    ASSERT_FALSE(parsed.ok());
    EXPECT_NE(parsed.status().message().find("amplification"), std::string::npos)
        << parsed.status().message();
  }
  // 1,000 pointers to one 8 KB text: a ~16 KB body that would read as 8 MB.
  FrameBody body = AmplifiedHasTags(1000, 8000);
  EXPECT_LT(body.size(), 20000u);
  {
    BodyReader reader(body);
    auto tags = reader.message().getRoot<wire::Request>().getHasTags().getTags();
    EXPECT_THROW(
        {
          size_t total = 0;
          for (auto t : tags) total += t.size();
          ADD_FAILURE() << "read " << total << " bytes of amplified text";
        },
        kj::Exception);
  }
  BodyReader reader(body);
  Result<wire::Request::Reader> parsed = ParseRequest(reader);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kBadRequest);
  EXPECT_NE(parsed.status().message().find("traversal limit"), std::string::npos)
      << parsed.status().message();
}

TEST(CodecTest, HugeListOfEmptyStructsTripsTheTraversalLimit) {
  // getTags: List(TagHit) declared as 10^7 zero-sized structs in 0 words.
  // Cap'n Proto charges each element one word, so the read is refused.
  RawSegment seg;
  const size_t member = RootWithMember<wire::Response>(seg, "getTags", 12);
  const size_t tag_word = seg.Alloc(1);
  seg.PointList(member, tag_word, 7, 0);
  seg[tag_word] = RawSegment::StructPointer(10'000'000, 0, 0);  // offset field = element count
  FrameBody body = seg.Body();
  BodyReader reader(body);
  auto response = reader.message().getRoot<wire::Response>();
  EXPECT_EQ(response.getId(), 12u);
  EXPECT_THROW((void)response.getGetTags(), kj::Exception);
  // ParseResponse's size walk counts such a list as empty (it is, in bytes),
  // so it may pass it; the read still throws, inside the connection's
  // kj::Exception boundary (documented in codec.h).
  BodyReader again(body);
  Result<wire::Response::Reader> parsed = ParseResponse(again);
  if (parsed.ok()) {
    EXPECT_THROW((void)parsed->getGetTags(), kj::Exception);
  } else {
    EXPECT_EQ(parsed.status().code(), StatusCode::kBadRequest);
  }
}

// A root whose first pointer leads through `depth` structs of one pointer.
FrameBody NestedChain(int depth) {
  RawSegment seg;
  const size_t first = seg.Alloc(static_cast<size_t>(depth) + 1);
  for (int i = 0; i < depth; ++i) {
    seg.PointStruct(first + static_cast<size_t>(i), first + static_cast<size_t>(i) + 1, 0, 1);
  }
  return seg.Body();  // the last word is a null pointer
}

TEST(CodecTest, ExcessiveNestingThrowsAndIsBadRequest) {
  {
    FrameBody body = NestedChain(10);
    BodyReader reader(body);
    EXPECT_TRUE(ParseRequest(reader).ok());
  }
  FrameBody body = NestedChain(100);
  {
    BodyReader reader(body);
    EXPECT_THROW((void)reader.message().getRoot<capnp::AnyPointer>().targetSize(), kj::Exception);
  }
  BodyReader reader(body);
  Result<wire::Request::Reader> parsed = ParseRequest(reader);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kBadRequest);
  EXPECT_NE(parsed.status().message().find("nested"), std::string::npos)
      << parsed.status().message();
}

TEST(CodecTest, RandomBodyCorruptionNeverCrashes) {
  // Flip bytes of valid bodies: BodyReader + ParseRequest + a full read
  // either succeed or throw kj::Exception / return BAD_REQUEST.
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<wire::Request>();
  request.setId(3);
  auto events = request.initApplyEvents().initEvents(8);
  for (uint32_t i = 0; i < events.size(); ++i) {
    events[i].setUser(i);
    events[i].setTag("tag" + std::to_string(i));
  }
  const std::vector<uint8_t> frame = Frame(message);
  FrameBody original = FirstBody(frame);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int accepted = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    FrameBody body(static_cast<uint32_t>(original.size()));
    std::memcpy(body.data(), original.data(), original.size());
    const int flips = 1 + static_cast<int>(next() % 4);
    for (int f = 0; f < flips; ++f) {
      body.data()[next() % body.size()] = static_cast<uint8_t>(next());
    }
    try {
      BodyReader reader(body);
      Result<wire::Request::Reader> parsed = ParseRequest(reader);
      if (!parsed.ok()) {
        EXPECT_EQ(parsed.status().code(), StatusCode::kBadRequest);
        continue;
      }
      if (parsed->which() == wire::Request::APPLY_EVENTS) {
        for (auto e : parsed->getApplyEvents().getEvents()) {
          (void)e.getUser();
          (void)e.getTag().size();
        }
      }
      ++accepted;
    } catch (const kj::Exception&) {
      // Refused while reading: the connection boundary turns this into BAD_REQUEST.
    }
  }
  EXPECT_GT(accepted, 0);
}

}  // namespace
}  // namespace tagcache::protocol

namespace tagcache::protocol {
namespace {

using Hits = std::vector<std::pair<std::string, uint64_t>>;

Hits ReadBack(wire::TagHits::Reader in) {
  Hits out;
  ForEachTagHit(in, [&](std::string_view name, uint64_t ts) { out.emplace_back(name, ts); });
  return out;
}

TEST(protocol_TagHitsTest, RoundTripWithAndWithoutTimestamps) {
  const Hits hits = {{"apple_fan", 17}, {"x", 1}, {"vip:gold.tier-2", 1u << 31}};
  for (bool with_ts : {false, true}) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::TagHits>();
    WriteTagHits(root, hits, with_ts, [](const auto& h) { return h.first; },
                 [](const auto& h) { return h.second; });
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(root.getNames().begin()),
                          root.getNames().size()),
              "apple_fan\nx\nvip:gold.tier-2\n");
    Hits expected = hits;
    if (!with_ts) {
      for (auto& h : expected) h.second = 0;
    }
    EXPECT_EQ(ReadBack(root.asReader()), expected);
  }
}

TEST(protocol_TagHitsTest, EmptyListHasNoBlob) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::TagHits>();
  WriteTagHits(root, Hits{}, true, [](const auto& h) { return h.first; },
               [](const auto& h) { return h.second; });
  EXPECT_FALSE(root.hasNames());
  EXPECT_TRUE(ReadBack(root.asReader()).empty());
}

// The reader never fails: a peer's odd but harmless encodings are accepted,
// and timestamps are matched to names by position (0 where missing).
TEST(protocol_TagHitsTest, ReaderIsLenientAboutOddEncodings) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::TagHits>();
  const std::string blob = "\na\n\nb";  // empty names, no final '\n'
  root.setNames(capnp::Data::Reader(reinterpret_cast<const uint8_t*>(blob.data()), blob.size()));
  auto ts = root.initTs(3);  // three timestamps for two names: the third is ignored
  ts.set(0, 1);
  ts.set(1, 2);
  ts.set(2, 3);
  EXPECT_EQ(ReadBack(root.asReader()), (Hits{{"a", 1}, {"b", 2}}));
  auto short_list = root.initTs(1);  // one timestamp for two names
  short_list.set(0, 7);
  EXPECT_EQ(ReadBack(root.asReader()), (Hits{{"a", 7}, {"b", 0}}));
}

}  // namespace
}  // namespace tagcache::protocol
